//! [`Store`]: the daemon's durable state in one embedded SQLite file.
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
//! `compensations`, `schedules` and `fires` (each schedule's fire history).
//!
//! Writes go through one write connection that commits them in groups
//! ([`writer`]): a write returns once it is committed, and writes arriving
//! while a commit is in flight share the next one. Reads use a connection of
//! their own and see committed data only.

mod writer;

use super::dbfile::{DbLock, FileIdentity, check_writable};
use writer::Writer;
use plexus_workflow::status::{CompensationRecord, ExecutionStatus, StepRecord, WorkflowStatus, epoch_ms};
use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

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
    /// A file next to the database (its lock file) could not be used.
    #[error("state database lock file {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

/// The result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE workflows (
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        source TEXT NOT NULL,
        format TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (id, version)
    );
    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        workflow_version INTEGER NOT NULL,
        status TEXT NOT NULL,
        inputs TEXT NOT NULL,
        outputs TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        state TEXT NOT NULL DEFAULT '{}',
        schedule_id TEXT,
        scheduled_at_ms INTEGER,
        created_at_ms INTEGER NOT NULL,
        started_at_ms INTEGER,
        ended_at_ms INTEGER,
        runs INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX executions_by_status ON executions (status);
    CREATE INDEX executions_by_workflow ON executions (workflow_id);
    CREATE TABLE steps (
        execution_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (execution_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        execution_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        step_id TEXT,
        attempt INTEGER,
        status TEXT NOT NULL,
        message TEXT
    );
    CREATE INDEX events_by_execution ON events (execution_id, seq);
    CREATE TABLE compensations (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at_ms INTEGER NOT NULL,
        last_fire_ms INTEGER
    );
    CREATE TABLE fires (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule_id TEXT NOT NULL,
        fire_time_ms INTEGER NOT NULL,
        fired_at_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        execution_id TEXT,
        message TEXT
    );
    CREATE INDEX fires_by_schedule ON fires (schedule_id, seq);",
];

/// A handle on the state database; cheap to clone, safe to share. The
/// database's exclusive lock ([`DbLock`]) is held while any clone lives.
#[derive(Clone)]
pub struct Store {
    /// Reads (WAL: they never wait for the writer, and see commits only).
    conn: Arc<Mutex<Connection>>,
    /// Writes, committed in groups. Declared before the lock: the write
    /// connection closes before the lock is released.
    writer: Arc<Writer>,
    path: Arc<PathBuf>,
    _lock: Arc<DbLock>,
    identity: Option<FileIdentity>,
    /// Test hook: writes fail as on a full disk.
    fail_writes: Arc<AtomicBool>,
}

/// One stored version of a workflow.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowRow {
    /// Workflow id.
    pub id: String,
    /// 1, 2, … in registration order.
    pub version: u32,
    /// The definition as registered (YAML or JSON text).
    pub source: String,
    /// `yaml` or `json`.
    pub format: String,
    /// Registration time, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// The execution-level facts the engine's status does not hold.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExecutionMeta {
    /// The workflow version the execution is pinned to.
    pub workflow_version: u32,
    /// The schedule that started it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// The fire time it was scheduled for, ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_at_ms: Option<u64>,
    /// When it was accepted, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// 1, plus one per `exec retry`.
    pub runs: u32,
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

/// A line of an execution's log (one transition).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increases with every event of the database (events are never deleted,
    /// so the rowid only grows); pass it back as `after`.
    pub seq: i64,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The step, for step transitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// The attempt, for step transitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The new status.
    pub status: String,
    /// Error or reason, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Which executions [`Store::list_executions`] returns.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this workflow.
    pub workflow_id: Option<String>,
    /// Only these statuses (`running`, `failed`, …).
    pub status: Option<String>,
    /// Only those started by this schedule.
    pub schedule_id: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<u32>,
}

