//! `plexus plugins list|info|check`.

use crate::{Global, exit, load_host};
use clap::Subcommand;
use plexus_client::{DirAccess, NetworkGrant, PluginDetails, PluginKind, PluginList, PluginStatus};
use plexus_daemon::views;
use plexus_host::Host;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// List loaded plugins (id, version, kind, capabilities, operations) and load errors.
    List {
        /// Print JSON: {"plugins": [...], "errors": [...], "unavailable": {...}}.
        #[arg(long)]
        json: bool,
        /// Ask the running daemon instead of loading the plugins here.
        #[arg(long)]
        remote: bool,
    },
    /// Load each plugin folder or artifact on its own and report every problem;
    /// exit 13 if any did not load or has a problem.
    Check {
        /// Plugin folders (holding plugin.toml) or artifacts (.wasm, .so, .dylib, .dll).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Print JSON: {"checked": [{"path", "ok", "id", "version", "kind", "operations", "problems", "notes"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Create a plugin project from a template (Rust: a crate on plexus-sdk with a tested operation).
    New(crate::package::NewArgs),
    /// Build a plugin project as both kinds and write a plugin folder per kind
    /// (plugin.toml from the plugin's metadata, with the sha256) and a .tar.gz.
    Pack(crate::package::PackArgs),
    /// Build, load and (with --call) call a plugin project, again on every change of its sources.
    Dev(crate::package::DevArgs),
    /// Check a .tar.gz from `pack` (or a plugin folder) and install it into the
    /// first plugins directory; nothing is installed if a plugin does not load (exit 13).
    Install(crate::package::InstallArgs),
    /// Show one plugin's metadata, operations with their schemas, permissions and limits.
    Info {
        /// Plugin id, e.g. plexus.echo.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Ask the running daemon instead of loading the plugins here.
        #[arg(long)]
        remote: bool,
    },
}

pub fn run(global: &Global, command: PluginsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginsCommand::List { json, remote: true } => crate::remote::plugins(global, json),
        PluginsCommand::Info { id, json, remote: true } => crate::remote::plugin_info(global, &id, json),
        PluginsCommand::List { json, remote: false } => print_list(&views::plugin_list(&load_host(global)?), json),
        PluginsCommand::Check { paths, json } => check(global, &paths, json),
        PluginsCommand::New(args) => crate::package::new(args),
        PluginsCommand::Pack(args) => crate::package::pack(global, args),
        PluginsCommand::Install(args) => crate::package::install(global, args),
        PluginsCommand::Dev(args) => crate::package::dev(global, args),
        PluginsCommand::Info { id, json, remote: false } => {
            let host = load_host(global)?;
            match host.plugin(&id) {
                Some(plugin) => print_details(&views::plugin_details(&host, plugin), json),
                None => Ok(crate::call::report_not_loaded(&host, &id)),
            }
        }
    }
}

/// Load one plugin folder or artifact, and nothing else (the cache options
/// of `global` apply).
pub fn load_one(global: &Global, path: &Path) -> anyhow::Result<Host> {
    let builder = crate::host_builder(global)?;
    let builder = if path.is_file() { builder.artifact(path) } else { builder.plugin_folder(path) };
    Ok(builder.build()?)
}

/// One path checked by `plugins check`.
#[derive(Serialize)]
struct Checked {
    path: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    operations: Vec<String>,
    /// What makes it unusable or wrong.
    problems: Vec<String>,
    /// What an operator may want to know (e.g. no sha256 pinned).
    notes: Vec<String>,
}

fn check_one(global: &Global, path: &Path) -> anyhow::Result<Checked> {
    let mut checked = Checked {
        path: path.display().to_string(),
        ok: false,
        id: None,
        version: None,
        kind: None,
        operations: Vec::new(),
        problems: Vec::new(),
        notes: Vec::new(),
    };
    if !path.exists() {
        checked.problems.push("no such file or folder".into());
        return Ok(checked);
    }
    if path.is_dir() && !path.join(plexus_host::manifest::MANIFEST_FILE).is_file() {
        checked.problems.push(format!(
            "not a plugin folder (no {}); give a plugin folder or an artifact",
            plexus_host::manifest::MANIFEST_FILE
        ));
        return Ok(checked);
    }
    let host = load_one(global, path)?;
    checked.problems.extend(host.load_errors().iter().map(ToString::to_string));
    if let Some(plugin) = host.plugins().next() {
        let meta = plugin.runtime.metadata();
        checked.id = Some(meta.id.clone());
        checked.version = Some(meta.version.clone());
        checked.kind = Some(plugin.manifest.kind.to_string());
        checked.operations = meta.operations.iter().map(|o| o.name.clone()).collect();
        if meta.operations.is_empty() {
            checked.problems.push("the plugin declares no operations".into());
        }
        checked.problems.extend(plexus_workflow::validate::schema_problems(meta));
        if path.is_dir() {
            if plugin.manifest.sha256.is_none() {
                checked.notes.push("plugin.toml pins no sha256 of the artifact".into());
            }
        } else {
            checked.notes.push("an artifact alone: default limits, no grants, no configuration".into());
        }
    }
    checked.ok = checked.problems.is_empty();
    Ok(checked)
}

