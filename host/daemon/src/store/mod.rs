//! [`Store`]: the daemon's durable state, behind an async trait;
//! [`SqliteStore`] keeps it in one embedded SQLite file.
//!
//! WAL mode with `synchronous = NORMAL`: a commit survives a crash or
//! `kill -9` of the daemon (not a power cut after the last checkpoint, as
//! SQLite documents). The schema is created and upgraded by numbered
//! migrations (`rusqlite_migration`, tracked in `PRAGMA user_version`); a
//! database written by a newer daemon is refused.
//!
//! Tables: `workflows` (every registered version, kept: executions are pinned
//! to the version they started with), `executions`, `steps` (the latest record
//! of each step, JSON), `events` (every transition, the execution log),
//! `compensations`, `state_entries` (the shared state's keys set since the
//! execution started or was last snapshotted, over `executions.state`; a key
//! a completed step's output set refers to that step's record, so an output
//! is stored once),
//! `schedules` and `fires` (each schedule's fire history), `transactions`,
//! `templates`.
//!
//! Writes go through one write connection that commits them in groups
//! (the `writer` module): a write returns once it is committed, and writes arriving
//! while a commit is in flight share the next one. Reads use a small pool of
//! connections of their own (four) and see committed data only.

mod writer;

use super::dbfile::{DbLock, FileChanged, FileIdentity, check_writable};
use plexus_workflow::status::{CompensationRecord, ExecutionStatus, ItemRecord, StepRecord, WorkflowStatus, epoch_ms};
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::SystemTime;
use writer::Writer;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date.
    #[error("state database {path}: migration failed: {message}")]
    Migration {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A stored JSON value did not parse, or `PRAGMA quick_check` found damage.
    #[error("state database {path}: corrupt record: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What did not parse.
        message: String,
    },
    /// Another daemon (or another `Store` in this process) holds the
    /// database's exclusive lock.
    #[error(
        "state database {path} is in use by another daemon ({holder}; lock file {lock}): \
         stop it, or give this daemon its own `state_db`"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
        /// The lock file (`<db>.lock`).
        lock: PathBuf,
        /// Who holds it, as the holder wrote it: `pid <pid> on host <name>`.
        holder: String,
    },
    /// The database (or its directory) cannot be written.
    #[error("state database {path} is read-only: {message}")]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// Why it cannot be written.
        message: String,
    },
    /// PostgreSQL refused an operation, or could not be reached.
    #[error("state database {database}: {message}")]
    Postgres {
        /// The database, as `postgres://user@host:port/db` (never the password).
        database: String,
        /// What failed: PostgreSQL's severity, SQLSTATE and message when
        /// the server answered, else the client's error.
        message: String,
        /// The SQLSTATE, when the server gave one.
        code: Option<String>,
    },
    /// Another live node of the cluster has this node id.
    #[error("node id {node} is in use by a live node of the cluster")]
    NodeIdInUse {
        /// The node id.
        node: String,
    },
    /// This daemon no longer owns the execution it wrote: its lease ran out
    /// and another node of the cluster took the execution over.
    #[error("execution {execution} is no longer run by this node ({node}): another node took it over")]
    NotOwner {
        /// The execution.
        execution: String,
        /// This node.
        node: String,
    },
    /// A file next to the database (its lock file) could not be used.
    #[error("state database lock file {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

/// A write prepared from borrowed records (already serialised), not yet
/// run: [`StoreWrite::commit`] runs it in the next group commit and blocks
/// until it is durable; `.await` queues it for the writer thread and resolves
/// once it is durable, without blocking a thread (the engine's journal).
#[must_use = "a write does nothing until it is committed or awaited"]
pub struct StoreWrite<R> {
    writer: Arc<Writer>,
    job: StoreResult<WriteFn<R>>,
}

type WriteFn<R> = Box<dyn FnOnce(&Connection) -> StoreResult<R> + Send>;

impl<R: Send + 'static> StoreWrite<R> {
    /// Commit it, blocking the calling thread until it is durable.
    ///
    /// # Errors
    /// The write or its group's commit failed (see [`StoreError`]).
    pub fn commit(self) -> StoreResult<R> {
        self.writer.write(self.job?)
    }
}

