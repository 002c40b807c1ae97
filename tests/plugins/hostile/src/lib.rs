//! A hostile plugin, for the sandbox tests only: every operation tries to break
//! a promise of the host (escape its grants, outlive its deadline, exhaust the
//! host's memory, descriptors or log). Built as a WASM component by
//! `scripts/build-plugins.sh target/test-plugins tests/plugins`; never
//! installed next to real plugins.
//!
//! `describe` sleeps for the number of milliseconds written in
//! `/ctl/describe-sleep-ms` when a directory is granted at `/ctl`.
//!
//! Built natively too (`libplexus_hostile.so`), its crash operations end the
//! process: `abort`, `segfault`, `stack_overflow`, `panic_unwinding` (a panic
//! while a panic unwinds), `exit`, `hang` and `spin` (never return, ignore
//! cancellation) — for the worker-process tests.
#![deny(unsafe_code)]

mod crash;

use plexus_sdk::{Context, Operations, Plugin, PluginError, PluginInfo, capability};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// Parameters of `exit`.
#[derive(Deserialize, JsonSchema)]
pub struct Code {
    /// The exit status.
    pub code: i32,
}

/// The hostile plugin.
#[derive(Default)]
pub struct Hostile;

/// A path.
#[derive(Deserialize, JsonSchema)]
pub struct PathParam {
    /// A guest path.
    pub path: String,
}

/// A path and text to write.
#[derive(Deserialize, JsonSchema)]
pub struct Write {
    /// A guest path.
    pub path: String,
    /// What to write.
    pub text: String,
}

/// A symbolic link to make.
#[derive(Deserialize, JsonSchema)]
pub struct Symlink {
    /// What the link points to (any text, e.g. `/etc` or `../..`).
    pub target: String,
    /// The guest path of the link; an existing directory there is removed first.
    pub link: String,
}

/// A duration.
#[derive(Deserialize, JsonSchema)]
pub struct Ms {
    /// Milliseconds.
    pub ms: u64,
}

/// A flood: `times` writes of `bytes` bytes each.
#[derive(Deserialize, JsonSchema)]
pub struct Flood {
    /// Bytes per write.
    pub bytes: usize,
    /// How many writes.
    pub times: u32,
}

/// How many of something.
#[derive(Deserialize, JsonSchema)]
pub struct Count {
    /// A guest path (for `hold_files`).
    #[serde(default)]
    pub path: String,
    /// How many.
    pub n: u32,
}

/// A network address.
#[derive(Deserialize, JsonSchema)]
pub struct Addr {
    /// `ip:port`.
    pub addr: String,
}

/// A URL.
#[derive(Deserialize, JsonSchema)]
pub struct Url {
    /// `http://host[:port]/path` or `https://...`.
    pub url: String,
}

fn failed(what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::failed(format!("{what}: {e}"))
}

impl Plugin for Hostile {
    fn info() -> PluginInfo {
        if let Ok(ms) = std::fs::read_to_string("/ctl/describe-sleep-ms") {
            std::thread::sleep(Duration::from_millis(ms.trim().parse().unwrap_or(0)));
        }
        PluginInfo::new("plexus.hostile", "Hostile", env!("CARGO_PKG_VERSION"))
            .description("Tries to break the sandbox; for the host's tests only")
            .license("Apache-2.0")
            .capabilities([capability::WORKFLOW_STEP])
    }

