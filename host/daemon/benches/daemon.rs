//! Speed of the daemon with persistence on (see README, "Speed"):
//!
//! * `store_step_transition`: one step transition written to the SQLite state
//!   database (WAL, `synchronous = NORMAL`): the step record plus its log event, in one
//!   transaction;
//! * `exec_5step_in_memory` / `exec_5step_persisted`: one execution of a 5-step chain of
//!   native no-op steps (`plexus.echo.native`), through the engine without a journal and
//!   through the daemon with every transition journalled; the difference divided by the
//!   transitions written (2 per step, 2 for the execution) is what persistence adds per
//!   transition;
//! * `api_100_executions`: 100 executions of that workflow submitted over HTTP on
//!   loopback (8 concurrent clients, keep-alive) to a daemon with persistence on, timed
//!   until the last one completed: executions per second = 100 / time.
//!
//! * `pg_store_step_transition` / `pg_exec_5step_persisted`: the first and
//!   the third on PostgreSQL (`PgStore`, one statement per transition) instead
//!   of SQLite: a throw-away server with PostgreSQL's durable defaults (`fsync`
//!   and `synchronous_commit` on) on loopback, or the server at
//!   `$PLEXUS_BENCH_POSTGRES` (a base URL, e.g. `postgres://user:pw@db:5432`;
//!   a database is created on it for the run).
//!
//! Run with `bash scripts/bench.sh` (builds the example plugins in release mode first).

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use plexus_client::{StartExecution, Started};
use plexus_daemon::api::{ApiState, router};
use plexus_daemon::metrics::Metrics;
use plexus_daemon::schedules::Schedules;
use plexus_daemon::store::{PgStore, SqliteStore, Store};
use plexus_daemon::{Daemon, Origin};
use plexus_host::HostBuilder;
use plexus_workflow::{Orchestrator, StepRecord, StepStatus, SystemClock};
use serde_json::Map;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `plexus` binary's allocator: the benchmark measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHAIN: &str = "id: five
execution_mode: sequential
steps:
  - { id: s1, plugin_id: plexus.echo.native, method_name: noop }
  - { id: s2, plugin_id: plexus.echo.native, method_name: noop, dependencies: [s1] }
  - { id: s3, plugin_id: plexus.echo.native, method_name: noop, dependencies: [s2] }
  - { id: s4, plugin_id: plexus.echo.native, method_name: noop, dependencies: [s3] }
  - { id: s5, plugin_id: plexus.echo.native, method_name: noop, dependencies: [s4] }
";

fn plugins() -> PathBuf {
    std::env::var_os("PLEXUS_BENCH_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"))
}

fn host(cache: &std::path::Path) -> plexus_host::Host {
    let host = HostBuilder::new().plugin_dir(plugins()).cache_dir(cache).build().unwrap();
    assert!(host.plugin("plexus.echo.native").is_some(), "build the plugins first: bash scripts/build-plugins.sh");
    host
}

