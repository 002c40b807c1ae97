//! A hostile plugin (`tests/plugins/hostile`, plus hand-made components as WAT)
//! against each promise of the sandbox: it cannot reach outside its grants,
//! outlive its deadline, take more memory, state, log, descriptors or instance
//! slots than its limits, or hold up loading — and the host and the plugins
//! beside it keep working after every attempt.

use crate::support::Fixture;
use plexus_client::HealthStatus;
use plexus_client::status::WorkflowStatus;
use plexus_host::{CallError, CallOptions, Host, HostBuilder, LOG_BYTES_DROPPED, LoadErrorKind};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const HOSTILE: &str = "plexus.hostile";

fn with_timeout(ms: u64) -> CallOptions {
    CallOptions { timeout: Some(Duration::from_millis(ms)), ..CallOptions::default() }
}

fn call(host: &Host, operation: &str, params: Value) -> Result<Value, CallError> {
    host.call(HOSTILE, operation, params, CallOptions::default()).map(|out| out.output)
}

/// The echo plugin loaded beside the hostile one still answers.
fn others_still_work(host: &Host) {
    let out = host.call("plexus.echo.wasm", "echo", json!({"still": "here"}), CallOptions::default()).unwrap();
    assert_eq!(out.output, json!({"still": "here"}));
}

fn load_error<'a>(host: &'a Host, needle: &str) -> &'a plexus_host::LoadError {
    host.load_errors()
        .iter()
        .find(|e| e.to_string().contains(needle))
        .unwrap_or_else(|| panic!("no load error containing `{needle}` in {:?}", host.load_errors()))
}

fn grant(host: &Path, guest: &str, access: &str) -> String {
    format!("{{ host = \"{}\", guest = \"{guest}\", access = \"{access}\" }}", host.display())
}

// ----- class 1: file-system escape -----

