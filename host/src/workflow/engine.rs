//! The execution engine: runs a validated workflow's DAG through the host.
//!
//! Semantics (see the crate README for the user-facing version):
//! * scheduling by mode: sequential and pipeline run one step at a time in
//!   the DAG's stable order; parallel and conditional run every ready step,
//!   up to `max_parallel` (default: the number of cores);
//! * a step starts when all its dependencies are finished; if one of them did
//!   not complete (failed, skipped, cancelled) the step is Skipped —
//!   dependencies mean "all succeeded"; a `when` that is false skips it too;
//! * every step receives its upstream steps' outputs (`upstream` in the
//!   context); in pipeline mode every completed step's object output is also
//!   merged into the shared state (`context`), as QtForge does;
//! * retries follow the step's policy, only for retryable errors and
//!   timeouts, with delays from the injectable [`Clock`];
//! * a critical failure (or the workflow's timeout, or a cancel) stops new
//!   steps, cancels running ones, marks pending ones Cancelled, then runs the
//!   compensation of every completed step in reverse completion order.

use super::clock::Clock;
use super::dag::Dag;
use super::definition::{Action, Workflow};
use super::expr::{Expr, Scope, Template};
use super::status::{CompensationRecord, ExecutionStatus, StepError, StepRecord, StepStatus, WorkflowStatus, epoch_ms};
use super::validate::ValidWorkflow;
use crate::CallError;
use crate::host::Host;
use crate::manifest::PluginKind;
use crate::services::{CallServices, CancelToken, SharedState};
use plexus_sdk::ExecutionContext;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::{Notify, watch};

/// A workflow ready to run: validated, with its templates compiled.
pub struct Prepared {
    /// The definition.
    pub workflow: Workflow,
    /// Its graph.
    pub dag: Dag,
    steps: Vec<PreparedStep>,
    outputs: Template,
}

pub(super) struct PreparedStep {
    pub(super) params: Template,
    pub(super) when: Option<Expr>,
    compensation: Option<(Action, Template)>,
    /// Step indices its expressions read (`steps.<id>`).
    pub(super) reads: Vec<usize>,
    /// Whether its expressions read `context`.
    pub(super) reads_context: bool,
}

impl Prepared {
    pub(super) fn step(&self, i: usize) -> &PreparedStep {
        &self.steps[i]
    }

    /// Compile the templates of a validated workflow.
    ///
    /// # Errors
    /// Template errors (only possible if the workflow was not validated).
    pub fn new(valid: ValidWorkflow) -> Result<Self, String> {
        let ValidWorkflow { workflow, dag } = valid;
        let ids: Vec<&str> = workflow.steps.iter().map(|s| s.id.as_str()).collect();
        let compile = |v: &Value| Template::compile(v).map_err(|e| e.join("; "));
        let mut steps = Vec::with_capacity(workflow.steps.len());
        for step in &workflow.steps {
            let params = compile(&step.action.parameters)?;
            let when = step.when.as_deref().map(Expr::compile).transpose()?;
            let compensation = match workflow.compensation(&step.id) {
                Some(a) => Some((a.clone(), compile(&a.parameters)?)),
                None => None,
            };
            let mut exprs: Vec<&Expr> = params.exprs();
            exprs.extend(when.iter());
            let refs: BTreeSet<String> = exprs.iter().flat_map(|e| e.references()).collect();
            let reads = refs
                .iter()
                .filter_map(|r| r.strip_prefix("steps.").map(|rest| rest.split('.').next().unwrap_or(rest)))
                .filter_map(|id| ids.iter().position(|s| *s == id))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let reads_context = refs.iter().any(|r| r == "context" || r.starts_with("context."));
            steps.push(PreparedStep { params, when, compensation, reads, reads_context });
        }
        let outputs = compile(&Value::Object(workflow.outputs.clone()))?;
        Ok(Self { workflow, dag, steps, outputs })
    }
}

/// The shared record of one execution: its status, cancel token and state.
pub struct Execution {
    id: String,
    status: Mutex<ExecutionStatus>,
    cancel: CancelToken,
    pub(super) cancelled: Notify,
    done: watch::Sender<bool>,
    state: SharedState,
}

