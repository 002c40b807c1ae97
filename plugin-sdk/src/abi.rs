//! The native plugin ABI: a small `abi_stable` root module.
//!
//! Every value crosses the boundary as JSON text ([`RString`]/[`RStr`]), so the
//! layout checked by `abi_stable` at load time is this file alone. Features are
//! added by name inside the JSON where they can be; contract 0.3 had to add
//! two root-module fields (`initialize`, `cleanup`: ABI 0.1.1), and ABI
//! 0.1.0's root module is kept, frozen, in [`v0_1_0`] for older libraries.
//! Everything here is `#[doc(hidden)]` plumbing used by
//! [`crate::export_plugin!`] and by the host.
//!
//! The shims catch every panic of plugin code ([`std::panic::catch_unwind`]) and
//! report it as [`NativeResponse::Panic`]: a panic that unwound through an
//! `extern "C"` function would abort the host.
//!
//! No `unsafe` is written here; `abi_stable`'s derive emits it for the
//! accessors of the optional prefix fields, hence the lint's exception.
#![allow(unsafe_code)]

use crate::contract::{
    ArtifactHandle, ArtifactRef, ArtifactRequest, CallOutput, ExecutionContext, HostServices, LogLevel, Orchestration,
    PluginError,
};
use crate::plugin::{Plugin, Runtime};
use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{ROption, RStr, RString};
use abi_stable::{StableAbi, declare_root_module_statics};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Version of the native ABI (the layout of this module), checked by `abi_stable`
/// before any plugin code runs. 0.1.1 (contract 0.3) added the optional
/// fields `initialize` and `cleanup` to [`PluginMod`]: a library of ABI 0.1.0
/// lacks them and still loads (`abi_stable` prefix types).
pub const NATIVE_ABI_VERSION: &str = "0.1.1";

