//! Validation: every problem of a workflow file at once, each naming the step
//! and, for YAML, the line.

use super::dag::Dag;
use super::definition::{self, Action, Problem, Problems, Workflow};
use super::expr::{Expr, Template};
use super::source::{DocPath, Document};
use plexus_host::Host;
use plexus_sdk::capability;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// A workflow that passed validation, with its graph and its templates and
/// conditions compiled (once, here; execution uses them as they are).
#[derive(Debug, Clone)]
pub struct ValidWorkflow {
    /// The definition.
    pub workflow: Workflow,
    /// Its step graph.
    pub dag: Dag,
    /// The compiled templates, shared by clones.
    pub(crate) compiled: Arc<Compiled>,
}

/// A validated workflow's templates and conditions, compiled.
#[derive(Debug)]
pub(crate) struct Compiled {
    /// One per step, in declaration order.
    pub(crate) steps: Vec<CompiledStep>,
    /// The workflow's `outputs`.
    pub(crate) outputs: Template,
}

/// One step's compiled parameters, condition and compensation, and what its
/// expressions read.
#[derive(Debug)]
pub(crate) struct CompiledStep {
    pub(crate) params: Template,
    pub(crate) when: Option<Expr>,
    pub(crate) compensation: Option<(Action, Template)>,
    /// Step indices its expressions read (`steps.<id>`).
    pub(crate) reads: Vec<usize>,
    /// Whether its expressions read `context`.
    pub(crate) reads_context: bool,
    /// The secrets its parameters name (`secrets.NAME`).
    pub(crate) secrets: Vec<String>,
    /// The secrets its compensation's parameters name.
    pub(crate) compensation_secrets: Vec<String>,
    /// A map step's `for_each` expression.
    pub(crate) for_each: Option<Expr>,
}

/// A workflow file that did not validate: every problem found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {} problem(s):\n{}", file, problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct Invalid {
    /// The file (or `<inline>`).
    pub file: String,
    /// What is wrong.
    pub problems: Vec<Problem>,
}

