//! The workflow model and its reading from a [`Document`].
//!
//! One model reads both our format and QtForge's `Workflow::from_json`
//! documents unchanged (`steps` keyed by id, `execution_mode` 0–3, integer
//! millisecond durations, `rollback_steps` keyed by step id, `max_retries` +
//! `retry_delay`). Also accepted: `steps` as a list, modes as words,
//! durations as text (`"30s"`). Reading never stops at the first problem:
//! every unknown field, wrong type or bad value is collected as a [`Problem`].
//! The format itself (serde structs, and the JSON Schema generated from
//! them) is in `raw`.

use super::duration;
use super::source::{DocPath, Document};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How the steps of a workflow are scheduled (QtForge's `execution_mode` 0–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    /// 0: one step at a time, in a stable topological order (declaration order breaks ties).
    Sequential,
    /// 1: every step whose dependencies are done runs at once, up to `max_parallel`.
    Parallel,
    /// 2: like parallel; a step runs only if its `when` holds (it is Skipped otherwise).
    Conditional,
    /// 3: one step at a time; every completed step's object output is also merged
    /// into the shared context seen by later steps (QtForge's pipeline).
    Pipeline,
}

impl ExecutionMode {
    pub(crate) fn parse(value: &Value) -> Result<Self, String> {
        match value {
            Value::Number(n) => match n.as_u64() {
                Some(0) => Ok(Self::Sequential),
                Some(1) => Ok(Self::Parallel),
                Some(2) => Ok(Self::Conditional),
                Some(3) => Ok(Self::Pipeline),
                _ => Err(format!("unknown execution_mode {n}: expected 0–3")),
            },
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "sequential" => Ok(Self::Sequential),
                "parallel" => Ok(Self::Parallel),
                "conditional" => Ok(Self::Conditional),
                "pipeline" => Ok(Self::Pipeline),
                _ => Err(format!(
                    "unknown execution_mode \"{s}\": expected sequential, parallel, conditional or pipeline"
                )),
            },
            other => Err(format!("execution_mode must be 0–3 or a word, not {other}")),
        }
    }

    /// Whether steps run one at a time.
    pub fn is_serial(self) -> bool {
        matches!(self, Self::Sequential | Self::Pipeline)
    }
}

impl fmt::Display for ExecutionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sequential => "sequential",
            Self::Parallel => "parallel",
            Self::Conditional => "conditional",
            Self::Pipeline => "pipeline",
        })
    }
}

/// The type of a declared input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// Text.
    String,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// Anything.
    Any,
}

impl InputType {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "string" => Self::String,
            "number" => Self::Number,
            "integer" => Self::Integer,
            "boolean" | "bool" => Self::Boolean,
            "object" => Self::Object,
            "array" => Self::Array,
            "any" => Self::Any,
            _ => return None,
        })
    }

    /// Whether `value` has this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Number => value.is_number(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Boolean => value.is_boolean(),
            Self::Object => value.is_object(),
            Self::Array => value.is_array(),
            Self::Any => true,
        }
    }

    /// Read a command-line `key=value` text as this type (`any` tries JSON, then text).
    ///
    /// # Errors
    /// [`InvalidValue`]: the text is not a value of this type.
    pub fn from_text(self, text: &str) -> Result<Value, InvalidValue> {
        let json = || serde_json::from_str::<Value>(text);
        let invalid = || InvalidValue(format!("`{text}` is not a valid {self:?}").to_lowercase());
        let value = match self {
            Self::String => Value::String(text.to_owned()),
            Self::Any => json().unwrap_or_else(|_| Value::String(text.to_owned())),
            _ => json().map_err(|_| invalid())?,
        };
        if self.accepts(&value) { Ok(value) } else { Err(invalid()) }
    }
}

/// A declared workflow input.
#[derive(Debug, Clone, Serialize)]
pub struct InputSpec {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: InputType,
    /// Used when the caller gives none.
    pub default: Option<Value>,
    /// Whether the caller must give it (ignored when there is a default).
    pub required: bool,
    /// What it is for.
    pub description: String,
}

/// Backoff between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// The same delay every time.
    Constant,
    /// `initial_delay × multiplier^(retry − 1)`, capped at `max_delay`.
    Exponential,
}

/// Which failures of a step its retry policy tries again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryOn {
    /// Only failures marked retryable: plugin errors the plugin marked so,
    /// timeouts, crashed workers (as in Temporal, Dagster, Argo). The default
    /// of Plexus's own documents.
    #[default]
    Retryable,
    /// Any failure but a cancel, as QtForge's `max_retries` does: the default
    /// of QtForge-shaped documents (steps keyed by id).
    Any,
}

