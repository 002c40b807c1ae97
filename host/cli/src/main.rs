//! `plexus`: the Plexus plugin host's command line.

#[macro_use]
mod output;
mod cache;
mod call;
mod client;
mod daemon;
mod exit;
mod hook;
mod package;
mod plugins;
mod remote;
mod run;
mod secret;
mod workflow;

use clap::{Args, Parser, Subcommand};
use plexus_daemon::config::LogFormat;
use plexus_host::secrets::{EnvSecrets, MapSecrets, SecretSource};
use plexus_host::{Host, HostBuilder};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc: the engine allocates small, short-lived values at every step
/// (contexts, outputs, records), where it took 40% less time than the system
/// allocator on the workflow benchmarks (README, "Speed").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Plexus: load native and WASM plugins and run their operations.
#[derive(Parser)]
#[command(name = "plexus", version, about, long_about = None, after_help = "\
Examples:
  plexus plugins list --plugins-dir target/plugins
  plexus plugins info plexus.echo.wasm --plugins-dir target/plugins
  plexus call plexus.echo.native echo --params '{\"hello\": \"world\"}' --plugins-dir target/plugins
  plexus call plexus.echo.wasm sleep --params @params.json --timeout 2s --json
  plexus call --artifact target/wasm32-wasip2/release/my_plugin.wasm echo --params '{\"x\": 1}'
  plexus plugin check target/plugins/echo-wasm my_plugin.wasm
  plexus workflow validate examples/pipeline.yaml
  plexus run examples/pipeline.yaml --input input=data.csv --output results.json

With a daemon (plexus daemon; address and token from --config, $PLEXUS_URL, $PLEXUS_TOKEN):
  plexus workflow register examples/pipeline.yaml
  plexus exec start weather-pipeline --wait
  plexus exec logs <ID> --follow
  plexus schedule add nightly --when \"cron 0 2 * * *\" --timezone Europe/Berlin --workflow weather-pipeline
  plexus schedule list

Exit codes: 0 success, 1 error (including an invalid workflow or a refused request), 2 usage.
plexus call: 3 the plugin returned an error, 4 timeout, 5 plugin not loaded,
6 the plugin panicked, trapped, crashed its worker or hit a limit, 7 no capacity for the call (retry later),
12 a native plugin ended the process (it called exit during a call).
plexus plugins list, plugins check: 13 a plugin did not load or has a problem.
plexus run, exec start/status/retry --wait: 8 the workflow failed (completed
steps compensated), 9 a compensation failed too, 130 cancelled.
Daemon commands: 10 the daemon cannot be reached, 11 the token was refused.")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Args)]
struct Global {
    /// A directory whose subfolders are plugins (repeatable).
    /// Default: $PLEXUS_PLUGINS_DIR (colon-separated), else <data dir>/plugins ($PLEXUS_DATA_DIR, else ~/.local/share/plexus).
    #[arg(long = "plugins-dir", value_name = "DIR", global = true)]
    plugins_dirs: Vec<PathBuf>,
    /// Where compiled WASM components are cached.
    /// Default: $PLEXUS_CACHE_DIR, else ~/.cache/plexus/components.
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Compile WASM components on every start instead of caching them.
    #[arg(long, global = true)]
    no_cache: bool,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors in the log.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log format on stderr, text or json [default: $PLEXUS_LOG_FORMAT, for the daemon its config's `log_format`, else text].
    #[arg(long, global = true, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// How native plugins whose plugin.toml has no `isolation` run: in-process (fast; a crash ends
    /// plexus) or process (worker processes: a crash fails the call, a deadline kills it).
    /// Default: $PLEXUS_ISOLATION, else in-process; the daemon: its config's `native_isolation`, else process.
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_isolation)]
    isolation: Option<plexus_host::Isolation>,
    /// plexus.toml of the daemon (its settings; for client commands, its address and token file).
    /// Default: $PLEXUS_CONFIG.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The daemon's address for client commands: http://HOST:PORT or unix:/path.
    /// Default: $PLEXUS_URL, else `listen` of the config, else 127.0.0.1:7070.
    #[arg(long, global = true)]
    url: Option<String>,
    /// The daemon's token file. Default: $PLEXUS_TOKEN (the token itself), $PLEXUS_TOKEN_FILE,
    /// `token_file` of the config, else <data dir>/token.
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Let workflow steps name plugin PLUGIN as NAME (repeatable): Codomyrmex's `module`, the
    /// project orchestrator's `factory`. Also $PLEXUS_ALIASES (NAME=PLUGIN,NAME=PLUGIN); plugins
    /// may declare `aliases` in their plugin.toml too.
    #[arg(long = "alias", value_name = "NAME=PLUGIN", global = true, value_parser = parse_alias)]
    aliases: Vec<(String, String)>,
    /// Secrets for `${{ secrets.NAME }}` in plugin configs and step parameters, when plugins run
    /// here (`run`, `call`): a TOML file of NAME = "value" (keep it mode 600). Names it lacks come
    /// from $PLEXUS_SECRET_<NAME>. Default: $PLEXUS_SECRETS_FILE. The daemon keeps its own store.
    #[arg(long, value_name = "FILE", global = true)]
    secrets_file: Option<PathBuf>,
    /// Also append the log to this file (plain text). Default: $PLEXUS_LOG_FILE.
    #[arg(long, value_name = "FILE", global = true)]
    log_file: Option<PathBuf>,
}