/// Read and validate the workflow file at `path`; with a `host`, plugin ids,
/// operations and literal parameters are checked against the loaded plugins.
pub fn load_file(path: &Path, host: Option<&Host>) -> Result<ValidWorkflow, Invalid> {
    let file = path.display().to_string();
    let fail = |message: String| Invalid {
        file: file.clone(),
        problems: vec![Problem { step: None, path: String::new(), line: None, message }],
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let doc = Document::parse(path, &text).map_err(|e| fail(e.to_string()))?;
    validate(&doc, host).map_err(|problems| Invalid { file, problems })
}

/// Validate a parsed document.
pub fn validate(doc: &Document, host: Option<&Host>) -> Result<ValidWorkflow, Vec<Problem>> {
    validate_for(doc, host, capability::WORKFLOW_STEP)
}

/// [`validate`], requiring every plugin a step (or compensation) calls to
/// declare `capability` (Framework0's rule: a workflow step targets a plugin
/// declaring `workflow-step`; the one-step workflow the daemon generates for
/// a schedule of one operation needs `scheduled-task` instead).
///
/// # Errors
/// Every problem found, as [`validate`].
pub fn validate_for(doc: &Document, host: Option<&Host>, capability: &str) -> Result<ValidWorkflow, Vec<Problem>> {
    validate_nested(doc, host, capability, 0)
}

/// [`validate_for`] of a workflow `depth` inline sub-workflows deep.
fn validate_nested(
    doc: &Document,
    host: Option<&Host>,
    capability: &str,
    depth: usize,
) -> Result<ValidWorkflow, Vec<Problem>> {
    let mut p = Problems::new(doc);
    let mut workflow = definition::read(doc, &mut p);
    let doc_paths = step_doc_paths(doc, workflow.steps.len());
    validate_inline(&mut workflow, doc, &doc_paths, host, capability, depth, &mut p);
    if let Some(host) = host {
        resolve_aliases(&mut workflow, &doc_paths, host, &mut p);
    }
    let path_of_index = |i: usize| doc_paths.get(i).cloned().unwrap_or_default();
    let mut step_paths: HashMap<&str, &DocPath> = HashMap::new();
    for (step, path) in workflow.steps.iter().zip(&doc_paths) {
        step_paths.entry(step.id.as_str()).or_insert(path);
    }
    let path_of = |id: &str| step_paths.get(id).map(|p| (*p).clone()).unwrap_or_default();

    // Ids: unique and non-empty.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, step) in workflow.steps.iter().enumerate() {
        if let Some(first) = seen.insert(step.id.as_str(), i) {
            p.add(Some(&step.id), &path_of_index(i), format!("duplicate step id (also step #{})", first + 1));
        }
        // `~` joins a sub-workflow's execution id to its parent's (`<parent>~<step>`).
        if step.id.contains('~') {
            p.add(
                Some(&step.id),
                &path_of_index(i),
                "a step id has no `~` (it links sub-workflow executions to their parents)",
            );
        }
    }
    let ids: HashSet<&str> = workflow.steps.iter().map(|s| s.id.as_str()).collect();

    // Dependencies exist.
    for step in &workflow.steps {
        for (k, dep) in step.dependencies.iter().enumerate() {
            if dep == &step.id {
                p.add(
                    Some(&step.id),
                    &path_of(&step.id).key("dependencies").index(k),
                    "a step cannot depend on itself",
                );
            } else if !ids.contains(dep.as_str()) {
                p.add(
                    Some(&step.id),
                    &path_of(&step.id).key("dependencies").index(k),
                    format!("depends on unknown step `{dep}`"),
                );
            }
        }
    }
    for id in workflow.rollback.keys() {
        if !ids.contains(id.as_str()) {
            p.add(
                Some(id),
                &DocPath::default().key("rollback_steps").key(id),
                format!("rollback for unknown step `{id}`"),
            );
        }
    }

    // Resources: a step that needs more than the whole budget could never start.
    if let Some(budget) = &workflow.resources {
        let mut limits = Vec::new();
        if let Some(cpu) = budget.cpu_millis {
            limits.push(format!("{} cores", cpu as f64 / 1000.0));
        }
        if let Some(mb) = budget.memory_mb {
            limits.push(format!("{mb} MiB"));
        }
        for (i, step) in workflow.steps.iter().enumerate() {
            if !budget.fits(Default::default(), step.resources) {
                p.add(
                    Some(&step.id),
                    &path_of_index(i).key("resources"),
                    format!(
                        "needs {} cores and {} MiB, more than the workflow's whole budget ({}): it could never start",
                        step.resources.cpu_millis as f64 / 1000.0,
                        step.resources.memory_mb,
                        limits.join(", "),
                    ),
                );
            }
        }
    }

    // Cycles.
    let dag = match Dag::build(&workflow) {
        Ok(dag) => Some(dag),
        Err(cycles) => {
            for cycle in cycles {
                p.add(Some(&cycle[0]), &path_of(&cycle[0]), format!("dependency cycle: {}", cycle.join(" → ")));
            }
            None
        }
    };

    // Plugins, operations, expressions, parameters.
    let mut schemas = Schemas::new();
    let index: HashMap<&str, usize> = workflow.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut compiled_steps = Vec::with_capacity(workflow.steps.len());
    let mut rollbacks: HashMap<&str, Template> = HashMap::new();
    for (id, action) in &workflow.rollback {
        let path = DocPath::default().key("rollback_steps").key(id);
        if let Some(t) = check_action(action, Some(id), &path, (host, capability), &mut schemas, &mut p) {
            rollbacks.insert(id.as_str(), t);
        }
    }
    for (i, step) in workflow.steps.iter().enumerate() {
        let path = path_of(&step.id);
        let params = check_action(&step.action, Some(&step.id), &path, (host, capability), &mut schemas, &mut p);
        let compensate = match &step.compensate {
            Some(c) => {
                check_action(c, Some(&step.id), &path.key("compensate"), (host, capability), &mut schemas, &mut p)
            }
            None => None,
        };
        let when = match &step.when {
            Some(when) => match Expr::compile(when) {
                Ok(e) => {
                    check_references(
                        &e,
                        &workflow,
                        Some((i, &step.id)),
                        dag.as_ref(),
                        &index,
                        (&path.key("when"), Names::default()),
                        &mut p,
                    );
                    Some(e)
                }
                Err(e) => {
                    p.add(Some(&step.id), &path.key("when"), e);
                    None
                }
            },
            None => None,
        };
        let for_each = match &step.map {
            Some(map) => match Template::compile(&Value::String(map.for_each.clone())) {
                Ok(Template::Whole(e)) => {
                    check_references(
                        &e,
                        &workflow,
                        Some((i, &step.id)),
                        dag.as_ref(),
                        &index,
                        (&path.key("for_each"), Names::default()),
                        &mut p,
                    );
                    Some(e)
                }
                Ok(_) => {
                    p.add(
                        Some(&step.id),
                        &path.key("for_each"),
                        "one `${{ … }}` expression giving a list, e.g. `${{ steps.list.output.items }}`",
                    );
                    None
                }
                Err(errors) => {
                    errors.into_iter().for_each(|e| p.add(Some(&step.id), &path.key("for_each"), e));
                    None
                }
            },
            None => None,
        };
        if let Some(t) = &params {
            for e in t.exprs() {
                check_references(
                    e,
                    &workflow,
                    Some((i, &step.id)),
                    dag.as_ref(),
                    &index,
                    // A sub-workflow's parameters become its child's recorded inputs: no secrets there.
                    (&path.key("parameters"), Names { secrets: step.call.is_none(), item: step.map.is_some() }),
                    &mut p,
                );
            }
        }
        // Kept only while every problem so far is someone else's: a workflow
        // with problems is never prepared.
        if p.list.is_empty()
            && let Some(params) = params
        {
            // `rollback_steps[id]` wins over the step's own `compensate`.
            let compensation = match (workflow.rollback.get(&step.id), rollbacks.remove(step.id.as_str())) {
                (Some(action), Some(t)) => Some((action.clone(), t)),
                _ => step.compensate.clone().zip(compensate),
            };
            let mut exprs: Vec<&Expr> = params.exprs();
            exprs.extend(when.iter());
            exprs.extend(for_each.iter());
            let refs: std::collections::BTreeSet<String> = exprs.iter().flat_map(|e| e.references()).collect();
            let reads: std::collections::BTreeSet<usize> = refs
                .iter()
                .filter_map(|r| r.strip_prefix("steps.").map(|rest| rest.split('.').next().unwrap_or(rest)))
                .filter_map(|id| index.get(id).copied())
                .collect();
            let reads_context = refs.iter().any(|r| r == "context" || r.starts_with("context."));
            let secrets = secret_names(&params.exprs());
            let compensation_secrets = compensation.as_ref().map(|(_, t)| secret_names(&t.exprs())).unwrap_or_default();
            compiled_steps.push(CompiledStep {
                params,
                when,
                compensation,
                reads: reads.into_iter().collect(),
                reads_context,
                secrets,
                compensation_secrets,
                for_each,
            });
        }
    }
    let outputs_path = DocPath::default().key("outputs");
    let outputs = match Template::compile(&Value::Object(workflow.outputs.clone())) {
        Ok(t) => {
            for e in t.exprs() {
                check_references(e, &workflow, None, dag.as_ref(), &index, (&outputs_path, Names::default()), &mut p);
            }
            Some(t)
        }
        Err(errors) => {
            errors.into_iter().for_each(|e| p.add(None, &outputs_path, e));
            None
        }
    };

    match (dag, outputs) {
        (Some(dag), Some(outputs)) if p.list.is_empty() && compiled_steps.len() == workflow.steps.len() => {
            let compiled = Arc::new(Compiled { steps: compiled_steps, outputs });
            Ok(ValidWorkflow { workflow, dag, compiled })
        }
        _ => {
            p.list.sort_by_key(|x| x.line.unwrap_or(usize::MAX));
            Err(p.list)
        }
    }
}

