//! What both stores write and read, prepared once: a step transition, a new
//! execution and an execution read back from its rows are the same for
//! SQLite and PostgreSQL; only the SQL around them differs.

use super::{ExecutionMeta, StoreError, StoreResult, StoredExecution, json, now_ms};
use plexus_workflow::StepEvent;
use plexus_workflow::status::{CompensationRecord, ExecutionStatus, StepRecord, StepStatus, WorkflowStatus};
use serde_json::{Map, Value};

/// A shared-state key a step set, as stored: its value as JSON text, or
/// (when the completed step's output holds that same value under the key)
/// the step's index instead, so the output is stored once.
pub(super) struct StateEntry {
    pub key: String,
    pub value: Option<String>,
    pub from_step: Option<i64>,
}

/// Step `index`'s transition, ready to write: its record and log line.
pub(super) struct StepWrite {
    pub index: i64,
    pub record: String,
    pub state: Vec<StateEntry>,
    /// When it happened, ms since the Unix epoch.
    pub at: i64,
    pub step_id: String,
    pub attempts: u32,
    pub status: &'static str,
    /// The error or reason, logged with ended and retrying transitions.
    pub message: Option<String>,
}

impl StepWrite {
    pub fn new(index: usize, record: &StepRecord, state: Option<&Map<String, Value>>) -> Self {
        // A key whose value is what this completed step's output holds under
        // it refers to that output (stored once, in the step's record).
        let output = record.output.as_ref().filter(|_| record.status == StepStatus::Completed);
        let state = state
            .into_iter()
            .flatten()
            .map(|(k, v)| match output.and_then(|o| o.get(k)) {
                Some(same) if same == v => StateEntry { key: k.clone(), value: None, from_step: Some(index as i64) },
                _ => StateEntry { key: k.clone(), value: Some(json(v)), from_step: None },
            })
            .collect();
        let message = record.error.as_ref().map(|e| e.message.clone()).or_else(|| record.reason.clone());
        let logged = record.status.is_terminal() || record.status == StepStatus::Retrying;
        Self {
            index: index as i64,
            record: json(record),
            state,
            at: record.ended_at_ms.filter(|_| record.status.is_terminal()).unwrap_or_else(now_ms) as i64,
            step_id: record.id.clone(),
            attempts: record.attempts,
            status: record.status.as_str(),
            message: message.filter(|_| logged),
        }
    }
}

/// A new execution's row, ready to insert.
pub(super) struct ExecutionInsert {
    pub id: String,
    pub workflow_id: String,
    pub workflow_version: u32,
    pub status: &'static str,
    pub inputs: String,
    pub schedule_id: Option<String>,
    pub scheduled_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub state: String,
    pub transaction_id: Option<String>,
    /// 0 low … 3 critical.
    pub priority: i16,
    /// Each step's record, JSON, in declaration order.
    pub steps: Vec<String>,
}

impl ExecutionInsert {
    pub fn new(status: &ExecutionStatus, meta: &ExecutionMeta, state: &Map<String, Value>) -> Self {
        Self {
            id: status.execution_id.clone(),
            workflow_id: status.workflow_id.clone(),
            workflow_version: meta.workflow_version,
            status: status.status.as_str(),
            inputs: json(&status.inputs),
            schedule_id: meta.schedule_id.clone(),
            scheduled_at_ms: meta.scheduled_at_ms.map(|t| t as i64),
            created_at_ms: meta.created_at_ms as i64,
            state: json(state),
            transaction_id: meta.transaction_id.clone(),
            priority: i16::from(meta.priority.rank()),
            steps: status.steps.iter().map(json).collect(),
        }
    }
}

/// An execution's own fields (not its steps), ready to write.
pub(super) struct ExecutionUpdate {
    pub id: String,
    pub status: &'static str,
    pub outputs: String,
    pub error: Option<String>,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    /// When the transition happened (its end, else its start, else now).
    pub at: i64,
}

impl ExecutionUpdate {
    pub fn new(status: &ExecutionStatus) -> Self {
        Self {
            id: status.execution_id.clone(),
            status: status.status.as_str(),
            outputs: json(&status.outputs),
            error: status.error.clone(),
            started_at_ms: status.started_at_ms.map(|t| t as i64),
            ended_at_ms: status.ended_at_ms.map(|t| t as i64),
            at: status.ended_at_ms.or(status.started_at_ms).unwrap_or_else(now_ms) as i64,
        }
    }
}