impl<R: Send + 'static> IntoFuture for StoreWrite<R> {
    type Output = StoreResult<R>;
    type IntoFuture = Pin<Box<dyn Future<Output = StoreResult<R>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        match self.job {
            Ok(job) => Box::pin(self.writer.submit(job)),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

/// The result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

mod artifacts;
mod executions;
mod hooks;
mod postgres;
mod schedules;
mod schema;
mod shape;
mod sqlite;
mod templates;
mod transactions;
mod workflows;

/// What a [`Store`] call returns: a future of its result, owning what it
/// needs (it can be spawned).
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send>>;

/// The daemon's durable state, as the daemon, its journal, the API and the
/// schedules use it: every call is async and none blocks a tokio worker.
/// [`SqliteStore`] implements it (one SQLite file, group commit); a store
/// for several daemons (PostgreSQL) is another implementation.
///
/// "Persisted before reported": a write's future resolves once the write
/// is durable, and a read sees only durable writes. Every write fails with
/// the store's error and changes nothing when it cannot be made.
pub trait Store: Send + Sync + 'static {
    /// Store `source` as the newest version of workflow `id`; returns the
    /// version and whether it is new (the same text as the current version
    /// returns that version unchanged).
    fn put_workflow(&self, id: &str, source: &str, format: SourceFormat) -> StoreFuture<(u32, bool)>;
    /// Version `version` of workflow `id` (deleted ones too), or its newest
    /// live version when `version` is `None`.
    fn workflow(&self, id: &str, version: Option<u32>) -> StoreFuture<Option<WorkflowRow>>;
    /// The newest version of every live workflow, by id.
    fn workflows(&self) -> StoreFuture<Vec<WorkflowRow>>;
    /// Mark workflow `id` deleted (its versions stay for the executions
    /// pinned to them). Returns whether it existed.
    fn delete_workflow(&self, id: &str) -> StoreFuture<bool>;
    /// Every version of workflow `id` (deleted ones too), newest first.
    fn workflow_versions(&self, id: &str) -> StoreFuture<Vec<WorkflowRow>>;
    /// Mark every workflow deleted; returns how many were live.
    fn delete_all_workflows(&self) -> StoreFuture<usize>;

    /// Store `source` as template `id` (replacing it); returns the time, ms.
    fn put_template(&self, id: &str, source: &str) -> StoreFuture<u64>;
    /// Template `id`.
    fn template(&self, id: &str) -> StoreFuture<Option<TemplateRow>>;
    /// Every template, by id.
    fn templates(&self) -> StoreFuture<Vec<TemplateRow>>;
    /// Delete template `id`; whether it existed.
    fn delete_template(&self, id: &str) -> StoreFuture<bool>;

    /// Record a new execution (status pending) with its steps and initial shared state.
    fn insert_execution(
        &self,
        status: &ExecutionStatus,
        meta: &ExecutionMeta,
        state: &Map<String, Value>,
    ) -> StoreFuture<()>;
    /// Write the execution-level fields of `status` and log the transition.
    fn update_execution(&self, status: &ExecutionStatus) -> StoreFuture<()>;
    /// Write step `index`'s record and log the transition; `state`, when
    /// given, is the shared state's keys the step set.
    fn update_step(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> StoreFuture<()>;
    /// [`Store::update_step`], blocking the calling thread until it is
    /// durable: for the engine's runners, which call plugins off the async
    /// runtime and would otherwise pay a hand-off per transition.
    ///
    /// # Errors
    /// As [`Store::update_step`].
    fn update_step_blocking(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> StoreResult<()>;
    /// Write item `record.index` of map step `step` (no event is logged:
    /// the step's own transitions are).
    fn update_item(&self, execution_id: &str, step: usize, record: &ItemRecord) -> StoreFuture<()>;
    /// [`Store::update_item`], blocking the calling thread until it is durable.
    ///
    /// # Errors
    /// As [`Store::update_item`].
    fn update_item_blocking(&self, execution_id: &str, step: usize, record: &ItemRecord) -> StoreResult<()>;
    /// The items of execution `execution_id`'s map steps (of step `step`
    /// only, when given), by step then item, those after item `after`
    /// (exclusive), at most `limit`.
    fn items(
        &self,
        execution_id: &str,
        step: Option<usize>,
        after: Option<usize>,
        limit: u32,
    ) -> StoreFuture<Vec<(usize, ItemRecord)>>;
    /// Record signal `signal` for execution `execution_id`; `false` when one
    /// of its name was recorded before (the first is kept).
    fn put_signal(&self, execution_id: &str, signal: &plexus_client::SignalRecord) -> StoreFuture<bool>;
    /// The signals recorded for execution `execution_id`, oldest first.
    fn signals(&self, execution_id: &str) -> StoreFuture<Vec<plexus_client::SignalRecord>>;
    /// Forget execution `execution_id`'s signals named `names` (its steps
    /// that wait for them are retried).
    fn delete_signals(&self, execution_id: &str, names: &[String]) -> StoreFuture<()>;
    /// The signals executions `ids` got at or after `since_ms`: (execution, name).
    fn signalled(&self, ids: &[String], since_ms: u64) -> StoreFuture<Vec<(String, String)>>;
    /// Record that execution `execution_id` holds `artifact` (its step
    /// `artifact.step` wrote it); recording it again changes nothing. Written
    /// before the artifact's bytes are put in place (see
    /// [`plexus_host::artifacts::BlobStore::collect`]).
    fn link_artifact(&self, execution_id: &str, artifact: &plexus_client::ArtifactRecord) -> StoreFuture<()>;
    /// The artifacts execution `execution_id` holds, oldest first (at most 10,000).
    fn artifacts(&self, execution_id: &str) -> StoreFuture<Vec<plexus_client::ArtifactRecord>>;
    /// Whether one of executions `ids` holds the artifact with `digest`.
    fn holds_artifact(&self, ids: &[String], digest: &str) -> StoreFuture<bool>;
    /// Which of `digests` (at most 1,000) some execution holds.
    fn held_artifacts(&self, digests: &[String]) -> StoreFuture<std::collections::HashSet<String>>;
    /// Record compensation number `seq` of an execution and log it.
    fn put_compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord) -> StoreFuture<()>;
    /// Write everything about a running execution at once (status, steps,
    /// compensations, shared state), after writes had failed.
    fn record_snapshot(&self, status: &ExecutionStatus, state: &Map<String, Value>) -> StoreFuture<()>;
    /// Prepare a failed or cancelled execution for a retry (steps that did
    /// not complete back to pending, run counter up), if it is still failed
    /// or cancelled; returns it as reset, or `None` when another retry won.
    fn reset_for_retry(&self, stored: StoredExecution) -> StoreFuture<Option<StoredExecution>>;
    /// Execution `id` with its steps, compensations and shared state.
    fn execution(&self, id: &str) -> StoreFuture<Option<StoredExecution>>;
    /// The status of execution `id` alone (cheap).
    fn execution_status(&self, id: &str) -> StoreFuture<Option<WorkflowStatus>>;
    /// Executions matching `filter`, newest first.
    fn list_executions(&self, filter: &ExecutionFilter) -> StoreFuture<Vec<ExecutionSummary>>;
    /// Ids of executions that had not ended (to resume after a restart).
    fn unfinished_executions(&self) -> StoreFuture<Vec<String>>;
    /// How many executions have each status.
    fn execution_counts(&self) -> StoreFuture<Vec<(WorkflowStatus, u64)>>;
    /// The log of execution `id` after event `after` (exclusive), at most `limit` lines.
    fn events(&self, id: &str, after: i64, limit: u32) -> StoreFuture<Vec<Event>>;
    /// Delete up to `limit` executions that ended before `ended_before_ms`
    /// (ms since the Unix epoch), with their steps, compensations and log.
    fn prune(&self, ended_before_ms: u64, limit: u32) -> StoreFuture<usize>;

    /// Record transaction `tx` (open, no executions); `false` if the id is taken.
    fn insert_transaction(&self, tx: &Transaction) -> StoreFuture<bool>;
    /// Transaction `id`, with its executions (oldest first).
    fn transaction(&self, id: &str) -> StoreFuture<Option<Transaction>>;
    /// Change transaction `id` to `tx`'s state, end time and compensations,
    /// if it is in state `from` now; returns whether it was.
    fn update_transaction(&self, tx: &Transaction, from: TransactionState) -> StoreFuture<bool>;
    /// Ids of the transactions in `state`, oldest first.
    fn transactions_in(&self, state: TransactionState) -> StoreFuture<Vec<String>>;
    /// Transactions (in `state`, if given), newest first, at most `limit`.
    fn list_transactions(
        &self,
        state: Option<TransactionState>,
        limit: u32,
    ) -> StoreFuture<Vec<plexus_client::TransactionSummary>>;

    /// Store secret `name`'s `sealed` value (see `crate::secrets`), sealed
    /// with key `key_id`, replacing it; returns the time, ms.
    fn put_secret(&self, name: &str, sealed: Vec<u8>, key_id: &str) -> StoreFuture<u64>;
    /// Every secret, by name (sealed).
    fn secrets(&self) -> StoreFuture<Vec<SecretRow>>;
    /// Delete secret `name`; whether it existed.
    fn delete_secret(&self, name: &str) -> StoreFuture<bool>;

    /// Create hook `row.id`; `false` if the id is taken.
    fn insert_hook(&self, row: &HookRow) -> StoreFuture<bool>;
    /// Every hook, by id.
    fn hooks(&self) -> StoreFuture<Vec<HookRow>>;
    /// Hook `id` (one row read: deliveries come unauthenticated).
    fn hook(&self, id: &str) -> StoreFuture<Option<HookRow>>;
    /// Delete hook `id` and its deliveries; whether it existed.
    fn delete_hook(&self, id: &str) -> StoreFuture<bool>;
    /// Record delivery `delivery` of hook `hook` received at `at_ms`, unless
    /// it was recorded before (a replay: `false`); forget the hook's
    /// deliveries received before `forget_before_ms`. One transaction.
    fn claim_delivery(&self, hook: &str, delivery: &str, at_ms: u64, forget_before_ms: u64) -> StoreFuture<bool>;
    /// The execution a claimed delivery started, or `None`: it started none
    /// (forget it, so that the sender may try again).
    fn finish_delivery(&self, hook: &str, delivery: &str, execution: Option<&str>) -> StoreFuture<()>;
    /// Hook `hook`'s newest `limit` deliveries, newest first.
    fn deliveries(&self, hook: &str, limit: u32) -> StoreFuture<Vec<plexus_client::HookDelivery>>;

    /// Create schedule `id`; `false` if the id is taken.
    fn insert_schedule(&self, id: &str, spec: &Value, enabled: bool, created_at_ms: u64) -> StoreFuture<bool>;
    /// Every schedule, by id.
    fn schedules(&self) -> StoreFuture<Vec<ScheduleRow>>;
    /// Pause or resume schedule `id`; whether it exists.
    fn set_schedule_enabled(&self, id: &str, enabled: bool) -> StoreFuture<bool>;
    /// Delete schedule `id` (its fire history stays); whether it existed.
    fn delete_schedule(&self, id: &str) -> StoreFuture<bool>;
    /// Record how a fire time was handled; with `advance`, it becomes the
    /// schedule's last handled fire time.
    fn record_fire(&self, id: &str, fire: &Fire, advance: bool) -> StoreFuture<()>;
    /// The newest `limit` fires of schedule `id`, newest first.
    fn fires(&self, id: &str, limit: u32) -> StoreFuture<Vec<Fire>>;

    /// Whether the store is still the one opened (e.g. its file was not
    /// deleted or replaced): the outer error is the store's own failure,
    /// the inner one what changed.
    fn check_file(&self) -> StoreFuture<Result<(), FileChanged>>;
    /// Make one small real write: whether the store can be written now.
    fn probe_write(&self) -> StoreFuture<()>;
    /// The store's [`Cluster`] side, if several daemons can share it.
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }
}

