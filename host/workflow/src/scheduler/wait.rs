//! Wait steps (`wait_for`): a step that calls no plugin and waits for a
//! named signal, delivered to the execution ([`Execution::deliver_signal`]).
//!
//! When its turn comes (dependencies completed, condition true), the step
//! is recorded `waiting` — from then its timeout counts, across restarts —
//! and gives its slot back (in serial modes it keeps its turn): it costs the
//! phase a deadline, not a thread.
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
        self.begin_waiting(i, attempt, format!("waiting for signal `{}`", wait.signal), wait.timeout);
    }

    /// Sub-workflow step `i`'s turn: start its child (once: a restored
    /// step that was waiting for it starts nothing) and wait for its end.
    pub(super) fn start_child(self: &Arc<Self>, i: usize, attempt: u32) {
        let scope = match self.prelude(i) {
            Ok((_, scope)) => scope,
            Err(terminal) => return self.end_without_call(i, terminal),
        };
        let step = &self.prepared.workflow.steps[i];
        let call = step.call.as_ref().expect("a sub-workflow step");
        let failed = |kind: &str, message: String| (StepStatus::Failed, Some(super::error(kind, message, false)), None);
        let Some(children) = self.engine.children().cloned() else {
            let message = "this engine runs no sub-workflows (the daemon and `plexus run` do)";
            return self.end_without_call(i, failed("child", message.into()));
        };
        let child = crate::engine::child_id(self.exec.id(), &step.id);
        // Also for a restored wait: the child is found, not started again, and
        // if it ended while nobody listened its end is told again.
        if self.exec.id().matches('~').count() >= crate::definition::MAX_NESTING {
            let message = format!("sub-workflows nest at most {} deep", crate::definition::MAX_NESTING);
            return self.end_without_call(i, failed("child", message));
        }
        let params = match (&scope, &self.prepared.step(i).params) {
            (_, crate::expr::Template::Literal(v)) => Ok(v.clone()),
            (Some(scope), template) => template.render(scope).map_err(|e| e.to_string()),
            (None, _) => Ok(serde_json::Value::Null),
        };
        let inputs = match params {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(serde_json::Value::Null) => serde_json::Map::new(),
            Ok(_) => {
                let message = "a sub-workflow step's parameters are its child's inputs: an object".to_owned();
                return self.end_without_call(i, failed("parameters", message));
            }
            Err(e) => return self.end_without_call(i, failed("parameters", e)),
        };
        let start = children.start(&self.engine, self.exec.id(), &step.id, call, inputs);
        if let Err(e) = tokio::runtime::Handle::current().block_on(start) {
            return self.end_without_call(i, failed("child", e));
        }
        self.begin_waiting(i, attempt, format!("child execution {child}"), step.timeout);
    }

    /// Record step `i` waiting (its timeout counts from now, or from when a
    /// restored wait began) and hand its slot back.
    fn begin_waiting(self: &Arc<Self>, i: usize, attempt: u32, message: String, timeout: Option<std::time::Duration>) {
        let now = epoch_ms(self.engine.clock().now());
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
        let deadline = timeout.map(|t| started.saturating_add(t.as_millis().min(u128::from(u64::MAX)) as u64));
        let mut st = self.lock();
        st.busy -= 1;
        self.release(&mut st, i);
        if !recorded {
            st.running -= 1;
            st.attempts[i] -= 1;
            st.ready.insert((self.prepared.dag.rank[i], i, None));
            return;
        }
        // In serial modes a waiting step keeps its turn (nothing else runs meanwhile).
        if self.prepared.workflow.mode.is_serial() {
            st.held_by_waits += 1;
        } else {
            st.running -= 1;
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
                .filter_map(|(&i, deadline)| match self.exec.signal(&self.awaited_signal(i)?) {
                    Some(signal) => Some((i, Some(signal))),
                    None if deadline.is_some_and(|d| d <= now) => Some((i, None)),
                    None => None,
                })
                .collect()
        };
        for (i, signal) in &due {
            let step = &self.prepared.workflow.steps[*i];
            let (status, output, error) = match (&step.wait, signal) {
                (None, signal) => child_ended(step, signal.as_ref()),
                (Some(wait), signal) => waited(wait, signal.as_ref()),
            };
            let stop = match (&error, step.critical) {
                (Some(e), true) => Some(Abort::Failed(format!("critical step `{}` failed: {}", step.id, e.message))),
                _ => None,
            };
            self.exec.update_step(*i, self.engine.ended(status, output, error, None)).await;
            let mut st = self.lock();
            st.awaited.remove(i);
            if self.prepared.workflow.mode.is_serial() {
                st.held_by_waits -= 1;
                st.running -= 1;
            }
            if let Some(why) = stop {
                self.abort(&mut st, why);
            }
            self.release_dependents(&mut st, *i);
            self.start_runners(&mut st);
        }
        !due.is_empty()
    }

    /// The signal awaited step `i` waits for: a wait step's, or a
    /// sub-workflow step's child's end.
    fn awaited_signal(&self, i: usize) -> Option<String> {
        let step = &self.prepared.workflow.steps[i];
        match (&step.wait, &step.call) {
            (Some(wait), _) => Some(wait.signal.clone()),
            (None, Some(_)) => Some(crate::engine::child_signal(&step.id)),
            (None, None) => None,
        }
    }
}

