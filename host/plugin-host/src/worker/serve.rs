//! The worker's side: load one native library, then serve calls until the
//! host closes the socket.

use super::protocol::{Conn, Frame, LoadRequest};
use crate::error::LoadErrorKind;
use crate::native::Module;
use abi_stable::std_types::{ROption, RStr, RString};
use plexus_sdk::abi::{HostExtensions, HostVTable};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Exit status of a worker whose host broke the protocol or could not be reached.
const PROTOCOL_EXIT: i32 = 70;

/// The connection and the call in flight, for the plugin's callbacks
/// (plain `extern "C"` functions, so they find it here).
struct Shared {
    conn: Mutex<Conn>,
    /// The handle of the call in flight; 0 between calls (a plugin thread
    /// that outlives its call talks to nobody).
    call: AtomicU64,
    /// The host asked the call in flight to stop.
    cancelled: AtomicBool,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Serve as a worker on the socket the host passed as standard input; the
/// process's exit status.
pub(super) fn serve() -> i32 {
    let stream = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("plexus worker: no socket on standard input: {e}");
            return PROTOCOL_EXIT;
        }
    };
    // The plugin must not read the protocol: its standard input is empty.
    crate::unsafe_ops::stdin_from_dev_null();
    let mut conn = Conn::new(stream);
    let request = match conn.recv() {
        Ok(Some(Frame::Load(json))) => match serde_json::from_str::<LoadRequest>(&json) {
            Ok(request) => request,
            Err(e) => return refuse(&mut conn, LoadErrorKind::Worker(format!("bad load request: {e}"))),
        },
        Ok(None) => return 0,
        _ => return PROTOCOL_EXIT,
    };
    if let Err(message) =
        crate::unsafe_ops::limit_worker(request.memory_bytes, request.cpu_seconds, request.no_new_privs)
    {
        return refuse(&mut conn, LoadErrorKind::Worker(message));
    }
    // Before any other thread starts: Landlock restricts the calling thread
    // and what it starts later.
    if let Some(sandbox) = &request.landlock
        && let Err(message) = super::landlock::restrict(sandbox)
    {
        return refuse(&mut conn, LoadErrorKind::Worker(message));
    }
    watch_parent();
    let module = match crate::native::open_module(&request.artifact) {
        Ok(module) => module,
        Err(kind) => return refuse(&mut conn, kind),
    };
    let metadata = (module.metadata())().into_string();
    // A contract 0.3 plugin: initialize it, with this worker's host extensions.
    if let Some(initialize) = module.initialize() {
        let config = request.config.to_string();
        let answer = initialize(&EXTENSIONS, RStr::from_str(&config)).into_string();
        if let Err(kind) = crate::native::initialize_answer(&answer) {
            return refuse(&mut conn, kind);
        }
    }
    if conn.send(&Frame::Loaded(metadata)).is_err() {
        return PROTOCOL_EXIT;
    }
    let shared =
        SHARED.get_or_init(|| Shared { conn: Mutex::new(conn), call: AtomicU64::new(0), cancelled: false.into() });
    let code = serve_calls(shared, module);
    if code == 0
        && let Some(cleanup) = module.cleanup()
    {
        // The host is done with this worker: the plugin's cleanup, then exit.
        if let Err(e) = crate::native::decode_response("", cleanup().as_str()) {
            eprintln!("plexus worker: cleanup: {e}");
        }
    }
    code
}

/// The host callbacks of contract 0.3, over the socket.
const EXTENSIONS: HostExtensions = HostExtensions { orchestrate: host_orchestrate };

/// End this worker within a second of its host's end, even in the middle of
/// a call that never returns (an idle worker ends anyway: its socket closes).
/// `PR_SET_PDEATHSIG` would follow the host *thread* that started the
/// worker, and the host starts workers from short-lived threads.
fn watch_parent() {
    let parent = std::os::unix::process::parent_id();
    let watch = move || {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(PROTOCOL_EXIT);
            }
        }
    };
    if let Err(e) = std::thread::Builder::new().name("plexus-worker-parent".into()).spawn(watch) {
        eprintln!("plexus worker: cannot watch the host process: {e}");
    }
}

