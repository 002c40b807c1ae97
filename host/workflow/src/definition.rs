//! The workflow model and its reading from a [`Document`].
//!
//! One model reads both our format and QtForge's `Workflow::from_json`
//! documents unchanged (`steps` keyed by id, `execution_mode` 0–3, integer
//! millisecond durations, `rollback_steps` keyed by step id, `max_retries` +
//! `retry_delay`). Also accepted: `steps` as a list, modes as words,
//! durations as text (`"30s"`). Reading never stops at the first problem:
//! every unknown field, wrong type or bad value is collected as a [`Problem`].

use super::duration;
use super::source::{DocPath, Document};
use serde::Serialize;
use serde_json::{Map, Value};
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
    fn parse(value: &Value) -> Result<Self, String> {
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
    fn parse(text: &str) -> Option<Self> {
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

/// When and how often a failed step is tried again. Only retryable plugin
/// errors and timeouts are retried (as in Temporal, Dagster, Argo).
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
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next` (2 = first retry), without jitter.
    pub fn base_delay(&self, next: u32) -> Duration {
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
}

impl Workflow {
    /// The step called `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The compensation of step `id`: `rollback_steps[id]`, else its `compensate`.
    pub fn compensation(&self, id: &str) -> Option<&Action> {
        self.rollback.get(id).or_else(|| self.step(id).and_then(|s| s.compensate.as_ref()))
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
pub struct Problems<'d> {
    doc: &'d Document,
    /// Everything found so far.
    pub list: Vec<Problem>,
}

impl<'d> Problems<'d> {
    /// A collector over `doc`.
    pub fn new(doc: &'d Document) -> Self {
        Self { doc, list: Vec::new() }
    }
    /// Record `message` at `path`, for `step`.
    pub fn add(&mut self, step: Option<&str>, path: &DocPath, message: impl ToString) {
        self.list.push(Problem {
            step: step.map(str::to_owned),
            path: path.to_string(),
            line: self.doc.line_of(path),
            message: message.to_string(),
        });
    }
}

/// Reads one JSON object, remembering which keys were used.
struct Fields<'a> {
    map: Option<&'a Map<String, Value>>,
    path: DocPath,
    step: Option<String>,
    used: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, path: DocPath, step: Option<&str>, p: &mut Problems) -> Self {
        let map = value.as_object();
        if map.is_none() {
            p.add(step, &path, format!("expected a mapping, found {}", kind(value)));
        }
        Self { map, path, step: step.map(str::to_owned), used: Vec::new() }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.map?.get(key).filter(|v| !v.is_null())
    }

    fn problem(&self, p: &mut Problems, key: &str, message: impl ToString) {
        p.add(self.step.as_deref(), &self.path.key(key), message);
    }

    fn string(&mut self, p: &mut Problems, key: &'static str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(p, key, format!("expected text, found {}", kind(other)));
                None
            }
        }
    }

    fn required_string(&mut self, p: &mut Problems, key: &'static str) -> String {
        match self.string(p, key) {
            Some(s) if !s.trim().is_empty() => s,
            Some(_) => {
                self.problem(p, key, "must not be empty");
                String::new()
            }
            None => {
                if self.map.is_some_and(|m| m.get(key).is_none_or(Value::is_null)) {
                    p.add(self.step.as_deref(), &self.path, format!("missing `{key}`"));
                }
                String::new()
            }
        }
    }

    fn bool(&mut self, p: &mut Problems, key: &'static str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.problem(p, key, format!("expected true or false, found {}", kind(other)));
                None
            }
        }
    }

    fn number(&mut self, p: &mut Problems, key: &'static str) -> Option<f64> {
        match self.get(key)? {
            Value::Number(n) => n.as_f64(),
            other => {
                self.problem(p, key, format!("expected a number, found {}", kind(other)));
                None
            }
        }
    }

    fn count(&mut self, p: &mut Problems, key: &'static str) -> Option<u64> {
        let value = self.get(key)?;
        match value.as_u64() {
            Some(n) => Some(n),
            None => {
                self.problem(p, key, format!("expected a whole number ≥ 0, found {}", kind(value)));
                None
            }
        }
    }

    fn duration(&mut self, p: &mut Problems, key: &'static str) -> Option<Duration> {
        let value = self.get(key)?;
        duration::parse(value).map_err(|e| self.problem(p, key, e)).ok()
    }

    fn strings(&mut self, p: &mut Problems, key: &'static str) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        p.add(
                            self.step.as_deref(),
                            &self.path.key(key).index(i),
                            format!("expected text, found {}", kind(other)),
                        );
                        None
                    }
                })
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(other) => {
                self.problem(p, key, format!("expected a list of step ids, found {}", kind(other)));
                Vec::new()
            }
        }
    }

    fn any(&mut self, key: &'static str) -> Value {
        self.get(key).cloned().unwrap_or(Value::Null)
    }

    /// Report every key that was not read.
    fn finish(self, p: &mut Problems) {
        let Some(map) = self.map else { return };
        for key in map.keys() {
            if !self.used.contains(&key.as_str()) {
                let known = self.used.join(", ");
                p.add(self.step.as_deref(), &self.path.key(key), format!("unknown field `{key}` (known: {known})"));
            }
        }
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
pub fn read(doc: &Document, p: &mut Problems) -> Workflow {
    let root = DocPath::default();
    let mut f = Fields::new(&doc.value, root.clone(), None, p);
    let id = f.required_string(p, "id");
    if !id.is_empty() && !is_valid_id(&id, MAX_ID_LEN) {
        f.problem(p, "id", format!("workflow id `{id}`: {ID_RULE}, at most {MAX_ID_LEN}"));
    }
    let name = f.string(p, "name").unwrap_or_else(|| id.clone());
    let description = f.string(p, "description").unwrap_or_default();
    let mode = f.get("execution_mode").map_or(Ok(ExecutionMode::Sequential), ExecutionMode::parse);
    let mode = mode.unwrap_or_else(|e| {
        p.add(None, &root.key("execution_mode"), e);
        ExecutionMode::Sequential
    });
    let timeout = f.duration(p, "timeout");
    let max_parallel = f.count(p, "max_parallel").map(|n| n as usize);
    if max_parallel == Some(0) {
        f.problem(p, "max_parallel", "must be at least 1");
    }
    let inputs = read_inputs(f.get("inputs"), root.key("inputs"), p);
    let steps = read_steps(f.get("steps"), root.key("steps"), p);
    let rollback = read_rollback(f.get("rollback_steps"), root.key("rollback_steps"), p);
    let outputs = match f.get("outputs") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            f.problem(p, "outputs", format!("expected a mapping of names to values, found {}", kind(other)));
            Map::new()
        }
    };
    let metadata = f.any("metadata");
    // QtForge fields we accept and ignore.
    for key in ["version", "author", "tags", "transaction", "created_at"] {
        f.get(key);
    }
    f.finish(p);
    Workflow { id, name, description, mode, timeout, max_parallel, inputs, steps, rollback, outputs, metadata }
}

