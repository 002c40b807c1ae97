//! `plexus cache list|prune`: the compiled-component cache.

use crate::Global;
use clap::Subcommand;
use plexus_host::wasm::cache::{ComponentCache, PrunePolicy};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum CacheCommand {
    /// List the compiled components in the cache, most recently used first.
    List {
        /// Print JSON: {"dir", "entries": [{"name", "bytes", "last_used_ms", "in_use"}], "bytes"}.
        #[arg(long)]
        json: bool,
    },
    /// Remove compiled components unused for --max-age, then the least
    /// recently used beyond --max-mib (the host also does this after every scan,
    /// with the defaults).
    Prune {
        /// Remove entries unused for longer than this, e.g. 14d, 12h, 0s (everything unused now).
        #[arg(long, default_value = "14d", value_parser = parse_age)]
        max_age: Duration,
        /// Then keep at most this many MiB of entries.
        #[arg(long, default_value_t = 1024)]
        max_mib: u64,
        /// Print JSON: {"removed": [...], "freed_bytes", "kept", "kept_bytes"}.
        #[arg(long)]
        json: bool,
    },
}

fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e} (e.g. 14d, 12h, 30m)"))
}

/// The cache `--cache-dir` (or the default) names.
fn open(global: &Global) -> anyhow::Result<ComponentCache> {
    let dir = global.cache_dir.clone().or_else(plexus_host::default_cache_dir);
    let Some(dir) = dir.filter(|_| !global.no_cache) else {
        anyhow::bail!("no component cache: give --cache-dir or set $PLEXUS_CACHE_DIR (or $HOME)");
    };
    Ok(ComponentCache::new(Some(dir))?)
}

pub fn run(global: &Global, command: CacheCommand) -> anyhow::Result<ExitCode> {
    let cache = open(global)?;
    let dir = cache.dir().map(|d| d.display().to_string()).unwrap_or_default();
    match command {
        CacheCommand::List { json } => {
            let entries = cache.entries()?;
            let bytes: u64 = entries.iter().map(|e| e.bytes).sum();
            if json {
                let listing = serde_json::json!({ "dir": dir, "entries": entries, "bytes": bytes });
                outln!("{}", serde_json::to_string_pretty(&listing)?);
            } else {
                let rows = entries
                    .iter()
                    .map(|e| {
                        let when = chrono::DateTime::from_timestamp_millis(e.last_used_ms as i64)
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default();
                        vec![e.name.clone(), format!("{:.1} MiB", e.bytes as f64 / 1048576.0), when]
                    })
                    .collect();
                crate::remote::table(&["ENTRY", "SIZE", "LAST USED"], rows);
                outln!("{} entries, {:.1} MiB in {dir}", entries.len(), bytes as f64 / 1048576.0);
            }
        }
        CacheCommand::Prune { max_age, max_mib, json } => {
            let policy = PrunePolicy { max_age, max_bytes: max_mib.saturating_mul(1 << 20) };
            let report = cache.prune(&policy)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                outln!(
                    "removed {} entries ({:.1} MiB); {} kept ({:.1} MiB) in {dir}",
                    report.removed.len(),
                    report.freed_bytes as f64 / 1048576.0,
                    report.kept,
                    report.kept_bytes as f64 / 1048576.0
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