impl Execution {
    /// A new execution of `prepared` with `inputs` (already defaulted and checked).
    pub fn new(execution_id: String, prepared: &Prepared, inputs: Map<String, Value>) -> Arc<Self> {
        let steps = prepared
            .workflow
            .steps
            .iter()
            .map(|s| StepRecord {
                id: s.id.clone(),
                plugin_id: s.action.plugin_id.clone(),
                operation: s.action.operation.clone(),
                status: StepStatus::Pending,
                output: None,
                error: None,
                reason: None,
                attempts: 0,
                started_at_ms: None,
                ended_at_ms: None,
                duration_ms: None,
            })
            .collect();
        let status = ExecutionStatus {
            execution_id,
            workflow_id: prepared.workflow.id.clone(),
            status: WorkflowStatus::Pending,
            progress: 0.0,
            current_steps: Vec::new(),
            completed_steps: 0,
            total_steps: prepared.workflow.steps.len(),
            inputs,
            steps,
            compensations: Vec::new(),
            outputs: Map::new(),
            error: None,
            started_at_ms: None,
            ended_at_ms: None,
        };
        Arc::new(Self {
            id: status.execution_id.clone(),
            status: Mutex::new(status),
            cancel: CancelToken::default(),
            cancelled: Notify::new(),
            done: watch::channel(false).0,
            state: SharedState::default(),
        })
    }

    /// The execution id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, ExecutionStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A snapshot of the status, with progress and current steps computed.
    pub fn snapshot(&self) -> ExecutionStatus {
        let mut s = self.lock().clone();
        s.refresh();
        s
    }

    /// Ask the execution to stop: running steps are cancelled, pending ones
    /// marked Cancelled, completed ones compensated.
    pub fn cancel(&self) {
        self.cancel.cancel();
        self.cancelled.notify_one();
    }

    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Wait until the execution is over and return its final status.
    pub async fn wait(&self) -> ExecutionStatus {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
        self.snapshot()
    }

    /// The execution's shared state.
    pub fn state(&self) -> &SharedState {
        &self.state
    }
}

/// Runs prepared workflows through a [`Host`].
#[derive(Clone)]
pub struct Engine {
    host: Arc<Host>,
    clock: Arc<dyn Clock>,
    parallelism: usize,
}

/// Why the forward phase stopped early.
#[derive(Debug, Clone)]
pub(super) enum Abort {
    Failed(String),
    Cancelled,
}

impl Engine {
    /// An engine calling plugins of `host`, timing retries with `clock`.
    pub fn new(host: Arc<Host>, clock: Arc<dyn Clock>) -> Self {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { host, clock, parallelism }
    }

    /// The host the engine calls.
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// The clock retries wait on.
    pub(super) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Default `max_parallel`: the number of cores.
    pub(super) fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// Run `prepared` to the end, recording everything in `exec`.
    pub async fn run(&self, prepared: Arc<Prepared>, exec: Arc<Execution>) {
        let started = self.clock.now();
        {
            let mut s = exec.lock();
            s.status = WorkflowStatus::Running;
            s.started_at_ms = Some(epoch_ms(started));
        }
        let forward = Stop::default();
        let abort = super::scheduler::Forward::run(self.clone(), prepared.clone(), exec.clone(), forward).await;
        let final_status = match &abort {
            None => {
                self.finish_outputs(&prepared, &exec);
                WorkflowStatus::Completed
            }
            Some(why) => {
                {
                    let mut s = exec.lock();
                    for step in s.steps.iter_mut().filter(|s| s.status == StepStatus::Pending) {
                        step.status = StepStatus::Cancelled;
                        step.reason = Some("the execution stopped before this step started".into());
                    }
                    s.status = WorkflowStatus::RollingBack;
                    s.error = Some(match why {
                        Abort::Failed(e) => e.clone(),
                        Abort::Cancelled => "cancelled".into(),
                    });
                }
                let rollback_ok = self.compensate(&prepared, &exec).await;
                match (why, rollback_ok) {
                    (_, false) => WorkflowStatus::RollbackFailed,
                    (Abort::Failed(_), true) => WorkflowStatus::Failed,
                    (Abort::Cancelled, true) => WorkflowStatus::Cancelled,
                }
            }
        };
        {
            let mut s = exec.lock();
            s.status = final_status;
            s.ended_at_ms = Some(epoch_ms(self.clock.now()));
        }
        tracing::info!(execution = %exec.lock().execution_id, workflow = %prepared.workflow.id, status = final_status.as_str(), "execution finished");
        exec.done.send_replace(true);
    }