fn read_inputs(value: Option<&Value>, path: DocPath, p: &mut Problems) -> BTreeMap<String, InputSpec> {
    let mut inputs = BTreeMap::new();
    let Some(value) = value else { return inputs };
    let Some(map) = value.as_object() else {
        p.add(None, &path, format!("expected a mapping of input names, found {}", kind(value)));
        return inputs;
    };
    for (name, spec) in map {
        let path = path.key(name);
        // `name: "string"` is short for `name: {type: string}`.
        if let Value::String(t) = spec {
            match InputType::parse(t) {
                Some(kind) => {
                    inputs.insert(
                        name.clone(),
                        InputSpec { kind, default: None, required: true, description: String::new() },
                    );
                }
                None => p.add(None, &path, format!("unknown type `{t}`")),
            }
            continue;
        }
        let mut f = Fields::new(spec, path.clone(), None, p);
        let kind = match f.string(p, "type") {
            None => InputType::Any,
            Some(t) => InputType::parse(&t).unwrap_or_else(|| {
                f.problem(
                    p,
                    "type",
                    format!("unknown type `{t}`: expected string, number, integer, boolean, object, array or any"),
                );
                InputType::Any
            }),
        };
        let default = f.get("default").cloned();
        if let Some(d) = &default
            && !kind.accepts(d)
        {
            f.problem(p, "default", format!("default {d} is not of type {kind:?}").to_lowercase());
        }
        let required = f.bool(p, "required").unwrap_or(default.is_none());
        let description = f.string(p, "description").unwrap_or_default();
        f.finish(p);
        inputs.insert(name.clone(), InputSpec { kind, default, required, description });
    }
    inputs
}

fn read_steps(value: Option<&Value>, path: DocPath, p: &mut Problems) -> Vec<Step> {
    match value {
        None => {
            p.add(None, &DocPath::default(), "missing `steps`: a workflow needs at least one step");
            Vec::new()
        }
        Some(Value::Object(map)) if map.is_empty() => {
            p.add(None, &path, "no steps: a workflow needs at least one step");
            Vec::new()
        }
        Some(Value::Array(items)) if items.is_empty() => {
            p.add(None, &path, "no steps: a workflow needs at least one step");
            Vec::new()
        }
        // QtForge: steps keyed by id (the entry's own `id`, if any, must agree).
        Some(Value::Object(map)) => map.iter().map(|(id, v)| read_step(v, path.key(id), Some(id), p)).collect(),
        Some(Value::Array(items)) => {
            items.iter().enumerate().map(|(i, v)| read_step(v, path.index(i), None, p)).collect()
        }
        Some(other) => {
            p.add(None, &path, format!("expected a list or a mapping of steps, found {}", kind(other)));
            Vec::new()
        }
    }
}