/// What is wrong with the JSON Schemas a plugin declares for its operations:
/// one line per schema that is not a usable JSON Schema, naming the
/// operation (`plexus plugins check`). Workflow validation ignores such a
/// schema; the plugin's author should not.
pub fn schema_problems(metadata: &plexus_sdk::Metadata) -> Vec<String> {
    let mut problems = Vec::new();
    for op in &metadata.operations {
        for (what, schema) in [("parameter", &op.params_schema), ("output", &op.output_schema)] {
            if let Some(schema) = schema
                && let Err(e) = jsonschema::validator_for(schema)
            {
                problems.push(format!("the {what} schema of `{}` is not a usable JSON Schema: {e}", op.name));
            }
        }
    }
    problems
}

/// Check a plugin action: its templates compile, and with a host, that the
/// plugin and operation exist and literal parameters fit the declared schema.
/// Compiled parameter schemas by (plugin, operation): compiled once per validation.
type Schemas = HashMap<(String, String), Option<jsonschema::Validator>>;

fn check_action(
    action: &Action,
    step: Option<&str>,
    path: &DocPath,
    against: (Option<&Host>, &str),
    schemas: &mut Schemas,
    p: &mut Problems,
) -> Option<Template> {
    let params_path = path.key("parameters");
    let template = Template::compile(&action.parameters);
    if let Err(errors) = &template {
        errors.iter().for_each(|e| p.add(step, &params_path, e.clone()));
    }
    check_plugin(action, step, path, against, schemas, &template, p);
    template.ok()
}

