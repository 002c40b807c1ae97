//! The host's error types: per-plugin load errors and call errors.

use plexus_sdk::PluginError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the host as a whole (not of one plugin).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WASM engine could not be configured.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// The compiled-component cache directory is unusable.
    #[error("component cache {path}: {message}")]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A call failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Why one plugin did not load. Discovery collects these and goes on.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
// A plugin's own error text (an `initialize` that failed) may quote its config's secrets: redacted.
#[error("{}{}: {}", path.display(), plugin.as_ref().map(|id| format!(" (plugin `{id}`)")).unwrap_or_default(), crate::secrets::redactor().text(&kind.to_string()))]
pub struct LoadError {
    /// The plugin folder, manifest or artifact concerned.
    pub path: PathBuf,
    /// The plugin id, when the manifest could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// What went wrong.
    #[serde(flatten)]
    pub kind: LoadErrorKind,
}

/// What went wrong loading a plugin. (Deserialize: a worker process
/// reports why it could not load a native plugin with it.)
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum LoadErrorKind {
    /// A plugins directory does not exist or cannot be listed.
    #[error("cannot read plugins directory: {0}")]
    PluginsDirectory(String),
    /// The folder has no `plugin.toml`, or it cannot be read.
    #[error("cannot read plugin.toml: {0}")]
    ReadManifest(String),
    /// `plugin.toml` is not valid TOML, has unknown fields or bad values.
    #[error("invalid plugin.toml: {0}")]
    InvalidManifest(String),
    /// `[config]` names a secret that is not set (`${{ secrets.NAME }}`).
    /// A rescan tries the plugin again, changed or not.
    #[error("secret not set: {0}")]
    SecretNotSet(String),
    /// The artifact named by the manifest does not exist.
    #[error("artifact {0} does not exist")]
    MissingArtifact(PathBuf),
    /// The artifact's sha256 differs from the manifest's.
    #[error("sha256 mismatch: plugin.toml says {expected}, the artifact is {actual}")]
    HashMismatch {
        /// Digest in the manifest.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
    /// Another plugin already has this id.
    #[error("duplicate plugin id `{id}`: already loaded from {first}")]
    DuplicateId {
        /// The id.
        id: String,
        /// Where the first plugin with the id came from.
        first: PathBuf,
    },
    /// The plugin is loaded as another kind too, at another version: the
    /// kinds of one plugin are one plugin, built from one source.
    #[error("plugin `{id}` {detail}: both kinds of one plugin must have the same version")]
    KindVersionMismatch {
        /// The id.
        id: String,
        /// Which kind is loaded from where, at which version, and this one's version.
        detail: String,
    },
    /// The plugin's contract version does not fit this host's.
    #[error("incompatible contract: {0}")]
    IncompatibleContract(String),
    /// The file is not a Plexus plugin of the declared kind.
    #[error("not a Plexus plugin: {0}")]
    NotAPlugin(String),
    /// A native library built for another OS or CPU.
    #[error("built for {found}, but this host is {expected}")]
    WrongArchitecture {
        /// What the file is built for.
        found: String,
        /// What this host runs on.
        expected: String,
    },
    /// The native library's ABI (abi_stable layout or version) does not match.
    #[error("incompatible native ABI: {0}")]
    IncompatibleAbi(String),
    /// The file is not a valid WebAssembly component (truncated, corrupt, core module).
    #[error("invalid WebAssembly component: {0}")]
    InvalidComponent(String),
    /// The component imports something the host does not provide.
    #[error("cannot instantiate component: {0}")]
    Instantiate(String),
    /// The plugin's own metadata disagrees with its manifest.
    #[error("metadata disagrees with plugin.toml: {field} is `{plugin}` in the plugin but `{manifest}` in plugin.toml")]
    MetadataMismatch {
        /// The field.
        field: String,
        /// The plugin's value.
        plugin: String,
        /// The manifest's value.
        manifest: String,
    },
    /// The plugin failed while describing itself (panic, trap, bad metadata).
    #[error("metadata query failed: {0}")]
    Metadata(String),
    /// A native plugin with `isolation = "process"` whose worker process
    /// could not be started, or crashed while loading it.
    #[error("worker process: {0}")]
    Worker(String),
    /// A native plugin's `initialize` returned an error, panicked or did
    /// not return within the plugin's timeout.
    #[error("initialize failed: {0}")]
    Initialize(String),
}

impl LoadError {
    /// An error at `path` for `plugin`.
    pub fn new(path: impl Into<PathBuf>, plugin: Option<&str>, kind: LoadErrorKind) -> Self {
        Self { path: path.into(), plugin: plugin.map(str::to_owned), kind }
    }
}

/// Why a call did not produce an output.
///
/// The plugin's own errors ([`CallError::Plugin`]) are kept apart from what the
/// host observed: a panic, a trap, a timeout, exhausted limits.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No loaded plugin has this id.
    #[error("no plugin `{0}` is loaded")]
    PluginNotFound(String),
    /// The plugin does not declare this operation.
    #[error("plugin `{plugin}` has no operation `{operation}`")]
    OperationNotFound {
        /// Plugin id.
        plugin: String,
        /// Operation name.
        operation: String,
    },
    /// The plugin returned an error.
    #[error("plugin `{plugin}` returned an error: {error}")]
    Plugin {
        /// Plugin id.
        plugin: String,
        /// The error, as the plugin reported it.
        error: PluginError,
    },
    /// Native plugin code panicked (caught by the SDK shim).
    #[error("plugin `{plugin}` panicked: {message}")]
    Panic {
        /// Plugin id.
        plugin: String,
        /// The panic message.
        message: String,
    },
    /// The WASM component trapped (including a guest panic).
    #[error("plugin `{plugin}` trapped: {message}")]
    Trap {
        /// Plugin id.
        plugin: String,
        /// The trap and its WASM backtrace, in one line.
        message: String,
    },
    /// The WASM component tried to grow its memory past its limit.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// Plugin id.
        plugin: String,
        /// The limit, in bytes.
        limit_bytes: u64,
    },
    /// The call broke one of its plugin's `[limits]` other than memory and
    /// time: shared-state bytes, resource handles.
    #[error("plugin `{plugin}` exceeded a limit: {message}")]
    ResourceLimit {
        /// Plugin id.
        plugin: String,
        /// Which limit, and by how much.
        message: String,
    },
    /// The host had no capacity for the call (every WASM instance slot in use,
    /// or the plugin's share of them): not the plugin's fault; retryable.
    #[error("no capacity to run plugin `{plugin}`: {message}")]
    Capacity {
        /// Plugin id.
        plugin: String,
        /// What ran out.
        message: String,
    },
    /// A native plugin's worker process ended during the call (a signal such
    /// as `SIGSEGV` or `SIGABRT`, `exit()`, a resource limit): the call is
    /// lost; the host starts another worker for the next call (see
    /// [`crate::worker`]). Retryable.
    #[error("plugin `{plugin}` crashed: {reason}")]
    Crashed {
        /// Plugin id.
        plugin: String,
        /// How the worker ended, e.g. "its worker was killed by signal 11 (SIGSEGV)", and its last words on stderr.
        reason: String,
    },
    /// The call ran past its deadline. A WASM call is interrupted; an
    /// in-process native call has its cancel flag set and its thread is
    /// abandoned; a call in a worker process is asked to stop and, past a
    /// grace period, killed with its worker.
    #[error("plugin `{plugin}` timed out after {} ms", after.as_millis())]
    Timeout {
        /// Plugin id.
        plugin: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The plugin cannot be called now (e.g. too many of its timed-out
    /// native calls are still running, see
    /// [`crate::runtime::ABANDONED_CALL_BUDGET`]); nothing ran.
    #[error("plugin `{plugin}` is unavailable: {reason}")]
    Unavailable {
        /// Plugin id.
        plugin: String,
        /// Why, in one line.
        reason: String,
    },
    /// The call was cancelled by the host.
    #[error("plugin `{plugin}` was cancelled")]
    Cancelled {
        /// Plugin id.
        plugin: String,
    },
    /// The plugin broke the contract (e.g. returned malformed JSON) or the host failed.
    #[error("plugin `{plugin}`: {message}")]
    Host {
        /// Plugin id.
        plugin: String,
        /// What went wrong.
        message: String,
    },
}

impl CallError {
    /// Whether a retry may succeed: retryable plugin errors, timeouts, a
    /// lack of capacity, and crashes of a worker process.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Plugin { error, .. } => error.retryable,
            CallError::Timeout { .. } | CallError::Capacity { .. } | CallError::Crashed { .. } => true,
            _ => false,
        }
    }

    /// A stable kebab-case name for JSON output and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::PluginNotFound(_) => "plugin-not-found",
            CallError::OperationNotFound { .. } => "operation-not-found",
            CallError::Plugin { .. } => "plugin-error",
            CallError::Panic { .. } => "panic",
            CallError::Crashed { .. } => "crashed",
            CallError::Trap { .. } => "trap",
            CallError::MemoryLimit { .. } => "memory-limit",
            CallError::Timeout { .. } => "timeout",
            CallError::ResourceLimit { .. } => "resource-limit",
            CallError::Capacity { .. } => "host-capacity",
            CallError::Cancelled { .. } => "cancelled",
            CallError::Unavailable { .. } => "unavailable",
            CallError::Host { .. } => "host",
        }
    }
}
