//! `plugin.toml`: the manifest every plugin folder carries.
//!
//! Read in two stages: [`RawManifest`] is the file as written (serde,
//! unknown fields rejected), [`Manifest`] the validated, resolved form.
//!
//! ```toml
//! id = "plexus.echo"              # unique plugin id; must match the plugin's metadata
//! version = "0.1.0"               # semver; must match the plugin's metadata
//! kind = "wasm"                   # "native" (cdylib) or "wasm" (component)
//! artifact = "plexus_echo.wasm"   # relative to the plugin folder
//! contract = "^0.2"               # contract versions the plugin accepts (optional)
//! sha256 = "9f86d0…"              # optional: checked before loading
//!
//! [config]                        # optional: handed to every call as `config`
//! greeting = "hi"
//! password = "${{ secrets.DB_PASSWORD }}"  # a secret, resolved at load (see `crate::secrets`)
//!
//! [limits]                        # optional; each value at most the host's maximum
//! timeout_ms = 30000              # per call; WASM is interrupted, native is asked to stop
//! memory_mib = 64                 # WASM only: all linear memories of an instance together
//! output_bytes = 65536            # WASM only: captured stdout/stderr per call
//! state_bytes = 16777216          # shared state of an execution after this plugin's writes
//! log_bytes = 1048576             # host log service per call; the rest is dropped and counted
//! handles = 256                   # WASM only: open files, streams, sockets, timers at once per call
//! artifact_bytes = 1073741824     # the artifacts one call writes, together (contract 0.4)
//!
//! isolation = "process"           # native only: "in-process" (the host's own process) or "process"
//!                                 # (a worker process); default: the host's (daemon: process, CLI: in-process)
//!
//! [worker]                        # native, isolation = "process" only
//! max = 4                         # worker processes at most (calls at once); 1..=64
//! memory_mib = 2048               # Linux: each worker's address space (RLIMIT_AS); default: unlimited
//! cpu_seconds = 3600              # Linux: CPU time of each worker over its life (RLIMIT_CPU); default: unlimited
//! no_new_privs = true             # Linux: the worker cannot gain privileges (setuid, file capabilities)
//!
//! [worker.landlock]               # Linux ≥ 6.2: the worker reads only its plugin's folder, system libraries
//!                                 # and these; writes only these; no TCP (≥ 6.7); implies isolation = "process"
//! read = ["/srv/reference"]       # readable (relative to the folder or absolute)
//! write = ["out"]                 # readable and writable
//! tcp = false                     # TCP connect/bind allowed; default false
//!
//! [instances]                     # WASM only; default: a fresh instance per call
//! reuse = "execution"             # "call", "execution" (calls of one execution share
//!                                 # instances) or "plugin" (every call may share them)
//! max_calls = 1000                # an instance serves at most this many calls (1..=1000000)
//! max_age_ms = 60000              # and lives at most this long (1..=86400000)
//!
//! [permissions]                   # WASM only; nothing is granted by default
//! dirs = [{ host = "data", guest = "/data", access = "read-only" }]  # host: relative to the folder or absolute
//! env = ["LANG"]                  # environment variables passed through by name
//! network = false                 # false, true (any TCP/UDP address and name lookups),
//!                                 # or an allowlist: ["api.example.com:443", "10.0.0.5:*"]
//! secrets = ["DB_PASSWORD"]       # both kinds: the secrets [config] may name (`${{ secrets.NAME }}`)
//! orchestration = false           # both kinds: the plugin may start workflows, read executions'
//!                                 # status and create/cancel its schedules (it must also declare
//!                                 # the `orchestration` capability; contract 0.3)
//! ```
//!
//! Grants are checked when the plugin loads: a granted directory must exist; two
//! grants may not nest or overlap (on the host or in the guest); a read-write
//! grant may not contain the plugin's own folder (its manifest and artifact); no
//! grant may reach the component cache. Each granted directory is opened once,
//! at load, and every call sees that same directory, whatever is renamed or
//! replaced on its path later.

use crate::error::LoadErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The manifest's file name inside a plugin folder.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// Default per-call timeout: 30 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default WASM memory limit: 64 MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 64;
/// Largest WASM memory limit a manifest may ask for: 4 GiB (the wasm32 address space).
pub const MAX_MEMORY_MIB: u64 = 4096;
/// Default bound on captured stdout/stderr per call: 64 KiB.
pub const DEFAULT_OUTPUT_BYTES: usize = 64 * 1024;
/// Default cap on an execution's shared state (keys + JSON values) after a plugin's write: 16 MiB.
pub const DEFAULT_STATE_BYTES: u64 = 16 << 20;
/// Default cap on what one call sends through the host log service: 1 MiB.
pub const DEFAULT_LOG_BYTES: u64 = 1 << 20;
/// Default cap on WASI resource handles (files, streams, sockets, timers) held at once by one call.
pub const DEFAULT_HANDLES: u32 = 256;
/// Default cap on the artifacts one call writes, together: 1 GiB.
pub const DEFAULT_ARTIFACT_BYTES: u64 = 1 << 30;
/// Default host-wide maximum of `limits.timeout_ms`: one day.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// The largest maximum a host may set for timeouts: 30 days.
pub const CEILING_TIMEOUT_MS: u64 = 30 * 24 * 3600 * 1000;

/// How a plugin is loaded.
///
/// One plugin (one id) may be loaded as both kinds at once, from two
/// folders, at the same version: a step or call may ask for a kind, and
/// otherwise gets the first loaded in [`PluginKind::PREFERENCE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// A cdylib built with `plexus-sdk`, loaded in-process through `abi_stable`.
    Native,
    /// A WebAssembly component targeting `plexus:plugin/plexus-plugin`.
    Wasm,
    /// A plugin compiled into the host itself (embedding, tests); never read from a manifest.
    #[serde(skip_deserializing)]
    InProcess,
}

impl PluginKind {
    /// Which kind of a plugin loaded as several is called when none is asked
    /// for: the sandboxed one (WASM), then native, then in-process. Ask for
    /// `kind: native` where the speed of trusted code matters.
    pub const PREFERENCE: [PluginKind; 3] = [PluginKind::Wasm, PluginKind::Native, PluginKind::InProcess];