/// Replace every plugin name that is an alias ([`Host::resolve`]) by the
/// plugin's id, in steps, compensations and rollback steps; an alias that
/// several plugins declare is a problem naming them.
fn resolve_aliases(workflow: &mut Workflow, doc_paths: &[DocPath], host: &Host, p: &mut Problems) {
    let mut resolve = |action: &mut Action, step: &str, path: DocPath| match host.resolve(&action.plugin_id) {
        plexus_host::Resolved::Plugin(id) => {
            if id != action.plugin_id {
                action.plugin_id = id.to_owned();
            }
        }
        plexus_host::Resolved::Unknown => {}
        plexus_host::Resolved::Ambiguous(ids) => {
            p.add(
                Some(step),
                &path.key("plugin_id"),
                format!(
                    "`{}` is an alias of several plugins ({}): name one by its id",
                    action.plugin_id,
                    ids.join(", ")
                ),
            );
            // Reported: no plugin to check it against (an empty id is not checked again).
            action.plugin_id.clear();
        }
    };
    for (i, step) in workflow.steps.iter_mut().enumerate() {
        let path = doc_paths.get(i).cloned().unwrap_or_default();
        resolve(&mut step.action, &step.id, path.clone());
        if let Some(c) = &mut step.compensate {
            resolve(c, &step.id, path.key("compensate"));
        }
    }
    for (id, action) in &mut workflow.rollback {
        resolve(action, id, DocPath::default().key("rollback_steps").key(id));
    }
}

/// With a host: the plugin and operation exist, the plugin declares the
/// capability, and literal parameters fit the operation's declared schema.
fn check_plugin(
    action: &Action,
    step: Option<&str>,
    path: &DocPath,
    (host, capability): (Option<&Host>, &str),
    schemas: &mut Schemas,
    template: &Result<Template, Vec<String>>,
    p: &mut Problems,
) {
    let params_path = path.key("parameters");
    let Some(host) = host else { return };
    if action.plugin_id.is_empty() || action.operation.is_empty() {
        return;
    }
    let Some(plugin) = host.select(&action.plugin_id, action.kind) else {
        if let Some(kind) = action.kind
            && host.plugin(&action.plugin_id).is_some()
        {
            let message = super::engine::not_loaded(host, &action.plugin_id, Some(kind));
            p.add(step, &path.key("kind"), message);
            return;
        }
        let mut known: Vec<&str> = host.plugins().map(|p| p.id()).collect();
        known.dedup();
        let why = host
            .load_errors()
            .iter()
            .find(|e| e.plugin.as_deref() == Some(action.plugin_id.as_str()))
            .map(|e| format!(" (it did not load: {})", e.kind))
            .unwrap_or_else(|| {
                let loaded = if known.is_empty() { "none".into() } else { known.join(", ") };
                format!(" (neither a loaded plugin nor an alias; loaded: {loaded})")
            });
        p.add(step, &path.key("plugin_id"), format!("unknown plugin `{}`{why}", action.plugin_id));
        return;
    };
    let metadata = plugin.runtime.metadata();
    if !metadata.capabilities.iter().any(|c| c == capability) {
        let declared = if metadata.capabilities.is_empty() { "none".into() } else { metadata.capabilities.join(", ") };
        p.add(
            step,
            &path.key("plugin_id"),
            format!(
                "plugin `{}` does not declare the `{capability}` capability, so it cannot be called here \
                 (it declares: {declared})",
                action.plugin_id
            ),
        );
        return;
    }
    let Some(op) = metadata.operation(&action.operation) else {
        let ops: Vec<&str> = metadata.operations.iter().map(|o| o.name.as_str()).collect();
        p.add(
            step,
            &path.key("method_name"),
            format!(
                "plugin `{}` has no operation `{}` (it has: {})",
                action.plugin_id,
                action.operation,
                ops.join(", ")
            ),
        );
        return;
    };
    // Parameters are checked against the operation's declared schema as far
    // as they are known: literal values are; a value that is an expression
    // (and whatever a schema says of it) is not. `required` and
    // `additionalProperties` of an object with expressions inside still are.
    let (Ok(t), Some(schema)) = (&template, &op.params_schema) else { return };
    let expressions = t.expression_paths();
    if expressions.iter().any(String::is_empty) {
        return; // The parameters are one expression: nothing is known.
    }
    let params =
        if action.parameters.is_null() { Value::Object(Default::default()) } else { action.parameters.clone() };
    let key = (action.plugin_id.clone(), action.operation.clone());
    let validator = schemas.entry(key).or_insert_with(|| match jsonschema::validator_for(schema) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(plugin = %action.plugin_id, "unusable parameter schema: {e}");
            None
        }
    });
    let Some(validator) = validator else { return };
    for error in validator.iter_errors(&params) {
        let at = error.instance_path().to_string();
        if !known_before_the_run(&at, error.kind(), &expressions) {
            continue;
        }
        let shown = if at.is_empty() { String::new() } else { format!(" at {at}") };
        p.add(step, &params_path, format!("parameters do not fit `{}`{shown}: {error}", action.operation));
    }
}

