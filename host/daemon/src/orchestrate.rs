//! Orchestration from plugins (contract 0.3): the daemon answers a plugin's
//! `start-workflow`, `execution-status`, `create-schedule` and
//! `cancel-schedule` — Framework0's orchestration plugin, written as a
//! Plexus plugin. The host checks the plugin's `orchestration` capability and
//! its manifest's grant before a request gets here (see
//! [`plexus_host::Host::set_orchestrator`]).
//!
//! Against a plugin that tries to flood or loop: a call makes at most
//! [`plexus_sdk::MAX_ORCHESTRATION_REQUESTS_PER_CALL`] requests; workflows
//! started from plugins nest at most [`MAX_NESTING`] deep (a step that
//! starts its own workflow stops there); a plugin owns at most
//! [`MAX_SCHEDULES_PER_PLUGIN`] schedules and may cancel only those.

use super::core::{Daemon, Origin};
use super::error::{DaemonError, ErrorCode};
use super::schedules::{Schedules, WeakSchedules};
use plexus_client::ScheduleSpec;
use plexus_host::services::{Caller, Orchestrator};
use plexus_sdk::{Orchestration, PluginError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How deep workflows started from plugins may nest: an execution a plugin
/// started from a step of an execution a plugin started … at most 8 deep.
pub const MAX_NESTING: u32 = 8;

/// The most schedules one plugin may own (create and not yet cancel): 100.
pub const MAX_SCHEDULES_PER_PLUGIN: usize = 100;

/// How long a request may take before the plugin gets an error: 30 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Executions started by plugins, with their nesting depth, kept while live.
const TRACKED: usize = 10_000;

/// The daemon as the host's [`Orchestrator`].
pub(crate) struct DaemonOrchestrator {
    schedules: WeakSchedules,
    runtime: tokio::runtime::Handle,
    depth: Arc<Mutex<HashMap<String, u32>>>,
}

/// Send `schedules`' daemon's plugins' orchestration requests to it.
pub(crate) fn install(schedules: &Schedules) {
    let daemon = schedules.daemon();
    let orchestrator = DaemonOrchestrator {
        schedules: schedules.downgrade(),
        runtime: daemon.runtime().clone(),
        depth: Arc::default(),
    };
    daemon.host().set_orchestrator(Arc::new(orchestrator));
}

impl Orchestrator for DaemonOrchestrator {
    fn orchestrate(&self, caller: &Caller<'_>, request: Orchestration) -> Result<Value, PluginError> {
        let Some(schedules) = self.schedules.upgrade() else {
            return Err(PluginError::failed("the daemon is stopping"));
        };
        let (plugin, execution) = (caller.plugin.to_owned(), caller.execution.to_owned());
        let depth = self.depth.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        // On the daemon's runtime; this (the plugin's call) thread waits.
        self.runtime.spawn(async move {
            let _ = tx.send(answer(&schedules, &depth, &plugin, &execution, request).await);
        });
        rx.recv_timeout(REQUEST_TIMEOUT).unwrap_or_else(|_| {
            Err(PluginError::failed(format!("the daemon did not answer within {} s", REQUEST_TIMEOUT.as_secs())))
        })
    }
}

/// A daemon error as the plugin sees it.
fn plugin_error(e: DaemonError) -> PluginError {
    match e.code {
        ErrorCode::NotFound | ErrorCode::PluginNotFound | ErrorCode::DependencyNotSatisfied => {
            PluginError::not_found(e.message)
        }
        ErrorCode::InvalidConfiguration | ErrorCode::AlreadyExists => PluginError::invalid_input(e.message),
        _ => PluginError::failed(e.message),
    }
}

async fn answer(
    schedules: &Schedules,
    depth: &Mutex<HashMap<String, u32>>,
    plugin: &str,
    execution: &str,
    request: Orchestration,
) -> Result<Value, PluginError> {
    let daemon: &Daemon = schedules.daemon();
    match request {
        Orchestration::StartWorkflow { workflow, inputs } => {
            // Held until the new execution's depth is recorded: its own steps'
            // requests wait for it (they may come before `start` returns here).
            let mut tracked = depth.lock().await;
            let nested = tracked.get(execution).copied().unwrap_or(0);
            if nested >= MAX_NESTING {
                return Err(PluginError::failed(format!(
                    "workflows started from plugins nest at most {MAX_NESTING} deep: execution `{execution}` is {nested} deep"
                )));
            }
            let exec = daemon.start(&workflow, inputs, Origin::default()).await.map_err(plugin_error)?;
            let id = exec.id().to_owned();
            tracing::info!(plugin, execution, started = %id, workflow = %workflow, "a plugin started a workflow");
            if tracked.len() >= TRACKED {
                tracked.retain(|id, _| daemon.live(id).is_some());
            }
            tracked.insert(id.clone(), nested + 1);
            Ok(Value::String(id))
        }
        Orchestration::ExecutionStatus { execution: id } => {
            let (status, meta) = daemon.status(&id).await.map_err(plugin_error)?;
            let held = daemon.live(&id).is_some_and(|e| e.is_held());
            serde_json::to_value(plexus_client::Execution {
                status,
                meta,
                held,
                node: None,
                waiting_for_plugins: Vec::new(),
                parent: plexus_workflow::engine::parent_of(&id).map(|(p, _)| p.to_owned()),
                parent_step: plexus_workflow::engine::parent_of(&id).map(|(_, s)| s.to_owned()),
            })
            .map_err(|e| PluginError::failed(format!("the status is not JSON: {e}")))
        }
        Orchestration::CreateSchedule { spec } => {
            let mut spec: ScheduleSpec =
                serde_json::from_value(spec).map_err(|e| PluginError::invalid_input(format!("schedule spec: {e}")))?;
            spec.owner = Some(plugin.to_owned());
            let owned = schedules.list().await.map_err(plugin_error)?;
            let owned = owned.iter().filter(|v| v.spec.owner.as_deref() == Some(plugin)).count();
            if owned >= MAX_SCHEDULES_PER_PLUGIN {
                return Err(PluginError::failed(format!(
                    "plugin `{plugin}` owns {owned} schedules, the most a plugin may ({MAX_SCHEDULES_PER_PLUGIN}): cancel some first"
                )));
            }
            let view = schedules.create(spec).await.map_err(plugin_error)?;
            tracing::info!(plugin, execution, schedule = %view.spec.id, "a plugin created a schedule");
            Ok(Value::String(view.spec.id))
        }
        Orchestration::CancelSchedule { schedule } => {
            let view = schedules.get(&schedule).await.map_err(plugin_error)?;
            if view.spec.owner.as_deref() != Some(plugin) {
                return Err(PluginError::not_found(format!(
                    "schedule `{schedule}` does not belong to plugin `{plugin}`: a plugin cancels only the schedules it created"
                )));
            }
            schedules.delete(&schedule).await.map_err(plugin_error)?;
            tracing::info!(plugin, execution, schedule = %schedule, "a plugin cancelled its schedule");
            Ok(Value::Null)
        }
    }
}
