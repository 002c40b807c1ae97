//! Native plugins: cdylibs built with `plexus-sdk`, loaded in-process through
//! `abi_stable`.
//!
//! Loading checks, in order and before any plugin code is called: that the file
//! is a shared library for this OS and CPU, that it exports the Plexus root
//! module, abi_stable's own header, the native ABI version, and the type layout
//! of the root module — the current one (ABI 0.1.1, contract 0.3), else ABI
//! 0.1.0's (contracts 0.1 and 0.2: `abi_stable` checks a library against a
//! root module with no more fields than its own, so an older library is
//! checked against the frozen `plexus_sdk::abi::v0_1_0` and called without
//! lifecycle hooks). abi_stable's long layout reports are summarised into one
//! line naming the plugin and the versions (the whole report is logged at
//! debug level).
//!
//! Native plugins are **trusted code**. Loaded here (`isolation =
//! "in-process"`), they run in the host process with its rights, and their
//! timeouts are cooperative (a cancel flag the plugin polls;
//! on timeout the host stops waiting and abandons the call's thread). Libraries
//! are **never unloaded** (`dlclose` of Rust libraries is unsound): a changed
//! native plugin needs a host restart. With `isolation = "process"` the same
//! loading happens in worker processes instead ([`crate::worker`]).

use crate::error::{CallError, LoadErrorKind};
use crate::manifest::{Manifest, PluginKind};
use crate::runtime::{self, Runtime};
use crate::services::CallServices;
use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use abi_stable::std_types::{ROption, RStr, RString};
use plexus_sdk::abi::{
    HostExtensions, HostVTable, NATIVE_ABI_VERSION, NativeResponse, OrchestrationAnswer, PluginModRef,
};
use plexus_sdk::{CallOutput, ExecutionContext, HostServices, LogLevel, Metadata};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

/// A library's root module: the current one, or ABI 0.1.0's (no lifecycle hooks).
#[derive(Clone, Copy)]
pub(crate) enum Module {
    /// ABI 0.1.1 and later (contract 0.3).
    Current(PluginModRef),
    /// ABI 0.1.0 (contracts 0.1 and 0.2).
    V0_1_0(plexus_sdk::abi::v0_1_0::PluginModRef),
}

impl Module {
    pub(crate) fn metadata(self) -> extern "C" fn() -> RString {
        match self {
            Module::Current(m) => m.metadata(),
            Module::V0_1_0(m) => m.metadata(),
        }
    }
    pub(crate) fn call(self) -> extern "C" fn(&HostVTable, RStr<'_>) -> RString {
        match self {
            Module::Current(m) => m.call(),
            Module::V0_1_0(m) => m.call(),
        }
    }
    pub(crate) fn initialize(self) -> Option<extern "C" fn(&HostExtensions, RStr<'_>) -> RString> {
        match self {
            Module::Current(m) => m.initialize(),
            Module::V0_1_0(_) => None,
        }
    }
    pub(crate) fn cleanup(self) -> Option<extern "C" fn() -> RString> {
        match self {
            Module::Current(m) => m.cleanup(),
            Module::V0_1_0(_) => None,
        }
    }
}

/// A loaded native plugin.
pub(crate) struct NativePlugin {
    module: Module,
    metadata: Metadata,
    /// The library, for its share of [`INITIALIZED`].
    artifact: std::path::PathBuf,
    /// The plugin's timeout: what `cleanup` gets (at most [`runtime::CLEANUP_TIMEOUT`]).
    timeout: Duration,
    /// Its share of [`INITIALIZED`] was given back (stopped or dropped).
    released: std::sync::atomic::AtomicBool,
}

/// How many loaded [`NativePlugin`]s share each library (by path) in this
/// process: a library is loaded once per process, so its plugin value is
/// initialized when the first is loaded and cleaned up when the last is
/// dropped (the host stops), whatever hosts a process builds.
static INITIALIZED: LazyLock<Mutex<HashMap<std::path::PathBuf, usize>>> = LazyLock::new(Default::default);

