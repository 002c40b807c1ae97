//! The execution-context contract as plain Rust data.
//!
//! These types do no I/O. They are what crosses the plugin boundary: as JSON text
//! for native plugins (see [`crate::abi`]), as WIT records for WASM components
//! (`wit/plexus-plugin.wit`, package `plexus:plugin@0.4.0`). The host maps both
//! transports onto these same types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The contract version this SDK implements, as `major.minor.patch`.
///
/// It equals the version of the WIT package `plexus:plugin`. The host refuses
/// a plugin whose contract version is not semver-compatible with its own:
/// a plugin built against `0.3.x` runs on any host implementing `0.3.y`, `y ≥ x`.
/// Hosts keep the previous contracts' worlds too: plugins built against 0.1
/// and 0.2 still load on a 0.3 host (0.2 added [`ErrorKind::Cancelled`]; 0.3
/// the lifecycle hooks [`crate::Plugin::initialize`] and
/// [`crate::Plugin::cleanup`], [`ExecutionContext::schedule`] and the
/// [`Orchestration`] services; 0.4 the artifact services,
/// [`HostServices::artifact_create`] and the rest).
pub const CONTRACT_VERSION: &str = "0.4.0";

/// Capability tags a plugin may declare in [`Metadata::capabilities`].
pub mod capability {
    /// The plugin's operations can run as workflow steps.
    pub const WORKFLOW_STEP: &str = "workflow-step";
    /// The plugin's operations can run as scheduled tasks.
    pub const SCHEDULED_TASK: &str = "scheduled-task";
    /// The plugin reads or writes the execution's shared state.
    pub const CONTEXT_MANAGEMENT: &str = "context-management";
    /// The plugin starts workflows, reads executions' status and creates or
    /// cancels schedules through [`super::HostServices::orchestrate`] (since
    /// contract 0.3; the plugin's manifest must grant it too:
    /// `[permissions] orchestration = true`). Framework0's orchestration plugin.
    pub const ORCHESTRATION: &str = "orchestration";
}

/// One operation a plugin offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperationInfo {
    /// Name used to call it, e.g. `echo`.
    pub name: String,
    /// One line for `plexus plugins info`.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the parameters, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_schema: Option<Value>,
    /// JSON Schema of the output, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

/// What a plugin says about itself; queried once at load time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metadata {
    /// Unique id, reverse-DNS style, e.g. `plexus.csv`.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Semantic version of the plugin, e.g. `1.2.0`.
    pub version: String,
    /// One paragraph about what the plugin does.
    #[serde(default)]
    pub description: String,
    /// Authors, e.g. `["Ada <ada@example.org>"]`.
    #[serde(default)]
    pub authors: Vec<String>,
    /// SPDX licence expression, if any.
    #[serde(default)]
    pub license: Option<String>,
    /// The contract version the plugin was built against (see [`CONTRACT_VERSION`]).
    pub contract_version: String,
    /// Capability tags (see [`capability`]).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The operations the plugin offers.
    #[serde(default)]
    pub operations: Vec<OperationInfo>,
}

impl Metadata {
    /// The operation called `name`, if the plugin declares it.
    pub fn operation(&self, name: &str) -> Option<&OperationInfo> {
        self.operations.iter().find(|op| op.name == name)
    }
}

/// Everything a call knows about the execution it belongs to.
///
/// Exactly one of `workflow_id`/`step_id` (a workflow step) or `task_id`
/// (a scheduled task) is usually set; a direct `plexus call` sets neither.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExecutionContext {
    /// Unique id of this execution.
    pub execution_id: String,
    /// The workflow this call is a step of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// The step of `workflow_id` this call runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// The scheduled task this call runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
    /// Deadline in milliseconds since the Unix epoch, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The operation to run.
    pub operation: String,
    /// The operation's parameters.
    #[serde(default)]
    pub parameters: Value,
    /// Outputs of upstream steps, keyed by step id.
    #[serde(default)]
    pub upstream: Map<String, Value>,
    /// The plugin's configuration (the `[config]` table of its manifest).
    #[serde(default)]
    pub config: Value,
    /// The schedule that fired this call, if a schedule did (since contract
    /// 0.3; set by the host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleInfo>,
}