/// Tell the host why the library did not load; the exit status.
fn refuse(conn: &mut Conn, kind: LoadErrorKind) -> i32 {
    let json = serde_json::to_string(&kind).unwrap_or_else(|_| "{}".into());
    if conn.send(&Frame::LoadFailed(json)).is_err() { PROTOCOL_EXIT } else { 0 }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Conn> {
    shared.conn.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve_calls(shared: &'static Shared, module: Module) -> i32 {
    let mut next_handle = 1u64;
    loop {
        // Calls often come in a row (a workflow's steps): look for the next
        // one briefly before sleeping.
        let frame = lock(shared).recv_spinning(super::SPIN);
        match frame {
            Ok(Some(Frame::Call(context))) => {
                let handle = next_handle;
                next_handle += 1;
                shared.cancelled.store(false, Ordering::SeqCst);
                shared.call.store(handle, Ordering::SeqCst);
                let vtable = HostVTable {
                    handle,
                    log: host_log,
                    state_get: host_state_get,
                    state_set: host_state_set,
                    report_progress: host_report_progress,
                    is_cancelled: host_is_cancelled,
                };
                let before = crate::unsafe_ops::process_usage();
                let response = (module.call())(&vtable, RStr::from_str(&context));
                let after = crate::unsafe_ops::process_usage();
                shared.call.store(0, Ordering::SeqCst);
                let usage = match (before, after) {
                    (Some((cpu_before, _)), Some((cpu_after, max_rss_kib))) => super::protocol::WorkerUsage {
                        cpu_us: cpu_after.saturating_sub(cpu_before).as_micros() as u64,
                        max_rss_kib,
                    },
                    _ => super::protocol::WorkerUsage::default(),
                };
                if lock(shared).send(&Frame::Done(response.into_string(), usage)).is_err() {
                    return PROTOCOL_EXIT;
                }
            }
            // A cancel that arrived after its call returned.
            Ok(Some(Frame::Cancel)) => {}
            Ok(None) => return 0, // the host is done with this worker
            Ok(Some(_)) | Err(_) => return PROTOCOL_EXIT,
        }
    }
}

/// The shared state of the call `handle`, if it is the one in flight.
fn current(handle: u64) -> Option<&'static Shared> {
    SHARED.get().filter(|s| handle != 0 && s.call.load(Ordering::SeqCst) == handle)
}

/// Send a frame for call `handle`; a broken socket means the host is gone.
fn send(handle: u64, frame: &Frame) {
    if let Some(shared) = current(handle)
        && lock(shared).send(frame).is_err()
    {
        std::process::exit(PROTOCOL_EXIT);
    }
}

// The callbacks must never panic: a panic cannot unwind through `extern "C"`.
extern "C" fn host_log(handle: u64, level: u8, message: RStr<'_>) {
    send(handle, &Frame::Log(level, message.as_str().to_owned()));
}

extern "C" fn host_state_get(handle: u64, key: RStr<'_>) -> ROption<RString> {
    let Some(shared) = current(handle) else { return ROption::RNone };
    let mut conn = lock(shared);
    if conn.send(&Frame::StateGet(key.as_str().to_owned())).is_err() {
        std::process::exit(PROTOCOL_EXIT);
    }
    loop {
        match conn.recv() {
            Ok(Some(Frame::StateValue(value))) => return value.map(RString::from).into(),
            Ok(Some(Frame::Cancel)) => shared.cancelled.store(true, Ordering::SeqCst),
            _ => std::process::exit(PROTOCOL_EXIT),
        }
    }
}

extern "C" fn host_orchestrate(handle: u64, request: RStr<'_>) -> RString {
    let Some(shared) = current(handle) else {
        return crate::native::orchestration_answer(Err(plexus_sdk::PluginError::failed("the call is over"))).into();
    };
    let mut conn = lock(shared);
    if conn.send(&Frame::Orchestrate(request.as_str().to_owned())).is_err() {
        std::process::exit(PROTOCOL_EXIT);
    }
    loop {
        match conn.recv() {
            Ok(Some(Frame::Orchestrated(answer))) => return answer.into(),
            Ok(Some(Frame::Cancel)) => shared.cancelled.store(true, Ordering::SeqCst),
            _ => std::process::exit(PROTOCOL_EXIT),
        }
    }
}

extern "C" fn host_state_set(handle: u64, key: RStr<'_>, value: RStr<'_>) {
    send(handle, &Frame::StateSet(key.as_str().to_owned(), value.as_str().to_owned()));
}

extern "C" fn host_report_progress(handle: u64, fraction: f64, message: RStr<'_>) {
    send(handle, &Frame::Progress(fraction, message.as_str().to_owned()));
}

extern "C" fn host_is_cancelled(handle: u64) -> bool {
    // A call that is over is cancelled.
    let Some(shared) = current(handle) else { return true };
    if shared.cancelled.load(Ordering::SeqCst) {
        return true;
    }
    // Look for a cancel without waiting (another thread of the plugin may hold the socket: then not now).
    if let Ok(mut conn) = shared.conn.try_lock() {
        loop {
            match conn.try_recv() {
                Ok(Some(Frame::Cancel)) => shared.cancelled.store(true, Ordering::SeqCst),
                Ok(None) => break,
                _ => std::process::exit(PROTOCOL_EXIT),
            }
        }
    }
    shared.cancelled.load(Ordering::SeqCst)
}
