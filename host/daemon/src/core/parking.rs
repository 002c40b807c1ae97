//! Parked executions and signals.
//!
//! The daemon's engine parks an execution whose only steps left wait for
//! signals (`wait_for`): its run ends, its worker is free, and it stays
//! `running` in the store with its wait steps `waiting`. It runs again —
//! restored from the store, with its map items and signals — when a signal
//! is delivered (`POST /v1/executions/{id}/signals/{name}`, here or, in a
//! cluster, on another node: the owner polls the store), when a wait's
//! timeout passes (a timer), when it is cancelled, or when the daemon
//! starts (as every unfinished execution). One lock orders parking and
//! resuming, so a signal that comes while the run is parking is never lost:
//! after parking, the store is read for a signal the run did not see.

use super::{Daemon, DaemonError, DaemonResult, Execution};
use plexus_client::{SignalRecord, SignalRequest, Signalled};
use plexus_workflow::status::epoch_ms;
use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

/// The longest `by` of a signal, bytes.
const MAX_BY: usize = 256;

/// An execution parked here.
pub(super) struct Parked {
    /// Its wake-up timer (a wait's timeout).
    timer: Option<tokio::task::AbortHandle>,
    /// The signals its run had seen: another is a reason to resume.
    seen: HashSet<String>,
}