#[test]
fn a_granted_directory_is_the_one_opened_at_load_whatever_replaces_its_path() {
    let fx = Fixture::new();
    let root = tempfile::tempdir().unwrap();
    let (granted, outside) = (root.path().join("granted"), root.path().join("outside"));
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(granted.join("file"), "granted").unwrap();
    std::fs::write(outside.join("file"), "host secret").unwrap();
    fx.hostile("hostile", &format!("[permissions]\ndirs = [{}]\n", grant(&granted, "/g", "read-write")));
    let host = fx.host();
    assert_eq!(call(&host, "read", json!({"path": "/g/file"})).unwrap(), json!("granted"));
    // Between two calls the granted path becomes a symbolic link to elsewhere.
    std::fs::rename(&granted, root.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(&outside, &granted).unwrap();
    assert_eq!(call(&host, "read", json!({"path": "/g/file"})).unwrap(), json!("granted"));
    call(&host, "write", json!({"path": "/g/file", "text": "overwritten"})).unwrap();
    assert_eq!(std::fs::read_to_string(outside.join("file")).unwrap(), "host secret");
    assert_eq!(std::fs::read_to_string(root.path().join("moved/file")).unwrap(), "overwritten");
}

#[test]
fn symbolic_links_made_by_the_plugin_do_not_lead_out_of_its_grant() {
    let fx = Fixture::new();
    let root = tempfile::tempdir().unwrap();
    let (work, outside) = (root.path().join("work"), root.path().join("outside"));
    std::fs::create_dir_all(work.join("inner")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host secret").unwrap();
    fx.hostile("hostile", &format!("[permissions]\ndirs = [{}]\n", grant(&work, "/work", "read-write")));
    fx.echo("echo-wasm", "wasm", "");
    let host = fx.host();
    for target in [outside.display().to_string(), "../outside".into(), "../../..".into(), "/".into()] {
        // WASI refuses links with absolute targets; relative ones are made, and lead nowhere.
        let made = call(&host, "symlink", json!({"target": target, "link": "/work/inner"}));
        assert_eq!(made.is_ok(), !target.starts_with('/'), "{target}: {made:?}");
        let read = call(&host, "read", json!({"path": "/work/inner/secret"}));
        assert!(read.is_err(), "read through a link to {target}: {read:?}");
        let write = call(&host, "write", json!({"path": "/work/inner/planted", "text": "x"}));
        assert!(write.is_err(), "write through a link to {target}: {write:?}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "nothing appeared outside the grant");
    others_still_work(&host);
}

#[test]
fn nested_overlapping_or_self_granting_grants_do_not_load() {
    let fx = Fixture::new();
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(work.join("inner")).unwrap();
    std::os::unix::fs::symlink(work.join("inner"), root.path().join("alias")).unwrap();
    fx.echo("echo-wasm", "wasm", "");
    let nested = format!(
        "[permissions]\ndirs = [{}, {}]\n",
        grant(&work, "/work", "read-write"),
        grant(&work.join("inner"), "/inner", "read-only")
    );
    fx.hostile("nested", &nested);
    fx.hostile(
        "aliased",
        &format!(
            "[permissions]\ndirs = [{}, {}]\n",
            grant(&work, "/work", "read-write"),
            grant(&root.path().join("alias"), "/alias", "read-only")
        ),
    );
    let own = fx.plugins.path().join("own");
    fx.hostile("own", &format!("[permissions]\ndirs = [{}]\n", grant(&own, "/self", "read-write")));
    // Another plugin's folder, or the plugins directory itself: a plugin there could plant native code.
    let sibling = fx.plugins.path().join("echo-wasm");
    fx.hostile("sibling", &format!("[permissions]\ndirs = [{}]\n", grant(&sibling, "/other", "read-write")));
    // Its own subfolder is fine (read-write), and so is another plugin's folder read-only.
    let mine = fx.plugins.path().join("zz-mine"); // scanned last: the others fail before a duplicate id
    std::fs::create_dir_all(mine.join("data")).unwrap();
    let ok = format!(
        "[permissions]\ndirs = [{}, {}]\n",
        grant(&mine.join("data"), "/data", "read-write"),
        grant(&sibling, "/other", "read-only")
    );
    fx.hostile("zz-mine", &ok);
    let host = fx.host();
    // Only `zz-mine` loads.
    assert_eq!(host.plugin(HOSTILE).map(|p| p.manifest.dir.clone()), Some(mine.clone()), "{:?}", host.load_errors());
    let nested_error = load_error(&host, "nested/plugin.toml");
    assert!(nested_error.to_string().contains("permissions.dirs") && nested_error.to_string().contains("nested"));
    let aliased_error = load_error(&host, "symbolic links are resolved");
    assert!(matches!(aliased_error.kind, LoadErrorKind::InvalidManifest(_)));
    let own_error = load_error(&host, "contains the plugin's own");
    assert!(own_error.to_string().contains("permissions.dirs"), "{own_error}");
    let sibling_error = load_error(&host, "reaches the plugins directory");
    assert!(
        sibling_error.to_string().contains("sibling/plugin.toml") || sibling_error.path.ends_with("sibling"),
        "{sibling_error}"
    );

    others_still_work(&host);
}

#[test]
fn no_grant_reaches_the_component_cache_or_a_protected_path() {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    let cache = root.path().join("state/cache");
    let token = root.path().join("secrets/token");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(token.parent().unwrap()).unwrap();
    std::fs::write(&token, "t").unwrap();
    let fx = Fixture::new();
    let manifest = |dir: &Path| {
        format!(
            "id = \"plexus.hostile\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"{}\"\n[permissions]\ndirs = [{}]\n",
            crate::support::hostile_artifact().display(),
            grant(dir, "/x", "read-only")
        )
    };
    for (name, dir) in [("cache", root.path().join("state")), ("token", root.path().join("secrets"))] {
        std::fs::create_dir_all(plugins.join(name)).unwrap();
        std::fs::write(plugins.join(name).join("plugin.toml"), manifest(&dir)).unwrap();
    }
    drop(fx);
    let host = HostBuilder::new().plugin_dir(&plugins).cache_dir(&cache).protect(&token).build().unwrap();
    assert!(host.plugin(HOSTILE).is_none());
    assert_eq!(host.load_errors().len(), 2, "{:?}", host.load_errors());
    for error in host.load_errors() {
        assert!(error.to_string().contains("keeps from plugins"), "{error}");
    }
}

#[test]
fn a_tampered_cache_entry_is_never_run() {
    let fx = Fixture::new();
    fx.hostile("hostile", "");
    drop(fx.host()); // compiles and stores the entry
    let entry = std::fs::read_dir(fx.cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cache entry");
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff; // what a plugin with write access would do: change the native code
    std::fs::write(&entry, &bytes).unwrap();
    let host = fx.host();
    assert!(host.plugin(HOSTILE).is_some(), "the plugin was compiled again: {:?}", host.load_errors());
    assert_eq!(call(&host, "sleep", json!({"ms": 0})).unwrap(), json!(0));
    assert_ne!(std::fs::read(&entry).unwrap(), bytes, "the tampered entry was replaced");
}

// ----- class 2: deadlines and cancel -----

#[test]
fn a_blocking_wasi_sleep_ends_at_its_deadline() {
    let fx = Fixture::new();
    fx.hostile("hostile", "");
    fx.echo("echo-wasm", "wasm", "");
    let host = fx.host();
    for (operation, timeout_ms) in [("sleep", 300), ("hostcalls", 300), ("sleep", 1_000)] {
        let started = Instant::now();
        let err = host.call(HOSTILE, operation, json!({"ms": 30_000}), with_timeout(timeout_ms)).unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(err, CallError::Timeout { after, .. } if after == Duration::from_millis(timeout_ms)), "{err}");
        assert!(elapsed < Duration::from_millis(timeout_ms + 100), "{operation} ended after {elapsed:?}");
    }
    others_still_work(&host);
}

#[test]
fn a_cancel_stops_a_blocking_wasi_sleep_at_once() {
    let fx = Fixture::new();
    fx.hostile("hostile", "");
    let host = fx.host();
    let options = with_timeout(30_000);
    let cancel = options.cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        cancel.cancel();
    });
    let started = Instant::now();
    let err = host.call(HOSTILE, "sleep", json!({"ms": 30_000}), options).unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, CallError::Cancelled { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
}

#[test]
fn a_slow_describe_is_a_load_error_and_holds_nobody_up() {
    let fx = Fixture::new();
    let ctl = tempfile::tempdir().unwrap();
    std::fs::write(ctl.path().join("describe-sleep-ms"), "30000").unwrap();
    fx.hostile(
        "hostile",
        &format!("[limits]\ntimeout_ms = 500\n[permissions]\ndirs = [{}]\n", grant(ctl.path(), "/ctl", "read-only")),
    );
    fx.echo("echo-wasm", "wasm", "");
    // Compile both once (into the cache), with a describe that does not sleep.
    std::fs::rename(ctl.path().join("describe-sleep-ms"), ctl.path().join("off")).unwrap();
    assert!(fx.host().plugin(HOSTILE).is_some());
    std::fs::rename(ctl.path().join("off"), ctl.path().join("describe-sleep-ms")).unwrap();
    let started = Instant::now();
    let host = fx.host();
    assert!(started.elapsed() < Duration::from_millis(1_500), "loading took {:?}", started.elapsed());
    let error = load_error(&host, "describe did not return within 500 ms");
    assert!(matches!(error.kind, LoadErrorKind::Metadata(_)));
    others_still_work(&host);
}

// ----- class 3: memory and instance slots -----

#[test]
fn memory_is_limited_per_instance() {
    let fx = Fixture::new();
    fx.hostile("hostile", "[limits]\nmemory_mib = 32\n");
    let host = fx.host();
    let err = call(&host, "grow", json!({"n": 64})).unwrap_err();
    assert!(matches!(err, CallError::MemoryLimit { limit_bytes, .. } if limit_bytes == 32 << 20), "{err}");
    assert!(call(&host, "grow", json!({"n": 8})).is_ok());
}

/// The guest interface's types and lifted exports, shared with the WASM runtime's unit tests.
const GUEST_EXPORTS: &str = include_str!("../fixtures/guest-exports.wat");

/// A component that exports the guest interface and instantiates a module
/// with one linear memory `instances` times; its functions trap if ever called.
fn component_with_memories(instances: usize) -> String {
    let extra = "(core instance (instantiate $m))\n".repeat(instances.saturating_sub(1));
    format!(
        r#"(component
  (core module $m
    (memory (export "memory") 1)
    (func (export "describe") (result i32) unreachable)
    (func (export "call") (param i32) (result i32) unreachable)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) unreachable))
  (core instance $i (instantiate $m))
  {extra}
{GUEST_EXPORTS})"#
    )
}

