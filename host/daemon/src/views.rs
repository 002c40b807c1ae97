//! The API's views of the plugin host's types: [`plugin_list`],
//! [`plugin_details`], [`plugin_change`], [`call_plugin`] and [`call_error`]. The daemon serves them; `plexus
//! plugins list|info --json` prints the same shapes without a daemon.

use plexus_client::{CallPlugin, CallResult, DaemonError, ErrorCode, MAX_CALL_TIMEOUT_MS};
use plexus_client::{
    DirAccess, DirGrant, NetworkGrant, PluginChange, PluginDetails, PluginKind, PluginLandlock, PluginLimits,
    PluginList, PluginLoadError, PluginPermissions, PluginStatus, PluginSummary,
};
use plexus_host::manifest::{self, Network};
use plexus_host::secrets::redactor;
use plexus_host::{CallError, CallOptions, Change, Host, LoadError, LoadedPlugin};
use serde_json::Value;
use std::collections::BTreeMap;

fn kind(kind: manifest::PluginKind) -> PluginKind {
    match kind {
        manifest::PluginKind::Native => PluginKind::Native,
        manifest::PluginKind::Wasm => PluginKind::Wasm,
        manifest::PluginKind::InProcess => PluginKind::InProcess,
    }
}

fn status(unavailable: &BTreeMap<String, String>, id: &str) -> PluginStatus {
    if unavailable.contains_key(id) { PluginStatus::Unavailable } else { PluginStatus::Loaded }
}

/// One plugin as listed; `unavailable` is [`Host::unavailable`].
pub fn plugin_summary(plugin: &LoadedPlugin, unavailable: &BTreeMap<String, String>) -> PluginSummary {
    let meta = plugin.runtime.metadata();
    PluginSummary {
        id: plugin.id().to_owned(),
        name: meta.name.clone(),
        version: meta.version.clone(),
        kind: kind(plugin.manifest.kind),
        capabilities: meta.capabilities.clone(),
        operations: meta.operations.iter().map(|o| o.name.clone()).collect(),
        path: plugin.manifest.dir.display().to_string(),
        status: status(unavailable, plugin.id()),
    }
}

/// A load error with its kind, the kind's facts and the whole message.
pub fn load_error(error: &LoadError) -> PluginLoadError {
    let mut value = serde_json::to_value(error).unwrap_or_default();
    redactor().value(&mut value);
    PluginLoadError {
        path: error.path.display().to_string(),
        plugin: error.plugin.clone(),
        kind: value.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned(),
        detail: value.get("detail").cloned().unwrap_or_default(),
        message: error.to_string(),
    }
}

/// Every loaded plugin, every load error, every unavailable plugin.
pub fn plugin_list(host: &Host) -> PluginList {
    let unavailable = host.unavailable();
    PluginList {
        plugins: host.plugins().map(|p| plugin_summary(p, &unavailable)).collect(),
        errors: host.load_errors().iter().map(load_error).collect(),
        unavailable,
    }
}

