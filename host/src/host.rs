//! [`Host`]: the loaded plugins and the one way to call them.

use crate::discovery::{self, LoadedPlugin};
use crate::error::{CallError, Error, LoadError, LoadErrorKind};
use crate::in_process::InProcessPlugin;
use crate::services::{CallServices, CancelToken, ProgressSink, SharedState};
use crate::wasm::WasmEngine;
use crate::wasm::cache::ComponentCache;
use plexus_sdk::{CallOutput, ExecutionContext};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Builds a [`Host`]: which directories to scan and where to cache compiled components.
#[derive(Default)]
pub struct HostBuilder {
    plugin_dirs: Vec<PathBuf>,
    cache_dir: Option<PathBuf>,
    no_cache: bool,
    in_process: Vec<LoadedPlugin>,
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
    /// Cache compiled components in `dir` instead of [`default_cache_dir`].
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }
    /// Compile components on every start; write nothing to disk.
    pub fn no_cache(mut self) -> Self {
        self.no_cache = true;
        self
    }

    /// Add a plugin compiled into the host (see [`InProcessPlugin`]), with `config`
    /// as its configuration. A plugin found on disk with the same id is reported
    /// as a duplicate.
    pub fn in_process<P: plexus_sdk::Plugin>(mut self, config: Value) -> Self {
        let runtime = InProcessPlugin::<P>::default();
        let manifest = runtime.manifest(config);
        self.in_process.push(LoadedPlugin { manifest, runtime: Arc::new(runtime) });
        self
    }

    /// Scan the directories and load every plugin. Only a broken component
    /// cache fails the whole host; each plugin's failure is recorded in
    /// [`Host::load_errors`] and the others load.
    pub fn build(self) -> Result<Host, Error> {
        let cache_dir = if self.no_cache { None } else { self.cache_dir.or_else(default_cache_dir) };
        let cache = ComponentCache::new(cache_dir)?;
        let mut make_engine = || WasmEngine::new(cache.clone()).map_err(|e| e.to_string());
        let mut found = discovery::discover(&self.plugin_dirs, &mut make_engine);
        for plugin in self.in_process {
            match found.plugins.get(plugin.id()) {
                Some(first) => {
                    let kind =
                        LoadErrorKind::DuplicateId { id: plugin.id().to_owned(), first: first.manifest.dir.clone() };
                    found.errors.push(LoadError::new(&plugin.manifest.dir, Some(plugin.id()), kind));
                }
                None => {
                    found.plugins.insert(plugin.id().to_owned(), plugin);
                }
            }
        }
        Ok(Host { plugins: found.plugins, errors: found.errors })
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
pub struct Host {
    plugins: BTreeMap<String, LoadedPlugin>,
    errors: Vec<LoadError>,
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
}

impl Host {
    /// The loaded plugins, by id.
    pub fn plugins(&self) -> impl Iterator<Item = &LoadedPlugin> {
        self.plugins.values()
    }
    /// The loaded plugin `id`.
    pub fn plugin(&self, id: &str) -> Option<&LoadedPlugin> {
        self.plugins.get(id)
    }
    /// Every plugin that did not load, with its path and reason.
    pub fn load_errors(&self) -> &[LoadError] {
        &self.errors
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
        let plugin = self.plugins.get(id).ok_or_else(|| CallError::PluginNotFound(id.to_owned()))?;
        let timeout = options.timeout.unwrap_or(plugin.manifest.limits.timeout);
        let exec = ExecutionContext {
            execution_id: new_execution_id(),
            attempt: 1,
            deadline_ms: deadline_ms(timeout),
            operation: operation.to_owned(),
            parameters: params,
            config: plugin.manifest.config.clone(),
            ..ExecutionContext::default()
        };
        let mut services = CallServices::new(id, &exec.execution_id, options.state, options.cancel);
        if let Some(sink) = options.progress {
            services = services.with_progress(sink);
        }
        self.call_with(&exec, &services, Some(timeout))
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
        let plugin = self.plugins.get(id).ok_or_else(|| CallError::PluginNotFound(id.to_owned()))?;
        if plugin.runtime.metadata().operation(&exec.operation).is_none() {
            return Err(CallError::OperationNotFound { plugin: id.to_owned(), operation: exec.operation.clone() });
        }
        let started = std::time::Instant::now();
        let result = plugin.runtime.call(exec, services, timeout);
        tracing::debug!(plugin = id, operation = %exec.operation, execution = %exec.execution_id,
            elapsed_us = started.elapsed().as_micros() as u64, ok = result.is_ok(), "call finished");
        result
    }
}

/// A new, time-ordered execution id (UUID v7).
pub fn new_execution_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn deadline_ms(timeout: Duration) -> Option<u64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some((now + timeout).as_millis() as u64)
}
