//! `/v1/health` and `/v1/plugins`: the daemon's liveness and its plugins.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`, `degraded` (see `degraded`) or `shutting_down`.
    pub status: HealthStatus,
    /// Each degraded condition (e.g. `state_db`) with why; empty when `ok`.
    pub degraded: BTreeMap<String, String>,
    /// The daemon's version.
    pub version: String,
    /// How many plugins are loaded.
    pub plugins: usize,
    /// How many plugin folders failed to load.
    pub plugin_load_errors: usize,
    /// The daemon's node id (see `GET /v1/nodes`).
    #[serde(default)]
    pub node: String,
}

/// The daemon's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything works.
    Ok,
    /// It serves, but something is wrong (a full disk, a stuck native call…).
    Degraded,
    /// Shutdown began: no new executions are accepted.
    ShuttingDown,
}

/// Whether a plugin is called: `loaded`, or `unavailable` (a native plugin
/// whose folder disappeared or changed; it stays mapped until a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PluginStatus {
    /// Calls go to it.
    Loaded,
    /// Calls are refused until the daemon restarts (the reason is in
    /// [`PluginList::unavailable`]).
    Unavailable,
}

/// How a plugin is loaded (as in `plugin.toml`'s `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PluginKind {
    /// A cdylib built with `plexus-sdk`, in-process.
    #[serde(rename = "native")]
    Native,
    /// A WebAssembly component, sandboxed.
    #[serde(rename = "wasm")]
    Wasm,
    /// Compiled into the host (embedding, tests).
    #[serde(rename = "in-process")]
    InProcess,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Wasm => "wasm",
            Self::InProcess => "in-process",
        })
    }
}

/// `GET /v1/plugins` (and `plexus plugins list --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginList {
    /// The loaded plugins, by id.
    pub plugins: Vec<PluginSummary>,
    /// The folders that did not load, each with why.
    pub errors: Vec<PluginLoadError>,
    /// Unavailable plugins by id, with why.
    #[serde(default)]
    pub unavailable: BTreeMap<String, String>,
}

/// One loaded plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginSummary {
    /// Plugin id, e.g. `plexus.echo`.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Native or WASM.
    pub kind: PluginKind,
    /// Capability tags.
    pub capabilities: Vec<String>,
    /// Operation names.
    pub operations: Vec<String>,
    /// The plugin's folder.
    pub path: String,
    /// Whether calls reach it.
    pub status: PluginStatus,
}

/// A plugin folder that did not load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginLoadError {
    /// The folder, manifest or artifact concerned.
    pub path: String,
    /// The plugin id, when the manifest could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// What went wrong, kebab-case: `plugins-directory`, `read-manifest`,
    /// `invalid-manifest`, `missing-artifact`, `hash-mismatch`,
    /// `duplicate-id`, `kind-version-mismatch`, `incompatible-contract`, `not-a-plugin`,
    /// `wrong-architecture`, `incompatible-abi`, `invalid-component`,
    /// `instantiate`, `metadata-mismatch`, `metadata`, `secret-not-set`.
    pub kind: String,
    /// The kind's facts: a string, or an object (e.g. `{expected, actual}`
    /// for `hash-mismatch`).
    #[serde(default)]
    pub detail: Value,
    /// The whole error in one line, for people.
    pub message: String,
}

/// `GET /v1/plugins/{id}` (and `plexus plugins info --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginDetails {
    /// What the plugin says about itself, with each operation's schemas.
    pub metadata: plexus_sdk::Metadata,
    /// Native or WASM.
    pub kind: PluginKind,
    /// How a native plugin runs: `in-process` or `process` (worker
    /// processes); absent for WASM, which is always sandboxed in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// The plugin's folder.
    pub path: String,
    /// The loaded file.
    pub artifact: String,
    /// The artifact's SHA-256 as pinned in `plugin.toml`, if it is.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The contract versions `plugin.toml` requires, if it says.
    #[serde(default)]
    pub contract_requirement: Option<String>,
    /// The plugin's `[config]` table.
    #[serde(default)]
    pub config: Value,
    /// The plugin's limits.
    pub limits: PluginLimits,
    /// What a WASM plugin may reach outside its sandbox.
    pub permissions: PluginPermissions,
    /// The Landlock sandbox of a native plugin's worker processes
    /// (`[worker.landlock]`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<PluginLandlock>,
    /// Whether calls reach it.
    pub status: PluginStatus,
    /// Why calls are refused, when `status` is `unavailable` (e.g.
    /// `changed on disk: restart required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// A plugin's resource limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginLimits {
    /// Per-call timeout, in ms.
    pub timeout: u64,
    /// WASM memory of one instance, in bytes.
    pub memory_bytes: u64,
    /// Captured stdout + stderr per call, in bytes.
    pub output_bytes: u64,
    /// An execution's shared state after this plugin writes to it, in bytes.
    pub state_bytes: u64,
    /// Log bytes one call may send.
    pub log_bytes: u64,
    /// WASI resource handles one call may hold at once.
    pub handles: u32,
    /// The artifacts one call may write together, in bytes (0 from a daemon that predates artifacts).
    #[serde(default)]
    pub artifact_bytes: u64,
}