impl RetryOn {
    /// Whether a failure (not a cancel) that is `retryable` or not is tried again.
    pub fn covers(self, retryable: bool) -> bool {
        retryable || self == RetryOn::Any
    }
}

/// When and how often a failed step is tried again: by default only
/// retryable failures ([`RetryOn`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Attempts in all, first one included (≥ 1). QtForge's `max_retries: n` is `n + 1`.
    pub max_attempts: u32,
    /// Delay before the first retry.
    #[serde(serialize_with = "duration::serialize_ms")]
    pub initial_delay: Duration,
    /// Constant or exponential.
    pub backoff: Backoff,
    /// Growth factor of exponential backoff (default 2).
    pub multiplier: f64,
    /// Upper bound of any delay.
    #[serde(serialize_with = "duration::serialize_ms")]
    pub max_delay: Duration,
    /// Random extra delay, as a fraction of the delay (0.0–1.0).
    pub jitter: f64,
    /// Which failures are tried again.
    pub retry_on: RetryOn,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_delay: Duration::from_secs(1),
            backoff: Backoff::Constant,
            multiplier: 2.0,
            max_delay: Duration::from_secs(300),
            jitter: 0.0,
            retry_on: RetryOn::Retryable,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next` (2 = first retry), without jitter.
    pub(crate) fn base_delay(&self, next: u32) -> Duration {
        let retry = next.saturating_sub(1).max(1);
        let delay = match self.backoff {
            Backoff::Constant => self.initial_delay,
            Backoff::Exponential => {
                let factor = self.multiplier.max(1.0).powi(retry as i32 - 1);
                Duration::try_from_secs_f64(self.initial_delay.as_secs_f64() * factor).unwrap_or(self.max_delay)
            }
        };
        delay.min(self.max_delay)
    }

    /// The delay before attempt `next`, with `jitter` applied from `random` in 0.0..1.0.
    pub fn delay(&self, next: u32, random: f64) -> Duration {
        let base = self.base_delay(next);
        let extra =
            Duration::try_from_secs_f64(base.as_secs_f64() * self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0))
                .unwrap_or_default();
        base.saturating_add(extra)
    }
}

/// A plugin operation with parameters: a step's work, or a compensation.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// Plugin id.
    pub plugin_id: String,
    /// The kind to call, for a plugin loaded as both (`kind: native` or
    /// `wasm`); `None`: the host's preferred kind
    /// ([`plexus_host::PluginKind::PREFERENCE`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<plexus_host::PluginKind>,
    /// Operation name (`method_name`).
    pub operation: String,
    /// Parameters; strings may hold `${{ … }}` templates.
    pub parameters: Value,
}

/// One step of a workflow.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Unique id within the workflow.
    pub id: String,
    /// Display name (defaults to the id).
    pub name: String,
    /// What it does.
    pub description: String,
    /// The plugin operation it runs.
    pub action: Action,
    /// QtForge's `service_name`: accepted and kept, not used for routing.
    pub service_name: Option<String>,
    /// Steps that must complete first.
    pub dependencies: Vec<String>,
    /// Condition evaluated before the step starts; false skips it.
    pub when: Option<String>,
    /// Per-attempt timeout (default: the plugin's `limits.timeout_ms`).
    #[serde(serialize_with = "duration::serialize_opt_ms")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Whether its failure fails the workflow (default true).
    pub critical: bool,
    /// An inline rollback action, run if the workflow fails after this step completed.
    pub compensate: Option<Action>,
    /// Free-form metadata.
    pub metadata: Value,
    /// What it needs of the workflow's [`ResourceBudget`] while it runs.
    pub resources: StepResources,
    /// A map step: its operation runs once per item of a list known at run time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<MapSpec>,
    /// A wait step: it calls no plugin; it waits for a signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitSpec>,
    /// A sub-workflow step: it runs a registered workflow as a child execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<SubWorkflow>,
}

/// A sub-workflow step (Temporal's child workflows, Argo's templates calling
/// templates): it runs registered workflow `workflow` as a child execution
/// (id `<parent>~<step>`), its `parameters` the child's inputs, and
/// completes with `{"execution_id", "outputs"}` when the child completes
/// (fails when it fails or is cancelled). It calls no plugin and, in the
/// daemon, waits parked (no worker). A cancel of the parent cancels the
/// child; a rollback of the parent rolls back a completed child (its
/// compensations), unless the step has its own `compensate`. Nesting is
/// bounded: [`MAX_NESTING`] levels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubWorkflow {
    /// The registered workflow's id (an inline one's: its `id`, by default
    /// `<parent workflow id>.<step id>`).
    pub workflow: String,
    /// Its version (default: the current one when the child starts).
    pub version: Option<u32>,
    /// The definition, when the step writes it (an inline sub-workflow,
    /// Argo's inline templates): the daemon registers it under its id when
    /// the child starts (a new version only when it changed).
    #[serde(skip)]
    pub inline: Option<InlineWorkflow>,
}

/// What the ids of inline sub-workflows start with: `_inline.<workflow
/// id>.<step id>`. Registration refuses it for any other workflow, so an
/// inline definition never replaces a registered one.
pub const INLINE_PREFIX: &str = "_inline.";

