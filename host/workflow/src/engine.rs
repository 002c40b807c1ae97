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
//! * retries follow the step's policy, for the failures its `retry_on`
//!   names (retryable ones by default; any but a cancel in QtForge-shaped
//!   documents), with delays from the injectable [`Clock`];
//! * a critical failure (or the workflow's timeout, or a cancel) stops new
//!   steps, cancels running ones, marks pending ones Cancelled, then runs the
//!   compensation of every completed step in reverse completion order.

use super::clock::Clock;
use super::dag::Dag;
use super::definition::{Action, Workflow};
use super::expr::Scope;
use super::journal::{Journal, JournalError, JournalResult, NoJournal};
use super::status::{
    CompensationRecord, ExecutionStatus, ItemRecord, StepError, StepEvent, StepRecord, StepStatus, WorkflowStatus,
    epoch_ms,
};
use super::validate::{Compiled, CompiledStep, ValidWorkflow};
use plexus_client::SignalRecord;
use plexus_host::CallError;
use plexus_host::Host;
use plexus_host::secrets::{NoSecrets, SecretSource, redactor};
use plexus_host::services::{CallServices, SharedState};
use plexus_sdk::ExecutionContext;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A workflow ready to run: validated, with its templates compiled.
pub struct Prepared {
    /// The definition.
    pub workflow: Workflow,
    /// Its graph.
    pub dag: Dag,
    compiled: Arc<Compiled>,
}

impl Prepared {
    pub(super) fn step(&self, i: usize) -> &CompiledStep {
        &self.compiled.steps[i]
    }

    /// A validated workflow, ready to run: its templates were compiled by
    /// validation and are used as they are.
    pub fn new(valid: ValidWorkflow) -> Self {
        let ValidWorkflow { workflow, dag, compiled } = valid;
        Self { workflow, dag, compiled }
    }
}

/// The shared record of one execution: its status, cancel token and state.
pub struct Execution {
    id: String,
    status: Mutex<ExecutionStatus>,
    /// Raised by [`Self::cancel`]. The forward phase stops on a child of it,
    /// which a critical failure or the workflow's timeout raise too.
    cancel: CancellationToken,
    done: watch::Sender<bool>,
    state: SharedState,
    journal: Arc<dyn Journal>,
    /// The state version last handed to the journal.
    state_seen: AtomicU64,
    task_id: Option<String>,
    /// The schedule that fired it, for every step's execution context (see [`Self::set_schedule`]).
    schedule: std::sync::OnceLock<plexus_sdk::ScheduleInfo>,
    /// Set by the first [`Self::request_cancel`].
    cancel_asked: AtomicBool,
    /// `true` while a transition could not be journalled (see [`Self::is_held`]).
    held: watch::Sender<bool>,
    /// Held across a journal write and the in-memory update that follows, so
    /// transitions are recorded in order and [`Self::record_again`] never
    /// records an older state over a newer one.
    recording: tokio::sync::Mutex<()>,
    /// Map steps' item records: restored from a journal (taken when the map
    /// starts again), and those whose write failed (written again by
    /// [`Self::record_again`]).
    items: Mutex<ItemRecords>,
    /// Signals delivered, and whether the engine parked the execution.
    signals: Mutex<Signals>,
    /// Wakes the forward phase when a signal comes.
    signalled: tokio::sync::Notify,
}

/// See [`Execution::deliver_signal`].
#[derive(Default)]
struct Signals {
    delivered: std::collections::HashMap<String, SignalRecord>,
    /// Set when the engine parked the execution: until when (ms since the
    /// Unix epoch; `None`: until a signal).
    parked: Option<Option<u64>>,
}

/// See [`Execution::restore_items`].
#[derive(Default)]
struct ItemRecords {
    /// By step index: the items recorded before a restart.
    restored: std::collections::HashMap<usize, Vec<ItemRecord>>,
    /// By (step, item): records the journal could not write.
    unrecorded: std::collections::BTreeMap<(usize, usize), ItemRecord>,
}

impl Execution {
    /// A new execution of `prepared` with `inputs` (already defaulted and checked).
    pub fn new(execution_id: String, prepared: &Prepared, inputs: Map<String, Value>) -> Arc<Self> {
        Self::start(execution_id, prepared, inputs, Arc::new(NoJournal), None)
    }

