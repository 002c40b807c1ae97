//! Discovery: scan plugin directories and load every plugin folder found.
//!
//! Discovery never fails fast. Every plugin that loads is available; every one
//! that does not is reported with its path and reason, and the others load
//! regardless.

use crate::error::{LoadError, LoadErrorKind};
use crate::manifest::{MANIFEST_FILE, Manifest, PluginKind};
use crate::native::NativePlugin;
use crate::runtime::Runtime;
use crate::wasm::{WasmEngine, WasmPlugin, cache::hex};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A plugin that loaded: its manifest and its runtime.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The validated manifest.
    pub manifest: Manifest,
    /// The runtime that calls it.
    pub runtime: Arc<dyn Runtime>,
}

impl LoadedPlugin {
    /// The plugin id.
    pub fn id(&self) -> &str {
        &self.manifest.id
    }
}

/// What discovery found: the plugins that loaded, by id, and every error.
#[derive(Default)]
pub struct Discovered {
    /// Loaded plugins by id.
    pub plugins: BTreeMap<String, LoadedPlugin>,
    /// One entry per plugin (or directory) that did not load.
    pub errors: Vec<LoadError>,
}

/// The plugin folders of `dir`: its subdirectories, by name. A missing or
/// unreadable directory is reported as an error.
fn plugin_folders(dir: &Path, errors: &mut Vec<LoadError>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(LoadError::new(dir, None, LoadErrorKind::ReadManifest(format!("cannot read plugins directory: {e}"))));
            return Vec::new();
        }
    };
    let mut folders: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    folders
}

/// Scan `dirs` in order and load every plugin folder. `wasm` is created on
/// first need by `engine`.
pub fn discover(dirs: &[PathBuf], engine: &mut dyn FnMut() -> Result<WasmEngine, String>) -> Discovered {
    let mut found = Discovered::default();
    let mut engine_cache: Option<Result<WasmEngine, String>> = None;
    for dir in dirs {
        for folder in plugin_folders(dir, &mut found.errors) {
            let started = std::time::Instant::now();
            let manifest = match Manifest::load(&folder) {
                Ok(m) => m,
                Err(kind) => {
                    found.errors.push(LoadError::new(folder.join(MANIFEST_FILE), None, kind));
                    continue;
                }
            };
            let id = manifest.id.clone();
            if let Some(first) = found.plugins.get(&id) {
                let kind = LoadErrorKind::DuplicateId { id: id.clone(), first: first.manifest.dir.clone() };
                found.errors.push(LoadError::new(&folder, Some(&id), kind));
                continue;
            }
            let mut wasm = || engine_cache.get_or_insert_with(&mut *engine).clone();
            match load_one(&manifest, &mut wasm) {
                Ok(runtime) => {
                    tracing::debug!(plugin = %id, kind = %manifest.kind, elapsed_us = started.elapsed().as_micros() as u64, "plugin loaded");
                    found.plugins.insert(id, LoadedPlugin { manifest, runtime });
                }
                Err((path, kind)) => {
                    tracing::warn!(plugin = %id, path = %path.display(), "plugin not loaded: {kind}");
                    found.errors.push(LoadError::new(path, Some(&id), kind));
                }
            }
        }
    }
    found
}

type LoadFailure = (PathBuf, LoadErrorKind);

fn load_one(manifest: &Manifest, wasm: &mut dyn FnMut() -> Result<WasmEngine, String>) -> Result<Arc<dyn Runtime>, LoadFailure> {
    let artifact = &manifest.artifact;
    let fail = |kind| (artifact.clone(), kind);
    if !artifact.is_file() {
        return Err(fail(LoadErrorKind::MissingArtifact(artifact.clone())));
    }
    // WASM bytes are needed anyway; a native library is hashed only on request.
    let bytes = match (manifest.kind, &manifest.sha256) {
        (PluginKind::Native, None) => None,
        _ => Some(std::fs::read(artifact).map_err(|e| fail(LoadErrorKind::NotAPlugin(format!("cannot read: {e}"))))?),
    };
    if let (Some(expected), Some(bytes)) = (&manifest.sha256, &bytes) {
        let actual = hex(&Sha256::digest(bytes));
        if &actual != expected {
            return Err(fail(LoadErrorKind::HashMismatch { expected: expected.clone(), actual }));
        }
    }
    match manifest.kind {
        PluginKind::Native => Ok(Arc::new(NativePlugin::load(manifest).map_err(fail)?)),
        PluginKind::Wasm => {
            let engine = wasm().map_err(|e| fail(LoadErrorKind::Instantiate(e)))?;
            let bytes = bytes.expect("read above for wasm");
            Ok(Arc::new(WasmPlugin::load(&engine, manifest, &bytes).map_err(fail)?))
        }
    }
}
