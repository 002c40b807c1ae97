//! [`Journal`]: where an execution's transitions go before anyone sees them.
//!
//! The engine calls the journal synchronously at every transition — a step
//! starting, retrying or ending, a compensation, the execution's own status —
//! *before* it updates the in-memory record the API reports. The daemon's
//! journal writes to SQLite (`daemon::store`); `plexus run` uses [`NoJournal`].
//!
//! **Nothing runs unrecorded.** When the journal cannot record a transition
//! the execution is *held* (see `Execution::is_held`): a step whose start
//! could not be recorded does not start, no new step or compensation starts,
//! running steps finish (their outcome is kept in memory), and the execution
//! does not end. Whoever owns the journal calls `Execution::record_again`
//! until [`Journal::snapshot`] succeeds; the execution then goes on.

use super::status::{CompensationRecord, ExecutionStatus, StepRecord};
use serde_json::{Map, Value};

/// Why a journal could not record a transition (one line, e.g. the database error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JournalError(pub String);

/// The result of a journal write.
pub type JournalResult = Result<(), JournalError>;

/// Receives an execution's transitions before they are reported.
///
/// Implementations must not call back into the execution. A write that
/// fails returns the error: the engine then holds the execution until
/// [`Self::snapshot`] succeeds (see the module docs).
pub trait Journal: Send + Sync {
    /// The execution's status changed: started, rolling back, or ended
    /// (with its outputs and error).
    fn execution(&self, status: &ExecutionStatus) -> JournalResult;
    /// Step number `index` (declaration order) changed to `record`. `state`
    /// is the execution's shared state when it changed since the last write.
    fn step(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> JournalResult;
    /// A compensation ran (`seq` counts from 0 within the execution).
    fn compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord) -> JournalResult;
    /// Record the whole execution at once — status, steps, compensations and
    /// shared state — after writes failed. The default records nothing.
    fn snapshot(&self, status: &ExecutionStatus, state: &Map<String, Value>) -> JournalResult {
        let _ = (status, state);
        Ok(())
    }
}

/// A journal that keeps nothing (`plexus run`, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn execution(&self, _: &ExecutionStatus) -> JournalResult {
        Ok(())
    }
    fn step(&self, _: &str, _: usize, _: &StepRecord, _: Option<&Map<String, Value>>) -> JournalResult {
        Ok(())
    }
    fn compensation(&self, _: &str, _: usize, _: &CompensationRecord) -> JournalResult {
        Ok(())
    }
}
