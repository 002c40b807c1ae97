//! Other systems' workflow files, read as they are: each is translated into a
//! Plexus document before it is read, and every problem is reported at the
//! original file's path and line.
//!
//! * **Codomyrmex** (`project_orchestration`'s `config.yaml` / `config.json`):
//!   a document with a top-level `dag` or `workflow` and no `steps`. The
//!   workflow is `dag.tasks` when the config has them (id `dag.name`,
//!   default `dag`), else `workflow.sample_workflow` (id: its `name`). A task
//!   is `name` (its id) / `module` (the plugin, by id or alias, see
//!   [`plexus_host::Host::resolve`]) / `action` (the operation) /
//!   `parameters` / `dependencies`, and may use any Plexus step key
//!   (`when`, `timeout`, `retry`, `compensate`, …). Tasks run in parallel
//!   mode (every task whose dependencies are done). `dag.execution` follows
//!   Codomyrmex's documented defaults: `max_parallel` 3, `timeout_seconds`
//!   300 (the workflow's timeout), `retry_failed` true with `retry_attempts`
//!   2 (a task without its own retry settings is tried again after any
//!   failure, twice). A `sample_workflow` runs at most
//!   `workflow.manager.max_parallel_tasks` (default 4) tasks at once, with no
//!   timeout and no retries of its own. `resources` (`cpu_limit`,
//!   `memory_limit_gb`, `disk_space_gb`) is the workflow's resource budget
//!   (see [`crate::definition::ResourceBudget`]); a task declares what it
//!   needs with `resources: {cpu, memory_mb}`.
//! * **The project orchestrator** ("factories": `ProjectOrchestrator`,
//!   `WorkflowManager`): a document with a top-level `parallel` or
//!   `factories`, or steps naming a `factory`. A step is `factory` (the
//!   plugin, by id or alias) / `action` / `params`, with an optional `id`
//!   (default: the action, `-2`, `-3`, … when repeated). `parallel: true`
//!   runs every step at once (parallel mode); `false` (the default) runs
//!   them one after another, each depending on the one before, with context
//!   passing (pipeline mode: a step's object output is merged into the
//!   shared context the next ones read). `factories`, when given, lists the
//!   factories the steps may use. A top-level `params` is merged into every
//!   step's `params`, winning over the step's own (how
//!   `create_from_template(name, {"params": …})` reaches the steps). The id
//!   is `id` or `name`, else the file's name (without extension). Plexus's
//!   workflow keys (`description`, `timeout`, `max_parallel`, `inputs`,
//!   `outputs`, `metadata`, `transaction`) may be used too.

use super::source::{DocPath, Seg};
use serde_json::{Map, Value, json};

/// Which system's format a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// Plexus's own format, QtForge's `Workflow::from_json` documents included.
    #[default]
    Plexus,
    /// A Codomyrmex `project_orchestration` config.
    Codomyrmex,
    /// The project orchestrator's factory workflow.
    Factories,
}

impl Dialect {
    /// The name used in messages: `plexus`, `codomyrmex`, `factories`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plexus => "plexus",
            Self::Codomyrmex => "codomyrmex",
            Self::Factories => "factories",
        }
    }

    /// Which format `value` is written in (see the module docs).
    pub fn detect(value: &Value) -> Self {
        let Some(root) = value.as_object() else { return Self::Plexus };
        let has_factory_steps = root
            .get("steps")
            .and_then(Value::as_array)
            .is_some_and(|steps| steps.iter().any(|s| s.get("factory").is_some()));
        if root.contains_key("parallel") || root.contains_key("factories") || has_factory_steps {
            return Self::Factories;
        }
        let shaped = |key: &str| root.get(key).is_some_and(Value::is_object);
        if !root.contains_key("steps") && !root.contains_key("id") && (shaped("dag") || shaped("workflow")) {
            return Self::Codomyrmex;
        }
        Self::Plexus
    }
}

/// A translated document: the Plexus document, where each of its paths came
/// from, and the problems found while translating (at original paths).
#[derive(Debug, Default)]
pub(crate) struct Translation {
    /// The Plexus document.
    pub value: Value,
    /// (prefix in the translation, the same place in the original), longest
    /// prefix wins; a path under no prefix is the same in both.
    pub origin: Vec<(DocPath, DocPath)>,
    /// (step, original path, message).
    pub problems: Vec<(Option<String>, DocPath, String)>,
}

