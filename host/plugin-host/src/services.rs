//! Host services a plugin can call back during a call: log, shared state,
//! progress, cancellation and orchestration. One [`CallServices`] per call;
//! the shared state and the cancel token belong to the execution and outlive it.

use plexus_sdk::{ArtifactHandle, ArtifactRef, HostServices, LogLevel, Orchestration, PluginError};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

/// The shared state of one execution: a JSON object every step can read and write.
#[derive(Debug, Clone, Default)]
pub struct SharedState(Arc<Mutex<StateInner>>);

#[derive(Debug, Default)]
struct StateInner {
    map: Map<String, Value>,
    /// Bumped by every `set`, so a journal writes the state only when it changed.
    version: u64,
    /// The version at which each key was last set (0: it came with the state).
    set_at: std::collections::HashMap<String, u64>,
    /// Bytes of each key plus its value's JSON text, and their sum.
    sizes: std::collections::HashMap<String, u64>,
    bytes: u64,
}

/// A shared-state write refused because the state would exceed its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared state would grow to {wanted} bytes, past its limit of {limit} bytes (limits.state_bytes)")]
pub struct StateLimitExceeded {
    /// The size the write would have made, in bytes.
    pub wanted: u64,
    /// The limit, in bytes.
    pub limit: u64,
}

fn entry_size(key: &str, value: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(key.len() as u64);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

impl SharedState {
    /// A state holding `map` (an execution resumed from the store).
    pub fn from_map(map: Map<String, Value>) -> Self {
        let sizes: std::collections::HashMap<String, u64> =
            map.iter().map(|(k, v)| (k.clone(), entry_size(k, v))).collect();
        let bytes = sizes.values().sum();
        Self(Arc::new(Mutex::new(StateInner { map, version: 0, set_at: Default::default(), sizes, bytes })))
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, StateInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.lock().map.get(key).cloned()
    }
    /// Set `key` to `value` (the host's own writes: no limit).
    pub fn set(&self, key: &str, value: Value) {
        let _ = self.set_within(key, value, u64::MAX);
    }
    /// Set `key` to `value` unless the state (keys plus the JSON text of the
    /// values) would then exceed `limit` bytes; a refused write changes nothing.
    pub fn set_within(&self, key: &str, value: Value, limit: u64) -> Result<(), StateLimitExceeded> {
        let size = entry_size(key, &value);
        let mut inner = self.lock();
        let old = inner.sizes.get(key).copied().unwrap_or(0);
        let wanted = inner.bytes - old + size;
        if wanted > limit && size > old {
            return Err(StateLimitExceeded { wanted, limit });
        }
        inner.map.insert(key.to_owned(), value);
        inner.sizes.insert(key.to_owned(), size);
        inner.bytes = wanted;
        inner.version += 1;
        let version = inner.version;
        inner.set_at.insert(key.to_owned(), version);
        Ok(())
    }
    /// The state's size: keys plus the JSON text of the values, in bytes.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
    /// A copy of the whole state.
    pub fn snapshot(&self) -> Map<String, Value> {
        self.lock().map.clone()
    }
    /// The state and its version if it changed since version `seen` (0 = never seen).
    pub fn changed_since(&self, seen: u64) -> Option<(u64, Map<String, Value>)> {
        let inner = self.lock();
        (inner.version != seen).then(|| (inner.version, inner.map.clone()))
    }
    /// The keys set after version `seen`, with their values, and the current
    /// version; `None` if nothing was set since. A journal writes these
    /// (the state's change), not the whole state, so a pipeline whose every
    /// step adds to the state does not write it again whole at every step.
    pub fn changes_since(&self, seen: u64) -> Option<(u64, Map<String, Value>)> {
        let inner = self.lock();
        if inner.version == seen {
            return None;
        }
        let changed = inner
            .map
            .iter()
            .filter(|(k, _)| inner.set_at.get(*k).is_some_and(|&at| at > seen))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some((inner.version, changed))
    }
}

/// The signal the host raises to ask an execution (or one call) to stop:
/// tokio-util's [`CancellationToken`](tokio_util::sync::CancellationToken).
/// Cheap to clone; clones share the signal. Plugins poll it
/// (`is_cancelled`), the engine awaits it (`cancelled().await`), and a child
/// token (`child_token()`) stops with its parent.
pub type CancelToken = tokio_util::sync::CancellationToken;

/// Receives a plugin's progress reports: `(fraction in 0.0..=1.0, message)`.
pub type ProgressSink = Arc<dyn Fn(f64, &str) + Send + Sync>;

/// The per-call budget of the host services (see [`crate::manifest::Limits`]).
#[derive(Debug)]
struct Budget {
    state_bytes: u64,
    log_bytes_left: std::sync::atomic::AtomicU64,
    log_bytes_dropped: std::sync::atomic::AtomicU64,
    /// The first limit a call broke where it could not be refused on the spot
    /// (a native plugin's `state_set` returns nothing): the call fails with it.
    violation: Mutex<Option<StateLimitExceeded>>,
    /// Orchestration requests the call may still make.
    orchestration_left: std::sync::atomic::AtomicU32,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            state_bytes: crate::manifest::DEFAULT_STATE_BYTES,
            log_bytes_left: crate::manifest::DEFAULT_LOG_BYTES.into(),
            log_bytes_dropped: 0.into(),
            violation: Mutex::new(None),
            orchestration_left: plexus_sdk::MAX_ORCHESTRATION_REQUESTS_PER_CALL.into(),
        }
    }
}

