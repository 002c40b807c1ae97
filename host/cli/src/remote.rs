//! Commands that drive a running daemon: `plexus workflow register|list|show|rm`,
//! `plexus exec …`, `plexus schedule …`, `plexus plugins list|info --remote`.

use crate::Global;
use crate::client::from_global;
use crate::run::{CANCELLED, FAILED, ROLLBACK_FAILED};
use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use plexus_client::status::WorkflowStatus;
use plexus_client::{
    CatchUp, Client, ErrorCode, Execution, ExecutionQuery, Overlap, Priority, ScheduleSpec, ScheduleView,
    StartExecution, TransactionState,
};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<ExitCode> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

/// Print `rows` as columns under `header`, padded to the widest cell.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        outln!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

pub fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn or_dash(text: Option<&str>) -> String {
    text.unwrap_or("-").to_owned()
}

/// A `snake_case` API enum from its name, as clap parses a flag's value
/// (e.g. `--overlap queue_one`, `--status failed`).
pub fn api_enum<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(text.to_owned())).map_err(|e| e.to_string())
}

/// `KEY=VALUE` pairs: VALUE as JSON when it parses (numbers, booleans,
/// quoted strings, objects), else as text.
pub fn parse_pairs(pairs: &[String], flag: &str) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for pair in pairs {
        let (key, text) = pair.split_once('=').with_context(|| format!("{flag} {pair}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
        map.insert(key.to_owned(), value);
    }
    Ok(map)
}

/// `@file` or inline JSON.
fn json_arg(text: &str, flag: &str) -> anyhow::Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}"))?,
        None => text.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("{flag}: not JSON"))
}

// ----- workflows -----

/// `plexus workflow register FILE`.
pub fn register(global: &Global, file: &PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let out = from_global(global)?.register_workflow(source)?;
    if json {
        return print_json(&out);
    }
    let verb = if out.created { "registered" } else { "unchanged" };
    outln!("{} version {} {verb}", out.id, out.version);
    Ok(ExitCode::SUCCESS)
}

/// `plexus workflow list`.
pub fn workflows(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let out = from_global(global)?.workflows()?;
    if json {
        return print_json(&out);
    }
    let rows = out
        .workflows
        .iter()
        .map(|w| vec![w.id.clone(), w.version.to_string(), w.format.as_str().to_owned(), time(w.created_at_ms)])
        .collect();
    table(&["ID", "VERSION", "FORMAT", "REGISTERED"], rows);
    Ok(ExitCode::SUCCESS)
}

/// `plexus workflow show ID`.
pub fn show_workflow(global: &Global, id: &str, version: Option<u32>, json: bool) -> anyhow::Result<ExitCode> {
    let out = from_global(global)?.workflow(id, version)?;
    if json {
        return print_json(&out);
    }
    errln!("# {} version {}", out.id, out.version);
    out!("{}", out.source);
    Ok(ExitCode::SUCCESS)
}

/// `plexus workflow clear --yes`.
pub fn clear_workflows(global: &Global, yes: bool, json: bool) -> anyhow::Result<ExitCode> {
    if !yes {
        anyhow::bail!("this deletes every workflow on the daemon: add --yes to do it");
    }
    let out = from_global(global)?.clear_workflows()?;
    if json {
        return print_json(&out);
    }
    outln!("{} workflow(s) deleted", out.deleted);
    Ok(ExitCode::SUCCESS)
}

/// `plexus workflow versions ID`.
pub fn workflow_history(global: &Global, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let out = from_global(global)?.workflow_history(id)?;
    if json {
        return print_json(&out);
    }
    let rows = out
        .versions
        .iter()
        .map(|w| {
            let current = if out.current == Some(w.version) { "*" } else { "" };
            vec![w.version.to_string(), current.to_owned(), w.format.as_str().to_owned(), time(w.created_at_ms)]
        })
        .collect();
    table(&["VERSION", "CURRENT", "FORMAT", "REGISTERED"], rows);
    Ok(ExitCode::SUCCESS)
}

/// `plexus workflow rollback ID VERSION`.
pub fn rollback_workflow(global: &Global, id: &str, version: u32, json: bool) -> anyhow::Result<ExitCode> {
    let out = from_global(global)?.rollback_workflow(id, version)?;
    if json {
        return print_json(&out);
    }
    if out.created {
        outln!("{} version {version} is current again, as version {}", out.id, out.version);
    } else {
        outln!("{} version {} already had version {version}'s definition: unchanged", out.id, out.version);
    }
    Ok(ExitCode::SUCCESS)
}

