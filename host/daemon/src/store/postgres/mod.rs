//! [`PgStore`]: the daemon's durable state in PostgreSQL, for one daemon or
//! several on one database (`state_db = "postgres://…"`).
//!
//! * **Same guarantees as SQLite.** Every write is one transaction (most
//!   are one statement) and its future resolves once PostgreSQL committed
//!   it (`synchronous_commit` as the server sets it: on by default, so a
//!   commit survives a crash of the server too); a read sees committed data
//!   only. Concurrent commits share WAL flushes (PostgreSQL's own group
//!   commit), so the per-transition cost falls as load rises, as SQLite's
//!   writer groups them.
//! * **A connection pool** ([`POOL_SIZE`] connections, `deadpool-postgres`)
//!   with bounded waits: no call waits for a connection longer than
//!   [`POOL_WAIT`]; a server that does not answer fails the call with the
//!   store's error, and the daemon holds the executions it could not record
//!   (see [`plexus_workflow::journal`]) until it can.
//! * **Migrations** ([`schema`]) run at connect, under an advisory lock, so
//!   several daemons starting together migrate once; a database written by
//!   a newer daemon is refused.
//! * **Events are numbered per execution in commit order** (the execution's
//!   row lock orders them): `logs --follow` never skips a line committed late.
//!
//! The connection string is a URL (`postgres://user:password@host:port/db?…`;
//! libpq's `host=… dbname=…` form is refused, so that it is never taken for
//! a file name); TLS is not offered (`sslmode=disable`; put the
//! database on a private network or a loopback tunnel). The password never
//! appears in errors or logs: they name `postgres://user@host:port/db`.

mod cluster;
mod schema;
mod store;

pub use cluster::NOW_MS;

use super::{StoreError, StoreResult};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::types::FromSql;

/// How many connections a [`PgStore`] keeps at most.
pub const POOL_SIZE: usize = 16;

/// The longest a call waits for a free connection (or a new one).
pub const POOL_WAIT: Duration = Duration::from_secs(30);

/// The longest a new connection may take to open, when the connection
/// string does not say (`connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on a PostgreSQL state database; cheap to clone, safe to share.
#[derive(Clone)]
pub struct PgStore(Arc<Inner>);

struct Inner {
    pool: Pool,
    /// The database as errors name it (no password).
    name: String,
    /// Test hook: writes fail as on a full disk.
    fail_writes: AtomicBool,
    /// The node this store's daemon is, once it joined (see `Cluster::join`).
    node: std::sync::OnceLock<String>,
}

/// Whether `state_db` names a PostgreSQL database (`postgres://…` or
/// `postgresql://…`) rather than a SQLite file.
pub fn is_postgres_url(state_db: &str) -> bool {
    state_db.starts_with("postgres://") || state_db.starts_with("postgresql://")
}

/// `url` with its password (in the user part or a `password=` parameter)
/// replaced by `***`, to print.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    // As tokio-postgres reads it: the credentials run to the first `@`
    // after the scheme (a password may hold `/` or `?`), the password from
    // the first `:` in them.
    if let Some(start) = out.find("://").map(|i| i + 3)
        && let Some(at) = out[start..].find('@').map(|i| start + i)
        && let Some(colon) = out[start..at].find(':').map(|i| start + i)
    {
        out.replace_range(colon + 1..at, "***");
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| if kv.starts_with("password=") { "password=***".to_owned() } else { kv.to_owned() })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// `config`'s database as errors name it: `postgres://user@host:port/db`.
fn display_name(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    format!("postgres://{user}{host}:{port}/{}", config.get_dbname().unwrap_or_default())
}

/// PostgreSQL's own words for `e`: the server's severity, SQLSTATE and
/// message (and detail) when it answered, else the client's error.
fn describe(e: &tokio_postgres::Error) -> (String, Option<String>) {
    match e.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            (format!("{} {}: {}{detail}", db.severity(), db.code().code(), db.message()), Some(db.code().code().into()))
        }
        None => {
            let source = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
            (format!("{e}{source}"), e.code().map(|c| c.code().to_owned()))
        }
    }
}

