//! [`Daemon`]: workflows, executions and plugins as the daemon keeps them —
//! everything durable goes through the [`Store`] first.
//!
//! * **Nothing runs unrecorded.** A state write that fails holds the
//!   execution it belongs to (see [`plexus_workflow::journal`]): it starts no
//!   new step, health turns `degraded` (`state_db`), and a maintenance task
//!   ([`Daemon::maintain`], every [`MAINTENANCE_TICK`]) records it again until
//!   that works; then it goes on and health recovers. The same task checks
//!   that the database path still names the file opened.
//! * **Lifecycle requests are atomic.** Retry and cancel take one lock and
//!   change the stored state conditionally, so of two concurrent retries one
//!   is refused (`InvalidState`) and no step runs twice; a second cancel of
//!   an execution already cancelling is refused too.
//! * **A pending execution is cancelled at once**, without waiting for a
//!   worker slot.

use super::error::{DaemonError, DaemonResult, ErrorCode};
use super::health::Health;
use super::journal::{StateDbHealth, StoreJournal};
use super::metrics::Metrics;
use super::store::{Event, ExecutionFilter, ExecutionMeta, ExecutionSummary, Store, StoredExecution, WorkflowRow};
use plexus_client::SourceFormat;
use plexus_client::{Transaction, TransactionState};
use plexus_host::{Change, Host, new_execution_id};
use plexus_workflow::engine::{Engine, Execution, Prepared};
use plexus_workflow::orchestrator::resolve_inputs;
use plexus_workflow::source::Document;
use plexus_workflow::status::{ExecutionStatus, WorkflowStatus, epoch_ms};
use plexus_workflow::{Clock, Journal, ValidWorkflow, validate_for};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod children;
mod cluster;
mod parking;

/// Who asked for an execution, and which version it runs.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The schedule that fired, if any (it becomes the steps' `task_id`).
    pub schedule_id: Option<String>,
    /// The fire time it was scheduled for, ms since the Unix epoch.
    pub fire_time_ms: Option<u64>,
    /// The registered version to run (default: the current one).
    pub version: Option<u32>,
    /// The open transaction to run in (default: the workflow's own `transaction`).
    pub transaction: Option<String>,
    /// Its priority for a free worker.
    pub priority: plexus_client::Priority,
    /// Its id (default: a new one): a sub-workflow's child is `<parent>~<step>`.
    pub execution_id: Option<String>,
}

pub use plexus_client::Registered;

/// The daemon's state: the loaded plugins, the store, the running executions.
/// Cheap to clone.
#[derive(Clone)]
pub struct Daemon(Arc<Inner>);

struct Inner {
    store: Arc<dyn Store>,
    host: RwLock<Arc<Host>>,
    clock: Arc<dyn Clock>,
    runtime: tokio::runtime::Handle,
    prepared: Mutex<HashMap<(String, u32), Arc<Prepared>>>,
    /// The current version of each workflow, so a start needs no query.
    current: Mutex<HashMap<String, u32>>,
    /// One rescan at a time (the watcher and `POST /v1/plugins/reload`).
    reloading: Mutex<()>,
    live: RwLock<HashMap<String, Live>>,
    /// This daemon as a node: its id, and the cluster it joined (if any).
    node: Node,
    /// Worker slots, handed out by priority.
    slots: Arc<crate::slots::Slots>,
    /// Cancelled by [`Daemon::begin_shutdown`]: the engines' drain signal.
    drain: CancellationToken,
    accepting: AtomicBool,
    metrics: Metrics,
    health: Health,
    db_health: StateDbHealth,
    journal: Arc<dyn Journal>,
    /// Tells which execution each journal write was for (see [`Daemon::journal_writes`]).
    written: crate::journal::Written,
    /// Taken by retry and cancel: a check and the change it allows are one step.
    lifecycle: tokio::sync::Mutex<()>,
    /// How long ended executions are kept (`None`: forever), and when they
    /// were last pruned.
    retention: Mutex<(Option<Duration>, Option<std::time::SystemTime>)>,
    /// The secrets store (see [`Daemon::set_secrets`]).
    secrets: std::sync::OnceLock<Arc<crate::secrets::Secrets>>,
    /// The artifact store (see the `artifacts` module), once set.
    artifacts: std::sync::OnceLock<plexus_host::artifacts::Artifacts>,
    /// Whether the artifact store was collected since the daemon started.
    artifacts_collected: std::sync::atomic::AtomicBool,
    /// Executions parked here (see the `parking` module).
    parked: Mutex<HashMap<String, parking::Parked>>,
    /// Orders parking and resuming.
    parking: tokio::sync::Mutex<()>,
}

/// A running execution, as the daemon tracks it.
#[derive(Clone)]
struct Live {
    exec: Arc<Execution>,
    meta: ExecutionMeta,
    /// Stops it here (no new step starts) without recording anything: it
    /// was taken over by another node.
    stop: CancellationToken,
}

/// This daemon as a node of a cluster (a daemon on SQLite is a cluster of one).
struct Node {
    id: String,
    /// Where its API listens, once known.
    address: std::sync::OnceLock<String>,
    started_at_ms: u64,
    /// Executions it runs at once at most.
    workers: usize,
    /// Set by [`Daemon::join_cluster`].
    joined: std::sync::OnceLock<ClusterSettings>,
    /// The lease ran out without a heartbeat: nothing runs or is claimed
    /// here until one works again.
    fenced: AtomicBool,
    /// Held from a claim until the claimed execution runs (and by the
    /// hand-back of executions owned but not running).
    claiming: tokio::sync::Mutex<()>,
    /// Wakes the claim loop (a worker freed, an unclaimed execution recorded).
    claim: Arc<tokio::sync::Notify>,
    /// When this node last looked for signals delivered on other nodes (ms).
    signals_polled: std::sync::atomic::AtomicU64,
}

/// How a joined node keeps its lease.
#[derive(Debug, Clone, Copy)]
struct ClusterSettings {
    lease: Duration,
}

/// How often a joined node polls for cancel requests and claimable
/// executions: a cancel asked on another node takes effect within this (plus
/// the time the step takes to notice), and a free worker finds queued work
/// within it.
pub const CLUSTER_POLL: Duration = Duration::from_millis(250);

/// The most executions a node claims at once.
pub const CLAIM_BATCH: u32 = 32;

/// The default lease of a node: another node takes over its executions this
/// long after its last heartbeat. Heartbeats come every quarter of it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// A new node id: `<host>-<pid>-<8 hex digits>` (a live node with the same
/// id makes `join` fail rather than share its executions).
pub fn new_node_id() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "node".into());
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(48).collect();
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// How often [`Daemon::maintain`] runs: the database file check and the
/// retry of held executions.
pub const MAINTENANCE_TICK: Duration = Duration::from_secs(1);

/// How often ended executions past their retention are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The most executions deleted in one transaction. A prune round runs at
/// most four such batches, so other writes are never held up long.
pub const PRUNE_BATCH: u32 = 500;

