//! Native plugins out of process (`isolation = "process"` in `plugin.toml`).
//!
//! The host runs such a plugin in **worker processes**: the host's own
//! binary (or [`crate::HostBuilder::worker_program`]) started with the
//! argument [`WORKER_ARG`], which loads the library and serves calls over a
//! Unix socket pair (its standard input) with the same contract as an
//! in-process call: the execution context in, the output or the plugin's
//! error out, the host services (log, state get/set, progress, cancellation)
//! proxied back. The rest of the host sees one more [`Runtime`]. The model
//! is HashiCorp go-plugin's (a child process per plugin, RPC over a local
//! socket), with a pool and a crash policy.
//!
//! * **Load**: the first worker starts when the plugin loads, loads the
//!   library, returns its metadata (checked against the manifest as for an
//!   in-process plugin), and stays as the first idle worker. A library that
//!   crashes while loading does not load; the host is untouched.
//! * **Pool**: up to `worker.max` workers (default 4), started when calls
//!   need them and kept idle between calls; a call that finds all busy waits
//!   for one within its deadline, else fails with [`CallError::Capacity`].
//! * **Crashes**: a worker that ends during a call (a signal such as
//!   `SIGSEGV` or `SIGABRT` — a stack overflow or a panic while unwinding
//!   ends in one —, `exit()` with any status, a resource limit) fails that
//!   call with [`CallError::Crashed`] naming the signal or status and the
//!   worker's last line of output; the call's step is retried by its policy.
//!   The next call starts a new worker, after a backoff while crashes follow
//!   one another ([`RESTART_BACKOFF`], doubling to [`MAX_RESTART_BACKOFF`]).
//!   [`CRASH_LIMIT`] crashes within [`CRASH_WINDOW`] mark the plugin
//!   unavailable, with that reason, until it is reloaded or the host restarts.
//! * **Hard deadlines**: at a call's deadline (or when its execution is
//!   cancelled) the worker is told to stop (`is_cancelled` turns true); a
//!   call still running [`CANCEL_GRACE`] later is killed (`SIGKILL`) with its
//!   worker. Nothing is abandoned, nothing keeps running.
//! * **Limits** (`[worker]`, Linux): address space (`RLIMIT_AS`), CPU time
//!   over the worker's life (`RLIMIT_CPU`), and `no_new_privs` (on by
//!   default). These bound what a plugin can take; they are not a sandbox:
//!   without `[worker.landlock]`, a native plugin in a worker runs with the
//!   host user's rights and can read and write what that user can.
//! * **Landlock** (`[worker.landlock]`, Linux ≥ 6.2): the worker restricts
//!   itself before it loads the library — it reads only its plugin's files,
//!   the system libraries and the paths granted, writes only those granted,
//!   opens no TCP connection (Linux ≥ 6.7) and, where the kernel can, signals
//!   nothing outside its sandbox ([`crate::manifest::Landlock`]). A kernel
//!   that cannot enforce it refuses the plugin. It is a boundary for files
//!   and TCP, not for everything (UDP, other system calls): sandbox
//!   untrusted code as WASM.
//! * **Output**: what a worker prints (stdout and stderr) goes to the log,
//!   target `plexus::plugin`, one event per line (lines past 8 KiB are cut).
//!
//! Unix only (Unix sockets, signals).

mod landlock;
mod protocol;
mod serve;

use crate::error::{CallError, LoadErrorKind};
use crate::manifest::{Manifest, PluginKind, WorkerLimits};
use crate::runtime::{self, Runtime};
use crate::services::CallServices;
use plexus_sdk::{CallOutput, ExecutionContext, HostServices, LogLevel, Metadata};
use protocol::{Conn, Frame, LoadRequest};
use std::collections::VecDeque;
use std::io::{self, BufRead, Read as _};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The first argument that makes a program a worker (see [`serve_if_requested`]).
pub const WORKER_ARG: &str = "__plexus-worker";

