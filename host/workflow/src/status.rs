//! What an execution looks like from outside: statuses and per-step records.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The status of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl StepStatus {
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
        }
    }
}

/// The status of a whole execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Failed or cancelled, and at least one compensation failed too.
    RollbackFailed,
}

impl WorkflowStatus {
    /// Whether the execution is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled | Self::RollbackFailed)
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
        }
    }
}

/// An error recorded for a step or a compensation.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// A compensation that ran during rollback.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

    /// Recompute `progress`, `current_steps` and `completed_steps` from the step records.
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
    }
}

/// Milliseconds since the Unix epoch of `t`.
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