/// What a WASM plugin may touch outside its sandbox (native plugins are not sandboxed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginPermissions {
    /// Granted directories.
    pub dirs: Vec<DirGrant>,
    /// Environment variables passed through, by name.
    pub env: Vec<String>,
    /// `false` (no sockets), `true` (any address) or a list of `host:port`.
    pub network: NetworkGrant,
    /// The secrets its `[config]` may name (`[permissions] secrets`; names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// What a native plugin's Landlock-restricted worker may reach besides its
/// own files and the system libraries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginLandlock {
    /// Readable paths.
    pub read: Vec<String>,
    /// Readable and writable paths.
    pub write: Vec<String>,
    /// Whether TCP connect and bind are allowed.
    pub tcp: bool,
}

/// A directory granted to a WASM plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirGrant {
    /// Absolute host path.
    pub host: String,
    /// Path inside the component.
    pub guest: String,
    /// `read-only` or `read-write`.
    pub access: DirAccess,
}

/// Access granted to a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DirAccess {
    /// Read files and list directories.
    ReadOnly,
    /// Also create, write and delete.
    ReadWrite,
}

/// A WASM plugin's network grant, as written in `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum NetworkGrant {
    /// `false`: none; `true`: any address and name lookups.
    All(bool),
    /// Only these `host:port` endpoints (`host:*` for any port).
    Endpoints(Vec<String>),
}

/// `POST /v1/plugins/reload`: what the rescan changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reloaded {
    /// Every change, in scan order; empty when nothing changed.
    pub changes: Vec<PluginChange>,
}

/// One change of a rescan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum PluginChange {
    /// A new plugin loaded.
    Loaded {
        /// Plugin id.
        plugin: String,
    },
    /// A changed WASM plugin was loaded again; running calls finish on the old version.
    Reloaded {
        /// Plugin id.
        plugin: String,
    },
    /// A WASM plugin's folder disappeared; the plugin is unloaded.
    Removed {
        /// Plugin id.
        plugin: String,
    },
    /// A native plugin's folder disappeared: no longer called, still mapped.
    Unavailable {
        /// Plugin id.
        plugin: String,
    },
    /// A native plugin changed: the old version runs until the daemon restarts.
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

/// The most a [`CallPlugin::timeout_ms`] may ask: 30 days.
pub const MAX_CALL_TIMEOUT_MS: u64 = 30 * 24 * 3600 * 1000;

/// `POST /v1/plugins/{id}/call`: call one operation of a loaded plugin
/// directly, as `plexus call` does (a fresh execution context; no workflow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CallPlugin {
    /// The operation's name.
    pub operation: String,
    /// Its parameters (JSON; `null` if it takes none).
    #[serde(default)]
    pub params: Value,
    /// Timeout in ms (at most [`MAX_CALL_TIMEOUT_MS`]); default: the plugin's
    /// `limits.timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// For a plugin loaded as both kinds, the one to call (default: the
    /// preferred kind loaded, WASM first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<PluginKind>,
}

/// The answer of `POST /v1/plugins/{id}/call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallResult {
    /// The plugin called.
    pub plugin_id: String,
    /// The operation called.
    pub operation: String,
    /// What the operation returned.
    pub output: Value,
    /// The metrics it reported (name to value).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// How long the call took, ms.
    pub elapsed_ms: f64,
}