/// The id of the inline sub-workflow of step `step` of workflow `parent`.
pub fn inline_id(parent: &str, step: &str) -> String {
    format!("{INLINE_PREFIX}{parent}.{step}")
}

/// An inline sub-workflow's definition.
#[derive(Clone)]
pub enum InlineWorkflow {
    /// As written (read, not yet validated).
    Written(std::sync::Arc<Value>),
    /// Validated (against the host's plugins, when validation had a host).
    Valid(std::sync::Arc<crate::validate::ValidWorkflow>),
}

impl InlineWorkflow {
    /// The definition as a Plexus document (JSON), with its (derived) id.
    pub fn to_json(&self) -> Value {
        match self {
            InlineWorkflow::Written(value) => (**value).clone(),
            InlineWorkflow::Valid(valid) => valid.workflow.to_json(),
        }
    }

    /// [`Self::to_json`] without its id, as a step writes it (the id is
    /// derived from the step's again when it is read).
    pub fn written(&self) -> Value {
        let mut value = self.to_json();
        if let Value::Object(map) = &mut value {
            map.remove("id");
        }
        value
    }
    /// The validated workflow, once validation made it.
    pub fn valid(&self) -> Option<&std::sync::Arc<crate::validate::ValidWorkflow>> {
        match self {
            InlineWorkflow::Valid(valid) => Some(valid),
            InlineWorkflow::Written(_) => None,
        }
    }
}

impl std::fmt::Debug for InlineWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InlineWorkflow(..)")
    }
}

impl PartialEq for InlineWorkflow {
    fn eq(&self, other: &Self) -> bool {
        self.to_json() == other.to_json()
    }
}

/// How deep sub-workflows nest (a child's child's … child).
pub const MAX_NESTING: usize = 8;

/// A step that waits for a named signal (Temporal's signals, Argo's
/// suspend, Windmill's approval steps): delivered by `POST
/// /v1/executions/{id}/signals/{name}` (`plexus exec signal`), its payload
/// becomes the step's output. It calls no plugin and, in the daemon, costs
/// no worker while it waits (the execution is parked until the signal or
/// the timeout). A signal delivered before the step waits is kept for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitSpec {
    /// The signal's name: letters, digits, `-`, `_`, `.`, at most 128.
    pub signal: String,
    /// How long it waits (from when it started waiting; a restart does not
    /// reset it); then it fails with `timeout`. `None`: forever.
    #[serde(serialize_with = "duration::serialize_opt_ms")]
    pub timeout: Option<Duration>,
    /// An approval: the signal must say who (`by`), and the output records
    /// it: `{"approved": true, "by", "at_ms", "payload"}`.
    pub approval: bool,
}

/// A map step (dynamic fan-out: Airflow's dynamic task mapping, Argo's
/// `withParam`): `for_each` gives a list when the step starts; its operation
/// runs once per item, `item` and `index` in its parameters' scope, each an
/// item with its own status, attempts and retries (the step's retry policy
/// and timeout apply per item). The step's output is the list of the items'
/// outputs, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapSpec {
    /// The list: one `${{ … }}` expression (e.g. `${{ steps.list.output.items }}`).
    pub for_each: String,
    /// Stop starting items at the first that fails (after its retries) —
    /// the default; `false` runs every item, and the step fails if any did
    /// (its output holds `null` for them).
    pub fail_fast: bool,
    /// Items running at once (default: the workflow's `max_parallel`; they
    /// take the workflow's slots too).
    pub max_parallel: Option<usize>,
}

