//! Every `unsafe` block of the host lives here, each with a `SAFETY` comment.
#![allow(unsafe_code)]

use std::path::Path;
use wasmtime::component::Component;
use wasmtime::{Engine, Result};

/// Load a precompiled component from the host's own cache.
///
/// Only call this with files the host wrote itself (see `wasm::cache`): a
/// precompiled artifact is native code and is trusted as such.
pub(crate) fn deserialize_cached_component(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: `path` is inside the component cache, a directory the host
    // created with owner-only permissions, that no plugin is granted, and that
    // holds only files the host wrote with `Engine::precompile_component` for a
    // compatible engine (the file name carries the engine's compatibility
    // hash; wasmtime checks the header again and refuses a mismatch).
    unsafe { Component::deserialize_file(engine, path) }
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