/// What several daemons on one database need of the store, beyond
/// [`Store`]: node registration and leases, claims of executions, cancel
/// requests across nodes, and leaderships. [`PgStore`] implements it;
/// a [`SqliteStore`] (one daemon per file) does not.
///
/// Times are the database's clock (`clock_timestamp()`), so nodes whose
/// clocks disagree still agree on who holds a lease.
pub trait Cluster: Send + Sync + 'static {
    /// Register node `node` (again, after its row went or its lease ran
    /// out), with its lease running `lease_ms` from now. From now on this
    /// store's execution writes are fenced: they change an execution only
    /// while `node` owns it.
    ///
    /// # Errors
    /// [`StoreError::NodeIdInUse`] when a live node has that id.
    fn join(&self, node: &NodeJoin, lease_ms: u64) -> StoreFuture<()>;
    /// Renew `node`'s lease for `lease_ms` and publish its plugins and how
    /// many executions it runs. Returns the ids among `running` that it no
    /// longer owns (its lease had run out and another node claimed them),
    /// or `None` when `node` is not registered (its row was deleted, or it
    /// left): it must [`Cluster::join`] again.
    fn heartbeat(
        &self,
        node: &str,
        plugins: &[String],
        running: &[String],
        lease_ms: u64,
    ) -> StoreFuture<Option<Vec<String>>>;
    /// Hand back the unfinished executions `node` owns but does not run
    /// (not in `running`): a claim whose execution could not be read, or
    /// executions stopped here while the database could not be reached.
    /// Returns their ids.
    fn release(&self, node: &str, running: &[String]) -> StoreFuture<Vec<String>>;
    /// Claim at most `limit` unfinished executions that no live node owns
    /// and whose plugins are all in `plugins`, highest priority then oldest
    /// first (`FOR UPDATE SKIP LOCKED`: nodes claiming at once never wait
    /// for or take the same one). Returns their ids.
    fn claim(&self, node: &str, plugins: &[String], limit: u32) -> StoreFuture<Vec<String>>;
    /// Claim execution `id` for `purpose` (see [`Claim`]); whether `node`
    /// took it now.
    fn claim_one(&self, node: &str, id: &str, purpose: Claim<'_>) -> StoreFuture<bool>;
    /// Hand back the executions `node` owns but those in `running` (a
    /// clean stop: other nodes claim them at once, without waiting for the
    /// lease to run out; the ones still running here at the end of the grace
    /// period go when the lease does). The node is marked stopped.
    fn leave(&self, node: &str, running: &[String]) -> StoreFuture<()>;
    /// Take over the rollback of transaction `id` (state `rolling_back`) if
    /// no live node (nor `node`) runs it; whether `node` took it.
    fn claim_rollback(&self, node: &str, id: &str) -> StoreFuture<bool>;
    /// Ask for execution `id` to be cancelled by the node running it.
    fn request_cancel(&self, id: &str) -> StoreFuture<CancelRequest>;
    /// Executions `node` owns whose cancel was asked for on another node.
    fn cancel_requests(&self, node: &str) -> StoreFuture<Vec<String>>;
    /// Every node registered (stopped and lost ones for a day).
    fn nodes(&self) -> StoreFuture<Vec<plexus_client::NodeView>>;
    /// Take or renew leadership `name` (e.g. `scheduler`) for `lease_ms`;
    /// whether `node` holds it now. A leader that stops renewing loses it
    /// when its lease runs out.
    fn lead(&self, name: &str, node: &str, lease_ms: u64) -> StoreFuture<bool>;
    /// Which node owns execution `id`, and which plugins it needs that no
    /// live node has loaded (why it waits, when it does).
    fn placement(&self, id: &str) -> StoreFuture<Option<Placement>>;
}