    /// The kind named `name` (`native` or `wasm`), if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "native" => Some(PluginKind::Native),
            "wasm" => Some(PluginKind::Wasm),
            _ => None,
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Native => "native",
            PluginKind::Wasm => "wasm",
            PluginKind::InProcess => "in-process",
        })
    }
}

/// `plugin.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// `id = "plexus.echo"`
    pub id: String,
    /// `version = "0.1.0"`
    pub version: String,
    /// `kind = "native" | "wasm"`
    pub kind: PluginKind,
    /// `artifact = "libplexus_echo.so"` (relative to the plugin folder)
    pub artifact: PathBuf,
    /// `contract = "^0.2"`
    #[serde(default)]
    pub contract: Option<String>,
    /// `sha256 = "<64 hex digits>"`
    #[serde(default)]
    pub sha256: Option<String>,
    /// `[config]`
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// `[limits]`
    #[serde(default)]
    pub limits: RawLimits,
    /// `[permissions]`
    #[serde(default)]
    pub permissions: Option<RawPermissions>,
    /// `isolation = "in-process" | "process"` (native only)
    #[serde(default)]
    pub isolation: Option<Isolation>,
    /// `[worker]` (native, process isolation only)
    #[serde(default)]
    pub worker: Option<RawWorker>,
    /// `[instances]` (WASM only)
    #[serde(default)]
    pub instances: Option<RawInstances>,
    /// `aliases = ["data_visualization"]`: other names workflows may use for
    /// this plugin (Codomyrmex's `module`, the project orchestrator's `factory`)
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Whether a WASM plugin's instances serve more than one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reuse {
    /// A fresh instance per call: no call sees another's state.
    #[default]
    Call,
    /// The calls of one execution share instances (one at a time each):
    /// what a call leaves in the guest (globals, linear memory, open WASI
    /// handles) is seen by later calls of the same execution, never by another's.
    Execution,
    /// Every call of the plugin may get an instance an earlier call used,
    /// whatever its execution: what one call leaves in the guest, any later
    /// call may see. The operator's explicit choice.
    Plugin,
}

/// `[instances]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstances {
    /// `reuse = "call" | "execution" | "plugin"`
    pub reuse: Option<Reuse>,
    /// `max_calls = 1000`
    pub max_calls: Option<u32>,
    /// `max_age_ms = 60000`
    pub max_age_ms: Option<u64>,
}

/// Default `instances.max_calls`.
pub const DEFAULT_INSTANCE_CALLS: u32 = 1000;
/// Largest `instances.max_calls`.
pub const MAX_INSTANCE_CALLS: u32 = 1_000_000;
/// Default `instances.max_age_ms`: 60 s.
pub const DEFAULT_INSTANCE_AGE_MS: u64 = 60_000;
/// Largest `instances.max_age_ms`: one day.
pub const MAX_INSTANCE_AGE_MS: u64 = 24 * 3600 * 1000;

/// How a WASM plugin's instances are reused (see [`Reuse`]). An instance is
/// dropped after a trap, a timeout, a cancel or a limit hit, after
/// `max_calls` calls, and once `max_age` old.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instances {
    /// Which calls share instances.
    pub reuse: Reuse,
    /// Calls one instance serves at most.
    pub max_calls: u32,
    /// How long one instance lives at most.
    #[serde(serialize_with = "serialize_ms")]
    pub max_age: Duration,
}

impl Default for Instances {
    fn default() -> Self {
        Self {
            reuse: Reuse::Call,
            max_calls: DEFAULT_INSTANCE_CALLS,
            max_age: Duration::from_millis(DEFAULT_INSTANCE_AGE_MS),
        }
    }
}

impl RawInstances {
    fn check(&self) -> Result<Instances, String> {
        let calls = self.max_calls.unwrap_or(DEFAULT_INSTANCE_CALLS);
        if !(1..=MAX_INSTANCE_CALLS).contains(&calls) {
            return Err(format!("instances.max_calls must be 1..={MAX_INSTANCE_CALLS}, not {calls}"));
        }
        let age = self.max_age_ms.unwrap_or(DEFAULT_INSTANCE_AGE_MS);
        if !(1..=MAX_INSTANCE_AGE_MS).contains(&age) {
            return Err(format!("instances.max_age_ms must be 1..={MAX_INSTANCE_AGE_MS}, not {age}"));
        }
        Ok(Instances { reuse: self.reuse.unwrap_or_default(), max_calls: calls, max_age: Duration::from_millis(age) })
    }
}

/// How a native plugin runs: in the host's own process (fast, and a crash
/// of the plugin is a crash of the host) or in worker processes the host
/// starts, restarts and kills (see [`crate::worker`]). WASM plugins are
/// sandboxed by wasmtime and always run in the host's process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Loaded into the host's process (`dlopen`); calls cost about 2 µs; a
    /// crash, `exit()` or a call that never returns affects the host.
    #[default]
    InProcess,
    /// Loaded by worker processes; a crash fails the call only, a call past
    /// its deadline is killed with its worker.
    Process,
}

impl Isolation {
    /// The isolation named `name` (`in-process` or `process`), if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "in-process" => Some(Isolation::InProcess),
            "process" => Some(Isolation::Process),
            _ => None,
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::InProcess => "in-process",
            Isolation::Process => "process",
        })
    }
}

/// `[worker]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorker {
    /// `max = 4`
    pub max: Option<u32>,
    /// `memory_mib = 2048`
    pub memory_mib: Option<u64>,
    /// `cpu_seconds = 3600`
    pub cpu_seconds: Option<u64>,
    /// `no_new_privs = true`
    pub no_new_privs: Option<bool>,
    /// `[worker.landlock]`
    pub landlock: Option<RawLandlock>,
}

/// `[worker.landlock]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLandlock {
    /// `read = ["/srv/reference"]` (relative to the plugin folder or absolute)
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// `write = ["out"]` (relative to the plugin folder or absolute)
    #[serde(default)]
    pub write: Vec<PathBuf>,
    /// `tcp = false`
    pub tcp: Option<bool>,
}

