//! The workflow file format as serde reads it, and its JSON Schema.
//!
//! The `Raw*` structs mirror a document exactly as it is written, in our
//! format and in QtForge's; [`read`] turns them into the model
//! ([`Workflow`], [`Step`], …). Their doc comments are the descriptions of
//! the JSON Schema [`schema`] generates (committed as
//! `schemas/workflow.schema.json`), so the reader and the schema are one
//! description of the format.
//!
//! Every problem is reported at once: each part with its own path (the
//! workflow, each step, each `retry`, `compensate`, input and rollback
//! entry) is deserialized on its own, and when one does not fit, each of its
//! fields is tried alone so that every field in error is reported at its own
//! path (and so its line) while the others are still read. Every field is
//! optional to serde (`null` is the same as absent); what is required, and
//! the checks of values, are in the conversion, which reports what is
//! missing or out of range with the same paths.

use super::definition::{
    Action, Backoff, ExecutionMode, ID_RULE, InputSpec, InputType, MAX_ID_LEN, MapSpec, Problems, ResourceBudget,
    RetryOn, RetryPolicy, Step, StepResources, SubWorkflow, TransactionRule, WaitSpec, Workflow, is_valid_id, kind,
};
use super::duration;
use super::source::{DocPath, Document};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// What a workflow id must match (as [`is_valid_id`] checks it).
const ID_PATTERN: &str = "^[A-Za-z0-9._-]+$";
/// Text that is not blank.
const NOT_BLANK: &str = "\\S";

/// A Plexus workflow file (YAML or JSON). QtForge's `Workflow::from_json`
/// documents are valid too: steps keyed by id, `execution_mode` 0–3,
/// durations in integer milliseconds, `rollback_steps` keyed by step id,
/// `max_retries` + `retry_delay`. A document whose steps are keyed by id
/// runs with QtForge's step defaults: a step without `timeout` gets 60,000
/// ms, and retries try any failure again (`retry.retry_on: any`) unless the
/// step says otherwise. A `null` value is the same as leaving the key out.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Plexus workflow")]
pub(crate) struct RawWorkflow {
    /// Unique id: 1 to 200 ASCII letters, digits, `-`, `_` and `.`.
    #[schemars(required, length(min = 1, max = 200), pattern(ID_PATTERN))]
    id: Option<String>,
    /// Display name (defaults to the id).
    name: Option<String>,
    /// What it does.
    description: Option<String>,
    /// How the steps are scheduled (default sequential).
    execution_mode: Option<RawMode>,
    /// Overall timeout.
    timeout: Option<RawDuration>,
    /// Most steps running at once in the parallel modes (default: the number of cores).
    #[schemars(range(min = 1))]
    max_parallel: Option<u64>,
    /// Declared inputs: name → type, or name → `{type, default, required, description}`.
    inputs: Option<RawInputs>,
    /// The steps: a list (each with its `id`), or a mapping keyed by step id (QtForge).
    #[schemars(required)]
    steps: Option<RawSteps>,
    /// Rollback actions keyed by step id (QtForge); they win over a step's own `compensate`.
    rollback_steps: Option<RawRollback>,
    /// Workflow outputs: name → value, where strings may hold `${{ … }}` templates.
    outputs: Option<RawOutputs>,
    /// Free-form metadata.
    metadata: Option<Value>,
    /// QtForge's: accepted and ignored.
    #[expect(dead_code, reason = "accepted and ignored")]
    version: Option<Value>,
    /// QtForge's: accepted and ignored.
    #[expect(dead_code, reason = "accepted and ignored")]
    author: Option<Value>,
    /// QtForge's: accepted and ignored.
    #[expect(dead_code, reason = "accepted and ignored")]
    tags: Option<Value>,
    /// The transaction its executions run in: an id (an execution started
    /// without a transaction joins that open one), `true` (an execution must
    /// be started in a transaction) or `false` (no rule).
    transaction: Option<RawTransaction>,
    /// QtForge's: accepted and ignored.
    #[expect(dead_code, reason = "accepted and ignored")]
    created_at: Option<Value>,
    /// A resource budget (Codomyrmex's `resources`): no step starts whose
    /// `resources`, with those of the running steps, would exceed it.
    resources: Option<Nested<RawBudget>>,
}

/// A workflow's resource budget; a limit left out is no limit.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "resource_budget")]
pub(crate) struct RawBudget {
    /// CPU cores the running steps may need together (fractions allowed).
    #[schemars(range(min = 0, max = 4096))]
    cpu_limit: Option<f64>,
    /// Memory the running steps may need together, GiB (Codomyrmex's unit).
    #[schemars(range(min = 0, max = 65536))]
    memory_limit_gb: Option<f64>,
    /// The same in MiB (instead of `memory_limit_gb`).
    #[schemars(range(min = 0, max = 67108864))]
    memory_limit_mb: Option<u64>,
    /// Codomyrmex's disk limit, GiB: kept, not enforced (steps declare no disk).
    #[schemars(range(min = 0))]
    disk_space_gb: Option<f64>,
}

/// What a step needs while it runs, counted against the workflow's budget.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "step_resources")]
pub(crate) struct RawNeeds {
    /// CPU cores (fractions allowed).
    #[schemars(range(min = 0, max = 4096))]
    cpu: Option<f64>,
    /// Memory, MiB.
    #[schemars(range(min = 0, max = 67108864))]
    memory_mb: Option<u64>,
}

/// The most cores a budget or a step may name.
const MAX_CORES: f64 = 4096.0;
/// The most memory a budget or a step may name, MiB (64 TiB).
const MAX_MEMORY_MB: u64 = 64 << 20;

