//! The forward phase of an execution: one async task that starts ready
//! steps, awaits them, and releases their dependents.
//!
//! The phase's own task owns the scheduling state (no lock): the ready queue
//! in stable topological order, dependency counters, attempts, and the
//! number of steps running against the mode's limit (1 in serial modes,
//! `max_parallel` otherwise). Each started step is a task of its own that
//! records its start, calls the plugin through [`plexus_host::Host::invoke`]
//! (the one place a call's deadline is enforced, whatever the plugin's kind)
//! and records the outcome, then reports an [`Event`] back. A step waiting to
//! retry is a timer task on the engine's clock. Nothing is parked on a thread:
//! only a plugin's call occupies one, on tokio's blocking pool, for as long
//! as it runs.
//!
//! Stopping is one [`CancellationToken`], a child of the execution's: a
//! cancel, a critical failure and the workflow's timeout raise it; plugins
//! see it as `is_cancelled`, retry timers wake on it. The engine's drain
//! token (daemon shutdown) makes the phase start nothing more and leave the
//! rest for a resume.
//!
//! The state is shaped for steps created at run time: a step is an index
//! into vectors the phase owns, and an event names the step it is about, so
//! a later step kind (one item of a map, a child execution, a wait for a
//! signal) is one more task that reports an [`Event`] — waiting costs a
//! suspended future, not a worker.

use super::engine::{Abort, Engine, Execution, Prepared, call_error, error};
use super::expr::Template;
use super::status::{StepError, StepEvent, StepStatus};
use plexus_host::CallError;
use plexus_host::services::CallServices;
use plexus_sdk::{CallOutput, ExecutionContext};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A step ready to call: rendered once, reused by its retries.
struct Job {
    params: Value,
    upstream: Map<String, Value>,
    timeout: Duration,
    config: Value,
}

/// A step that ends without a call: `(status, error, reason)`.
type Terminal = (StepStatus, Option<StepError>, Option<String>);

/// What a step's task reports back to the phase.
enum Event {
    /// The step ended and its end is recorded; with why the phase must stop
    /// (a critical failure).
    Ended { step: usize, stop: Option<Abort> },
    /// The attempt failed and the step waits `delay` before the next one
    /// (its `retrying` status is recorded).
    Retry { step: usize, delay: Duration },
    /// The retry delay is over (`cancelled`: the step ended cancelled instead).
    RetryDue { step: usize, cancelled: bool },
    /// The step's start could not be recorded: it did not run.
    NotStarted { step: usize },
}

/// What the phase's tasks share (read-only).
pub(super) struct Forward {
    engine: Engine,
    prepared: Arc<Prepared>,
    exec: Arc<Execution>,
    stop: CancellationToken,
}

