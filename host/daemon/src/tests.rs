//! Daemon tests against an in-process plugin: resume after a crash, retry
//! from the failed steps, state faults (failing writes, a deleted database,
//! concurrent retries, cancelling a pending execution, stale gauges), and
//! schedules on a mock clock (intervals, overlap, catch-up after downtime,
//! cron across DST in two time zones, scheduler lag behind a queue).

use super::core::Daemon;
use super::metrics::Metrics;
use super::schedule::ScheduleSpec;
use super::schedules::Schedules;
use super::store::{ExecutionMeta, PgStore, SqliteStore, Store};
use chrono::{DateTime, Utc};
use plexus_client::Transition;
use plexus_host::HostBuilder;
use plexus_sdk::{Context, Operations, Plugin, PluginError, PluginInfo};
use plexus_workflow::status::{ExecutionStatus, StepRecord, StepStatus, WorkflowStatus};
use plexus_workflow::{Clock, MockClock, SystemClock};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How many times each tag ran, and which tags fail.
static RUNS: LazyLock<Mutex<HashMap<String, u32>>> = LazyLock::new(Default::default);
static FAILING: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);
/// The task id and schedule state each tag saw last.
static SEEN: LazyLock<Mutex<HashMap<String, Value>>> = LazyLock::new(Default::default);

fn runs(tag: &str) -> u32 {
    RUNS.lock().unwrap().get(tag).copied().unwrap_or(0)
}

#[derive(Default)]
struct DaemonOps;

#[derive(Deserialize, JsonSchema)]
struct Tick {
    tag: String,
    #[serde(default)]
    ms: u64,
    /// Overwrite the shared-state copy of the schedule first (which older
    /// plugins read): the execution context's must not change.
    #[serde(default)]
    forge: bool,
}

impl Plugin for DaemonOps {
    fn info() -> PluginInfo {
        PluginInfo::new("dtest.ops", "Daemon test operations", "1.0.0")
            .capabilities([plexus_sdk::capability::WORKFLOW_STEP, plexus_sdk::capability::SCHEDULED_TASK])
    }
    fn operations(ops: &mut Operations<Self>) {
        ops.add("put", "Writes artifact `name` holding `text`", |_, ctx: &mut Context<'_>, p: Value| {
            use std::io::Write;
            let mut out = ctx.create_artifact(p["name"].as_str().unwrap_or("x"), None)?;
            out.write_all(p["text"].as_str().unwrap_or_default().as_bytes())
                .map_err(|e| PluginError::failed(e.to_string()))?;
            out.finish()
        });
        ops.add("get", "Reads the artifact `artifact` names as text", |_, ctx: &mut Context<'_>, p: Value| {
            use std::io::Read;
            let reference = plexus_sdk::ArtifactRef::from_value(&p["artifact"])
                .ok_or_else(|| PluginError::invalid_input("`artifact` is not a reference"))?;
            let mut text = String::new();
            ctx.open_artifact(&reference)?.read_to_string(&mut text).map_err(|e| PluginError::failed(e.to_string()))?;
            Ok::<_, PluginError>(text)
        });
        ops.add(
            "tick",
            "Counts a run of `tag`, sleeps `ms`, fails while `tag` is failing",
            |_, ctx: &mut Context<'_>, p: Tick| {
                *RUNS.lock().unwrap().entry(p.tag.clone()).or_default() += 1;
                if p.forge {
                    ctx.state_set(
                        plexus_sdk::SCHEDULE_STATE_KEY,
                        json!({"id": "op", "fire_time_ms": 0, "fire_time": "forged"}),
                    );
                }
                let seen =
                    json!({"task_id": ctx.execution().task_id, "schedule": ctx.schedule(), "attempt": ctx.attempt()});
                SEEN.lock().unwrap().insert(p.tag.clone(), seen);
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(p.ms) && !ctx.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                if FAILING.lock().unwrap().contains(&p.tag) {
                    return Err(PluginError::failed(format!("{} is failing", p.tag)));
                }
                Ok(json!({"tag": p.tag}))
            },
        )
        .add(
            "report",
            "Reports progress, waits for RELEASED, reports a metric",
            |_, ctx: &mut Context<'_>, _: Value| {
                ctx.progress(0.5, "half");
                let start = Instant::now();
                while !RELEASED.load(std::sync::atomic::Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                ctx.metric("rows", 7.0);
                Ok(json!("reported"))
            },
        )
        .add("stubborn", "Sleeps `ms`, ignoring cancellation", |_, _, p: Tick| {
            std::thread::sleep(Duration::from_millis(p.ms));
            Ok(json!({"tag": p.tag}))
        });
    }
}

/// Lets `report` return.
static RELEASED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct Fixture {
    daemon: Daemon,
    /// The daemon's store, for the test hooks and direct reads.
    store: TestStore,
    _dir: tempfile::TempDir,
}

/// The store the suite runs on: SQLite, or PostgreSQL (a throw-away server,
/// a fresh database per test) when `PLEXUS_TEST_STORE=postgres` —
/// `scripts/test.sh` runs the suite both ways.
#[derive(Clone)]
enum TestStore {
    Sqlite(SqliteStore),
    /// The store and its database's URL.
    Postgres(PgStore, String),
}

impl TestStore {
    /// A new store in `dir` (SQLite) or in a new database (PostgreSQL).
    fn new(dir: &std::path::Path) -> Self {
        if std::env::var("PLEXUS_TEST_STORE").as_deref() == Ok("postgres") {
            let url = crate::testing::server().and_then(|s| s.database()).unwrap();
            let connect = PgStore::connect(&url);
            let store = tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(connect));
            return Self::Postgres(store.unwrap(), url);
        }
        Self::Sqlite(SqliteStore::open(&dir.join("state.db")).unwrap())
    }

    /// Every byte the database holds: SQLite's files in `dir` (the database,
    /// its WAL), or `pg_dump`'s dump of the PostgreSQL database.
    fn raw_bytes(&self, dir: &std::path::Path) -> Vec<u8> {
        match self {
            Self::Sqlite(_) => std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("state.db"))
                .flat_map(|e| std::fs::read(e.path()).unwrap_or_default())
                .collect(),
            Self::Postgres(_, url) => {
                let bin = crate::testing::bin_dir().unwrap();
                let out = std::process::Command::new(bin.join("pg_dump")).arg(url).output().unwrap();
                assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
                out.stdout
            }
        }
    }

    fn arc(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Postgres(s, _) => Arc::new(s.clone()),
        }
    }

    fn fail_writes(&self, fail: bool) {
        match self {
            Self::Sqlite(s) => s.fail_writes(fail),
            Self::Postgres(s, _) => s.fail_writes(fail),
        }
    }

    /// The SQLite store, for the tests of its file (the lock, a deleted or
    /// damaged file); `None` on PostgreSQL, which has no file.
    fn sqlite(&self) -> Option<&SqliteStore> {
        match self {
            Self::Sqlite(s) => Some(s),
            Self::Postgres(..) => None,
        }
    }
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            Self::Sqlite(s) => s,
            Self::Postgres(s, _) => s,
        }
    }
}

fn fixture(clock: Arc<dyn Clock>) -> Fixture {
    fixture_with_workers(clock, 4)
}

fn fixture_with_workers(clock: Arc<dyn Clock>, workers: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new(dir.path());
    let host = HostBuilder::new()
        .no_cache()
        .in_process::<DaemonOps>(Value::Null)
        .in_process::<StepOnly>(Value::Null)
        .build()
        .unwrap();
    let daemon = Daemon::new(store.arc(), host, clock, tokio::runtime::Handle::current(), workers, Metrics::default());
    Fixture { daemon, store, _dir: dir }
}

/// A new daemon on `store` (as after a restart), with the `dtest.ops` plugin.
fn restarted(store: &TestStore) -> Daemon {
    Daemon::new(
        store.arc(),
        HostBuilder::new().no_cache().in_process::<DaemonOps>(Value::Null).build().unwrap(),
        Arc::new(SystemClock),
        tokio::runtime::Handle::current(),
        4,
        Metrics::default(),
    )
}

/// A chain of `tick` steps `<prefix>-a` → `-b` → `-c`, with retries.
fn chain(id: &str, prefix: &str, ms: u64) -> String {
    format!(
        "id: {id}\nsteps:\n  - {{id: a, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: {prefix}-a, ms: {ms}}}}}\n  - {{id: b, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: {prefix}-b, ms: {ms}}}, dependencies: [a], retry: {{max_attempts: 2, initial_delay: 1ms}}}}\n  - {{id: c, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: {prefix}-c, ms: {ms}}}, dependencies: [b]}}\n"
    )
}

async fn wait_done(daemon: &Daemon, id: &str) -> ExecutionStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = daemon.status(id).await.unwrap();
        if status.status.is_terminal() && daemon.live(id).is_none() {
            return status;
        }
        assert!(Instant::now() < deadline, "execution {id} did not end: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn record(id: &str, status: StepStatus, attempts: u32) -> StepRecord {
    StepRecord {
        id: id.into(),
        plugin_id: "dtest.ops".into(),
        operation: "tick".into(),
        status,
        output: (status == StepStatus::Completed).then(|| json!({"tag": id})),
        error: None,
        reason: None,
        attempts,
        started_at_ms: (attempts > 0).then_some(1),
        ended_at_ms: None,
        duration_ms: None,
        metrics: Default::default(),
        progress: None,
        usage: None,
        artifacts: Default::default(),
    }
}

