//! The forward phase of an execution: worker threads that pick ready steps
//! themselves.
//!
//! `limit` workers (1 in serial modes, `max_parallel` otherwise) share one
//! scheduler state. A worker pops the next ready step (stable topological
//! order), decides whether it runs (dependencies, `when`), runs its call on
//! its own thread, records the outcome and releases the dependents — so a
//! chain of steps runs on one thread with no hand-off between steps.
//! Around the workers, tokio tasks handle what waits: retry backoff on the
//! injected clock, a watchdog for native and in-process timeouts (it sets the
//! call's cancel flag, records the timeout and starts a replacement worker,
//! abandoning the stuck one), the workflow's timeout and cancellation.

use super::engine::{Abort, Engine, Execution, Prepared, Stop, call_error, error};
use super::expr::Template;
use super::status::{StepError, StepEvent, StepStatus};
use plexus_host::CallError;
use plexus_host::manifest::PluginKind;
use plexus_host::runtime::CallTicket;
use plexus_host::services::CallServices;
use plexus_sdk::{CallOutput, ExecutionContext};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the watchdog looks for native calls past their deadline.
const WATCHDOG_TICK: Duration = Duration::from_millis(5);

/// A step ready to call: rendered once, reused by its retries.
struct Job {
    params: Value,
    upstream: Map<String, Value>,
    timeout: Duration,
    config: Value,
    kind: PluginKind,
}

/// A step that ends without a call: `(status, error, reason)`.
type Terminal = (StepStatus, Option<StepError>, Option<String>);

/// A native or in-process call the watchdog is timing.
struct Watched {
    step: usize,
    attempt: u32,
    services: CallServices,
    timeout: Duration,
    /// Counts the call against its plugin's abandoned-call budget if the watchdog gives up on it.
    ticket: CallTicket,
}

struct State {
    waiting: Vec<usize>,
    ready: BTreeSet<(usize, usize)>,
    jobs: Vec<Option<Arc<Job>>>,
    attempts: Vec<u32>,
    running: usize,
    timers: usize,
    abort: Option<Abort>,
    /// The engine is draining: start nothing more, leave the rest for a resume.
    suspended: bool,
    done: bool,
    watched: BTreeMap<(Instant, u64), Watched>,
    taken_over: HashSet<u64>,
    next_token: u64,
}

/// The shared state of one forward phase.
pub(super) struct Forward {
    engine: Engine,
    prepared: Arc<Prepared>,
    exec: Arc<Execution>,
    stop: Stop,
    state: Mutex<State>,
    wake: Condvar,
    done: Notify,
    /// Wakes retry timers when the engine drains.
    suspend: Notify,
    runtime: tokio::runtime::Handle,
    limit: usize,
}

