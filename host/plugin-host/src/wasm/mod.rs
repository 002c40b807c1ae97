//! WASM plugins: components targeting `plexus:plugin/plexus-plugin`, run by
//! wasmtime with WASI 0.2 and sandboxed by default.
//!
//! * A fresh [`Store`] per call, instantiated from a pre-instantiated component
//!   ([`wasmtime::component::InstancePre`]) with the pooling allocator: a call
//!   never sees state from an earlier one — unless the manifest's
//!   `[instances] reuse` says otherwise ([`crate::manifest::Reuse`]): with
//!   `execution`, an instance whose call returned serves the next call of the
//!   same execution (guest globals, linear memory and WASI handles it opened
//!   carry over, within that execution only); with `plugin`, the next call of
//!   any execution (the operator's explicit choice: what one call leaves, any
//!   later call may see). Never across plugins; the host services (state,
//!   log, progress, cancel, deadline) are always the current call's. An
//!   instance is dropped after a trap, a timeout, a cancel or a limit hit,
//!   after `max_calls` calls, once `max_age_ms` old, and (per execution) when
//!   its execution ends; at most [`MAX_IDLE_PER_KEY`] per execution and
//!   [`MAX_IDLE_PER_PLUGIN`] per plugin are kept idle.
//! * Time: every call (and `describe`) runs asynchronously (`call_async`,
//!   WASI linked async) under a tokio timer and a cancellation watch, so it
//!   ends within a few milliseconds of its deadline or its cancel whatever the
//!   guest does: computing, blocked in a WASI call (`sleep`, `poll`, a read),
//!   or calling the host. While WASM code runs, epoch interruption (a ticker
//!   advances the epoch every [`EPOCH_TICK`]) makes it yield so the timer can
//!   fire, and interrupts it outright once the deadline or the cancel is seen.
//! * Memory: a [`ResourceLimiter`] caps the sum of all linear memories of an
//!   instance at the manifest's `limits.memory_mib` (default 64 MiB); growing
//!   past it traps. A component may hold at most [`MAX_MEMORIES`] memories,
//!   [`MAX_TABLES`] tables and [`MAX_CORE_INSTANCES`] core instances.
//! * Capacity: the engine's instance pool is shared by every plugin; one plugin
//!   runs at most [`MAX_INSTANCES_PER_PLUGIN`] instances at once, so it cannot
//!   take every slot. A call that finds no slot fails with
//!   [`CallError::Capacity`], never as the plugin's trap.
//! * Files, environment and network: nothing unless `[permissions]` grants
//!   it (`grants`: directories opened once at load, named environment
//!   variables, sockets to any address or to an allowlist); `wasi:http`
//!   outgoing requests (feature `wasi-http`, on by default) under the same
//!   network grant (`http_gate`).
//! * Host services: shared-state bytes and log bytes per call are bounded
//!   (`limits.state_bytes`, `limits.log_bytes`), and so are the WASI resource
//!   handles (open files, streams, sockets) a call holds (`limits.handles`).
//! * stdout/stderr are captured up to `limits.output_bytes` and sent to the log.
//! * Compiled components are cached on disk ([`cache::ComponentCache`]).

pub mod cache;
mod grants;
#[cfg(feature = "wasi-http")]
mod http_gate;
mod output;

use crate::error::{CallError, Error, LoadErrorKind};
use crate::manifest::{Limits, Manifest, PluginKind};
use crate::runtime::{self, Runtime};
use crate::services::CallServices;
use cache::{CacheOutcome, ComponentCache};
use grants::Grants;
use output::BoundedOutput;
use plexus_sdk::{
    CallOutput, ErrorKind, ExecutionContext, HostServices, LogLevel, Metadata, OperationInfo, Orchestration,
    PluginError,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig, ResourceLimiter,
    Store, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plexus-plugin",
        // Exports run with `call_async` so a deadline can drop them; WASI is
        // linked async so a blocking WASI call is a future that can be dropped
        // too. The host services stay synchronous: they never block.
        exports: { default: async },
        imports: { "plexus:plugin/host.state-set": trappable },
    });
}

/// Contract 0.3's world (`wit/previous/0.3.0`): components built for it load
/// too. Its `types` are 0.4's, unchanged: they are shared (`with`), so its
/// calls need no conversion; its `host` lacks the artifact functions.
#[allow(missing_docs)]
mod bindings_v0_3 {
    wasmtime::component::bindgen!({
        path: "../../wit/previous/0.3.0",
        world: "plexus-plugin",
        exports: { default: async },
        imports: { "plexus:plugin/host.state-set": trappable },
        with: { "plexus:plugin/types": super::bindings::plexus::plugin::types },
    });
}

/// Contract 0.2's world (`wit/previous/0.2.0`): components built for it load
/// too, mapped onto the current types (0.2 has no lifecycle exports, no
/// schedule in the context and no orchestration functions).
#[allow(missing_docs)]
mod bindings_v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/previous/0.2.0",
        world: "plexus-plugin",
        exports: { default: async },
        imports: { "plexus:plugin/host.state-set": trappable },
    });
}

/// Contract 0.1's world (`wit/previous/0.1.0`): components built for it load
/// too, mapped onto the current types (0.1 has no `cancelled` error either).
#[allow(missing_docs)]
mod bindings_v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/previous/0.1.0",
        world: "plexus-plugin",
        exports: { default: async },
        imports: { "plexus:plugin/host.state-set": trappable },
    });
}

use bindings::plexus::plugin::{host as wit_host, types as wit};
use bindings::{PlexusPlugin, PlexusPluginPre};
use bindings_v0_1::plexus::plugin::{host as wit_host_v0_1, types as wit_v0_1};
use bindings_v0_2::plexus::plugin::{host as wit_host_v0_2, types as wit_v0_2};
use bindings_v0_3::plexus::plugin::host as wit_host_v0_3;

/// A pre-instantiated component of one of the worlds the host implements.
enum Pre {
    /// The current contract.
    Current(PlexusPluginPre<CallState>),
    /// Contract 0.3.
    V0_3(bindings_v0_3::PlexusPluginPre<CallState>),
    /// Contract 0.2.
    V0_2(bindings_v0_2::PlexusPluginPre<CallState>),
    /// Contract 0.1.
    V0_1(bindings_v0_1::PlexusPluginPre<CallState>),
}

/// How often the epoch advances: the granularity of WASM timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each pooled linear memory kept resident between instances.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// How many component instances may live at once (pooling allocator slots).
const POOL_INSTANCES: u32 = 256;

