//! Discovery: scan plugin directories and load every plugin folder found.
//!
//! Discovery never fails fast. Every plugin that loads is available; every one
//! that does not is reported with its path and reason, and the others load
//! regardless.

use crate::error::{LoadError, LoadErrorKind};
use crate::manifest::{Isolation, LimitPolicy, MANIFEST_FILE, Manifest, PluginKind};
use crate::native::NativePlugin;
use crate::runtime::{self, Runtime};
use crate::wasm::{WasmEngine, WasmPlugin, cache::hex};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the host runs native plugins whose manifest does not say
/// (`isolation`), and the program it starts as their workers.
#[derive(Debug, Clone, Default)]
pub(crate) struct NativeOptions {
    /// The default isolation.
    pub(crate) isolation: Isolation,
    /// The worker program, if the embedder chose one (see [`crate::worker`]).
    pub(crate) program: Option<PathBuf>,
}

/// How loaded plugins are keyed: one plugin may be loaded once per kind.
pub(crate) type PluginKey = (String, PluginKind);

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

    pub(crate) fn key(&self) -> PluginKey {
        (self.manifest.id.clone(), self.manifest.kind)
    }
}

/// Why `manifest`'s plugin cannot join those `loaded`: the same id and kind
/// is there already, or the same id as another kind at another version (or
/// in-process, which takes the id for itself).
fn clash(
    manifest: &Manifest,
    version: &semver::Version,
    loaded: &BTreeMap<PluginKey, LoadedPlugin>,
) -> Option<LoadErrorKind> {
    let id = &manifest.id;
    for (_, other) in loaded.range((id.clone(), PluginKind::Native)..=(id.clone(), PluginKind::InProcess)) {
        let kind = other.manifest.kind;
        let first = other.manifest.dir.clone();
        if kind == manifest.kind || kind == PluginKind::InProcess || manifest.kind == PluginKind::InProcess {
            return Some(LoadErrorKind::DuplicateId { id: id.clone(), first });
        }
        if &other.manifest.version != version {
            let detail = format!(
                "is also loaded as {kind} from {}, at version {}, not {version}",
                first.display(),
                other.manifest.version
            );
            return Some(LoadErrorKind::KindVersionMismatch { id: id.clone(), detail });
        }
    }
    None
}

/// The plugin folders of `dir`: its subdirectories, by name. A missing or
/// unreadable directory is reported as an error.
fn plugin_folders(dir: &Path, errors: &mut Vec<LoadError>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(LoadError::new(dir, None, LoadErrorKind::PluginsDirectory(e.to_string())));
            return Vec::new();
        }
    };
    let mut folders: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    folders
}

/// Every plugin folder of `dirs`, in scan order; unreadable directories are
/// reported in `errors`.
pub(crate) fn folders(dirs: &[PathBuf], errors: &mut Vec<LoadError>) -> Vec<PathBuf> {
    dirs.iter().flat_map(|dir| plugin_folders(dir, errors)).collect()
}

/// Load the plugin in `folder` (or the artifact `folder` names, see
/// [`load_artifact`]); `loaded` are the plugins loaded before it (a duplicate
/// id is an error).
///
/// # Errors
/// Every way a plugin can fail to load, with the folder and, when known, the id.
pub(crate) fn load_folder(
    folder: &Path,
    limits: &LimitPolicy,
    native: &NativeOptions,
    loaded: &BTreeMap<PluginKey, LoadedPlugin>,
    engine: &mut dyn FnMut() -> Result<WasmEngine, String>,
    secrets: &dyn crate::secrets::SecretSource,
) -> Result<LoadedPlugin, LoadError> {
    if folder.is_file() {
        return load_artifact(folder, limits, native, loaded, engine);
    }
    let started = std::time::Instant::now();
    let mut manifest = match Manifest::load_with(folder, limits) {
        Ok(m) => m,
        Err(kind) => {
            let id = id_of_broken_manifest(folder);
            return Err(LoadError::new(folder.join(MANIFEST_FILE), id.as_deref(), kind));
        }
    };
    let id = manifest.id.clone();
    // `${{ secrets.NAME }}` in `[config]`: resolved now, for every call (a
    // changed secret takes effect when the plugin loads again).
    match crate::secrets::resolve_config(&manifest.config, secrets, &manifest.permissions.secrets) {
        Ok((_, used)) if used.is_empty() => {}
        Ok((config, secrets)) => {
            manifest.resolved = Some(std::sync::Arc::new(crate::manifest::ResolvedConfig { config, secrets }));
        }
        Err(e) => {
            let kind = match e {
                crate::secrets::ConfigSecretError::NotSet(m) => LoadErrorKind::SecretNotSet(m),
                other => LoadErrorKind::InvalidManifest(other.to_string()),
            };
            return Err(LoadError::new(folder.join(MANIFEST_FILE), Some(&id), kind));
        }
    }
    if manifest.kind == PluginKind::Native {
        manifest.isolation = Some(manifest.isolation.unwrap_or(native.isolation));
    }
    match load_one(&manifest, native, loaded, engine) {
        Ok(runtime) => {
            tracing::debug!(plugin = %id, kind = %manifest.kind, elapsed_us = started.elapsed().as_micros() as u64, "plugin loaded");
            Ok(LoadedPlugin { manifest, runtime })
        }
        Err(kind) => {
            let why = crate::secrets::redactor().text(&kind.to_string()).into_owned();
            tracing::warn!(plugin = %id, path = %folder.display(), "plugin not loaded: {why}");
            Err(LoadError::new(folder, Some(&id), kind))
        }
    }
}

