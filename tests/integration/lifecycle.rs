//! Contract 0.3 end to end, with the example orchestration plugin built both
//! ways: the lifecycle hooks (`initialize` / `cleanup`) run once per the
//! documented rule for each kind; a plugin's orchestration requests reach
//! the host's orchestrator only with the capability and the grant, through
//! every transport (in-process native, worker process, WASM); and in a real
//! daemon a plugin starts a workflow, creates and cancels its schedule, is
//! refused another's, and cannot start workflows in an endless chain.
//!
//! The native library is loaded in-process by one test only
//! (`lifecycle_hooks_follow_the_documented_rule`): a library is loaded once
//! per process and its hooks follow the process, not a test.

use crate::daemon_support::{RunningDaemon, copy_plugin};
use crate::support::{Fixture, built_plugins};
use plexus_client::status::WorkflowStatus;
use plexus_host::services::{Caller, Orchestrator};
use plexus_host::{CallError, CallOptions, Host, HostBuilder};
use plexus_sdk::{ErrorKind, Orchestration, PluginError};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn artifact(kind: &str) -> PathBuf {
    let file = if kind == "native" { "libplexus_orchestration.so" } else { "plexus_orchestration.wasm" };
    built_plugins().join(format!("orchestration-{kind}")).join(file)
}

/// A manifest for the built orchestration plugin of `kind`, with `extra`.
fn manifest(kind: &str, extra: &str) -> String {
    format!(
        "id = \"plexus.orchestration.{kind}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"\nartifact = \"{}\"\n{extra}\n",
        artifact(kind).display()
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// The lines of `path` once they are `want` (a retired instance cleans up on
/// a thread of its own), within 10 s.
fn lines_become(path: &Path, want: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lines(path) != want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lines(path), want);
}

fn call(host: &Host, kind: &str, operation: &str, params: Value) -> Result<Value, CallError> {
    host.call(&format!("plexus.orchestration.{kind}"), operation, params, CallOptions::default()).map(|o| o.output)
}

/// A host over the fixture (worker processes are the `plexus` binary), load errors and all.
fn host_with_errors(f: &Fixture) -> Host {
    HostBuilder::new()
        .plugin_dir(f.plugins.path())
        .cache_dir(f.cache.path())
        .worker_program(env!("CARGO_BIN_EXE_plexus"))
        .build()
        .unwrap()
}

/// [`host_with_errors`], where every plugin loaded.
fn host_of(f: &Fixture) -> Host {
    let host = host_with_errors(f);
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    host
}

#[test]
fn lifecycle_hooks_follow_the_documented_rule() {
    let out = tempfile::tempdir().unwrap();

    // Native, in the host's process: initialize at load, cleanup when the host stops.
    let log = out.path().join("native.log");
    let f = Fixture::new();
    f.folder("o", &manifest("native", &format!("[config]\nlifecycle_log = \"{}\"\n", log.display())));
    let host = host_of(&f);
    assert_eq!(lines(&log), ["initialize native"], "initialize runs when the plugin loads");
    for _ in 0..3 {
        let seen = call(&host, "native", "lifecycle", Value::Null).unwrap();
        assert_eq!(seen, json!({"initialized": true, "config": {"lifecycle_log": log}}));
    }
    check_orchestration(&host, "native");
    let (rescanned, _) = host.rescan();
    drop(host);
    assert_eq!(lines(&log), ["initialize native"], "a rescan keeps the plugin: neither hook runs");
    drop(rescanned);
    assert_eq!(lines(&log), ["initialize native", "cleanup native"], "cleanup runs when the host stops");
    // An initialize error: the plugin does not load, the others do.
    let f = Fixture::new();
    f.folder("bad", &manifest("native", "[config]\nfail_initialize = true\n"));
    f.echo("echo", "wasm", "");
    let host = host_with_errors(&f);
    let errors: Vec<String> = host.load_errors().iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("initialize failed: invalid-input: fail_initialize is set"), "{errors:?}");
    assert!(host.plugin("plexus.echo.wasm").is_some());
    drop(host);
    // The same in a worker process.
    let f = Fixture::new();
    f.folder("bad", &manifest("native", "isolation = \"process\"\n[config]\nfail_initialize = true\n"));
    let host = host_with_errors(&f);
    let errors: Vec<String> = host.load_errors().iter().map(ToString::to_string).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("initialize failed: invalid-input: fail_initialize is set"),
        "{errors:?}"
    );
    drop(host);

    // Native in worker processes: each worker initializes when it starts and
    // cleans up when it is retired (here: the host stops).
    let log = out.path().join("worker.log");
    let f = Fixture::new();
    let extra =
        format!("isolation = \"process\"\n[worker]\nmax = 1\n[config]\nlifecycle_log = \"{}\"\n", log.display());
    f.folder("o", &manifest("native", &extra));
    let host = host_of(&f);
    for _ in 0..2 {
        assert_eq!(call(&host, "native", "lifecycle", Value::Null).unwrap()["initialized"], true);
    }
    assert_eq!(lines(&log), ["initialize native"], "one worker, initialized once");
    drop(host);
    assert_eq!(lines(&log), ["initialize native", "cleanup native"]);

    // WASM, an instance per call: initialize, the call, cleanup — each call.
    let grant = |name: &str, more: &str| {
        format!(
            "[config]\nlifecycle_log = \"/out/{name}\"\n[permissions]\ndirs = [{{ host = \"{}\", guest = \"/out\", access = \"read-write\" }}]\n{more}",
            out.path().display()
        )
    };
    let f = Fixture::new();
    f.folder("o", &manifest("wasm", &grant("wasm.log", "")));
    let host = host_of(&f);
    assert!(lines(&out.path().join("wasm.log")).is_empty(), "describing the plugin at load runs no hook");
    for _ in 0..2 {
        let seen = call(&host, "wasm", "lifecycle", Value::Null).unwrap();
        assert_eq!(seen, json!({"initialized": true, "config": {"lifecycle_log": "/out/wasm.log"}}));
    }
    let per_call = ["initialize wasm", "cleanup wasm", "initialize wasm", "cleanup wasm"];
    assert_eq!(lines(&out.path().join("wasm.log")), per_call);
    check_orchestration(&host, "wasm");
    drop(host);

    // WASM, reused instances: initialize before an instance's first call,
    // cleanup when it retires (here: its calls are spent, then the host stops).
    let f = Fixture::new();
    f.folder("o", &manifest("wasm", &grant("reused.log", "[instances]\nreuse = \"plugin\"\nmax_calls = 3\n")));
    let host = host_of(&f);
    for _ in 0..3 {
        assert_eq!(call(&host, "wasm", "lifecycle", Value::Null).unwrap()["initialized"], true);
    }
    // Retired after its 3 calls.
    lines_become(&out.path().join("reused.log"), &["initialize wasm", "cleanup wasm"]);
    call(&host, "wasm", "lifecycle", Value::Null).unwrap();
    assert_eq!(lines(&out.path().join("reused.log")).len(), 3, "a new instance initialized");
    drop(host);
    assert_eq!(
        lines(&out.path().join("reused.log")),
        ["initialize wasm", "cleanup wasm", "initialize wasm", "cleanup wasm"],
        "the idle instance retires when the host stops"
    );

    // A WASM initialize error fails the call it was for, with its kind.
    let f = Fixture::new();
    f.folder("o", &manifest("wasm", "[config]\nfail_initialize = true\n"));
    let host = host_of(&f);
    match call(&host, "wasm", "lifecycle", Value::Null) {
        Err(CallError::Plugin { error, .. }) => {
            assert_eq!(error.kind, ErrorKind::InvalidInput);
            assert_eq!(error.message, "initialize: fail_initialize is set");
        }
        other => panic!("expected the initialize error, got {other:?}"),
    }
}