/// The most instances one plugin runs at once: a quarter of the pool, so one
/// plugin cannot take every slot. Further calls wait for one, within their deadline.
pub const MAX_INSTANCES_PER_PLUGIN: u32 = POOL_INSTANCES / 4;

/// The most linear memories a component may hold (Rust, Python and JavaScript
/// components built by the usual tools have one).
pub const MAX_MEMORIES: u32 = 2;

/// The most tables a component may hold.
pub const MAX_TABLES: u32 = 16;

/// The most core instances a component may hold (interpreters built as
/// several linked libraries have a few dozen).
pub const MAX_CORE_INSTANCES: u32 = 64;

/// The most table elements an instance may hold, all tables together.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// How long `describe` may take at load: a plugin that describes itself more
/// slowly does not load (and holds up discovery no longer than this).
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shared wasmtime engine, linker and component cache. Cheap to clone.
#[derive(Clone)]
pub struct WasmEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<CallState>,
    cache: ComponentCache,
    /// Paths no grant may reach, and what each is (the cache, and what the embedder adds).
    protected: Vec<(PathBuf, &'static str)>,
    /// The plugin directories: no read-write grant around or inside them,
    /// but for a subfolder of the plugin's own folder.
    plugin_dirs: Vec<PathBuf>,
    /// Each plugin id's share of the instance slots, kept across reloads so a
    /// plugin that gets itself reloaded does not get a second share.
    slots: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl WasmEngine {
    /// An engine with Cranelift, epoch interruption and the pooling allocator
    /// (falling back to on-demand allocation where the pool cannot reserve its
    /// address space), caching compiled components in `cache`.
    pub fn new(cache: ComponentCache) -> Result<Self, Error> {
        Self::with_protected(cache, Vec::new(), Vec::new())
    }

    /// [`Self::new`], refusing any grant that reaches one of `protected`
    /// (e.g. the daemon's state database and token file) besides the cache,
    /// and any read-write grant of, around or inside one of `plugin_dirs`
    /// other than a subfolder of the plugin's own folder (a plugin there could
    /// plant or change another plugin, native code included).
    pub fn with_protected(
        cache: ComponentCache,
        protected: Vec<PathBuf>,
        plugin_dirs: Vec<PathBuf>,
    ) -> Result<Self, Error> {
        let engine = match Engine::new(&config(true)) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!("pooling allocator unavailable ({e:#}); using on-demand instance allocation");
                Engine::new(&config(false)).map_err(|e| Error::Engine(format!("{e:#}")))?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| Error::Engine(format!("{e:#}")))?;
        #[cfg(feature = "wasi-http")]
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        bindings_v0_1::PlexusPlugin::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        bindings_v0_2::PlexusPlugin::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        bindings_v0_3::PlexusPlugin::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        PlexusPlugin::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        start_epoch_ticker(&engine);
        let mut protected: Vec<(PathBuf, &'static str)> =
            protected.iter().map(|p| (crate::manifest::resolve(p), "a path the host protects")).collect();
        protected.extend(cache.dir().map(|dir| (dir.to_path_buf(), "the component cache")));
        let plugin_dirs = plugin_dirs.iter().map(|d| crate::manifest::resolve(d)).collect();
        let inner = EngineInner { engine, linker, cache, protected, plugin_dirs, slots: Default::default() };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The compiled-component cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.inner.cache
    }

    /// Plugin `id`'s share of the instance slots (the same across reloads).
    fn slots_of(&self, id: &str) -> Arc<tokio::sync::Semaphore> {
        let mut slots = self.inner.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots
            .entry(id.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(MAX_INSTANCES_PER_PLUGIN as usize)))
            .clone()
    }

    /// Compile (or fetch from the cache) and pre-instantiate `bytes`.
    fn prepare(&self, bytes: &[u8]) -> Result<(Pre, CacheOutcome), LoadErrorKind> {
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
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            let imports: Vec<String> =
                component.component_type().imports(&self.inner.engine).map(|(name, _)| name.to_owned()).collect();
            LoadErrorKind::Instantiate(unprovided_imports(&imports).unwrap_or_else(|| one_line(&e)))
        })?;
        // The current world, else the previous ones, else the current one's error.
        let pre = match PlexusPluginPre::new(pre.clone()) {
            Ok(current) => Pre::Current(current),
            Err(e) => match bindings_v0_3::PlexusPluginPre::new(pre.clone()) {
                Ok(old) => Pre::V0_3(old),
                Err(_) => match bindings_v0_2::PlexusPluginPre::new(pre.clone()) {
                    Ok(old) => Pre::V0_2(old),
                    Err(_) => match bindings_v0_1::PlexusPluginPre::new(pre) {
                        Ok(old) => Pre::V0_1(old),
                        Err(_) => {
                            return Err(LoadErrorKind::Instantiate(format!(
                                "{}; a plugin component exports plexus:plugin/guest@{CONTRACT} (or @0.3.0, @0.2.0, @0.1.0): build it for the plexus-plugin world of wit/plexus-plugin.wit",
                                one_line(&e),
                                CONTRACT = plexus_sdk::CONTRACT_VERSION
                            )));
                        }
                    },
                },
            },
        };
        Ok((pre, outcome))
    }
}

/// The interface packages a component may import: this world's `host`
/// interface, WASI 0.2's command-line world and, with feature `wasi-http`,
/// `wasi:http`'s outgoing requests.
const PROVIDED: &[&str] = &[
    "plexus:plugin/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:random/",
    "wasi:sockets/",
    #[cfg(feature = "wasi-http")]
    "wasi:http/types",
    #[cfg(feature = "wasi-http")]
    "wasi:http/outgoing-handler",
];

