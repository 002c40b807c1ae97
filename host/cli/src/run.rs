//! `plexus run`: run a workflow file to the end, with live progress.

use crate::Global;
use crate::workflow::load_valid_protecting;
use anyhow::Context as _;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use plexus_workflow::{ExecutionStatus, Orchestrator, StepRecord, StepStatus, WorkflowStatus};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit code: the workflow failed (its completed steps were compensated).
pub const FAILED: u8 = 8;
/// Exit code: the workflow failed and a compensation failed too.
pub const ROLLBACK_FAILED: u8 = 9;
/// Exit code: cancelled (Ctrl-C).
pub const CANCELLED: u8 = 130;

#[derive(Args)]
pub struct RunArgs {
    /// Workflow file (.yaml, .yml or .json).
    file: PathBuf,
    /// A workflow input, typed by its declaration (repeatable): --input path=data.csv --input limit=10.
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
    inputs: Vec<String>,
    /// Print the full results as JSON on stdout instead of the summary table.
    #[arg(long)]
    json: bool,
    /// Also write the full results as JSON to this file (its folder is created).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// With --json and --output: the workflow's `outputs` alone, not the whole execution.
    #[arg(long)]
    outputs_only: bool,
    /// Most steps running at once, whatever the workflow says. Default: $MAX_PARALLEL_TASKS
    /// (Codomyrmex's), else the workflow's `max_parallel`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_PARALLEL as i64))]
    max_parallel: Option<u32>,
    /// The workflow's overall timeout, whatever it says (e.g. 90s, 5m). Default: $WORKFLOW_TIMEOUT
    /// (Codomyrmex's, in seconds), else the workflow's `timeout`.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Keep the artifacts the steps write in this folder (a new or empty one, or
    /// one used so before: a content-addressed store, `sha256/<2 hex>/<62 hex>`).
    /// Default: a temporary folder in the data folder, removed when the run ends.
    #[arg(long, value_name = "DIR")]
    artifacts_dir: Option<PathBuf>,
    /// Also register this workflow file (repeatable): the workflows the run's
    /// sub-workflow steps (`workflow: <id>`) start. Inline ones need nothing.
    #[arg(long = "with", value_name = "FILE")]
    with: Vec<PathBuf>,
}

/// The largest `--max-parallel` / `$MAX_PARALLEL_TASKS`.
const MAX_PARALLEL: u32 = 100_000;

fn parse_timeout(text: &str) -> Result<Duration, String> {
    plexus_workflow::duration::parse_text(text, plexus_workflow::duration::MAX).map_err(|e| e.to_string())
}

/// `--max-parallel` / `--timeout`, else Codomyrmex's `MAX_PARALLEL_TASKS`
/// (steps) and `WORKFLOW_TIMEOUT` (seconds).
fn overrides(args: &RunArgs) -> anyhow::Result<(Option<usize>, Option<Duration>)> {
    let max_parallel = match (args.max_parallel, std::env::var("MAX_PARALLEL_TASKS")) {
        (Some(n), _) => Some(n),
        (None, Ok(text)) => {
            Some(text.trim().parse::<u32>().ok().filter(|n| (1..=MAX_PARALLEL).contains(n)).with_context(|| {
                format!("MAX_PARALLEL_TASKS `{text}`: expected a whole number from 1 to {MAX_PARALLEL}")
            })?)
        }
        (None, Err(_)) => None,
    };
    let timeout = match (args.timeout, std::env::var("WORKFLOW_TIMEOUT")) {
        (Some(d), _) => Some(d),
        (None, Ok(text)) => {
            let max = plexus_workflow::duration::MAX.as_secs_f64();
            let seconds =
                text.trim().parse::<f64>().ok().filter(|s| (0.0..=max).contains(s)).with_context(|| {
                    format!("WORKFLOW_TIMEOUT `{text}`: expected seconds, a number from 0 to {max}")
                })?;
            Some(Duration::from_secs_f64(seconds))
        }
        (None, Err(_)) => None,
    };
    Ok((max_parallel.map(|n| n as usize), timeout))
}

