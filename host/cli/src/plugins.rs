//! `plexus plugins list|info`.

use crate::{Global, load_host};
use clap::Subcommand;
use plexus_host::{Host, LoadedPlugin};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// List loaded plugins (id, version, kind, capabilities, operations) and load errors.
    List {
        /// Print JSON: {"plugins": [...], "errors": [...]}.
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
        /// Ask the running daemon instead of loading the plugins here (prints JSON).
        #[arg(long)]
        remote: bool,
    },
}

pub fn run(global: &Global, command: PluginsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginsCommand::List { json, remote: true } => crate::remote::plugins(global, json),
        PluginsCommand::Info { id, remote: true, .. } => crate::remote::plugin_info(global, &id),
        PluginsCommand::List { json, remote: false } => list(&load_host(global)?, json),
        PluginsCommand::Info { id, json, remote: false } => info(&load_host(global)?, &id, json),
    }
}

fn list(host: &Host, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        let plugins: Vec<Value> = host.plugins().map(LoadedPlugin::summary).collect();
        outln!("{}", serde_json::to_string_pretty(&json!({ "plugins": plugins, "errors": host.load_errors() }))?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = host
        .plugins()
        .map(|p| {
            let meta = p.runtime.metadata();
            vec![
                p.id().to_owned(),
                meta.version.clone(),
                p.manifest.kind.to_string(),
                meta.capabilities.join(","),
                meta.operations.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    if rows.is_empty() {
        outln!("no plugins loaded");
    } else {
        crate::remote::table(&["ID", "VERSION", "KIND", "CAPABILITIES", "OPERATIONS"], rows);
    }
    let errors = host.load_errors();
    if !errors.is_empty() {
        errln!("\n{} plugin(s) failed to load:", errors.len());
        for error in errors {
            errln!("  {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn info(host: &Host, id: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let Some(plugin) = host.plugin(id) else {
        return Ok(crate::call::report_not_loaded(host, id));
    };
    let meta = plugin.runtime.metadata();
    let m = &plugin.manifest;
    let details = plugin.details();
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&details)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{} {} — {}", meta.id, meta.version, meta.name);
    if !meta.description.is_empty() {
        outln!("{}", meta.description);
    }
    outln!();
    outln!("kind:          {}", m.kind);
    outln!("folder:        {}", m.dir.display());
    outln!("artifact:      {}", m.artifact.display());
    outln!("contract:      {}", meta.contract_version);
    outln!("authors:       {}", meta.authors.join(", "));
    outln!("license:       {}", meta.license.as_deref().unwrap_or("-"));
    outln!("capabilities:  {}", meta.capabilities.join(", "));
    outln!("timeout:       {} ms", m.limits.timeout.as_millis());
    if m.kind == plexus_host::PluginKind::Wasm {
        outln!("memory limit:  {} MiB", m.limits.memory_bytes >> 20);
        outln!("output limit:  {} bytes", m.limits.output_bytes);
        let dirs: Vec<String> = m
            .permissions
            .dirs
            .iter()
            .map(|d| format!("{} -> {} ({:?})", d.host.display(), d.guest, d.access))
            .collect();
        outln!("dirs:          {}", if dirs.is_empty() { "none".into() } else { dirs.join("; ") });
        outln!(
            "env:           {}",
            if m.permissions.env.is_empty() { "none".into() } else { m.permissions.env.join(", ") }
        );
        let network = match &m.permissions.network {
            plexus_host::manifest::Network::None => "denied".to_owned(),
            plexus_host::manifest::Network::Any => "any address (TCP, UDP, name lookups)".to_owned(),
            plexus_host::manifest::Network::Allow(list) => {
                list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            }
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
