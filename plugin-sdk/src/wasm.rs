//! The WASM component transport: bindings generated from the top-level `wit/`
//! and the glue between them and [`crate::plugin::Runtime`].
//!
//! `#[doc(hidden)]` plumbing used by [`crate::export_plugin!`].
#![allow(missing_docs, unsafe_code)] // generated bindings

use crate::contract::{
    ArtifactHandle, ArtifactRef, ErrorKind, ExecutionContext, HostServices, LogLevel, Metadata, Orchestration,
    PluginError, ScheduleInfo,
};
use crate::plugin::{Plugin, Runtime};
use serde_json::Value;

wit_bindgen::generate!({
    // `wit` is a link to the repository's top-level `wit/`: `cargo package`
    // follows it, so the published crate carries the WIT it was built from.
    path: "wit",
    world: "plexus-plugin",
    pub_export_macro: true,
    export_macro_name: "__export_plexus_component",
});

use exports::plexus::plugin::guest as wit_guest;
use plexus::plugin::host as wit_host;
use plexus::plugin::types as wit;

pub use wit_guest::Guest;

/// [`HostServices`] over the component's `plexus:plugin/host` imports.
struct WasmHost;

impl HostServices for WasmHost {
    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => wit::LogLevel::Trace,
            LogLevel::Debug => wit::LogLevel::Debug,
            LogLevel::Info => wit::LogLevel::Info,
            LogLevel::Warn => wit::LogLevel::Warn,
            LogLevel::Error => wit::LogLevel::Error,
        };
        wit_host::log(level, message);
    }
    fn state_get(&self, key: &str) -> Option<Value> {
        wit_host::state_get(key).and_then(|json| serde_json::from_str(&json).ok())
    }
    fn state_set(&self, key: &str, value: Value) {
        wit_host::state_set(key, &value.to_string());
    }
    fn report_progress(&self, fraction: f64, message: &str) {
        wit_host::report_progress(fraction, message);
    }
    fn is_cancelled(&self) -> bool {
        wit_host::is_cancelled()
    }
    fn orchestrate(&self, request: &Orchestration) -> Result<Value, PluginError> {
        let answer = match request {
            Orchestration::StartWorkflow { workflow, inputs } => {
                let inputs = serde_json::to_string(inputs)?;
                wit_host::start_workflow(workflow, &inputs).map(Value::String)
            }
            Orchestration::ExecutionStatus { execution } => wit_host::execution_status(execution).and_then(|text| {
                serde_json::from_str(&text).map_err(|e| wit::PluginError {
                    kind: wit::ErrorKind::Failed,
                    message: format!("the host's status is not JSON: {e}"),
                    retryable: false,
                })
            }),
            Orchestration::CreateSchedule { spec } => wit_host::create_schedule(&spec.to_string()).map(Value::String),
            Orchestration::CancelSchedule { schedule } => wit_host::cancel_schedule(schedule).map(|()| Value::Null),
        };
        answer.map_err(from_wit_error)
    }
    fn artifact_create(&self, name: &str, media_type: Option<&str>) -> Result<ArtifactHandle, PluginError> {
        let id = wit_host::artifact_create(name, media_type).map_err(from_wit_error)?;
        Ok(ArtifactHandle { id, path: None })
    }
    fn artifact_write(&self, id: u32, data: &[u8]) -> Result<(), PluginError> {
        wit_host::artifact_write(id, data).map_err(from_wit_error)
    }
    fn artifact_finish(&self, id: u32) -> Result<ArtifactRef, PluginError> {
        let text = wit_host::artifact_finish(id).map_err(from_wit_error)?;
        serde_json::from_str(&text)
            .map_err(|e| PluginError::failed(format!("the host's artifact reference is not JSON: {e}")))
    }
    fn artifact_open(&self, reference: &ArtifactRef) -> Result<ArtifactHandle, PluginError> {
        let text = serde_json::to_string(reference)?;
        let id = wit_host::artifact_open(&text).map_err(from_wit_error)?;
        Ok(ArtifactHandle { id, path: None })
    }
    fn artifact_read(&self, id: u32, max_bytes: u32) -> Result<Vec<u8>, PluginError> {
        wit_host::artifact_read(id, max_bytes).map_err(from_wit_error)
    }
}

fn from_wit_error(e: wit::PluginError) -> PluginError {
    PluginError {
        kind: match e.kind {
            wit::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            wit::ErrorKind::UnsupportedOperation => ErrorKind::UnsupportedOperation,
            wit::ErrorKind::NotFound => ErrorKind::NotFound,
            wit::ErrorKind::Failed => ErrorKind::Failed,
            wit::ErrorKind::Cancelled => ErrorKind::Cancelled,
        },
        message: e.message,
        retryable: e.retryable,
    }
}

