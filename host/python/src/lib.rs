//! `plexus._native`: the extension module under the Python package
//! `plexus` (see `host/python/README.md`). One class, [`Engine`], over the
//! three engines of [`backend`]; the QtForge-shaped API (`Workflow`,
//! `PluginOrchestrator`, `Expected`…) is Python, in `python/plexus/`.
//!
//! * Every method that may wait (a plugin call, a wait, a store write, an
//!   HTTP request) detaches from the interpreter first, so other Python
//!   threads run meanwhile.
//! * Callbacks (`wait_then`, `watch`) run on one callback thread, log
//!   records on a log thread ([`logs`]): neither runs steps or holds a lock
//!   of the host's while it attaches; an exception a callback raises goes to
//!   `sys.unraisablehook`. Embedded engines' waits and watches are tasks on
//!   the runtime, holding no thread while they wait.
//! * Failures raise `NativeError(code, message, details)`; the Python layer
//!   turns them into `plexus.PluginError` subclasses or `Expected` errors.

mod backend;
mod convert;
mod logs;

// The allocator of the `plexus` binary, for the host's allocations here too
// (Python's objects keep Python's).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use backend::{ApiResult, Backend, Embedded, runtime};
use plexus_client::{CallPlugin, DaemonError, ErrorCode, PluginKind};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyTuple};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

create_exception!(
    _native,
    NativeError,
    PyException,
    "A refused or failed request: args are (code, message, details) — code from QtForge's list (`NotFound`, `InvalidState`…), details a list of str."
);

/// The most callbacks ([`Engine::wait_then`], [`Engine::watch`]) waiting at
/// once in a process.
pub const MAX_WAITERS: usize = 4_096;

/// The shortest and longest poll interval of [`Engine::watch`], ms.
pub const WATCH_INTERVAL_MS: (u64, u64) = (10, 60_000);

static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// The code a Python error carries: the daemon's, or `NetworkError` for a
/// daemon that could not be reached.
fn code_of(e: &DaemonError) -> String {
    if e.code == ErrorCode::Unknown && e.details.iter().any(|d| d == "kind: unreachable") {
        return "NetworkError".to_owned();
    }
    e.code.to_string()
}

fn py_error(e: DaemonError) -> PyErr {
    NativeError::new_err((code_of(&e), e.message.clone(), e.details))
}

fn to_py_value<T: Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let value = serde_json::to_value(value).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(convert::to_py(py, &value)?.unbind())
}

fn timeout_of(timeout_ms: Option<u64>) -> Option<Duration> {
    timeout_ms.map(Duration::from_millis)
}

/// A slot among [`MAX_WAITERS`], given back when dropped.
struct Waiter;

impl Waiter {
    fn take() -> ApiResult<Self> {
        if WAITERS.fetch_add(1, Ordering::AcqRel) >= MAX_WAITERS {
            WAITERS.fetch_sub(1, Ordering::AcqRel);
            return Err(DaemonError::invalid_state(format!(
                "{MAX_WAITERS} waits and watches are pending already: wait for some to end"
            )));
        }
        Ok(Self)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        WAITERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The arguments of a callback, built once attached.
type Args = Box<dyn FnOnce(Python<'_>) -> PyResult<Vec<Py<PyAny>>> + Send>;

/// One callback to call, and where its answer goes.
struct Job {
    callback: Arc<Py<PyAny>>,
    args: Args,
    /// Whether it returned anything but `False` (`None`: it raised).
    reply: Option<tokio::sync::oneshot::Sender<Option<bool>>>,
}

/// How many callbacks may wait for the callback thread.
const CALLBACK_QUEUE: usize = 1_024;

/// The callback thread's queue. Every callback (`wait_then`, `watch`) runs on
/// that one thread, one at a time, so none runs on a thread of the runtime
/// and none is called while the engine holds a lock; the tasks that produce
/// them wait (without a thread) while the queue is full.
fn callbacks() -> PyResult<&'static tokio::sync::mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Result<tokio::sync::mpsc::Sender<Job>, String>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(CALLBACK_QUEUE);
        std::thread::Builder::new()
            .name("plexus-callbacks".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    let answer = call_back(&job.callback, job.args);
                    if let Some(reply) = job.reply {
                        let _ = reply.send(answer);
                    }
                }
            })
            .map(|_| tx)
            .map_err(|e| format!("cannot start the callback thread: {e}"))
    });
    queue.as_ref().map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.clone()))
}

/// Call `callback(*args)` attached to the interpreter; a raise goes to
/// `sys.unraisablehook`. Returns whether it returned anything but `False`;
/// `None` if it raised or the interpreter is shutting down.
fn call_back(callback: &Py<PyAny>, args: Args) -> Option<bool> {
    Python::try_attach(|py| {
        let result = args(py).and_then(|args| PyTuple::new(py, args)).and_then(|args| callback.call1(py, args));
        match result {
            Ok(returned) => Some(!returned.bind(py).is(PyBool::new(py, false))),
            Err(e) => {
                e.write_unraisable(py, Some(callback.bind(py)));
                None
            }
        }
    })
    .flatten()
}

