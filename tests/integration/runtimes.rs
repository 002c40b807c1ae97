//! The same plugin source through both runtimes: same outputs, same errors,
//! same use of host services.

use crate::support::Fixture;
use plexus_host::{CallError, CallOptions, SharedState};
use plexus_sdk::ErrorKind;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

fn mixed() -> (Fixture, plexus_host::Host) {
    let fx = Fixture::new();
    fx.echo("echo-native", "native", "");
    fx.echo("echo-wasm", "wasm", "");
    let host = fx.host();
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    (fx, host)
}

const KINDS: [&str; 2] = ["native", "wasm"];

#[test]
fn both_kinds_load_with_the_same_metadata_but_their_id() {
    let (_fx, host) = mixed();
    let native = host.plugin("plexus.echo.native").unwrap().runtime.metadata().clone();
    let wasm = host.plugin("plexus.echo.wasm").unwrap().runtime.metadata().clone();
    assert_eq!(host.plugin("plexus.echo.wasm").unwrap().manifest.kind, plexus_host::PluginKind::Wasm);
    assert_eq!(native.operations, wasm.operations);
    assert_eq!((&native.version, &native.capabilities), (&wasm.version, &wasm.capabilities));
    let echo = native.operation("sleep").unwrap();
    assert_eq!(echo.params_schema.as_ref().unwrap()["properties"]["ms"]["type"], "integer");
}

#[test]
fn same_source_gives_same_results_through_both_runtimes() {
    let (_fx, host) = mixed();
    let cases: Vec<(&str, Value)> = vec![
        ("echo", json!({"nested": {"list": [1, 2.5, "x", null, true]}})),
        ("echo", json!("plain string")),
        ("noop", Value::Null),
        ("sleep", json!({"ms": 1})),
        ("fail", json!({"kind": "not-found", "message": "nothing here", "retryable": true})),
        ("fail", json!({"kind": "invalid-input"})),
        // Contract 0.2's kind crosses both transports.
        ("fail", json!({"kind": "cancelled", "message": "asked to stop"})),
        ("sleep", json!({"ms": "soon"})),
        ("count", json!({"steps": 3})),
    ];
    for (op, params) in cases {
        let results: Vec<Result<Value, (ErrorKind, String, bool)>> = KINDS
            .iter()
            .map(|kind| match host.call(&format!("plexus.echo.{kind}"), op, params.clone(), CallOptions::default()) {
                Ok(out) => Ok(out.output),
                Err(CallError::Plugin { error, .. }) => Err((error.kind, error.message, error.retryable)),
                Err(other) => panic!("{op} on {kind}: unexpected {other}"),
            })
            .collect();
        assert_eq!(results[0], results[1], "{op} {params}");
        if params["kind"] == "cancelled" {
            assert!(
                matches!(&results[0], Err((ErrorKind::Cancelled, m, false)) if m == "asked to stop"),
                "{results:?}"
            );
        }
    }
}

#[test]
fn plugin_errors_keep_kind_message_and_retryable_flag() {
    let (_fx, host) = mixed();
    for kind in KINDS {
        let err = host
            .call(
                &format!("plexus.echo.{kind}"),
                "fail",
                json!({"kind": "failed", "message": "boom", "retryable": true}),
                CallOptions::default(),
            )
            .unwrap_err();
        let CallError::Plugin { error, plugin } = &err else { panic!("{err}") };
        assert_eq!(plugin, &format!("plexus.echo.{kind}"));
        assert_eq!((error.kind, error.message.as_str(), error.retryable), (ErrorKind::Failed, "boom", true));
        assert!(err.is_retryable());
    }
}

#[test]
fn host_services_state_progress_and_metrics_work_through_both_runtimes() {
    let (_fx, host) = mixed();
    for kind in KINDS {
        let state = SharedState::default();
        state.set("visits", json!(41));
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let options = CallOptions {
            state: state.clone(),
            progress: Some(Arc::new(move |f, m: &str| sink.lock().unwrap().push((f, m.to_owned())))),
            ..CallOptions::default()
        };
        let out =
            host.call(&format!("plexus.echo.{kind}"), "count", json!({"key": "visits", "steps": 4}), options).unwrap();
        assert_eq!(out.output, json!({"before": 41, "after": 42}), "{kind}");
        assert_eq!(out.metrics, vec![("after".to_owned(), 42.0)], "{kind}");
        assert_eq!(state.get("visits"), Some(json!(42)), "{kind}");
        let reports = reports.lock().unwrap();
        assert_eq!(reports.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0.25, 0.5, 0.75, 1.0], "{kind}");
        assert_eq!(reports[3].1, "step 4 of 4");
    }
}

#[test]
fn unknown_plugins_and_operations_are_refused_before_calling() {
    let (_fx, host) = mixed();
    assert!(matches!(
        host.call("nope", "echo", Value::Null, CallOptions::default()),
        Err(CallError::PluginNotFound(_))
    ));
    for kind in KINDS {
        let err = host.call(&format!("plexus.echo.{kind}"), "nope", Value::Null, CallOptions::default()).unwrap_err();
        assert!(matches!(err, CallError::OperationNotFound { .. }), "{err}");
    }
}

#[test]
fn the_plugin_configuration_and_execution_context_reach_the_plugin() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "[config]\ngreeting = \"hi\"\n");
    let host = fx.host();
    let plugin = host.plugin("plexus.echo.wasm").unwrap();
    assert_eq!(plugin.manifest.config, json!({"greeting": "hi"}));
}

#[test]
fn compiled_components_are_cached_and_a_corrupt_entry_is_recompiled() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // A cache others could write would let them plant native code: the host tightens it.
        std::fs::set_permissions(fx.cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    assert!(fx.host().plugin("plexus.echo.wasm").is_some());
    let entries: Vec<_> = std::fs::read_dir(fx.cache.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 2, "one entry and the cache's key: {entries:?}");
    let entries: Vec<_> = entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(fx.cache.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "cache directory must not be writable by others, is {mode:o}");
    }
    // Second start: served from the cache.
    assert!(fx.host().plugin("plexus.echo.wasm").is_some());
    // A damaged entry is ignored and replaced, not trusted.
    std::fs::write(&entries[0], b"garbage").unwrap();
    let host = fx.host();
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    assert_eq!(host.call("plexus.echo.wasm", "echo", json!(1), CallOptions::default()).unwrap().output, json!(1));
    assert!(std::fs::metadata(&entries[0]).unwrap().len() > 1000);
}