/// One step: a plugin operation with parameters, its dependencies, condition,
/// timeout, retries and compensation.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "step", transform = require_operation)]
pub(crate) struct RawStep {
    /// Unique id within the workflow; required in a list of steps, and equal
    /// to the key in a mapping of steps.
    #[schemars(pattern(NOT_BLANK))]
    id: Option<String>,
    /// Display name (defaults to the id).
    name: Option<String>,
    /// What it does.
    description: Option<String>,
    /// The plugin's id.
    #[schemars(required, pattern(NOT_BLANK))]
    plugin_id: Option<String>,
    /// For a plugin loaded as both kinds, the one to call (default: wasm, the sandboxed one).
    kind: Option<RawKind>,
    /// The operation (QtForge's name for it); `operation` is the same.
    method_name: Option<String>,
    /// The operation; if `method_name` is given too, they must agree.
    operation: Option<String>,
    /// QtForge's `service_name`: accepted and kept, not used for routing.
    service_name: Option<String>,
    /// Parameters; strings may hold `${{ … }}` templates.
    parameters: Option<Map<String, Value>>,
    /// Ids of the steps that must complete first: a list, or one id.
    dependencies: Option<RawDependencies>,
    /// A condition (a minijinja expression) evaluated before the step starts; false skips it.
    when: Option<String>,
    /// Per-attempt timeout (default: the plugin's `limits.timeout_ms`; in a
    /// QtForge-shaped document, steps keyed by id, QtForge's 60,000 ms).
    timeout: Option<RawDuration>,
    /// QtForge's retries after the first attempt (`max_attempts` is this + 1).
    max_retries: Option<u64>,
    /// QtForge's delay before a retry (`initial_delay`).
    retry_delay: Option<RawDuration>,
    /// When and how often the step is tried again (it wins over `max_retries` and `retry_delay`).
    retry: Option<Nested<RawRetry>>,
    /// Whether its failure fails the workflow (default true).
    critical: Option<bool>,
    /// An inline rollback action, run if the workflow fails after this step completed.
    compensate: Option<Nested<RawAction>>,
    /// Free-form metadata.
    metadata: Option<Value>,
    /// What it needs of the workflow's `resources` budget while it runs.
    resources: Option<Nested<RawNeeds>>,
    /// Makes it a map step: one `${{ … }}` expression giving a list; the
    /// operation runs once per item (`item` and `index` in the parameters'
    /// scope), at most 100,000.
    for_each: Option<String>,
    /// A map step: stop at the first item that fails (default true), or run
    /// them all and fail if any did.
    fail_fast: Option<bool>,
    /// A map step: items running at once (default: the workflow's `max_parallel`).
    #[schemars(range(min = 1))]
    max_parallel: Option<u64>,
    /// Makes it a wait step (no plugin): it waits for a named signal.
    wait_for: Option<Nested<RawWait>>,
    /// Makes it a sub-workflow step (no plugin): the id of a registered
    /// workflow to run as a child execution, or a workflow definition
    /// written here (inline, without `id`: it is `_inline.<workflow id>.<step
    /// id>`); `parameters` are its inputs.
    workflow: Option<RawSubWorkflow>,
    /// A sub-workflow step: the child workflow's version (default: its current one).
    #[schemars(range(min = 1))]
    workflow_version: Option<u64>,
}

/// What a wait step waits for.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "wait_for")]
pub(crate) struct RawWait {
    /// The signal's name (`POST /v1/executions/{id}/signals/{name}`).
    #[schemars(required, pattern(NOT_BLANK))]
    signal: Option<String>,
    /// How long to wait, e.g. "24h" (default: forever); then the step fails.
    timeout: Option<RawDuration>,
    /// An approval: the signal must say who approved, and the output records it.
    approval: Option<bool>,
}

/// Which kind of a plugin to call.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "kind")]
pub(crate) enum RawKind {
    /// The native library.
    Native,
    /// The WASM component.
    Wasm,
}

impl RawKind {
    fn into_kind(self) -> plexus_host::PluginKind {
        match self {
            RawKind::Native => plexus_host::PluginKind::Native,
            RawKind::Wasm => plexus_host::PluginKind::Wasm,
        }
    }
}

/// When and how often a failed step is tried again. By default only
/// retryable failures are (plugin errors marked retryable, timeouts, crashed
/// workers); in QtForge-shaped documents (steps keyed by id), any failure.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "retry")]
pub(crate) struct RawRetry {
    /// Which failures are tried again: `retryable` or `any` (any but a cancel).
    retry_on: Option<RawRetryOn>,
    /// Attempts in all, the first one included (default 1).
    #[schemars(range(min = 1))]
    max_attempts: Option<u64>,
    /// Delay before the first retry (default 1s).
    initial_delay: Option<RawDuration>,
    /// The same delay every time (default), or exponential.
    backoff: Option<RawBackoff>,
    /// Growth factor of exponential backoff (default 2).
    #[schemars(range(min = 1))]
    multiplier: Option<f64>,
    /// Upper bound of any delay (default 5m).
    max_delay: Option<RawDuration>,
    /// Random extra delay, as a fraction of the delay (default 0).
    #[schemars(range(min = 0, max = 1))]
    jitter: Option<f64>,
}

/// A plugin operation with parameters: a step's compensation, or a rollback step.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "action", transform = require_operation)]
pub(crate) struct RawAction {
    /// The plugin's id.
    #[schemars(required, pattern(NOT_BLANK))]
    plugin_id: Option<String>,
    /// For a plugin loaded as both kinds, the one to call (default: wasm, the sandboxed one).
    kind: Option<RawKind>,
    /// The operation (QtForge's name for it); `operation` is the same.
    method_name: Option<String>,
    /// The operation, when `method_name` is not given.
    operation: Option<String>,
    /// Parameters; strings may hold `${{ … }}` templates.
    parameters: Option<Value>,
    /// QtForge's rollback entries may repeat it: accepted and ignored.
    #[expect(dead_code, reason = "accepted and ignored")]
    id: Option<Value>,
    /// Accepted and ignored.
    #[expect(dead_code, reason = "accepted and ignored")]
    name: Option<Value>,
    /// Accepted and ignored.
    #[expect(dead_code, reason = "accepted and ignored")]
    description: Option<Value>,
    /// Accepted and ignored.
    #[expect(dead_code, reason = "accepted and ignored")]
    service_name: Option<Value>,
}

/// A declared input.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "input")]
pub(crate) struct RawInput {
    /// Its type (default any).
    #[serde(rename = "type")]
    kind: Option<RawInputType>,
    /// Used when the caller gives none; must be of the type.
    default: Option<Value>,
    /// Whether the caller must give it (default: when there is no default).
    required: Option<bool>,
    /// What it is for.
    description: Option<String>,
}