fn read_step(value: &Value, path: DocPath, key_id: Option<&str>, p: &mut Problems) -> Step {
    let declared_id = value.get("id").and_then(Value::as_str);
    let label = key_id.or(declared_id).unwrap_or("?").to_owned();
    let mut f = Fields::new(value, path.clone(), Some(&label), p);
    let id = match (key_id, f.string(p, "id")) {
        (Some(key), Some(inner)) if key != inner => {
            f.problem(p, "id", format!("`{inner}` differs from the key `{key}` it is listed under"));
            key.to_owned()
        }
        (Some(key), _) => key.to_owned(),
        (None, Some(id)) if !id.trim().is_empty() => id,
        (None, _) => {
            p.add(Some(&label), &path, "missing `id`");
            label.clone()
        }
    };
    let name = f.string(p, "name").unwrap_or_else(|| id.clone());
    let description = f.string(p, "description").unwrap_or_default();
    let plugin_id = f.required_string(p, "plugin_id");
    let operation = match (f.string(p, "method_name"), f.string(p, "operation")) {
        (Some(m), None) | (None, Some(m)) => m,
        (Some(m), Some(o)) => {
            if m != o {
                f.problem(p, "operation", format!("`{o}` disagrees with method_name `{m}`"));
            }
            m
        }
        (None, None) => {
            p.add(Some(&id), &path, "missing `method_name` (or `operation`)");
            String::new()
        }
    };
    let service_name = f.string(p, "service_name");
    let parameters = f.any("parameters");
    if !(parameters.is_null() || parameters.is_object()) {
        f.problem(p, "parameters", format!("expected a mapping, found {}", kind(&parameters)));
    }
    let dependencies = f.strings(p, "dependencies");
    let when = f.string(p, "when");
    let timeout = f.duration(p, "timeout");
    let retry = read_retry(&mut f, p);
    let critical = f.bool(p, "critical").unwrap_or(true);
    let compensate = f.get("compensate").map(|v| read_action(v, path.key("compensate"), Some(&id), p));
    let metadata = f.any("metadata");
    f.finish(p);
    Step {
        id,
        name,
        description,
        action: Action { plugin_id, operation, parameters },
        service_name,
        dependencies,
        when,
        timeout,
        retry,
        critical,
        compensate,
        metadata,
    }
}

fn read_retry(f: &mut Fields, p: &mut Problems) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    // QtForge: max_retries + retry_delay (ms).
    if let Some(n) = f.count(p, "max_retries") {
        policy.max_attempts = n.saturating_add(1).min(u64::from(u32::MAX)) as u32;
    }
    if let Some(d) = f.duration(p, "retry_delay") {
        policy.initial_delay = d;
    }
    let Some(value) = f.get("retry") else { return policy };
    let path = f.path.key("retry");
    let step = f.step.clone();
    let mut r = Fields::new(value, path, step.as_deref(), p);
    if let Some(n) = r.count(p, "max_attempts") {
        if n == 0 {
            r.problem(p, "max_attempts", "must be at least 1 (the first attempt counts)");
        }
        policy.max_attempts = n.clamp(1, u64::from(u32::MAX)) as u32;
    }
    if let Some(d) = r.duration(p, "initial_delay") {
        policy.initial_delay = d;
    }
    if let Some(b) = r.string(p, "backoff") {
        policy.backoff = match b.as_str() {
            "constant" => Backoff::Constant,
            "exponential" => Backoff::Exponential,
            other => {
                r.problem(p, "backoff", format!("unknown backoff `{other}`: expected constant or exponential"));
                Backoff::Constant
            }
        };
    }
    if let Some(m) = r.number(p, "multiplier") {
        if m < 1.0 {
            r.problem(p, "multiplier", format!("must be ≥ 1, not {m}"));
        }
        policy.multiplier = m;
    }
    if let Some(d) = r.duration(p, "max_delay") {
        policy.max_delay = d;
    }
    if let Some(j) = r.number(p, "jitter") {
        if !(0.0..=1.0).contains(&j) {
            r.problem(p, "jitter", format!("must be between 0 and 1, not {j}"));
        }
        policy.jitter = j;
    }
    r.finish(p);
    policy
}

fn read_action(value: &Value, path: DocPath, step: Option<&str>, p: &mut Problems) -> Action {
    let mut f = Fields::new(value, path, step, p);
    let plugin_id = f.required_string(p, "plugin_id");
    let operation = match (f.string(p, "method_name"), f.string(p, "operation")) {
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) => {
            p.add(step, &f.path, "missing `method_name` (or `operation`)");
            String::new()
        }
    };
    let parameters = f.any("parameters");
    // QtForge rollback entries may repeat these.
    for key in ["id", "name", "description", "service_name"] {
        f.get(key);
    }
    f.finish(p);
    Action { plugin_id, operation, parameters }
}

fn read_rollback(value: Option<&Value>, path: DocPath, p: &mut Problems) -> BTreeMap<String, Action> {
    let mut out = BTreeMap::new();
    match value {
        None => {}
        Some(Value::Object(map)) => {
            for (id, v) in map {
                out.insert(id.clone(), read_action(v, path.key(id), Some(id), p));
            }
        }
        Some(other) => p.add(None, &path, format!("expected a mapping of step ids to actions, found {}", kind(other))),
    }
    out
}

/// A command-line `key=value` text that is not a value of the input's type,
/// e.g. "`abc` is not a valid integer".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);
