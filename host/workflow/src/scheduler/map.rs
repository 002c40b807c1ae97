//! Map steps (`for_each`): dynamic fan-out over a list known at run time.
//!
//! When a map step's turn comes, its runner evaluates `for_each` (with the
//! step's dependencies, condition and secrets as for any step), records the
//! step `running` and hands its slot back; the list's items then become
//! tasks of the phase like steps — `(rank, step, Some(item))` — each taking
//! a slot of the workflow, at most the step's `max_parallel` of them queued
//! or running at once (a cursor walks the list: thousands of items cost no
//! more at once than `max_parallel`). An item has its own record
//! ([`ItemRecord`], journalled by [`super::super::journal::Journal::item`]),
//! attempts, retries (the step's policy) and timeout (the step's). When the
//! last item ends, the step ends: completed with the list of the items'
//! outputs in order, or failed (the first failed item's error, and how many
//! failed). With `fail_fast` (the default) no item starts after one failed.
//!
//! A resumed (or retried) map evaluates its list again — from the recorded
//! outputs it reads — and keeps its completed items: only the others run.
//! An item sees `item` and `index` in its parameters' scope; its execution
//! context's `upstream` is empty (its data comes through its parameters), so
//! an item costs what a step of its size costs, however long the list.

use super::{Abort, Forward, Job, Outcome, Terminal, error};
use crate::definition::MAX_MAP_ITEMS;
use crate::expr::Scope;
use crate::status::{ItemRecord, StepError, StepEvent, StepProgress, StepStatus, epoch_ms};
use plexus_host::CallError;
use plexus_host::services::CallUsage;
use plexus_sdk::CallOutput;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Where a started map step is.
enum MapRunState {
    /// Items are queued, running or waiting to retry.
    Running,
    /// Its last item ended: the step ends now.
    Finished,
    /// The phase stops with it unfinished.
    Stopped,
    /// Not started (or ended).
    Gone,
}

/// A map step that started: its list and how far its items are.
pub(in crate::scheduler) struct MapRun {
    items: Vec<Value>,
    /// The step's scope (inputs, steps read, context, secrets); each item adds `item` and `index`.
    scope: Scope,
    /// The step's timeout and plugin config.
    job: Arc<Job>,
    pub(super) records: Vec<ItemRecord>,
    /// The next item to queue.
    cursor: usize,
    /// Items queued, running or waiting to retry.
    pub(super) in_flight: usize,
    /// At most this many in flight.
    limit: usize,
    /// Items that ended (completed, failed, cancelled) since the map started.
    ended: usize,
    /// Items that failed after their retries.
    failed: usize,
    /// Items completed (restored ones too): the step's progress.
    completed: usize,
    /// The completed items' outputs' size so far, bytes of JSON.
    output_bytes: usize,
    fail_fast: bool,
}

