//! Artifacts (data by reference) in a real daemon: 100 MiB written by a
//! native step (in a worker process) and read by a sandboxed WASM step,
//! with the daemon's peak memory well under the artifact's size; the main
//! pipeline moving its rows as artifacts, its execution record measured
//! against the same pipeline passing them by value; the CLI listing and
//! downloading an execution's artifacts.

use crate::daemon::plugins_dir;
use crate::daemon_support::RunningDaemon;
use crate::support::repo_root;
use plexus_client::status::WorkflowStatus;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The daemon's peak resident set so far (`VmHWM`), bytes.
fn peak_rss(d: &RunningDaemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

const BIG: &str = "id: big
inputs:
  bytes: { type: integer }
steps:
  - { id: fill, plugin_id: plexus.echo.native, method_name: fill, parameters: { name: blob, bytes: \"${{ inputs.bytes }}\", seed: 7 } }
  - { id: digest, plugin_id: plexus.echo.wasm, method_name: digest, dependencies: [fill], parameters: { artifact: \"${{ steps.fill.artifacts.blob }}\" } }
";

fn run_big(d: &RunningDaemon, bytes: u64) -> plexus_client::Execution {
    let inputs: Map<String, Value> = json!({"bytes": bytes}).as_object().unwrap().clone();
    let id = d.client().start("big", inputs).unwrap().execution_id;
    let done = d.wait_for(&id, Duration::from_secs(300));
    assert_eq!(done.status.status, WorkflowStatus::Completed, "{:?}\n{}", done.status.steps, d.log());
    done
}

#[test]
fn a_100_mib_artifact_goes_from_a_native_step_to_a_wasm_step_without_the_daemon_holding_it() {
    let plugins = plugins_dir(&["echo-native", "echo-wasm"]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    d.register(BIG);
    // Once small: every plugin loaded, a WASM instance made, the code paths warm.
    run_big(&d, 1 << 20);
    let before = peak_rss(&d);

    let size: u64 = 100 << 20;
    let done = run_big(&d, size);
    let after = peak_rss(&d);
    let fill = done.status.step("fill").unwrap();
    let reference = &fill.artifacts["blob"];
    assert_eq!(reference.bytes, size);
    // The WASM step read every byte through the host, and got the same content.
    let digest = done.status.step("digest").unwrap().output.clone().unwrap();
    assert_eq!(digest, json!({"sha256": reference.artifact, "bytes": size}));
    // The record holds references: kilobytes, not the 100 MiB.
    let (_, record) = d.raw("GET", &format!("/v1/executions/{}", done.status.execution_id), Some(&d.token), None);
    assert!(record.len() < 16 << 10, "execution record of {} bytes", record.len());
    let grew = after.saturating_sub(before);
    eprintln!("daemon peak RSS {} MiB before, {} MiB after a {} MiB artifact", before >> 20, after >> 20, size >> 20);
    assert!(grew < 48 << 20, "the daemon's peak memory grew by {} MiB moving a 100 MiB artifact", grew >> 20);
    // The bytes are stored once, under their digest, beside the state database.
    let hex = reference.artifact.strip_prefix("sha256:").unwrap();
    let blob = data.path().join("artifacts").join("sha256").join(&hex[..2]).join(&hex[2..]);
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), size);
}

/// `examples/pipeline.yaml` as it was before artifacts: the rows in the step outputs.
fn by_value(pipeline: &str) -> String {
    let text = pipeline
        .replace("id: weather-pipeline", "id: weather-pipeline-by-value")
        .replace("steps.load.artifacts.rows", "steps.load.output.rows")
        .replace("steps.validate.artifacts.rows", "steps.validate.output.rows")
        .replace("steps.normalize.artifacts.rows", "steps.normalize.output.rows");
    text.lines().filter(|l| l.trim() != "as_artifact: rows").collect::<Vec<_>>().join("\n")
}

#[test]
fn the_pipeline_moves_its_rows_as_artifacts_and_its_record_shrinks() {
    let plugins = plugins_dir(&["csv-native", "validator-wasm", "transformer-wasm"]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    let pipeline = std::fs::read_to_string(repo_root().join("examples/pipeline.yaml")).unwrap();
    d.register(&pipeline);
    d.register(&by_value(&pipeline));
    let csv = repo_root().join("examples/data/seattle-weather.csv");
    let run = |workflow: &str, out: &str| {
        let out = data.path().join(out);
        let inputs = json!({"input": csv, "output": out}).as_object().unwrap().clone();
        let id = d.client().start(workflow, inputs).unwrap().execution_id;
        let done = d.wait_for(&id, Duration::from_secs(120));
        assert_eq!(done.status.status, WorkflowStatus::Completed, "{:?}\n{}", done.status.steps, d.log());
        let (_, record) = d.raw("GET", &format!("/v1/executions/{id}"), Some(&d.token), None);
        (id, record.len(), std::fs::read_to_string(out).unwrap())
    };
    let (id, by_ref, csv_by_ref) = run("weather-pipeline", "by-ref.csv");
    let (_, by_value, csv_by_value) = run("weather-pipeline-by-value", "by-value.csv");
    eprintln!("execution record: {by_value} bytes with the rows by value, {by_ref} bytes by reference");
    assert_eq!(csv_by_ref, csv_by_value, "the same result either way");
    assert_eq!(csv_by_ref.lines().count(), 1462);
    assert!(by_ref * 50 < by_value, "{by_ref} bytes by reference, {by_value} by value");

    // The CLI lists them: load's rows and validate's valid rows are one content.
    let listed = d.cli(&["exec", "artifacts", &id, "--json"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let artifacts = listed["artifacts"].as_array().unwrap();
    let steps: Vec<&str> = artifacts.iter().map(|a| a["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["load", "validate", "normalize"]);
    assert_eq!(artifacts[0]["artifact"], artifacts[1]["artifact"], "all rows valid: the same content");
    assert_ne!(artifacts[0]["artifact"], artifacts[2]["artifact"]);
    let blobs = walk(&data.path().join("artifacts").join("sha256"));
    assert_eq!(blobs, 2, "stored once per content");
    // And download one (by name: the newest `rows`, normalize's), streamed to a file.
    let file = data.path().join("rows.jsonl");
    let out = d.cli(&["exec", "artifact", &id, "rows", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = std::fs::read_to_string(&file).unwrap();
    assert_eq!(rows.len() as u64, artifacts[2]["bytes"].as_u64().unwrap());
    let first: Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    assert_eq!(first["date"], "2012/01/01");
    assert!((0.0..=1.0).contains(&first["temp_max"].as_f64().unwrap()), "normalised: {first}");
    // A digest the execution does not hold is not served, nor a malformed one.
    let other = format!("/v1/executions/{id}/artifacts/sha256:{}", "0".repeat(64));
    assert_eq!(d.raw("GET", &other, Some(&d.token), None).0, 404);
    let bad = format!("/v1/executions/{id}/artifacts/sha256:..%2F..%2Fstate.db");
    assert_eq!(d.raw("GET", &bad, Some(&d.token), None).0, 400);
}

/// How many files are under `dir`.
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| if e.file_type().unwrap().is_dir() { walk(&e.path()) } else { 1 })
        .sum()
}