/// An engine: plugins, workflows, executions and transactions, embedded or
/// remote. Thread-safe: share one between threads.
#[pyclass(frozen, module = "plexus._native")]
struct Engine {
    backend: Arc<Backend>,
}

impl Engine {
    /// [`Backend::wait`] in slices, looking at Python's signals between
    /// them: Ctrl-C interrupts a long wait (`KeyboardInterrupt`).
    fn wait_interruptibly(
        &self,
        py: Python<'_>,
        execution_id: &str,
        timeout: Option<Duration>,
    ) -> PyResult<plexus_workflow::ExecutionStatus> {
        let slice = if self.backend.kind() == "remote" { SIGNAL_CHECK_REMOTE } else { SIGNAL_CHECK };
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        loop {
            let left = deadline.map(|at| at.saturating_duration_since(std::time::Instant::now()));
            let this = left.map_or(slice, |l| l.min(slice));
            match py.detach(|| self.backend.wait(execution_id, Some(this))) {
                Ok(status) => return Ok(status),
                Err(e) if e.code == ErrorCode::Timeout && left.is_none_or(|l| l > this) => py.check_signals()?,
                Err(e) => return Err(py_error(e)),
            }
        }
    }
}

/// How long a wait runs before it looks at Python's signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

/// [`SIGNAL_CHECK`] against a daemon (each slice is a request).
const SIGNAL_CHECK_REMOTE: Duration = Duration::from_secs(1);

#[pymethods]
impl Engine {
    /// An embedded engine over the plugins of `plugin_dirs`; with `state`
    /// (a SQLite file), workflows, executions and transactions are recorded
    /// and unfinished executions resume when it is opened again; `workers`
    /// bounds the executions running at once (durable engine); compiled
    /// components are cached in `cache_dir` (default `$PLEXUS_CACHE_DIR`,
    /// else `~/.cache/plexus/components`) unless `no_cache`.
    #[staticmethod]
    #[pyo3(signature = (plugin_dirs, state=None, workers=8, cache_dir=None, no_cache=false))]
    fn embedded(
        py: Python<'_>,
        plugin_dirs: Vec<PathBuf>,
        state: Option<PathBuf>,
        workers: usize,
        cache_dir: Option<PathBuf>,
        no_cache: bool,
    ) -> PyResult<Self> {
        if workers == 0 || workers > 1_024 {
            return Err(PyValueError::new_err(format!("workers: between 1 and 1024, got {workers}")));
        }
        let options = Embedded { plugin_dirs, state, workers, cache_dir, no_cache };
        let backend = py.detach(|| Backend::embedded(options)).map_err(py_error)?;
        Ok(Self { backend: Arc::new(backend) })
    }

    /// An engine that is the daemon at `address` (`host:port`,
    /// `http://host:port` or `unix:/path`), with bearer `token`.
    #[staticmethod]
    fn remote(py: Python<'_>, address: String, token: String) -> PyResult<Self> {
        let backend = py.detach(|| Backend::remote(&address, token)).map_err(py_error)?;
        Ok(Self { backend: Arc::new(backend) })
    }

    /// `embedded`, `durable` or `remote`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Whether `close` ran.
    #[getter]
    fn closed(&self) -> bool {
        self.backend.is_closed()
    }

    /// Register a workflow document (a dict, QtForge's or Plexus's shape);
    /// returns its id.
    fn register(&self, py: Python<'_>, document: &Bound<'_, PyAny>) -> PyResult<String> {
        let doc = convert::from_py(document, "workflow")?;
        let source = serde_json::to_string(&doc).map_err(|e| PyValueError::new_err(e.to_string()))?;
        py.detach(|| self.backend.register(&source)).map_err(py_error)
    }

    /// Remove workflow `workflow_id`.
    fn unregister(&self, py: Python<'_>, workflow_id: String) -> PyResult<()> {
        py.detach(|| self.backend.unregister(&workflow_id)).map_err(py_error)
    }

    /// Whether workflow `workflow_id` is registered.
    fn has(&self, py: Python<'_>, workflow_id: String) -> PyResult<bool> {
        py.detach(|| self.backend.has(&workflow_id)).map_err(py_error)
    }

    /// Workflow `workflow_id` as a Plexus document (dict).
    fn get(&self, py: Python<'_>, workflow_id: String) -> PyResult<Py<PyAny>> {
        let doc = py.detach(|| self.backend.get(&workflow_id)).map_err(py_error)?;
        Ok(convert::to_py(py, &doc)?.unbind())
    }

