//! What an execution looks like from outside: statuses, per-step records,
//! and the one state machine every step change goes through
//! ([`StepStatus::apply`]). The engine (`plexus-workflow`) records these, the
//! daemon stores and serves them, clients read them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The status of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started yet.
    Pending,
    /// An attempt is running.
    Running,
    /// Finished with an output.
    Completed,
    /// Finished with an error (after its retries).
    Failed,
    /// Not run: its condition was false, or a dependency did not complete.
    Skipped,
    /// Stopped or never started because the execution was cancelled or failed.
    Cancelled,
    /// Waiting for its next attempt.
    Retrying,
    /// A wait step waiting for its signal (the execution may be parked: no
    /// worker runs it meanwhile).
    Waiting,
}

impl StepStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Running,
        Self::Retrying,
        Self::Waiting,
        Self::Completed,
        Self::Failed,
        Self::Skipped,
        Self::Cancelled,
    ];

    /// The status named `name` (its [`Self::as_str`] name, as serde names
    /// it: every variant, whatever `ALL` lists), if any.
    pub fn parse(name: &str) -> Option<Self> {
        by_name(name)
    }

    /// Whether the step will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Skipped | Self::Cancelled)
    }
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Retrying => "retrying",
            Self::Waiting => "waiting",
        }
    }
}

/// What happens to a step; [`StepStatus::apply`] says what status it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEvent {
    /// An attempt starts.
    Start,
    /// The attempt returned an output.
    Succeed,
    /// The step failed for good (its last attempt failed, or it could not run).
    Fail,
    /// The attempt failed and another one will follow after a delay.
    RetryLater,
    /// Not to run: its condition was false or a dependency did not complete.
    Skip,
    /// The execution stopped (cancel, a critical failure) before the step ended.
    Cancel,
    /// The host stopped while the step was running or waiting to retry; at
    /// the next start it is run again per its retry policy.
    Interrupt,
    /// `retry` of the execution: a step that did not complete starts over.
    Reset,
    /// A wait step starts waiting for its signal (again, after a restart).
    Wait,
}

/// A transition the state machine does not allow (a bug in the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {} step cannot {event:?}", from.as_str())]
pub struct IllegalTransition {
    /// The status the step had.
    pub from: StepStatus,
    /// What was to happen.
    pub event: StepEvent,
}

impl StepStatus {
    /// The status after `event`: the one state machine every step change
    /// goes through.
    ///
    /// ```text
    /// pending ──start──▶ running ──succeed──▶ completed
    ///    │                 │  ▲  └──fail─────▶ failed
    ///    ├──skip──▶ skipped │  └start┐
    ///    │              retry_later  │
    ///    │                 ▼         │
    ///    │              retrying ────┘          (cancel: pending, running, retrying ▶ cancelled;
    ///    └──fail──▶ failed                       interrupt: running, retrying ▶ pending;
    ///                                            reset: failed, skipped, cancelled ▶ pending)
    /// pending ──wait──▶ waiting ──succeed (its signal)──▶ completed; waiting ──fail (timeout)──▶ failed;
    /// waiting ──cancel──▶ cancelled; a restart leaves it waiting (wait again: waiting ▶ waiting)
    /// ```
    ///
    /// # Errors
    /// [`IllegalTransition`] for any pair not drawn above (e.g. a completed
    /// step starting again, or a running one being skipped).
    pub fn apply(self, event: StepEvent) -> Result<StepStatus, IllegalTransition> {
        use StepEvent as E;
        use StepStatus as S;
        Ok(match (self, event) {
            (S::Pending | S::Retrying, E::Start) => S::Running,
            (S::Running | S::Waiting, E::Succeed) => S::Completed,
            (S::Pending | S::Running | S::Retrying | S::Waiting, E::Fail) => S::Failed,
            (S::Running, E::RetryLater) => S::Retrying,
            (S::Pending, E::Skip) => S::Skipped,
            (S::Pending | S::Running | S::Retrying | S::Waiting, E::Cancel) => S::Cancelled,
            (S::Pending | S::Running | S::Retrying, E::Interrupt) => S::Pending,
            (S::Pending | S::Waiting, E::Wait) => S::Waiting,
            (S::Completed, E::Reset) => S::Completed,
            (S::Pending | S::Failed | S::Skipped | S::Cancelled, E::Reset) => S::Pending,
            (from, event) => return Err(IllegalTransition { from, event }),
        })
    }