/// `method_name` or `operation`: at least one of them, as text (a schema transform).
fn require_operation(schema: &mut Schema) {
    let either = |key: &str| json!({ "required": [key], "properties": { key: { "type": "string" } } });
    schema.insert("anyOf".into(), json!([either("method_name"), either("operation")]));
}

/// Implements `Deserialize` by reading the JSON value and converting it with
/// `$convert: fn(Value) -> Result<Self, String>`, whose message is the error.
macro_rules! deserialize_via_value {
    ($ty:ty, $convert:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let convert: fn(Value) -> Result<Self, String> = $convert;
                convert(Value::deserialize(d)?).map_err(D::Error::custom)
            }
        }
    };
}

/// Implements `JsonSchema` with a name (the key under `$defs`) and a
/// schema; `inline` for the parts used once, written where they are used.
macro_rules! schema {
    ($ty:ty, inline $name:literal, $schema:expr) => {
        schema!(@ $ty, $name, $schema, true);
    };
    ($ty:ty, $name:literal, $schema:expr) => {
        schema!(@ $ty, $name, $schema, false);
    };
    (@ $ty:ty, $name:literal, $schema:expr, $inline:literal) => {
        impl JsonSchema for $ty {
            fn inline_schema() -> bool {
                $inline
            }
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn json_schema(g: &mut SchemaGenerator) -> Schema {
                let schema: fn(&mut SchemaGenerator) -> Schema = $schema;
                schema(g)
            }
        }
    };
}

/// A duration: whole milliseconds, or text `humantime` reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawDuration(Duration);

deserialize_via_value!(RawDuration, |v| duration::parse(&v).map(RawDuration).map_err(|e| e.to_string()));

/// The units `humantime` reads.
const DURATION_UNITS: &str = "nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y";

schema!(RawDuration, "duration", |_| {
    let max_ms = duration::MAX.as_millis() as u64;
    let text = format!("^\\s*([0-9]+(\\.[0-9]+)?\\s*({DURATION_UNITS})\\s*)+$");
    json_schema!({
        "description": "Whole milliseconds, or text such as \"500ms\", \"30s\", \"5m\", \"1h 30m\"; at most 30 days",
        "oneOf": [
            { "type": "integer", "minimum": 0, "maximum": max_ms },
            { "type": "string", "pattern": text }
        ]
    })
});

/// `execution_mode`: 0–3, or a word in any case.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawMode(ExecutionMode);

deserialize_via_value!(RawMode, |v| ExecutionMode::parse(&v).map(RawMode));

schema!(RawMode, "execution_mode", |_| {
    // Any case, as the reader takes it, without relying on a regex flag.
    let any_case = |word: &str| -> String {
        word.chars().map(|c| format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())).collect()
    };
    let words = ["sequential", "parallel", "conditional", "pipeline"];
    let pattern = format!("^({})$", words.map(any_case).join("|"));
    json_schema!({
        "description": "0 sequential, 1 parallel, 2 conditional, 3 pipeline (the words in any case)",
        "oneOf": [
            { "type": "integer", "minimum": 0, "maximum": 3 },
            { "type": "string", "pattern": pattern }
        ]
    })
});

/// `retry_on`: `retryable` or `any`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRetryOn(RetryOn);

deserialize_via_value!(RawRetryOn, |v| match v {
    Value::String(s) if s == "retryable" => Ok(RawRetryOn(RetryOn::Retryable)),
    Value::String(s) if s == "any" => Ok(RawRetryOn(RetryOn::Any)),
    Value::String(s) => Err(format!("unknown retry_on `{s}`: expected retryable or any")),
    other => Err(format!("expected retryable or any, found {}", kind(&other))),
});

/// `transaction`: an id, or a boolean.
#[derive(Debug, Clone)]
pub(crate) struct RawTransaction(Option<TransactionRule>);

deserialize_via_value!(RawTransaction, |v| match v {
    Value::String(id) if is_valid_id(&id, MAX_ID_LEN) => Ok(RawTransaction(Some(TransactionRule::Join(id)))),
    Value::String(id) => Err(format!("transaction id `{id}`: {ID_RULE}, at most {MAX_ID_LEN}")),
    Value::Bool(true) => Ok(RawTransaction(Some(TransactionRule::Required))),
    Value::Bool(false) => Ok(RawTransaction(None)),
    other => Err(format!("expected a transaction id or a boolean, found {}", kind(&other))),
});

schema!(RawTransaction, inline "transaction", |_| {
    json_schema!({
        "description": "A transaction id its executions join when started without one; true: they must be started in a transaction",
        "oneOf": [
            { "type": "string", "minLength": 1, "maxLength": 200, "pattern": ID_PATTERN },
            { "type": "boolean" }
        ]
    })
});

schema!(RawRetryOn, "retry_on", |_| {
    json_schema!({
        "description": "retryable: only failures marked retryable (timeouts, crashes, retryable plugin errors); any: any failure but a cancel",
        "enum": ["retryable", "any"]
    })
});

/// A retry backoff.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawBackoff(Backoff);

deserialize_via_value!(RawBackoff, |v| match v {
    Value::String(s) if s == "constant" => Ok(RawBackoff(Backoff::Constant)),
    Value::String(s) if s == "exponential" => Ok(RawBackoff(Backoff::Exponential)),
    Value::String(s) => Err(format!("unknown backoff `{s}`: expected constant or exponential")),
    other => Err(format!("expected text, found {}", kind(&other))),
});

schema!(RawBackoff, "backoff", |_| json_schema!({ "enum": ["constant", "exponential"] }));

/// The type of an input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawInputType(InputType);

/// Every name [`InputType::parse`] reads.
const INPUT_TYPES: [&str; 8] = ["string", "number", "integer", "boolean", "bool", "object", "array", "any"];

deserialize_via_value!(RawInputType, |v| match v {
    Value::String(t) => InputType::parse(&t).map(RawInputType).ok_or_else(|| {
        format!("unknown type `{t}`: expected string, number, integer, boolean, object, array or any")
    }),
    other => Err(format!("expected text, found {}", kind(&other))),
});

schema!(RawInputType, "input_type", |_| json_schema!({ "enum": INPUT_TYPES }));

/// `dependencies`: a list of step ids, or one. Its items are checked by
/// [`read`], so each is reported at its own index.
#[derive(Debug)]
pub(crate) struct RawDependencies(Vec<Value>);