/// Largest number of paths in `worker.landlock.read` and `.write` each.
pub const MAX_LANDLOCK_PATHS: usize = 64;

/// A native plugin's worker restricted by Landlock (Linux ≥ 6.2; ≥ 6.7 to
/// refuse TCP): after it starts and before it loads the library, the worker
/// may read only the plugin's folder, its library's folder, the system's
/// shared libraries (`/lib*`, `/usr/lib*`, `/usr/local/lib`,
/// `/etc/ld.so.cache`), `/dev/null` and `/dev/urandom`, plus [`Self::read`],
/// and write only below [`Self::write`] (and `/dev/null`). Unless
/// [`Self::tcp`], it may neither connect nor bind a TCP socket. Where the
/// kernel has Landlock ABI 6 (Linux ≥ 6.12), it may also not signal
/// processes outside its sandbox (the host) or reach abstract Unix sockets
/// created outside it. Files and sockets it already holds (its standard
/// output and error, the socket to the host) stay usable. UDP and other
/// socket families are not covered by Landlock. Landlock implies
/// `no_new_privs`. A kernel that cannot enforce all of it refuses to load
/// the plugin (`LoadErrorKind::Worker`): the sandbox is never silently weaker.
/// See <https://docs.kernel.org/userspace-api/landlock.html>.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landlock {
    /// Readable paths besides the plugin's own (absolute; files or directories).
    pub read: Vec<PathBuf>,
    /// Readable and writable paths (absolute; files or directories).
    pub write: Vec<PathBuf>,
    /// Whether TCP connect and bind are allowed (default: no).
    pub tcp: bool,
}

/// Default `worker.max`: worker processes of one plugin at once.
pub const DEFAULT_WORKERS: u32 = 4;
/// Largest `worker.max`.
pub const MAX_WORKERS: u32 = 64;
/// Smallest `worker.memory_mib`: a worker maps the host binary and the plugin.
pub const MIN_WORKER_MEMORY_MIB: u64 = 64;
/// Largest `worker.memory_mib`: 1 TiB.
pub const MAX_WORKER_MEMORY_MIB: u64 = 1 << 20;
/// Largest `worker.cpu_seconds`: 30 days.
pub const MAX_WORKER_CPU_SECONDS: u64 = 30 * 24 * 3600;

/// The worker processes of a native plugin run with `isolation = "process"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerLimits {
    /// Worker processes at most: as many calls of the plugin run at once.
    pub max: u32,
    /// Address-space limit of each worker (`RLIMIT_AS`, Linux), in bytes; `None`: unlimited.
    pub memory_bytes: Option<u64>,
    /// CPU-time limit of each worker over its whole life (`RLIMIT_CPU`,
    /// Linux), in seconds; past it the kernel kills the worker (`SIGXCPU`,
    /// then `SIGKILL`) and the call fails as a crash. `None`: unlimited.
    pub cpu_seconds: Option<u64>,
    /// Set `PR_SET_NO_NEW_PRIVS` (Linux): the worker and what it runs cannot
    /// gain privileges through setuid binaries or file capabilities.
    pub no_new_privs: bool,
    /// `[worker.landlock]`: the worker's files and network restricted (Linux).
    pub landlock: Option<Landlock>,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        Self { max: DEFAULT_WORKERS, memory_bytes: None, cpu_seconds: None, no_new_privs: true, landlock: None }
    }
}

impl RawWorker {
    /// The validated limits: each number within its ceiling, named on error;
    /// landlock paths resolved against the plugin `folder`.
    fn check(&self, folder: &Path) -> Result<WorkerLimits, String> {
        let range = |field: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(format!("worker.{field} must be {min}..={max}, not {value}"))
            }
        };
        Ok(WorkerLimits {
            max: match self.max {
                Some(n) => range("max", n.into(), 1, MAX_WORKERS.into())? as u32,
                None => DEFAULT_WORKERS,
            },
            memory_bytes: self
                .memory_mib
                .map(|m| range("memory_mib", m, MIN_WORKER_MEMORY_MIB, MAX_WORKER_MEMORY_MIB).map(|m| m << 20))
                .transpose()?,
            cpu_seconds: self.cpu_seconds.map(|s| range("cpu_seconds", s, 1, MAX_WORKER_CPU_SECONDS)).transpose()?,
            no_new_privs: self.no_new_privs.unwrap_or(true),
            landlock: self
                .landlock
                .as_ref()
                .map(|l| {
                    let paths = |field: &str, list: &[PathBuf]| {
                        if list.len() > MAX_LANDLOCK_PATHS {
                            return Err(format!(
                                "worker.landlock.{field} lists {} paths; at most {MAX_LANDLOCK_PATHS}",
                                list.len()
                            ));
                        }
                        Ok(list.iter().map(|p| normalize(&folder.join(p))).collect::<Vec<_>>())
                    };
                    Ok::<_, String>(Landlock {
                        read: paths("read", &l.read)?,
                        write: paths("write", &l.write)?,
                        tcp: l.tcp.unwrap_or(false),
                    })
                })
                .transpose()?,
        })
    }
}

/// `[limits]` as written (in a manifest; a host configuration reads its
/// `[defaults]` and `[max_limits]` tables with it too).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// `timeout_ms = 30000`
    pub timeout_ms: Option<u64>,
    /// `memory_mib = 64`
    pub memory_mib: Option<u64>,
    /// `output_bytes = 65536`
    pub output_bytes: Option<usize>,
    /// `state_bytes = 16777216`
    pub state_bytes: Option<u64>,
    /// `log_bytes = 1048576`
    pub log_bytes: Option<u64>,
    /// `handles = 256`
    pub handles: Option<u32>,
    /// `artifact_bytes = 1073741824`
    pub artifact_bytes: Option<u64>,
}

