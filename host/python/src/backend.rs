//! [`Backend`]: the one interface of the Python API over its three engines —
//! the workflow [`Orchestrator`] in memory, the daemon's core over a SQLite
//! file in this process, or a daemon over HTTP. Every operation answers a
//! [`DaemonError`] (a code from QtForge's list, a message and details), so the
//! Python layer turns failures into one error type whichever engine ran.
//!
//! Everything here blocks: the Python methods call it with the interpreter
//! detached.

use plexus_client::{
    CallPlugin, Client, ClientError, DaemonError, ErrorCode, ExecutionQuery, Listen, StartExecution, Transaction,
};
use plexus_daemon::store::{ExecutionFilter, SqliteStore};
use plexus_daemon::{Daemon, Origin, views};
use plexus_host::{Host, HostBuilder};
use plexus_workflow::source::Document;
use plexus_workflow::status::{ExecutionStatus, StepResult};
use plexus_workflow::{Orchestrator, OrchestratorError, SystemClock, validate_for};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// A result of the Python API's engines.
pub type ApiResult<T> = Result<T, DaemonError>;

/// The most executions [`Backend::active`] lists.
pub const MAX_LISTED: u32 = 1_000;

/// How long a remote wait's long-poll lasts before it is asked again, ms:
/// also how long a closed orchestrator's remote waits may still go on.
const LONG_POLL_MS: u64 = 5_000;

/// How often a durable wait checks an execution that is not running in this
/// process yet (recorded, waiting for its launch).
const POLL: Duration = Duration::from_millis(20);

/// The longest an embedded wait goes without checking the orchestrator is
/// still open.
pub const CLOSE_CHECK: Duration = Duration::from_millis(200);

/// When a wait of at most `timeout` from now ends; past what `Instant`
/// holds, it has no end.
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

fn timed_out(id: &str) -> DaemonError {
    DaemonError::new(ErrorCode::Timeout, format!("execution `{id}` has not ended yet"))
}

/// How long [`Backend::close`] lets running steps of a durable engine finish;
/// the executions still running then resume at the next open.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The process's tokio runtime: every engine's executions run on it.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("plexus")
            // Waits against a daemon hold a blocking thread each: room for
            // all of them beside what the engine needs.
            .max_blocking_threads(crate::MAX_WAITERS + 512)
            .enable_all()
            .build()
            .expect("the tokio runtime starts")
    })
}

/// Which engine answers.
pub enum Engine {
    /// The orchestrator in memory: nothing survives the process.
    Memory {
        /// The plugins.
        host: Arc<Host>,
        /// Workflows, executions, transactions.
        orchestrator: Orchestrator,
    },
    /// The daemon's core over a SQLite file, in this process.
    Durable {
        /// Workflows, executions and transactions, recorded.
        daemon: Daemon,
    },
    /// A daemon over HTTP.
    Remote {
        /// The typed client.
        client: Client,
    },
}

/// One engine, until it is closed: an operation holds its own reference, so
/// closing never waits for a running one, and the engine (with the state
/// file's lock) goes when the last one ends.
pub struct Backend {
    engine: Mutex<Option<Arc<Engine>>>,
    kind: &'static str,
    /// Held across a registration's check and write: a durable engine's
    /// state file is this process's alone, so there no id is registered twice.
    registering: Mutex<()>,
}

/// How to open an embedded engine.
pub struct Embedded {
    /// Plugin directories, scanned in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// The SQLite state file (`None`: in memory).
    pub state: Option<PathBuf>,
    /// At most this many executions run at once (durable engine only).
    pub workers: usize,
    /// Where compiled components are cached (`None`: the host's default,
    /// `$PLEXUS_CACHE_DIR` else `~/.cache/plexus/components`).
    pub cache_dir: Option<PathBuf>,
    /// Compile every component afresh, caching nothing.
    pub no_cache: bool,
}

fn internal(e: impl std::fmt::Display) -> DaemonError {
    DaemonError::new(ErrorCode::Internal, e.to_string())
}

/// A client failure as the daemon's error: refusals keep their code;
/// an unreachable daemon is `NetworkError`.
pub fn client_error(e: ClientError) -> DaemonError {
    match e {
        ClientError::Refused { error, .. } => error,
        ClientError::Unreachable { .. } => {
            DaemonError::new(ErrorCode::Unknown, e.to_string()).with_details(vec!["kind: unreachable".to_owned()])
        }
        ClientError::Address(_) | ClientError::Request(_) => DaemonError::invalid(e.to_string()),
        ClientError::Answer { .. } => internal(e),
    }
}