deserialize_via_value!(RawDependencies, |v| match v {
    Value::Array(items) => Ok(RawDependencies(items)),
    Value::String(_) => Ok(RawDependencies(vec![v])),
    other => Err(format!("expected a list of step ids, found {}", kind(&other))),
});

schema!(RawDependencies, inline "dependencies", |_| json_schema!({
    "oneOf": [{ "type": "array", "items": { "type": "string" } }, { "type": "string" }]
}));

/// `inputs`: a mapping of names, each entry read by [`read`].
#[derive(Debug)]
pub(crate) struct RawInputs(Map<String, Value>);

deserialize_via_value!(RawInputs, |v| match v {
    Value::Object(map) => Ok(RawInputs(map)),
    other => Err(format!("expected a mapping of input names, found {}", kind(&other))),
});

schema!(RawInputs, inline "inputs", |g| json_schema!({
    "type": "object",
    "additionalProperties": { "oneOf": [g.subschema_for::<RawInputType>(), g.subschema_for::<RawInput>()] }
}));

/// `steps`: a list or a mapping, each step read by [`read`].
#[derive(Debug)]
pub(crate) struct RawSteps(Value);

deserialize_via_value!(RawSteps, |v| match v {
    Value::Array(_) | Value::Object(_) => Ok(RawSteps(v)),
    other => Err(format!("expected a list or a mapping of steps, found {}", kind(&other))),
});

schema!(RawSteps, inline "steps", |g| {
    let step = g.subschema_for::<RawStep>();
    json_schema!({
        "oneOf": [
            {
                "type": "array",
                "minItems": 1,
                "items": { "allOf": [step], "required": ["id"], "properties": { "id": { "type": "string" } } }
            },
            { "type": "object", "minProperties": 1, "additionalProperties": step }
        ]
    })
});

/// `rollback_steps`: step id → action, each read by [`read`].
#[derive(Debug)]
pub(crate) struct RawRollback(Map<String, Value>);

deserialize_via_value!(RawRollback, |v| match v {
    Value::Object(map) => Ok(RawRollback(map)),
    other => Err(format!("expected a mapping of step ids to actions, found {}", kind(&other))),
});

schema!(RawRollback, inline "rollback_steps", |g| json_schema!({
    "type": "object",
    "additionalProperties": g.subschema_for::<RawAction>()
}));

/// `outputs`: name → value.
#[derive(Debug)]
pub(crate) struct RawOutputs(Map<String, Value>);

deserialize_via_value!(RawOutputs, |v| match v {
    Value::Object(map) => Ok(RawOutputs(map)),
    other => Err(format!("expected a mapping of names to values, found {}", kind(&other))),
});

schema!(RawOutputs, inline "outputs", |_| json_schema!({ "type": "object" }));

/// `workflow` of a sub-workflow step: a registered workflow's id, or a
/// workflow definition (inline, validated in `validate` as a document of its own).
#[derive(Debug)]
pub(crate) enum RawSubWorkflow {
    Id(String),
    Inline(Map<String, Value>),
}

deserialize_via_value!(RawSubWorkflow, |v| match v {
    Value::String(id) => Ok(RawSubWorkflow::Id(id)),
    Value::Object(map) => Ok(RawSubWorkflow::Inline(map)),
    other => Err(format!("expected a workflow id or a workflow definition, found {}", kind(&other))),
});

schema!(RawSubWorkflow, inline "workflow", |_| json_schema!({
    "oneOf": [
        { "type": "string", "minLength": 1, "maxLength": 200, "pattern": ID_PATTERN },
        // A workflow definition without `id`: a whole document's schema would require one.
        { "type": "object", "description": "an inline workflow definition (a workflow document without `id`)" }
    ]
}));

/// A part read in a pass of its own (so that its problems have their own
/// paths): kept as JSON here, described in the schema as `T`.
#[derive(Debug)]
pub(crate) struct Nested<T>(Value, PhantomData<T>);

impl<'de, T> Deserialize<'de> for Nested<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| Self(v, PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for Nested<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        g.subschema_for::<T>()
    }
}

/// The JSON Schema of workflow files (`schemas/workflow.schema.json`).
pub(crate) fn schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().for_deserialize().into_generator();
    let mut schema = generator.into_root_schema_for::<RawWorkflow>().to_value();
    unwrap_descriptions(&mut schema);
    let mut out = Map::new();
    out.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    out.insert("$id".into(), json!("https://plexus.invalid/schemas/workflow.schema.json"));
    if let Value::Object(mut map) = schema {
        for key in ["title", "description"] {
            if let Some(v) = map.remove(key) {
                out.insert(key.into(), v);
            }
        }
        out.extend(map.into_iter().filter(|(k, _)| k != "$schema"));
    }
    Value::Object(out)
}

/// Doc comments are wrapped: their lines make one line of description each.
fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(text) if key == "description" => *text = text.replace('\n', " "),
                    _ => unwrap_descriptions(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The keys of a part that were present but did not fit (already reported).
#[derive(Default)]
struct Bad(Vec<String>);

impl Bad {
    /// Whether `key` did not fit (so it is not also reported missing).
    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|k| k == key)
    }
}

/// Deserialize the mapping `value` as `T`, reporting every field that does
/// not fit at its own path: when the whole does not deserialize, each field
/// is tried alone, and `T` is read from the fields that fit (the others are
/// returned as [`Bad`]). `None` (after reporting it) when `value` is not a
/// mapping.
fn read_part<T: DeserializeOwned + Default>(
    value: &Value,
    path: &DocPath,
    step: Option<&str>,
    p: &mut Problems,
) -> Option<(T, Bad)> {
    let Some(map) = value.as_object() else {
        p.add(step, path, format!("expected a mapping, found {}", kind(value)));
        return None;
    };
    if let Ok(raw) = T::deserialize(value) {
        return Some((raw, Bad::default()));
    }
    let mut fit = Map::new();
    let mut bad = Bad::default();
    for (key, field) in map {
        let alone = Value::Object(Map::from_iter([(key.clone(), field.clone())]));
        match T::deserialize(&alone) {
            Ok(_) => {
                if let Value::Object(one) = alone {
                    fit.extend(one);
                }
            }
            Err(e) => {
                p.add(step, &path.key(key), message(&e, key, field));
                bad.0.push(key.clone());
            }
        }
    }
    Some((T::deserialize(&Value::Object(fit)).unwrap_or_default(), bad))
}

