//! [`Journal`]: where an execution's transitions go before anyone sees them.
//!
//! The engine records every transition — a step starting, retrying or
//! ending, a compensation, the execution's own status — *before* it updates
//! the in-memory record the API reports. A write is a future
//! ([`JournalFuture`]) that resolves once the transition is durable, so the
//! engine's tasks never block a thread on it and a store may commit many
//! executions' transitions together. The engine's runners, which carry steps
//! on threads that may block anyway, write step transitions through
//! [`Journal::step_blocking`], which a store can serve from the calling
//! thread (no hand-off for an uncontended write). The daemon's journal writes
//! to SQLite (`plexus_daemon::store`); `plexus run` uses [`NoJournal`].
//!
//! **Nothing runs unrecorded.** When the journal cannot record a transition
//! the execution is *held* (see `Execution::is_held`): a step whose start
//! could not be recorded does not start, no new step or compensation starts,
//! running steps finish (their outcome is kept in memory), and the execution
//! does not end. Whoever owns the journal calls `Execution::record_again`
//! until [`Journal::snapshot`] succeeds; the execution then goes on.

use super::status::{CompensationRecord, ExecutionStatus, ItemRecord, StepRecord};
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;

/// Why a journal could not record a transition (one line, e.g. the database error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JournalError(pub String);

/// The result of a journal write.
pub type JournalResult = Result<(), JournalError>;

/// A journal write under way: resolves once the transition is recorded (or
/// could not be). It owns what it writes — an implementation copies or
/// serialises the borrowed record before returning — so it may be awaited
/// after the record changed.
pub type JournalFuture = Pin<Box<dyn Future<Output = JournalResult> + Send + 'static>>;

/// A write that is already done: `result` at once.
pub fn written(result: JournalResult) -> JournalFuture {
    Box::pin(std::future::ready(result))
}

/// Receives an execution's transitions before they are reported.
///
/// Implementations must not call back into the execution. A write that
/// fails returns the error: the engine then holds the execution until
/// [`Self::snapshot`] succeeds (see the module docs). The engine awaits one
/// write of an execution at a time, in order; writes of different executions
/// may be in flight together.
pub trait Journal: Send + Sync {
    /// The execution's status changed: started, rolling back, or ended
    /// (with its outputs and error).
    fn execution(&self, status: &ExecutionStatus) -> JournalFuture;
    /// Step number `index` (declaration order) changed to `record`. `state`
    /// holds the keys of the execution's shared state set since the last
    /// write that was recorded, with their values (`None`: nothing was set);
    /// the state is never written again whole, except by [`Self::snapshot`].
    fn step(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> JournalFuture;
    /// [`Self::step`] for a caller on a thread that may block (the engine's
    /// runners, on tokio's blocking pool, inside a runtime): returns once the
    /// write is done. The default waits for [`Self::step`]'s future on this
    /// thread; a store that can write from the calling thread overrides it
    /// (the daemon's commits the group itself when no commit is in flight).
    fn step_blocking(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> JournalResult {
        tokio::runtime::Handle::current().block_on(self.step(execution_id, index, record, state))
    }
    /// Item `record.index` of map step number `index` changed to `record`.
    /// The default records nothing (a journal that keeps no items: a resumed
    /// map then runs every item that had not completed in memory again).
    fn item(&self, execution_id: &str, index: usize, record: &ItemRecord) -> JournalFuture {
        let _ = (execution_id, index, record);
        written(Ok(()))
    }
    /// [`Self::item`] for a caller on a thread that may block (see [`Self::step_blocking`]).
    fn item_blocking(&self, execution_id: &str, index: usize, record: &ItemRecord) -> JournalResult {
        tokio::runtime::Handle::current().block_on(self.item(execution_id, index, record))
    }
    /// A compensation ran (`seq` counts from 0 within the execution).
    fn compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord) -> JournalFuture;
    /// Record the whole execution at once — status, steps, compensations and
    /// shared state — after writes failed. The default records nothing.
    fn snapshot(&self, status: &ExecutionStatus, state: &Map<String, Value>) -> JournalFuture {
        let _ = (status, state);
        written(Ok(()))
    }
}

/// A journal that keeps nothing (`plexus run`, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn execution(&self, _: &ExecutionStatus) -> JournalFuture {
        written(Ok(()))
    }
    fn step(&self, _: &str, _: usize, _: &StepRecord, _: Option<&Map<String, Value>>) -> JournalFuture {
        written(Ok(()))
    }
    fn step_blocking(&self, _: &str, _: usize, _: &StepRecord, _: Option<&Map<String, Value>>) -> JournalResult {
        Ok(())
    }
    fn item_blocking(&self, _: &str, _: usize, _: &ItemRecord) -> JournalResult {
        Ok(())
    }
    fn compensation(&self, _: &str, _: usize, _: &CompensationRecord) -> JournalFuture {
        written(Ok(()))
    }
}
