//! The forward phase of an execution: one async task that owns the phase,
//! and runners that carry ready steps through to their end.
//!
//! **Runners.** A runner is a closure on tokio's blocking pool: it takes the
//! next ready step (stable topological order) while a slot is free (1 in
//! serial modes, `max_parallel` otherwise), records its start, calls the
//! plugin, records the outcome, releases the dependents, and takes the next
//! — so a chain of steps runs on one thread with no hand-off between steps
//! (a round trip between threads costs 20–90 µs on a small VM, far more than
//! a native call; see the README's *Speed*). A runner never waits: when
//! nothing is ready it ends, and when a step releases more steps than there
//! are runners, it starts more.
//! No thread is parked per execution; a thread is busy only while a step is.
//!
//! **The phase's task** awaits what does wait: the execution's cancel, the
//! engine's drain, the workflow's timeout, retry delays (timers on the
//! engine's clock), a held journal, and the deadlines of calls that cannot be
//! pre-empted. A runtime that is [`preemptible`](plexus_host::runtime::Runtime::preemptible)
//! (WASM) stops its own call at the deadline; for one that is not (native
//! and in-process code) the runner registers the deadline and the task,
//! sleeping until the earliest one, interrupts the call, abandons its runner
//! (counted against the plugin's abandoned-call budget), records the timeout
//! and lets another runner go on. The engine never branches on the plugin's kind.
//!
//! **Stopping** is one [`CancellationToken`], a child of the execution's: a
//! cancel, a critical failure and the workflow's timeout raise it; plugins
//! see it as `is_cancelled`, retry timers wake on it. The engine's drain
//! token (daemon shutdown) makes the phase start nothing more and leave the
//! rest for a resume.
//!
//! The state is shaped for steps created at run time: a step is an index
//! into vectors the phase owns, and what a runner or timer reports names the
//! step it is about, so a later step kind (one item of a map, a child
//! execution, a wait for a signal) is one more source of [`Event`]s — waiting
//! costs a future in the phase's task, not a thread.

mod map;
mod wait;

