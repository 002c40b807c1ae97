//! `/v1/executions`: starting, watching, cancelling and retrying executions.

use crate::status::{
    CompensationRecord, ExecutionStatus, ItemRecord, StepRecord, StepResult, StepStatus, WorkflowStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/executions`: which workflow, with which inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartExecution {
    /// Workflow id.
    pub workflow: String,
    /// The registered version to run (default: the current one); it is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// An open transaction to run it in (default: the workflow's own
    /// `transaction`, if it names one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// Inputs by name; defaults fill the rest.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub inputs: Map<String, Value>,
    /// Which waiting execution gets the next free worker (default `normal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
}

/// An execution's priority (Framework0's `PluginPriority`): when every
/// worker is busy, the waiting execution of the highest priority starts
/// first, and of equal priorities the oldest. A running execution is never
/// preempted, and a steady stream of higher-priority work can keep lower
/// priorities waiting (as Kubernetes' PriorityClass does without preemption).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Starts after every other waiting execution.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Starts before normal and low ones.
    High,
    /// Starts before every other waiting execution.
    Critical,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Priority; 4] = [Priority::Low, Priority::Normal, Priority::High, Priority::Critical];

    /// `low`, `normal`, `high` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The priority named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Its rank, 0 (low) to 3 (critical), as stored.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The priority of rank `rank` (out of range: normal).
    pub fn from_rank(rank: i64) -> Self {
        usize::try_from(rank).ok().and_then(|r| Self::ALL.get(r).copied()).unwrap_or_default()
    }
}

/// `POST /v1/executions` (202): the execution was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Started {
    /// The new execution's id.
    pub execution_id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// The workflow version it is pinned to.
    pub workflow_version: u32,
    /// Its status now (usually `pending` or `running`).
    pub status: WorkflowStatus,
}

/// The query of `GET /v1/executions`: filters, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ExecutionQuery {
    /// Only this workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Only executions with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WorkflowStatus>,
    /// Only those started by this schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// At most this many, newest first (default 100, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `true`: only those that have not ended (pending, running, rolling
    /// back) — QtForge's `list_active_executions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Paging: only executions older than this execution id (pass the last
    /// id of a page to get the next one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// `GET /v1/executions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionList {
    /// Newest first.
    pub executions: Vec<ExecutionSummary>,
}

/// One execution of [`ExecutionList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionSummary {
    /// Execution id.
    pub execution_id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// Pinned workflow version.
    pub workflow_version: u32,
    /// Status.
    pub status: WorkflowStatus,
    /// The error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The schedule that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// Accepted at, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Ended at, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
}

/// The execution-level facts the engine's status does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionMeta {
    /// The workflow version the execution is pinned to.
    pub workflow_version: u32,
    /// The schedule that started it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// The fire time it was scheduled for, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at_ms: Option<u64>,
    /// When it was accepted, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// 1, plus one per retry.
    pub runs: u32,
    /// The transaction it runs in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Its priority for a free worker.
    #[serde(default)]
    pub priority: Priority,
}

/// `GET /v1/executions/{id}` and `POST /v1/executions/{id}/retry`: the status
/// with every step, and the execution's metadata, in one object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Execution {
    /// Status, progress, steps, outputs.
    #[serde(flatten)]
    pub status: ExecutionStatus,
    /// Version, schedule, times.
    #[serde(flatten)]
    pub meta: ExecutionMeta,
    /// `true` while a state write failed: no step starts until it is recorded
    /// again (see `GET /v1/health`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// In a cluster (several daemons on one PostgreSQL): the node running
    /// it; absent while no node has claimed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// In a cluster: plugins it needs that no live node has loaded. It
    /// waits (`pending`) until a node that has them joins; it does not fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for_plugins: Vec<String>,
    /// A sub-workflow's child: its parent execution (the child's id is
    /// `<parent>~<step>`), whose step `parent_step` waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The parent's step that runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_step: Option<String>,
}

/// `GET /v1/executions/{id}/steps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionSteps {
    /// Execution id.
    pub execution_id: String,
    /// Every step, in declaration order.
    pub steps: Vec<StepRecord>,
    /// Compensations run, in the order they ran.
    pub compensations: Vec<CompensationRecord>,
    /// Every step as QtForge's `get_step_results` gives it ([`StepResult`]), in declaration order.
    #[serde(default)]
    pub results: Vec<StepResult>,
}

/// `GET /v1/executions/{id}/steps/{step}/items`: a map step's items.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionItems {
    /// Execution id.
    pub execution_id: String,
    /// The map step's id.
    pub step_id: String,
    /// Its items recorded so far (an item not started yet has no record),
    /// by index, after `?after`, at most `?limit`.
    pub items: Vec<ItemRecord>,
}

/// `GET /v1/executions/{id}/artifacts`: the artifacts an execution holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionArtifacts {
    /// Execution id.
    pub execution_id: String,
    /// Its artifacts, oldest first (at most 10,000).
    pub artifacts: Vec<ArtifactRecord>,
}

/// `GET /v1/executions/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionLogs {
    /// Execution id.
    pub execution_id: String,
    /// The execution's status now (the log may end before it).
    pub status: WorkflowStatus,
    /// The events after `after`, oldest first.
    pub events: Vec<Event>,
}