impl Translation {
    fn map(&mut self, new: DocPath, old: DocPath) {
        self.origin.push((new, old));
    }
    fn problem(&mut self, step: Option<&str>, at: DocPath, message: impl Into<String>) {
        self.problems.push((step.map(str::to_owned), at, message.into()));
    }
}

/// The original path of `path` (a path in the translation).
pub(crate) fn original(origin: &[(DocPath, DocPath)], path: &DocPath) -> DocPath {
    let best = origin.iter().filter(|(new, _)| path.0.starts_with(&new.0)).max_by_key(|(new, _)| new.0.len());
    match best {
        Some((new, old)) => {
            let mut out = old.clone();
            out.0.extend(path.0[new.0.len()..].iter().cloned());
            out
        }
        None => path.clone(),
    }
}

/// Plexus step keys a foreign step may use as they are.
const STEP_KEYS: &[&str] = &[
    "description",
    "kind",
    "when",
    "timeout",
    "max_retries",
    "retry_delay",
    "retry",
    "critical",
    "compensate",
    "metadata",
    "resources",
];

/// Plexus workflow keys a factories document may use as they are.
const WORKFLOW_KEYS: &[&str] =
    &["description", "timeout", "max_parallel", "inputs", "outputs", "metadata", "transaction"];

/// Codomyrmex's documented defaults (`dag.execution`, `workflow.manager`).
const CODOMYRMEX_DAG_MAX_PARALLEL: u64 = 3;
const CODOMYRMEX_DAG_TIMEOUT_SECONDS: u64 = 300;
const CODOMYRMEX_RETRY_ATTEMPTS: u64 = 2;
const CODOMYRMEX_MANAGER_MAX_PARALLEL: u64 = 4;

/// The longest timeout a Codomyrmex config may give, in seconds (Plexus's
/// ceiling of durations, 30 days).
const MAX_TIMEOUT_SECONDS: f64 = 30.0 * 24.0 * 3600.0;

/// Translate `value`, written in `dialect`, into a Plexus document;
/// `fallback_id` (the file's name) is the id of a factories document that
/// names none.
pub(crate) fn translate(dialect: Dialect, value: &Value, fallback_id: Option<&str>) -> Translation {
    let mut t = Translation::default();
    t.value = match dialect {
        Dialect::Plexus => value.clone(),
        Dialect::Codomyrmex => codomyrmex(value, &mut t),
        Dialect::Factories => factories(value, fallback_id, &mut t),
    };
    t
}

fn root() -> DocPath {
    DocPath::default()
}

fn path(keys: &[&str]) -> DocPath {
    DocPath(keys.iter().map(|k| Seg::Key((*k).to_owned())).collect())
}

/// Report every key of `map` (at `at`) that is not in `known`.
fn unknown_keys(map: &Map<String, Value>, known: &[&str], step: Option<&str>, at: &DocPath, t: &mut Translation) {
    for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
        t.problem(step, at.key(key), format!("unknown field `{key}` (known: {})", known.join(", ")));
    }
}

/// `map[key]` as a mapping, reporting anything else; `None` when absent.
fn mapping<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    at: &DocPath,
    t: &mut Translation,
) -> Option<&'v Map<String, Value>> {
    match map.get(key)? {
        Value::Object(inner) => Some(inner),
        Value::Null => None,
        other => {
            t.problem(None, at.key(key), format!("expected a mapping, found {}", super::definition::kind(other)));
            None
        }
    }
}

/// `map[key]` as a whole number ≥ 0 (or its default), reporting anything else.
fn count(map: Option<&Map<String, Value>>, key: &str, default: u64, at: &DocPath, t: &mut Translation) -> u64 {
    match map.and_then(|m| m.get(key)) {
        None | Some(Value::Null) => default,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(default),
        Some(other) => {
            t.problem(None, at.key(key), format!("expected a whole number ≥ 0, found {other}"));
            default
        }
    }
}

