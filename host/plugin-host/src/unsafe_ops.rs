//! Every `unsafe` block of the host lives here, each with a `SAFETY` comment.
#![allow(unsafe_code)]

use wasmtime::component::Component;
use wasmtime::{Engine, Result};

/// Load a precompiled component from the host's own cache, whose tag verified.
///
/// Only call this with bytes whose HMAC tag (see `wasm::cache`) was checked: a
/// precompiled artifact is native code and is trusted as such.
pub(crate) fn deserialize_verified_component(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    // SAFETY: `bytes` come from the component cache, a directory the host
    // created owner-only and that no plugin is granted, and their HMAC-SHA256
    // tag under the cache's secret key verified: the host itself wrote them
    // with `Engine::precompile_component`, for an engine with the same
    // compatibility hash (part of the entry's name, which the tag covers);
    // wasmtime checks the header again and refuses a mismatch.
    unsafe { Component::deserialize(engine, bytes) }
}

/// Load a component the host has just precompiled in memory.
pub(crate) fn deserialize_fresh_component(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    // SAFETY: `bytes` came from `engine.precompile_component` in this process a
    // moment ago; they were never written anywhere a plugin could touch.
    unsafe { Component::deserialize(engine, bytes) }
}

/// Have `handler` run when the process ends through `exit()` (C `atexit`,
/// which Rust's `std::process::exit` and returning from `main` both reach).
/// Returns false if it could not be registered (or on non-Unix systems).
pub(crate) fn at_exit(handler: extern "C" fn()) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: `atexit` only stores the pointer; `handler` is a plain
        // `extern "C" fn()` with no captured state, valid for the whole
        // process (it is a function of this binary, never unloaded).
        unsafe { libc::atexit(handler) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = handler;
        false
    }
}

/// End the process now with `code`, running no further exit handlers (to be
/// called from an exit handler, where `exit` must not be called again).
pub(crate) fn exit_now(code: i32) -> ! {
    #[cfg(unix)]
    {
        // SAFETY: `_exit` takes no pointers and does not return; skipping the
        // remaining exit handlers is the intent (the process is already
        // exiting, and calling `exit` again from a handler is undefined).
        unsafe { libc::_exit(code) }
    }
    #[cfg(not(unix))]
    std::process::exit(code)
}

/// Raise this process's soft limit of open files to its hard limit; returns
/// the limit now in force, or `None` where it cannot be read (non-Unix).
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `getrlimit` writes one `rlimit` through a valid, exclusive
        // pointer to a local; it keeps no reference to it.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            // SAFETY: `setrlimit` reads one `rlimit` through a valid pointer to
            // a local; raising the soft limit up to the hard one needs no privilege.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        #[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every Unix
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}