/// The most items a map step runs.
pub const MAX_MAP_ITEMS: usize = 100_000;

/// The most bytes (as JSON) a map step's items' outputs may add up to: its
/// output holds them all (64 MiB). An item past it fails.
pub const MAX_MAP_OUTPUT_BYTES: usize = 64 << 20;

/// What a step needs while it runs (`resources: {cpu: 1, memory_mb: 512}`),
/// counted against its workflow's [`ResourceBudget`]. Zero (the default)
/// needs nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StepResources {
    /// CPU, in thousandths of a core (`cpu: 0.5` is 500).
    pub cpu_millis: u64,
    /// Memory, MiB.
    pub memory_mb: u64,
}

impl StepResources {
    /// Whether it needs nothing.
    pub fn is_zero(&self) -> bool {
        self.cpu_millis == 0 && self.memory_mb == 0
    }
}

/// A workflow's resource budget (Codomyrmex's `resources`: `cpu_limit`,
/// `memory_limit_gb`): the engine never starts a step whose
/// [`StepResources`], with those of the steps running, would exceed it; such
/// steps wait, in order (the first ready step that does not fit holds back
/// the ones after it, so a large step is not starved by small ones). `None`
/// is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ResourceBudget {
    /// CPU, in thousandths of a core.
    pub cpu_millis: Option<u64>,
    /// Memory, MiB.
    pub memory_mb: Option<u64>,
    /// Codomyrmex's `disk_space_gb`: kept, not a budget (steps declare no disk).
    pub disk_space_gb: Option<f64>,
}

impl ResourceBudget {
    /// Whether `need`, on top of `used`, stays within the budget.
    pub fn fits(&self, used: StepResources, need: StepResources) -> bool {
        let within = |limit: Option<u64>, used: u64, need: u64| limit.is_none_or(|l| used.saturating_add(need) <= l);
        within(self.cpu_millis, used.cpu_millis, need.cpu_millis)
            && within(self.memory_mb, used.memory_mb, need.memory_mb)
    }
}

/// What a workflow's `transaction` key says about the transactions its
/// executions run in (QtForge's key; see [`plexus_client::Transaction`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransactionRule {
    /// `transaction: <id>`: an execution started without a transaction joins
    /// this one (which must be open).
    Join(String),
    /// `transaction: true`: an execution must be started in a transaction.
    Required,
}

/// A workflow definition.
#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
    /// Unique id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Scheduling mode.
    pub mode: ExecutionMode,
    /// Overall timeout.
    #[serde(serialize_with = "duration::serialize_opt_ms")]
    pub timeout: Option<Duration>,
    /// Most steps running at once in parallel modes (default: number of cores).
    pub max_parallel: Option<usize>,
    /// Declared inputs.
    pub inputs: BTreeMap<String, InputSpec>,
    /// Steps, in declaration order.
    pub steps: Vec<Step>,
    /// Rollback actions keyed by step id (QtForge's `rollback_steps`).
    pub rollback: BTreeMap<String, Action>,
    /// Workflow outputs: name → value with templates.
    pub outputs: Map<String, Value>,
    /// Free-form metadata.
    pub metadata: Value,
    /// The transaction its executions run in, or that they need one.
    pub transaction: Option<TransactionRule>,
    /// Its resource budget, if it has one.
    pub resources: Option<ResourceBudget>,
}

impl Workflow {
    /// The transaction an execution asking for `requested` runs in: the one
    /// requested, else the workflow's own ([`TransactionRule::Join`]).
    ///
    /// # Errors
    /// The workflow says `transaction: true` and none was requested.
    pub fn transaction_for(&self, requested: Option<&str>) -> Result<Option<String>, String> {
        match (requested, &self.transaction) {
            (Some(id), _) => Ok(Some(id.to_owned())),
            (None, Some(TransactionRule::Join(id))) => Ok(Some(id.clone())),
            (None, Some(TransactionRule::Required)) => Err(format!(
                "workflow `{}` runs only in a transaction (`transaction: true`): start it with one",
                self.id
            )),
            (None, None) => Ok(None),
        }
    }

    /// The step called `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The compensation of step `id`: `rollback_steps[id]`, else its `compensate`.
    pub fn compensation(&self, id: &str) -> Option<&Action> {
        self.rollback.get(id).or_else(|| self.step(id).and_then(|s| s.compensate.as_ref()))
    }