/// Load an artifact without a manifest (see [`crate::HostBuilder::artifact`]):
/// loaded with an anonymous manifest, then named by its own metadata.
fn load_artifact(
    artifact: &Path,
    limits: &LimitPolicy,
    native: &NativeOptions,
    loaded: &BTreeMap<PluginKey, LoadedPlugin>,
    engine: &mut dyn FnMut() -> Result<WasmEngine, String>,
) -> Result<LoadedPlugin, LoadError> {
    let mut manifest = Manifest::for_artifact(artifact, limits);
    if manifest.kind == PluginKind::Native {
        manifest.isolation = Some(native.isolation);
    }
    let runtime =
        load_one(&manifest, native, &BTreeMap::new(), engine).map_err(|kind| LoadError::new(artifact, None, kind))?;
    let metadata = runtime.metadata();
    let id = metadata.id.clone();
    let fail = |kind| LoadError::new(artifact, Some(&id), kind);
    manifest.version = semver::Version::parse(&metadata.version)
        .map_err(|e| fail(LoadErrorKind::Metadata(format!("version `{}` is not semver: {e}", metadata.version))))?;
    if id.trim().is_empty() || id.chars().any(char::is_whitespace) {
        return Err(fail(LoadErrorKind::Metadata(format!("id `{id}` must be non-empty and contain no spaces"))));
    }
    manifest.id = id.clone();
    if let Some(kind) = clash(&manifest, &manifest.version, loaded) {
        return Err(fail(kind));
    }
    Ok(LoadedPlugin { manifest, runtime })
}

/// A cheap summary of a plugin folder's files (names, sizes, modification
/// times, and the artifact's when it lives elsewhere): equal fingerprints
/// mean nothing changed.
pub(crate) fn fingerprint(folder: &Path) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    if let Ok(meta) = std::fs::metadata(folder)
        && meta.is_file()
    {
        // An artifact on its own: its size and modification time.
        (meta.len(), meta.modified().ok()).hash(&mut hasher);
        return hasher.finish();
    }
    let mut entries: Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok().map(|m| (e.file_name(), m.len(), m.modified().ok())))
        .collect();
    entries.sort();
    entries.hash(&mut hasher);
    if let Ok(m) = Manifest::load(folder)
        && let Ok(meta) = std::fs::metadata(&m.artifact)
    {
        (meta.len(), meta.modified().ok()).hash(&mut hasher);
    }
    hasher.finish()
}

/// The `id` of a manifest that did not validate, if it has a readable one, so
/// the error can still be found by plugin id.
fn id_of_broken_manifest(folder: &Path) -> Option<String> {
    let text = std::fs::read_to_string(folder.join(MANIFEST_FILE)).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    table.get("id")?.as_str().map(str::to_owned)
}

