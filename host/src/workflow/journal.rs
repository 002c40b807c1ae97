//! [`Journal`]: where an execution's transitions go before anyone sees them.
//!
//! The engine calls the journal synchronously at every transition — a step
//! starting, retrying or ending, a compensation, the execution's own status —
//! *before* it updates the in-memory record the API reports. The daemon's
//! journal writes to SQLite (`daemon::store`); `plexus run` uses [`NoJournal`].

use super::status::{CompensationRecord, ExecutionStatus, StepRecord};
use serde_json::{Map, Value};

/// Receives an execution's transitions before they are reported.
///
/// Implementations must not call back into the execution. A journal that
/// cannot write logs the failure and counts it; the execution goes on.
pub trait Journal: Send + Sync {
    /// The execution's status changed: started, rolling back, or ended
    /// (with its outputs and error).
    fn execution(&self, status: &ExecutionStatus);
    /// Step number `index` (declaration order) changed to `record`. `state`
    /// is the execution's shared state when it changed since the last write.
    fn step(&self, execution_id: &str, index: usize, record: &StepRecord, state: Option<&Map<String, Value>>);
    /// A compensation ran (`seq` counts from 0 within the execution).
    fn compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord);
}

/// A journal that keeps nothing (`plexus run`, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn execution(&self, _: &ExecutionStatus) {}
    fn step(&self, _: &str, _: usize, _: &StepRecord, _: Option<&Map<String, Value>>) {}
    fn compensation(&self, _: &str, _: usize, _: &CompensationRecord) {}
}
