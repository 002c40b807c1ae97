//! # plexus-host: the Plexus plugin host
//!
//! Discovers plugins in folders, loads **native** cdylibs through a stable ABI
//! (`abi_stable`) and **WASM components** through the `plexus:plugin` WIT world
//! (wasmtime, WASI 0.2, sandboxed), checks their metadata against their
//! manifests and the contract version, and runs their operations through one
//! execution-context contract ([`plexus_sdk::contract`]).
//!
//! * [`manifest`]: `plugin.toml`, raw and validated.
//! * discovery: scanning plugin directories ([`HostBuilder::build`],
//!   [`Host::rescan`]); one plugin that fails to load never stops the others.
//! * [`Runtime`]: the trait the native (in the host's process or in worker
//!   processes, [`worker`]), in-process and [`wasm::WasmPlugin`] runtimes implement.
//! * [`secrets`]: `${{ secrets.NAME }}` in `[config]`, secret sources, redaction.
//! * [`services`]: the host services a plugin calls back (log, shared state, progress, cancellation).
//! * [`Host`]: the loaded plugins, their load errors, and calls.
//!
//! ```no_run
//! use plexus_host::{CallOptions, HostBuilder};
//!
//! let host = HostBuilder::new().plugin_dir("plugins").build()?;
//! for error in host.load_errors() {
//!     eprintln!("not loaded: {error}");
//! }
//! for plugin in host.plugins() {
//!     println!("{} {} ({})", plugin.id(), plugin.manifest.version, plugin.manifest.kind);
//! }
//! let out = host.call("plexus.echo", "echo", serde_json::json!({"hi": 1}), CallOptions::default())?;
//! assert_eq!(out.output, serde_json::json!({"hi": 1}));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod artifacts;
mod discovery;
pub mod error;
mod host;
mod in_process;
pub mod manifest;
mod native;
pub mod process;
pub mod runtime;
pub mod secrets;
pub mod services;
mod unsafe_ops;
pub mod wasm;
#[cfg(unix)]
pub mod worker;

pub use discovery::LoadedPlugin;
pub use error::{CallError, Error, LoadError, LoadErrorKind, Result};
pub use host::{
    CallOptions, Change, Host, HostBuilder, LOG_BYTES_DROPPED, Resolved, default_cache_dir, new_execution_id,
};
pub use manifest::{Isolation, Manifest, PluginKind};
pub use runtime::Runtime;
pub use services::{CallServices, CancelToken, SharedState};