/// The schedule that fired a call: a scheduled task, or a step of a workflow
/// a schedule started (see [`crate::Context::schedule`]).
///
/// Since contract 0.3 it travels in [`ExecutionContext::schedule`], which
/// only the host sets. For plugins built against 0.1 and 0.2 the host also
/// writes it into the execution's shared state under [`SCHEDULE_STATE_KEY`]
/// (where a plugin could overwrite it: not read by this SDK any more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleInfo {
    /// The schedule id (also the call's `task_id`).
    pub id: String,
    /// The fire time it was scheduled for, in ms since the Unix epoch (not the
    /// start time: a late or caught-up run still sees its own fire time).
    pub fire_time_ms: u64,
    /// The same time as RFC 3339 text, e.g. `2026-12-01T10:00:00+00:00`.
    pub fire_time: String,
}

/// The shared-state key holding a scheduled run's [`ScheduleInfo`] for
/// plugins built against contracts 0.1 and 0.2 (see [`ExecutionContext::schedule`]).
pub const SCHEDULE_STATE_KEY: &str = "schedule";

/// A successful call's result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallOutput {
    /// The operation's output.
    pub output: Value,
    /// Named numbers the plugin reported, e.g. `rows = 1461`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<(String, f64)>,
    /// The artifacts the call wrote ([`HostServices::artifact_finish`]), in
    /// the order they were finished. Filled by the host from what it stored,
    /// never taken from the plugin's answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactRef>,
}

/// A reference to an artifact: bytes a call wrote to the host's
/// content-addressed blob store instead of returning them as output (since
/// contract 0.4; Dagster's and Argo's artifacts). Steps pass these small
/// JSON objects (`${{ steps.load.artifacts.rows }}`); a consuming plugin
/// reads the bytes with [`HostServices::artifact_open`].
///
/// As JSON: `{"artifact": "sha256:<64 hex>", "name": "rows", "bytes":
/// 48213, "media_type": "application/x-ndjson"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactRef {
    /// The content's digest, `sha256:` and 64 lowercase hex digits.
    pub artifact: String,
    /// The name the producing call gave it ([`MAX_ARTIFACT_NAME`] bytes of
    /// `A-Z a-z 0-9 . _ -`), e.g. `rows`.
    pub name: String,
    /// Its size, bytes.
    pub bytes: u64,
    /// Its media type, if the producer said, e.g. `text/csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl ArtifactRef {
    /// The 64 hex digits of the digest, if [`Self::artifact`] is well formed.
    pub fn digest_hex(&self) -> Option<&str> {
        let hex = self.artifact.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(hex)
    }
    /// `value` as a reference, if it is one (an object with a well-formed
    /// `artifact` digest, a `name` and `bytes`).
    pub fn from_value(value: &Value) -> Option<Self> {
        let reference: Self = serde_json::from_value(value.clone()).ok()?;
        reference.digest_hex().is_some().then_some(reference)
    }
}

/// Longest artifact name, bytes.
pub const MAX_ARTIFACT_NAME: usize = 128;
/// Most artifacts one call may write.
pub const MAX_ARTIFACTS_PER_CALL: usize = 64;
/// Most bytes one [`HostServices::artifact_write`] or
/// [`HostServices::artifact_read`] moves (4 MiB): the host's memory per
/// request stays bounded whatever the artifact's size.
pub const MAX_ARTIFACT_CHUNK_BYTES: u32 = 4 << 20;

/// Check an artifact name: 1 to [`MAX_ARTIFACT_NAME`] bytes of
/// `A-Z a-z 0-9 . _ -`, not starting with `.`.
///
/// # Errors
/// A message saying what is wrong with it.
pub fn check_artifact_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ARTIFACT_NAME {
        return Err(format!("an artifact name has 1 to {MAX_ARTIFACT_NAME} bytes"));
    }
    if name.starts_with('.') || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(format!("artifact name `{name}`: use A-Z a-z 0-9 . _ - (not first `.`)"));
    }
    Ok(())
}

/// An artifact the host opened for a call: being written
/// ([`HostServices::artifact_create`]) or read ([`HostServices::artifact_open`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactHandle {
    /// The id the call passes back to the host for it.
    pub id: u32,
    /// A file the plugin's own process may write (a new artifact) or read
    /// (an opened one) directly instead of moving the bytes through the
    /// host: given to native plugins, never to WASM components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
}

/// The artifact requests a native plugin sends through the host's request
/// channel (the one [`Orchestration`] uses; native ABI 0.1.1), as JSON
/// `{"op": "artifact-create", ...}`. The host answers an
/// [`ArtifactHandle`] or an [`ArtifactRef`] with a file path: a native
/// plugin reads and writes the bytes itself.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum ArtifactRequest {
    /// [`HostServices::artifact_create`].
    ArtifactCreate {
        /// The name.
        name: String,
        /// The media type.
        #[serde(default)]
        media_type: Option<String>,
    },
    /// [`HostServices::artifact_finish`].
    ArtifactFinish {
        /// The writer's id.
        id: u32,
    },
    /// [`HostServices::artifact_open`].
    ArtifactOpen {
        /// The reference.
        reference: ArtifactRef,
    },
}