fn parse_alias(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, plugin)) if !name.trim().is_empty() && !plugin.trim().is_empty() => {
            Ok((name.trim().to_owned(), plugin.trim().to_owned()))
        }
        _ => Err(format!("`{text}`: expected NAME=PLUGIN")),
    }
}

/// The aliases of `--alias`, then `$PLEXUS_ALIASES` (comma-separated NAME=PLUGIN).
fn aliases(global: &Global) -> anyhow::Result<Vec<(String, String)>> {
    let mut all = Vec::new();
    if let Ok(list) = std::env::var("PLEXUS_ALIASES") {
        for entry in list.split(',').filter(|e| !e.trim().is_empty()) {
            all.push(parse_alias(entry).map_err(|e| anyhow::anyhow!("PLEXUS_ALIASES: {e}"))?);
        }
    }
    all.extend(global.aliases.iter().cloned());
    Ok(all)
}

#[derive(Subcommand)]
enum Command {
    /// List, inspect and check plugins.
    #[command(subcommand, alias = "plugin")]
    Plugins(plugins::PluginsCommand),
    /// List and prune the compiled-component cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Run one operation of a plugin with a fresh execution context and print its output.
    Call(call::CallArgs),
    /// Run a workflow file to the end with live progress; exit 0 only if it completed.
    Run(run::RunArgs),
    /// Validate, plan and draw workflow files; register and manage them on the daemon.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Run the host daemon: plugins, workflows, executions and schedules over HTTP.
    Daemon(daemon::DaemonArgs),
    /// Start, list, inspect, cancel and retry executions on the daemon.
    #[command(subcommand)]
    Exec(remote::ExecCommand),
    /// Create, list, pause, resume, delete and fire schedules on the daemon.
    #[command(subcommand)]
    Schedule(remote::ScheduleCommand),
    /// Begin, show, commit and roll back transactions on the daemon (start executions in one with
    /// `plexus exec start --transaction ID`).
    #[command(subcommand)]
    Transaction(remote::TransactionCommand),
    /// Register workflow templates on the daemon and create workflows from them.
    #[command(subcommand)]
    Template(remote::TemplateCommand),
    /// Create, list, show and delete webhook triggers on the daemon; send a signed delivery.
    #[command(subcommand)]
    Hook(hook::HookCommand),
    /// Set, list and delete the daemon's secrets (never read back); make the secrets key.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// List the daemons sharing the daemon's state database (a cluster on PostgreSQL) with
    /// their heartbeats, plugins and running executions.
    Nodes(remote::NodesArgs),
}