impl Daemon {
    /// Execution `id`'s run ended parked (see [`Execution::parked`]): keep
    /// it parked (its worker is already free), wake it at `until` (ms since
    /// the Unix epoch), or now if a signal it did not see is in the store.
    pub(super) async fn park(&self, id: &str, exec: &Arc<Execution>, until: Option<u64>) {
        let _parking = self.0.parking.lock().await;
        let timer = until.map(|at| {
            let (daemon, id) = (self.clone(), id.to_owned());
            let now = epoch_ms(self.0.clock.now());
            let after = std::time::Duration::from_millis(at.saturating_sub(now));
            let clock = self.0.clock.clone();
            self.0
                .runtime
                .spawn(async move {
                    clock.sleep(after).await;
                    let _parking = daemon.0.parking.lock().await;
                    // This task is the timer: it must not abort itself.
                    daemon.resume_parked_locked(&id, false).await;
                })
                .abort_handle()
        });
        let seen: HashSet<String> = exec.signal_names().into_iter().collect();
        let parked = Parked { timer, seen: seen.clone() };
        let previous = self.0.parked.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned(), parked);
        if let Some(Parked { timer: Some(old), .. }) = previous {
            old.abort();
        }
        self.0.live.write().unwrap_or_else(PoisonError::into_inner).remove(id);
        self.0.node.claim.notify_one();
        tracing::info!(execution = %id, until_ms = ?until, "parked: waiting for signals costs no worker");
        // A cancel that reached the run as it parked: run it again, cancelled.
        if exec.is_cancelled() {
            self.resume_parked_locked(id, true).await;
            if let Some(again) = self.live(id) {
                again.request_cancel();
            }
            return;
        }
        match self.0.store.signals(id).await {
            Ok(stored) if stored.iter().any(|s| !seen.contains(&s.name)) => self.resume_parked_locked(id, true).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(execution = %id, "cannot read its signals ({e}); it waits for the next one"),
        }
    }

    /// Run parked execution `id` again (a signal came, a timeout passed), if
    /// it is still parked here.
    pub async fn resume_parked(&self, id: &str) {
        let _parking = self.0.parking.lock().await;
        self.resume_parked_locked(id, true).await;
    }

    /// [`Self::resume_parked`] under the parking lock; `stop_timer`: abort
    /// its wake-up timer (not when the timer itself resumes it).
    async fn resume_parked_locked(&self, id: &str, stop_timer: bool) {
        let Some(parked) = self.0.parked.lock().unwrap_or_else(PoisonError::into_inner).remove(id) else { return };
        if let Some(timer) = parked.timer.filter(|_| stop_timer) {
            timer.abort();
        }
        match self.stored(id).await {
            Ok(stored) if !stored.status.status.is_terminal() => {
                self.run_stored(stored).await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(execution = %id, "cannot resume a parked execution: {e}"),
        }
    }

    /// Whether execution `id` is parked here.
    pub fn is_parked(&self, id: &str) -> bool {
        self.0.parked.lock().unwrap_or_else(PoisonError::into_inner).contains_key(id)
    }

    /// The executions parked here.
    pub(super) fn parked_ids(&self) -> Vec<String> {
        self.0.parked.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    /// Deliver signal `name` to execution `id` (for its wait steps named
    /// so, now or later): recorded first, then taken by its run, or its
    /// parked run is resumed to take it.
    ///
    /// # Errors
    /// `InvalidConfiguration` (a bad name, a `by` over 256 bytes),
    /// `NotFound`, `InvalidState` (it ended), `AlreadyExists` (a signal of
    /// that name was delivered before).
    pub async fn signal(&self, id: &str, name: &str, request: SignalRequest) -> DaemonResult<Signalled> {
        if !plexus_workflow::definition::is_valid_id(name, 128) {
            return Err(DaemonError::invalid(format!("signal `{name}`: letters, digits, `-`, `_`, `.`, at most 128")));
        }
        if request.by.as_ref().is_some_and(|b| b.len() > MAX_BY || b.trim().is_empty()) {
            return Err(DaemonError::invalid(format!("by: 1 to {MAX_BY} bytes")));
        }
        let (status, meta) = self.status(id).await?;
        if status.status.is_terminal() {
            return Err(DaemonError::invalid_state(format!(
                "execution `{id}` is {}: it takes no signal",
                status.status.as_str()
            )));
        }
        // Only the signals its wait steps wait for (a ceiling on what a caller can store).
        let prepared = self.prepared(&status.workflow_id, meta.workflow_version).await?;
        let awaited: Vec<&str> =
            prepared.workflow.steps.iter().filter_map(|s| s.wait.as_ref().map(|w| w.signal.as_str())).collect();
        if !awaited.contains(&name) {
            return Err(DaemonError::invalid(format!(
                "execution `{id}` has no wait step for signal `{name}` (its signals: {})",
                if awaited.is_empty() { "none".to_owned() } else { awaited.join(", ") }
            )));
        }
        let signal = SignalRecord {
            name: name.to_owned(),
            payload: request.payload,
            by: request.by,
            reject: request.reject,
            at_ms: epoch_ms(self.0.clock.now()),
        };
        if !self.0.store.put_signal(id, &signal).await? {
            return Err(DaemonError::new(
                crate::ErrorCode::AlreadyExists,
                format!("execution `{id}` has a signal `{name}` already (the first is kept)"),
            ));
        }
        tracing::info!(execution = %id, signal = %name, by = ?signal.by, reject = signal.reject, "signal delivered");
        let taken = match self.live(id) {
            Some(exec) => exec.deliver_signal(signal.clone()),
            None => false,
        };
        if !taken {
            // Parked (or parking): run it again to take the signal.
            self.resume_parked(id).await;
        }
        Ok(Signalled { execution_id: id.to_owned(), signal })
    }

    /// In a cluster: resume the executions parked here that got a signal
    /// (on another node) their run had not seen, looking at those recorded
    /// since `since_ms`. Whether the store could be read.
    pub(super) async fn take_signals(&self, since_ms: u64) -> bool {
        let parked = self.parked_ids();
        if parked.is_empty() {
            return true;
        }
        match self.0.store.signalled(&parked, since_ms).await {
            Ok(signals) => {
                let new: HashSet<String> = {
                    let parked = self.0.parked.lock().unwrap_or_else(PoisonError::into_inner);
                    signals
                        .into_iter()
                        .filter(|(id, name)| parked.get(id).is_some_and(|p| !p.seen.contains(name)))
                        .map(|(id, _)| id)
                        .collect()
                };
                for id in new {
                    self.resume_parked(&id).await;
                }
                true
            }
            Err(e) => {
                tracing::warn!("cannot read signals: {e}");
                false
            }
        }
    }

    /// This node no longer owns execution `id` (its lease ran out and
    /// another node took it): forget it here, timer and all.
    pub(super) fn unpark(&self, id: &str) {
        if let Some(Parked { timer: Some(timer), .. }) =
            self.0.parked.lock().unwrap_or_else(PoisonError::into_inner).remove(id)
        {
            timer.abort();
        }
    }

    /// Forget every execution parked here (this node was fenced off).
    pub(super) fn unpark_all(&self) {
        for id in self.parked_ids() {
            self.unpark(&id);
        }
    }
}
