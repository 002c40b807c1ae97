//! [`Host`]: the loaded plugins and the one way to call them.

use crate::discovery::{self, LoadedPlugin, NativeOptions, PluginKey};
use crate::error::{CallError, Error, LoadError, LoadErrorKind};
use crate::in_process::InProcessPlugin;
use crate::manifest::{Isolation, LimitPolicy, Limits, PluginKind};
use crate::secrets::{NoSecrets, SecretSource};
use crate::services::{CallServices, CancelToken, ProgressSink, SharedState};
use crate::wasm::WasmEngine;
use crate::wasm::cache::{ComponentCache, PrunePolicy};
use plexus_sdk::{CallOutput, ExecutionContext};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Builds a [`Host`]: which directories to scan and where to cache compiled components.
#[derive(Default)]
pub struct HostBuilder {
    plugin_dirs: Vec<PathBuf>,
    cache_dir: Option<PathBuf>,
    no_cache: bool,
    limits: LimitPolicy,
    in_process: Vec<LoadedPlugin>,
    protected: Vec<PathBuf>,
    /// Single plugin folders and artifacts, loaded after the directories' folders.
    singles: Vec<PathBuf>,
    /// `None`: the default policy; `Some(None)`: never prune.
    prune: Option<Option<PrunePolicy>>,
    native: NativeOptions,
    /// The operator's aliases: name → plugin id.
    aliases: BTreeMap<String, String>,
    /// Where `${{ secrets.NAME }}` in a manifest's `[config]` is looked up.
    secrets: Option<Arc<dyn SecretSource>>,
}

