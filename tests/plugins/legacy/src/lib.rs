//! A native plugin as a plexus-sdk of contract 0.2 exported it: native ABI
//! 0.1.0's root module (two fields: `metadata` and `call`, no lifecycle
//! hooks), its metadata saying contract 0.2.0. The integration tests load it
//! on this host, in-process and in a worker process, and call it; its
//! `initialize` must never run (the old root module has no such field).
//!
//! Built from the frozen `plexus_sdk::abi::v0_1_0` module, the same layout a
//! library built with the SDK at contract 0.2 exports (checked once by hand
//! against such a library, built from commit cae267b).
#![allow(unsafe_code)] // the library header, as `export_plugin!` writes it

use plexus_sdk::{Operations, Plugin, PluginError, PluginInfo, capability};
use serde_json::Value;

/// The legacy plugin.
#[derive(Default)]
pub struct Legacy;

impl Plugin for Legacy {
    fn info() -> PluginInfo {
        PluginInfo::new("plexus.legacy", "legacy", env!("CARGO_PKG_VERSION"))
            .description(env!("CARGO_PKG_DESCRIPTION"))
            .capabilities([capability::WORKFLOW_STEP])
    }

    fn operations(ops: &mut Operations<Self>) {
        ops.add("echo", "Returns its parameters", |_, _, v: Value| Ok::<_, PluginError>(v));
    }

    fn initialize(&self, _: &Value) -> Result<(), PluginError> {
        // Unreachable through ABI 0.1.0: were it called, loading fails and says so.
        Err(PluginError::failed("initialize called through ABI 0.1.0"))
    }
}

impl plexus_sdk::abi::RuntimeAccess for Legacy {
    fn runtime() -> &'static plexus_sdk::Runtime<Self> {
        static RUNTIME: std::sync::OnceLock<plexus_sdk::Runtime<Legacy>> = std::sync::OnceLock::new();
        RUNTIME.get_or_init(plexus_sdk::Runtime::new)
    }
}

fn root_module() -> plexus_sdk::abi::v0_1_0::PluginModRef {
    plexus_sdk::abi::v0_1_0::root_module::<Legacy>()
}

extern "C" fn erased_module() -> abi_stable::library::RootModuleResult {
    abi_stable::library::__call_root_module_loader(root_module)
}

/// The `abi_stable` library header the host looks up by name.
#[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
pub static LIB_HEADER: abi_stable::library::LibHeader = {
    // SAFETY: `erased_module` returns the prefix of a `v0_1_0::PluginModRef`,
    // the module type named here, as `from_constructor` requires.
    unsafe {
        abi_stable::library::LibHeader::from_constructor::<plexus_sdk::abi::v0_1_0::PluginModRef>(
            erased_module,
            abi_stable::library::CheckTypeLayout::Yes,
        )
    }
};