fn orchestrator_error(e: OrchestratorError) -> DaemonError {
    let code = match &e {
        OrchestratorError::NotFound(_) => ErrorCode::NotFound,
        OrchestratorError::AlreadyExists(_) => ErrorCode::AlreadyExists,
        OrchestratorError::InvalidConfiguration(_) => ErrorCode::InvalidConfiguration,
        OrchestratorError::InvalidState(_) => ErrorCode::InvalidState,
    };
    DaemonError::new(code, e.to_string())
}

/// The id a workflow document gives itself.
fn document_id(source: &str) -> ApiResult<String> {
    let doc: Value = serde_json::from_str(source).map_err(|e| DaemonError::invalid(format!("workflow: {e}")))?;
    doc.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| DaemonError::invalid("workflow: `id` is missing (a string)"))
}

/// A stored workflow's text as a Plexus document (JSON, every default written out).
fn as_document(source: &str) -> ApiResult<Value> {
    Ok(plexus_daemon::parse_workflow(source)?.workflow.to_json())
}

impl Backend {
    /// Open an embedded engine: load the plugins of `options.plugin_dirs`;
    /// with a state file, resume the executions it says had not ended.
    ///
    /// # Errors
    /// `Internal` when the state file cannot be opened (another process has
    /// it, it is not a Plexus database) or the host cannot be built.
    pub fn embedded(options: Embedded) -> ApiResult<Self> {
        let store = match &options.state {
            Some(path) => Some(Arc::new(SqliteStore::open(path).map_err(DaemonError::from)?)),
            None => None,
        };
        let mut builder = HostBuilder::new().plugin_dirs(options.plugin_dirs.clone());
        if let Some(path) = &options.state {
            builder = builder.protect(path);
        }
        if let Some(dir) = &options.cache_dir {
            builder = builder.cache_dir(dir);
        }
        if options.no_cache {
            builder = builder.no_cache();
        }
        let host = builder.build().map_err(internal)?;
        for error in host.load_errors() {
            tracing::warn!("plugin not loaded: {error}");
        }
        let engine = match store {
            None => {
                let host = Arc::new(host);
                let orchestrator =
                    Orchestrator::with_clock(host.clone(), Arc::new(SystemClock), runtime().handle().clone());
                Engine::Memory { host, orchestrator }
            }
            Some(store) => {
                let rt = runtime();
                let daemon = {
                    let _entered = rt.enter();
                    Daemon::new(
                        store,
                        host,
                        Arc::new(SystemClock),
                        rt.handle().clone(),
                        options.workers,
                        plexus_daemon::metrics::Metrics::default(),
                    )
                };
                let resumed = rt.block_on(daemon.resume_unfinished())?;
                let rollbacks = rt.block_on(daemon.resume_rollbacks())?;
                tracing::info!(resumed, rollbacks, "state opened");
                Engine::Durable { daemon }
            }
        };
        Ok(Self::of(engine))
    }

    /// Connect to the daemon at `address` (`host:port`, `http://host:port`
    /// or `unix:/path`) with bearer `token`; checks that it answers.
    ///
    /// # Errors
    /// `InvalidConfiguration` for a bad address (or `https://`), the
    /// daemon's refusal, or an unreachable daemon.
    pub fn remote(address: &str, token: String) -> ApiResult<Self> {
        let trimmed = address.trim().trim_end_matches('/');
        if trimmed.starts_with("https://") {
            return Err(DaemonError::invalid(format!(
                "`{address}`: the daemon speaks plain HTTP on loopback or a Unix socket; put TLS in front of it and connect here to its local address"
            )));
        }
        let listen = Listen::parse(trimmed.strip_prefix("http://").unwrap_or(trimmed))
            .map_err(|e| DaemonError::invalid(e.to_string()))?;
        let client = Client::new(listen, token).map_err(client_error)?;
        // Checked now, with the token: a wrong one fails here, not at the first use.
        client.plugins().map_err(client_error)?;
        Ok(Self::of(Engine::Remote { client }))
    }