/// A line of an execution's log (one transition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Increases with every event of the database; pass the last one back as `after`.
    pub seq: i64,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The step, for step transitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// The attempt, for step transitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// What changed, and to which status: `"kind"` and `"status"` in JSON.
    #[serde(flatten)]
    pub transition: Transition,
    /// Error or reason, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What an [`Event`] records, as `{"kind": …, "status": …}` in JSON: the
/// execution's new status, a step's (with the event's `step_id`), or the new
/// status of a step's compensation (rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "status", rename_all = "snake_case")]
pub enum Transition {
    /// The execution's status changed.
    Execution(WorkflowStatus),
    /// A step's status changed.
    Step(StepStatus),
    /// The compensation of a step changed status.
    Compensation(StepStatus),
}

impl Transition {
    /// The transition a log line stores as `text` (`"running"`,
    /// `"compensation completed"`): a step's when `for_step`, else the
    /// execution's. `None` for a text no transition has.
    pub fn parse(text: &str, for_step: bool) -> Option<Self> {
        match text.strip_prefix("compensation ") {
            Some(status) => StepStatus::parse(status).map(Self::Compensation),
            None if for_step => StepStatus::parse(text).map(Self::Step),
            None => WorkflowStatus::parse(text).map(Self::Execution),
        }
    }
}

/// The text [`Transition::parse`] reads: the status's name, after
/// `compensation ` for a compensation.
impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Execution(status) => f.write_str(status.as_str()),
            Self::Step(status) => f.write_str(status.as_str()),
            Self::Compensation(status) => write!(f, "compensation {}", status.as_str()),
        }
    }
}

/// `POST /v1/executions/{id}/signals/{name}`: a signal for the execution's
/// wait steps named `name` (`wait_for: {signal: name}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// What the waiting step's output becomes (any JSON; default null).
    #[serde(default)]
    pub payload: Value,
    /// Who sends it; an approval (`approval: true`) needs it (at most 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// A refusal: the waiting step fails (`rejected`) instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reject: bool,
}

/// A signal as recorded: [`SignalRequest`] with its name and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignalRecord {
    /// The signal's name.
    pub name: String,
    /// Its payload.
    pub payload: Value,
    /// Who sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Whether it refuses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reject: bool,
    /// When it was delivered, ms since the Unix epoch.
    pub at_ms: u64,
}

/// `POST /v1/executions/{id}/signals/{name}` (202): the signal is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Signalled {
    /// Execution id.
    pub execution_id: String,
    /// The signal as recorded.
    pub signal: SignalRecord,
}

/// `POST /v1/executions/{id}/cancel` (202): cancellation was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cancelling {
    /// Execution id.
    pub execution_id: String,
    /// Always `true`.
    pub cancelling: bool,
}

#[cfg(test)]
mod tests {
    use super::{Event, StepStatus, Transition, WorkflowStatus};
    use serde_json::json;

    #[test]
    fn every_transition_reads_back_from_its_text_and_its_json() {
        let all = WorkflowStatus::ALL
            .into_iter()
            .map(Transition::Execution)
            .chain(StepStatus::ALL.into_iter().map(Transition::Step))
            .chain(StepStatus::ALL.into_iter().map(Transition::Compensation));
        for t in all {
            let for_step = !matches!(t, Transition::Execution(_));
            assert_eq!(Transition::parse(&t.to_string(), for_step), Some(t), "{t}");
            let event = Event { seq: 1, at_ms: 2, step_id: None, attempt: None, transition: t, message: None };
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event, "{text}");
        }
        assert_eq!(Transition::parse("skipped", false), None, "an execution is never skipped");
        assert_eq!(Transition::parse("compensation exploded", true), None);
        let event = Event {
            seq: 7,
            at_ms: 9,
            step_id: Some("undo".into()),
            attempt: None,
            transition: Transition::Compensation(StepStatus::Failed),
            message: Some("boom".into()),
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"seq": 7, "at_ms": 9, "step_id": "undo", "kind": "compensation", "status": "failed", "message": "boom"})
        );
    }
}

/// An artifact an execution holds (`GET /v1/executions/{id}/artifacts`): a
/// step's call wrote it to the daemon's artifact store. Listed once per
/// step, name and content (a retried step that writes the same bytes again
/// is listed once; two steps writing one content are listed twice, stored once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactRecord {
    /// Its digest, `sha256:<64 hex>`: `GET /v1/executions/{id}/artifacts/{digest}` downloads it.
    pub artifact: String,
    /// The name its call gave it.
    pub name: String,
    /// Its size, bytes.
    pub bytes: u64,
    /// Its media type, if its call said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The step whose call wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// When it was recorded, ms since the Unix epoch.
    pub created_at_ms: u64,
}

impl ArtifactRecord {
    /// The reference steps pass (`${{ steps.<id>.artifacts.<name> }}`).
    pub fn reference(&self) -> plexus_sdk::ArtifactRef {
        plexus_sdk::ArtifactRef {
            artifact: self.artifact.clone(),
            name: self.name.clone(),
            bytes: self.bytes,
            media_type: self.media_type.clone(),
        }
    }
}