impl RawLimits {
    /// `base` with the values set here. Values past any maximum are kept as
    /// written (no overflow on the way) for [`Limits::check_within`] to report.
    pub fn over(&self, base: Limits) -> Limits {
        Limits {
            timeout: self.timeout_ms.map_or(base.timeout, Duration::from_millis),
            memory_bytes: self.memory_mib.map_or(base.memory_bytes, |m| m.saturating_mul(1 << 20)),
            output_bytes: self.output_bytes.unwrap_or(base.output_bytes),
            state_bytes: self.state_bytes.unwrap_or(base.state_bytes),
            log_bytes: self.log_bytes.unwrap_or(base.log_bytes),
            handles: self.handles.unwrap_or(base.handles),
            artifact_bytes: self.artifact_bytes.unwrap_or(base.artifact_bytes),
        }
    }
}

/// `[permissions]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPermissions {
    /// `dirs = [{ host = "data", guest = "/data", access = "read-only" }]`
    #[serde(default)]
    pub dirs: Vec<RawDir>,
    /// `env = ["LANG"]`
    #[serde(default)]
    pub env: Vec<String>,
    /// `network = false | true | ["host:port", …]`
    #[serde(default)]
    pub network: RawNetwork,
    /// `orchestration = true`
    #[serde(default)]
    pub orchestration: bool,
    /// `secrets = ["DB_PASSWORD"]`: the secrets `[config]` may name.
    #[serde(default)]
    pub secrets: Vec<String>,
}

impl RawPermissions {
    /// Whether it grants any of the sandbox's permissions (WASM only).
    fn sandboxed(&self) -> bool {
        !self.dirs.is_empty() || !self.env.is_empty() || !matches!(self.network, RawNetwork::Switch(false))
    }
}

/// `network` as written: a switch or an allowlist of `host:port` (`port` may be `*`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawNetwork {
    /// `true`: any address; `false`: none.
    Switch(bool),
    /// Only these `host:port` pairs.
    Allow(Vec<String>),
}

impl Default for RawNetwork {
    fn default() -> Self {
        Self::Switch(false)
    }
}

/// One granted directory as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDir {
    /// Host path, relative to the plugin folder or absolute.
    pub host: PathBuf,
    /// Path the component sees.
    pub guest: String,
    /// `"read-only"` (default) or `"read-write"`.
    #[serde(default)]
    pub access: DirAccess,
}

/// Access granted to a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirAccess {
    /// Read files and list directories.
    #[default]
    ReadOnly,
    /// Also create, write and delete.
    ReadWrite,
}

/// Resource limits of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Per-call timeout.
    #[serde(serialize_with = "serialize_ms")]
    pub timeout: Duration,
    /// WASM memory limit, in bytes: all linear memories of one instance together.
    pub memory_bytes: u64,
    /// Bound on captured stdout + stderr per call, in bytes.
    pub output_bytes: usize,
    /// Bound on an execution's shared state after this plugin writes to it, in bytes
    /// (keys plus JSON text of the values). A write past it is refused and the call fails.
    pub state_bytes: u64,
    /// Bound on the bytes one call sends through the host log service; the rest is
    /// dropped and counted.
    pub log_bytes: u64,
    /// Bound on the WASI resource handles (open files and directories, streams,
    /// sockets, timers) one call holds at once.
    pub handles: u32,
    /// Bound on the artifacts one call writes, together, in bytes: past it
    /// the artifact is refused (at the write, or at its finish for a native plugin's file).
    pub artifact_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            memory_bytes: DEFAULT_MEMORY_MIB << 20,
            output_bytes: DEFAULT_OUTPUT_BYTES,
            state_bytes: DEFAULT_STATE_BYTES,
            log_bytes: DEFAULT_LOG_BYTES,
            handles: DEFAULT_HANDLES,
            artifact_bytes: DEFAULT_ARTIFACT_BYTES,
        }
    }
}

impl Limits {
    /// The default host-wide maximum of each limit: what a manifest may ask for
    /// unless the host (the daemon's `[max_limits]`) sets other maximums.
    /// Timeout 1 day, memory 4 GiB, output 16 MiB, state 256 MiB, log 64 MiB,
    /// 4,096 handles, 64 GiB of artifacts per call.
    pub fn default_max() -> Self {
        Self {
            timeout: Duration::from_millis(MAX_TIMEOUT_MS),
            memory_bytes: MAX_MEMORY_MIB << 20,
            output_bytes: 16 << 20,
            state_bytes: 256 << 20,
            log_bytes: 64 << 20,
            handles: 4096,
            artifact_bytes: 64 << 30,
        }
    }

    /// Each limit lowered to `max`'s where it is above it.
    pub fn clamped_to(&self, max: &Limits) -> Limits {
        Limits {
            timeout: self.timeout.min(max.timeout),
            memory_bytes: self.memory_bytes.min(max.memory_bytes),
            output_bytes: self.output_bytes.min(max.output_bytes),
            state_bytes: self.state_bytes.min(max.state_bytes),
            log_bytes: self.log_bytes.min(max.log_bytes),
            handles: self.handles.min(max.handles),
            artifact_bytes: self.artifact_bytes.min(max.artifact_bytes),
        }
    }

    /// Check that every limit is positive and at most `max`.
    ///
    /// # Errors
    /// The first field that is not, with its value and the maximum
    /// (displayed as `limits.timeout_ms must be …`).
    pub fn check_within(&self, max: &Limits) -> Result<(), LimitOutOfRange> {
        let checks: [(&str, u64, u64); 7] = [
            ("timeout_ms", self.timeout.as_millis() as u64, max.timeout.as_millis() as u64),
            ("memory_mib", self.memory_bytes >> 20, max.memory_bytes >> 20),
            ("output_bytes", self.output_bytes as u64, max.output_bytes as u64),
            ("state_bytes", self.state_bytes, max.state_bytes),
            ("log_bytes", self.log_bytes, max.log_bytes),
            ("handles", u64::from(self.handles), u64::from(max.handles)),
            ("artifact_bytes", self.artifact_bytes, max.artifact_bytes),
        ];
        for (field, value, max) in checks {
            if value == 0 || value > max {
                return Err(LimitOutOfRange { section: "limits", field, value, max });
            }
        }
        Ok(())
    }
}

