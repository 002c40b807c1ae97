//! Native plugins in worker processes (`isolation = "process"`): every way a
//! plugin can end its process, through `plexus call`, `plexus run`, the
//! library and the daemon — each ends in its named error, the host lives on,
//! and the other calls and steps complete.

use crate::daemon_support::RunningDaemon;
use crate::support::Fixture;
use plexus_client::PluginStatus;
use plexus_client::status::WorkflowStatus;
use plexus_host::{CallError, CallOptions, CancelToken, Change, Host, HostBuilder};
use serde_json::{Value, json};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `plexus ARGS` over the fixture's plugins.
fn plexus(fx: &Fixture, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .arg("--plugins-dir")
        .arg(fx.plugins.path())
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LOG")
        .output()
        .expect("run plexus")
}

/// A host over the fixture whose workers are the `plexus` binary, load errors and all.
fn host_with_errors(fx: &Fixture) -> Host {
    HostBuilder::new()
        .plugin_dir(fx.plugins.path())
        .cache_dir(fx.cache.path())
        .worker_program(env!("CARGO_BIN_EXE_plexus"))
        .build()
        .unwrap()
}

/// [`host_with_errors`], where every plugin loaded.
fn host(fx: &Fixture) -> Host {
    let host = host_with_errors(fx);
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    host
}

fn call(host: &Host, op: &str, params: Value, timeout_ms: u64) -> Result<Value, CallError> {
    let options = CallOptions { timeout: Some(Duration::from_millis(timeout_ms)), ..CallOptions::default() };
    host.call("plexus.hostile", op, params, options).map(|out| out.output)
}