impl HostBuilder {
    /// A builder with no plugin directories and the default cache directory.
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a directory whose subfolders are plugins.
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dirs.push(dir.into());
        self
    }
    /// Add several plugin directories.
    pub fn plugin_dirs<I: IntoIterator<Item = P>, P: Into<PathBuf>>(mut self, dirs: I) -> Self {
        self.plugin_dirs.extend(dirs.into_iter().map(Into::into));
        self
    }
    /// Add one plugin folder (a folder holding a `plugin.toml`), loaded after
    /// the plugin directories' folders.
    pub fn plugin_folder(mut self, folder: impl Into<PathBuf>) -> Self {
        self.singles.push(folder.into());
        self
    }
    /// Add a plugin artifact on its own, without a manifest: a `.wasm` file is
    /// a component, anything else a native library. It takes its id and
    /// version from its own metadata, the default limits, no grants and no
    /// configuration (`plexus call --artifact`, `plexus plugins check`); give
    /// it a folder with a `plugin.toml` for those.
    pub fn artifact(mut self, path: impl Into<PathBuf>) -> Self {
        self.singles.push(path.into());
        self
    }
    /// Cache compiled components in `dir` instead of [`default_cache_dir`].
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }
    /// When to prune the component cache after each scan (default:
    /// [`PrunePolicy::default`], entries unused for 14 days, then the least
    /// recently used beyond 1 GiB); `None` never prunes.
    pub fn cache_policy(mut self, policy: Option<PrunePolicy>) -> Self {
        self.prune = Some(policy);
        self
    }
    /// Compile components on every start; write nothing to disk.
    pub fn no_cache(mut self) -> Self {
        self.no_cache = true;
        self
    }
    /// Limits for plugins whose manifest does not set them (default: 30 s,
    /// 64 MiB, 64 KiB of captured output).
    pub fn default_limits(mut self, limits: Limits) -> Self {
        self.limits.defaults = limits;
        self
    }
    /// Keep `path` (a file or directory, e.g. the daemon's state database and
    /// token) from every plugin: a WASM plugin whose grants reach it does not
    /// load. The component cache is always kept from plugins.
    pub fn protect(mut self, path: impl Into<PathBuf>) -> Self {
        self.protected.push(path.into());
        self
    }
    /// The largest limits a manifest may ask for (default [`Limits::default_max`]);
    /// a plugin whose manifest asks for more does not load, and the error names the field.
    pub fn max_limits(mut self, limits: Limits) -> Self {
        self.limits.max = limits;
        self
    }

    /// How native plugins whose manifest has no `isolation` run (default
    /// [`Isolation::InProcess`]; the daemon's default is
    /// [`Isolation::Process`], see its `native_isolation` setting).
    pub fn native_isolation(mut self, isolation: Isolation) -> Self {
        self.native.isolation = isolation;
        self
    }

    /// The program started as a worker process for native plugins with
    /// `isolation = "process"` (it must call
    /// [`crate::worker::serve_if_requested`] first thing in `main`). Default:
    /// `$PLEXUS_WORKER_PROGRAM`, else this program if it serves as a worker.
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.native.program = Some(program.into());
        self
    }

    /// Let workflow steps call plugin `plugin_id` by `name` too (the
    /// operator's alias table; it wins over the `aliases` plugins declare in
    /// their manifests). See [`Host::resolve`].
    pub fn alias(mut self, name: impl Into<String>, plugin_id: impl Into<String>) -> Self {
        self.aliases.insert(name.into(), plugin_id.into());
        self
    }

    /// Add a plugin compiled into the host (run in-process, like a native plugin), with `config`
    /// as its configuration. A plugin found on disk with the same id is reported
    /// as a duplicate.
    pub fn in_process<P: plexus_sdk::Plugin>(mut self, config: Value) -> Self {
        let runtime = InProcessPlugin::<P>::default();
        let manifest = runtime.manifest(config);
        self.in_process.push(LoadedPlugin { manifest, runtime: Arc::new(runtime) });
        self
    }

    /// Look up `${{ secrets.NAME }}` in manifests' `[config]` in `source`
    /// (default: none; a plugin whose config references a secret that is
    /// not set does not load, and says which).
    pub fn secrets(mut self, source: Arc<dyn SecretSource>) -> Self {
        self.secrets = Some(source);
        self
    }

    /// Scan the directories and load every plugin. Only a broken component
    /// cache fails the whole host; each plugin's failure is recorded in
    /// [`Host::load_errors`] and the others load.
    pub fn build(self) -> Result<Host, Error> {
        let cache_dir = if self.no_cache { None } else { self.cache_dir.or_else(default_cache_dir) };
        let cache = ComponentCache::new(cache_dir)?;
        let loader = Arc::new(Loader {
            dirs: self.plugin_dirs,
            limits: self.limits,
            cache,
            engine: OnceLock::new(),
            in_process: self.in_process,
            protected: self.protected,
            singles: self.singles,
            prune: self.prune.unwrap_or(Some(PrunePolicy::default())),
            native: self.native,
            aliases: self.aliases,
            secrets: self.secrets.unwrap_or_else(|| Arc::new(NoSecrets)),
            orchestrator: std::sync::RwLock::new(None),
        });
        Ok(loader.scan(None).0)
    }
}

/// What a host needs to load plugins again (hot reload).
struct Loader {
    dirs: Vec<PathBuf>,
    limits: LimitPolicy,
    cache: ComponentCache,
    engine: OnceLock<Result<WasmEngine, String>>,
    in_process: Vec<LoadedPlugin>,
    protected: Vec<PathBuf>,
    singles: Vec<PathBuf>,
    prune: Option<PrunePolicy>,
    native: NativeOptions,
    aliases: BTreeMap<String, String>,
    secrets: Arc<dyn SecretSource>,
    /// Where orchestration requests go (shared by every rescan's host).
    orchestrator: std::sync::RwLock<Option<Arc<dyn crate::services::Orchestrator>>>,
}

/// A plugin folder as last scanned.
#[derive(Clone)]
struct Folder {
    fingerprint: u64,
    /// The key (id, kind) of the plugin loaded from it, or its load error.
    outcome: Result<PluginKey, LoadError>,
}

/// What changed in a [`Host::rescan`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A new plugin loaded.
    Loaded {
        /// Plugin id.
        plugin: String,
    },
    /// A changed plugin (WASM, or native in worker processes) was loaded
    /// again; running calls finish on the old version.
    Reloaded {
        /// Plugin id.
        plugin: String,
    },
    /// A plugin's folder disappeared; the plugin is unloaded (a native one
    /// in worker processes: its workers end).
    Removed {
        /// Plugin id.
        plugin: String,
    },
    /// An in-process native plugin's folder disappeared: it is no longer
    /// called, but its library stays mapped until the host restarts.
    Unavailable {
        /// Plugin id.
        plugin: String,
    },
    /// An in-process native plugin changed: libraries loaded into the host
    /// are never unloaded, so the old version keeps running until the host restarts.
    RestartRequired {
        /// Plugin id.
        plugin: String,
    },
    /// A new or changed folder did not load; other plugins are untouched.
    Failed {
        /// The error, naming the folder (and plugin id when known).
        error: String,
    },
}