    /// The names expressions see, holding only the steps they read.
    pub(super) fn scope(&self, prepared: &Prepared, exec: &Execution, reads: &[usize], reads_context: bool) -> Scope {
        let s = exec.lock();
        let steps: Map<String, Value> = reads
            .iter()
            .map(|&j| {
                let r = &s.steps[j];
                (
                    r.id.clone(),
                    json!({"output": r.output, "status": r.status.as_str(), "attempts": r.attempts, "error": r.error}),
                )
            })
            .collect();
        let context = if reads_context { Value::Object(exec.state.snapshot()) } else { Value::Object(Map::new()) };
        Scope::new(
            Value::Object(s.inputs.clone()),
            Value::Object(steps),
            context,
            json!({"id": prepared.workflow.id, "execution_id": s.execution_id}),
        )
    }

    pub(super) fn finish_step(
        &self,
        exec: &Execution,
        i: usize,
        status: StepStatus,
        output: Option<Value>,
        error: Option<StepError>,
        reason: Option<String>,
    ) {
        let now = epoch_ms(self.clock.now());
        let mut s = exec.lock();
        let r = &mut s.steps[i];
        r.status = status;
        r.output = output;
        if error.is_some() || status == StepStatus::Completed {
            r.error = error;
        }
        r.reason = reason;
        r.ended_at_ms = Some(now);
        r.duration_ms = r.started_at_ms.map(|start| now.saturating_sub(start));
    }

    /// Run the compensation of every completed step, latest completion first.
    /// Returns whether all of them succeeded.
    async fn compensate(&self, prepared: &Arc<Prepared>, exec: &Arc<Execution>) -> bool {
        let mut completed: Vec<(u64, usize)> = {
            let s = exec.lock();
            s.steps
                .iter()
                .enumerate()
                .filter(|(_, r)| r.status == StepStatus::Completed)
                .map(|(i, r)| (r.ended_at_ms.unwrap_or(0), i))
                .collect()
        };
        // Reverse completion order; equal times fall back to reverse DAG order.
        completed.sort_by_key(|&(t, i)| (t, prepared.dag.rank[i]));
        let mut all_ok = true;
        for &(_, i) in completed.iter().rev() {
            let Some((action, params)) = &prepared.steps[i].compensation else { continue };
            let step_id = prepared.workflow.steps[i].id.clone();
            let all: Vec<usize> = (0..prepared.workflow.steps.len()).collect();
            let scope = self.scope(prepared, exec, &all, true);
            let started = Instant::now();
            let result = match params.render(&scope) {
                Err(e) => Err(error("parameters", e, false)),
                Ok(params) => self.call_action(prepared, exec, &step_id, action, params).await,
            };
            let record = CompensationRecord {
                step: step_id.clone(),
                plugin_id: action.plugin_id.clone(),
                operation: action.operation.clone(),
                status: if result.is_ok() { StepStatus::Completed } else { StepStatus::Failed },
                output: result.as_ref().ok().cloned(),
                error: result.as_ref().err().cloned(),
                duration_ms: started.elapsed().as_millis() as u64,
            };
            if let Some(e) = &record.error {
                all_ok = false;
                tracing::error!(step = %step_id, "compensation failed: {}", e.message);
            } else {
                tracing::info!(step = %step_id, "compensated");
            }
            exec.lock().compensations.push(record);
        }
        all_ok
    }