    fn operations(ops: &mut Operations<Self>) {
        ops.add("read", "Reads a file", |_, _, p: PathParam| {
            std::fs::read_to_string(&p.path).map_err(|e| failed(&p.path, e))
        })
        .add("write", "Writes a file", |_, _, p: Write| {
            std::fs::write(&p.path, &p.text).map_err(|e| failed(&p.path, e))
        })
        .add("list", "Lists a directory", |_, _, p: PathParam| {
            let mut names: Vec<String> = std::fs::read_dir(&p.path)
                .map_err(|e| failed(&p.path, e))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            Ok(names)
        })
        .add("symlink", "Replaces `link` by a symbolic link to `target`", |_, _, p: Symlink| symlink(&p))
        .add("abort", "Aborts the process", |_, _, _: Value| -> Result<Value, PluginError> { std::process::abort() })
        .add("segfault", "Writes to an unmapped address", |_, _, _: Value| -> Result<Value, PluginError> {
            crash::segfault()
        })
        .add("stack_overflow", "Recurses until the stack overflows", |_, _, _: Value| Ok(crash::recurse(0)))
        .add("panic_unwinding", "Panics while a panic unwinds", |_, _, _: Value| -> Result<Value, PluginError> {
            crash::panic_while_unwinding()
        })
        .add("exit", "Ends the process with `code`", |_, _, p: Code| -> Result<Value, PluginError> {
            std::process::exit(p.code)
        })
        .add(
            "hang",
            "Never returns and never checks for cancellation",
            |_, _, _: Value| -> Result<Value, PluginError> {
                loop {
                    std::thread::sleep(Duration::from_millis(10));
                }
            },
        )
        .add(
            "spin",
            "Computes forever, never checking for cancellation",
            |_, _, _: Value| -> Result<Value, PluginError> {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            },
        )
        .add("pid", "Returns the process id it runs in", |_, _, _: Value| Ok(std::process::id()))
        .add("sleep", "Blocks in WASI for `ms` ms, never checking for cancellation", |_, _, p: Ms| {
            std::thread::sleep(Duration::from_millis(p.ms));
            Ok(p.ms)
        })
        .add(
            "hostcalls",
            "Calls the host in a loop for `ms` ms (0 = forever), ignoring cancellation",
            |_, ctx, p: Ms| hostcalls(ctx, p.ms),
        )
        .add("state_flood", "Sets `times` shared-state keys of `bytes` bytes each", |_, ctx, p: Flood| {
            let value = "s".repeat(p.bytes);
            for i in 0..p.times {
                ctx.state_set(&format!("flood-{i}"), value.clone());
            }
            Ok(p.times)
        })
        .add("log_flood", "Logs `times` lines of `bytes` bytes each", |_, ctx, p: Flood| {
            let line = "l".repeat(p.bytes);
            for _ in 0..p.times {
                ctx.info(&line);
            }
            Ok(p.times)
        })
        .add(
            "hold_files",
            "Opens `path` `n` times and keeps every handle; returns how many opened",
            |_, _, p: Count| {
                let mut held = Vec::new();
                for _ in 0..p.n {
                    match std::fs::File::open(&p.path) {
                        Ok(file) => held.push(file),
                        Err(e) => return Err(failed(&format!("open number {}", held.len() + 1), e)),
                    }
                }
                Ok(held.len())
            },
        )
        .add("tcp", "Connects to `addr` and sends a line", |_, _, p: Addr| {
            use std::io::Write as _;
            let mut stream = std::net::TcpStream::connect(&p.addr).map_err(|e| failed(&p.addr, e))?;
            stream.write_all(b"hello from a plugin\n").map_err(|e| failed(&p.addr, e))?;
            Ok(json!({"connected": p.addr}))
        })
        .add("udp", "Sends a datagram to `addr`", |_, _, p: Addr| {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| failed("bind", e))?;
            socket.send_to(b"hello from a plugin", &p.addr).map_err(|e| failed(&p.addr, e))?;
            Ok(json!({"sent": p.addr}))
        })
        .add("http_get", "GETs `url` (http://host[:port]/path) through wasi:http", |_, _, p: Url| http_get(&p.url))
        .add("grow", "Allocates and touches `n` MiB", |_, _, p: Count| {
            let block = vec![1u8; p.n as usize * 1024 * 1024];
            Ok(block.iter().map(|&b| u64::from(b)).sum::<u64>())
        })
        .add(
            "tally",
            "Counts its calls in a global of the instance (or process) and returns the count",
            |_, _, _: Value| {
                static TALLY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                Ok(TALLY.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
            },
        )
        .add("trap", "Panics: a trap in WASM", |_, _, _: Value| -> Result<Value, PluginError> {
            panic!("hostile was asked to trap")
        });
    }
}

fn hostcalls(ctx: &mut Context<'_>, ms: u64) -> Result<Value, PluginError> {
    let start = std::time::Instant::now();
    let mut calls: u64 = 0;
    while ms == 0 || start.elapsed() < Duration::from_millis(ms) {
        let _ = ctx.is_cancelled();
        let _ = ctx.state_get("anything");
        calls += 1;
    }
    Ok(json!({"calls": calls}))
}

#[cfg(target_os = "wasi")]
fn symlink(p: &Symlink) -> Result<Value, PluginError> {
    let _ = std::fs::remove_dir_all(&p.link);
    let _ = std::fs::remove_file(&p.link);
    for (dir, guest) in wasip2::filesystem::preopens::get_directories() {
        let Some(rest) = p.link.strip_prefix(guest.trim_end_matches('/')) else { continue };
        let rest = rest.trim_start_matches('/');
        return dir
            .symlink_at(&p.target, rest)
            .map(|()| json!({"link": p.link, "target": p.target}))
            .map_err(|e| failed(&p.link, format!("{e:?}")));
    }
    Err(PluginError::failed(format!("{} is in no granted directory", p.link)))
}

#[cfg(not(target_os = "wasi"))]
fn symlink(p: &Symlink) -> Result<Value, PluginError> {
    Err(PluginError::failed(format!("symlink {} is for the WASM build only", p.link)))
}

/// GET `url` through `wasi:http/outgoing-handler`: `{status, body}` (the body
/// as text, at most 1 MiB read), or the wasi:http error code as a failure.
#[cfg(target_os = "wasi")]
fn http_get(url: &str) -> Result<Value, PluginError> {
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let (scheme, rest) = url.split_once("://").ok_or_else(|| PluginError::invalid_input("url: no scheme"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |at| (&rest[..at], &rest[at..]));
    let request = OutgoingRequest::new(Fields::new());
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    request.set_scheme(Some(&scheme)).map_err(|()| failed(url, "scheme"))?;
    request.set_authority(Some(authority)).map_err(|()| failed(url, "authority"))?;
    request.set_path_with_query(Some(path)).map_err(|()| failed(url, "path"))?;
    let pending = wasip2::http::outgoing_handler::handle(request, None).map_err(|e| failed(url, format!("{e:?}")))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(failed(url, format!("{code:?}"))),
        _ => return Err(failed(url, "no response")),
    };
    let status = response.status();
    let body = response.consume().map_err(|()| failed(url, "body"))?;
    let mut bytes = Vec::new();
    {
        let stream = body.stream().map_err(|()| failed(url, "stream"))?;
        while bytes.len() < 1 << 20 {
            match stream.blocking_read(64 << 10) {
                Ok(chunk) => bytes.extend(chunk),
                Err(_) => break,
            }
        }
    }
    Ok(json!({"status": status, "body": String::from_utf8_lossy(&bytes)}))
}

#[cfg(not(target_os = "wasi"))]
fn http_get(url: &str) -> Result<Value, PluginError> {
    Err(PluginError::failed(format!("http_get {url} is for the WASM build only")))
}

plexus_sdk::export_plugin!(Hostile);