impl Loader {
    fn engine(&self) -> Result<WasmEngine, String> {
        self.engine
            .get_or_init(|| {
                WasmEngine::with_protected(self.cache.clone(), self.protected.clone(), self.dirs.clone())
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    /// Scan the directories. With a `previous` host, unchanged folders keep
    /// their plugin (or error) and the differences are returned.
    fn scan(self: &Arc<Self>, previous: Option<&Host>) -> (Host, Vec<Change>) {
        let mut errors = Vec::new();
        let mut plugins: BTreeMap<PluginKey, LoadedPlugin> = BTreeMap::new();
        let mut folders = BTreeMap::new();
        let mut changes = Vec::new();
        let mut unavailable = previous.map(|p| p.unavailable.clone()).unwrap_or_default();
        let mut engine = || self.engine();
        let scanned = discovery::folders(&self.dirs, &mut errors);
        for folder in scanned.into_iter().chain(self.singles.iter().cloned()) {
            let fingerprint = discovery::fingerprint(&folder);
            let before = previous.and_then(|p| p.folders.get(&folder).map(|f| (p, f)));
            // Unchanged: keep what it was — unless its id is now taken by a
            // folder scanned earlier, or its error was a duplicate id or a
            // missing secret that may have gone away: then load it again to find out.
            if let Some((p, f)) = before
                && f.fingerprint == fingerprint
            {
                let kept = match &f.outcome {
                    Ok(key) => p.plugins.get(key).filter(|_| !plugins.contains_key(key)).map(|plugin| {
                        plugins.insert(key.clone(), plugin.clone());
                    }),
                    // A missing secret may have been set since.
                    Err(e) if !matches!(e.kind, LoadErrorKind::DuplicateId { .. } | LoadErrorKind::SecretNotSet(_)) => {
                        errors.push(e.clone());
                        Some(())
                    }
                    Err(_) => None,
                };
                if kept.is_some() {
                    folders.insert(folder, f.clone());
                    continue;
                }
            }
            let old = before
                .and_then(|(p, f)| f.outcome.as_ref().ok().and_then(|key| p.plugins.get(key)))
                .filter(|o| !plugins.contains_key(&o.key()));
            // A native library loaded into this process cannot be replaced.
            if let Some(old) = old.filter(|o| !o.runtime.replaceable()) {
                let id = old.id().to_owned();
                tracing::warn!(plugin = %id, path = %folder.display(), "native plugin changed: restart the host to load the new version");
                changes.push(Change::RestartRequired { plugin: id.clone() });
                unavailable.insert(id.clone(), "changed on disk: restart required".into());
                plugins.insert(old.key(), old.clone());
                folders.insert(folder, Folder { fingerprint, outcome: Ok(old.key()) });
                continue;
            }
            let outcome = match discovery::load_folder(
                &folder,
                &self.limits,
                &self.native,
                &plugins,
                &mut engine,
                &*self.secrets,
            ) {
                Ok(plugin) => {
                    let (id, key) = (plugin.id().to_owned(), plugin.key());
                    let replaced = previous.is_some_and(|p| p.plugins.contains_key(&key));
                    if previous.is_some() {
                        changes.push(if replaced {
                            Change::Reloaded { plugin: id.clone() }
                        } else {
                            Change::Loaded { plugin: id.clone() }
                        });
                    }
                    unavailable.remove(&id);
                    plugins.insert(key.clone(), plugin);
                    Ok(key)
                }
                Err(error) => {
                    // Report a failure once, not again at every rescan that finds it unchanged.
                    let same_as_before = before.is_some_and(|(_, f)| {
                        f.outcome.as_ref().err().map(ToString::to_string) == Some(error.to_string())
                    });
                    if previous.is_some() && !same_as_before {
                        changes.push(Change::Failed { error: error.to_string() });
                    }
                    errors.push(error.clone());
                    Err(error)
                }
            };
            folders.insert(folder, Folder { fingerprint, outcome });
        }
        if let Some(p) = previous {
            for ((id, _), plugin) in &p.plugins {
                if plugins.contains_key(&plugin.key()) || plugin.manifest.kind == PluginKind::InProcess {
                    continue;
                }
                if !plugin.runtime.replaceable() {
                    tracing::warn!(plugin = %id, "native plugin removed: no longer called; its library stays mapped until restart");
                    unavailable.insert(id.clone(), "removed from disk".into());
                    changes.push(Change::Unavailable { plugin: id.clone() });
                } else {
                    tracing::info!(plugin = %id, "plugin removed");
                    changes.push(Change::Removed { plugin: id.clone() });
                }
            }
        }
        for plugin in &self.in_process {
            match plugins.iter().find(|((id, _), _)| id == plugin.id()) {
                Some((_, first)) => {
                    let kind =
                        LoadErrorKind::DuplicateId { id: plugin.id().to_owned(), first: first.manifest.dir.clone() };
                    errors.push(LoadError::new(&plugin.manifest.dir, Some(plugin.id()), kind));
                }
                None => {
                    plugins.insert(plugin.key(), plugin.clone());
                }
            }
        }
        // Compiled components no plugin here uses, once stale or over the cache's size.
        if let Some(policy) = &self.prune {
            match self.cache.prune(policy) {
                Ok(report) if !report.removed.is_empty() => tracing::info!(
                    removed = report.removed.len(),
                    freed_bytes = report.freed_bytes,
                    kept_bytes = report.kept_bytes,
                    "pruned the component cache"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot prune the component cache: {e}"),
            }
        }
        let host = Host { plugins, errors, folders, unavailable, loader: self.clone() };
        (host, changes)
    }
}

/// The default component cache: `$PLEXUS_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/plexus/components`, else `~/.cache/plexus/components`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PLEXUS_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("plexus").join("components"))
}

/// The loaded plugins, the load errors, and calls.
///
/// A host is immutable: [`Host::rescan`] returns a new one, so calls running
/// on the old host (an `Arc<Host>`) finish on the plugin versions they started with.
pub struct Host {
    plugins: BTreeMap<PluginKey, LoadedPlugin>,
    errors: Vec<LoadError>,
    folders: BTreeMap<PathBuf, Folder>,
    unavailable: BTreeMap<String, String>,
    loader: Arc<Loader>,
}

/// What a plugin name in a workflow step stands for ([`Host::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// This plugin id (loaded, or the target of an operator's alias).
    Plugin(&'a str),
    /// Neither a loaded plugin nor an alias.
    Unknown,
    /// An alias several loaded plugins declare (their ids, sorted).
    Ambiguous(Vec<&'a str>),
}

/// Options of one [`Host::call`].
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Per-call timeout; `None` uses the plugin's `limits.timeout_ms`.
    pub timeout: Option<Duration>,
    /// The execution's shared state (a fresh one if not given).
    pub state: SharedState,
    /// The execution's cancel token.
    pub cancel: CancelToken,
    /// Where progress reports go.
    pub progress: Option<ProgressSink>,
    /// The kind to call, for a plugin loaded as both; `None`: the first of
    /// [`PluginKind::PREFERENCE`] loaded.
    pub kind: Option<PluginKind>,
}

impl Host {
    /// The loaded plugins, by id (a plugin loaded as both kinds twice: native, then wasm).
    pub fn plugins(&self) -> impl Iterator<Item = &LoadedPlugin> {
        self.plugins.values()
    }
    /// The loaded plugin `id`: of the kinds loaded, the first in
    /// [`PluginKind::PREFERENCE`].
    pub fn plugin(&self, id: &str) -> Option<&LoadedPlugin> {
        self.select(id, None)
    }
    /// Plugin `id` as `kind` if it is loaded as that kind; with no kind, as
    /// the preferred kind loaded (see [`Self::plugin`]).
    pub fn select(&self, id: &str, kind: Option<PluginKind>) -> Option<&LoadedPlugin> {
        // One key for every kind tried (a call looks its plugin up several times).
        let mut key = (id.to_owned(), PluginKind::Wasm);
        let asked;
        let kinds: &[PluginKind] = match kind {
            Some(kind) => {
                asked = [kind];
                &asked
            }
            None => &PluginKind::PREFERENCE,
        };
        kinds.iter().find_map(|&kind| {
            key.1 = kind;
            self.plugins.get(&key)
        })
    }
    /// The plugin a workflow step naming `name` calls: a loaded plugin's id
    /// is itself; otherwise an alias of the operator's table
    /// ([`HostBuilder::alias`]), then one declared by a loaded plugin's
    /// manifest (`aliases = [...]`). Codomyrmex's `module` and the project
    /// orchestrator's `factory` name plugins this way.
    pub fn resolve(&self, name: &str) -> Resolved<'_> {
        if let Some(plugin) = self.plugin(name) {
            return Resolved::Plugin(plugin.id());
        }
        if let Some(id) = self.loader.aliases.get(name) {
            return Resolved::Plugin(id);
        }
        let mut ids: Vec<&str> = self
            .plugins
            .values()
            .filter(|p| p.manifest.aliases.iter().any(|a| a == name))
            .map(LoadedPlugin::id)
            .collect();
        ids.dedup();
        match ids.as_slice() {
            [] => Resolved::Unknown,
            [one] => Resolved::Plugin(one),
            _ => Resolved::Ambiguous(ids),
        }
    }

    /// Every name a workflow step can call a loaded plugin by, sorted: the
    /// plugin ids, and the aliases that [`Self::resolve`] resolves to one.
    pub fn callable_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.plugins().map(|p| p.id().to_owned()).collect();
        let aliases = self.loader.aliases.keys().chain(self.plugins.values().flat_map(|p| p.manifest.aliases.iter()));
        names.extend(aliases.filter(|a| matches!(self.resolve(a), Resolved::Plugin(_))).cloned());
        names.sort();
        names.dedup();
        names
    }

    /// The kinds plugin `id` is loaded as, in [`PluginKind::PREFERENCE`] order.
    pub fn kinds(&self, id: &str) -> Vec<PluginKind> {
        PluginKind::PREFERENCE.into_iter().filter(|&kind| self.select(id, Some(kind)).is_some()).collect()
    }
    /// Every plugin that did not load, with its path and reason.
    pub fn load_errors(&self) -> &[LoadError] {
        &self.errors
    }

    /// Native plugins the host no longer calls or that wait for a restart,
    /// with the reason (see [`Change::Unavailable`], [`Change::RestartRequired`]),
    /// plugins past their budget of abandoned calls
    /// ([`crate::runtime::ABANDONED_CALL_BUDGET`]), and plugins whose worker
    /// processes crashed too often ([`crate::worker::CRASH_LIMIT`]): their
    /// calls fail at once.
    pub fn unavailable(&self) -> BTreeMap<String, String> {
        let mut all = self.unavailable.clone();
        for ((id, _), plugin) in &self.plugins {
            if let Some(reason) = crate::runtime::over_budget(id).or_else(|| plugin.runtime.unavailable()) {
                all.insert(id.clone(), reason);
            }
        }
        all
    }

    /// Send plugins' orchestration requests to `orchestrator` (the daemon
    /// sets itself), for this host and every host [`Self::rescan`] makes from
    /// it. A plugin may use it when it declares the `orchestration`
    /// capability and its manifest grants it (`[permissions] orchestration = true`).
    pub fn set_orchestrator(&self, orchestrator: Arc<dyn crate::services::Orchestrator>) {
        *self.loader.orchestrator.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(orchestrator);
    }

    /// What a call of `plugin` may do with orchestration.
    fn orchestration_access(&self, plugin: &LoadedPlugin) -> crate::services::OrchestrationAccess {
        use crate::services::OrchestrationAccess;
        let orchestrator = self.loader.orchestrator.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(orchestrator) = orchestrator.as_ref() else { return OrchestrationAccess::NoOrchestrator };
        if !plugin.runtime.metadata().capabilities.iter().any(|c| c == plexus_sdk::capability::ORCHESTRATION) {
            return OrchestrationAccess::NotDeclared;
        }
        if !plugin.manifest.permissions.orchestration {
            return OrchestrationAccess::NotGranted;
        }
        OrchestrationAccess::Allowed(orchestrator.clone())
    }

    /// The plugin directories, in scan order.
    pub fn plugin_dirs(&self) -> &[PathBuf] {
        &self.loader.dirs
    }

    /// Scan the plugin directories again and return the new host and what
    /// changed. Unchanged folders are not reloaded; a changed WASM plugin is
    /// loaded again; a changed or removed native plugin is reported (its
    /// library is never unloaded); a folder that fails to load is reported
    /// and disturbs no other plugin.
    pub fn rescan(&self) -> (Host, Vec<Change>) {
        self.loader.scan(Some(self))
    }

    /// Run `operation` of plugin `id` with `params` in a fresh execution
    /// context (new execution id, attempt 1, the plugin's configuration).
    ///
    /// # Errors
    /// [`CallError::PluginNotFound`] and [`CallError::OperationNotFound`]
    /// before anything runs; otherwise whatever the call produced.
    pub fn call(
        &self,
        id: &str,
        operation: &str,
        params: Value,
        options: CallOptions,
    ) -> Result<CallOutput, CallError> {
        let plugin = self.find(id, options.kind)?;
        let timeout = options.timeout.unwrap_or(plugin.manifest.limits.timeout);
        let exec = ExecutionContext {
            execution_id: new_execution_id(),
            attempt: 1,
            deadline_ms: deadline_ms(timeout),
            operation: operation.to_owned(),
            parameters: params,
            config: plugin.manifest.call_config().clone(),
            ..ExecutionContext::default()
        };
        let mut services =
            CallServices::new(id, &exec.execution_id, options.state, options.cancel).with_kind(options.kind);
        if let Some(sink) = options.progress {
            services = services.with_progress(sink);
        }
        let result = self.call_with(&exec, &services, Some(timeout));
        // The execution was this call alone: what runtimes kept for it goes.
        plugin.runtime.end_execution(&exec.execution_id);
        result
    }

    /// Stop the plugins: each runs its `cleanup` now (see
    /// [`crate::runtime::Runtime::stop`]). The daemon calls this as it exits,
    /// since an abandoned call's thread may still hold the host then; a host
    /// that is dropped does the same by itself.
    pub fn stop(&self) {
        for plugin in self.plugins.values() {
            plugin.runtime.stop();
        }
    }

    /// Execution `execution_id` ended: runtimes drop what they kept for it
    /// (WASM instances reused per execution). The workflow engine calls this;
    /// a caller of [`Host::call_with`] that reuses execution ids should too
    /// (idle instances also expire with `instances.max_age_ms`).
    pub fn end_execution(&self, execution_id: &str) {
        for plugin in self.plugins.values() {
            plugin.runtime.end_execution(execution_id);
        }
    }

    /// Plugin `id` as `kind` (or the preferred kind), else why not.
    fn find(&self, id: &str, kind: Option<PluginKind>) -> Result<&LoadedPlugin, CallError> {
        self.select(id, kind).ok_or_else(|| match kind {
            Some(kind) if self.plugin(id).is_some() => CallError::Unavailable {
                plugin: id.to_owned(),
                reason: format!(
                    "it is not loaded as {kind} (loaded as: {})",
                    self.kinds(id).iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            },
            _ => CallError::PluginNotFound(id.to_owned()),
        })
    }

    /// Run a call with a context and services built by the caller (the
    /// workflow engine and the scheduler use this). `exec.operation` names the
    /// operation of the plugin `services.plugin_id()`.
    pub fn call_with(
        &self,
        exec: &ExecutionContext,
        services: &CallServices,
        timeout: Option<Duration>,
    ) -> Result<CallOutput, CallError> {
        let id = services.plugin_id();
        let plugin = self.find(id, services.kind())?;
        if plugin.runtime.metadata().operation(&exec.operation).is_none() {
            return Err(CallError::OperationNotFound { plugin: id.to_owned(), operation: exec.operation.clone() });
        }
        if let Some(reason) = crate::runtime::over_budget(id).or_else(|| plugin.runtime.unavailable()) {
            return Err(CallError::Unavailable { plugin: id.to_owned(), reason });
        }
        let started = std::time::Instant::now();
        let services = services.for_call(&plugin.manifest.limits).with_orchestration(self.orchestration_access(plugin));
        let on_thread = services.measures_cpu() && plugin.runtime.runs_on_caller_thread();
        let cpu_before = on_thread.then(crate::unsafe_ops::thread_cpu_time).flatten();
        let mut result = plugin.runtime.call(exec, &services, timeout);
        // Only when measured: the clock read is a system call (~0.35 µs).
        if let Some(before) = cpu_before
            && let Some(after) = crate::unsafe_ops::thread_cpu_time()
        {
            let cpu_ms = after.saturating_sub(before).as_secs_f64() * 1000.0;
            services.record_usage(crate::services::CallUsage { cpu_ms: Some(cpu_ms), peak_memory_bytes: None });
        }
        // What the call stored, as the host saw it (never the plugin's word).
        if let Ok(out) = &mut result {
            out.artifacts = services.artifacts_written();
        }
        if let Some(violation) = services.violation()
            && result.is_ok()
        {
            result = Err(CallError::ResourceLimit { plugin: id.to_owned(), message: violation.to_string() });
        }
        let dropped = services.log_bytes_dropped();
        if dropped > 0 {
            tracing::warn!(target: "plexus::plugin", plugin = id, execution = %exec.execution_id, dropped,
                "log bytes past limits.log_bytes were dropped");
            if let Ok(out) = &mut result {
                out.metrics.push((LOG_BYTES_DROPPED.to_owned(), dropped as f64));
            }
        }
        tracing::debug!(plugin = id, operation = %exec.operation, execution = %exec.execution_id,
            elapsed_us = started.elapsed().as_micros() as u64, ok = result.is_ok(), "call finished");
        result
    }
}

impl Host {
    /// Run a call from async code without blocking the caller's task, within
    /// `timeout` (the workflow engine's compensations use it; its step
    /// runners, already on blocking threads, call [`Host::call_with`] and
    /// time calls that cannot be pre-empted themselves).
    ///
    /// The call runs on tokio's blocking pool. A runtime that is
    /// [`Runtime::preemptible`](crate::runtime::Runtime::preemptible) (WASM)
    /// gets the timeout and stops itself; for one that is not (native and
    /// in-process code) this stops waiting at the timeout, interrupts the call
    /// (its cancel flag) and abandons its thread, which counts against the
    /// plugin's [`ABANDONED_CALL_BUDGET`](crate::runtime::ABANDONED_CALL_BUDGET)
    /// until it returns. No thread is started per call, and the caller never
    /// branches on the plugin's kind.
    ///
    /// # Errors
    /// As [`Host::call_with`], and [`CallError::Timeout`] past `timeout`.
    pub async fn invoke(
        self: &Arc<Self>,
        exec: ExecutionContext,
        services: CallServices,
        timeout: Duration,
    ) -> Result<CallOutput, CallError> {
        let id = services.plugin_id().to_owned();
        let plugin = self.find(&id, services.kind())?;
        let preemptible = plugin.runtime.preemptible();
        let ticket = crate::runtime::CallTicket::new(&id);
        let task = tokio::task::spawn_blocking({
            let (host, services, ticket) = (self.clone(), services.clone(), ticket.clone());
            move || {
                let result = host.call_with(&exec, &services, preemptible.then_some(timeout));
                ticket.finish();
                result
            }
        });
        tokio::pin!(task);
        let joined = if preemptible {
            task.await
        } else {
            match tokio::time::timeout(timeout, &mut task).await {
                Ok(joined) => joined,
                Err(_) => match crate::runtime::give_up(&id, &services, &ticket, timeout) {
                    // It returned just now.
                    None => task.await,
                    Some(timed_out) => return Err(timed_out),
                },
            }
        };
        joined.unwrap_or_else(|e| Err(CallError::Host { plugin: id, message: format!("the call's task failed: {e}") }))
    }
}

/// The metric a call's output carries when the plugin logged more than its
/// `limits.log_bytes`: how many bytes were dropped.
pub const LOG_BYTES_DROPPED: &str = "plexus.log_bytes_dropped";

/// A new, time-ordered execution id (UUID v7).
pub fn new_execution_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn deadline_ms(timeout: Duration) -> Option<u64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some(now.saturating_add(timeout).as_millis().try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ABANDONED_CALL_BUDGET;
    use plexus_sdk::{Operations, Plugin, PluginInfo};
    use serde_json::json;
    use std::time::Instant;

    /// A plugin whose `nap` ignores cancellation, under an id per test
    /// (abandoned calls are counted per id): `budget.sleepy`, or
    /// `invoke.drowsy` when `SECOND`.
    #[derive(Default)]
    struct Sleepy<const SECOND: bool = false>;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Nap {
        ms: u64,
    }

    impl<const SECOND: bool> Plugin for Sleepy<SECOND> {
        fn info() -> PluginInfo {
            PluginInfo::new(if SECOND { "invoke.drowsy" } else { "budget.sleepy" }, "Ignores cancellation", "1.0.0")
        }
        fn operations(ops: &mut Operations<Self>) {
            ops.add("nap", "Sleeps `ms`, ignoring cancellation", |_, _, p: Nap| {
                std::thread::sleep(Duration::from_millis(p.ms));
                Ok(p.ms)
            });
        }
    }

    #[test]
    fn a_plugin_past_its_abandoned_call_budget_fails_fast_until_its_calls_return() {
        let host = HostBuilder::new().no_cache().in_process::<Sleepy<false>>(Value::Null).build().unwrap();
        let nap = |ms: u64| {
            let options = CallOptions { timeout: Some(Duration::from_millis(20)), ..CallOptions::default() };
            host.call("budget.sleepy", "nap", json!({"ms": ms}), options)
        };
        for _ in 0..ABANDONED_CALL_BUDGET {
            assert!(matches!(nap(1500), Err(CallError::Timeout { .. })));
        }
        let started = Instant::now();
        let err = nap(0).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(15), "fails at once");
        assert_eq!(err.kind(), "unavailable");
        assert!(err.to_string().contains("budget: 8 abandoned calls"), "{err}");
        assert!(host.unavailable()["budget.sleepy"].contains("still running"));
        // The naps end: the budget is given back and the plugin works again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while crate::runtime::over_budget("budget.sleepy").is_some() {
            assert!(Instant::now() < deadline, "the abandoned calls never returned");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(nap(0).unwrap().output, json!(0));
        assert!(!host.unavailable().contains_key("budget.sleepy"));
        assert_eq!(crate::runtime::abandoned_calls()["budget.sleepy"].1, 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invoke_answers_at_the_deadline_of_a_call_that_cannot_be_preempted() {
        let host = Arc::new(HostBuilder::new().no_cache().in_process::<Sleepy<true>>(Value::Null).build().unwrap());
        assert!(!host.plugin("invoke.drowsy").unwrap().runtime.preemptible(), "in-process code cannot be pre-empted");
        let call = |ms: u64| {
            let exec = ExecutionContext {
                execution_id: new_execution_id(),
                operation: "nap".into(),
                parameters: json!({"ms": ms}),
                ..ExecutionContext::default()
            };
            let services =
                CallServices::new("invoke.drowsy", &exec.execution_id, SharedState::default(), CancelToken::new());
            (exec, services)
        };
        let (exec, services) = call(5);
        let out = host.invoke(exec, services, Duration::from_secs(5)).await.unwrap();
        assert_eq!(out.output, json!(5));
        let (exec, services) = call(1_000);
        let started = Instant::now();
        let err = host.invoke(exec, services.clone(), Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(err, CallError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_millis(500), "answered at the deadline, not when the call ended");
        assert!(services.should_stop(), "the call was asked to stop");
        assert_eq!(crate::runtime::abandoned_calls()["invoke.drowsy"].0, 1, "its thread is counted as abandoned");
        // A plugin that is not loaded fails before anything runs.
        let (exec, _) = call(0);
        let missing = CallServices::new("nope", &exec.execution_id, SharedState::default(), CancelToken::new());
        assert!(matches!(host.invoke(exec, missing, Duration::from_secs(1)).await, Err(CallError::PluginNotFound(_))));
    }
}