impl Forward {
    /// Start map step `i` (its attempt `attempt`): evaluate its list, record
    /// it running, queue its first items. A step that ends without items
    /// (skipped, failed, an empty list) ends here.
    pub(super) fn start_map(self: &Arc<Self>, i: usize, attempt: u32) {
        let (items, scope, job) = match self.map_prelude(i) {
            Ok(started) => started,
            Err(terminal) => return self.end_without_call(i, terminal),
        };
        let n = items.len();
        let now = epoch_ms(self.engine.clock().now());
        let recorded = self.exec.start_step_blocking(i, |r| {
            r.status = r.status.apply_or(StepEvent::Start, StepStatus::Running);
            r.attempts = attempt;
            r.started_at_ms.get_or_insert(now);
            r.progress = Some(items_progress(0, n));
        });
        let mut st = self.lock();
        if !recorded {
            // As a step that could not be recorded: it starts again once the journal can write.
            st.attempts[i] -= 1;
            st.running -= 1;
            st.busy -= 1;
            self.release(&mut st, i);
            st.ready.insert((self.prepared.dag.rank[i], i, None));
            return;
        }
        // Completed items of an earlier run are kept; the others run (again).
        let mut records: Vec<ItemRecord> = (0..n).map(ItemRecord::pending).collect();
        for r in self.exec.take_restored_items(i) {
            let Some(slot) = records.get_mut(r.index) else { continue };
            match r.status {
                StepStatus::Completed => *slot = r,
                // Interrupted: its attempt counts, as a step's does.
                StepStatus::Running | StepStatus::Retrying => slot.attempts = r.attempts,
                _ => {}
            }
        }
        let wf = &self.prepared.workflow;
        let spec = wf.steps[i].map.as_ref().expect("a map step");
        // By default as many items at once as the workflow runs steps (not
        // bounded by its number of steps): one in serial modes.
        let default = if wf.mode.is_serial() { 1 } else { wf.max_parallel.unwrap_or(self.engine.parallelism()) };
        let limit = spec.max_parallel.unwrap_or(default).max(1);
        let completed = records.iter().filter(|r| r.status == StepStatus::Completed).count();
        let run = MapRun {
            items,
            scope,
            job,
            records,
            cursor: 0,
            in_flight: 0,
            limit,
            ended: 0,
            failed: 0,
            completed,
            output_bytes: 0,
            fail_fast: spec.fail_fast,
        };
        // The step's own slot goes back (its items are bounded by the map),
        // except in serial modes: nothing else runs while its items do.
        if self.prepared.workflow.mode.is_serial() {
            st.held_by_waits += 1;
        } else {
            st.running -= 1;
        }
        st.busy -= 1;
        self.release(&mut st, i);
        st.maps.insert(i, run);
        self.queue_items(&mut st, i);
        let finished = match self.map_state(&st, i) {
            MapRunState::Finished => st.maps.remove(&i),
            _ => None,
        };
        self.start_runners(&mut st);
        drop(st);
        if let Some(run) = finished {
            self.finish_map(i, run);
        }
    }

