//! The seed systems' own workflow files (`examples/seeds/`: QtForge,
//! Codomyrmex, the project orchestrator), run end to end through `plexus
//! run` on the real dataset, their modules and factories mapped onto the
//! example plugins by aliases.

use crate::support::{Fixture, plexus_in, repo_root};
use plexus_host::Resolved;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// A working folder: `examples` (the repository's) and an empty `target`.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo_root().join("examples"), dir.path().join("examples")).unwrap();
    std::fs::create_dir(dir.path().join("target")).unwrap();
    dir
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The rows of examples/data/seattle-weather.csv, read here, independently of the plugins.
fn weather() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(repo_root().join("examples/data/seattle-weather.csv")).unwrap();
    text.lines().skip(1).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

fn data_rows(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count() - 1
}

const CODOMYRMEX_ALIASES: [&str; 6] = [
    "--alias",
    "data_io=plexus.csv",
    "--alias",
    "data_validation=plexus.validator",
    "--alias",
    "data_analysis=plexus.transformer",
];

#[test]
fn qtforge_s_data_processing_json_runs_as_written() {
    let dir = workdir();
    let run = plexus_in(dir.path(), &["run", "examples/seeds/qtforge/data-processing.json"], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let rainy = weather().iter().filter(|r| r[5] == "rain").count();
    assert!(rainy > 0);
    assert_eq!(data_rows(&dir.path().join("target/qtforge-rainy-days.csv")), rainy);
}

#[test]
fn codomyrmex_s_config_plans_runs_and_writes_its_results_and_log_where_asked() {
    let dir = workdir();
    let config = "examples/seeds/codomyrmex/config.yaml";
    let mut args = vec!["workflow", "plan", config];
    args.extend(CODOMYRMEX_ALIASES);
    let plan = plexus_in(dir.path(), &args, &[]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("stages: [[task1], [task2, task3], [task4]]\n"),
        "{}",
        text(&plan)
    );
    args.push("--json");
    let plan: Value = serde_json::from_slice(&plexus_in(dir.path(), &args, &[]).stdout).unwrap();
    assert_eq!(plan["stages"], serde_json::json!([["task1"], ["task2", "task3"], ["task4"]]));
    // Its config.json, the same config in JSON, plans the same.
    args[2] = "examples/seeds/codomyrmex/config.json";
    let json_plan: Value = serde_json::from_slice(&plexus_in(dir.path(), &args, &[]).stdout).unwrap();
    assert_eq!(json_plan, plan);
    // Without the aliases, each unmapped module is named.
    let unmapped = plexus_in(dir.path(), &["workflow", "validate", config], &[]);
    assert_eq!(unmapped.status.code(), Some(1));
    assert!(text(&unmapped).contains("dag.tasks[0].module: unknown plugin `data_io`"), "{}", text(&unmapped));

    let mut args = vec!["run", config, "--output", "out/results.json", "--log-file", "logs/run.log"];
    args.extend(CODOMYRMEX_ALIASES);
    let run = plexus_in(dir.path(), &args, &[("LOG_LEVEL", "DEBUG"), ("MAX_PARALLEL_TASKS", "1")]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/results.json")).unwrap()).unwrap();
    assert_eq!(results["status"], "completed");
    let report = &results["steps"].as_array().unwrap().iter().find(|s| s["id"] == "task4").unwrap()["output"];
    let rows = weather();
    assert_eq!(report["rows_checked"], rows.len());
    assert_eq!(report["invalid_rows"], 0);
    for kind in ["rain", "sun", "fog"] {
        let of_kind: Vec<f64> = rows.iter().filter(|r| r[5] == kind).map(|r| r[1].parse().unwrap()).collect();
        let group = &report["precipitation_by_weather"][kind];
        assert_eq!(group["count"], of_kind.len(), "{kind}");
        let mean = of_kind.iter().sum::<f64>() / of_kind.len() as f64;
        assert!((group["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{kind}");
    }
    // MAX_PARALLEL_TASKS=1: the two middle tasks did not overlap.
    let span = |id: &str| {
        let s = results["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap();
        (s["started_at_ms"].as_u64().unwrap(), s["ended_at_ms"].as_u64().unwrap())
    };
    let ((a0, a1), (b0, b1)) = (span("task2"), span("task3"));
    assert!(a1 <= b0 || b1 <= a0, "task2 {a0}..{a1} and task3 {b0}..{b1} overlapped");
    // LOG_LEVEL=DEBUG: the log file has the run's debug lines, without colours.
    let log = std::fs::read_to_string(dir.path().join("logs/run.log")).unwrap();
    assert!(log.contains("DEBUG") && log.contains("step completed") && !log.contains('\u{1b}'), "{log}");

    // WORKFLOW_TIMEOUT (seconds) bounds the run; a bad value is refused by name.
    let mut args = vec!["run", config];
    args.extend(CODOMYRMEX_ALIASES);
    let late = plexus_in(dir.path(), &args, &[("WORKFLOW_TIMEOUT", "0.001"), ("LOG_LEVEL", "ERROR")]);
    assert_eq!(late.status.code(), Some(8), "{}", text(&late));
    let bad = plexus_in(dir.path(), &args, &[("MAX_PARALLEL_TASKS", "0")]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("MAX_PARALLEL_TASKS `0`"), "{}", text(&bad));
}

#[test]
fn the_project_orchestrator_s_content_pipeline_passes_context_from_step_to_step() {
    let dir = workdir();
    let args = [
        "run",
        "examples/seeds/factories/content_pipeline.yaml",
        "--json",
        "--alias",
        "data=plexus.csv",
        "--alias",
        "processing=plexus.transformer",
    ];
    let run = plexus_in(dir.path(), &args, &[]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let results: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(results["workflow_id"], "content_pipeline");
    let sunny: Vec<f64> = weather().iter().filter(|r| r[5] == "sun").map(|r| r[2].parse().unwrap()).collect();
    assert_eq!(data_rows(&dir.path().join("target/content-pipeline-sunny-days.csv")), sunny.len());
    let summary = &results["steps"].as_array().unwrap().iter().find(|s| s["id"] == "summarize").unwrap()["output"];
    assert_eq!(summary["count"], sunny.len());
    let mean = sunny.iter().sum::<f64>() / sunny.len() as f64;
    assert!((summary["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    // The aliases may come from the environment too.
    let env = [("PLEXUS_ALIASES", "data=plexus.csv,processing=plexus.transformer")];
    let run = plexus_in(dir.path(), &["run", "examples/seeds/factories/content_pipeline.yaml"], &env);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
}

#[test]
fn plugins_declare_aliases_in_their_manifests_and_a_shared_alias_is_ambiguous() {
    let fx = Fixture::new();
    fx.echo("native", "native", "aliases = [\"echo\", \"shared\"]");
    fx.echo("wasm", "wasm", "aliases = [\"shared\"]");
    fx.folder(
        "bad",
        "id = \"x\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"x.wasm\"\naliases = [\"no spaces\"]\n",
    );
    let host = fx.host();
    assert_eq!(host.resolve("echo"), Resolved::Plugin("plexus.echo.native"));
    assert_eq!(host.resolve("plexus.echo.wasm"), Resolved::Plugin("plexus.echo.wasm"));
    assert_eq!(host.resolve("shared"), Resolved::Ambiguous(vec!["plexus.echo.native", "plexus.echo.wasm"]));
    assert_eq!(host.resolve("nothing"), Resolved::Unknown);
    // What a cluster node advertises: the ids and the aliases that resolve (not the ambiguous one).
    assert_eq!(host.callable_names(), ["echo", "plexus.echo.native", "plexus.echo.wasm"]);
    let bad = host.load_errors().iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(bad.contains("aliases: `no spaces`"), "{bad}");

    // In a workflow, an ambiguous alias is a problem naming both plugins.
    let file = fx.plugins.path().join("w.yaml");
    std::fs::write(&file, "id: w\nsteps:\n  - { id: a, plugin_id: shared, operation: echo }\n  - { id: b, plugin_id: echo, operation: echo }\n").unwrap();
    let problems = match plexus_workflow::load_file(&file, Some(&host)) {
        Ok(_) => panic!("an ambiguous alias validated"),
        Err(invalid) => invalid.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("`shared` is an alias of several plugins (plexus.echo.native, plexus.echo.wasm)"),
        "{problems:#?}"
    );
}
