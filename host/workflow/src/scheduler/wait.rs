//! Wait steps (`wait_for`): a step that calls no plugin and waits for a
//! named signal, delivered to the execution ([`Execution::deliver_signal`]).
//!
//! When its turn comes (dependencies completed, condition true), the step
//! is recorded `waiting` — from then its timeout counts, across restarts —
//! and gives its slot back: it costs the phase a deadline, not a thread.
//! The phase's task ends the wait when the signal is there (the step
//! completes with its payload, or for an approval `{"approved", "by",
//! "at_ms", "payload"}`; a signal with `reject` fails it) or its timeout
//! passes (it fails with `timeout`). A signal delivered before the step
//! waits is taken at once. When nothing but waits is left, an engine that
//! parks ([`Engine::with_parking`]) ends the run unfinished
//! ([`Abort::Parked`]); the daemon runs it again when a signal comes or the
//! earliest timeout passes.
//!
//! [`Execution::deliver_signal`]: crate::Execution::deliver_signal
//! [`Engine::with_parking`]: crate::Engine::with_parking

use super::{Abort, Forward};
use crate::status::{StepError, StepEvent, StepStatus, epoch_ms};
use plexus_client::SignalRecord;
use serde_json::json;
use std::sync::Arc;

impl Forward {
    /// Wait step `i`'s turn (attempt `attempt`): record it waiting, or end it
    /// at once (skipped, its signal already there).
    pub(super) fn start_wait(self: &Arc<Self>, i: usize, attempt: u32) {
        if let Err(terminal) = self.prelude(i) {
            return self.end_without_call(i, terminal);
        }
        let wait = self.prepared.workflow.steps[i].wait.as_ref().expect("a wait step");
        let now = epoch_ms(self.engine.clock().now());
        let message = format!("waiting for signal `{}`", wait.signal);
        let recorded = self.exec.start_step_blocking(i, |r| {
            // A restored wait keeps its start: its timeout counts from there.
            if r.status != StepStatus::Waiting {
                r.started_at_ms = Some(now);
            }
            r.status = r.status.apply_or(StepEvent::Wait, StepStatus::Waiting);
            r.attempts = attempt;
            r.progress = Some(crate::status::StepProgress { fraction: 0.0, message });
        });
        let started = self.exec.lock().steps[i].started_at_ms.unwrap_or(now);
        let deadline = wait.timeout.map(|t| started.saturating_add(t.as_millis().min(u128::from(u64::MAX)) as u64));
        let mut st = self.lock();
        st.running -= 1;
        st.busy -= 1;
        self.release(&mut st, i);
        if !recorded {
            st.attempts[i] -= 1;
            st.ready.insert((self.prepared.dag.rank[i], i, None));
            return;
        }
        st.awaited.insert(i, deadline);
        // The phase's task looks at its waits (and their deadlines) again.
        let _ = self.events.send(super::Event::Armed);
    }

    /// End the waits whose signal came or whose timeout passed; returns
    /// whether any ended.
    pub(super) async fn settle_waits(self: &Arc<Self>) -> bool {
        let now = epoch_ms(self.engine.clock().now());
        let due: Vec<(usize, Option<SignalRecord>)> = {
            let st = self.lock();
            st.awaited
                .iter()
                .filter_map(|(&i, deadline)| {
                    let wait = self.prepared.workflow.steps[i].wait.as_ref()?;
                    match self.exec.signal(&wait.signal) {
                        Some(signal) => Some((i, Some(signal))),
                        None if deadline.is_some_and(|d| d <= now) => Some((i, None)),
                        None => None,
                    }
                })
                .collect()
        };
        for (i, signal) in &due {
            let step = &self.prepared.workflow.steps[*i];
            let wait = step.wait.as_ref().expect("a wait step");
            let (status, output, error) = match signal {
                Some(s) if s.reject => {
                    let by = s.by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
                    let message = format!("signal `{}` rejected{by}", wait.signal);
                    (StepStatus::Failed, None, Some(StepError { kind: "rejected".into(), message, retryable: false }))
                }
                Some(s) if wait.approval && s.by.is_none() => {
                    let message = format!("signal `{}` approves nothing without `by` (who approved)", wait.signal);
                    (StepStatus::Failed, None, Some(StepError { kind: "rejected".into(), message, retryable: false }))
                }
                Some(s) if wait.approval => {
                    let output = json!({"approved": true, "by": s.by, "at_ms": s.at_ms, "payload": s.payload});
                    (StepStatus::Completed, Some(output), None)
                }
                Some(s) => (StepStatus::Completed, Some(s.payload.clone()), None),
                None => {
                    let after = wait.timeout.map(|t| humantime::format_duration(t).to_string()).unwrap_or_default();
                    let message = format!("no signal `{}` within {after}", wait.signal);
                    (StepStatus::Failed, None, Some(StepError { kind: "timeout".into(), message, retryable: false }))
                }
            };
            let stop = match (&error, step.critical) {
                (Some(e), true) => Some(Abort::Failed(format!("critical step `{}` failed: {}", step.id, e.message))),
                _ => None,
            };
            self.exec.update_step(*i, self.engine.ended(status, output, error, None)).await;
            let mut st = self.lock();
            st.awaited.remove(i);
            if let Some(why) = stop {
                self.abort(&mut st, why);
            }
            let dag = &self.prepared.dag;
            for &d in &dag.dependents[*i] {
                st.waiting[d] -= 1;
                if st.waiting[d] == 0 {
                    st.ready.insert((dag.rank[d], d, None));
                }
            }
            self.start_runners(&mut st);
        }
        !due.is_empty()
    }

    /// When the earliest wait times out, if any does.
    pub(super) fn next_wait_deadline(&self) -> Option<u64> {
        self.lock().awaited.values().flatten().min().copied()
    }

    /// The signals the phase waits for.
    pub(super) fn awaited_signals(&self) -> Vec<String> {
        let st = self.lock();
        st.awaited
            .keys()
            .filter_map(|&i| self.prepared.workflow.steps[i].wait.as_ref().map(|w| w.signal.clone()))
            .collect()
    }

    /// The phase stopped (cancel, failure, timeout) with step `i` waiting.
    pub(super) async fn stop_wait(self: &Arc<Self>, i: usize) {
        let reason = Some("the execution stopped while it waited for its signal".to_owned());
        self.exec.update_step(i, self.engine.ended(StepStatus::Cancelled, None, None, reason)).await;
    }
}
