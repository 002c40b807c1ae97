//! The sandbox and crash isolation: timeouts, memory limits, file and
//! environment grants, panics and traps — and the host keeps serving after each.

use crate::support::Fixture;
use plexus_host::{CallError, CallOptions, Host};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn with_timeout(ms: u64) -> CallOptions {
    CallOptions { timeout: Some(Duration::from_millis(ms)), ..CallOptions::default() }
}

fn still_serves(host: &Host, id: &str) {
    let out = host.call(id, "echo", json!({"still": "alive"}), CallOptions::default()).unwrap();
    assert_eq!(out.output, json!({"still": "alive"}));
}

#[test]
fn an_infinite_loop_in_wasm_times_out_within_twice_its_timeout() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "");
    let host = fx.host();
    for timeout_ms in [200, 500] {
        let started = Instant::now();
        let err = host.call("plexus.echo.wasm", "spin", json!({"ms": 0}), with_timeout(timeout_ms)).unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(err, CallError::Timeout { after, .. } if after == Duration::from_millis(timeout_ms)), "{err}");
        assert!(elapsed >= Duration::from_millis(timeout_ms), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2 * timeout_ms), "timed out after {elapsed:?}");
        assert!(err.is_retryable());
        still_serves(&host, "plexus.echo.wasm");
    }
}

#[test]
fn the_manifest_timeout_applies_when_the_caller_gives_none() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "[limits]\ntimeout_ms = 150\n");
    let host = fx.host();
    let started = Instant::now();
    let err = host.call("plexus.echo.wasm", "spin", json!({"ms": 0}), CallOptions::default()).unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[test]
fn a_native_call_past_its_timeout_is_abandoned_and_told_to_stop() {
    let fx = Fixture::new();
    fx.echo("echo-native", "native", "");
    let host = fx.host();
    let started = Instant::now();
    let err = host.call("plexus.echo.native", "sleep", json!({"ms": 20_000}), with_timeout(100)).unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
    still_serves(&host, "plexus.echo.native");
    // A plugin that never checks the flag keeps its thread, but the host does not wait for it.
    let started = Instant::now();
    let err = host.call("plexus.echo.native", "spin", json!({"ms": 600}), with_timeout(100)).unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(200));
    still_serves(&host, "plexus.echo.native");
}

#[test]
fn cancelling_the_execution_stops_a_wasm_call() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "");
    let host = fx.host();
    let options = with_timeout(10_000);
    let cancel = options.cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        cancel.cancel();
    });
    let started = Instant::now();
    let err = host.call("plexus.echo.wasm", "spin", json!({"ms": 0}), options).unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, CallError::Cancelled { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn growing_memory_past_the_limit_fails_cleanly() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "[limits]\nmemory_mib = 32\n");
    let host = fx.host();
    // Within the limit: fine.
    assert_eq!(
        host.call("plexus.echo.wasm", "grow_memory", json!({"mib": 8}), CallOptions::default()).unwrap().output,
        json!(8 << 20)
    );
    let err = host.call("plexus.echo.wasm", "grow_memory", json!({"mib": 64}), CallOptions::default()).unwrap_err();
    assert!(matches!(err, CallError::MemoryLimit { limit_bytes, .. } if limit_bytes == 32 << 20), "{err}");
    assert!(!err.is_retryable());
    still_serves(&host, "plexus.echo.wasm");
}

#[test]
fn files_are_reachable_only_inside_granted_directories() {
    let fx = Fixture::new();
    let granted = fx.plugins.path().join("granted");
    let other = fx.plugins.path().join("not-granted");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(granted.join("in.txt"), "inside").unwrap();
    std::fs::write(other.join("out.txt"), "outside").unwrap();
    fx.echo(
        "echo-wasm",
        "wasm",
        &format!("[permissions]\ndirs = [{{ host = \"{}\", guest = \"/data\" }}]\n", granted.display()),
    );
    let host = fx.host();
    let read = |path: &str| host.call("plexus.echo.wasm", "read_file", json!({"path": path}), CallOptions::default());
    assert_eq!(read("/data/in.txt").unwrap().output, json!("inside"));
    for denied in [
        "/data/../not-granted/out.txt".to_string(),
        other.join("out.txt").display().to_string(),
        "/etc/hostname".to_string(),
        "/data/../../../../etc/hostname".to_string(),
    ] {
        let err = read(&denied).unwrap_err();
        assert!(matches!(&err, CallError::Plugin { .. }), "{denied}: {err}");
    }
    // Read-only: writing is denied too.
    let write = host.call(
        "plexus.echo.wasm",
        "write_file",
        json!({"path": "/data/new.txt", "text": "x"}),
        CallOptions::default(),
    );
    assert!(matches!(write, Err(CallError::Plugin { .. })), "{write:?}");
    assert!(!granted.join("new.txt").exists());
}