/// POST `body` to `path` on an open connection (keep-alive: the typed
/// `plexus_client::Client` opens one connection per request); returns the
/// status and the body.
async fn post(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    token: &str,
    path: &str,
    body: &str,
) -> (u16, Bytes) {
    sender.ready().await.unwrap();
    let request = hyper::Request::post(path)
        .header("host", "bench")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    // One transition written.
    let store = SqliteStore::open(&dir.path().join("transitions.db")).unwrap();
    let daemon0 = runtime.block_on(async {
        Daemon::new(
            Arc::new(store.clone()),
            host(dir.path()),
            Arc::new(SystemClock),
            tokio::runtime::Handle::current(),
            16,
            Metrics::default(),
        )
    });
    runtime.block_on(daemon0.register_workflow(CHAIN)).unwrap();
    let exec = runtime.block_on(daemon0.start("five", Map::new(), Origin::default())).unwrap();
    let id = exec.id().to_owned();
    let mut record = StepRecord {
        id: "s1".into(),
        plugin_id: "plexus.echo.native".into(),
        operation: "noop".into(),
        status: StepStatus::Running,
        output: None,
        error: None,
        reason: None,
        attempts: 1,
        started_at_ms: Some(1),
        ended_at_ms: None,
        duration_ms: None,
        metrics: Default::default(),
        progress: None,
        usage: None,
        artifacts: Default::default(),
    };
    c.bench_function("store_step_transition", |b| {
        b.iter(|| {
            record.attempts += 1;
            store.update_step(&id, 0, &record, None).commit().unwrap();
        })
    });

    // One execution, in memory and persisted.
    let orch = runtime.block_on(async { Orchestrator::new(Arc::new(host(dir.path()))) });
    let doc = plexus_workflow::source::Document::parse(std::path::Path::new("five.yaml"), CHAIN).unwrap();
    orch.register(plexus_workflow::validate(&doc, None).unwrap()).unwrap();
    c.bench_function("exec_5step_in_memory", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let id = orch.execute("five", Map::new()).unwrap();
                assert!(orch.wait(&id).await.unwrap().status == plexus_workflow::WorkflowStatus::Completed);
            })
        })
    });
    c.bench_function("exec_5step_persisted", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let exec = daemon0.start("five", Map::new(), Origin::default()).await.unwrap();
                assert!(exec.wait().await.status == plexus_workflow::WorkflowStatus::Completed);
            })
        })
    });

    // The same on PostgreSQL.
    let url = plexus_daemon::testing::durable_server().and_then(|s| s.database()).unwrap_or_else(|e| panic!("{e}"));
    let pg = runtime.block_on(PgStore::connect(&url)).unwrap();
    let daemon_pg = runtime.block_on(async {
        Daemon::new(
            Arc::new(pg.clone()),
            host(dir.path()),
            Arc::new(SystemClock),
            tokio::runtime::Handle::current(),
            16,
            Metrics::default(),
        )
    });
    runtime.block_on(daemon_pg.register_workflow(CHAIN)).unwrap();
    let exec = runtime.block_on(daemon_pg.start("five", Map::new(), Origin::default())).unwrap();
    let id_pg = exec.id().to_owned();
    runtime.block_on(exec.wait());
    c.bench_function("pg_store_step_transition", |b| {
        b.iter(|| {
            record.attempts += 1;
            runtime.block_on(Store::update_step(&pg, &id_pg, 0, &record, None)).unwrap();
        })
    });
    c.bench_function("pg_exec_5step_persisted", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let exec = daemon_pg.start("five", Map::new(), Origin::default()).await.unwrap();
                assert!(exec.wait().await.status == plexus_workflow::WorkflowStatus::Completed);
            })
        })
    });

    // Over the API.
    let store = SqliteStore::open(&dir.path().join("api.db")).unwrap();
    let (addr, token, daemon) = runtime.block_on(async {
        let daemon = Daemon::new(
            Arc::new(store.clone()),
            host(dir.path()),
            Arc::new(SystemClock),
            tokio::runtime::Handle::current(),
            16,
            Metrics::default(),
        );
        daemon.register_workflow(CHAIN).await.unwrap();
        let app = router(ApiState::new(daemon.clone(), Schedules::new(daemon.clone()), "bench-token"), 1 << 20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, "bench-token".to_owned(), daemon)
    });
    const N: usize = 100;
    const CLIENTS: usize = 8;
    let mut group = c.benchmark_group("api");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.bench_function("api_100_executions", |b| {
        b.iter_custom(|iters| {
            let token = token.clone();
            let store = store.clone();
            let daemon = daemon.clone();
            runtime.block_on(async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let completed_before = completed(&store);
                    let start = Instant::now();
                    let mut clients = Vec::new();
                    for c in 0..CLIENTS {
                        let token = token.clone();
                        let start = StartExecution {
                            workflow: "five".into(),
                            version: None,
                            transaction: None,
                            inputs: Map::new(),
                            priority: None,
                        };
                        let body = serde_json::to_string(&start).unwrap();
                        clients.push(tokio::spawn(async move {
                            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                            let (mut sender, conn) =
                                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                            tokio::spawn(conn);
                            let mut ids = Vec::new();
                            for _ in (c..N).step_by(CLIENTS) {
                                let (status, answer) = post(&mut sender, &token, "/v1/executions", &body).await;
                                assert_eq!(status, 202);
                                let started: Started = serde_json::from_slice(&answer).unwrap();
                                assert_eq!(started.workflow_id, "five");
                                ids.push(started.execution_id);
                            }
                            ids
                        }));
                    }
                    // Wait for each execution's end (the daemon's live handle
                    // resolves once its last transition is committed).
                    for client in clients {
                        for id in client.await.unwrap() {
                            if let Some(exec) = daemon.live(&id) {
                                exec.wait().await;
                            }
                        }
                    }
                    total += start.elapsed();
                    assert_eq!(completed(&store), completed_before + N as u64, "every execution completed");
                }
                total
            })
        })
    });
    group.finish();
}

/// Completed executions so far (a direct read of the store).
fn completed(store: &SqliteStore) -> u64 {
    store
        .execution_counts()
        .unwrap()
        .into_iter()
        .find(|(s, _)| *s == plexus_workflow::WorkflowStatus::Completed)
        .map_or(0, |(_, n)| n)
}

criterion_group!(benches, bench);
criterion_main!(benches);