/// One plugin's metadata, manifest facts, limits and permissions.
pub fn plugin_details(host: &Host, plugin: &LoadedPlugin) -> PluginDetails {
    let m = &plugin.manifest;
    let unavailable = host.unavailable();
    PluginDetails {
        metadata: plugin.runtime.metadata().clone(),
        kind: kind(m.kind),
        isolation: (m.kind == plexus_host::PluginKind::Native).then(|| m.isolation.unwrap_or_default().to_string()),
        path: m.dir.display().to_string(),
        artifact: m.artifact.display().to_string(),
        sha256: m.sha256.clone(),
        contract_requirement: m.contract.as_ref().map(ToString::to_string),
        config: m.config.clone(),
        limits: PluginLimits {
            timeout: u64::try_from(m.limits.timeout.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: m.limits.memory_bytes,
            output_bytes: m.limits.output_bytes as u64,
            state_bytes: m.limits.state_bytes,
            log_bytes: m.limits.log_bytes,
            handles: m.limits.handles,
            artifact_bytes: m.limits.artifact_bytes,
        },
        landlock: m.worker.landlock.as_ref().map(|l| {
            let paths = |list: &[std::path::PathBuf]| list.iter().map(|p| p.display().to_string()).collect();
            PluginLandlock { read: paths(&l.read), write: paths(&l.write), tcp: l.tcp }
        }),
        permissions: PluginPermissions {
            dirs: m
                .permissions
                .dirs
                .iter()
                .map(|d| DirGrant {
                    host: d.host.display().to_string(),
                    guest: d.guest.clone(),
                    access: match d.access {
                        manifest::DirAccess::ReadOnly => DirAccess::ReadOnly,
                        manifest::DirAccess::ReadWrite => DirAccess::ReadWrite,
                    },
                })
                .collect(),
            env: m.permissions.env.clone(),
            network: match &m.permissions.network {
                Network::None => NetworkGrant::All(false),
                Network::Any => NetworkGrant::All(true),
                Network::Allow(list) => NetworkGrant::Endpoints(list.iter().map(ToString::to_string).collect()),
            },
            secrets: m.permissions.secrets.clone(),
        },
        status: status(&unavailable, plugin.id()),
        unavailable: unavailable.get(plugin.id()).cloned(),
    }
}

/// A change of a rescan.
pub fn plugin_change(change: Change) -> PluginChange {
    match change {
        Change::Loaded { plugin } => PluginChange::Loaded { plugin },
        Change::Reloaded { plugin } => PluginChange::Reloaded { plugin },
        Change::Removed { plugin } => PluginChange::Removed { plugin },
        Change::Unavailable { plugin } => PluginChange::Unavailable { plugin },
        Change::RestartRequired { plugin } => PluginChange::RestartRequired { plugin },
        Change::Failed { error } => PluginChange::Failed { error },
    }
}

/// Call `request.operation` of plugin `id` on `host` as `plexus call` does
/// (a fresh execution context). Blocks for the call: run it off the async
/// runtime. The daemon's `POST /v1/plugins/{id}/call` and the embedded
/// Python API share it.
///
/// # Errors
/// A timeout above [`MAX_CALL_TIMEOUT_MS`] is `InvalidConfiguration`; the
/// call's own failure as [`call_error`] maps it.
pub fn call_plugin(host: &Host, id: &str, request: CallPlugin) -> Result<CallResult, DaemonError> {
    if request.timeout_ms.is_some_and(|ms| ms == 0 || ms > MAX_CALL_TIMEOUT_MS) {
        return Err(DaemonError::invalid(format!(
            "timeout_ms: between 1 and {MAX_CALL_TIMEOUT_MS} (30 days), got {}",
            request.timeout_ms.unwrap_or_default()
        )));
    }
    let kind = request.kind.map(|k| match k {
        PluginKind::Native => manifest::PluginKind::Native,
        PluginKind::Wasm => manifest::PluginKind::Wasm,
        PluginKind::InProcess => manifest::PluginKind::InProcess,
    });
    let options = CallOptions {
        timeout: request.timeout_ms.map(std::time::Duration::from_millis),
        kind,
        ..CallOptions::default()
    };
    let started = std::time::Instant::now();
    let mut out = host.call(id, &request.operation, request.params, options).map_err(|e| call_error(&e))?;
    // A secret the plugin was handed (its config) never comes back in clear.
    redactor().value(&mut out.output);
    Ok(CallResult {
        plugin_id: id.to_owned(),
        operation: request.operation,
        output: out.output,
        metrics: out.metrics.into_iter().collect(),
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// A failed plugin call as the API reports it: `PluginNotFound`, `NotFound`
/// (no such operation), `Timeout`, `DependencyNotSatisfied` (no capacity,
/// unavailable: nothing ran), `Internal` (the host failed, or the plugin broke
/// the contract), or `ExecutionFailed` (the plugin ran and failed: an error,
/// a panic, a trap, a crash, a limit, a cancel); `details` holds the host's error kind and, for the plugin's own
/// error, its JSON (`{"code", "message", "retryable", …}`). Secret values are redacted.
pub fn call_error(error: &CallError) -> DaemonError {
    let code = match error {
        CallError::PluginNotFound(_) => ErrorCode::PluginNotFound,
        CallError::OperationNotFound { .. } => ErrorCode::NotFound,
        CallError::Timeout { .. } => ErrorCode::Timeout,
        CallError::Capacity { .. } | CallError::Unavailable { .. } => ErrorCode::DependencyNotSatisfied,
        CallError::Host { .. } => ErrorCode::Internal,
        _ => ErrorCode::ExecutionFailed,
    };
    let mut details = vec![format!("kind: {}", error.kind())];
    if let CallError::Plugin { error, .. } = error {
        // Redacted before it is encoded: an escaped value would not match.
        let mut json = serde_json::to_value(error).unwrap_or_default();
        redactor().value(&mut json);
        details.push(format!("plugin_error: {json}"));
    }
    DaemonError::new(code, redactor().text(&error.to_string())).with_details(details)
}