#[test]
fn a_component_with_many_memories_does_not_load_and_takes_no_slots() {
    let fx = Fixture::new();
    for (name, memories) in [("one", 1), ("three", 3), ("many", 300)] {
        let dir = fx.folder(
            name,
            &format!("id = \"wat.{name}\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"c.wasm\"\n"),
        );
        std::fs::write(dir.join("c.wasm"), wat::parse_str(component_with_memories(memories)).unwrap()).unwrap();
    }
    fx.echo("echo-wasm", "wasm", "");
    let host = fx.host();
    // One memory: instantiated, then `describe` traps (the control case).
    let one = load_error(&host, "wat.one");
    assert!(one.to_string().contains("trapped"), "{one}");
    // Three memories, or 300 instances with a memory each: refused before any code runs.
    let three = load_error(&host, "wat.three");
    assert!(three.to_string().contains("3 Wasm linear memories"), "{three}");
    let many = load_error(&host, "wat.many");
    assert!(many.to_string().contains("300 core module instances"), "{many}");
    others_still_work(&host);
}

#[test]
fn one_plugin_cannot_take_every_instance_slot() {
    let fx = Fixture::new();
    fx.hostile("hostile", "");
    fx.echo("echo-wasm", "wasm", "");
    let host = std::sync::Arc::new(fx.host());
    let share = plexus_host::wasm::MAX_INSTANCES_PER_PLUGIN as usize;
    let start = |count: usize, timeout_ms: u64| -> Vec<_> {
        (0..count)
            .map(|_| {
                let host = host.clone();
                std::thread::spawn(move || host.call(HOSTILE, "sleep", json!({"ms": 30_000}), with_timeout(timeout_ms)))
            })
            .collect()
    };
    let holders = start(share, 2_500);
    std::thread::sleep(Duration::from_millis(500));
    // The hostile plugin holds its whole share: more of its calls wait for a
    // slot and fail as host capacity; the echo plugin still gets instances.
    let waiters = start(8, 500);
    for _ in 0..20 {
        others_still_work(&host);
    }
    for waiter in waiters {
        let result = waiter.join().unwrap();
        assert!(matches!(result, Err(CallError::Capacity { .. })), "{result:?}");
    }
    for holder in holders {
        let result = holder.join().unwrap();
        assert!(matches!(result, Err(CallError::Timeout { .. })), "{result:?}");
    }
    others_still_work(&host);
}