    /// [`Self::apply`] for the engine: an illegal transition is a bug,
    /// logged (and a panic in debug builds); the step still takes `fallback`
    /// so a release build keeps going.
    pub fn apply_or(self, event: StepEvent, fallback: StepStatus) -> StepStatus {
        self.apply(event).unwrap_or_else(|e| {
            tracing::error!("step state machine: {e}");
            debug_assert!(false, "step state machine: {e}");
            fallback
        })
    }
}

/// The status of a whole execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// Accepted, not started.
    Pending,
    /// Steps are running.
    Running,
    /// A critical step failed or the execution was cancelled; compensations are running.
    RollingBack,
    /// Every step completed, was skipped, or failed without being critical.
    Completed,
    /// A critical step failed (or the workflow timed out); completed steps were compensated.
    Failed,
    /// Cancelled; completed steps were compensated.
    Cancelled,
    /// Failed or cancelled, and at least one compensation failed too; or
    /// rolled back by its transaction, and one of those compensations failed.
    RollbackFailed,
    /// Completed, then rolled back by its transaction (QtForge's
    /// `rollback_transaction`): every completed step was compensated.
    RolledBack,
}

impl WorkflowStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Running,
        Self::RollingBack,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::RollbackFailed,
        Self::RolledBack,
    ];

    /// The status named `name` (its [`Self::as_str`] name, as serde names
    /// it: every variant, whatever `ALL` lists), if any.
    pub fn parse(name: &str) -> Option<Self> {
        by_name(name)
    }

    /// Whether the execution is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled | Self::RollbackFailed | Self::RolledBack)
    }
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::RollingBack => "rolling_back",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::RollbackFailed => "rollback_failed",
            Self::RolledBack => "rolled_back",
        }
    }
}

/// An error recorded for a step or a compensation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepError {
    /// `plugin-error`, `timeout`, `trap`, `panic`, `condition`, `parameters`, …
    pub kind: String,
    /// What happened.
    pub message: String,
    /// Whether it was retryable.
    pub retryable: bool,
}

/// One step of an execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepRecord {
    /// Step id.
    pub id: String,
    /// Plugin id.
    pub plugin_id: String,
    /// Operation.
    pub operation: String,
    /// Current status.
    pub status: StepStatus,
    /// Output, once completed.
    pub output: Option<Value>,
    /// The last error.
    pub error: Option<StepError>,
    /// Why it was skipped or cancelled.
    pub reason: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Start of the first attempt, ms since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// End of the last attempt, ms since the Unix epoch.
    pub ended_at_ms: Option<u64>,
    /// `ended_at_ms - started_at_ms`, including retry delays.
    pub duration_ms: Option<u64>,
    /// Named numbers the plugin reported with its last completed call, e.g.
    /// `{"rows": 1461}` (at most [`MAX_STEP_METRICS`]; values that are not
    /// finite numbers are dropped).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// The plugin's last progress report during its current or last attempt.
    /// Live: it is kept in memory as it comes and recorded with the step's
    /// next transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<StepProgress>,
    /// What its attempts used, where the runtime can measure it (CPU time
    /// added up over the attempts, the largest peak memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<StepUsage>,
    /// The artifacts its completed call wrote, by name (contract 0.4): what
    /// `${{ steps.<id>.artifacts.<name> }}` reads. References only; the
    /// bytes are in the host's artifact store.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub artifacts: BTreeMap<String, plexus_sdk::ArtifactRef>,
}

/// One item of a map step (`for_each`): the step's operation run for one
/// element of its list, with its own status, attempts and retries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemRecord {
    /// Its position in the list, from 0.
    pub index: usize,
    /// Current status.
    pub status: StepStatus,
    /// Output, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Start of the first attempt, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// End of the last attempt, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
}