/// Whether a schema error at instance path `at` holds whatever the
/// expressions at `expressions` (JSON Pointers) evaluate to: not when it is
/// about an expression's value (at or below it), nor when it is about a value
/// holding one and its keyword looks at that value's contents (`enum`,
/// `oneOf`, …); the object's own keys (`required`, `additionalProperties`),
/// its type and its size are known.
fn known_before_the_run(at: &str, kind: &jsonschema::error::ValidationErrorKind, expressions: &[String]) -> bool {
    use jsonschema::error::ValidationErrorKind as K;
    let below = |outer: &str, inner: &str| {
        inner.len() > outer.len() && inner.starts_with(outer) && inner[outer.len()..].starts_with('/')
    };
    if expressions.iter().any(|e| e == at || below(e, at)) {
        return false;
    }
    let holds_an_expression = expressions.iter().any(|e| below(at, e));
    !holds_an_expression
        || matches!(
            kind,
            K::Required { .. }
                | K::AdditionalProperties { .. }
                | K::Type { .. }
                | K::MinProperties { .. }
                | K::MaxProperties { .. }
                | K::MinItems { .. }
                | K::MaxItems { .. }
                | K::PropertyNames { .. }
        )
}

/// Check what an expression refers to: declared inputs, existing steps that
/// run before it (a dependency, or earlier in a serial workflow).
fn check_references(
    expr: &Expr,
    workflow: &Workflow,
    from: Option<(usize, &str)>,
    dag: Option<&Dag>,
    index: &HashMap<&str, usize>,
    (path, allowed): (&DocPath, Names),
    p: &mut Problems,
) {
    let secrets_allowed = allowed.secrets;
    let step = from.map(|(_, id)| id);
    for reference in expr.references() {
        let mut parts = reference.split('.');
        match (parts.next(), parts.next()) {
            (Some("inputs"), Some(name)) if !workflow.inputs.contains_key(name) => {
                p.add(step, path, format!("`{}` reads undeclared input `{name}`", expr.source()));
            }
            (Some("steps"), Some(target)) => match index.get(target) {
                None => p.add(step, path, format!("`{}` reads unknown step `{target}`", expr.source())),
                Some(&t) => {
                    if let (Some((i, _)), Some(dag)) = (from, dag) {
                        let before =
                            if workflow.mode.is_serial() { dag.rank[t] < dag.rank[i] } else { dag.depends_on(i, t) };
                        if !before {
                            let why = if workflow.mode.is_serial() {
                                "does not run before it"
                            } else {
                                "is not among its dependencies"
                            };
                            p.add(step, path, format!("`{}` reads step `{target}`, which {why}", expr.source()));
                        }
                    }
                }
            },
            (Some("inputs" | "steps" | "context" | "workflow"), _) => {}
            (Some("secrets"), _) if !secrets_allowed => p.add(
                step,
                path,
                format!(
                    "`{}` reads `secrets`: secrets may be named only in the `parameters` of a step that \
                     calls a plugin, or its compensation's (where they go to the plugin, never into a record)",
                    expr.source()
                ),
            ),
            (Some("secrets"), Some(name)) => {
                if let Err(e) = plexus_host::secrets::check_name(name) {
                    p.add(step, path, format!("`{}`: {e}", expr.source()));
                }
            }
            (Some("item" | "index"), _) if allowed.item => {}
            (Some(name @ ("item" | "index")), _) => p.add(
                step,
                path,
                format!("`{}` reads `{name}`, which only a map step's (`for_each`) parameters have", expr.source()),
            ),
            (Some("secrets"), None) => p.add(
                step,
                path,
                format!("`{}` reads `secrets` as a whole: name one, as `secrets.NAME`", expr.source()),
            ),
            (Some(other), _) => {
                p.add(
                    step,
                    path,
                    format!(
                        "`{}` reads unknown name `{other}` (known: inputs, steps, context, workflow, secrets)",
                        expr.source()
                    ),
                );
            }
            (None, _) => {}
        }
    }
}