/// `stored` as a retry makes it: steps that did not complete back to
/// pending with no attempts, compensations forgotten (they stay in the
/// log), status pending, the run counter up.
pub(super) fn reset_for_retry(stored: &StoredExecution) -> StoredExecution {
    let mut reset = stored.clone();
    for step in &mut reset.status.steps {
        if step.status != StepStatus::Completed {
            step.status = step.status.apply_or(StepEvent::Reset, StepStatus::Pending);
            step.attempts = 0;
            step.error = None;
            step.reason = None;
            step.output = None;
            step.started_at_ms = None;
            step.ended_at_ms = None;
            step.duration_ms = None;
        }
    }
    reset.status.status = WorkflowStatus::Pending;
    reset.status.error = None;
    reset.status.ended_at_ms = None;
    reset.status.compensations.clear();
    reset.meta.runs += 1;
    reset
}

/// An `executions` row as read, before its JSON is parsed.
pub(super) struct ExecutionHead {
    pub id: String,
    pub workflow_id: String,
    pub workflow_version: u32,
    pub status: String,
    pub inputs: String,
    pub outputs: String,
    pub error: Option<String>,
    pub state: String,
    pub schedule_id: Option<String>,
    pub scheduled_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub runs: u32,
    pub transaction_id: Option<String>,
    pub priority: i64,
}

/// A stored execution from its rows, all read in one transaction: the head,
/// its step records and compensations (JSON, in order) and its state entries.
/// `corrupt` makes the store's error for a value that does not parse.
pub(super) fn assemble(
    head: ExecutionHead,
    steps: &[String],
    compensations: &[String],
    entries: Vec<StateEntry>,
    corrupt: &dyn Fn(String) -> StoreError,
) -> StoreResult<StoredExecution> {
    fn parse<T: serde::de::DeserializeOwned>(
        what: &str,
        text: &str,
        corrupt: &dyn Fn(String) -> StoreError,
    ) -> StoreResult<T> {
        serde_json::from_str(text).map_err(|e| corrupt(format!("{what}: {e}")))
    }
    let id = head.id;
    let steps: Vec<StepRecord> = steps.iter().map(|s| parse("step", s, corrupt)).collect::<StoreResult<_>>()?;
    let compensations: Vec<CompensationRecord> =
        compensations.iter().map(|c| parse("compensation", c, corrupt)).collect::<StoreResult<_>>()?;
    let status_value = WorkflowStatus::parse(&head.status)
        .ok_or_else(|| corrupt(format!("execution {id}: unknown status `{}`", head.status)))?;
    let mut status = ExecutionStatus {
        execution_id: id,
        workflow_id: head.workflow_id,
        status: status_value,
        progress: 0.0,
        current_steps: Vec::new(),
        current_step: None,
        completed_steps: 0,
        total_steps: steps.len(),
        inputs: parse("inputs", &head.inputs, corrupt)?,
        steps,
        compensations,
        outputs: parse("outputs", &head.outputs, corrupt)?,
        error: head.error,
        started_at_ms: head.started_at_ms.map(|t| t as u64),
        ended_at_ms: head.ended_at_ms.map(|t| t as u64),
    };
    status.refresh();
    // The state at the start (or last snapshot), then every key set since.
    let mut state: Map<String, Value> = parse("state", &head.state, corrupt)?;
    for StateEntry { key, value, from_step } in entries {
        let value = match (value, from_step) {
            (Some(text), _) => parse("state entry", &text, corrupt)?,
            (None, step) => step
                .and_then(|i| status.steps.get(usize::try_from(i).ok()?)?.output.as_ref()?.get(&key).cloned())
                .ok_or_else(|| {
                    corrupt(format!("state entry `{key}` refers to step {step:?}, whose output has no `{key}`"))
                })?,
        };
        state.insert(key, value);
    }
    Ok(StoredExecution {
        status,
        state,
        meta: ExecutionMeta {
            workflow_version: head.workflow_version,
            schedule_id: head.schedule_id,
            scheduled_at_ms: head.scheduled_at_ms.map(|t| t as u64),
            created_at_ms: head.created_at_ms as u64,
            runs: head.runs,
            transaction_id: head.transaction_id,
            priority: plexus_client::Priority::from_rank(head.priority),
        },
    })
}