/// The exported symbol holding the library header (`abi_stable`'s mangled
/// `lib_header` name; checked against `abi_stable` in a unit test).
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Host callbacks handed to every call. `handle` identifies the call on the host side.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostVTable {
    /// Opaque id of the call, passed back to every callback.
    pub handle: u64,
    /// Log a message at a [`LogLevel`] (as `u8`).
    pub log: extern "C" fn(handle: u64, level: u8, message: RStr<'_>),
    /// Read a shared-state key; the value is JSON text.
    pub state_get: extern "C" fn(handle: u64, key: RStr<'_>) -> ROption<RString>,
    /// Write a shared-state key; the value is JSON text.
    pub state_set: extern "C" fn(handle: u64, key: RStr<'_>, value: RStr<'_>),
    /// Report progress in `0.0..=1.0` with a message.
    pub report_progress: extern "C" fn(handle: u64, fraction: f64, message: RStr<'_>),
    /// Whether the call has been cancelled.
    pub is_cancelled: extern "C" fn(handle: u64) -> bool,
}

/// Host callbacks added by contract 0.3, handed to the plugin once by
/// [`PluginMod::initialize`] (the per-call [`HostVTable`] is frozen).
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostExtensions {
    /// Run an [`Orchestration`] request (as JSON) for call `handle`; answers
    /// an [`OrchestrationAnswer`] as JSON.
    pub orchestrate: extern "C" fn(handle: u64, request: RStr<'_>) -> RString,
}

/// What [`HostExtensions::orchestrate`] answers, as JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrchestrationAnswer {
    /// The request's answer.
    Ok(Value),
    /// It was refused or failed.
    Error(PluginError),
}

/// The root module every native plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's [`crate::Metadata`] as JSON, or `{"panic": "..."}`.
    pub metadata: extern "C" fn() -> RString,
    /// Run a call: the [`ExecutionContext`] as JSON in, a [`NativeResponse`] as JSON out.
    #[sabi(last_prefix_field)]
    pub call: extern "C" fn(host: &HostVTable, context: RStr<'_>) -> RString,
    /// Since ABI 0.1.1 (contract 0.3; `None` in older libraries): run
    /// [`crate::Plugin::initialize`] with the manifest's config (JSON) and
    /// keep `host`'s extensions for the calls; answers a [`NativeResponse`]
    /// (`ok` with a null output) as JSON. The host calls it once, before the first call.
    #[sabi(missing_field(option))]
    pub initialize: extern "C" fn(host: &HostExtensions, config: RStr<'_>) -> RString,
    /// Since ABI 0.1.1: run [`crate::Plugin::cleanup`]; answers a
    /// [`NativeResponse`] as JSON. The host calls it once, when it stops.
    #[sabi(missing_field(option))]
    pub cleanup: extern "C" fn() -> RString,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "plexus_plugin";
    const NAME: &'static str = "plexus_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(NATIVE_ABI_VERSION);
}

/// The root module of native ABI 0.1.0 (contracts 0.1 and 0.2), frozen:
/// `abi_stable` lets a host check a library only against a root module with
/// no more fields than the library's, so the host checks an older library
/// against this one (the same name, package and first two fields) when the
/// current layout does not fit, and calls it without the lifecycle hooks.
pub mod v0_1_0 {
    use super::HostVTable;
    use abi_stable::library::RootModule;
    use abi_stable::sabi_types::VersionStrings;
    use abi_stable::std_types::{RStr, RString};
    use abi_stable::{StableAbi, declare_root_module_statics};

    /// ABI 0.1.0's root module.
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
    #[sabi(missing_field(panic))]
    pub struct PluginMod {
        /// The plugin's metadata as JSON.
        pub metadata: extern "C" fn() -> RString,
        /// Run a call.
        #[sabi(last_prefix_field)]
        pub call: extern "C" fn(host: &HostVTable, context: RStr<'_>) -> RString,
    }

    impl RootModule for PluginModRef {
        declare_root_module_statics! {PluginModRef}
        const BASE_NAME: &'static str = "plexus_plugin";
        const NAME: &'static str = "plexus_plugin";
        const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.1.0");
    }

    /// The ABI 0.1.0 root module of plugin `P`, as a library built with a
    /// plexus-sdk of contract 0.2 exported it (its metadata says contract
    /// 0.2.0): for tests that an older library still loads.
    #[doc(hidden)]
    pub fn root_module<P: super::RuntimeAccess>() -> PluginModRef {
        use abi_stable::prefix_type::PrefixTypeTrait;
        PluginMod { metadata: metadata_v0_2::<P>, call: super::call_shim::<P> }.leak_into_prefix()
    }

    extern "C" fn metadata_v0_2<P: super::RuntimeAccess>() -> RString {
        let json = super::metadata_shim::<P>();
        match serde_json::from_str::<serde_json::Value>(json.as_str()) {
            Ok(mut meta) if meta.get("contract_version").is_some() => {
                meta["contract_version"] = "0.2.0".into();
                meta.to_string().into()
            }
            _ => json,
        }
    }
}

/// What a native `call` returns, as JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NativeResponse {
    /// The operation succeeded.
    Ok(CallOutput),
    /// The plugin returned an error.
    Error(PluginError),
    /// Plugin code panicked; the payload's message.
    Panic(String),
}

/// Build the root module for plugin `P`.
pub fn root_module<P: RuntimeAccess>() -> PluginModRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginMod {
        metadata: metadata_shim::<P>,
        call: call_shim::<P>,
        initialize: initialize_shim::<P>,
        cleanup: cleanup_shim::<P>,
    }
    .leak_into_prefix()
}

/// Implemented for the plugin type by `export_plugin!`, so the generic shims
/// can reach the plugin's one-per-process runtime.
pub trait RuntimeAccess: Plugin {
    /// The plugin's runtime, built on first use.
    fn runtime() -> &'static Runtime<Self>;
}

/// The message of a panic payload (`&str` or `String`), shared with the host.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

fn to_json<T: Serialize>(value: &T) -> RString {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"panic\":\"cannot serialize: {e}\"}}")).into()
}

extern "C" fn metadata_shim<P: RuntimeAccess>() -> RString {
    match catch_unwind(|| serde_json::to_string(P::runtime().metadata())) {
        Ok(Ok(json)) => json.into(),
        Ok(Err(e)) => to_json(&NativeResponse::Panic(format!("metadata is not JSON: {e}"))),
        Err(payload) => to_json(&NativeResponse::Panic(panic_message(payload.as_ref()))),
    }
}

extern "C" fn call_shim<P: RuntimeAccess>(host: &HostVTable, context: RStr<'_>) -> RString {
    let host = NativeHost(*host);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let exec: ExecutionContext = match serde_json::from_str(context.as_str()) {
            Ok(exec) => exec,
            Err(e) => {
                return NativeResponse::Error(PluginError::invalid_input(format!(
                    "execution context is not valid JSON: {e}"
                )));
            }
        };
        match P::runtime().call(&exec, &host) {
            Ok(out) => NativeResponse::Ok(out),
            Err(err) => NativeResponse::Error(err),
        }
    }));
    let response = result.unwrap_or_else(|payload| NativeResponse::Panic(panic_message(payload.as_ref())));
    to_json(&response)
}