    /// Run one action (a compensation) outside the forward phase's cancellation.
    async fn call_action(
        &self,
        prepared: &Arc<Prepared>,
        exec: &Arc<Execution>,
        step_id: &str,
        action: &Action,
        params: Value,
    ) -> Result<Value, StepError> {
        let Some(plugin) = self.host.plugin(&action.plugin_id) else {
            return Err(error("plugin-not-found", format!("no plugin `{}` is loaded", action.plugin_id), false));
        };
        let timeout = plugin.manifest.limits.timeout;
        let ctx = ExecutionContext {
            execution_id: exec.lock().execution_id.clone(),
            workflow_id: Some(prepared.workflow.id.clone()),
            step_id: Some(step_id.to_owned()),
            task_id: None,
            attempt: 1,
            deadline_ms: Some(epoch_ms(self.clock.now() + timeout)),
            operation: action.operation.clone(),
            parameters: params,
            upstream: Map::new(),
            config: plugin.manifest.config.clone(),
        };
        let services =
            CallServices::new(&action.plugin_id, &ctx.execution_id, exec.state.clone(), CancelToken::default());
        call_blocking(&self.host, plugin.manifest.kind, ctx, services, timeout)
            .await
            .map(|out| out.output)
            .map_err(|e| call_error(&e))
    }

    fn finish_outputs(&self, prepared: &Prepared, exec: &Execution) {
        if prepared.workflow.outputs.is_empty() {
            return;
        }
        let all: Vec<usize> = (0..prepared.workflow.steps.len()).collect();
        let scope = self.scope(prepared, exec, &all, true);
        match prepared.outputs.render(&scope) {
            Ok(Value::Object(outputs)) => exec.lock().outputs = outputs,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("workflow outputs: {e}");
                exec.lock().error = Some(format!("outputs: {e}"));
            }
        }
    }
}

/// Run one call on tokio's blocking pool. A WASM call enforces its own
/// timeout (epoch interruption); for native and in-process plugins the engine
/// stops waiting at the timeout, sets the call's cancel flag and abandons the
/// blocking thread to the plugin — no thread is started per call.
async fn call_blocking(
    host: &Arc<Host>,
    kind: PluginKind,
    ctx: ExecutionContext,
    services: CallServices,
    timeout: std::time::Duration,
) -> Result<plexus_sdk::CallOutput, CallError> {
    let host = host.clone();
    let plugin = services.plugin_id().to_owned();
    let wasm = kind == PluginKind::Wasm;
    let call_services = services.clone();
    let task = tokio::task::spawn_blocking(move || host.call_with(&ctx, &call_services, wasm.then_some(timeout)));
    let joined = if wasm {
        task.await
    } else {
        match tokio::time::timeout(timeout, task).await {
            Ok(joined) => joined,
            Err(_) => {
                services.interrupt();
                tracing::warn!(plugin = %plugin, timeout_ms = timeout.as_millis() as u64, "call timed out; its thread is abandoned");
                return Err(CallError::Timeout { plugin, after: timeout });
            }
        }
    };
    joined.unwrap_or_else(|e| Err(CallError::Host { plugin, message: format!("the call's task failed: {e}") }))
}

pub(super) fn error(kind: &str, message: impl Into<String>, retryable: bool) -> StepError {
    StepError { kind: kind.into(), message: message.into(), retryable }
}

pub(super) fn call_error(e: &CallError) -> StepError {
    match e {
        CallError::Plugin { error: pe, .. } => {
            error(&format!("plugin-error/{}", pe.kind), pe.message.clone(), pe.retryable)
        }
        other => error(other.kind(), other.to_string(), other.is_retryable()),
    }
}

/// The forward phase's stop signal: a cancel token plugins can poll, and a
/// notification tasks can await.
#[derive(Clone, Default)]
pub(super) struct Stop {
    pub(super) token: CancelToken,
    notify: Arc<Notify>,
}

impl Stop {
    pub(super) fn cancel(&self) {
        self.token.cancel();
        self.notify.notify_waiters();
    }
    pub(super) fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
    pub(super) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.token.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}
