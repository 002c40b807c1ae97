//! WASM plugins: components targeting `plexus:plugin/plexus-plugin`, run by
//! wasmtime with WASI 0.2 and sandboxed by default.
//!
//! * A fresh [`Store`] per call, instantiated from a pre-instantiated component
//!   ([`wasmtime::component::InstancePre`]) with the pooling allocator: a call
//!   never sees state from an earlier one.
//! * Time: epoch interruption. A ticker thread advances the engine's epoch
//!   every [`EPOCH_TICK`]; each tick the store checks the call's deadline and
//!   cancellation and interrupts the guest when either is due.
//! * Memory: a [`ResourceLimiter`] caps linear memory at the manifest's
//!   `limits.memory_mib` (default 64 MiB); growing past it traps.
//! * Files, environment and network: nothing unless `[permissions]` grants
//!   it (WASI preopens with read-only or read-write rights, named environment
//!   variables, sockets).
//! * stdout/stderr are captured up to `limits.output_bytes` and sent to the log.
//! * Compiled components are cached on disk ([`cache::ComponentCache`]).

pub mod cache;
mod output;

use crate::error::{CallError, Error, LoadErrorKind};
use crate::manifest::{DirAccess, Limits, Manifest, Permissions, PluginKind};
use crate::runtime::{self, Runtime};
use crate::services::CallServices;
use cache::{CacheOutcome, ComponentCache};
use output::BoundedOutput;
use plexus_sdk::{
    CallOutput, ErrorKind, ExecutionContext, HostServices, LogLevel, Metadata, OperationInfo, PluginError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, UpdateDeadline,
};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plexus-plugin",
    });
}

use bindings::plexus::plugin::{host as wit_host, types as wit};
use bindings::{PlexusPlugin, PlexusPluginPre};

/// How often the epoch advances: the granularity of WASM timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each pooled linear memory kept resident between instances.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// How many component instances may live at once (pooling allocator slots).
const POOL_INSTANCES: u32 = 256;

/// The shared wasmtime engine, linker and component cache. Cheap to clone.
#[derive(Clone)]
pub struct WasmEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<CallState>,
    cache: ComponentCache,
}

impl WasmEngine {
    /// An engine with Cranelift, epoch interruption and the pooling allocator
    /// (falling back to on-demand allocation where the pool cannot reserve its
    /// address space), caching compiled components in `cache`.
    pub fn new(cache: ComponentCache) -> Result<Self, Error> {
        let engine = match Engine::new(&config(true)) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!("pooling allocator unavailable ({e:#}); using on-demand instance allocation");
                Engine::new(&config(false)).map_err(|e| Error::Engine(format!("{e:#}")))?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| Error::Engine(format!("{e:#}")))?;
        PlexusPlugin::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        start_epoch_ticker(&engine);
        Ok(Self { inner: Arc::new(EngineInner { engine, linker, cache }) })
    }

    /// The compiled-component cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.inner.cache
    }

    /// Compile (or fetch from the cache) and pre-instantiate `bytes`.
    fn prepare(&self, bytes: &[u8]) -> Result<(PlexusPluginPre<CallState>, CacheOutcome), LoadErrorKind> {
        if !wasmparser_is_component(bytes) {
            return Err(LoadErrorKind::InvalidComponent(
                "not a WebAssembly component (a core module, or not WebAssembly at all); build with `--target wasm32-wasip2`".into(),
            ));
        }
        let (component, outcome) = self
            .inner
            .cache
            .load(&self.inner.engine, bytes)
            .map_err(|e| LoadErrorKind::InvalidComponent(one_line(&e)))?;
        let pre =
            self.inner.linker.instantiate_pre(&component).map_err(|e| LoadErrorKind::Instantiate(one_line(&e)))?;
        let pre = PlexusPluginPre::new(pre).map_err(|e| LoadErrorKind::Instantiate(one_line(&e)))?;
        Ok((pre, outcome))
    }
}

fn wasmparser_is_component(bytes: &[u8]) -> bool {
    // Magic `\0asm`, then a layer-1 (component) version.
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.concurrency_support(false);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES);
        pool.total_core_instances(POOL_INSTANCES * 4);
        pool.total_memories(POOL_INSTANCES * 2);
        pool.total_tables(POOL_INSTANCES * 4);
        pool.total_stacks(POOL_INSTANCES);
        pool.max_memory_size((crate::manifest::MAX_MEMORY_MIB << 20) as usize);
        // Reset the low pages of a reused slot with memset instead of madvise:
        // no page faults and no TLB shootdowns on the next instantiation.
        pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        pool.table_keep_resident(64 << 10);
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advance `engine`'s epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("plexus-epoch".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch ticker, WASM timeouts will not fire: {e}");
    }
}

/// Why the host stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Timeout,
    Cancelled,
}

/// The data of one call's [`Store`].
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    services: CallServices,
    deadline: Option<Instant>,
    stopped: Option<Stop>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wit::Host for CallState {}