#[test]
fn a_native_library_of_contract_0_2_still_loads_and_runs_without_hooks() {
    for extra in ["", "isolation = \"process\"\n"] {
        let f = Fixture::new();
        let manifest = format!(
            "id = \"plexus.legacy\"\nversion = \"0.1.0\"\nkind = \"native\"\nartifact = \"{}\"\ncontract = \"^0.2\"\n{extra}",
            crate::support::legacy_native_artifact().display()
        );
        f.folder("legacy", &manifest);
        // Its `initialize` fails if called: loading proves the old root module has none.
        let host = host_of(&f);
        let meta = host.plugin("plexus.legacy").unwrap().runtime.metadata().clone();
        assert_eq!(meta.contract_version, "0.2.0");
        let out = host.call("plexus.legacy", "echo", json!({"old": true}), CallOptions::default()).unwrap();
        assert_eq!(out.output, json!({"old": true}), "{extra}");
    }
}

/// An orchestrator that records requests and answers from a script.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String, Orchestration)>>);

impl Orchestrator for Recorder {
    fn orchestrate(&self, caller: &Caller<'_>, request: Orchestration) -> Result<Value, PluginError> {
        self.0.lock().unwrap().push((caller.plugin.to_owned(), caller.execution.to_owned(), request.clone()));
        match request {
            Orchestration::StartWorkflow { workflow, .. } if workflow == "known" => Ok(json!("exec-7")),
            Orchestration::StartWorkflow { workflow, .. } => {
                Err(PluginError::not_found(format!("workflow `{workflow}`")))
            }
            Orchestration::ExecutionStatus { execution } => {
                Ok(json!({"execution_id": execution, "state": "Completed"}))
            }
            Orchestration::CreateSchedule { spec } => Ok(spec["id"].clone()),
            Orchestration::CancelSchedule { .. } => Ok(Value::Null),
        }
    }
}

