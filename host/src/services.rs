//! Host services a plugin can call back during a call: log, shared state,
//! progress and cancellation. One [`CallServices`] per call; the shared state
//! and the cancel token belong to the execution and outlive it.

use plexus_sdk::{HostServices, LogLevel};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The shared state of one execution: a JSON object every step can read and write.
#[derive(Debug, Clone, Default)]
pub struct SharedState(Arc<Mutex<StateInner>>);

#[derive(Debug, Default)]
struct StateInner {
    map: Map<String, Value>,
    /// Bumped by every `set`, so a journal writes the state only when it changed.
    version: u64,
}

impl SharedState {
    /// A state holding `map` (an execution resumed from the store).
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(Arc::new(Mutex::new(StateInner { map, version: 0 })))
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, StateInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.lock().map.get(key).cloned()
    }
    /// Set `key` to `value`.
    pub fn set(&self, key: &str, value: Value) {
        let mut inner = self.lock();
        inner.map.insert(key.to_owned(), value);
        inner.version += 1;
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
}

/// A flag the host sets to ask an execution to stop. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Ask the execution to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Receives a plugin's progress reports: `(fraction in 0.0..=1.0, message)`.
pub type ProgressSink = Arc<dyn Fn(f64, &str) + Send + Sync>;

/// The host services of one call, tagged with the plugin and execution ids.
#[derive(Clone)]
pub struct CallServices {
    plugin_id: Arc<str>,
    execution_id: Arc<str>,
    state: SharedState,
    cancel: CancelToken,
    interrupted: CancelToken,
    progress: Option<ProgressSink>,
}

impl CallServices {
    /// Services for a call of `plugin_id` within `execution_id`.
    pub fn new(plugin_id: &str, execution_id: &str, state: SharedState, cancel: CancelToken) -> Self {
        Self {
            plugin_id: plugin_id.into(),
            execution_id: execution_id.into(),
            state,
            cancel,
            interrupted: CancelToken::default(),
            progress: None,
        }
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
        let (plugin, execution) = (&*self.plugin_id, &*self.execution_id);
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
        self.state.set(key, value);
    }
    fn report_progress(&self, fraction: f64, message: &str) {
        let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
        tracing::debug!(target: "plexus::plugin", plugin = &*self.plugin_id, execution = &*self.execution_id, fraction, "progress: {message}");
        if let Some(sink) = &self.progress {
            sink(fraction, message);
        }
    }
    fn is_cancelled(&self) -> bool {
        self.should_stop()
    }
}