/// Where plugins' orchestration requests go (the daemon implements it; see
/// [`crate::Host::set_orchestrator`]). Contract 0.3's `start-workflow`,
/// `execution-status`, `create-schedule` and `cancel-schedule`.
pub trait Orchestrator: Send + Sync {
    /// Do `request` for `caller`. Blocking: called on the plugin's call
    /// thread (never on an async runtime's worker).
    ///
    /// # Errors
    /// `not-found` / `invalid-input` for what the request names, `failed` otherwise.
    fn orchestrate(&self, caller: &Caller<'_>, request: Orchestration) -> Result<Value, PluginError>;
}

/// Who makes an orchestration request.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The calling plugin's id.
    pub plugin: &'a str,
    /// The execution its call belongs to.
    pub execution: &'a str,
}

/// Whether a call may orchestrate, and through what.
#[derive(Clone, Default)]
pub enum OrchestrationAccess {
    /// The host has no orchestrator (`plexus call`, `plexus run`).
    #[default]
    NoOrchestrator,
    /// Refused: the plugin does not declare the `orchestration` capability.
    NotDeclared,
    /// Refused: the plugin's manifest does not grant orchestration.
    NotGranted,
    /// Refused, and why.
    Denied(Arc<str>),
    /// Allowed, through this orchestrator.
    Allowed(Arc<dyn Orchestrator>),
}

/// The host services of one call, tagged with the plugin and execution ids.
#[derive(Clone)]
pub struct CallServices {
    plugin_id: Arc<str>,
    execution_id: Arc<str>,
    state: SharedState,
    // Behind `Arc`s: cloning a token itself takes its tree's lock, and
    // services are cloned a few times per call.
    cancel: Arc<CancelToken>,
    interrupted: Arc<CancelToken>,
    progress: Option<ProgressSink>,
    budget: Arc<Budget>,
    kind: Option<crate::manifest::PluginKind>,
    /// What the call used, as its runtime measured it (shared by clones).
    usage: Arc<Mutex<CallUsage>>,
    /// Whether the host measures the calling thread's CPU time around the
    /// call (two system calls, ~0.5 µs: asked for by the workflow engine,
    /// not by plain calls).
    measure_cpu: bool,
    /// Whether the call may orchestrate (set per call by [`crate::Host::call_with`]).
    orchestration: OrchestrationAccess,
    /// The host's artifacts, and the step the call runs for (`None`: this
    /// host offers none).
    artifacts: Option<(crate::artifacts::Artifacts, Option<Arc<str>>)>,
    /// The call's artifact writers and readers (fresh per call).
    call_artifacts: Arc<Mutex<CallArtifacts>>,
}

/// The artifacts one call has open and has written.
#[derive(Debug, Default)]
struct CallArtifacts {
    next: u32,
    /// Bytes the call's artifacts may have together (`limits.artifact_bytes`).
    limit: u64,
    /// Bytes of the artifacts it finished.
    spent: u64,
    /// Artifacts opened (each a look-up in the store).
    opened: usize,
    writers: std::collections::HashMap<u32, Writer>,
    readers: std::collections::HashMap<u32, Reader>,
    /// Artifacts created, finished or not.
    created: usize,
    finished: Vec<plexus_sdk::ArtifactRef>,
}

#[derive(Debug)]
struct Writer {
    name: String,
    media_type: Option<String>,
    temp: std::path::PathBuf,
    /// Open once the host writes to it (a WASM component's bytes); a native
    /// plugin writes the file itself.
    file: Option<std::fs::File>,
    written: u64,
    /// Why a write failed: the artifact is then refused at its finish.
    broken: Option<String>,
}

