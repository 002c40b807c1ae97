//! `plexus daemon`: run the host daemon (see `plexus_host::daemon`).

use crate::Global;
use clap::{Args, Subcommand};
use plexus_daemon::config::RawConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
#[command(after_help = "\
Every setting can also come from plexus.toml (--config or $PLEXUS_CONFIG) and the
environment; the command line wins, then the environment, then the file.

Examples:
  plexus daemon --plugins-dir target/plugins
  plexus daemon --config /etc/plexus/plexus.toml --listen unix:/run/plexus.sock
  plexus daemon config --json      # the resolved configuration
  plexus daemon openapi > openapi.json")]
pub struct DaemonArgs {
    #[command(subcommand)]
    command: Option<DaemonCommand>,
    /// Listen address: HOST:PORT or unix:/path [default: 127.0.0.1:7070].
    #[arg(long, env = "PLEXUS_LISTEN")]
    listen: Option<String>,
    /// State database: a SQLite file, or postgres://user:password@host:port/db for
    /// PostgreSQL (several daemons on one database) [default: <data dir>/state.db].
    #[arg(long, env = "PLEXUS_STATE_DB", value_name = "FILE|URL")]
    state_db: Option<PathBuf>,
    /// Executions running at once [default: 16].
    #[arg(long, env = "PLEXUS_WORKERS")]
    workers: Option<usize>,
    /// How long running steps may finish after SIGTERM, e.g. 30s [default: 30s].
    #[arg(long, env = "PLEXUS_GRACE_PERIOD")]
    grace_period: Option<String>,
    /// On PostgreSQL: another node takes over this one's executions this long after its
    /// last heartbeat, e.g. 10s (1s to 10m) [default: 10s].
    #[arg(long, env = "PLEXUS_NODE_LEASE")]
    node_lease: Option<String>,
    /// The secrets store's key: a file holding 64 hex digits, mode 600 (`plexus secret keygen`
    /// makes one; $PLEXUS_SECRETS_KEY, the key itself, wins) [default: no secrets].
    #[arg(long, env = "PLEXUS_SECRETS_KEY_FILE", value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Default per-call timeout in ms for plugins whose manifest sets none [default: 30000].
    #[arg(long, env = "PLEXUS_DEFAULT_TIMEOUT_MS")]
    default_timeout_ms: Option<u64>,
    /// Default WASM memory limit in MiB [default: 64].
    #[arg(long, env = "PLEXUS_DEFAULT_MEMORY_MIB")]
    default_memory_mib: Option<u64>,
    /// Default bound on a WASM plugin's captured stdout + stderr per call, in bytes [default: 65536].
    #[arg(long, env = "PLEXUS_DEFAULT_OUTPUT_BYTES")]
    default_output_bytes: Option<usize>,
    /// Largest accepted request body in bytes [default: 1048576].
    #[arg(long, env = "PLEXUS_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// How long ended executions (and their log) are kept, e.g. 7d, or `forever` [default: 30d].
    #[arg(long, env = "PLEXUS_RETENTION")]
    retention: Option<String>,
    /// Do not watch the plugin directories for changes (POST /v1/plugins/reload still rescans).
    #[arg(long, env = "PLEXUS_NO_WATCH")]
    no_watch: bool,
}

#[derive(Subcommand)]
enum DaemonCommand {
    /// Print the resolved configuration and exit.
    Config {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the HTTP API's OpenAPI document and exit.
    Openapi,
}

/// The file, then the environment and the command line on top.
fn resolve(global: &Global, args: &DaemonArgs) -> anyhow::Result<plexus_daemon::config::DaemonConfig> {
    let mut raw = match crate::config_path(global) {
        Some(path) => RawConfig::load(&path)?,
        None => RawConfig::default(),
    };
    if !global.plugins_dirs.is_empty() || std::env::var_os("PLEXUS_PLUGINS_DIR").is_some() || raw.plugin_dirs.is_none()
    {
        raw.plugin_dirs = Some(crate::plugin_dirs(global));
    }
    if let Some(dir) = &global.cache_dir {
        raw.cache_dir = Some(dir.clone());
    }
    if let Some(file) = global.token_file.clone().or_else(|| std::env::var_os("PLEXUS_TOKEN_FILE").map(PathBuf::from)) {
        raw.token_file = Some(file);
    }
    raw.listen = args.listen.clone().or(raw.listen);
    raw.state_db = args.state_db.clone().or(raw.state_db);
    raw.workers = args.workers.or(raw.workers);
    raw.native_isolation = crate::isolation(global)?.or(raw.native_isolation);
    raw.grace_period = args.grace_period.clone().or(raw.grace_period);
    raw.node_lease = args.node_lease.clone().or(raw.node_lease);
    raw.secrets_key_file = args.secrets_key_file.clone().or(raw.secrets_key_file);
    raw.max_body_bytes = args.max_body_bytes.or(raw.max_body_bytes);
    raw.retention = args.retention.clone().or(raw.retention);
    raw.defaults.timeout_ms = args.default_timeout_ms.or(raw.defaults.timeout_ms);
    raw.defaults.memory_mib = args.default_memory_mib.or(raw.defaults.memory_mib);
    raw.defaults.output_bytes = args.default_output_bytes.or(raw.defaults.output_bytes);
    if args.no_watch {
        raw.watch = Some(false);
    }
    raw.log_format = Some(crate::log_format(global, true));
    let mut config = raw.resolve()?;
    if global.no_cache {
        config.cache_dir = None;
    }
    Ok(config)
}

pub fn run(global: &Global, args: DaemonArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        Some(DaemonCommand::Openapi) => {
            outln!("{}", serde_json::to_string_pretty(&plexus_daemon::openapi::document())?);
            return Ok(ExitCode::SUCCESS);
        }
        Some(DaemonCommand::Config { json }) => {
            let config = resolve(global, &args)?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&config)?);
            } else {
                outln!("{config:#?}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let config = resolve(global, &args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(plexus_daemon::server::serve(config))?;
    // Abandoned plugin threads must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}
