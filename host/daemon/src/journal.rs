//! [`StoreJournal`]: the engine's [`Journal`] that writes every transition to
//! the state database (and counts it in the metrics) before it is reported;
//! [`StateDbHealth`]: the `state_db` component of the daemon's health.
//!
//! A write that fails is counted (`plexus_journal_errors_total`), turns
//! health `degraded` (component `state_db`, with the error), and is returned
//! to the engine, which holds the execution: no step of it starts until the
//! daemon has recorded it again (`Daemon`'s maintenance task retries every
//! second). The first write that succeeds clears the degradation.

use super::dbfile::FileChanged;
use super::health::Health;
use super::metrics::Metrics;
use super::store::{Store, StoreError, StoreFuture};
use plexus_workflow::status::{CompensationRecord, ExecutionStatus, ItemRecord, StepRecord};
use plexus_workflow::{Journal, JournalError, JournalFuture, JournalResult, StepStatus};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex, PoisonError};

/// The `state_db` health component, fed by two sources: state writes (the
/// last one failed or worked) and the periodic check of the database file.
#[derive(Clone)]
pub(crate) struct StateDbHealth {
    health: Health,
    /// (write problem, file problem)
    problems: Arc<Mutex<(Option<String>, Option<String>)>>,
}

impl StateDbHealth {
    /// The component name in [`Health`].
    pub(crate) const COMPONENT: &'static str = "state_db";

    /// Report into `health`.
    pub(crate) fn new(health: Health) -> Self {
        Self { health, problems: Arc::default() }
    }

    /// A state write worked (`None`) or failed with this error.
    pub(crate) fn writes(&self, failed: Option<&StoreError>) {
        let mut p = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        let problem = failed.map(|e| format!("state writes fail ({e}); executions are held until they work"));
        if p.0 != problem {
            p.0 = problem;
            self.publish(&p);
        }
    }

    /// The database file is still the one opened (`None`), or how it changed.
    pub(crate) fn file(&self, changed: Option<&FileChanged>) {
        let mut p = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        let problem = changed.map(ToString::to_string);
        if p.1 != problem {
            p.1 = problem;
            self.publish(&p);
        }
    }

    /// Whether the last state write failed.
    pub(crate) fn writes_failing(&self) -> bool {
        self.problems.lock().unwrap_or_else(PoisonError::into_inner).0.is_some()
    }

    fn publish(&self, p: &(Option<String>, Option<String>)) {
        let reasons: Vec<&str> = [&p.0, &p.1].into_iter().flatten().map(String::as_str).collect();
        if reasons.is_empty() {
            self.health.recover(Self::COMPONENT);
        } else {
            self.health.degrade(Self::COMPONENT, reasons.join("; "));
        }
    }
}

/// Tells, after each successful write, which execution it was for: what
/// wakes the event streams (`GET /v1/events`) of that execution to read its
/// log again. A stream that falls behind (`Lagged`) reads it anyway.
pub(crate) type Written = tokio::sync::broadcast::Sender<Arc<str>>;

/// Writes an execution's transitions to the [`Store`].
pub(crate) struct StoreJournal {
    store: Arc<dyn Store>,
    metrics: Metrics,
    health: StateDbHealth,
    written: Written,
}

impl StoreJournal {
    /// A journal writing to `store`, reporting failures to `health` and
    /// telling `written` which execution each write was for.
    pub(crate) fn new(store: Arc<dyn Store>, metrics: Metrics, health: StateDbHealth, written: Written) -> Self {
        Self { store, metrics, health, written }
    }

    /// Await `write` (queued for the store's writer thread), then
    /// [`Self::checked`] and, if it worked, `then`.
    fn check(
        &self,
        execution_id: &str,
        write: StoreFuture<()>,
        then: impl FnOnce(&Metrics) + Send + 'static,
    ) -> JournalFuture {
        let journal = (self.metrics.clone(), self.health.clone(), self.written.clone(), Box::<str>::from(execution_id));
        Box::pin(async move {
            let written = write.await;
            let (metrics, health, counter, id) = &journal;
            let result = checked(metrics, health, (counter, &**id), written);
            if result.is_ok() {
                then(metrics);
            }
            result
        })
    }