#[derive(Debug)]
struct Reader {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

/// Most readers one call reads at once (each a file descriptor).
const MAX_OPEN_READERS: usize = 64;

/// Most artifacts one call may open (each a look-up in the store).
pub const MAX_ARTIFACT_OPENS_PER_CALL: usize = 1024;

impl Drop for CallArtifacts {
    fn drop(&mut self) {
        // Writers never finished: their bytes go.
        for writer in self.writers.values() {
            let _ = std::fs::remove_file(&writer.temp);
        }
    }
}

/// What one call used, where its runtime can measure it (`None`: not
/// measured). See [`CallServices::usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallUsage {
    /// CPU time, ms: the calling thread's for WASM and in-process native
    /// plugins (the plugin runs on it; measured when the services ask for
    /// it, see [`CallServices::with_cpu_measured`]), the worker process's
    /// user + system time for native plugins in worker processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<f64>,
    /// Peak memory, bytes: a WASM instance's linear memories at the end of
    /// the call (they never shrink: their high-water mark); a worker
    /// process's peak resident set so far (`ru_maxrss`: its high-water mark
    /// over every call it served, this one included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
}

impl CallUsage {
    /// Both together: CPU times add up, the peak is the larger (a step's
    /// attempts, or the parts of one call).
    pub fn merged(self, other: CallUsage) -> CallUsage {
        let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        CallUsage {
            cpu_ms: add(self.cpu_ms, other.cpu_ms),
            peak_memory_bytes: self.peak_memory_bytes.max(other.peak_memory_bytes),
        }
    }
}

impl CallServices {
    /// Services for a call of `plugin_id` within `execution_id`.
    pub fn new(plugin_id: &str, execution_id: &str, state: SharedState, cancel: CancelToken) -> Self {
        Self {
            plugin_id: plugin_id.into(),
            execution_id: execution_id.into(),
            state,
            cancel: Arc::new(cancel),
            interrupted: Arc::default(),
            progress: None,
            budget: Arc::default(),
            kind: None,
            usage: Arc::default(),
            measure_cpu: false,
            orchestration: OrchestrationAccess::NoOrchestrator,
            artifacts: None,
            call_artifacts: Arc::default(),
        }
    }

    /// These services with the host's `artifacts`, for a call of step `step`
    /// (recorded with what it writes).
    pub fn with_artifacts(mut self, artifacts: crate::artifacts::Artifacts, step: Option<&str>) -> Self {
        self.artifacts = Some((artifacts, step.map(Arc::from)));
        self
    }

    /// The artifacts the call finished, in order.
    pub fn artifacts_written(&self) -> Vec<plexus_sdk::ArtifactRef> {
        self.call_artifacts.lock().unwrap_or_else(PoisonError::into_inner).finished.clone()
    }

    fn call_artifacts(&self) -> std::sync::MutexGuard<'_, CallArtifacts> {
        self.call_artifacts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn artifact_store(&self) -> Result<&crate::artifacts::Artifacts, PluginError> {
        self.artifacts
            .as_ref()
            .map(|(a, _)| a)
            .ok_or_else(|| PluginError::failed("this host offers no artifact store (the daemon and `plexus run` do)"))
    }

    /// These services with `access` to orchestration.
    pub fn with_orchestration(mut self, access: OrchestrationAccess) -> Self {
        self.orchestration = access;
        self
    }

    /// These services asking the host to measure the call's CPU time on the
    /// calling thread too (WASM and in-process native plugins; see [`CallUsage`]).
    pub fn with_cpu_measured(mut self) -> Self {
        self.measure_cpu = true;
        self
    }

    /// Whether the call's CPU time on the calling thread is measured.
    pub fn measures_cpu(&self) -> bool {
        self.measure_cpu
    }