/// serde's message about field `key` holding `value`, in our words:
/// "unknown field `x` (known: a, b)", "expected text, found a number".
fn message(e: &serde_json::Error, key: &str, value: &Value) -> String {
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix(&format!("unknown field `{key}`")) {
        let known = rest.strip_prefix(", expected ").unwrap_or(rest);
        let known = known.strip_prefix("one of ").unwrap_or(known).replace('`', "").replace(" or ", ", ");
        return format!("unknown field `{key}` (known: {known})");
    }
    if (text.starts_with("invalid type: ") || text.starts_with("invalid value: "))
        && let Some((_, expected)) = text.rsplit_once(", expected ")
    {
        let expected = match expected {
            "a string" => "text",
            "a boolean" => "true or false",
            "u64" => "a whole number ≥ 0",
            "f64" => "a number",
            "a map" => "a mapping",
            other => other,
        };
        return format!("expected {expected}, found {}", kind(value));
    }
    text
}

/// The timeout of a step that names none in a QtForge-shaped document:
/// QtForge's `WorkflowStep::timeout` default, 60,000 ms.
pub const QTFORGE_STEP_TIMEOUT: Duration = Duration::from_millis(60_000);

/// Read a workflow from `doc`, collecting every problem of shape and value.
pub(crate) fn read(doc: &Document, p: &mut Problems) -> Workflow {
    let root = DocPath::default();
    let Some((raw, bad)) = read_part::<RawWorkflow>(&doc.value, &root, None, p) else {
        return Workflow {
            id: String::new(),
            name: String::new(),
            description: String::new(),
            mode: ExecutionMode::Sequential,
            timeout: None,
            max_parallel: None,
            inputs: BTreeMap::new(),
            steps: Vec::new(),
            rollback: BTreeMap::new(),
            outputs: Map::new(),
            metadata: Value::Null,
            transaction: None,
            resources: None,
        };
    };
    // QtForge's version, author, tags and created_at are accepted and ignored.
    let RawWorkflow {
        id,
        name,
        description,
        execution_mode,
        timeout,
        max_parallel,
        inputs: raw_inputs,
        steps,
        rollback_steps,
        outputs,
        metadata,
        version: _,
        author: _,
        tags: _,
        transaction,
        created_at: _,
        resources,
    } = raw;
    let transaction = transaction.and_then(|t| t.0);
    let id = required_text(id, &bad, "id", &root, None, p);
    if !id.is_empty() && !is_valid_id(&id, MAX_ID_LEN) {
        p.add(None, &root.key("id"), format!("workflow id `{id}`: {ID_RULE}, at most {MAX_ID_LEN}"));
    }
    let max_parallel = max_parallel.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if max_parallel == Some(0) {
        p.add(None, &root.key("max_parallel"), "must be at least 1");
    }
    let steps_path = root.key("steps");
    let steps = match steps.map(|s| s.0) {
        None if bad.has("steps") => Vec::new(),
        None => {
            p.add(None, &root, "missing `steps`: a workflow needs at least one step");
            Vec::new()
        }
        Some(Value::Object(map)) if !map.is_empty() => {
            map.iter().map(|(id, v)| step(v, steps_path.key(id), Some(id), p)).collect()
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            items.iter().enumerate().map(|(i, v)| step(v, steps_path.index(i), None, p)).collect()
        }
        Some(_) => {
            p.add(None, &steps_path, "no steps: a workflow needs at least one step");
            Vec::new()
        }
    };
    let rollback_path = root.key("rollback_steps");
    let rollback = rollback_steps
        .map(|r| r.0)
        .unwrap_or_default()
        .iter()
        .map(|(id, v)| (id.clone(), action(v, &rollback_path.key(id), Some(id), p)))
        .collect();
    Workflow {
        name: name.unwrap_or_else(|| id.clone()),
        description: description.unwrap_or_default(),
        mode: execution_mode.map_or(ExecutionMode::Sequential, |m| m.0),
        timeout: timeout.map(|d| d.0),
        max_parallel,
        inputs: inputs(raw_inputs.map(|i| i.0).unwrap_or_default(), &root.key("inputs"), p),
        steps,
        rollback,
        outputs: outputs.map(|o| o.0).unwrap_or_default(),
        metadata: metadata.unwrap_or_default(),
        transaction,
        resources: resources.and_then(|r| budget(&r.0, &root.key("resources"), p)),
        id,
    }
}

/// A number of cores in 0..=[`MAX_CORES`] as thousandths, or a problem at `path`.
fn cores(value: f64, path: &DocPath, step: Option<&str>, p: &mut Problems) -> Option<u64> {
    if value.is_finite() && (0.0..=MAX_CORES).contains(&value) {
        Some((value * 1000.0).round() as u64)
    } else {
        p.add(step, path, format!("{value} cores: expected 0 to {MAX_CORES}"));
        None
    }
}

/// MiB in 0..=[`MAX_MEMORY_MB`], or a problem at `path`.
fn mebibytes(value: f64, path: &DocPath, step: Option<&str>, p: &mut Problems) -> Option<u64> {
    if value.is_finite() && (0.0..=MAX_MEMORY_MB as f64).contains(&value) {
        Some(value.round() as u64)
    } else {
        p.add(step, path, format!("{value} MiB: expected 0 to {MAX_MEMORY_MB}"));
        None
    }
}

fn budget(value: &Value, path: &DocPath, p: &mut Problems) -> Option<ResourceBudget> {
    let (raw, _) = read_part::<RawBudget>(value, path, None, p)?;
    let RawBudget { cpu_limit, memory_limit_gb, memory_limit_mb, disk_space_gb } = raw;
    if memory_limit_gb.is_some() && memory_limit_mb.is_some() {
        p.add(None, &path.key("memory_limit_mb"), "give memory_limit_gb or memory_limit_mb, not both");
    }
    let memory = match (memory_limit_gb, memory_limit_mb) {
        (Some(gb), _) => mebibytes(gb * 1024.0, &path.key("memory_limit_gb"), None, p),
        (None, Some(mb)) => mebibytes(mb as f64, &path.key("memory_limit_mb"), None, p),
        (None, None) => None,
    };
    Some(ResourceBudget {
        cpu_millis: cpu_limit.and_then(|c| cores(c, &path.key("cpu_limit"), None, p)),
        memory_mb: memory,
        disk_space_gb: disk_space_gb.filter(|d| d.is_finite() && *d >= 0.0),
    })
}

