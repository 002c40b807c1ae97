//! Example Plexus plugin: Framework0's orchestration plugin (`IOrchestrationPlugin`)
//! as a Plexus plugin. One source, built as a native cdylib and as a WASM component.
//!
//! It declares the `orchestration` capability (its manifests grant it) and
//! uses the host's orchestration services: `start_workflow`, `status`,
//! `schedule`, `cancel_schedule`. Its lifecycle hooks record what they saw:
//! `initialize(config)` keeps the configuration (`lifecycle` returns it) and,
//! when `config.lifecycle_log` names a file, `initialize` and `cleanup` each
//! append a line to it (`initialize <kind>`, `cleanup <kind>`).
#![forbid(unsafe_code)]

use plexus_sdk::{Context, Operations, Plugin, PluginError, PluginInfo, ResultExt, capability};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::sync::OnceLock;

/// The plugin id. One source builds both kinds, and ids are unique per host, so
/// each kind gets its own.
pub const ID: &str =
    if cfg!(target_family = "wasm") { "plexus.orchestration.wasm" } else { "plexus.orchestration.native" };

const KIND: &str = if cfg!(target_family = "wasm") { "wasm" } else { "native" };

/// The orchestration plugin: the configuration `initialize` was given.
#[derive(Default)]
pub struct Orchestration {
    config: OnceLock<Value>,
}

/// Parameters of `start_workflow`.
#[derive(Deserialize, JsonSchema)]
pub struct Start {
    /// The registered workflow to start.
    pub workflow: String,
    /// Its inputs.
    #[serde(default)]
    pub inputs: Map<String, Value>,
}

/// An execution, by id.
#[derive(Deserialize, Serialize, JsonSchema)]
pub struct ExecutionRef {
    /// The execution id.
    pub execution_id: String,
}

/// Parameters of `schedule`: a schedule spec, as `POST /v1/schedules` takes it.
#[derive(Deserialize, JsonSchema)]
pub struct ScheduleParams {
    /// The spec (`id`, `when`, `workflow` or `plugin` + `operation`, ...).
    pub spec: Value,
}

/// A schedule, by id.
#[derive(Deserialize, Serialize, JsonSchema)]
pub struct ScheduleRef {
    /// The schedule id.
    pub schedule_id: String,
}

/// What `lifecycle` answers.
#[derive(Serialize, JsonSchema)]
pub struct Lifecycle {
    /// Whether `initialize` ran before this call.
    pub initialized: bool,
    /// The configuration it was given.
    pub config: Value,
}

impl Orchestration {
    /// Append `line` to `config.lifecycle_log`, when set.
    fn record(&self, config: &Value, line: &str) -> Result<(), PluginError> {
        let Some(path) = config.get("lifecycle_log").and_then(Value::as_str) else { return Ok(()) };
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).or_failed(path)?;
        writeln!(file, "{line} {KIND}").or_failed(path)?;
        Ok(())
    }

    fn start_workflow(&self, ctx: &mut Context<'_>, p: Start) -> Result<ExecutionRef, PluginError> {
        let execution_id = ctx.start_workflow(&p.workflow, Value::Object(p.inputs))?;
        ctx.info(format!("started workflow `{}`: execution {execution_id}", p.workflow));
        Ok(ExecutionRef { execution_id })
    }

    fn status(&self, ctx: &mut Context<'_>, p: ExecutionRef) -> Result<Value, PluginError> {
        ctx.execution_status(&p.execution_id)
    }

    fn schedule(&self, ctx: &mut Context<'_>, p: ScheduleParams) -> Result<ScheduleRef, PluginError> {
        Ok(ScheduleRef { schedule_id: ctx.create_schedule(p.spec)? })
    }

    fn cancel_schedule(&self, ctx: &mut Context<'_>, p: ScheduleRef) -> Result<ScheduleRef, PluginError> {
        ctx.cancel_schedule(&p.schedule_id)?;
        Ok(p)
    }

    fn lifecycle(&self, _: &mut Context<'_>, _: Value) -> Result<Lifecycle, PluginError> {
        Ok(Lifecycle {
            initialized: self.config.get().is_some(),
            config: self.config.get().cloned().unwrap_or_default(),
        })
    }
}