    /// What the calls made with these services used so far (see [`CallUsage`]).
    pub fn usage(&self) -> CallUsage {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add what a call used (by its runtime, or the host around it).
    pub fn record_usage(&self, usage: CallUsage) {
        let mut total = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        *total = total.merged(usage);
    }

    /// These services for a call of the plugin as `kind` (for a plugin
    /// loaded as both kinds; `None`: the preferred kind, see
    /// [`crate::PluginKind::PREFERENCE`]).
    pub fn with_kind(mut self, kind: Option<crate::manifest::PluginKind>) -> Self {
        self.kind = kind;
        self
    }

    /// The kind the call asks for, if any.
    pub fn kind(&self) -> Option<crate::manifest::PluginKind> {
        self.kind
    }
    /// These services with a fresh budget for one call of a plugin with `limits`
    /// (shared-state size, log bytes). [`crate::Host::call_with`] does this for every call.
    pub fn for_call(&self, limits: &crate::manifest::Limits) -> Self {
        let mut services = self.clone();
        services.budget = Arc::new(Budget {
            state_bytes: limits.state_bytes,
            log_bytes_left: limits.log_bytes.into(),
            ..Budget::default()
        });
        let mut call_artifacts = CallArtifacts::default();
        call_artifacts.limit = limits.artifact_bytes;
        services.call_artifacts = Arc::new(Mutex::new(call_artifacts));
        services
    }
    /// Set `key` in the shared state within this call's `limits.state_bytes`.
    ///
    /// # Errors
    /// [`StateLimitExceeded`]; the state is unchanged.
    pub fn try_state_set(&self, key: &str, value: Value) -> Result<(), StateLimitExceeded> {
        self.state.set_within(key, value, self.budget.state_bytes)
    }
    /// The limit this call broke without being stopped on the spot, if any.
    pub fn violation(&self) -> Option<StateLimitExceeded> {
        self.budget.violation.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
    /// Log bytes this call sent past `limits.log_bytes`, which were dropped.
    pub fn log_bytes_dropped(&self) -> u64 {
        self.budget.log_bytes_dropped.load(Ordering::Relaxed)
    }
    /// Take `n` bytes from the log budget; `false` (and counted as dropped) when it is spent.
    fn take_log_budget(&self, n: u64) -> bool {
        let taken =
            self.budget.log_bytes_left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(n));
        if taken.is_err() {
            self.budget.log_bytes_left.store(0, Ordering::Relaxed);
            self.budget.log_bytes_dropped.fetch_add(n, Ordering::Relaxed);
        }
        taken.is_ok()
    }
    /// Ask this call alone to stop (its timeout expired); the execution goes on.
    pub fn interrupt(&self) {
        self.interrupted.cancel();
    }
    /// Whether the execution was cancelled or this call interrupted.
    pub fn should_stop(&self) -> bool {
        self.cancel.is_cancelled() || self.interrupted.is_cancelled()
    }
    /// Whether the execution (not just this call) was cancelled.
    pub fn execution_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
    /// Send progress reports to `sink` (they are always logged at debug level too).
    pub fn with_progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }
    /// The plugin id.
    pub fn plugin_id(&self) -> &str {
        &self.plugin_id
    }
    /// The execution's shared state.
    pub fn state(&self) -> &SharedState {
        &self.state
    }
}