fn codomyrmex(value: &Value, t: &mut Translation) -> Value {
    let Some(root_map) = value.as_object() else { return Value::Null };
    unknown_keys(root_map, &["workflow", "dag", "resources"], None, &root(), t);
    let workflow = mapping(root_map, "workflow", &root(), t);
    let workflow_path = path(&["workflow"]);
    if let Some(w) = workflow {
        unknown_keys(w, &["manager", "sample_workflow"], None, &workflow_path, t);
    }
    let manager_path = path(&["workflow", "manager"]);
    let manager = workflow.and_then(|w| mapping(w, "manager", &workflow_path, t));
    if let Some(m) = manager {
        unknown_keys(m, &["enable_performance_monitoring", "max_parallel_tasks", "config_dir"], None, &manager_path, t);
    }
    let sample = workflow.and_then(|w| mapping(w, "sample_workflow", &workflow_path, t));
    let dag_path = path(&["dag"]);
    let dag = mapping(root_map, "dag", &root(), t);
    if let Some(d) = dag {
        unknown_keys(d, &["name", "description", "tasks", "execution"], None, &dag_path, t);
    }
    let execution_path = dag_path.key("execution");
    let execution = dag.and_then(|d| mapping(d, "execution", &dag_path, t));
    if let Some(e) = execution {
        unknown_keys(
            e,
            &["max_parallel", "timeout_seconds", "retry_failed", "retry_attempts"],
            None,
            &execution_path,
            t,
        );
    }
    let mut out = Map::new();
    let dag_tasks = dag.filter(|d| d.get("tasks").is_some_and(|v| !v.is_null()));
    let (source, source_path, tasks_key) = match (dag_tasks, sample) {
        (Some(d), _) => (d, dag_path.clone(), "tasks"),
        (None, Some(s)) => (s, workflow_path.key("sample_workflow"), "steps"),
        (None, None) => {
            t.problem(
                None,
                root(),
                "missing `dag.tasks` (or `workflow.sample_workflow.steps`): a Codomyrmex config names its tasks there",
            );
            return Value::Object(out);
        }
    };
    let use_dag = tasks_key == "tasks";
    if !use_dag {
        unknown_keys(source, &["name", "description", "steps"], None, &source_path, t);
    }
    // Id: the DAG's or the sample workflow's `name`.
    match source.get("name") {
        Some(name) => {
            out.insert("id".into(), name.clone());
            t.map(path(&["id"]), source_path.key("name"));
        }
        None if use_dag => {
            out.insert("id".into(), json!("dag"));
        }
        None => t.problem(None, source_path.clone(), "missing `name`: the workflow's id"),
    }
    if let Some(d) = source.get("description") {
        out.insert("description".into(), d.clone());
        t.map(path(&["description"]), source_path.key("description"));
    }
    out.insert("execution_mode".into(), json!("parallel"));
    // Parallelism, timeout and retries.
    let retries = if use_dag {
        let max_parallel = count(execution, "max_parallel", CODOMYRMEX_DAG_MAX_PARALLEL, &execution_path, t);
        out.insert("max_parallel".into(), json!(max_parallel));
        t.map(path(&["max_parallel"]), execution_path.key("max_parallel"));
        let timeout = match execution.and_then(|e| e.get("timeout_seconds")) {
            None | Some(Value::Null) => Some(CODOMYRMEX_DAG_TIMEOUT_SECONDS as f64),
            Some(Value::Number(n)) if n.as_f64().is_some_and(|s| (0.0..=MAX_TIMEOUT_SECONDS).contains(&s)) => {
                n.as_f64()
            }
            Some(other) => {
                t.problem(
                    None,
                    execution_path.key("timeout_seconds"),
                    format!("expected seconds, a number from 0 to {MAX_TIMEOUT_SECONDS}, found {other}"),
                );
                None
            }
        };
        if let Some(seconds) = timeout {
            // Whole milliseconds, as Plexus reads a number.
            out.insert("timeout".into(), json!((seconds * 1000.0).round() as u64));
            t.map(path(&["timeout"]), execution_path.key("timeout_seconds"));
        }
        let retry_failed = match execution.and_then(|e| e.get("retry_failed")) {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                t.problem(None, execution_path.key("retry_failed"), format!("expected true or false, found {other}"));
                false
            }
        };
        let attempts = count(execution, "retry_attempts", CODOMYRMEX_RETRY_ATTEMPTS, &execution_path, t);
        (retry_failed && attempts > 0).then_some(attempts)
    } else {
        let max_parallel = count(manager, "max_parallel_tasks", CODOMYRMEX_MANAGER_MAX_PARALLEL, &manager_path, t);
        out.insert("max_parallel".into(), json!(max_parallel));
        t.map(path(&["max_parallel"]), manager_path.key("max_parallel_tasks"));
        None
    };
    if let Some(resources) = root_map.get("resources") {
        out.insert("resources".into(), resources.clone());
    }
    let tasks_path = source_path.key(tasks_key);
    let steps = match source.get(tasks_key) {
        Some(Value::Array(tasks)) => tasks
            .iter()
            .enumerate()
            .map(|(i, task)| codomyrmex_task(task, i, &tasks_path, retries, t))
            .collect::<Vec<_>>(),
        Some(other) => {
            t.problem(
                None,
                tasks_path.clone(),
                format!("expected a list of tasks, found {}", super::definition::kind(other)),
            );
            Vec::new()
        }
        None => Vec::new(),
    };
    if !steps.is_empty() || source.get(tasks_key).is_some() {
        out.insert("steps".into(), Value::Array(steps));
        t.map(path(&["steps"]), tasks_path);
    }
    Value::Object(out)
}