impl Plugin for Orchestration {
    fn info() -> PluginInfo {
        PluginInfo::new(ID, "orchestration", env!("CARGO_PKG_VERSION"))
            .description(env!("CARGO_PKG_DESCRIPTION"))
            .license(env!("CARGO_PKG_LICENSE"))
            .capabilities([capability::WORKFLOW_STEP, capability::ORCHESTRATION])
    }

    fn operations(ops: &mut Operations<Self>) {
        ops.add("start_workflow", "Starts a registered workflow; its execution id", Self::start_workflow);
        ops.add("status", "The status of an execution", Self::status);
        ops.add("schedule", "Creates a schedule (owned by this plugin); its id", Self::schedule);
        ops.add("cancel_schedule", "Deletes a schedule this plugin created", Self::cancel_schedule);
        ops.add("lifecycle", "Whether initialize ran, and the configuration it was given", Self::lifecycle);
    }

    fn initialize(&self, config: &Value) -> Result<(), PluginError> {
        if config.get("fail_initialize").and_then(Value::as_bool) == Some(true) {
            return Err(PluginError::invalid_input("fail_initialize is set"));
        }
        self.record(config, "initialize")?;
        let _ = self.config.set(config.clone());
        Ok(())
    }

    fn cleanup(&self) {
        if let Some(config) = self.config.get() {
            let _ = self.record(config, "cleanup");
        }
    }
}

plexus_sdk::export_plugin!(Orchestration);

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_sdk::testing::TestHost;
    use plexus_sdk::{ErrorKind, Orchestration as Request};
    use serde_json::json;

    #[test]
    fn requests_go_to_the_host_and_answers_come_back() {
        let host = TestHost::<Orchestration>::new().with_orchestrator(|request| match request {
            Request::StartWorkflow { workflow, .. } if workflow == "nightly" => Ok(json!("e-1")),
            Request::StartWorkflow { workflow, .. } => Err(PluginError::not_found(format!("workflow `{workflow}`"))),
            Request::ExecutionStatus { execution } => Ok(json!({"execution_id": execution, "status": "Running"})),
            Request::CreateSchedule { spec } => Ok(spec["id"].clone()),
            Request::CancelSchedule { .. } => Ok(Value::Null),
        });
        let out = host.call("start_workflow", json!({"workflow": "nightly", "inputs": {"n": 1}})).unwrap();
        assert_eq!(out.output, json!({"execution_id": "e-1"}));
        assert_eq!(
            host.orchestrated.borrow()[0],
            Request::StartWorkflow { workflow: "nightly".into(), inputs: json!({"n": 1}).as_object().unwrap().clone() }
        );
        let missing = host.call("start_workflow", json!({"workflow": "nope"})).unwrap_err();
        assert_eq!(missing.kind, ErrorKind::NotFound);
        assert_eq!(host.call("status", json!({"execution_id": "e-1"})).unwrap().output["status"], "Running");
        let made = host.call("schedule", json!({"spec": {"id": "s1", "when": "every 1h"}})).unwrap();
        assert_eq!(made.output, json!({"schedule_id": "s1"}));
        assert!(host.call("cancel_schedule", json!({"schedule_id": "s1"})).is_ok());
        // Without an orchestrator (`plexus call`), requests fail with the reason.
        let alone = TestHost::<Orchestration>::new();
        let refused = alone.call("start_workflow", json!({"workflow": "nightly"})).unwrap_err();
        assert!(refused.message.contains("no orchestration services"), "{refused}");
    }

    #[test]
    fn initialize_keeps_the_config_and_both_hooks_log_when_asked() {
        let dir = std::env::temp_dir().join(format!("plexus-orchestration-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("lifecycle.log");
        let _ = std::fs::remove_file(&log);
        let host = TestHost::<Orchestration>::new().with_config(json!({"lifecycle_log": log}));
        assert_eq!(host.call("lifecycle", Value::Null).unwrap().output["initialized"], false);
        host.initialize().unwrap();
        let seen = host.call("lifecycle", Value::Null).unwrap().output;
        assert_eq!(seen, json!({"initialized": true, "config": {"lifecycle_log": log}}));
        host.cleanup();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), format!("initialize {KIND}\ncleanup {KIND}\n"));
        let failing = TestHost::<Orchestration>::new().with_config(json!({"fail_initialize": true}));
        assert_eq!(failing.initialize().unwrap_err().kind, ErrorKind::InvalidInput);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
