//! The daemon over HTTP on loopback: the token, every route, error codes, bad
//! bodies, the CLI client, SIGTERM, a `kill -9` in the middle of a workflow,
//! and hot plugin reload.

use crate::daemon_support::{RunningDaemon, copy_plugin};
use plexus_client::status::WorkflowStatus;
use plexus_client::{CallResult, Cleared, StartExecution, Transaction, TransactionState, WorkflowHistory};
use plexus_client::{
    Cancelling, DaemonError, ErrorCode, Execution, ExecutionList, ExecutionLogs, ExecutionQuery, ExecutionSteps,
    FireOutcome, Fired, Health, HealthStatus, NetworkGrant, Overlap, PluginDetails, PluginKind, PluginList,
    PluginStatus, Registered, Reloaded, ScheduleDetails, ScheduleList, ScheduleSpec, ScheduleView, SourceFormat,
    Started, Transition, Validation, WorkflowList, WorkflowVersion,
};
use plexus_client::{HookCreated, HookDetails, HookList, SecretInfo, SecretList};
use plexus_client::{TemplateDetail, TemplateList, TemplateSummary, TransactionList};
use plexus_daemon::openapi;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

pub(crate) fn plugins_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        copy_plugin(name, dir.path());
    }
    dir
}

const CHAIN: &str = "id: chain
steps:
  - { id: one, plugin_id: plexus.echo.native, method_name: echo, parameters: { n: 1 } }
  - { id: two, plugin_id: plexus.echo.wasm, method_name: echo, parameters: { n: \"${{ steps.one.output.n + 1 }}\" }, dependencies: [one] }
outputs:
  n: \"${{ steps.two.output.n }}\"
";

#[test]
fn every_route_needs_the_token_and_answers_with_codes() {
    let plugins = plugins_dir(&["echo-native", "echo-wasm"]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    // The token file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.path().join("token")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No token, or a wrong one: 401 everywhere but health.
    let routes = openapi::routes();
    assert!(routes.len() >= 25, "{routes:?}");
    for (method, route) in &routes {
        let path = route.replace("{id}", "x");
        for token in [None, Some("wrong")] {
            let (status, body) = d.raw(method, &path, token, None);
            if route == "/v1/health" {
                assert_eq!(status, 200);
            } else if (method.as_str(), route.as_str()) == ("POST", "/v1/hooks/{id}") {
                // A delivery needs no token: its signature is checked (no hook `x` here).
                assert_eq!(status, 404, "{method} {path} with {token:?}");
            } else if route == "/v1/session" {
                // Logging in takes the token in its body (none here: refused); logging out needs none.
                let expected = if method == "POST" { 415 } else { 204 };
                assert_eq!(status, expected, "{method} {path} with {token:?}");
            } else {
                assert_eq!(status, 401, "{method} {path} with {token:?}");
                let body: DaemonError = serde_json::from_slice(&body).unwrap();
                assert_eq!(body.code, ErrorCode::Unauthorized);
            }
        }
    }

    // Every route over raw HTTP, its answer read as the client's type.
    let mut hit = BTreeSet::new();
    let mut call = |method: &str, route: &str, path: &str, body: Option<Value>, expect: u16| -> Value {
        let (status, out) = d.call(method, path, body);
        assert_eq!(status, expect, "{method} {path}: {out}");
        hit.insert((method.to_owned(), route.to_owned(), status));
        out
    };
    fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"))
    }
    let health: Health = typed(call("GET", "/v1/health", "/v1/health", None, 200));
    assert_eq!((health.status, health.plugins), (HealthStatus::Ok, 2));
    let metrics = call("GET", "/metrics", "/metrics", None, 200);
    let node = health.node.clone();
    assert_eq!(metric(metrics.as_str().unwrap(), "plexus_plugins_loaded"), Some(2.0));
    let doc = call("GET", "/v1/openapi.json", "/v1/openapi.json", None, 200);
    // On SQLite the daemon is a cluster of one: it lists itself.
    let nodes: plexus_client::NodeList = typed(call("GET", "/v1/nodes", "/v1/nodes", None, 200));
    assert_eq!((nodes.this.as_str(), nodes.nodes.len()), (node.as_str(), 1));
    assert_eq!(nodes.nodes[0].state, plexus_client::NodeState::Alive);
    assert_eq!(&doc, openapi::document());
    let list: PluginList = typed(call("GET", "/v1/plugins", "/v1/plugins", None, 200));
    assert_eq!(list.plugins.len(), 2, "{list:?}");
    assert!(list.plugins.iter().all(|p| p.status == PluginStatus::Loaded));
    let info: PluginDetails = typed(call("GET", "/v1/plugins/{id}", "/v1/plugins/plexus.echo.wasm", None, 200));
    assert_eq!((info.kind, info.permissions.network.clone()), (PluginKind::Wasm, NetworkGrant::All(false)));
    let reloaded: Reloaded = typed(call("POST", "/v1/plugins/reload", "/v1/plugins/reload", None, 200));
    assert_eq!(reloaded.changes, []);
    // A direct call: its output; each way it fails has its code.
    let body = json!({"operation": "echo", "params": {"x": [1, "two"]}});
    let called: CallResult =
        typed(call("POST", "/v1/plugins/{id}/call", "/v1/plugins/plexus.echo.native/call", Some(body), 200));
    assert_eq!((called.plugin_id.as_str(), called.output), ("plexus.echo.native", json!({"x": [1, "two"]})));
    for (path, body, status, expected) in [
        ("/v1/plugins/nope/call", json!({"operation": "echo"}), 404, ErrorCode::PluginNotFound),
        ("/v1/plugins/plexus.echo.wasm/call", json!({"operation": "nope"}), 404, ErrorCode::NotFound),
        (
            "/v1/plugins/plexus.echo.wasm/call",
            json!({"operation": "fail", "params": {"kind": "failed", "message": "no"}}),
            422,
            ErrorCode::ExecutionFailed,
        ),
        (
            "/v1/plugins/plexus.echo.wasm/call",
            json!({"operation": "sleep", "params": {"ms": 5000}, "timeout_ms": 100}),
            504,
            ErrorCode::Timeout,
        ),
        (
            "/v1/plugins/plexus.echo.wasm/call",
            json!({"operation": "echo", "timeout_ms": 0}),
            400,
            ErrorCode::InvalidConfiguration,
        ),
        (
            "/v1/plugins/plexus.echo.wasm/call",
            json!({"operation": "echo", "stray": 1}),
            400,
            ErrorCode::InvalidConfiguration,
        ),
    ] {
        let (got, answer) = d.call("POST", path, Some(body));
        assert_eq!((got, typed::<DaemonError>(answer.clone()).code), (status, expected), "{path}: {answer}");
    }

    // Workflows: validate, register (201, then 200 unchanged), list, get, versions.
    let source = json!({"source": CHAIN});
    let valid: Validation =
        typed(call("POST", "/v1/workflows/validate", "/v1/workflows/validate", Some(source.clone()), 200));
    assert_eq!(valid.stages, [["one"], ["two"]]);
    let reg: Registered = typed(call("POST", "/v1/workflows", "/v1/workflows", Some(source.clone()), 201));
    assert_eq!((reg.id.as_str(), reg.version, reg.created), ("chain", 1, true));
    let again: Registered = typed(call("POST", "/v1/workflows", "/v1/workflows", Some(source), 200));
    assert!(!again.created);
    let v2: Registered = typed(call(
        "POST",
        "/v1/workflows",
        "/v1/workflows",
        Some(json!({"source": CHAIN.replace("n: 1", "n: 10")})),
        201,
    ));
    assert_eq!(v2.version, 2);
    let listed: WorkflowList = typed(call("GET", "/v1/workflows", "/v1/workflows", None, 200));
    assert_eq!((listed.workflows[0].version, listed.workflows[0].format), (2, SourceFormat::Yaml));
    let v1: WorkflowVersion = typed(call("GET", "/v1/workflows/{id}", "/v1/workflows/chain?version=1", None, 200));
    assert!(v1.source.contains("n: 1 }"));
    // QtForge's get_workflow(...).to_json(): the definition as read, every default written out.
    let definition = v1.definition.expect("GET /v1/workflows/{id} answers the definition");
    assert_eq!(definition["steps"][0]["parameters"], json!({"n": 1}));
    assert_eq!(definition["steps"][1]["retry"]["max_attempts"], 1);
    let history: WorkflowHistory =
        typed(call("GET", "/v1/workflows/{id}/versions", "/v1/workflows/chain/versions", None, 200));
    assert_eq!(history.current, Some(2));
    assert_eq!(history.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);

    // Executions: start, status (pinned to version 2), steps, logs, list with filters.
    let started: Started =
        typed(call("POST", "/v1/executions", "/v1/executions", Some(json!({"workflow": "chain"})), 202));
    let id = started.execution_id.clone();
    assert_eq!(started.workflow_version, 2);
    let done = d.wait_for(&id, Duration::from_secs(20));
    assert_eq!(done.status.status, WorkflowStatus::Completed, "{done:?}");
    assert_eq!(done.status.outputs["n"], 11);
    let status: Execution = typed(call("GET", "/v1/executions/{id}", &format!("/v1/executions/{id}"), None, 200));
    assert_eq!((status.meta.workflow_version, status.meta.runs, status.held), (2, 1, false));
    let steps: ExecutionSteps =
        typed(call("GET", "/v1/executions/{id}/steps", &format!("/v1/executions/{id}/steps"), None, 200));
    assert_eq!(steps.steps[1].output, Some(json!({"n": 11})));
    // A step that is not a map has no items.
    let items: plexus_client::ExecutionItems = typed(call(
        "GET",
        "/v1/executions/{id}/steps/{step}/items",
        &format!("/v1/executions/{id}/steps/one/items"),
        None,
        200,
    ));
    assert!(items.items.is_empty());
    assert_eq!(d.call("GET", &format!("/v1/executions/{id}/steps/nope/items"), None).0, 404);
    let logs: ExecutionLogs =
        typed(call("GET", "/v1/executions/{id}/logs", &format!("/v1/executions/{id}/logs"), None, 200));
    let transitions: Vec<Transition> = logs.events.iter().map(|e| e.transition).collect();
    use WorkflowStatus as W;
    use plexus_client::status::StepStatus as S;
    let expected = [
        Transition::Execution(W::Pending),
        Transition::Execution(W::Running),
        Transition::Step(S::Running),
        Transition::Step(S::Completed),
        Transition::Step(S::Running),
        Transition::Step(S::Completed),
        Transition::Execution(W::Completed),
    ];
    assert_eq!(transitions, expected);
    let raw = d.call("GET", &format!("/v1/executions/{id}/logs"), None).1;
    assert_eq!(
        (raw["events"][2]["kind"].as_str(), raw["events"][2]["status"].as_str()),
        (Some("step"), Some("running"))
    );
    assert_eq!(logs.status, WorkflowStatus::Completed);
    let after = logs.events[4].seq;
    let tail: ExecutionLogs = typed(d.call("GET", &format!("/v1/executions/{id}/logs?after={after}"), None).1);
    assert_eq!(tail.events.len(), 2);
    let listed: ExecutionList = typed(call("GET", "/v1/executions", "/v1/executions", None, 200));
    assert_eq!(listed.executions[0].execution_id, id);
    let failed: ExecutionList = typed(d.call("GET", "/v1/executions?status=failed", None).1);
    assert!(failed.executions.is_empty());
    let (code, body) = d.call("GET", "/v1/executions?status=exploded", None);
    assert_eq!(code, 400, "an unknown status filter is refused, not answered with nothing: {body}");
    let body: DaemonError = typed(body);
    assert_eq!(body.code, ErrorCode::InvalidConfiguration);
    assert!(body.message.contains("`exploded`"), "{body:?}");
    let (code, body) = d.call("GET", "/v1/executions?limt=5", None);
    assert_eq!(code, 400, "a misspelled query parameter is refused: {body}");
    assert!(body["message"].as_str().unwrap().contains("limt"), "{body}");
    // An older version on request; then made current again (as version 3; a second time changes nothing).
    let older: Started = typed(d.call("POST", "/v1/executions", Some(json!({"workflow": "chain", "version": 1}))).1);
    assert_eq!(older.workflow_version, 1);
    assert_eq!(d.wait_for(&older.execution_id, Duration::from_secs(20)).status.outputs["n"], 2);
    let back: Registered = typed(call(
        "POST",
        "/v1/workflows/{id}/rollback",
        "/v1/workflows/chain/rollback",
        Some(json!({"version": 1})),
        201,
    ));
    assert_eq!((back.version, back.created), (3, true));
    let same: Registered = typed(call(
        "POST",
        "/v1/workflows/{id}/rollback",
        "/v1/workflows/chain/rollback",
        Some(json!({"version": 1})),
        200,
    ));
    assert_eq!((same.version, same.created), (3, false));
    // A completed execution can be neither cancelled nor retried.
    let cancel = call("POST", "/v1/executions/{id}/cancel", &format!("/v1/executions/{id}/cancel"), None, 409);
    assert_eq!(typed::<DaemonError>(cancel).code, ErrorCode::InvalidState);
    let retry = call("POST", "/v1/executions/{id}/retry", &format!("/v1/executions/{id}/retry"), None, 409);
    assert_eq!(typed::<DaemonError>(retry).code, ErrorCode::InvalidState);
    // A running one can be cancelled.
    d.register("id: slow\nsteps:\n  - { id: nap, plugin_id: plexus.echo.native, method_name: sleep, parameters: { ms: 5000 } }\n");
    let slow_id = d.start_execution("slow");
    d.eventually("the nap to start", Duration::from_secs(10), |d| {
        d.execution(&slow_id).status.status == WorkflowStatus::Running
    });
    let waited = call("GET", "/v1/executions/{id}", &format!("/v1/executions/{slow_id}?wait_ms=50"), None, 504);
    assert_eq!(typed::<DaemonError>(waited).code, ErrorCode::Timeout);
    let cancelling: Cancelling =
        typed(call("POST", "/v1/executions/{id}/cancel", &format!("/v1/executions/{slow_id}/cancel"), None, 202));
    assert!(cancelling.cancelling);
    assert_eq!(d.wait_for(&slow_id, Duration::from_secs(10)).status.status, WorkflowStatus::Cancelled);
    // A cancelled one can be retried.
    let retried: Execution =
        typed(call("POST", "/v1/executions/{id}/retry", &format!("/v1/executions/{slow_id}/retry"), None, 202));
    assert_eq!(retried.meta.runs, 2);
    d.call("POST", &format!("/v1/executions/{slow_id}/cancel"), None);

    // Schedules.
    let sched = json!({"id": "yearly", "when": "cron 0 3 1 1 *", "timezone": "Europe/Berlin", "workflow": "chain"});
    let created: ScheduleView = typed(call("POST", "/v1/schedules", "/v1/schedules", Some(sched.clone()), 201));
    assert!(created.next_fire.as_deref().unwrap().ends_with(":00:00+00:00"), "{created:?}");
    // The next five fire times, a year apart, the first being `next_fire`.
    assert_eq!((created.upcoming.len(), created.upcoming.first()), (5, created.next_fire.as_ref()));
    let years: Vec<&str> = created.upcoming.iter().map(|t| &t[..4]).collect();
    assert!(years.windows(2).all(|w| w[1].parse::<u32>().unwrap() == w[0].parse::<u32>().unwrap() + 1), "{years:?}");
    let taken = call("POST", "/v1/schedules", "/v1/schedules", Some(sched), 409);
    assert_eq!(typed::<DaemonError>(taken).code, ErrorCode::AlreadyExists);
    let listed: ScheduleList = typed(call("GET", "/v1/schedules", "/v1/schedules", None, 200));
    assert_eq!(listed.schedules[0].spec.id, "yearly");
    let paused: ScheduleView = typed(call("POST", "/v1/schedules/{id}/pause", "/v1/schedules/yearly/pause", None, 200));
    assert!(paused.upcoming.is_empty(), "a paused schedule fires no more: {paused:?}");
    assert_eq!((paused.spec.enabled, paused.next_fire), (false, None));
    let resumed: ScheduleView =
        typed(call("POST", "/v1/schedules/{id}/resume", "/v1/schedules/yearly/resume", None, 200));
    assert!(resumed.spec.enabled && resumed.next_fire.is_some());
    let fired: Fired = typed(call("POST", "/v1/schedules/{id}/run", "/v1/schedules/yearly/run", None, 202));
    let by_hand = d.wait_for(&fired.execution_id, Duration::from_secs(20));
    assert_eq!(by_hand.meta.schedule_id.as_deref(), Some("yearly"));
    let shown: ScheduleDetails = typed(call("GET", "/v1/schedules/{id}", "/v1/schedules/yearly", None, 200));
    assert!(shown.history.iter().any(|f| f.outcome == FireOutcome::Manual), "{shown:?}");
    call("DELETE", "/v1/schedules/{id}", "/v1/schedules/yearly", None, 204);
    call("DELETE", "/v1/workflows/{id}", "/v1/workflows/slow", None, 204);

    // Error codes from QtForge's list.
    let code = |v: Value| typed::<DaemonError>(v).code;
    let unknown = call("POST", "/v1/executions", "/v1/executions", Some(json!({"workflow": "nope"})), 404);
    assert_eq!(code(unknown), ErrorCode::NotFound);
    let bad =
        json!({"source": "id: bad\nsteps:\n  - { id: a, plugin_id: no.such, method_name: x, dependencies: [b] }\n"});
    let invalid: DaemonError = typed(call("POST", "/v1/workflows", "/v1/workflows", Some(bad), 400));
    assert_eq!(invalid.code, ErrorCode::InvalidConfiguration);
    assert!(invalid.details.len() >= 2, "{invalid:?}");
    let dep = json!({"id": "x", "when": "every 1h", "workflow": "missing"});
    assert_eq!(code(call("POST", "/v1/schedules", "/v1/schedules", Some(dep), 422)), ErrorCode::DependencyNotSatisfied);
    let plug = json!({"id": "y", "when": "every 1h", "plugin": "no.such", "operation": "x"});
    assert_eq!(code(call("POST", "/v1/schedules", "/v1/schedules", Some(plug), 404)), ErrorCode::PluginNotFound);
    assert_eq!(code(call("GET", "/v1/plugins/{id}", "/v1/plugins/no.such", None, 404)), ErrorCode::PluginNotFound);
    assert_eq!(d.call("GET", "/v1/nothing/here", None).0, 404);
    // Transactions: begin, an execution joins, show, roll back; another is committed.
    let tx: Transaction = typed(call("POST", "/v1/transactions", "/v1/transactions", Some(json!({"id": "t1"})), 201));
    assert_eq!(tx.state, TransactionState::Open);
    let joined: Started =
        typed(d.call("POST", "/v1/executions", Some(json!({"workflow": "chain", "transaction": "t1"}))).1);
    d.wait_for(&joined.execution_id, Duration::from_secs(20));
    let shown: Transaction = typed(call("GET", "/v1/transactions/{id}", "/v1/transactions/t1", None, 200));
    assert_eq!(shown.executions, std::slice::from_ref(&joined.execution_id));
    let rolled: Transaction =
        typed(call("POST", "/v1/transactions/{id}/rollback", "/v1/transactions/t1/rollback", None, 200));
    assert_eq!(rolled.state, TransactionState::RolledBack);
    assert_eq!(d.execution(&joined.execution_id).status.status, WorkflowStatus::RolledBack);
    let again = call("POST", "/v1/transactions/{id}/commit", "/v1/transactions/t1/commit", None, 409);
    assert_eq!(code(again), ErrorCode::InvalidState);
    let (status, _) = d.call("POST", "/v1/executions", Some(json!({"workflow": "chain", "transaction": "t1"})));
    assert_eq!(status, 409, "a closed transaction takes no execution");
    call("POST", "/v1/transactions", "/v1/transactions", Some(json!({"id": "t2"})), 201);
    let committed: Transaction =
        typed(call("POST", "/v1/transactions/{id}/commit", "/v1/transactions/t2/commit", None, 200));
    assert_eq!(committed.state, TransactionState::Committed);
    assert_eq!(
        code(call("POST", "/v1/transactions", "/v1/transactions", Some(json!({"id": "t2"})), 409)),
        ErrorCode::AlreadyExists
    );
    assert_eq!(d.call("GET", "/v1/transactions/none", None).0, 404);
    let listed: TransactionList = typed(call("GET", "/v1/transactions", "/v1/transactions", None, 200));
    let states: Vec<(&str, TransactionState, u64)> =
        listed.transactions.iter().map(|t| (t.id.as_str(), t.state, t.executions)).collect();
    assert_eq!(states, [("t2", TransactionState::Committed, 0), ("t1", TransactionState::RolledBack, 1)]);
    let rolled: TransactionList = typed(d.call("GET", "/v1/transactions?state=rolled_back&limit=5", None).1);
    assert_eq!(rolled.transactions.len(), 1);
    assert_eq!(d.call("GET", "/v1/transactions?state=sideways", None).0, 400);
    // Templates: register (its inputs are its parameters), list, show, create workflows, delete.
    let template = "id: greeting\ninputs:\n  n: { type: integer, default: 1 }\nsteps:\n  - { id: one, plugin_id: plexus.echo.native, method_name: echo, parameters: { n: \"${{ inputs.n }}\" } }\n";
    let summary: TemplateSummary =
        typed(call("POST", "/v1/templates", "/v1/templates", Some(json!({"source": template})), 201));
    assert_eq!((summary.id.as_str(), summary.parameters.as_slice()), ("greeting", ["n".to_owned()].as_slice()));
    let templates: TemplateList = typed(call("GET", "/v1/templates", "/v1/templates", None, 200));
    assert_eq!(templates.templates, std::slice::from_ref(&summary));
    let detail: TemplateDetail = typed(call("GET", "/v1/templates/{id}", "/v1/templates/greeting", None, 200));
    assert_eq!(detail.source, template);
    assert_eq!(d.call("GET", "/v1/workflows/greeting", None).0, 404, "a template is not a workflow");
    let made: Registered = typed(call(
        "POST",
        "/v1/templates/{id}/workflows",
        "/v1/templates/greeting/workflows",
        Some(json!({"params": {"n": 7}, "overrides": {"description": "seven"}})),
        201,
    ));
    assert_eq!((made.id.as_str(), made.version), ("greeting-1", 1));
    let run = d.start_execution("greeting-1");
    assert_eq!(d.wait_for(&run, Duration::from_secs(20)).status.step("one").unwrap().output, Some(json!({"n": 7})));
    let (status, body) = d.call("POST", "/v1/templates/greeting/workflows", Some(json!({"id": "greeting-1"})));
    assert_eq!((status, code(body)), (409, ErrorCode::AlreadyExists));
    let (status, body) = d.call("POST", "/v1/templates/greeting/workflows", Some(json!({"params": {"n": "x"}})));
    assert_eq!(status, 400, "{body}");
    assert!(body["details"].to_string().contains("inputs.n.default"), "{body}");
    call("DELETE", "/v1/templates/{id}", "/v1/templates/greeting", None, 204);
    assert_eq!(d.call("GET", "/v1/templates/greeting", None).0, 404);
    assert_eq!(d.call("GET", "/v1/workflows/greeting-1", None).0, 200, "created workflows stay");
    // Clear every workflow (executions stay); `chain` comes back for the clients below.
    let cleared: Cleared = typed(call("DELETE", "/v1/workflows", "/v1/workflows", None, 200));
    assert_eq!(cleared.deleted, 2, "chain and greeting-1");
    assert_eq!(d.call("GET", "/v1/workflows/chain", None).0, 404);
    d.register(CHAIN);

    // Signals: a wait step parks its execution until one comes (202), here through the CLI too.
    d.register("id: gate\nsteps:\n  - { id: w, wait_for: { signal: go } }\n  - { id: v, wait_for: { signal: ok, approval: true }, dependencies: [w] }\n");
    let gate: Started = typed(call("POST", "/v1/executions", "/v1/executions", Some(json!({"workflow": "gate"})), 202));
    let gid = gate.execution_id.clone();
    let signalled: plexus_client::Signalled = typed(call(
        "POST",
        "/v1/executions/{id}/signals/{name}",
        &format!("/v1/executions/{gid}/signals/go"),
        Some(json!({"payload": {"n": 1}})),
        202,
    ));
    assert_eq!((signalled.signal.name.as_str(), signalled.signal.payload.clone()), ("go", json!({"n": 1})));
    let (status, body) = d.call("POST", &format!("/v1/executions/{gid}/signals/go"), Some(json!({})));
    assert_eq!((status, code(body)), (409, ErrorCode::AlreadyExists));
    let out = d.cli(&["exec", "signal", &gid, "ok", "--by", "ops@example", "--payload", "{\"ticket\": 9}"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gated = d.wait_for(&gid, Duration::from_secs(20));
    assert_eq!(gated.status.status, WorkflowStatus::Completed, "{gated:?}");
    assert_eq!(gated.status.steps[0].output, Some(json!({"n": 1})));
    assert_eq!(gated.status.steps[1].output.as_ref().unwrap()["by"], "ops@example");

    // Hooks: create (the secret shown once), list, show, deliver (signed, no token), delete.
    let spec = json!({"id": "on-push", "workflow": "chain", "description": "a push"});
    let created: HookCreated = typed(call("POST", "/v1/hooks", "/v1/hooks", Some(spec), 201));
    let hooks: HookList = typed(call("GET", "/v1/hooks", "/v1/hooks", None, 200));
    assert_eq!(hooks.hooks, std::slice::from_ref(&created.hook));
    assert!(!serde_json::to_string(&hooks).unwrap().contains(&created.secret));
    let body = br#"{"unused": 1}"#;
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign = |delivery: &str| {
        format!(
            "X-Plexus-Timestamp: {at}\r\nX-Plexus-Delivery: {delivery}\r\nX-Plexus-Signature: {}\r\n",
            plexus_client::hooks::signature(&created.secret, at, delivery, body)
        )
    };
    let (status, answer) =
        d.raw_with_headers("POST", "/v1/hooks/on-push", &sign("one"), Some(("application/json", body)));
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    let started: Started = serde_json::from_slice(&answer).unwrap();
    assert_eq!(d.wait_for(&started.execution_id, Duration::from_secs(20)).status.status, WorkflowStatus::Completed);
    let (status, _) = d.raw_with_headers("POST", "/v1/hooks/on-push", &sign("one"), Some(("application/json", body)));
    assert_eq!(status, 409, "a replay");
    let details: HookDetails = typed(call("GET", "/v1/hooks/{id}", "/v1/hooks/on-push", None, 200));
    assert_eq!(details.deliveries[0].execution_id.as_deref(), Some(started.execution_id.as_str()));
    call("DELETE", "/v1/hooks/{id}", "/v1/hooks/on-push", None, 204);

    // Secrets: set (never answered back), listed by name, deleted.
    let set: SecretInfo =
        typed(call("PUT", "/v1/secrets/{name}", "/v1/secrets/DB_PASSWORD", Some(json!({"value": "pa55-w0rd"})), 200));
    assert_eq!((set.name.as_str(), set.usable), ("DB_PASSWORD", true));
    let listed: SecretList = typed(call("GET", "/v1/secrets", "/v1/secrets", None, 200));
    assert_eq!(listed.secrets, [set]);
    assert!(!serde_json::to_string(&listed).unwrap().contains("pa55-w0rd"));
    for (body, status) in [(json!({"value": "abc"}), 400), (json!({"value": 5}), 400), (json!({}), 400)] {
        let (got, answer) = d.call("PUT", "/v1/secrets/DB_PASSWORD", Some(body.clone()));
        assert_eq!(got, status, "{body}: {answer}");
    }
    assert_eq!(d.call("PUT", "/v1/secrets/bad-name", Some(json!({"value": "long enough"}))).0, 400);
    call("DELETE", "/v1/secrets/{name}", "/v1/secrets/DB_PASSWORD", None, 204);
    assert_eq!(code(d.call("DELETE", "/v1/secrets/DB_PASSWORD", None).1), ErrorCode::NotFound);

    let first = id.clone();
    // Artifacts: a step that writes one; the list; the bytes.
    let art = "id: art\nsteps:\n  - { id: fill, plugin_id: plexus.echo.native, method_name: fill, parameters: { name: blob, bytes: 100 } }\n";
    call("POST", "/v1/workflows", "/v1/workflows", Some(json!({"source": art})), 201);
    let wrote: Started = typed(d.call("POST", "/v1/executions", Some(json!({"workflow": "art"}))).1);
    let art_id = wrote.execution_id;
    assert_eq!(d.wait_for(&art_id, Duration::from_secs(20)).status.status, WorkflowStatus::Completed);
    let held: plexus_client::ExecutionArtifacts =
        typed(call("GET", "/v1/executions/{id}/artifacts", &format!("/v1/executions/{art_id}/artifacts"), None, 200));
    assert_eq!((held.artifacts.len(), held.artifacts[0].bytes), (1, 100));
    let digest = &held.artifacts[0].artifact;
    call(
        "GET",
        "/v1/executions/{id}/artifacts/{digest}",
        &format!("/v1/executions/{art_id}/artifacts/{digest}"),
        None,
        200,
    );
    let (_, bytes) = d.raw("GET", &format!("/v1/executions/{art_id}/artifacts/{digest}"), Some(&d.token), None);
    assert_eq!(bytes.len(), 100);
    // Another execution does not hold it.
    assert_eq!(d.call("GET", &format!("/v1/executions/{first}/artifacts/{digest}"), None).0, 404);
    // The web UI's routes: the overview, an ended execution's events (every
    // transition, then `end`), a login for a cookie and a logout (`ui.rs` tests them further).
    let overview: plexus_client::Overview = typed(call("GET", "/v1/overview", "/v1/overview", None, 200));
    assert_eq!((overview.health.node.as_str(), overview.nodes.nodes.len()), (node.as_str(), 1));
    assert!(overview.executions.values().sum::<u64>() >= 5, "{overview:?}");
    let stream = call("GET", "/v1/events", &format!("/v1/events?execution={first}"), None, 200);
    let stream = stream.as_str().unwrap();
    assert!(stream.contains("event: transition") && stream.ends_with("\n\n"), "{stream}");
    assert!(stream.contains("event: end\ndata: {\"execution_id\":"), "{stream}");
    let login = serde_json::to_vec(&json!({"token": d.token})).unwrap();
    let (status, head, _) = d.exchange("POST", "/v1/session", "", Some(("application/json", &login)));
    assert!(head.to_ascii_lowercase().contains("set-cookie: plexus_session="), "{head}");
    assert_eq!(status, 200, "{head}");
    hit.insert(("POST".into(), "/v1/session".into(), status));
    let (status, _) = d.raw("DELETE", "/v1/session", None, None);
    hit.insert(("DELETE".into(), "/v1/session".into(), status));
    // (The delivery above went through `raw_with_headers`: no token, its own headers.)
    hit.insert(("POST".into(), "/v1/hooks/{id}".into(), 202));
    // Every documented route was called with one of its documented 2xx statuses.
    let doc = openapi::document();
    for (method, route) in &routes {
        let documented: Vec<u16> = doc["paths"][route.as_str()][method.to_lowercase()]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|k| k.parse().ok())
            .filter(|s| (200..300).contains(s))
            .collect();
        assert!(!documented.is_empty(), "{method} {route} documents no success");
        for status in documented {
            assert!(
                hit.contains(&(method.clone(), route.clone(), status)),
                "{method} {route} was not called with {status}"
            );
        }
    }
    assert_eq!(
        hit.iter().filter(|(_, _, s)| (200..300).contains(s)).map(|(m, r, _)| (m, r)).collect::<BTreeSet<_>>().len(),
        routes.len(),
        "a route was called that the document does not list"
    );

    // The typed client: one call per method, against the same daemon.
    let client = d.client();
    assert_eq!(client.health().unwrap().status, HealthStatus::Ok);
    assert_eq!(metric(&client.metrics().unwrap(), "plexus_plugins_loaded"), Some(2.0));
    assert_eq!(client.nodes().unwrap().nodes[0].plugins.len(), 2);
    assert_eq!(&client.openapi().unwrap(), openapi::document());
    assert_eq!(client.plugins().unwrap().plugins.len(), 2);
    assert_eq!(client.plugin("plexus.echo.native").unwrap().kind, PluginKind::Native);
    assert_eq!(client.plugin("no such/plugin").unwrap_err().code(), Some(ErrorCode::PluginNotFound));
    assert!(client.reload_plugins().unwrap().changes.is_empty());
    assert_eq!(client.validate_workflow(CHAIN).unwrap().steps, 2);
    let typed_source = CHAIN.replace("id: chain", "id: typed");
    assert_eq!(client.register_workflow(typed_source.clone()).unwrap().version, 1);
    assert!(client.workflows().unwrap().workflows.iter().any(|w| w.id == "typed"));
    assert_eq!(client.workflow("typed", Some(1)).unwrap().source, typed_source);
    assert_eq!(client.workflow("typed", None).unwrap().definition.unwrap()["id"], "typed");
    assert_eq!(client.register_template(typed_source.replace("id: typed", "id: tpl")).unwrap().id, "tpl");
    assert_eq!(client.templates().unwrap().templates.len(), 1);
    assert!(client.template("tpl").unwrap().source.contains("id: tpl"));
    let request = plexus_client::FromTemplate { id: Some("from-tpl".into()), ..Default::default() };
    assert_eq!(client.create_from_template("tpl", &request).unwrap().id, "from-tpl");
    client.delete_template("tpl").unwrap();
    assert_eq!(client.template("tpl").unwrap_err().code(), Some(ErrorCode::NotFound));
    assert!(client.set_secret("TYPED", "typed-value").unwrap().usable);
    assert_eq!(client.secrets().unwrap().secrets[0].name, "TYPED");
    client.delete_secret("TYPED").unwrap();
    assert_eq!(client.delete_secret("TYPED").unwrap_err().code(), Some(ErrorCode::NotFound));
    // QtForge's free-form initial_data: undeclared keys are accepted (into the context).
    let mut inputs = serde_json::Map::new();
    inputs.insert("unused".into(), json!(1));
    let started = client.start("typed", inputs).unwrap();
    let done = client.execution(&started.execution_id, Some(20_000)).unwrap();
    assert_eq!(done.status.status, WorkflowStatus::Completed);
    assert_eq!(client.steps(&started.execution_id).unwrap().steps.len(), 2);
    let logs = client.logs(&started.execution_id, 0, Some(2)).unwrap();
    assert_eq!(logs.events.len(), 2, "the limit holds");
    let query = ExecutionQuery {
        workflow: Some("typed".into()),
        status: Some(WorkflowStatus::Completed),
        ..Default::default()
    };
    assert_eq!(client.executions(&query).unwrap().executions.len(), 1);
    let active = ExecutionQuery { workflow: Some("typed".into()), active: Some(true), ..Default::default() };
    assert!(client.executions(&active).unwrap().executions.is_empty());
    assert_eq!(client.steps(&started.execution_id).unwrap().results[1].result_data, json!({"n": 2}));
    client.register_workflow(typed_source.replace("n: 1", "n: 5")).unwrap();
    assert_eq!(client.workflow_history("typed").unwrap().versions.len(), 2);
    let pinned = StartExecution { workflow: "typed".into(), version: Some(1), ..Default::default() };
    let old = client.start_execution(&pinned).unwrap();
    assert_eq!(client.execution(&old.execution_id, Some(20_000)).unwrap().status.outputs["n"], 2);
    assert_eq!(client.rollback_workflow("typed", 1).unwrap().version, 3);
    assert_eq!(client.cancel(&started.execution_id).unwrap_err().code(), Some(ErrorCode::InvalidState));
    assert_eq!(client.retry(&started.execution_id).unwrap_err().code(), Some(ErrorCode::InvalidState));
    let mut spec = ScheduleSpec::new("typed-every", "every 1h");
    spec.workflow = Some("typed".into());
    spec.overlap = Overlap::QueueOne;
    assert_eq!(client.create_schedule(&spec).unwrap().spec.overlap, Overlap::QueueOne);
    assert_eq!(client.schedules().unwrap().schedules.len(), 1);
    assert!(!client.pause_schedule("typed-every").unwrap().spec.enabled);
    assert!(client.resume_schedule("typed-every").unwrap().spec.enabled);
    let fired = client.run_schedule("typed-every").unwrap();
    client.execution(&fired.execution_id, Some(20_000)).unwrap();
    assert_eq!(client.schedule("typed-every").unwrap().history[0].outcome, FireOutcome::Manual);
    client.delete_schedule("typed-every").unwrap();
    client.delete_workflow("typed").unwrap();
    assert_eq!(client.workflow("typed", None).unwrap_err().code(), Some(ErrorCode::NotFound));
    client.register_workflow(typed_source.clone()).unwrap();
    assert_eq!(client.clear_workflows().unwrap().deleted, 5, "chain, gate, art, typed and from-tpl");
    d.register(CHAIN);

    // The CLI client against the same daemon.
    let out = d.cli(&["exec", "list", "--workflow", "chain", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["executions"].as_array().unwrap().len(), 5, "4 started, 1 by the hook");
    // Paging: two at a time, each page older than the last id of the one before; together the same five.
    let ids: Vec<&str> =
        listed["executions"].as_array().unwrap().iter().map(|e| e["execution_id"].as_str().unwrap()).collect();
    let (mut paged, mut before) = (Vec::new(), None::<String>);
    for _ in 0..ids.len() + 1 {
        let mut args = vec!["exec", "list", "--workflow", "chain", "--limit", "2", "--json"];
        if let Some(id) = &before {
            args.extend(["--before", id.as_str()]);
        }
        let out = d.cli(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let page: Value = serde_json::from_slice(&out.stdout).unwrap();
        let page: Vec<String> = page["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["execution_id"].as_str().unwrap().to_owned())
            .collect();
        let Some(last) = page.last().cloned() else { break };
        paged.extend(page);
        before = Some(last);
    }
    assert_eq!(paged, ids);
    let out = d.cli(&["exec", "start", "chain", "--wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("completed"));
    let out = d.cli(&["exec", "status", "no-such-id"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(NotFound)"));
    // Ids are percent-encoded into the URL: these reach the daemon, which finds nothing.
    for odd in ["a b", "x/../../v1/health", "q?wait_ms=1#frag", "ünï"] {
        let out = d.cli(&["exec", "status", odd]);
        assert_eq!(out.status.code(), Some(1), "{odd}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("(NotFound)"), "{odd}");
    }
    let out = d.cli(&["workflow", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("chain"));
    let out = d.cli(&["workflow", "versions", "chain", "--json"]);
    let history: WorkflowHistory = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history.versions.len(), 5, "{history:?}");
    let out = d.cli(&["exec", "start", "chain", "--version", "2", "--wait", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pinned: Execution = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((pinned.meta.workflow_version, &pinned.status.outputs["n"]), (2, &json!(11)));
    let out = d.cli(&["workflow", "rollback", "chain", "2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 2 is current again, as version 6"));
    let out = d.cli(&["exec", "list", "--active", "--json"]);
    let active: ExecutionList = serde_json::from_slice(&out.stdout).unwrap();
    assert!(active.executions.iter().all(|e| !e.status.is_terminal()), "{active:?}");
    let out = d.cli(&["workflow", "clear"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(d.cli(&["transaction", "begin", "t3"]).status.success());
    let out = d.cli(&["exec", "start", "chain", "--transaction", "t3", "--wait", "--json"]);
    let joined: Execution = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(joined.meta.transaction_id.as_deref(), Some("t3"));
    let out = d.cli(&["transaction", "rollback", "t3", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rolled: Transaction = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((rolled.state, rolled.executions.len()), (TransactionState::RolledBack, 1));
    let out = d.cli(&["transaction", "show", "t3"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("rolled_back"));
    let out = d.cli(&["transaction", "list", "--state", "rolled_back"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("t3") && !listed.contains("t2"), "{listed}");
    let typed_list = d.client().transactions(&plexus_client::TransactionQuery { limit: Some(1), ..Default::default() });
    assert_eq!(typed_list.unwrap().transactions.len(), 1);
    // A priority from the command line, kept with the execution.
    let out = d.cli(&["exec", "start", "chain", "--priority", "critical", "--wait", "--json"]);
    let urgent: Execution = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(urgent.meta.priority, plexus_client::Priority::Critical);
    let out = d.cli(&["exec", "start", "chain", "--priority", "urgent"]);
    assert_eq!(out.status.code(), Some(2), "an unknown priority is a usage error");
    // Templates from the command line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, CHAIN.replace("id: chain", "id: chain-template")).unwrap();
    let out = d.cli(&["template", "register", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("template chain-template registered"), "{out:?}");
    let out = d.cli(&["template", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("chain-template"), "{out:?}");
    let out = d.cli(&["template", "create", "chain-template", "--overrides", r#"{"name": "Made"}"#, "--json"]);
    let made: Registered = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made.id, "chain-template-1");
    assert_eq!(d.client().workflow("chain-template-1", None).unwrap().definition.unwrap()["name"], "Made");
    let out = d.cli(&["template", "create", "chain-template", "--overrides", "[1]"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overrides: expected a mapping"), "{out:?}");
    assert!(d.cli(&["template", "rm", "chain-template"]).status.success());
    let out = d.cli(&[
        "schedule",
        "add",
        "five",
        "--when",
        "every 5m",
        "--plugin",
        "plexus.echo.wasm",
        "--operation",
        "noop",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = d.cli(&["schedule", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["schedules"][0]["id"], "five");
    assert!(listed["schedules"][0]["next_fire"].is_string());
    let out = d.cli(&["plugins", "list", "--remote"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("plexus.echo.native"));
    let mut wrong = std::process::Command::new(env!("CARGO_BIN_EXE_plexus"));
    let out = wrong.args(["exec", "list"]).env("PLEXUS_URL", &d.addr).env("PLEXUS_TOKEN", "nope").output().unwrap();
    assert_eq!(out.status.code(), Some(11));
}

#[test]
fn bad_bodies_get_4xx_and_never_crash_the_daemon() {
    let plugins = plugins_dir(&["echo-native"]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &["--max-body-bytes", "4096"]);
    let token = Some(d.token.as_str());
    let cases: Vec<(&str, &str, &[u8], u16)> = vec![
        ("/v1/workflows", "application/json", b"{\"source\": ", 400),
        ("/v1/workflows", "application/json", b"", 400),
        ("/v1/workflows", "application/json", b"[1, 2]", 400),
        ("/v1/workflows", "application/json", b"{\"source\": \"x\", \"extra\": 1}", 400),
        ("/v1/workflows", "application/json", b"{\"source\": \"\xff\xfe\"}", 400),
        ("/v1/workflows", "application/json", b"{\"source\": \"id: [unclosed\"}", 400),
        ("/v1/workflows", "text/plain", b"{\"source\": \"x\"}", 415),
        ("/v1/executions", "application/json", b"{\"workflow\": 5}", 400),
        ("/v1/schedules", "application/json", b"{\"id\": \"s\", \"when\": \"every\", \"workflow\": \"w\"}", 400),
        ("/v1/schedules", "application/json", b"{\"id\": \"s\"}", 400),
    ];
    for (path, ctype, body, expect) in cases {
        let (status, out) = d.raw("POST", path, token, Some((ctype, body)));
        assert_eq!(status, expect, "{path} {}: {}", String::from_utf8_lossy(body), String::from_utf8_lossy(&out));
        let err: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(err["code"], "InvalidConfiguration", "{err}");
    }
    let big = format!("{{\"source\": \"{}\"}}", "x".repeat(100_000));
    let (status, _) = d.raw("POST", "/v1/workflows", token, Some(("application/json", big.as_bytes())));
    assert_eq!(status, 413);
    assert_eq!(d.call("GET", "/v1/health", None).0, 200, "still alive:\n{}", d.log());
}

#[test]
fn committed_openapi_document_is_current() {
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::repo_root().join("host/daemon/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        &committed,
        plexus_daemon::openapi::document(),
        "regenerate: plexus daemon openapi > host/daemon/openapi.json"
    );
}

/// Five `append` steps in a chain: each appends `sN` to `marks`, then sleeps.
pub(crate) fn marks_workflow(marks: &std::path::Path, ms: u64) -> String {
    let steps: String = (1..=5)
        .map(|n| {
            let deps = if n == 1 { String::new() } else { format!(", dependencies: [s{}]", n - 1) };
            format!(
                "  - {{ id: s{n}, plugin_id: plexus.echo.native, method_name: append, parameters: {{ path: \"{}\", text: s{n}, ms: {ms} }}, retry: {{ max_attempts: 3, initial_delay: 10ms }}{deps} }}\n",
                marks.display()
            )
        })
        .collect();
    format!("id: marks\nexecution_mode: sequential\nsteps:\n{steps}")
}

/// The echo plugin, a data directory and the marks file in it.
pub(crate) fn marks_fixture() -> (tempfile::TempDir, tempfile::TempDir, std::path::PathBuf) {
    let plugins = plugins_dir(&["echo-native"]);
    let data = tempfile::tempdir().unwrap();
    let marks = data.path().join("marks.txt");
    (plugins, data, marks)
}

pub(crate) fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[test]
fn kill_9_mid_workflow_then_restart_completes_without_rerunning_completed_steps() {
    let (plugins, data, marks) = marks_fixture();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    d.register(&marks_workflow(&marks, 1000));
    let id = d.start_execution("marks");
    // Kill it while s3 runs: s1 and s2 are completed and recorded.
    d.eventually("s3 to start", Duration::from_secs(20), |_| lines(&marks).len() >= 3);
    let before = d.client().logs(&id, 0, None).unwrap().events;
    d.crash();
    assert_eq!(lines(&marks), ["s1", "s2", "s3"]);

    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    let done = d.wait_for(&id, Duration::from_secs(30));
    assert_eq!(done.status.status, WorkflowStatus::Completed, "{done:?}\n{}", d.log());
    // Completed steps ran exactly once; the interrupted one ran again, as its second attempt.
    assert_eq!(lines(&marks), ["s1", "s2", "s3", "s3", "s4", "s5"]);
    let attempts: Vec<u64> = done.status.steps.iter().map(|s| u64::from(s.attempts)).collect();
    assert_eq!(attempts, [1, 1, 2, 1, 1]);
    // Nothing recorded before the crash is lost.
    let after = d.client().logs(&id, 0, None).unwrap().events;
    assert_eq!(&after[..before.len()], &before[..]);
    assert!(d.log().contains("resuming"), "{}", d.log());
}

#[test]
fn sigterm_lets_the_running_step_finish_then_exits_zero_and_resumes_later() {
    let (plugins, data, marks) = marks_fixture();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    d.register(&marks_workflow(&marks, 1000));
    let id = d.start_execution("marks");
    d.eventually("s2 to start", Duration::from_secs(20), |_| lines(&marks).len() >= 2);
    let status = d.terminate();
    assert_eq!(status.code(), Some(0));
    // s2 was allowed to finish; nothing new started.
    assert_eq!(lines(&marks), ["s1", "s2"]);
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    let done = d.wait_for(&id, Duration::from_secs(30));
    assert_eq!(done.status.status, WorkflowStatus::Completed, "{done:?}\n{}", d.log());
    assert_eq!(lines(&marks), ["s1", "s2", "s3", "s4", "s5"], "s2 finished before the stop and is not run again");
}

/// Append a custom section to a component: the same code, different bytes.
fn touch_component(folder: &std::path::Path, file: &str) -> String {
    use sha2::{Digest, Sha256};
    let path = folder.join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"plexus-test";
    let payload = b"v2";
    bytes.push(0); // custom section id
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    let hash = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let manifest = std::fs::read_to_string(folder.join("plugin.toml")).unwrap();
    let manifest: String = manifest
        .lines()
        .map(|l| if l.starts_with("sha256") { format!("sha256 = \"{hash}\"") } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, &bytes).unwrap();
    std::fs::write(folder.join("plugin.toml"), manifest).unwrap();
    hash
}

#[test]
fn hot_reload_adds_swaps_and_removes_plugins_while_running() {
    let plugins = plugins_dir(&["echo-native", "echo-wasm"]);
    let data = tempfile::tempdir().unwrap();
    // Native plugins in the daemon's process (a changed one needs a restart;
    // in worker processes it is reloaded: see `isolation::the_daemon_...`).
    let d = RunningDaemon::start(data.path(), plugins.path(), &["--isolation", "in-process"]);
    let client = d.client();
    let ids =
        |_: &RunningDaemon| -> Vec<String> { client.plugins().unwrap().plugins.into_iter().map(|p| p.id).collect() };
    assert_eq!(ids(&d), ["plexus.echo.native", "plexus.echo.wasm"]);

    // A new folder is loaded.
    copy_plugin("validator-wasm", plugins.path());
    d.eventually("the validator to load", Duration::from_secs(15), |d| ids(d).contains(&"plexus.validator".to_owned()));

    // A WASM plugin is swapped while an execution of it runs: the execution
    // finishes on the version it started with, new calls get the new one.
    d.register(
        "id: nap\nsteps:\n  - { id: nap, plugin_id: plexus.echo.wasm, method_name: sleep, parameters: { ms: 1500 } }\n",
    );
    let id = d.start_execution("nap");
    d.eventually("the nap to start", Duration::from_secs(10), |d| {
        d.execution(&id).status.status == WorkflowStatus::Running
    });
    let hash = touch_component(&plugins.path().join("echo-wasm"), "plexus_echo.wasm");
    d.eventually("the new component", Duration::from_secs(15), |_| {
        client.plugin("plexus.echo.wasm").unwrap().sha256.as_deref() == Some(hash.as_str())
    });
    assert_eq!(d.wait_for(&id, Duration::from_secs(20)).status.status, WorkflowStatus::Completed);
    let again = d.start_execution("nap");
    assert_eq!(d.wait_for(&again, Duration::from_secs(20)).status.status, WorkflowStatus::Completed);

    // A changed native library is reported as needing a restart and keeps working.
    let native = plugins.path().join("echo-native/plugin.toml");
    let text = std::fs::read_to_string(&native).unwrap();
    std::fs::write(&native, format!("{text}\n# changed\n")).unwrap();
    d.eventually("restart required", Duration::from_secs(15), |_| {
        let native = client.plugin("plexus.echo.native").unwrap();
        native.status == PluginStatus::Unavailable
            && native.unavailable.as_deref() == Some("changed on disk: restart required")
    });

    // A broken new folder is reported and disturbs nothing.
    std::fs::create_dir(plugins.path().join("broken")).unwrap();
    std::fs::write(plugins.path().join("broken/plugin.toml"), "id = \"broken\"\n").unwrap();
    d.eventually("the load error", Duration::from_secs(15), |_| !client.plugins().unwrap().errors.is_empty());
    let errors = client.plugins().unwrap().errors;
    assert_eq!(
        (errors[0].kind.as_str(), errors[0].plugin.as_deref()),
        ("invalid-manifest", Some("broken")),
        "{errors:?}"
    );
    assert_eq!(ids(&d).len(), 3);

    // A removed WASM folder is unloaded; a removed native one is marked unavailable.
    std::fs::remove_dir_all(plugins.path().join("validator-wasm")).unwrap();
    std::fs::remove_dir_all(plugins.path().join("echo-native")).unwrap();
    d.eventually("the removals", Duration::from_secs(15), |_| {
        let list = client.plugins().unwrap();
        list.plugins.len() == 1
            && list.unavailable.get("plexus.echo.native").map(String::as_str) == Some("removed from disk")
    });
    let metrics = client.metrics().unwrap();
    assert_eq!(metric(&metrics, "plexus_plugin_load_errors"), Some(1.0), "{metrics}");
}

/// The value of unlabelled metric `name` in OpenMetrics `text` (in a cluster
/// every sample has a `node` label, which is allowed).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = match rest.strip_prefix('{') {
            Some(labels) if labels.starts_with("node=") && !labels.contains(',') => labels.split_once('}')?.1,
            Some(_) => return None,
            None => rest,
        };
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}