/// Why a node claims one execution ([`Cluster::claim_one`]).
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// To run it: it has not ended, no live node (nor this one) owns it, and
    /// these names (the node's plugins and aliases) cover every plugin it needs.
    Run(&'a [String]),
    /// To cancel it here: it has not ended and no live node (nor this one)
    /// owns it. A cancel never takes an execution that ended meanwhile.
    Cancel,
    /// To compensate it (a transaction's rollback): it ended; whoever ran
    /// it no longer writes it.
    Compensate,
}

/// A node registering with [`Cluster::join`].
#[derive(Debug, Clone)]
pub struct NodeJoin {
    /// Node id.
    pub id: String,
    /// Where its API listens.
    pub address: Option<String>,
    /// Its plugin ids.
    pub plugins: Vec<String>,
    /// Its worker count.
    pub workers: u64,
}

/// What [`Cluster::request_cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRequest {
    /// No such execution.
    NotFound,
    /// It had ended, with this status.
    Ended(WorkflowStatus),
    /// A cancel was asked for already.
    AlreadyRequested,
    /// Asked for: the owner (if any) cancels it within a poll.
    Requested {
        /// The node running it (`None`: unclaimed).
        owner: Option<String>,
    },
}

/// Where an execution is in the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The node that owns it (`None`: unclaimed).
    pub owner: Option<String>,
    /// Plugins it needs that no live node has loaded.
    pub missing: Vec<String>,
}