pub fn run(global: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (max_parallel, timeout) = overrides(&args)?;
    let secrets = crate::secret_source(global)?;
    // Chosen first: no WASM plugin's grant may reach it.
    let temporary = match &args.artifacts_dir {
        Some(_) => None,
        None => {
            let parent = plexus_daemon::config::data_dir().join("run");
            std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
            Some(tempfile::Builder::new().prefix("artifacts-").tempdir_in(&parent)?)
        }
    };
    let dir = args.artifacts_dir.as_deref().or(temporary.as_ref().map(tempfile::TempDir::path)).expect("one of them");
    let store = plexus_host::artifacts::BlobStore::open(dir)
        .with_context(|| format!("cannot open the artifact store {}", dir.display()))?;
    let (host, mut valid) = match load_valid_protecting(global, &args.file, &[dir])? {
        Ok(pair) => pair,
        Err(code) => return Ok(code),
    };
    let mut more = Vec::new();
    for file in &args.with {
        match plexus_workflow::load_file(file, Some(&host)) {
            Ok(valid) => more.push(valid),
            Err(invalid) => {
                crate::workflow::print_problems(&invalid);
                return Ok(ExitCode::from(crate::exit::ERROR));
            }
        }
    }
    if let Some(n) = max_parallel {
        valid.workflow.max_parallel = Some(n);
    }
    if let Some(t) = timeout {
        valid.workflow.timeout = Some(t);
    }
    let mut inputs = Map::new();
    for pair in &args.inputs {
        let (key, text) = pair.split_once('=').with_context(|| format!("--input {pair}: expected KEY=VALUE"))?;
        let value = match valid.workflow.inputs.get(key) {
            Some(spec) => spec.kind.from_text(text).map_err(|e| anyhow::anyhow!("--input {key}: {e}"))?,
            None => Value::String(text.to_owned()), // the orchestrator reports it as undeclared
        };
        inputs.insert(key.to_owned(), value);
    }
    let workflow_id = valid.workflow.id.clone();
    let steps: Vec<String> = valid.workflow.steps.iter().map(|s| s.id.clone()).collect();
    let artifacts = plexus_host::artifacts::Artifacts {
        store: Arc::new(store),
        index: Arc::new(plexus_host::artifacts::MemoryIndex::default()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let status = runtime.block_on(async {
        let orch = Orchestrator::new(Arc::new(host)).with_secrets(secrets).with_artifacts(artifacts);
        for other in more {
            orch.register(other)?;
        }
        orch.register(valid)?;
        // Listening before the run starts, and across loop turns: a Ctrl-C
        // that comes while the progress line is drawn is not lost.
        let mut interrupt = Interrupts::new()?;
        let exec = orch.execute(&workflow_id, inputs)?;
        tracing::info!(execution = %exec, workflow = %workflow_id, "started");
        let mut progress = Progress::new(&steps, !args.json && std::io::stderr().is_terminal());
        let mut interrupts = 0;
        loop {
            tokio::select! {
                status = orch.wait(&exec) => {
                    let status = status?;
                    progress.finish(&status);
                    return anyhow::Ok(status);
                }
                () = interrupt.next() => {
                    interrupts += 1;
                    if interrupts > 1 {
                        errln!("interrupted twice: exiting without waiting for compensation");
                        plexus_host::process::host_exits();
                        std::process::exit(i32::from(CANCELLED));
                    }
                    errln!("cancelling (running steps are stopped, completed ones compensated; Ctrl-C again to exit at once)");
                    orch.cancel(&exec)?;
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => progress.update(&orch.status(&exec)?),
            }
        }
    });
    // Do not wait for the blocking pool: a native step that ignored its
    // cancellation still holds one of its threads (abandoned at its timeout),
    // and dropping the runtime would wait for it forever.
    runtime.shutdown_background();
    let status = status?;
    let json = if args.outputs_only {
        serde_json::to_string_pretty(&status.outputs)?
    } else {
        serde_json::to_string_pretty(&status)?
    };
    if let Some(path) = &args.output {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        outln!("{json}");
    } else {
        print_summary(&status);
    }
    Ok(ExitCode::from(match status.status {
        WorkflowStatus::Completed => 0,
        WorkflowStatus::Cancelled => CANCELLED,
        WorkflowStatus::RollbackFailed => ROLLBACK_FAILED,
        _ => FAILED,
    }))
}

/// Live progress: an overall bar and one line per running step on a terminal;
/// a log line per finished step otherwise.
struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    running: HashMap<String, ProgressBar>,
    reported: HashMap<String, StepStatus>,
    interactive: bool,
}

impl Progress {
    fn new(steps: &[String], interactive: bool) -> Self {
        let target = if interactive { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(steps.len() as u64));
        overall.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps  {elapsed_precise}  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self { multi, overall, running: HashMap::new(), reported: HashMap::new(), interactive }
    }

    fn update(&mut self, status: &ExecutionStatus) {
        let done = status.steps.iter().filter(|s| s.status.is_terminal()).count();
        self.overall.set_position(done as u64);
        self.overall.set_message(status.status.as_str().to_owned());
        for step in &status.steps {
            let active = matches!(step.status, StepStatus::Running | StepStatus::Retrying | StepStatus::Waiting);
            if active && !self.running.contains_key(&step.id) {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("  {spinner} {msg}").expect("valid template"));
                bar.enable_steady_tick(Duration::from_millis(120));
                self.running.insert(step.id.clone(), bar);
            }
            if let Some(bar) = self.running.get(&step.id) {
                bar.set_message(format!(
                    "{} ({}.{}) {} attempt {}",
                    step.id,
                    step.plugin_id,
                    step.operation,
                    step.status.as_str(),
                    step.attempts
                ));
            }
            if !active && let Some(bar) = self.running.remove(&step.id) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            if step.status.is_terminal() && self.reported.get(&step.id) != Some(&step.status) {
                self.reported.insert(step.id.clone(), step.status);
                if !self.interactive {
                    let took = step.duration_ms.map(|ms| format!(" in {ms} ms")).unwrap_or_default();
                    tracing::info!(step = %step.id, status = step.status.as_str(), attempts = step.attempts, "step {}{took}", step.status.as_str());
                }
            }
        }
    }

    fn finish(&mut self, status: &ExecutionStatus) {
        self.update(status);
        for (_, bar) in self.running.drain() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}

fn print_summary(status: &ExecutionStatus) {
    let rows: Vec<[String; 5]> = status
        .steps
        .iter()
        .map(|s| {
            let note = step_note(s);
            [
                s.id.clone(),
                s.status.as_str().to_owned(),
                s.attempts.to_string(),
                s.duration_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "-".into()),
                note,
            ]
        })
        .collect();
    let header = ["STEP", "STATUS", "ATTEMPTS", "DURATION", "NOTE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        outln!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    for c in &status.compensations {
        let outcome = c.error.as_ref().map(|e| format!("failed: {}", e.message)).unwrap_or_else(|| "completed".into());
        outln!("compensation of {} ({}.{}): {outcome}", c.step, c.plugin_id, c.operation);
    }
    let took = match (status.started_at_ms, status.ended_at_ms) {
        (Some(a), Some(b)) => format!(" in {} ms", b.saturating_sub(a)),
        _ => String::new(),
    };
    outln!("\nworkflow {} {}{took} (execution {})", status.workflow_id, status.status.as_str(), status.execution_id);
    if let Some(e) = &status.error {
        outln!("reason: {e}");
    }
    print_outputs(status);
}

/// The NOTE of a step in a summary: why it did not complete, else the
/// metrics its plugin reported (`rows=1461`), else its last progress report.
pub(crate) fn step_note(s: &StepRecord) -> String {
    match (&s.error, &s.reason) {
        (Some(e), _) if s.status != StepStatus::Completed => return format!("{}: {}", e.kind, e.message),
        (_, Some(r)) => return r.clone(),
        _ => {}
    }
    if !s.metrics.is_empty() {
        return s.metrics.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(" ");
    }
    match &s.progress {
        Some(p) if !s.status.is_terminal() => format!("{:.0}% {}", p.fraction * 100.0, p.message),
        _ => String::new(),
    }
}

/// The workflow's outputs, if it declares any, as indented JSON.
pub(crate) fn print_outputs(status: &ExecutionStatus) {
    if status.outputs.is_empty() {
        return;
    }
    outln!("outputs:");
    for (name, value) in &status.outputs {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        outln!("  {name}: {}", text.replace('\n', "\n  "));
    }
}

/// SIGINT (Ctrl-C), received from when this is created: unlike a fresh
/// `tokio::signal::ctrl_c()` per loop turn, a signal that arrives between two
/// polls is kept for the next one.
struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
        })
    }

    /// The next Ctrl-C.
    async fn next(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
