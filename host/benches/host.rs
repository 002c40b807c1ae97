//! Speed of the plugin host (see README, "Speed"):
//!
//! * `native_noop_call`: one native no-op call with a small JSON context, on the caller's thread;
//! * `wasm_noop_call`: one WASM no-op call, including a fresh store and instance;
//! * `host_start_cached`: discovering and loading a folder of plugins (one native, one WASM)
//!   with the component cache warm — divide by two for the per-plugin figure.
//!
//! Run with `bash scripts/bench.sh` (builds the example plugins in release mode first).

use criterion::{Criterion, criterion_group, criterion_main};
use plexus_host::{CallServices, HostBuilder};
use plexus_sdk::ExecutionContext;
use std::hint::black_box;
use std::path::PathBuf;

fn plugins_dir() -> PathBuf {
    let dir = std::env::var_os("PLEXUS_BENCH_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    assert!(dir.join("echo-wasm/plugin.toml").exists(), "build the plugins first: bash scripts/build-plugins.sh");
    dir
}

fn bench(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let build = || HostBuilder::new().plugin_dir(plugins_dir()).cache_dir(cache.path()).build().unwrap();
    let host = build();
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());

    let exec = ExecutionContext {
        execution_id: "0190c7a4-bench".into(),
        workflow_id: Some("bench".into()),
        step_id: Some("noop".into()),
        attempt: 1,
        operation: "noop".into(),
        parameters: serde_json::json!({"input": "small", "n": 1}),
        ..ExecutionContext::default()
    };
    for (name, id) in [("native_noop_call", "plexus.echo.native"), ("wasm_noop_call", "plexus.echo.wasm")] {
        let services = CallServices::new(id, &exec.execution_id, Default::default(), Default::default());
        c.bench_function(name, |b| b.iter(|| black_box(host.call_with(black_box(&exec), &services, None).unwrap())));
    }
    c.bench_function("host_start_cached", |b| b.iter(|| black_box(build())));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);