fn no_artifacts() -> PluginError {
    PluginError::failed("this host offers no artifact store")
}

/// Why a plugin refused or failed an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The parameters or upstream data are not acceptable.
    InvalidInput,
    /// The plugin has no operation of that name.
    UnsupportedOperation,
    /// Something the operation needs does not exist.
    NotFound,
    /// The operation ran and failed.
    Failed,
    /// The operation stopped because the host asked it to (see
    /// [`HostServices::is_cancelled`]); since contract 0.2.
    Cancelled,
}

impl ErrorKind {
    /// The kebab-case name used in JSON, WIT and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::UnsupportedOperation => "unsupported-operation",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Failed => "failed",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a plugin returned, as plain data.
///
/// A trap, a panic or a timeout is *not* a `PluginError`: the host reports
/// those as their own kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// A message for people.
    pub message: String,
    /// Whether retrying the same call may succeed.
    #[serde(default)]
    pub retryable: bool,
}

impl PluginError {
    /// An error of `kind`, not retryable.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retryable: false }
    }
    /// [`ErrorKind::InvalidInput`], not retryable.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// [`ErrorKind::Failed`], not retryable.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }
    /// [`ErrorKind::NotFound`], not retryable.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// [`ErrorKind::Cancelled`]: the operation stopped because the host asked
    /// it to (see [`crate::Context::check_cancelled`]).
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, message)
    }
    /// [`ErrorKind::UnsupportedOperation`] for `operation`.
    pub fn unsupported(operation: &str) -> Self {
        Self::new(ErrorKind::UnsupportedOperation, format!("no operation named `{operation}`"))
    }
    /// The same error, marked retryable.
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if self.retryable {
            f.write_str(" (retryable)")?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginError {}

/// `?` on an I/O error: [`ErrorKind::NotFound`] for a missing file or
/// directory, [`ErrorKind::Failed`] otherwise, retryable when the OS says the
/// same call may work later (interrupted, timed out, would block).
impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = if e.kind() == Io::NotFound { ErrorKind::NotFound } else { ErrorKind::Failed };
        let retryable = matches!(e.kind(), Io::Interrupted | Io::TimedOut | Io::WouldBlock);
        Self { kind, message: e.to_string(), retryable }
    }
}

/// `?` on a JSON error: [`ErrorKind::InvalidInput`] for text that is not JSON
/// or does not have the expected shape, [`ErrorKind::Failed`] for an I/O error
/// underneath.
impl From<serde_json::Error> for PluginError {
    fn from(e: serde_json::Error) -> Self {
        let kind = if e.is_io() { ErrorKind::Failed } else { ErrorKind::InvalidInput };
        Self::new(kind, format!("JSON: {e}"))
    }
}

/// Conversions of parse errors (numbers, booleans, UTF-8) into
/// [`ErrorKind::InvalidInput`], so `?` works on `str::parse` and friends.
macro_rules! invalid_input_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for PluginError {
            fn from(e: $error) -> Self {
                Self::invalid_input(e.to_string())
            }
        }
    )*};
}

invalid_input_from!(
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::str::ParseBoolError,
    std::char::ParseCharError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::num::TryFromIntError,
);

/// `?` on a message: [`ErrorKind::Failed`] with that message.
impl From<String> for PluginError {
    fn from(message: String) -> Self {
        Self::failed(message)
    }
}

/// `?` on a message: [`ErrorKind::Failed`] with that message.
impl From<&str> for PluginError {
    fn from(message: &str) -> Self {
        Self::failed(message)
    }
}