/// Check and load one plugin: the contract requirement, the id's uniqueness,
/// the artifact and its hash, then the runtime.
fn load_one(
    manifest: &Manifest,
    native: &NativeOptions,
    loaded: &BTreeMap<PluginKey, LoadedPlugin>,
    engine: &mut dyn FnMut() -> Result<WasmEngine, String>,
) -> Result<Arc<dyn Runtime>, LoadErrorKind> {
    if let Some(req) = &manifest.contract {
        runtime::check_requirement(req)?;
    }
    if let Some(clash) = clash(manifest, &manifest.version, loaded) {
        return Err(clash);
    }
    let artifact = &manifest.artifact;
    if !artifact.is_file() {
        return Err(LoadErrorKind::MissingArtifact(artifact.clone()));
    }
    // WASM bytes are needed anyway; a native library is hashed only on request.
    let bytes = match (manifest.kind, &manifest.sha256) {
        (PluginKind::Native, None) => None,
        _ => Some(
            std::fs::read(artifact)
                .map_err(|e| LoadErrorKind::NotAPlugin(format!("cannot read {}: {e}", artifact.display())))?,
        ),
    };
    if let (Some(expected), Some(bytes)) = (&manifest.sha256, &bytes) {
        let actual = hex(&Sha256::digest(bytes));
        if &actual != expected {
            return Err(LoadErrorKind::HashMismatch { expected: expected.clone(), actual });
        }
    }
    match manifest.kind {
        PluginKind::Native => match manifest.isolation.unwrap_or(native.isolation) {
            Isolation::InProcess => Ok(Arc::new(NativePlugin::load(manifest)?)),
            #[cfg(unix)]
            Isolation::Process => {
                let program = crate::worker::program(native.program.as_deref())?;
                Ok(Arc::new(crate::worker::ProcessPlugin::load(manifest, &program)?))
            }
            #[cfg(not(unix))]
            Isolation::Process => {
                Err(LoadErrorKind::Worker("isolation = \"process\" is supported on Unix only".into()))
            }
        },
        PluginKind::Wasm => {
            let engine = engine().map_err(LoadErrorKind::Instantiate)?;
            let bytes = bytes.expect("read above for wasm");
            Ok(Arc::new(WasmPlugin::load(&engine, manifest, &bytes)?))
        }
        PluginKind::InProcess => Err(LoadErrorKind::InvalidManifest("kind must be native or wasm".into())),
    }
}

#[cfg(test)]
mod tests {
    use crate::wasm::tests::{Memory, component, metadata, returns_42};
    use crate::{Change, HostBuilder};
    use std::path::Path;

    /// A plugin folder `dir/<name>` holding a WAT component that describes
    /// itself as `id` and answers 42 (or, with `broken`, a manifest that does
    /// not parse).
    fn plugin(dir: &Path, name: &str, id: &str, broken: bool) {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let mut mem = Memory::new();
        metadata(&mut mem, id, "0.1.0");
        let body = returns_42(&mut mem);
        std::fs::write(folder.join("c.wasm"), component(&mem, body)).unwrap();
        let manifest = if broken {
            "id = \"no version\"\n".to_owned()
        } else {
            format!("id = \"{id}\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"c.wasm\"\n")
        };
        std::fs::write(folder.join("plugin.toml"), manifest).unwrap();
    }

