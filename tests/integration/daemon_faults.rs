//! Daemon faults with real `plexus daemon` processes: a second daemon on the
//! same database, a read-only database, a database deleted under a running
//! daemon, SIGTERM while clients hold connections open (a half-sent
//! request, a long-poll), and lifecycle requests that race (concurrent
//! retries, cancelling a pending execution).

use crate::daemon::{lines, marks_fixture, marks_workflow, plugins_dir};
use crate::daemon_support::RunningDaemon;
use plexus_client::status::{StepStatus, WorkflowStatus};
use plexus_client::{HealthStatus, Transition};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Run a daemon that is expected to refuse to start; kill it if it does not
/// exit within 20 s.
fn refused_start(data: &std::path::Path, plugins: &std::path::Path) -> Output {
    let mut child =
        RunningDaemon::command(data, plugins, &[]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// SIGTERM, then wait up to `limit` for the exit (failing, not hanging, past it).
fn terminate_within(mut d: RunningDaemon, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &d.child.id().to_string()]).status().unwrap();
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        assert!(start.elapsed() < limit, "the daemon did not exit within {limit:?} of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_daemon_on_the_same_database_refuses_to_start() {
    let (plugins, data, marks) = marks_fixture();
    let first = RunningDaemon::start(data.path(), plugins.path(), &[]);
    first.register(&marks_workflow(&marks, 300));
    let id = first.start_execution("marks");
    first.eventually("s1 to start", Duration::from_secs(20), |_| !lines(&marks).is_empty());

    let second = refused_start(data.path(), plugins.path());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second daemon started:\n{stderr}");
    assert!(stderr.contains("in use by another daemon"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.child.id())), "names the holder: {stderr}");
    assert!(stderr.contains(&data.path().join("state.db").display().to_string()), "names the path: {stderr}");

    let done = first.wait_for(&id, Duration::from_secs(30));
    assert_eq!(done.status.status, WorkflowStatus::Completed, "{done:?}");
    assert_eq!(lines(&marks), ["s1", "s2", "s3", "s4", "s5"], "each step ran once");
}

#[cfg(unix)]
#[test]
fn a_read_only_database_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let plugins = plugins_dir(&["echo-native"]);
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("state.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = refused_start(data.path(), plugins.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("read-only") && stderr.contains("state.db"), "{stderr}");
}

#[test]
fn a_database_deleted_under_the_daemon_turns_health_degraded() {
    let plugins = plugins_dir(&["echo-native"]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    assert_eq!(d.health().status, HealthStatus::Ok);
    std::fs::remove_file(data.path().join("state.db")).unwrap();
    d.eventually("health to notice", Duration::from_secs(10), |d| d.health().status == HealthStatus::Degraded);
    let health = d.health();
    let reason = health.degraded.get("state_db").map(String::as_str).unwrap_or_default();
    assert!(reason.contains("deleted") && reason.contains("state.db"), "{health:?}");
}

#[test]
fn sigterm_exits_within_the_grace_period_whatever_clients_do() {
    let (plugins, data, marks) = marks_fixture();
    let d = RunningDaemon::start(data.path(), plugins.path(), &["--grace-period", "2s", "--workers", "4"]);
    d.register(&marks_workflow(&marks, 400));
    d.register("id: slow\nsteps:\n  - { id: nap, plugin_id: plexus.echo.native, method_name: sleep, parameters: { ms: 30000 } }\n");
    let id = d.start_execution("slow");
    d.eventually("the nap to start", Duration::from_secs(10), |d| {
        d.execution(&id).status.status == WorkflowStatus::Running
    });
    // A request whose body never comes, and one whose head never ends.
    let mut half_body = TcpStream::connect(&d.addr).unwrap();
    let head = format!(
        "POST /v1/workflows HTTP/1.1\r\nHost: plexus\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"source\": ",
        d.token
    );
    half_body.write_all(head.as_bytes()).unwrap();
    let mut half_head = TcpStream::connect(&d.addr).unwrap();
    half_head.write_all(b"GET /v1/health HTTP/1.1\r\nHost: pl").unwrap();
    // A long-poll on the execution that will not end before the grace does.
    let (addr, token, path) = (d.addr.clone(), d.token.clone(), format!("/v1/executions/{id}?wait_ms=60000"));
    let long_poll = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: plexus\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        (Instant::now(), response)
    });
    // A chain of steps in progress.
    d.start_execution("marks");
    d.eventually("s1 to start", Duration::from_secs(10), |_| !lines(&marks).is_empty());
    std::thread::sleep(Duration::from_millis(100));
    let started = lines(&marks).len();
    let signalled = Instant::now();
    let (status, exited) = terminate_within(d, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    assert!(exited < Duration::from_millis(3500), "exit took {exited:?} with a 2 s grace period");
    let (answered, response) = long_poll.join().unwrap();
    assert!(answered.duration_since(signalled) < Duration::from_secs(1), "the long-poll waited for the grace");
    assert!(response.starts_with("HTTP/1.1 200") && response.contains("\"running\""), "{response}");
    // No step started after the signal (one may have been starting as it came).
    let after = lines(&marks).len();
    assert!(after <= started + 1 && after < 5, "{started} steps had started, {after} after the stop");
    drop((half_body, half_head));
}