    /// Count a failed write and report it to the health, or clear the degradation.
    fn checked(&self, execution_id: &str, written: Result<(), StoreError>) -> JournalResult {
        checked(&self.metrics, &self.health, (&self.written, execution_id), written)
    }
}

fn checked(
    metrics: &Metrics,
    health: &StateDbHealth,
    (to, execution_id): (&Written, &str),
    written: Result<(), StoreError>,
) -> JournalResult {
    match written {
        Ok(()) => {
            health.writes(None);
            // Only while a stream listens: a step's transition costs no allocation otherwise.
            if to.receiver_count() > 0 {
                let _ = to.send(execution_id.into());
            }
            Ok(())
        }
        Err(e) => {
            metrics.journal_error();
            health.writes(Some(&e));
            Err(JournalError(e.to_string()))
        }
    }
}

impl Journal for StoreJournal {
    fn execution(&self, status: &ExecutionStatus) -> JournalFuture {
        let status_text = status.status.as_str();
        self.check(&status.execution_id, self.store.update_execution(status), move |metrics| {
            metrics.execution(status_text)
        })
    }

    fn step(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> JournalFuture {
        let write = self.store.update_step(execution_id, index, record, state);
        self.step_metrics(execution_id, record);
        self.check(execution_id, write, |_| {})
    }

    /// Commits from the calling thread when no commit is in flight (see the
    /// store's writer): an uncontended step transition costs no hand-off.
    fn step_blocking(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> JournalResult {
        let written = self.store.update_step_blocking(execution_id, index, record, state);
        self.step_metrics(execution_id, record);
        self.checked(execution_id, written)
    }

    fn item(&self, execution_id: &str, index: usize, record: &ItemRecord) -> JournalFuture {
        self.check(execution_id, self.store.update_item(execution_id, index, record), |_| {})
    }

    fn item_blocking(&self, execution_id: &str, index: usize, record: &ItemRecord) -> JournalResult {
        self.checked(execution_id, self.store.update_item_blocking(execution_id, index, record))
    }

    fn compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord) -> JournalFuture {
        self.check(execution_id, self.store.put_compensation(execution_id, seq, record), |_| {})
    }

    fn snapshot(&self, status: &ExecutionStatus, state: &Map<String, Value>) -> JournalFuture {
        // Not counted in `plexus_executions_total`: the transitions it
        // records were counted (or not) when they were first written.
        self.check(&status.execution_id, self.store.record_snapshot(status, state), |_| {})
    }
}

impl StoreJournal {
    /// Log a step transition and count a step that ended (whether or not
    /// it could be recorded: it did end).
    fn step_metrics(&self, execution_id: &str, record: &StepRecord) {
        if record.status.is_terminal() || record.status == StepStatus::Retrying {
            let error = record.error.as_ref().map(|e| e.message.as_str()).or(record.reason.as_deref()).unwrap_or("");
            tracing::info!(execution = %execution_id, step = %record.id, plugin = %record.plugin_id, attempt = record.attempts, status = record.status.as_str(), duration_ms = record.duration_ms, "step {} {error}", record.status.as_str());
        } else {
            tracing::debug!(execution = %execution_id, step = %record.id, attempt = record.attempts, status = record.status.as_str(), "step transition");
        }
        // Counted whether or not it was recorded: the step did end.
        let ended = record.status.is_terminal().then(|| {
            let ran = matches!(record.status, StepStatus::Completed | StepStatus::Failed);
            (record.plugin_id.clone(), record.status.as_str(), record.duration_ms.filter(|_| ran))
        });
        if let Some((plugin, status, duration)) = &ended {
            self.metrics.step(plugin, status, *duration);
        }
    }
}