use super::definition::StepResources;
use super::engine::{Abort, Engine, Execution, Prepared, call_error, error};
use super::expr::{Scope, Template};
use super::status::{MAX_STEP_METRICS, StepError, StepEvent, StepProgress, StepRecord, StepStatus, StepUsage};
use plexus_host::CallError;
use plexus_host::runtime::CallTicket;
use plexus_host::secrets::redactor;
use plexus_host::services::{CallServices, CallUsage};
use plexus_sdk::{CallOutput, ExecutionContext};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A step's usage so far with one more call's (CPU times add up, the
/// larger peak stays); nothing measured leaves it as it was.
fn merge_usage(so_far: Option<StepUsage>, call: CallUsage) -> StepUsage {
    let so_far = so_far.unwrap_or_default();
    let merged = CallUsage { cpu_ms: so_far.cpu_ms, peak_memory_bytes: so_far.peak_memory_bytes }.merged(call);
    StepUsage { cpu_ms: merged.cpu_ms, peak_memory_bytes: merged.peak_memory_bytes }
}

/// `a + b`, each part saturating.
fn add(a: StepResources, b: StepResources) -> StepResources {
    StepResources {
        cpu_millis: a.cpu_millis.saturating_add(b.cpu_millis),
        memory_mb: a.memory_mb.saturating_add(b.memory_mb),
    }
}

/// The most bytes of a progress message kept.
const MAX_PROGRESS_MESSAGE: usize = 1024;

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The metrics a call reported, as a step keeps them: finite values only, at
/// most [`MAX_STEP_METRICS`] (the first ones), names of at most 128 bytes; a
/// name reported twice keeps its last value.
fn step_metrics(step: &str, reported: Vec<(String, f64)>) -> BTreeMap<String, f64> {
    let mut kept = BTreeMap::new();
    let mut dropped = 0usize;
    for (name, value) in reported {
        if !value.is_finite() || (kept.len() >= MAX_STEP_METRICS && !kept.contains_key(&name)) {
            dropped += 1;
            continue;
        }
        // A name may quote a secret the plugin was handed.
        kept.insert(truncated(&redactor().text(&name), 128), value);
    }
    if dropped > 0 {
        tracing::warn!(step, dropped, "metrics dropped (not finite, or more than {MAX_STEP_METRICS})");
    }
    kept
}

/// What is queued and run: `(rank, step, item)` — `item` is `None` for a
/// step, `Some(k)` for item `k` of a map step (see the `map` module).
type Task = (usize, usize, Option<usize>);

/// A step ready to call: rendered once, reused by its retries.
struct Job {
    params: Value,
    upstream: Map<String, Value>,
    timeout: Duration,
    config: Value,
}

/// A step that ends without a call: `(status, error, reason)`.
type Terminal = (StepStatus, Option<StepError>, Option<String>);

/// What runners tell the phase's task.
enum Event {
    /// A runner ended (nothing it could take).
    RunnerEnded,
    /// A call that cannot be pre-empted registered an earlier deadline.
    Armed,
    /// Step `step` (or its item `item`) failed and waits `delay` before its
    /// next attempt (its `retrying` status is recorded).
    Retry { step: usize, item: Option<usize>, delay: Duration },
}

/// How a recorded attempt ended.
enum Outcome {
    /// The step ended; with why the phase must stop (a critical failure).
    Ended(Option<Abort>),
    /// The step waits `delay` before its next attempt.
    Retry(Duration),
}

/// A call a runner is blocked in that cannot be pre-empted.
struct Watched {
    step: usize,
    item: Option<usize>,
    attempt: u32,
    services: CallServices,
    timeout: Duration,
    /// Counts the call against its plugin's abandoned-call budget if the phase gives up on it.
    ticket: CallTicket,
}

/// The scheduling state.
struct Schedule {
    waiting: Vec<usize>,
    ready: BTreeSet<Task>,
    /// The map steps that started, by step.
    maps: std::collections::HashMap<usize, map::MapRun>,
    /// Wait steps waiting for their signal, with when they time out (ms
    /// since the Unix epoch).
    awaited: BTreeMap<usize, Option<u64>>,
    /// The slots (of `running`) that waits and maps hold in serial modes
    /// (the phase is idle when only those are taken).
    held_by_waits: usize,
    jobs: Vec<Option<Arc<Job>>>,
    attempts: Vec<u32>,
    /// Slots taken: steps being run, and in serial modes a step waiting to retry.
    running: usize,
    limit: usize,
    /// Runners alive (not counting those abandoned in a call).
    runners: usize,
    /// Runners carrying a step.
    busy: usize,
    /// Steps waiting to retry.
    timers: usize,
    abort: Option<Abort>,
    /// The engine is draining: start nothing more, leave the rest for a resume.
    suspended: bool,
    /// Calls that cannot be pre-empted, by deadline.
    calls: BTreeMap<(Instant, u64), Watched>,
    /// Calls the phase gave up on; their runners end when they return.
    taken_over: HashSet<u64>,
    next_call: u64,
    /// The deadline the phase's task sleeps until.
    armed: Option<Instant>,
    /// The resources the running steps hold of the workflow's budget.
    used: StepResources,
    /// Which steps hold their resources now.
    holding: Vec<bool>,
}

/// One forward phase, shared by its task and its runners.
pub(super) struct Forward {
    engine: Engine,
    prepared: Arc<Prepared>,
    exec: Arc<Execution>,
    stop: CancellationToken,
    sched: Mutex<Schedule>,
    events: mpsc::UnboundedSender<Event>,
    runtime: tokio::runtime::Handle,
}

impl Forward {
    /// Run every step that can run; returns why the phase stopped early, if it did.
    pub(super) async fn run(
        engine: Engine,
        prepared: Arc<Prepared>,
        exec: Arc<Execution>,
        stop: CancellationToken,
    ) -> Option<Abort> {
        let wf = &prepared.workflow;
        let dag = &prepared.dag;
        let n = wf.steps.len();
        // Never more at once than steps, whatever `max_parallel` says.
        let limit =
            if wf.mode.is_serial() { 1 } else { wf.max_parallel.unwrap_or(engine.parallelism()).clamp(1, n.max(1)) };
        // A restored execution: ended steps stay ended and count as done.
        let (ended, attempts): (Vec<bool>, Vec<u32>) =
            exec.lock().steps.iter().map(|s| (s.status.is_terminal(), s.attempts)).unzip();
        let waiting: Vec<usize> = dag.deps.iter().map(|deps| deps.iter().filter(|&&d| !ended[d]).count()).collect();
        let ready = (0..n).filter(|&i| !ended[i] && waiting[i] == 0).map(|i| (dag.rank[i], i, None)).collect();
        let sched = Schedule {
            waiting,
            ready,
            maps: std::collections::HashMap::new(),
            awaited: BTreeMap::new(),
            held_by_waits: 0,
            jobs: vec![None; n],
            attempts,
            running: 0,
            limit,
            runners: 0,
            busy: 0,
            timers: 0,
            abort: None,
            suspended: false,
            calls: BTreeMap::new(),
            taken_over: HashSet::new(),
            next_call: 0,
            armed: None,
            used: StepResources::default(),
            holding: vec![false; n],
        };
        let (events, mut inbox) = mpsc::unbounded_channel();
        let fwd = Arc::new(Forward {
            engine,
            prepared: prepared.clone(),
            exec: exec.clone(),
            stop,
            sched: Mutex::new(sched),
            events,
            runtime: tokio::runtime::Handle::current(),
        });
        let timeout = wf.timeout.unwrap_or_default();
        let expiry = async {
            match wf.timeout {
                Some(t) => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(super::clock::instant_after(t))).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        let mut expired = false;
        let drain = fwd.engine.drain_signal().clone();
        let cancel = exec.cancel_token().clone();
        let mut held = exec.held_changes();
        let mut timers: JoinSet<(usize, Option<usize>, bool)> = JoinSet::new();
        let mut parked = false;
        loop {
            // Waits whose signal came or whose timeout passed end first.
            let waits_due = {
                let st = fwd.lock();
                !st.awaited.is_empty() && st.abort.is_none()
            };
            if waits_due {
                fwd.settle_waits().await;
            }
            let armed = {
                let mut st = fwd.lock();
                // A cancel reaches runners and timers through the stop token
                // (a child of the execution's) as soon as it is asked; it
                // must not be taken for an end because they finished first.
                if st.abort.is_none() && cancel.is_cancelled() {
                    fwd.abort(&mut st, Abort::Cancelled);
                }
                fwd.start_runners(&mut st);
                let idle = st.running == st.held_by_waits && st.runners == 0 && st.timers == 0;
                if idle
                    && (st.abort.is_some() || fwd.draining(&mut st) || (st.ready.is_empty() && st.awaited.is_empty()))
                {
                    break;
                }
                // Nothing left but waits for signals: park (the daemon), or wait here.
                // (Not when a cancel came: the loop's next turn stops the phase.)
                if idle && st.ready.is_empty() && fwd.engine.parks() && !exec.is_cancelled() {
                    drop(st);
                    let signals = fwd.awaited_signals();
                    let names: Vec<&str> = signals.iter().map(String::as_str).collect();
                    if exec.try_park(&names, fwd.next_wait_deadline()) {
                        parked = true;
                        break;
                    }
                    continue;
                }
                st.armed
            };
            // A stopping phase ends its waits when it stops: no deadline to wake for.
            let wait_deadline = {
                let st = fwd.lock();
                if st.abort.is_some() || st.suspended {
                    None
                } else {
                    drop(st);
                    fwd.next_wait_deadline()
                }
            };
            let wait_timeout = async {
                match wait_deadline {
                    Some(at) => {
                        let now = super::status::epoch_ms(fwd.engine.clock().now());
                        fwd.engine.clock().sleep(Duration::from_millis(at.saturating_sub(now))).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let deadline = async {
                match armed {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(event) = inbox.recv() => {
                    if let Event::Retry { step, item, delay } = event {
                        let fwd = fwd.clone();
                        timers.spawn(async move { fwd.retry_after(step, item, delay).await });
                    }
                }
                Some(due) = timers.join_next() => fwd.retry_due(due),
                () = deadline => fwd.expire().await,
                () = cancel.cancelled(), if fwd.lock().abort.is_none() => fwd.abort(&mut fwd.lock(), Abort::Cancelled),
                () = drain.cancelled(), if !fwd.lock().suspended => {
                    fwd.draining(&mut fwd.lock());
                }
                // Released (or held): runners may start again.
                Ok(()) = held.changed() => {}
                // A signal came, or a wait timed out: the loop's top ends those waits.
                () = exec.signal_delivered(), if !fwd.lock().awaited.is_empty() => {}
                () = wait_timeout => {}
                () = &mut expiry, if !expired => {
                    expired = true;
                    let why = Abort::Failed(format!("the workflow timed out after {} ms", timeout.as_millis()));
                    fwd.abort(&mut fwd.lock(), why);
                }
            }
        }
        if parked {
            return Some(Abort::Parked);
        }
        // Map steps the phase stopped in the middle of end now (a drained one
        // stays running, to go on from its items when it resumes), and so do
        // wait steps (a drained one stays waiting).
        let (stopped, waits): (Vec<(usize, map::MapRun)>, Vec<usize>) = {
            let mut st = fwd.lock();
            if st.suspended {
                (Vec::new(), Vec::new())
            } else {
                let waits = std::mem::take(&mut st.awaited).into_keys().collect();
                (st.maps.drain().collect(), waits)
            }
        };
        for (i, run) in stopped {
            fwd.stop_map(i, run).await;
        }
        for i in waits {
            fwd.stop_wait(i).await;
        }
        let st = fwd.lock();
        match &st.abort {
            None if st.suspended => {
                // Steps were left for a resume, unless every step had ended anyway.
                let ended = exec.lock().steps.iter().all(|s| s.status.is_terminal());
                (!ended).then_some(Abort::Suspended)
            }
            other => other.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Schedule> {
        self.sched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stop starting steps and cancel the running ones (idempotent).
    fn abort(&self, st: &mut Schedule, why: Abort) {
        if st.abort.is_none() {
            // The reason may quote a step's error, which may quote a secret.
            let why = match why {
                Abort::Failed(message) => Abort::Failed(redactor().text(&message).into_owned()),
                other => other,
            };
            tracing::info!(workflow = %self.prepared.workflow.id, "stopping: {why:?}");
            st.abort = Some(why);
        }
        self.stop.cancel();
    }

    /// Whether the engine drains (daemon shutdown): from the first look that
    /// sees its token, the phase starts nothing more. Every place that would
    /// start a step looks, so none starts between the drain and the moment
    /// the phase's task wakes to it.
    fn draining(&self, st: &mut Schedule) -> bool {
        if !st.suspended && self.engine.drain_signal().is_cancelled() {
            tracing::info!(execution = %self.exec.id(), "draining: no new steps start");
            st.suspended = true;
        }
        st.suspended
    }

    /// Start runners until every ready step a free slot allows has one.
    fn start_runners(self: &Arc<Self>, st: &mut Schedule) {
        // A held execution starts nothing until its journal records again.
        if st.abort.is_some() || self.draining(st) || self.exec.is_held() {
            return;
        }
        let wanted = self.startable(st);
        while st.runners - st.busy < wanted {
            st.runners += 1;
            let fwd = self.clone();
            self.runtime.spawn_blocking(move || fwd.runner());
        }
    }

    /// How many ready steps could start now: free slots, and (with a
    /// resource budget) the ready steps, in order, that fit together — the
    /// first that does not fit holds back the ones after it.
    fn startable(&self, st: &Schedule) -> usize {
        let free = st.limit.saturating_sub(st.running);
        // A map's queued items start whatever the slots (their map bounds them).
        let items = st.ready.iter().filter(|t| t.2.is_some()).count();
        let Some(budget) = &self.prepared.workflow.resources else { return (st.ready.len() - items).min(free) + items };
        let steps = &self.prepared.workflow.steps;
        let mut used = st.used;
        let mut n = 0;
        for &(_, i, item) in &st.ready {
            if item.is_some() {
                continue;
            }
            let need = steps[i].resources;
            if n == free || !budget.fits(used, need) {
                break;
            }
            used = add(used, need);
            n += 1;
        }
        n + items
    }

    /// Whether ready step `i` fits the budget now (always, without one).
    fn fits(&self, st: &Schedule, i: usize) -> bool {
        let wf = &self.prepared.workflow;
        wf.resources.as_ref().is_none_or(|budget| budget.fits(st.used, wf.steps[i].resources))
    }

    /// Step `i` takes its resources.
    fn hold(&self, st: &mut Schedule, i: usize) {
        if !st.holding[i] {
            st.holding[i] = true;
            st.used = add(st.used, self.prepared.workflow.steps[i].resources);
        }
    }

    /// Step `i` gives its resources back (if it holds them).
    fn release(&self, st: &mut Schedule, i: usize) {
        if st.holding[i] {
            st.holding[i] = false;
            let need = self.prepared.workflow.steps[i].resources;
            st.used = StepResources {
                cpu_millis: st.used.cpu_millis.saturating_sub(need.cpu_millis),
                memory_mb: st.used.memory_mb.saturating_sub(need.memory_mb),
            };
        }
    }

    /// A runner: carry ready steps through until none is left for it.
    fn runner(self: Arc<Self>) {
        let mut carrying = None;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while let Some((i, item, attempt)) = self.next() {
                carrying = Some((i, item));
                let carried = match item {
                    None => self.run_step(i, attempt),
                    Some(k) => self.run_item(i, k, attempt),
                };
                if !carried {
                    // The phase gave up on this call; it already counted this runner out.
                    return;
                }
                carrying = None;
            }
        }));
        if let Err(panic) = ran {
            // A bug in the engine or the journal (plugins' panics are caught
            // by their runtime): the execution fails rather than hangs.
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(execution = %self.exec.id(), step = ?carrying, "a step runner panicked: {message}");
            let mut st = self.lock();
            // Counted out, as far as it was still counted.
            st.runners = st.runners.saturating_sub(1);
            if let Some((i, item)) = carrying {
                st.busy = st.busy.saturating_sub(1);
                match item {
                    None => {
                        st.running = st.running.saturating_sub(1);
                        self.release(&mut st, i);
                    }
                    Some(_) => {
                        if let Some(run) = st.maps.get_mut(&i) {
                            run.in_flight = run.in_flight.saturating_sub(1);
                        }
                    }
                }
            }
            self.abort(&mut st, Abort::Failed(format!("internal error: a step runner panicked: {message}")));
            drop(st);
            let _ = self.events.send(Event::RunnerEnded);
        }
    }

    /// The next step (or map item) to run and its attempt number; `None` ends the runner.
    fn next(&self) -> Option<(usize, Option<usize>, u32)> {
        let mut st = self.lock();
        // A cancel asked while this runner carried a step stops it here, as
        // the phase's task would on waking: the dependents just released are
        // then cancelled with the other pending steps, not started (and
        // skipped because their dependency was cancelled).
        if st.abort.is_none() && self.exec.cancel_token().is_cancelled() {
            self.abort(&mut st, Abort::Cancelled);
        }
        // The first ready task that may start: a step needs a free slot (and
        // to fit the budget); a map's items are bounded by their map alone.
        let task = (st.abort.is_none() && !self.draining(&mut st) && !self.exec.is_held())
            .then(|| {
                st.ready
                    .iter()
                    .find(|&&(_, i, item)| item.is_some() || (st.running < st.limit && self.fits(&st, i)))
                    .copied()
            })
            .flatten();
        if let Some((rank, i, item)) = task {
            st.ready.remove(&(rank, i, item));
            st.busy += 1;
            let attempt = match item {
                None => {
                    st.running += 1;
                    self.hold(&mut st, i);
                    st.attempts[i] += 1;
                    st.attempts[i]
                }
                Some(k) => {
                    let run = st.maps.get_mut(&i).expect("a queued item's map has started");
                    run.records[k].attempts += 1;
                    run.records[k].attempts
                }
            };
            return Some((i, item, attempt));
        }
        st.runners -= 1;
        drop(st);
        let _ = self.events.send(Event::RunnerEnded);
        None
    }

    /// Run one attempt of step `i` to its recorded end. `false` when the
    /// phase gave up on its call (timed out; the runner must end).
    fn run_step(self: &Arc<Self>, i: usize, attempt: u32) -> bool {
        if self.prepared.workflow.steps[i].map.is_some() {
            self.start_map(i, attempt);
            return true;
        }
        if self.prepared.workflow.steps[i].wait.is_some() {
            self.start_wait(i, attempt);
            return true;
        }
        if self.prepared.workflow.steps[i].call.is_some() {
            self.start_child(i, attempt);
            return true;
        }
        let cached = self.lock().jobs[i].clone();
        let job = match cached.map_or_else(|| self.job(i), Ok) {
            Ok(job) => job,
            Err((status, error, reason)) => {
                let step = &self.prepared.workflow.steps[i];
                let stop = (status == StepStatus::Failed && step.critical)
                    .then(|| Abort::Failed(format!("critical step `{}` failed", step.id)));
                self.exec.update_step_blocking(i, self.engine.ended(status, None, error, reason));
                self.after(i, Outcome::Ended(stop));
                return true;
            }
        };
        self.lock().jobs[i] = Some(job.clone());
        let step = &self.prepared.workflow.steps[i];
        if attempt > step.retry.max_attempts {
            // Restored after a restart that interrupted its last attempt.
            let plugin = step.action.plugin_id.clone();
            let message = "the host stopped during the last attempt".to_owned();
            let outcome = self.settle(i, attempt - 1, Err(CallError::Host { plugin, message }), CallUsage::default());
            self.after(i, outcome);
            return true;
        }
        let now = super::status::epoch_ms(self.engine.clock().now());
        let recorded = self.exec.start_step_blocking(i, |r| {
            r.status = r.status.apply_or(StepEvent::Start, StepStatus::Running);
            r.attempts = attempt;
            r.started_at_ms.get_or_insert(now);
            r.progress = None;
        });
        if !recorded {
            // No step starts unrecorded: give the attempt back; the
            // execution is held until the journal can write again.
            let mut st = self.lock();
            st.attempts[i] -= 1;
            st.running -= 1;
            st.busy -= 1;
            self.release(&mut st, i);
            st.ready.insert((self.prepared.dag.rank[i], i, None));
            return true;
        }
        let Some((result, usage)) = self.call(i, None, attempt, &job) else { return false };
        let outcome = self.settle(i, attempt, result, usage);
        self.after(i, outcome);
        true
    }

    /// Step `i`'s attempt is recorded: free its runner, and release its
    /// dependents or wait for its retry.
    fn after(self: &Arc<Self>, i: usize, outcome: Outcome) {
        let mut st = self.lock();
        st.busy -= 1;
        self.settled(&mut st, i, outcome);
    }

    /// The bookkeeping of a recorded attempt (by its runner, or by the phase
    /// when it gave up on the call).
    fn settled(self: &Arc<Self>, st: &mut Schedule, i: usize, outcome: Outcome) {
        // A step waiting to retry holds no resources: it takes them again when it starts.
        self.release(st, i);
        match outcome {
            Outcome::Ended(stop) => {
                st.running -= 1;
                if let Some(why) = stop {
                    self.abort(st, why);
                }
                self.release_dependents(st, i);
                // More ready than runners: start more (this one takes one).
                self.start_runners(st);
            }
            Outcome::Retry(delay) => {
                // In serial modes a step waiting to retry keeps its turn.
                if !self.prepared.workflow.mode.is_serial() {
                    st.running -= 1;
                }
                st.timers += 1;
                let _ = self.events.send(Event::Retry { step: i, item: None, delay });
                if self.prepared.workflow.resources.is_some() {
                    // What it gave back may let steps that waited for it start.
                    self.start_runners(st);
                }
            }
        }
    }

    /// Step `i` ended: each dependent whose dependencies have all ended is ready.
    fn release_dependents(&self, st: &mut Schedule, i: usize) {
        let dag = &self.prepared.dag;
        for &d in &dag.dependents[i] {
            st.waiting[d] -= 1;
            if st.waiting[d] == 0 {
                st.ready.insert((dag.rank[d], d, None));
            }
        }
    }

    /// Decide whether step `i` runs and render its parameters (once; retries reuse it).
    fn job(&self, i: usize) -> Result<Arc<Job>, Terminal> {
        let ps = self.prepared.step(i);
        let (upstream, scope) = self.prelude(i)?;
        let params = match &scope {
            Some(scope) => {
                ps.params.render(scope).map_err(|e| (StepStatus::Failed, Some(error("parameters", e, false)), None))?
            }
            None => match &ps.params {
                Template::Literal(v) => v.clone(),
                _ => unreachable!("non-literal parameters always get a scope"),
            },
        };
        self.job_with(i, params, upstream)
    }

    /// Step `i`'s job with `params`: its timeout and the plugin's config.
    fn job_with(&self, i: usize, params: Value, upstream: Map<String, Value>) -> Result<Arc<Job>, Terminal> {
        let step = &self.prepared.workflow.steps[i];
        let Some(plugin) = self.engine.host().select(&step.action.plugin_id, step.action.kind) else {
            let message = super::engine::not_loaded(self.engine.host(), &step.action.plugin_id, step.action.kind);
            return Err((StepStatus::Failed, Some(error("plugin-not-found", message, false)), None));
        };
        Ok(Arc::new(Job {
            params,
            upstream,
            timeout: step.timeout.unwrap_or(plugin.manifest.limits.timeout),
            config: plugin.manifest.call_config().clone(),
        }))
    }

    /// What step `i` needs before its parameters are rendered: its
    /// dependencies' outputs (all of them completed, or it is skipped), its
    /// condition (false: skipped), and the scope its templates see (with the
    /// secrets they name; `None` when nothing needs one).
    fn prelude(&self, i: usize) -> Result<(Map<String, Value>, Option<Scope>), Terminal> {
        let (prepared, exec) = (&self.prepared, &self.exec);
        let ps = prepared.step(i);
        // Dependencies mean "all succeeded".
        let upstream = {
            let s = exec.lock();
            let mut upstream = Map::new();
            for &d in &prepared.dag.deps[i] {
                let dep = &s.steps[d];
                if dep.status != StepStatus::Completed {
                    return Err((
                        StepStatus::Skipped,
                        None,
                        Some(format!("dependency `{}` {}", dep.id, dep.status.as_str())),
                    ));
                }
                upstream.insert(dep.id.clone(), dep.output.clone().unwrap_or(Value::Null));
            }
            upstream
        };
        let needs_scope = ps.when.is_some() || !ps.params.is_literal() || ps.for_each.is_some();
        let mut scope = needs_scope.then(|| self.engine.scope(prepared, exec, &ps.reads, ps.reads_context, None));
        if let (Some(when), Some(scope)) = (&ps.when, &scope) {
            match when.eval_bool(scope) {
                Ok(true) => {}
                Ok(false) => {
                    return Err((StepStatus::Skipped, None, Some(format!("condition `{}` is false", when.source()))));
                }
                Err(e) => return Err((StepStatus::Failed, Some(error("condition", e, false)), None)),
            }
        }
        // Looked up once the step is known to run (a `when` never reads secrets).
        if !ps.secrets.is_empty() {
            let secrets = self.engine.secret_values(&ps.secrets).map_err(|e| (StepStatus::Failed, Some(e), None))?;
            scope = Some(self.engine.scope(prepared, exec, &ps.reads, ps.reads_context, secrets));
        }
        Ok((upstream, scope))
    }

    /// Call step `i`'s operation on this runner's thread, within its
    /// timeout. `None` when the phase gave up on the call (see [`Self::expire`]).
    fn call(
        &self,
        i: usize,
        item: Option<usize>,
        attempt: u32,
        job: &Job,
    ) -> Option<(Result<CallOutput, CallError>, CallUsage)> {
        let step = &self.prepared.workflow.steps[i];
        let plugin_id = &step.action.plugin_id;
        let ctx = ExecutionContext {
            execution_id: self.exec.id().to_owned(),
            workflow_id: Some(self.prepared.workflow.id.clone()),
            step_id: Some(step.id.clone()),
            task_id: self.exec.task_id().map(str::to_owned),
            attempt,
            deadline_ms: Some(super::status::epoch_ms(super::clock::after(self.engine.clock().now(), job.timeout))),
            operation: step.action.operation.clone(),
            parameters: job.params.clone(),
            upstream: job.upstream.clone(),
            config: job.config.clone(),
            schedule: self.exec.schedule().cloned(),
        };
        let mut services =
            CallServices::new(plugin_id, &ctx.execution_id, self.exec.state().clone(), self.stop.clone())
                .with_kind(step.action.kind)
                .with_cpu_measured();
        if let Some(artifacts) = self.engine.artifacts() {
            services = services.with_artifacts(artifacts.clone(), Some(&step.id));
        }
        // A map's items report no progress of their own: the step's is how many ended.
        if item.is_none() {
            services = services.with_progress(self.progress_sink(i));
        }
        let host = self.engine.host();
        let Some(plugin) = host.select(plugin_id, step.action.kind) else {
            return Some((Err(CallError::PluginNotFound(plugin_id.clone())), CallUsage::default()));
        };
        if plugin.runtime.preemptible() {
            let result = host.call_with(&ctx, &services, Some(job.timeout));
            return Some((result, services.usage()));
        }
        // The phase's task times this call; register its deadline.
        let ticket = CallTicket::new(plugin_id);
        let key = {
            let mut st = self.lock();
            st.next_call += 1;
            let key = (super::clock::instant_after(job.timeout), st.next_call);
            let watched = Watched {
                step: i,
                item,
                attempt,
                services: services.clone(),
                timeout: job.timeout,
                ticket: ticket.clone(),
            };
            st.calls.insert(key, watched);
            if st.armed.is_none_or(|armed| key.0 < armed) {
                st.armed = Some(key.0);
                let _ = self.events.send(Event::Armed);
            }
            key
        };
        let result = host.call_with(&ctx, &services, None);
        ticket.finish();
        let mut st = self.lock();
        if st.taken_over.remove(&key.1) {
            return None;
        }
        st.calls.remove(&key);
        Some((result, services.usage()))
    }

    /// Where step `i`'s progress reports go: its in-memory record (the API
    /// shows it live; the step's next transition records it).
    fn progress_sink(&self, i: usize) -> plexus_host::services::ProgressSink {
        let exec = Arc::downgrade(&self.exec);
        Arc::new(move |fraction, message| {
            if let Some(exec) = exec.upgrade() {
                let message = truncated(message, MAX_PROGRESS_MESSAGE);
                exec.lock().steps[i].progress = Some(StepProgress { fraction, message });
            }
        })
    }

    /// Give up on the calls past their deadline: interrupt each, abandon its
    /// runner, record the timeout, and let the step go on (retry or end).
    async fn expire(self: &Arc<Self>) {
        let now = Instant::now();
        let expired: Vec<Watched> = {
            let mut st = self.lock();
            let due: Vec<(Instant, u64)> = st.calls.range(..(now, u64::MAX)).map(|(k, _)| *k).collect();
            let mut expired = Vec::new();
            for key in due {
                // A call that returned just now is its runner's to record.
                if st.calls[&key].ticket.abandon() {
                    let watched = st.calls.remove(&key).expect("listed just now");
                    st.taken_over.insert(key.1);
                    // Its runner is counted out: it ends whenever the plugin returns.
                    st.runners -= 1;
                    st.busy -= 1;
                    expired.push(watched);
                }
            }
            // Calls left at or past `now` returned just now; their runners remove them.
            st.armed = st.calls.keys().map(|k| k.0).find(|&at| at > now);
            expired
        };
        for w in expired {
            w.services.interrupt();
            let plugin = w.services.plugin_id().to_owned();
            tracing::warn!(plugin = %plugin, timeout_ms = w.timeout.as_millis() as u64, "call timed out; its thread is abandoned");
            // Recorded like any attempt, on a thread that may block.
            let fwd = self.clone();
            let timed_out = CallError::Timeout { plugin, after: w.timeout };
            let (step, item, attempt) = (w.step, w.item, w.attempt);
            let outcome = tokio::task::spawn_blocking(move || match item {
                None => fwd.settle(step, attempt, Err(timed_out), CallUsage::default()),
                Some(k) => fwd.settle_item(step, k, attempt, Err(timed_out), CallUsage::default()),
            })
            .await
            .unwrap_or_else(|e| {
                Outcome::Ended(Some(Abort::Failed(format!("internal error: recording a timeout failed: {e}"))))
            });
            match item {
                None => self.settled(&mut self.lock(), w.step, outcome),
                Some(k) => {
                    let finished = self.settled_item(&mut self.lock(), w.step, k, outcome);
                    if let Some(run) = finished {
                        let fwd = self.clone();
                        let step = w.step;
                        let _ = tokio::task::spawn_blocking(move || fwd.finish_map(step, run)).await;
                    }
                }
            }
        }
    }

    /// Record an attempt's result: complete, retry later, or fail (on a
    /// thread that may block: the journal writes from it).
    fn settle(&self, i: usize, attempt: u32, result: Result<CallOutput, CallError>, usage: CallUsage) -> Outcome {
        let wf = &self.prepared.workflow;
        let step = &wf.steps[i];
        let (exec, engine) = (&self.exec, &self.engine);
        let mut stop = None;
        // What the call used goes into the same record as its outcome.
        let used = |r: &mut StepRecord| {
            if usage != CallUsage::default() {
                r.usage = Some(merge_usage(r.usage, usage));
            }
        };
        match result {
            Ok(out) => {
                if wf.mode == super::definition::ExecutionMode::Pipeline
                    && let Value::Object(map) = &out.output
                {
                    for (k, v) in map {
                        exec.state().set(k, v.clone());
                    }
                }
                let metrics = step_metrics(&step.id, out.metrics);
                // By name; a name written twice keeps its last artifact.
                let artifacts = out.artifacts.into_iter().map(|a| (a.name.clone(), a)).collect();
                let ended = engine.ended(StepStatus::Completed, Some(out.output), None, None);
                exec.update_step_blocking(i, |r| {
                    ended(r);
                    r.metrics = metrics;
                    r.artifacts = artifacts;
                    used(r);
                });
            }
            Err(e) if matches!(e, CallError::Cancelled { .. }) || self.stop.is_cancelled() => {
                let reason = Some("cancelled while running".into());
                let ended = engine.ended(StepStatus::Cancelled, None, None, reason);
                exec.update_step_blocking(i, |r| {
                    ended(r);
                    used(r);
                });
            }
            Err(e) if step.retry.retry_on.covers(e.is_retryable()) && attempt < step.retry.max_attempts => {
                let delay = step.retry.delay(attempt + 1, fastrand::f64());
                tracing::info!(step = %step.id, attempt, delay_ms = delay.as_millis() as u64, "step failed, retrying: {}", redactor().text(&e.to_string()));
                exec.update_step_blocking(i, |r| {
                    r.status = r.status.apply_or(StepEvent::RetryLater, StepStatus::Retrying);
                    r.error = Some(call_error(&e));
                    used(r);
                });
                return Outcome::Retry(delay);
            }
            Err(e) => {
                let error = call_error(&e);
                if step.critical {
                    stop = Some(Abort::Failed(format!("critical step `{}` failed: {}", step.id, error.message)));
                }
                let ended = engine.ended(StepStatus::Failed, None, Some(error), None);
                exec.update_step_blocking(i, |r| {
                    ended(r);
                    used(r);
                });
            }
        }
        Outcome::Ended(stop)
    }

    /// Wait out a retry delay on the engine's clock. A stop ends the step
    /// cancelled; a drain leaves it `retrying` for a resume. Returns the step
    /// and whether it was cancelled.
    async fn retry_after(
        self: Arc<Self>,
        i: usize,
        item: Option<usize>,
        delay: Duration,
    ) -> (usize, Option<usize>, bool) {
        tokio::select! {
            () = self.engine.clock().sleep(delay) => {}
            () = self.stop.cancelled() => {}
            () = self.engine.drain_signal().cancelled() => {}
        }
        let cancelled = self.stop.is_cancelled();
        if cancelled {
            match item {
                None => {
                    let reason = Some("cancelled while waiting to retry".to_owned());
                    self.exec.update_step(i, self.engine.ended(StepStatus::Cancelled, None, None, reason)).await;
                }
                Some(k) => self.cancel_waiting_item(i, k).await,
            }
        }
        (i, item, cancelled)
    }

    /// A retry delay is over: the step is ready again (unless stopped).
    fn retry_due(&self, due: Result<(usize, Option<usize>, bool), tokio::task::JoinError>) {
        let mut st = self.lock();
        st.timers -= 1;
        // A step waiting to retry kept its slot in serial modes (a map's item holds none).
        if self.prepared.workflow.mode.is_serial() && matches!(due, Ok((_, None, _)) | Err(_)) {
            st.running -= 1;
        }
        match due {
            Ok((i, item, false)) if !self.stop.is_cancelled() && !self.draining(&mut st) => {
                st.ready.insert((self.prepared.dag.rank[i], i, item));
            }
            Ok((i, Some(_), _)) => {
                // An item that will not run again leaves its map's count.
                if let Some(run) = st.maps.get_mut(&i) {
                    run.in_flight = run.in_flight.saturating_sub(1);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(execution = %self.exec.id(), "a retry timer failed: {e}");
                self.abort(&mut st, Abort::Failed(format!("internal error: a retry timer failed: {e}")));
            }
        }
    }
}