/// A limit that is zero or above the host's maximum (see [`Limits::check_within`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{section}.{field} must be 1..={max} (the host's maximum), not {value}")]
pub struct LimitOutOfRange {
    /// The table the limit was read from: `limits` in a manifest; a host
    /// configuration names its own (e.g. `max_limits`).
    pub section: &'static str,
    /// The field, e.g. `timeout_ms`.
    pub field: &'static str,
    /// Its value, in the field's unit.
    pub value: u64,
    /// The largest value allowed.
    pub max: u64,
}

impl LimitOutOfRange {
    /// The same error, reported under the table `section`.
    pub fn in_section(self, section: &'static str) -> Self {
        Self { section, ..self }
    }
}

/// A `permissions.network` entry that is not `host:port` or `host:*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network entry `{0}` must be `host:port` or `host:*`")]
pub struct InvalidEndpoint(pub String);

/// The limits a host applies to manifests: defaults for what a manifest leaves
/// out, and the maximum it may ask for.
#[derive(Debug, Clone)]
pub struct LimitPolicy {
    /// Used where `[limits]` is silent.
    pub defaults: Limits,
    /// The largest value each limit may have; a manifest above it does not load.
    pub max: Limits,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        Self { defaults: Limits::default(), max: Limits::default_max() }
    }
}

/// A directory granted to a WASM plugin.
#[derive(Debug, Clone, Serialize)]
pub struct DirGrant {
    /// Absolute host path.
    pub host: PathBuf,
    /// Path inside the component.
    pub guest: String,
    /// Read-only or read-write.
    pub access: DirAccess,
}

/// What a WASM plugin may touch outside its sandbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Permissions {
    /// Granted directories.
    pub dirs: Vec<DirGrant>,
    /// Environment variables passed through by name.
    pub env: Vec<String>,
    /// Which addresses TCP and UDP may reach, and whether names may be looked up.
    pub network: Network,
    /// Whether the plugin may use the orchestration host services (both
    /// kinds; the plugin must also declare the `orchestration` capability).
    pub orchestration: bool,
    /// The secrets its `[config]` may name as `${{ secrets.NAME }}` (both
    /// kinds): the operator's grant, so that a plugin folder from someone
    /// else cannot ask for a secret nobody gave it.
    pub secrets: Vec<String>,
}

/// The network grant of a WASM plugin. Serialized as written in the manifest:
/// `false`, `true` or a list of `"host:port"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// No sockets, no name lookups (the default).
    #[default]
    None,
    /// TCP and UDP to any address, and name lookups.
    Any,
    /// TCP and UDP only to these endpoints; name lookups allowed when one is a name.
    Allow(Vec<Endpoint>),
}

impl Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Network::None => serializer.serialize_bool(false),
            Network::Any => serializer.serialize_bool(true),
            Network::Allow(list) => serializer.collect_seq(list.iter().map(ToString::to_string)),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => write!(f, "{host}:*"),
        }
    }
}

/// One `host:port` of a network allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// A host name or an IP address.
    pub host: String,
    /// The port; `None` for `*` (any port).
    pub port: Option<u16>,
}

impl Endpoint {
    /// Parse `host:port`, `host:*`, `[v6]:port`.
    ///
    /// # Errors
    /// [`InvalidEndpoint`], naming the entry.
    pub fn parse(text: &str) -> Result<Self, InvalidEndpoint> {
        let bad = || InvalidEndpoint(text.to_owned());
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        let port = match port {
            "*" => None,
            p => Some(p.parse::<u16>().map_err(|_| bad())?),
        };
        Ok(Self { host: host.to_ascii_lowercase(), port })
    }
}

/// A validated `plugin.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The plugin folder.
    pub dir: PathBuf,
    /// Plugin id.
    pub id: String,
    /// Plugin version.
    pub version: semver::Version,
    /// Native or WASM.
    pub kind: PluginKind,
    /// Absolute path of the artifact.
    pub artifact: PathBuf,
    /// Contract versions the plugin accepts, if stated.
    pub contract: Option<semver::VersionReq>,
    /// Expected sha256 of the artifact, lowercase hex.
    pub sha256: Option<String>,
    /// `[config]` as written (what is shown: its `${{ secrets.NAME }}`
    /// references stay references).
    pub config: Value,
    /// `[config]` with its secrets resolved, when it references any (set by
    /// the loader from the host's [`crate::secrets::SecretSource`]); never
    /// serialised or printed. Calls get [`Self::call_config`].
    #[serde(skip)]
    pub resolved: Option<Arc<ResolvedConfig>>,
    /// Resource limits.
    pub limits: Limits,
    /// Sandbox grants (WASM only).
    pub permissions: Permissions,
    /// How a native plugin runs, if the manifest says (`None`: the host's
    /// default, see [`crate::HostBuilder::native_isolation`]).
    pub isolation: Option<Isolation>,
    /// Its worker processes, when it runs in them.
    pub worker: WorkerLimits,
    /// Whether a WASM plugin's instances serve more than one call.
    pub instances: Instances,
    /// Other names a workflow step may call it by (see [`crate::Host::resolve`]):
    /// each 1 to [`MAX_ALIAS_LEN`] ASCII letters, digits, `-`, `_`, `.`; at
    /// most [`MAX_ALIASES`].
    pub aliases: Vec<String>,
}

/// A plugin's `[config]` with its secrets' values in place.
pub struct ResolvedConfig {
    /// The configuration calls get.
    pub config: Value,
    /// The secrets it holds (to redact what the plugin reports).
    pub secrets: Vec<crate::secrets::SecretValue>,
}

impl std::fmt::Debug for ResolvedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResolvedConfig({} secrets)", self.secrets.len())
    }
}

/// The most aliases a manifest may declare.
pub const MAX_ALIASES: usize = 64;
/// The longest alias, in bytes.
pub const MAX_ALIAS_LEN: usize = 200;

impl Manifest {
    /// The configuration a call gets: `[config]` with its secrets resolved.
    pub fn call_config(&self) -> &Value {
        self.resolved.as_ref().map_or(&self.config, |r| &r.config)
    }