/// The WASM echo plugin, granted its own `out` folder read-write at `/out`
/// (a read-write grant elsewhere in the plugins directory is refused); returns
/// that folder.
fn echo_with_out_granted(fx: &Fixture) -> std::path::PathBuf {
    let granted = fx.plugins.path().join("echo-wasm").join("out");
    std::fs::create_dir_all(&granted).unwrap();
    fx.echo(
        "echo-wasm",
        "wasm",
        &format!(
            "[permissions]\ndirs = [{{ host = \"{}\", guest = \"/out\", access = \"read-write\" }}]\n",
            granted.display()
        ),
    );
    granted
}

#[test]
fn a_read_write_grant_allows_writing_there_only() {
    let fx = Fixture::new();
    let granted = echo_with_out_granted(&fx);
    let host = fx.host();
    let write = |path: &str| {
        host.call("plexus.echo.wasm", "write_file", json!({"path": path, "text": "written"}), CallOptions::default())
    };
    write("/out/result.txt").unwrap();
    assert_eq!(std::fs::read_to_string(granted.join("result.txt")).unwrap(), "written");
    assert!(write("/out/../escape.txt").is_err());
    assert!(!fx.plugins.path().join("echo-wasm/escape.txt").exists());
}

#[test]
fn concurrent_calls_share_a_grant_without_seeing_each_other_half_done() {
    // Every call's preopen is the directory opened at load, shared: calls on
    // several threads at once each write and read back their own file.
    let fx = Fixture::new();
    let granted = echo_with_out_granted(&fx);
    let host = std::sync::Arc::new(fx.host());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let host = host.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let path = format!("/out/{t}-{i}.txt");
                    let text = format!("thread {t} call {i}");
                    let call =
                        |op: &str, params: Value| host.call("plexus.echo.wasm", op, params, CallOptions::default());
                    call("write_file", json!({"path": path, "text": text})).unwrap();
                    assert_eq!(call("read_file", json!({"path": path})).unwrap().output, Value::String(text));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(std::fs::read_dir(&granted).unwrap().count(), 80);
}

#[test]
fn without_a_grant_there_are_no_files_and_no_environment() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "");
    let host = fx.host();
    let err = host
        .call("plexus.echo.wasm", "read_file", json!({"path": "/data/hello.txt"}), CallOptions::default())
        .unwrap_err();
    assert!(matches!(err, CallError::Plugin { .. }), "{err}");
    let path = host.call("plexus.echo.wasm", "env", json!({"name": "PATH"}), CallOptions::default()).unwrap();
    assert_eq!(path.output, Value::Null, "PATH must not leak into the sandbox");
}

#[test]
fn granted_environment_variables_pass_through_by_name() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "[permissions]\nenv = [\"HOME\"]\n");
    let host = fx.host();
    let home = host.call("plexus.echo.wasm", "env", json!({"name": "HOME"}), CallOptions::default()).unwrap();
    assert_eq!(home.output, json!(std::env::var("HOME").ok()));
    let path = host.call("plexus.echo.wasm", "env", json!({"name": "PATH"}), CallOptions::default()).unwrap();
    assert_eq!(path.output, Value::Null);
}

#[test]
fn a_native_panic_is_an_error_and_the_host_keeps_serving() {
    let fx = Fixture::new();
    fx.echo("echo-native", "native", "");
    let host = fx.host();
    for _ in 0..3 {
        let err = host.call("plexus.echo.native", "panic", Value::Null, CallOptions::default()).unwrap_err();
        assert!(matches!(&err, CallError::Panic { message, .. } if message.contains("asked to panic")), "{err}");
        still_serves(&host, "plexus.echo.native");
    }
    // Also without a timeout, on the caller's own thread.
    let err =
        host.call("plexus.echo.native", "panic", Value::Null, CallOptions { timeout: None, ..CallOptions::default() });
    assert!(matches!(err, Err(CallError::Panic { .. })));
}

#[test]
fn a_wasm_trap_is_reported_as_a_trap_and_the_next_call_gets_a_fresh_instance() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "");
    let host = fx.host();
    let err = host.call("plexus.echo.wasm", "panic", Value::Null, CallOptions::default()).unwrap_err();
    assert!(matches!(&err, CallError::Trap { message, .. } if message.contains("unreachable")), "{err}");
    still_serves(&host, "plexus.echo.wasm");
    // Fresh store per call: state inside the component does not survive (the shared state lives in the host).
    let first = host.call("plexus.echo.wasm", "count", json!({}), CallOptions::default()).unwrap();
    let second = host.call("plexus.echo.wasm", "count", json!({}), CallOptions::default()).unwrap();
    assert_eq!((first.output["before"].clone(), second.output["before"].clone()), (json!(0), json!(0)));
}