/// How a wait step ends with `signal` (`None`: its timeout passed).
fn waited(
    wait: &crate::definition::WaitSpec,
    signal: Option<&SignalRecord>,
) -> (StepStatus, Option<serde_json::Value>, Option<StepError>) {
    match signal {
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
    }
}

/// How a sub-workflow step ends with its child's end signal (`None`: its timeout passed).
fn child_ended(
    step: &crate::definition::Step,
    signal: Option<&SignalRecord>,
) -> (StepStatus, Option<serde_json::Value>, Option<StepError>) {
    let Some(signal) = signal else {
        let after = step.timeout.map(|t| humantime::format_duration(t).to_string()).unwrap_or_default();
        let message = format!("its child execution did not end within {after}");
        return (StepStatus::Failed, None, Some(StepError { kind: "timeout".into(), message, retryable: false }));
    };
    let p = &signal.payload;
    let child = p["execution_id"].as_str().unwrap_or_default();
    match p["status"].as_str() {
        Some("completed") => {
            (StepStatus::Completed, Some(json!({"execution_id": child, "outputs": p["outputs"].clone()})), None)
        }
        other => {
            let error = p["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
            let message = format!("child execution {child} {}{error}", other.unwrap_or("ended"));
            (StepStatus::Failed, None, Some(StepError { kind: "child-failed".into(), message, retryable: false }))
        }
    }
}

impl Forward {
    /// When the earliest wait times out, if any does.
    pub(super) fn next_wait_deadline(&self) -> Option<u64> {
        self.lock().awaited.values().flatten().min().copied()
    }

    /// The signals the phase waits for.
    pub(super) fn awaited_signals(&self) -> Vec<String> {
        let awaited: Vec<usize> = self.lock().awaited.keys().copied().collect();
        awaited.into_iter().filter_map(|i| self.awaited_signal(i)).collect()
    }

    /// The phase stopped (cancel, failure, timeout) with step `i` waiting
    /// (a sub-workflow step's child is cancelled too).
    pub(super) async fn stop_wait(self: &Arc<Self>, i: usize) {
        let step = &self.prepared.workflow.steps[i];
        if step.call.is_some()
            && let Some(children) = self.engine.children()
        {
            let child = crate::engine::child_id(self.exec.id(), &step.id);
            if let Err(e) = children.cancel(&child).await {
                tracing::warn!(execution = %self.exec.id(), %child, "cannot cancel the child execution: {e}");
            }
        }
        let reason = Some("the execution stopped while it waited for its signal".to_owned());
        self.exec.update_step(i, self.engine.ended(StepStatus::Cancelled, None, None, reason)).await;
    }
}
