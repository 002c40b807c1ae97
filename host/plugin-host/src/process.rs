//! Telling a native plugin's `exit()` from the host's own.
//!
//! A native plugin runs in the host's process: if it calls
//! `std::process::exit(0)` during a call, the process ends there, and a CLI
//! such as `plexus call` would end with status 0 and no output, as if all
//! went well. [`report_plugin_exit`] registers an exit handler that, when the
//! process exits while a native call is in flight and the host has not said
//! it is exiting itself ([`host_exits`]), prints
//! "error: plugin `ID` ended the process …" on stderr and ends the process
//! with [`PLUGIN_EXIT_CODE`] instead. It cannot stop the exit (nothing
//! in-process can), and it does not see a plugin's exit from a thread of its
//! own outside a call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// Raise the process's soft limit of open files to its hard limit (as servers
/// commonly do), so the descriptors WASM plugins may hold — up to
/// `limits.handles` per call, 64 calls per plugin at once — do not starve the
/// host's own sockets and database files. Returns the limit in force (`None`
/// where it is unknown); the daemon logs it at start.
pub fn raise_open_file_limit() -> Option<u64> {
    crate::unsafe_ops::raise_open_file_limit()
}

/// The exit status of a process that a native plugin ended during a call.
pub const PLUGIN_EXIT_CODE: i32 = 12;

static ARMED: AtomicBool = AtomicBool::new(false);
static INSTALLED: std::sync::Once = std::sync::Once::new();
/// Plugin ids of the native calls running now (one entry per call).
static IN_FLIGHT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// From now on, an exit while a native call is in flight is reported as the
/// plugin's doing (see the module docs). Call it once, early in `main`.
/// Returns false where exit handlers are not supported (non-Unix).
pub fn report_plugin_exit() -> bool {
    let mut installed = false;
    INSTALLED.call_once(|| installed = crate::unsafe_ops::at_exit(on_exit));
    ARMED.store(true, Ordering::SeqCst);
    installed || INSTALLED.is_completed()
}

/// The host is exiting on its own (e.g. `main` returns while an abandoned
/// native call still runs): do not blame the plugin.
pub fn host_exits() {
    ARMED.store(false, Ordering::SeqCst);
}

/// A native call in flight, for as long as it lives (tracked only once
/// [`report_plugin_exit`] was called: a library user who did not ask pays nothing).
pub(crate) struct InFlight(Option<String>);

impl InFlight {
    /// Plugin `id` is being called.
    pub(crate) fn enter(id: &str) -> Self {
        if !ARMED.load(Ordering::Relaxed) {
            return Self(None);
        }
        IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner).push(id.to_owned());
        Self(Some(id.to_owned()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(id) = &self.0 else { return };
        let mut calls = IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = calls.iter().position(|c| c == id) {
            calls.swap_remove(i);
        }
    }
}

extern "C" fn on_exit() {
    if !ARMED.load(Ordering::SeqCst) {
        return;
    }
    // try_lock: never wait in an exit handler.
    let plugin = match IN_FLIGHT.try_lock() {
        Ok(calls) => calls.first().cloned(),
        Err(_) => Some("?".to_owned()),
    };
    if let Some(plugin) = plugin {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "error: plugin `{plugin}` ended the process (it called exit during a call); the call did not complete"
        );
        crate::unsafe_ops::exit_now(PLUGIN_EXIT_CODE);
    }
}