impl NativePlugin {
    /// Load the library named by `manifest`, query its metadata, and (a
    /// contract 0.3 library, first load in this process) run its `initialize`
    /// with the manifest's config, within the plugin's timeout.
    pub(crate) fn load(manifest: &Manifest) -> Result<Self, LoadErrorKind> {
        let module = open_module(&manifest.artifact)?;
        // A plugin that calls exit() while describing itself is reported as such (see `process`).
        let describing = crate::process::InFlight::enter(&manifest.id);
        let json = describe_within(module, manifest.limits.timeout.min(crate::wasm::DESCRIBE_TIMEOUT));
        drop(describing);
        let json = json?;
        let metadata = parse_metadata(&json)?;
        runtime::check_metadata(&metadata, manifest)?;
        let artifact = manifest.artifact.clone();
        let mut loaded = INITIALIZED.lock().unwrap_or_else(PoisonError::into_inner);
        if !loaded.contains_key(&artifact) {
            let initializing = crate::process::InFlight::enter(&manifest.id);
            let done = initialize_within(module, manifest.call_config(), manifest.limits.timeout);
            drop(initializing);
            done?;
        }
        *loaded.entry(artifact.clone()).or_default() += 1;
        Ok(Self { module, metadata, artifact, timeout: manifest.limits.timeout, released: false.into() })
    }
}

impl Drop for NativePlugin {
    fn drop(&mut self) {
        self.release();
    }
}

impl NativePlugin {
    /// Give back this plugin's share of its library; the last share runs
    /// the plugin's `cleanup` (once).
    fn release(&self) {
        if self.released.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut loaded = INITIALIZED.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(count) = loaded.get_mut(&self.artifact) else { return };
        *count -= 1;
        if *count > 0 {
            return;
        }
        loaded.remove(&self.artifact);
        drop(loaded);
        if let Err(why) = cleanup_within(self.module, self.timeout.min(runtime::CLEANUP_TIMEOUT)) {
            tracing::warn!(plugin = %self.metadata.id, "cleanup: {why}");
        }
    }
}

/// The host callbacks a contract 0.3 library keeps from `initialize`.
pub(crate) const EXTENSIONS: HostExtensions = HostExtensions { orchestrate: host_orchestrate };

/// Run `module`'s `initialize` (if it has one: contract 0.3) with `config`
/// on a thread of its own, waiting at most `timeout`.
pub(crate) fn initialize_within(
    module: Module,
    config: &serde_json::Value,
    timeout: Duration,
) -> Result<(), LoadErrorKind> {
    let Some(initialize) = module.initialize() else { return Ok(()) };
    let config = config.to_string();
    let answer = on_thread_within("plexus-initialize", timeout, move || {
        initialize(&EXTENSIONS, RStr::from_str(&config)).into_string()
    })
    .map_err(LoadErrorKind::Initialize)?;
    initialize_answer(&answer)
}

/// What a library's `initialize` answered (a [`NativeResponse`] as JSON), as a load result.
pub(crate) fn initialize_answer(answer: &str) -> Result<(), LoadErrorKind> {
    match decode_response("", answer) {
        Ok(_) => Ok(()),
        Err(CallError::Plugin { error, .. }) => Err(LoadErrorKind::Initialize(error.to_string())),
        Err(CallError::Panic { message, .. }) => {
            Err(LoadErrorKind::Initialize(format!("the plugin panicked: {message}")))
        }
        Err(e) => Err(LoadErrorKind::Initialize(e.to_string())),
    }
}