/// Parse workflow text: JSON when it starts with `{`, YAML otherwise.
pub fn parse_workflow(source: &str) -> DaemonResult<ValidWorkflow> {
    parse_against(source, None)
}

/// Parse and validate workflow text; with a `host`, against its plugins.
fn parse_against(source: &str, host: Option<&Host>) -> DaemonResult<ValidWorkflow> {
    parse_for(source, host, plexus_sdk::capability::WORKFLOW_STEP)
}

/// [`parse_against`], its plugins declaring `capability`.
fn parse_for(source: &str, host: Option<&Host>, capability: &str) -> DaemonResult<ValidWorkflow> {
    // No file name: a document naming no id of its own gets none.
    let name = format!("<inline>.{}", SourceFormat::of(source).as_str());
    let doc = Document::parse(Path::new(&name), source).map_err(|e| DaemonError::invalid(e.to_string()))?;
    validate_for(&doc, host, capability).map_err(|problems| {
        DaemonError::invalid(format!("the workflow has {} problem(s)", problems.len()))
            .with_details(problems.iter().map(ToString::to_string).collect())
    })
}

/// Executions put in the daemon's live set for a while (a transaction's
/// rollback), taken out again when dropped.
struct LiveWhile {
    daemon: Daemon,
    ids: Vec<String>,
}

impl Drop for LiveWhile {
    fn drop(&mut self) {
        let mut live = self.daemon.0.live.write().unwrap_or_else(PoisonError::into_inner);
        for id in &self.ids {
            live.remove(id);
        }
    }
}

/// What a template is: its definition's name and inputs (read without the
/// plugins: a template's summary does not depend on them).
fn stored_template_summary(row: &crate::store::TemplateRow) -> plexus_client::TemplateSummary {
    match parse_workflow(&row.source) {
        Ok(valid) => template_summary(&valid.workflow, row.updated_at_ms),
        Err(_) => plexus_client::TemplateSummary {
            id: row.id.clone(),
            name: row.id.clone(),
            parameters: Vec::new(),
            updated_at_ms: row.updated_at_ms,
        },
    }
}

fn template_summary(workflow: &plexus_workflow::Workflow, updated_at_ms: u64) -> plexus_client::TemplateSummary {
    plexus_client::TemplateSummary {
        id: workflow.id.clone(),
        name: workflow.name.clone(),
        parameters: workflow.inputs.keys().cloned().collect(),
        updated_at_ms,
    }
}

