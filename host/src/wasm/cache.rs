//! The on-disk cache of precompiled components.
//!
//! Compiling a component with Cranelift takes tens of milliseconds; loading a
//! precompiled one takes about one. Entries are keyed by the sha256 of the
//! component bytes and the engine's compatibility hash (wasmtime version,
//! target, settings), written atomically (temp file + rename) into a directory
//! created owner-only. The host refuses to read a cache directory that others
//! can write, and refuses to grant any plugin a directory containing it.

use crate::error::Error;
use crate::unsafe_ops;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The compiled-component cache.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

/// Where a component came from, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a precompiled entry.
    Hit,
    /// Compiled and stored a new entry.
    Stored,
    /// Compiled without a cache (disabled or unusable).
    Uncached,
}

impl ComponentCache {
    /// A cache in `dir` (created owner-only if missing), or none at all.
    ///
    /// # Errors
    /// [`Error::Cache`] when the directory cannot be created or is writable by
    /// other users (it would let them plant native code).
    pub fn new(dir: Option<PathBuf>) -> Result<Self, Error> {
        let Some(dir) = dir else { return Ok(Self { dir: None }) };
        let fail = |message: String| Error::Cache { path: dir.clone(), message };
        std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&dir).map_err(|e| fail(e.to_string()))?;
            if meta.permissions().mode() & 0o022 != 0 {
                // Only tighten what we may own; refuse what stays open.
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
                let mode = std::fs::metadata(&dir).map_err(|e| fail(e.to_string()))?.permissions().mode();
                if mode & 0o022 != 0 {
                    return Err(fail(format!("is writable by other users (mode {:o})", mode & 0o777)));
                }
            }
        }
        let dir = dir.canonicalize().map_err(|e| fail(e.to_string()))?;
        Ok(Self { dir: Some(dir) })
    }

    /// The cache directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The component for `bytes`: from the cache, or compiled (and stored).
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Uncached));
        };
        let path = dir.join(format!("{}.cwasm", cache_key(engine, bytes)));
        if path.is_file() {
            match unsafe_ops::deserialize_cached_component(engine, &path) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}"),
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        let component = unsafe_ops::deserialize_fresh_component(engine, &compiled)?;
        let outcome = match write_atomically(dir, &path, &compiled) {
            Ok(()) => CacheOutcome::Stored,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot store compiled component: {e}");
                CacheOutcome::Uncached
            }
        };
        Ok((component, outcome))
    }
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    format!("{}-{:016x}", hex(&Sha256::digest(bytes)), engine_hash.finish())
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