/// Run `module`'s `cleanup` (if it has one) on a thread of its own, waiting
/// at most `timeout`; why it failed, if it did.
pub(crate) fn cleanup_within(module: Module, timeout: Duration) -> Result<(), String> {
    let Some(cleanup) = module.cleanup() else { return Ok(()) };
    let answer = on_thread_within("plexus-cleanup", timeout, move || cleanup().into_string())?;
    match decode_response("", &answer) {
        Ok(_) => Ok(()),
        Err(CallError::Panic { message, .. }) => Err(format!("the plugin panicked: {message}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Run `f` on a thread named `name` and wait at most `timeout` for its
/// answer (the thread is abandoned past it).
fn on_thread_within(
    name: &str,
    timeout: Duration,
    f: impl FnOnce() -> String + Send + 'static,
) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.recv_timeout(timeout)
        .map_err(|_| format!("did not return within {} ms (its thread is abandoned)", timeout.as_millis()))
}

/// Load the native library at `path` into this process and check it: an
/// ELF shared library for this CPU, exporting the Plexus root module of
/// this ABI version and layout. No plugin code runs but the library's
/// static initialisers. Used by the host (in-process plugins) and by a
/// worker process ([`crate::worker`]). The library is never unloaded.
pub(crate) fn open_module(path: &Path) -> Result<Module, LoadErrorKind> {
    check_shared_library(path)?;
    let header = lib_header_from_path(path).map_err(|e| summarise(&e, None))?;
    let plugin_abi = header.version_strings().version.to_string();
    match header.init_root_module::<PluginModRef>() {
        Ok(module) => Ok(Module::Current(module)),
        // An older library has fewer fields than this host's root module:
        // check it against the root module of its own ABI.
        Err(current @ LibraryError::AbiInstability(_)) => header
            .init_root_module::<plexus_sdk::abi::v0_1_0::PluginModRef>()
            .map(Module::V0_1_0)
            .map_err(|_| summarise(&current, Some(&plugin_abi))),
        Err(e) => Err(summarise(&e, Some(&plugin_abi))),
    }
}

/// Ask `module` for its metadata on a thread of its own and wait at most
/// `timeout`: a plugin that does not answer does not load, and holds
/// discovery up no longer than that (its thread is abandoned).
fn describe_within(module: Module, timeout: Duration) -> Result<String, LoadErrorKind> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("plexus-describe".into())
        .spawn(move || {
            let _ = tx.send((module.metadata())().into_string());
        })
        .map_err(|e| LoadErrorKind::Metadata(format!("cannot start a thread to describe the plugin: {e}")))?;
    rx.recv_timeout(timeout).map_err(|_| {
        LoadErrorKind::Metadata(format!(
            "describe did not return within {} ms (its thread is abandoned)",
            timeout.as_millis()
        ))
    })
}

/// Parse the metadata JSON a native plugin returned from `describe`,
/// checking its contract version first.
pub(crate) fn parse_metadata(json: &str) -> Result<Metadata, LoadErrorKind> {
    if let Ok(NativeResponse::Panic(message)) = serde_json::from_str::<NativeResponse>(json) {
        return Err(LoadErrorKind::Metadata(format!("the plugin panicked: {message}")));
    }
    // Read the contract version first: a plugin from another contract may not
    // even have this host's metadata shape.
    #[derive(serde::Deserialize)]
    struct Versioned {
        contract_version: String,
    }
    let versioned: Versioned = serde_json::from_str(json)
        .map_err(|e| LoadErrorKind::Metadata(format!("metadata has no contract_version: {e}")))?;
    runtime::check_contract(&versioned.contract_version, None)?;
    serde_json::from_str(json).map_err(|e| LoadErrorKind::Metadata(format!("metadata is not valid: {e}")))
}

impl Runtime for NativePlugin {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn kind(&self) -> PluginKind {
        PluginKind::Native
    }

    fn replaceable(&self) -> bool {
        false // its library is mapped into this process for good
    }

    fn stop(&self) {
        self.release();
    }

    fn call(
        &self,
        exec: &ExecutionContext,
        services: &CallServices,
        timeout: Option<Duration>,
    ) -> Result<CallOutput, CallError> {
        let context = serde_json::to_string(exec).map_err(|e| CallError::Host {
            plugin: self.metadata.id.clone(),
            message: format!("cannot encode the execution context: {e}"),
        })?;
        let Some(timeout) = timeout else {
            return call_module(self.module, &self.metadata.id, &context, services);
        };
        let (module, plugin) = (self.module, self.metadata.id.clone());
        runtime::call_on_thread(&self.metadata.id, services, timeout, move |services| {
            call_module(module, &plugin, &context, services)
        })
    }
}

/// Run one call through the root module on the current thread.
fn call_module(module: Module, plugin: &str, context: &str, services: &CallServices) -> Result<CallOutput, CallError> {
    let handle = CallRegistry::register(services.clone());
    let vtable = HostVTable {
        handle,
        log: host_log,
        state_get: host_state_get,
        state_set: host_state_set,
        report_progress: host_report_progress,
        is_cancelled: host_is_cancelled,
    };
    let in_flight = crate::process::InFlight::enter(plugin);
    let response = (module.call())(&vtable, RStr::from_str(context));
    drop(in_flight);
    CallRegistry::unregister(handle);
    decode_response(plugin, response.as_str())
}

/// A native plugin's answer to a call (a [`NativeResponse`] as JSON) as the call's result.
pub(crate) fn decode_response(plugin: &str, response: &str) -> Result<CallOutput, CallError> {
    match serde_json::from_str::<NativeResponse>(response) {
        Ok(NativeResponse::Ok(output)) => Ok(output),
        Ok(NativeResponse::Error(error)) => Err(CallError::Plugin { plugin: plugin.into(), error }),
        Ok(NativeResponse::Panic(message)) => Err(CallError::Panic { plugin: plugin.into(), message }),
        Err(e) => {
            Err(CallError::Host { plugin: plugin.into(), message: format!("malformed response from the plugin: {e}") })
        }
    }
}

/// Calls in flight, by the handle passed to the plugin's callbacks.
struct CallRegistry;

static CALLS: LazyLock<Mutex<HashMap<u64, CallServices>>> = LazyLock::new(Default::default);
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

impl CallRegistry {
    fn register(services: CallServices) -> u64 {
        let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        CALLS.lock().unwrap_or_else(PoisonError::into_inner).insert(handle, services);
        handle
    }
    fn unregister(handle: u64) {
        CALLS.lock().unwrap_or_else(PoisonError::into_inner).remove(&handle);
    }
    /// The services of `handle`; `None` once the call is over (a plugin thread
    /// that outlives its call talks to nobody).
    fn get(handle: u64) -> Option<CallServices> {
        CALLS.lock().unwrap_or_else(PoisonError::into_inner).get(&handle).cloned()
    }
}

// The callbacks must never panic: a panic cannot unwind through `extern "C"`.
extern "C" fn host_log(handle: u64, level: u8, message: RStr<'_>) {
    if let Some(s) = CallRegistry::get(handle) {
        s.log(LogLevel::from_u8(level), message.as_str());
    }
}

extern "C" fn host_state_get(handle: u64, key: RStr<'_>) -> ROption<RString> {
    match CallRegistry::get(handle).and_then(|s| s.state_get(key.as_str())) {
        Some(value) => ROption::RSome(value.to_string().into()),
        None => ROption::RNone,
    }
}

extern "C" fn host_state_set(handle: u64, key: RStr<'_>, value: RStr<'_>) {
    if let Some(s) = CallRegistry::get(handle) {
        let value = serde_json::from_str(value.as_str()).unwrap_or_else(|_| value.as_str().into());
        s.state_set(key.as_str(), value);
    }
}

extern "C" fn host_report_progress(handle: u64, fraction: f64, message: RStr<'_>) {
    if let Some(s) = CallRegistry::get(handle) {
        s.report_progress(fraction, message.as_str());
    }
}

extern "C" fn host_is_cancelled(handle: u64) -> bool {
    // A call that is over (e.g. abandoned after a timeout) is cancelled.
    CallRegistry::get(handle).is_none_or(|s| s.should_stop())
}

extern "C" fn host_orchestrate(handle: u64, request: RStr<'_>) -> RString {
    match CallRegistry::get(handle) {
        None => orchestration_answer(Err(plexus_sdk::PluginError::failed("the call is over"))).into(),
        Some(s) => crate::services::answer_request(&s, request.as_str(), true).into(),
    }
}

/// An orchestration answer as the JSON a native plugin reads.
pub(crate) fn orchestration_answer(answer: Result<serde_json::Value, plexus_sdk::PluginError>) -> String {
    let answer = match answer {
        Ok(value) => OrchestrationAnswer::Ok(value),
        Err(e) => OrchestrationAnswer::Error(e),
    };
    serde_json::to_string(&answer)
        .unwrap_or_else(|e| format!("{{\"error\":{{\"kind\":\"failed\",\"message\":\"{e}\"}}}}"))
}

/// ELF machine names for the architectures Plexus is likely to meet.
fn elf_machine_name(machine: u16) -> String {
    match machine {
        3 => "x86".into(),
        40 => "arm".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        other => format!("ELF machine {other}"),
    }
}

/// On Linux, check the ELF header ourselves: `dlopen`'s messages for a text
/// file or a library for another CPU are cryptic.
fn check_shared_library(path: &Path) -> Result<(), LoadErrorKind> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    let mut header = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| {
        use std::io::Read;
        f.read(&mut header)
    });
    match read {
        Ok(n) if n >= 20 && header[..4] == *b"\x7fELF" => {}
        Ok(_) => return Err(LoadErrorKind::NotAPlugin("not a shared library (no ELF header)".into())),
        Err(e) => return Err(LoadErrorKind::NotAPlugin(format!("cannot read the library: {e}"))),
    }
    let class = header[4];
    let machine = if header[5] == 2 {
        u16::from_be_bytes([header[18], header[19]])
    } else {
        u16::from_le_bytes([header[18], header[19]])
    };
    let expected_machine = match std::env::consts::ARCH {
        "x86" => 3,
        "arm" => 40,
        "x86_64" => 62,
        "aarch64" => 183,
        "riscv64" => 243,
        _ => return Ok(()),
    };
    let expected_class = if cfg!(target_pointer_width = "64") { 2 } else { 1 };
    if machine != expected_machine || class != expected_class {
        let bits = if class == 2 { "64-bit" } else { "32-bit" };
        return Err(LoadErrorKind::WrongArchitecture {
            found: format!("{} ({bits})", elf_machine_name(machine)),
            expected: format!("{} ({}-bit)", std::env::consts::ARCH, usize::BITS),
        });
    }
    Ok(())
}

