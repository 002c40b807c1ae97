//! The daemon's configuration: `plexus.toml`, read in two stages (raw serde
//! struct with `deny_unknown_fields` → validated [`DaemonConfig`]), every
//! setting overridable on the command line or by `PLEXUS_*` variables.
//!
//! ```toml
//! # Every key is optional; these are the defaults.
//! plugin_dirs = ["~/.local/share/plexus/plugins"]  # $PLEXUS_PLUGINS_DIR
//! state_db = "~/.local/share/plexus/state.db"      # embedded SQLite, WAL mode; or
//!                                                   # "postgres://user:pw@host:5432/db" (several daemons)
//! listen = "127.0.0.1:7070"                         # or "unix:/run/plexus.sock"
//! token_file = "~/.local/share/plexus/token"        # created (mode 0600) on first start
//! artifacts_dir = "~/.local/share/plexus/artifacts" # the artifact store (beside a SQLite state_db);
//!                                                   # several daemons on PostgreSQL share one folder
//! cache_dir = "~/.cache/plexus/components"          # compiled WASM components
//! workers = 16                                      # executions running at once
//! native_isolation = "process"                      # native plugins whose plugin.toml has no
//!                                                   # `isolation`: worker processes, or "in-process"
//! grace_period = "30s"                              # SIGTERM: how long running steps may finish (≤ 30 days)
//! node_lease = "10s"                                # PostgreSQL: another node takes over this one's
//!                                                   # executions this long after its last heartbeat (1s–10m)
//! log_format = "text"                               # or "json"
//! max_body_bytes = 1048576                          # larger request bodies get 413
//! watch = true                                      # hot plugin reload
//! retention = "30d"                                 # ended executions (and their log) are deleted
//!                                                   # this long after they end; "forever" keeps them
//!
//! secrets_key_file = "/etc/plexus/secrets.key"     # 64 hex digits, mode 600: encrypts the secrets
//!                                                   # store ($PLEXUS_SECRETS_KEY wins; none: no secrets)
//!
//! [defaults]                                        # for plugins whose manifest says nothing
//! timeout_ms = 30000                                # per call (a step's `timeout` overrides)
//! memory_mib = 64                                   # WASM linear memory
//! output_bytes = 65536                              # WASM captured stdout + stderr
//! state_bytes = 16777216                            # shared state after a plugin's write
//! log_bytes = 1048576                               # host log service per call
//! handles = 256                                     # WASM resource handles per call
//! artifact_bytes = 1073741824                       # the artifacts one call writes, together
//!
//! [max_limits]                                      # the most a manifest may ask for (same keys);
//! timeout_ms = 86400000                             # above it a plugin does not load. Defaults:
//! memory_mib = 4096                                 # 1 day, 4 GiB, 16 MiB of output, 256 MiB of
//!                                                   # state, 64 MiB of log, 4,096 handles,
//!                                                   # 64 GiB of artifacts per call
//!
//! [aliases]                                         # other names of plugins in workflow steps
//! data_visualization = "plexus.csv"                 # (Codomyrmex `module`, factories' `factory`)
//! ```

use plexus_host::manifest::{CEILING_TIMEOUT_MS, Limits, RawLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the daemon (and the CLI) write logs on stderr: `log_format` in the
/// config, `--log-format`, `$PLEXUS_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event, for people (the default).
    #[default]
    Text,
    /// One JSON object per event (tracing-subscriber's JSON format).
    Json,
}