/// How long a call asked to stop (deadline or cancel) has to return before
/// its worker is killed: 500 ms.
pub const CANCEL_GRACE: Duration = Duration::from_millis(500);

/// How many crashes within [`CRASH_WINDOW`] make the plugin unavailable: 5.
pub const CRASH_LIMIT: usize = 5;

/// The window of [`CRASH_LIMIT`]: 60 s.
pub const CRASH_WINDOW: Duration = Duration::from_secs(60);

/// The wait before starting a worker after a crash: 50 ms, doubled for
/// each further crash in a row (no call in between succeeded).
pub const RESTART_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait before starting a worker after crashes: 5 s.
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(5);

/// How long the host polls for a worker's answer, and a worker for its
/// next call, before sleeping (see `Conn::recv_spinning`): 50 µs.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// How often a waiting call looks at its deadline and its cancel token.
const POLL: Duration = Duration::from_millis(5);

/// The longest line of a worker's output sent to the log; the rest is cut.
const MAX_LINE_BYTES: usize = 8 << 10;

/// Whether this program called [`serve_if_requested`]: it can be a worker.
static SERVES: AtomicBool = AtomicBool::new(false);

/// Call this first thing in `main` of a program that hosts plugins: when the
/// program was started as a worker (first argument [`WORKER_ARG`]), it
/// serves and exits here and never returns; otherwise it returns at once,
/// and the host may use this program (`current_exe`) as its worker program.
/// The `plexus` binary does this.
pub fn serve_if_requested() {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == WORKER_ARG) {
        std::process::exit(serve::serve());
    }
    SERVES.store(true, Ordering::SeqCst);
}

/// The program started as a worker: `explicit` (the host builder's), else
/// `$PLEXUS_WORKER_PROGRAM`, else this program if it serves (see
/// [`serve_if_requested`]).
///
/// # Errors
/// [`LoadErrorKind::Worker`] when there is none.
pub(crate) fn program(explicit: Option<&Path>) -> Result<PathBuf, LoadErrorKind> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os("PLEXUS_WORKER_PROGRAM") {
        return Ok(path.into());
    }
    if SERVES.load(Ordering::SeqCst) {
        return std::env::current_exe()
            .map_err(|e| LoadErrorKind::Worker(format!("cannot find this program to start it as a worker: {e}")));
    }
    Err(LoadErrorKind::Worker(
        "no worker program: this process cannot serve as a Plexus worker (call plexus_host::worker::serve_if_requested() \
         first thing in main), and neither HostBuilder::worker_program nor $PLEXUS_WORKER_PROGRAM names one"
            .into(),
    ))
}

/// A native plugin run in worker processes.
pub(crate) struct ProcessPlugin {
    metadata: Metadata,
    pool: Arc<Pool>,
}

/// The workers of one plugin and its crash record.
struct Pool {
    id: String,
    /// The metadata the first worker reported, as JSON: every later worker
    /// must report the same (the library did not change under the host).
    metadata: String,
    program: PathBuf,
    request: LoadRequest,
    max: u32,
    state: Mutex<PoolState>,
    /// Signalled when a worker is returned or a slot freed.
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Worker>,
    /// Workers alive or starting (idle or busy).
    live: u32,
    /// When the recent crashes happened, oldest first (within [`CRASH_WINDOW`]).
    crashes: VecDeque<Instant>,
    /// Crashes since the last call that returned.
    in_a_row: u32,
    /// No worker starts before this (backoff after a crash).
    next_start: Option<Instant>,
    /// Set once the plugin crashed too often.
    unavailable: Option<String>,
}

/// One worker process and its end of the socket.
struct Worker {
    child: Child,
    conn: Conn,
    output: Arc<Output>,
}

/// The last lines a worker printed, and whether its output has ended.
#[derive(Default)]
struct Output {
    tail: Mutex<(VecDeque<String>, bool)>,
    ended: Condvar,
}