impl ItemRecord {
    /// Item `index`, not started.
    pub fn pending(index: usize) -> Self {
        Self {
            index,
            status: StepStatus::Pending,
            output: None,
            error: None,
            attempts: 0,
            started_at_ms: None,
            ended_at_ms: None,
        }
    }
}

/// What a step's calls used, as their runtime measured it: CPU time from
/// the calling thread (WASM and in-process native plugins) or the worker
/// process (native plugins in worker processes: its `getrusage`, all its
/// threads); peak memory from a WASM instance's linear memories (their
/// high-water mark) or a worker process's peak resident set so far
/// (`ru_maxrss`, over every call it served). A part not measured is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepUsage {
    /// CPU time, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<f64>,
    /// Peak memory, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
}

/// A step's result as QtForge's `StepResult` names it (`get_step_results`):
/// the same facts as [`StepRecord`], under QtForge's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepResult {
    /// Step id.
    pub step_id: String,
    /// Its status.
    pub status: StepStatus,
    /// Its output (`null` until it completed).
    pub result_data: Value,
    /// The last error's message, if it failed (or failed an attempt).
    pub error_message: Option<String>,
    /// Retries attempted: attempts after the first.
    pub retry_count: u32,
    /// Start of the first attempt, ms since the Unix epoch.
    pub start_time: Option<u64>,
    /// End of the last attempt, ms since the Unix epoch.
    pub end_time: Option<u64>,
    /// QtForge's `execution_time()`: `end_time - start_time`, ms (retry delays included).
    pub execution_time: Option<u64>,
}

impl From<&StepRecord> for StepResult {
    fn from(r: &StepRecord) -> Self {
        Self {
            step_id: r.id.clone(),
            status: r.status,
            result_data: r.output.clone().unwrap_or(Value::Null),
            error_message: r.error.as_ref().map(|e| e.message.clone()),
            retry_count: r.attempts.saturating_sub(1),
            start_time: r.started_at_ms,
            end_time: r.ended_at_ms,
            execution_time: r.duration_ms,
        }
    }
}

/// The most metrics kept for one step; a plugin reporting more keeps its first ones.
pub const MAX_STEP_METRICS: usize = 64;

/// A plugin's progress report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepProgress {
    /// How far, 0.0 to 1.0.
    pub fraction: f64,
    /// What the plugin said (at most 1 KiB kept).
    pub message: String,
}

/// A compensation that ran during rollback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompensationRecord {
    /// The step it compensates.
    pub step: String,
    /// Plugin id.
    pub plugin_id: String,
    /// Operation.
    pub operation: String,
    /// `completed` or `failed`.
    pub status: StepStatus,
    /// Output, if it completed.
    pub output: Option<Value>,
    /// Error, if it failed.
    pub error: Option<StepError>,
    /// How long it took.
    pub duration_ms: u64,
}

/// Everything known about an execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionStatus {
    /// Execution id.
    pub execution_id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// Overall status.
    pub status: WorkflowStatus,
    /// Finished steps / all steps, 0.0–1.0.
    pub progress: f64,
    /// Steps running or waiting to retry now.
    pub current_steps: Vec<String>,
    /// QtForge's `current_step`: the first of [`Self::current_steps`] in
    /// declaration order, if any.
    #[serde(default)]
    pub current_step: Option<String>,
    /// Steps that completed.
    pub completed_steps: usize,
    /// Steps in the workflow.
    pub total_steps: usize,
    /// Inputs after defaults.
    pub inputs: Map<String, Value>,
    /// Per step, in declaration order.
    pub steps: Vec<StepRecord>,
    /// Compensations run during rollback, in the order they ran.
    pub compensations: Vec<CompensationRecord>,
    /// Workflow outputs (after completion).
    pub outputs: Map<String, Value>,
    /// Why the execution failed, if it did.
    pub error: Option<String>,
    /// When it started, ms since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// When it ended, ms since the Unix epoch.
    pub ended_at_ms: Option<u64>,
}