impl LogFormat {
    /// The format named `name` (`text` or `json`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// The shortest `node_lease`.
pub const MIN_NODE_LEASE: Duration = Duration::from_secs(1);

/// The longest `node_lease`.
pub const MAX_NODE_LEASE: Duration = Duration::from_secs(600);

/// `plexus.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `plugin_dirs = ["/srv/plexus/plugins"]`
    pub plugin_dirs: Option<Vec<PathBuf>>,
    /// `state_db = "/var/lib/plexus/state.db"` (SQLite) or
    /// `state_db = "postgres://user:password@host:5432/plexus"` (PostgreSQL).
    pub state_db: Option<PathBuf>,
    /// `listen = "127.0.0.1:7070"` or `listen = "unix:/run/plexus.sock"`
    pub listen: Option<String>,
    /// `token_file = "/var/lib/plexus/token"`
    pub token_file: Option<PathBuf>,
    /// `cache_dir = "/var/cache/plexus"`
    pub cache_dir: Option<PathBuf>,
    /// `artifacts_dir = "/var/lib/plexus/artifacts"`
    pub artifacts_dir: Option<PathBuf>,
    /// `workers = 16`
    pub workers: Option<usize>,
    /// `native_isolation = "process"` or `"in-process"`
    pub native_isolation: Option<plexus_host::Isolation>,
    /// `grace_period = "30s"`
    pub grace_period: Option<String>,
    /// `node_lease = "10s"` (a daemon on PostgreSQL; 1 s to 10 min)
    pub node_lease: Option<String>,
    /// `log_format = "json"`
    pub log_format: Option<LogFormat>,
    /// `max_body_bytes = 1048576`
    pub max_body_bytes: Option<usize>,
    /// `watch = false`
    pub watch: Option<bool>,
    /// `retention = "30d"`, or `"forever"`
    pub retention: Option<String>,
    /// `secrets_key_file = "/etc/plexus/secrets.key"` (64 hex digits,
    /// mode 600; `$PLEXUS_SECRETS_KEY` wins)
    pub secrets_key_file: Option<PathBuf>,
    /// `[defaults]`
    #[serde(default)]
    pub defaults: RawLimits,
    /// `[max_limits]`
    #[serde(default)]
    pub max_limits: RawLimits,
    /// `[aliases]`: `data_visualization = "plexus.csv"` lets workflow steps
    /// name a plugin by another name (Codomyrmex's `module`, the project
    /// orchestrator's `factory`); see [`plexus_host::Host::resolve`].
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

/// The most entries `[aliases]` may hold.
pub const MAX_ALIASES: usize = 10_000;

/// The largest `[max_limits]` a daemon accepts: 30 days of timeout, 4 GiB of
/// memory, 1 GiB of output, 4 GiB of state, 1 GiB of log, 65,536 handles,
/// 1 TiB of artifacts per call.
fn ceiling() -> Limits {
    Limits {
        timeout: Duration::from_millis(CEILING_TIMEOUT_MS),
        memory_bytes: plexus_host::manifest::MAX_MEMORY_MIB << 20,
        output_bytes: 1 << 30,
        state_bytes: 4 << 30,
        log_bytes: 1 << 30,
        handles: 65_536,
        artifact_bytes: 1 << 40,
    }
}

/// Where the daemon listens (defined by the client crate, which connects to it).
pub use plexus_client::Listen;

/// Where the state is kept: a SQLite file's path, or a PostgreSQL URL.
/// Printed (`Debug`, `Display`, JSON) without the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct StateDb(pub PathBuf);

impl StateDb {
    /// The PostgreSQL URL, when it is one (`postgres://…`, `postgresql://…`).
    pub fn url(&self) -> Option<&str> {
        self.0.to_str().filter(|s| crate::store::is_postgres_url(s))
    }