    fn of(engine: Engine) -> Self {
        let kind = match &engine {
            Engine::Memory { .. } => "embedded",
            Engine::Durable { .. } => "durable",
            Engine::Remote { .. } => "remote",
        };
        Self { engine: Mutex::new(Some(Arc::new(engine))), kind, registering: Mutex::new(()) }
    }

    /// `embedded`, `durable` or `remote`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The engine, unless closed.
    fn engine(&self) -> ApiResult<Arc<Engine>> {
        self.engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| DaemonError::invalid_state("the orchestrator is closed"))
    }

    // ----- workflows -----

    /// Register workflow `source` (JSON text, QtForge's or Plexus's shape);
    /// returns its id.
    ///
    /// # Errors
    /// `AlreadyExists` when its id is registered (QtForge's rule: unregister
    /// it first; atomic in this process, so for a durable engine whose file
    /// is this process's; a daemon's other clients are not held back);
    /// `InvalidConfiguration` with every problem in `details`.
    pub fn register(&self, source: &str) -> ApiResult<String> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { host, orchestrator } => {
                let doc = Document::parse(Path::new("<python>.json"), source)
                    .map_err(|e| DaemonError::invalid(e.to_string()))?;
                let valid =
                    validate_for(&doc, Some(host), plexus_sdk::capability::WORKFLOW_STEP).map_err(|problems| {
                        DaemonError::invalid(format!("the workflow has {} problem(s)", problems.len()))
                            .with_details(problems.iter().map(ToString::to_string).collect())
                    })?;
                let id = valid.workflow.id.clone();
                orchestrator.register(valid).map_err(orchestrator_error)?;
                Ok(id)
            }
            Engine::Durable { .. } | Engine::Remote { .. } => {
                let id = document_id(source)?;
                // A daemon's other clients may still register the id between
                // the check and the write (it then gets a second version).
                let _one_at_a_time = self.registering.lock().unwrap_or_else(PoisonError::into_inner);
                if self.has(&id)? {
                    return Err(DaemonError::new(
                        ErrorCode::AlreadyExists,
                        format!("workflow `{id}` is already registered"),
                    ));
                }
                match &*engine {
                    Engine::Durable { daemon } => runtime().block_on(daemon.register_workflow(source)).map(|r| r.id),
                    Engine::Remote { client } => client.register_workflow(source).map(|r| r.id).map_err(client_error),
                    Engine::Memory { .. } => unreachable!("handled above"),
                }
            }
        }
    }

    /// Remove workflow `id`; its running executions go on.
    pub fn unregister(&self, id: &str) -> ApiResult<()> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => orchestrator.unregister(id).map_err(orchestrator_error),
            Engine::Durable { daemon } => runtime().block_on(daemon.delete_workflow(id)),
            Engine::Remote { client } => client.delete_workflow(id).map_err(client_error),
        }
    }

    /// Whether workflow `id` is registered.
    pub fn has(&self, id: &str) -> ApiResult<bool> {
        let engine = self.engine()?;
        let found = match &*engine {
            Engine::Memory { orchestrator, .. } => return Ok(orchestrator.has(id)),
            Engine::Durable { daemon } => runtime().block_on(daemon.workflow(id, None)).map(|_| ()),
            Engine::Remote { client } => client.workflow(id, None).map(|_| ()).map_err(client_error),
        };
        match found {
            Ok(()) => Ok(true),
            Err(e) if e.code == ErrorCode::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Workflow `id` as a Plexus document (JSON, every default written out).
    pub fn get(&self, id: &str) -> ApiResult<Value> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => orchestrator
                .get(id)
                .map(|w| w.to_json())
                .ok_or_else(|| DaemonError::not_found(format!("workflow `{id}`"))),
            Engine::Durable { daemon } => as_document(&runtime().block_on(daemon.workflow(id, None))?.source),
            Engine::Remote { client } => as_document(&client.workflow(id, None).map_err(client_error)?.source),
        }
    }

    /// The ids of the registered workflows, sorted.
    pub fn list(&self) -> ApiResult<Vec<String>> {
        let engine = self.engine()?;
        let mut ids: Vec<String> = match &*engine {
            Engine::Memory { orchestrator, .. } => orchestrator.list(),
            Engine::Durable { daemon } => runtime().block_on(daemon.workflows())?.into_iter().map(|w| w.id).collect(),
            Engine::Remote { client } => {
                client.workflows().map_err(client_error)?.workflows.into_iter().map(|w| w.id).collect()
            }
        };
        ids.sort();
        Ok(ids)
    }

    /// Remove every workflow; returns how many there were.
    pub fn clear(&self) -> ApiResult<usize> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => Ok(orchestrator.clear()),
            Engine::Durable { daemon } => runtime().block_on(daemon.clear_workflows()),
            Engine::Remote { client } => Ok(client.clear_workflows().map_err(client_error)?.deleted),
        }
    }

    // ----- executions -----

    /// Start an execution of workflow `id` with `inputs` (in open
    /// `transaction`, if given); returns its id at once.
    pub fn execute(&self, id: &str, inputs: Map<String, Value>, transaction: Option<String>) -> ApiResult<String> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => {
                orchestrator.execute_in(id, inputs, transaction.as_deref()).map_err(orchestrator_error)
            }
            Engine::Durable { daemon } => {
                let origin = Origin { transaction, ..Origin::default() };
                Ok(runtime().block_on(daemon.start(id, inputs, origin))?.id().to_owned())
            }
            Engine::Remote { client } => {
                let request =
                    StartExecution { workflow: id.to_owned(), version: None, transaction, inputs, priority: None };
                Ok(client.start_execution(&request).map_err(client_error)?.execution_id)
            }
        }
    }

    /// The status of execution `id`.
    pub fn status(&self, id: &str) -> ApiResult<ExecutionStatus> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => orchestrator.status(id).map_err(orchestrator_error),
            Engine::Durable { daemon } => Ok(runtime().block_on(daemon.status(id))?.0),
            Engine::Remote { client } => Ok(client.execution(id, None).map_err(client_error)?.status),
        }
    }

    /// Wait until execution `id` ends (at most `timeout`); its final status.
    /// Blocks: call it off the runtime (an embedded engine's wait runs on it).
    ///
    /// # Errors
    /// `Timeout` when it has not ended by then; `NotFound`; `InvalidState`
    /// once the orchestrator is closed (a wait then ends within
    /// [`CLOSE_CHECK`], or one long-poll against a daemon).
    pub fn wait(&self, id: &str, timeout: Option<Duration>) -> ApiResult<ExecutionStatus> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Remote { client } => self.wait_remote(client, id, deadline(timeout)),
            Engine::Memory { .. } | Engine::Durable { .. } => {
                drop(engine);
                runtime().block_on(self.wait_embedded(id, deadline(timeout)))
            }
        }
    }

    /// [`Self::wait`] for async code: embedded engines wait on the runtime
    /// (no thread is held); a daemon's long-polls run on the blocking pool.
    pub async fn wait_async(self: &Arc<Self>, id: &str, timeout: Option<Duration>) -> ApiResult<ExecutionStatus> {
        if self.kind == "remote" {
            let (this, id) = (self.clone(), id.to_owned());
            return tokio::task::spawn_blocking(move || this.wait(&id, timeout)).await.map_err(internal)?;
        }
        self.wait_embedded(id, deadline(timeout)).await
    }

    /// The status of execution `id`, for async code (see [`Self::wait_async`]).
    pub async fn status_async(self: &Arc<Self>, id: &str) -> ApiResult<ExecutionStatus> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => orchestrator.status(id).map_err(orchestrator_error),
            Engine::Durable { daemon } => Ok(daemon.status(id).await?.0),
            Engine::Remote { .. } => {
                let (this, id) = (self.clone(), id.to_owned());
                tokio::task::spawn_blocking(move || this.status(&id)).await.map_err(internal)?
            }
        }
    }

    /// An embedded engine's wait, in slices of at most [`CLOSE_CHECK`] that
    /// each take the engine again (so it ends once the orchestrator closes).
    async fn wait_embedded(&self, id: &str, deadline: Option<Instant>) -> ApiResult<ExecutionStatus> {
        loop {
            let engine = self.engine()?;
            let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
            let slice = left.map_or(CLOSE_CHECK, |l| l.min(CLOSE_CHECK));
            let ended = match &*engine {
                Engine::Memory { orchestrator, .. } => match tokio::time::timeout(slice, orchestrator.wait(id)).await {
                    Ok(status) => Some(status.map_err(orchestrator_error)?),
                    Err(_) => None,
                },
                // The store has the final word once the execution left the live set.
                Engine::Durable { daemon } => match daemon.live(id) {
                    Some(exec) => tokio::time::timeout(slice, exec.wait()).await.ok(),
                    None => {
                        let (status, _) = daemon.status(id).await?;
                        if !status.status.is_terminal() {
                            tokio::time::sleep(slice.min(POLL)).await;
                        }
                        Some(status)
                    }
                }
                .filter(|status| status.status.is_terminal()),
                Engine::Remote { .. } => return Err(internal("an embedded wait of a remote engine")),
            };
            if let Some(status) = ended {
                return Ok(status);
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Err(timed_out(id));
            }
        }
    }

    /// A wait against a daemon: long-polls of at most 5 s, until the end,
    /// the deadline, or the orchestrator's close.
    fn wait_remote(&self, client: &Client, id: &str, deadline: Option<Instant>) -> ApiResult<ExecutionStatus> {
        loop {
            let asked = Instant::now();
            let left = deadline.map(|at| at.saturating_duration_since(asked));
            let wait_ms = left.map_or(LONG_POLL_MS, |l| (l.as_millis() as u64).min(LONG_POLL_MS));
            // The daemon answers a long-poll that ran out with `Timeout`: not yet.
            match client.execution(id, Some(wait_ms)).map_err(client_error) {
                Ok(execution) if execution.status.status.is_terminal() => return Ok(execution.status),
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::Timeout => {}
                Err(e) => return Err(e),
            }
            if left.is_some_and(|l| l.as_millis() as u64 <= wait_ms) {
                return Err(timed_out(id));
            }
            self.engine()?;
            // A daemon that answers at once (it is shutting down) is not asked in a tight loop.
            if asked.elapsed() < POLL {
                std::thread::sleep(POLL);
            }
        }
    }

    /// The per-step results of execution `id` (QtForge's `StepResult`s), in
    /// declaration order.
    pub fn step_results(&self, id: &str) -> ApiResult<Vec<StepResult>> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => orchestrator.step_results(id).map_err(orchestrator_error),
            Engine::Durable { daemon } => {
                Ok(runtime().block_on(daemon.status(id))?.0.steps.iter().map(StepResult::from).collect())
            }
            Engine::Remote { client } => Ok(client.steps(id).map_err(client_error)?.results),
        }
    }

    /// Ask execution `id` to stop.
    pub fn cancel(&self, id: &str) -> ApiResult<()> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => {
                let status = orchestrator.status(id).map_err(orchestrator_error)?;
                if status.status.is_terminal() {
                    return Err(DaemonError::invalid_state(format!(
                        "execution `{id}` is {}, not running",
                        status.status.as_str()
                    )));
                }
                orchestrator.cancel(id).map_err(orchestrator_error)
            }
            Engine::Durable { daemon } => runtime().block_on(daemon.cancel(id)),
            Engine::Remote { client } => client.cancel(id).map(|_| ()).map_err(client_error),
        }
    }

    /// The executions that have not ended, oldest first (at most [`MAX_LISTED`]).
    pub fn active(&self) -> ApiResult<Vec<String>> {
        let engine = self.engine()?;
        let mut ids: Vec<String> = match &*engine {
            Engine::Memory { orchestrator, .. } => return Ok(orchestrator.active_executions()),
            Engine::Durable { daemon } => {
                let filter = ExecutionFilter { active: true, limit: Some(MAX_LISTED), ..ExecutionFilter::default() };
                runtime().block_on(daemon.executions(&filter))?.into_iter().map(|e| e.execution_id).collect()
            }
            Engine::Remote { client } => {
                let query = ExecutionQuery { active: Some(true), limit: Some(MAX_LISTED), ..ExecutionQuery::default() };
                client
                    .executions(&query)
                    .map_err(client_error)?
                    .executions
                    .into_iter()
                    .map(|e| e.execution_id)
                    .collect()
            }
        };
        // Newest first from the store; ids are time-ordered.
        ids.sort();
        Ok(ids)
    }

    // ----- transactions -----

    /// Begin transaction `id`.
    pub fn begin_transaction(&self, id: &str) -> ApiResult<Transaction> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => orchestrator.begin_transaction(id).map_err(orchestrator_error),
            Engine::Durable { daemon } => runtime().block_on(daemon.begin_transaction(id)),
            Engine::Remote { client } => client.begin_transaction(id).map_err(client_error),
        }
    }

    /// Transaction `id` as it is now.
    pub fn transaction(&self, id: &str) -> ApiResult<Transaction> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => orchestrator.transaction(id).map_err(orchestrator_error),
            Engine::Durable { daemon } => runtime().block_on(daemon.transaction(id)),
            Engine::Remote { client } => client.transaction(id).map_err(client_error),
        }
    }

    /// Commit transaction `id`.
    pub fn commit_transaction(&self, id: &str) -> ApiResult<Transaction> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => orchestrator.commit_transaction(id).map_err(orchestrator_error),
            Engine::Durable { daemon } => runtime().block_on(daemon.commit_transaction(id)),
            Engine::Remote { client } => client.commit_transaction(id).map_err(client_error),
        }
    }

    /// Roll back transaction `id` (its compensations run before this returns).
    pub fn rollback_transaction(&self, id: &str) -> ApiResult<Transaction> {
        let engine = self.engine()?;
        match &*engine {
            Engine::Memory { orchestrator, .. } => {
                runtime().block_on(orchestrator.rollback_transaction(id)).map_err(orchestrator_error)
            }
            Engine::Durable { daemon } => runtime().block_on(daemon.rollback_transaction(id)),
            Engine::Remote { client } => client.rollback_transaction(id).map_err(client_error),
        }
    }

    // ----- plugins -----
}