/// Why a component whose `imports` the host cannot satisfy does not load,
/// naming each interface it does not provide and what to do; `None` when
/// every import is of a provided package (the error is then about types).
fn unprovided_imports(imports: &[String]) -> Option<String> {
    let missing: Vec<&str> =
        imports.iter().map(String::as_str).filter(|name| !PROVIDED.iter().any(|p| name.starts_with(p))).collect();
    if missing.is_empty() {
        return None;
    }
    let mut message = format!(
        "the component imports {} that this host does not provide: {}; a plugin component may import \
         plexus:plugin/host and WASI 0.2's wasi:cli, io, clocks, filesystem, random and sockets{}",
        if missing.len() == 1 { "an interface" } else { "interfaces" },
        missing.join(", "),
        if cfg!(feature = "wasi-http") { ", and wasi:http's types and outgoing-handler" } else { "" }
    );
    if !cfg!(feature = "wasi-http") && missing.iter().any(|m| m.starts_with("wasi:http/")) {
        message.push_str(
            ". wasi:http is not provided by this build of the host (feature `wasi-http`): build the component without it (componentize-js: \
             `--disable http fetch-event`, as `--disable http` alone keeps wasi:http/types; jco componentize: \
             `--disable http fetch-event` or `--disable all`; a Rust component: drop the wasi-http dependency)",
        );
    }
    Some(message)
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
    // `PLEXUS_WASM_PERFMAP=1`: name the guest's functions for `perf`
    // (wasmtime writes /tmp/perf-PID.map), to profile a plugin in its host.
    if std::env::var_os("PLEXUS_WASM_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES);
        // Every per-component maximum times the instance count: instance slots
        // run out first, and those are shared out per plugin.
        pool.max_memories_per_component(MAX_MEMORIES);
        pool.max_tables_per_component(MAX_TABLES);
        pool.max_core_instances_per_component(MAX_CORE_INSTANCES);
        pool.total_core_instances(POOL_INSTANCES * MAX_CORE_INSTANCES);
        pool.total_memories(POOL_INSTANCES * MAX_MEMORIES);
        pool.total_tables(POOL_INSTANCES * MAX_TABLES);
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

/// The host's own WASM runtime (one thread of its own): its timers and I/O
/// drive deadlines and async WASI calls, so they fire on time however busy
/// the caller's runtime is.
static IO_RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("plexus-wasm-io")
        .enable_all()
        .build()
        .expect("the WASM runtime's thread starts")
});

/// Run `run` to completion on the calling thread, in the context of
/// [`IO_RUNTIME`]. It is polled once first: a call that neither waits on WASI
/// nor computes past an epoch tick ends there, without building the timers
/// and watches of `rest`. Otherwise `rest(run)` (a future that drives `run`
/// on, e.g. racing it against a deadline) is run to completion. Called from a
/// worker of a multi-threaded tokio runtime (async code that calls the host
/// directly), it first tells that runtime the thread blocks (`block_in_place`).
///
/// # Panics
/// When called from async code on a current-thread tokio runtime and `run`
/// does not end in its first poll: call WASM plugins from a plain thread,
/// `spawn_blocking`, or a multi-threaded runtime.
fn drive<'a, R, S>(mut run: std::pin::Pin<&'a mut R>, rest: impl FnOnce(std::pin::Pin<&'a mut R>) -> S) -> R::Output
where
    R: std::future::Future,
    S: std::future::Future<Output = R::Output>,
{
    let go = move || {
        let first = {
            let _entered = IO_RUNTIME.enter();
            // Nothing is woken by this poll: a future left pending is polled
            // again below with a real waker, which it registers then.
            run.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        };
        match first {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => IO_RUNTIME.block_on(rest(run)),
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(go)
        }
        _ => go(),
    }
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
    /// The services of the call the instance serves; none while it is idle
    /// (it then keeps nothing of an execution alive: state, cancel, progress).
    services: Option<CallServices>,
    deadline: Option<Instant>,
    stopped: Option<Stop>,
    /// A host-service limit the guest broke (the call fails with it).
    broke: Option<String>,
    /// `wasi:http`'s context and the gate on its requests.
    #[cfg(feature = "wasi-http")]
    http: (wasmtime_wasi_http::WasiHttpCtx, http_gate::HttpGate),
}

impl CallState {
    /// The current call's services. An idle instance runs no guest code, so
    /// nothing asks then; were something to, it gets services that hold nothing.
    fn services(&self) -> &CallServices {
        static IDLE: std::sync::LazyLock<CallServices> =
            std::sync::LazyLock::new(|| CallServices::new("idle", "idle", Default::default(), Default::default()));
        self.services.as_ref().unwrap_or(&IDLE)
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

#[cfg(feature = "wasi-http")]
impl wasmtime_wasi_http::WasiHttpView for CallState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http.0, table: &mut self.table, hooks: &mut self.http.1 }
    }
}

impl wit::Host for CallState {}
impl wit_v0_2::Host for CallState {}
impl wit_v0_1::Host for CallState {}

/// The host services of an older contract (`$host`, its `types` `$types`):
/// the current ones, its log levels mapped (no orchestration before 0.3).
macro_rules! old_host_services {
    ($host:ident, $types:ident) => {
        impl $host::Host for CallState {
            fn log(&mut self, level: $types::LogLevel, message: String) {
                let level = match level {
                    $types::LogLevel::Trace => wit::LogLevel::Trace,
                    $types::LogLevel::Debug => wit::LogLevel::Debug,
                    $types::LogLevel::Info => wit::LogLevel::Info,
                    $types::LogLevel::Warn => wit::LogLevel::Warn,
                    $types::LogLevel::Error => wit::LogLevel::Error,
                };
                wit_host::Host::log(self, level, message);
            }
            fn state_get(&mut self, key: String) -> Option<String> {
                wit_host::Host::state_get(self, key)
            }
            fn state_set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
                wit_host::Host::state_set(self, key, value)
            }
            fn report_progress(&mut self, fraction: f64, message: String) {
                wit_host::Host::report_progress(self, fraction, message);
            }
            fn is_cancelled(&mut self) -> bool {
                wit_host::Host::is_cancelled(self)
            }
        }
    };
}

old_host_services!(wit_host_v0_2, wit_v0_2);

/// Contract 0.3's host services: the current ones but the artifacts.
impl wit_host_v0_3::Host for CallState {
    fn log(&mut self, level: wit::LogLevel, message: String) {
        wit_host::Host::log(self, level, message);
    }
    fn state_get(&mut self, key: String) -> Option<String> {
        wit_host::Host::state_get(self, key)
    }
    fn state_set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        wit_host::Host::state_set(self, key, value)
    }
    fn report_progress(&mut self, fraction: f64, message: String) {
        wit_host::Host::report_progress(self, fraction, message);
    }
    fn is_cancelled(&mut self) -> bool {
        wit_host::Host::is_cancelled(self)
    }
    fn start_workflow(&mut self, workflow_id: String, inputs: String) -> Result<String, wit::PluginError> {
        wit_host::Host::start_workflow(self, workflow_id, inputs)
    }
    fn execution_status(&mut self, execution_id: String) -> Result<String, wit::PluginError> {
        wit_host::Host::execution_status(self, execution_id)
    }
    fn create_schedule(&mut self, spec: String) -> Result<String, wit::PluginError> {
        wit_host::Host::create_schedule(self, spec)
    }
    fn cancel_schedule(&mut self, schedule_id: String) -> Result<(), wit::PluginError> {
        wit_host::Host::cancel_schedule(self, schedule_id)
    }
}
old_host_services!(wit_host_v0_1, wit_v0_1);