/// The names an expression may read beyond inputs, steps, context and workflow.
#[derive(Debug, Default, Clone, Copy)]
struct Names {
    /// `secrets.NAME`: a step's parameters.
    secrets: bool,
    /// `item` and `index`: a map step's parameters.
    item: bool,
}

/// The secret names `exprs` read (`secrets.NAME`), sorted, once each.
fn secret_names(exprs: &[&Expr]) -> Vec<String> {
    let names: std::collections::BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| e.references())
        .filter_map(|r| r.strip_prefix("secrets.").map(|rest| rest.split('.').next().unwrap_or(rest).to_owned()))
        .collect();
    names.into_iter().collect()
}

/// Where each step is in the document (`steps.<id>` or `steps[<i>]`), by declaration index.
/// Validate the inline sub-workflows of `workflow`'s steps, each as a
/// document of its own (its `id` by default `<workflow id>.<step id>`);
/// their problems are reported at their paths and lines in `doc`.
fn validate_inline(
    workflow: &mut definition::Workflow,
    doc: &Document,
    doc_paths: &[DocPath],
    host: Option<&Host>,
    capability: &str,
    depth: usize,
    p: &mut Problems,
) {
    use definition::is_valid_id;
    let path_of_index = |i: usize| doc_paths.get(i).cloned().unwrap_or_default();
    let parent = workflow.id.clone();
    for (i, step) in workflow.steps.iter_mut().enumerate() {
        let Some(call) = step.call.as_mut() else { continue };
        let Some(definition::InlineWorkflow::Written(value)) = call.inline.clone() else { continue };
        let at = doc_paths.get(i).cloned().unwrap_or_default().key("workflow");
        if depth >= definition::MAX_NESTING {
            let message = format!("inline sub-workflows nest at most {} deep", definition::MAX_NESTING);
            p.add(Some(&step.id), &at, message);
            continue;
        }
        // Its id is derived, in a namespace of its own that registration keeps
        // for inline workflows: one can never replace a registered workflow.
        let id = definition::inline_id(&parent, &step.id);
        if step.id.contains('.') || !is_valid_id(&id, definition::MAX_ID_LEN) {
            let message = format!(
                "a step with an inline workflow has an id of letters, digits, `-` and `_` (its workflow is `{}<workflow id>.<step id>`, at most {} bytes)",
                definition::INLINE_PREFIX,
                definition::MAX_ID_LEN
            );
            p.add(Some(&step.id), &path_of_index(i), message);
            continue;
        }
        let mut value = (*value).clone();
        if let Value::Object(map) = &mut value {
            if map.contains_key("id") {
                p.add(Some(&step.id), &at.key("id"), "an inline workflow's id is its step's: leave `id` out");
                continue;
            }
            map.insert("id".into(), Value::String(id));
        }
        let part = doc.part(&at, value);
        match validate_nested(&part, host, capability, depth + 1) {
            Ok(valid) => {
                call.workflow = valid.workflow.id.clone();
                call.inline = Some(definition::InlineWorkflow::Valid(std::sync::Arc::new(valid)));
            }
            Err(problems) => {
                let prefix = doc.written_path(&at).to_string();
                for q in problems {
                    let path = if q.path.is_empty() { prefix.clone() } else { format!("{prefix}.{}", q.path) };
                    let message = match &q.step {
                        Some(inner) => format!("inline workflow, step `{inner}`: {}", q.message),
                        None => format!("inline workflow: {}", q.message),
                    };
                    let line = q.line.or_else(|| doc.line_of(&doc.written_path(&at)));
                    p.list.push(Problem { step: Some(step.id.clone()), path, line, message });
                }
            }
        }
    }
}

fn step_doc_paths(doc: &Document, count: usize) -> Vec<DocPath> {
    let steps = DocPath::default().key("steps");
    match doc.value.get("steps") {
        Some(Value::Object(map)) => map.keys().map(|k| steps.key(k)).collect(),
        _ => (0..count).map(|i| steps.index(i)).collect(),
    }
}