/// How many read connections a [`SqliteStore`] keeps.
const READ_CONNECTIONS: usize = 4;

/// A handle on the state database; cheap to clone, safe to share. The
/// database's exclusive lock (`<path>.lock`) is held while any clone lives.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads (WAL: they never wait for the writer, and see commits only):
    /// [`READ_CONNECTIONS`] of them, so concurrent reads do not queue
    /// behind one another.
    reads: Arc<[Mutex<Connection>]>,
    /// Which read connection a read waits for when all are busy.
    next_read: Arc<AtomicUsize>,
    /// Writes, committed in groups. Declared before the lock: the write
    /// connection closes before the lock is released.
    writer: Arc<Writer>,
    path: Arc<PathBuf>,
    _lock: Arc<DbLock>,
    identity: Option<FileIdentity>,
    /// Test hook: writes fail as on a full disk.
    fail_writes: Arc<AtomicBool>,
}

pub use plexus_client::{
    Event, ExecutionMeta, ExecutionSummary, Fire, FireOutcome, SourceFormat, WorkflowVersion as WorkflowRow,
};
pub use plexus_client::{Transaction, TransactionState};
pub use postgres::{NOW_MS, PgStore, is_postgres_url, redact_url};

/// A `templates` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRow {
    /// Template id.
    pub id: String,
    /// The definition's text.
    pub source: String,
    /// When it was stored, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// A `hooks` row.
#[derive(Clone, PartialEq)]
pub struct HookRow {
    /// Hook id.
    pub id: String,
    /// Its spec (JSON, `plexus_client::HookSpec`).
    pub spec: Value,
    /// Its signing secret, sealed (`crate::secrets::Secrets::seal`, label `hook:<id>`).
    pub sealed: Vec<u8>,
    /// The id of the key it was sealed with.
    pub key_id: String,
    /// Created at, ms since the Unix epoch.
    pub created_at_ms: u64,
}

impl std::fmt::Debug for HookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HookRow({}, {}, key {})", self.id, self.spec, self.key_id)
    }
}

/// A `secrets` row: a value sealed by `crate::secrets::Keyring`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Secret name.
    pub name: String,
    /// Nonce ‖ ciphertext ‖ tag.
    pub sealed: Vec<u8>,
    /// The id of the key it was sealed with.
    pub key_id: String,
    /// When it was set, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretRow({}, key {}, {} bytes sealed)", self.name, self.key_id, self.sealed.len())
    }
}

/// A stored execution: its status, shared state and metadata.
#[derive(Debug, Clone)]
pub struct StoredExecution {
    /// Status with every step and compensation.
    pub status: ExecutionStatus,
    /// The shared state as last written.
    pub state: Map<String, Value>,
    /// Version, schedule, times.
    pub meta: ExecutionMeta,
}

/// Which executions [`Store::list_executions`] returns.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this workflow.
    pub workflow_id: Option<String>,
    /// Only executions with this status.
    pub status: Option<WorkflowStatus>,
    /// Only those started by this schedule.
    pub schedule_id: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<u32>,
    /// Only those that have not ended (pending, running, rolling back).
    pub active: bool,
    /// Only those older than this execution id (ids sort by start): the
    /// next page after a list whose last id it is.
    pub before: Option<String>,
}

/// One stored schedule.
#[derive(Debug, Clone)]
pub struct ScheduleRow {
    /// Schedule id.
    pub id: String,
    /// Its specification (JSON, see `daemon::schedule::ScheduleSpec`).
    pub spec: Value,
    /// Whether it fires.
    pub enabled: bool,
    /// The latest fire time handled (fired or skipped), ms since the Unix epoch.
    pub last_fire_ms: Option<u64>,
    /// Created at, ms since the Unix epoch.
    pub created_at_ms: u64,
}

fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, check it and migrate
    /// it to the current schema.
    ///
    /// In order: refuse a file or directory without write permission; take
    /// the database's exclusive lock (`<path>.lock`);
    /// open in WAL mode; run `PRAGMA quick_check`; migrate; and make one real
    /// write, so a database that cannot be written fails here rather than at
    /// the first transition.
    ///
    /// # Errors
    /// [`StoreError::Locked`] (another daemon uses it, named),
    /// [`StoreError::ReadOnly`], [`StoreError::Corrupt`] (`quick_check`
    /// failed); the file cannot be created or opened, is not a database, or
    /// was written by a newer daemon.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Migration {
                path: path.to_owned(),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        check_writable(path)?;
        let lock = DbLock::acquire(path)?;
        let sqlite = |source| StoreError::Sqlite { path: path.to_owned(), source };
        let mut conn = Connection::open(path).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sqlite)?;
        let problems: Vec<String> = conn
            .prepare("PRAGMA quick_check")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sqlite)?;
        if problems.first().map(String::as_str) != Some("ok") {
            let message = format!("quick_check: {}", problems.join("; "));
            return Err(StoreError::Corrupt { path: path.to_owned(), message });
        }
        let migrations = Migrations::new(schema::MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
        migrations
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Migration { path: path.to_owned(), message: e.to_string() })?;
        let read_only = |message: String| StoreError::ReadOnly { path: path.to_owned(), message };
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(sqlite)? {
            return Err(read_only("SQLite opened it read-only".into()));
        }
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite)?;
        conn.pragma_update(None, "user_version", version)
            .map_err(|e| read_only(format!("a test write failed: {e}")))?;
        let reads = (0..READ_CONNECTIONS)
            .map(|_| {
                let read = Connection::open(path).map_err(sqlite)?;
                read.busy_timeout(std::time::Duration::from_secs(5)).map_err(sqlite)?;
                Ok(Mutex::new(read))
            })
            .collect::<StoreResult<Arc<[_]>>>()?;
        let identity = FileIdentity::of(path).ok();
        let path = Arc::new(path.to_owned());
        Ok(Self {
            reads,
            next_read: Arc::default(),
            writer: Arc::new(Writer::new(conn, path.clone())),
            path,
            _lock: Arc::new(lock),
            identity,
            fail_writes: Arc::default(),
        })
    }

    /// `Ok` while the database path still names the file opened (it was not
    /// deleted or replaced); otherwise the cause, in one line.
    ///
    /// # Errors
    /// [`FileChanged`], naming the database.
    pub fn check_file(&self) -> Result<(), FileChanged> {
        match &self.identity {
            Some(identity) => identity.check(&self.path),
            None => Ok(()),
        }
    }

    /// Test hook: from now on every state write fails (`true`) as on a full
    /// disk, or works again (`false`).
    #[doc(hidden)]
    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Make one small real write (the schema version, unchanged): whether
    /// the database can be written now.
    pub fn probe_write(&self) -> StoreResult<()> {
        self.writable()?;
        self.write(|conn, err| {
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
            conn.pragma_update(None, "user_version", version).map_err(err)
        })
    }

    /// Run `f` in the writer's next group commit (see the `writer` module); `f` gets
    /// the write connection and the error mapping of this database.
    fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &dyn Fn(rusqlite::Error) -> StoreError) -> StoreResult<R> + Send + 'static,
    {
        let path = self.path.clone();
        self.writer.write(move |conn| f(conn, &|source| StoreError::Sqlite { path: (*path).clone(), source }))
    }

    /// Prepare `f` as a [`StoreWrite`] (refused at once while
    /// [`Self::fail_writes`] is on); `f` gets the write connection and the
    /// error mapping of this database.
    fn prepare<R, F>(&self, f: F) -> StoreWrite<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &dyn Fn(rusqlite::Error) -> StoreError) -> StoreResult<R> + Send + 'static,
    {
        let path = self.path.clone();
        let job = self.writable().map(|()| -> WriteFn<R> {
            Box::new(move |conn| f(conn, &|source| StoreError::Sqlite { path: (*path).clone(), source }))
        });
        StoreWrite { writer: self.writer.clone(), job }
    }

    /// The injected failure, while [`Self::fail_writes`] is on.
    fn writable(&self) -> StoreResult<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            let error = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL);
            let message = Some("database or disk is full (injected)".to_owned());
            return Err(self.err(rusqlite::Error::SqliteFailure(error, message)));
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read connection: a free one, else the next in turn once it is free.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        for read in self.reads.iter() {
            match read.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let turn = self.next_read.fetch_add(1, Ordering::Relaxed) % self.reads.len();
        self.reads[turn].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: (*self.path).clone(), source }
    }

    fn corrupt(&self, message: impl Into<String>) -> StoreError {
        StoreError::Corrupt { path: (*self.path).clone(), message: message.into() }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, what: &str, text: &str) -> StoreResult<T> {
        serde_json::from_str(text).map_err(|e| self.corrupt(format!("{what}: {e}")))
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::{ExecutionMeta, FireOutcome, SqliteStore as Store};
    use plexus_workflow::status::{ExecutionStatus, StepRecord, StepStatus, WorkflowStatus};
    use serde_json::{Map, Value, json};

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_shared_state_is_written_a_changed_key_at_a_time_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let step = |i: usize| StepRecord {
            id: format!("s{i}"),
            plugin_id: "p".into(),
            operation: "op".into(),
            status: StepStatus::Completed,
            output: None,
            error: None,
            reason: None,
            attempts: 1,
            started_at_ms: Some(1),
            ended_at_ms: Some(2),
            duration_ms: Some(1),
            metrics: Default::default(),
            progress: None,
            usage: None,
            artifacts: Default::default(),
        };
        let status = ExecutionStatus {
            execution_id: "e1".into(),
            workflow_id: "w".into(),
            status: WorkflowStatus::Running,
            progress: 0.0,
            current_steps: vec![],
            current_step: None,
            completed_steps: 0,
            total_steps: 3,
            inputs: Map::new(),
            steps: (0..3).map(step).collect(),
            compensations: vec![],
            outputs: Map::new(),
            error: None,
            started_at_ms: Some(1),
            ended_at_ms: None,
        };
        let meta = ExecutionMeta { workflow_version: 1, created_at_ms: 1, runs: 1, ..Default::default() };
        store.insert_execution(&status, &meta, &map(json!({"start": 1, "a": "old"}))).unwrap();
        store.update_step("e1", 0, &status.steps[0], Some(&map(json!({"a": "new"})))).commit().unwrap();
        store.update_step("e1", 1, &status.steps[1], Some(&map(json!({"b": [1, 2]})))).commit().unwrap();
        store.update_step("e1", 2, &status.steps[2], None).commit().unwrap();
        let entries: i64 = store.conn().query_row("SELECT COUNT(*) FROM state_entries", [], |r| r.get(0)).unwrap();
        assert_eq!(entries, 2, "a row per changed key, the start state untouched");
        let stored = store.execution("e1").unwrap().unwrap();
        assert_eq!(Value::Object(stored.state), json!({"start": 1, "a": "new", "b": [1, 2]}));
        // A snapshot writes the whole state again and drops the rows it covers.
        store.record_snapshot(&status, &map(json!({"all": true}))).commit().unwrap();
        let entries: i64 = store.conn().query_row("SELECT COUNT(*) FROM state_entries", [], |r| r.get(0)).unwrap();
        assert_eq!(entries, 0);
        assert_eq!(Value::Object(store.execution("e1").unwrap().unwrap().state), json!({"all": true}));
    }

    #[test]
    fn a_completed_steps_output_is_stored_once_and_the_state_refers_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let marker = "output-marker-".repeat(50);
        let mut step = StepRecord {
            id: "merge".into(),
            plugin_id: "p".into(),
            operation: "op".into(),
            status: StepStatus::Running,
            output: None,
            error: None,
            reason: None,
            attempts: 1,
            started_at_ms: Some(1),
            ended_at_ms: None,
            duration_ms: None,
            metrics: Default::default(),
            progress: None,
            artifacts: Default::default(),
            usage: None,
        };
        let mut status = ExecutionStatus {
            execution_id: "e1".into(),
            workflow_id: "w".into(),
            status: WorkflowStatus::Running,
            progress: 0.0,
            current_steps: vec![],
            current_step: None,
            completed_steps: 0,
            total_steps: 1,
            inputs: Map::new(),
            steps: vec![step.clone()],
            compensations: vec![],
            outputs: Map::new(),
            error: None,
            started_at_ms: Some(1),
            ended_at_ms: None,
        };
        let meta = ExecutionMeta { workflow_version: 1, created_at_ms: 1, runs: 1, ..Default::default() };
        store.insert_execution(&status, &meta, &Map::new()).unwrap();
        // While it runs, the plugin sets `n` through the host's state service.
        store.update_step("e1", 0, &step, Some(&map(json!({"n": 1})))).commit().unwrap();
        // It completes: pipeline mode merged its output's keys; `n` was then
        // set again to a value the output does not hold.
        step.status = StepStatus::Completed;
        step.output = Some(json!({"big": marker, "n": 2}));
        step.ended_at_ms = Some(2);
        store.update_step("e1", 0, &step, Some(&map(json!({"big": marker, "n": 3})))).commit().unwrap();

        let copies: i64 = store
            .conn()
            .query_row(
                "SELECT (SELECT COUNT(*) FROM steps WHERE instr(record, ?1) > 0)
                      + (SELECT COUNT(*) FROM state_entries WHERE instr(value, ?1) > 0)
                      + (SELECT COUNT(*) FROM events WHERE instr(message, ?1) > 0)
                      + (SELECT COUNT(*) FROM executions WHERE instr(state, ?1) > 0)",
                [&marker],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(copies, 1, "the output is in the step's record and nowhere else");
        let rows: Vec<(String, Option<String>, Option<i64>)> = store
            .conn()
            .prepare("SELECT key, value, from_step FROM state_entries ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![("big".into(), None, Some(0)), ("n".into(), Some("3".into()), None)]);
        let stored = store.execution("e1").unwrap().unwrap();
        assert_eq!(Value::Object(stored.state), json!({"big": marker, "n": 3}));

        // Were the completed record rewritten without that output (the
        // engine does not), the state keeps its value as a copy.
        let mut rewritten = step.clone();
        rewritten.output = None;
        store.update_step("e1", 0, &rewritten, None).commit().unwrap();
        assert_eq!(Value::Object(store.execution("e1").unwrap().unwrap().state), json!({"big": marker, "n": 3}));
        store.update_step("e1", 0, &step, Some(&map(json!({"big": marker})))).commit().unwrap();

        // A snapshot still writes the whole state, and a state that refers
        // to an output that is not there is reported, not invented.
        status.steps = vec![step.clone()];
        store.record_snapshot(&status, &map(json!({"big": marker}))).commit().unwrap();
        assert_eq!(Value::Object(store.execution("e1").unwrap().unwrap().state), json!({"big": marker}));
        store.update_step("e1", 0, &step, Some(&map(json!({"big": marker})))).commit().unwrap();
        store.conn().execute("UPDATE steps SET record = json_remove(record, '$.output.big')", []).unwrap();
        let err = store.execution("e1").unwrap_err().to_string();
        assert!(err.contains("state entry `big` refers to step"), "{err}");
    }

    #[test]
    fn the_log_reads_back_as_typed_transitions() {
        use plexus_client::Transition;
        use plexus_workflow::status::CompensationRecord;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let step = StepRecord {
            id: "s".into(),
            plugin_id: "p".into(),
            operation: "op".into(),
            status: StepStatus::Running,
            output: None,
            error: None,
            reason: None,
            attempts: 1,
            started_at_ms: Some(1),
            ended_at_ms: None,
            duration_ms: None,
            metrics: Default::default(),
            artifacts: Default::default(),
            progress: None,
            usage: None,
        };
        let mut status = ExecutionStatus {
            execution_id: "e1".into(),
            workflow_id: "w".into(),
            status: WorkflowStatus::Pending,
            progress: 0.0,
            current_steps: vec![],
            current_step: None,
            completed_steps: 0,
            total_steps: 1,
            inputs: Map::new(),
            steps: vec![step.clone()],
            compensations: vec![],
            outputs: Map::new(),
            error: None,
            started_at_ms: None,
            ended_at_ms: None,
        };
        let meta = ExecutionMeta { workflow_version: 1, created_at_ms: 1, runs: 1, ..Default::default() };
        store.insert_execution(&status, &meta, &Map::new()).unwrap();
        store.update_step("e1", 0, &step, None).commit().unwrap();
        let undo = CompensationRecord {
            step: "s".into(),
            plugin_id: "p".into(),
            operation: "undo".into(),
            status: StepStatus::Failed,
            output: None,
            error: None,
            duration_ms: 3,
        };
        store.put_compensation("e1", 0, &undo).commit().unwrap();
        status.status = WorkflowStatus::RollbackFailed;
        store.update_execution(&status).commit().unwrap();
        let events = store.events("e1", 0, 10).unwrap();
        let transitions: Vec<Transition> = events.iter().map(|e| e.transition).collect();
        assert_eq!(
            transitions,
            [
                Transition::Execution(WorkflowStatus::Pending),
                Transition::Step(StepStatus::Running),
                Transition::Compensation(StepStatus::Failed),
                Transition::Execution(WorkflowStatus::RollbackFailed),
            ]
        );
        assert_eq!(events[2].step_id.as_deref(), Some("s"));
        // A line no daemon writes is reported, not guessed at.
        store.conn().execute("UPDATE events SET status = 'exploded' WHERE seq = ?1", [events[3].seq]).unwrap();
        let err = store.events("e1", 0, 10).unwrap_err().to_string();
        assert!(err.contains("unknown status `exploded`"), "{err}");
    }

    #[test]
    fn a_database_from_before_outputs_were_stored_once_keeps_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            let v3 =
                super::Migrations::new(super::schema::MIGRATIONS[..3].iter().map(|sql| super::M::up(sql)).collect());
            v3.to_latest(&mut conn).unwrap();
            conn.execute_batch(
                "INSERT INTO executions (id, workflow_id, workflow_version, status, inputs, state, created_at_ms)
                 VALUES ('e1', 'w', 1, 'completed', '{}', '{\"start\":1}', 1);
                 INSERT INTO state_entries (execution_id, key, value) VALUES ('e1', 'k', '[1,2]');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let stored = store.execution("e1").unwrap().unwrap();
        assert_eq!(Value::Object(stored.state), json!({"start": 1, "k": [1, 2]}));
    }

    #[test]
    fn reads_do_not_queue_behind_one_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        // Every read connection held at once (as by that many API reads):
        // each is its own, and all see the database.
        let held: Vec<_> = (0..super::READ_CONNECTIONS).map(|_| store.conn()).collect();
        for conn in &held {
            let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0)).unwrap();
            assert!(tables > 0);
        }
        let distinct: std::collections::HashSet<*const rusqlite::Connection> =
            held.iter().map(|c| &**c as *const _).collect();
        assert_eq!(distinct.len(), super::READ_CONNECTIONS);
    }

    #[test]
    fn fire_outcomes_are_stored_and_served_under_one_name() {
        let all = [
            FireOutcome::Started,
            FireOutcome::Manual,
            FireOutcome::Skipped,
            FireOutcome::Queued,
            FireOutcome::Jittered,
            FireOutcome::Resumed,
            FireOutcome::Failed,
        ];
        for outcome in all {
            assert_eq!(FireOutcome::parse(outcome.as_str()), Some(outcome));
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
        assert_eq!(FireOutcome::parse("exploded"), None);
    }
}