fn main() -> ExitCode {
    // Started as a native plugin's worker process: serve it, and never come back here.
    #[cfg(unix)]
    plexus_host::worker::serve_if_requested();
    let cli = Cli::parse();
    // A native plugin that calls exit() during a call ends the process: say so, with exit code 12.
    plexus_host::process::report_plugin_exit();
    // A panic of the host itself is not a plugin ending the process.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") {
            plexus_host::process::host_exits();
        }
        default_hook(info);
    }));
    if let Err(e) = init_logging(&cli.global, &cli.command) {
        errln!("error: {e:#}");
        return ExitCode::from(exit::ERROR);
    }
    plexus_host::process::raise_open_file_limit();
    let result = match cli.command {
        Command::Plugins(cmd) => plugins::run(&cli.global, cmd),
        Command::Cache(cmd) => cache::run(&cli.global, cmd),
        Command::Call(args) => call::run(&cli.global, args),
        Command::Run(args) => run::run(&cli.global, args),
        Command::Workflow(cmd) => workflow::run(&cli.global, cmd),
        Command::Daemon(args) => daemon::run(&cli.global, args),
        Command::Exec(cmd) => remote::exec(&cli.global, cmd),
        Command::Schedule(cmd) => remote::schedule(&cli.global, cmd),
        Command::Transaction(cmd) => remote::transaction(&cli.global, cmd),
        Command::Template(cmd) => remote::template(&cli.global, cmd),
        Command::Nodes(args) => remote::nodes(&cli.global, args),
        Command::Secret(cmd) => secret::run(&cli.global, cmd),
        Command::Hook(cmd) => hook::run(&cli.global, cmd),
    };
    // From here on the process ends by our own choice, even if an abandoned native call still runs.
    plexus_host::process::host_exits();
    match result {
        Ok(code) => code,
        Err(error) => {
            errln!("error: {error}");
            for cause in error.chain().skip(1) {
                errln!("  caused by: {cause}");
            }
            ExitCode::from(client::exit_code(&error).unwrap_or(exit::ERROR))
        }
    }
}

/// The config file: `--config`, else `$PLEXUS_CONFIG`.
fn config_path(global: &Global) -> Option<PathBuf> {
    global.config.clone().or_else(|| std::env::var_os("PLEXUS_CONFIG").map(PathBuf::from))
}

/// The log: on stderr (and in `--log-file`), filtered by `RUST_LOG`, else
/// `-q`/`-v`, else (for `plexus run`) Codomyrmex's `LOG_LEVEL` (DEBUG, INFO,
/// WARNING, ERROR), else the command's default.
fn init_logging(global: &Global, command: &Command) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};
    let daemon = matches!(command, Command::Daemon(_));
    let level = match std::env::var("LOG_LEVEL") {
        Ok(level) if matches!(command, Command::Run(_)) => Some(log_level(&level)?),
        _ => None,
    };
    let default = match (global.quiet, global.verbose, level) {
        (true, ..) => "error",
        (false, 0, Some(level)) => level,
        // A daemon's log is its record: its own info lines, and plugins' logs.
        (false, 0, None) if daemon => "warn,plexus=info,plexus_host=info",
        (false, 0, None) => "warn,plexus=info,plexus_host=warn",
        (false, 1, _) => "info,plexus=debug,plexus_host=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal();
    let stderr: Box<dyn Layer<_> + Send + Sync> = match log_format(global, daemon) {
        LogFormat::Text if daemon => {
            fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_target(false).boxed()
        }
        LogFormat::Text => {
            fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).without_time().with_target(false).boxed()
        }
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let path = global.log_file.clone().or_else(|| std::env::var_os("PLEXUS_LOG_FILE").map(PathBuf::from));
    let file = match path {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("log file {}: cannot create its folder: {e}", path.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("log file {}: {e}", path.display()))?;
            Some(fmt::layer().with_writer(std::sync::Mutex::new(file)).with_ansi(false))
        }
        None => None,
    };
    tracing_subscriber::registry().with(filter).with(stderr).with(file).init();
    Ok(())
}

/// Codomyrmex's `LOG_LEVEL` as a filter.
fn log_level(level: &str) -> anyhow::Result<&'static str> {
    Ok(match level.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => "info,plexus=debug,plexus_host=debug",
        "INFO" => "warn,plexus=info,plexus_host=info",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => anyhow::bail!("LOG_LEVEL `{level}`: expected DEBUG, INFO, WARNING or ERROR"),
    })
}