/// `host`'s orchestration plugin of `kind`, whose test manifest grants
/// nothing, is refused: first for want of an orchestrator, then, with one,
/// for want of the grant — and the orchestrator never hears of it.
fn check_orchestration(host: &Host, kind: &str) {
    let start = json!({"workflow": "known", "inputs": {"n": 1}});
    let Err(CallError::Plugin { error, .. }) = call(host, kind, "start_workflow", start.clone()) else {
        panic!("no orchestrator: refused")
    };
    assert!(error.message.contains("no orchestration services"), "{error}");
    let recorder = Arc::new(Recorder::default());
    host.set_orchestrator(recorder.clone());
    let Err(CallError::Plugin { error, .. }) = call(host, kind, "start_workflow", start) else {
        panic!("no grant: refused")
    };
    assert!(error.message.contains("is not granted orchestration"), "{error}");
    assert!(recorder.0.lock().unwrap().is_empty(), "a refused request never reaches the orchestrator");
}

#[test]
fn orchestration_requests_reach_the_orchestrator_through_every_transport() {
    for (kind, extra) in [
        ("wasm", ""),
        // Worker processes (not in-process: see the module's note).
        ("native", "isolation = \"process\"\n"),
    ] {
        let f = Fixture::new();
        f.folder("o", &manifest(kind, &format!("{extra}[permissions]\norchestration = true\n")));
        let host = host_of(&f);
        let recorder = Arc::new(Recorder::default());
        host.set_orchestrator(recorder.clone());
        let id = format!("plexus.orchestration.{kind}");
        let out = call(&host, kind, "start_workflow", json!({"workflow": "known", "inputs": {"n": 1}})).unwrap();
        assert_eq!(out, json!({"execution_id": "exec-7"}), "{kind}");
        let Err(CallError::Plugin { error, .. }) = call(&host, kind, "start_workflow", json!({"workflow": "nope"}))
        else {
            panic!("{kind}: an unknown workflow is an error")
        };
        assert_eq!((error.kind, error.message.as_str()), (ErrorKind::NotFound, "workflow `nope`"), "{kind}");
        let status = call(&host, kind, "status", json!({"execution_id": "exec-7"})).unwrap();
        assert_eq!(status, json!({"execution_id": "exec-7", "state": "Completed"}));
        let spec = json!({"id": "s1", "when": "every 1h", "workflow": "known"});
        assert_eq!(call(&host, kind, "schedule", json!({"spec": spec})).unwrap(), json!({"schedule_id": "s1"}));
        assert_eq!(call(&host, kind, "cancel_schedule", json!({"schedule_id": "s1"})).unwrap()["schedule_id"], "s1");
        let seen = recorder.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 5, "{kind}: {seen:?}");
        assert!(seen.iter().all(|(plugin, execution, _)| *plugin == id && !execution.is_empty()), "{seen:?}");
        assert_eq!(
            seen[0].2,
            Orchestration::StartWorkflow {
                workflow: "known".into(),
                inputs: json!({"n": 1}).as_object().unwrap().clone()
            }
        );
        assert_eq!(seen[3].2, Orchestration::CreateSchedule { spec });
    }
}