/// One Codomyrmex task as a Plexus step.
fn codomyrmex_task(task: &Value, i: usize, tasks_path: &DocPath, retries: Option<u64>, t: &mut Translation) -> Value {
    let at = tasks_path.index(i);
    let new = path(&["steps"]).index(i);
    t.map(new.clone(), at.clone());
    let Some(map) = task.as_object() else {
        // Reported by the reader, at this (mapped) path.
        return task.clone();
    };
    let label = map.get("name").and_then(Value::as_str).map(str::to_owned);
    let mut known = vec!["name", "module", "action", "parameters", "dependencies"];
    known.extend_from_slice(STEP_KEYS);
    unknown_keys(map, &known, label.as_deref(), &at, t);
    let mut step = Map::new();
    for (from, to) in [("name", "id"), ("module", "plugin_id"), ("action", "operation")] {
        match map.get(from) {
            Some(v) => {
                step.insert(to.into(), v.clone());
                t.map(new.key(to), at.key(from));
            }
            None => t.problem(label.as_deref(), at.clone(), missing_task_key(from)),
        }
    }
    if let Some(name) = map.get("name") {
        step.insert("name".into(), name.clone());
    }
    for key in ["parameters", "dependencies"].iter().chain(STEP_KEYS) {
        if let Some(v) = map.get(*key) {
            step.insert((*key).into(), v.clone());
        }
    }
    let own_retry = ["retry", "max_retries", "retry_delay"].iter().any(|k| map.contains_key(*k));
    if let (Some(n), false) = (retries, own_retry) {
        step.insert("retry".into(), json!({ "retry_on": "any", "max_attempts": n.saturating_add(1) }));
        t.map(new.key("retry"), path(&["dag", "execution", "retry_attempts"]));
    }
    Value::Object(step)
}

fn missing_task_key(key: &str) -> String {
    match key {
        "name" => "missing `name`: the task's id".into(),
        "module" => "missing `module`: the plugin (its id or an alias) that runs the task".into(),
        _ => "missing `action`: the operation the module runs".into(),
    }
}