impl wit_host::Host for CallState {
    fn log(&mut self, level: wit::LogLevel, message: String) {
        let level = match level {
            wit::LogLevel::Trace => LogLevel::Trace,
            wit::LogLevel::Debug => LogLevel::Debug,
            wit::LogLevel::Info => LogLevel::Info,
            wit::LogLevel::Warn => LogLevel::Warn,
            wit::LogLevel::Error => LogLevel::Error,
        };
        self.services().log(level, &message);
    }
    fn state_get(&mut self, key: String) -> Option<String> {
        self.services().state_get(&key).map(|v| v.to_string())
    }
    fn state_set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
        self.services().try_state_set(&key, value).map_err(|e| {
            let message = e.to_string();
            self.broke = Some(message.clone());
            wasmtime::Error::msg(message)
        })
    }
    fn report_progress(&mut self, fraction: f64, message: String) {
        self.services().report_progress(fraction, &message);
    }
    fn is_cancelled(&mut self) -> bool {
        self.services().should_stop()
    }
    fn start_workflow(&mut self, workflow_id: String, inputs: String) -> Result<String, wit::PluginError> {
        let inputs = match serde_json::from_str::<serde_json::Value>(&inputs) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(serde_json::Value::Null) => Default::default(),
            Ok(_) | Err(_) => {
                return Err(to_wit_error(PluginError::invalid_input("the inputs of a workflow are a JSON object")));
            }
        };
        let answer = self.orchestrate(Orchestration::StartWorkflow { workflow: workflow_id, inputs })?;
        Ok(answer.as_str().unwrap_or_default().to_owned())
    }
    fn execution_status(&mut self, execution_id: String) -> Result<String, wit::PluginError> {
        Ok(self.orchestrate(Orchestration::ExecutionStatus { execution: execution_id })?.to_string())
    }
    fn create_schedule(&mut self, spec: String) -> Result<String, wit::PluginError> {
        let spec = serde_json::from_str(&spec)
            .map_err(|e| to_wit_error(PluginError::invalid_input(format!("the schedule spec is not JSON: {e}"))))?;
        let answer = self.orchestrate(Orchestration::CreateSchedule { spec })?;
        Ok(answer.as_str().unwrap_or_default().to_owned())
    }
    fn cancel_schedule(&mut self, schedule_id: String) -> Result<(), wit::PluginError> {
        self.orchestrate(Orchestration::CancelSchedule { schedule: schedule_id }).map(drop)
    }
    // Artifacts: the component gets ids only, never the store's paths.
    fn artifact_create(&mut self, name: String, media_type: Option<String>) -> Result<u32, wit::PluginError> {
        self.services().artifact_create(&name, media_type.as_deref()).map(|h| h.id).map_err(to_wit_error)
    }
    fn artifact_write(&mut self, writer: u32, data: Vec<u8>) -> Result<(), wit::PluginError> {
        self.services().artifact_write(writer, &data).map_err(to_wit_error)
    }
    fn artifact_finish(&mut self, writer: u32) -> Result<String, wit::PluginError> {
        let reference = self.services().artifact_finish(writer).map_err(to_wit_error)?;
        Ok(json_text(&reference))
    }
    fn artifact_open(&mut self, reference: String) -> Result<u32, wit::PluginError> {
        let reference: plexus_sdk::ArtifactRef = serde_json::from_str(&reference)
            .map_err(|e| to_wit_error(PluginError::invalid_input(format!("not an artifact reference: {e}"))))?;
        self.services().artifact_open(&reference).map(|h| h.id).map_err(to_wit_error)
    }
    fn artifact_read(&mut self, reader: u32, max_bytes: u32) -> Result<Vec<u8>, wit::PluginError> {
        self.services().artifact_read(reader, max_bytes).map_err(to_wit_error)
    }
}

impl CallState {
    /// Run an orchestration request through the call's services.
    fn orchestrate(&self, request: Orchestration) -> Result<serde_json::Value, wit::PluginError> {
        self.services().orchestrate(&request).map_err(to_wit_error)
    }
}

/// A plugin error as the WIT record.
fn to_wit_error(e: PluginError) -> wit::PluginError {
    let kind = match e.kind {
        ErrorKind::InvalidInput => wit::ErrorKind::InvalidInput,
        ErrorKind::UnsupportedOperation => wit::ErrorKind::UnsupportedOperation,
        ErrorKind::NotFound => wit::ErrorKind::NotFound,
        ErrorKind::Failed => wit::ErrorKind::Failed,
        ErrorKind::Cancelled => wit::ErrorKind::Cancelled,
    };
    wit::PluginError { kind, message: e.message, retryable: e.retryable }
}

/// The WIT record as a plugin error.
fn from_wit_error(e: wit::PluginError) -> PluginError {
    let kind = match e.kind {
        wit::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
        wit::ErrorKind::UnsupportedOperation => ErrorKind::UnsupportedOperation,
        wit::ErrorKind::NotFound => ErrorKind::NotFound,
        wit::ErrorKind::Failed => ErrorKind::Failed,
        wit::ErrorKind::Cancelled => ErrorKind::Cancelled,
    };
    PluginError { kind, message: e.message, retryable: e.retryable }
}

/// Caps the linear memories of one instance, all together, and records
/// whether the cap was hit; bounds tables, memories and instances too.
struct MemoryLimiter {
    limit_bytes: u64,
    used_bytes: u64,
    table_elements: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false); // fails anyway; nothing to count
        }
        let total = self.used_bytes.saturating_add(desired.saturating_sub(current) as u64);
        if total > self.limit_bytes {
            self.exceeded = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded: all memories of the instance would take {total}",
                self.limit_bytes
            );
        }
        self.used_bytes = total;
        Ok(true)
    }
    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let total = self.table_elements.saturating_add(desired.saturating_sub(current));
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }
    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }
    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }
}

/// What to run in a fresh instance.
enum Invocation<'a> {
    Describe,
    Call(&'a wit::ExecutionContext),
}

/// What the guest returned.
enum Returned {
    Described(wit::Metadata),
    Called(Result<wit::CallOutput, wit::PluginError>),
}

/// How an invocation ended, seen from outside the guest.
#[allow(clippy::large_enum_variant)] // one per call, on the stack, never stored
enum Ended {
    Returned(wasmtime::Result<Returned>),
    Deadline,
    Stopped,
    NoSlot,
}