/// Whether process `pid` still exists (a zombie counts: it was not reaped).
fn exists(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn every_way_a_worker_can_end_fails_the_call_with_its_cause_and_plexus_call_lives() {
    let fx = Fixture::new();
    fx.hostile_native("hostile", "");
    let cases: [(&str, &str, &str); 6] = [
        ("abort", "{}", "killed by signal 6 (SIGABRT)"),
        ("segfault", "{}", "killed by signal 11 (SIGSEGV)"),
        ("stack_overflow", "{}", "has overflowed its stack"),
        ("panic_unwinding", "{}", "panic in a destructor during cleanup"),
        ("exit", r#"{"code": 0}"#, "exited with status 0 during the call"),
        ("exit", r#"{"code": 3}"#, "exited with status 3 during the call"),
    ];
    for (op, params, cause) in cases {
        let out = plexus(&fx, &["call", "plexus.hostile", op, "--params", params]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{op} {params}: {stderr}");
        assert!(stderr.contains("error: plugin `plexus.hostile` crashed: its worker"), "{op}: {stderr}");
        assert!(stderr.contains(cause), "{op} {params}: {stderr}");
    }
    // A call that never returns and never looks at its cancel flag is killed at its deadline.
    let started = Instant::now();
    let out = plexus(&fx, &["call", "plexus.hostile", "hang", "--timeout", "300ms", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"timeout\""), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn plexus_run_keeps_the_other_steps_results_when_steps_crash_or_hang() {
    let fx = Fixture::new();
    fx.hostile_native("hostile", "");
    let file = fx.plugins.path().join("crashy.yaml");
    std::fs::write(
        &file,
        "id: crashy\nexecution_mode: parallel\nsteps:\n\
         \x20 - { id: segv, plugin_id: plexus.hostile, method_name: segfault, critical: false, retry: { max_attempts: 2, initial_delay: 10ms } }\n\
         \x20 - { id: hang, plugin_id: plexus.hostile, method_name: hang, timeout: 300ms, critical: false }\n\
         \x20 - { id: bye, plugin_id: plexus.hostile, method_name: exit, parameters: { code: 0 }, critical: false }\n\
         \x20 - { id: fine, plugin_id: plexus.hostile, method_name: pid }\n\
         \x20 - { id: after, plugin_id: plexus.hostile, method_name: pid, dependencies: [fine] }\n",
    )
    .unwrap();
    let results = fx.plugins.path().join("results.json");
    let out = plexus(&fx, &["run", file.to_str().unwrap(), "--output", results.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    let step = |id: &str| results["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap().clone();
    let segv = step("segv");
    assert_eq!((segv["status"].as_str(), segv["attempts"].as_u64()), (Some("failed"), Some(2)), "{segv}");
    assert_eq!(segv["error"]["kind"], "crashed", "{segv}");
    assert!(segv["error"]["message"].as_str().unwrap().contains("SIGSEGV"), "{segv}");
    assert_eq!(step("hang")["error"]["kind"], "timeout");
    assert_eq!(step("bye")["error"]["kind"], "crashed");
    // The steps that did their work completed, each in a worker process.
    let plexus_pid = u64::from(std::process::id());
    for id in ["fine", "after"] {
        let s = step(id);
        assert_eq!(s["status"], "completed", "{s}");
        assert_ne!(s["output"].as_u64(), Some(plexus_pid));
    }
}

#[test]
fn workers_proxy_the_host_services_run_calls_at_once_and_stop_at_a_cancel() {
    let fx = Fixture::new();
    fx.echo("echo", "native", "isolation = \"process\"");
    fx.hostile_native("hostile", "[worker]\nmax = 2");
    let host = host(&fx);
    // State, progress and log go through the worker's socket.
    let state = plexus_host::SharedState::default();
    state.set("counter", json!(41));
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let progress = progress.clone();
        std::sync::Arc::new(move |f: f64, m: &str| progress.lock().unwrap().push((f, m.to_owned())))
    };
    let options = CallOptions { state: state.clone(), progress: Some(sink), ..CallOptions::default() };
    let out = host.call("plexus.echo.native", "count", json!({"steps": 3}), options).unwrap();
    assert_eq!(state.get("counter"), Some(json!(42)), "{:?}", out.output);
    assert_eq!(progress.lock().unwrap().len(), 3);

    // A cancelled execution's call sees `is_cancelled` and returns: the worker stays.
    let cancel = CancelToken::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cancel.cancel();
        })
    };
    let started = Instant::now();
    let options = CallOptions { cancel, timeout: Some(Duration::from_secs(30)), ..CallOptions::default() };
    let err = host.call("plexus.echo.native", "sleep", json!({"ms": 20_000}), options).unwrap_err();
    canceller.join().unwrap();
    assert_eq!(err.kind(), "cancelled", "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

    // Two calls at once run in two workers (`worker.max = 2`); a third waits for one.
    let first = call(&host, "pid", json!({}), 5_000).unwrap().as_u64().unwrap();
    std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| call(&host, "sleep", json!({"ms": 1_500}), 10_000));
        std::thread::sleep(Duration::from_millis(300));
        let second = call(&host, "pid", json!({}), 5_000).unwrap().as_u64().unwrap();
        assert!(!sleeper.is_finished(), "the pid call did not wait for the sleeping one");
        assert_ne!(first, second, "a busy worker is not shared");
        assert_eq!(sleeper.join().unwrap().unwrap(), json!(1_500));
    });
}

#[test]
fn a_call_past_its_deadline_is_killed_with_its_worker_and_the_next_gets_a_new_one() {
    let fx = Fixture::new();
    fx.hostile_native("hostile", "[worker]\nmax = 1");
    let host = host(&fx);
    let before = call(&host, "pid", json!({}), 5_000).unwrap().as_u64().unwrap();
    let started = Instant::now();
    let err = call(&host, "hang", json!({}), 200).unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(!exists(before), "the hung worker {before} was killed and reaped");
    let after = call(&host, "pid", json!({}), 5_000).unwrap().as_u64().unwrap();
    assert_ne!(before, after);
    assert!(exists(after));
    drop(host);
    assert!(!exists(after), "dropping the host ends its workers");
}

#[test]
fn a_crash_loop_makes_the_plugin_unavailable_and_a_reload_brings_it_back() {
    let fx = Fixture::new();
    let folder = fx.hostile_native("hostile", "");
    let host = host(&fx);
    for n in 0..plexus_host::worker::CRASH_LIMIT {
        let err = call(&host, "abort", json!({}), 10_000).unwrap_err();
        assert!(matches!(err, CallError::Crashed { .. }), "crash {n}: {err}");
        assert!(err.is_retryable());
    }
    let err = call(&host, "pid", json!({}), 10_000).unwrap_err();
    assert_eq!(err.kind(), "unavailable", "{err}");
    assert!(err.to_string().contains("crashed 5 times within 60 s"), "{err}");
    assert!(err.to_string().contains("SIGABRT"), "{err}");
    assert!(host.unavailable()["plexus.hostile"].contains("crashed 5 times"));
    // A changed plugin in worker processes is loaded again (not "restart required").
    std::fs::write(
        folder.join("plugin.toml"),
        std::fs::read_to_string(folder.join("plugin.toml")).unwrap() + "\n# changed\n",
    )
    .unwrap();
    let (host, changes) = host.rescan();
    assert_eq!(changes, [Change::Reloaded { plugin: "plexus.hostile".into() }]);
    assert!(call(&host, "pid", json!({}), 5_000).unwrap().as_u64().is_some());
}

#[test]
fn worker_limits_and_load_failures_are_reported_by_name() {
    let fx = Fixture::new();
    fx.hostile_native("hostile", "[worker]\nmemory_mib = 2048\ncpu_seconds = 1");
    // Not a library: the worker refuses it, the host reports why.
    let text = fx.plugins.path().join("text.so");
    std::fs::write(&text, "not a library").unwrap();
    fx.folder(
        "broken",
        &format!(
            "id = \"plexus.broken\"\nversion = \"0.1.0\"\nkind = \"native\"\nartifact = \"{}\"\nisolation = \"process\"\n",
            text.display()
        ),
    );
    let host = host_with_errors(&fx);
    let errors: Vec<String> = host.load_errors().iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("plexus.broken") && errors[0].contains("not a shared library"), "{errors:?}");
    // Past its address space the worker's allocation fails: a crash, not the host's.
    let err = call(&host, "grow", json!({"n": 4096}), 20_000).unwrap_err();
    assert_eq!(err.kind(), "crashed", "{err}");
    assert!(err.to_string().contains("memory allocation"), "{err}");
    // Past its CPU time the kernel ends it.
    let err = call(&host, "spin", json!({}), 30_000).unwrap_err();
    assert!(err.to_string().contains("SIGXCPU") || err.to_string().contains("SIGKILL"), "{err}");
    // Manifest values out of range name the field.
    let bad = fx
        .folder("bad", "id = \"x\"\nversion = \"0.1.0\"\nkind = \"native\"\nartifact = \"x.so\"\n[worker]\nmax = 0\n");
    let err = plexus_host::Manifest::load(&bad).unwrap_err().to_string();
    assert!(err.contains("worker.max must be 1..=64, not 0"), "{err}");
}

#[test]
fn the_daemon_runs_native_plugins_in_workers_and_outlives_their_crashes() {
    let fx = Fixture::new();
    // No `isolation` in the manifest: the daemon's default (process) applies.
    let manifest = format!(
        "id = \"plexus.hostile\"\nversion = \"0.1.0\"\nkind = \"native\"\nartifact = \"{}\"\n",
        crate::support::hostile_native_artifact().display()
    );
    let folder = fx.folder("hostile", &manifest);
    fx.echo("echo", "native", "");
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), fx.plugins.path(), &[]);
    d.register(
        "id: crashy\nexecution_mode: parallel\nsteps:\n\
         \x20 - { id: segv, plugin_id: plexus.hostile, method_name: segfault, critical: false }\n\
         \x20 - { id: bye, plugin_id: plexus.hostile, method_name: exit, parameters: { code: 3 }, critical: false }\n\
         \x20 - { id: hang, plugin_id: plexus.hostile, method_name: hang, timeout: 300ms, critical: false }\n\
         \x20 - { id: fine, plugin_id: plexus.echo.native, method_name: echo, parameters: { ok: true } }\n",
    );
    d.register(
        "id: calm\nsteps:\n  - { id: one, plugin_id: plexus.echo.native, method_name: echo, parameters: { n: 1 } }\n",
    );
    let crashy: Vec<String> = (0..2).map(|_| d.start_execution("crashy")).collect();
    let calm = d.start_execution("calm");
    for id in &crashy {
        let execution = d.wait_for(id, Duration::from_secs(30));
        assert_eq!(execution.status.status, WorkflowStatus::Completed, "{execution:?}");
        let step = |name: &str| execution.status.step(name).unwrap().clone();
        assert_eq!(step("segv").error.unwrap().kind, "crashed");
        assert!(step("bye").error.unwrap().message.contains("exited with status 3"));
        assert_eq!(step("hang").error.unwrap().kind, "timeout");
        assert_eq!(step("fine").output, Some(json!({"ok": true})));
    }
    assert_eq!(d.wait_for(&calm, Duration::from_secs(30)).status.status, WorkflowStatus::Completed);
    assert_eq!(d.health().status, plexus_client::HealthStatus::Ok, "the daemon is alive and well");
    // Two executions, two crashes each (the hang is a timeout): four of five.
    // One more crash marks the plugin unavailable, with the reason, over the API.
    let client = d.client();
    let last = d.start_execution("crashy");
    d.wait_for(&last, Duration::from_secs(30));
    d.eventually("the plugin to be unavailable", Duration::from_secs(10), |_| {
        client.plugin("plexus.hostile").unwrap().status == PluginStatus::Unavailable
    });
    let reason = client.plugin("plexus.hostile").unwrap().unavailable.unwrap();
    assert!(reason.contains("crashed") && reason.contains("times within 60 s"), "{reason}");
    // A changed plugin in worker processes is reloaded and callable again.
    std::fs::write(folder.join("plugin.toml"), format!("{manifest}\n# changed\n")).unwrap();
    d.eventually("the reload", Duration::from_secs(15), |_| {
        client.plugin("plexus.hostile").unwrap().status == PluginStatus::Loaded
    });
    assert_eq!(
        d.wait_for(&d.start_execution("calm"), Duration::from_secs(30)).status.status,
        WorkflowStatus::Completed
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn a_worker_ends_when_its_host_is_killed_even_in_a_call_that_never_returns() {
    let fx = Fixture::new();
    fx.hostile_native("hostile", "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["call", "plexus.hostile", "hang", "--timeout", "1h", "--plugins-dir"])
        .arg(fx.plugins.path())
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The worker is the call's child process (Linux lists children in /proc).
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let worker: u64 = loop {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next() {
            break pid.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no worker process started");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300)); // the call is in the worker now
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while exists(worker) {
        assert!(Instant::now() < deadline, "worker {worker} outlived its host");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A call of the hostile WASM plugin within execution `execution`.
fn call_in(host: &Host, execution: &str, op: &str, timeout_ms: u64) -> Result<Value, CallError> {
    let exec = plexus_sdk::ExecutionContext {
        execution_id: execution.into(),
        operation: op.into(),
        parameters: json!({"ms": 5_000}),
        ..Default::default()
    };
    let services = plexus_host::CallServices::new("plexus.hostile", execution, Default::default(), CancelToken::new());
    host.call_with(&exec, &services, Some(Duration::from_millis(timeout_ms))).map(|out| out.output)
}

#[test]
fn per_execution_reuse_keeps_an_instance_within_its_execution_only() {
    let fx = Fixture::new();
    fx.hostile("hostile", "[instances]\nreuse = \"execution\"");
    let host = fx.host();
    let tally = |execution: &str| call_in(&host, execution, "tally", 10_000).unwrap();
    assert_eq!([tally("a"), tally("a"), tally("a")], [json!(1), json!(2), json!(3)], "one instance for execution a");
    assert_eq!(tally("b"), json!(1), "execution b never sees a's instance");
    assert_eq!(tally("a"), json!(4));
    // A trap drops the instance; the next call succeeds on a fresh one.
    assert_eq!(call_in(&host, "a", "trap", 10_000).unwrap_err().kind(), "trap");
    assert_eq!(tally("a"), json!(1));
    // So does a timeout (the guest blocked past its deadline).
    assert_eq!(tally("a"), json!(2));
    assert_eq!(call_in(&host, "a", "sleep", 100).unwrap_err().kind(), "timeout");
    assert_eq!(tally("a"), json!(1));
    // The execution's end drops its instances.
    host.end_execution("a");
    assert_eq!(tally("a"), json!(1));
    assert_eq!(tally("b"), json!(2), "b's instance was kept");
}

#[test]
fn per_plugin_reuse_shares_across_executions_up_to_max_calls_and_the_default_is_fresh() {
    let fx = Fixture::new();
    fx.hostile("hostile", "[instances]\nreuse = \"plugin\"\nmax_calls = 3");
    let host = fx.host();
    let tallies: Vec<Value> =
        ["x", "y", "z", "x", "y"].iter().map(|e| call_in(&host, e, "tally", 10_000).unwrap()).collect();
    assert_eq!(tallies, [json!(1), json!(2), json!(3), json!(1), json!(2)], "shared, then recycled after 3 calls");

    let fresh = Fixture::new();
    fresh.hostile("hostile", "");
    let host = fresh.host();
    for _ in 0..3 {
        assert_eq!(call_in(&host, "x", "tally", 10_000).unwrap(), json!(1), "a fresh instance per call");
    }
    let bad =
        fresh.folder("bad", "id = \"x\"\nversion = \"0.1.0\"\nkind = \"native\"\nartifact = \"x.so\"\n[instances]\n");
    let err = plexus_host::Manifest::load(&bad).unwrap_err().to_string();
    assert!(err.contains("[instances] applies to wasm plugins only"), "{err}");
}

/// `[worker.landlock]`: the worker reads and writes only what the manifest
/// grants (besides its own files and the system libraries) and connects no
/// TCP socket unless `tcp = true`; what it already holds (the socket to the
/// host, its log) keeps working. A kernel that cannot enforce all of it
/// refuses the plugin: the sandbox is never silently weaker.
#[test]
fn a_landlocked_worker_reaches_only_what_it_was_granted() {
    let outside = tempfile::tempdir().unwrap();
    let (read, write) = (outside.path().join("read"), outside.path().join("write"));
    for dir in [&read, &write] {
        std::fs::create_dir(dir).unwrap();
    }
    std::fs::write(read.join("in.txt"), "granted").unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "not granted").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();

    for tcp in [false, true] {
        let fx = Fixture::new();
        fx.hostile_native(
            "hostile",
            &format!(
                "[worker.landlock]\nread = [\"{}\"]\nwrite = [\"{}\"]\ntcp = {tcp}\n",
                read.display(),
                write.display()
            ),
        );
        let host = host_with_errors(&fx);
        if let Some(error) = host.load_errors().first() {
            let message = error.to_string();
            assert!(message.contains("landlock"), "only a kernel without Landlock may refuse it: {message}");
            eprintln!("this kernel cannot enforce Landlock, and the plugin was refused: {message}");
            return;
        }
        let path = |p: &std::path::Path| json!({"path": p});
        assert_eq!(call(&host, "read", path(&read.join("in.txt")), 5000).unwrap(), json!("granted"));
        let denied = call(&host, "read", path(&secret), 5000).unwrap_err().to_string();
        assert!(denied.contains("Permission denied"), "{denied}");
        let denied = call(&host, "list", path(outside.path()), 5000).unwrap_err().to_string();
        assert!(denied.contains("Permission denied"), "{denied}");
        let written = write.join(format!("out-{tcp}.txt"));
        call(&host, "write", json!({"path": written, "text": "written"}), 5000).unwrap();
        assert_eq!(std::fs::read_to_string(&written).unwrap(), "written");
        let denied =
            call(&host, "write", json!({"path": read.join("x.txt"), "text": "no"}), 5000).unwrap_err().to_string();
        assert!(denied.contains("Permission denied"), "{denied}");
        assert!(!read.join("x.txt").exists());
        let connected = call(&host, "tcp", json!({"addr": addr}), 5000);
        if tcp {
            assert_eq!(connected.unwrap(), json!({"connected": addr}));
            // Operators see the sandbox: `plexus plugins info`, text and JSON.
            let info = plexus(&fx, &["plugins", "info", "plexus.hostile", "--json"]);
            assert!(info.status.success(), "{}", String::from_utf8_lossy(&info.stderr));
            let details: Value = serde_json::from_slice(&info.stdout).unwrap();
            assert_eq!(details["isolation"], "process");
            assert_eq!(details["landlock"]["write"], json!([write.display().to_string()]));
            assert_eq!(details["landlock"]["tcp"], true);
            let text = String::from_utf8(plexus(&fx, &["plugins", "info", "plexus.hostile"]).stdout).unwrap();
            assert!(text.contains("sandbox:       landlock"), "{text}");
        } else {
            let denied = connected.unwrap_err().to_string();
            assert!(denied.contains("Permission denied"), "{denied}");
        }
    }
    // A granted path that does not exist refuses the plugin, naming it.
    let fx = Fixture::new();
    fx.hostile_native("hostile", "[worker.landlock]\nwrite = [\"/nonexistent/plexus-out\"]\n");
    let errors = host_with_errors(&fx).load_errors().iter().map(ToString::to_string).collect::<Vec<_>>();
    assert!(
        errors.len() == 1 && errors[0].contains("worker.landlock.write: cannot open /nonexistent/plexus-out"),
        "{errors:?}"
    );
}
