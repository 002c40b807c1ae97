//! Speed of the workflow engine (see README, "Speed"):
//!
//! * `validate_10k_random`: validating a 10,000-step workflow against the loaded plugins;
//! * `run_10k_{chain,fanout,random}`: executing 10,000 native no-op steps on a multi-threaded runtime (a chain, a wide
//!   fan-out, a random DAG with up to 3 dependencies per step) through the orchestrator;
//!   divide by 10,000 for the per-step overhead (the no-op call itself is `native_noop_call`
//!   in `benches/host.rs`);
//! * `run_10k_{chain,fanout,random}_workers`: the same with `plexus.echo.native` in worker processes
//!   (`isolation = "process"`; `max_parallel` workers, one call each at a time).
//!
//! * `run_5_chain`: executing a 5-step chain of the same no-op steps and
//!   waiting for its end, from outside the runtime: the Rust side of the
//!   Python API's overhead (`host/python/benches/execute.py` runs the same
//!   workflow through `import plexus`).
//!
//! It runs on the `plexus` binary's allocator (mimalloc), so it measures what
//! ships; the heap held per step is measured by `benches/memory.rs`.
//!
//! Run with `bash scripts/bench.sh` (builds the example plugins in release mode first).

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use plexus_workflow::{Orchestrator, WorkflowStatus, validate};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let host = common::host(cache.path());
    let docs = common::docs();

    c.bench_function("validate_10k_random", |b| b.iter(|| black_box(validate(&docs[2].1, Some(&host)).unwrap())));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let orch = runtime.block_on(async { Orchestrator::new(host.clone()) });
    orch.register(validate(&common::chain("run_5_chain", 5), Some(&host)).unwrap()).unwrap();
    c.bench_function("run_5_chain", |b| {
        b.iter(|| {
            let exec = orch.execute("run_5_chain", Default::default()).unwrap();
            let status = runtime.block_on(orch.wait(&exec)).unwrap();
            assert_eq!(status.status, WorkflowStatus::Completed);
            black_box(status.completed_steps)
        })
    });
    let workers = common::host_with_workers(cache.path());
    let orch_workers = runtime.block_on(async { Orchestrator::new(workers.clone()) });
    // The workflow ids are the names: each orchestrator registers them once.
    let runs = docs
        .iter()
        .map(|(name, doc)| (format!("run_10k_{name}"), &orch, &host, *name, doc))
        .chain(docs.iter().map(|(name, doc)| (format!("run_10k_{name}_workers"), &orch_workers, &workers, *name, doc)));
    for (bench, orch, host, name, doc) in runs {
        orch.register(validate(doc, Some(host)).unwrap()).unwrap();
        c.bench_function(&bench, |b| {
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