/// A loaded WASM plugin: a pre-instantiated component plus its sandbox settings.
pub struct WasmPlugin {
    engine: WasmEngine,
    pre: Pre,
    metadata: Metadata,
    limits: Limits,
    grants: Grants,
    plugin_id: String,
    /// This plugin's share of the engine's instance slots.
    slots: Arc<tokio::sync::Semaphore>,
    /// `[instances]`: whether calls share instances.
    instances: crate::manifest::Instances,
    /// The idle instances, when they do.
    pool: InstancePool,
}

impl WasmPlugin {
    /// Compile (or load from the cache), pre-instantiate, and query the metadata
    /// of the component named by `manifest`. `describe` gets at most
    /// [`DESCRIBE_TIMEOUT`] (or the plugin's timeout, if shorter).
    pub fn load(engine: &WasmEngine, manifest: &Manifest, bytes: &[u8]) -> Result<Self, LoadErrorKind> {
        let grants = Grants::open(manifest, &engine.inner.protected, &engine.inner.plugin_dirs)?;
        let (pre, outcome) = engine.prepare(bytes)?;
        tracing::debug!(plugin = %manifest.id, cache = ?outcome, "component ready");
        let mut plugin = Self {
            engine: engine.clone(),
            pre,
            metadata: Metadata::default(), // replaced by what the component describes
            limits: manifest.limits.clone(),
            grants,
            plugin_id: manifest.id.clone(),
            slots: engine.slots_of(&manifest.id),
            instances: manifest.instances.clone(),
            pool: InstancePool::new(&manifest.id, manifest.limits.timeout),
        };
        let services =
            CallServices::new(&manifest.id, "load", Default::default(), Default::default()).for_call(&manifest.limits);
        let timeout = manifest.limits.timeout.min(DESCRIBE_TIMEOUT);
        let described = match plugin.invoke(&services, Some(timeout), Invocation::Describe, None) {
            Ok(Returned::Described(m)) => m,
            Ok(Returned::Called(_)) => return Err(LoadErrorKind::Metadata("describe returned a call result".into())),
            Err(CallError::Timeout { after, .. }) => {
                return Err(LoadErrorKind::Metadata(format!(
                    "describe did not return within {} ms",
                    after.as_millis()
                )));
            }
            Err(e) => return Err(LoadErrorKind::Metadata(e.to_string())),
        };
        plugin.metadata = metadata_from_wit(described)?;
        runtime::check_metadata(&plugin.metadata, manifest)?;
        if manifest.id.is_empty() {
            // An artifact loaded on its own is named by what it describes.
            plugin.plugin_id.clone_from(&plugin.metadata.id);
            plugin.slots = engine.slots_of(&plugin.plugin_id);
        }
        Ok(plugin)
    }