fn factories(value: &Value, fallback_id: Option<&str>, t: &mut Translation) -> Value {
    let Some(root_map) = value.as_object() else { return Value::Null };
    let mut known = vec!["id", "name", "steps", "factories", "parallel", "params"];
    known.extend_from_slice(WORKFLOW_KEYS);
    unknown_keys(root_map, &known, None, &root(), t);
    let mut out = Map::new();
    match (root_map.get("id"), root_map.get("name")) {
        (Some(id), _) => {
            out.insert("id".into(), id.clone());
        }
        (None, Some(name)) => {
            out.insert("id".into(), name.clone());
            t.map(path(&["id"]), path(&["name"]));
        }
        (None, None) => match fallback_id {
            Some(id) => {
                out.insert("id".into(), json!(id));
            }
            None => t.problem(None, root(), "missing `name`: the workflow's id (`create_workflow`'s name)"),
        },
    }
    if let Some(name) = root_map.get("name") {
        out.insert("name".into(), name.clone());
    }
    for key in WORKFLOW_KEYS {
        if let Some(v) = root_map.get(*key) {
            out.insert((*key).into(), v.clone());
        }
    }
    let parallel = match root_map.get("parallel") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            t.problem(None, path(&["parallel"]), format!("expected true or false, found {other}"));
            false
        }
    };
    out.insert("execution_mode".into(), json!(if parallel { "parallel" } else { "pipeline" }));
    t.map(path(&["execution_mode"]), path(&["parallel"]));
    let listed: Option<Vec<&str>> = match root_map.get("factories") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(name) => names.push(name),
                    None => {
                        t.problem(None, path(&["factories"]).index(i), format!("expected a factory name, found {item}"))
                    }
                }
            }
            Some(names)
        }
        Some(other) => {
            t.problem(None, path(&["factories"]), format!("expected a list of factory names, found {other}"));
            None
        }
    };
    let shared = match root_map.get("params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => {
            t.problem(None, path(&["params"]), format!("expected a mapping of parameters, found {other}"));
            None
        }
    };
    let steps = match root_map.get("steps") {
        Some(Value::Array(items)) => items,
        Some(other) => {
            t.problem(
                None,
                path(&["steps"]),
                format!("expected a list of steps, found {}", super::definition::kind(other)),
            );
            return Value::Object(out);
        }
        None => {
            t.problem(None, root(), "missing `steps`: a workflow needs at least one step");
            return Value::Object(out);
        }
    };
    let mut ids: Vec<String> = Vec::with_capacity(steps.len());
    let mut out_steps = Vec::with_capacity(steps.len());
    for (i, item) in steps.iter().enumerate() {
        let at = path(&["steps"]).index(i);
        let new = path(&["steps"]).index(i);
        let Some(map) = item.as_object() else {
            out_steps.push(item.clone());
            ids.push(String::new());
            continue;
        };
        let mut step_known = vec!["id", "name", "factory", "action", "params", "dependencies"];
        step_known.extend_from_slice(STEP_KEYS);
        // The id: given, or the action (numbered when repeated).
        let id = match map.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let base = map.get("action").and_then(Value::as_str).unwrap_or("step");
                let mut id = base.to_owned();
                let mut n = 1;
                while ids.contains(&id) {
                    n += 1;
                    id = format!("{base}-{n}");
                }
                id
            }
        };
        unknown_keys(map, &step_known, Some(&id), &at, t);
        let mut step = Map::new();
        step.insert("id".into(), json!(id));
        for (from, to) in [("factory", "plugin_id"), ("action", "operation")] {
            match map.get(from) {
                Some(v) => {
                    step.insert(to.into(), v.clone());
                    t.map(new.key(to), at.key(from));
                }
                None => t.problem(Some(&id), at.clone(), format!("missing `{from}`")),
            }
        }
        if let (Some(listed), Some(factory)) = (&listed, map.get("factory").and_then(Value::as_str))
            && !listed.contains(&factory)
        {
            t.problem(
                Some(&id),
                at.key("factory"),
                format!("factory `{factory}` is not in `factories` ({})", listed.join(", ")),
            );
        }
        let mut params = match map.get("params") {
            None | Some(Value::Null) => Some(Map::new()),
            Some(Value::Object(p)) => Some(p.clone()),
            Some(_) => None,
        };
        match (&mut params, shared) {
            (Some(params), Some(shared)) => params.extend(shared.iter().map(|(k, v)| (k.clone(), v.clone()))),
            (None, _) => {
                // Not a mapping: the reader reports it at `params`.
                step.insert("parameters".into(), map["params"].clone());
            }
            _ => {}
        }
        if let Some(params) = params {
            step.insert("parameters".into(), Value::Object(params));
        }
        t.map(new.key("parameters"), at.key("params"));
        for key in ["name"].iter().chain(STEP_KEYS) {
            if let Some(v) = map.get(*key) {
                step.insert((*key).into(), v.clone());
            }
        }
        let mut deps: Vec<Value> = match map.get("dependencies") {
            Some(Value::Array(d)) => d.clone(),
            Some(Value::String(d)) => vec![json!(d)],
            Some(other) => {
                step.insert("dependencies".into(), other.clone());
                Vec::new()
            }
            None => Vec::new(),
        };
        if !parallel && let Some(before) = ids.last().filter(|id| !id.is_empty()) {
            let before = json!(before);
            if !deps.contains(&before) {
                deps.push(before);
            }
        }
        if !deps.is_empty() {
            step.insert("dependencies".into(), Value::Array(deps));
        }
        ids.push(id);
        t.map(new, at);
        out_steps.push(Value::Object(step));
    }
    out.insert("steps".into(), Value::Array(out_steps));
    Value::Object(out)
}