impl Daemon {
    /// A daemon over `store` and `host`; executions run on `runtime`, at most
    /// `workers` at once, timed by `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        host: Host,
        clock: Arc<dyn Clock>,
        runtime: tokio::runtime::Handle,
        workers: usize,
        metrics: Metrics,
    ) -> Self {
        Self::new_node(store, host, clock, runtime, workers, metrics, new_node_id())
    }

    /// [`Self::new`] as node `node_id` (see [`new_node_id`]; its metrics
    /// should carry it: [`Metrics::for_node`]).
    pub fn new_node(
        store: Arc<dyn Store>,
        host: Host,
        clock: Arc<dyn Clock>,
        runtime: tokio::runtime::Handle,
        workers: usize,
        metrics: Metrics,
        node_id: String,
    ) -> Self {
        metrics.plugins(host.plugins().count(), host.load_errors().len());
        let health = Health::default();
        let db_health = StateDbHealth::new(health.clone());
        let written: crate::journal::Written = tokio::sync::broadcast::channel(1024).0;
        let journal: Arc<dyn Journal> =
            Arc::new(StoreJournal::new(store.clone(), metrics.clone(), db_health.clone(), written.clone()));
        let daemon = Self(Arc::new(Inner {
            store,
            host: RwLock::new(Arc::new(host)),
            clock,
            runtime,
            prepared: Mutex::default(),
            current: Mutex::default(),
            reloading: Mutex::default(),
            live: RwLock::default(),
            node: Node {
                id: node_id,
                address: std::sync::OnceLock::new(),
                started_at_ms: epoch_ms(std::time::SystemTime::now()),
                workers: workers.max(1),
                joined: std::sync::OnceLock::new(),
                fenced: AtomicBool::new(false),
                claiming: tokio::sync::Mutex::const_new(()),
                claim: Arc::default(),
                signals_polled: std::sync::atomic::AtomicU64::new(epoch_ms(std::time::SystemTime::now())),
            },
            slots: crate::slots::Slots::new(workers),
            drain: CancellationToken::new(),
            accepting: AtomicBool::new(true),
            metrics,
            health,
            db_health,
            journal,
            written,
            lifecycle: tokio::sync::Mutex::const_new(()),
            retention: Mutex::new((Some(crate::config::DEFAULT_RETENTION), None)),
            secrets: std::sync::OnceLock::new(),
            artifacts: std::sync::OnceLock::new(),
            artifacts_collected: false.into(),
            parked: Mutex::default(),
            parking: tokio::sync::Mutex::const_new(()),
        }));
        daemon.spawn_maintenance();
        daemon
    }

    /// Run [`Self::maintain`] every [`MAINTENANCE_TICK`] while the daemon lives.
    fn spawn_maintenance(&self) {
        let weak = Arc::downgrade(&self.0);
        self.0.runtime.spawn(async move {
            loop {
                tokio::time::sleep(MAINTENANCE_TICK).await;
                let Some(inner) = weak.upgrade() else { return };
                Daemon(inner).maintain().await;
            }
        });
    }

    /// One maintenance round: check that the database path still names the
    /// file opened (health `degraded` if it was deleted or replaced), record
    /// held executions again (they go on once that works), and, when writes
    /// failed and nothing is held, probe with a write so health recovers.
    pub async fn maintain(&self) {
        match self.0.store.check_file().await {
            Ok(changed) => self.0.db_health.file(changed.err().as_ref()),
            Err(e) => tracing::warn!("cannot check the state database: {e}"),
        }
        self.prune_if_due().await;
        let held: Vec<Arc<Execution>> = {
            let live = self.0.live.read().unwrap_or_else(PoisonError::into_inner);
            live.values().map(|l| l.exec.clone()).filter(|e| e.is_held()).collect()
        };
        for exec in &held {
            if let Err(e) = exec.record_again().await {
                tracing::warn!(execution = %exec.id(), "still cannot record: {e}");
            }
        }
        if held.is_empty() && self.0.db_health.writes_failing() {
            self.0.db_health.writes(self.0.store.probe_write().await.err().as_ref());
        }
    }

    /// Keep ended executions for `retention` after they end (`None`: forever;
    /// the default is [`crate::config::DEFAULT_RETENTION`]).
    pub fn set_retention(&self, retention: Option<Duration>) {
        self.0.retention.lock().unwrap_or_else(PoisonError::into_inner).0 = retention;
    }

    /// Delete executions that ended more than the retention ago, at most
    /// every `PRUNE_EVERY` (60 s, by the daemon's clock). Returns how many.
    pub async fn prune_if_due(&self) -> usize {
        let now = self.0.clock.now();
        let cutoff = {
            let mut retention = self.0.retention.lock().unwrap_or_else(PoisonError::into_inner);
            let (Some(keep), last) = *retention else { return 0 };
            if last.is_some_and(|last| now.duration_since(last).unwrap_or_default() < PRUNE_EVERY) {
                return 0;
            }
            retention.1 = Some(now);
            epoch_ms(now.checked_sub(keep).unwrap_or(std::time::UNIX_EPOCH))
        };
        let mut pruned = 0;
        for _ in 0..4 {
            match self.0.store.prune(cutoff, PRUNE_BATCH).await {
                Ok(n) => {
                    pruned += n;
                    if n < PRUNE_BATCH as usize {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot delete executions past their retention: {e}");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(pruned, "deleted executions past their retention");
        }
        // Their artifacts' bytes go too, unless another execution holds them.
        let first = !self.0.artifacts_collected.swap(true, std::sync::atomic::Ordering::Relaxed);
        if pruned > 0 || first {
            match self.collect_artifacts(crate::artifacts::COLLECT_GRACE).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "deleted artifacts no execution holds"),
                Err(e) => tracing::warn!("cannot collect the artifact store: {e}"),
            }
        }
        pruned
    }

    async fn lifecycle(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lifecycle.lock().await
    }

    /// The plugins loaded now.
    pub fn host(&self) -> Arc<Host> {
        self.0.host.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replace the loaded plugins by `host` (tests: a reload to plugins that changed).
    #[cfg(test)]
    pub(crate) fn replace_host(&self, host: Host) {
        *self.0.host.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(host);
    }

    /// Scan the plugin directories again and swap in the new host; running
    /// executions finish on the host they started with. Blocks while
    /// changed components compile: call it off the async runtime.
    pub fn reload_plugins(&self) -> Vec<Change> {
        let _one_at_a_time = self.0.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let (host, changes) = self.host().rescan();
        self.0.metrics.plugins(host.plugins().count(), host.load_errors().len());
        for change in &changes {
            tracing::info!(?change, "plugin change");
        }
        *self.0.host.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(host);
        changes
    }

    /// The state database.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// The id of each execution this daemon's journal records a transition
    /// of, as it does: what the event streams wait on before they read the
    /// log again (transitions recorded by other nodes of a cluster are not
    /// told: see [`Self::in_cluster`]). A receiver that falls more than 1,024
    /// writes behind gets `Lagged`.
    pub fn journal_writes(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.0.written.subscribe()
    }

    /// Whether this daemon joined a cluster (a shared PostgreSQL store):
    /// other nodes may record transitions it is not told of.
    pub fn in_cluster(&self) -> bool {
        self.0.node.joined.get().is_some()
    }

    /// Executions this daemon runs at once at most (its worker slots).
    pub fn workers(&self) -> usize {
        self.0.node.workers
    }

    /// Worker slots: (executions running in one, executions waiting for one).
    pub fn slot_usage(&self) -> (usize, usize) {
        let (free, waiting) = self.0.slots.usage();
        (self.0.node.workers.saturating_sub(free), waiting)
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The degraded conditions reported by `GET /v1/health`.
    pub fn health(&self) -> &Health {
        &self.0.health
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    /// Whether new work is accepted (false once shutdown began).
    pub fn is_accepting(&self) -> bool {
        self.0.accepting.load(Ordering::Acquire)
    }

    pub(crate) fn check_accepting(&self) -> DaemonResult<()> {
        if self.is_accepting() { Ok(()) } else { Err(DaemonError::invalid_state("the daemon is shutting down")) }
    }

    // ----- workflows -----

    /// Validate workflow text against the loaded plugins.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfiguration`](crate::ErrorCode::InvalidConfiguration) with every problem in `details`.
    pub fn validate_workflow(&self, source: &str) -> DaemonResult<ValidWorkflow> {
        parse_against(source, Some(&self.host()))
    }

    /// Validate and store workflow text as the newest version of its id.
    ///
    /// # Errors
    /// Invalid workflows ([`ErrorCode::InvalidConfiguration`](crate::ErrorCode::InvalidConfiguration)), store failures.
    pub async fn register_workflow(&self, source: &str) -> DaemonResult<Registered> {
        let (this, source) = (self.clone(), source.to_owned());
        self.detached(
            async move { this.register_recorded(&source, plexus_sdk::capability::WORKFLOW_STEP, false).await },
        )
        .await
    }

    /// Register the inline sub-workflow definition `source` (its id in the
    /// namespace [`plexus_workflow::definition::INLINE_PREFIX`] keeps for
    /// them): a new version only when it changed.
    pub(crate) async fn register_inline(&self, source: &str) -> DaemonResult<Registered> {
        let (this, source) = (self.clone(), source.to_owned());
        self.detached(async move { this.register_recorded(&source, plexus_sdk::capability::WORKFLOW_STEP, true).await })
            .await
    }

    /// Register the one-step workflow generated for a schedule of one
    /// operation: its plugin must declare `scheduled-task` (not `workflow-step`).
    pub(crate) async fn register_scheduled_operation(&self, source: &str) -> DaemonResult<Registered> {
        let (this, source) = (self.clone(), source.to_owned());
        self.detached(
            async move { this.register_recorded(&source, plexus_sdk::capability::SCHEDULED_TASK, false).await },
        )
        .await
    }

    /// [`Self::register_workflow`]'s work, run to its end once begun; the
    /// workflow's plugins must declare `capability`. `inline`: an inline
    /// sub-workflow's definition (only those have ids in their namespace).
    async fn register_recorded(&self, source: &str, capability: &str, inline: bool) -> DaemonResult<Registered> {
        self.check_accepting()?;
        let valid = parse_for(source, Some(&self.host()), capability)?;
        let id = valid.workflow.id.clone();
        let prefix = plexus_workflow::definition::INLINE_PREFIX;
        if id.starts_with(prefix) != inline {
            return Err(DaemonError::new(
                ErrorCode::InvalidConfiguration,
                format!("workflow ids starting with `{prefix}` are the inline sub-workflows' (`{id}`)"),
            ));
        }
        let (version, created) = self.0.store.put_workflow(&id, source, SourceFormat::of(source)).await?;
        self.0.current.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), version);
        let prepared = Prepared::new(valid);
        self.0
            .prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((id.clone(), version), Arc::new(prepared));
        tracing::info!(workflow = %id, version, created, "workflow registered");
        Ok(Registered { id, version, created })
    }

    /// The current version of every workflow.
    pub async fn workflows(&self) -> DaemonResult<Vec<WorkflowRow>> {
        Ok(self.0.store.workflows().await?)
    }

    /// Workflow `id` at `version` (default: current).
    pub async fn workflow(&self, id: &str, version: Option<u32>) -> DaemonResult<WorkflowRow> {
        self.0.store.workflow(id, version).await?.ok_or_else(|| DaemonError::not_found(format!("workflow `{id}`")))
    }

    /// Every version of workflow `id`, newest first, and which is current.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`](crate::ErrorCode::NotFound) if it never had one.
    pub async fn workflow_history(&self, id: &str) -> DaemonResult<plexus_client::WorkflowHistory> {
        let versions = self.0.store.workflow_versions(id).await?;
        if versions.is_empty() {
            return Err(DaemonError::not_found(format!("workflow `{id}`")));
        }
        let current = self.0.store.workflow(id, None).await?.map(|row| row.version);
        let versions = versions.into_iter().map(plexus_client::WorkflowSummary::from).collect();
        Ok(plexus_client::WorkflowHistory { id: id.to_owned(), current, versions })
    }

    /// Make version `version` of workflow `id` current again: its text is
    /// registered as a new version (validated against the plugins loaded
    /// now), so the history only grows and executions stay pinned to theirs.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`](crate::ErrorCode::NotFound) for an unknown
    /// version; an invalid definition as [`Self::register_workflow`].
    pub async fn rollback_workflow(&self, id: &str, version: u32) -> DaemonResult<Registered> {
        let row = self
            .0
            .store
            .workflow(id, Some(version))
            .await?
            .ok_or_else(|| DaemonError::not_found(format!("workflow `{id}` version {version}")))?;
        let (this, source) = (self.clone(), row.source);
        let capability = if id.starts_with("schedule.") {
            plexus_sdk::capability::SCHEDULED_TASK
        } else {
            plexus_sdk::capability::WORKFLOW_STEP
        };
        let inline = id.starts_with(plexus_workflow::definition::INLINE_PREFIX);
        let registered =
            self.detached(async move { this.register_recorded(&source, capability, inline).await }).await?;
        tracing::info!(workflow = %id, from = version, to = registered.version, "workflow rolled back to an earlier version");
        Ok(registered)
    }

    /// Delete every workflow (QtForge's `clear_workflows`); executions
    /// pinned to them go on. Returns how many there were.
    pub async fn clear_workflows(&self) -> DaemonResult<usize> {
        self.0.current.lock().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(self.0.store.delete_all_workflows().await?)
    }

    /// Delete workflow `id`; executions pinned to it go on.
    pub async fn delete_workflow(&self, id: &str) -> DaemonResult<()> {
        self.0.current.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        if self.0.store.delete_workflow(id).await? {
            Ok(())
        } else {
            Err(DaemonError::not_found(format!("workflow `{id}`")))
        }
    }

    // ----- templates -----

    /// Validate workflow text against the loaded plugins and store it as a
    /// template (the project orchestrator's `register_template`), replacing
    /// one with the same id. See [`plexus_workflow::template`].
    ///
    /// # Errors
    /// An invalid definition as [`Self::register_workflow`]; store failures.
    pub async fn register_template(&self, source: &str) -> DaemonResult<plexus_client::TemplateSummary> {
        self.check_accepting()?;
        let valid = parse_against(source, Some(&self.host()))?;
        let updated_at_ms = self.0.store.put_template(&valid.workflow.id, source).await?;
        tracing::info!(template = %valid.workflow.id, "template registered");
        Ok(template_summary(&valid.workflow, updated_at_ms))
    }

    /// Every template, by id.
    pub async fn templates(&self) -> DaemonResult<Vec<plexus_client::TemplateSummary>> {
        let rows = self.0.store.templates().await?;
        Ok(rows.iter().map(stored_template_summary).collect())
    }

    /// Template `id` with its text.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`](crate::ErrorCode::NotFound).
    pub async fn template(&self, id: &str) -> DaemonResult<plexus_client::TemplateDetail> {
        let row = self.0.store.template(id).await?;
        let row = row.ok_or_else(|| DaemonError::not_found(format!("template `{id}`")))?;
        Ok(plexus_client::TemplateDetail { summary: stored_template_summary(&row), source: row.source })
    }

    /// Delete template `id`; workflows created from it stay.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`](crate::ErrorCode::NotFound).
    pub async fn delete_template(&self, id: &str) -> DaemonResult<()> {
        if self.0.store.delete_template(id).await? {
            Ok(())
        } else {
            Err(DaemonError::not_found(format!("template `{id}`")))
        }
    }

    /// Create a workflow from template `id` and register it (the project
    /// orchestrator's `create_from_template`; see [`plexus_workflow::template`]).
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`](crate::ErrorCode::NotFound) for an unknown
    /// template; [`ErrorCode::AlreadyExists`](crate::ErrorCode::AlreadyExists)
    /// when the asked id is a workflow already;
    /// [`ErrorCode::InvalidConfiguration`](crate::ErrorCode::InvalidConfiguration)
    /// for bad params or overrides, or a created definition that does not
    /// validate (every problem in `details`).
    pub async fn create_from_template(
        &self,
        id: &str,
        request: &plexus_client::FromTemplate,
    ) -> DaemonResult<Registered> {
        let row = self.0.store.template(id).await?.ok_or_else(|| DaemonError::not_found(format!("template `{id}`")))?;
        let template = parse_workflow(&row.source)?.workflow;
        let taken: std::collections::HashSet<String> =
            self.0.store.workflows().await?.into_iter().map(|w| w.id).collect();
        let new_id = match &request.id {
            Some(new_id) if taken.contains(new_id) => {
                return Err(DaemonError::new(
                    crate::ErrorCode::AlreadyExists,
                    format!("workflow `{new_id}` exists: choose another id (or delete it first)"),
                ));
            }
            Some(new_id) => new_id.clone(),
            None => plexus_workflow::template::next_id(id, |candidate| taken.contains(candidate)),
        };
        let doc = plexus_workflow::template::instantiate(&template, &new_id, request)
            .map_err(|e| DaemonError::invalid(e.to_string()))?;
        let source = serde_json::to_string_pretty(&doc)
            .map_err(|e| DaemonError::new(crate::ErrorCode::Internal, e.to_string()))?;
        let registered = self.register_workflow(&source).await?;
        tracing::info!(template = %id, workflow = %registered.id, "workflow created from a template");
        Ok(registered)
    }

    /// The current version of workflow `id`.
    async fn current_version(&self, id: &str) -> DaemonResult<u32> {
        // In a cluster another node may register or delete it: the store says.
        let shared = self.0.node.joined.get().is_some();
        if !shared && let Some(v) = self.0.current.lock().unwrap_or_else(PoisonError::into_inner).get(id) {
            return Ok(*v);
        }
        let version = self.workflow(id, None).await?.version;
        self.0.current.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned(), version);
        Ok(version)
    }

    /// The compiled current version of workflow `id` (cached, as a start uses it).
    pub(crate) async fn current_prepared(&self, id: &str) -> DaemonResult<Arc<Prepared>> {
        let version = self.current_version(id).await?;
        self.prepared(id, version).await
    }

    /// The compiled workflow `id` at `version`, from the cache or the store.
    async fn prepared(&self, id: &str, version: u32) -> DaemonResult<Arc<Prepared>> {
        let key = (id.to_owned(), version);
        if let Some(p) = self.0.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(p.clone());
        }
        let row = self.workflow(id, Some(version)).await?;
        let prepared = Arc::new(Prepared::new(parse_workflow(&row.source)?));
        self.0.prepared.lock().unwrap_or_else(PoisonError::into_inner).insert(key, prepared.clone());
        Ok(prepared)
    }

    // ----- executions -----

    /// Start an execution of the current version of workflow `id`. It is
    /// recorded before this returns and runs when a worker is free.
    ///
    /// # Errors
    /// Unknown workflow, bad inputs, shutting down, store failures.
    pub async fn start(&self, id: &str, inputs: Map<String, Value>, origin: Origin) -> DaemonResult<Arc<Execution>> {
        let (this, id) = (self.clone(), id.to_owned());
        self.detached(async move { this.start_recorded(&id, inputs, origin).await }).await
    }

    /// [`Self::start`]'s work, run to its end once begun.
    async fn start_recorded(
        &self,
        id: &str,
        inputs: Map<String, Value>,
        origin: Origin,
    ) -> DaemonResult<Arc<Execution>> {
        self.check_accepting()?;
        // An older version is started only while the workflow exists: a
        // deleted one keeps its versions for the executions pinned to them.
        let current = self.current_version(id).await?;
        let version = origin.version.unwrap_or(current);
        let prepared = self.prepared(id, version).await.map_err(|e| match e.code {
            ErrorCode::NotFound => DaemonError::not_found(format!("workflow `{id}` version {version}")),
            _ => e,
        })?;
        let resolved = resolve_inputs(&prepared.workflow, inputs).map_err(|e| DaemonError::invalid(e.to_string()))?;
        let transaction =
            prepared.workflow.transaction_for(origin.transaction.as_deref()).map_err(DaemonError::invalid_state)?;
        // Joining a transaction and recording the execution are one step for
        // its commit and rollback (they take the same lock).
        let _joining = match &transaction {
            Some(tx) => {
                let guard = self.lifecycle().await;
                self.open_transaction(tx).await?;
                Some(guard)
            }
            None => None,
        };
        let exec = Execution::start(
            origin.execution_id.clone().unwrap_or_else(new_execution_id),
            &prepared,
            resolved.inputs,
            self.0.journal.clone(),
            origin.schedule_id.clone(),
        );
        for (key, value) in resolved.context {
            exec.state().set(&key, value);
        }
        if let Some(info) = schedule_info(origin.schedule_id.as_deref(), origin.fire_time_ms) {
            // Plugins built against contracts 0.1 and 0.2 read it here; 0.3's
            // from their execution context (set in `launch`), which no plugin can change.
            exec.state().set(plexus_sdk::SCHEDULE_STATE_KEY, serde_json::to_value(info).unwrap_or_default());
        }
        let meta = ExecutionMeta {
            workflow_version: version,
            schedule_id: origin.schedule_id,
            scheduled_at_ms: origin.fire_time_ms,
            created_at_ms: epoch_ms(self.0.clock.now()),
            runs: 1,
            transaction_id: transaction,
            priority: origin.priority,
        };
        self.0
            .store
            .insert_execution(&exec.snapshot(), &meta, &exec.state().snapshot())
            .await
            .inspect_err(|e| self.0.db_health.writes(Some(e)))?;
        self.0.metrics.execution("started");
        tracing::info!(execution = %exec.id(), workflow = %id, version, "execution accepted");
        // In a cluster it runs here only if this node has a free worker and
        // claims it; otherwise the first node with one claims it.
        if self.0.node.joined.get().is_none() {
            self.launch(prepared, exec.clone(), meta, true);
        } else if let Some(_claimed) = self.run_here_if_free(exec.id()).await {
            self.launch(prepared, exec.clone(), meta, true);
        }
        Ok(exec)
    }

    /// Run `work` as a task of its own and wait for its result. Work that
    /// records something and then acts on it (insert an execution, then
    /// launch it) runs to its end even if the caller stops waiting — an HTTP
    /// client that hangs up drops its handler's future — so nothing is left
    /// recorded but never launched (an execution `pending` until a restart).
    pub(crate) async fn detached<T: Send + 'static>(
        &self,
        work: impl Future<Output = DaemonResult<T>> + Send + 'static,
    ) -> DaemonResult<T> {
        self.0
            .runtime
            .spawn(work)
            .await
            .unwrap_or_else(|e| Err(DaemonError::new(ErrorCode::Internal, format!("a daemon task failed: {e}"))))
    }

    /// Run `exec` on the runtime once a worker slot is free (by its priority:
    /// see `slots`). A cancel while it
    /// waits for the slot takes effect at once (it ends cancelled without a
    /// slot: no step starts). With `observe_lag`, a scheduled execution's
    /// delay from its fire time to the moment it got its slot (its first step
    /// starts then) goes to `plexus_scheduler_lag_seconds`.
    fn launch(&self, prepared: Arc<Prepared>, exec: Arc<Execution>, meta: ExecutionMeta, observe_lag: bool) {
        if let Some(info) = schedule_info(meta.schedule_id.as_deref(), meta.scheduled_at_ms) {
            exec.set_schedule(info);
        }
        let id = exec.id().to_owned();
        let fire_ms = meta.scheduled_at_ms.filter(|_| observe_lag);
        let priority = meta.priority;
        let stop = self.0.drain.child_token();
        let entry = Live { exec: exec.clone(), meta, stop: stop.clone() };
        {
            let mut live = self.0.live.write().unwrap_or_else(PoisonError::into_inner);
            if live.contains_key(&id) {
                // Never two runs of one execution in one daemon.
                tracing::error!(execution = %id, "already running here; not started twice");
                return;
            }
            live.insert(id.clone(), entry);
        }
        let daemon = self.clone();
        self.0.runtime.spawn(async move {
            let inner = &daemon.0;
            let permit = tokio::select! {
                slot = inner.slots.acquire(priority) => Some(slot),
                _ = stop.cancelled() => None,
                _ = exec.cancel_requested() => None,
            };
            if !stop.is_cancelled() && (permit.is_some() || exec.is_cancelled()) {
                if let (Some(fire), Some(_)) = (fire_ms, &permit) {
                    inner.metrics.scheduler_lag(epoch_ms(inner.clock.now()).saturating_sub(fire));
                }
                let mut engine = daemon.engine().with_drain(stop.clone()).with_parking(true);
                if let Some(secrets) = inner.secrets.get() {
                    engine = engine.with_secrets(secrets.clone());
                }
                engine.run(prepared, exec.clone()).await;
            }
            // Only waits for signals left: parked, its worker free (see `parking`).
            if let Some(until) = exec.parked().filter(|_| !stop.is_cancelled()) {
                if let Err(e) = exec.record_again().await {
                    tracing::error!(execution = %id, "not recorded as it parked ({e}); it resumes from its last record");
                }
                drop(permit);
                daemon.park(&id, &exec, until).await;
                return;
            }
            // Stopped while held (shutdown): record what can be — unless
            // another node took it over, which carries on from its record.
            let taken_over = stop.is_cancelled() && !inner.drain.is_cancelled();
            if !taken_over && let Err(e) = exec.record_again().await {
                tracing::error!(execution = %id, "not recorded at shutdown ({e}); it resumes from its last record");
            }
            drop(permit);
            inner.live.write().unwrap_or_else(PoisonError::into_inner).remove(&id);
            inner.node.claim.notify_one();
            // A sub-workflow's child that ended tells its parent.
            let ended = exec.snapshot();
            if !taken_over && ended.status.is_terminal() && plexus_workflow::engine::parent_of(&id).is_some() {
                daemon.child_ended(&ended).await;
            }
        });
    }

    /// Use `secrets` for `${{ secrets.NAME }}` in step parameters and for
    /// the secrets API (the host that loaded the plugins should look up their
    /// `[config]`'s in it too: [`plexus_host::HostBuilder::secrets`]). Only
    /// the first call counts.
    pub fn set_secrets(&self, secrets: Arc<crate::secrets::Secrets>) {
        let _ = self.0.secrets.set(secrets);
    }

    /// Give the steps' calls `artifacts` (set once; see [`crate::artifacts::open`]).
    pub fn set_artifacts(&self, artifacts: plexus_host::artifacts::Artifacts) {
        let _ = self.0.artifacts.set(artifacts);
    }

    /// The artifact store, if set.
    pub fn artifacts(&self) -> Option<&plexus_host::artifacts::Artifacts> {
        self.0.artifacts.get()
    }

    /// An engine calling this daemon's plugins, with its clock, artifacts
    /// and sub-workflows.
    pub(crate) fn engine(&self) -> Engine {
        let mut engine = Engine::new(self.host(), self.0.clock.clone())
            .with_children(Arc::new(children::DaemonChildren(self.clone())));
        if let Some(artifacts) = self.artifacts() {
            engine = engine.with_artifacts(artifacts.clone());
        }
        engine
    }

    /// Load again the plugins that did not load because their `[config]`
    /// names a secret that was not set (after a secret was set, here or on
    /// another node); the other plugins stay as they are.
    pub async fn load_plugins_waiting_for_secrets(&self) {
        let waiting =
            self.host().load_errors().iter().any(|e| matches!(e.kind, plexus_host::LoadErrorKind::SecretNotSet(_)));
        if waiting {
            let daemon = self.clone();
            let _ = tokio::task::spawn_blocking(move || daemon.reload_plugins()).await;
        }
    }

    /// The secrets store.
    ///
    /// # Errors
    /// `InvalidState` when none was set.
    pub fn secrets(&self) -> DaemonResult<&Arc<crate::secrets::Secrets>> {
        self.0
            .secrets
            .get()
            .ok_or_else(|| DaemonError::new(ErrorCode::InvalidState, "this daemon keeps no secrets store"))
    }

    /// The tokio runtime the daemon runs its work on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.0.runtime
    }

    /// The running execution `id`, if it is running here.
    pub fn live(&self, id: &str) -> Option<Arc<Execution>> {
        self.0.live.read().unwrap_or_else(PoisonError::into_inner).get(id).map(|l| l.exec.clone())
    }

    /// How many executions started by schedule `id` (every schedule, when
    /// `None`) have not ended, by schedule: here, or on any node of the
    /// cluster once joined (read from the store, at most 10,000).
    pub async fn running_by_schedule(&self, id: Option<&str>) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        if self.0.node.joined.get().is_some() {
            let filter = ExecutionFilter {
                schedule_id: id.map(str::to_owned),
                active: true,
                limit: Some(10_000),
                ..Default::default()
            };
            match self.0.store.list_executions(&filter).await {
                Ok(running) => {
                    for e in running.into_iter().filter_map(|e| e.schedule_id) {
                        *counts.entry(e).or_default() += 1;
                    }
                    return counts;
                }
                Err(e) => tracing::warn!("cannot count the running executions of schedules: {e}"),
            }
        }
        let live = self.0.live.read().unwrap_or_else(PoisonError::into_inner);
        for schedule in live.values().filter_map(|l| l.meta.schedule_id.as_deref()) {
            if id.is_none_or(|id| id == schedule) {
                *counts.entry(schedule.to_owned()).or_default() += 1;
            }
        }
        counts
    }

    /// How many executions started by schedule `id` have not ended (see
    /// [`Self::running_by_schedule`]).
    pub async fn running_for_schedule(&self, id: &str) -> usize {
        self.running_by_schedule(Some(id)).await.get(id).copied().unwrap_or(0)
    }

    /// Execution `id`: live status if it runs here, else as stored.
    pub async fn status(&self, id: &str) -> DaemonResult<(ExecutionStatus, ExecutionMeta)> {
        let live = self.0.live.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned();
        if let Some(Live { exec, meta, .. }) = live {
            return Ok((exec.snapshot(), meta));
        }
        let stored = self.stored(id).await?;
        Ok((stored.status, stored.meta))
    }

    async fn stored(&self, id: &str) -> DaemonResult<StoredExecution> {
        self.0.store.execution(id).await?.ok_or_else(|| DaemonError::not_found(format!("execution `{id}`")))
    }

    /// Executions matching `filter`, newest first.
    pub async fn executions(&self, filter: &ExecutionFilter) -> DaemonResult<Vec<ExecutionSummary>> {
        Ok(self.0.store.list_executions(filter).await?)
    }

    /// The log of execution `id` after event `after`, with its current status
    /// (cheap: `logs --follow` polls it).
    pub async fn logs(&self, id: &str, after: i64, limit: u32) -> DaemonResult<(WorkflowStatus, Vec<Event>)> {
        let status = match self.live(id) {
            Some(exec) => exec.snapshot().status,
            None => {
                let stored = self.0.store.execution_status(id).await?;
                stored.ok_or_else(|| DaemonError::not_found(format!("execution `{id}`")))?
            }
        };
        Ok((status, self.0.store.events(id, after, limit).await?))
    }

    /// Cancel execution `id`: running steps are cancelled, completed ones compensated.
    /// A pending execution (waiting for a worker) is cancelled at once.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`](crate::ErrorCode::NotFound); [`ErrorCode::InvalidState`](crate::ErrorCode::InvalidState) if it already
    /// ended or is already being cancelled.
    pub async fn cancel(&self, id: &str) -> DaemonResult<()> {
        let _one_at_a_time = self.lifecycle().await;
        if self.is_parked(id) {
            // Run again to be cancelled (its waits end, its completed steps are compensated).
            self.resume_parked(id).await;
        }
        if let Some(exec) = self.live(id) {
            if exec.request_cancel() {
                return Ok(());
            }
            return Err(DaemonError::invalid_state(format!("execution `{id}` is already being cancelled")));
        }
        self.cancel_elsewhere(id).await
    }

    /// Run a failed or cancelled execution again from the steps that did not
    /// complete; completed steps keep their outputs and are not run again.
    /// The execution keeps its id and its pinned workflow version.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`](crate::ErrorCode::NotFound); [`ErrorCode::InvalidState`](crate::ErrorCode::InvalidState) unless it ended
    /// without completing.
    pub async fn retry(&self, id: &str) -> DaemonResult<()> {
        let (this, id) = (self.clone(), id.to_owned());
        self.detached(async move { this.retry_recorded(&id).await }).await
    }

    /// [`Self::retry`]'s work, run to its end once begun.
    async fn retry_recorded(&self, id: &str) -> DaemonResult<()> {
        self.check_accepting()?;
        let _one_at_a_time = self.lifecycle().await;
        if self.live(id).is_some() {
            return Err(DaemonError::invalid_state(format!("execution `{id}` is still running")));
        }
        let stored = self.stored(id).await?;
        let status = stored.status.status;
        if !status.is_terminal() || status == plexus_workflow::WorkflowStatus::Completed {
            return Err(DaemonError::invalid_state(format!(
                "execution `{id}` is {}: only failed or cancelled executions can be retried",
                status.as_str()
            )));
        }
        let prepared = self.prepared(&stored.status.workflow_id, stored.meta.workflow_version).await?;
        let Some(stored) = self.0.store.reset_for_retry(stored).await? else {
            return Err(DaemonError::invalid_state(format!("execution `{id}` is already being retried")));
        };
        tracing::info!(execution = %id, run = stored.meta.runs, "retrying from the steps that did not complete");
        // Steps that wait again wait for a new signal (a sub-workflow's: its child's next end).
        let again: Vec<String> = prepared
            .workflow
            .steps
            .iter()
            .zip(&stored.status.steps)
            .filter(|(_, record)| record.status != plexus_workflow::StepStatus::Completed)
            .filter_map(|(step, _)| match (&step.wait, &step.call) {
                (Some(wait), _) => Some(wait.signal.clone()),
                (None, Some(_)) => Some(plexus_workflow::engine::child_signal(&step.id)),
                (None, None) => None,
            })
            .collect();
        if !again.is_empty() {
            self.0.store.delete_signals(id, &again).await?;
        }
        let _claimed = if self.0.node.joined.get().is_some() {
            match self.run_here_if_free(id).await {
                Some(claimed) => Some(claimed),
                None => return Ok(()), // another node claims it
            }
        } else {
            None
        };
        let (exec, meta) = self.restore(stored).await;
        self.launch(prepared, exec, meta, false);
        Ok(())
    }

    /// Execution `stored` back in memory, journalled to this daemon's store.
    /// Its map steps' item records come along (a map that had not ended
    /// keeps its completed items).
    pub(crate) async fn restore(&self, stored: StoredExecution) -> (Arc<Execution>, ExecutionMeta) {
        let id = stored.status.execution_id.clone();
        let unfinished = stored.status.steps.iter().any(|s| !s.status.is_terminal());
        let exec =
            Execution::restore(stored.status, stored.state, self.0.journal.clone(), stored.meta.schedule_id.clone());
        if unfinished {
            match self.0.store.signals(&id).await {
                Ok(signals) => exec.restore_signals(signals),
                Err(e) => {
                    tracing::warn!(execution = %id, "cannot read its signals ({e}); they count when it runs again")
                }
            }
            match self.0.store.items(&id, None, None, u32::MAX).await {
                Ok(items) => {
                    let mut by_step: HashMap<usize, Vec<plexus_workflow::status::ItemRecord>> = HashMap::new();
                    for (step, record) in items {
                        by_step.entry(step).or_default().push(record);
                    }
                    for (step, records) in by_step {
                        exec.restore_items(step, records);
                    }
                }
                Err(e) => tracing::warn!(execution = %id, "cannot read its map items ({e}): they run again"),
            }
        }
        (exec, stored.meta)
    }

    /// Run execution `stored` (not ended) from its record, as after a
    /// restart; whether it could. One whose workflow version cannot be read
    /// is recorded as failed.
    async fn run_stored(&self, stored: StoredExecution) -> bool {
        let id = stored.status.execution_id.clone();
        match self.prepared(&stored.status.workflow_id, stored.meta.workflow_version).await {
            Ok(prepared) => {
                tracing::info!(execution = %id, workflow = %stored.status.workflow_id, "resuming");
                let (exec, meta) = self.restore(stored).await;
                self.launch(prepared, exec, meta, false);
                true
            }
            Err(e) => {
                tracing::error!(execution = %id, "cannot resume: {e}");
                let mut status = stored.status;
                status.status = plexus_workflow::WorkflowStatus::Failed;
                status.error = Some(format!("cannot resume: {e}"));
                status.ended_at_ms = Some(epoch_ms(self.0.clock.now()));
                if let Err(e) = self.0.store.update_execution(&status).await {
                    tracing::error!(execution = %id, "cannot record that it cannot resume: {e}");
                }
                false
            }
        }
    }

    /// Resume every execution the store says had not ended (after a restart
    /// or crash). Returns how many resumed; one that cannot (its workflow
    /// version is unreadable) is recorded as failed and the others go on.
    pub async fn resume_unfinished(&self) -> DaemonResult<usize> {
        let ids = self.0.store.unfinished_executions().await?;
        let mut resumed = 0;
        for id in ids {
            // One execution that cannot be read is reported and left as it
            // is: it must not keep the daemon (and every other) from starting.
            let stored = match self.0.store.execution(&id).await {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(execution = %id, "cannot resume, its record cannot be read: {e}");
                    continue;
                }
            };
            if self.run_stored(stored).await {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    // ----- transactions -----

    /// Begin transaction `id` (QtForge's `begin_transaction`; the rules are
    /// in [`plexus_client::Transaction`]). Durable: it survives a restart.
    ///
    /// # Errors
    /// `InvalidConfiguration` for a bad id, `AlreadyExists`, store failures.
    pub async fn begin_transaction(&self, id: &str) -> DaemonResult<Transaction> {
        use plexus_workflow::definition::{ID_RULE, MAX_ID_LEN, is_valid_id};
        self.check_accepting()?;
        if !is_valid_id(id, MAX_ID_LEN) {
            return Err(DaemonError::invalid(format!("transaction id `{id}`: {ID_RULE}, at most {MAX_ID_LEN}")));
        }
        let tx = Transaction::open(id, epoch_ms(self.0.clock.now()));
        if !self.0.store.insert_transaction(&tx).await? {
            return Err(DaemonError::new(ErrorCode::AlreadyExists, format!("transaction `{id}` already exists")));
        }
        tracing::info!(transaction = %id, "transaction begun");
        Ok(tx)
    }

    /// Transaction `id` with its executions and the compensations its rollback ran.
    pub async fn transaction(&self, id: &str) -> DaemonResult<Transaction> {
        self.0.store.transaction(id).await?.ok_or_else(|| DaemonError::not_found(format!("transaction `{id}`")))
    }

    /// Transaction `id`, which must be open.
    async fn open_transaction(&self, id: &str) -> DaemonResult<Transaction> {
        let tx = self.transaction(id).await?;
        if tx.state != TransactionState::Open {
            return Err(DaemonError::invalid_state(format!("transaction `{id}` is {}, not open", tx.state.as_str())));
        }
        Ok(tx)
    }

    /// Refuse while an execution of `tx` has not ended.
    async fn check_settled(&self, tx: &Transaction) -> DaemonResult<()> {
        for id in &tx.executions {
            let running =
                self.live(id).is_some() || self.0.store.execution_status(id).await?.is_some_and(|s| !s.is_terminal());
            if running {
                return Err(DaemonError::invalid_state(format!(
                    "execution `{id}` of transaction `{}` is still running: wait for it or cancel it first",
                    tx.id
                )));
            }
        }
        Ok(())
    }

    /// Commit transaction `id` (QtForge's `commit_transaction`): its
    /// executions' effects are permanent; their compensations no longer run.
    ///
    /// # Errors
    /// `NotFound`; `InvalidState` if it is not open or an execution of it is
    /// still running.
    pub async fn commit_transaction(&self, id: &str) -> DaemonResult<Transaction> {
        let _one_at_a_time = self.lifecycle().await;
        let mut tx = self.open_transaction(id).await?;
        self.check_settled(&tx).await?;
        tx.state = TransactionState::Committed;
        tx.ended_at_ms = Some(epoch_ms(self.0.clock.now()));
        if !self.0.store.update_transaction(&tx, TransactionState::Open).await? {
            return Err(DaemonError::invalid_state(format!("transaction `{id}` changed meanwhile")));
        }
        tracing::info!(transaction = %id, executions = tx.executions.len(), "transaction committed");
        Ok(tx)
    }

    /// Transactions (in `state`, if given), newest first, at most `limit`.
    pub async fn transactions(
        &self,
        state: Option<TransactionState>,
        limit: u32,
    ) -> DaemonResult<Vec<plexus_client::TransactionSummary>> {
        Ok(self.0.store.list_transactions(state, limit).await?)
    }

    /// Roll back transaction `id` (QtForge's `rollback_transaction`): the
    /// compensation of every completed step of its completed executions runs,
    /// newest first ([`plexus_workflow::Engine::roll_back_transaction`]), and
    /// the transaction is answered with each. Recorded as it goes: a restart
    /// in the middle carries on with the compensations that had not run.
    ///
    /// # Errors
    /// As [`Self::commit_transaction`].
    pub async fn rollback_transaction(&self, id: &str) -> DaemonResult<Transaction> {
        let (this, id) = (self.clone(), id.to_owned());
        self.detached(async move {
            let tx = {
                let _one_at_a_time = this.lifecycle().await;
                let mut tx = this.open_transaction(&id).await?;
                this.check_settled(&tx).await?;
                tx.state = TransactionState::RollingBack;
                if !this.0.store.update_transaction(&tx, TransactionState::Open).await? {
                    return Err(DaemonError::invalid_state(format!("transaction `{id}` changed meanwhile")));
                }
                // In a cluster the store records this node as the one rolling
                // it back (a node that dies mid-way leaves it to another).
                tx
            };
            this.roll_back(tx).await
        })
        .await
    }

    /// Run the rollback of `tx` (state `rolling_back`) to its end and record it.
    async fn roll_back(&self, mut tx: Transaction) -> DaemonResult<Transaction> {
        tracing::info!(transaction = %tx.id, executions = tx.executions.len(), "rolling back a transaction");
        let mut members = Vec::new();
        // Live while their compensations run: a write that fails holds them,
        // and maintenance records them again (as it does running executions).
        let mut live = LiveWhile { daemon: self.clone(), ids: Vec::new() };
        for id in &tx.executions {
            let stored = self.stored(id).await?;
            if stored.status.status != WorkflowStatus::Completed {
                continue;
            }
            // In a cluster, this node writes its compensations: it takes it over.
            if let Some((cluster, _)) = self.cluster() {
                cluster.claim_one(&self.0.node.id, id, crate::store::Claim::Compensate).await?;
            }
            let prepared = self.prepared(&stored.status.workflow_id, stored.meta.workflow_version).await?;
            let (exec, meta) = self.restore(stored).await;
            if let Some(info) = schedule_info(meta.schedule_id.as_deref(), meta.scheduled_at_ms) {
                exec.set_schedule(info);
            }
            let entry = Live { exec: exec.clone(), meta, stop: self.0.drain.child_token() };
            self.0.live.write().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), entry);
            live.ids.push(id.clone());
            members.push((prepared, exec));
        }
        let engine = self.engine();
        let (ok, compensations) = engine.roll_back_transaction(&tx.id, &members).await;
        tx.state = if ok { TransactionState::RolledBack } else { TransactionState::RollbackFailed };
        tx.compensations = compensations;
        tx.ended_at_ms = Some(epoch_ms(self.0.clock.now()));
        self.0.store.update_transaction(&tx, TransactionState::RollingBack).await?;
        drop(live);
        tracing::info!(transaction = %tx.id, state = tx.state.as_str(), "transaction rolled back");
        Ok(tx)
    }

    /// Carry on with every rollback a stop interrupted (at start, after
    /// [`Self::resume_unfinished`]), in the background. Returns how many.
    pub async fn resume_rollbacks(&self) -> DaemonResult<usize> {
        let mut ids = self.0.store.transactions_in(TransactionState::RollingBack).await?;
        if let Some((cluster, _)) = self.cluster() {
            // In a cluster: only those no live node (nor this one) rolls back now.
            let mut claimed = Vec::new();
            for id in ids {
                if cluster.claim_rollback(&self.0.node.id, &id).await? {
                    claimed.push(id);
                }
            }
            ids = claimed;
        }
        for id in &ids {
            let tx = self.transaction(id).await?;
            let this = self.clone();
            self.0.runtime.spawn(async move {
                let id = tx.id.clone();
                if let Err(e) = this.roll_back(tx).await {
                    tracing::error!(transaction = %id, "cannot finish the rollback of the transaction: {e}");
                }
            });
        }
        Ok(ids.len())
    }

    /// Stop accepting work and starting steps (idempotent): the first half of
    /// [`Self::shutdown`], for the moment the signal arrives.
    pub fn begin_shutdown(&self) {
        self.0.accepting.store(false, Ordering::Release);
        self.0.drain.cancel();
    }

    /// Wait until shutdown began (at once if it did).
    pub async fn stopping(&self) {
        self.0.drain.cancelled().await;
    }

    /// Stop accepting work, let running steps finish for at most `grace`,
    /// and leave unfinished executions to be resumed at the next start.
    /// Returns how many executions were still running at the deadline.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.begin_shutdown();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running = self.0.live.read().unwrap_or_else(PoisonError::into_inner).len();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                if running > 0 {
                    tracing::warn!(running, "grace period over; unfinished executions resume at the next start");
                }
                return running;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The schedule that fired an execution, as its steps' execution contexts
/// carry it: schedule `id`, fired for `fire_ms` (ms since the Unix epoch).
fn schedule_info(id: Option<&str>, fire_ms: Option<u64>) -> Option<plexus_sdk::ScheduleInfo> {
    let (id, fire) = (id?, fire_ms?);
    Some(plexus_sdk::ScheduleInfo {
        id: id.to_owned(),
        fire_time_ms: fire,
        fire_time: chrono::DateTime::from_timestamp_millis(i64::try_from(fire).unwrap_or(i64::MAX))
            .unwrap_or_default()
            .to_rfc3339(),
    })
}