/// `plugins check`: each path loaded on its own; every problem reported.
fn check(global: &Global, paths: &[PathBuf], as_json: bool) -> anyhow::Result<ExitCode> {
    let checked = paths.iter().map(|p| check_one(global, p)).collect::<anyhow::Result<Vec<_>>>()?;
    let all_ok = checked.iter().all(|c| c.ok);
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "checked": checked }))?);
    } else {
        for c in &checked {
            if c.ok {
                outln!(
                    "ok    {} {} ({}, {} operation{}: {})  {}",
                    c.id.as_deref().unwrap_or("?"),
                    c.version.as_deref().unwrap_or("?"),
                    c.kind.as_deref().unwrap_or("?"),
                    c.operations.len(),
                    if c.operations.len() == 1 { "" } else { "s" },
                    c.operations.join(", "),
                    c.path
                );
            } else {
                outln!("FAIL  {}", c.path);
                for problem in &c.problems {
                    outln!("      {problem}");
                }
            }
            for note in &c.notes {
                outln!("      note: {note}");
            }
        }
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(exit::LOAD_FAILED) })
}

/// `plugins list`, here or from the daemon: a table (load errors on stderr) or
/// JSON; exit 13 when a plugin did not load.
pub fn print_list(list: &PluginList, as_json: bool) -> anyhow::Result<ExitCode> {
    let code = if list.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(exit::LOAD_FAILED) };
    if as_json {
        outln!("{}", serde_json::to_string_pretty(list)?);
        return Ok(code);
    }
    let rows: Vec<Vec<String>> = list
        .plugins
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.version.clone(),
                p.kind.to_string(),
                match p.status {
                    PluginStatus::Loaded => "loaded".to_owned(),
                    PluginStatus::Unavailable => "unavailable".to_owned(),
                },
                p.capabilities.join(","),
                p.operations.join(","),
            ]
        })
        .collect();
    if rows.is_empty() {
        outln!("no plugins loaded");
    } else {
        crate::remote::table(&["ID", "VERSION", "KIND", "STATUS", "CAPABILITIES", "OPERATIONS"], rows);
    }
    for (id, why) in &list.unavailable {
        errln!("unavailable: {id}: {why}");
    }
    if !list.errors.is_empty() {
        errln!("\n{} plugin(s) failed to load:", list.errors.len());
        for error in &list.errors {
            errln!("  {}", error.message);
        }
    }
    Ok(code)
}

/// `plugins info`, here or from the daemon.
pub fn print_details(details: &PluginDetails, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        outln!("{}", serde_json::to_string_pretty(details)?);
        return Ok(ExitCode::SUCCESS);
    }
    let meta = &details.metadata;
    outln!("{} {} — {}", meta.id, meta.version, meta.name);
    if !meta.description.is_empty() {
        outln!("{}", meta.description);
    }
    outln!();
    outln!("kind:          {}", details.kind);
    outln!("folder:        {}", details.path);
    outln!("artifact:      {}", details.artifact);
    outln!("contract:      {}", meta.contract_version);
    outln!("authors:       {}", meta.authors.join(", "));
    outln!("license:       {}", meta.license.as_deref().unwrap_or("-"));
    outln!("capabilities:  {}", meta.capabilities.join(", "));
    outln!("timeout:       {} ms", details.limits.timeout);
    if details.kind == PluginKind::Wasm {
        let p = &details.permissions;
        outln!("memory limit:  {} MiB", details.limits.memory_bytes >> 20);
        outln!("output limit:  {} bytes", details.limits.output_bytes);
        let dirs: Vec<String> = p
            .dirs
            .iter()
            .map(|d| {
                let access = match d.access {
                    DirAccess::ReadOnly => "read-only",
                    DirAccess::ReadWrite => "read-write",
                };
                format!("{} -> {} ({access})", d.host, d.guest)
            })
            .collect();
        outln!("dirs:          {}", if dirs.is_empty() { "none".into() } else { dirs.join("; ") });
        outln!("env:           {}", if p.env.is_empty() { "none".into() } else { p.env.join(", ") });
        let network = match &p.network {
            NetworkGrant::All(false) => "denied".to_owned(),
            NetworkGrant::All(true) => "any address (TCP, UDP, name lookups)".to_owned(),
            NetworkGrant::Endpoints(list) => list.join(", "),
        };
        outln!("network:       {network}");
    } else {
        let isolation = match details.isolation.as_deref() {
            Some("process") => "worker processes (a crash fails the call; a deadline kills the worker)",
            _ => "in the host's process",
        };
        outln!("isolation:     {isolation}");
        match &details.landlock {
            Some(l) => {
                let list = |paths: &[String]| if paths.is_empty() { "none".into() } else { paths.join(", ") };
                outln!("sandbox:       landlock (its own files and the system libraries, plus the following)");
                outln!("  read:        {}", list(&l.read));
                outln!("  write:       {}", list(&l.write));
                outln!("  tcp:         {}", if l.tcp { "allowed" } else { "denied" });
            }
            None => outln!("sandbox:       none (native plugins are trusted code)"),
        }
    }
    outln!("\noperations:");
    for op in &meta.operations {
        outln!("  {} — {}", op.name, op.description);
        if let Some(schema) = &op.params_schema {
            outln!("    parameters: {}", serde_json::to_string(schema)?);
        }
        if let Some(schema) = &op.output_schema {
            outln!("    output:     {}", serde_json::to_string(schema)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