fn needs(value: &Value, path: &DocPath, step: &str, p: &mut Problems) -> StepResources {
    let Some((RawNeeds { cpu, memory_mb }, _)) = read_part::<RawNeeds>(value, path, Some(step), p) else {
        return StepResources::default();
    };
    StepResources {
        cpu_millis: cpu.and_then(|c| cores(c, &path.key("cpu"), Some(step), p)).unwrap_or(0),
        memory_mb: memory_mb.and_then(|m| mebibytes(m as f64, &path.key("memory_mb"), Some(step), p)).unwrap_or(0),
    }
}

/// A required, non-blank text field: reported (and empty) when missing or blank.
fn required_text(
    value: Option<String>,
    bad: &Bad,
    key: &str,
    path: &DocPath,
    step: Option<&str>,
    p: &mut Problems,
) -> String {
    match value {
        Some(s) if !s.trim().is_empty() => s,
        Some(_) => {
            p.add(step, &path.key(key), "must not be empty");
            String::new()
        }
        None => {
            if !bad.has(key) {
                p.add(step, path, format!("missing `{key}`"));
            }
            String::new()
        }
    }
}

fn inputs(map: Map<String, Value>, path: &DocPath, p: &mut Problems) -> BTreeMap<String, InputSpec> {
    let mut inputs = BTreeMap::new();
    for (name, spec) in map {
        let path = path.key(&name);
        // `name: "string"` is short for `name: {type: string}`.
        if let Value::String(t) = &spec {
            match InputType::parse(t) {
                Some(kind) => {
                    inputs.insert(name, InputSpec { kind, default: None, required: true, description: String::new() });
                }
                None => p.add(None, &path, format!("unknown type `{t}`")),
            }
            continue;
        }
        let Some((RawInput { kind, default, required, description }, _)) = read_part::<RawInput>(&spec, &path, None, p)
        else {
            continue;
        };
        let kind = kind.map_or(InputType::Any, |k| k.0);
        if let Some(d) = &default
            && !kind.accepts(d)
        {
            p.add(None, &path.key("default"), format!("default {d} is not of type {kind:?}").to_lowercase());
        }
        let required = required.unwrap_or(default.is_none());
        let description = description.unwrap_or_default();
        inputs.insert(name, InputSpec { kind, default, required, description });
    }
    inputs
}

fn step(value: &Value, path: DocPath, key_id: Option<&str>, p: &mut Problems) -> Step {
    let declared_id = value.get("id").and_then(Value::as_str);
    let label = key_id.or(declared_id).unwrap_or("?").to_owned();
    let Some((raw, bad)) = read_part::<RawStep>(value, &path, Some(&label), p) else {
        // Not a mapping (reported): a placeholder keeps the steps' indices.
        return Step {
            id: label.clone(),
            name: label,
            description: String::new(),
            action: Action { plugin_id: String::new(), kind: None, operation: String::new(), parameters: Value::Null },
            service_name: None,
            dependencies: Vec::new(),
            when: None,
            timeout: None,
            retry: RetryPolicy::default(),
            critical: true,
            compensate: None,
            metadata: Value::Null,
            resources: StepResources::default(),
            map: None,
            wait: None,
            call: None,
        };
    };
    let RawStep {
        id: declared,
        name,
        description,
        plugin_id,
        kind: plugin_kind,
        method_name,
        operation,
        service_name,
        parameters,
        dependencies,
        when,
        timeout,
        max_retries,
        retry_delay,
        retry: retry_value,
        critical,
        compensate,
        metadata,
        resources,
        for_each,
        fail_fast,
        max_parallel,
        wait_for,
        workflow: child_workflow,
        workflow_version,
    } = raw;
    let id = match (key_id, declared) {
        (Some(key), Some(inner)) if key != inner => {
            p.add(Some(&label), &path.key("id"), format!("`{inner}` differs from the key `{key}` it is listed under"));
            key.to_owned()
        }
        (Some(key), _) => key.to_owned(),
        (None, Some(id)) if !id.trim().is_empty() => id,
        (None, _) => {
            if !bad.has("id") {
                p.add(Some(&label), &path, "missing `id`");
            }
            label.clone()
        }
    };
    let wait = wait_for.and_then(|w| read_wait(&w.0, &path.key("wait_for"), &label, p));
    let call = match child_workflow {
        Some(child) => {
            let (workflow, inline) = match child {
                RawSubWorkflow::Id(workflow) => {
                    if !is_valid_id(&workflow, MAX_ID_LEN) {
                        p.add(Some(&label), &path.key("workflow"), format!("`{workflow}`: {ID_RULE}"));
                    }
                    (workflow, None)
                }
                // Its id and the rest are checked when `validate` reads it as a document.
                RawSubWorkflow::Inline(definition) => {
                    let id = definition.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                    if workflow_version.is_some() {
                        p.add(Some(&label), &path.key("workflow_version"), "an inline workflow has no versions");
                    }
                    (id, Some(crate::definition::InlineWorkflow::Written(Arc::new(Value::Object(definition)))))
                }
            };
            if wait.is_some() {
                p.add(Some(&label), &path.key("workflow"), "a step either waits for a signal or runs a workflow");
            }
            let version = workflow_version.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
            Some(SubWorkflow { workflow, version, inline })
        }
        None => {
            if workflow_version.is_some() {
                p.add(
                    Some(&label),
                    &path.key("workflow_version"),
                    "only a sub-workflow step (with `workflow`) takes it",
                );
            }
            None
        }
    };
    let (plugin_id, method_name, operation) = if wait.is_some() || call.is_some() || bad.has("wait_for") {
        // A wait step, or a sub-workflow step, calls no plugin.
        let calls = [("plugin_id", plugin_id.is_some()), ("method_name", method_name.is_some() || operation.is_some())];
        for (key, given) in calls {
            if given {
                p.add(Some(&label), &path.key(key), "a wait or sub-workflow step calls no plugin");
            }
        }
        (String::new(), Some(String::new()), None)
    } else {
        (required_text(plugin_id, &bad, "plugin_id", &path, Some(&label), p), method_name, operation)
    };
    let operation = match (method_name, operation) {
        (Some(m), None) | (None, Some(m)) => m,
        (Some(m), Some(o)) => {
            if m != o {
                p.add(Some(&label), &path.key("operation"), format!("`{o}` disagrees with method_name `{m}`"));
            }
            m
        }
        (None, None) => {
            if !bad.has("method_name") && !bad.has("operation") {
                p.add(Some(&id), &path, "missing `method_name` (or `operation`)");
            }
            String::new()
        }
    };
    let dependencies_path = path.key("dependencies");
    let dependencies = dependencies
        .map(|d| d.0)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| match v {
            Value::String(s) => Some(s),
            other => {
                p.add(Some(&label), &dependencies_path.index(i), format!("expected text, found {}", kind(&other)));
                None
            }
        })
        .collect();
    // A QtForge-shaped document (steps keyed by id) gets QtForge's step
    // defaults: a 60 s timeout, and retries of any failure.
    let qtforge = key_id.is_some();
    let mut retry = RetryPolicy::default();
    if qtforge {
        retry.retry_on = RetryOn::Any;
    }
    // QtForge: max_retries + retry_delay.
    if let Some(n) = max_retries {
        retry.max_attempts = u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX);
    }
    if let Some(d) = retry_delay {
        retry.initial_delay = d.0;
    }
    if let Some(value) = retry_value {
        read_retry(&value.0, &path.key("retry"), &label, &mut retry, p);
    }
    let compensate = compensate.map(|c| action(&c.0, &path.key("compensate"), Some(&id), p));
    let map = match for_each {
        Some(for_each) => {
            if max_parallel == Some(0) {
                p.add(Some(&label), &path.key("max_parallel"), "must be at least 1");
            }
            Some(MapSpec {
                for_each,
                fail_fast: fail_fast.unwrap_or(true),
                max_parallel: max_parallel.map(|n| usize::try_from(n.max(1)).unwrap_or(usize::MAX)),
            })
        }
        None => {
            for (key, given) in [("fail_fast", fail_fast.is_some()), ("max_parallel", max_parallel.is_some())] {
                if given {
                    p.add(Some(&label), &path.key(key), "only a map step (with `for_each`) takes it");
                }
            }
            None
        }
    };
    if (wait.is_some() || call.is_some()) && map.is_some() {
        p.add(Some(&label), &path.key("for_each"), "a wait or sub-workflow step cannot be a map step");
    }
    Step {
        map,
        wait,
        call,
        name: name.unwrap_or_else(|| id.clone()),
        description: description.unwrap_or_default(),
        action: Action {
            plugin_id,
            kind: plugin_kind.map(RawKind::into_kind),
            operation,
            parameters: parameters.map_or(Value::Null, Value::Object),
        },
        service_name,
        dependencies,
        when,
        timeout: timeout.map(|d| d.0).or(qtforge.then_some(QTFORGE_STEP_TIMEOUT)),
        retry,
        critical: critical.unwrap_or(true),
        compensate,
        metadata: metadata.unwrap_or_default(),
        resources: resources.map_or_else(StepResources::default, |r| needs(&r.0, &path.key("resources"), &label, p)),
        id,
    }
}