    /// The SQLite file, when it is not a URL.
    pub fn file(&self) -> Option<&Path> {
        self.url().is_none().then_some(self.0.as_path())
    }
}

impl std::fmt::Display for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.url() {
            Some(url) => f.write_str(&crate::store::redact_url(url)),
            None => write!(f, "{}", self.0.display()),
        }
    }
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl Serialize for StateDb {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonConfig {
    /// Plugin directories, scanned in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// The state database: a SQLite file, or a PostgreSQL URL
    /// (`postgres://…`, see [`crate::store::PgStore`]).
    pub state_db: StateDb,
    /// Where the HTTP API listens.
    pub listen: Listen,
    /// The bearer-token file.
    pub token_file: PathBuf,
    /// The artifact store's folder (content-addressed blobs, see
    /// [`plexus_host::artifacts::BlobStore`]): beside a SQLite `state_db` by
    /// default; daemons sharing a PostgreSQL store must share it too.
    pub artifacts_dir: PathBuf,
    /// Compiled-component cache (`None`: compile on every start).
    pub cache_dir: Option<PathBuf>,
    /// Executions running at once; more wait in line.
    pub workers: usize,
    /// How native plugins whose manifest has no `isolation` run. Default:
    /// [`plexus_host::Isolation::Process`], so that no plugin can take the
    /// daemon down (a crash fails its call; a deadline kills its worker).
    pub native_isolation: plexus_host::Isolation,
    /// How long running steps may finish after SIGTERM.
    #[serde(serialize_with = "plexus_workflow::duration::serialize_ms")]
    pub grace_period: Duration,
    /// On PostgreSQL: how long after this node's last heartbeat another
    /// node takes over its executions (heartbeats come every quarter of it).
    #[serde(serialize_with = "plexus_workflow::duration::serialize_ms")]
    pub node_lease: Duration,
    /// How logs are written on stderr.
    pub log_format: LogFormat,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Watch plugin directories and reload on change.
    pub watch: bool,
    /// How long an ended execution is kept (`None`: forever).
    #[serde(serialize_with = "plexus_workflow::duration::serialize_opt_ms")]
    pub retention: Option<Duration>,
    /// Limits for plugins whose manifest does not set them.
    #[serde(skip)]
    pub defaults: Limits,
    /// The most a manifest may ask for.
    #[serde(skip)]
    pub max_limits: Limits,
    /// Other names of plugins: alias → plugin id.
    pub aliases: BTreeMap<String, String>,
    /// The secrets key's file (see [`crate::secrets`]; `None`: only
    /// `$PLEXUS_SECRETS_KEY`, else no key).
    pub secrets_key_file: Option<PathBuf>,
}

/// How long ended executions are kept unless `retention` says otherwise: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest `retention` other than `"forever"`: 100 years.
pub const MAX_RETENTION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The data directory: `$PLEXUS_DATA_DIR`, else `$XDG_DATA_HOME/plexus`, else
/// `~/.local/share/plexus`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PLEXUS_DATA_DIR") {
        return dir.into();
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("plexus")
}

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

impl RawConfig {
    /// Read `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, or has an unknown key (the
    /// message names the file, line and key).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = |message: String| ConfigError::File { path: path.to_owned(), message };
        let text = std::fs::read_to_string(path).map_err(|e| file(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| file(format!("{}: {e}", path.display())))
    }

    /// Fill in defaults and check values.
    ///
    /// # Errors
    /// A value out of range or unparsable, naming the key.
    pub fn resolve(self) -> Result<DaemonConfig, ConfigError> {
        let data = data_dir();
        let value = |key: &'static str, message: String| ConfigError::Value { key, message };
        let listen = Listen::parse(self.listen.as_deref().unwrap_or(DEFAULT_LISTEN))
            .map_err(|e| value("listen", e.to_string()))?;
        let grace_period = match &self.grace_period {
            Some(text) => plexus_workflow::duration::parse_text(text, plexus_workflow::duration::MAX)
                .map_err(|e| value("grace_period", format!("grace_period: {e}")))?,
            None => Duration::from_secs(30),
        };
        if let Some(db) = self.state_db.as_ref().and_then(|p| p.to_str())
            && !crate::store::is_postgres_url(db)
            && ["host=", "dbname=", "user=", "password="]
                .iter()
                .any(|k| db.split_whitespace().any(|w| w.starts_with(k)))
        {
            return Err(value(
                "state_db",
                "state_db: a PostgreSQL database is named by a URL, postgres://user:password@host:5432/db \
                 (the key=value form is not taken: it would be read as a file name)"
                    .into(),
            ));
        }
        let node_lease = match &self.node_lease {
            Some(text) => plexus_workflow::duration::parse_text(text, MAX_NODE_LEASE)
                .map_err(|e| value("node_lease", format!("node_lease: {e}")))
                .and_then(|d| {
                    if d < MIN_NODE_LEASE {
                        Err(value("node_lease", format!("node_lease: {text} is under the minimum of 1s")))
                    } else {
                        Ok(d)
                    }
                })?,
            None => crate::core::DEFAULT_LEASE,
        };
        let retention = match self.retention.as_deref() {
            Some("forever") => None,
            Some(text) => Some(
                plexus_workflow::duration::parse_text(text, MAX_RETENTION)
                    .map_err(|e| value("retention", format!("retention: {e}")))?,
            ),
            None => Some(DEFAULT_RETENTION),
        };
        let workers = self.workers.unwrap_or(16);
        if workers == 0 {
            return Err(value("workers", "workers must be at least 1".into()));
        }
        let log_format = self.log_format.unwrap_or_default();
        let max_limits = self.max_limits.over(Limits::default_max());
        max_limits.check_within(&ceiling()).map_err(|e| e.in_section("max_limits"))?;
        // Defaults left unset follow a lower maximum; defaults set above it are errors.
        let defaults = self.defaults.over(Limits::default().clamped_to(&max_limits));
        defaults.check_within(&max_limits).map_err(|e| e.in_section("defaults"))?;
        if self.aliases.len() > MAX_ALIASES {
            return Err(value("aliases", format!("[aliases]: {} entries, at most {MAX_ALIASES}", self.aliases.len())));
        }
        let id_rule = plexus_workflow::definition::ID_RULE;
        if let Some(name) = self.aliases.keys().find(|name| !plexus_workflow::definition::is_valid_id(name, 200)) {
            return Err(value("aliases", format!("[aliases]: `{name}`: {id_rule}, at most 200")));
        }
        let state_db = StateDb(self.state_db.unwrap_or_else(|| data.join("state.db")));
        let artifacts_dir = self.artifacts_dir.unwrap_or_else(|| match state_db.file() {
            Some(file) => file.parent().unwrap_or(std::path::Path::new(".")).join("artifacts"),
            None => data.join("artifacts"),
        });
        Ok(DaemonConfig {
            plugin_dirs: self.plugin_dirs.unwrap_or_else(|| vec![data.join("plugins")]),
            state_db,
            artifacts_dir,
            listen,
            token_file: self.token_file.unwrap_or_else(|| data.join("token")),
            cache_dir: self.cache_dir.or_else(plexus_host::default_cache_dir),
            workers,
            native_isolation: self.native_isolation.unwrap_or(plexus_host::Isolation::Process),
            grace_period,
            node_lease,
            log_format,
            max_body_bytes: self.max_body_bytes.unwrap_or(1 << 20),
            watch: self.watch.unwrap_or(true),
            retention,
            defaults,
            max_limits,
            aliases: self.aliases,
            secrets_key_file: self.secrets_key_file,
        })
    }
}