    /// The secrets `[config]` holds (empty when it references none).
    pub fn config_secrets(&self) -> &[crate::secrets::SecretValue] {
        self.resolved.as_ref().map_or(&[], |r| &r.secrets)
    }

    /// Read and validate `dir/plugin.toml`.
    ///
    /// # Errors
    /// [`LoadErrorKind::ReadManifest`] when the file cannot be read,
    /// [`LoadErrorKind::InvalidManifest`] for bad TOML, unknown fields or values.
    pub fn load(dir: &Path) -> Result<Self, LoadErrorKind> {
        Self::load_with(dir, &LimitPolicy::default())
    }

    /// The manifest of an artifact loaded on its own (see
    /// [`crate::HostBuilder::artifact`]): kind by extension (`.wasm`: a
    /// component; anything else: a native library), the default limits of
    /// `policy`, no grants, no configuration, and an empty id: the loader
    /// takes the id and version from the plugin's metadata.
    pub fn for_artifact(artifact: &Path, policy: &LimitPolicy) -> Self {
        let artifact = std::path::absolute(artifact).unwrap_or_else(|_| artifact.to_owned());
        let kind =
            if artifact.extension().is_some_and(|e| e == "wasm") { PluginKind::Wasm } else { PluginKind::Native };
        Self {
            dir: artifact.parent().map(Path::to_path_buf).unwrap_or_default(),
            id: String::new(),
            version: semver::Version::new(0, 0, 0),
            kind,
            artifact,
            contract: None,
            sha256: None,
            config: Value::Null,
            limits: policy.defaults.clone(),
            permissions: Permissions::default(),
            isolation: None,
            worker: WorkerLimits::default(),
            instances: Instances::default(),
            aliases: Vec::new(),
            resolved: None,
        }
    }

    /// [`Self::load`] with the host's `policy`: defaults for the limits the
    /// manifest leaves out (the daemon's `[defaults]`) and their maximums.
    pub fn load_with(dir: &Path, policy: &LimitPolicy) -> Result<Self, LoadErrorKind> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| LoadErrorKind::ReadManifest(e.to_string()))?;
        Self::parse_with(dir, &text, policy)
    }

    /// Validate manifest `text` of the plugin folder `dir`.
    pub fn parse(dir: &Path, text: &str) -> Result<Self, LoadErrorKind> {
        Self::parse_with(dir, text, &LimitPolicy::default())
    }

    /// [`Self::parse`] with the host's limit `policy`.
    ///
    /// # Errors
    /// [`LoadErrorKind::InvalidManifest`] naming the field: bad TOML, unknown
    /// fields, a limit of 0 or above `policy.max`, relative guest paths, two
    /// grants at the same or nested guest or host paths, a bad network entry.
    pub fn parse_with(dir: &Path, text: &str, policy: &LimitPolicy) -> Result<Self, LoadErrorKind> {
        let invalid = |m: String| LoadErrorKind::InvalidManifest(m);
        let defaults = &policy.defaults;
        let raw: RawManifest = toml::from_str(text).map_err(|e| invalid(one_line(&e.to_string())))?;
        if raw.id.trim().is_empty() || raw.id.chars().any(char::is_whitespace) {
            return Err(invalid(format!("id `{}` must be non-empty and contain no spaces", raw.id)));
        }
        let version = semver::Version::parse(&raw.version)
            .map_err(|e| invalid(format!("version `{}` is not semver: {e}", raw.version)))?;
        let contract = raw
            .contract
            .as_deref()
            .map(|c| {
                semver::VersionReq::parse(c)
                    .map_err(|e| invalid(format!("contract `{c}` is not a semver requirement: {e}")))
            })
            .transpose()?;
        let sha256 = match raw.sha256 {
            Some(h) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => Some(h.to_ascii_lowercase()),
            Some(h) => return Err(invalid(format!("sha256 `{h}` is not 64 hex digits"))),
            None => None,
        };
        let config = match raw.config {
            Some(table) => serde_json::to_value(table).map_err(|e| invalid(format!("[config]: {e}")))?,
            None => Value::Null,
        };
        let limits = raw.limits.over(defaults.clone());
        limits.check_within(&policy.max).map_err(|e| invalid(e.to_string()))?;
        if raw.kind == PluginKind::Native
            && (raw.permissions.as_ref().is_some_and(RawPermissions::sandboxed) || raw.limits.memory_mib.is_some())
        {
            return Err(invalid(
                "[permissions] dirs, env, network and limits.memory_mib apply to wasm plugins only: native plugins are trusted code, not sandboxed \
             (a native plugin's worker processes are capped in [worker])"
                .into(),
            ));
        }
        if raw.kind != PluginKind::Native && (raw.isolation.is_some() || raw.worker.is_some()) {
            return Err(invalid(
                "isolation and [worker] apply to native plugins only: a wasm plugin is sandboxed by the host".into(),
            ));
        }
        if raw.worker.is_some() && raw.isolation == Some(Isolation::InProcess) {
            return Err(invalid(
                "[worker] needs isolation = \"process\": this plugin runs in the host's process".into(),
            ));
        }
        let worker = raw.worker.as_ref().map(|w| w.check(dir)).transpose().map_err(invalid)?.unwrap_or_default();
        if raw.kind != PluginKind::Wasm && raw.instances.is_some() {
            return Err(invalid("[instances] applies to wasm plugins only".into()));
        }
        let instances =
            raw.instances.as_ref().map(RawInstances::check).transpose().map_err(invalid)?.unwrap_or_default();
        if raw.aliases.len() > MAX_ALIASES {
            return Err(invalid(format!("aliases: {} names, at most {MAX_ALIASES}", raw.aliases.len())));
        }
        for alias in &raw.aliases {
            let valid = !alias.is_empty()
                && alias.len() <= MAX_ALIAS_LEN
                && alias.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid {
                return Err(invalid(format!(
                    "aliases: `{alias}`: use 1 to {MAX_ALIAS_LEN} letters, digits, `-`, `_`, `.`"
                )));
            }
            if *alias == raw.id {
                return Err(invalid(format!("aliases: `{alias}` is the plugin's own id")));
            }
        }
        let permissions = match raw.permissions {
            None => Permissions::default(),
            Some(p) => Permissions {
                dirs: dir_grants(dir, p.dirs).map_err(invalid)?,
                env: p.env,
                network: match p.network {
                    RawNetwork::Switch(false) => Network::None,
                    RawNetwork::Switch(true) => Network::Any,
                    RawNetwork::Allow(list) => Network::Allow(
                        list.iter()
                            .map(|e| Endpoint::parse(e).map_err(|m| invalid(format!("permissions.{m}"))))
                            .collect::<Result<_, _>>()?,
                    ),
                },
                orchestration: p.orchestration,
                secrets: {
                    for name in &p.secrets {
                        crate::secrets::check_name(name).map_err(|e| invalid(format!("permissions.secrets: {e}")))?;
                    }
                    p.secrets
                },
            },
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            id: raw.id,
            version,
            kind: raw.kind,
            artifact: dir.join(raw.artifact),
            contract,
            sha256,
            config,
            limits,
            permissions,
            // A Landlock sandbox is the manifest's requirement, not a host
            // default to override: such a plugin always runs in workers.
            isolation: if worker.landlock.is_some() { Some(Isolation::Process) } else { raw.isolation },
            worker,
            instances,
            aliases: raw.aliases,
            resolved: None,
        })
    }
}