impl wit_host::Host for CallState {
    fn log(&mut self, level: wit::LogLevel, message: String) {
        let level = match level {
            wit::LogLevel::Trace => LogLevel::Trace,
            wit::LogLevel::Debug => LogLevel::Debug,
            wit::LogLevel::Info => LogLevel::Info,
            wit::LogLevel::Warn => LogLevel::Warn,
            wit::LogLevel::Error => LogLevel::Error,
        };
        self.services.log(level, &message);
    }
    fn state_get(&mut self, key: String) -> Option<String> {
        self.services.state_get(&key).map(|v| v.to_string())
    }
    fn state_set(&mut self, key: String, value: String) {
        let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
        self.services.state_set(&key, value);
    }
    fn report_progress(&mut self, fraction: f64, message: String) {
        self.services.report_progress(fraction, &message);
    }
    fn is_cancelled(&mut self) -> bool {
        self.services.should_stop()
    }
}

/// Caps linear memory and records whether the cap was hit.
struct MemoryLimiter {
    limit_bytes: u64,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit_bytes {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} bytes exceeded (wanted {desired})", self.limit_bytes);
        }
        Ok(true)
    }
    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A loaded WASM plugin: a pre-instantiated component plus its sandbox settings.
pub struct WasmPlugin {
    engine: WasmEngine,
    pre: PlexusPluginPre<CallState>,
    metadata: Metadata,
    limits: Limits,
    permissions: Permissions,
    plugin_id: String,
}

impl WasmPlugin {
    /// Compile (or load from the cache), pre-instantiate, and query the metadata
    /// of the component named by `manifest`.
    pub fn load(engine: &WasmEngine, manifest: &Manifest, bytes: &[u8]) -> Result<Self, LoadErrorKind> {
        check_grants(&manifest.permissions, engine.cache())?;
        let (pre, outcome) = engine.prepare(bytes)?;
        tracing::debug!(plugin = %manifest.id, cache = ?outcome, "component ready");
        let mut plugin = Self {
            engine: engine.clone(),
            pre,
            metadata: Metadata::default(), // replaced by what the component describes
            limits: manifest.limits.clone(),
            permissions: manifest.permissions.clone(),
            plugin_id: manifest.id.clone(),
        };
        let services = CallServices::new(&manifest.id, "load", Default::default(), Default::default());
        let described = plugin
            .with_instance(&services, Some(manifest.limits.timeout), |store, bindings| {
                bindings.plexus_plugin_guest().call_describe(store)
            })
            .map_err(|e| LoadErrorKind::Metadata(e.to_string()))?;
        plugin.metadata = metadata_from_wit(described)?;
        runtime::check_metadata(&plugin.metadata, manifest)?;
        Ok(plugin)
    }

    /// Instantiate a fresh store and run `f` in it, mapping traps, timeouts and
    /// limit hits to [`CallError`]s and forwarding captured output to the log.
    fn with_instance<R>(
        &self,
        services: &CallServices,
        timeout: Option<Duration>,
        f: impl FnOnce(&mut Store<CallState>, &PlexusPlugin) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let plugin = &self.plugin_id;
        let stdout = BoundedOutput::new(self.limits.output_bytes);
        let stderr = BoundedOutput::new(self.limits.output_bytes);
        let wasi = self
            .wasi_ctx(stdout.clone(), stderr.clone())
            .map_err(|message| CallError::Host { plugin: plugin.clone(), message })?;
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit_bytes: self.limits.memory_bytes, exceeded: false },
            services: services.clone(),
            deadline: timeout.map(|t| Instant::now() + t),
            stopped: None,
        };
        let mut store = Store::new(&self.engine.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            let stop = if state.services.should_stop() {
                Some(Stop::Cancelled)
            } else if state.deadline.is_some_and(|d| Instant::now() >= d) {
                Some(Stop::Timeout)
            } else {
                None
            };
            match stop {
                Some(stop) => {
                    let mut ctx = ctx;
                    ctx.data_mut().stopped = Some(stop);
                    Ok(UpdateDeadline::Interrupt)
                }
                None => Ok(UpdateDeadline::Continue(1)),
            }
        });
        let result = self.pre.instantiate(&mut store).and_then(|bindings| f(&mut store, &bindings));
        forward_output(plugin, "stdout", &stdout);
        forward_output(plugin, "stderr", &stderr);
        result.map_err(|error| {
            let state = store.data();
            match (state.stopped, state.limiter.exceeded) {
                (Some(Stop::Timeout), _) => {
                    CallError::Timeout { plugin: plugin.clone(), after: timeout.unwrap_or_default() }
                }
                (Some(Stop::Cancelled), _) if services.execution_cancelled() => {
                    CallError::Cancelled { plugin: plugin.clone() }
                }
                (Some(Stop::Cancelled), _) => {
                    CallError::Timeout { plugin: plugin.clone(), after: timeout.unwrap_or_default() }
                }
                (None, true) => {
                    CallError::MemoryLimit { plugin: plugin.clone(), limit_bytes: self.limits.memory_bytes }
                }
                // A trap (guest panic, `unreachable`, ...) or a failed instantiation.
                (None, false) => CallError::Trap { plugin: plugin.clone(), message: one_line(&error) },
            }
        })
    }

    /// The WASI context of one call: only what the manifest grants.
    fn wasi_ctx(&self, stdout: BoundedOutput, stderr: BoundedOutput) -> Result<WasiCtx, String> {
        let mut builder = WasiCtxBuilder::new();
        builder.stdout(stdout).stderr(stderr);
        for dir in &self.permissions.dirs {
            let perms = match dir.access {
                DirAccess::ReadOnly => FsPerms::ReadOnly,
                DirAccess::ReadWrite => FsPerms::ReadWrite,
            };
            builder
                .preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| format!("cannot open granted directory {}: {e:#}", dir.host.display()))?;
        }
        for name in &self.permissions.env {
            if let Ok(value) = std::env::var(name) {
                builder.env(name, value);
            }
        }
        if self.permissions.network {
            builder.inherit_network().allow_ip_name_lookup(true);
        }
        Ok(builder.build())
    }
}

