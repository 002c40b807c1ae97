//! An in-process harness: test a plugin's operations without a host.
//!
//! [`TestHost`] runs operations through the same dispatch as both transports
//! (parameter decoding, unknown operations, metrics) and records what the
//! plugin did with the host services: logs, shared state, progress.

use crate::contract::{CallOutput, ExecutionContext, HostServices, LogLevel, Metadata, PluginError};
use crate::plugin::{Plugin, Runtime};
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};

/// Runs a plugin's operations in-process, recording host-service use.
///
/// ```
/// # use plexus_sdk::{testing::TestHost, Plugin, PluginInfo, Operations, Context, PluginError};
/// # #[derive(Default)] struct Hello;
/// # impl Plugin for Hello {
/// #     fn info() -> PluginInfo { PluginInfo::new("demo.hello", "Hello", "0.1.0") }
/// #     fn operations(ops: &mut Operations<Self>) {
/// #         ops.add("hello", "Greets", |_, _, name: String| Ok::<_, PluginError>(format!("hello {name}")));
/// #     }
/// # }
/// let host = TestHost::<Hello>::new();
/// let out = host.call("hello", serde_json::json!("Ada")).unwrap();
/// assert_eq!(out.output, "hello Ada");
/// ```
pub struct TestHost<P: Plugin> {
    runtime: Runtime<P>,
    /// Log records, in order.
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    /// The execution's shared state.
    pub state: RefCell<Map<String, Value>>,
    /// Progress reports, in order.
    pub progress: RefCell<Vec<(f64, String)>>,
    /// What [`HostServices::is_cancelled`] answers.
    pub cancelled: Cell<bool>,
    config: Value,
}

impl<P: Plugin> Default for TestHost<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Plugin> TestHost<P> {
    /// A harness around a fresh `P`.
    pub fn new() -> Self {
        Self {
            runtime: Runtime::new(),
            logs: RefCell::default(),
            state: RefCell::default(),
            progress: RefCell::default(),
            cancelled: Cell::new(false),
            config: Value::Null,
        }
    }

    /// Use `config` as the plugin configuration of every call.
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// The metadata the plugin declares.
    pub fn metadata(&self) -> &Metadata {
        self.runtime.metadata()
    }

    /// Call `operation` with `params` (attempt 1, no upstream outputs).
    pub fn call(&self, operation: &str, params: Value) -> Result<CallOutput, PluginError> {
        let exec = ExecutionContext {
            execution_id: "test-execution".into(),
            attempt: 1,
            operation: operation.into(),
            parameters: params,
            config: self.config.clone(),
            ..ExecutionContext::default()
        };
        self.call_with(&exec)
    }

    /// Call with a whole execution context.
    pub fn call_with(&self, exec: &ExecutionContext) -> Result<CallOutput, PluginError> {
        self.runtime.call(exec, self)
    }
}

impl<P: Plugin> HostServices for TestHost<P> {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
    fn state_get(&self, key: &str) -> Option<Value> {
        self.state.borrow().get(key).cloned()
    }
    fn state_set(&self, key: &str, value: Value) {
        self.state.borrow_mut().insert(key.to_owned(), value);
    }
    fn report_progress(&self, fraction: f64, message: &str) {
        self.progress.borrow_mut().push((fraction, message.to_owned()));
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }
}
