//! Speed of the plugin host (see README, "Speed"):
//!
//! * `native_noop_call`: one native no-op call with a small JSON context, on the caller's thread;
//! * `wasm_noop_call`: one WASM no-op call, including a fresh store and instance;
//! * `wasm_noop_call_with_dir_grant`: the same with one granted directory (opened once at load,
//!   a preopen per call from that handle);
//! * `native_noop_call_worker`: the native no-op call in a worker process (`isolation =
//!   "process"`): the context over a Unix socket to the worker, the answer back;
//! * `wasm_echo_call` / `wasm_echo_call_reused`: a JSON echo of a small object into a fresh
//!   instance, and into an instance an earlier call left (`[instances] reuse = "plugin"`);
//! * `host_start_cached`: discovering and loading a folder of plugins (one native, one WASM)
//!   with the component cache warm — divide by two for the per-plugin figure.
//!
//! Run with `bash scripts/bench.sh` (builds the example plugins in release mode first).

use criterion::{Criterion, criterion_group, criterion_main};
use plexus_host::{CallServices, HostBuilder};
use plexus_sdk::ExecutionContext;
use std::hint::black_box;
use std::path::PathBuf;

/// The `plexus` binary's allocator: the benchmark measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The example plugins built by `scripts/build-plugins.sh`.
fn built_plugins() -> PathBuf {
    let dir = std::env::var_os("PLEXUS_BENCH_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    assert!(dir.join("echo-wasm/plugin.toml").exists(), "build the plugins first: bash scripts/build-plugins.sh");
    dir
}

/// A temporary plugins directory with the echo plugin of both kinds; with
/// `grant`, the WASM one is granted one directory (a preopen on every call).
fn plugins_dir(grant: bool) -> tempfile::TempDir {
    let built = built_plugins();
    let dir = tempfile::tempdir().unwrap();
    for kind in ["native", "wasm"] {
        let artifact = if kind == "native" { "libplexus_echo.so" } else { "plexus_echo.wasm" };
        let folder = dir.path().join(kind);
        std::fs::create_dir_all(&folder).unwrap();
        let mut manifest = format!(
            "id = \"plexus.echo.{kind}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"\nartifact = \"{}\"\n",
            built.join(format!("echo-{kind}")).join(artifact).display()
        );
        if grant && kind == "wasm" {
            manifest += &format!("[permissions]\ndirs = [{{ host = \"{}\", guest = \"/data\" }}]\n", folder.display());
        }
        std::fs::write(folder.join("plugin.toml"), manifest).unwrap();
    }
    dir
}

fn bench(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let exec = ExecutionContext {
        execution_id: "0190c7a4-bench".into(),
        workflow_id: Some("bench".into()),
        step_id: Some("noop".into()),
        attempt: 1,
        operation: "noop".into(),
        parameters: serde_json::json!({"input": "small", "n": 1}),
        ..ExecutionContext::default()
    };
    for (grant, suffix) in [(false, ""), (true, "_with_dir_grant")] {
        let plugins = plugins_dir(grant);
        let host = HostBuilder::new().plugin_dir(plugins.path()).cache_dir(cache.path()).build().unwrap();
        assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
        for (name, id) in [("native_noop_call", "plexus.echo.native"), ("wasm_noop_call", "plexus.echo.wasm")] {
            if grant && id.ends_with("native") {
                continue;
            }
            let services = CallServices::new(id, &exec.execution_id, Default::default(), Default::default());
            c.bench_function(&format!("{name}{suffix}"), |b| {
                b.iter(|| black_box(host.call_with(black_box(&exec), &services, None).unwrap()))
            });
        }
    }
    let plugins = plugins_dir(false);
    let workers = HostBuilder::new()
        .plugin_dir(plugins.path())
        .cache_dir(cache.path())
        .native_isolation(plexus_host::Isolation::Process)
        .worker_program(env!("CARGO_BIN_EXE_plexus-worker"))
        .build()
        .unwrap();
    assert!(workers.load_errors().is_empty(), "{:?}", workers.load_errors());
    let services = CallServices::new("plexus.echo.native", &exec.execution_id, Default::default(), Default::default());
    c.bench_function("native_noop_call_worker", |b| {
        b.iter(|| black_box(workers.call_with(black_box(&exec), &services, None).unwrap()))
    });
    drop(workers);
    let echo = ExecutionContext { operation: "echo".into(), ..exec.clone() };
    for (reuse, name) in [("call", "wasm_echo_call"), ("plugin", "wasm_echo_call_reused")] {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("echo-wasm");
        std::fs::create_dir_all(&folder).unwrap();
        let manifest = format!(
            "id = \"plexus.echo.wasm\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"{}\"\n\
             [instances]\nreuse = \"{reuse}\"\nmax_calls = 1000000\nmax_age_ms = 86400000\n",
            built_plugins().join("echo-wasm/plexus_echo.wasm").display()
        );
        std::fs::write(folder.join("plugin.toml"), manifest).unwrap();
        let host = HostBuilder::new().plugin_dir(dir.path()).cache_dir(cache.path()).build().unwrap();
        assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
        let services =
            CallServices::new("plexus.echo.wasm", &echo.execution_id, Default::default(), Default::default());
        assert_eq!(host.call_with(&echo, &services, None).unwrap().output, echo.parameters);
        c.bench_function(name, |b| b.iter(|| black_box(host.call_with(black_box(&echo), &services, None).unwrap())));
    }
    let build = || HostBuilder::new().plugin_dir(plugins.path()).cache_dir(cache.path()).build().unwrap();
    assert_eq!(build().plugins().count(), 2);
    c.bench_function("host_start_cached", |b| b.iter(|| black_box(build())));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);
