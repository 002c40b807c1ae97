//! `plexus plugins list|info`.

use crate::{Global, load_host};
use clap::Subcommand;
use plexus_client::{DirAccess, NetworkGrant, PluginDetails, PluginKind, PluginList, PluginStatus};
use plexus_daemon::views;
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
        PluginsCommand::Info { id, json, remote: false } => {
            let host = load_host(global)?;
            match host.plugin(&id) {
                Some(plugin) => print_details(&views::plugin_details(&host, plugin), json),
                None => Ok(crate::call::report_not_loaded(&host, &id)),
            }
        }
    }
}

/// `plugins list`, here or from the daemon: a table (load errors on stderr) or JSON.
pub fn print_list(list: &PluginList, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        outln!("{}", serde_json::to_string_pretty(list)?);
        return Ok(ExitCode::SUCCESS);
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
    Ok(ExitCode::SUCCESS)
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
        outln!("sandbox:       none (native plugins are trusted, in-process code)");
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