// ----- class 4: host services -----

#[test]
fn shared_state_is_bounded_per_execution() {
    let fx = Fixture::new();
    fx.hostile("hostile", "[limits]\nstate_bytes = 1048576\n");
    let host = fx.host();
    let options = CallOptions::default();
    let state = options.state.clone();
    let err = host.call(HOSTILE, "state_flood", json!({"bytes": 100_000, "times": 100}), options).unwrap_err();
    assert!(
        matches!(&err, CallError::ResourceLimit { message, .. } if message.contains("limits.state_bytes")),
        "{err}"
    );
    assert!(state.bytes() <= 1 << 20, "{} bytes kept", state.bytes());
    assert!(state.get("flood-9").is_some() && state.get("flood-99").is_none());
}

#[test]
fn log_volume_is_bounded_per_call_and_the_excess_counted() {
    let fx = Fixture::new();
    fx.hostile("hostile", "[limits]\nlog_bytes = 100000\n");
    let host = fx.host();
    let out =
        host.call(HOSTILE, "log_flood", json!({"bytes": 10_000, "times": 1_000}), CallOptions::default()).unwrap();
    let dropped = out.metrics.iter().find(|(name, _)| name == LOG_BYTES_DROPPED).map(|(_, v)| *v);
    assert_eq!(dropped, Some((10_000 * 1_000 - 100_000) as f64));
}