/// Turn any error into a [`PluginError`] of a chosen kind, with context:
/// `std::fs::read(path).or_kind(ErrorKind::NotFound, "reading the table")?`.
pub trait ResultExt<T> {
    /// On `Err(e)`, a [`PluginError`] of `kind` reading `"{context}: {e}"`.
    ///
    /// # Errors
    /// The converted error.
    fn or_kind(self, kind: ErrorKind, context: impl fmt::Display) -> Result<T, PluginError>;
    /// [`Self::or_kind`] with [`ErrorKind::InvalidInput`].
    ///
    /// # Errors
    /// The converted error.
    fn or_invalid_input(self, context: impl fmt::Display) -> Result<T, PluginError>
    where
        Self: Sized,
    {
        self.or_kind(ErrorKind::InvalidInput, context)
    }
    /// [`Self::or_kind`] with [`ErrorKind::Failed`].
    ///
    /// # Errors
    /// The converted error.
    fn or_failed(self, context: impl fmt::Display) -> Result<T, PluginError>
    where
        Self: Sized,
    {
        self.or_kind(ErrorKind::Failed, context)
    }
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn or_kind(self, kind: ErrorKind, context: impl fmt::Display) -> Result<T, PluginError> {
        self.map_err(|e| PluginError::new(kind, format!("{context}: {e}")))
    }
}

/// Severity of a log record a plugin sends to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum LogLevel {
    /// Very detailed.
    Trace = 0,
    /// Useful when debugging.
    Debug = 1,
    /// Normal operation.
    Info = 2,
    /// Something unexpected that the plugin handled.
    Warn = 3,
    /// Something failed.
    Error = 4,
}

impl LogLevel {
    /// The level for a wire value; unknown values become [`LogLevel::Info`].
    pub fn from_u8(value: u8) -> Self {
        match value {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

/// Services the host offers to a plugin during a call.
///
/// Implemented by the host (for both transports) and by [`crate::testing::TestHost`].
pub trait HostServices {
    /// Forward a log record to the host (`tracing`, tagged with the plugin id).
    fn log(&self, level: LogLevel, message: &str);
    /// Read a key of the execution's shared state.
    fn state_get(&self, key: &str) -> Option<Value>;
    /// Write a key of the execution's shared state.
    fn state_set(&self, key: &str, value: Value);
    /// Report progress: `fraction` in `0.0..=1.0` plus a message.
    fn report_progress(&self, fraction: f64, message: &str);
    /// Whether the host has asked this execution to stop.
    fn is_cancelled(&self) -> bool;
    /// Ask the host's orchestrator to do `request` (since contract 0.3);
    /// each variant of [`Orchestration`] says what it answers.
    ///
    /// # Errors
    /// `failed` when the plugin may not orchestrate (it does not declare
    /// [`capability::ORCHESTRATION`], or its manifest does not grant it), the
    /// host has no orchestrator, or the call made too many requests;
    /// `not-found` / `invalid-input` for what the request names.
    /// The default: no orchestrator.
    fn orchestrate(&self, request: &Orchestration) -> Result<Value, PluginError> {
        let _ = request;
        Err(PluginError::failed("this host offers no orchestration services"))
    }
    /// Begin artifact `name` (see [`check_artifact_name`]) of `media_type`
    /// (since contract 0.4). Write its bytes with [`Self::artifact_write`]
    /// (or into [`ArtifactHandle::path`] when the host gives one), then
    /// [`Self::artifact_finish`]. Prefer [`crate::Context::create_artifact`].
    ///
    /// # Errors
    /// `invalid-input` for a bad name; `failed` when the host has no
    /// artifact store or the call already wrote [`MAX_ARTIFACTS_PER_CALL`].
    fn artifact_create(&self, name: &str, media_type: Option<&str>) -> Result<ArtifactHandle, PluginError> {
        let _ = (name, media_type);
        Err(no_artifacts())
    }
    /// Append `data` (at most [`MAX_ARTIFACT_CHUNK_BYTES`]) to artifact writer `id`.
    ///
    /// # Errors
    /// `not-found` for an unknown writer; `invalid-input` past the chunk
    /// size; `failed` past the plugin's `limits.artifact_bytes` or on an I/O error.
    fn artifact_write(&self, id: u32, data: &[u8]) -> Result<(), PluginError> {
        let _ = (id, data);
        Err(no_artifacts())
    }
    /// Store artifact writer `id`'s bytes (once, by content) and answer its reference.
    ///
    /// # Errors
    /// `not-found` for an unknown writer; `failed` on an I/O error.
    fn artifact_finish(&self, id: u32) -> Result<ArtifactRef, PluginError> {
        let _ = id;
        Err(no_artifacts())
    }
    /// Open the artifact `reference` names for reading with
    /// [`Self::artifact_read`] (or through [`ArtifactHandle::path`]).
    ///
    /// # Errors
    /// `not-found` when the artifact does not belong to this call's
    /// execution (or one it descends from) or is gone; `failed` when the
    /// host has no artifact store.
    fn artifact_open(&self, reference: &ArtifactRef) -> Result<ArtifactHandle, PluginError> {
        let _ = reference;
        Err(no_artifacts())
    }
    /// The next at most `max_bytes` (capped at [`MAX_ARTIFACT_CHUNK_BYTES`])
    /// of opened artifact `id`; empty at its end.
    ///
    /// # Errors
    /// `not-found` for an unknown reader; `failed` on an I/O error.
    fn artifact_read(&self, id: u32, max_bytes: u32) -> Result<Vec<u8>, PluginError> {
        let _ = (id, max_bytes);
        Err(no_artifacts())
    }
}

/// What a plugin may ask the host's orchestrator (see
/// [`HostServices::orchestrate`]; the `orchestration` functions of
/// `plexus:plugin/host@0.3.0`). As JSON: `{"op": "start-workflow", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Orchestration {
    /// Start the current version of registered workflow `workflow` with
    /// `inputs`; answers the new execution's id (a JSON string) at once.
    StartWorkflow {
        /// The workflow id.
        workflow: String,
        /// Its inputs (a JSON object).
        #[serde(default)]
        inputs: Map<String, Value>,
    },
    /// The status of `execution`: the HTTP API's execution view (`state`,
    /// `progress`, `current_step`, `completed_steps`, ...).
    ExecutionStatus {
        /// The execution id.
        execution: String,
    },
    /// Create a schedule from `spec` (the HTTP API's schedule spec: `id`,
    /// `cron` or `every_ms`, `workflow` or `task`, ...); answers its id. The
    /// schedule belongs to the plugin that created it.
    CreateSchedule {
        /// The schedule spec.
        spec: Value,
    },
    /// Delete schedule `schedule`, which the calling plugin created;
    /// answers `null`.
    CancelSchedule {
        /// The schedule id.
        schedule: String,
    },
}

impl Orchestration {
    /// The request's name, as in WIT (`start-workflow`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Orchestration::StartWorkflow { .. } => "start-workflow",
            Orchestration::ExecutionStatus { .. } => "execution-status",
            Orchestration::CreateSchedule { .. } => "create-schedule",
            Orchestration::CancelSchedule { .. } => "cancel-schedule",
        }
    }
}

