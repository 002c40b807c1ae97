//! What the workflow benchmarks share: the example plugins' host and the
//! three 10,000-step workflows.

use plexus_host::{Host, HostBuilder};
use plexus_workflow::source::Document;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Steps per benchmark workflow.
pub const STEPS: usize = 10_000;

/// A host over the example plugins (release builds, `target/plugins`, or
/// `PLEXUS_BENCH_PLUGINS`), its component cache in `cache`.
pub fn host(cache: &Path) -> Arc<Host> {
    build(HostBuilder::new(), cache)
}

/// [`host`] with native plugins in worker processes (`isolation =
/// "process"`): the worker program is `$PLEXUS_WORKER_PROGRAM`, else the
/// release `plexus-worker` that `scripts/bench.sh` builds.
#[allow(dead_code)] // used by `workflow.rs`, not `memory.rs`
pub fn host_with_workers(cache: &Path) -> Arc<Host> {
    let program = std::env::var_os("PLEXUS_WORKER_PROGRAM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/plexus-worker"));
    assert!(program.exists(), "build the worker first: cargo build --release -p plexus-host --bin plexus-worker");
    let builder = HostBuilder::new().native_isolation(plexus_host::Isolation::Process).worker_program(program);
    build(builder, cache)
}

fn build(builder: HostBuilder, cache: &Path) -> Arc<Host> {
    let plugins = std::env::var_os("PLEXUS_BENCH_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let host = Arc::new(builder.plugin_dir(&plugins).cache_dir(cache).build().unwrap());
    assert!(host.plugin("plexus.echo.native").is_some(), "build the plugins first: bash scripts/build-plugins.sh");
    host
}

/// The chain, the fan-out and the random DAG, by name.
pub fn docs() -> [(&'static str, Document); 3] {
    [
        ("chain", workflow("chain", |i| if i == 0 { vec![] } else { vec![i - 1] })),
        ("fanout", workflow("fanout", |i| if i == 0 { vec![] } else { vec![0] })),
        ("random", workflow("random", random_deps)),
    ]
}

/// A 10,000-step workflow of `plexus.echo.native` no-op steps; `deps(i)` gives step i's dependencies.
fn workflow(name: &str, deps: impl Fn(usize) -> Vec<usize>) -> Document {
    workflow_of(name, STEPS, deps)
}

/// A chain of `steps` no-op steps called `name` (the Python API's benchmark
/// runs the same one: `host/python/benches/execute.py`).
#[allow(dead_code)] // used by `workflow.rs`, not `memory.rs`
pub fn chain(name: &str, steps: usize) -> Document {
    workflow_of(name, steps, |i| if i == 0 { vec![] } else { vec![i - 1] })
}

fn workflow_of(name: &str, count: usize, deps: impl Fn(usize) -> Vec<usize>) -> Document {
    let steps: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "id": format!("s{i}"),
                "plugin_id": "plexus.echo.native",
                "method_name": "noop",
                "dependencies": deps(i).into_iter().map(|d| format!("s{d}")).collect::<Vec<_>>(),
            })
        })
        .collect();
    let text = json!({"id": name, "execution_mode": "parallel", "steps": steps}).to_string();
    Document::parse(Path::new("bench.json"), &text).unwrap()
}

fn random_deps(i: usize) -> Vec<usize> {
    // A fixed pseudo-random DAG: up to three earlier steps.
    let mut rng = fastrand::Rng::with_seed(i as u64);
    if i == 0 {
        return Vec::new();
    }
    let mut deps: Vec<usize> = (0..rng.usize(0..=3)).map(|_| rng.usize(0..i)).collect();
    deps.sort_unstable();
    deps.dedup();
    deps
}