impl ProcessPlugin {
    /// Start the first worker of the plugin `manifest` describes and check
    /// the metadata it reports.
    pub(crate) fn load(manifest: &Manifest, program: &Path) -> Result<Self, LoadErrorKind> {
        let limits: &WorkerLimits = &manifest.worker;
        let request = LoadRequest {
            artifact: manifest.artifact.clone(),
            memory_bytes: limits.memory_bytes,
            cpu_seconds: limits.cpu_seconds,
            no_new_privs: limits.no_new_privs,
            landlock: limits.landlock.clone().map(|mut sandbox| {
                sandbox.read.push(manifest.dir.clone());
                sandbox.read.extend(manifest.artifact.parent().map(Path::to_path_buf));
                sandbox
            }),
            config: manifest.call_config().clone(),
        };
        let label = if manifest.id.is_empty() { manifest.artifact.display().to_string() } else { manifest.id.clone() };
        let timeout = manifest.limits.timeout.min(crate::wasm::DESCRIBE_TIMEOUT);
        let (worker, json) = Worker::start(&label, program, &request, timeout).map_err(|e| match e {
            Started::Refused(kind) => kind,
            Started::Failed(message) => LoadErrorKind::Worker(message),
        })?;
        let metadata = crate::native::parse_metadata(&json)?;
        runtime::check_metadata(&metadata, manifest)?;
        let id = if manifest.id.is_empty() { metadata.id.clone() } else { manifest.id.clone() };
        let state = PoolState { idle: vec![worker], live: 1, ..PoolState::default() };
        let pool = Pool {
            id,
            metadata: json,
            program: program.to_owned(),
            request,
            max: limits.max,
            state: Mutex::new(state),
            freed: Condvar::new(),
        };
        Ok(Self { metadata, pool: Arc::new(pool) })
    }
}

impl Runtime for ProcessPlugin {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn kind(&self) -> PluginKind {
        PluginKind::Native
    }

    fn preemptible(&self) -> bool {
        true // a worker past its deadline is killed
    }

    fn runs_on_caller_thread(&self) -> bool {
        false // its worker process measures it (see `protocol::WorkerUsage`)
    }

    fn unavailable(&self) -> Option<String> {
        self.pool.lock().unavailable.clone()
    }

    fn stop(&self) {
        // Idle workers run the plugin's cleanup and exit when their socket closes.
        let idle = std::mem::take(&mut self.pool.lock().idle);
        let mut state = self.pool.lock();
        state.live = state.live.saturating_sub(u32::try_from(idle.len()).unwrap_or(u32::MAX));
        drop(state);
        drop(idle);
        self.pool.freed.notify_all();
    }