/// Write what a daemon that crashed mid-step would have left: `a` completed,
/// `b` running (attempt `b_attempts`), `c` pending.
async fn crashed_execution(store: &TestStore, workflow: &str, b_attempts: u32) -> String {
    let id = plexus_host::new_execution_id();
    let steps = vec![
        record("a", StepStatus::Completed, 1),
        record("b", StepStatus::Running, b_attempts),
        record("c", StepStatus::Pending, 0),
    ];
    let status = ExecutionStatus {
        execution_id: id.clone(),
        workflow_id: workflow.into(),
        status: WorkflowStatus::Running,
        progress: 0.0,
        current_steps: vec![],
        current_step: None,
        completed_steps: 0,
        total_steps: 3,
        inputs: Map::new(),
        steps,
        compensations: vec![],
        outputs: Map::new(),
        error: None,
        started_at_ms: Some(1),
        ended_at_ms: None,
    };
    let meta = ExecutionMeta { workflow_version: 1, created_at_ms: 1, runs: 1, ..Default::default() };
    store.insert_execution(&status, &meta, &Map::new()).await.unwrap();
    store.update_execution(&status).await.unwrap();
    for (i, step) in status.steps.iter().enumerate() {
        store.update_step(&id, i, step, None).await.unwrap();
    }
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_runs_only_the_steps_that_had_not_completed() {
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&chain("resume", "rs", 0)).await.unwrap();
    let id = crashed_execution(&f.store, "resume", 1).await;
    assert_eq!(f.daemon.resume_unfinished().await.unwrap(), 1);
    let status = wait_done(&f.daemon, &id).await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:?}");
    assert_eq!((runs("rs-a"), runs("rs-b"), runs("rs-c")), (0, 1, 1), "a completed before the crash");
    let b = status.step("b").unwrap();
    assert_eq!(b.attempts, 2, "the interrupted attempt counts: b is retried per its policy");
    assert_eq!(SEEN.lock().unwrap()["rs-b"]["attempt"], json!(2));
    // Nothing recorded before the crash is lost: the log has the old and the new transitions.
    let (_, log) = f.daemon.logs(&id, 0, 1000).await.unwrap();
    let b_events: Vec<(u32, Transition)> = log
        .iter()
        .filter(|e| e.step_id.as_deref() == Some("b"))
        .map(|e| (e.attempt.unwrap_or(0), e.transition))
        .collect();
    let step = Transition::Step;
    assert_eq!(
        b_events,
        [(1, step(StepStatus::Running)), (2, step(StepStatus::Running)), (2, step(StepStatus::Completed))]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_steps_progress_shows_while_it_runs_and_its_metrics_are_recorded() {
    let fx = fixture(Arc::new(SystemClock));
    let wf = "id: reporting\nsteps:\n  - {id: a, plugin_id: dtest.ops, method_name: report}\n";
    fx.daemon.register_workflow(wf).await.unwrap();
    let exec = fx.daemon.start("reporting", Map::new(), crate::Origin::default()).await.unwrap();
    let id = exec.id().to_owned();
    // Live: the daemon's status of the running execution carries the report.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = fx.daemon.status(&id).await.unwrap();
        if let Some(p) = &status.steps[0].progress {
            assert_eq!((p.fraction, p.message.as_str()), (0.5, "half"));
            assert_eq!(status.steps[0].status, StepStatus::Running);
            break;
        }
        assert!(Instant::now() < deadline, "no progress shown: {status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    RELEASED.store(true, std::sync::atomic::Ordering::SeqCst);
    // Ended, and read back from the store: the metrics and the last report were recorded.
    let done = wait_done(&fx.daemon, &id).await;
    assert_eq!(done.status, WorkflowStatus::Completed);
    let stored = fx.store.execution(&id).await.unwrap().unwrap().status;
    assert_eq!(stored.steps[0].metrics.get("rows"), Some(&7.0));
    assert_eq!(stored.steps[0].progress.as_ref().map(|p| p.message.as_str()), Some("half"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_last_attempt_fails_the_step() {
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&chain("last", "la", 0)).await.unwrap();
    let id = crashed_execution(&f.store, "last", 2).await;
    f.daemon.resume_unfinished().await.unwrap();
    let status = wait_done(&f.daemon, &id).await;
    assert_eq!(status.status, WorkflowStatus::Failed);
    let b = status.step("b").unwrap();
    assert_eq!((b.status, b.attempts), (StepStatus::Failed, 2));
    assert!(b.error.as_ref().unwrap().message.contains("stopped during the last attempt"), "{b:?}");
    assert_eq!(runs("la-b"), 0);
    assert_eq!(status.step("c").unwrap().status, StepStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_runs_the_failed_steps_and_keeps_the_completed_ones() {
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&chain("retry", "rt", 0)).await.unwrap();
    FAILING.lock().unwrap().insert("rt-b".into());
    let exec = f.daemon.start("retry", Map::new(), Default::default()).await.unwrap();
    let id = exec.id().to_owned();
    let failed = wait_done(&f.daemon, &id).await;
    assert_eq!(failed.status, WorkflowStatus::Failed);
    assert_eq!((runs("rt-a"), runs("rt-b"), runs("rt-c")), (1, 1, 0), "a plugin failure is not retryable");
    // Only a finished, not completed, execution can be retried.
    FAILING.lock().unwrap().remove("rt-b");
    f.daemon.retry(&id).await.unwrap();
    let done = wait_done(&f.daemon, &id).await;
    assert_eq!(done.status, WorkflowStatus::Completed, "{done:?}");
    assert_eq!((runs("rt-a"), runs("rt-b"), runs("rt-c")), (1, 2, 1), "a is not run again");
    assert_eq!(done.step("b").unwrap().attempts, 1, "attempts start over");
    let err = f.daemon.retry(&id).await.unwrap_err();
    assert_eq!(err.code, super::ErrorCode::InvalidState);
    let (_, meta) = f.daemon.status(&id).await.unwrap();
    assert_eq!(meta.runs, 2);
}

// ----- schedules on a mock clock -----

fn at(s: &str) -> SystemTime {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc).into()
}

fn spec(value: Value) -> ScheduleSpec {
    serde_json::from_value(value).unwrap()
}

/// Fire times (RFC 3339) of `schedule` with `outcome`, oldest first.
async fn fires(s: &Schedules, schedule: &str, outcome: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .history(schedule, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.outcome.as_str() == outcome)
        .map(|f| DateTime::from_timestamp_millis(f.fire_time_ms as i64).unwrap().to_rfc3339())
        .collect();
    v.reverse();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn interval_schedule_fires_on_mock_time_with_its_context() {
    let clock = MockClock::new(at("2026-06-01T12:00:00Z"));
    let f = fixture(Arc::new(clock.clone()));
    let s = Schedules::new(f.daemon.clone());
    s.create(spec(
        json!({"id": "op", "when": "every 1m", "plugin": "dtest.ops", "operation": "tick", "params": {"tag": "iv", "forge": true}}),
    ))
    .await
    .unwrap();
    assert!(s.tick().await.unwrap().is_empty(), "nothing is due at creation");
    assert_eq!(s.get("op").await.unwrap().next_fire.as_deref(), Some("2026-06-01T12:01:00+00:00"));
    clock.advance(Duration::from_secs(61));
    let started = s.tick().await.unwrap();
    assert_eq!(started.len(), 1);
    let status = wait_done(&f.daemon, &started[0]).await;
    assert_eq!(status.status, WorkflowStatus::Completed);
    let seen = SEEN.lock().unwrap()["iv"].clone();
    assert_eq!(seen["task_id"], json!("op"));
    assert_eq!(seen["schedule"]["id"], json!("op"));
    assert_eq!(seen["schedule"]["fire_time"], json!("2026-06-01T12:01:00+00:00"));
    assert_eq!(
        seen["schedule"]["fire_time_ms"],
        json!(at("2026-06-01T12:01:00Z").duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64)
    );
    let (_, meta) = f.daemon.status(&started[0]).await.unwrap();
    assert_eq!(meta.schedule_id.as_deref(), Some("op"));
    assert!(s.tick().await.unwrap().is_empty(), "a fire is handled once");
    // Paused: no fires; resumed: the paused time is not caught up.
    s.pause("op").await.unwrap();
    clock.advance(Duration::from_secs(600));
    assert!(s.tick().await.unwrap().is_empty());
    s.resume("op").await.unwrap();
    assert!(s.tick().await.unwrap().is_empty());
    clock.advance(Duration::from_secs(60));
    let again = s.tick().await.unwrap();
    assert_eq!(again.len(), 1);
    wait_done(&f.daemon, &again[0]).await;
    assert_eq!(runs("iv"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn overlap_policies_skip_or_queue_one() {
    let clock = MockClock::new(at("2026-06-01T12:00:00Z"));
    let f = fixture(Arc::new(clock.clone()));
    let s = Schedules::new(f.daemon.clone());
    f.daemon.register_workflow(&chain("slow", "ov", 150)).await.unwrap();
    s.create(spec(json!({"id": "skip", "when": "every 1m", "workflow": "slow", "overlap": "skip"}))).await.unwrap();
    s.create(spec(json!({"id": "queue", "when": "every 1m", "workflow": "slow", "overlap": "queue_one"})))
        .await
        .unwrap();
    for _ in 0..3 {
        clock.advance(Duration::from_secs(60));
        s.tick().await.unwrap();
    }
    // First fire started; the second and third found it running.
    assert_eq!(fires(&s, "skip", "started").await.len(), 1);
    assert_eq!(fires(&s, "skip", "skipped").await, ["2026-06-01T12:02:00+00:00", "2026-06-01T12:03:00+00:00"]);
    assert_eq!(fires(&s, "queue", "queued").await, ["2026-06-01T12:02:00+00:00"]);
    assert_eq!(fires(&s, "queue", "skipped").await, ["2026-06-01T12:03:00+00:00"]);
    // When the running one ends, the queued fire starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fires(&s, "queue", "started").await.len() < 2 {
        assert!(Instant::now() < deadline, "the queued fire never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fires(&s, "queue", "started").await, ["2026-06-01T12:01:00+00:00", "2026-06-01T12:02:00+00:00"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_after_a_simulated_downtime() {
    let clock = MockClock::new(at("2026-06-01T00:00:00Z"));
    let f = fixture(Arc::new(clock.clone()));
    let s = Schedules::new(f.daemon.clone());
    let op = |id: &str, catch_up: &str| {
        json!({"id": id, "when": "cron 0 * * * *", "plugin": "dtest.ops", "operation": "tick",
               "params": {"tag": id}, "catch_up": catch_up, "catch_up_window": "3h", "overlap": "allow"})
    };
    for (id, policy) in [("all", "run_all"), ("once", "run_once"), ("none", "skip")] {
        s.create(spec(op(id, policy))).await.unwrap();
    }
    clock.advance(Duration::from_secs(3600));
    assert_eq!(s.tick().await.unwrap().len(), 3, "01:00 fires on time for all three");
    // Down from 01:00 to 06:10: fires 02:00–06:00 were missed; the window reaches back to 03:10.
    clock.advance(Duration::from_secs(5 * 3600 + 600));
    s.tick().await.unwrap();
    assert_eq!(
        fires(&s, "all", "started").await[1..],
        ["2026-06-01T04:00:00+00:00", "2026-06-01T05:00:00+00:00", "2026-06-01T06:00:00+00:00"]
    );
    assert_eq!(fires(&s, "once", "started").await[1..], ["2026-06-01T06:00:00+00:00"]);
    assert_eq!(fires(&s, "none", "started").await.len(), 1);
    assert!(!fires(&s, "none", "skipped").await.is_empty());
    assert!(s.tick().await.unwrap().is_empty(), "caught up once");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_all_catch_up_runs_one_after_another_despite_overlap_skip() {
    let clock = MockClock::new(at("2026-06-01T00:00:00Z"));
    let f = fixture(Arc::new(clock.clone()));
    let s = Schedules::new(f.daemon.clone());
    // Default overlap (skip): the catch-up fires must not skip each other.
    s.create(spec(json!({"id": "seq", "when": "cron 0 * * * *", "plugin": "dtest.ops", "operation": "tick",
                          "params": {"tag": "seq", "ms": 60}, "catch_up": "run_all", "catch_up_window": "3h"})))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3600));
    wait_done(&f.daemon, &s.tick().await.unwrap()[0]).await;
    // Down from 01:00 to 06:10: 04:00, 05:00 and 06:00 are within the window.
    clock.advance(Duration::from_secs(5 * 3600 + 600));
    assert_eq!(s.tick().await.unwrap().len(), 1, "one at a time");
    assert_eq!(fires(&s, "seq", "queued").await, ["2026-06-01T05:00:00+00:00", "2026-06-01T06:00:00+00:00"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fires(&s, "seq", "started").await.len() < 4 {
        assert!(f.daemon.running_for_schedule("seq").await <= 1, "catch-up runs overlapped");
        assert!(Instant::now() < deadline, "the catch-up did not finish: {:?}", fires(&s, "seq", "started").await);
        s.tick().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        fires(&s, "seq", "started").await[1..],
        ["2026-06-01T04:00:00+00:00", "2026-06-01T05:00:00+00:00", "2026-06-01T06:00:00+00:00"]
    );
    assert!(
        fires(&s, "seq", "skipped").await.iter().all(|t| t.as_str() < "2026-06-01T04:00:00"),
        "{:?}",
        fires(&s, "seq", "skipped").await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_refuse_past_at_times_and_overlong_intervals() {
    let clock = MockClock::new(at("2026-06-01T00:00:00Z"));
    let f = fixture(Arc::new(clock.clone()));
    let s = Schedules::new(f.daemon.clone());
    let op = |id: &str, when: &str| json!({"id": id, "when": when, "plugin": "dtest.ops", "operation": "tick", "params": {"tag": id}});
    let past = s.create(spec(op("past", "at 2026-05-31T23:59:59Z"))).await.unwrap_err().to_string();
    assert!(past.contains("not in the future"), "{past}");
    s.create(spec(op("future", "at 2026-06-01T00:00:01Z"))).await.unwrap();
    let long = s.create(spec(op("long", "every 300000years"))).await.unwrap_err().to_string();
    assert!(long.contains("too long"), "{long}");
    // The longest interval is accepted, and ticking it far in the future does not panic.
    s.create(spec(op("century", "every 100y"))).await.unwrap();
    clock.advance(Duration::from_secs(200 * 31_557_600));
    s.tick().await.unwrap();
    assert!(s.list().await.unwrap().iter().any(|v| v.spec.id == "century"));
    let bad_id = s.create(spec(op("no/slash", "every 1m"))).await.unwrap_err().to_string();
    assert!(bad_id.contains("schedule id"), "{bad_id}");
    // A row an older version saved without the bounds: logged and left out, never a panic.
    let old = json!({"id": "old", "when": "every 300000years", "workflow": "w"});
    f.store.insert_schedule("old", &old, true, 0).await.unwrap();
    s.tick().await.unwrap();
    assert!(s.list().await.unwrap().iter().all(|v| v.spec.id != "old"));
    assert!(s.get("old").await.unwrap_err().to_string().contains("too long"));
    s.delete("old").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_in_two_time_zones_across_dst_on_the_mock_clock() {
    let clock = MockClock::new(at("2026-03-28T22:00:00Z"));
    let f = fixture(Arc::new(clock.clone()));
    let s = Schedules::new(f.daemon.clone());
    let sched = |id: &str, when: &str, tz: &str| json!({"id": id, "when": when, "timezone": tz, "plugin": "dtest.ops", "operation": "tick", "params": {"tag": id}});
    // 02:30 Berlin does not exist on 2026-03-29 (clocks jump 02:00 → 03:00).
    s.create(spec(sched("berlin", "cron 30 2 * * *", "Europe/Berlin"))).await.unwrap();
    // 01:30 New York happens twice on 2026-11-01 (clocks fall back 02:00 → 01:00).
    s.create(spec(sched("newyork", "cron 30 1 * * *", "America/New_York"))).await.unwrap();
    let tick_through = async |until: &str| {
        while clock.now() < at(until) {
            clock.advance(Duration::from_secs(60));
            s.tick().await.unwrap();
        }
    };
    tick_through("2026-03-29T04:00:00Z").await;
    assert_eq!(fires(&s, "berlin", "started").await, ["2026-03-29T01:00:00+00:00"], "once, right after the gap");
    clock.advance(at("2026-11-01T04:00:00Z").duration_since(clock.now()).unwrap());
    s.tick().await.unwrap(); // the months between are missed and skipped by run_once
    tick_through("2026-11-01T08:00:00Z").await;
    let ny: Vec<String> =
        fires(&s, "newyork", "started").await.into_iter().filter(|t| t.starts_with("2026-11-01")).collect();
    assert_eq!(ny, ["2026-11-01T05:30:00+00:00"], "once, at the first 01:30 (EDT)");
}

/// `GET path` with the bearer token `t`, over a raw HTTP/1.1 connection: (status line, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_native_call_shows_in_health_and_metrics() {
    let f = fixture(Arc::new(SystemClock));
    let source = "id: stuck\nsteps:\n  - {id: s, plugin_id: dtest.ops, method_name: stubborn, \
                  parameters: {tag: stuck, ms: 1500}, timeout: 50ms}\n";
    f.daemon.register_workflow(source).await.unwrap();
    let exec = f.daemon.start("stuck", Map::new(), super::core::Origin::default()).await.unwrap();
    let status = wait_done(&f.daemon, exec.id()).await;
    assert_eq!(status.status, WorkflowStatus::Failed);
    let app =
        super::api::router(super::api::ApiState::new(f.daemon.clone(), Schedules::new(f.daemon.clone()), "t"), 1 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (_, health) = http_get(addr, "/v1/health").await;
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["degraded"]["native_calls"].as_str().unwrap().contains("dtest.ops: "), "{health}");
    let (status_line, metrics) = http_get(addr, "/metrics").await;
    assert!(status_line.contains("200"), "{status_line}");
    let abandoned = metrics
        .lines()
        .find(|l| l.starts_with(r#"plexus_abandoned_calls_total{plugin="dtest.ops"}"#))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(!abandoned.ends_with(" 0"), "{abandoned}");
    assert!(metrics.contains(r#"plexus_health_degraded{component="native_calls"} 1"#), "{metrics}");
    openmetrics_parser::openmetrics::parse_openmetrics(&metrics).unwrap();
    // When the thread returns, health recovers (unless another test left one running).
    let deadline = Instant::now() + Duration::from_secs(10);
    while plexus_host::runtime::abandoned_calls()["dtest.ops"].0 > 0 {
        assert!(Instant::now() < deadline, "the abandoned call never returned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, health) = http_get(addr, "/v1/health").await;
    assert!(!health.contains("dtest.ops: "), "{health}");
}

// ----- state faults -----

/// Poll `check` every 10 ms for up to 20 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_writes_hold_executions_until_they_work_again() {
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&chain("full", "fd", 600)).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(f.daemon.start("full", Map::new(), Default::default()).await.unwrap().id().to_owned());
    }
    until("every `a` to start", || runs("fd-a") == 3).await;
    // The disk fills while the three `a` steps run.
    f.store.fail_writes(true);
    until("health to turn degraded", || f.daemon.health().reasons().contains_key("state_db")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runs("fd-b"), 0, "no step starts while its start cannot be recorded");
    let reason = &f.daemon.health().reasons()["state_db"];
    assert!(reason.contains("disk is full"), "{reason}");
    for id in &ids {
        let exec = f.daemon.live(id).expect("a held execution stays live");
        assert!(exec.is_held());
        assert_eq!(exec.snapshot().step("a").unwrap().status, StepStatus::Completed, "what ran is kept");
    }
    // Space is freed: the executions are recorded again and go on.
    f.store.fail_writes(false);
    for id in &ids {
        let done = wait_done(&f.daemon, id).await;
        assert_eq!(done.status, WorkflowStatus::Completed, "{done:?}");
        let stored = f.store.execution(id).await.unwrap().unwrap();
        assert_eq!(stored.status.status, WorkflowStatus::Completed);
        assert!(stored.status.steps.iter().all(|s| s.status == StepStatus::Completed && s.attempts == 1));
    }
    assert_eq!((runs("fd-a"), runs("fd-b"), runs("fd-c")), (3, 3, 3), "no step ran twice");
    assert!(f.store.unfinished_executions().await.unwrap().is_empty(), "nothing left to resume");
    until("health to recover", || !f.daemon.health().is_degraded()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_database_is_noticed() {
    let f = fixture(Arc::new(SystemClock));
    f.daemon.maintain().await;
    assert!(!f.daemon.health().is_degraded());
    let Some(sqlite) = f.store.sqlite() else { return }; // PostgreSQL has no file
    std::fs::remove_file(sqlite.path()).unwrap();
    f.daemon.maintain().await;
    let reason = f.daemon.health().reasons().get("state_db").cloned().unwrap_or_default();
    assert!(reason.contains("deleted") && reason.contains("state.db"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_store_on_the_same_database_is_refused() {
    let f = fixture(Arc::new(SystemClock));
    let Some(sqlite) = f.store.sqlite() else { return }; // PostgreSQL has no file
    let err = match SqliteStore::open(sqlite.path()) {
        Ok(_) => panic!("a second store opened the database"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("in use by another daemon") && err.contains(&format!("pid {}", std::process::id())), "{err}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_is_a_start_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let err = SqliteStore::open(&path).err().expect("a read-only database is refused").to_string();
    assert!(err.contains("read-only") && err.contains("state.db"), "{err}");
}

#[test]
fn a_damaged_database_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for i in 0..200 {
            store.put_workflow(&format!("w{i}"), &"x".repeat(500), plexus_client::SourceFormat::Yaml).unwrap();
        }
    }
    // Scribble over the middle of the file (the header stays valid).
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "{}", bytes.len());
    bytes[8 * 4096..12 * 4096].fill(0x5a);
    std::fs::write(&path, bytes).unwrap();
    let err = SqliteStore::open(&path).err().expect("a damaged database is refused").to_string();
    assert!(err.contains("state.db") && (err.contains("quick_check") || err.contains("malformed")), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_whose_caller_stops_waiting_still_runs_what_it_recorded() {
    // An HTTP client that hangs up drops its handler's future wherever it
    // stands: here, after its first poll. Whatever was recorded must run.
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&chain("dropped", "dr", 0)).await.unwrap();
    for _ in 0..20 {
        let mut start = Box::pin(f.daemon.start("dropped", Map::new(), Default::default()));
        let _ = std::future::poll_fn(|cx| std::task::Poll::Ready(start.as_mut().poll(cx).is_ready())).await;
        drop(start);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = f.daemon.executions(&Default::default()).await.unwrap();
        let ended = listed.iter().filter(|e| e.status.is_terminal()).count();
        // Begun, a start runs to its end: all twenty are recorded, and run.
        if listed.len() == 20 && ended == 20 && listed.iter().all(|e| f.daemon.live(&e.execution_id).is_none()) {
            assert!(listed.iter().all(|e| e.status == WorkflowStatus::Completed), "{listed:?}");
            break;
        }
        assert!(Instant::now() < deadline, "recorded but never run: {listed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_retries_accept_one() {
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&chain("twice", "tw", 0)).await.unwrap();
    FAILING.lock().unwrap().insert("tw-b".into());
    let id = f.daemon.start("twice", Map::new(), Default::default()).await.unwrap().id().to_owned();
    assert_eq!(wait_done(&f.daemon, &id).await.status, WorkflowStatus::Failed);
    FAILING.lock().unwrap().remove("tw-b");
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (daemon, barrier, id) = (f.daemon.clone(), barrier.clone(), id.clone());
            let runtime = tokio::runtime::Handle::current();
            std::thread::spawn(move || {
                barrier.wait();
                runtime.block_on(daemon.retry(&id))
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e.code == super::ErrorCode::InvalidState));
    assert_eq!(wait_done(&f.daemon, &id).await.status, WorkflowStatus::Completed);
    assert_eq!((runs("tw-a"), runs("tw-b"), runs("tw-c")), (1, 2, 1), "b ran once more, c once");
    assert_eq!(f.daemon.status(&id).await.unwrap().1.runs, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_pending_execution_takes_effect_at_once() {
    let f = fixture_with_workers(Arc::new(SystemClock), 1);
    let one = |id: &str, tag: &str, ms: u64| {
        format!(
            "id: {id}\nsteps:\n  - {{id: a, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: {tag}, ms: {ms}}}}}\n"
        )
    };
    f.daemon.register_workflow(&one("busy", "pc-busy", 5000)).await.unwrap();
    f.daemon.register_workflow(&one("queued", "pc-queued", 0)).await.unwrap();
    let busy = f.daemon.start("busy", Map::new(), Default::default()).await.unwrap().id().to_owned();
    until("the only worker to be busy", || runs("pc-busy") == 1).await;
    let queued = f.daemon.start("queued", Map::new(), Default::default()).await.unwrap().id().to_owned();
    let asked = Instant::now();
    f.daemon.cancel(&queued).await.unwrap();
    let done = wait_done(&f.daemon, &queued).await;
    assert!(asked.elapsed() < Duration::from_secs(2), "took {:?}", asked.elapsed());
    assert_eq!(done.status, WorkflowStatus::Cancelled);
    assert_eq!(done.step("a").unwrap().status, StepStatus::Cancelled);
    assert_eq!(runs("pc-queued"), 0);
    assert!(f.daemon.live(&busy).is_some(), "the busy one still runs");
    // A second cancel is refused; the first is enough.
    f.daemon.cancel(&busy).await.unwrap();
    assert_eq!(f.daemon.cancel(&busy).await.unwrap_err().code, super::ErrorCode::InvalidState);
    assert_eq!(wait_done(&f.daemon, &busy).await.status, WorkflowStatus::Cancelled);
}

#[test]
fn the_status_gauge_drops_statuses_that_reached_zero() {
    let metrics = Metrics::default();
    let running = "status=\"running\"} 16";
    assert!(metrics.render(&[(WorkflowStatus::Running, 16)]).contains(running));
    let now = metrics.render(&[(WorkflowStatus::Completed, 16)]);
    assert!(!now.contains("status=\"running\"}"), "{now}");
}

/// The `plexus_scheduler_lag_seconds` sum from a scrape.
fn lag_sum(daemon: &Daemon) -> f64 {
    let text = daemon.metrics().render(&[]);
    text.lines()
        .find_map(|l| l.strip_prefix("plexus_scheduler_lag_seconds_sum "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no lag sum in {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_lag_counts_the_wait_for_a_worker() {
    let clock = MockClock::new(at("2026-06-01T12:00:00Z"));
    let f = fixture_with_workers(Arc::new(clock.clone()), 1);
    let s = Schedules::new(f.daemon.clone());
    f.daemon
        .register_workflow("id: hog\nsteps:\n  - {id: a, plugin_id: dtest.ops, method_name: tick, parameters: {tag: lag-hog, ms: 1000}}\n")
        .await
        .unwrap();
    let hog = f.daemon.start("hog", Map::new(), Default::default()).await.unwrap().id().to_owned();
    until("the only worker to be busy", || runs("lag-hog") == 1).await;
    s.create(spec(
        json!({"id": "lag", "when": "every 1m", "plugin": "dtest.ops", "operation": "tick", "params": {"tag": "lag"}}),
    ))
    .await
    .unwrap();
    clock.advance(Duration::from_secs(61));
    let fired = s.tick().await.unwrap();
    assert_eq!(fired.len(), 1);
    // It waits for the worker while 30 s more pass.
    clock.advance(Duration::from_secs(30));
    wait_done(&f.daemon, &hog).await;
    wait_done(&f.daemon, &fired[0]).await;
    let lag = lag_sum(&f.daemon);
    assert!((31.0..32.0).contains(&lag), "the lag runs to the start, not to the fire: {lag}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ended_executions_are_deleted_once_past_their_retention() {
    let clock = Arc::new(MockClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)));
    let f = fixture(clock.clone());
    f.daemon.register_workflow(&chain("kept", "ret", 0)).await.unwrap();
    let old = f.daemon.start("kept", Map::new(), Default::default()).await.unwrap().id().to_owned();
    assert_eq!(wait_done(&f.daemon, &old).await.status, WorkflowStatus::Completed);
    clock.advance(Duration::from_secs(2 * 86_400));
    let new = f.daemon.start("kept", Map::new(), Default::default()).await.unwrap().id().to_owned();
    assert_eq!(wait_done(&f.daemon, &new).await.status, WorkflowStatus::Completed);
    f.daemon.set_retention(Some(Duration::from_secs(86_400)));
    assert_eq!(f.daemon.prune_if_due().await, 1, "the execution that ended two days ago");
    assert!(f.store.execution(&old).await.unwrap().is_none());
    assert!(f.store.events(&old, 0, 100).await.unwrap().is_empty(), "its log goes too");
    assert!(f.store.execution(&new).await.unwrap().is_some());
    // Not again before PRUNE_EVERY; the second goes once it is old enough.
    assert_eq!(f.daemon.prune_if_due().await, 0, "pruned less than a minute ago");
    clock.advance(Duration::from_secs(2 * 86_400));
    assert_eq!(f.daemon.prune_if_due().await, 1);
    assert!(f.store.execution(&new).await.unwrap().is_none());
    // "forever": nothing is deleted.
    let kept = f.daemon.start("kept", Map::new(), Default::default()).await.unwrap().id().to_owned();
    wait_done(&f.daemon, &kept).await;
    f.daemon.set_retention(None);
    clock.advance(Duration::from_secs(365 * 86_400));
    assert_eq!(f.daemon.prune_if_due().await, 0);
    assert!(f.store.execution(&kept).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_can_be_started_listed_and_made_current_again_and_initial_data_reaches_the_context() {
    let f = fixture(Arc::new(SystemClock));
    let one = "id: ver\nsteps:\n  - {id: a, plugin_id: dtest.ops, method_name: tick, parameters: {tag: \"${{ context.who }}-v1\"}}\n";
    let two = one.replace("-v1", "-v2");
    assert_eq!(f.daemon.register_workflow(one).await.unwrap().version, 1);
    assert_eq!(f.daemon.register_workflow(&two).await.unwrap().version, 2);
    // Undeclared initial data goes into the context; the current version runs by default.
    let data = json!({"who": "ctx"}).as_object().unwrap().clone();
    let current = f.daemon.start("ver", data.clone(), crate::Origin::default()).await.unwrap();
    wait_done(&f.daemon, current.id()).await;
    assert_eq!(runs("ctx-v2"), 1);
    // An older version, on request, pinned.
    let origin = crate::Origin { version: Some(1), ..Default::default() };
    let older = f.daemon.start("ver", data.clone(), origin).await.unwrap();
    assert_eq!(wait_done(&f.daemon, older.id()).await.status, WorkflowStatus::Completed);
    assert_eq!(runs("ctx-v1"), 1);
    assert_eq!(f.daemon.status(older.id()).await.unwrap().1.workflow_version, 1);
    let missing = crate::Origin { version: Some(9), ..Default::default() };
    let Err(err) = f.daemon.start("ver", data.clone(), missing).await else { panic!("version 9 started") };
    assert!(err.message.contains("version 9"), "{err:?}");
    // Version 1 made current again is version 3, with version 1's text.
    let back = f.daemon.rollback_workflow("ver", 1).await.unwrap();
    assert_eq!((back.version, back.created), (3, true));
    assert_eq!(f.daemon.workflow("ver", None).await.unwrap().source, one);
    let history = f.daemon.workflow_history("ver").await.unwrap();
    assert_eq!(history.current, Some(3));
    assert_eq!(history.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2, 1]);
    let again = f.daemon.start("ver", data, crate::Origin::default()).await.unwrap();
    wait_done(&f.daemon, again.id()).await;
    assert_eq!(runs("ctx-v1"), 2);
    // Per-workflow history of executions, newest first.
    let filter = super::store::ExecutionFilter { workflow_id: Some("ver".into()), ..Default::default() };
    let executions = f.daemon.executions(&filter).await.unwrap();
    let versions: Vec<u32> = executions.iter().map(|e| e.workflow_version).collect();
    assert_eq!(versions, [3, 1, 2]);
    // Clear: every workflow goes, executions stay; the history stays for pinned executions.
    f.daemon.register_workflow(&chain("other", "clear", 0)).await.unwrap();
    assert_eq!(f.daemon.clear_workflows().await.unwrap(), 2);
    assert!(f.daemon.workflows().await.unwrap().is_empty());
    assert_eq!(f.daemon.workflow_history("ver").await.unwrap().current, None);
    assert_eq!(f.daemon.executions(&filter).await.unwrap().len(), 3);
    // A deleted workflow's versions are kept, not started.
    let deleted = crate::Origin { version: Some(1), ..Default::default() };
    let Err(err) = f.daemon.start("ver", Map::new(), deleted).await else { panic!("a deleted workflow started") };
    assert_eq!(err.code, crate::ErrorCode::NotFound, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_executions_are_those_not_ended() {
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&chain("act", "act", 300)).await.unwrap();
    let first = f.daemon.start("act", Map::new(), crate::Origin::default()).await.unwrap();
    wait_done(&f.daemon, first.id()).await;
    let running = f.daemon.start("act", Map::new(), crate::Origin::default()).await.unwrap();
    let active = super::store::ExecutionFilter { active: true, ..Default::default() };
    let ids: Vec<String> = f.daemon.executions(&active).await.unwrap().into_iter().map(|e| e.execution_id).collect();
    assert_eq!(ids, [running.id().to_owned()]);
    wait_done(&f.daemon, running.id()).await;
    assert!(f.daemon.executions(&active).await.unwrap().is_empty());
}

/// Two `tick` steps, each compensated by a `tick` of `undo-<name>-<step>`.
fn compensated(id: &str, name: &str) -> String {
    format!(
        "id: {id}\nsteps:\n  - {{id: a, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: {name}-a}}, compensate: {{plugin_id: dtest.ops, method_name: tick, parameters: {{tag: undo-{name}-a}}}}}}\n  - {{id: b, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: {name}-b, ms: 5}}, dependencies: [a], compensate: {{plugin_id: dtest.ops, method_name: tick, parameters: {{tag: undo-{name}-b}}}}}}\n"
    )
}

fn in_tx(tx: &str) -> crate::Origin {
    crate::Origin { transaction: Some(tx.to_owned()), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back_across_executions_and_a_restart() {
    use plexus_client::TransactionState as T;
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&compensated("txa", "txa")).await.unwrap();
    f.daemon.register_workflow(&compensated("txb", "txb")).await.unwrap();

    // Committed: the work stays; nothing is compensated.
    f.daemon.begin_transaction("keep").await.unwrap();
    let kept = f.daemon.start("txa", Map::new(), in_tx("keep")).await.unwrap();
    let running = f.daemon.commit_transaction("keep").await.unwrap_err();
    assert_eq!(running.code, crate::ErrorCode::InvalidState, "{running:?}");
    wait_done(&f.daemon, kept.id()).await;
    assert_eq!(f.daemon.commit_transaction("keep").await.unwrap().state, T::Committed);
    assert_eq!(runs("undo-txa-a"), 0);
    let closed = f.daemon.start("txa", Map::new(), in_tx("keep")).await;
    assert_eq!(closed.err().map(|e| e.code), Some(crate::ErrorCode::InvalidState));
    assert_eq!(f.daemon.begin_transaction("keep").await.unwrap_err().code, crate::ErrorCode::AlreadyExists);

    // Two executions in `undo`, then a restart of the daemon (same database).
    f.daemon.begin_transaction("undo").await.unwrap();
    let first = f.daemon.start("txa", Map::new(), in_tx("undo")).await.unwrap();
    wait_done(&f.daemon, first.id()).await;
    let second = f.daemon.start("txb", Map::new(), in_tx("undo")).await.unwrap();
    wait_done(&f.daemon, second.id()).await;
    let (first, second) = (first.id().to_owned(), second.id().to_owned());
    assert_eq!(f.daemon.status(&first).await.unwrap().1.transaction_id.as_deref(), Some("undo"));
    let daemon = restarted(&f.store);
    let tx = daemon.transaction("undo").await.unwrap();
    assert_eq!((tx.state, tx.executions.clone()), (T::Open, vec![first.clone(), second.clone()]));
    let tx = daemon.rollback_transaction("undo").await.unwrap();
    assert_eq!(tx.state, T::RolledBack, "{tx:?}");
    let order: Vec<(String, String)> =
        tx.compensations.iter().map(|c| (c.execution_id.clone(), c.record.step.clone())).collect();
    let expected = [(&second, "b"), (&second, "a"), (&first, "b"), (&first, "a")];
    assert_eq!(order, expected.map(|(e, s)| (e.clone(), s.to_owned())));
    for tag in ["undo-txa-a", "undo-txa-b", "undo-txb-a", "undo-txb-b"] {
        assert_eq!(runs(tag), 1, "{tag}");
    }
    for id in [&first, &second] {
        let (status, _) = daemon.status(id).await.unwrap();
        assert_eq!((status.status, status.compensations.len()), (WorkflowStatus::RolledBack, 2));
    }
    // Durable: as recorded.
    assert_eq!(f.store.transaction("undo").await.unwrap().unwrap().compensations.len(), 4);
    assert_eq!(daemon.rollback_transaction("undo").await.unwrap_err().code, crate::ErrorCode::InvalidState);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rollback_carries_on_at_start_without_repeating_compensations() {
    use plexus_client::TransactionState as T;
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&compensated("txc", "txc")).await.unwrap();
    f.daemon.begin_transaction("cut").await.unwrap();
    let exec = f.daemon.start("txc", Map::new(), in_tx("cut")).await.unwrap();
    wait_done(&f.daemon, exec.id()).await;
    // The daemon stopped after `b` was compensated: the record says rolling_back.
    let mut tx = f.daemon.transaction("cut").await.unwrap();
    tx.state = T::RollingBack;
    assert!(f.store.update_transaction(&tx, T::Open).await.unwrap());
    let done = plexus_client::status::CompensationRecord {
        step: "b".into(),
        plugin_id: "dtest.ops".into(),
        operation: "tick".into(),
        status: StepStatus::Completed,
        output: Some(json!({"tag": "undo-txc-b"})),
        error: None,
        duration_ms: 1,
    };
    f.store.put_compensation(exec.id(), 0, &done).await.unwrap();
    assert_eq!(f.daemon.resume_rollbacks().await.unwrap(), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.store.transaction("cut").await.unwrap().unwrap().state != T::RolledBack {
        assert!(Instant::now() < deadline, "timed out waiting for the rollback to end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((runs("undo-txc-a"), runs("undo-txc-b")), (1, 0));
    let tx = f.store.transaction("cut").await.unwrap().unwrap();
    assert_eq!(tx.compensations.iter().map(|c| c.record.step.as_str()).collect::<Vec<_>>(), ["b", "a"]);
}

/// A plugin that may be a workflow step but not a scheduled task.
#[derive(Default)]
struct StepOnly;

impl Plugin for StepOnly {
    fn info() -> PluginInfo {
        PluginInfo::new("dtest.steponly", "Steps only", "1.0.0").capabilities([plexus_sdk::capability::WORKFLOW_STEP])
    }
    fn operations(ops: &mut Operations<Self>) {
        ops.add("noop", "Does nothing", |_, _, _: Value| Ok(Value::Null));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_plugin_declaring_scheduled_task_can_be_scheduled() {
    let f = fixture(Arc::new(SystemClock));
    let schedules = Schedules::new(f.daemon.clone());
    let refused = schedules
        .create(spec(json!({"id": "no", "when": "every 1h", "plugin": "dtest.steponly", "operation": "noop"})))
        .await
        .unwrap_err();
    assert_eq!(refused.code, crate::ErrorCode::InvalidConfiguration);
    assert!(
        refused.message.contains("`dtest.steponly` does not declare the `scheduled-task` capability")
            && refused.message.contains("(it declares: workflow-step)"),
        "{refused:?}"
    );
    assert!(schedules.list().await.unwrap().is_empty());
    assert!(f.daemon.workflows().await.unwrap().is_empty(), "nothing generated for a refused schedule");
    // As a workflow step it is fine, and a schedule of that workflow too.
    f.daemon
        .register_workflow("id: wrap\nsteps:\n  - { id: a, plugin_id: dtest.steponly, method_name: noop }\n")
        .await
        .unwrap();
    schedules.create(spec(json!({"id": "yes", "when": "every 1h", "workflow": "wrap"}))).await.unwrap();
    schedules.create(spec(json!({"id": "op", "when": "every 1h", "plugin": "dtest.ops", "operation": "tick", "params": {"tag": "cap"}}))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_durable_and_workflows_are_created_from_them() {
    let f = fixture(Arc::new(SystemClock));
    let template = "id: tpl\ninputs:\n  tag: { type: string, default: x }\nsteps:\n  - {id: a, plugin_id: dtest.ops, method_name: tick, parameters: {tag: \"${{ inputs.tag }}\", ms: 1}}\n";
    let summary = f.daemon.register_template(template).await.unwrap();
    assert_eq!((summary.id.as_str(), summary.parameters.clone()), ("tpl", vec!["tag".to_owned()]));
    let bad = f.daemon.register_template("id: t2\nsteps:\n  - {id: a, plugin_id: no.such, method_name: x}\n").await;
    assert_eq!(bad.unwrap_err().code, crate::ErrorCode::InvalidConfiguration);
    // A restart on the same database keeps it.
    let daemon = restarted(&f.store);
    assert_eq!(daemon.templates().await.unwrap(), [summary]);
    assert_eq!(daemon.template("tpl").await.unwrap().source, template);
    let request = plexus_client::FromTemplate {
        params: Map::from_iter([("tag".into(), json!("from-template"))]),
        ..Default::default()
    };
    let made = daemon.create_from_template("tpl", &request).await.unwrap();
    assert_eq!((made.id.as_str(), made.version), ("tpl-1", 1));
    let next = daemon.create_from_template("tpl", &request).await.unwrap();
    assert_eq!(next.id, "tpl-2");
    let started = daemon.start("tpl-1", Map::new(), crate::Origin::default()).await.unwrap();
    let done = wait_done(&daemon, started.id()).await;
    assert_eq!(done.step("a").unwrap().output, Some(json!({"tag": "from-template"})));
    daemon.delete_template("tpl").await.unwrap();
    assert_eq!(daemon.template("tpl").await.unwrap_err().code, crate::ErrorCode::NotFound);
    assert_eq!(daemon.create_from_template("tpl", &request).await.unwrap_err().code, crate::ErrorCode::NotFound);
    assert!(daemon.workflow("tpl-1", None).await.is_ok(), "created workflows stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_worker_busy_the_highest_priority_starts_first() {
    use plexus_client::Priority;
    let f = fixture_with_workers(Arc::new(SystemClock), 1);
    let one = |id: &str, ms: u64| {
        format!(
            "id: {id}\nsteps:\n  - {{id: a, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: {id}, ms: {ms}}}}}\n"
        )
    };
    f.daemon.register_workflow(&one("busy", 300)).await.unwrap();
    f.daemon.register_workflow(&one("queued", 20)).await.unwrap();
    let busy = f.daemon.start("busy", Map::new(), crate::Origin::default()).await.unwrap();
    until("the one worker to be busy", || busy.snapshot().status == WorkflowStatus::Running).await;
    let mut waiting = Vec::new();
    for priority in [Priority::Low, Priority::Normal, Priority::Critical, Priority::Normal, Priority::High] {
        let origin = crate::Origin { priority, ..Default::default() };
        waiting.push((priority, f.daemon.start("queued", Map::new(), origin).await.unwrap()));
    }
    let mut started = Vec::new();
    for (priority, exec) in &waiting {
        let done = wait_done(&f.daemon, exec.id()).await;
        assert_eq!(done.status, WorkflowStatus::Completed);
        started.push((done.steps[0].started_at_ms.unwrap(), *priority, exec.id().to_owned()));
        assert_eq!(f.daemon.status(exec.id()).await.unwrap().1.priority, *priority, "stored with it");
    }
    started.sort();
    let order: Vec<Priority> = started.iter().map(|(_, p, _)| *p).collect();
    assert_eq!(order, [Priority::Critical, Priority::High, Priority::Normal, Priority::Normal, Priority::Low]);
    // Equal priorities: the first started first.
    let normals: Vec<&str> =
        started.iter().filter(|(_, p, _)| *p == Priority::Normal).map(|(.., id)| id.as_str()).collect();
    assert_eq!(normals, [waiting[1].1.id(), waiting[3].1.id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_whose_writes_fail_waits_for_them_and_then_finishes() {
    use plexus_client::TransactionState as T;
    let f = fixture(Arc::new(SystemClock));
    // `b`'s compensation takes 400 ms: the disk fills while it runs.
    let workflow =
        compensated("txw", "txw").replace("parameters: {tag: undo-txw-b}", "parameters: {tag: undo-txw-b, ms: 400}");
    f.daemon.register_workflow(&workflow).await.unwrap();
    f.daemon.begin_transaction("held").await.unwrap();
    let exec = f.daemon.start("txw", Map::new(), in_tx("held")).await.unwrap();
    let id = exec.id().to_owned();
    wait_done(&f.daemon, &id).await;
    let daemon = f.daemon.clone();
    let rollback = tokio::spawn(async move { daemon.rollback_transaction("held").await });
    until("`b`'s compensation to start", || runs("undo-txw-b") == 1).await;
    f.store.fail_writes(true);
    until("the rolled-back execution to be held", || f.daemon.live(&id).is_some_and(|e| e.is_held())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rollback.is_finished(), "no compensation goes on unrecorded");
    assert!(runs("undo-txw-a") == 0, "the later step is compensated first");
    // Space is freed: maintenance records it again and the rollback finishes.
    f.store.fail_writes(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rollback.is_finished() {
        assert!(Instant::now() < deadline, "the rollback did not finish after writes worked again");
        f.daemon.maintain().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tx = rollback.await.unwrap().unwrap();
    assert_eq!(tx.state, T::RolledBack, "{tx:?}");
    assert_eq!((runs("undo-txw-a"), runs("undo-txw-b")), (1, 1));
    assert!(f.daemon.live(&id).is_none(), "out of the live set once rolled back");
    assert_eq!(f.store.execution(&id).await.unwrap().unwrap().status.status, WorkflowStatus::RolledBack);
}

/// `dtest.ops` as a reload may bring it: `tick` still there, `scheduled-task` no longer declared.
#[derive(Default)]
struct OpsStepOnly;

impl Plugin for OpsStepOnly {
    fn info() -> PluginInfo {
        PluginInfo::new("dtest.ops", "Daemon test operations, changed", "2.0.0")
            .capabilities([plexus_sdk::capability::WORKFLOW_STEP])
    }
    fn operations(ops: &mut Operations<Self>) {
        ops.add("tick", "Does nothing", |_, _, _: Value| Ok(Value::Null));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_whose_plugin_dropped_scheduled_task_is_not_fired() {
    let f = fixture(Arc::new(SystemClock));
    let schedules = Schedules::new(f.daemon.clone());
    let op =
        json!({"id": "op", "when": "every 1h", "plugin": "dtest.ops", "operation": "tick", "params": {"tag": "gone"}});
    schedules.create(spec(op)).await.unwrap();
    // A reload brings a version of the plugin that no longer declares it.
    f.daemon.replace_host(HostBuilder::new().no_cache().in_process::<OpsStepOnly>(Value::Null).build().unwrap());
    let refused = schedules.run_now("op").await.unwrap_err();
    assert_eq!(refused.code, crate::ErrorCode::DependencyNotSatisfied, "{refused:?}");
    assert!(
        refused.message.contains("`dtest.ops` no longer declares `scheduled-task` (it declares: workflow-step)"),
        "{refused:?}"
    );
    let history = schedules.history("op", 10).await.unwrap();
    assert_eq!(history[0].outcome, crate::store::FireOutcome::Failed);
    assert!(history[0].message.as_deref().unwrap_or_default().contains("no longer declares"), "{history:?}");
    assert_eq!(runs("gone"), 0, "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_transactions_go_with_their_executions_past_the_retention() {
    let clock = Arc::new(MockClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)));
    let f = fixture(clock.clone());
    f.daemon.register_workflow(&chain("txr", "txr", 0)).await.unwrap();
    f.daemon.begin_transaction("done").await.unwrap();
    let exec = f.daemon.start("txr", Map::new(), in_tx("done")).await.unwrap().id().to_owned();
    wait_done(&f.daemon, &exec).await;
    f.daemon.commit_transaction("done").await.unwrap();
    f.daemon.begin_transaction("still-open").await.unwrap();
    clock.advance(Duration::from_secs(2 * 86_400));
    f.daemon.set_retention(Some(Duration::from_secs(86_400)));
    assert_eq!(f.daemon.prune_if_due().await, 1);
    assert!(f.store.execution(&exec).await.unwrap().is_none());
    assert_eq!(f.daemon.transaction("done").await.unwrap_err().code, crate::ErrorCode::NotFound);
    assert_eq!(f.daemon.transaction("still-open").await.unwrap().state, plexus_client::TransactionState::Open);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_sealed_at_rest_used_by_steps_and_never_recorded() {
    const VALUE: &str = "daemon-s3cr3t-81c2";
    let f = fixture(Arc::new(SystemClock));
    let store = f.store.arc();
    // Without a key: listed, not settable.
    let keyless = crate::secrets::Secrets::load(store.clone(), None).await.unwrap();
    let e = keyless.set("TOKEN", VALUE).await.unwrap_err();
    assert_eq!(e.code, crate::ErrorCode::InvalidState, "{e}");
    let key = crate::secrets::Keyring::generate().unwrap();
    let keyring = crate::secrets::Keyring::from_hex(&key).unwrap();
    let secrets = crate::secrets::Secrets::load(store.clone(), Some(keyring)).await.unwrap();
    f.daemon.set_secrets(secrets.clone());
    // Bad names and values are refused, naming the name, never quoting the value.
    for (name, value) in [("1bad", VALUE), ("TOKEN", "abc")] {
        let e = f.daemon.secrets().unwrap().set(name, value).await.unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidConfiguration, "{e}");
    }
    let info = f.daemon.secrets().unwrap().set("TOKEN", "first-value-1").await.unwrap();
    assert!(info.usable);
    f.daemon.secrets().unwrap().set("TOKEN", VALUE).await.unwrap();
    let listed = f.daemon.secrets().unwrap().list().await.unwrap();
    assert_eq!(listed.iter().map(|s| (s.name.as_str(), s.usable)).collect::<Vec<_>>(), [("TOKEN", true)]);
    // A daemon with another key lists it as unusable; one with the same key can use it.
    let other = crate::secrets::Keyring::from_hex(&crate::secrets::Keyring::generate().unwrap()).unwrap();
    let elsewhere = crate::secrets::Secrets::load(store.clone(), Some(other)).await.unwrap();
    assert!(!elsewhere.list().await.unwrap()[0].usable);
    let same =
        crate::secrets::Secrets::load(store.clone(), crate::secrets::Keyring::from_hex(&key).ok()).await.unwrap();
    use plexus_host::secrets::SecretSource as _;
    assert_eq!(same.secret("TOKEN").unwrap().expose(), VALUE);

    // A step is handed the value; what is recorded has `***`.
    let source = "id: usesec\nsteps:\n  - {id: s, plugin_id: dtest.ops, method_name: tick, \
                  parameters: {tag: \"${{ secrets.TOKEN }}\"}}\n";
    f.daemon.register_workflow(source).await.unwrap();
    let exec = f.daemon.start("usesec", Map::new(), super::core::Origin::default()).await.unwrap();
    let status = wait_done(&f.daemon, exec.id()).await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:?}");
    assert_eq!(runs(VALUE), 1, "the plugin got the value");
    assert_eq!(status.steps[0].output, Some(json!({"tag": "***"})));
    let stored = store.execution(exec.id()).await.unwrap().unwrap();
    assert_eq!(stored.status.steps[0].output, Some(json!({"tag": "***"})));
    let events = store.events(exec.id(), 0, 100).await.unwrap();
    assert!(!serde_json::to_string(&events).unwrap().contains(VALUE));
    // Deleted: the next run's step fails, naming the secret.
    f.daemon.secrets().unwrap().delete("TOKEN").await.unwrap();
    let e = f.daemon.secrets().unwrap().delete("TOKEN").await.unwrap_err();
    assert_eq!(e.code, crate::ErrorCode::NotFound);
    let exec = f.daemon.start("usesec", Map::new(), super::core::Origin::default()).await.unwrap();
    let status = wait_done(&f.daemon, exec.id()).await;
    assert_eq!(status.steps[0].error.as_ref().unwrap().message, "secret `TOKEN` is not set");
    // Nowhere in the database, in any form.
    let raw = f.store.raw_bytes(f._dir.path());
    assert!(raw.len() > 1000, "{} bytes", raw.len());
    assert!(!raw.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()), "the value is in the database");
    assert!(!raw.windows(13).any(|w| w == b"first-value-1"), "an old value is in the database");
}

/// `POST path` with `headers` and `body` (no token), over a fresh connection: (status line, body).
async fn http_post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The three signature headers of a delivery at Unix time `at`.
fn signed(secret: &str, at: u64, delivery: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    use plexus_client::hooks::{DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
    vec![
        (TIMESTAMP_HEADER, at.to_string()),
        (DELIVERY_HEADER, delivery.to_owned()),
        (SIGNATURE_HEADER, signature(secret, at, delivery, body)),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_starts_its_workflow_for_a_good_signature_only_once() {
    let f = fixture(Arc::new(SystemClock));
    let spec = || plexus_client::HookSpec {
        id: Some("on-push".into()),
        workflow: "hooked".into(),
        inputs_key: None,
        description: Some("CI pushes".into()),
        priority: None,
    };
    f.daemon.register_workflow("id: hooked\ninputs:\n  tag: {type: string}\nsteps:\n  - {id: s, plugin_id: dtest.ops, method_name: tick, parameters: {tag: \"${{ inputs.tag }}\"}}\n").await.unwrap();
    // No secrets key, no hooks: their secrets are kept sealed.
    let keyless = crate::secrets::Secrets::load(f.store.arc(), None).await.unwrap();
    let without = Daemon::new(
        f.store.arc(),
        HostBuilder::new().no_cache().build().unwrap(),
        Arc::new(SystemClock),
        tokio::runtime::Handle::current(),
        1,
        Metrics::default(),
    );
    without.set_secrets(keyless);
    assert_eq!(without.create_hook(spec()).await.unwrap_err().code, crate::ErrorCode::InvalidState);
    let key = crate::secrets::Keyring::from_hex(&crate::secrets::Keyring::generate().unwrap()).unwrap();
    f.daemon.set_secrets(crate::secrets::Secrets::load(f.store.arc(), Some(key)).await.unwrap());
    let missing = plexus_client::HookSpec { workflow: "nope".into(), ..spec() };
    assert_eq!(f.daemon.create_hook(missing).await.unwrap_err().code, crate::ErrorCode::NotFound);
    let created = f.daemon.create_hook(spec()).await.unwrap();
    assert_eq!((created.hook.path.as_str(), created.secret.len()), ("/v1/hooks/on-push", 64));
    assert_eq!(f.daemon.create_hook(spec()).await.unwrap_err().code, crate::ErrorCode::AlreadyExists);
    let secret = created.secret.clone();

    let app =
        super::api::router(super::api::ApiState::new(f.daemon.clone(), Schedules::new(f.daemon.clone()), "t"), 1 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let body = br#"{"tag": "hooked-1"}"#;
    // A good signature, no token: started.
    let (status, answer) = http_post(addr, "/v1/hooks/on-push", &signed(&secret, now, "d-1", body), body).await;
    assert!(status.contains("202"), "{status}: {answer}");
    let started: plexus_client::Started = serde_json::from_str(&answer).unwrap();
    assert_eq!(wait_done(&f.daemon, &started.execution_id).await.status, WorkflowStatus::Completed);
    assert_eq!(runs("hooked-1"), 1);
    // The same delivery again (a replay, still within the window): refused.
    let (status, answer) = http_post(addr, "/v1/hooks/on-push", &signed(&secret, now, "d-1", body), body).await;
    assert!(status.contains("409") && answer.contains("replay"), "{status}: {answer}");
    // A bad signature, another hook's secret, a changed body, a stale or future timestamp, no headers: 401.
    let other = br#"{"tag": "hooked-2"}"#;
    let mut forged = signed(&secret, now, "d-2", body);
    forged[2].1 = signed("not the secret", now, "d-2", other)[2].1.clone();
    for (headers, sent) in [
        (forged, &other[..]),
        (signed(&secret, now, "d-3", body), &other[..]),
        // Well outside the 300 s window (the daemon's clock may have moved a second on).
        (signed(&secret, now - 400, "d-4", other), &other[..]),
        (signed(&secret, now + 400, "d-5", other), &other[..]),
        (signed(&secret, now, "bad delivery id", other), &other[..]),
        (Vec::new(), &other[..]),
    ] {
        let (status, answer) = http_post(addr, "/v1/hooks/on-push", &headers, sent).await;
        assert!(status.contains("401"), "{headers:?}: {status}: {answer}");
    }
    assert_eq!(runs("hooked-2"), 0, "no forged delivery ran");
    // Not an object (the hook has no inputs_key): 400, and the delivery id stays usable.
    let list = b"[1, 2]";
    let (status, _) = http_post(addr, "/v1/hooks/on-push", &signed(&secret, now, "d-6", list), list).await;
    assert!(status.contains("400"), "{status}");
    // The management routes on the same path need the token; deliveries are listed.
    let (status, _) = http_get(addr, "/v1/hooks/on-push").await;
    assert!(status.contains("200"), "{status}");
    let details = f.daemon.hook("on-push").await.unwrap();
    assert_eq!(details.deliveries.len(), 1);
    assert_eq!(details.deliveries[0].execution_id.as_deref(), Some(started.execution_id.as_str()));
    assert!(!serde_json::to_string(&f.daemon.hooks().await.unwrap()).unwrap().contains(&secret));
    // Deleted: deliveries are refused.
    f.daemon.delete_hook("on-push").await.unwrap();
    let (status, _) = http_post(addr, "/v1/hooks/on-push", &signed(&secret, now, "d-7", body), body).await;
    assert!(status.contains("404"), "{status}");
}

/// A step, a wait for `approve` (an approval, `timeout`), a step after it.
fn gated(id: &str, timeout: &str) -> String {
    format!(
        "id: {id}\nsteps:\n  - {{id: build, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: {id}-build, ms: 50}}}}\n  \
         - {{id: approve, wait_for: {{signal: approve, timeout: {timeout}, approval: true}}, dependencies: [build]}}\n  \
         - {{id: deploy, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: {id}-deploy}}, dependencies: [approve]}}\n"
    )
}

async fn wait_parked(daemon: &Daemon, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.is_parked(id) {
        assert!(Instant::now() < deadline, "execution {id} did not park");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn approval(by: &str) -> plexus_client::SignalRequest {
    plexus_client::SignalRequest { payload: json!({"ticket": 7}), by: Some(by.into()), reject: false }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_is_taken_whether_it_comes_before_during_or_after_a_restart_and_waiting_costs_no_worker() {
    // One worker: a parked execution must not hold it.
    let f = fixture_with_workers(Arc::new(SystemClock), 1);
    f.daemon.register_workflow(&gated("sig", "1h")).await.unwrap();
    f.daemon.register_workflow(&chain("other", "sig-other", 1)).await.unwrap();
    // Before: delivered while the first step runs; the wait takes it at once.
    let early = f.daemon.start("sig", Map::new(), super::core::Origin::default()).await.unwrap();
    f.daemon.signal(early.id(), "approve", approval("alice")).await.unwrap();
    let status = wait_done(&f.daemon, early.id()).await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:?}");
    assert_eq!(status.steps[1].output.as_ref().unwrap()["by"], "alice");
    // During: it parks; its worker runs another execution meanwhile.
    let during = f.daemon.start("sig", Map::new(), super::core::Origin::default()).await.unwrap();
    let id = during.id().to_owned();
    wait_parked(&f.daemon, &id).await;
    let (status, _) = f.daemon.status(&id).await.unwrap();
    assert_eq!((status.status, status.steps[1].status), (WorkflowStatus::Running, StepStatus::Waiting));
    let other = f.daemon.start("other", Map::new(), super::core::Origin::default()).await.unwrap();
    assert_eq!(wait_done(&f.daemon, other.id()).await.status, WorkflowStatus::Completed, "the worker was free");
    // Only the signals its wait steps wait for are taken.
    let unknown = f.daemon.signal(&id, "other-signal", approval("bob")).await.unwrap_err();
    assert_eq!(unknown.code, crate::ErrorCode::InvalidConfiguration, "{unknown}");
    f.daemon.signal(&id, "approve", approval("bob")).await.unwrap();
    let status = wait_done(&f.daemon, &id).await;
    assert_eq!(status.steps[1].output.as_ref().unwrap()["by"], "bob");
    assert_eq!(runs("sig-deploy"), 2);
    // A second signal of a name, or one to an ended execution: refused.
    let e = f.daemon.signal(&id, "approve", approval("eve")).await.unwrap_err();
    assert_eq!(e.code, crate::ErrorCode::InvalidState, "{e}");
    // After a restart: parked again at start, then signalled.
    let after = f.daemon.start("sig", Map::new(), super::core::Origin::default()).await.unwrap();
    let id = after.id().to_owned();
    wait_parked(&f.daemon, &id).await;
    let daemon = restarted(&f.store);
    assert_eq!(daemon.resume_unfinished().await.unwrap(), 1);
    wait_parked(&daemon, &id).await;
    daemon.signal(&id, "approve", approval("carol")).await.unwrap();
    let e = daemon.signal(&id, "approve", approval("carol")).await.unwrap_err();
    assert!(matches!(e.code, crate::ErrorCode::AlreadyExists | crate::ErrorCode::InvalidState), "{e}");
    let status = wait_done(&daemon, &id).await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:?}");
    assert_eq!(status.steps[1].output.as_ref().unwrap()["by"], "carol");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_approval_times_out_and_a_parked_execution_can_be_cancelled() {
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow(&gated("late", "300ms")).await.unwrap();
    let exec = f.daemon.start("late", Map::new(), super::core::Origin::default()).await.unwrap();
    let id = exec.id().to_owned();
    wait_parked(&f.daemon, &id).await;
    let status = wait_done(&f.daemon, &id).await;
    assert_eq!(status.status, WorkflowStatus::Failed);
    let error = status.steps[1].error.clone().unwrap();
    assert_eq!((error.kind.as_str(), error.message.as_str()), ("timeout", "no signal `approve` within 300ms"));
    assert!(!f.daemon.is_parked(&id));
    // Cancelled while parked: its wait ends cancelled, the step before it is compensated (none here).
    f.daemon.register_workflow(&gated("stop", "1h")).await.unwrap();
    let exec = f.daemon.start("stop", Map::new(), super::core::Origin::default()).await.unwrap();
    let id = exec.id().to_owned();
    wait_parked(&f.daemon, &id).await;
    f.daemon.cancel(&id).await.unwrap();
    let status = wait_done(&f.daemon, &id).await;
    assert_eq!((status.status, status.steps[1].status), (WorkflowStatus::Cancelled, StepStatus::Cancelled));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sub_workflow_runs_as_a_linked_child_and_cancel_and_rollback_reach_it() {
    // One worker: the parent waits for its child parked, or the child could never run.
    let f = fixture_with_workers(Arc::new(SystemClock), 1);
    let child = "id: child\ninputs:\n  tag: {type: string}\n  ms: {type: integer, default: 1}\nsteps:\n  \
                 - {id: work, plugin_id: dtest.ops, method_name: tick, parameters: {tag: \"${{ inputs.tag }}\", ms: \"${{ inputs.ms }}\"}, \
                 compensate: {plugin_id: dtest.ops, method_name: tick, parameters: {tag: \"undo-${{ inputs.tag }}\"}}}\n\
                 outputs:\n  done: \"${{ steps.work.output.tag }}\"\n";
    f.daemon.register_workflow(child).await.unwrap();
    let parent = |id: &str, tag: &str, ms: u64, then_fail: bool| {
        let fail = if then_fail {
            "  - {id: boom, plugin_id: dtest.ops, method_name: tick, parameters: {tag: boom-sub}, dependencies: [sub]}\n"
        } else {
            ""
        };
        format!(
            "id: {id}\nsteps:\n  - {{id: sub, workflow: child, parameters: {{tag: {tag}, ms: {ms}}}}}\n{fail}\
             outputs:\n  from_child: \"${{{{ steps.sub.output.outputs.done }}}}\"\n"
        )
    };
    // Completes with the child's outputs; the child's id links it to its parent.
    f.daemon.register_workflow(&parent("calls", "sub-a", 1, false)).await.unwrap();
    let exec = f.daemon.start("calls", Map::new(), super::core::Origin::default()).await.unwrap();
    let status = wait_done(&f.daemon, exec.id()).await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:?}");
    let child_id = format!("{}~sub", exec.id());
    assert_eq!(status.steps[0].output, Some(json!({"execution_id": child_id, "outputs": {"done": "sub-a"}})));
    assert_eq!(status.outputs["from_child"], "sub-a");
    assert_eq!(f.daemon.status(&child_id).await.unwrap().0.status, WorkflowStatus::Completed);
    // The parent fails after its child completed: the child is rolled back.
    FAILING.lock().unwrap().insert("boom-sub".into());
    f.daemon.register_workflow(&parent("rolls", "sub-b", 1, true)).await.unwrap();
    let exec = f.daemon.start("rolls", Map::new(), super::core::Origin::default()).await.unwrap();
    let status = wait_done(&f.daemon, exec.id()).await;
    assert_eq!(status.status, WorkflowStatus::Failed, "{status:?}");
    assert_eq!(status.compensations[0].operation, "rollback");
    assert_eq!(status.compensations[0].status, StepStatus::Completed);
    assert_eq!(runs("undo-sub-b"), 1, "the child's compensation ran");
    let child_status = f.daemon.status(&format!("{}~sub", exec.id())).await.unwrap().0;
    assert_eq!(child_status.status, WorkflowStatus::RolledBack);
    // The parent is cancelled while its child runs: the child is cancelled too.
    f.daemon.register_workflow(&parent("stops", "sub-c", 5000, false)).await.unwrap();
    let exec = f.daemon.start("stops", Map::new(), super::core::Origin::default()).await.unwrap();
    let child_id = format!("{}~sub", exec.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs("sub-c") == 0 {
        assert!(Instant::now() < deadline, "the child did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f.daemon.cancel(exec.id()).await.unwrap();
    let status = wait_done(&f.daemon, exec.id()).await;
    assert_eq!(status.status, WorkflowStatus::Cancelled, "{status:?}");
    let child_status = wait_done(&f.daemon, &child_id).await;
    assert_eq!(child_status.status, WorkflowStatus::Cancelled, "{child_status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_that_calls_itself_stops_at_the_nesting_bound_and_a_failed_child_fails_its_parent() {
    let f = fixture(Arc::new(SystemClock));
    f.daemon.register_workflow("id: forever\nsteps:\n  - {id: again, workflow: forever}\n").await.unwrap();
    let exec = f.daemon.start("forever", Map::new(), super::core::Origin::default()).await.unwrap();
    let status = wait_done(&f.daemon, exec.id()).await;
    assert_eq!(status.status, WorkflowStatus::Failed, "{status:?}");
    // The deepest child refused to start an eighth level; each parent failed with its child.
    let deepest = (0..8).fold(exec.id().to_owned(), |id, _| format!("{id}~again"));
    let deep = wait_done(&f.daemon, &deepest).await;
    assert!(deep.steps[0].error.as_ref().unwrap().message.contains("nest at most 8 deep"), "{deep:?}");
    let error = status.steps[0].error.clone().unwrap();
    assert_eq!(error.kind, "child-failed", "{error:?}");
    // A child of a workflow that does not exist: the step fails at once.
    f.daemon.register_workflow("id: orphan\nsteps:\n  - {id: s, workflow: no-such}\n").await.unwrap();
    let exec = f.daemon.start("orphan", Map::new(), super::core::Origin::default()).await.unwrap();
    let status = wait_done(&f.daemon, exec.id()).await;
    assert!(status.steps[0].error.as_ref().unwrap().message.contains("no-such"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_recorded_read_by_descendants_only_and_go_with_their_executions() {
    let clock = Arc::new(MockClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)));
    // One worker: the parent waits for its child parked.
    let f = fixture_with_workers(clock.clone(), 1);
    let store_dir = f._dir.path().join("artifacts");
    f.daemon.set_artifacts(crate::artifacts::open(&f.daemon, &store_dir).unwrap());
    let reader = "id: reader\ninputs:\n  rows: {type: object}\nsteps:\n  \
                  - {id: get, plugin_id: dtest.ops, method_name: get, parameters: {artifact: \"${{ inputs.rows }}\"}}\n\
                  outputs:\n  text: \"${{ steps.get.output }}\"\n";
    f.daemon.register_workflow(reader).await.unwrap();
    let writer = "id: writer\nsteps:\n  \
                  - {id: put, plugin_id: dtest.ops, method_name: put, parameters: {name: rows, text: \"1,2,3\"}}\n  \
                  - {id: sub, workflow: reader, dependencies: [put], parameters: {rows: \"${{ steps.put.artifacts.rows }}\"}}\n\
                  outputs:\n  read: \"${{ steps.sub.output.outputs.text }}\"\n";
    f.daemon.register_workflow(writer).await.unwrap();
    let exec = f.daemon.start("writer", Map::new(), Default::default()).await.unwrap().id().to_owned();
    let status = wait_done(&f.daemon, &exec).await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    // The child (`<parent>~sub`) read its parent's artifact.
    assert_eq!(status.outputs["read"], "1,2,3");
    let reference = status.steps[0].artifacts["rows"].clone();
    let listed = f.store.artifacts(&exec).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].reference(), listed[0].step.as_deref()), (reference.clone(), Some("put")));
    let blob = f.daemon.artifacts().unwrap().store.path_of(&reference).unwrap();
    assert_eq!(std::fs::read(&blob).unwrap(), b"1,2,3");

    // An execution that is not a descendant cannot read it, reference or not.
    let inputs = json!({"rows": reference}).as_object().unwrap().clone();
    let other = f.daemon.start("reader", inputs, Default::default()).await.unwrap().id().to_owned();
    let status = wait_done(&f.daemon, &other).await;
    assert_eq!(status.status, WorkflowStatus::Failed);
    assert!(status.steps[0].error.as_ref().unwrap().message.contains("not one of this execution's"), "{status:#?}");

    // A child's artifact named by its outputs is its parent's too.
    let maker = "id: maker\nsteps:\n  - {id: put, plugin_id: dtest.ops, method_name: put, parameters: {name: made, text: abc}}\n\
                 outputs:\n  made: \"${{ steps.put.artifacts.made }}\"\n";
    f.daemon.register_workflow(maker).await.unwrap();
    let user = "id: user\nsteps:\n  - {id: sub, workflow: maker}\n  \
                - {id: get, plugin_id: dtest.ops, method_name: get, dependencies: [sub], parameters: {artifact: \"${{ steps.sub.output.outputs.made }}\"}}\n";
    f.daemon.register_workflow(user).await.unwrap();
    let used = f.daemon.start("user", Map::new(), Default::default()).await.unwrap().id().to_owned();
    let status = wait_done(&f.daemon, &used).await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    assert_eq!(status.steps[1].output, Some(json!("abc")));
    let handed = f.store.artifacts(&used).await.unwrap();
    assert_eq!((handed.len(), handed[0].step.as_deref(), handed[0].name.as_str()), (1, Some("sub"), "made"));

    // A collection keeps what an execution holds, whatever its age.
    assert_eq!(f.daemon.collect_artifacts(Duration::ZERO).await.unwrap(), 0);
    assert!(blob.exists());
    // Past the retention the executions go, their rows, then the bytes.
    clock.advance(Duration::from_secs(2 * 86_400));
    f.daemon.set_retention(Some(Duration::from_secs(86_400)));
    assert_eq!(f.daemon.prune_if_due().await, 5, "the writer, the user, their children and the other reader");
    assert!(f.store.artifacts(&exec).await.unwrap().is_empty());
    assert!(
        !f.store.held_artifacts(std::slice::from_ref(&reference.artifact)).await.unwrap().contains(&reference.artifact)
    );
    // (The daemon's own pass keeps blobs younger than an hour; this one looks at all.)
    assert!(blob.exists());
    assert_eq!(f.daemon.collect_artifacts(Duration::ZERO).await.unwrap(), 2, "rows and made");
    assert!(!blob.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_sub_workflow_is_registered_under_its_id_when_its_child_starts() {
    let f = fixture_with_workers(Arc::new(SystemClock), 1);
    let parent = |tag: &str| {
        format!(
            "id: holder\nsteps:\n  - id: sub\n    parameters: {{tag: {tag}}}\n    workflow:\n      inputs: {{tag: {{type: string}}}}\n      \
             steps:\n        - {{id: work, plugin_id: dtest.ops, method_name: tick, parameters: {{tag: \"${{{{ inputs.tag }}}}\"}}}}\n      \
             outputs: {{done: \"${{{{ steps.work.output.tag }}}}\"}}\noutputs:\n  done: \"${{{{ steps.sub.output.outputs.done }}}}\"\n"
        )
    };
    f.daemon.register_workflow(&parent("inline-a")).await.unwrap();
    for round in 0..2 {
        let exec = f.daemon.start("holder", Map::new(), Default::default()).await.unwrap().id().to_owned();
        let status = wait_done(&f.daemon, &exec).await;
        assert_eq!(status.status, WorkflowStatus::Completed, "round {round}: {status:#?}");
        assert_eq!(status.outputs["done"], "inline-a");
        let (child, _) = f.daemon.status(&format!("{exec}~sub")).await.unwrap();
        assert_eq!(child.workflow_id, "_inline.holder.sub");
    }
    // Registered once: the same definition is not a new version.
    let versions = f.store.workflow_versions("_inline.holder.sub").await.unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    // That namespace is the inline workflows': nobody registers into it.
    let squat =
        "id: _inline.holder.sub\nsteps:\n  - {id: a, plugin_id: dtest.ops, method_name: tick, parameters: {tag: x}}\n";
    let refused = f.daemon.register_workflow(squat).await.unwrap_err();
    assert!(refused.message.contains("inline sub-workflows'"), "{refused:?}");
}