/// The most orchestration requests one call may make: 64. Past it each
/// request fails (`failed`), so a plugin cannot flood the orchestrator.
pub const MAX_ORCHESTRATION_REQUESTS_PER_CALL: u32 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn fails<E>(e: E) -> PluginError
    where
        PluginError: From<E>,
    {
        let r: Result<(), E> = Err(e);
        (|| -> Result<(), PluginError> { Ok(r?) })().unwrap_err()
    }

    #[test]
    fn question_mark_converts_common_errors_into_the_fitting_kind() {
        let missing = fails(std::fs::read("/nonexistent/plexus/file").unwrap_err());
        assert_eq!((missing.kind, missing.retryable), (ErrorKind::NotFound, false));
        let timed_out = fails(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!((timed_out.kind, timed_out.retryable), (ErrorKind::Failed, true));
        let denied = fails(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!((denied.kind, denied.retryable), (ErrorKind::Failed, false));
        let json = fails(serde_json::from_str::<Value>("{nope").unwrap_err());
        assert_eq!(json.kind, ErrorKind::InvalidInput);
        assert!(json.message.starts_with("JSON: "), "{}", json.message);
        let number = fails("12x".parse::<u32>().unwrap_err());
        assert_eq!(number.kind, ErrorKind::InvalidInput);
        assert_eq!(number.message, "invalid digit found in string");
        assert_eq!(fails("1.2.3".parse::<f64>().unwrap_err()).kind, ErrorKind::InvalidInput);
        assert_eq!(fails(String::from_utf8(vec![0xff]).unwrap_err()).kind, ErrorKind::InvalidInput);
        assert_eq!(fails(u8::try_from(300_i32).unwrap_err()).kind, ErrorKind::InvalidInput);
        let said = fails("no rows");
        assert_eq!((said.kind, said.message.as_str()), (ErrorKind::Failed, "no rows"));
    }

    #[test]
    fn result_ext_picks_the_kind_and_adds_context() {
        let r: Result<(), std::fmt::Error> = Err(std::fmt::Error);
        let e = r.or_kind(ErrorKind::NotFound, "looking up `x`").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message, format!("looking up `x`: {}", std::fmt::Error));
        let e = "x".parse::<i32>().or_invalid_input("column `year`").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.starts_with("column `year`: "));
        assert_eq!(Ok::<_, String>(3).or_failed("never").unwrap(), 3);
    }
}
