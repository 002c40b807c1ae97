//! The example workflows, run end to end through `plexus run` on the
//! real dataset, with the example plugins built from source.

use crate::support::{built_plugins, component_cache, plexus_in, repo_root};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// `plexus ARGS` in the repository, over the built example plugins.
fn plexus(args: &[&str]) -> Output {
    plexus_in(&repo_root(), args, &[])
}

fn results(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn step<'a>(results: &'a Value, id: &str) -> &'a Value {
    results["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}"))
}

#[test]
fn the_main_pipeline_normalises_every_row_of_the_real_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("normalized.csv");
    let json = tmp.path().join("results.json");
    let run = plexus(&[
        "run",
        "examples/pipeline.yaml",
        "--input",
        &format!("output={}", output.display()),
        "--output",
        json.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let summary = String::from_utf8_lossy(&run.stdout);
    assert!(summary.starts_with("STEP") && summary.contains("workflow weather-pipeline completed"), "{summary}");
    // The workflow's outputs close the summary.
    assert!(summary.contains("outputs:\n  rows_loaded: 1461\n"), "{summary}");
    // Metrics the plugins reported are in the steps' notes and records.
    assert!(summary.lines().any(|l| l.starts_with("load ") && l.ends_with("rows=1461")), "{summary}");

    // The output file: a header and 1,461 rows, every normalised value in [0, 1].
    let mut reader = csv_rows(&output);
    let header = reader.remove(0);
    assert_eq!(header, ["date", "precipitation", "temp_max", "temp_min", "wind", "weather"]);
    assert_eq!(reader.len(), 1461);
    for (n, row) in reader.iter().enumerate() {
        for col in 1..=4 {
            let x: f64 = row[col].parse().unwrap_or_else(|_| panic!("row {n} col {col}: {:?}", row[col]));
            assert!((0.0..=1.0).contains(&x), "row {n} column {}: {x}", header[col]);
        }
    }
    // Each normalised column reaches both ends of the range.
    for col in 1..=4 {
        let xs: Vec<f64> = reader.iter().map(|r| r[col].parse().unwrap()).collect();
        assert_eq!(xs.iter().cloned().fold(f64::INFINITY, f64::min), 0.0);
        assert_eq!(xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max), 1.0);
    }
    // First row of the source: 2012/01/01, temp_max 12.8 within [-1.6, 35.6].
    assert_eq!(reader[0][0], "2012/01/01");
    let t: f64 = reader[0][2].parse().unwrap();
    assert!((t - (12.8 + 1.6) / (35.6 + 1.6)).abs() < 1e-9, "{t}");

    let r = results(&json);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["outputs"]["rows_loaded"], 1461);
    assert_eq!(r["outputs"]["invalid_rows"], 0);
    assert_eq!(r["outputs"]["rows_saved"], 1461);
    assert_eq!(r["outputs"]["ranges"]["temp_max"]["max"], 35.6);
    assert_eq!(step(&r, "load")["metrics"]["rows"], 1461.0);
    for id in ["load", "validate", "normalize", "save"] {
        assert_eq!(step(&r, id)["status"], "completed", "{id}");
        assert_eq!(step(&r, id)["attempts"], 1);
    }
    // What each step used: WASM steps their CPU time and linear memory's
    // high-water mark (at least a 64 KiB page); the in-process native one its CPU time.
    let usage = |id: &str| step(&r, id)["usage"].clone();
    assert!(usage("validate")["peak_memory_bytes"].as_u64().unwrap() >= 64 * 1024, "{}", usage("validate"));
    assert!(usage("validate")["cpu_ms"].as_f64().unwrap() > 0.0, "{}", usage("validate"));
    assert!(usage("load")["cpu_ms"].as_f64().unwrap() > 0.0, "{}", usage("load"));
    assert!(usage("load").get("peak_memory_bytes").is_none(), "{}", usage("load"));
}