#[test]
fn in_a_daemon_a_plugin_starts_workflows_and_manages_its_own_schedules() {
    let data = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    copy_plugin("orchestration-wasm", plugins.path());
    copy_plugin("echo-wasm", plugins.path());
    // The native build too, recording its hooks: the daemon's host initializes it when it
    // starts and cleans it up when it stops.
    let native = copy_plugin("orchestration-native", plugins.path()).join("plugin.toml");
    let hooks = data.path().join("hooks.log");
    let manifest = std::fs::read_to_string(&native).unwrap();
    let manifest = manifest.replacen("[config]\n", &format!("[config]\nlifecycle_log = \"{}\"\n", hooks.display()), 1);
    std::fs::write(&native, manifest).unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    assert_eq!(lines(&hooks), ["initialize native"]);
    d.register("id: child\nsteps:\n  - { id: hello, plugin_id: plexus.echo.wasm, method_name: echo, parameters: { from: child } }\n");
    d.register(
        "id: parent
steps:
  - { id: start, plugin_id: plexus.orchestration.wasm, method_name: start_workflow, parameters: { workflow: child } }
  - { id: look, plugin_id: plexus.orchestration.wasm, method_name: status, parameters: { execution_id: \"${{ steps.start.output.execution_id }}\" }, dependencies: [start] }
",
    );
    let parent = d.wait_for(&d.start_execution("parent"), Duration::from_secs(30));
    assert_eq!(parent.status.status, WorkflowStatus::Completed, "{parent:?}");
    let child_id = parent.status.steps[0].output.as_ref().unwrap()["execution_id"].as_str().unwrap().to_owned();
    let looked = parent.status.steps[1].output.as_ref().unwrap();
    assert_eq!(looked["execution_id"], json!(child_id), "{looked}");
    assert_eq!(looked["workflow_id"], "child");
    let child = d.wait_for(&child_id, Duration::from_secs(30));
    assert_eq!(child.status.status, WorkflowStatus::Completed);
    assert_eq!(child.status.steps[0].output, Some(json!({"from": "child"})));

    // Its own schedule: created (owned by it), then cancelled by it.
    d.register(
        "id: plan
steps:
  - { id: make, plugin_id: plexus.orchestration.wasm, method_name: schedule, parameters: { spec: { id: from-plugin, when: every 1h, workflow: child, owner: someone-else } } }
",
    );
    assert_eq!(
        d.wait_for(&d.start_execution("plan"), Duration::from_secs(30)).status.status,
        WorkflowStatus::Completed
    );
    let (code, view) = d.call("GET", "/v1/schedules/from-plugin", None);
    assert_eq!(code, 200, "{view}");
    assert_eq!(
        view["owner"], "plexus.orchestration.wasm",
        "the daemon sets the owner, whatever the plugin wrote: {view}"
    );
    let (code, _) =
        d.call("POST", "/v1/schedules", Some(json!({"id": "operator-owned", "when": "every 1h", "workflow": "child"})));
    assert_eq!(code, 201);
    let cancel = |id: &str| {
        format!(
            "id: drop-{id}\nsteps:\n  - {{ id: cancel, plugin_id: plexus.orchestration.wasm, method_name: cancel_schedule, parameters: {{ schedule_id: {id} }} }}\n"
        )
    };
    d.register(&cancel("operator-owned"));
    let refused = d.wait_for(&d.start_execution("drop-operator-owned"), Duration::from_secs(30));
    assert_eq!(refused.status.status, WorkflowStatus::Failed);
    let why = refused.status.steps[0].error.as_ref().unwrap().message.clone();
    assert!(why.contains("does not belong to plugin `plexus.orchestration.wasm`"), "{why}");
    assert_eq!(d.call("GET", "/v1/schedules/operator-owned", None).0, 200, "an operator's schedule stays");
    d.register(&cancel("from-plugin"));
    let cancelled = d.wait_for(&d.start_execution("drop-from-plugin"), Duration::from_secs(30));
    assert_eq!(cancelled.status.status, WorkflowStatus::Completed, "{cancelled:?}");
    assert_eq!(d.call("GET", "/v1/schedules/from-plugin", None).0, 404);

    // A workflow whose step starts the same workflow stops at the nesting limit.
    d.register("id: again\nsteps:\n  - { id: again, plugin_id: plexus.orchestration.wasm, method_name: start_workflow, parameters: { workflow: again } }\n");
    d.start_execution("again");
    d.eventually("the chain to stop at its limit", Duration::from_secs(60), |d| {
        let all = d
            .client()
            .executions(&plexus_client::ExecutionQuery { workflow: Some("again".into()), ..Default::default() });
        let all = all.unwrap().executions;
        all.len() == 9 && all.iter().all(|e| e.status.is_terminal())
    });
    let all =
        d.client().executions(&plexus_client::ExecutionQuery { workflow: Some("again".into()), ..Default::default() });
    let failed: Vec<_> = all.unwrap().executions.into_iter().filter(|e| e.status == WorkflowStatus::Failed).collect();
    assert_eq!(failed.len(), 1, "the ninth is refused another: {failed:?}");
    let why = d.execution(&failed[0].execution_id).status.steps[0].error.as_ref().unwrap().message.clone();
    assert!(why.contains("nest at most 8 deep"), "{why}");

    assert!(d.terminate().success());
    assert_eq!(lines(&hooks), ["initialize native", "cleanup native"], "the daemon's host stopped");
}