#[test]
fn open_handles_are_bounded_per_call() {
    let fx = Fixture::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), "x").unwrap();
    fx.hostile(
        "hostile",
        &format!("[limits]\nhandles = 64\n[permissions]\ndirs = [{}]\n", grant(data.path(), "/d", "read-only")),
    );
    fx.echo("echo-wasm", "wasm", "");
    let host = fx.host();
    let err = call(&host, "hold_files", json!({"path": "/d/f", "n": 20_000})).unwrap_err();
    assert!(matches!(&err, CallError::ResourceLimit { message, .. } if message.contains("limits.handles")), "{err}");
    assert_eq!(call(&host, "hold_files", json!({"path": "/d/f", "n": 20})).unwrap(), json!(20));
    others_still_work(&host);
}

// ----- class 5: limits without a ceiling -----

#[test]
fn limits_above_the_hosts_maximum_do_not_load_and_name_the_field() {
    let fx = Fixture::new();
    fx.hostile("hostile", "[limits]\ntimeout_ms = 18446744073709551615\n");
    fx.echo("echo-wasm", "wasm", "[limits]\noutput_bytes = 18446744073709551615\n");
    let host = fx.host();
    assert!(host.plugins().next().is_none());
    load_error(&host, "limits.timeout_ms must be 1..=86400000");
    load_error(&host, "limits.output_bytes must be");
}

// ----- class 9: network grants -----

#[test]
fn network_grants_allow_what_they_say_and_nothing_else() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let port = listener.local_addr().unwrap().port();
    let cases = [
        ("network = false", false),
        ("network = true", true),
        (&*format!("network = [\"127.0.0.1:{port}\"]"), true),
        (&*format!("network = [\"127.0.0.1:{}\"]", port.wrapping_add(1)), false),
        ("network = [\"localhost:*\"]", true),
    ];
    for (grant, allowed) in cases {
        let fx = Fixture::new();
        fx.hostile("hostile", &format!("[permissions]\n{grant}\n"));
        let host = fx.host();
        let result = call(&host, "tcp", json!({"addr": addr}));
        assert_eq!(result.is_ok(), allowed, "{grant}: {result:?}");
        if allowed {
            use std::io::BufRead;
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(stream).read_line(&mut line).unwrap();
            assert_eq!(line, "hello from a plugin\n");
        }
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fx = Fixture::new();
    fx.hostile("hostile", "[permissions]\nnetwork = true\n");
    let host = fx.host();
    call(&host, "udp", json!({"addr": udp.local_addr().unwrap().to_string()})).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello from a plugin");
}

#[test]
fn wasi_http_requests_go_where_the_network_grant_says_and_nowhere_else() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A one-line HTTP server on loopback that counts the connections it gets.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
        }
    });
    let by_ip = format!("http://127.0.0.1:{port}/x");
    let by_name = format!("http://localhost:{port}/x");
    let cases = [
        ("network = false", &by_ip, false),
        ("network = true", &by_ip, true),
        (&*format!("network = [\"127.0.0.1:{port}\"]"), &by_ip, true),
        (&*format!("network = [\"127.0.0.1:{}\"]", port.wrapping_add(1)), &by_ip, false),
        // Names are matched as written, never resolved to match an address.
        ("network = [\"localhost:*\"]", &by_ip, false),
        ("network = [\"localhost:*\"]", &by_name, true),
        (&*format!("network = [\"127.0.0.1:{port}\"]"), &by_name, false),
    ];
    for (grant, url, allowed) in cases {
        let fx = Fixture::new();
        fx.hostile("hostile", &format!("[permissions]\n{grant}\n"));
        let host = fx.host();
        let before = served.load(Ordering::SeqCst);
        let result = call(&host, "http_get", json!({"url": url}));
        if allowed {
            assert_eq!(result.unwrap(), json!({"status": 200, "body": "hello"}), "{grant} {url}");
            assert_eq!(served.load(Ordering::SeqCst), before + 1);
        } else {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("HttpRequestDenied"), "{grant} {url}: {err}");
            assert_eq!(served.load(Ordering::SeqCst), before, "{grant} {url}: a denied request connected");
        }
    }
}

// ----- the daemon beside a hostile plugin -----

