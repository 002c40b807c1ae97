//! The daemon over HTTP on loopback: the token, every route, error codes, bad
//! bodies, the CLI client, SIGTERM, a `kill -9` in the middle of a workflow,
//! and hot plugin reload.

use crate::daemon_support::{RunningDaemon, copy_plugin};
use plexus_daemon::openapi::ROUTES;
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
    for route in ROUTES {
        let path = route.path.replace("{id}", "x");
        for token in [None, Some("wrong")] {
            let (status, body) = d.raw(&route.method.to_uppercase(), &path, token, None);
            if route.path == "/v1/health" {
                assert_eq!(status, 200);
            } else {
                assert_eq!(status, 401, "{} {path} with {token:?}", route.method);
                let body: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(body["code"], "Unauthorized");
            }
        }
    }

    let mut hit = BTreeSet::new();
    let mut call = |method: &str, route: &str, path: &str, body: Option<Value>, expect: u16| -> Value {
        let (status, out) = d.call(method, path, body);
        assert_eq!(status, expect, "{method} {path}: {out}");
        hit.insert((method.to_lowercase(), route.to_owned(), status));
        out
    };
    call("GET", "/v1/health", "/v1/health", None, 200);
    let metrics = call("GET", "/metrics", "/metrics", None, 200);
    call("GET", "/v1/openapi.json", "/v1/openapi.json", None, 200);
    let list = call("GET", "/v1/plugins", "/v1/plugins", None, 200);
    assert_eq!(list["plugins"].as_array().unwrap().len(), 2, "{list}");
    assert!(metrics.as_str().unwrap().contains("plexus_plugins_loaded 2"));
    call("GET", "/v1/plugins/{id}", "/v1/plugins/plexus.echo.wasm", None, 200);
    call("POST", "/v1/plugins/reload", "/v1/plugins/reload", None, 200);

    // Workflows: validate, register (201, then 200 unchanged), list, get, versions.
    let source = json!({"source": CHAIN});
    let valid = call("POST", "/v1/workflows/validate", "/v1/workflows/validate", Some(source.clone()), 200);
    assert_eq!(valid["stages"], json!([["one"], ["two"]]));
    let reg = call("POST", "/v1/workflows", "/v1/workflows", Some(source.clone()), 201);
    assert_eq!((reg["id"].as_str(), reg["version"].as_u64()), (Some("chain"), Some(1)));
    assert_eq!(d.call("POST", "/v1/workflows", Some(source)).1["created"], false);
    let v2 =
        call("POST", "/v1/workflows", "/v1/workflows", Some(json!({"source": CHAIN.replace("n: 1", "n: 10")})), 201);
    assert_eq!(v2["version"], 2);
    assert_eq!(call("GET", "/v1/workflows", "/v1/workflows", None, 200)["workflows"][0]["version"], 2);
    let v1 = call("GET", "/v1/workflows/{id}", "/v1/workflows/chain?version=1", None, 200);
    assert!(v1["source"].as_str().unwrap().contains("n: 1 }"));

    // Executions: start, status (pinned to version 2), steps, logs, list with filters.
    let started = call("POST", "/v1/executions", "/v1/executions", Some(json!({"workflow": "chain"})), 202);
    let id = started["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(started["workflow_version"], 2);
    let done = d.wait_for(&id, Duration::from_secs(20));
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["outputs"]["n"], 11);
    call("GET", "/v1/executions/{id}", &format!("/v1/executions/{id}"), None, 200);
    let steps = call("GET", "/v1/executions/{id}/steps", &format!("/v1/executions/{id}/steps"), None, 200);
    assert_eq!(steps["steps"][1]["output"], json!({"n": 11}));
    let logs = call("GET", "/v1/executions/{id}/logs", &format!("/v1/executions/{id}/logs"), None, 200);
    let statuses: Vec<&str> =
        logs["events"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["pending", "running", "running", "completed", "running", "completed", "completed"]);
    let after = logs["events"][4]["seq"].as_i64().unwrap();
    let tail = d.call("GET", &format!("/v1/executions/{id}/logs?after={after}"), None).1;
    assert_eq!(tail["events"].as_array().unwrap().len(), 2);
    let listed = call("GET", "/v1/executions", "/v1/executions", None, 200);
    assert_eq!(listed["executions"][0]["execution_id"], id.as_str());
    assert!(d.call("GET", "/v1/executions?status=failed", None).1["executions"].as_array().unwrap().is_empty());
    let (code, body) = d.call("GET", "/v1/executions?status=exploded", None);
    assert_eq!(code, 400, "an unknown status filter is refused, not answered with nothing: {body}");
    assert!(body["message"].as_str().unwrap().contains("`exploded`"), "{body}");
    // A completed execution can be neither cancelled nor retried.
    let cancel = call("POST", "/v1/executions/{id}/cancel", &format!("/v1/executions/{id}/cancel"), None, 409);
    assert_eq!(cancel["code"], "InvalidState");
    let retry = call("POST", "/v1/executions/{id}/retry", &format!("/v1/executions/{id}/retry"), None, 409);
    assert_eq!(retry["code"], "InvalidState");
    // A running one can be cancelled.
    let slow = json!({"source": "id: slow\nsteps:\n  - { id: nap, plugin_id: plexus.echo.native, method_name: sleep, parameters: { ms: 5000 } }\n"});
    d.call("POST", "/v1/workflows", Some(slow));
    let slow_id = d.start_execution("slow");
    d.eventually("the nap to start", Duration::from_secs(10), |d| {
        d.call("GET", &format!("/v1/executions/{slow_id}"), None).1["status"] == "running"
    });
    let waited = call("GET", "/v1/executions/{id}", &format!("/v1/executions/{slow_id}?wait_ms=50"), None, 504);
    assert_eq!(waited["code"], "Timeout");
    call("POST", "/v1/executions/{id}/cancel", &format!("/v1/executions/{slow_id}/cancel"), None, 202);
    assert_eq!(d.wait_for(&slow_id, Duration::from_secs(10))["status"], "cancelled");
    // A cancelled one can be retried.
    call("POST", "/v1/executions/{id}/retry", &format!("/v1/executions/{slow_id}/retry"), None, 202);
    d.call("POST", &format!("/v1/executions/{slow_id}/cancel"), None);

    // Schedules.
    let sched = json!({"id": "yearly", "when": "cron 0 3 1 1 *", "timezone": "Europe/Berlin", "workflow": "chain"});
    let created = call("POST", "/v1/schedules", "/v1/schedules", Some(sched.clone()), 201);
    assert!(created["next_fire"].as_str().unwrap().ends_with(":00:00+00:00"), "{created}");
    assert_eq!(call("POST", "/v1/schedules", "/v1/schedules", Some(sched), 409)["code"], "AlreadyExists");
    assert_eq!(call("GET", "/v1/schedules", "/v1/schedules", None, 200)["schedules"][0]["id"], "yearly");
    let paused = call("POST", "/v1/schedules/{id}/pause", "/v1/schedules/yearly/pause", None, 200);
    assert_eq!((paused["enabled"].as_bool(), paused["next_fire"].is_null()), (Some(false), true));
    call("POST", "/v1/schedules/{id}/resume", "/v1/schedules/yearly/resume", None, 200);
    let fired = call("POST", "/v1/schedules/{id}/run", "/v1/schedules/yearly/run", None, 202);
    let fired_id = fired["execution_id"].as_str().unwrap();
    assert_eq!(d.wait_for(fired_id, Duration::from_secs(20))["schedule_id"], "yearly");
    let shown = call("GET", "/v1/schedules/{id}", "/v1/schedules/yearly", None, 200);
    assert!(shown["history"].as_array().unwrap().iter().any(|f| f["outcome"] == "manual"), "{shown}");
    call("DELETE", "/v1/schedules/{id}", "/v1/schedules/yearly", None, 204);
    call("DELETE", "/v1/workflows/{id}", "/v1/workflows/slow", None, 204);

    // Error codes from QtForge's list.
    let unknown = call("POST", "/v1/executions", "/v1/executions", Some(json!({"workflow": "nope"})), 404);
    assert_eq!(unknown["code"], "NotFound");
    let bad =
        json!({"source": "id: bad\nsteps:\n  - { id: a, plugin_id: no.such, method_name: x, dependencies: [b] }\n"});
    let invalid = call("POST", "/v1/workflows", "/v1/workflows", Some(bad), 400);
    assert_eq!(invalid["code"], "InvalidConfiguration");
    assert!(invalid["details"].as_array().unwrap().len() >= 2, "{invalid}");
    let dep = json!({"id": "x", "when": "every 1h", "workflow": "missing"});
    assert_eq!(call("POST", "/v1/schedules", "/v1/schedules", Some(dep), 422)["code"], "DependencyNotSatisfied");
    let plug = json!({"id": "y", "when": "every 1h", "plugin": "no.such", "operation": "x"});
    assert_eq!(call("POST", "/v1/schedules", "/v1/schedules", Some(plug), 404)["code"], "PluginNotFound");
    assert_eq!(call("GET", "/v1/plugins/{id}", "/v1/plugins/no.such", None, 404)["code"], "PluginNotFound");
    assert_eq!(d.call("GET", "/v1/nothing/here", None).0, 404);

    // Every documented route was exercised with its success status.
    for route in ROUTES {
        assert!(
            hit.contains(&(route.method.to_owned(), route.path.to_owned(), route.ok)),
            "{} {} was not called with {}",
            route.method,
            route.path,
            route.ok
        );
    }
    // The CLI client against the same daemon.
    let out = d.cli(&["exec", "list", "--workflow", "chain", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["executions"].as_array().unwrap().len(), 2);
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
        committed,
        plexus_daemon::openapi::document(),
        "regenerate: plexus daemon openapi > host/daemon/openapi.json"
    );
}