    /// The list, the scope and the job of map step `i`, or how it ends without items.
    fn map_prelude(&self, i: usize) -> Result<(Vec<Value>, Scope, Arc<Job>), Terminal> {
        let (_, scope) = self.prelude(i)?;
        let scope = scope.expect("a map step's `for_each` always gets a scope");
        let for_each = self.prepared.step(i).for_each.as_ref().expect("a map step has its expression");
        let failed = |message: String| (StepStatus::Failed, Some(error("for_each", message, false)), None);
        let items = match for_each.eval(&scope) {
            Ok(Value::Array(items)) => items,
            Ok(other) => {
                return Err(failed(format!(
                    "`{}` gave {}, not a list",
                    for_each.source(),
                    crate::definition::kind(&other)
                )));
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        if items.len() > MAX_MAP_ITEMS {
            return Err(failed(format!("`{}` gave {} items; at most {MAX_MAP_ITEMS}", for_each.source(), items.len())));
        }
        let job = self.job_with(i, Value::Null, Map::new())?;
        Ok((items, scope, job))
    }

    /// Step `i` ends without a call (skipped, or failed before one): record
    /// it and go on as after an attempt.
    pub(super) fn end_without_call(self: &Arc<Self>, i: usize, (status, error, reason): Terminal) {
        let step = &self.prepared.workflow.steps[i];
        let stop = (status == StepStatus::Failed && step.critical)
            .then(|| Abort::Failed(format!("critical step `{}` failed", step.id)));
        self.exec.update_step_blocking(i, self.engine.ended(status, None, error, reason));
        self.after(i, Outcome::Ended(stop));
    }

    /// Queue map step `i`'s next items, up to its limit in flight (none
    /// after a failure with `fail_fast`, nor once the phase stops).
    fn queue_items(&self, st: &mut super::Schedule, i: usize) {
        if st.abort.is_some() || st.suspended {
            return;
        }
        let rank = self.prepared.dag.rank[i];
        let super::Schedule { maps, ready, .. } = st;
        let Some(run) = maps.get_mut(&i) else { return };
        while run.in_flight < run.limit && run.cursor < run.records.len() && !(run.fail_fast && run.failed > 0) {
            let k = run.cursor;
            run.cursor += 1;
            if run.records[k].status == StepStatus::Completed {
                continue;
            }
            run.in_flight += 1;
            ready.insert((rank, i, Some(k)));
        }
    }

    /// Where map step `i` is.
    fn map_state(&self, st: &super::Schedule, i: usize) -> MapRunState {
        let Some(run) = st.maps.get(&i) else { return MapRunState::Gone };
        if run.in_flight > 0 {
            return MapRunState::Running;
        }
        // The phase stops: the map ends with it (see `stop_map`), or resumes later.
        if st.abort.is_some() || st.suspended {
            return MapRunState::Stopped;
        }
        if run.cursor >= run.records.len() || (run.fail_fast && run.failed > 0) {
            MapRunState::Finished
        } else {
            MapRunState::Running
        }
    }

    /// Run attempt `attempt` of item `k` of map step `i` to its recorded end.
    /// `false` when the phase gave up on its call (the runner must end).
    pub(super) fn run_item(self: &Arc<Self>, i: usize, k: usize, attempt: u32) -> bool {
        // Queued (or waiting to retry) when another item failed, with `fail_fast`: not run.
        let stopped = self.lock().maps.get(&i).is_some_and(|r| r.fail_fast && r.failed > 0);
        if stopped {
            self.end_item(i, k, StepStatus::Cancelled, None, None);
            self.after_item(i, k, Outcome::Ended(None));
            return true;
        }
        let (item, scope, job) = {
            let st = self.lock();
            let run = &st.maps[&i];
            (run.items[k].clone(), run.scope.clone(), run.job.clone())
        };
        let step = &self.prepared.workflow.steps[i];
        if attempt > step.retry.max_attempts {
            // Restored after a restart that interrupted its last attempt.
            let plugin = step.action.plugin_id.clone();
            let message = "the host stopped during the last attempt".to_owned();
            let outcome =
                self.settle_item(i, k, attempt - 1, Err(CallError::Host { plugin, message }), CallUsage::default());
            self.after_item(i, k, outcome);
            return true;
        }
        let params = match self.prepared.step(i).params.render(&scope.with_item(item, k)) {
            Ok(params) => params,
            Err(e) => {
                self.end_item(i, k, StepStatus::Failed, None, Some(error("parameters", e, false)));
                self.after_item(i, k, Outcome::Ended(None));
                return true;
            }
        };
        let now = epoch_ms(self.engine.clock().now());
        let mut record = self.lock().maps[&i].records[k].clone();
        record.status = record.status.apply_or(StepEvent::Start, StepStatus::Running);
        record.started_at_ms.get_or_insert(now);
        if !self.exec.update_item_blocking(i, record.clone()) {
            // Not started unrecorded: given back until the journal can write.
            let mut st = self.lock();
            st.busy -= 1;
            if let Some(run) = st.maps.get_mut(&i) {
                run.records[k].attempts -= 1;
            }
            st.ready.insert((self.prepared.dag.rank[i], i, Some(k)));
            return true;
        }
        if let Some(run) = self.lock().maps.get_mut(&i) {
            run.records[k] = record;
        }
        let job = Job { params, upstream: Map::new(), timeout: job.timeout, config: job.config.clone() };
        let Some((result, usage)) = self.call(i, Some(k), attempt, &job) else { return false };
        let outcome = self.settle_item(i, k, attempt, result, usage);
        self.after_item(i, k, outcome);
        true
    }

    /// Record an item's attempt: completed, retry later, or failed (on a
    /// thread that may block).
    pub(super) fn settle_item(
        &self,
        i: usize,
        k: usize,
        attempt: u32,
        result: Result<CallOutput, CallError>,
        _usage: CallUsage,
    ) -> Outcome {
        let step = &self.prepared.workflow.steps[i];
        match result {
            Ok(out) => {
                // The step's output holds every item's: a ceiling on their sum.
                let size = serde_json::to_vec(&out.output).map_or(0, |v| v.len());
                let total = {
                    let mut st = self.lock();
                    st.maps.get_mut(&i).map_or(0, |r| {
                        r.output_bytes += size;
                        r.output_bytes
                    })
                };
                if total > crate::definition::MAX_MAP_OUTPUT_BYTES {
                    let message = format!(
                        "the items' outputs add up to over {} bytes (the step's output holds them all)",
                        crate::definition::MAX_MAP_OUTPUT_BYTES
                    );
                    self.end_item(i, k, StepStatus::Failed, None, Some(error("output-too-large", message, false)));
                } else {
                    self.end_item(i, k, StepStatus::Completed, Some(out.output), None);
                }
                Outcome::Ended(None)
            }
            Err(e) if matches!(e, CallError::Cancelled { .. }) || self.stop.is_cancelled() => {
                self.end_item(i, k, StepStatus::Cancelled, None, None);
                Outcome::Ended(None)
            }
            Err(e) if step.retry.retry_on.covers(e.is_retryable()) && attempt < step.retry.max_attempts => {
                let delay = step.retry.delay(attempt + 1, fastrand::f64());
                let Some(mut record) = self.lock().maps.get(&i).map(|r| r.records[k].clone()) else {
                    return Outcome::Ended(None);
                };
                record.status = record.status.apply_or(StepEvent::RetryLater, StepStatus::Retrying);
                record.error = Some(super::call_error(&e));
                self.exec.update_item_blocking(i, record.clone());
                if let Some(run) = self.lock().maps.get_mut(&i) {
                    run.records[k] = record;
                }
                Outcome::Retry(delay)
            }
            Err(e) => {
                self.end_item(i, k, StepStatus::Failed, None, Some(super::call_error(&e)));
                Outcome::Ended(None)
            }
        }
    }

    /// Item `k` of map step `i` ended with `status`: record it. (An item's
    /// failure never stops the phase itself: its step's end does.)
    fn end_item(&self, i: usize, k: usize, status: StepStatus, output: Option<Value>, error: Option<StepError>) {
        let now = epoch_ms(self.engine.clock().now());
        let Some(mut record) = self.lock().maps.get(&i).map(|r| r.records[k].clone()) else { return };
        record.status = status;
        record.output = output;
        if error.is_some() || status == StepStatus::Completed {
            record.error = error;
        }
        record.ended_at_ms = Some(now);
        self.exec.update_item_blocking(i, record.clone());
        if let Some(run) = self.lock().maps.get_mut(&i) {
            run.records[k] = record;
        }
    }

    /// An item's attempt is recorded: free its runner, queue the next items
    /// or wait for its retry; end the step after its last item.
    fn after_item(self: &Arc<Self>, i: usize, k: usize, outcome: Outcome) {
        let mut st = self.lock();
        st.busy -= 1;
        let finished = self.settled_item(&mut st, i, k, outcome);
        drop(st);
        if let Some(run) = finished {
            self.finish_map(i, run);
        }
    }

    /// The bookkeeping of an item's recorded attempt; the map, when that
    /// was its last item (the caller ends the step: [`Self::finish_map`]).
    pub(super) fn settled_item(
        self: &Arc<Self>,
        st: &mut super::Schedule,
        i: usize,
        k: usize,
        outcome: Outcome,
    ) -> Option<MapRun> {
        match outcome {
            Outcome::Ended(_) => {
                let run = st.maps.get_mut(&i)?;
                run.in_flight -= 1;
                run.ended += 1;
                if run.records[k].status == StepStatus::Failed {
                    run.failed += 1;
                }
                if run.records[k].status == StepStatus::Completed {
                    run.completed += 1;
                }
                // A count kept, not recounted: a list of thousands costs no more per item.
                let progress = items_progress(run.completed, run.records.len());
                self.exec.lock().steps[i].progress = Some(progress);
                self.queue_items(st, i);
                let finished = match self.map_state(st, i) {
                    MapRunState::Finished => st.maps.remove(&i),
                    _ => None,
                };
                self.start_runners(st);
                finished
            }
            Outcome::Retry(delay) => {
                st.timers += 1;
                let _ = self.events.send(super::Event::Retry { step: i, item: Some(k), delay });
                None
            }
        }
    }

    /// Map step `i`'s last item ended: record the step (completed with the
    /// items' outputs in order, or failed) and release its dependents.
    pub(super) fn finish_map(self: &Arc<Self>, i: usize, run: MapRun) {
        let step = &self.prepared.workflow.steps[i];
        let n = run.records.len();
        let (status, output, error) = match run.records.iter().find(|r| r.status == StepStatus::Failed) {
            None => {
                let outputs = run.records.into_iter().map(|r| r.output.unwrap_or(Value::Null)).collect();
                (StepStatus::Completed, Some(Value::Array(outputs)), None)
            }
            Some(first) => {
                let cause = first.error.clone().unwrap_or_else(|| error("item", "failed", false));
                let rest = if run.fail_fast && run.cursor < n { "; the items after it were not started" } else { "" };
                let message =
                    format!("{} of {n} items failed; item {}: {}{rest}", run.failed.max(1), first.index, cause.message);
                (StepStatus::Failed, None, Some(StepError { kind: cause.kind, message, retryable: false }))
            }
        };
        let stop = match (&error, step.critical) {
            (Some(e), true) => Some(Abort::Failed(format!("critical step `{}` failed: {}", step.id, e.message))),
            _ => None,
        };
        let ended = self.engine.ended(status, output, error, None);
        self.exec.update_step_blocking(i, |r| {
            ended(r);
            r.progress = Some(items_progress(run.ended.min(n), n));
        });
        let mut st = self.lock();
        if self.prepared.workflow.mode.is_serial() {
            st.held_by_waits -= 1;
            st.running -= 1;
        }
        if let Some(why) = stop {
            self.abort(&mut st, why);
        }
        self.release_dependents(&mut st, i);
        self.start_runners(&mut st);
    }

    /// The phase stopped (a cancel, a failure elsewhere, the timeout) with
    /// map step `i` unfinished: it ends failed if an item failed, else cancelled.
    pub(super) async fn stop_map(self: &Arc<Self>, i: usize, run: MapRun) {
        let n = run.records.len();
        let (status, error, reason) = match run.records.iter().find(|r| r.status == StepStatus::Failed) {
            Some(first) => {
                let cause = first.error.clone().unwrap_or_else(|| error("item", "failed", false));
                let message =
                    format!("{} of {n} items failed; item {}: {}", run.failed.max(1), first.index, cause.message);
                (StepStatus::Failed, Some(StepError { kind: cause.kind, message, retryable: false }), None)
            }
            None => (StepStatus::Cancelled, None, Some("the execution stopped while its items ran".to_owned())),
        };
        self.exec.update_step(i, self.engine.ended(status, None, error, reason)).await;
    }

    /// Item `k` of map step `i` was waiting to retry when the phase stopped: record it cancelled.
    pub(super) async fn cancel_waiting_item(self: &Arc<Self>, i: usize, k: usize) {
        let fwd = self.clone();
        let _ = tokio::task::spawn_blocking(move || fwd.end_item(i, k, StepStatus::Cancelled, None, None)).await;
    }
}

/// A map step's progress: how many of its `n` items completed.
fn items_progress(done: usize, n: usize) -> StepProgress {
    let fraction = if n == 0 { 1.0 } else { done as f64 / n as f64 };
    StepProgress { fraction, message: format!("{done} of {n} items") }
}
