//! # plexus-sdk: write a Plexus plugin once, build it native or as a WASM component
//!
//! A plugin is one type implementing [`Plugin`]: static information plus typed
//! operations (serde in, serde out). [`export_plugin!`] turns it into
//!
//! * a **native** plugin: `cargo build` of a `cdylib` exports a small, frozen
//!   `abi_stable` root module ([`abi`]); the host loads it in-process. Native
//!   plugins are trusted code and are never unloaded.
//! * a **WASM component**: `cargo build --target wasm32-wasip2` of the same crate
//!   emits a component targeting the `plexus:plugin/plexus-plugin` world from the
//!   repository's `wit/`; the host runs it sandboxed (time, memory, files, network).
//!
//! Both transports carry the same contract ([`contract`]): the plugin's
//! [`Metadata`], an [`ExecutionContext`] per call, [`HostServices`] the plugin
//! can call back (log, shared state, progress, cancellation) and a result that
//! is either a [`CallOutput`] or a [`PluginError`] — plain data. Panics are
//! caught by the SDK (native) or become traps (WASM); the host reports them as
//! their own kind, never as a plugin error.
//!
//! Logging goes through the host: use [`Context::info`] and friends, not
//! `println!` (a WASM plugin's stdout is captured and size-bounded; a native
//! plugin's is the host's).
//!
//! ## A whole plugin
//!
//! `Cargo.toml` (one Plexus line; `serde` and `schemars` for their derives —
//! the SDK re-exports both, and [`prelude`] their traits):
//!
//! ```toml
//! [package]
//! name = "greeter"
//! version = "0.1.0"
//! edition = "2024"
//! description = "Greets people and counts greetings in the execution's state"
//! license = "Apache-2.0"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! plexus-sdk = "0.1"   # from a checkout: { path = "../plexus/plugin-sdk" }
//! schemars = "1"
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use plexus_sdk::prelude::*;
//!
//! #[derive(Default)]
//! pub struct Greeter;
//!
//! #[derive(Deserialize, JsonSchema)]
//! pub struct Greet {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! #[derive(Serialize, JsonSchema)]
//! pub struct Greeting {
//!     text: String,
//!     times_greeted: u64,
//! }
//!
//! impl Plugin for Greeter {
//!     fn info() -> PluginInfo {
//!         // Name, version, description, authors and licence from Cargo.toml.
//!         plugin_info!("example.greeter").capabilities([capability::WORKFLOW_STEP, capability::CONTEXT_MANAGEMENT])
//!     }
//!
//!     fn operations(ops: &mut Operations<Self>) {
//!         ops.add("greet", "Greets `name`", Self::greet)
//!             .example("greets Ada", json!({"name": "Ada"}), json!({"text": "Hello, Ada!", "times_greeted": 1}))
//!             .example_error("refuses no name", json!({"name": ""}), ErrorKind::InvalidInput);
//!     }
//! }
//!
//! impl Greeter {
//!     fn greet(&self, ctx: &mut Context<'_>, p: Greet) -> Result<Greeting, PluginError> {
//!         if p.name.is_empty() {
//!             return Err(PluginError::invalid_input("`name` is empty"));
//!         }
//!         let n = ctx.state_get("greeted").and_then(|v| v.as_u64()).unwrap_or(0) + 1;
//!         ctx.state_set("greeted", n);
//!         ctx.info(format!("greeting {}", p.name));
//!         ctx.metric("greeted", n as f64);
//!         Ok(Greeting { text: format!("Hello, {}!", p.name), times_greeted: n })
//!     }
//! }
//!
//! export_plugin!(Greeter);
//!
//! // Test it in-process, without a host: the declared examples, then more.
//! let host = plexus_sdk::testing::TestHost::<Greeter>::new();
//! assert_eq!(host.check_examples(), Ok(2));
//! let out = host.call("greet", json!({"name": "Ada"})).unwrap();
//! assert_eq!(out.output["text"], "Hello, Ada!");
//! assert_eq!(host.call("greet", json!({"name": "Bob"})).unwrap().output["times_greeted"], 2);
//! let err = host.call("greet", json!({"name": ""})).unwrap_err();
//! assert_eq!(err.kind, ErrorKind::InvalidInput);
//! ```
//!
//! Errors: `?` converts I/O, JSON and parse errors into a [`PluginError`] of
//! the fitting kind (see its `From` impls); [`ResultExt`] picks the kind and
//! adds context for any other error.
//!
//! ## Lifecycle and orchestration (contract 0.3)
//!
//! [`Plugin::initialize`] gets the manifest's `[config]` before the first call
//! and [`Plugin::cleanup`] runs when the plugin value is discarded (when, for
//! each kind, is on [`Plugin`]); both default to nothing. A plugin declaring
//! [`capability::ORCHESTRATION`], whose manifest grants it
//! (`[permissions] orchestration = true`), can ask the daemon to start a
//! workflow ([`Context::start_workflow`]), read an execution's status
//! ([`Context::execution_status`]) and create or cancel its own schedules
//! ([`Context::create_schedule`], [`Context::cancel_schedule`]). A scheduled
//! call reads its schedule and fire time from [`Context::schedule`].
//!
//! Build it both ways and give each artifact a `plugin.toml` manifest in a
//! folder of the host's plugins directory (see the repository README):
//!
//! ```sh
//! cargo build --release                          # target/release/libgreeter.so
//! cargo build --release --target wasm32-wasip2   # target/wasm32-wasip2/release/greeter.wasm
//! ```
#![deny(unsafe_code)]