#[test]
fn a_native_step_in_a_worker_process_records_the_worker_s_cpu_time_and_peak_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let output = format!("output={}", tmp.path().join("out.csv").display());
    let run = plexus(&["run", "examples/pipeline.yaml", "--isolation", "process", "--input", &output, "--json"]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let r: Value = serde_json::from_slice(&run.stdout).unwrap();
    let usage = step(&r, "load")["usage"].clone();
    // A worker process holds more than a megabyte resident; it reports its own CPU time.
    assert!(usage["peak_memory_bytes"].as_u64().unwrap() > 1 << 20, "{usage}");
    assert!(usage["cpu_ms"].as_f64().unwrap() >= 0.0, "{usage}");
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

/// Per month (`YYYY-MM`) of examples/data/seattle-weather.csv: (days, precipitation sum),
/// computed here, independently of the plugins.
fn monthly_precipitation() -> std::collections::BTreeMap<String, (u32, f64)> {
    let rows = csv_rows(&repo_root().join("examples/data/seattle-weather.csv"));
    let mut months = std::collections::BTreeMap::new();
    for row in &rows[1..] {
        let month = row[0][..7].replace('/', "-");
        let entry = months.entry(month).or_insert((0u32, 0f64));
        entry.0 += 1;
        entry.1 += row[1].parse::<f64>().unwrap();
    }
    months
}

#[test]
fn the_climate_example_runs_python_javascript_native_and_rust_wasm_steps_together() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("monthly.csv");
    let json = tmp.path().join("results.json");
    let run = plexus(&[
        "run",
        "examples/climate.yaml",
        "--input",
        &format!("output={}", output.display()),
        "--input",
        "top=3",
        "--output",
        json.to_str().unwrap(),
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let r = results(&json);
    assert_eq!(r["status"], "completed", "{r:#}");
    let expected = monthly_precipitation();
    // Python: one row per month, with the month's days and precipitation sum.
    let monthly = step(&r, "monthly");
    let rows = monthly["output"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for row in rows {
        let (days, sum) = expected[row["month"].as_str().unwrap()];
        assert_eq!(row["days"], days, "{row}");
        assert!((row["precipitation_sum"].as_f64().unwrap() - sum).abs() < 1e-6, "{row} vs {sum}");
    }
    // JavaScript: the three wettest months, wettest first.
    let mut by_rain: Vec<(&String, f64)> = expected.iter().map(|(m, (_, sum))| (m, *sum)).collect();
    by_rain.sort_by(|a, b| b.1.total_cmp(&a.1));
    let wettest: Vec<&str> =
        r["outputs"]["wettest"].as_array().unwrap().iter().map(|row| row["month"].as_str().unwrap()).collect();
    let want: Vec<&str> = by_rain[..3].iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(wettest, want);
    let report = r["outputs"]["report"].as_str().unwrap();
    assert!(report.contains("Wettest months in Seattle"), "{report}");
    for month in &want {
        assert!(report.contains(month), "{month} missing from the report:\n{report}");
    }
    // Native Rust: the monthly table saved, a header and one line per month.
    let saved = csv_rows(&output);
    assert_eq!(saved.len(), expected.len() + 1);
    assert_eq!(saved[0][..3], ["month", "days", "precipitation_sum"]);
    // The workflow's outputs.
    assert_eq!(r["outputs"]["days"], 1461);
    assert_eq!(r["outputs"]["months"], expected.len());
}

#[test]
fn the_monthly_example_maps_one_item_per_month_of_the_real_data() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("monthly.json");
    let run = plexus(&["run", "examples/monthly.yaml", "--json", "--output", json.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let r = results(&json);
    assert_eq!((r["outputs"]["months"].clone(), r["outputs"]["days"].clone()), (48.into(), 1461.into()));
    let per_month = r["outputs"]["per_month"].as_array().unwrap();
    // Each item's count is its month's days, computed here from the CSV, in order.
    let expected: Vec<u64> = monthly_precipitation().values().map(|(days, _)| u64::from(*days)).collect();
    let counts: Vec<u64> = per_month.iter().map(|m| m["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, expected);
    // The hottest month's max is the dataset's.
    let rows = csv_rows(&repo_root().join("examples/data/seattle-weather.csv"));
    let max = rows[1..].iter().map(|r| r[2].parse::<f64>().unwrap()).fold(f64::MIN, f64::max);
    assert_eq!(r["outputs"]["hottest_month_max"].as_f64(), Some(max));
    let map = step(&r, "per_month");
    assert_eq!(map["progress"]["message"], "48 of 48 items");
}

#[test]
fn the_parallel_example_joins_three_branches() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("report.json");
    let run = plexus(&["run", "examples/parallel.yaml", "--json", "--output", json.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let r = results(&json);
    let printed: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(printed["execution_id"], r["execution_id"]);
    let report = &r["outputs"]["report"];
    assert_eq!(report["days"], 1461);
    let counts: u64 =
        report["temp_max_by_weather"].as_object().unwrap().values().map(|g| g["count"].as_u64().unwrap()).sum();
    assert_eq!(counts, 1461);
    assert_eq!(report["temp_max_by_weather"]["snow"]["count"], 23);
    assert_eq!(report["precipitation_by_weather"]["sun"]["count"], 714);
    // `--outputs-only`: the outputs object alone.
    let only = plexus(&["run", "examples/parallel.yaml", "--json", "--outputs-only"]);
    assert_eq!(only.status.code(), Some(0), "{}", String::from_utf8_lossy(&only.stderr));
    let outputs: Value = serde_json::from_slice(&only.stdout).unwrap();
    assert_eq!(
        outputs.as_object().unwrap().keys().collect::<Vec<_>>(),
        r["outputs"].as_object().unwrap().keys().collect::<Vec<_>>()
    );
    assert_eq!(outputs["report"]["days"], 1461);
    let windy = report["windy_days"].as_u64().unwrap();
    assert!(windy > 0 && windy < 1461);
    // The branches overlapped: each started before the others ended.
    let span =
        |id: &str| (step(&r, id)["started_at_ms"].as_u64().unwrap(), step(&r, id)["ended_at_ms"].as_u64().unwrap());
    let (t, p, w) = (span("temperature"), span("precipitation"), span("windy_days"));
    let load_end = span("load").1;
    assert!(t.0 >= load_end && p.0 >= load_end && w.0 >= load_end);
    assert!(span("report").0 >= t.1.max(p.1).max(w.1));
}

#[test]
fn the_robust_example_retries_tolerates_and_compensates() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("rainy.csv");
    let json = tmp.path().join("robust.json");
    let out_arg = format!("output={}", output.display());
    let run = plexus(&["run", "examples/robust.yaml", "--input", &out_arg, "--output", json.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(8), "failed and rolled back: {}", String::from_utf8_lossy(&run.stderr));
    let r = results(&json);
    assert_eq!(r["status"], "failed");
    assert_eq!(step(&r, "fetch_flaky")["attempts"], 3);
    assert_eq!(step(&r, "fetch_flaky")["status"], "completed");
    assert_eq!(step(&r, "enrich")["status"], "failed");
    assert_eq!(step(&r, "save")["status"], "completed");
    assert_eq!(step(&r, "publish")["status"], "failed");
    assert_eq!(r["compensations"][0]["step"], "save");
    assert_eq!(r["compensations"][0]["output"]["removed"], true);
    assert!(!output.exists(), "the compensation removed the saved file");

    // Without the failing step the same workflow completes and keeps its file.
    let run = plexus(&["run", "examples/robust.yaml", "--input", &out_arg, "--input", "publish_fails=false"]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stdout));
    let rows = csv_rows(&output);
    assert_eq!(rows.len() - 1, 259, "rainy days in the dataset");
}

#[test]
fn workflow_validate_plan_and_graph() {
    let tmp = tempfile::tempdir().unwrap();
    for example in ["examples/pipeline.yaml", "examples/parallel.yaml", "examples/robust.yaml"] {
        let v = plexus(&["workflow", "validate", example]);
        assert_eq!(v.status.code(), Some(0), "{example}: {}", String::from_utf8_lossy(&v.stderr));
    }
    let plan = plexus(&["workflow", "plan", "examples/parallel.yaml", "--json"]);
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        plan["stages"],
        serde_json::json!([["load"], ["temperature", "precipitation", "windy_days"], ["report"]])
    );
    let dot = plexus(&["workflow", "graph", "examples/parallel.yaml", "--format", "dot"]);
    assert!(String::from_utf8_lossy(&dot.stdout).contains("\"temperature\" -> \"report\";"));

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "id: bad\nsteps:\n  - id: a\n    plugin_id: plexus.csv\n    method_name: explode\n  - id: b\n    plugin_id: plexus.csv\n    method_name: load\n    dependencies: [nowhere]\n").unwrap();
    let v = plexus(&["workflow", "validate", bad.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&v.stderr);
    assert!(stderr.contains("bad.yaml:5: step `a`") && stderr.contains("explode"), "{stderr}");
    assert!(stderr.contains("bad.yaml:9: step `b`") && stderr.contains("nowhere"), "{stderr}");
    let run = plexus(&["run", bad.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "an invalid workflow does not run");
}

#[test]
fn ctrl_c_cancels_a_run_and_compensates_what_completed() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("saved.csv");
    let wf = tmp.path().join("slow.yaml");
    std::fs::write(
        &wf,
        format!(
            r#"id: slow
steps:
  - id: save
    plugin_id: plexus.csv
    method_name: save
    parameters: {{ path: "{0}", rows: [{{ a: 1 }}] }}
    compensate: {{ plugin_id: plexus.csv, method_name: remove, parameters: {{ path: "{0}" }} }}
  - id: wait
    plugin_id: plexus.echo.native
    method_name: sleep
    dependencies: [save]
    parameters: {{ ms: 30000 }}
"#,
            marker.display()
        ),
    )
    .unwrap();
    let json = tmp.path().join("results.json");
    let child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["run", wf.to_str().unwrap(), "--output", json.to_str().unwrap(), "--plugins-dir"])
        .arg(built_plugins())
        .env("PLEXUS_CACHE_DIR", component_cache())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first step has saved its file (loading every plugin may
    // first compile components), then interrupt.
    let started = std::time::Instant::now();
    while !marker.exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(180), "the run never saved its file");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let interrupted = std::time::Instant::now();
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(interrupted.elapsed() < std::time::Duration::from_secs(15), "cancel did not stop the sleeping step");
    let r = results(&json);
    assert_eq!(r["status"], "cancelled");
    assert_eq!(step(&r, "wait")["status"], "cancelled");
    assert_eq!(r["compensations"][0]["step"], "save");
    assert!(!marker.exists(), "the compensation removed the file");
}

#[test]
fn plexus_run_runs_sub_workflows_registered_with_with_and_inline() {
    let tmp = tempfile::tempdir().unwrap();
    let child = tmp.path().join("child.yaml");
    std::fs::write(
        &child,
        "id: child\ninputs:\n  word: {type: string}\nsteps:\n  \
         - {id: say, plugin_id: plexus.echo.native, method_name: echo, parameters: {said: \"${{ inputs.word }}\"}}\n\
         outputs:\n  said: \"${{ steps.say.output.said }}\"\n",
    )
    .unwrap();
    let parent = tmp.path().join("parent.yaml");
    std::fs::write(
        &parent,
        "id: parent\nexecution_mode: parallel\nsteps:\n  \
         - {id: first, workflow: child, parameters: {word: hello}}\n  \
         - id: second\n    parameters: {word: world}\n    workflow:\n      inputs: {word: {type: string}}\n      \
           steps: [{id: say, plugin_id: plexus.echo.wasm, method_name: echo, parameters: {said: \"${{ inputs.word }}\"}}]\n      \
           outputs: {said: \"${{ steps.say.output.said }}\"}\n\
         outputs:\n  both: \"${{ steps.first.output.outputs.said ~ ' ' ~ steps.second.output.outputs.said }}\"\n",
    )
    .unwrap();
    let (parent, child) = (parent.to_str().unwrap(), child.to_str().unwrap());
    let run = plexus(&["run", parent, "--with", child, "--json", "--outputs-only"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let outputs: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(outputs["both"], "hello world");
    // Without `--with`, the registered child is not known: the step fails and says how.
    let run = plexus(&["run", parent, "--json"]);
    assert!(!run.status.success());
    let results: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(step(&results, "first")["error"]["message"].as_str().unwrap().contains("--with FILE"), "{results}");
}