    /// Run `what` in an instance — a fresh one, or with `reuse` (the pool
    /// key of a call whose plugin allows reuse) one an earlier call left idle
    /// — within `timeout` and until `services` is cancelled, mapping traps,
    /// timeouts and limit hits to [`CallError`]s and forwarding captured
    /// output to the log. An instance goes back to the pool only when the
    /// guest returned (an output or its own error).
    fn invoke(
        &self,
        services: &CallServices,
        timeout: Option<Duration>,
        what: Invocation<'_>,
        reuse: Option<PoolKey>,
    ) -> Result<Returned, CallError> {
        let plugin = &self.plugin_id;
        let host_error = |message: String| CallError::Host { plugin: plugin.clone(), message };
        let started = Instant::now();
        let deadline = timeout.and_then(|t| started.checked_add(t));
        let idle = reuse.as_ref().and_then(|key| self.pool.take(key, &self.instances));
        let (mut store, stdout, stderr, mut bound, mut permit, calls, born) = match idle {
            Some(idle) => {
                let mut store = idle.store;
                let state = store.data_mut();
                state.services = Some(services.clone());
                state.deadline = deadline;
                state.stopped = None;
                state.broke = None;
                store.set_epoch_deadline(1);
                (store, idle.stdout, idle.stderr, Some(idle.bound), Some(idle.permit), idle.calls, idle.born)
            }
            None => {
                let (store, stdout, stderr) = self.new_store(services, deadline);
                (store, stdout, stderr, None, None, 0, started)
            }
        };
        let slotted = std::cell::Cell::new(permit.is_some());
        // An instance for this call alone (not kept): `cleanup` after its call.
        let per_call = reuse.is_none() && matches!(what, Invocation::Call(_));
        // The first instantiation of a component builds its memory images
        // (memfds, sealed read-only). The kernel refuses the seal (EBUSY)
        // while something else briefly holds a reference to one of the new
        // pages (seen on this project's VMs under load, for the ~40 MiB
        // images of Python and JavaScript components). Nothing of the guest
        // has run then, and wasmtime keeps no failed image: try again.
        macro_rules! instantiate {
            ($pre:expr) => {{
                let mut retries = 0u32;
                loop {
                    match $pre.instantiate_async(&mut store).await {
                        Err(e) if retries < MEMFD_SEAL_RETRIES && is_memfd_seal_error(&e) => {
                            retries += 1;
                            tracing::debug!(plugin = %plugin, retries, "memory image not sealed (busy); instantiating again");
                            tokio::time::sleep(Duration::from_millis(100 << retries)).await;
                        }
                        other => break other?,
                    }
                }
            }};
        }
        // An older world's describe or call (no lifecycle hooks), its records
        // converted by `$records` (`v0_2`, `v0_1`).
        macro_rules! old_world {
            ($bindings:expr, $records:ident) => {{
                let guest = $bindings.plexus_plugin_guest();
                Ok(match what {
                    Invocation::Describe => {
                        Returned::Described($records::metadata(guest.call_describe(&mut store).await?))
                    }
                    Invocation::Call(ctx) => Returned::Called(
                        guest
                            .call_call(&mut store, &$records::context(ctx))
                            .await?
                            .map($records::output)
                            .map_err($records::error),
                    ),
                })
            }};
        }
        // A world with the lifecycle hooks (0.3 and later; their records are
        // the current ones): a fresh instance runs `initialize` before its call.
        macro_rules! lifecycle_world {
            ($bindings:expr, $fresh:ident) => {{
                            let guest = $bindings.plexus_plugin_guest();
                            Ok(match what {
                                Invocation::Describe => Returned::Described(guest.call_describe(&mut store).await?),
                                Invocation::Call(ctx) => {
                                    if $fresh && let Err(e) = guest.call_initialize(&mut store, &ctx.config).await? {
                                        // Not initialized: never kept for another call.
                                        store.data_mut().broke = Some(e.message.clone());
                                        return Ok(Returned::Called(Err(wit::PluginError {
                                            message: format!("initialize: {}", e.message),
                                            ..e
                                        })));
                                    }
                                    let called = guest.call_call(&mut store, ctx).await?;
                                    if per_call && let Err(e) = guest.call_cleanup(&mut store).await {
                                        tracing::warn!(plugin = %plugin, "cleanup: {}", one_line(&e));
                                    }
                                    Returned::Called(called)
                                }
                            })
            }};
        }
        let ended = {
            let run = async {
                if permit.is_none() {
                    let Ok(owned) = self.slots.clone().acquire_owned().await else { return Ended::NoSlot };
                    permit = Some(owned);
                    slotted.set(true);
                }
                let result = async {
                    // A new instance of a contract 0.3 component runs `initialize` before its call.
                    let fresh = bound.is_none();
                    if fresh {
                        bound = Some(match &self.pre {
                            Pre::Current(pre) => Bound::Current(instantiate!(pre)),
                            Pre::V0_3(pre) => Bound::V0_3(instantiate!(pre)),
                            Pre::V0_2(pre) => Bound::V0_2(instantiate!(pre)),
                            Pre::V0_1(pre) => Bound::V0_1(instantiate!(pre)),
                        });
                    }
                    match bound.as_ref().expect("instantiated above") {
                        Bound::Current(bindings) => lifecycle_world!(bindings, fresh),
                        Bound::V0_3(bindings) => lifecycle_world!(bindings, fresh),
                        Bound::V0_2(bindings) => old_world!(bindings, v0_2),
                        Bound::V0_1(bindings) => old_world!(bindings, v0_1),
                    }
                };
                Ended::Returned(result.await)
            };
            drive(std::pin::pin!(run), |run| async move {
                let expire = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                };
                let watch = async {
                    while !services.should_stop() {
                        tokio::time::sleep(EPOCH_TICK).await;
                    }
                };
                tokio::select! {
                    biased;
                    ended = run => ended,
                    () = expire => Ended::Deadline,
                    () = watch => Ended::Stopped,
                }
            })
        };
        forward_output(plugin, "stdout", &stdout);
        forward_output(plugin, "stderr", &stderr);
        let state = store.data();
        // Linear memories never shrink: their size now is their high-water mark.
        services.record_usage(crate::services::CallUsage {
            cpu_ms: None,
            peak_memory_bytes: Some(state.limiter.used_bytes),
        });
        let after = timeout.unwrap_or_default();
        let stopped = |stop: Stop| match stop {
            Stop::Cancelled if services.execution_cancelled() => CallError::Cancelled { plugin: plugin.clone() },
            _ => CallError::Timeout { plugin: plugin.clone(), after },
        };
        let error = match ended {
            Ended::Returned(Ok(returned)) => {
                // The guest returned: the instance may serve again.
                if let (Some(key), Some(bound), Some(permit)) = (reuse, bound, permit)
                    && state.broke.is_none()
                {
                    store.data_mut().services = None; // see `CallState::services`
                    let idle = Idle { key, store, bound, permit, stdout, stderr, calls: calls + 1, born };
                    self.pool.put(idle, &self.instances);
                }
                return Ok(returned);
            }
            Ended::Returned(Err(error)) => error,
            Ended::Deadline if !slotted.get() => {
                return Err(CallError::Capacity {
                    plugin: plugin.clone(),
                    message: format!(
                        "all {MAX_INSTANCES_PER_PLUGIN} instances this plugin may run at once stayed busy until the deadline"
                    ),
                });
            }
            Ended::Deadline => return Err(stopped(Stop::Timeout)),
            Ended::Stopped => return Err(stopped(Stop::Cancelled)),
            Ended::NoSlot => return Err(host_error("the engine is shutting down".into())),
        };
        Err(match (state.stopped, state.limiter.exceeded, &state.broke) {
            (Some(stop), _, _) => stopped(stop),
            (None, true, _) => CallError::MemoryLimit { plugin: plugin.clone(), limit_bytes: self.limits.memory_bytes },
            (None, false, Some(broke)) => CallError::ResourceLimit { plugin: plugin.clone(), message: broke.clone() },
            (None, false, None) => classify(plugin, &error, self.limits.handles),
        })
    }

    /// A fresh store for one call (or, reused, several): WASI with the
    /// plugin's grants, captured stdout/stderr, the memory limiter, and an
    /// epoch callback that stops the guest at `deadline` or a cancel.
    fn new_store(
        &self,
        services: &CallServices,
        deadline: Option<Instant>,
    ) -> (Store<CallState>, BoundedOutput, BoundedOutput) {
        let stdout = BoundedOutput::new(self.limits.output_bytes);
        let stderr = BoundedOutput::new(self.limits.output_bytes);
        let mut builder = WasiCtxBuilder::new();
        builder.stdout(stdout.clone()).stderr(stderr.clone());
        self.grants.apply(&mut builder);
        let mut wasi = builder.build();
        *wasi.filesystem() = self.grants.filesystem();
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.limits.handles as usize);
        let state = CallState {
            wasi,
            table,
            limiter: MemoryLimiter {
                limit_bytes: self.limits.memory_bytes,
                used_bytes: 0,
                table_elements: 0,
                exceeded: false,
            },
            services: Some(services.clone()),
            deadline,
            stopped: None,
            broke: None,
            #[cfg(feature = "wasi-http")]
            http: (wasmtime_wasi_http::WasiHttpCtx::new(), self.grants.http_gate(&self.plugin_id)),
        };
        let mut store = Store::new(&self.engine.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.stopped = if state.services().should_stop() {
                Some(Stop::Cancelled)
            } else if state.deadline.is_some_and(|d| Instant::now() >= d) {
                Some(Stop::Timeout)
            } else {
                None
            };
            // Yield at every tick, so the timer and the cancel watch below
            // also run while the guest computes.
            Ok(if state.stopped.is_some() { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        (store, stdout, stderr)
    }
}

/// An instantiated component of one of the worlds the host implements.
enum Bound {
    Current(PlexusPlugin),
    V0_3(bindings_v0_3::PlexusPlugin),
    V0_2(bindings_v0_2::PlexusPlugin),
    V0_1(bindings_v0_1::PlexusPlugin),
}

/// Which calls may share an idle instance: those of one execution, or all.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PoolKey {
    Execution(Arc<str>),
    Plugin,
}

/// An instance a call left, ready for the next call of its key.
struct Idle {
    key: PoolKey,
    store: Store<CallState>,
    bound: Bound,
    /// Its place among the plugin's instances ([`MAX_INSTANCES_PER_PLUGIN`]).
    permit: tokio::sync::OwnedSemaphorePermit,
    stdout: BoundedOutput,
    stderr: BoundedOutput,
    /// Calls it served.
    calls: u32,
    born: Instant,
}