fn to_wit_error(e: PluginError) -> wit::PluginError {
    wit::PluginError {
        kind: match e.kind {
            ErrorKind::InvalidInput => wit::ErrorKind::InvalidInput,
            ErrorKind::UnsupportedOperation => wit::ErrorKind::UnsupportedOperation,
            ErrorKind::NotFound => wit::ErrorKind::NotFound,
            ErrorKind::Failed => wit::ErrorKind::Failed,
            ErrorKind::Cancelled => wit::ErrorKind::Cancelled,
        },
        message: e.message,
        retryable: e.retryable,
    }
}

/// The `initialize` export: the instance's plugin value, made now and
/// initialized with the manifest's `config` (JSON text).
pub fn initialize<P: Plugin>(plugin: &std::sync::OnceLock<P>, config: String) -> Result<(), wit::PluginError> {
    let config = parse_json("config", &config).map_err(to_wit_error)?;
    plugin.get_or_init(P::default).initialize(&config).map_err(to_wit_error)
}

/// The `cleanup` export: the instance's plugin value's cleanup, if it was made.
pub fn cleanup<P: Plugin>(plugin: &std::sync::OnceLock<P>) {
    if let Some(plugin) = plugin.get() {
        plugin.cleanup();
    }
}

/// The `describe` export.
pub fn metadata<P: Plugin>(runtime: &Runtime<P>) -> wit::Metadata {
    let m: &Metadata = runtime.metadata();
    wit::Metadata {
        id: m.id.clone(),
        name: m.name.clone(),
        version: m.version.clone(),
        description: m.description.clone(),
        authors: m.authors.clone(),
        license: m.license.clone(),
        contract_version: m.contract_version.clone(),
        capabilities: m.capabilities.clone(),
        operations: m
            .operations
            .iter()
            .map(|op| wit::Operation {
                name: op.name.clone(),
                description: op.description.clone(),
                params_schema: op.params_schema.as_ref().map(Value::to_string),
                output_schema: op.output_schema.as_ref().map(Value::to_string),
            })
            .collect(),
    }
}

fn parse_json(what: &str, text: &str) -> Result<Value, PluginError> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| PluginError::invalid_input(format!("{what} is not valid JSON: {e}")))
}

/// Calls this instance served (a component has one plugin, so one counter).
static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The `call` export: through `runtime` when the instance has built it (it
/// was described, or reused: from its second call on, the host has kept it
/// for more calls, and the whole table is built once), else through a table
/// of this call's operation alone ([`Runtime::for_operation`]), which is what
/// a fresh instance per call needs. Either way on the instance's plugin
/// value `plugin` (the one `initialize` made).
pub fn call<P: Plugin>(
    runtime: &std::sync::OnceLock<Runtime<P>>,
    plugin: &std::sync::OnceLock<P>,
    ctx: wit::ExecutionContext,
) -> Result<wit::CallOutput, wit::PluginError> {
    let exec = (|| {
        let upstream = match parse_json("upstream", &ctx.upstream)? {
            Value::Object(map) => map,
            Value::Null => Default::default(),
            _ => return Err(PluginError::invalid_input("upstream must be a JSON object")),
        };
        Ok(ExecutionContext {
            execution_id: ctx.execution_id,
            workflow_id: ctx.workflow_id,
            step_id: ctx.step_id,
            task_id: ctx.task_id,
            attempt: ctx.attempt,
            deadline_ms: ctx.deadline_ms,
            operation: ctx.operation,
            parameters: parse_json("parameters", &ctx.parameters)?,
            upstream,
            config: parse_json("config", &ctx.config)?,
            schedule: ctx.schedule.map(|s| ScheduleInfo {
                id: s.id,
                fire_time_ms: s.fire_time_ms,
                fire_time: s.fire_time,
            }),
        })
    })();
    let first = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
    let plugin = plugin.get_or_init(P::default);
    let result = exec.and_then(|exec| match runtime.get() {
        Some(runtime) => runtime.call_text_on(plugin, &exec, &WasmHost),
        None if first => Runtime::<P>::for_operation(&exec.operation).call_text_on(plugin, &exec, &WasmHost),
        None => runtime.get_or_init(Runtime::new).call_text_on(plugin, &exec, &WasmHost),
    });
    match result {
        Ok((output, metrics)) => Ok(wit::CallOutput {
            output,
            metrics: metrics.into_iter().map(|(name, value)| wit::Metric { name, value }).collect(),
        }),
        Err(e) => Err(to_wit_error(e)),
    }
}