/// Five `append` steps in a chain: each appends `sN` to `marks`, then sleeps.
pub(crate) fn marks_workflow(marks: &std::path::Path, ms: u64) -> Value {
    let steps: String = (1..=5)
        .map(|n| {
            let deps = if n == 1 { String::new() } else { format!(", dependencies: [s{}]", n - 1) };
            format!(
                "  - {{ id: s{n}, plugin_id: plexus.echo.native, method_name: append, parameters: {{ path: \"{}\", text: s{n}, ms: {ms} }}, retry: {{ max_attempts: 3, initial_delay: 10ms }}{deps} }}\n",
                marks.display()
            )
        })
        .collect();
    json!({"source": format!("id: marks\nexecution_mode: sequential\nsteps:\n{steps}")})
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
    d.call("POST", "/v1/workflows", Some(marks_workflow(&marks, 1000)));
    let id = d.start_execution("marks");
    // Kill it while s3 runs: s1 and s2 are completed and recorded.
    d.eventually("s3 to start", Duration::from_secs(20), |_| lines(&marks).len() >= 3);
    let before = d.call("GET", &format!("/v1/executions/{id}/logs"), None).1["events"].as_array().unwrap().clone();
    d.crash();
    assert_eq!(lines(&marks), ["s1", "s2", "s3"]);

    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    let done = d.wait_for(&id, Duration::from_secs(30));
    assert_eq!(done["status"], "completed", "{done}\n{}", d.log());
    // Completed steps ran exactly once; the interrupted one ran again, as its second attempt.
    assert_eq!(lines(&marks), ["s1", "s2", "s3", "s3", "s4", "s5"]);
    let attempts: Vec<u64> =
        done["steps"].as_array().unwrap().iter().map(|s| s["attempts"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 1, 2, 1, 1]);
    // Nothing recorded before the crash is lost.
    let after = d.call("GET", &format!("/v1/executions/{id}/logs"), None).1["events"].as_array().unwrap().clone();
    assert_eq!(&after[..before.len()], &before[..]);
    assert!(d.log().contains("resuming"), "{}", d.log());
}