    fn call(
        &self,
        exec: &ExecutionContext,
        services: &CallServices,
        timeout: Option<Duration>,
    ) -> Result<CallOutput, CallError> {
        let pool = &self.pool;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let context = serde_json::to_string(exec).map_err(|e| CallError::Host {
            plugin: pool.id.clone(),
            message: format!("cannot encode the execution context: {e}"),
        })?;
        let stopped = |services: &CallServices| {
            if services.execution_cancelled() {
                CallError::Cancelled { plugin: pool.id.clone() }
            } else {
                CallError::Timeout { plugin: pool.id.clone(), after: timeout.unwrap_or_default() }
            }
        };
        let mut worker = pool.acquire(deadline, services, &stopped)?;
        match worker.run(&context, services, deadline, self.pool.request.landlock.is_none()) {
            Ran::Done { response, late } => {
                pool.release(worker);
                if late {
                    return Err(stopped(services));
                }
                crate::native::decode_response(&pool.id, &response)
            }
            Ran::Killed => {
                tracing::warn!(plugin = %pool.id, grace_ms = CANCEL_GRACE.as_millis() as u64,
                    "call did not stop within its grace period: its worker was killed");
                pool.lost(worker, None);
                Err(stopped(services))
            }
            Ran::Crashed => {
                let reason = worker.end();
                tracing::error!(plugin = %pool.id, "worker crashed during a call: {reason}");
                pool.lost(worker, Some(&reason));
                Err(CallError::Crashed { plugin: pool.id.clone(), reason })
            }
            Ran::Broken(message) => {
                tracing::error!(plugin = %pool.id, "worker broke the protocol: {message}; killed");
                pool.lost(worker, None);
                Err(CallError::Host { plugin: pool.id.clone(), message: format!("its worker process {message}") })
            }
        }
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle worker, or a new one, waiting within `deadline` while all are busy.
    fn acquire(
        &self,
        deadline: Option<Instant>,
        services: &CallServices,
        stopped: &dyn Fn(&CallServices) -> CallError,
    ) -> Result<Worker, CallError> {
        let mut state = self.lock();
        loop {
            if let Some(reason) = &state.unavailable {
                return Err(CallError::Unavailable { plugin: self.id.clone(), reason: reason.clone() });
            }
            if let Some(worker) = state.idle.pop() {
                return Ok(worker);
            }
            let now = Instant::now();
            if services.should_stop() {
                return Err(stopped(services));
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(if state.live >= self.max {
                    CallError::Capacity {
                        plugin: self.id.clone(),
                        message: format!("all {} of its worker processes stayed busy until the deadline", self.max),
                    }
                } else {
                    stopped(services)
                });
            }
            let backoff = state.next_start.filter(|&at| at > now);
            if state.live < self.max && backoff.is_none() {
                state.live += 1;
                drop(state);
                return self.start(deadline);
            }
            let until = backoff.unwrap_or(now + POLL).min(now + POLL);
            state = self.freed.wait_timeout(state, until - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Start a worker for a call (its slot is counted already).
    fn start(&self, deadline: Option<Instant>) -> Result<Worker, CallError> {
        let timeout = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(crate::wasm::DESCRIBE_TIMEOUT)
            .min(crate::wasm::DESCRIBE_TIMEOUT)
            .max(POLL);
        match Worker::start(&self.id, &self.program, &self.request, timeout) {
            Ok((worker, metadata)) if metadata == self.metadata => Ok(worker),
            Ok((worker, _)) => {
                drop(worker);
                self.lock().live -= 1;
                self.freed.notify_all();
                let reason = "its library changed on disk since it was loaded (a new worker describes it otherwise); \
                              it is loaded again at the next scan"
                    .to_owned();
                tracing::warn!(plugin = %self.id, "{reason}");
                Err(CallError::Unavailable { plugin: self.id.clone(), reason })
            }
            Err(e) => {
                let reason = match e {
                    Started::Refused(kind) => format!("its new worker could not load the plugin: {kind}"),
                    Started::Failed(message) => format!("its new worker {message}"),
                };
                tracing::error!(plugin = %self.id, "{reason}");
                self.crashed(&reason);
                Err(CallError::Crashed { plugin: self.id.clone(), reason })
            }
        }
    }

    /// A worker whose call returned: idle again (the crashes in a row are over).
    fn release(&self, worker: Worker) {
        let mut state = self.lock();
        state.in_a_row = 0;
        state.next_start = None;
        if state.unavailable.is_none() {
            state.idle.push(worker);
        } else {
            state.live -= 1;
            drop(state);
            drop(worker);
        }
        self.freed.notify_one();
    }

    /// A worker that was killed or died: its slot is free; with `crash`, the
    /// crash is recorded.
    fn lost(&self, worker: Worker, crash: Option<&str>) {
        drop(worker); // kills and reaps it
        match crash {
            Some(reason) => self.crashed(reason),
            None => {
                self.lock().live -= 1;
                self.freed.notify_all();
            }
        }
    }

    /// Record a crash (the worker's slot is freed): back off, and past
    /// [`CRASH_LIMIT`] in [`CRASH_WINDOW`], make the plugin unavailable.
    fn crashed(&self, reason: &str) {
        let mut state = self.lock();
        let now = Instant::now();
        state.live -= 1;
        state.crashes.push_back(now);
        while state.crashes.front().is_some_and(|&t| now.duration_since(t) > CRASH_WINDOW) {
            state.crashes.pop_front();
        }
        state.in_a_row += 1;
        let backoff = RESTART_BACKOFF.saturating_mul(1 << (state.in_a_row - 1).min(16)).min(MAX_RESTART_BACKOFF);
        state.next_start = Some(now + backoff);
        if state.crashes.len() >= CRASH_LIMIT && state.unavailable.is_none() {
            let reason = format!(
                "its worker crashed {} times within {} s (last: {reason}); it is unavailable until it is reloaded or the host restarts",
                state.crashes.len(),
                CRASH_WINDOW.as_secs()
            );
            tracing::error!(plugin = %self.id, "plugin unavailable: {reason}");
            state.unavailable = Some(reason);
            let idle = std::mem::take(&mut state.idle);
            state.live -= idle.len() as u32;
            drop(state);
            drop(idle);
        }
        self.freed.notify_all();
    }
}

/// How a worker failed to start.
enum Started {
    /// It ran and refused the library (the reason it did not load).
    Refused(LoadErrorKind),
    /// It could not be started, crashed, or did not answer.
    Failed(String),
}

/// How a call in a worker ended.
enum Ran {
    /// The worker answered; `late` when only after the call was asked to stop.
    Done { response: String, late: bool },
    /// Killed past its grace period.
    Killed,
    /// The worker ended (its socket closed).
    Crashed,
    /// The worker sent something that is not the protocol; killed.
    Broken(String),
}

impl Worker {
    /// Start `program` as a worker of `plugin`, have it load `request`, and
    /// wait at most `timeout` for it; the worker and the plugin's metadata.
    fn start(
        plugin: &str,
        program: &Path,
        request: &LoadRequest,
        timeout: Duration,
    ) -> Result<(Self, String), Started> {
        let failed = |what: &str, e: io::Error| Started::Failed(format!("{what}: {e}"));
        let (host_end, worker_end) = UnixStream::pair().map_err(|e| failed("cannot create a socket pair", e))?;
        let (reader, writer) = io::pipe().map_err(|e| failed("cannot create a pipe", e))?;
        let stdout = writer.try_clone().map_err(|e| failed("cannot create a pipe", e))?;
        let child = Command::new(program)
            .arg(WORKER_ARG)
            .stdin(Stdio::from(OwnedFd::from(worker_end)))
            .stdout(stdout)
            .stderr(writer)
            .spawn()
            .map_err(|e| Started::Failed(format!("cannot be started ({}): {e}", program.display())))?;
        let output = Arc::new(Output::default());
        let forward = {
            let (output, plugin, pid) = (output.clone(), plugin.to_owned(), child.id());
            move || output.forward(reader, &plugin, pid)
        };
        if let Err(e) = std::thread::Builder::new().name("plexus-worker-output".into()).spawn(forward) {
            tracing::warn!(plugin, "cannot forward a worker's output to the log: {e}");
        }
        let mut worker = Worker { child, conn: Conn::new(host_end), output };
        let request = serde_json::to_string(request).expect("a load request serializes");
        if worker.conn.send(&Frame::Load(request)).is_err() {
            return Err(Started::Failed(format!("crashed before loading the plugin: {}", worker.end())));
        }
        let answer = worker.conn.stream().set_read_timeout(Some(timeout)).and_then(|()| worker.conn.recv());
        match answer {
            Ok(Some(Frame::Loaded(metadata))) => {
                if let Err(e) = worker.conn.stream().set_read_timeout(Some(POLL)) {
                    return Err(failed("cannot set the socket's timeout", e));
                }
                Ok((worker, metadata))
            }
            Ok(Some(Frame::LoadFailed(json))) => Err(match serde_json::from_str::<LoadErrorKind>(&json) {
                Ok(kind) => Started::Refused(kind),
                Err(_) => Started::Failed(format!("refused the plugin: {json}")),
            }),
            Ok(None) | Err(_) if !worker.alive() => {
                Err(Started::Failed(format!("crashed while loading the plugin: {}", worker.end())))
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(Started::Failed(format!("did not load the plugin within {} ms (killed)", timeout.as_millis())))
            }
            other => Err(Started::Failed(format!("answered the load request with {other:?} (killed)"))),
        }
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        // The socket closes as the process exits: give it a moment to be reaped.
        for _ in 0..50 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Run one call; answer the worker's service requests meanwhile.
    /// `files`: whether the worker can reach the artifact store's files (it
    /// is not restricted by Landlock).
    fn run(&mut self, context: &str, services: &CallServices, deadline: Option<Instant>, files: bool) -> Ran {
        if self.conn.send(&Frame::Call(context.to_owned())).is_err() {
            return Ran::Crashed;
        }
        // When the call was asked to stop, and when it is killed if still running.
        let mut stop: Option<Instant> = None;
        let mut spin = SPIN;
        loop {
            let frame = self.conn.recv_spinning(spin);
            spin = Duration::ZERO; // once per call: a call that takes longer sleeps
            match frame {
                Ok(Some(Frame::Done(response, usage))) => {
                    services.record_usage(crate::services::CallUsage {
                        cpu_ms: Some(usage.cpu_us as f64 / 1000.0),
                        peak_memory_bytes: Some(usage.max_rss_kib.saturating_mul(1024)),
                    });
                    return Ran::Done { response, late: stop.is_some() };
                }
                Ok(Some(Frame::Log(level, message))) => services.log(LogLevel::from_u8(level), &message),
                Ok(Some(Frame::StateGet(key))) => {
                    let value = services.state_get(&key).map(|v| v.to_string());
                    if self.conn.send(&Frame::StateValue(value)).is_err() {
                        return Ran::Crashed;
                    }
                }
                Ok(Some(Frame::StateSet(key, value))) => {
                    let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
                    services.state_set(&key, value);
                }
                Ok(Some(Frame::Progress(fraction, message))) => services.report_progress(fraction, &message),
                Ok(Some(Frame::Orchestrate(request))) => {
                    let answer = crate::services::answer_request(services, &request, files);
                    if self.conn.send(&Frame::Orchestrated(answer)).is_err() {
                        return Ran::Crashed;
                    }
                }
                Ok(Some(other)) => return Ran::Broken(format!("sent {other:?} during a call")),
                Ok(None) => return Ran::Crashed,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ran::Broken(e.to_string()),
                Err(_) => return Ran::Crashed,
            }
            let now = Instant::now();
            match stop {
                Some(kill_at) if now >= kill_at => return Ran::Killed,
                Some(_) => {}
                None if services.should_stop() || deadline.is_some_and(|d| now >= d) => {
                    services.interrupt();
                    if self.conn.send(&Frame::Cancel).is_err() {
                        return Ran::Crashed;
                    }
                    stop = Some(now + CANCEL_GRACE);
                }
                None => {}
            }
        }
    }

    /// How the process ended (waiting briefly for it; killing it if it
    /// lingers), with its last line of output.
    fn end(&mut self) -> String {
        let status = if self.alive() {
            let _ = self.child.kill();
            self.child.wait().ok().map(|_| "closed its socket and was killed".to_owned())
        } else {
            self.child.wait().ok().map(describe)
        };
        let mut reason = status.unwrap_or_else(|| "its worker ended".into());
        if let Some(last) = self.output.last_words() {
            reason.push_str(&format!("; its last output: {last}"));
        }
        reason
    }
}

/// How long a retired worker may take to exit by itself (its plugin's
/// `cleanup` runs then) before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

impl Drop for Worker {
    fn drop(&mut self) {
        // An idle worker runs its plugin's cleanup and exits by itself when
        // its socket closes; one that does not within the grace (busy,
        // stuck) is killed. Either way it is reaped.
        let _ = self.conn.stream().shutdown(std::net::Shutdown::Both);
        let until = Instant::now() + EXIT_GRACE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Whether `line` is part of a Rust backtrace (a frame, its location, the
/// header or the footer), not a message.
fn is_backtrace(line: &str) -> bool {
    let line = line.trim_start();
    let frame = line.split_once(": ").is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    frame || line.starts_with("at ") || line == "stack backtrace:" || line.starts_with("note: Some details are omitted")
}

/// "its worker was killed by signal 11 (SIGSEGV)" or "its worker exited with status 3".
fn describe(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = signal_name(signal).map(|n| format!(" ({n})")).unwrap_or_default();
        let why = match signal {
            libc::SIGXCPU => ": its CPU time limit (worker.cpu_seconds) was reached",
            _ => "",
        };
        return format!("its worker was killed by signal {signal}{name}{why}");
    }
    match status.code() {
        Some(code) => format!("its worker exited with status {code} during the call"),
        None => format!("its worker ended ({status})"),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

impl Output {
    /// Send each line of `reader` (the worker's stdout and stderr) to the
    /// log, keeping the last few, until the worker's end closes it.
    fn forward(&self, reader: io::PipeReader, plugin: &str, pid: u32) {
        let mut reader = io::BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut reader).take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut line);
            match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if text.is_empty() {
                continue;
            }
            let text = &*crate::secrets::redactor().text(text);
            tracing::info!(target: "plexus::plugin", plugin, worker = pid, "{text}");
            if is_backtrace(text) {
                continue; // the crash's cause is in the lines before a backtrace
            }
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.0.len() == 2 {
                tail.0.pop_front();
            }
            tail.0.push_back(text.to_owned());
        }
        self.tail.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.ended.notify_all();
    }

    /// The last lines the worker printed (at most two), once its output
    /// ended (waiting up to 200 ms for that).
    fn last_words(&self) -> Option<String> {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        let (tail, _) = self
            .ended
            .wait_timeout_while(tail, Duration::from_millis(200), |t| !t.1)
            .unwrap_or_else(PoisonError::into_inner);
        (!tail.0.is_empty()).then(|| tail.0.iter().cloned().collect::<Vec<_>>().join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_is_told_by_its_signal_or_status_and_backtraces_are_not_last_words() {
        assert_eq!(describe(ExitStatus::from_raw(libc::SIGSEGV)), "its worker was killed by signal 11 (SIGSEGV)");
        assert!(describe(ExitStatus::from_raw(libc::SIGXCPU)).contains("worker.cpu_seconds"));
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "its worker exited with status 3 during the call");
        for frame in
            ["   0: __rustc::rust_begin_unwind", "             at /rustc/x/panicking.rs:689:5", "stack backtrace:"]
        {
            assert!(is_backtrace(frame), "{frame}");
        }
        for message in ["memory allocation of 4294967296 bytes failed", "thread 'main' (674) has overflowed its stack"]
        {
            assert!(!is_backtrace(message), "{message}");
        }
    }

    #[test]
    fn without_a_worker_program_process_isolation_says_how_to_get_one() {
        if std::env::var_os("PLEXUS_WORKER_PROGRAM").is_none() {
            let err = program(None).unwrap_err().to_string();
            assert!(err.contains("serve_if_requested") && err.contains("PLEXUS_WORKER_PROGRAM"), "{err}");
        }
        assert_eq!(program(Some(Path::new("/bin/w"))).unwrap(), Path::new("/bin/w"));
    }
}