fn read_wait(value: &Value, path: &DocPath, step: &str, p: &mut Problems) -> Option<WaitSpec> {
    let (raw, _) = read_part::<RawWait>(value, path, Some(step), p)?;
    let RawWait { signal, timeout, approval } = raw;
    let Some(signal) = signal else {
        p.add(Some(step), path, "missing `signal`");
        return None;
    };
    if !is_valid_id(&signal, 128) {
        p.add(Some(step), &path.key("signal"), format!("`{signal}`: letters, digits, `-`, `_`, `.`, at most 128"));
    }
    Some(WaitSpec { signal, timeout: timeout.map(|d| d.0), approval: approval.unwrap_or(false) })
}

fn read_retry(value: &Value, path: &DocPath, step: &str, policy: &mut RetryPolicy, p: &mut Problems) {
    let Some((raw, _)) = read_part::<RawRetry>(value, path, Some(step), p) else { return };
    let RawRetry { retry_on, max_attempts, initial_delay, backoff, multiplier, max_delay, jitter } = raw;
    if let Some(on) = retry_on {
        policy.retry_on = on.0;
    }
    if let Some(n) = max_attempts {
        if n == 0 {
            p.add(Some(step), &path.key("max_attempts"), "must be at least 1 (the first attempt counts)");
        }
        policy.max_attempts = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    }
    if let Some(d) = initial_delay {
        policy.initial_delay = d.0;
    }
    if let Some(b) = backoff {
        policy.backoff = b.0;
    }
    if let Some(m) = multiplier {
        if m < 1.0 {
            p.add(Some(step), &path.key("multiplier"), format!("must be ≥ 1, not {m}"));
        }
        policy.multiplier = m;
    }
    if let Some(d) = max_delay {
        policy.max_delay = d.0;
    }
    if let Some(j) = jitter {
        if !(0.0..=1.0).contains(&j) {
            p.add(Some(step), &path.key("jitter"), format!("must be between 0 and 1, not {j}"));
        }
        policy.jitter = j;
    }
}