    /// A new execution whose transitions go to `journal`; `task_id` (a
    /// schedule id) is passed to every step's execution context.
    pub fn start(
        execution_id: String,
        prepared: &Prepared,
        inputs: Map<String, Value>,
        journal: Arc<dyn Journal>,
        task_id: Option<String>,
    ) -> Arc<Self> {
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
                metrics: Default::default(),
                progress: None,
                usage: None,
                artifacts: Default::default(),
            })
            .collect();
        let status = ExecutionStatus {
            execution_id,
            workflow_id: prepared.workflow.id.clone(),
            status: WorkflowStatus::Pending,
            progress: 0.0,
            current_steps: Vec::new(),
            current_step: None,
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
        Self::restore(status, Map::new(), journal, task_id)
    }

    /// An execution picked up from a journal: steps that ended stay as they
    /// are and are not run again; a step that was running or waiting to retry
    /// becomes pending and keeps its attempt count, so its next attempt
    /// follows its retry policy (or fails it, when the interrupted attempt was
    /// the last). `state` is the shared state as last written.
    pub fn restore(
        mut status: ExecutionStatus,
        state: Map<String, Value>,
        journal: Arc<dyn Journal>,
        task_id: Option<String>,
    ) -> Arc<Self> {
        for step in &mut status.steps {
            if matches!(step.status, StepStatus::Running | StepStatus::Retrying) {
                step.status = step.status.apply_or(StepEvent::Interrupt, StepStatus::Pending);
            }
        }
        Arc::new(Self {
            id: status.execution_id.clone(),
            status: Mutex::new(status),
            cancel: CancellationToken::new(),
            done: watch::channel(false).0,
            state: SharedState::from_map(state),
            journal,
            state_seen: AtomicU64::new(0),
            task_id,
            schedule: std::sync::OnceLock::new(),
            cancel_asked: AtomicBool::new(false),
            held: watch::channel(false).0,
            recording: tokio::sync::Mutex::new(()),
            items: Mutex::default(),
            signals: Mutex::default(),
            signalled: tokio::sync::Notify::new(),
        })
    }

    /// Deliver signal `signal` (its name is `signal.name`) to this
    /// execution: a wait step waiting for it (or that will) takes it as its
    /// output. The first signal of a name is kept. Returns `false` when the
    /// execution is parked (its engine run ended waiting for signals): the
    /// caller must run it again (restored with its signals) for the signal to
    /// be taken.
    pub fn deliver_signal(&self, signal: SignalRecord) -> bool {
        let mut signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        signals.delivered.entry(signal.name.clone()).or_insert(signal);
        let parked = signals.parked.is_some();
        drop(signals);
        self.signalled.notify_one();
        !parked
    }

    /// Signals delivered before a restart (as a journal kept them).
    pub fn restore_signals(&self, delivered: Vec<SignalRecord>) {
        let mut signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        for s in delivered {
            signals.delivered.entry(s.name.clone()).or_insert(s);
        }
    }

    /// The names of the signals delivered so far.
    pub fn signal_names(&self) -> Vec<String> {
        self.signals.lock().unwrap_or_else(PoisonError::into_inner).delivered.keys().cloned().collect()
    }

    /// Signal `name`, if delivered.
    pub(super) fn signal(&self, name: &str) -> Option<SignalRecord> {
        self.signals.lock().unwrap_or_else(PoisonError::into_inner).delivered.get(name).cloned()
    }

    /// Park, unless one of `names` was delivered meanwhile (then `false`):
    /// under the signals' lock, so a signal comes either before (seen here)
    /// or after (its deliverer sees the execution parked).
    pub(super) fn try_park(&self, names: &[&str], until: Option<u64>) -> bool {
        let mut signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        if names.iter().any(|n| signals.delivered.contains_key(*n)) {
            return false;
        }
        signals.parked = Some(until);
        true
    }

    /// Whether the engine parked the execution (its run ended with wait
    /// steps waiting and nothing else to do), and until when: `Some(None)`
    /// until a signal, `Some(Some(ms))` until then at the latest (a wait's
    /// timeout). The daemon runs it again then, or when a signal comes.
    pub fn parked(&self) -> Option<Option<u64>> {
        self.signals.lock().unwrap_or_else(PoisonError::into_inner).parked
    }

    /// Until a signal is delivered (at once if one came since the last call).
    pub(super) async fn signal_delivered(&self) {
        self.signalled.notified().await;
    }

    /// Give a restored execution the item records of its map step number
    /// `step` (as a journal kept them): when the map starts again, completed
    /// items keep their output and are not run again; the others run (an
    /// interrupted attempt counts, as for a step).
    pub fn restore_items(&self, step: usize, records: Vec<ItemRecord>) {
        self.items.lock().unwrap_or_else(PoisonError::into_inner).restored.insert(step, records);
    }

    /// The item records restored for map step `step` (once).
    pub(super) fn take_restored_items(&self, step: usize) -> Vec<ItemRecord> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner).restored.remove(&step).unwrap_or_default()
    }

    /// Record item `record` of map step `step` (on a thread that may block;
    /// secrets redacted). A failed write holds the execution, as a step's
    /// does, and is written again by [`Self::record_again`]. Returns whether
    /// it was recorded.
    pub(super) fn update_item_blocking(&self, step: usize, mut record: ItemRecord) -> bool {
        if let Some(output) = &mut record.output {
            redactor().value(output);
        }
        if let Some(error) = &mut record.error {
            redact_text(&mut error.message);
        }
        let _recording = self.recording_blocking();
        match self.journal.item_blocking(&self.id, step, &record) {
            Ok(()) => {
                // A newer record replaces one that could not be written.
                self.items.lock().unwrap_or_else(PoisonError::into_inner).unrecorded.remove(&(step, record.index));
                true
            }
            Err(e) => {
                self.hold(&format!("item {} of step {step}", record.index), &e);
                self.items
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unrecorded
                    .insert((step, record.index), record);
                false
            }
        }
    }

    /// The execution id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The schedule that started this execution, if any.
    pub fn task_id(&self) -> Option<&str> {
        self.task_id.as_deref()
    }

    /// Record the schedule that fired this execution and its fire time
    /// (the daemon does, when it starts or restores a scheduled execution):
    /// every step's [`ExecutionContext::schedule`] carries it, where no
    /// plugin can change it. Only the first call counts.
    pub fn set_schedule(&self, info: plexus_sdk::ScheduleInfo) {
        let _ = self.schedule.set(info);
    }

    /// The schedule that fired this execution, if recorded.
    pub fn schedule(&self) -> Option<&plexus_sdk::ScheduleInfo> {
        self.schedule.get()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, ExecutionStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The journal could not record a transition: hold the execution.
    fn hold(&self, what: &str, error: &JournalError) {
        tracing::error!(execution = %self.id, "cannot record {what}: {error}; the execution is held until it can");
        self.held.send_replace(true);
    }

    /// Change step `i` with `change`: the journal gets the new record (and the
    /// shared state, if it changed) before the in-memory record is replaced.
    /// The in-memory record changes even if the journal failed (what happened
    /// happened; the execution is then held). Returns whether it was recorded.
    pub(super) async fn update_step(&self, i: usize, change: impl FnOnce(&mut StepRecord)) -> bool {
        let _recording = self.recording.lock().await;
        let (record, state) = self.step_change(i, change);
        let written = self.journal.step(&self.id, i, &record, state.as_ref().map(|(_, map)| map)).await;
        self.step_written(i, record, state, written, false)
    }

    /// [`Self::update_step`] on a thread that may block (a runner): the
    /// journal writes through [`Journal::step_blocking`].
    pub(super) fn update_step_blocking(&self, i: usize, change: impl FnOnce(&mut StepRecord)) -> bool {
        self.change_step_blocking(i, change, false)
    }

    /// Like [`Self::update_step_blocking`], for a step about to start: if the
    /// journal fails, nothing changes (the step must not start) and this
    /// returns `false`.
    pub(super) fn start_step_blocking(&self, i: usize, change: impl FnOnce(&mut StepRecord)) -> bool {
        self.change_step_blocking(i, change, true)
    }

    fn change_step_blocking(&self, i: usize, change: impl FnOnce(&mut StepRecord), only_if_recorded: bool) -> bool {
        let _recording = self.recording_blocking();
        let (record, state) = self.step_change(i, change);
        let written = self.journal.step_blocking(&self.id, i, &record, state.as_ref().map(|(_, map)| map));
        self.step_written(i, record, state, written, only_if_recorded)
    }

    /// The recording lock, for a thread that may block. Runners of one
    /// execution record often and briefly: try for a moment before queueing
    /// (tokio's lock is fair, and a queued waiter costs a thread switch).
    fn recording_blocking(&self) -> tokio::sync::MutexGuard<'_, ()> {
        for round in 0..64 {
            if let Ok(guard) = self.recording.try_lock() {
                return guard;
            }
            if round < 48 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.recording.blocking_lock()
    }

    /// Step `i`'s record changed by `change`, and the shared state if it
    /// changed since the journal last got it (with its version).
    #[allow(clippy::type_complexity)]
    fn step_change(
        &self,
        i: usize,
        change: impl FnOnce(&mut StepRecord),
    ) -> (StepRecord, Option<(u64, Map<String, Value>)>) {
        let mut record = self.lock().steps[i].clone();
        change(&mut record);
        redact_step(&mut record);
        let mut state = self.state.changes_since(self.state_seen.load(Ordering::Acquire));
        if let Some((_, map)) = &mut state {
            redact_map(map);
        }
        (record, state)
    }

    /// The journal wrote step `i`'s new `record` (or failed to): keep it in
    /// memory (only if recorded, with `only_if_recorded`), or hold the execution.
    fn step_written(
        &self,
        i: usize,
        record: StepRecord,
        state: Option<(u64, Map<String, Value>)>,
        written: JournalResult,
        only_if_recorded: bool,
    ) -> bool {
        match &written {
            Ok(()) => {
                if let Some((version, _)) = &state {
                    self.state_seen.store(*version, Ordering::Release);
                }
            }
            Err(e) => self.hold(&format!("step `{}` {}", record.id, record.status.as_str()), e),
        }
        if written.is_ok() || !only_if_recorded {
            self.lock().steps[i] = record;
        }
        written.is_ok()
    }

    /// Change the execution-level fields with `change`, journal first (the
    /// in-memory status changes even if the journal failed; the execution is
    /// then held). Returns whether it was recorded.
    pub(super) async fn update_status(&self, change: impl FnOnce(&mut ExecutionStatus)) -> bool {
        let _recording = self.recording.lock().await;
        let mut s = self.lock().clone();
        change(&mut s);
        redact_map(&mut s.outputs);
        if let Some(error) = &mut s.error {
            redact_text(error);
        }
        let written = self.journal.execution(&s).await;
        if let Err(e) = &written {
            self.hold(&format!("the execution {}", s.status.as_str()), e);
        }
        let mut current = self.lock();
        current.status = s.status;
        current.outputs = s.outputs;
        current.error = s.error;
        current.started_at_ms = s.started_at_ms;
        current.ended_at_ms = s.ended_at_ms;
        written.is_ok()
    }

    /// Journal compensation `record` (number `seq`), then keep it.
    async fn add_compensation(&self, mut record: CompensationRecord) {
        if let Some(output) = &mut record.output {
            redactor().value(output);
        }
        if let Some(error) = &mut record.error {
            redact_text(&mut error.message);
        }
        let _recording = self.recording.lock().await;
        let seq = self.lock().compensations.len();
        if let Err(e) = self.journal.compensation(&self.id, seq, &record).await {
            self.hold(&format!("the compensation of `{}`", record.step), &e);
        }
        self.lock().compensations.push(record);
    }

    /// Whether the execution is held: a transition could not be journalled,
    /// so it starts no new step or compensation and does not end until
    /// [`Self::record_again`] succeeds. Steps already running finish.
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// A receiver that sees the held flag change.
    pub(super) fn held_changes(&self) -> watch::Receiver<bool> {
        self.held.subscribe()
    }

    /// Wait until the execution is not held.
    pub(super) async fn recorded(&self) {
        let mut rx = self.held.subscribe();
        let _ = rx.wait_for(|held| !*held).await;
    }

    /// If the execution is held, record all of it through the journal
    /// ([`Journal::snapshot`]); on success it is released and goes on.
    ///
    /// # Errors
    /// The journal still fails; the execution stays held.
    pub async fn record_again(&self) -> Result<(), JournalError> {
        let _recording = self.recording.lock().await;
        if !self.is_held() {
            return Ok(());
        }
        let status = self.snapshot();
        let (version, mut state) = self.state.changed_since(0).unwrap_or_else(|| (0, self.state.snapshot()));
        redact_map(&mut state);
        self.journal.snapshot(&status, &state).await?;
        let unrecorded: Vec<((usize, usize), ItemRecord)> = {
            let items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
            items.unrecorded.iter().map(|(k, r)| (*k, r.clone())).collect()
        };
        for ((step, index), record) in unrecorded {
            self.journal.item(&self.id, step, &record).await?;
            self.items.lock().unwrap_or_else(PoisonError::into_inner).unrecorded.remove(&(step, index));
        }
        self.state_seen.fetch_max(version, Ordering::AcqRel);
        tracing::info!(execution = %self.id, "recorded again; the execution goes on");
        self.held.send_replace(false);
        Ok(())
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
        self.request_cancel();
    }

    /// Like [`Self::cancel`]; returns whether this call was the first to ask.
    pub fn request_cancel(&self) -> bool {
        let first = !self.cancel_asked.swap(true, Ordering::AcqRel);
        self.cancel.cancel();
        first
    }

    /// Wait until [`Self::cancel`] is called (at once if it was).
    pub async fn cancel_requested(&self) {
        self.cancel.cancelled().await;
    }

    /// The token [`Self::cancel`] raises.
    pub(super) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
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

    /// Whether the execution is over.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// The execution's shared state.
    pub fn state(&self) -> &SharedState {
        &self.state
    }
}

