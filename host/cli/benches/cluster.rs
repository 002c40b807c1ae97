//! Executions per second of one, two and three `plexus daemon` processes on
//! one PostgreSQL (see README, "Cluster"): `cluster/executions_{1,2,3}_nodes`
//! submits 300 five-step executions of native no-op steps
//! (`plexus.echo.native`) over HTTP, round-robin to the nodes (8 client
//! threads), and is timed until the last one completed (read from the
//! database every 10 ms, by id). Each run prints the CPU the daemons, PostgreSQL and
//! the load generator used, in % of one core (this machine has two): on a
//! small machine the figure is CPU-bound, and more nodes share the same cores.
//!
//! The database is a throw-away server with PostgreSQL's durable defaults on
//! loopback, or the server at `$PLEXUS_BENCH_POSTGRES` (a base URL such as
//! `postgres://user:password@db:5432`; a database is created on it). Run with
//! `bash scripts/bench.sh` (builds the example plugins in release mode first),
//! or alone: `cargo bench -p plexus --bench cluster`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plexus_client::{Client, Listen};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHAIN: &str = "id: five
execution_mode: sequential
steps:
  - { id: s1, plugin_id: plexus.echo.native, method_name: noop }
  - { id: s2, plugin_id: plexus.echo.native, method_name: noop, dependencies: [s1] }
  - { id: s3, plugin_id: plexus.echo.native, method_name: noop, dependencies: [s2] }
  - { id: s4, plugin_id: plexus.echo.native, method_name: noop, dependencies: [s3] }
  - { id: s5, plugin_id: plexus.echo.native, method_name: noop, dependencies: [s4] }
";

/// Executions per measured run.
const N: usize = 300;
/// Concurrent client threads.
const CLIENTS: usize = 8;

fn plugins() -> PathBuf {
    std::env::var_os("PLEXUS_BENCH_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"))
}

/// A daemon process of the cluster.
struct Node {
    child: Child,
    client: Client,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn start_node(dir: &Path, i: usize, url: &str) -> Node {
    let data = dir.join(format!("node{i}"));
    std::fs::create_dir_all(&data).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["daemon", "--listen", "127.0.0.1:0", "--no-watch", "--workers", "16", "--state-db", url])
        .arg("--plugins-dir")
        .arg(plugins())
        .arg("--token-file")
        .arg(dir.join("token"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .env("PLEXUS_DATA_DIR", &data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let announced: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the daemon did not start ({e}): {}", data.join("daemon.log").display()));
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    let client = Client::new(Listen::parse(announced["listening"].as_str().unwrap()).unwrap(), token.trim()).unwrap();
    Node { child, client }
}

/// CPU time (user + system) of process `pid`, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = rest.get(11..13).into_iter().flatten().filter_map(|t| t.parse::<f64>().ok()).sum();
    ticks / 100.0
}

/// `pid` and its children's CPU time, seconds (PostgreSQL: the postmaster and its backends).
fn tree_cpu_seconds(pid: u32) -> f64 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    cpu_seconds(pid) + children.split_whitespace().filter_map(|c| c.parse().ok()).map(cpu_seconds).sum::<f64>()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let server = plexus_daemon::testing::durable_server().unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("cluster");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for nodes in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let url = server.database().unwrap();
        let cluster: Vec<Node> = (0..nodes).map(|i| start_node(dir.path(), i, &url)).collect();
        cluster[0].client.register_workflow(CHAIN).unwrap();
        let db = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        });
        // How many of `ids` completed (primary-key lookups: the poll stays cheap as the table grows).
        let completed = |ids: &[String]| -> usize {
            let row = runtime.block_on(
                db.query_one("SELECT COUNT(*) FROM executions WHERE id = ANY($1) AND status = 'completed'", &[&ids]),
            );
            row.unwrap().get::<_, i64>(0) as usize
        };
        let pids: Vec<u32> = cluster.iter().map(|n| n.child.id()).collect();
        let postmaster = server.postmaster_pid();
        let (mut cpu_daemons, mut cpu_pg, mut cpu_client, mut wall) = (0.0, 0.0, 0.0, 0.0);
        group.bench_function(format!("executions_{nodes}_nodes"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let daemons0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
                    let pg0 = postmaster.map_or(0.0, tree_cpu_seconds);
                    let me0 = cpu_seconds(std::process::id());
                    let start = Instant::now();
                    let ids: Vec<String> = std::thread::scope(|s| {
                        let threads: Vec<_> = (0..CLIENTS)
                            .map(|t| {
                                let cluster = &cluster;
                                s.spawn(move || {
                                    (t..N)
                                        .step_by(CLIENTS)
                                        .map(|i| {
                                            let node = &cluster[i % cluster.len()];
                                            node.client.start("five", Default::default()).unwrap().execution_id
                                        })
                                        .collect::<Vec<_>>()
                                })
                            })
                            .collect();
                        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
                    });
                    while completed(&ids) < N {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let elapsed = start.elapsed();
                    total += elapsed;
                    wall += elapsed.as_secs_f64();
                    cpu_daemons += pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - daemons0;
                    cpu_pg += postmaster.map_or(0.0, tree_cpu_seconds) - pg0;
                    cpu_client += cpu_seconds(std::process::id()) - me0;
                }
                total
            })
        });
        if wall > 0.0 {
            eprintln!(
                "cluster/executions_{nodes}_nodes: CPU daemons {:.0}%, PostgreSQL {:.0}%, load generator {:.0}% \
                 (of one core; {} cores here)",
                100.0 * cpu_daemons / wall,
                100.0 * cpu_pg / wall,
                100.0 * cpu_client / wall,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            );
        }
        drop(cluster);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