impl Forward {
    /// Run every step that can run; returns why the phase stopped early, if it did.
    pub(super) async fn run(
        engine: Engine,
        prepared: Arc<Prepared>,
        exec: Arc<Execution>,
        stop: Stop,
    ) -> Option<Abort> {
        let wf = &prepared.workflow;
        let dag = &prepared.dag;
        let n = wf.steps.len();
        // Never more workers than steps, whatever `max_parallel` says.
        let limit =
            if wf.mode.is_serial() { 1 } else { wf.max_parallel.unwrap_or(engine.parallelism()).clamp(1, n.max(1)) };
        // A restored execution: ended steps stay ended and count as done.
        let (ended, attempts): (Vec<bool>, Vec<u32>) =
            exec.lock().steps.iter().map(|s| (s.status.is_terminal(), s.attempts)).unzip();
        let waiting: Vec<usize> = dag.deps.iter().map(|deps| deps.iter().filter(|&&d| !ended[d]).count()).collect();
        let ready = (0..n).filter(|&i| !ended[i] && waiting[i] == 0).map(|i| (dag.rank[i], i)).collect();
        let state = State {
            waiting,
            ready,
            jobs: vec![None; n],
            attempts,
            running: 0,
            timers: 0,
            abort: None,
            suspended: false,
            done: false,
            watched: BTreeMap::new(),
            taken_over: HashSet::new(),
            next_token: 0,
        };
        let mut deadline = wf.timeout.map(|t| tokio::time::Instant::from_std(super::clock::instant_after(t)));
        let timeout = wf.timeout.unwrap_or_default();
        let fwd = Arc::new(Forward {
            engine,
            prepared: prepared.clone(),
            exec: exec.clone(),
            stop,
            state: Mutex::new(state),
            wake: Condvar::new(),
            done: Notify::new(),
            suspend: Notify::new(),
            runtime: tokio::runtime::Handle::current(),
            limit,
        });
        if exec.is_cancelled() {
            fwd.abort(Abort::Cancelled);
        }
        for _ in 0..limit {
            fwd.spawn_worker();
        }
        let watchdog = fwd.runtime.spawn(fwd.clone().watchdog());
        let drain = fwd.engine.drain_signal();
        let mut held = exec.held_changes();
        loop {
            let expiry = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = fwd.done.notified() => break,
                _ = exec.cancelled.notified() => fwd.abort(Abort::Cancelled),
                _ = drain.wait(), if !fwd.lock().suspended => fwd.suspend(),
                // Released (or held): idle workers look again.
                Ok(()) = held.changed() => {
                    let _st = fwd.lock();
                    fwd.wake.notify_all();
                }
                _ = expiry => {
                    deadline = None;
                    fwd.abort(Abort::Failed(format!("the workflow timed out after {} ms", timeout.as_millis())));
                }
            }
        }
        watchdog.abort();
        let st = fwd.lock();
        match &st.abort {
            None if st.suspended => {
                // Steps were left for a resume, unless every step had ended anyway.
                let ended = fwd.exec.lock().steps.iter().all(|s| s.status.is_terminal());
                (!ended).then_some(Abort::Suspended)
            }
            other => other.clone(),
        }
    }

    /// Start no more steps; running ones finish; waiting retries are left
    /// for a resume (the step stays `retrying` in the journal).
    fn suspend(&self) {
        let mut st = self.lock();
        if !st.suspended {
            tracing::info!(execution = %self.exec.id(), "draining: no new steps start");
            st.suspended = true;
        }
        self.suspend.notify_waiters();
        self.finish_if_idle(&mut st);
        self.wake.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn_worker(self: &Arc<Self>) {
        let fwd = self.clone();
        self.runtime.spawn_blocking(move || fwd.worker());
    }

    /// Stop starting steps and cancel the running ones (idempotent).
    fn abort(&self, why: Abort) {
        let mut st = self.lock();
        if st.abort.is_none() {
            tracing::info!(workflow = %self.prepared.workflow.id, "stopping: {why:?}");
            st.abort = Some(why);
        }
        self.stop.cancel();
        self.finish_if_idle(&mut st);
        self.wake.notify_all();
    }

    /// Mark the phase done when nothing runs or waits and nothing more will start.
    fn finish_if_idle(&self, st: &mut State) {
        if !st.done && st.running == 0 && st.timers == 0 && (st.abort.is_some() || st.suspended || st.ready.is_empty())
        {
            st.done = true;
            self.done.notify_one();
            self.wake.notify_all();
        }
    }

    /// The next step to run and its attempt number; `None` when this worker should stop.
    fn next(&self) -> Option<(usize, u32)> {
        let mut st = self.lock();
        loop {
            // A held execution starts nothing until its journal records again.
            if st.abort.is_none()
                && !st.suspended
                && !self.exec.is_held()
                && st.running < self.limit
                && let Some((_, i)) = st.ready.pop_first()
            {
                st.running += 1;
                st.attempts[i] += 1;
                return Some((i, st.attempts[i]));
            }
            if st.done || st.abort.is_some() || st.suspended {
                self.finish_if_idle(&mut st);
                return None;
            }
            if st.running == 0 && st.timers == 0 && st.ready.is_empty() {
                self.finish_if_idle(&mut st);
                return None;
            }
            st = self.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn worker(self: Arc<Self>) {
        while let Some((i, attempt)) = self.next() {
            let job = match self.job(i) {
                Ok(job) => job,
                Err((status, error, reason)) => {
                    let critical_failure = status == StepStatus::Failed && self.prepared.workflow.steps[i].critical;
                    self.engine.finish_step(&self.exec, i, status, None, error, reason);
                    if critical_failure {
                        let id = &self.prepared.workflow.steps[i].id;
                        self.abort(Abort::Failed(format!("critical step `{id}` failed")));
                    }
                    self.release(i);
                    continue;
                }
            };
            let max_attempts = self.prepared.workflow.steps[i].retry.max_attempts;
            if attempt > max_attempts {
                // Restored after a restart that interrupted its last attempt.
                let plugin = self.prepared.workflow.steps[i].action.plugin_id.clone();
                let message = "the host stopped during the last attempt".to_owned();
                self.settle(i, attempt - 1, Err(CallError::Host { plugin, message }));
                continue;
            }
            let now = super::status::epoch_ms(self.engine.clock().now());
            let recorded = self.exec.start_step(i, |r| {
                r.status = r.status.apply_or(StepEvent::Start, StepStatus::Running);
                r.attempts = attempt;
                r.started_at_ms.get_or_insert(now);
            });
            if !recorded {
                // No step starts unrecorded: give the attempt back; the
                // execution is held until the journal can write again.
                let mut st = self.lock();
                st.attempts[i] -= 1;
                st.running -= 1;
                st.ready.insert((self.prepared.dag.rank[i], i));
                self.wake.notify_all();
                continue;
            }
            match self.call(i, attempt, &job) {
                Some(result) => self.settle(i, attempt, result),
                // The watchdog timed this call out and started another worker.
                None => return,
            }
        }
    }

    /// Decide whether step `i` runs and render its parameters (once; retries reuse it).
    fn job(&self, i: usize) -> Result<Arc<Job>, Terminal> {
        if let Some(job) = &self.lock().jobs[i] {
            return Ok(job.clone());
        }
        let (prepared, exec) = (&self.prepared, &self.exec);
        let step = &prepared.workflow.steps[i];
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
        let needs_scope = ps.when.is_some() || !ps.params.is_literal();
        let scope = needs_scope.then(|| self.engine.scope(prepared, exec, &ps.reads, ps.reads_context));
        if let (Some(when), Some(scope)) = (&ps.when, &scope) {
            match when.eval_bool(scope) {
                Ok(true) => {}
                Ok(false) => {
                    return Err((StepStatus::Skipped, None, Some(format!("condition `{}` is false", when.source()))));
                }
                Err(e) => return Err((StepStatus::Failed, Some(error("condition", e, false)), None)),
            }
        }
        let params = match &scope {
            Some(scope) => {
                ps.params.render(scope).map_err(|e| (StepStatus::Failed, Some(error("parameters", e, false)), None))?
            }
            None => match &ps.params {
                Template::Literal(v) => v.clone(),
                _ => unreachable!("non-literal parameters always get a scope"),
            },
        };
        let Some(plugin) = self.engine.host().plugin(&step.action.plugin_id) else {
            let message = format!("no plugin `{}` is loaded", step.action.plugin_id);
            return Err((StepStatus::Failed, Some(error("plugin-not-found", message, false)), None));
        };
        let job = Arc::new(Job {
            params,
            upstream,
            timeout: step.timeout.unwrap_or(plugin.manifest.limits.timeout),
            config: plugin.manifest.config.clone(),
            kind: plugin.manifest.kind,
        });
        self.lock().jobs[i] = Some(job.clone());
        Ok(job)
    }

    /// Run one attempt on this thread. `None` if the watchdog took the call over.
    fn call(&self, i: usize, attempt: u32, job: &Job) -> Option<Result<CallOutput, CallError>> {
        let step = &self.prepared.workflow.steps[i];
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
        };
        let services = CallServices::new(
            &step.action.plugin_id,
            &ctx.execution_id,
            self.exec.state().clone(),
            self.stop.token.clone(),
        );
        let host = self.engine.host();
        if job.kind == PluginKind::Wasm {
            // Interrupted by epoch deadline or cancellation inside the runtime.
            return Some(host.call_with(&ctx, &services, Some(job.timeout)));
        }
        let key = {
            let mut st = self.lock();
            st.next_token += 1;
            let key = (super::clock::instant_after(job.timeout), st.next_token);
            let ticket = CallTicket::new(&step.action.plugin_id);
            st.watched.insert(
                key,
                Watched { step: i, attempt, services: services.clone(), timeout: job.timeout, ticket: ticket.clone() },
            );
            (key, ticket)
        };
        let (key, ticket) = key;
        let result = host.call_with(&ctx, &services, None);
        ticket.finish();
        let mut st = self.lock();
        if st.taken_over.remove(&key.1) {
            return None;
        }
        st.watched.remove(&key);
        Some(result)
    }

    /// Record an attempt's result: complete, retry later, or fail.
    fn settle(self: &Arc<Self>, i: usize, attempt: u32, result: Result<CallOutput, CallError>) {
        let wf = &self.prepared.workflow;
        let step = &wf.steps[i];
        let exec = &self.exec;
        match result {
            Ok(out) => {
                if wf.mode == super::definition::ExecutionMode::Pipeline
                    && let Value::Object(map) = &out.output
                {
                    for (k, v) in map {
                        exec.state().set(k, v.clone());
                    }
                }
                self.engine.finish_step(exec, i, StepStatus::Completed, Some(out.output), None, None);
            }
            Err(e) if matches!(e, CallError::Cancelled { .. }) || self.stop.is_cancelled() => {
                self.engine.finish_step(
                    exec,
                    i,
                    StepStatus::Cancelled,
                    None,
                    None,
                    Some("cancelled while running".into()),
                );
            }
            Err(e) if e.is_retryable() && attempt < step.retry.max_attempts => {
                let delay = step.retry.delay(attempt + 1, fastrand::f64());
                tracing::info!(step = %step.id, attempt, delay_ms = delay.as_millis() as u64, "step failed, retrying: {e}");
                exec.update_step(i, |r| {
                    r.status = r.status.apply_or(StepEvent::RetryLater, StepStatus::Retrying);
                    r.error = Some(call_error(&e));
                });
                {
                    // In serial modes a step waiting to retry keeps its turn.
                    let mut st = self.lock();
                    if !wf.mode.is_serial() {
                        st.running -= 1;
                    }
                    st.timers += 1;
                }
                self.runtime.spawn(self.clone().retry_after(i, delay));
                return;
            }
            Err(e) => {
                let error = call_error(&e);
                let message = format!("critical step `{}` failed: {}", step.id, error.message);
                self.engine.finish_step(exec, i, StepStatus::Failed, None, Some(error), None);
                if step.critical {
                    self.abort(Abort::Failed(message));
                }
            }
        }
        self.release(i);
    }

    /// Wait out a retry delay on the engine's clock, then make the step ready again.
    async fn retry_after(self: Arc<Self>, i: usize, delay: Duration) {
        let suspended = self.suspend.notified();
        tokio::pin!(suspended);
        suspended.as_mut().enable();
        if !self.lock().suspended {
            tokio::select! {
                _ = self.engine.clock().sleep(delay) => {}
                _ = self.stop.cancelled() => {}
                _ = suspended => {}
            }
        }
        if self.stop.is_cancelled() {
            let reason = Some("cancelled while waiting to retry".to_owned());
            self.engine.finish_step(&self.exec, i, StepStatus::Cancelled, None, None, reason);
        }
        let mut st = self.lock();
        st.timers -= 1;
        if self.prepared.workflow.mode.is_serial() {
            st.running -= 1;
        }
        if !self.stop.is_cancelled() && !st.suspended {
            let rank = self.prepared.dag.rank[i];
            st.ready.insert((rank, i));
        }
        self.finish_if_idle(&mut st);
        self.wake.notify_all();
    }

    /// Step `i` is finished: its dependents may become ready.
    fn release(&self, i: usize) {
        let dag = &self.prepared.dag;
        let mut st = self.lock();
        st.running -= 1;
        for &d in &dag.dependents[i] {
            st.waiting[d] -= 1;
            if st.waiting[d] == 0 {
                st.ready.insert((dag.rank[d], d));
            }
        }
        self.finish_if_idle(&mut st);
        // Idle workers may have a step to take now (a new one, or a free slot).
        self.wake.notify_all();
    }

    /// Time out native and in-process calls past their deadline.
    async fn watchdog(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WATCHDOG_TICK).await;
            let now = Instant::now();
            let expired: Vec<Watched> = {
                let mut st = self.lock();
                if st.done {
                    return;
                }
                let keys: Vec<(Instant, u64)> = st.watched.range(..(now, u64::MAX)).map(|(k, _)| *k).collect();
                keys.into_iter()
                    .filter_map(|key| {
                        st.taken_over.insert(key.1);
                        st.watched.remove(&key)
                    })
                    .collect()
            };
            for w in expired {
                w.services.interrupt();
                w.ticket.abandon();
                let plugin = w.services.plugin_id().to_owned();
                tracing::warn!(plugin = %plugin, timeout_ms = w.timeout.as_millis() as u64, "call timed out; its thread is abandoned");
                // A fresh worker takes the abandoned one's place.
                self.spawn_worker();
                self.settle(w.step, w.attempt, Err(CallError::Timeout { plugin, after: w.timeout }));
            }
        }
    }
}