impl Runtime for WasmPlugin {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn kind(&self) -> PluginKind {
        PluginKind::Wasm
    }

    fn call(
        &self,
        exec: &ExecutionContext,
        services: &CallServices,
        timeout: Option<Duration>,
    ) -> Result<CallOutput, CallError> {
        let ctx = wit::ExecutionContext {
            execution_id: exec.execution_id.clone(),
            workflow_id: exec.workflow_id.clone(),
            step_id: exec.step_id.clone(),
            task_id: exec.task_id.clone(),
            attempt: exec.attempt,
            deadline_ms: exec.deadline_ms,
            operation: exec.operation.clone(),
            parameters: exec.parameters.to_string(),
            upstream: serde_json::Value::Object(exec.upstream.clone()).to_string(),
            config: exec.config.to_string(),
        };
        let result = self.with_instance(services, timeout, |store, bindings| {
            bindings.plexus_plugin_guest().call_call(store, &ctx)
        })?;
        let plugin = &self.plugin_id;
        match result {
            Ok(out) => Ok(CallOutput {
                output: serde_json::from_str(&out.output).map_err(|e| CallError::Host {
                    plugin: plugin.clone(),
                    message: format!("output is not valid JSON: {e}"),
                })?,
                metrics: out.metrics.into_iter().map(|m| (m.name, m.value)).collect(),
            }),
            Err(e) => Err(CallError::Plugin {
                plugin: plugin.clone(),
                error: PluginError {
                    kind: match e.kind {
                        wit::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
                        wit::ErrorKind::UnsupportedOperation => ErrorKind::UnsupportedOperation,
                        wit::ErrorKind::NotFound => ErrorKind::NotFound,
                        wit::ErrorKind::Failed => ErrorKind::Failed,
                    },
                    message: e.message,
                    retryable: e.retryable,
                },
            }),
        }
    }
}

/// Refuse grants that would let a plugin write the component cache, and grants
/// of directories that do not exist.
fn check_grants(permissions: &Permissions, cache: &ComponentCache) -> Result<(), LoadErrorKind> {
    for dir in &permissions.dirs {
        let host = dir
            .host
            .canonicalize()
            .map_err(|e| LoadErrorKind::InvalidManifest(format!("permissions.dirs: {}: {e}", dir.host.display())))?;
        if let Some(cache_dir) = cache.dir()
            && (cache_dir.starts_with(&host) || host.starts_with(cache_dir))
        {
            return Err(LoadErrorKind::InvalidManifest(format!(
                "permissions.dirs: {} overlaps the component cache {}; plugins may not reach it",
                dir.host.display(),
                cache_dir.display()
            )));
        }
    }
    Ok(())
}

fn metadata_from_wit(m: wit::Metadata) -> Result<Metadata, LoadErrorKind> {
    runtime::check_contract(&m.contract_version, None)?;
    let schema = |text: Option<String>, what: &str, op: &str| {
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| LoadErrorKind::Metadata(format!("{what} schema of `{op}` is not JSON: {e}")))
        })
        .transpose()
    };
    let operations = m
        .operations
        .into_iter()
        .map(|op| {
            Ok(OperationInfo {
                params_schema: schema(op.params_schema, "parameter", &op.name)?,
                output_schema: schema(op.output_schema, "output", &op.name)?,
                name: op.name,
                description: op.description,
            })
        })
        .collect::<Result<_, LoadErrorKind>>()?;
    Ok(Metadata {
        id: m.id,
        name: m.name,
        version: m.version,
        description: m.description,
        authors: m.authors,
        license: m.license,
        contract_version: m.contract_version,
        capabilities: m.capabilities,
        operations,
    })
}

fn forward_output(plugin: &str, stream: &str, output: &BoundedOutput) {
    let (text, dropped) = output.take();
    for line in text.lines() {
        tracing::info!(target: "plexus::plugin", plugin, stream, "{line}");
    }
    if dropped > 0 {
        tracing::warn!(target: "plexus::plugin", plugin, stream, dropped, "output past limits.output_bytes was dropped");
    }
}

fn one_line(error: &wasmtime::Error) -> String {
    format!("{error:#}").split_whitespace().collect::<Vec<_>>().join(" ")
}