    #[test]
    fn one_bad_folder_never_stops_the_others_and_each_error_names_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        plugin(dir.path(), "a", "wat.a", false);
        plugin(dir.path(), "b", "wat.b", true);
        plugin(dir.path(), "c", "wat.c", false);
        plugin(dir.path(), "d", "wat.a", false); // the same id again
        let host = HostBuilder::new().plugin_dir(dir.path()).no_cache().build().unwrap();
        let mut ids: Vec<&str> = host.plugins().map(|p| p.id()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["wat.a", "wat.c"]);
        let errors: Vec<String> = host.load_errors().iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("/b/") && e.contains("plugin.toml")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("duplicate") && e.contains("wat.a")), "{errors:?}");
    }

    #[test]
    fn a_rescan_reports_what_was_added_changed_removed_and_broken() {
        let dir = tempfile::tempdir().unwrap();
        plugin(dir.path(), "a", "wat.a", false);
        plugin(dir.path(), "b", "wat.b", false);
        let host = HostBuilder::new().plugin_dir(dir.path()).no_cache().build().unwrap();
        let (same, changes) = host.rescan();
        assert!(changes.is_empty(), "nothing changed: {changes:?}");
        assert_eq!(same.plugins().count(), 2);

        plugin(dir.path(), "c", "wat.c", false);
        std::fs::remove_dir_all(dir.path().join("b")).unwrap();
        // A changed artifact (one more byte of custom section) is reloaded.
        let artifact = dir.path().join("a/c.wasm");
        let mut bytes = std::fs::read(&artifact).unwrap();
        bytes.extend_from_slice(&[0, 2, 1, b'x']);
        std::fs::write(&artifact, bytes).unwrap();
        plugin(dir.path(), "d", "wat.d", true);
        let (next, mut changes) = same.rescan();
        changes.sort_by_key(|c| format!("{c:?}"));
        assert!(changes.contains(&Change::Loaded { plugin: "wat.c".into() }), "{changes:?}");
        assert!(changes.contains(&Change::Removed { plugin: "wat.b".into() }), "{changes:?}");
        assert!(changes.contains(&Change::Reloaded { plugin: "wat.a".into() }), "{changes:?}");
        assert!(changes.iter().any(|c| matches!(c, Change::Failed { error } if error.contains("/d/"))), "{changes:?}");
        let mut ids: Vec<&str> = next.plugins().map(|p| p.id()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["wat.a", "wat.c"]);
    }

    #[test]
    fn one_folder_or_one_artifact_loads_alone_named_by_its_metadata() {
        let dir = tempfile::tempdir().unwrap();
        plugin(dir.path(), "a", "wat.a", false);
        plugin(dir.path(), "b", "wat.b", false);
        // A bare artifact: no manifest, its id and version from its own metadata.
        let bare = dir.path().join("bare.wasm");
        std::fs::copy(dir.path().join("b/c.wasm"), &bare).unwrap();
        let host = HostBuilder::new().plugin_folder(dir.path().join("a")).artifact(&bare).no_cache().build().unwrap();
        assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
        let mut ids: Vec<&str> = host.plugins().map(|p| p.id()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["wat.a", "wat.b"], "the folder and the artifact, nothing else of the directory");
        let b = host.plugin("wat.b").unwrap();
        assert_eq!(b.manifest.version.to_string(), "1.0.0");
        assert_eq!(b.manifest.artifact, bare);
        assert_eq!(host.call("wat.b", "run", serde_json::Value::Null, Default::default()).unwrap().output, 42);

        // Changed on disk: reloaded by a rescan, like a folder.
        let mut bytes = std::fs::read(&bare).unwrap();
        bytes.extend_from_slice(&[0, 2, 1, b'x']);
        std::fs::write(&bare, bytes).unwrap();
        let (_, changes) = host.rescan();
        assert_eq!(changes, [Change::Reloaded { plugin: "wat.b".into() }]);

        // The same id twice, and an artifact that is not a plugin: each reported, by path.
        let junk = dir.path().join("junk.wasm");
        std::fs::write(&junk, b"not wasm").unwrap();
        let host = HostBuilder::new()
            .plugin_folder(dir.path().join("b"))
            .artifact(&bare)
            .artifact(&junk)
            .no_cache()
            .build()
            .unwrap();
        let errors: Vec<String> = host.load_errors().iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("duplicate") && e.contains("bare.wasm")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("junk.wasm")), "{errors:?}");
        // A missing folder is an error naming it.
        let host = HostBuilder::new().plugin_folder(dir.path().join("nope")).no_cache().build().unwrap();
        assert!(host.load_errors()[0].to_string().contains("nope"), "{:?}", host.load_errors());
    }

    #[test]
    fn one_id_loads_once_per_kind_at_one_version() {
        use super::{LoadedPlugin, PluginKey, clash};
        use crate::error::LoadErrorKind;
        use crate::manifest::{LimitPolicy, Manifest, PluginKind};
        use std::collections::BTreeMap;
        let runtime = crate::wasm::tests::any_runtime();
        let manifest = |kind: PluginKind, version: &str| {
            let mut m = Manifest::for_artifact(Path::new(&format!("/plugins/{kind}/p")), &LimitPolicy::default());
            m.id = "one.plugin".into();
            m.kind = kind;
            m.version = semver::Version::parse(version).unwrap();
            m
        };
        let mut loaded: BTreeMap<PluginKey, LoadedPlugin> = BTreeMap::new();
        let native = manifest(PluginKind::Native, "1.0.0");
        loaded.insert(("one.plugin".into(), PluginKind::Native), LoadedPlugin { manifest: native, runtime });
        // The other kind at the same version joins; another version or the same kind does not.
        let wasm = manifest(PluginKind::Wasm, "1.0.0");
        assert!(clash(&wasm, &wasm.version, &loaded).is_none());
        let newer = manifest(PluginKind::Wasm, "1.1.0");
        let why = clash(&newer, &newer.version, &loaded).unwrap();
        assert!(matches!(why, LoadErrorKind::KindVersionMismatch { .. }), "{why}");
        assert!(why.to_string().contains("also loaded as native") && why.to_string().contains("1.1.0"), "{why}");
        let again = manifest(PluginKind::Native, "1.0.0");
        assert!(matches!(clash(&again, &again.version, &loaded), Some(LoadErrorKind::DuplicateId { .. })));
        // An in-process plugin takes its id for itself.
        let inside = manifest(PluginKind::InProcess, "1.0.0");
        assert!(matches!(clash(&inside, &inside.version, &loaded), Some(LoadErrorKind::DuplicateId { .. })));
        // Another id is another plugin.
        let mut other = manifest(PluginKind::Native, "2.0.0");
        other.id = "two.plugin".into();
        assert!(clash(&other, &other.version, &loaded).is_none());
    }
}
