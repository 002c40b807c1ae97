//! The `plexus` binary as a person or a script uses it: output, JSON, exit codes.

use crate::support::Fixture;
use serde_json::Value;
use std::process::{Command, Output};

fn plexus(fx: &Fixture, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .arg("--plugins-dir")
        .arg(fx.plugins.path())
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("run plexus")
}

fn mixed() -> Fixture {
    let fx = Fixture::new();
    fx.echo("echo-native", "native", "");
    fx.echo("echo-wasm", "wasm", "");
    fx.folder("broken", "id = \"broken\"\n");
    fx
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn plugins_list_shows_plugins_and_load_errors() {
    let fx = mixed();
    let out = plexus(&fx, &["plugins", "list", "--json"]);
    assert_eq!(out.status.code(), Some(13), "a plugin did not load");
    let list = json_of(&out);
    let ids: Vec<&str> = list["plugins"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["plexus.echo.native", "plexus.echo.wasm"]);
    assert_eq!(list["plugins"][1]["kind"], "wasm");
    assert!(list["plugins"][0]["operations"].as_array().unwrap().iter().any(|o| o == "echo"));
    assert_eq!(list["errors"].as_array().unwrap().len(), 1);
    assert_eq!(list["errors"][0]["kind"], "invalid-manifest");

    let out = plexus(&fx, &["plugins", "list"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().next().unwrap().starts_with("ID"), "{stdout}");
    assert!(stdout.contains("plexus.echo.wasm") && stdout.contains("native"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 plugin(s) failed to load") && stderr.contains("broken"), "{stderr}");
}

#[test]
fn plugin_check_loads_each_path_alone_and_exits_13_with_every_problem() {
    let fx = mixed();
    let good = fx.plugins.path().join("echo-wasm");
    let bare = crate::support::echo_artifact("native");
    let junk = fx.plugins.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm but not really").unwrap();
    // Good ones: a folder and a bare artifact (named by its own metadata).
    let out = plexus(&fx, &["plugin", "check", good.to_str().unwrap(), bare.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok    plexus.echo.wasm 0.1.0 (wasm,"), "{stdout}");
    assert!(stdout.contains("ok    plexus.echo.native 0.1.0 (native,"), "{stdout}");
    assert!(stdout.contains("note: plugin.toml pins no sha256"), "{stdout}");
    // Broken ones: each reported, exit 13.
    let broken = fx.plugins.path().join("broken");
    let out = plexus(
        &fx,
        &[
            "plugins",
            "check",
            "--json",
            good.to_str().unwrap(),
            broken.to_str().unwrap(),
            junk.to_str().unwrap(),
            "/nonexistent/plugin",
        ],
    );
    assert_eq!(out.status.code(), Some(13), "{}", String::from_utf8_lossy(&out.stderr));
    let checked = json_of(&out)["checked"].as_array().unwrap().clone();
    assert_eq!(checked.len(), 4);
    assert_eq!(checked[0]["ok"], true);
    for (c, needle) in checked[1..].iter().zip(["plugin.toml", "junk.wasm", "no such file"]) {
        assert_eq!(c["ok"], false, "{c}");
        let problems = c["problems"].to_string();
        assert!(problems.contains(needle), "{needle}: {problems}");
    }
}

#[test]
fn the_component_cache_is_listed_and_pruned() {
    let fx = mixed();
    // Loading the WASM plugin stores its compiled component.
    assert_eq!(plexus(&fx, &["plugins", "list"]).status.code(), Some(13));
    let listed = json_of(&plexus(&fx, &["cache", "list", "--json"]));
    let entries = listed["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "{listed}");
    // A stale entry of another version, unused for 30 days.
    let stale = std::path::Path::new(listed["dir"].as_str().unwrap()).join("stale.cwasm");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let month_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 24 * 3600);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(month_ago).unwrap();
    // A host's scan prunes it (entries unused for 14 days go) and keeps the one it uses.
    assert_eq!(plexus(&fx, &["plugins", "list"]).status.code(), Some(13));
    assert!(!stale.exists(), "the host pruned the stale entry");
    // By hand: nothing is stale now; with --max-age 0s every entry this process does not use goes.
    let report = json_of(&plexus(&fx, &["cache", "prune", "--json"]));
    assert_eq!(report["removed"].as_array().unwrap().len(), 0, "{report}");
    let report = json_of(&plexus(&fx, &["cache", "prune", "--max-age", "0s", "--json"]));
    assert_eq!(report["removed"][0]["name"], entries[0]["name"], "{report}");
    assert!(json_of(&plexus(&fx, &["cache", "list", "--json"]))["entries"].as_array().unwrap().is_empty());
}

#[test]
fn call_artifact_loads_that_plugin_alone() {
    let fx = mixed();
    let wasm = crate::support::echo_artifact("wasm");
    // No plugins directory is scanned (the broken folder is not reported), and the id is optional.
    let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["call", "--artifact", wasm.to_str().unwrap(), "echo", "--params", r#"{"x": 1}"#, "--json"])
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .env("PLEXUS_PLUGINS_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out)["output"]["x"], 1);
    // Its errors name it by the id it describes.
    let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["call", "--artifact", wasm.to_str().unwrap(), "fail", "--params", r#"{"kind": "failed"}"#, "--json"])
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let message = json_of(&out)["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("plexus.echo.wasm"), "{message}");
    // A plugin folder, with the id given.
    let folder = fx.plugins.path().join("echo-native");
    let out = plexus(&fx, &["call", "--plugin-folder", folder.to_str().unwrap(), "plexus.echo.native", "noop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The wrong id for that folder: not loaded (5), naming what is.
    let out = plexus(&fx, &["call", "--plugin-folder", folder.to_str().unwrap(), "plexus.echo.wasm", "noop"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loaded: plexus.echo.native"));
    // Without --artifact the id is required.
    let out = plexus(&fx, &["call", "echo"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn plugins_info_shows_schemas_permissions_and_limits() {
    let fx = mixed();
    let out = plexus(&fx, &["plugins", "info", "plexus.echo.wasm", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = json_of(&out);
    assert_eq!(info["metadata"]["id"], "plexus.echo.wasm");
    assert_eq!(info["limits"]["memory_bytes"], 64 << 20);
    assert_eq!(info["permissions"]["network"], false);
    let sleep = info["metadata"]["operations"].as_array().unwrap().iter().find(|o| o["name"] == "sleep").unwrap();
    assert_eq!(sleep["params_schema"]["required"], serde_json::json!(["ms"]));

    let text = plexus(&fx, &["plugins", "info", "plexus.echo.native"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("native plugins are trusted") && stdout.contains("grow_memory"), "{stdout}");

    let missing = plexus(&fx, &["plugins", "info", "broken"]);
    assert_eq!(missing.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("did not load"));
}

#[test]
fn call_prints_output_and_exits_by_outcome() {
    let fx = mixed();
    for id in ["plexus.echo.native", "plexus.echo.wasm"] {
        let ok = plexus(&fx, &["call", id, "echo", "--params", r#"{"x": [1, 2]}"#]);
        assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
        assert_eq!(json_of(&ok), serde_json::json!({"x": [1, 2]}));

        let failed = plexus(&fx, &["call", id, "fail", "--params", r#"{"kind": "not-found", "message": "gone"}"#]);
        assert_eq!(failed.status.code(), Some(3));
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not-found: gone"), "{stderr}");

        let timeout =
            plexus(&fx, &["call", id, "sleep", "--params", r#"{"ms": 5000}"#, "--timeout", "100ms", "--json"]);
        assert_eq!(timeout.status.code(), Some(4));
        assert_eq!(json_of(&timeout)["error"]["kind"], "timeout");

        let crashed = plexus(&fx, &["call", id, "panic"]);
        assert_eq!(crashed.status.code(), Some(6), "{}", String::from_utf8_lossy(&crashed.stderr));
    }
    let not_loaded = plexus(&fx, &["call", "broken", "echo"]);
    assert_eq!(not_loaded.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&not_loaded.stderr).contains("invalid plugin.toml"));
    let unknown_op = plexus(&fx, &["call", "plexus.echo.wasm", "nope"]);
    assert_eq!(unknown_op.status.code(), Some(5));
}

#[test]
fn call_reads_params_from_a_file_and_reports_json() {
    let fx = mixed();
    let params = fx.plugins.path().join("params.json");
    std::fs::write(&params, r#"{"key": "k", "steps": 2}"#).unwrap();
    let out =
        plexus(&fx, &["call", "plexus.echo.wasm", "count", "--params", &format!("@{}", params.display()), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result = json_of(&out);
    assert_eq!(result["ok"], true);
    assert_eq!(result["output"], serde_json::json!({"before": 0, "after": 1}));
    assert_eq!(result["metrics"]["after"], 1.0);
    // The plugin's log line reaches the host's log, tagged with the plugin.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("k went from 0 to 1") && stderr.contains("plexus.echo.wasm"), "{stderr}");

    let bad = plexus(&fx, &["call", "plexus.echo.wasm", "echo", "--params", "{not json"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--params is not valid JSON"));
}

#[test]
fn a_components_stdout_and_stderr_go_to_the_log_within_their_bound() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "[limits]\noutput_bytes = 200\n");
    let out = plexus(&fx, &["call", "plexus.echo.wasm", "print", "--params", r#"{"text": "line from the guest"}"#]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line from the guest") && stderr.contains("stdout") && stderr.contains("stderr"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).trim() == "40", "the guest's stdout is not the host's");

    // Far past the bound: the call still succeeds, the rest is dropped and said so.
    let out =
        plexus(&fx, &["call", "plexus.echo.wasm", "print", "--params", r#"{"text": "0123456789", "times": 1000}"#]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.matches("0123456789").count() < 50, "output was not bounded");
    assert!(stderr.contains("dropped"), "{stderr}");
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let fx = Fixture::new();
    fx.echo("echo-native", "native", "");
    // `plexus plugins info … | head -0`: the reader is gone before the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["plugins", "info", "plexus.echo.native", "--plugins-dir"])
        .arg(fx.plugins.path())
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

#[test]
fn a_native_plugin_that_exits_during_a_call_is_reported() {
    let fx = Fixture::new();
    fx.echo("echo-native", "native", "");
    let out = plexus(&fx, &["call", "plexus.echo.native", "exit", "--params", r#"{"code": 0}"#]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    assert!(stderr.contains("plugin `plexus.echo.native` ended the process"), "{stderr}");
}

#[test]
fn plexus_run_exits_after_its_summary_when_a_native_step_ignores_cancellation() {
    let fx = Fixture::new();
    fx.echo("echo-native", "native", "");
    let file = fx.plugins.path().join("stuck.yaml");
    std::fs::write(
        &file,
        "id: stuck\nsteps:\n  - id: spin\n    plugin_id: plexus.echo.native\n    method_name: spin\n    \
         parameters: { ms: 60000 }\n    timeout: 300ms\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .arg("run")
        .arg(&file)
        .arg("--plugins-dir")
        .arg(fx.plugins.path())
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("plexus run did not exit after the step timed out");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status.code(), Some(8), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("workflow stuck failed") && stdout.contains("timeout"), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
}
