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