/// Turn abi_stable's (multi-kilobyte) errors into one line; `plugin_abi` is the
/// ABI version the library declares, once its header could be read.
fn summarise(error: &LibraryError, plugin_abi: Option<&str>) -> LoadErrorKind {
    tracing::debug!("abi_stable's report: {error}");
    match error {
        LibraryError::OpenError { err, .. } => {
            let text = err.to_string();
            if text.contains("wrong ELF class") || text.contains("ELF") && text.contains("machine") {
                LoadErrorKind::WrongArchitecture {
                    found: "another architecture".into(),
                    expected: std::env::consts::ARCH.into(),
                }
            } else {
                LoadErrorKind::NotAPlugin(format!("cannot load the library: {}", first_line(&text)))
            }
        }
        LibraryError::GetSymbolError { .. } => LoadErrorKind::NotAPlugin(
            "the library exports no Plexus root module (build it with `plexus_sdk::export_plugin!`)".into(),
        ),
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => {
            LoadErrorKind::IncompatibleAbi(format!(
                "the plugin uses native ABI {actual_version}, this host expects {expected_version}; rebuild it with a plexus-sdk of ABI {NATIVE_ABI_VERSION}"
            ))
        }
        LibraryError::ParseVersionError(e) => LoadErrorKind::IncompatibleAbi(format!("unreadable ABI version: {e:?}")),
        LibraryError::RootModule { err, .. } => {
            LoadErrorKind::Metadata(format!("the root module failed to initialise: {}", first_line(&err.to_string())))
        }
        LibraryError::AbiInstability(_) => LoadErrorKind::IncompatibleAbi(format!(
            "the layout of the root module `{}` (plugin ABI {}) differs from this host's (ABI {NATIVE_ABI_VERSION}); rebuild the plugin against this host's plexus-sdk",
            PluginModRef::NAME,
            plugin_abi.unwrap_or("unknown"),
        )),
        LibraryError::InvalidAbiHeader(header) => LoadErrorKind::IncompatibleAbi(format!(
            "the plugin was built with an incompatible abi_stable (header {header:?})"
        )),
        LibraryError::InvalidCAbi { .. } => {
            LoadErrorKind::IncompatibleAbi("the plugin was built by a compiler with a different C ABI".into())
        }
        LibraryError::Many(errors) => match errors.first() {
            Some(first) => summarise(first, plugin_abi),
            None => LoadErrorKind::IncompatibleAbi("unknown abi_stable error".into()),
        },
    }
}

fn first_line(text: &str) -> String {
    text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RBoxError;

    #[test]
    fn layout_errors_become_one_line_naming_both_versions() {
        let long_report = "field `call` has a different type:\n".repeat(300);
        let error = LibraryError::AbiInstability(RBoxError::new(std::io::Error::other(long_report)));
        let text = summarise(&error, Some("0.1.0")).to_string();
        assert!(!text.contains('\n') && text.len() < 300, "{text}");
        assert!(
            text.contains("plugin ABI 0.1.0") && text.contains(&format!("host's (ABI {NATIVE_ABI_VERSION})")),
            "{text}"
        );
        let many = LibraryError::Many(vec![error].into());
        assert_eq!(summarise(&many, Some("0.1.0")).to_string(), text);
    }
}
