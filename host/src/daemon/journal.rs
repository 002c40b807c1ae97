//! [`StoreJournal`]: the engine's [`Journal`] that writes every transition to
//! the state database (and counts it in the metrics) before it is reported.

use super::metrics::Metrics;
use super::store::Store;
use crate::workflow::status::{CompensationRecord, ExecutionStatus, StepRecord};
use crate::workflow::{Journal, StepStatus};
use serde_json::{Map, Value};

/// Writes an execution's transitions to the [`Store`].
pub struct StoreJournal {
    store: Store,
    metrics: Metrics,
}

impl StoreJournal {
    /// A journal writing to `store`.
    pub fn new(store: Store, metrics: Metrics) -> Self {
        Self { store, metrics }
    }

    fn check<E: std::fmt::Display>(&self, what: &str, id: &str, result: Result<(), E>) {
        if let Err(e) = result {
            self.metrics.journal_error();
            tracing::error!(execution = %id, "cannot record {what}: {e}");
        }
    }
}

impl Journal for StoreJournal {
    fn execution(&self, status: &ExecutionStatus) {
        self.check("the execution status", &status.execution_id, self.store.update_execution(status));
        self.metrics.execution(status.status.as_str());
    }

    fn step(&self, execution_id: &str, index: usize, record: &StepRecord, state: Option<&Map<String, Value>>) {
        self.check("a step", execution_id, self.store.update_step(execution_id, index, record, state));
        if record.status.is_terminal() {
            let ran = matches!(record.status, StepStatus::Completed | StepStatus::Failed);
            self.metrics.step(&record.plugin_id, record.status.as_str(), record.duration_ms.filter(|_| ran));
        }
        if record.status.is_terminal() || record.status == StepStatus::Retrying {
            let error = record.error.as_ref().map(|e| e.message.as_str()).or(record.reason.as_deref()).unwrap_or("");
            tracing::info!(execution = %execution_id, step = %record.id, plugin = %record.plugin_id, attempt = record.attempts, status = record.status.as_str(), duration_ms = record.duration_ms, "step {} {error}", record.status.as_str());
        } else {
            tracing::debug!(execution = %execution_id, step = %record.id, attempt = record.attempts, status = record.status.as_str(), "step transition");
        }
    }

    fn compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord) {
        self.check("a compensation", execution_id, self.store.put_compensation(execution_id, seq, record));
    }
}