fn parse_log_format(name: &str) -> Result<LogFormat, String> {
    LogFormat::parse(name).ok_or_else(|| format!("`{name}`: expected text or json"))
}

/// `--log-format`, else `$PLEXUS_LOG_FORMAT`, else (daemon) the config file's `log_format`, else text.
fn log_format(global: &Global, daemon: bool) -> LogFormat {
    if let Some(format) = global.log_format {
        return format;
    }
    let configured = std::env::var("PLEXUS_LOG_FORMAT").ok().and_then(|name| LogFormat::parse(&name)).or_else(|| {
        daemon
            .then(|| config_path(global))
            .flatten()
            .and_then(|path| plexus_daemon::config::RawConfig::load(&path).ok())
            .and_then(|c| c.log_format)
    });
    configured.unwrap_or_default()
}

/// The plugin directories: `--plugins-dir`, else `$PLEXUS_PLUGINS_DIR`, else the data directory.
fn plugin_dirs(global: &Global) -> Vec<PathBuf> {
    if !global.plugins_dirs.is_empty() {
        return global.plugins_dirs.clone();
    }
    if let Some(dirs) = std::env::var_os("PLEXUS_PLUGINS_DIR") {
        return std::env::split_paths(&dirs).collect();
    }
    vec![plexus_daemon::config::data_dir().join("plugins")]
}

/// Discover and load the plugins.
fn load_host(global: &Global) -> anyhow::Result<Host> {
    load_host_protecting(global, &[])
}

/// The plugins' host, no WASM grant reaching `protected`.
fn load_host_protecting(global: &Global, protected: &[&Path]) -> anyhow::Result<Host> {
    let mut builder = host_builder(global)?.plugin_dirs(plugin_dirs(global));
    for path in protected {
        builder = builder.protect(path);
    }
    Ok(builder.build()?)
}

fn parse_isolation(name: &str) -> Result<plexus_host::Isolation, String> {
    plexus_host::Isolation::parse(name).ok_or_else(|| format!("`{name}` is not an isolation: in-process or process"))
}

/// The isolation of native plugins `--isolation` or `$PLEXUS_ISOLATION` asks for, if any.
fn isolation(global: &Global) -> anyhow::Result<Option<plexus_host::Isolation>> {
    if let Some(isolation) = global.isolation {
        return Ok(Some(isolation));
    }
    match std::env::var("PLEXUS_ISOLATION") {
        Ok(name) => Ok(Some(parse_isolation(&name).map_err(|e| anyhow::anyhow!("PLEXUS_ISOLATION: {e}"))?)),
        Err(_) => Ok(None),
    }
}

/// Where secrets come from when plugins run in this process: `--secrets-file`
/// (or `$PLEXUS_SECRETS_FILE`), then `$PLEXUS_SECRET_<NAME>`.
fn secret_source(global: &Global) -> anyhow::Result<Arc<dyn SecretSource>> {
    let env: Arc<dyn SecretSource> = Arc::new(EnvSecrets);
    let file = global.secrets_file.clone().or_else(|| std::env::var_os("PLEXUS_SECRETS_FILE").map(PathBuf::from));
    Ok(match file {
        Some(file) => Arc::new(MapSecrets::from_file(&file, env).map_err(anyhow::Error::msg)?),
        None => env,
    })
}

/// A host builder with the cache, isolation and secrets options of `global` and no plugins yet.
fn host_builder(global: &Global) -> anyhow::Result<HostBuilder> {
    let mut builder = HostBuilder::new().secrets(secret_source(global)?);
    match aliases(global) {
        Ok(aliases) => {
            for (name, plugin) in aliases {
                builder = builder.alias(name, plugin);
            }
        }
        Err(e) => tracing::warn!("{e:#}; no aliases"),
    }
    match isolation(global) {
        Ok(Some(isolation)) => builder = builder.native_isolation(isolation),
        Ok(None) => {}
        Err(e) => tracing::warn!("{e:#}; native plugins run in-process"),
    }
    if let Some(dir) = &global.cache_dir {
        builder = builder.cache_dir(dir);
    }
    if global.no_cache {
        builder = builder.no_cache();
    }
    Ok(builder)
}