/// Resolve `dirs` against the plugin folder and refuse relative guest paths and
/// grants that share or nest a guest path or (lexically) a host path. The
/// host paths are checked again after resolving symbolic links when the
/// plugin loads.
fn dir_grants(folder: &Path, dirs: Vec<RawDir>) -> Result<Vec<DirGrant>, String> {
    let grants: Vec<DirGrant> = dirs
        .into_iter()
        .map(|d| {
            let guest = normalize(Path::new(&d.guest));
            if !guest.is_absolute() {
                return Err(format!("permissions.dirs: guest path `{}` must be absolute", d.guest));
            }
            Ok(DirGrant {
                host: normalize(&folder.join(d.host)),
                guest: guest.to_string_lossy().into_owned(),
                access: d.access,
            })
        })
        .collect::<Result<_, _>>()?;
    for (i, a) in grants.iter().enumerate() {
        for b in &grants[i + 1..] {
            if nested(Path::new(&a.guest), Path::new(&b.guest)) {
                return Err(format!(
                    "permissions.dirs: guest paths `{}` and `{}` are the same or nested; each grant needs its own",
                    a.guest, b.guest
                ));
            }
            if nested(&a.host, &b.host) {
                return Err(format!(
                    "permissions.dirs: host directories {} and {} are the same or nested; grant one directory once",
                    a.host.display(),
                    b.host.display()
                ));
            }
        }
    }
    Ok(grants)
}

/// Whether `a` and `b` are the same path or one contains the other.
pub(crate) fn nested(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// `path` with symbolic links resolved; for a path that does not exist (yet),
/// its parent resolved and its name appended, so it still compares with
/// resolved paths (grants, protected paths, the state database's lock).
pub fn resolve(path: &Path) -> PathBuf {
    if let Ok(resolved) = path.canonicalize() {
        return resolved;
    }
    let parent = path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p });
    match (parent.and_then(|p| p.canonicalize().ok()), path.file_name()) {
        (Some(parent), Some(name)) => parent.join(name),
        _ => path.to_path_buf(),
    }
}