impl PgStore {
    /// Connect to the database `url`, check it and migrate it to the
    /// current schema, then make one real write (a database that cannot be
    /// written fails here, not at the first transition).
    ///
    /// # Errors
    /// [`StoreError::Postgres`]: not a connection string, the server cannot
    /// be reached or refuses the login, a migration failed, the database was
    /// written by a newer daemon, or it cannot be written.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Postgres {
            database: "(state_db)".into(),
            message: format!("not a PostgreSQL connection string: {e}"),
            code: None,
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("plexus");
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        let name = display_name(&config);
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Postgres { database: name.clone(), message: e.to_string(), code: None })?;
        let store = Self(Arc::new(Inner { pool, name, fail_writes: AtomicBool::new(false), node: Default::default() }));
        store.migrate().await?;
        store.probe().await?;
        Ok(store)
    }

    /// The database, as errors name it (`postgres://user@host:port/db`).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Test hook: from now on every state write fails (`true`) as on a full
    /// disk, or works again (`false`).
    #[doc(hidden)]
    pub fn fail_writes(&self, fail: bool) {
        self.0.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Bring the schema up to date, once across every daemon starting now.
    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(&e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::MIGRATION_LOCK]).await.map_err(|e| self.err(&e))?;
        let exists = tx.query_one("SELECT to_regclass('plexus_schema') IS NOT NULL", &[]).await;
        if !exists.map_err(|e| self.err(&e))?.try_get::<_, bool>(0).unwrap_or(false) {
            tx.batch_execute("CREATE TABLE plexus_schema (version BIGINT NOT NULL)").await.map_err(|e| self.err(&e))?;
        }
        let row = tx.query_opt("SELECT version FROM plexus_schema", &[]).await.map_err(|e| self.err(&e))?;
        let version: i64 = match &row {
            Some(row) => self.col(row, 0)?,
            None => {
                tx.execute("INSERT INTO plexus_schema (version) VALUES (0)", &[]).await.map_err(|e| self.err(&e))?;
                0
            }
        };
        let known = schema::MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Postgres {
                database: self.0.name.clone(),
                message: format!(
                    "the database has schema version {version}, written by a newer daemon (this one knows {known})"
                ),
                code: None,
            });
        }
        for (n, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql).await.map_err(|e| StoreError::Postgres {
                database: self.0.name.clone(),
                message: format!("migration {} failed: {}", n + 1, describe(&e).0),
                code: describe(&e).1,
            })?;
        }
        if version < known {
            tx.execute("UPDATE plexus_schema SET version = $1", &[&known]).await.map_err(|e| self.err(&e))?;
            tracing::info!(database = %self.0.name, from = version, to = known, "state database migrated");
        }
        tx.commit().await.map_err(|e| self.err(&e))
    }

    /// One small real write (the schema version, unchanged).
    async fn probe(&self) -> StoreResult<()> {
        self.writable()?;
        let client = self.client().await?;
        client.execute("UPDATE plexus_schema SET version = version", &[]).await.map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// A pooled connection, waiting at most [`POOL_WAIT`].
    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.0.pool.get().await.map_err(|e| {
            let message = match &e {
                deadpool_postgres::PoolError::Backend(e) => format!("cannot connect: {}", describe(e).0),
                other => format!("no connection: {other}"),
            };
            StoreError::Postgres { database: self.0.name.clone(), message, code: None }
        })
    }

    /// The injected failure, while [`Self::fail_writes`] is on.
    fn writable(&self) -> StoreResult<()> {
        if self.0.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Postgres {
                database: self.0.name.clone(),
                message: "could not extend file: the disk is full (injected)".into(),
                code: Some("53100".into()),
            });
        }
        Ok(())
    }

    fn err(&self, e: &tokio_postgres::Error) -> StoreError {
        let (message, code) = describe(e);
        StoreError::Postgres { database: self.0.name.clone(), message, code }
    }

    fn corrupt(&self, message: impl Into<String>) -> StoreError {
        StoreError::Corrupt { path: self.0.name.clone().into(), message: message.into() }
    }

    /// Column `i` of `row`, or the store's error when it is not a `T`.
    fn col<'a, T: FromSql<'a>>(&self, row: &'a tokio_postgres::Row, i: usize) -> StoreResult<T> {
        row.try_get(i).map_err(|e| self.corrupt(format!("column {i}: {e}")))
    }

    /// Column `i` of `row` as a count or time that cannot be negative.
    fn unsigned(&self, row: &tokio_postgres::Row, i: usize) -> StoreResult<u64> {
        let v: i64 = self.col(row, i)?;
        u64::try_from(v).map_err(|_| self.corrupt(format!("column {i}: negative value {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::PgStore;
    use crate::store::{CancelRequest, Claim, Cluster, ExecutionMeta, Store, StoreError};
    use plexus_client::Transition;
    use plexus_workflow::status::{ExecutionStatus, StepRecord, StepStatus, WorkflowStatus};
    use serde_json::{Map, Value, json};

    async fn fresh() -> (PgStore, String) {
        let url = crate::testing::server().and_then(|s| s.database()).unwrap();
        (PgStore::connect(&url).await.unwrap(), url)
    }

    fn step(id: &str, status: StepStatus, output: Option<Value>) -> StepRecord {
        StepRecord {
            id: id.into(),
            plugin_id: "p".into(),
            operation: "op".into(),
            status,
            output,
            error: None,
            reason: None,
            attempts: 1,
            started_at_ms: Some(1),
            ended_at_ms: None,
            duration_ms: None,
            metrics: Default::default(),
            progress: None,
            usage: None,
            artifacts: Default::default(),
        }
    }

    fn execution(id: &str, steps: Vec<StepRecord>) -> ExecutionStatus {
        ExecutionStatus {
            execution_id: id.into(),
            workflow_id: "w".into(),
            status: WorkflowStatus::Pending,
            progress: 0.0,
            current_steps: vec![],
            current_step: None,
            completed_steps: 0,
            total_steps: steps.len(),
            inputs: Map::new(),
            steps,
            compensations: vec![],
            outputs: Map::new(),
            error: None,
            started_at_ms: None,
            ended_at_ms: None,
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn daemons_starting_together_migrate_once_and_a_newer_schema_is_refused() {
        let url = crate::testing::server().and_then(|s| s.database()).unwrap();
        let connects: Vec<_> = (0..4)
            .map(|_| {
                tokio::spawn({
                    let url = url.clone();
                    async move { PgStore::connect(&url).await.map(|_| ()) }
                })
            })
            .collect();
        for connect in connects {
            connect.await.unwrap().unwrap();
        }
        let store = PgStore::connect(&url).await.unwrap();
        let client = store.client().await.unwrap();
        let version: i64 = client.query_one("SELECT version FROM plexus_schema", &[]).await.unwrap().get(0);
        assert_eq!(version, super::schema::MIGRATIONS.len() as i64);
        client.execute("UPDATE plexus_schema SET version = version + 1", &[]).await.unwrap();
        let err = PgStore::connect(&url).await.err().expect("a newer schema is refused").to_string();
        assert!(err.contains("newer daemon") && err.contains("postgres://plexus@127.0.0.1"), "{err}");
    }

    #[test]
    fn passwords_are_redacted_wherever_the_url_has_them() {
        let r = super::redact_url;
        assert_eq!(r("postgres://u:se:cret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(
            r("postgresql://u@h/db?password=x&sslmode=disable"),
            "postgresql://u@h/db?password=***&sslmode=disable"
        );
        assert_eq!(r("postgres://h/db"), "postgres://h/db");
        assert_eq!(r("postgres://u:p@w@h/db"), "postgres://u:***@w@h/db");
        assert_eq!(r("postgres://u:pa/ss?x@h/db"), "postgres://u:***@h/db");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_server_that_is_not_there_is_a_clear_error_without_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://plexus:sesame@127.0.0.1:{port}/gone?connect_timeout=2");
        let err = PgStore::connect(&url).await.err().expect("nothing listens there").to_string();
        assert!(err.contains(&format!("postgres://plexus@127.0.0.1:{port}/gone")) && err.contains("connect"), "{err}");
        assert!(!err.contains("sesame"), "{err}");
        let err = PgStore::connect("postgres://[::1").await.err().unwrap().to_string();
        assert!(err.contains("not a PostgreSQL connection string"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn outputs_are_stored_once_and_the_log_is_numbered_per_execution_in_commit_order() {
        let (store, _) = fresh().await;
        let marker = "output-marker-".repeat(50);
        let mut running = step("merge", StepStatus::Running, None);
        let meta = ExecutionMeta { workflow_version: 1, created_at_ms: 1, runs: 1, ..Default::default() };
        store
            .insert_execution(&execution("e1", vec![running.clone()]), &meta, &map(json!({"start": 1})))
            .await
            .unwrap();
        store.insert_execution(&execution("e2", vec![running.clone()]), &meta, &Map::new()).await.unwrap();
        store.update_step("e1", 0, &running, Some(&map(json!({"n": 1})))).await.unwrap();
        running.status = StepStatus::Completed;
        running.output = Some(json!({"big": marker, "n": 2}));
        running.ended_at_ms = Some(2);
        store.update_step("e1", 0, &running, Some(&map(json!({"big": marker, "n": 3})))).await.unwrap();
        let client = store.client().await.unwrap();
        let copies: i64 = client
            .query_one(
                "SELECT (SELECT COUNT(*) FROM steps WHERE strpos(record, $1) > 0)
                      + (SELECT COUNT(*) FROM state_entries WHERE strpos(value, $1) > 0)
                      + (SELECT COUNT(*) FROM events WHERE strpos(message, $1) > 0)
                      + (SELECT COUNT(*) FROM executions WHERE strpos(state, $1) > 0)",
                &[&marker],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(copies, 1, "the output is in the step's record and nowhere else");
        let stored = store.execution("e1").await.unwrap().unwrap();
        assert_eq!(Value::Object(stored.state), json!({"start": 1, "big": marker, "n": 3}));
        // Rewritten without that output, the state keeps its value as a copy.
        let mut rewritten = running.clone();
        rewritten.output = None;
        store.update_step("e1", 0, &rewritten, None).await.unwrap();
        let stored = store.execution("e1").await.unwrap().unwrap();
        assert_eq!(Value::Object(stored.state), json!({"start": 1, "big": marker, "n": 3}));

        // Many writers at once: each execution's log is 1, 2, 3, … with no gap.
        let writes: Vec<_> = (0..40)
            .map(|i| {
                let (store, record) = (store.clone(), step("merge", StepStatus::Running, None));
                tokio::spawn(
                    async move { store.update_step(if i % 2 == 0 { "e1" } else { "e2" }, 0, &record, None).await },
                )
            })
            .collect();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        for id in ["e1", "e2"] {
            let events = store.events(id, 0, 1000).await.unwrap();
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "{id}");
            assert_eq!(events[0].transition, Transition::Execution(WorkflowStatus::Pending));
            let after = store.events(id, 5, 3).await.unwrap();
            assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7, 8]);
        }
        // A log line no daemon writes is reported, not guessed at.
        client
            .execute("UPDATE events SET status = 'exploded' WHERE execution_id = 'e2' AND seq = 2", &[])
            .await
            .unwrap();
        let err = store.events("e2", 0, 10).await.unwrap_err().to_string();
        assert!(err.contains("unknown status `exploded`"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_column_of_the_wrong_type_is_a_corrupt_record_not_a_panic() {
        let (store, _) = fresh().await;
        let client = store.client().await.unwrap();
        client
            .batch_execute(
                "ALTER TABLE templates ALTER COLUMN updated_at_ms TYPE TEXT;
                 INSERT INTO templates (id, source, updated_at_ms) VALUES ('t', 'x', 'yesterday')",
            )
            .await
            .unwrap();
        let err = store.templates().await.unwrap_err().to_string();
        assert!(err.contains("corrupt record") && err.contains("column 2"), "{err}");
    }

    /// An execution of one pending step calling `plugin`.
    fn pending(id: &str, plugin: &str) -> ExecutionStatus {
        let mut step = step("s", StepStatus::Pending, None);
        step.plugin_id = plugin.into();
        execution(id, vec![step])
    }

    fn node(id: &str, plugins: &[&str]) -> crate::store::NodeJoin {
        crate::store::NodeJoin {
            id: id.into(),
            address: None,
            plugins: plugins.iter().map(|p| (*p).to_owned()).collect(),
            workers: 4,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn claims_follow_plugins_and_leases_and_a_node_that_lost_one_cannot_write() {
        let url = crate::testing::server().and_then(|s| s.database()).unwrap();
        let (a, b) = (PgStore::connect(&url).await.unwrap(), PgStore::connect(&url).await.unwrap());
        // `a` with a lease of 300 ms, `b` with a long one; only `b` has plugin `q`.
        a.join(&node("a", &["p"]), 300).await.unwrap();
        b.join(&node("b", &["p", "q"]), 60_000).await.unwrap();
        let err = b.join(&node("a", &["p"]), 60_000).await.unwrap_err();
        assert!(matches!(err, StoreError::NodeIdInUse { .. }), "{err}");
        let meta = ExecutionMeta { workflow_version: 1, created_at_ms: 1, runs: 1, ..Default::default() };
        a.insert_execution(&pending("e-p", "p"), &meta, &Map::new()).await.unwrap();
        a.insert_execution(&pending("e-q", "q"), &meta, &Map::new()).await.unwrap();
        let plugins_a = ["p".to_owned()];
        // `a` cannot run `e-q` (no plugin q); it claims `e-p`.
        assert!(!a.claim_one("a", "e-q", Claim::Run(&plugins_a)).await.unwrap());
        assert_eq!(a.claim("a", &plugins_a, 10).await.unwrap(), ["e-p"]);
        assert!(!a.claim_one("a", "e-p", Claim::Run(&plugins_a)).await.unwrap(), "owned already: not twice");
        // While `a` is alive, `b` takes nothing of `a`'s.
        let plugins_b = ["p".to_owned(), "q".to_owned()];
        assert_eq!(b.claim("b", &plugins_b, 10).await.unwrap(), ["e-q"]);
        let mut running = pending("e-p", "p");
        running.status = WorkflowStatus::Running;
        a.update_execution(&running).await.unwrap();
        // `a`'s lease runs out (no heartbeat): `b` takes `e-p` over, and `a` can no longer write it.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(b.claim("b", &plugins_b, 10).await.unwrap(), ["e-p"]);
        let err = a.update_execution(&running).await.unwrap_err();
        assert!(matches!(err, StoreError::NotOwner { .. }), "{err}");
        let step = running.steps[0].clone();
        assert!(matches!(a.update_step("e-p", 0, &step, None).await, Err(StoreError::NotOwner { .. })));
        // `a`'s next heartbeat learns it lost `e-p`.
        let lost = a.heartbeat("a", &plugins_a, &["e-p".to_owned()], 300).await.unwrap();
        assert_eq!(lost, Some(vec!["e-p".to_owned()]));
        // A cancel never takes an ended execution; a compensation does.
        let mut done = running.clone();
        done.status = WorkflowStatus::Completed;
        b.update_execution(&done).await.unwrap();
        assert!(!a.claim_one("a", "e-p", Claim::Cancel).await.unwrap());
        assert_eq!(a.request_cancel("e-p").await.unwrap(), CancelRequest::Ended(WorkflowStatus::Completed));
        assert!(a.claim_one("a", "e-p", Claim::Compensate).await.unwrap());
        // `b` leaves: its unfinished `e-q` goes back unowned; its heartbeat says to join again.
        b.leave("b", &[]).await.unwrap();
        assert_eq!(b.heartbeat("b", &plugins_b, &[], 60_000).await.unwrap(), None);
        let placement = a.placement("e-q").await.unwrap().unwrap();
        assert_eq!((placement.owner, placement.missing), (None, vec!["q".to_owned()]), "no live node has q");
        let nodes = a.nodes().await.unwrap();
        assert_eq!(
            nodes.iter().map(|n| (n.id.as_str(), n.state)).collect::<Vec<_>>(),
            [("a", plexus_client::NodeState::Alive), ("b", plexus_client::NodeState::Stopped)]
        );
        // A plugin's error message with a NUL is stored (PostgreSQL's TEXT refuses NUL).
        let mut failed = pending("e-q", "q");
        failed.status = WorkflowStatus::Failed;
        failed.error = Some("bad\0byte".into());
        assert!(a.claim_one("a", "e-q", Claim::Cancel).await.unwrap());
        a.update_execution(&failed).await.unwrap();
        assert_eq!(a.execution("e-q").await.unwrap().unwrap().status.error.as_deref(), Some("bad\u{FFFD}byte"));
    }
}