/// Idle instances kept per pool key at most: 4.
pub const MAX_IDLE_PER_KEY: usize = 4;
/// Idle instances kept per plugin at most, all keys together: 16 (each
/// holds an instance slot of the engine's pool, see [`MAX_INSTANCES_PER_PLUGIN`]).
pub const MAX_IDLE_PER_PLUGIN: usize = 16;

/// A plugin's idle instances, most recently used last.
struct InstancePool {
    idle: std::sync::Mutex<Vec<Idle>>,
    /// The plugin, for the services of `cleanup`.
    plugin_id: String,
    /// What `cleanup` gets: the plugin's timeout.
    timeout: Duration,
}

impl Drop for InstancePool {
    /// The plugin is unloaded or the host stops: its idle instances retire.
    fn drop(&mut self) {
        self.retire_all();
    }
}

impl InstancePool {
    /// Retire every idle instance and wait for their `cleanup`s.
    fn retire_all(&self) {
        let idle = std::mem::take(&mut *self.lock());
        let retiring: Vec<_> = idle.into_iter().filter_map(|instance| self.retire(instance)).collect();
        for thread in retiring {
            if thread.join().is_err() {
                tracing::warn!(plugin = %self.plugin_id, "cleanup: its thread panicked");
            }
        }
    }
}

impl InstancePool {
    fn new(plugin_id: &str, timeout: Duration) -> Self {
        Self { idle: Default::default(), plugin_id: plugin_id.to_owned(), timeout }
    }

    /// Discard an instance; one that ran `initialize` (a contract 0.3
    /// component) runs its `cleanup` first, within the plugin's timeout, on
    /// a thread of its own (returned): no caller waits for a plugin's cleanup
    /// but the pool's end, and it may run wherever an instance is dropped
    /// (async code included, see [`drive`]).
    fn retire(&self, instance: Idle) -> Option<std::thread::JoinHandle<()>> {
        if !matches!(instance.bound, Bound::Current(_) | Bound::V0_3(_)) {
            return None;
        }
        let (plugin, timeout) = (self.plugin_id.clone(), self.timeout.min(crate::runtime::CLEANUP_TIMEOUT));
        let spawned = std::thread::Builder::new()
            .name("plexus-cleanup".into())
            .spawn(move || clean_up(instance, &plugin, timeout));
        spawned.inspect_err(|e| tracing::warn!(plugin = %self.plugin_id, "cleanup: cannot start a thread: {e}")).ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle instance for `key` that is young enough, if any (dropping the
    /// ones past their age on the way).
    fn take(&self, key: &PoolKey, limits: &crate::manifest::Instances) -> Option<Idle> {
        let mut idle = self.lock();
        // No allocation unless some expired (this is every reused call's path).
        let expired: Vec<Idle> = idle.extract_if(.., |i| i.born.elapsed() >= limits.max_age).collect();
        let taken = idle.iter().rposition(|i| &i.key == key).map(|at| idle.remove(at));
        drop(idle);
        // Outside the lock: retiring runs guest code, and dropping a store frees its instance.
        for instance in expired {
            let _ = self.retire(instance);
        }
        taken
    }

    /// Keep `instance` for its key's next call, unless it served its calls
    /// or its time; past the bounds the oldest idle ones go.
    fn put(&self, instance: Idle, limits: &crate::manifest::Instances) {
        if instance.calls >= limits.max_calls || instance.born.elapsed() >= limits.max_age {
            let _ = self.retire(instance);
            return;
        }
        let mut idle = self.lock();
        let mut evicted = Vec::new();
        if idle.iter().filter(|i| i.key == instance.key).count() >= MAX_IDLE_PER_KEY
            && let Some(at) = idle.iter().position(|i| i.key == instance.key)
        {
            evicted.push(idle.remove(at));
        }
        if idle.len() >= MAX_IDLE_PER_PLUGIN {
            evicted.push(idle.remove(0));
        }
        idle.push(instance);
        drop(idle);
        for instance in evicted {
            let _ = self.retire(instance);
        }
    }

    /// Drop the idle instances of execution `id`.
    fn end_execution(&self, id: &str) {
        let mut idle = self.lock();
        let ended: Vec<Idle> = idle.extract_if(.., |i| matches!(&i.key, PoolKey::Execution(e) if &**e == id)).collect();
        drop(idle);
        for instance in ended {
            let _ = self.retire(instance);
        }
    }
}

/// Run `instance`'s `cleanup` (it is a contract 0.3 instance) within
/// `timeout`, then drop it.
fn clean_up(mut instance: Idle, plugin: &str, timeout: Duration) {
    type Cleanup<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = wasmtime::Result<()>> + Send + 'a>>;
    let Idle { bound, store, .. } = &mut instance;
    let state = store.data_mut();
    state.services = Some(CallServices::new(plugin, "cleanup", Default::default(), Default::default()));
    state.deadline = Instant::now().checked_add(timeout);
    state.stopped = None;
    store.set_epoch_deadline(1);
    let run: Cleanup<'_> = match bound {
        Bound::Current(bindings) => Box::pin(bindings.plexus_plugin_guest().call_cleanup(store)),
        Bound::V0_3(bindings) => Box::pin(bindings.plexus_plugin_guest().call_cleanup(store)),
        Bound::V0_2(_) | Bound::V0_1(_) => return,
    };
    let ended = drive(std::pin::pin!(run), |run| async move {
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| Err(wasmtime::Error::msg(format!("did not return within {} ms", timeout.as_millis()))))
    });
    forward_output(plugin, "stdout", &instance.stdout);
    forward_output(plugin, "stderr", &instance.stderr);
    match ended {
        Ok(()) => tracing::debug!(plugin, calls = instance.calls, "instance retired"),
        Err(e) => tracing::warn!(plugin, "cleanup: {}", one_line(&e)),
    }
}

/// How many times an instantiation whose memory image could not be sealed
/// is tried again (after 200, 400, 800 ms): see `WasmPlugin::invoke`.
const MEMFD_SEAL_RETRIES: u32 = 3;

/// Whether `error` is wasmtime failing to seal a new memory image's memfd
/// (`F_ADD_SEALS` gave EBUSY: a page of it was briefly pinned).
fn is_memfd_seal_error(error: &wasmtime::Error) -> bool {
    error.chain().any(|e| e.to_string().contains("cannot add seals to the memfd"))
}

