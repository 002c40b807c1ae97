//! Commands that drive a running daemon: `plexus workflow register|list|show|rm`,
//! `plexus exec …`, `plexus schedule …`, `plexus plugins list|info --remote`.

use crate::Global;
use crate::client::from_global;
use crate::run::{CANCELLED, FAILED, ROLLBACK_FAILED};
use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use plexus_client::{Client, ClientError, path};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn print_json(value: &Value) -> anyhow::Result<ExitCode> {
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

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn time(ms: &Value) -> String {
    ms.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
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
    let out = from_global(global)?.post("/v1/workflows", json!({"source": source}))?;
    if json {
        return print_json(&out);
    }
    let verb = if out["created"] == json!(true) { "registered" } else { "unchanged" };
    outln!("{} version {} {verb}", s(&out, "id"), s(&out, "version"));
    Ok(ExitCode::SUCCESS)
}

/// `plexus workflow list`.
pub fn workflows(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let out = from_global(global)?.get("/v1/workflows")?;
    if json {
        return print_json(&out);
    }
    let rows = out["workflows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| vec![s(w, "id"), s(w, "version"), s(w, "format"), time(&w["created_at_ms"])])
        .collect();
    table(&["ID", "VERSION", "FORMAT", "REGISTERED"], rows);
    Ok(ExitCode::SUCCESS)
}

/// `plexus workflow show ID`.
pub fn show_workflow(global: &Global, id: &str, version: Option<u32>, json: bool) -> anyhow::Result<ExitCode> {
    let path = match version {
        Some(v) => path(&["v1", "workflows", id], &[("version", Some(&v.to_string()))]),
        None => path(&["v1", "workflows", id], &[]),
    };
    let out = from_global(global)?.get(&path)?;
    if json {
        return print_json(&out);
    }
    errln!("# {} version {}", s(&out, "id"), s(&out, "version"));
    out!("{}", out["source"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// `plexus workflow rm ID`.
pub fn remove_workflow(global: &Global, id: &str) -> anyhow::Result<ExitCode> {
    from_global(global)?.delete(&path(&["v1", "workflows", id], &[]))?;
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
        /// An input (repeatable); the value is read as JSON when it parses: --input limit=10 --input path=a.csv.
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
        /// Only this status (pending, running, completed, failed, cancelled, rollback_failed, rolling_back).
        #[arg(long)]
        status: Option<String>,
        /// Only those fired by this schedule.
        #[arg(long)]
        schedule: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
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
}

fn exit_for_status(status: &str) -> ExitCode {
    match status {
        "completed" => ExitCode::SUCCESS,
        "rollback_failed" => ExitCode::from(ROLLBACK_FAILED),
        "cancelled" => ExitCode::from(CANCELLED),
        _ => ExitCode::from(FAILED),
    }
}

fn wait_for_end(client: &Client, id: &str) -> anyhow::Result<Value> {
    loop {
        // Long-poll: the daemon answers when the execution ends, or Timeout after 30 s.
        match client.get(&path(&["v1", "executions", id], &[("wait_ms", Some("30000"))])) {
            Ok(status) => {
                let st = s(&status, "status");
                if matches!(st.as_str(), "completed" | "failed" | "cancelled" | "rollback_failed") {
                    return Ok(status);
                }
                // Stored as running but not running here (the daemon is restarting).
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(ClientError::Refused { code, .. }) if code == "Timeout" => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn print_status(status: &Value) {
    outln!(
        "{}  {} v{}  {}  {:.0}%",
        s(status, "execution_id"),
        s(status, "workflow_id"),
        s(status, "workflow_version"),
        s(status, "status"),
        status["progress"].as_f64().unwrap_or(0.0) * 100.0
    );
    if let Some(error) = status["error"].as_str() {
        outln!("error: {error}");
    }
    let rows = status["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|st| {
            let note = st["error"]["message"].as_str().or(st["reason"].as_str()).unwrap_or_default();
            vec![s(st, "id"), s(st, "status"), s(st, "attempts"), s(st, "duration_ms"), note.to_owned()]
        })
        .collect();
    table(&["STEP", "STATUS", "ATTEMPTS", "MS", "NOTE"], rows);
}

pub fn exec(global: &Global, command: ExecCommand) -> anyhow::Result<ExitCode> {
    let client = from_global(global)?;
    match command {
        ExecCommand::Start { workflow, inputs, wait, json } => {
            let inputs = parse_pairs(&inputs, "--input")?;
            let out = client.post("/v1/executions", json!({"workflow": workflow, "inputs": inputs}))?;
            let id = s(&out, "execution_id");
            if !wait {
                if json {
                    return print_json(&out);
                }
                outln!("{id}");
                return Ok(ExitCode::SUCCESS);
            }
            errln!("started {id}");
            let status = wait_for_end(&client, &id)?;
            if json {
                print_json(&status)?;
            } else {
                print_status(&status);
            }
            Ok(exit_for_status(&s(&status, "status")))
        }
        ExecCommand::List { workflow, status, schedule, limit, json } => {
            let limit = limit.to_string();
            let query = [
                ("limit", Some(limit.as_str())),
                ("workflow", workflow.as_deref()),
                ("status", status.as_deref()),
                ("schedule", schedule.as_deref()),
            ];
            let out = client.get(&path(&["v1", "executions"], &query))?;
            if json {
                return print_json(&out);
            }
            let rows = out["executions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    vec![
                        s(e, "execution_id"),
                        format!("{} v{}", s(e, "workflow_id"), s(e, "workflow_version")),
                        s(e, "status"),
                        time(&e["created_at_ms"]),
                        s(e, "schedule_id"),
                    ]
                })
                .collect();
            table(&["ID", "WORKFLOW", "STATUS", "CREATED", "SCHEDULE"], rows);
            Ok(ExitCode::SUCCESS)
        }
        ExecCommand::Status { id, wait, json } => {
            let status =
                if wait { wait_for_end(&client, &id)? } else { client.get(&path(&["v1", "executions", &id], &[]))? };
            if json {
                print_json(&status)?;
            } else {
                print_status(&status);
            }
            Ok(if wait { exit_for_status(&s(&status, "status")) } else { ExitCode::SUCCESS })
        }
        ExecCommand::Cancel { id } => {
            client.post(&path(&["v1", "executions", &id, "cancel"], &[]), json!({}))?;
            outln!("cancelling {id}");
            Ok(ExitCode::SUCCESS)
        }
        ExecCommand::Retry { id, wait, json } => {
            let out = client.post(&path(&["v1", "executions", &id, "retry"], &[]), json!({}))?;
            if !wait {
                if json {
                    return print_json(&out);
                }
                outln!("retrying {id}");
                return Ok(ExitCode::SUCCESS);
            }
            let status = wait_for_end(&client, &id)?;
            if json {
                print_json(&status)?;
            } else {
                print_status(&status);
            }
            Ok(exit_for_status(&s(&status, "status")))
        }
        ExecCommand::Logs { id, follow, json } => logs(&client, &id, follow, json),
    }
}

fn logs(client: &Client, id: &str, follow: bool, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut after = 0i64;
    loop {
        let out = client.get(&path(&["v1", "executions", id, "logs"], &[("after", Some(&after.to_string()))]))?;
        for event in out["events"].as_array().into_iter().flatten() {
            after = after.max(event["seq"].as_i64().unwrap_or(after));
            if as_json {
                outln!("{event}");
                continue;
            }
            let step = event["step_id"].as_str().map(|s| format!(" {s}")).unwrap_or_default();
            let attempt = event["attempt"].as_u64().filter(|&a| a > 0).map(|a| format!(" #{a}")).unwrap_or_default();
            let message = event["message"].as_str().map(|m| format!(": {m}")).unwrap_or_default();
            outln!("{}{step}{attempt} {}{message}", time(&event["at_ms"]), s(event, "status"));
        }
        let ended = matches!(s(&out, "status").as_str(), "completed" | "failed" | "cancelled" | "rollback_failed");
        if !follow || ended {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(250));
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
    /// While a run is still running: allow, skip or queue_one.
    #[arg(long)]
    overlap: Option<String>,
    /// Missed fires after downtime: skip, run_once or run_all.
    #[arg(long)]
    catch_up: Option<String>,
    /// How far back missed fires are caught up (default 1h).
    #[arg(long)]
    catch_up_window: Option<String>,
    /// Random start delay up to this long.
    #[arg(long)]
    jitter: Option<String>,
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

fn schedule_body(add: ScheduleAdd) -> anyhow::Result<Value> {
    if let Some(file) = &add.file {
        let mut spec = json_arg(&format!("@{}", file.display()), "--file")?;
        spec["id"] = json!(add.id);
        return Ok(spec);
    }
    let when = add.when.ok_or_else(|| anyhow!("--when is required (or --file)"))?;
    let mut spec = json!({"id": add.id, "when": when, "enabled": !add.paused});
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            spec[k] = v;
        }
    };
    set("timezone", add.timezone.map(Value::String));
    set("workflow", add.workflow.map(Value::String));
    set("plugin", add.plugin.map(Value::String));
    set("operation", add.operation.map(Value::String));
    set("params", add.params.as_deref().map(|p| json_arg(p, "--params")).transpose()?);
    set("overlap", add.overlap.map(Value::String));
    set("catch_up", add.catch_up.map(Value::String));
    set("catch_up_window", add.catch_up_window.map(Value::String));
    set("jitter", add.jitter.map(Value::String));
    if !add.inputs.is_empty() {
        set("inputs", Some(Value::Object(parse_pairs(&add.inputs, "--input")?)));
    }
    Ok(spec)
}

fn schedule_rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|v| {
            let target = match v["workflow"].as_str() {
                Some(w) => format!("workflow {w}"),
                None => format!("{} {}", s(v, "plugin"), s(v, "operation")),
            };
            let state = if v["enabled"] == json!(true) { "active" } else { "paused" };
            let when = match v["timezone"].as_str() {
                Some(tz) => format!("{} ({tz})", s(v, "when")),
                None => s(v, "when"),
            };
            vec![s(v, "id"), when, target, state.into(), s(v, "next_fire"), s(v, "last_fire")]
        })
        .collect()
}

pub fn schedule(global: &Global, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let client = from_global(global)?;
    let header = ["ID", "WHEN", "TARGET", "STATE", "NEXT FIRE", "LAST FIRE"];
    match command {
        ScheduleCommand::Add(add) => {
            let json = add.json;
            let out = client.post("/v1/schedules", schedule_body(*add)?)?;
            if json {
                return print_json(&out);
            }
            table(&header, schedule_rows(std::slice::from_ref(&out)));
        }
        ScheduleCommand::List { json } => {
            let out = client.get("/v1/schedules")?;
            if json {
                return print_json(&out);
            }
            table(&header, schedule_rows(out["schedules"].as_array().map(Vec::as_slice).unwrap_or_default()));
        }
        ScheduleCommand::Show { id, json } => {
            let out = client.get(&path(&["v1", "schedules", &id], &[]))?;
            if json {
                return print_json(&out);
            }
            table(&header, schedule_rows(std::slice::from_ref(&out)));
            outln!();
            let rows = out["history"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    vec![
                        time(&f["fire_time_ms"]),
                        s(f, "outcome"),
                        s(f, "execution_id"),
                        f["message"].as_str().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            table(&["FIRE TIME", "OUTCOME", "EXECUTION", "NOTE"], rows);
        }
        ScheduleCommand::Pause { id } => {
            client.post(&path(&["v1", "schedules", &id, "pause"], &[]), json!({}))?;
            outln!("{id} paused");
        }
        ScheduleCommand::Resume { id } => {
            let out = client.post(&path(&["v1", "schedules", &id, "resume"], &[]), json!({}))?;
            outln!("{id} resumed; next fire {}", s(&out, "next_fire"));
        }
        ScheduleCommand::Rm { id } => {
            client.delete(&path(&["v1", "schedules", &id], &[]))?;
            outln!("{id} deleted");
        }
        ScheduleCommand::RunNow { id } => {
            let out = client.post(&path(&["v1", "schedules", &id, "run"], &[]), json!({}))?;
            outln!("{}", s(&out, "execution_id"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `plexus plugins list --remote`.
pub fn plugins(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let out = from_global(global)?.get("/v1/plugins")?;
    if json {
        return print_json(&out);
    }
    let rows = out["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let list =
                |k: &str| p[k].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(",");
            vec![s(p, "id"), s(p, "version"), s(p, "kind"), s(p, "status"), list("capabilities"), list("operations")]
        })
        .collect();
    table(&["ID", "VERSION", "KIND", "STATUS", "CAPABILITIES", "OPERATIONS"], rows);
    for error in out["errors"].as_array().into_iter().flatten() {
        errln!("not loaded: {}", error["message"].as_str().map_or_else(|| error.to_string(), str::to_owned));
    }
    Ok(ExitCode::SUCCESS)
}

/// `plexus plugins info ID --remote`.
pub fn plugin_info(global: &Global, id: &str) -> anyhow::Result<ExitCode> {
    print_json(&from_global(global)?.get(&path(&["v1", "plugins", id], &[]))?)
}