    /// The definition as a Plexus workflow document (JSON, steps as a list),
    /// QtForge's `Workflow::to_json`: reading it back gives this workflow
    /// again, every default written out (timeouts and delays in integer ms,
    /// each step's whole retry policy), so it runs the same whichever format
    /// it was first written in.
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("id".into(), json!(self.id));
        doc.insert("name".into(), json!(self.name));
        doc.insert("description".into(), json!(self.description));
        doc.insert("execution_mode".into(), json!(self.mode.to_string()));
        put_ms(&mut doc, "timeout", self.timeout);
        if let Some(n) = self.max_parallel {
            doc.insert("max_parallel".into(), json!(n));
        }
        if let Some(budget) = &self.resources {
            let mut resources = Map::new();
            if let Some(cpu) = budget.cpu_millis {
                resources.insert("cpu_limit".into(), json!(cpu as f64 / 1000.0));
            }
            if let Some(mb) = budget.memory_mb {
                resources.insert("memory_limit_mb".into(), json!(mb));
            }
            if let Some(disk) = budget.disk_space_gb {
                resources.insert("disk_space_gb".into(), json!(disk));
            }
            doc.insert("resources".into(), Value::Object(resources));
        }
        if !self.inputs.is_empty() {
            let inputs: Map<String, Value> = self
                .inputs
                .iter()
                .map(|(name, spec)| {
                    let mut input = Map::new();
                    input.insert("type".into(), json!(spec.kind));
                    if let Some(default) = &spec.default {
                        input.insert("default".into(), default.clone());
                    }
                    input.insert("required".into(), json!(spec.required));
                    input.insert("description".into(), json!(spec.description));
                    (name.clone(), Value::Object(input))
                })
                .collect();
            doc.insert("inputs".into(), Value::Object(inputs));
        }
        doc.insert("steps".into(), self.steps.iter().map(Step::to_json).collect());
        if !self.rollback.is_empty() {
            let rollback = self.rollback.iter().map(|(id, a)| (id.clone(), Value::Object(a.to_json()))).collect();
            doc.insert("rollback_steps".into(), Value::Object(rollback));
        }
        if !self.outputs.is_empty() {
            doc.insert("outputs".into(), Value::Object(self.outputs.clone()));
        }
        if !self.metadata.is_null() {
            doc.insert("metadata".into(), self.metadata.clone());
        }
        match &self.transaction {
            Some(TransactionRule::Join(id)) => doc.insert("transaction".into(), json!(id)),
            Some(TransactionRule::Required) => doc.insert("transaction".into(), json!(true)),
            None => None,
        };
        Value::Object(doc)
    }
}

impl Step {
    /// This step as an entry of a Plexus document's `steps` list.
    fn to_json(&self) -> Value {
        let mut step = Map::new();
        step.insert("id".into(), json!(self.id));
        step.insert("name".into(), json!(self.name));
        step.insert("description".into(), json!(self.description));
        step.extend(self.action.to_json());
        if let Some(service) = &self.service_name {
            step.insert("service_name".into(), json!(service));
        }
        step.insert("dependencies".into(), json!(self.dependencies));
        if let Some(when) = &self.when {
            step.insert("when".into(), json!(when));
        }
        put_ms(&mut step, "timeout", self.timeout);
        let r = &self.retry;
        step.insert(
            "retry".into(),
            json!({
                "retry_on": r.retry_on,
                "max_attempts": r.max_attempts,
                "initial_delay": r.initial_delay.as_millis() as u64,
                "backoff": r.backoff,
                "multiplier": r.multiplier,
                "max_delay": r.max_delay.as_millis() as u64,
                "jitter": r.jitter,
            }),
        );
        step.insert("critical".into(), json!(self.critical));
        if let Some(compensate) = &self.compensate {
            step.insert("compensate".into(), Value::Object(compensate.to_json()));
        }
        if !self.metadata.is_null() {
            step.insert("metadata".into(), self.metadata.clone());
        }
        if !self.resources.is_zero() {
            let cpu = self.resources.cpu_millis as f64 / 1000.0;
            step.insert("resources".into(), json!({"cpu": cpu, "memory_mb": self.resources.memory_mb}));
        }
        if let Some(map) = &self.map {
            step.insert("for_each".into(), json!(map.for_each));
            step.insert("fail_fast".into(), json!(map.fail_fast));
            if let Some(n) = map.max_parallel {
                step.insert("max_parallel".into(), json!(n));
            }
        }
        // A wait or sub-workflow step calls no plugin: its parameters stay.
        if self.wait.is_some() || self.call.is_some() {
            step.remove("plugin_id");
            step.remove("kind");
            step.remove("operation");
        }
        if let Some(wait) = &self.wait {
            let mut w = Map::new();
            w.insert("signal".into(), json!(wait.signal));
            put_ms(&mut w, "timeout", wait.timeout);
            w.insert("approval".into(), json!(wait.approval));
            step.insert("wait_for".into(), Value::Object(w));
        }
        if let Some(call) = &self.call {
            match &call.inline {
                Some(inline) => step.insert("workflow".into(), inline.written()),
                None => step.insert("workflow".into(), json!(call.workflow)),
            };
            if let Some(version) = call.version {
                step.insert("workflow_version".into(), json!(version));
            }
        }
        Value::Object(step)
    }
}