impl Engine {
    /// The plugins, for an embedded engine.
    fn host(&self) -> Option<Arc<Host>> {
        match self {
            Engine::Memory { host, .. } => Some(host.clone()),
            Engine::Durable { daemon } => Some(daemon.host()),
            Engine::Remote { .. } => None,
        }
    }
}

impl Backend {
    /// The loaded plugins, load errors and unavailable plugins (the shape
    /// of `GET /v1/plugins`).
    pub fn plugins(&self) -> ApiResult<Value> {
        let engine = self.engine()?;
        let list = match (&*engine, engine.host()) {
            (Engine::Remote { client }, _) => client.plugins().map_err(client_error)?,
            (_, Some(host)) => views::plugin_list(&host),
            (_, None) => unreachable!("embedded engines have a host"),
        };
        serde_json::to_value(list).map_err(internal)
    }

    /// Plugin `id`'s details (the shape of `GET /v1/plugins/{id}`).
    pub fn plugin(&self, id: &str) -> ApiResult<Value> {
        let engine = self.engine()?;
        let details = match (&*engine, engine.host()) {
            (Engine::Remote { client }, _) => client.plugin(id).map_err(client_error)?,
            (_, Some(host)) => {
                let plugin = host.plugin(id).ok_or_else(|| {
                    DaemonError::new(ErrorCode::PluginNotFound, format!("no plugin `{id}` is loaded"))
                })?;
                views::plugin_details(&host, plugin)
            }
            (_, None) => unreachable!("embedded engines have a host"),
        };
        serde_json::to_value(details).map_err(internal)
    }

    /// Call `request.operation` of plugin `id`; returns its output.
    pub fn call(&self, id: &str, request: CallPlugin) -> ApiResult<Value> {
        let engine = self.engine()?;
        let result = match (&*engine, engine.host()) {
            (Engine::Remote { client }, _) => client.call_plugin(id, &request).map_err(client_error)?,
            (_, Some(host)) => views::call_plugin(&host, id, request)?,
            (_, None) => unreachable!("embedded engines have a host"),
        };
        Ok(result.output)
    }

    // ----- life -----

    /// Whether [`Self::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner).is_none()
    }

    /// Stop: embedded engines run their plugins' cleanup; a durable one lets
    /// running steps finish for up to 5 s and leaves the executions still
    /// running to resume at the next open; its state file is released when
    /// the calls still running end. Idempotent.
    pub fn close(&self) {
        let Some(engine) = self.engine.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        match &*engine {
            Engine::Memory { host, .. } => host.stop(),
            Engine::Durable { daemon } => {
                let left = runtime().block_on(daemon.shutdown(CLOSE_GRACE));
                if left > 0 {
                    tracing::info!(left, "executions still running resume when the state is opened again");
                }
                daemon.host().stop();
            }
            Engine::Remote { .. } => {}
        }
    }
}