#[test]
fn the_daemon_keeps_serving_and_finishes_good_work_beside_a_hostile_plugin() {
    use crate::daemon_support::{RunningDaemon, copy_plugin};
    let plugins = tempfile::tempdir().unwrap();
    copy_plugin("echo-native", plugins.path());
    copy_plugin("echo-wasm", plugins.path());
    let hostile = plugins.path().join("hostile");
    std::fs::create_dir_all(&hostile).unwrap();
    std::fs::write(
        hostile.join("plugin.toml"),
        format!(
            "id = \"plexus.hostile\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"{}\"\n[limits]\ntimeout_ms = 500\nstate_bytes = 1048576\nlog_bytes = 10000\n",
            crate::support::hostile_artifact().display()
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &["--workers", "8"]);
    let hostile_steps = "id: hostile
steps:
  - { id: sleep, plugin_id: plexus.hostile, method_name: sleep, parameters: { ms: 60000 } }
  - { id: flood, plugin_id: plexus.hostile, method_name: state_flood, parameters: { bytes: 100000, times: 100 } }
  - { id: log, plugin_id: plexus.hostile, method_name: log_flood, parameters: { bytes: 10000, times: 1000 } }
";
    let good = "id: good
steps:
  - { id: one, plugin_id: plexus.echo.native, method_name: echo, parameters: { n: 1 } }
  - { id: two, plugin_id: plexus.echo.wasm, method_name: echo, parameters: { n: 2 }, dependencies: [one] }
";
    let blocked = "id: blocked
timeout: 600s
steps:
  - { id: sleep, plugin_id: plexus.hostile, method_name: sleep, parameters: { ms: 600000 }, timeout: 600s }
";
    for workflow in [hostile_steps, good, blocked] {
        d.register(workflow);
    }
    let started = Instant::now();
    let bad: Vec<String> = (0..6).map(|_| d.start_execution("hostile")).collect();
    let good: Vec<String> = (0..6).map(|_| d.start_execution("good")).collect();
    let stuck = d.start_execution("blocked");
    for _ in 0..10 {
        d.health();
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in &good {
        assert_eq!(d.wait_for(id, Duration::from_secs(30)).status.status, WorkflowStatus::Completed);
    }
    for id in &bad {
        let end = d.wait_for(id, Duration::from_secs(30));
        assert_eq!(end.status.status, WorkflowStatus::Failed, "{end:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    // A cancel takes effect at once, even while the guest is blocked in WASI.
    d.eventually("the blocked step to start", Duration::from_secs(10), |d| {
        d.execution(&stuck).status.status == WorkflowStatus::Running
    });
    std::thread::sleep(Duration::from_millis(300));
    let cancelled_at = Instant::now();
    assert!(d.client().cancel(&stuck).unwrap().cancelling);
    assert_eq!(d.wait_for(&stuck, Duration::from_secs(10)).status.status, WorkflowStatus::Cancelled);
    assert!(cancelled_at.elapsed() < Duration::from_secs(2), "cancel took {:?}", cancelled_at.elapsed());
    assert_eq!(d.health().status, HealthStatus::Ok);
}

#[test]
fn a_native_plugin_slow_to_describe_itself_does_not_hold_up_loading() {
    let fx = Fixture::new();
    fx.echo("echo-native", "native", "[limits]\ntimeout_ms = 300\n");
    fx.echo("echo-wasm", "wasm", "");
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["plugins", "list", "--json", "--plugins-dir"])
        .arg(fx.plugins.path())
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .env("PLEXUS_ECHO_DESCRIBE_SLEEP_MS", "60000")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = list["plugins"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["plexus.echo.wasm"], "{list}");
    assert!(list["errors"].to_string().contains("describe did not return within 300 ms"), "{list}");
}

#[test]
fn async_code_on_a_multi_threaded_runtime_can_load_and_call_wasm_plugins() {
    let fx = Fixture::new();
    fx.hostile("hostile", "");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let host = fx.host();
        let started = Instant::now();
        let err = host.call(HOSTILE, "sleep", json!({"ms": 30_000}), with_timeout(200)).unwrap_err();
        assert!(matches!(err, CallError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_millis(300));
        let on_worker =
            tokio::spawn(async move { host.call(HOSTILE, "sleep", json!({"ms": 0}), CallOptions::default()) });
        assert_eq!(on_worker.await.unwrap().unwrap().output, json!(0));
    });
}