/// Why the daemon's configuration cannot be used. Each message names the
/// file or the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file cannot be read, is not TOML, or has an unknown key.
    #[error("{message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the file, line and key.
        message: String,
    },
    /// A value is out of range or cannot be parsed.
    #[error("{message}")]
    Value {
        /// The key, e.g. `grace_period`.
        key: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A limit (`[defaults]`, `[max_limits]`) is zero or above its maximum.
    #[error(transparent)]
    Limit(#[from] plexus_host::manifest::LimitOutOfRange),
    /// The API token file cannot be read or created, or is empty.
    #[error("{message}")]
    Token {
        /// The token file.
        path: PathBuf,
        /// What went wrong, naming the file.
        message: String,
    },
}

/// Read the bearer token from `path`, creating a random one (32 bytes, hex)
/// readable only by its owner if the file does not exist.
///
/// # Errors
/// The file cannot be read or created, or is empty.
pub fn ensure_token(path: &Path) -> Result<String, ConfigError> {
    let token_error = |message: String| ConfigError::Token { path: path.to_owned(), message };
    ensure_token_text(path).map_err(token_error)
}

fn ensure_token_text(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            if token.is_empty() {
                return Err(format!("token file {} is empty", path.display()));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
            let token = plexus_host::wasm::cache::hex(&bytes);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new API token");
            Ok(token)
        }
        Err(e) => Err(format!("cannot read token file {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = toml::from_str::<RawConfig>("listen = \"127.0.0.1:1\"\nworkerz = 3\n").unwrap_err().to_string();
        assert!(err.contains("workerz"), "{err}");
    }

    #[test]
    fn defaults_and_overrides_resolve() {
        let raw: RawConfig = toml::from_str(
            "listen = \"unix:/tmp/p.sock\"\nworkers = 3\ngrace_period = \"2s\"\n[defaults]\ntimeout_ms = 500\n",
        )
        .unwrap();
        let c = raw.resolve().unwrap();
        assert_eq!(c.listen, Listen::Unix("/tmp/p.sock".into()));
        assert_eq!((c.workers, c.grace_period), (3, Duration::from_secs(2)));
        assert_eq!(c.defaults.timeout, Duration::from_millis(500));
        assert!(Listen::parse("localhost").is_err());
        assert!(RawConfig { workers: Some(0), ..Default::default() }.resolve().is_err());
    }

    #[test]
    fn aliases_map_names_to_plugins_and_bad_names_are_refused() {
        let raw: RawConfig = toml::from_str("[aliases]\ndata_io = \"plexus.csv\"\n").unwrap();
        assert_eq!(raw.resolve().unwrap().aliases["data_io"], "plexus.csv");
        let raw: RawConfig = toml::from_str("[aliases]\n\"no spaces\" = \"plexus.csv\"\n").unwrap();
        let err = raw.resolve().unwrap_err().to_string();
        assert!(err.contains("[aliases]: `no spaces`"), "{err}");
    }

    #[test]
    fn durations_past_their_ceiling_name_the_key() {
        let retention = |text: &str| toml::from_str::<RawConfig>(text).unwrap().resolve().map(|c| c.retention);
        assert_eq!(retention("").unwrap(), Some(DEFAULT_RETENTION));
        assert_eq!(retention("retention = \"7d\"").unwrap(), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(retention("retention = \"forever\"").unwrap(), None);
        assert!(retention("retention = \"300000000000y\"").unwrap_err().to_string().starts_with("retention:"));
        let err =
            toml::from_str::<RawConfig>("grace_period = \"300000000000y\"").unwrap().resolve().unwrap_err().to_string();
        assert!(err.contains("grace_period") && err.contains("too long"), "{err}");
        let err = toml::from_str::<RawConfig>("[defaults]\ntimeout_ms = 18446744073709551615").unwrap().resolve();
        assert!(err.unwrap_err().to_string().contains("defaults.timeout_ms"));
    }

    #[test]
    fn a_postgres_state_db_is_a_url_its_password_never_printed_and_the_lease_bounded() {
        let resolve = |text: &str| toml::from_str::<RawConfig>(text).unwrap().resolve();
        let c = resolve("state_db = \"postgres://plexus:s3cret@db:5432/plexus\"").unwrap();
        assert_eq!(c.state_db.url(), Some("postgres://plexus:s3cret@db:5432/plexus"));
        assert_eq!(c.state_db.file(), None);
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(shown.contains("postgres://plexus:***@db:5432/plexus") && !shown.contains("s3cret"), "{shown}");
        let err = resolve("state_db = \"host=db dbname=plexus password=s3cret\"").unwrap_err().to_string();
        assert!(err.contains("postgres://") && !err.contains("s3cret"), "{err}");
        assert!(resolve("state_db = \"/var/lib/plexus/state.db\"").unwrap().state_db.file().is_some());
        assert_eq!(resolve("node_lease = \"3s\"").unwrap().node_lease, Duration::from_secs(3));
        assert!(resolve("node_lease = \"10ms\"").unwrap_err().to_string().contains("minimum of 1s"));
        assert!(resolve("node_lease = \"1h\"").unwrap_err().to_string().contains("node_lease"));
    }

    #[test]
    fn limits_have_host_maximums_with_ceilings() {
        let resolve = |text: &str| toml::from_str::<RawConfig>(text).unwrap().resolve().map_err(|e| e.to_string());
        let c = resolve("[max_limits]\ntimeout_ms = 60000\nhandles = 64\n[defaults]\ntimeout_ms = 1000\n").unwrap();
        assert_eq!((c.max_limits.timeout, c.max_limits.handles), (Duration::from_secs(60), 64));
        assert_eq!(c.max_limits.memory_bytes, 4096 << 20, "unset keys keep the default maximum");
        assert_eq!(c.defaults.handles, 64, "an unset default follows a lower maximum");
        let err = resolve("[max_limits]\nhandles = 64\n[defaults]\nhandles = 65\n").unwrap_err();
        assert!(err.starts_with("defaults.handles must be 1..=64"), "{err}");
        let err = resolve("[defaults]\ntimeout_ms = 0\n").unwrap_err();
        assert!(err.starts_with("defaults.timeout_ms"), "{err}");
        let err = resolve("[max_limits]\ntimeout_ms = 18446744073709551615\n").unwrap_err();
        assert!(err.starts_with("max_limits.timeout_ms"), "{err}");
        let err = resolve("[defaults]\nmemory_mib = 18446744073709551615\n").unwrap_err();
        assert!(err.starts_with("defaults.memory_mib"), "{err}");
    }

    #[test]
    fn token_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/token");
        let first = ensure_token(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(ensure_token(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