/// The scheduling state, owned by the phase's task.
struct Schedule {
    waiting: Vec<usize>,
    ready: BTreeSet<(usize, usize)>,
    jobs: Vec<Option<Arc<Job>>>,
    attempts: Vec<u32>,
    /// Steps holding one of the `limit` slots.
    running: usize,
    /// Steps waiting to retry.
    timers: usize,
    limit: usize,
    abort: Option<Abort>,
    /// The engine is draining: start nothing more, leave the rest for a resume.
    suspended: bool,
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
        let ready = (0..n).filter(|&i| !ended[i] && waiting[i] == 0).map(|i| (dag.rank[i], i)).collect();
        let mut sched = Schedule {
            waiting,
            ready,
            jobs: vec![None; n],
            attempts,
            running: 0,
            timers: 0,
            limit,
            abort: None,
            suspended: false,
        };
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
        let fwd = Arc::new(Forward { engine, prepared: prepared.clone(), exec: exec.clone(), stop });
        let drain = fwd.engine.drain_signal().clone();
        let cancel = exec.cancel_token().clone();
        let mut held = exec.held_changes();
        let mut tasks: JoinSet<Event> = JoinSet::new();
        if cancel.is_cancelled() {
            fwd.abort(&mut sched, Abort::Cancelled);
        }
        loop {
            fwd.start_ready(&mut sched, &mut tasks);
            if sched.running == 0
                && sched.timers == 0
                && (sched.abort.is_some() || sched.suspended || sched.ready.is_empty())
            {
                break;
            }
            tokio::select! {
                Some(joined) = tasks.join_next() => match joined {
                    Ok(event) => fwd.handle(&mut sched, &mut tasks, event),
                    // A step's task panicked: a bug, reported as the phase's failure.
                    Err(e) => {
                        tracing::error!(execution = %exec.id(), "a step's task failed: {e}");
                        sched.running = sched.running.saturating_sub(1);
                        fwd.abort(&mut sched, Abort::Failed(format!("internal error: a step's task failed: {e}")));
                    }
                },
                () = cancel.cancelled(), if sched.abort.is_none() => fwd.abort(&mut sched, Abort::Cancelled),
                () = drain.cancelled(), if !sched.suspended => {
                    tracing::info!(execution = %exec.id(), "draining: no new steps start");
                    sched.suspended = true;
                }
                // Released (or held): look at the ready queue again.
                Ok(()) = held.changed() => {}
                () = &mut expiry, if !expired => {
                    expired = true;
                    fwd.abort(&mut sched, Abort::Failed(format!("the workflow timed out after {} ms", timeout.as_millis())));
                }
            }
        }
        match sched.abort {
            None if sched.suspended => {
                // Steps were left for a resume, unless every step had ended anyway.
                let ended = exec.lock().steps.iter().all(|s| s.status.is_terminal());
                (!ended).then_some(Abort::Suspended)
            }
            other => other,
        }
    }

    /// Stop starting steps and cancel the running ones (idempotent).
    fn abort(&self, sched: &mut Schedule, why: Abort) {
        if sched.abort.is_none() {
            tracing::info!(workflow = %self.prepared.workflow.id, "stopping: {why:?}");
            sched.abort = Some(why);
        }
        self.stop.cancel();
    }

    /// Start every ready step there is a slot for.
    fn start_ready(self: &Arc<Self>, sched: &mut Schedule, tasks: &mut JoinSet<Event>) {
        // A held execution starts nothing until its journal records again.
        while sched.abort.is_none() && !sched.suspended && !self.exec.is_held() && sched.running < sched.limit {
            let Some((_, i)) = sched.ready.pop_first() else { return };
            sched.running += 1;
            sched.attempts[i] += 1;
            let attempt = sched.attempts[i];
            let job = match &sched.jobs[i] {
                Some(job) => Ok(job.clone()),
                None => self.job(i),
            };
            let fwd = self.clone();
            match job {
                Ok(job) => {
                    sched.jobs[i] = Some(job.clone());
                    tasks.spawn(async move { fwd.attempt(i, attempt, job).await });
                }
                Err((status, error, reason)) => {
                    tasks.spawn(async move {
                        let step = &fwd.prepared.workflow.steps[i];
                        let stop = (status == StepStatus::Failed && step.critical)
                            .then(|| Abort::Failed(format!("critical step `{}` failed", step.id)));
                        fwd.engine.finish_step(&fwd.exec, i, status, None, error, reason).await;
                        Event::Ended { step: i, stop }
                    });
                }
            }
        }
    }

    /// Apply what a step's task reported.
    fn handle(self: &Arc<Self>, sched: &mut Schedule, tasks: &mut JoinSet<Event>, event: Event) {
        let serial = self.prepared.workflow.mode.is_serial();
        match event {
            Event::Ended { step, stop } => {
                sched.running -= 1;
                if let Some(why) = stop {
                    self.abort(sched, why);
                }
                // Its dependents may be ready now.
                let dag = &self.prepared.dag;
                for &d in &dag.dependents[step] {
                    sched.waiting[d] -= 1;
                    if sched.waiting[d] == 0 {
                        sched.ready.insert((dag.rank[d], d));
                    }
                }
            }
            Event::Retry { step, delay } => {
                // In serial modes a step waiting to retry keeps its turn.
                if !serial {
                    sched.running -= 1;
                }
                sched.timers += 1;
                let fwd = self.clone();
                tasks.spawn(async move { fwd.retry_after(step, delay).await });
            }
            Event::RetryDue { step, cancelled } => {
                sched.timers -= 1;
                if serial {
                    sched.running -= 1;
                }
                if !cancelled && !self.stop.is_cancelled() && !sched.suspended {
                    sched.ready.insert((self.prepared.dag.rank[step], step));
                }
            }
            Event::NotStarted { step } => {
                // Given back: it starts once the journal records again.
                sched.attempts[step] -= 1;
                sched.running -= 1;
                sched.ready.insert((self.prepared.dag.rank[step], step));
            }
        }
    }

    /// Decide whether step `i` runs and render its parameters (once; retries reuse it).
    fn job(&self, i: usize) -> Result<Arc<Job>, Terminal> {
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
        Ok(Arc::new(Job {
            params,
            upstream,
            timeout: step.timeout.unwrap_or(plugin.manifest.limits.timeout),
            config: plugin.manifest.config.clone(),
        }))
    }

    /// One attempt of step `i`: record its start, call, record the outcome.
    async fn attempt(self: Arc<Self>, i: usize, attempt: u32, job: Arc<Job>) -> Event {
        let step = &self.prepared.workflow.steps[i];
        if attempt > step.retry.max_attempts {
            // Restored after a restart that interrupted its last attempt.
            let plugin = step.action.plugin_id.clone();
            let message = "the host stopped during the last attempt".to_owned();
            return self.settle(i, attempt - 1, Err(CallError::Host { plugin, message })).await;
        }
        let now = super::status::epoch_ms(self.engine.clock().now());
        let recorded = self
            .exec
            .start_step(i, |r| {
                r.status = r.status.apply_or(StepEvent::Start, StepStatus::Running);
                r.attempts = attempt;
                r.started_at_ms.get_or_insert(now);
            })
            .await;
        if !recorded {
            // No step starts unrecorded; the execution is held until the
            // journal can write again.
            return Event::NotStarted { step: i };
        }
        let result = self.call(i, attempt, &job).await;
        self.settle(i, attempt, result).await
    }

    /// Call step `i`'s operation within its timeout.
    async fn call(&self, i: usize, attempt: u32, job: &Job) -> Result<CallOutput, CallError> {
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
        let services =
            CallServices::new(&step.action.plugin_id, &ctx.execution_id, self.exec.state().clone(), self.stop.clone());
        self.engine.host().invoke(ctx, services, job.timeout).await
    }

    /// Record an attempt's result: complete, retry later, or fail.
    async fn settle(&self, i: usize, attempt: u32, result: Result<CallOutput, CallError>) -> Event {
        let wf = &self.prepared.workflow;
        let step = &wf.steps[i];
        let (exec, engine) = (&self.exec, &self.engine);
        let mut stop = None;
        match result {
            Ok(out) => {
                if wf.mode == super::definition::ExecutionMode::Pipeline
                    && let Value::Object(map) = &out.output
                {
                    for (k, v) in map {
                        exec.state().set(k, v.clone());
                    }
                }
                engine.finish_step(exec, i, StepStatus::Completed, Some(out.output), None, None).await;
            }
            Err(e) if matches!(e, CallError::Cancelled { .. }) || self.stop.is_cancelled() => {
                let reason = Some("cancelled while running".into());
                engine.finish_step(exec, i, StepStatus::Cancelled, None, None, reason).await;
            }
            Err(e) if e.is_retryable() && attempt < step.retry.max_attempts => {
                let delay = step.retry.delay(attempt + 1, fastrand::f64());
                tracing::info!(step = %step.id, attempt, delay_ms = delay.as_millis() as u64, "step failed, retrying: {e}");
                exec.update_step(i, |r| {
                    r.status = r.status.apply_or(StepEvent::RetryLater, StepStatus::Retrying);
                    r.error = Some(call_error(&e));
                })
                .await;
                return Event::Retry { step: i, delay };
            }
            Err(e) => {
                let error = call_error(&e);
                if step.critical {
                    stop = Some(Abort::Failed(format!("critical step `{}` failed: {}", step.id, error.message)));
                }
                engine.finish_step(exec, i, StepStatus::Failed, None, Some(error), None).await;
            }
        }
        Event::Ended { step: i, stop }
    }

    /// Wait out a retry delay on the engine's clock. A stop ends the step
    /// cancelled; a drain leaves it `retrying` for a resume.
    async fn retry_after(self: Arc<Self>, i: usize, delay: Duration) -> Event {
        tokio::select! {
            () = self.engine.clock().sleep(delay) => {}
            () = self.stop.cancelled() => {}
            () = self.engine.drain_signal().cancelled() => {}
        }
        let cancelled = self.stop.is_cancelled();
        if cancelled {
            let reason = Some("cancelled while waiting to retry".to_owned());
            self.engine.finish_step(&self.exec, i, StepStatus::Cancelled, None, None, reason).await;
        }
        Event::RetryDue { step: i, cancelled }
    }
}