fn action(value: &Value, path: &DocPath, step: Option<&str>, p: &mut Problems) -> Action {
    let Some((raw, bad)) = read_part::<RawAction>(value, path, step, p) else {
        return Action { plugin_id: String::new(), kind: None, operation: String::new(), parameters: Value::Null };
    };
    // QtForge's rollback entries may repeat a step's id, name, description and service.
    let RawAction {
        plugin_id,
        kind,
        method_name,
        operation,
        parameters,
        id: _,
        name: _,
        description: _,
        service_name: _,
    } = raw;
    let plugin_id = required_text(plugin_id, &bad, "plugin_id", path, step, p);
    let operation = match (method_name, operation) {
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) => {
            if !bad.has("method_name") && !bad.has("operation") {
                p.add(step, path, "missing `method_name` (or `operation`)");
            }
            String::new()
        }
    };
    Action { plugin_id, kind: kind.map(RawKind::into_kind), operation, parameters: parameters.unwrap_or_default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn problems(name: &str, text: &str) -> Vec<String> {
        let doc = Document::parse(Path::new(name), text).unwrap();
        let mut p = Problems::new(&doc);
        read(&doc, &mut p);
        // As `validate` gives them: by line, in the order found.
        p.list.sort_by_key(|x| x.line.unwrap_or(usize::MAX));
        p.list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_field_in_error_is_reported_at_its_line_and_the_rest_is_read() {
        let text = "id: w\nsteps:\n  - id: a\n    plugin_id: 5\n    method_name: m\n    critical: maybe\n    timeout: [1]\n    dependencies: [x, 2]\n    colour: red\n    retry: { max_attempts: -1, jitter: x, backoff: sometimes, multiplier: 0.5 }\n";
        let p = problems("w.yaml", text);
        let expect = [
            "line 4: step `a`: steps[0].plugin_id: expected text, found a number",
            "line 6: step `a`: steps[0].critical: expected true or false, found text",
            "line 7: step `a`: steps[0].timeout: invalid duration [1]: expected milliseconds or text like \"30s\"",
            "line 8: step `a`: steps[0].dependencies[1]: expected text, found a number",
            "line 9: step `a`: steps[0].colour: unknown field `colour` (known: id, name, description, plugin_id, kind, method_name, operation, service_name, parameters, dependencies, when, timeout, max_retries, retry_delay, retry, critical, compensate, metadata, resources, for_each, fail_fast, max_parallel, wait_for, workflow, workflow_version)",
            "line 10: step `a`: steps[0].retry.max_attempts: expected a whole number ≥ 0, found a number",
            "line 10: step `a`: steps[0].retry.jitter: expected a number, found text",
            "line 10: step `a`: steps[0].retry.backoff: unknown backoff `sometimes`: expected constant or exponential",
            "line 10: step `a`: steps[0].retry.multiplier: must be ≥ 1, not 0.5",
        ];
        assert_eq!(p, expect);
    }

    #[test]
    fn messages_of_the_workflow_inputs_and_rollbacks() {
        let p = problems(
            "w.json",
            r#"{"id": "", "name": 1, "execution_mode": "SIDEWAYS", "max_parallel": 0, "outputs": [],
                "inputs": {"a": "str", "b": {"type": "text"}, "c": {"type": "integer", "default": "x"}, "d": 3},
                "steps": {"s": {"id": "t", "plugin_id": " ", "operation": "o", "method_name": "m", "parameters": [1]}},
                "rollback_steps": {"s": {"plugin_id": "p"}, "t": 1}}"#,
        );
        let expect = [
            "name: expected text, found a number",
            "execution_mode: unknown execution_mode \"SIDEWAYS\": expected sequential, parallel, conditional or pipeline",
            "outputs: expected a mapping of names to values, found a list",
            "id: must not be empty",
            "max_parallel: must be at least 1",
            "step `s`: steps.s.parameters: expected a mapping, found a list",
            "step `s`: steps.s.id: `t` differs from the key `s` it is listed under",
            "step `s`: steps.s.plugin_id: must not be empty",
            "step `s`: steps.s.operation: `o` disagrees with method_name `m`",
            "step `s`: rollback_steps.s: missing `method_name` (or `operation`)",
            "step `t`: rollback_steps.t: expected a mapping, found a number",
            "inputs.a: unknown type `str`",
            "inputs.b.type: unknown type `text`: expected string, number, integer, boolean, object, array or any",
            "inputs.c.default: default \"x\" is not of type integer",
            "inputs.d: expected a mapping, found a number",
        ];
        assert_eq!(p, expect);
        assert_eq!(
            problems("w.json", "[1]"),
            ["expected a mapping, found a list"],
            "nothing else is said of a document that is not a mapping"
        );
        assert_eq!(
            problems("w.json", r#"{"id": "w", "steps": 3, "inputs": 1, "rollback_steps": "x"}"#),
            [
                "steps: expected a list or a mapping of steps, found a number",
                "inputs: expected a mapping of input names, found a number",
                "rollback_steps: expected a mapping of step ids to actions, found text",
            ]
        );
        assert_eq!(problems("w.json", "{}"), ["missing `id`", "missing `steps`: a workflow needs at least one step"]);
    }

    #[test]
    fn every_accepted_shape_reads_with_its_defaults() {
        let doc = Document::parse(
            Path::new("w.yaml"),
            "id: w\nexecution_mode: PipeLine\ntimeout: 1h 30m\nname: ~\ninputs:\n  a: bool\n  b: { default: 3 }\nsteps:\n  s:\n    plugin_id: p\n    operation: o\n    dependencies: t\n    max_retries: 2\n    retry_delay: 250\n    parameters: ~\n  t: { plugin_id: p, method_name: m, retry: { backoff: exponential, initial_delay: 2s }, compensate: { plugin_id: q, operation: undo, parameters: [1] } }\n",
        )
        .unwrap();
        let mut p = Problems::new(&doc);
        let w = read(&doc, &mut p);
        assert!(p.list.is_empty(), "{:?}", p.list);
        assert_eq!(
            (w.name.as_str(), w.mode, w.timeout),
            ("w", ExecutionMode::Pipeline, Some(Duration::from_secs(5400)))
        );
        assert_eq!((w.inputs["a"].kind, w.inputs["a"].required), (InputType::Boolean, true));
        assert_eq!((w.inputs["b"].kind, w.inputs["b"].required), (InputType::Any, false));
        let s = &w.steps[0];
        assert_eq!((s.id.as_str(), s.name.as_str(), s.action.operation.as_str()), ("s", "s", "o"));
        assert_eq!(
            (s.dependencies.as_slice(), s.critical, &s.action.parameters),
            (&["t".to_owned()][..], true, &Value::Null)
        );
        assert_eq!((s.retry.max_attempts, s.retry.initial_delay), (3, Duration::from_millis(250)));
        let t = &w.steps[1];
        assert_eq!(
            (t.retry.max_attempts, t.retry.backoff, t.retry.initial_delay),
            (1, Backoff::Exponential, Duration::from_secs(2))
        );
        assert_eq!(t.compensate.as_ref().unwrap().parameters, json!([1]));
    }
}