/// A failure that is not a stop or a memory-limit hit: the host's capacity,
/// a handle limit, or the guest's own trap.
fn classify(plugin: &str, error: &wasmtime::Error, handles: u32) -> CallError {
    let plugin = plugin.to_owned();
    if let Some(limit) = error.chain().find_map(|e| e.downcast_ref::<PoolConcurrencyLimitError>()) {
        return CallError::Capacity { plugin, message: format!("every WASM instance slot is in use ({limit})") };
    }
    let message = one_line(error);
    if error.chain().any(|e| e.downcast_ref::<wasmtime_wasi::ResourceTableError>().is_some())
        || message.contains("resource table has no free keys")
    {
        return CallError::ResourceLimit {
            plugin,
            message: format!("more than {handles} WASI handles open at once (limits.handles): {message}"),
        };
    }
    // A trap (guest panic, `unreachable`, ...) or a failed instantiation.
    CallError::Trap { plugin, message }
}

impl Runtime for WasmPlugin {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn kind(&self) -> PluginKind {
        PluginKind::Wasm
    }

    fn preemptible(&self) -> bool {
        true
    }

    fn end_execution(&self, execution_id: &str) {
        self.pool.end_execution(execution_id);
    }

    fn stop(&self) {
        self.pool.retire_all();
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
            parameters: json_text(&exec.parameters),
            upstream: json_text(&exec.upstream),
            config: json_text(&exec.config),
            schedule: exec.schedule.as_ref().map(|s| wit::ScheduleInfo {
                id: s.id.clone(),
                fire_time_ms: s.fire_time_ms,
                fire_time: s.fire_time.clone(),
            }),
        };
        let reuse = match self.instances.reuse {
            crate::manifest::Reuse::Call => None,
            crate::manifest::Reuse::Execution => Some(PoolKey::Execution(exec.execution_id.as_str().into())),
            crate::manifest::Reuse::Plugin => Some(PoolKey::Plugin),
        };
        let result = match self.invoke(services, timeout, Invocation::Call(&ctx), reuse)? {
            Returned::Called(result) => result,
            Returned::Described(_) => {
                return Err(CallError::Host {
                    plugin: self.plugin_id.clone(),
                    message: "call returned metadata".into(),
                });
            }
        };
        let plugin = &self.plugin_id;
        match result {
            Ok(out) => Ok(CallOutput {
                output: serde_json::from_str(&out.output).map_err(|e| CallError::Host {
                    plugin: plugin.clone(),
                    message: format!("output is not valid JSON: {e}"),
                })?,
                metrics: out.metrics.into_iter().map(|m| (m.name, m.value)).collect(),
                artifacts: Vec::new(),
            }),
            Err(e) => Err(CallError::Plugin { plugin: plugin.clone(), error: from_wit_error(e) }),
        }
    }
}

/// `value` (a JSON value or map) as JSON text, written straight into a
/// buffer: `Value`'s `Display` goes through a formatter per token, several
/// times slower. JSON values always serialize; were one not to, the empty
/// text reads as null in the guest.
fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The records contracts 0.1 and 0.2 share with the current one, converted
/// (`$old`: the old world's `types`). The error kinds differ: each module
/// converts its own.
macro_rules! old_records {
    ($old:ident) => {
        pub(super) fn metadata(m: $old::Metadata) -> wit::Metadata {
            wit::Metadata {
                id: m.id,
                name: m.name,
                version: m.version,
                description: m.description,
                authors: m.authors,
                license: m.license,
                contract_version: m.contract_version,
                capabilities: m.capabilities,
                operations: m
                    .operations
                    .into_iter()
                    .map(|op| wit::Operation {
                        name: op.name,
                        description: op.description,
                        params_schema: op.params_schema,
                        output_schema: op.output_schema,
                    })
                    .collect(),
            }
        }

        /// The context without `schedule` (0.3's).
        pub(super) fn context(c: &wit::ExecutionContext) -> $old::ExecutionContext {
            $old::ExecutionContext {
                execution_id: c.execution_id.clone(),
                workflow_id: c.workflow_id.clone(),
                step_id: c.step_id.clone(),
                task_id: c.task_id.clone(),
                attempt: c.attempt,
                deadline_ms: c.deadline_ms,
                operation: c.operation.clone(),
                parameters: c.parameters.clone(),
                upstream: c.upstream.clone(),
                config: c.config.clone(),
            }
        }

        pub(super) fn output(o: $old::CallOutput) -> wit::CallOutput {
            wit::CallOutput {
                output: o.output,
                metrics: o.metrics.into_iter().map(|m| wit::Metric { name: m.name, value: m.value }).collect(),
            }
        }
    };
}

/// Contract 0.2's records as the current ones.
mod v0_2 {
    use super::{wit, wit_v0_2 as old};

    old_records!(old);

    pub(super) fn error(e: old::PluginError) -> wit::PluginError {
        let kind = match e.kind {
            old::ErrorKind::InvalidInput => wit::ErrorKind::InvalidInput,
            old::ErrorKind::UnsupportedOperation => wit::ErrorKind::UnsupportedOperation,
            old::ErrorKind::NotFound => wit::ErrorKind::NotFound,
            old::ErrorKind::Failed => wit::ErrorKind::Failed,
            old::ErrorKind::Cancelled => wit::ErrorKind::Cancelled,
        };
        wit::PluginError { kind, message: e.message, retryable: e.retryable }
    }
}

/// Contract 0.1's records as the current ones (0.1 has no `cancelled` error).
mod v0_1 {
    use super::{wit, wit_v0_1 as old};

    old_records!(old);

    pub(super) fn error(e: old::PluginError) -> wit::PluginError {
        let kind = match e.kind {
            old::ErrorKind::InvalidInput => wit::ErrorKind::InvalidInput,
            old::ErrorKind::UnsupportedOperation => wit::ErrorKind::UnsupportedOperation,
            old::ErrorKind::NotFound => wit::ErrorKind::NotFound,
            old::ErrorKind::Failed => wit::ErrorKind::Failed,
        };
        wit::PluginError { kind, message: e.message, retryable: e.retryable }
    }
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

/// Log what the instance printed, line by line (secrets redacted).
fn forward_output(plugin: &str, stream: &str, output: &BoundedOutput) {
    let (text, dropped) = output.take();
    for line in text.lines() {
        let line = crate::secrets::redactor().text(line);
        tracing::info!(target: "plexus::plugin", plugin, stream, "{line}");
    }
    if dropped > 0 {
        tracing::warn!(target: "plexus::plugin", plugin, stream, dropped, "output past limits.output_bytes was dropped");
    }
}

fn one_line(error: &wasmtime::Error) -> String {
    format!("{error:#}").split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
pub(crate) mod tests;