#[test]
fn sigterm_lets_the_running_step_finish_then_exits_zero_and_resumes_later() {
    let (plugins, data, marks) = marks_fixture();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    d.call("POST", "/v1/workflows", Some(marks_workflow(&marks, 1000)));
    let id = d.start_execution("marks");
    d.eventually("s2 to start", Duration::from_secs(20), |_| lines(&marks).len() >= 2);
    let status = d.terminate();
    assert_eq!(status.code(), Some(0));
    // s2 was allowed to finish; nothing new started.
    assert_eq!(lines(&marks), ["s1", "s2"]);
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    let done = d.wait_for(&id, Duration::from_secs(30));
    assert_eq!(done["status"], "completed", "{done}\n{}", d.log());
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
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    let ids = |d: &RunningDaemon| -> Vec<String> {
        d.call("GET", "/v1/plugins", None).1["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&d), ["plexus.echo.native", "plexus.echo.wasm"]);

    // A new folder is loaded.
    copy_plugin("validator-wasm", plugins.path());
    d.eventually("the validator to load", Duration::from_secs(15), |d| ids(d).contains(&"plexus.validator".to_owned()));

    // A WASM plugin is swapped while an execution of it runs: the execution
    // finishes on the version it started with, new calls get the new one.
    let nap = json!({"source": "id: nap\nsteps:\n  - { id: nap, plugin_id: plexus.echo.wasm, method_name: sleep, parameters: { ms: 1500 } }\n"});
    d.call("POST", "/v1/workflows", Some(nap));
    let id = d.start_execution("nap");
    d.eventually("the nap to start", Duration::from_secs(10), |d| {
        d.call("GET", &format!("/v1/executions/{id}"), None).1["status"] == "running"
    });
    let hash = touch_component(&plugins.path().join("echo-wasm"), "plexus_echo.wasm");
    d.eventually("the new component", Duration::from_secs(15), |d| {
        d.call("GET", "/v1/plugins/plexus.echo.wasm", None).1["sha256"] == hash.as_str()
    });
    assert_eq!(d.wait_for(&id, Duration::from_secs(20))["status"], "completed");
    let again = d.start_execution("nap");
    assert_eq!(d.wait_for(&again, Duration::from_secs(20))["status"], "completed");

    // A changed native library is reported as needing a restart and keeps working.
    let native = plugins.path().join("echo-native/plugin.toml");
    let text = std::fs::read_to_string(&native).unwrap();
    std::fs::write(&native, format!("{text}\n# changed\n")).unwrap();
    d.eventually("restart required", Duration::from_secs(15), |d| {
        d.call("GET", "/v1/plugins/plexus.echo.native", None).1["status"] == "changed on disk: restart required"
    });

    // A broken new folder is reported and disturbs nothing.
    std::fs::create_dir(plugins.path().join("broken")).unwrap();
    std::fs::write(plugins.path().join("broken/plugin.toml"), "id = \"broken\"\n").unwrap();
    d.eventually("the load error", Duration::from_secs(15), |d| {
        d.call("GET", "/v1/plugins", None).1["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    assert_eq!(ids(&d).len(), 3);

    // A removed WASM folder is unloaded; a removed native one is marked unavailable.
    std::fs::remove_dir_all(plugins.path().join("validator-wasm")).unwrap();
    std::fs::remove_dir_all(plugins.path().join("echo-native")).unwrap();
    d.eventually("the removals", Duration::from_secs(15), |d| {
        let list = d.call("GET", "/v1/plugins", None).1;
        list["plugins"].as_array().unwrap().len() == 1
            && list["unavailable"]["plexus.echo.native"] == "removed from disk"
    });
    let metrics = d.call("GET", "/metrics", None).1;
    assert!(metrics.as_str().unwrap().contains("plexus_plugin_load_errors 1"), "{metrics}");
}
