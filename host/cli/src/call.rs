//! `plexus call`.

use crate::{Global, exit, load_host};
use anyhow::Context as _;
use clap::Args;
use plexus_host::{CallOptions, Host, PluginKind};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct CallArgs {
    /// PLUGIN OPERATION, e.g. `plexus.echo echo`; with --artifact or
    /// --plugin-folder the operation alone (the plugin id may still be given).
    #[arg(value_name = "PLUGIN OPERATION", num_args = 1..=2, required = true)]
    target: Vec<String>,
    /// Load only this artifact (.wasm component or native library), without
    /// a manifest: its id and version come from its metadata; default limits,
    /// no grants, no configuration. The plugin directories are not scanned.
    #[arg(long, value_name = "FILE", conflicts_with = "plugin_folder")]
    artifact: Option<PathBuf>,
    /// Load only this plugin folder (holding plugin.toml). The plugin directories are not scanned.
    #[arg(long, value_name = "DIR")]
    plugin_folder: Option<PathBuf>,
    /// For a plugin loaded as both kinds, the one to call (default: wasm, the sandboxed one).
    #[arg(long, value_parser = parse_kind)]
    kind: Option<PluginKind>,
    /// Parameters as JSON text, or @FILE to read them from a file.
    #[arg(long, short, value_name = "JSON|@FILE", default_value = "null")]
    params: String,
    /// Timeout, e.g. 500ms, 5s, 2m (at most 30 days). Default: the plugin's limits.timeout_ms.
    #[arg(long, value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Print JSON: {"ok": true, "output": ..., "metrics": ..., "elapsed_ms": ...}
    /// or {"ok": false, "error": {"kind": ..., "message": ...}}.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: CallArgs) -> anyhow::Result<ExitCode> {
    let params = read_params(&args.params)?;
    let single = args.artifact.as_ref().or(args.plugin_folder.as_ref());
    let host = match single {
        Some(path) => crate::plugins::load_one(global, path)?,
        None => load_host(global)?,
    };
    let (plugin, operation) = match (args.target.as_slice(), single) {
        ([plugin, operation], _) => (plugin.clone(), operation.clone()),
        ([operation], Some(_)) => match host.plugins().next() {
            Some(p) => (p.id().to_owned(), operation.clone()),
            None => {
                for error in host.load_errors() {
                    errln!("error: {error}");
                }
                return Ok(ExitCode::from(exit::NOT_LOADED));
            }
        },
        _ => anyhow::bail!(
            "give the plugin id and the operation (only --artifact or --plugin-folder make the id optional)"
        ),
    };
    if host.plugin(&plugin).is_none() {
        return Ok(report_not_loaded(&host, &plugin));
    }
    if let Some(kind) = args.kind
        && host.select(&plugin, Some(kind)).is_none()
    {
        let kinds: Vec<String> = host.kinds(&plugin).iter().map(ToString::to_string).collect();
        errln!("error: plugin `{plugin}` is not loaded as {kind} (loaded as: {})", kinds.join(", "));
        return Ok(ExitCode::from(exit::NOT_LOADED));
    }
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {percent:>3}% {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let sink_bar = bar.clone();
    let options = CallOptions {
        timeout: args.timeout,
        kind: args.kind,
        progress: Some(Arc::new(move |fraction, message: &str| {
            sink_bar.set_position((fraction * 1000.0) as u64);
            sink_bar.set_message(message.to_owned());
        })),
        ..CallOptions::default()
    };
    let started = Instant::now();
    let result = host.call(&plugin, &operation, params, options);
    bar.finish_and_clear();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(mut out) => {
            // Secrets handed to the plugin (its config) are not printed.
            plexus_host::secrets::redactor().value(&mut out.output);
            if args.json {
                let metrics: serde_json::Map<String, Value> =
                    out.metrics.into_iter().map(|(k, v)| (k, json!(v))).collect();
                outln!("{}", json!({"ok": true, "output": out.output, "metrics": metrics, "elapsed_ms": elapsed_ms}));
            } else {
                outln!("{}", serde_json::to_string_pretty(&out.output)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            // The plugin's error may quote a secret it was handed.
            let redactor = plexus_host::secrets::redactor();
            if args.json {
                let mut detail = json!({"kind": error.kind(), "message": error.to_string()});
                if let plexus_host::CallError::Plugin { error: e, .. } = &error {
                    detail["plugin_error"] = json!(e);
                }
                redactor.value(&mut detail);
                outln!("{}", json!({"ok": false, "error": detail, "elapsed_ms": elapsed_ms}));
            } else {
                errln!("error: {}", redactor.text(&error.to_string()));
            }
            Ok(ExitCode::from(exit::for_call_error(&error)))
        }
    }
}

/// Print why `id` is not available (its load error, if it had one) and return exit code 5.
pub fn report_not_loaded(host: &Host, id: &str) -> ExitCode {
    match host.load_errors().iter().find(|e| e.plugin.as_deref() == Some(id)) {
        Some(error) => errln!("error: plugin `{id}` did not load: {error}"),
        None => {
            let known: Vec<&str> = host.plugins().map(|p| p.id()).collect();
            errln!(
                "error: no plugin `{id}` is loaded (loaded: {})",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            );
        }
    }
    ExitCode::from(exit::NOT_LOADED)
}

/// `native` or `wasm`.
pub fn parse_kind(name: &str) -> Result<PluginKind, String> {
    PluginKind::parse(name).ok_or_else(|| format!("`{name}`: expected native or wasm"))
}

fn parse_timeout(text: &str) -> Result<Duration, plexus_workflow::duration::DurationError> {
    plexus_workflow::duration::parse_text(text, plexus_workflow::duration::MAX)
}

fn read_params(text: &str) -> anyhow::Result<Value> {
    let (source, text) = match text.strip_prefix('@') {
        Some(path) => (
            path.to_owned(),
            std::fs::read_to_string(path).with_context(|| format!("cannot read parameters from {path}"))?,
        ),
        None => ("--params".to_owned(), text.to_owned()),
    };
    serde_json::from_str(&text).with_context(|| format!("{source} is not valid JSON"))
}