/// The extensions the host handed over in `initialize` (one plugin per library).
static EXTENSIONS: std::sync::OnceLock<HostExtensions> = std::sync::OnceLock::new();

extern "C" fn initialize_shim<P: RuntimeAccess>(host: &HostExtensions, config: RStr<'_>) -> RString {
    let _ = EXTENSIONS.set(*host);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let config: Value = match config.as_str() {
            "" => Value::Null,
            text => match serde_json::from_str(text) {
                Ok(config) => config,
                Err(e) => return NativeResponse::Error(PluginError::invalid_input(format!("config is not JSON: {e}"))),
            },
        };
        match P::runtime().initialize(&config) {
            Ok(()) => NativeResponse::Ok(CallOutput::default()),
            Err(e) => NativeResponse::Error(e),
        }
    }));
    to_json(&result.unwrap_or_else(|payload| NativeResponse::Panic(panic_message(payload.as_ref()))))
}

extern "C" fn cleanup_shim<P: RuntimeAccess>() -> RString {
    let result = catch_unwind(|| P::runtime().cleanup());
    to_json(&match result {
        Ok(()) => NativeResponse::Ok(CallOutput::default()),
        Err(payload) => NativeResponse::Panic(panic_message(payload.as_ref())),
    })
}

/// [`HostServices`] over the host's callbacks.
struct NativeHost(HostVTable);

impl HostServices for NativeHost {
    fn log(&self, level: LogLevel, message: &str) {
        (self.0.log)(self.0.handle, level as u8, message.into());
    }
    fn state_get(&self, key: &str) -> Option<Value> {
        match (self.0.state_get)(self.0.handle, key.into()) {
            ROption::RSome(json) => serde_json::from_str(json.as_str()).ok(),
            ROption::RNone => None,
        }
    }
    fn state_set(&self, key: &str, value: Value) {
        let json = value.to_string();
        (self.0.state_set)(self.0.handle, key.into(), json.as_str().into());
    }
    fn report_progress(&self, fraction: f64, message: &str) {
        (self.0.report_progress)(self.0.handle, fraction, message.into());
    }
    fn is_cancelled(&self) -> bool {
        (self.0.is_cancelled)(self.0.handle)
    }
    fn orchestrate(&self, request: &Orchestration) -> Result<Value, PluginError> {
        self.request(request, "orchestration")
    }
    // Artifacts go through the same request channel; the host answers a
    // file path and the SDK's streams use the file directly.
    fn artifact_create(&self, name: &str, media_type: Option<&str>) -> Result<ArtifactHandle, PluginError> {
        let request =
            ArtifactRequest::ArtifactCreate { name: name.to_owned(), media_type: media_type.map(str::to_owned) };
        from_answer(self.request(&request, "artifact")?)
    }
    fn artifact_finish(&self, id: u32) -> Result<ArtifactRef, PluginError> {
        from_answer(self.request(&ArtifactRequest::ArtifactFinish { id }, "artifact")?)
    }
    fn artifact_open(&self, reference: &ArtifactRef) -> Result<ArtifactHandle, PluginError> {
        from_answer(self.request(&ArtifactRequest::ArtifactOpen { reference: reference.clone() }, "artifact")?)
    }
}

impl NativeHost {
    /// Send `request` through the host's request channel (contract 0.3's
    /// extensions); `what` names the service in errors.
    fn request(&self, request: &impl Serialize, what: &str) -> Result<Value, PluginError> {
        let Some(ext) = EXTENSIONS.get() else {
            return Err(PluginError::failed(format!("this host offers no {what} services")));
        };
        let request = serde_json::to_string(request)?;
        let answer = (ext.orchestrate)(self.0.handle, request.as_str().into());
        match serde_json::from_str(answer.as_str()) {
            Ok(OrchestrationAnswer::Ok(value)) => Ok(value),
            Ok(OrchestrationAnswer::Error(e)) => Err(e),
            Err(e) => Err(PluginError::failed(format!("malformed {what} answer from the host: {e}"))),
        }
    }
}

fn from_answer<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, PluginError> {
    serde_json::from_value(value)
        .map_err(|e| PluginError::failed(format!("malformed artifact answer from the host: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(super::ROOT_MODULE_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