/// Secret values in `text` replaced (see [`redactor`]).
fn redact_text(text: &mut String) {
    if let std::borrow::Cow::Owned(redacted) = redactor().text(text) {
        *text = redacted;
    }
}

/// Secret values in `map`'s keys and values replaced.
fn redact_map(map: &mut Map<String, Value>) {
    if redactor().is_empty() {
        return;
    }
    let mut value = Value::Object(std::mem::take(map));
    redactor().value(&mut value);
    if let Value::Object(redacted) = value {
        *map = redacted;
    }
}

/// Secret values in what step `record` reports (output, error, reason) replaced.
fn redact_step(record: &mut StepRecord) {
    if redactor().is_empty() {
        return;
    }
    if let Some(output) = &mut record.output {
        redactor().value(output);
    }
    if let Some(error) = &mut record.error {
        redact_text(&mut error.message);
    }
    if let Some(reason) = &mut record.reason {
        redact_text(reason);
    }
}

/// Why plugin `id` (as `kind`, if asked) cannot be called: one line.
pub(super) fn not_loaded(host: &Host, id: &str, kind: Option<plexus_host::PluginKind>) -> String {
    let kinds = host.kinds(id);
    match kind {
        Some(kind) if !kinds.is_empty() => format!(
            "plugin `{id}` is not loaded as {kind} (loaded as: {})",
            kinds.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
        _ => format!("no plugin `{id}` is loaded"),
    }
}

/// A future of a [`Children`] call.
pub type ChildFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send>>;

/// Runs the child executions of sub-workflow steps (`workflow: <id>` or an
/// inline definition): the daemon (children are executions of registered
/// workflows, an inline one registered when its child starts) and the
/// [`crate::Orchestrator`] (in memory: `plexus run`) implement it.
/// A child's end comes back to its parent as the signal `child:<step>`
/// (payload `{"execution_id", "status", "outputs", "error"}`), delivered
/// with [`Execution::deliver_signal`].
pub trait Children: Send + Sync {
    /// Start the child execution of step `step` of execution `parent`:
    /// workflow `workflow` (at `version`, default its current one) with
    /// `inputs`; returns its id. Started before (the parent was restarted):
    /// returns that one's id, starting nothing.
    /// `engine` is the parent's (a child may run on it).
    fn start(
        &self,
        engine: &Engine,
        parent: &str,
        step: &str,
        call: &super::definition::SubWorkflow,
        inputs: Map<String, Value>,
    ) -> ChildFuture<String>;
    /// Cancel child execution `child` (if it has not ended).
    fn cancel(&self, child: &str) -> ChildFuture<()>;
    /// Roll back completed child execution `child` (run its compensations,
    /// on `engine`, the parent's, where it runs them itself); whether every
    /// compensation succeeded.
    fn compensate(&self, engine: &Engine, child: &str) -> ChildFuture<bool>;
}

/// The child execution id of step `step` of execution `parent`.
pub fn child_id(parent: &str, step: &str) -> String {
    format!("{parent}~{step}")
}

/// The parent execution and step of child execution `id`, if it is one.
pub fn parent_of(id: &str) -> Option<(&str, &str)> {
    id.rsplit_once('~')
}

/// The signal a sub-workflow step waits for: its child's end.
pub fn child_signal(step: &str) -> String {
    format!("child:{step}")
}

/// The signal that tells the parent of child `status` (the child of its
/// step `step`) that it ended, at `at_ms`: payload `{"execution_id",
/// "status", "outputs", "error"}`.
pub fn child_ended_signal(step: &str, status: &ExecutionStatus, at_ms: u64) -> SignalRecord {
    SignalRecord {
        name: child_signal(step),
        payload: json!({
            "execution_id": status.execution_id,
            "status": status.status.as_str(),
            "outputs": status.outputs,
            "error": status.error,
        }),
        by: None,
        reject: false,
        at_ms,
    }
}

/// Runs prepared workflows through a [`Host`].
#[derive(Clone)]
pub struct Engine {
    host: Arc<Host>,
    clock: Arc<dyn Clock>,
    parallelism: usize,
    drain: CancellationToken,
    secrets: Arc<dyn SecretSource>,
    park: bool,
    children: Option<Arc<dyn Children>>,
    artifacts: Option<plexus_host::artifacts::Artifacts>,
}

/// Why the forward phase stopped early.
#[derive(Debug, Clone)]
pub(super) enum Abort {
    Failed(String),
    Cancelled,
    /// The engine drained (daemon shutdown): the execution stops where it is,
    /// unfinished, to be resumed from its journal.
    Suspended,
    /// Only wait steps are left, waiting for signals: the engine parks the
    /// execution (it ends its run, unfinished; see [`Execution::parked`]).
    Parked,
}

impl Engine {
    /// An engine calling plugins of `host`, timing retries with `clock`.
    pub fn new(host: Arc<Host>, clock: Arc<dyn Clock>) -> Self {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            host,
            clock,
            parallelism,
            drain: CancellationToken::new(),
            secrets: Arc::new(NoSecrets),
            park: false,
            children: None,
            artifacts: None,
        }
    }

    /// This engine, giving the steps' calls the host's `artifacts` (contract
    /// 0.4): what a call writes is recorded for its execution and listed in
    /// its step's record (`steps.<id>.artifacts.<name>`). Without: a call's
    /// artifact requests fail, saying the host has no artifact store.
    pub fn with_artifacts(mut self, artifacts: plexus_host::artifacts::Artifacts) -> Self {
        self.artifacts = Some(artifacts);
        self
    }

    /// The artifacts the steps' calls get, if any.
    pub fn artifacts(&self) -> Option<&plexus_host::artifacts::Artifacts> {
        self.artifacts.as_ref()
    }

    /// This engine, parking an execution whose only steps left wait for
    /// signals (its run ends, unfinished; [`Execution::parked`] says until
    /// when) instead of waiting in memory: the daemon does, so that waiting
    /// costs no worker.
    pub fn with_parking(mut self, park: bool) -> Self {
        self.park = park;
        self
    }

    pub(super) fn parks(&self) -> bool {
        self.park
    }

    /// This engine, running sub-workflow steps' children through `children`
    /// (without: such a step fails, saying it needs the daemon).
    pub fn with_children(mut self, children: Arc<dyn Children>) -> Self {
        self.children = Some(children);
        self
    }

    pub(super) fn children(&self) -> Option<&Arc<dyn Children>> {
        self.children.as_ref()
    }

    /// This engine, looking up `${{ secrets.NAME }}` in step and
    /// compensation parameters in `secrets` (default: none is set). A
    /// secret's value goes to the plugin and into the process's
    /// [`plexus_host::secrets::redactor`]: what the execution records
    /// (outputs, errors, the shared state's keys, the workflow's outputs)
    /// has it replaced with `***`.
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The values of secrets `names`, as an object for a [`Scope`] (`None`
    /// when there are none), each added to the redactor.
    ///
    /// # Errors
    /// `secret-not-found` (not retryable), naming the first that is not set.
    pub(super) fn secret_values(&self, names: &[String]) -> Result<Option<Value>, StepError> {
        if names.is_empty() {
            return Ok(None);
        }
        let mut values = Map::new();
        for name in names {
            let Some(secret) = self.secrets.secret(name) else {
                return Err(error("secret-not-found", format!("secret `{name}` is not set"), false));
            };
            // A value that cannot be redacted is not handed out.
            if let Err(e) = redactor().add(&secret) {
                return Err(error("secret-not-redactable", format!("secret `{name}`: {e}"), false));
            }
            values.insert(name.clone(), Value::String(secret.expose().to_owned()));
        }
        Ok(Some(Value::Object(values)))
    }

    /// This engine, observing `drain` (shared by the engines of one daemon):
    /// once it is cancelled, their executions start no new steps and stop
    /// unfinished, to be resumed from their journal (see [`Execution::restore`]).
    pub fn with_drain(mut self, drain: CancellationToken) -> Self {
        self.drain = drain;
        self
    }

    pub(super) fn drain_signal(&self) -> &CancellationToken {
        &self.drain
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
    ///
    /// A restored execution (see [`Execution::restore`]) carries on where it
    /// stopped: ended steps are not run again, and one that was rolling back
    /// runs only the compensations that had not completed.
    pub async fn run(&self, prepared: Arc<Prepared>, exec: Arc<Execution>) {
        let (was_rolling_back, error) = {
            let s = exec.lock();
            (s.status == WorkflowStatus::RollingBack, s.error.clone())
        };
        let abort = if was_rolling_back {
            Some(match error.as_deref() {
                Some("cancelled") => Abort::Cancelled,
                other => Abort::Failed(other.unwrap_or("rolling back").to_owned()),
            })
        } else {
            // Cancelled before it started (while waiting for a worker): it never runs.
            if !exec.is_cancelled() {
                let started = epoch_ms(self.clock.now());
                exec.update_status(|s| {
                    s.status = WorkflowStatus::Running;
                    s.started_at_ms.get_or_insert(started);
                    s.error = None;
                })
                .await;
            }
            let stop = exec.cancel.child_token();
            super::scheduler::Forward::run(self.clone(), prepared.clone(), exec.clone(), stop).await
        };
        if matches!(abort, Some(Abort::Parked)) {
            tracing::info!(execution = %exec.id(), workflow = %prepared.workflow.id, "execution parked: waiting for signals");
            self.host.end_execution(exec.id());
            exec.done.send_replace(true);
            return;
        }
        if matches!(abort, Some(Abort::Suspended)) {
            // Draining: give up waiting for a held journal; the owner records
            // what it can at shutdown, the rest resumes from the journal.
            tracing::info!(execution = %exec.id(), workflow = %prepared.workflow.id, "execution suspended; it resumes when the host starts again");
            self.host.end_execution(exec.id());
            exec.done.send_replace(true);
            return;
        }
        let final_status = match &abort {
            None => WorkflowStatus::Completed,
            Some(why) => {
                if !was_rolling_back {
                    // Steps not started, and waits a parked run left (the phase
                    // ends the waits it started itself).
                    let pending: Vec<(usize, bool)> = {
                        let s = exec.lock();
                        (0..s.steps.len())
                            .filter(|&i| matches!(s.steps[i].status, StepStatus::Pending | StepStatus::Waiting))
                            .map(|i| (i, s.steps[i].status == StepStatus::Waiting))
                            .collect()
                    };
                    for (i, waiting) in pending {
                        // A sub-workflow step's child is cancelled with it.
                        let step = &prepared.workflow.steps[i];
                        if waiting
                            && step.call.is_some()
                            && let Some(children) = &self.children
                            && let Err(e) = children.cancel(&child_id(exec.id(), &step.id)).await
                        {
                            tracing::warn!(execution = %exec.id(), step = %step.id, "cannot cancel the child execution: {e}");
                        }
                        exec.update_step(i, |step| {
                            step.status = step.status.apply_or(StepEvent::Cancel, StepStatus::Cancelled);
                            step.reason = Some(if waiting {
                                "the execution stopped while it waited for its signal".into()
                            } else {
                                "the execution stopped before this step started".into()
                            });
                        })
                        .await;
                    }
                    exec.update_status(|s| {
                        s.status = WorkflowStatus::RollingBack;
                        s.error = Some(match why {
                            Abort::Failed(e) => e.clone(),
                            Abort::Cancelled | Abort::Suspended | Abort::Parked => "cancelled".into(),
                        });
                    })
                    .await;
                }
                let rollback_ok = self.compensate(&prepared, &exec).await;
                match (why, rollback_ok) {
                    (_, false) => WorkflowStatus::RollbackFailed,
                    (Abort::Failed(_), true) => WorkflowStatus::Failed,
                    (Abort::Cancelled | Abort::Suspended | Abort::Parked, true) => WorkflowStatus::Cancelled,
                }
            }
        };
        let outputs = if final_status == WorkflowStatus::Completed { self.outputs(&prepared, &exec) } else { None };
        let ended = epoch_ms(self.clock.now());
        exec.update_status(|s| {
            s.status = final_status;
            s.ended_at_ms = Some(ended);
            match outputs {
                Some(Ok(outputs)) => s.outputs = outputs,
                Some(Err(e)) => s.error = Some(e),
                None => {}
            }
        })
        .await;
        // Its steps are over: WASM instances kept for its calls go.
        self.host.end_execution(exec.id());
        // An execution ends only once all of it is recorded; if the engine
        // drains first, it stops unfinished and resumes from its journal.
        tokio::select! {
            biased;
            () = exec.recorded() => {}
            () = self.drain.cancelled() => {
                tracing::warn!(execution = %exec.id(), "stopping before the end of the execution could be recorded");
                exec.done.send_replace(true);
                return;
            }
        }
        tracing::info!(execution = %exec.id(), workflow = %prepared.workflow.id, status = final_status.as_str(), "execution finished");
        exec.done.send_replace(true);
    }

    /// The names expressions see, holding only the steps they read.
    pub(super) fn scope(
        &self,
        prepared: &Prepared,
        exec: &Execution,
        reads: &[usize],
        reads_context: bool,
        secrets: Option<Value>,
    ) -> Scope {
        let s = exec.lock();
        let steps: Map<String, Value> = reads
            .iter()
            .map(|&j| {
                let r = &s.steps[j];
                (
                    r.id.clone(),
                    json!({"output": r.output, "status": r.status.as_str(), "attempts": r.attempts, "error": r.error,
                        "artifacts": r.artifacts}),
                )
            })
            .collect();
        let context = if reads_context { Value::Object(exec.state.snapshot()) } else { Value::Object(Map::new()) };
        Scope::with_secrets(
            Value::Object(s.inputs.clone()),
            Value::Object(steps),
            context,
            json!({"id": prepared.workflow.id, "execution_id": s.execution_id}),
            secrets,
        )
    }

    /// The change that ends a step with `status`, now (for
    /// [`Execution::update_step`] or [`Execution::update_step_blocking`]).
    pub(super) fn ended(
        &self,
        status: StepStatus,
        output: Option<Value>,
        error: Option<StepError>,
        reason: Option<String>,
    ) -> impl FnOnce(&mut StepRecord) + use<> {
        let now = epoch_ms(self.clock.now());
        let event = match status {
            StepStatus::Completed => StepEvent::Succeed,
            StepStatus::Failed => StepEvent::Fail,
            StepStatus::Skipped => StepEvent::Skip,
            StepStatus::Cancelled => StepEvent::Cancel,
            // Not an end: the state machine refuses it (and logs the bug).
            StepStatus::Pending | StepStatus::Running | StepStatus::Retrying | StepStatus::Waiting => StepEvent::Reset,
        };
        move |r: &mut StepRecord| {
            r.status = r.status.apply_or(event, status);
            r.output = output;
            // A completed call's artifacts are set by its caller after this.
            r.artifacts.clear();
            if error.is_some() || status == StepStatus::Completed {
                r.error = error;
            }
            r.reason = reason;
            r.ended_at_ms = Some(now);
            r.duration_ms = r.started_at_ms.map(|start| now.saturating_sub(start));
        }
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
        // A resumed rollback skips the compensations that already completed.
        let done: BTreeSet<String> = {
            let s = exec.lock();
            s.compensations.iter().filter(|c| c.status == StepStatus::Completed).map(|c| c.step.clone()).collect()
        };
        let mut all_ok = true;
        for &(_, i) in completed.iter().rev() {
            let step = &prepared.workflow.steps[i];
            // A completed sub-workflow is rolled back, unless the step has its own compensation.
            let child = step.call.is_some() && prepared.step(i).compensation.is_none();
            if (prepared.step(i).compensation.is_none() && !child) || done.contains(&step.id) {
                continue;
            }
            let record = if child {
                Some(self.compensate_child(exec, step).await)
            } else {
                self.compensate_step(prepared, exec, i).await
            };
            if let Some(record) = record {
                all_ok &= record.status == StepStatus::Completed;
            }
        }
        all_ok
    }

    /// Roll back the completed child execution of sub-workflow step `step`
    /// and record it as the step's compensation.
    async fn compensate_child(&self, exec: &Arc<Execution>, step: &super::definition::Step) -> CompensationRecord {
        let child = child_id(exec.id(), &step.id);
        exec.recorded().await;
        let started = Instant::now();
        let result = match &self.children {
            Some(children) => children.compensate(self, &child).await,
            None => Err("no child executions here".to_owned()),
        };
        let (status, error) = match result {
            Ok(true) => (StepStatus::Completed, None),
            Ok(false) => (
                StepStatus::Failed,
                Some(error("child-rollback", format!("a compensation of child execution {child} failed"), false)),
            ),
            Err(e) => (StepStatus::Failed, Some(error("child-rollback", e, false))),
        };
        let record = CompensationRecord {
            step: step.id.clone(),
            plugin_id: String::new(),
            operation: "rollback".into(),
            status,
            output: Some(json!({"execution_id": child})),
            error,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(execution = %exec.id(), step = %step.id, %child, status = status.as_str(), "child execution rolled back");
        exec.add_compensation(record.clone()).await;
        record
    }

    /// Run the compensation of step `i` (if it has one) and record it in
    /// `exec`; returns the record.
    pub(super) async fn compensate_step(
        &self,
        prepared: &Arc<Prepared>,
        exec: &Arc<Execution>,
        i: usize,
    ) -> Option<CompensationRecord> {
        let (action, params) = prepared.step(i).compensation.as_ref()?;
        let step_id = prepared.workflow.steps[i].id.clone();
        // No compensation starts while the journal cannot record.
        exec.recorded().await;
        let all: Vec<usize> = (0..prepared.workflow.steps.len()).collect();
        let started = Instant::now();
        let rendered = self.secret_values(&prepared.step(i).compensation_secrets).and_then(|secrets| {
            let scope = self.scope(prepared, exec, &all, true, secrets);
            params.render(&scope).map_err(|e| error("parameters", e, false))
        });
        let result = match rendered {
            Err(e) => Err(e),
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
            tracing::error!(execution = %exec.id(), step = %step_id, "compensation failed: {}", redactor().text(&e.message));
        } else {
            tracing::info!(execution = %exec.id(), step = %step_id, "compensated");
        }
        exec.add_compensation(record.clone()).await;
        Some(record)
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
        let Some(plugin) = self.host.select(&action.plugin_id, action.kind) else {
            return Err(error("plugin-not-found", not_loaded(&self.host, &action.plugin_id, action.kind), false));
        };
        let timeout = plugin.manifest.limits.timeout;
        let ctx = ExecutionContext {
            execution_id: exec.id().to_owned(),
            workflow_id: Some(prepared.workflow.id.clone()),
            step_id: Some(step_id.to_owned()),
            task_id: exec.task_id.clone(),
            attempt: 1,
            deadline_ms: Some(epoch_ms(super::clock::after(self.clock.now(), timeout))),
            operation: action.operation.clone(),
            parameters: params,
            upstream: Map::new(),
            config: plugin.manifest.call_config().clone(),
            schedule: exec.schedule().cloned(),
        };
        // Not the forward phase's token: a compensation runs after it stopped.
        let mut services =
            CallServices::new(&action.plugin_id, &ctx.execution_id, exec.state.clone(), CancellationToken::new())
                .with_kind(action.kind);
        if let Some(artifacts) = &self.artifacts {
            services = services.with_artifacts(artifacts.clone(), Some(step_id));
        }
        self.host.invoke(ctx, services, timeout).await.map(|out| out.output).map_err(|e| call_error(&e))
    }

    /// The workflow's outputs, rendered; `None` when it declares none.
    fn outputs(&self, prepared: &Prepared, exec: &Execution) -> Option<Result<Map<String, Value>, String>> {
        if prepared.workflow.outputs.is_empty() {
            return None;
        }
        let all: Vec<usize> = (0..prepared.workflow.steps.len()).collect();
        let scope = self.scope(prepared, exec, &all, true, None);
        match prepared.compiled.outputs.render(&scope) {
            Ok(Value::Object(outputs)) => Some(Ok(outputs)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(execution = %exec.id(), "workflow outputs: {}", redactor().text(&e.to_string()));
                Some(Err(format!("outputs: {e}")))
            }
        }
    }
}

pub(super) fn error(kind: &str, message: impl ToString, retryable: bool) -> StepError {
    StepError { kind: kind.into(), message: message.to_string(), retryable }
}

pub(super) fn call_error(e: &CallError) -> StepError {
    match e {
        CallError::Plugin { error: pe, .. } => {
            error(&format!("plugin-error/{}", pe.kind), pe.message.clone(), pe.retryable)
        }
        other => error(other.kind(), other.to_string(), other.is_retryable()),
    }
}