impl ExecutionStatus {
    /// The record of step `id`.
    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Recompute `progress`, `current_steps` (and `current_step`) and `completed_steps` from the step records.
    pub fn refresh(&mut self) {
        let done = self.steps.iter().filter(|s| s.status.is_terminal()).count();
        self.progress = if self.total_steps == 0 { 1.0 } else { done as f64 / self.total_steps as f64 };
        self.completed_steps = self.steps.iter().filter(|s| s.status == StepStatus::Completed).count();
        self.current_steps = self
            .steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Running | StepStatus::Retrying))
            .map(|s| s.id.clone())
            .collect();
        self.current_step = self.current_steps.first().cloned();
    }
}

/// The unit variant of `T` that serde names `name`.
fn by_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    use serde::de::IntoDeserializer;
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(name)).ok()
}

#[cfg(test)]
mod names {
    use super::{StepStatus, WorkflowStatus};

    #[test]
    fn a_status_has_one_name_in_json_in_text_and_in_the_store() {
        for s in StepStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(StepStatus::parse(s.as_str()), Some(s));
        }
        for s in WorkflowStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(WorkflowStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(StepStatus::parse("Running"), None, "names are exact");
        assert_eq!(WorkflowStatus::parse(""), None);
    }
}

#[cfg(test)]
mod state_machine {
    use super::{StepEvent as E, StepStatus as S};

    const ALL_STATUSES: [S; 8] =
        [S::Pending, S::Running, S::Completed, S::Failed, S::Skipped, S::Cancelled, S::Retrying, S::Waiting];
    const ALL_EVENTS: [E; 9] =
        [E::Start, E::Succeed, E::Fail, E::RetryLater, E::Skip, E::Cancel, E::Interrupt, E::Reset, E::Wait];

    /// Every (status, event) pair, and what it must give (`None`: refused).
    fn expected(from: S, event: E) -> Option<S> {
        let row: [Option<S>; 9] = match from {
            //            Start            Succeed           Fail             RetryLater        Skip            Cancel             Interrupt        Reset           Wait
            S::Pending => [
                Some(S::Running),
                None,
                Some(S::Failed),
                None,
                Some(S::Skipped),
                Some(S::Cancelled),
                Some(S::Pending),
                Some(S::Pending),
                Some(S::Waiting),
            ],
            S::Running => [
                None,
                Some(S::Completed),
                Some(S::Failed),
                Some(S::Retrying),
                None,
                Some(S::Cancelled),
                Some(S::Pending),
                None,
                None,
            ],
            S::Retrying => {
                [Some(S::Running), None, Some(S::Failed), None, None, Some(S::Cancelled), Some(S::Pending), None, None]
            }
            S::Waiting => [
                None,
                Some(S::Completed),
                Some(S::Failed),
                None,
                None,
                Some(S::Cancelled),
                None,
                None,
                Some(S::Waiting),
            ],
            S::Completed => [None, None, None, None, None, None, None, Some(S::Completed), None],
            S::Failed | S::Skipped | S::Cancelled => [None, None, None, None, None, None, None, Some(S::Pending), None],
        };
        row[ALL_EVENTS.iter().position(|e| *e == event).unwrap()]
    }

    #[test]
    fn every_transition_is_in_the_table() {
        for from in ALL_STATUSES {
            for event in ALL_EVENTS {
                assert_eq!(from.apply(event).ok(), expected(from, event), "{from:?} + {event:?}");
            }
        }
    }

    #[test]
    fn a_terminal_step_changes_only_by_a_reset() {
        for from in ALL_STATUSES.into_iter().filter(|s| s.is_terminal()) {
            for event in ALL_EVENTS.into_iter().filter(|e| *e != E::Reset) {
                let err = from.apply(event).unwrap_err();
                assert_eq!((err.from, err.event), (from, event));
            }
        }
    }

    #[test]
    fn workflow_statuses_are_read_back_under_the_name_they_are_stored_and_served_with() {
        for status in super::WorkflowStatus::ALL {
            assert_eq!(super::WorkflowStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(super::WorkflowStatus::parse("exploded"), None);
    }
}