/// `path` with `.` removed and `..` applied lexically (no file-system access).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Collapse a multi-line message (toml's errors quote the source) into one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Serialize a duration as whole milliseconds (for `#[serde(serialize_with)]`).
///
/// # Errors
/// The serializer's.
pub fn serialize_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, LoadErrorKind> {
        Manifest::parse(Path::new("/plugins/p"), text)
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse("id = \"a.b\"\nversion = \"1.2.3\"\nkind = \"wasm\"\nartifact = \"a.wasm\"\n").unwrap();
        assert_eq!(m.artifact, Path::new("/plugins/p/a.wasm"));
        assert_eq!(m.limits.memory_bytes, 64 << 20);
        assert_eq!(m.limits.timeout, Duration::from_secs(30));
        assert!(m.permissions.dirs.is_empty() && m.permissions.network == Network::None);
    }

    #[test]
    fn isolation_worker_and_instances_belong_to_their_kind_and_have_ceilings() {
        let native = "id = \"a\"\nversion = \"1.0.0\"\nkind = \"native\"\nartifact = \"a.so\"\n";
        let wasm = "id = \"a\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"a.wasm\"\n";
        let m = parse(&format!("{native}isolation = \"process\"\n[worker]\nmax = 2\nmemory_mib = 512\n")).unwrap();
        assert_eq!(m.isolation, Some(Isolation::Process));
        assert_eq!((m.worker.max, m.worker.memory_bytes, m.worker.no_new_privs), (2, Some(512 << 20), true));
        assert_eq!(parse(native).unwrap().isolation, None, "the host's default applies");
        // A Landlock sandbox always runs in workers; its paths are resolved against the folder.
        let m =
            parse(&format!("{native}[worker.landlock]\nread = [\"/srv/ref\", \"data/../in\"]\nwrite = [\"out\"]\n"))
                .unwrap();
        assert_eq!(m.isolation, Some(Isolation::Process));
        let sandbox = m.worker.landlock.unwrap();
        assert_eq!(sandbox.read, [PathBuf::from("/srv/ref"), m.dir.join("in")]);
        assert_eq!((sandbox.write, sandbox.tcp), (vec![m.dir.join("out")], false));
        let m = parse(&format!("{wasm}[instances]\nreuse = \"execution\"\n")).unwrap();
        assert_eq!((m.instances.reuse, m.instances.max_calls), (Reuse::Execution, DEFAULT_INSTANCE_CALLS));
        for (text, why) in [
            (format!("{wasm}isolation = \"process\"\n"), "native plugins only"),
            (format!("{native}isolation = \"in-process\"\n[worker]\nmax = 2\n"), "needs isolation = \"process\""),
            (format!("{native}[worker]\nmax = 65\n"), "worker.max must be 1..=64, not 65"),
            (format!("{native}[worker]\nmemory_mib = 1\n"), "worker.memory_mib must be 64..="),
            (format!("{native}[worker]\ncpu_seconds = 0\n"), "worker.cpu_seconds must be 1..="),
            (format!("{native}[instances]\n"), "[instances] applies to wasm plugins only"),
            (format!("{wasm}[instances]\nmax_calls = 0\n"), "instances.max_calls must be 1..=1000000, not 0"),
            (format!("{wasm}[instances]\nmax_age_ms = 86400001\n"), "instances.max_age_ms must be 1..="),
            (format!("{wasm}[instances]\nreuse = \"forever\"\n"), "unknown variant `forever`"),
            (format!("{wasm}[worker.landlock]\n"), "native plugins only"),
            (format!("{native}isolation = \"in-process\"\n[worker.landlock]\n"), "needs isolation = \"process\""),
            (format!("{native}[worker.landlock]\nnetwork = true\n"), "unknown field `network`"),
            (format!("{native}[worker.landlock]\nread = [{}]\n", vec!["\"a\""; 65].join(",")), "at most 64"),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err =
            parse("id = \"a\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"a\"\ncolour = 1\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let base = "id = \"a\"\nkind = \"wasm\"\nartifact = \"a\"\n";
        assert!(parse(&format!("{base}version = \"one\"\n")).unwrap_err().to_string().contains("semver"));
        let e = parse(&format!("{base}version = \"1.0.0\"\nsha256 = \"xyz\"\n")).unwrap_err();
        assert!(e.to_string().contains("64 hex"), "{e}");
        let e = parse(&format!("{base}version = \"1.0.0\"\n[limits]\nmemory_mib = 0\n")).unwrap_err();
        assert!(e.to_string().contains("memory_mib"), "{e}");
        let native =
            "id = \"a\"\nversion = \"1.0.0\"\nkind = \"native\"\nartifact = \"a.so\"\n[permissions]\nnetwork = true\n";
        assert!(parse(native).unwrap_err().to_string().contains("wasm plugins only"));
    }

    #[test]
    fn limits_have_ceilings_that_name_the_field() {
        let base = "id = \"a\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"a\"\n[limits]\n";
        for (line, field) in [
            ("timeout_ms = 18446744073709551615", "timeout_ms"),
            ("timeout_ms = 0", "timeout_ms"),
            ("output_bytes = 18446744073709551615", "output_bytes"),
            ("memory_mib = 18446744073709551615", "memory_mib"),
            ("state_bytes = 18446744073709551615", "state_bytes"),
            ("log_bytes = 0", "log_bytes"),
            ("handles = 100000", "handles"),
        ] {
            let err = parse(&format!("{base}{line}\n")).unwrap_err().to_string();
            assert!(err.contains(&format!("limits.{field}")) && err.contains("maximum"), "{line}: {err}");
        }
        let tight = LimitPolicy {
            defaults: Limits::default(),
            max: Limits { timeout: Duration::from_secs(5), ..Limits::default_max() },
        };
        let err = Manifest::parse_with(Path::new("/p"), &format!("{base}timeout_ms = 6000\n"), &tight).unwrap_err();
        assert!(err.to_string().contains("1..=5000"), "{err}");
    }

    #[test]
    fn nested_or_shared_grants_are_refused() {
        let base = "id = \"a\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"a\"\n[permissions]\n";
        for dirs in [
            r#"[{ host = "work", guest = "/w", access = "read-write" }, { host = "work/inner", guest = "/i" }]"#,
            r#"[{ host = "work/./inner/..", guest = "/w" }, { host = "work", guest = "/i" }]"#,
            r#"[{ host = "a", guest = "/data" }, { host = "b", guest = "/data" }]"#,
            r#"[{ host = "a", guest = "/data" }, { host = "b", guest = "/data/b" }]"#,
        ] {
            let err = parse(&format!("{base}dirs = {dirs}\n")).unwrap_err().to_string();
            assert!(err.contains("nested"), "{dirs}: {err}");
        }
        assert!(
            parse(&format!(
                "{base}dirs = [{{ host = \"a\", guest = \"/a\" }}, {{ host = \"ab\", guest = \"/ab\" }}]\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn network_is_a_switch_or_an_allowlist() {
        let base = "id = \"a\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"a\"\n[permissions]\n";
        assert_eq!(parse(&format!("{base}network = true\n")).unwrap().permissions.network, Network::Any);
        let m = parse(&format!("{base}network = [\"API.example.com:443\", \"127.0.0.1:*\", \"[::1]:80\"]\n")).unwrap();
        let Network::Allow(list) = m.permissions.network else { panic!("an allowlist") };
        assert_eq!(list[0], Endpoint { host: "api.example.com".into(), port: Some(443) });
        assert_eq!(list[1], Endpoint { host: "127.0.0.1".into(), port: None });
        assert_eq!(list[2], Endpoint { host: "::1".into(), port: Some(80) });
        let json = serde_json::to_value(Network::Allow(list)).unwrap();
        assert_eq!(json, serde_json::json!(["api.example.com:443", "127.0.0.1:*", "[::1]:80"]));
        assert_eq!(serde_json::to_value(Network::None).unwrap(), serde_json::json!(false));
        for bad in ["\"example.com\"", "\"example.com:http\"", "\":80\"", "\"a:70000\""] {
            let err = parse(&format!("{base}network = [{bad}]\n")).unwrap_err().to_string();
            assert!(err.contains("permissions.network entry"), "{bad}: {err}");
        }
    }

    #[test]
    fn permissions_resolve_relative_to_the_folder() {
        let m = parse(
            "id = \"a\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"a\"\n[permissions]\ndirs = [{ host = \"data\", guest = \"/data\" }]\nenv = [\"LANG\"]\n",
        )
        .unwrap();
        assert_eq!(m.permissions.dirs[0].host, Path::new("/plugins/p/data"));
        assert_eq!(m.permissions.dirs[0].access, DirAccess::ReadOnly);
        assert_eq!(m.permissions.env, ["LANG"]);
    }
}