#[cfg(not(target_family = "wasm"))]
pub mod abi;
mod artifact;
pub mod contract;
mod plugin;
pub mod testing;
#[cfg(target_family = "wasm")]
#[doc(hidden)]
pub mod wasm;

pub use artifact::{ArtifactReader, ArtifactWriter, ROWS_MEDIA_TYPE, Rows, write_rows};
pub use contract::{
    ArtifactHandle, ArtifactRef, CONTRACT_VERSION, CallOutput, ErrorKind, ExecutionContext, HostServices, LogLevel,
    MAX_ARTIFACT_CHUNK_BYTES, MAX_ARTIFACT_NAME, MAX_ARTIFACTS_PER_CALL, MAX_ORCHESTRATION_REQUESTS_PER_CALL, Metadata,
    OperationInfo, Orchestration, PluginError, ResultExt, SCHEDULE_STATE_KEY, ScheduleInfo, capability,
    check_artifact_name,
};
pub use plugin::{Context, Example, Expected, Operations, Plugin, PluginInfo, Runtime};

// The crates plugin code uses with the SDK, at the versions it was built with.
pub use schemars;
pub use serde;
pub use serde_json;

/// What most plugins use: `use plexus_sdk::prelude::*;`.
///
/// The derives (`Serialize`, `Deserialize`, `JsonSchema`) expand to paths
/// into `serde` and `schemars`: a crate that uses them depends on both (as
/// `plexus plugin new` writes), or names the re-exports with
/// `#[serde(crate = "plexus_sdk::serde")]` and `#[schemars(crate = "plexus_sdk::schemars")]`.
pub mod prelude {
    pub use crate::{
        Context, ErrorKind, Operations, Plugin, PluginError, PluginInfo, ResultExt, capability, export_plugin,
        plugin_info,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::{Value, json};
}

/// A [`PluginInfo`] with id `$id` and the rest from the calling crate's
/// `Cargo.toml`: name (`CARGO_PKG_NAME`), version, description, authors and
/// license; add capabilities with the builder.
///
/// ```
/// let info = plexus_sdk::plugin_info!("example.greeter").capabilities([plexus_sdk::capability::WORKFLOW_STEP]);
/// assert_eq!(info.id(), "example.greeter");
/// assert_eq!(info.version(), env!("CARGO_PKG_VERSION"));
/// ```
#[macro_export]
macro_rules! plugin_info {
    ($id:expr) => {
        $crate::PluginInfo::from_package(
            $id,
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_DESCRIPTION"),
            env!("CARGO_PKG_AUTHORS"),
            env!("CARGO_PKG_LICENSE"),
        )
    };
}

#[doc(hidden)]
pub mod __private {
    #[cfg(not(target_family = "wasm"))]
    pub use abi_stable;
    pub use std::sync::OnceLock;
}

/// Export a [`Plugin`] type as this crate's plugin: an `abi_stable` root module
/// on native targets, the `plexus:plugin/guest` component exports on WASM.
/// Use it once per crate, at the crate root.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(not(target_family = "wasm"))]
        const _: () = {
            impl $crate::abi::RuntimeAccess for $plugin {
                fn runtime() -> &'static $crate::Runtime<Self> {
                    static RUNTIME: $crate::__private::OnceLock<$crate::Runtime<$plugin>> =
                        $crate::__private::OnceLock::new();
                    RUNTIME.get_or_init($crate::Runtime::new)
                }
            }

            fn __plexus_root_module() -> $crate::abi::PluginModRef {
                $crate::abi::root_module::<$plugin>()
            }

            extern "C" fn __plexus_erased_module() -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(__plexus_root_module)
            }

            /// The `abi_stable` library header the host looks up by name.
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static PLEXUS_LIB_HEADER: $crate::__private::abi_stable::library::LibHeader = {
                // SAFETY: `__plexus_erased_module` returns the prefix of a
                // `PluginModRef`, the module type named here, as `from_constructor` requires.
                unsafe {
                    $crate::__private::abi_stable::library::LibHeader::from_constructor::<$crate::abi::PluginModRef>(
                        __plexus_erased_module,
                        $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                    )
                }
            };
        };

        #[cfg(target_family = "wasm")]
        const _: () = {
            struct __PlexusGuest;

            /// The whole runtime, built by `describe`; a call in a fresh
            /// instance builds only its own operation's handler.
            static RUNTIME: $crate::__private::OnceLock<$crate::Runtime<$plugin>> = $crate::__private::OnceLock::new();
            /// The instance's plugin value, made by `initialize`.
            static PLUGIN: $crate::__private::OnceLock<$plugin> = $crate::__private::OnceLock::new();

            impl $crate::wasm::Guest for __PlexusGuest {
                fn describe() -> $crate::wasm::plexus::plugin::types::Metadata {
                    $crate::wasm::metadata(RUNTIME.get_or_init($crate::Runtime::new))
                }
                fn initialize(config: String) -> Result<(), $crate::wasm::plexus::plugin::types::PluginError> {
                    $crate::wasm::initialize(&PLUGIN, config)
                }
                fn cleanup() {
                    $crate::wasm::cleanup(&PLUGIN)
                }
                fn call(
                    ctx: $crate::wasm::plexus::plugin::types::ExecutionContext,
                ) -> Result<
                    $crate::wasm::plexus::plugin::types::CallOutput,
                    $crate::wasm::plexus::plugin::types::PluginError,
                > {
                    $crate::wasm::call(&RUNTIME, &PLUGIN, ctx)
                }
            }

    $crate::wasm::__export_plexus_component!(__PlexusGuest with_types_in $crate::wasm);
        };
    };
}