impl Action {
    /// `plugin_id`, `kind` (if set), `operation` and `parameters`, as a document writes them.
    fn to_json(&self) -> Map<String, Value> {
        let mut action = Map::new();
        action.insert("plugin_id".into(), json!(self.plugin_id));
        if let Some(kind) = self.kind {
            action.insert("kind".into(), json!(kind));
        }
        action.insert("operation".into(), json!(self.operation));
        action.insert("parameters".into(), self.parameters.clone());
        action
    }
}

/// Write `duration` at `key` in whole ms, if there is one.
fn put_ms(map: &mut Map<String, Value>, key: &str, duration: Option<Duration>) {
    if let Some(d) = duration {
        map.insert(key.into(), json!(d.as_millis() as u64));
    }
}

/// One problem found in a workflow file.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The step concerned, if any.
    pub step: Option<String>,
    /// Where in the document, e.g. `steps.load.timeout`.
    pub path: String,
    /// 1-based line in a YAML file.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(step) = &self.step {
            write!(f, "step `{step}`: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Collects problems with their positions.
pub(crate) struct Problems<'d> {
    doc: &'d Document,
    /// Everything found so far.
    pub list: Vec<Problem>,
}

impl<'d> Problems<'d> {
    /// A collector over `doc`.
    /// A collector over `doc`, holding the problems found while translating
    /// it from another system's format.
    pub fn new(doc: &'d Document) -> Self {
        let list = doc
            .found
            .iter()
            .map(|(step, path, message)| Problem {
                step: step.clone(),
                path: path.to_string(),
                line: doc.line_of(path),
                message: message.clone(),
            })
            .collect();
        Self { doc, list }
    }
    /// Record `message` at `path` (in the document's Plexus form; reported
    /// at the same place in the document as written), for `step`.
    pub fn add(&mut self, step: Option<&str>, path: &DocPath, message: impl ToString) {
        let path = self.doc.written_path(path);
        let message = message.to_string();
        // A translated document's missing keys were reported in its own words.
        let path_text = path.to_string();
        if !self.doc.found.is_empty()
            && message.starts_with("missing `")
            && self.list.iter().any(|p| p.path == path_text && p.message.starts_with("missing `"))
        {
            return;
        }
        self.list.push(Problem {
            step: step.map(str::to_owned),
            path: path_text,
            line: self.doc.line_of(&path),
            message,
        });
    }
}

/// The longest workflow id.
pub const MAX_ID_LEN: usize = 200;

/// What a workflow or schedule id may hold.
pub const ID_RULE: &str = "use letters, digits, `-`, `_`, `.`";

/// Whether `id` is a valid workflow (or schedule) id: 1 to `max` ASCII
/// letters, digits, `-`, `_` and `.` (so it is safe in a URL path, a file
/// name and a log line). Workflows allow [`MAX_ID_LEN`].
pub fn is_valid_id(id: &str, max: usize) -> bool {
    !id.is_empty() && id.len() <= max && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A short name for a JSON value's type, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Read a workflow from `doc`, collecting every problem of shape and value.
/// Cross-step checks (dependencies, cycles, plugins) are in `validate`.
pub(crate) fn read(doc: &Document, p: &mut Problems) -> Workflow {
    super::raw::read(doc, p)
}

/// The JSON Schema (draft 2020-12) of workflow files, generated from the
/// structs the reader deserializes; committed as `schemas/workflow.schema.json`.
pub fn workflow_schema() -> Value {
    super::raw::schema()
}

/// A command-line `key=value` text that is not a value of the input's type,
/// e.g. "`abc` is not a valid integer".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);