/// A summary row of [`Store::list_executions`].
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionSummary {
    /// Execution id.
    pub execution_id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// Pinned workflow version.
    pub workflow_version: u32,
    /// Status.
    pub status: String,
    /// The error, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The schedule that started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// Accepted at, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Ended at, ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
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

/// One entry of a schedule's fire history.
#[derive(Debug, Clone, Serialize)]
pub struct Fire {
    /// The fire time, ms since the Unix epoch.
    pub fire_time_ms: u64,
    /// When it was handled, ms since the Unix epoch.
    pub fired_at_ms: u64,
    /// `started`, `skipped`, `queued` or `failed`.
    pub outcome: String,
    /// The execution started, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

impl Store {
    /// Open (creating if needed) the database at `path`, check it and migrate
    /// it to the current schema.
    ///
    /// In order: refuse a file or directory without write permission; take
    /// the database's exclusive lock (`<path>.lock`, see [`super::dbfile`]);
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
        let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
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
        let read = Connection::open(path).map_err(sqlite)?;
        read.busy_timeout(std::time::Duration::from_secs(5)).map_err(sqlite)?;
        let identity = FileIdentity::of(path).ok();
        let path = Arc::new(path.to_owned());
        Ok(Self {
            conn: Arc::new(Mutex::new(read)),
            writer: Arc::new(Writer::new(conn, path.clone())),
            path,
            _lock: Arc::new(lock),
            identity,
            fail_writes: Arc::default(),
        })
    }

    /// `Ok` while the database path still names the file opened (it was not
    /// deleted or replaced); otherwise the cause, in one line.
    pub fn check_file(&self) -> Result<(), String> {
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

    /// Run `f` in the writer's next group commit (see [`writer`]); `f` gets
    /// the write connection and the error mapping of this database.
    fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &dyn Fn(rusqlite::Error) -> StoreError) -> StoreResult<R> + Send + 'static,
    {
        let path = self.path.clone();
        self.writer.write(move |conn| f(conn, &|source| StoreError::Sqlite { path: (*path).clone(), source }))
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

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
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

    // ----- workflows -----

    /// Store `source` as the newest version of workflow `id`. Returns the
    /// version and whether it is new: registering the same text again returns
    /// the current version unchanged.
    pub fn put_workflow(&self, id: &str, source: &str, format: &str) -> StoreResult<(u32, bool)> {
        self.writable()?;
        let (id, source, format) = (id.to_owned(), source.to_owned(), format.to_owned());
        self.write(move |conn, err| {
            let latest: Option<(u32, String, bool)> = conn
                .query_row(
                    "SELECT version, source, deleted FROM workflows WHERE id = ?1 ORDER BY version DESC LIMIT 1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
                )
                .optional()
                .map_err(err)?;
            if let Some((version, text, false)) = &latest
                && *text == source
            {
                return Ok((*version, false));
            }
            let version = latest.map_or(1, |(v, _, _)| v + 1);
            conn.execute(
                "INSERT INTO workflows (id, version, source, format, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, version, source, format, now_ms() as i64],
            )
            .map_err(err)?;
            conn.execute("UPDATE workflows SET deleted = 0 WHERE id = ?1", [&id]).map_err(err)?;
            Ok((version, true))
        })
    }

    /// Version `version` of workflow `id` (deleted ones too: executions stay
    /// pinned to them), or its newest live version when `version` is `None`.
    pub fn workflow(&self, id: &str, version: Option<u32>) -> StoreResult<Option<WorkflowRow>> {
        let conn = self.conn();
        let row = |r: &rusqlite::Row| {
            Ok(WorkflowRow {
                id: r.get(0)?,
                version: r.get(1)?,
                source: r.get(2)?,
                format: r.get(3)?,
                created_at_ms: r.get::<_, i64>(4)? as u64,
            })
        };
        let result = match version {
            Some(v) => conn.query_row(
                "SELECT id, version, source, format, created_at_ms FROM workflows WHERE id = ?1 AND version = ?2",
                params![id, v],
                row,
            ),
            None => conn.query_row(
                "SELECT id, version, source, format, created_at_ms FROM workflows
                 WHERE id = ?1 AND deleted = 0 ORDER BY version DESC LIMIT 1",
                [id],
                row,
            ),
        };
        result.optional().map_err(|e| self.err(e))
    }

    /// The newest version of every live workflow, by id.
    pub fn workflows(&self) -> StoreResult<Vec<WorkflowRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, MAX(version), source, format, created_at_ms FROM workflows
                 WHERE deleted = 0 GROUP BY id ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(WorkflowRow {
                id: r.get(0)?,
                version: r.get(1)?,
                source: r.get(2)?,
                format: r.get(3)?,
                created_at_ms: r.get::<_, i64>(4)? as u64,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Mark workflow `id` deleted. Its versions stay for the executions
    /// pinned to them. Returns whether it existed.
    pub fn delete_workflow(&self, id: &str) -> StoreResult<bool> {
        self.writable()?;
        let id = id.to_owned();
        let n = self.write(move |conn, err| {
            conn.execute("UPDATE workflows SET deleted = 1 WHERE id = ?1 AND deleted = 0", [id]).map_err(err)
        })?;
        Ok(n > 0)
    }

    // ----- executions -----

    /// Record a new execution (status pending) with its steps and initial shared state.
    pub fn insert_execution(
        &self,
        status: &ExecutionStatus,
        meta: &ExecutionMeta,
        state: &Map<String, Value>,
    ) -> StoreResult<()> {
        self.writable()?;
        let id = status.execution_id.clone();
        let workflow_id = status.workflow_id.clone();
        let workflow_version = meta.workflow_version;
        let status_text = status.status.as_str();
        let inputs = serde_json::to_string(&status.inputs).unwrap_or_else(|_| "{}".into());
        let schedule_id = meta.schedule_id.clone();
        let scheduled_at_ms = meta.scheduled_at_ms.map(|t| t as i64);
        let created_at_ms = meta.created_at_ms as i64;
        let state = serde_json::to_string(state).unwrap_or_else(|_| "{}".into());
        let steps: Vec<String> = status.steps.iter().map(json).collect();
        self.write(move |tx, err| {
            tx.prepare_cached(
                "INSERT INTO executions (id, workflow_id, workflow_version, status, inputs, schedule_id,
                    scheduled_at_ms, created_at_ms, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    workflow_id,
                    workflow_version,
                    status_text,
                    inputs,
                    schedule_id,
                    scheduled_at_ms,
                    created_at_ms,
                    state,
                ])
            })
            .map_err(err)?;
            let mut stmt =
                tx.prepare_cached("INSERT INTO steps (execution_id, idx, record) VALUES (?1, ?2, ?3)").map_err(err)?;
            for (i, step) in steps.iter().enumerate() {
                stmt.execute(params![id, i as i64, step]).map_err(err)?;
            }
            tx.prepare_cached("INSERT INTO events (execution_id, at_ms, status) VALUES (?1, ?2, 'pending')")
                .and_then(|mut s| s.execute(params![id, created_at_ms]))
                .map_err(err)?;
            Ok(())
        })
    }

    /// Write the execution-level fields of `status` and log the transition.
    pub fn update_execution(&self, status: &ExecutionStatus) -> StoreResult<()> {
        self.writable()?;
        let id = status.execution_id.clone();
        let status_text = status.status.as_str();
        let outputs = serde_json::to_string(&status.outputs).unwrap_or_else(|_| "{}".into());
        let error = status.error.clone();
        let started_at_ms = status.started_at_ms.map(|t| t as i64);
        let ended_at_ms = status.ended_at_ms.map(|t| t as i64);
        let at = status.ended_at_ms.or(status.started_at_ms).unwrap_or_else(now_ms) as i64;
        self.write(move |tx, err| {
            tx.prepare_cached(
                "UPDATE executions SET status = ?2, outputs = ?3, error = ?4, started_at_ms = ?5, ended_at_ms = ?6
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, status_text, outputs, error, started_at_ms, ended_at_ms]))
            .map_err(err)?;
            tx.prepare_cached("INSERT INTO events (execution_id, at_ms, status, message) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![id, at, status_text, error]))
                .map_err(err)?;
            Ok(())
        })
    }

    /// Write step `index`'s record (and the shared state, when given) and
    /// log the transition, in one transaction.
    pub fn update_step(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> StoreResult<()> {
        self.writable()?;
        let id = execution_id.to_owned();
        let record_json = json(record);
        let state = state.map(|state| serde_json::to_string(state).unwrap_or_else(|_| "{}".into()));
        let at = record.ended_at_ms.filter(|_| record.status.is_terminal()).unwrap_or_else(now_ms) as i64;
        let message = record.error.as_ref().map(|e| e.message.clone()).or_else(|| record.reason.clone());
        let message = if record.status.is_terminal() || record.status == plexus_workflow::StepStatus::Retrying {
            message
        } else {
            None
        };
        let (step_id, attempts, status_text) = (record.id.clone(), record.attempts, record.status.as_str());
        self.write(move |tx, err| {
            tx.prepare_cached("INSERT OR REPLACE INTO steps (execution_id, idx, record) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![id, index as i64, record_json]))
                .map_err(err)?;
            if let Some(state) = state {
                tx.prepare_cached("UPDATE executions SET state = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![id, state]))
                    .map_err(err)?;
            }
            tx.prepare_cached(
                "INSERT INTO events (execution_id, at_ms, step_id, attempt, status, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| s.execute(params![id, at, step_id, attempts, status_text, message]))
            .map_err(err)?;
            Ok(())
        })
    }

    /// Record compensation number `seq` of an execution.
    pub fn put_compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord) -> StoreResult<()> {
        self.writable()?;
        let id = execution_id.to_owned();
        let record_json = json(record);
        let step = record.step.clone();
        let status_text = format!("compensation {}", record.status.as_str());
        let message = record.error.as_ref().map(|e| e.message.clone());
        self.write(move |tx, err| {
            tx.execute(
                "INSERT OR REPLACE INTO compensations (execution_id, seq, record) VALUES (?1, ?2, ?3)",
                params![id, seq as i64, record_json],
            )
            .map_err(err)?;
            tx.execute(
                "INSERT INTO events (execution_id, at_ms, step_id, status, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, now_ms() as i64, step, status_text, message],
            )
            .map_err(err)?;
            Ok(())
        })
    }

    /// Prepare a finished execution for `exec retry`: steps that did not
    /// complete go back to pending with no attempts, compensations are
    /// forgotten (they stay in the log), the run counter goes up.
    ///
    /// The change is conditional: it happens only if the stored execution is
    /// still failed, cancelled or rollback-failed, so of two retries racing
    /// one wins. Returns `false` (and changes nothing) when it is not.
    pub fn reset_for_retry(&self, stored: &mut StoredExecution) -> StoreResult<bool> {
        self.writable()?;
        let id = stored.status.execution_id.clone();
        let mut reset = stored.clone();
        for step in &mut reset.status.steps {
            if step.status != plexus_workflow::StepStatus::Completed {
                step.status = plexus_workflow::StepStatus::Pending;
                step.attempts = 0;
                step.error = None;
                step.reason = None;
                step.output = None;
                step.started_at_ms = None;
                step.ended_at_ms = None;
                step.duration_ms = None;
            }
        }
        reset.status.status = WorkflowStatus::Pending;
        reset.status.error = None;
        reset.status.ended_at_ms = None;
        reset.status.compensations.clear();
        reset.meta.runs += 1;
        let runs = reset.meta.runs;
        let steps: Vec<String> = reset.status.steps.iter().map(json).collect();
        let changed = self.write(move |tx, err| {
            let changed = tx
                .execute(
                    "UPDATE executions SET status = 'pending', error = NULL, ended_at_ms = NULL, runs = ?2
                     WHERE id = ?1 AND status IN ('failed', 'cancelled', 'rollback_failed')",
                    params![id, runs],
                )
                .map_err(err)?;
            if changed == 0 {
                return Ok(false);
            }
            for (i, step) in steps.iter().enumerate() {
                tx.execute(
                    "INSERT OR REPLACE INTO steps (execution_id, idx, record) VALUES (?1, ?2, ?3)",
                    params![id, i as i64, step],
                )
                .map_err(err)?;
            }
            tx.execute("DELETE FROM compensations WHERE execution_id = ?1", [&id]).map_err(err)?;
            tx.execute(
                "INSERT INTO events (execution_id, at_ms, status, message) VALUES (?1, ?2, 'pending', ?3)",
                params![id, now_ms() as i64, format!("retry (run {runs})")],
            )
            .map_err(err)?;
            Ok(true)
        })?;
        if changed {
            *stored = reset;
        }
        Ok(changed)
    }

    /// Write everything about a running execution at once — status, every
    /// step, every compensation, the shared state — and log one event saying
    /// so. Used after state writes failed, to record what happened meanwhile
    /// before the execution goes on.
    pub fn record_snapshot(&self, status: &ExecutionStatus, state: &Map<String, Value>) -> StoreResult<()> {
        self.writable()?;
        let id = status.execution_id.clone();
        let status_text = status.status.as_str();
        let outputs = serde_json::to_string(&status.outputs).unwrap_or_else(|_| "{}".into());
        let error = status.error.clone();
        let started_at_ms = status.started_at_ms.map(|t| t as i64);
        let ended_at_ms = status.ended_at_ms.map(|t| t as i64);
        let state = serde_json::to_string(state).unwrap_or_else(|_| "{}".into());
        let steps: Vec<String> = status.steps.iter().map(json).collect();
        let compensations: Vec<String> = status.compensations.iter().map(json).collect();
        self.write(move |tx, err| {
            tx.execute(
                "UPDATE executions SET status = ?2, outputs = ?3, error = ?4, started_at_ms = ?5, ended_at_ms = ?6,
                    state = ?7 WHERE id = ?1",
                params![id, status_text, outputs, error, started_at_ms, ended_at_ms, state],
            )
            .map_err(err)?;
            for (i, step) in steps.iter().enumerate() {
                tx.execute(
                    "INSERT OR REPLACE INTO steps (execution_id, idx, record) VALUES (?1, ?2, ?3)",
                    params![id, i as i64, step],
                )
                .map_err(err)?;
            }
            tx.execute("DELETE FROM compensations WHERE execution_id = ?1", [&id]).map_err(err)?;
            for (seq, record) in compensations.iter().enumerate() {
                tx.execute(
                    "INSERT INTO compensations (execution_id, seq, record) VALUES (?1, ?2, ?3)",
                    params![id, seq as i64, record],
                )
                .map_err(err)?;
            }
            tx.execute(
                "INSERT INTO events (execution_id, at_ms, status, message) VALUES (?1, ?2, ?3, ?4)",
                params![id, now_ms() as i64, status_text, "recorded again after state writes failed"],
            )
            .map_err(err)?;
            Ok(())
        })
    }

    /// Everything stored about execution `id`.
    pub fn execution(&self, id: &str) -> StoreResult<Option<StoredExecution>> {
        let conn = self.conn();
        type Head = (String, u32, String, String, String, Option<String>, String, Option<String>);
        type Times = (Option<i64>, i64, Option<i64>, Option<i64>, u32);
        let head: Option<(Head, Times)> = conn
            .query_row(
                "SELECT workflow_id, workflow_version, status, inputs, outputs, error, state, schedule_id,
                        scheduled_at_ms, created_at_ms, started_at_ms, ended_at_ms, runs
                 FROM executions WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?),
                        (r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?),
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(((workflow_id, version, status, inputs, outputs, error, state, schedule_id), times)) = head else {
            return Ok(None);
        };
        let (scheduled_at, created_at, started_at, ended_at, runs) = times;
        let steps: Vec<StepRecord> = {
            let mut stmt = conn
                .prepare_cached("SELECT record FROM steps WHERE execution_id = ?1 ORDER BY idx")
                .map_err(|e| self.err(e))?;
            let texts: Vec<String> =
                stmt.query_map([id], |r| r.get(0)).and_then(Iterator::collect).map_err(|e| self.err(e))?;
            texts.iter().map(|t| self.parse("step", t)).collect::<StoreResult<_>>()?
        };
        let compensations: Vec<CompensationRecord> = {
            let mut stmt = conn
                .prepare_cached("SELECT record FROM compensations WHERE execution_id = ?1 ORDER BY seq")
                .map_err(|e| self.err(e))?;
            let texts: Vec<String> =
                stmt.query_map([id], |r| r.get(0)).and_then(Iterator::collect).map_err(|e| self.err(e))?;
            texts.iter().map(|t| self.parse("compensation", t)).collect::<StoreResult<_>>()?
        };
        let status_value: WorkflowStatus = self.parse("status", &format!("\"{status}\""))?;
        let mut status = ExecutionStatus {
            execution_id: id.to_owned(),
            workflow_id,
            status: status_value,
            progress: 0.0,
            current_steps: Vec::new(),
            completed_steps: 0,
            total_steps: steps.len(),
            inputs: self.parse("inputs", &inputs)?,
            steps,
            compensations,
            outputs: self.parse("outputs", &outputs)?,
            error,
            started_at_ms: started_at.map(|t| t as u64),
            ended_at_ms: ended_at.map(|t| t as u64),
        };
        status.refresh();
        Ok(Some(StoredExecution {
            status,
            state: self.parse("state", &state)?,
            meta: ExecutionMeta {
                workflow_version: version,
                schedule_id,
                scheduled_at_ms: scheduled_at.map(|t| t as u64),
                created_at_ms: created_at as u64,
                runs,
            },
        }))
    }

    /// The status of execution `id` (`running`, `failed`, …), if it exists.
    pub fn execution_status(&self, id: &str) -> StoreResult<Option<String>> {
        let conn = self.conn();
        conn.prepare_cached("SELECT status FROM executions WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Executions matching `filter`, newest first.
    pub fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<Vec<ExecutionSummary>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, workflow_id, workflow_version, status, error, schedule_id, created_at_ms, ended_at_ms
                 FROM executions
                 WHERE (?1 IS NULL OR workflow_id = ?1) AND (?2 IS NULL OR status = ?2)
                   AND (?3 IS NULL OR schedule_id = ?3)
                 ORDER BY id DESC LIMIT ?4",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![filter.workflow_id, filter.status, filter.schedule_id, filter.limit.unwrap_or(100)],
            |r| {
                Ok(ExecutionSummary {
                    execution_id: r.get(0)?,
                    workflow_id: r.get(1)?,
                    workflow_version: r.get(2)?,
                    status: r.get(3)?,
                    error: r.get(4)?,
                    schedule_id: r.get(5)?,
                    created_at_ms: r.get::<_, i64>(6)? as u64,
                    ended_at_ms: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
                })
            },
        )
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Ids of executions that had not ended (pending, running, rolling back),
    /// oldest first: the ones to resume after a restart.
    pub fn unfinished_executions(&self) -> StoreResult<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM executions WHERE status IN ('pending', 'running', 'rolling_back') ORDER BY id")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| r.get(0)).and_then(Iterator::collect).map_err(|e| self.err(e))
    }

    /// Count of executions per status.
    pub fn execution_counts(&self) -> StoreResult<Vec<(String, u64)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT status, COUNT(*) FROM executions GROUP BY status").map_err(|e| self.err(e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }

    /// The log of execution `id` after event `after` (exclusive), at most `limit` lines.
    pub fn events(&self, id: &str, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, at_ms, step_id, attempt, status, message FROM events
                 WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![id, after, limit], |r| {
            Ok(Event {
                seq: r.get(0)?,
                at_ms: r.get::<_, i64>(1)? as u64,
                step_id: r.get(2)?,
                attempt: r.get(3)?,
                status: r.get(4)?,
                message: r.get(5)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    // ----- schedules -----

    /// Create schedule `id` at `created_at_ms` (intervals count from it).
    /// Returns `false` if the id is taken.
    pub fn insert_schedule(&self, id: &str, spec: &Value, enabled: bool, created_at_ms: u64) -> StoreResult<bool> {
        self.writable()?;
        let (id, spec) = (id.to_owned(), spec.to_string());
        let n = self.write(move |conn, err| {
            conn.execute(
                "INSERT OR IGNORE INTO schedules (id, spec, enabled, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, spec, enabled, created_at_ms as i64],
            )
            .map_err(err)
        })?;
        Ok(n > 0)
    }

    /// Every schedule, by id.
    pub fn schedules(&self) -> StoreResult<Vec<ScheduleRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, spec, enabled, last_fire_ms, created_at_ms FROM schedules ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, String, bool, Option<i64>, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(id, spec, enabled, last, created)| {
                Ok(ScheduleRow {
                    spec: self.parse("schedule", &spec)?,
                    id,
                    enabled,
                    last_fire_ms: last.map(|t| t as u64),
                    created_at_ms: created as u64,
                })
            })
            .collect()
    }

    /// Pause or resume schedule `id`. Returns whether it exists.
    pub fn set_schedule_enabled(&self, id: &str, enabled: bool) -> StoreResult<bool> {
        self.writable()?;
        let id = id.to_owned();
        let n = self.write(move |conn, err| {
            conn.execute("UPDATE schedules SET enabled = ?2 WHERE id = ?1", params![id, enabled]).map_err(err)
        })?;
        Ok(n > 0)
    }

    /// Delete schedule `id` (its fire history stays). Returns whether it existed.
    pub fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        self.writable()?;
        let id = id.to_owned();
        let n = self.write(move |conn, err| conn.execute("DELETE FROM schedules WHERE id = ?1", [id]).map_err(err))?;
        Ok(n > 0)
    }

    /// Record how fire time `fire.fire_time_ms` of schedule `id` was handled;
    /// with `advance`, it also becomes the schedule's last handled fire time.
    pub fn record_fire(&self, id: &str, fire: &Fire, advance: bool) -> StoreResult<()> {
        self.writable()?;
        let (id, fire) = (id.to_owned(), fire.clone());
        self.write(move |tx, err| {
            tx.execute(
                "INSERT INTO fires (schedule_id, fire_time_ms, fired_at_ms, outcome, execution_id, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    fire.fire_time_ms as i64,
                    fire.fired_at_ms as i64,
                    fire.outcome,
                    fire.execution_id,
                    fire.message
                ],
            )
            .map_err(err)?;
            if advance {
                tx.execute(
                    "UPDATE schedules SET last_fire_ms = MAX(COALESCE(last_fire_ms, 0), ?2) WHERE id = ?1",
                    params![id, fire.fire_time_ms as i64],
                )
                .map_err(err)?;
            }
            Ok(())
        })
    }

    /// The newest `limit` fires of schedule `id`, newest first.
    pub fn fires(&self, id: &str, limit: u32) -> StoreResult<Vec<Fire>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT fire_time_ms, fired_at_ms, outcome, execution_id, message FROM fires
                 WHERE schedule_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![id, limit], |r| {
            Ok(Fire {
                fire_time_ms: r.get::<_, i64>(0)? as u64,
                fired_at_ms: r.get::<_, i64>(1)? as u64,
                outcome: r.get(2)?,
                execution_id: r.get(3)?,
                message: r.get(4)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}