    /// The registered workflows' ids, sorted.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.backend.list()).map_err(py_error)
    }

    /// Remove every workflow; how many there were.
    fn clear(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.backend.clear()).map_err(py_error)
    }

    /// Start an execution of `workflow_id` with `inputs` (a dict or None),
    /// in open `transaction` if given; returns its id at once.
    #[pyo3(signature = (workflow_id, inputs=None, transaction=None))]
    fn execute(
        &self,
        py: Python<'_>,
        workflow_id: String,
        inputs: Option<&Bound<'_, PyAny>>,
        transaction: Option<String>,
    ) -> PyResult<String> {
        let inputs = convert::from_py_map(inputs, "initial_data")?;
        py.detach(|| self.backend.execute(&workflow_id, inputs, transaction)).map_err(py_error)
    }

    /// Execution `execution_id`'s status (dict).
    fn status(&self, py: Python<'_>, execution_id: String) -> PyResult<Py<PyAny>> {
        let status = py.detach(|| self.backend.status(&execution_id)).map_err(py_error)?;
        to_py_value(py, &status)
    }

    /// Wait until execution `execution_id` ends, at most `timeout_ms`
    /// (`None`: no limit); its final status (`None` without `status`, which
    /// saves building it). Raises `Timeout` at the limit.
    #[pyo3(signature = (execution_id, timeout_ms=None, status=true))]
    fn wait(&self, py: Python<'_>, execution_id: String, timeout_ms: Option<u64>, status: bool) -> PyResult<Py<PyAny>> {
        let last = self.wait_interruptibly(py, &execution_id, timeout_of(timeout_ms))?;
        if status { to_py_value(py, &last) } else { Ok(py.None()) }
    }

    /// Wait in the background; then call `callback(error, status)` on the
    /// callback thread: `error` is `None` and `status` the final status, or
    /// `error` a `NativeError` and `status` `None`.
    #[pyo3(signature = (execution_id, callback, timeout_ms=None))]
    fn wait_then(&self, execution_id: String, callback: Py<PyAny>, timeout_ms: Option<u64>) -> PyResult<()> {
        let queue = callbacks()?;
        let slot = Waiter::take().map_err(py_error)?;
        let backend = self.backend.clone();
        runtime().spawn(async move {
            let _slot = slot;
            let result = backend.wait_async(&execution_id, timeout_of(timeout_ms)).await;
            let args: Args = Box::new(move |py| match result {
                Ok(status) => Ok(vec![py.None(), to_py_value(py, &status)?]),
                Err(e) => Ok(vec![py_error(e).into_value(py).into_any(), py.None()]),
            });
            let _ = queue.send(Job { callback: Arc::new(callback), args, reply: None }).await;
        });
        Ok(())
    }

    /// Call `callback(status)` on the callback thread each time execution
    /// `execution_id`'s status changes (checked every `interval_ms`, 10 ms to
    /// 60 s), the last time with its final status. A callback that returns
    /// `False` stops the watch; one that raises is reported and the watch
    /// goes on. A failure to read the status (the orchestrator closed, the
    /// daemon unreachable) ends it with `callback({"error": {"code", "message"}})`.
    #[pyo3(signature = (execution_id, callback, interval_ms=100))]
    fn watch(&self, execution_id: String, callback: Py<PyAny>, interval_ms: u64) -> PyResult<()> {
        let (least, most) = WATCH_INTERVAL_MS;
        if !(least..=most).contains(&interval_ms) {
            return Err(PyValueError::new_err(format!("interval_ms: between {least} and {most}, got {interval_ms}")));
        }
        let queue = callbacks()?;
        let slot = Waiter::take().map_err(py_error)?;
        let backend = self.backend.clone();
        let callback = Arc::new(callback);
        runtime().spawn(async move {
            let _slot = slot;
            let mut last: Option<serde_json::Value> = None;
            loop {
                let (value, done) = match backend.status_async(&execution_id).await {
                    Ok(status) => (serde_json::to_value(&status).unwrap_or_default(), status.status.is_terminal()),
                    Err(e) => (serde_json::json!({"error": {"code": code_of(&e), "message": e.message}}), true),
                };
                if last.as_ref() != Some(&value) {
                    let sent = value.clone();
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    let args: Args = Box::new(move |py| Ok(vec![convert::to_py(py, &sent)?.unbind()]));
                    let job = Job { callback: callback.clone(), args, reply: Some(reply) };
                    if queue.send(job).await.is_err() || answer.await.ok().flatten() == Some(false) {
                        return;
                    }
                    last = Some(value);
                }
                if done {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(interval_ms)).await;
            }
        });
        Ok(())
    }

    /// Ask execution `execution_id` to stop.
    fn cancel(&self, py: Python<'_>, execution_id: String) -> PyResult<()> {
        py.detach(|| self.backend.cancel(&execution_id)).map_err(py_error)
    }

    /// QtForge's `StepResult`s of execution `execution_id` (list of dicts).
    fn step_results(&self, py: Python<'_>, execution_id: String) -> PyResult<Py<PyAny>> {
        let results = py.detach(|| self.backend.step_results(&execution_id)).map_err(py_error)?;
        to_py_value(py, &results)
    }

    /// The executions that have not ended, oldest first.
    fn active(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.backend.active()).map_err(py_error)
    }

    /// Begin transaction `transaction_id` (dict).
    fn begin_transaction(&self, py: Python<'_>, transaction_id: String) -> PyResult<Py<PyAny>> {
        let tx = py.detach(|| self.backend.begin_transaction(&transaction_id)).map_err(py_error)?;
        to_py_value(py, &tx)
    }

    /// Transaction `transaction_id` as it is now (dict).
    fn transaction(&self, py: Python<'_>, transaction_id: String) -> PyResult<Py<PyAny>> {
        let tx = py.detach(|| self.backend.transaction(&transaction_id)).map_err(py_error)?;
        to_py_value(py, &tx)
    }

    /// Commit transaction `transaction_id` (dict).
    fn commit_transaction(&self, py: Python<'_>, transaction_id: String) -> PyResult<Py<PyAny>> {
        let tx = py.detach(|| self.backend.commit_transaction(&transaction_id)).map_err(py_error)?;
        to_py_value(py, &tx)
    }

    /// Roll back transaction `transaction_id`; returns when its compensations ran (dict).
    fn rollback_transaction(&self, py: Python<'_>, transaction_id: String) -> PyResult<Py<PyAny>> {
        let tx = py.detach(|| self.backend.rollback_transaction(&transaction_id)).map_err(py_error)?;
        to_py_value(py, &tx)
    }

    /// The loaded plugins, load errors and unavailable plugins (dict, as `GET /v1/plugins`).
    fn plugins(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let list = py.detach(|| self.backend.plugins()).map_err(py_error)?;
        Ok(convert::to_py(py, &list)?.unbind())
    }

    /// Plugin `plugin_id`'s details (dict, as `GET /v1/plugins/{id}`).
    fn plugin(&self, py: Python<'_>, plugin_id: String) -> PyResult<Py<PyAny>> {
        let details = py.detach(|| self.backend.plugin(&plugin_id)).map_err(py_error)?;
        Ok(convert::to_py(py, &details)?.unbind())
    }

    /// Call `operation` of plugin `plugin_id` with `params`; its output.
    /// `timeout_ms`: default the plugin's limit; `kind`: `native` or `wasm`
    /// for a plugin loaded as both.
    #[pyo3(signature = (plugin_id, operation, params=None, timeout_ms=None, kind=None))]
    fn call(
        &self,
        py: Python<'_>,
        plugin_id: String,
        operation: String,
        params: Option<&Bound<'_, PyAny>>,
        timeout_ms: Option<u64>,
        kind: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let params = match params {
            Some(p) => convert::from_py(p, "params")?,
            None => serde_json::Value::Null,
        };
        let kind = match kind.as_deref() {
            None => None,
            Some("native") => Some(PluginKind::Native),
            Some("wasm") => Some(PluginKind::Wasm),
            Some(other) => return Err(PyValueError::new_err(format!("kind: `native` or `wasm`, got `{other}`"))),
        };
        let request = CallPlugin { operation, params, timeout_ms, kind };
        let output = py.detach(|| self.backend.call(&plugin_id, request)).map_err(py_error)?;
        Ok(convert::to_py(py, &output)?.unbind())
    }

    /// Stop (idempotent): plugins' cleanup runs; a durable engine leaves
    /// executions still running after 5 s to resume at the next open.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.backend.close());
    }
}

/// Send the host's log records at `level` (Python's numbers: 40 error, 30
/// warning, 20 info, 10 debug, 5 trace) and above to `handler(level, target,
/// message)`, called from a thread of its own; `None` stops.
#[pyfunction]
#[pyo3(signature = (handler, level=20))]
fn set_log_handler(handler: Option<Py<PyAny>>, level: u8) -> PyResult<()> {
    logs::set_handler(handler, level.max(1))
}

/// The data directory, as the daemon and the CLI find it:
/// `$PLEXUS_DATA_DIR`, else `$XDG_DATA_HOME/plexus`, else `~/.local/share/plexus`.
#[pyfunction]
fn data_dir() -> PathBuf {
    plexus_daemon::config::data_dir()
}

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_function(wrap_pyfunction!(set_log_handler, m)?)?;
    m.add_function(wrap_pyfunction!(data_dir, m)?)?;
    m.add("DEFAULT_LISTEN", plexus_daemon::config::DEFAULT_LISTEN)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
