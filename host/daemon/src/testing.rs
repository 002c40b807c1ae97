//! Throw-away PostgreSQL servers for tests (the daemon's, the CLI's cluster
//! tests, the benchmarks): `initdb` into a temporary directory, `pg_ctl` on
//! a free loopback port, stopped and deleted when the test process exits.
//!
//! The server binaries come from `$PLEXUS_PG_BIN`, else the newest
//! `/usr/lib/postgresql/<version>/bin` (Debian's packages; the project's
//! scripts install PostgreSQL 15 when it is missing), else `pg_config
//! --bindir`. As root (PostgreSQL refuses to run as root) the server runs as
//! the `postgres` user. `$PLEXUS_TEST_POSTGRES` (a base URL such as
//! `postgres://user@host:5432`) uses a running server instead.
//!
//! The server is stopped by a watchdog: a shell that waits for its standard
//! input to close, which happens when the test process ends however it ends
//! (a panic, `exit`, a kill), then runs `pg_ctl stop -m immediate` and
//! deletes the directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// A PostgreSQL server for tests; [`TestPostgres::database`] makes a fresh
/// database on it.
#[derive(Debug)]
pub struct TestPostgres {
    /// `postgres://plexus@127.0.0.1:<port>` (no database).
    base: String,
    bin: Option<PathBuf>,
    /// Its data directory (a server this module started).
    data: Option<PathBuf>,
    /// The watchdog, stopping the server when its stdin closes.
    _watchdog: Option<Mutex<Child>>,
}

static SERVER: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
static DURABLE: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The directory of the PostgreSQL server binaries.
///
/// # Errors
/// None found: the message says how to install them.
pub fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PLEXUS_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().map_err(|_| {
        "no PostgreSQL server binaries (initdb, pg_ctl): run scripts/setup-postgres.sh (Debian's postgresql-15) \
         or set PLEXUS_PG_BIN"
            .to_owned()
    })?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The test server of this process, started on first use.
///
/// # Errors
/// The binaries are missing, or `initdb` or `pg_ctl` failed (their output
/// is in the message).
pub fn server() -> Result<&'static TestPostgres, String> {
    SERVER
        .get_or_init(|| match std::env::var("PLEXUS_TEST_POSTGRES") {
            Ok(base) => {
                Ok(TestPostgres { base: base.trim_end_matches('/').to_owned(), bin: None, data: None, _watchdog: None })
            }
            Err(_) => start(false),
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A server as a benchmark needs it: PostgreSQL's durable defaults
/// (`fsync`, `synchronous_commit` on), unlike [`server`]'s (`fsync = off`,
/// for speed). `$PLEXUS_BENCH_POSTGRES` (a base URL) uses a running server.
///
/// # Errors
/// As [`server`].
pub fn durable_server() -> Result<&'static TestPostgres, String> {
    DURABLE
        .get_or_init(|| match std::env::var("PLEXUS_BENCH_POSTGRES") {
            Ok(base) => {
                Ok(TestPostgres { base: base.trim_end_matches('/').to_owned(), bin: None, data: None, _watchdog: None })
            }
            Err(_) => start(true),
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `id -u postgres` and its group, when running as root.
fn run_as() -> Option<(u32, u32)> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// `program` from `bin`, as the `postgres` user when running as root.
fn command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c.stdin(Stdio::null()).output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Start a server; `durable`: with `fsync` on (PostgreSQL's default).
fn start(durable: bool) -> Result<TestPostgres, String> {
    let bin = bin_dir()?;
    let owner = run_as();
    let dir = std::env::temp_dir().join(format!("plexus-pg-{}-{}", std::process::id(), fastrand::u32(..)));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let mut initdb = command(&bin, "initdb", owner.is_some());
    initdb.arg("-D").arg(&data).args(["-U", "plexus", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
    if let Err(e) = run(initdb, "initdb") {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    // The watchdog first: from here on the directory goes when we do.
    let stop = command(&bin, "pg_ctl", owner.is_some()).get_program().to_owned();
    let mut stop_args: Vec<std::ffi::OsString> =
        command(&bin, "pg_ctl", owner.is_some()).get_args().map(ToOwned::to_owned).collect();
    stop_args.extend(["-D".into(), data.clone().into_os_string(), "stop".into(), "-m".into(), "immediate".into()]);
    let watchdog = Command::new("sh")
        .arg("-c")
        // Ctrl-C signals the whole process group: the watchdog outlives it.
        .arg(r#"trap '' INT TERM HUP; cat >/dev/null; dir="$1"; shift; "$@" >/dev/null 2>&1; rm -rf "$dir""#)
        .arg("sh")
        .arg(&dir)
        .arg(stop)
        .args(stop_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    let mut last = String::new();
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let fsync = if durable { "on" } else { "off" };
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=300 \
             -c shared_buffers=128MB",
            dir.display()
        );
        let mut pg_ctl = command(&bin, "pg_ctl", owner.is_some());
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        match run(pg_ctl, "pg_ctl start") {
            Ok(()) => {
                return Ok(TestPostgres {
                    base: format!("postgres://plexus@127.0.0.1:{port}"),
                    bin: Some(bin),
                    data: Some(data),
                    _watchdog: Some(Mutex::new(watchdog)),
                });
            }
            // The port was taken meanwhile: another one.
            Err(e) => last = format!("{e}\n{}", std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()),
        }
    }
    drop(watchdog.stdin);
    Err(last)
}

impl TestPostgres {
    /// `postgres://plexus@127.0.0.1:<port>` (no database).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The server's main process (a server this module started), whose
    /// children are its backends: to measure its CPU time.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.as_ref()?.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// A new, empty database on this server; its connection URL.
    ///
    /// # Errors
    /// `createdb` failed.
    pub fn database(&self) -> Result<String, String> {
        let name =
            format!("t{}_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed), fastrand::u32(..));
        let url = format!("{}/{name}", self.base);
        let bin = match &self.bin {
            Some(bin) => bin.clone(),
            None => bin_dir()?,
        };
        let mut createdb = Command::new(bin.join("createdb"));
        createdb.args(["--maintenance-db", &format!("{}/postgres", self.base), &name]);
        run(createdb, "createdb")?;
        Ok(url)
    }
}