impl HostServices for CallServices {
    fn log(&self, level: LogLevel, message: &str) {
        if !self.take_log_budget(message.len() as u64) {
            return;
        }
        let (plugin, execution) = (&*self.plugin_id, &*self.execution_id);
        let message = crate::secrets::redactor().text(message);
        match level {
            LogLevel::Trace => tracing::trace!(target: "plexus::plugin", plugin, execution, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plexus::plugin", plugin, execution, "{message}"),
            LogLevel::Info => tracing::info!(target: "plexus::plugin", plugin, execution, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plexus::plugin", plugin, execution, "{message}"),
            LogLevel::Error => tracing::error!(target: "plexus::plugin", plugin, execution, "{message}"),
        }
    }
    fn state_get(&self, key: &str) -> Option<Value> {
        self.state.get(key)
    }
    fn state_set(&self, key: &str, value: Value) {
        if let Err(e) = self.try_state_set(key, value) {
            let mut violation = self.budget.violation.lock().unwrap_or_else(PoisonError::into_inner);
            violation.get_or_insert(e);
        }
    }
    fn report_progress(&self, fraction: f64, message: &str) {
        let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
        let message = crate::secrets::redactor().text(message);
        tracing::debug!(target: "plexus::plugin", plugin = &*self.plugin_id, execution = &*self.execution_id, fraction, "progress: {message}");
        if let Some(sink) = &self.progress {
            sink(fraction, &message);
        }
    }
    fn is_cancelled(&self) -> bool {
        self.should_stop()
    }
    fn orchestrate(&self, request: &Orchestration) -> Result<Value, PluginError> {
        let orchestrator = match &self.orchestration {
            OrchestrationAccess::NoOrchestrator => {
                return Err(PluginError::failed(
                    "this host offers no orchestration services (they need the daemon: `plexus daemon`)",
                ));
            }
            // The messages are built only when a refused request comes, not per call.
            OrchestrationAccess::NotDeclared => {
                return Err(PluginError::failed(format!(
                    "plugin `{}` does not declare the `orchestration` capability",
                    self.plugin_id
                )));
            }
            OrchestrationAccess::NotGranted => {
                return Err(PluginError::failed(format!(
                    "plugin `{}` is not granted orchestration: its plugin.toml needs `[permissions] orchestration = true`",
                    self.plugin_id
                )));
            }
            OrchestrationAccess::Denied(why) => return Err(PluginError::failed(why.to_string())),
            OrchestrationAccess::Allowed(orchestrator) => orchestrator,
        };
        let left =
            self.budget.orchestration_left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if left.is_err() {
            return Err(PluginError::failed(format!(
                "more than {} orchestration requests in one call",
                plexus_sdk::MAX_ORCHESTRATION_REQUESTS_PER_CALL
            )));
        }
        tracing::debug!(target: "plexus::plugin", plugin = &*self.plugin_id, execution = &*self.execution_id,
            request = request.name(), "orchestration request");
        let caller = Caller { plugin: &self.plugin_id, execution: &self.execution_id };
        orchestrator.orchestrate(&caller, request.clone())
    }

    // A writer's bytes go to a temporary file in the store; the answer
    // names it (a native plugin writes it directly; the WASM binding hands
    // its component the id only).
    fn artifact_create(&self, name: &str, media_type: Option<&str>) -> Result<ArtifactHandle, PluginError> {
        let store = &self.artifact_store()?.store;
        plexus_sdk::check_artifact_name(name).map_err(PluginError::invalid_input)?;
        if let Some(media) = media_type
            && (media.len() > 255 || media.chars().any(char::is_control))
        {
            return Err(PluginError::invalid_input("a media type has at most 255 bytes, no control characters"));
        }
        let mut call = self.call_artifacts();
        if call.created >= plexus_sdk::MAX_ARTIFACTS_PER_CALL {
            return Err(PluginError::failed(format!(
                "more than {} artifacts in one call",
                plexus_sdk::MAX_ARTIFACTS_PER_CALL
            )));
        }
        let temp = store.temp_file().map_err(|e| PluginError::failed(format!("cannot create an artifact: {e}")))?;
        call.created += 1;
        call.next += 1;
        let id = call.next;
        let writer = Writer {
            name: name.to_owned(),
            media_type: media_type.map(str::to_owned),
            temp: temp.clone(),
            file: None,
            written: 0,
            broken: None,
        };
        call.writers.insert(id, writer);
        Ok(ArtifactHandle { id, path: Some(temp) })
    }

    fn artifact_write(&self, id: u32, data: &[u8]) -> Result<(), PluginError> {
        use std::io::Write;
        if data.len() > plexus_sdk::MAX_ARTIFACT_CHUNK_BYTES as usize {
            return Err(PluginError::invalid_input(format!(
                "an artifact chunk has at most {} bytes",
                plexus_sdk::MAX_ARTIFACT_CHUNK_BYTES
            )));
        }
        let mut call = self.call_artifacts();
        let (limit, spent) = (call.limit, call.spent);
        let writer =
            call.writers.get_mut(&id).ok_or_else(|| PluginError::not_found(format!("no artifact writer {id}")))?;
        if let Some(why) = &writer.broken {
            return Err(PluginError::failed(format!("artifact `{}`: an earlier write failed ({why})", writer.name)));
        }
        let result = if spent + writer.written + data.len() as u64 > limit {
            Err(format!("the call's artifacts would pass {limit} bytes (limits.artifact_bytes)"))
        } else {
            if writer.file.is_none() {
                let file = std::fs::OpenOptions::new().append(true).open(&writer.temp);
                writer.file = file.map_err(|e| format!("cannot write: {e}")).ok();
            }
            match writer.file.as_mut() {
                None => Err("cannot open its file".to_owned()),
                Some(file) => file.write_all(data).map_err(|e| format!("cannot write: {e}")),
            }
        };
        match result {
            Ok(()) => {
                writer.written += data.len() as u64;
                Ok(())
            }
            // A write that failed part-way leaves the artifact refused, not cut short.
            Err(why) => {
                let message = format!("artifact `{}`: {why}", writer.name);
                writer.broken = Some(why);
                Err(PluginError::failed(message))
            }
        }
    }

    fn artifact_finish(&self, id: u32) -> Result<ArtifactRef, PluginError> {
        let artifacts = self.artifact_store()?;
        let (writer, limit, spent) = {
            let mut call = self.call_artifacts();
            let writer =
                call.writers.remove(&id).ok_or_else(|| PluginError::not_found(format!("no artifact writer {id}")))?;
            (writer, call.limit, call.spent)
        };
        let failed = |what: String| {
            let _ = std::fs::remove_file(&writer.temp);
            PluginError::failed(what)
        };
        if let Some(why) = &writer.broken {
            return Err(failed(format!("artifact `{}` is refused: a write failed ({why})", writer.name)));
        }
        let left = limit.saturating_sub(spent);
        // Sealed (synced, read-only, checked to be a plain file) and hashed through one handle.
        let digest = crate::artifacts::BlobStore::seal_temp(&writer.temp)
            .and_then(|mut file| crate::artifacts::BlobStore::digest(&mut file, left))
            .map_err(|e| failed(format!("cannot read artifact `{}`: {e}", writer.name)))?;
        let Some((hex, bytes)) = digest else {
            return Err(failed(format!(
                "artifact `{}` would pass the call's {limit} bytes of artifacts (limits.artifact_bytes)",
                writer.name
            )));
        };
        let reference = ArtifactRef {
            artifact: format!("sha256:{hex}"),
            name: writer.name.clone(),
            bytes,
            media_type: writer.media_type.clone(),
        };
        let step = self.artifacts.as_ref().and_then(|(_, step)| step.as_deref());
        artifacts
            .index
            .link(&self.execution_id, step, &reference)
            .map_err(|e| failed(format!("cannot record artifact `{}`: {e}", writer.name)))?;
        artifacts
            .store
            .place(&writer.temp, &hex, bytes)
            .map_err(|e| failed(format!("cannot store artifact `{}`: {e}", writer.name)))?;
        tracing::debug!(target: "plexus::plugin", plugin = &*self.plugin_id, execution = &*self.execution_id,
            artifact = %reference.artifact, name = %reference.name, bytes, "artifact stored");
        let mut call = self.call_artifacts();
        call.spent += bytes;
        call.finished.push(reference.clone());
        Ok(reference)
    }

    fn artifact_open(&self, reference: &ArtifactRef) -> Result<ArtifactHandle, PluginError> {
        let artifacts = self.artifact_store()?;
        let not_found = || {
            PluginError::not_found(format!(
                "artifact {} (`{}`) is not one of this execution's",
                reference.artifact, reference.name
            ))
        };
        if reference.digest_hex().is_none() {
            return Err(PluginError::invalid_input(format!("`{}` is not an artifact digest", reference.artifact)));
        }
        {
            let mut call = self.call_artifacts();
            if call.opened >= MAX_ARTIFACT_OPENS_PER_CALL {
                return Err(PluginError::failed(format!(
                    "more than {MAX_ARTIFACT_OPENS_PER_CALL} artifacts opened in one call"
                )));
            }
            call.opened += 1;
        }
        let readable = artifacts
            .index
            .readable(&self.execution_id, &reference.artifact)
            .map_err(|e| PluginError::failed(format!("cannot look up artifact {}: {e}", reference.artifact)))?;
        if !readable {
            return Err(not_found());
        }
        let path = artifacts.store.path_of(reference).ok_or_else(not_found)?;
        let mut call = self.call_artifacts();
        call.next += 1;
        let id = call.next;
        // No file is opened until the first read (a native plugin reads the path itself).
        call.readers.insert(id, Reader { path: path.clone(), file: None });
        Ok(ArtifactHandle { id, path: Some(path) })
    }

    fn artifact_read(&self, id: u32, max_bytes: u32) -> Result<Vec<u8>, PluginError> {
        use std::io::Read;
        let mut call = self.call_artifacts();
        let unopened = match call.readers.get(&id) {
            None => return Err(PluginError::not_found(format!("no artifact reader {id}"))),
            Some(reader) => reader.file.is_none(),
        };
        if unopened && call.readers.values().filter(|r| r.file.is_some()).count() >= MAX_OPEN_READERS {
            return Err(PluginError::failed(format!(
                "more than {MAX_OPEN_READERS} artifacts read at once (read one to its end first)"
            )));
        }
        let reader = call.readers.get_mut(&id).expect("looked up above");
        if reader.file.is_none() {
            let file = std::fs::File::open(&reader.path);
            reader.file = Some(file.map_err(|e| PluginError::failed(format!("cannot read an artifact: {e}")))?);
        }
        let max = max_bytes.min(plexus_sdk::MAX_ARTIFACT_CHUNK_BYTES) as u64;
        let mut chunk = Vec::with_capacity(max as usize);
        let file = reader.file.as_mut().expect("opened above");
        file.take(max)
            .read_to_end(&mut chunk)
            .map_err(|e| PluginError::failed(format!("cannot read an artifact: {e}")))?;
        if chunk.is_empty() {
            call.readers.remove(&id);
        }
        Ok(chunk)
    }
}

/// Answer a request a native plugin sent through the host's request
/// channel (in-process or from a worker): an artifact request
/// (`{"op": "artifact-…"}`) or an orchestration request, as the JSON of an
/// `OrchestrationAnswer`. `files`: whether the plugin may use the store's
/// files directly (not a worker restricted by `[worker.landlock]`, which
/// cannot reach them).
pub(crate) fn answer_request(services: &CallServices, request: &str, files: bool) -> String {
    #[derive(serde::Deserialize)]
    struct Op<'a> {
        #[serde(borrow)]
        op: std::borrow::Cow<'a, str>,
    }
    let is_artifact = serde_json::from_str::<Op<'_>>(request).is_ok_and(|r| r.op.starts_with("artifact-"));
    let answer = if is_artifact {
        match serde_json::from_str::<plexus_sdk::contract::ArtifactRequest>(request) {
            Err(e) => Err(PluginError::invalid_input(format!("not an artifact request: {e}"))),
            Ok(_) if !files => Err(PluginError::failed(
                "artifacts are not available to a worker restricted by [worker.landlock] (it cannot reach the artifact store)",
            )),
            Ok(request) => answer_artifact(services, request),
        }
    } else {
        match serde_json::from_str::<Orchestration>(request) {
            Ok(request) => services.orchestrate(&request),
            Err(e) => Err(PluginError::invalid_input(format!("not an orchestration request: {e}"))),
        }
    };
    crate::native::orchestration_answer(answer)
}

fn answer_artifact(
    services: &CallServices,
    request: plexus_sdk::contract::ArtifactRequest,
) -> Result<Value, PluginError> {
    use plexus_sdk::contract::ArtifactRequest as R;
    let json = |v: Result<Value, serde_json::Error>| v.map_err(PluginError::from);
    match request {
        R::ArtifactCreate { name, media_type } => {
            json(serde_json::to_value(services.artifact_create(&name, media_type.as_deref())?))
        }
        R::ArtifactFinish { id } => json(serde_json::to_value(services.artifact_finish(id)?)),
        R::ArtifactOpen { reference } => json(serde_json::to_value(services.artifact_open(&reference)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Limits;

    #[test]
    fn changes_since_a_version_are_the_keys_set_after_it() {
        let state = SharedState::from_map(serde_json::json!({"kept": 1}).as_object().unwrap().clone());
        assert!(state.changes_since(0).is_none(), "nothing set since the state was loaded");
        state.set("a", Value::from(1));
        let (v1, changed) = state.changes_since(0).unwrap();
        assert_eq!(Value::Object(changed), serde_json::json!({"a": 1}));
        state.set("b", Value::from(2));
        state.set("a", Value::from(3));
        let (v2, changed) = state.changes_since(v1).unwrap();
        assert_eq!(Value::Object(changed), serde_json::json!({"a": 3, "b": 2}));
        assert!(state.changes_since(v2).is_none());
        assert_eq!(state.snapshot().len(), 3);
    }

    #[test]
    fn shared_state_has_a_byte_limit_and_a_refused_write_changes_nothing() {
        let state = SharedState::default();
        let limits = Limits { state_bytes: 100, ..Limits::default() };
        let services = CallServices::new("p", "e", state.clone(), CancelToken::default()).for_call(&limits);
        services.try_state_set("a", Value::String("x".repeat(50))).unwrap();
        let err = services.try_state_set("b", Value::String("y".repeat(50))).unwrap_err();
        assert_eq!(err.limit, 100);
        assert!(state.get("b").is_none() && state.bytes() == 1 + 52);
        // Replacing a value with a smaller one always works; the size is tracked.
        services.try_state_set("a", Value::Null).unwrap();
        assert_eq!(state.bytes(), 1 + 4);
        // Through the trait (native plugins) the write is dropped and the call marked.
        services.state_set("c", Value::String("z".repeat(200)));
        assert!(state.get("c").is_none());
        assert_eq!(services.violation().map(|v| v.limit), Some(100));
    }

    struct Counting(std::sync::atomic::AtomicU32);

    impl Orchestrator for Counting {
        fn orchestrate(&self, caller: &Caller<'_>, _: Orchestration) -> Result<Value, PluginError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Value::String(format!("{}/{}", caller.plugin, caller.execution)))
        }
    }

    #[test]
    fn a_call_makes_at_most_its_budget_of_orchestration_requests() {
        let request = Orchestration::ExecutionStatus { execution: "x".into() };
        let base = CallServices::new("p", "e", SharedState::default(), CancelToken::default());
        let refused = base.orchestrate(&request).unwrap_err();
        assert!(refused.message.contains("no orchestration services"), "{refused}");
        let denied = base.clone().with_orchestration(OrchestrationAccess::Denied("no grant".into()));
        assert_eq!(denied.orchestrate(&request).unwrap_err().message, "no grant");
        let counting = Arc::new(Counting(0.into()));
        let services =
            base.for_call(&Limits::default()).with_orchestration(OrchestrationAccess::Allowed(counting.clone()));
        for _ in 0..plexus_sdk::MAX_ORCHESTRATION_REQUESTS_PER_CALL {
            assert_eq!(services.orchestrate(&request).unwrap(), Value::String("p/e".into()));
        }
        let flood = services.orchestrate(&request).unwrap_err();
        assert!(flood.message.contains("more than 64 orchestration requests"), "{flood}");
        assert_eq!(counting.0.load(Ordering::SeqCst), 64, "the one past the budget never reaches the orchestrator");
        // The next call has a fresh budget.
        let next = services.for_call(&Limits::default());
        assert!(next.orchestrate(&request).is_ok());
    }

    #[test]
    fn a_calls_artifacts_are_bounded_checked_and_only_its_executions_to_read() {
        use crate::artifacts::{Artifacts, BlobStore, MemoryIndex};
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Artifacts {
            store: Arc::new(BlobStore::open(&dir.path().join("store")).unwrap()),
            index: Arc::new(MemoryIndex::default()),
        };
        let limits = Limits { artifact_bytes: 10, ..Limits::default() };
        let call = |execution: &str| {
            CallServices::new("p", execution, SharedState::default(), CancelToken::default())
                .for_call(&limits)
                .with_artifacts(artifacts.clone(), Some("s"))
        };
        let services = call("e");
        // A write past the call's budget refuses the artifact: at its finish too, its file gone.
        let w = services.artifact_create("a", None).unwrap();
        services.artifact_write(w.id, b"12345678").unwrap();
        let err = services.artifact_write(w.id, b"123").unwrap_err();
        assert!(err.message.contains("limits.artifact_bytes"), "{err}");
        assert!(services.artifact_finish(w.id).unwrap_err().message.contains("refused"));
        assert!(!w.path.unwrap().exists());
        // The budget is the call's, all artifacts together.
        let w = services.artifact_create("b", Some("text/plain")).unwrap();
        services.artifact_write(w.id, b"123456").unwrap();
        let six = services.artifact_finish(w.id).unwrap();
        assert_eq!((six.bytes, six.media_type.as_deref()), (6, Some("text/plain")));
        let w = services.artifact_create("c", None).unwrap();
        assert!(services.artifact_write(w.id, b"12345").is_err(), "6 + 5 > 10");
        // A native plugin writes the file itself: checked at the finish.
        let w = services.artifact_create("d", None).unwrap();
        std::fs::write(w.path.as_ref().unwrap(), b"12345").unwrap();
        assert!(services.artifact_finish(w.id).unwrap_err().message.contains("limits.artifact_bytes"));
        #[cfg(unix)]
        {
            let w = services.artifact_create("e", None).unwrap();
            let path = w.path.unwrap();
            std::fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
            std::fs::write(dir.path().join("elsewhere"), b"x").unwrap();
            let err = services.artifact_finish(w.id).unwrap_err();
            assert!(err.message.contains("cannot read artifact"), "a link is not taken: {err}");
        }
        assert_eq!(services.artifacts_written(), std::slice::from_ref(&six));
        // Names are checked; at most 64 artifacts a call.
        assert_eq!(services.artifact_create("../x", None).unwrap_err().kind, plexus_sdk::ErrorKind::InvalidInput);
        let many = call("e");
        for _ in 0..plexus_sdk::MAX_ARTIFACTS_PER_CALL {
            many.artifact_create("n", None).unwrap();
        }
        assert!(many.artifact_create("n", None).unwrap_err().message.contains("more than 64 artifacts"));
        // Readable by its execution and the ones descending from it, read in bounded chunks.
        for execution in ["e", "e~step"] {
            let reader = call(execution);
            let r = reader.artifact_open(&six).unwrap();
            assert_eq!(reader.artifact_read(r.id, 4).unwrap(), b"1234");
            assert_eq!(reader.artifact_read(r.id, 4).unwrap(), b"56");
            assert!(reader.artifact_read(r.id, 4).unwrap().is_empty());
            assert_eq!(
                reader.artifact_read(r.id, 4).unwrap_err().kind,
                plexus_sdk::ErrorKind::NotFound,
                "closed at its end"
            );
        }
        let stranger = call("other");
        assert_eq!(stranger.artifact_open(&six).unwrap_err().kind, plexus_sdk::ErrorKind::NotFound);
        let forged = ArtifactRef { artifact: "sha256:../../x".into(), ..six };
        assert_eq!(stranger.artifact_open(&forged).unwrap_err().kind, plexus_sdk::ErrorKind::InvalidInput);
        // Without a store, every artifact request says so.
        let bare = CallServices::new("p", "e", SharedState::default(), CancelToken::default());
        assert!(bare.artifact_create("a", None).unwrap_err().message.contains("no artifact store"));
    }

    #[test]
    fn log_bytes_past_the_budget_are_dropped_and_counted() {
        let limits = Limits { log_bytes: 10, ..Limits::default() };
        let services = CallServices::new("p", "e", SharedState::default(), CancelToken::default()).for_call(&limits);
        services.log(LogLevel::Info, "12345");
        services.log(LogLevel::Info, "12345");
        services.log(LogLevel::Info, "123");
        services.log(LogLevel::Info, "1");
        assert_eq!(services.log_bytes_dropped(), 4);
    }
}