/// `plexus workflow rm ID`.
pub fn remove_workflow(global: &Global, id: &str) -> anyhow::Result<ExitCode> {
    from_global(global)?.delete_workflow(id)?;
    outln!("{id} deleted");
    Ok(ExitCode::SUCCESS)
}

// ----- executions -----

#[derive(Subcommand)]
pub enum ExecCommand {
    /// Start an execution of a registered workflow.
    Start {
        /// Workflow id.
        workflow: String,
        /// Run this registered version instead of the current one.
        #[arg(long)]
        version: Option<u32>,
        /// Run it in this open transaction (see `plexus transaction`).
        #[arg(long)]
        transaction: Option<String>,
        /// Its priority when every worker is busy: low, normal (default), high or critical.
        #[arg(long, value_parser = api_enum::<Priority>)]
        priority: Option<Priority>,
        /// An input (repeatable); the value is read as JSON when it parses: --input limit=10 --input path=a.csv.
        /// Keys the workflow does not declare go into the execution's context.
        #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        /// Wait for the end and exit like `plexus run` (0 completed, 8 failed, 9 rollback failed, 130 cancelled).
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List executions, newest first.
    List {
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this status: pending, running, rolling_back, completed, failed, cancelled, rollback_failed or rolled_back.
        #[arg(long, value_parser = api_enum::<WorkflowStatus>)]
        status: Option<WorkflowStatus>,
        /// Only those fired by this schedule.
        #[arg(long)]
        schedule: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only those that have not ended (pending, running, rolling back).
        #[arg(long, conflicts_with = "status")]
        active: bool,
        /// The next page: only executions older than this execution id (the last one listed).
        #[arg(long, value_name = "EXECUTION_ID")]
        before: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an execution's status, progress and steps.
    Status {
        /// Execution id.
        id: String,
        /// Wait for the end (exit code as for `start --wait`).
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel an execution: running steps stop, completed ones are compensated.
    Cancel {
        /// Execution id.
        id: String,
    },
    /// Run a failed or cancelled execution again from the steps that did not complete.
    Retry {
        /// Execution id.
        id: String,
        /// Wait for the end.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an execution's log (every transition).
    Logs {
        /// Execution id.
        id: String,
        /// Keep printing until the execution ends.
        #[arg(long, short)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Deliver a signal to an execution's wait steps (`wait_for: {signal: NAME}`); its payload
    /// becomes their output. An approval needs --by.
    Signal {
        /// Execution id.
        id: String,
        /// The signal's name.
        name: String,
        /// The payload: JSON (or text), or @FILE [default: null].
        #[arg(long)]
        payload: Option<String>,
        /// Who sends it (an approval records it).
        #[arg(long)]
        by: Option<String>,
        /// Refuse: the waiting step fails.
        #[arg(long)]
        reject: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the artifacts an execution's steps wrote: digest, name, size, step.
    Artifacts {
        /// Execution id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download an artifact of an execution (by name, or digest `sha256:…`).
    Artifact {
        /// Execution id.
        id: String,
        /// The artifact's name (the newest of that name) or digest.
        artifact: String,
        /// Write it to this file (default: stdout).
        #[arg(long, short, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Print a map step's items (`for_each`): status, attempts, output or error of each.
    Items {
        /// Execution id.
        id: String,
        /// The map step's id.
        step: String,
        /// Only items after this index.
        #[arg(long)]
        after: Option<usize>,
        /// At most this many [default: 1000].
        #[arg(long)]
        limit: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A writer that hashes what goes through it (sha256), to check a download.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: std::io::Write> Hashing<W> {
    fn new(inner: W) -> Self {
        use sha2::Digest;
        Self { inner, hasher: sha2::Sha256::new() }
    }

    /// `Ok` when what went through has `digest` (`sha256:<hex>`).
    fn check(&mut self, digest: &str) -> anyhow::Result<()> {
        use sha2::Digest;
        let hex: String = std::mem::take(&mut self.hasher).finalize().iter().map(|b| format!("{b:02x}")).collect();
        anyhow::ensure!(
            digest == format!("sha256:{hex}"),
            "the bytes received do not have the digest {digest} (sha256:{hex})"
        );
        Ok(())
    }
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn exit_for_status(status: WorkflowStatus) -> ExitCode {
    match status {
        WorkflowStatus::Completed => ExitCode::SUCCESS,
        WorkflowStatus::RollbackFailed => ExitCode::from(ROLLBACK_FAILED),
        WorkflowStatus::Cancelled => ExitCode::from(CANCELLED),
        _ => ExitCode::from(FAILED),
    }
}

fn wait_for_end(client: &Client, id: &str) -> anyhow::Result<Execution> {
    loop {
        // Long-poll: the daemon answers when the execution ends, or Timeout after 30 s.
        match client.execution(id, Some(30_000)) {
            Ok(execution) if execution.status.status.is_terminal() => return Ok(execution),
            // Stored as running but not running here (the daemon is restarting).
            Ok(_) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) if e.code() == Some(ErrorCode::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn print_status(execution: &Execution) {
    let status = &execution.status;
    outln!(
        "{}  {} v{}  {}  {:.0}%",
        status.execution_id,
        status.workflow_id,
        execution.meta.workflow_version,
        status.status.as_str(),
        status.progress * 100.0
    );
    if execution.meta.priority != Priority::Normal {
        outln!("priority: {}", execution.meta.priority.as_str());
    }
    if let Some(error) = &status.error {
        outln!("error: {error}");
    }
    let rows = status
        .steps
        .iter()
        .map(|st| {
            let note = crate::run::step_note(st);
            vec![
                st.id.clone(),
                st.status.as_str().to_owned(),
                st.attempts.to_string(),
                st.duration_ms.map_or("-".into(), |ms| ms.to_string()),
                note,
            ]
        })
        .collect();
    table(&["STEP", "STATUS", "ATTEMPTS", "MS", "NOTE"], rows);
    crate::run::print_outputs(status);
}

fn print_execution(execution: &Execution, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(execution)?;
    } else {
        print_status(execution);
    }
    Ok(())
}

pub fn exec(global: &Global, command: ExecCommand) -> anyhow::Result<ExitCode> {
    let client = from_global(global)?;
    match command {
        ExecCommand::Start { workflow, version, transaction, priority, inputs, wait, json } => {
            let inputs = parse_pairs(&inputs, "--input")?;
            let request = StartExecution { workflow, version, transaction, inputs, priority };
            let out = client.start_execution(&request)?;
            if !wait {
                if json {
                    return print_json(&out);
                }
                outln!("{}", out.execution_id);
                return Ok(ExitCode::SUCCESS);
            }
            errln!("started {}", out.execution_id);
            let execution = wait_for_end(&client, &out.execution_id)?;
            print_execution(&execution, json)?;
            Ok(exit_for_status(execution.status.status))
        }
        ExecCommand::List { workflow, status, schedule, limit, active, before, json } => {
            let query = ExecutionQuery {
                workflow,
                status,
                schedule,
                limit: Some(limit),
                active: active.then_some(true),
                before,
            };
            let out = client.executions(&query)?;
            if json {
                return print_json(&out);
            }
            let rows = out
                .executions
                .iter()
                .map(|e| {
                    vec![
                        e.execution_id.clone(),
                        format!("{} v{}", e.workflow_id, e.workflow_version),
                        e.status.as_str().to_owned(),
                        time(e.created_at_ms),
                        or_dash(e.schedule_id.as_deref()),
                    ]
                })
                .collect();
            table(&["ID", "WORKFLOW", "STATUS", "CREATED", "SCHEDULE"], rows);
            Ok(ExitCode::SUCCESS)
        }
        ExecCommand::Status { id, wait, json } => {
            let execution = if wait { wait_for_end(&client, &id)? } else { client.execution(&id, None)? };
            print_execution(&execution, json)?;
            Ok(if wait { exit_for_status(execution.status.status) } else { ExitCode::SUCCESS })
        }
        ExecCommand::Cancel { id } => {
            client.cancel(&id)?;
            outln!("cancelling {id}");
            Ok(ExitCode::SUCCESS)
        }
        ExecCommand::Retry { id, wait, json } => {
            let out = client.retry(&id)?;
            if !wait {
                if json {
                    return print_json(&out);
                }
                outln!("retrying {id}");
                return Ok(ExitCode::SUCCESS);
            }
            let execution = wait_for_end(&client, &id)?;
            print_execution(&execution, json)?;
            Ok(exit_for_status(execution.status.status))
        }
        ExecCommand::Logs { id, follow, json } => logs(&client, &id, follow, json),
        ExecCommand::Signal { id, name, payload, by, reject, json } => {
            let payload = match payload {
                Some(text) if text.starts_with('@') => json_arg(&text, "--payload")?,
                Some(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
                None => Value::Null,
            };
            let out = client.signal(&id, &name, &plexus_client::SignalRequest { payload, by, reject })?;
            if json {
                return print_json(&out);
            }
            outln!("signal {name} delivered to execution {id}");
            Ok(ExitCode::SUCCESS)
        }
        ExecCommand::Artifacts { id, json } => {
            let out = client.artifacts(&id)?;
            if json {
                return print_json(&out);
            }
            let rows = out
                .artifacts
                .iter()
                .map(|a| {
                    vec![
                        a.artifact.clone(),
                        a.name.clone(),
                        a.bytes.to_string(),
                        a.step.clone().unwrap_or_default(),
                        a.media_type.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["DIGEST", "NAME", "BYTES", "STEP", "MEDIA TYPE"], rows);
            Ok(ExitCode::SUCCESS)
        }
        ExecCommand::Artifact { id, artifact, out } => {
            let digest = if artifact.starts_with("sha256:") {
                artifact
            } else {
                let listed = client.artifacts(&id)?;
                let found = listed.artifacts.iter().rev().find(|a| a.name == artifact);
                found
                    .map(|a| a.artifact.clone())
                    .with_context(|| format!("execution {id} holds no artifact named `{artifact}`"))?
            };
            // Checked against its digest as it comes; a file is written aside and
            // renamed once whole and checked (a failed download leaves no file).
            let written = match &out {
                Some(path) => {
                    let part = path.with_file_name(format!(
                        "{}.part",
                        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                    ));
                    let file =
                        std::fs::File::create(&part).with_context(|| format!("cannot create {}", part.display()))?;
                    let mut sink = Hashing::new(std::io::BufWriter::new(file));
                    let result = client.download_artifact(&id, &digest, &mut sink).map_err(anyhow::Error::from);
                    let checked = result.and_then(|n| sink.check(&digest).map(|()| n));
                    match checked {
                        Ok(n) => {
                            std::fs::rename(&part, path).with_context(|| format!("cannot write {}", path.display()))?;
                            n
                        }
                        Err(e) => {
                            let _ = std::fs::remove_file(&part);
                            return Err(e);
                        }
                    }
                }
                None => {
                    let mut sink = Hashing::new(std::io::stdout().lock());
                    let n = client.download_artifact(&id, &digest, &mut sink)?;
                    sink.check(&digest)?;
                    n
                }
            };
            if let Some(path) = &out {
                errln!("{written} bytes written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecCommand::Items { id, step, after, limit, json } => {
            let out = client.items(&id, &step, after, limit)?;
            if json {
                return print_json(&out);
            }
            let rows = out
                .items
                .iter()
                .map(|r| {
                    let result = match (&r.output, &r.error) {
                        (Some(output), _) => output.to_string(),
                        (None, Some(e)) => e.message.clone(),
                        (None, None) => String::new(),
                    };
                    let result: String = result.chars().take(80).collect();
                    vec![r.index.to_string(), r.status.as_str().to_owned(), r.attempts.to_string(), result]
                })
                .collect();
            table(&["ITEM", "STATUS", "ATTEMPTS", "OUTPUT / ERROR"], rows);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn logs(client: &Client, id: &str, follow: bool, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut after = 0i64;
    loop {
        let out = client.logs(id, after, None)?;
        for event in &out.events {
            after = after.max(event.seq);
            if as_json {
                outln!("{}", serde_json::to_string(event)?);
                continue;
            }
            let step = event.step_id.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
            let attempt = event.attempt.filter(|&a| a > 0).map(|a| format!(" #{a}")).unwrap_or_default();
            let message = event.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default();
            outln!("{}{step}{attempt} {}{message}", time(event.at_ms), event.transition);
        }
        // A page that came back full may have more behind it: ask again at once.
        let full = out.events.len() >= 1000;
        if !full && (!follow || out.status.is_terminal()) {
            return Ok(ExitCode::SUCCESS);
        }
        if !full {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

// ----- schedules -----

#[derive(Args)]
pub struct ScheduleAdd {
    /// Schedule id.
    id: String,
    /// When: "cron 0 9 * * MON-FRI" (6 fields: seconds first), "every 5m" or "at 2026-12-01T10:00:00Z".
    #[arg(long)]
    when: Option<String>,
    /// IANA time zone of a cron schedule (default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// Run this registered workflow …
    #[arg(long, conflicts_with_all = ["plugin", "operation", "params"])]
    workflow: Option<String>,
    /// … with this input (repeatable).
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
    inputs: Vec<String>,
    /// Or call this plugin …
    #[arg(long, requires = "operation")]
    plugin: Option<String>,
    /// … operation …
    #[arg(long, requires = "plugin")]
    operation: Option<String>,
    /// … with these parameters (JSON or @file).
    #[arg(long)]
    params: Option<String>,
    /// While a run is still running: allow, skip (default) or queue_one.
    #[arg(long, value_parser = api_enum::<Overlap>)]
    overlap: Option<Overlap>,
    /// Missed fires after downtime: skip, run_once (default) or run_all.
    #[arg(long, value_parser = api_enum::<CatchUp>)]
    catch_up: Option<CatchUp>,
    /// How far back missed fires are caught up (default 1h).
    #[arg(long)]
    catch_up_window: Option<String>,
    /// Random start delay up to this long.
    #[arg(long)]
    jitter: Option<String>,
    /// The priority of its executions when every worker is busy: low, normal (default), high, critical.
    #[arg(long, value_parser = api_enum::<Priority>)]
    priority: Option<Priority>,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
    /// Or read the whole schedule (JSON, as in the API) from this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["when", "workflow", "plugin"])]
    file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule for a workflow or one plugin operation.
    Add(Box<ScheduleAdd>),
    /// List schedules with their next fire times.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a schedule and its fire history.
    Show {
        /// Schedule id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a schedule.
    Pause {
        /// Schedule id.
        id: String,
    },
    /// Resume a paused schedule (fire times missed while paused are not caught up).
    Resume {
        /// Schedule id.
        id: String,
    },
    /// Delete a schedule.
    Rm {
        /// Schedule id.
        id: String,
    },
    /// Fire a schedule now; prints the execution id.
    RunNow {
        /// Schedule id.
        id: String,
    },
}

fn schedule_spec(add: ScheduleAdd) -> anyhow::Result<ScheduleSpec> {
    if let Some(file) = &add.file {
        let mut spec = json_arg(&format!("@{}", file.display()), "--file")?;
        spec["id"] = Value::String(add.id);
        return serde_json::from_value(spec).with_context(|| format!("--file {}", file.display()));
    }
    let when = add.when.ok_or_else(|| anyhow!("--when is required (or --file)"))?;
    let mut spec = ScheduleSpec::new(add.id, when);
    spec.enabled = !add.paused;
    spec.timezone = add.timezone;
    spec.workflow = add.workflow;
    spec.plugin = add.plugin;
    spec.operation = add.operation;
    spec.params = add.params.as_deref().map(|p| json_arg(p, "--params")).transpose()?.unwrap_or_default();
    spec.overlap = add.overlap.unwrap_or_default();
    spec.catch_up = add.catch_up.unwrap_or_default();
    spec.catch_up_window = add.catch_up_window;
    spec.priority = add.priority.unwrap_or_default();
    spec.jitter = add.jitter;
    spec.inputs = parse_pairs(&add.inputs, "--input")?;
    Ok(spec)
}

fn schedule_rows(list: &[ScheduleView]) -> Vec<Vec<String>> {
    list.iter()
        .map(|v| {
            let spec = &v.spec;
            let target = match &spec.workflow {
                Some(w) => format!("workflow {w}"),
                None => format!("{} {}", or_dash(spec.plugin.as_deref()), or_dash(spec.operation.as_deref())),
            };
            let state = if spec.enabled { "active" } else { "paused" };
            let when = match &spec.timezone {
                Some(tz) => format!("{} ({tz})", spec.when),
                None => spec.when.clone(),
            };
            vec![
                spec.id.clone(),
                when,
                target,
                state.into(),
                or_dash(v.next_fire.as_deref()),
                or_dash(v.last_fire.as_deref()),
                or_dash(spec.owner.as_deref()),
            ]
        })
        .collect()
}

pub fn schedule(global: &Global, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let client = from_global(global)?;
    // OWNER: the plugin that created it through orchestration, if one did.
    let header = ["ID", "WHEN", "TARGET", "STATE", "NEXT FIRE", "LAST FIRE", "OWNER"];
    match command {
        ScheduleCommand::Add(add) => {
            let json = add.json;
            let out = client.create_schedule(&schedule_spec(*add)?)?;
            if json {
                return print_json(&out);
            }
            table(&header, schedule_rows(std::slice::from_ref(&out)));
        }
        ScheduleCommand::List { json } => {
            let out = client.schedules()?;
            if json {
                return print_json(&out);
            }
            table(&header, schedule_rows(&out.schedules));
        }
        ScheduleCommand::Show { id, json } => {
            let out = client.schedule(&id)?;
            if json {
                return print_json(&out);
            }
            table(&header, schedule_rows(std::slice::from_ref(&out.view)));
            outln!();
            let rows = out
                .history
                .iter()
                .map(|f| {
                    vec![
                        time(f.fire_time_ms),
                        f.outcome.as_str().to_owned(),
                        or_dash(f.execution_id.as_deref()),
                        f.message.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["FIRE TIME", "OUTCOME", "EXECUTION", "NOTE"], rows);
        }
        ScheduleCommand::Pause { id } => {
            client.pause_schedule(&id)?;
            outln!("{id} paused");
        }
        ScheduleCommand::Resume { id } => {
            let out = client.resume_schedule(&id)?;
            outln!("{id} resumed; next fire {}", or_dash(out.next_fire.as_deref()));
        }
        ScheduleCommand::Rm { id } => {
            client.delete_schedule(&id)?;
            outln!("{id} deleted");
        }
        ScheduleCommand::RunNow { id } => {
            outln!("{}", client.run_schedule(&id)?.execution_id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `plexus plugins list --remote`.
pub fn plugins(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    crate::plugins::print_list(&from_global(global)?.plugins()?, json)
}

/// `plexus plugins info ID --remote`.
pub fn plugin_info(global: &Global, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    crate::plugins::print_details(&from_global(global)?.plugin(id)?, json)
}

// ----- transactions -----

#[derive(Subcommand)]
pub enum TransactionCommand {
    /// List transactions, newest first.
    List {
        /// Only those in this state: open, committed, rolling_back, rolled_back, rollback_failed.
        #[arg(long, value_parser = api_enum::<TransactionState>)]
        state: Option<TransactionState>,
        /// At most this many (default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Begin a transaction: executions started with `--transaction ID` join it.
    Begin {
        /// Transaction id (letters, digits, `-`, `_`, `.`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a transaction: its state, executions and the compensations its rollback ran.
    Show {
        /// Transaction id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Commit a transaction: its executions' effects become permanent.
    Commit {
        /// Transaction id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Roll back a transaction: compensate every completed step of its executions, newest first.
    /// Exits 9 if a compensation failed.
    Rollback {
        /// Transaction id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `plexus nodes`.
#[derive(clap::Args)]
pub struct NodesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `plexus nodes`: the daemons sharing the state database.
pub fn nodes(global: &Global, args: NodesArgs) -> anyhow::Result<ExitCode> {
    let out = from_global(global)?.nodes()?;
    if args.json {
        print_json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = plexus_workflow::status::epoch_ms(std::time::SystemTime::now());
    let rows = out
        .nodes
        .iter()
        .map(|n| {
            let this = if n.id == out.this { " (this)" } else { "" };
            vec![
                format!("{}{this}", n.id),
                n.state.as_str().to_owned(),
                n.address.clone().unwrap_or_else(|| "-".into()),
                format!("{:.1}s ago", now.saturating_sub(n.heartbeat_ms) as f64 / 1000.0),
                format!("{}/{}", n.running, n.workers),
                n.plugins.len().to_string(),
            ]
        })
        .collect();
    table(&["NODE", "STATE", "ADDRESS", "HEARTBEAT", "RUNNING", "PLUGINS"], rows);
    Ok(ExitCode::SUCCESS)
}

pub fn transaction(global: &Global, command: TransactionCommand) -> anyhow::Result<ExitCode> {
    let client = from_global(global)?;
    let (tx, json) = match command {
        TransactionCommand::List { state, limit, json } => {
            let out = client.transactions(&plexus_client::TransactionQuery { state, limit })?;
            if json {
                return print_json(&out);
            }
            let rows = out
                .transactions
                .iter()
                .map(|t| vec![t.id.clone(), t.state.as_str().to_owned(), t.executions.to_string()])
                .collect();
            table(&["TRANSACTION", "STATE", "EXECUTIONS"], rows);
            return Ok(ExitCode::SUCCESS);
        }
        TransactionCommand::Begin { id, json } => (client.begin_transaction(&id)?, json),
        TransactionCommand::Show { id, json } => (client.transaction(&id)?, json),
        TransactionCommand::Commit { id, json } => (client.commit_transaction(&id)?, json),
        TransactionCommand::Rollback { id, json } => (client.rollback_transaction(&id)?, json),
    };
    let code =
        if tx.state == TransactionState::RollbackFailed { ExitCode::from(ROLLBACK_FAILED) } else { ExitCode::SUCCESS };
    if json {
        print_json(&tx)?;
        return Ok(code);
    }
    outln!("transaction {}: {} ({} execution(s))", tx.id, tx.state.as_str(), tx.executions.len());
    for id in &tx.executions {
        outln!("  {id}");
    }
    if !tx.compensations.is_empty() {
        let rows = tx
            .compensations
            .iter()
            .map(|c| {
                vec![
                    c.execution_id.clone(),
                    c.record.step.clone(),
                    format!("{}.{}", c.record.plugin_id, c.record.operation),
                    c.record.status.as_str().to_owned(),
                    or_dash(c.record.error.as_ref().map(|e| e.message.as_str())),
                ]
            })
            .collect();
        table(&["EXECUTION", "STEP", "COMPENSATION", "STATUS", "ERROR"], rows);
    }
    Ok(code)
}

// ----- templates -----

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Register a workflow file as a template (replacing one with its id); its declared inputs are
    /// its parameters.
    Register {
        /// Workflow file (any format Plexus reads).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the templates with their parameters.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a template's definition.
    Show {
        /// Template id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a template (workflows created from it stay).
    Rm {
        /// Template id.
        id: String,
    },
    /// Create and register a workflow from a template.
    Create {
        /// Template id.
        template: String,
        /// The new workflow's id (default: <template>-<n>).
        #[arg(long)]
        id: Option<String>,
        /// A parameter (repeatable; the value is JSON, else text): an input's new default, or a
        /// parameter added to every step.
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// A JSON merge patch over the definition (inline JSON or @file), e.g. '{"max_parallel": 2}'.
        #[arg(long, value_name = "JSON")]
        overrides: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn template(global: &Global, command: TemplateCommand) -> anyhow::Result<ExitCode> {
    let client = from_global(global)?;
    match command {
        TemplateCommand::Register { file, json } => {
            let source = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let out = client.register_template(source)?;
            if json {
                return print_json(&out);
            }
            outln!("template {} registered (parameters: {})", out.id, or_dash(Some(&out.parameters.join(", "))));
        }
        TemplateCommand::List { json } => {
            let out = client.templates()?;
            if json {
                return print_json(&out);
            }
            let rows = out
                .templates
                .iter()
                .map(|t| vec![t.id.clone(), t.name.clone(), or_dash(Some(&t.parameters.join(", ")))])
                .collect();
            table(&["TEMPLATE", "NAME", "PARAMETERS"], rows);
        }
        TemplateCommand::Show { id, json } => {
            let out = client.template(&id)?;
            if json {
                return print_json(&out);
            }
            out!("{}", out.source);
        }
        TemplateCommand::Rm { id } => {
            client.delete_template(&id)?;
            outln!("template {id} deleted");
        }
        TemplateCommand::Create { template, id, params, overrides, json } => {
            let request = plexus_client::FromTemplate {
                id,
                params: parse_pairs(&params, "--param")?,
                overrides: overrides.map(|o| json_arg(&o, "--overrides")).transpose()?.unwrap_or(Value::Null),
            };
            let out = client.create_from_template(&template, &request)?;
            if json {
                return print_json(&out);
            }
            outln!("workflow {} version {} created from template {template}", out.id, out.version);
        }
    }
    Ok(ExitCode::SUCCESS)
}
