//! The step graph: topological order, stages, cycles, and drawings.

use super::definition::Workflow;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

/// Steps by index (declaration order) with their edges.
#[derive(Debug, Clone)]
pub struct Dag {
    /// For each step, the steps it depends on.
    pub deps: Vec<Vec<usize>>,
    /// For each step, the steps that depend on it.
    pub dependents: Vec<Vec<usize>>,
    /// A stable topological order: among ready steps, declaration order first.
    pub order: Vec<usize>,
    /// Each step's position in `order`.
    pub rank: Vec<usize>,
}

impl Dag {
    /// Build the graph of `workflow`. Unknown dependencies are ignored here
    /// (validation reports them).
    ///
    /// # Errors
    /// The cycles found, each as a list of step ids ending where it began.
    pub fn build(workflow: &Workflow) -> Result<Self, Vec<Vec<String>>> {
        let n = workflow.steps.len();
        let index: HashMap<&str, usize> = workflow.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        let mut deps = vec![Vec::new(); n];
        let mut dependents = vec![Vec::new(); n];
        for (i, step) in workflow.steps.iter().enumerate() {
            let mut seen = BTreeSet::new();
            for d in &step.dependencies {
                if let Some(&j) = index.get(d.as_str())
                    && seen.insert(j)
                {
                    deps[i].push(j);
                    dependents[j].push(i);
                }
            }
        }
        // Kahn's algorithm with a min-heap on declaration index: stable order.
        let mut missing: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<usize> = (0..n).filter(|&i| missing[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &d in &dependents[i] {
                missing[d] -= 1;
                if missing[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        if order.len() < n {
            return Err(find_cycles(workflow, &deps, &missing));
        }
        let mut rank = vec![0; n];
        for (pos, &i) in order.iter().enumerate() {
            rank[i] = pos;
        }
        Ok(Self { deps, dependents, order, rank })
    }

    /// Stages: groups of steps that can run together (each stage depends only on earlier ones).
    pub fn stages(&self) -> Vec<Vec<usize>> {
        let mut level = vec![0usize; self.deps.len()];
        for &i in &self.order {
            level[i] = self.deps[i].iter().map(|&d| level[d] + 1).max().unwrap_or(0);
        }
        let depth = level.iter().copied().max().map_or(0, |m| m + 1);
        let mut stages = vec![Vec::new(); depth];
        for &i in &self.order {
            stages[level[i]].push(i);
        }
        stages
    }

    /// Whether `ancestor` is a (transitive) dependency of `step`.
    pub(crate) fn depends_on(&self, step: usize, ancestor: usize) -> bool {
        let mut stack = vec![step];
        let mut seen = vec![false; self.deps.len()];
        while let Some(i) = stack.pop() {
            for &d in &self.deps[i] {
                if d == ancestor {
                    return true;
                }
                if !seen[d] {
                    seen[d] = true;
                    stack.push(d);
                }
            }
        }
        false
    }
}

/// The cycles among the steps Kahn's algorithm could not order.
fn find_cycles(workflow: &Workflow, deps: &[Vec<usize>], missing: &[usize]) -> Vec<Vec<String>> {
    let stuck: BTreeSet<usize> = (0..deps.len()).filter(|&i| missing[i] > 0).collect();
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<usize> = BTreeSet::new();
    for &start in &stuck {
        if reported.contains(&start) {
            continue;
        }
        // Walk dependencies inside the stuck set until a step repeats.
        let mut path = vec![start];
        let mut pos: HashMap<usize, usize> = HashMap::from([(start, 0)]);
        let mut current = start;
        while let Some(&next) = deps[current].iter().find(|d| stuck.contains(d)) {
            if let Some(&at) = pos.get(&next) {
                let cycle: Vec<usize> = path[at..].to_vec();
                if cycle.iter().all(|i| !reported.contains(i)) {
                    reported.extend(cycle.iter().copied());
                    // Print in execution direction: a → b means b depends on a.
                    let mut ids: Vec<String> = cycle.iter().rev().map(|&i| workflow.steps[i].id.clone()).collect();
                    ids.push(ids[0].clone());
                    cycles.push(ids);
                }
                break;
            }
            pos.insert(next, path.len());
            path.push(next);
            current = next;
        }
    }
    cycles
}

/// The DAG as a Mermaid flowchart.
pub fn mermaid(workflow: &Workflow) -> String {
    let mut out = String::from("flowchart TD\n");
    for (i, step) in workflow.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "    s{i}[\"{}<br/>{}.{}\"]",
            esc(&step.id),
            esc(&step.action.plugin_id),
            esc(&step.action.operation)
        );
    }
    let index: HashMap<&str, usize> = workflow.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    for (i, step) in workflow.steps.iter().enumerate() {
        for d in &step.dependencies {
            if let Some(j) = index.get(d.as_str()) {
                let label = if step.when.is_some() { "-- when -->" } else { "-->" };
                let _ = writeln!(out, "    s{j} {label} s{i}");
            }
        }
    }
    out
}

/// The DAG in Graphviz DOT.
pub fn dot(workflow: &Workflow) -> String {
    let mut out = format!("digraph \"{}\" {{\n    rankdir=TB;\n    node [shape=box];\n", esc(&workflow.id));
    for step in &workflow.steps {
        let style = if step.critical { "" } else { ", style=dashed" };
        let _ = writeln!(
            out,
            "    \"{}\" [label=\"{}\\n{}.{}\"{style}];",
            esc(&step.id),
            esc(&step.id),
            esc(&step.action.plugin_id),
            esc(&step.action.operation)
        );
    }
    for step in &workflow.steps {
        for d in &step.dependencies {
            let _ = writeln!(out, "    \"{}\" -> \"{}\";", esc(d), esc(&step.id));
        }
    }
    out.push_str("}\n");
    out
}

fn esc(text: &str) -> String {
    text.replace('"', "'")
}
