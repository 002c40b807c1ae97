//! A real `plexus daemon` process on loopback for the daemon tests, and a
//! tiny HTTP/1.1 client (one connection per request, `Connection: close`)
//! for the tests of the HTTP contract itself; the others use the typed
//! [`Client`].

use crate::support::built_plugins;
use plexus_client::{Client, Execution, Listen};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The secrets key of the test daemons (see [`RunningDaemon::command`]).
pub const TEST_SECRETS_KEY: &str = "6a1f0e3c9b2d4a5f8e7c6b5a4d3c2b1a0f9e8d7c6b5a49382716051423324150";

/// A daemon process with its own data directory.
pub struct RunningDaemon {
    pub child: Child,
    pub addr: String,
    pub token: String,
    pub data: PathBuf,
}

/// Copy a built plugin folder (e.g. `echo-wasm`) into `plugins`.
pub fn copy_plugin(name: &str, plugins: &Path) -> PathBuf {
    let from = built_plugins().join(name);
    let to = plugins.join(name);
    copy_dir(&from, &to);
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl RunningDaemon {
    /// Start `plexus daemon` on an ephemeral port over `data`/state.db and
    /// `plugins` (grace period 10 s unless `extra` sets one), and wait until
    /// it listens.
    pub fn start(data: &Path, plugins: &Path, extra: &[&str]) -> Self {
        let mut child = Self::command(data, plugins, extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.join("daemon.log")).unwrap())
            .spawn()
            .expect("start plexus daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let announced: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(data.join("daemon.log")).unwrap_or_default();
            panic!("daemon did not announce its address ({e}): {line}\n{log}")
        });
        let addr = announced["listening"].as_str().unwrap().to_owned();
        let token_file = announced["token_file"].as_str().map(PathBuf::from).unwrap_or_else(|| data.join("token"));
        let token = std::fs::read_to_string(token_file).unwrap().trim().to_owned();
        Self { child, addr, token, data: data.to_owned() }
    }

    /// The `plexus daemon` command [`Self::start`] runs, to run it otherwise
    /// (e.g. one that must fail to start).
    pub fn command(data: &Path, plugins: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_plexus"));
        command.args(["daemon", "--listen", "127.0.0.1:0"]);
        if !extra.contains(&"--grace-period") {
            command.args(["--grace-period", "10s"]);
        }
        // Unless `extra` names them (a cluster's nodes share a database and a token).
        if !extra.contains(&"--state-db") {
            match postgres_state_db(data) {
                // PLEXUS_TEST_STORE=postgres: the daemon suite on PostgreSQL (a cluster of one; a
                // short lease, so that a restarted daemon takes over its earlier self's executions soon).
                Some(url) => command.args(["--state-db", &url, "--node-lease", "1s"]),
                None => command.arg("--state-db").arg(data.join("state.db")),
            };
        }
        if !extra.contains(&"--token-file") {
            command.arg("--token-file").arg(data.join("token"));
        }
        // A secrets key (the same for every test daemon), unless `extra` names a key file.
        if extra.contains(&"--secrets-key-file") {
            command.env_remove("PLEXUS_SECRETS_KEY");
        } else {
            command.env("PLEXUS_SECRETS_KEY", TEST_SECRETS_KEY);
        }
        command
            .arg("--plugins-dir")
            .arg(plugins)
            .arg("--cache-dir")
            .arg(data.join("cache"))
            .args(extra)
            .env("PLEXUS_DATA_DIR", data)
            .env("RUST_LOG", "info");
        command
    }

    /// A request with the daemon's token; returns status and JSON (or text) body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text) =
            self.raw(method, path, Some(&self.token), body.as_deref().map(|b| ("application/json", b.as_bytes())));
        (status, serde_json::from_slice(&text).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).into())))
    }

    /// A request with full control of token, content type and body bytes.
    pub fn raw(&self, method: &str, path: &str, token: Option<&str>, body: Option<(&str, &[u8])>) -> (u16, Vec<u8>) {
        let headers = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        self.raw_with_headers(method, path, &headers, body)
    }

    /// [`Self::raw`] with `headers` (`Name: value\r\n` lines) instead of a token.
    pub fn raw_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: Option<(&str, &[u8])>,
    ) -> (u16, Vec<u8>) {
        let (status, _, body) = self.exchange(method, path, headers, body);
        (status, body)
    }

    /// [`Self::raw_with_headers`], answering the response's head (status
    /// line and headers, as text) too.
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: Option<(&str, &[u8])>,
    ) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the daemon");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: plexus\r\nConnection: close\r\n");
        head.push_str(headers);
        let (ctype, bytes) = body.unwrap_or(("application/json", b""));
        if body.is_some() {
            head.push_str(&format!("Content-Type: {ctype}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
        stream.write_all(head.as_bytes()).unwrap();
        // A server may answer (413) before reading a big body; ignore a reset while writing.
        let _ = stream.write_all(bytes);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response");
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
        let mut body = response[split + 4..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        (status, head, body)
    }

    /// Run the `plexus` CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_plexus"))
            .args(args)
            .env("PLEXUS_URL", &self.addr)
            .env("PLEXUS_TOKEN", &self.token)
            .env_remove("RUST_LOG")
            .output()
            .expect("run plexus")
    }

    /// The typed client of this daemon.
    pub fn client(&self) -> Client {
        Client::new(Listen::parse(&self.addr).unwrap(), &self.token).unwrap()
    }

    /// Register workflow `source` (panics when it is refused).
    pub fn register(&self, source: &str) -> plexus_client::Registered {
        self.client().register_workflow(source).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The daemon's health.
    pub fn health(&self) -> plexus_client::Health {
        self.client().health().unwrap()
    }

    /// Start an execution of `workflow` over the API; returns its id.
    pub fn start_execution(&self, workflow: &str) -> String {
        self.client().start(workflow, serde_json::Map::new()).unwrap().execution_id
    }

    /// The status of execution `id` (panics on an error answer).
    pub fn execution(&self, id: &str) -> Execution {
        self.client().execution(id, None).unwrap()
    }

    /// Poll `GET /v1/executions/{id}` until it ends.
    pub fn wait_for(&self, id: &str, within: Duration) -> Execution {
        let deadline = Instant::now() + within;
        let client = self.client();
        loop {
            let execution = client.execution(id, None).unwrap();
            if execution.status.status.is_terminal() {
                return execution;
            }
            assert!(Instant::now() < deadline, "execution {id} did not end: {execution:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Poll until `check` holds.
    pub fn eventually(&self, what: &str, within: Duration, mut check: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !check(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    /// `kill -9`.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::forget(self);
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `PLEXUS_TEST_STORE=postgres`, the PostgreSQL database of data
/// directory `data` (created on the test server at first use, the same at
/// each restart); otherwise `None` (SQLite).
fn postgres_state_db(data: &Path) -> Option<String> {
    if std::env::var("PLEXUS_TEST_STORE").as_deref() != Ok("postgres") {
        return None;
    }
    let remembered = data.join("state-db-url");
    if let Ok(url) = std::fs::read_to_string(&remembered) {
        return Some(url);
    }
    let url = plexus_daemon::testing::server().and_then(|s| s.database()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&remembered, &url).unwrap();
    Some(url)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = body.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
}