#[test]
fn concurrent_retries_accept_one_and_a_pending_cancel_is_immediate() {
    let plugins = plugins_dir(&["echo-native"]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &["--workers", "1"]);
    let nap = |id: &str, ms: u64| {
        format!(
            "id: {id}\nsteps:\n  - {{ id: nap, plugin_id: plexus.echo.native, method_name: sleep, parameters: {{ ms: {ms} }} }}\n"
        )
    };
    d.register(&nap("busy", 30000));
    d.register(&nap("queued", 0));
    let busy = d.start_execution("busy");
    d.eventually("the only worker to be busy", Duration::from_secs(10), |d| {
        d.execution(&busy).status.status == WorkflowStatus::Running
    });
    // Waiting for the worker: cancelled at once.
    let queued = d.start_execution("queued");
    assert_eq!(d.execution(&queued).status.status, WorkflowStatus::Pending);
    let asked = Instant::now();
    assert_eq!(d.call("POST", &format!("/v1/executions/{queued}/cancel"), None).0, 202);
    assert_eq!(d.wait_for(&queued, Duration::from_secs(10)).status.status, WorkflowStatus::Cancelled);
    assert!(asked.elapsed() < Duration::from_secs(2), "took {:?}", asked.elapsed());
    assert_eq!(d.execution(&busy).status.status, WorkflowStatus::Running);
    // Cancel the busy one; a second cancel is refused.
    assert_eq!(d.call("POST", &format!("/v1/executions/{busy}/cancel"), None).0, 202);
    assert_eq!(d.call("POST", &format!("/v1/executions/{busy}/cancel"), None).0, 409);
    assert_eq!(d.wait_for(&busy, Duration::from_secs(10)).status.status, WorkflowStatus::Cancelled);
    // Eight retries at once: one is accepted.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (d, barrier, path) = (&d, barrier.clone(), format!("/v1/executions/{queued}/retry"));
                scope.spawn(move || {
                    barrier.wait();
                    d.call("POST", &path, None).0
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|&&c| c == 202).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|&c| c == 202 || c == 409), "{codes:?}");
    let done = d.wait_for(&queued, Duration::from_secs(10));
    assert_eq!((done.status.status, done.meta.runs), (WorkflowStatus::Completed, 2), "{done:?}");
    let logs = d.client().logs(&queued, 0, None).unwrap();
    let started = logs
        .events
        .iter()
        .filter(|e| e.step_id.as_deref() == Some("nap") && e.transition == Transition::Step(StepStatus::Running));
    assert_eq!(started.count(), 1, "the step ran once: {logs:?}");
}
