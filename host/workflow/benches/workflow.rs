//! Speed and memory of the workflow engine (see README, "Speed"):
//!
//! * `validate_10k_random`: validating a 10,000-step workflow against the loaded plugins;
//! * `run_10k_{chain,fanout,random}`: executing 10,000 native no-op steps on a multi-threaded runtime (a chain, a wide
//!   fan-out, a random DAG with up to 3 dependencies per step) through the orchestrator;
//!   divide by 10,000 for the per-step overhead (the no-op call itself is `native_noop_call`
//!   in `benches/host.rs`);
//! * before the timings, the heap bytes held per pending step (a prepared workflow and a
//!   started-but-not-run execution record, counted by an instrumented allocator).
//!
//! Run with `bash scripts/bench.sh` (builds the example plugins in release mode first).

use criterion::{Criterion, criterion_group, criterion_main};
use plexus_host::HostBuilder;
use plexus_workflow::engine::{Execution, Prepared};
use plexus_workflow::source::Document;
use plexus_workflow::{Orchestrator, WorkflowStatus, validate};
use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const STEPS: usize = 10_000;

/// A 10,000-step workflow of `plexus.echo.native` no-op steps; `deps(i)` gives step i's dependencies.
fn workflow(name: &str, deps: impl Fn(usize) -> Vec<usize>) -> Document {
    let steps: Vec<Value> = (0..STEPS)
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

fn bench(c: &mut Criterion) {
    let plugins = std::env::var_os("PLEXUS_BENCH_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let cache = tempfile::tempdir().unwrap();
    let host = Arc::new(HostBuilder::new().plugin_dir(&plugins).cache_dir(cache.path()).build().unwrap());
    assert!(host.plugin("plexus.echo.native").is_some(), "build the plugins first: bash scripts/build-plugins.sh");

    let docs = [
        ("chain", workflow("chain", |i| if i == 0 { vec![] } else { vec![i - 1] })),
        ("fanout", workflow("fanout", |i| if i == 0 { vec![] } else { vec![0] })),
        ("random", workflow("random", random_deps)),
    ];

    // Memory held per pending step.
    let region = Region::new(GLOBAL);
    let valid = validate(&docs[2].1, Some(&host)).unwrap();
    let prepared = Prepared::new(valid);
    let exec = Execution::new("bench".into(), &prepared, Default::default());
    let held = region.change();
    let bytes = held.bytes_allocated as isize - held.bytes_deallocated as isize;
    println!("memory per pending step: {} bytes ({} steps, {} bytes held)", bytes / STEPS as isize, STEPS, bytes);
    drop((exec, prepared));

    c.bench_function("validate_10k_random", |b| b.iter(|| black_box(validate(&docs[2].1, Some(&host)).unwrap())));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let orch = runtime.block_on(async { Orchestrator::new(host.clone()) });
    for (name, doc) in &docs {
        orch.register(validate(doc, Some(&host)).unwrap()).unwrap();
        c.bench_function(&format!("run_10k_{name}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let exec = orch.execute(name, Default::default()).unwrap();
                    let status = orch.wait(&exec).await.unwrap();
                    assert_eq!(status.status, WorkflowStatus::Completed);
                    black_box(status.completed_steps)
                })
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
