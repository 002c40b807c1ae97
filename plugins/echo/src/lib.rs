//! Example Plexus plugin used by the tests and the README: one source, built as a
//! native cdylib and as a WASM component, so both runtimes can be compared.
//!
//! Operations: `echo`, `noop`, `sleep`, `spin`, `fail`, `panic`, `count` (shared
//! state and progress), `read_file`, `write_file`, `print`, `flaky`, `env`, `grow_memory`, `exit` (sandbox
//! and host probes).
#![forbid(unsafe_code)]

use plexus_sdk::{Context, ErrorKind, Operations, Plugin, PluginError, PluginInfo, capability};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The plugin id. One source builds both kinds, and ids are unique per host, so
/// each kind gets its own.
pub const ID: &str = if cfg!(target_family = "wasm") { "plexus.echo.wasm" } else { "plexus.echo.native" };

/// The echo plugin.
#[derive(Default)]
pub struct Echo;

/// Parameters of `sleep` and `spin`.
#[derive(Deserialize, JsonSchema)]
pub struct Wait {
    /// How long, in milliseconds.
    pub ms: u64,
}

/// Parameters of `fail`.
#[derive(Deserialize, JsonSchema)]
pub struct Fail {
    /// `invalid-input`, `unsupported-operation`, `not-found`, `failed` or `cancelled`.
    pub kind: ErrorKind,
    /// The error message.
    #[serde(default = "default_message")]
    pub message: String,
    /// Whether the error is retryable.
    #[serde(default)]
    pub retryable: bool,
}

fn default_message() -> String {
    "failed on purpose".into()
}

/// Parameters of `count`.
#[derive(Deserialize, JsonSchema)]
pub struct Count {
    /// Shared-state key to increment.
    #[serde(default = "default_key")]
    pub key: String,
    /// How many progress steps to report.
    #[serde(default = "default_steps")]
    pub steps: u32,
}

fn default_key() -> String {
    "counter".into()
}
fn default_steps() -> u32 {
    4
}

/// Output of `count`.
#[derive(Serialize, JsonSchema)]
pub struct Counted {
    /// The value before this call (0 if unset).
    pub before: i64,
    /// The value after this call.
    pub after: i64,
}

/// Parameters of `read_file`.
#[derive(Deserialize, JsonSchema)]
pub struct ReadFile {
    /// Path to read (a guest path for WASM, a host path for native).
    pub path: String,
}

/// Parameters of `write_file`.
#[derive(Deserialize, JsonSchema)]
pub struct WriteFile {
    /// Path to write (a guest path for WASM, a host path for native).
    pub path: String,
    /// The text to write.
    pub text: String,
}

/// Parameters of `append`.
#[derive(Deserialize, JsonSchema)]
pub struct Append {
    /// Path to append to (a guest path for WASM, a host path for native).
    pub path: String,
    /// The line to append.
    pub text: String,
    /// Then sleep this long, in milliseconds.
    #[serde(default)]
    pub ms: u64,
}

/// Parameters of `print`.
#[derive(Deserialize, JsonSchema)]
pub struct Print {
    /// The line to print.
    pub text: String,
    /// How many times to print it, to stdout and to stderr.
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// Parameters of `flaky`.
#[derive(Deserialize, JsonSchema)]
pub struct Flaky {
    /// How many attempts fail (retryably) before one succeeds.
    pub failures: u32,
}

/// Parameters of `env`.
#[derive(Deserialize, JsonSchema)]
pub struct EnvVar {
    /// Environment variable name.
    pub name: String,
}

/// Parameters of `exit`.
#[derive(Deserialize, JsonSchema)]
pub struct Exit {
    /// The process exit code.
    #[serde(default)]
    pub code: i32,
}

/// Parameters of `grow_memory`.
#[derive(Deserialize, JsonSchema)]
pub struct Grow {
    /// How many MiB to allocate and touch.
    pub mib: usize,
}

impl Plugin for Echo {
    fn info() -> PluginInfo {
        // Test hook (native build only): a plugin that is slow to describe itself (the host must not wait for it).
        #[cfg(not(target_family = "wasm"))]
        if let Some(ms) = std::env::var("PLEXUS_ECHO_DESCRIBE_SLEEP_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        PluginInfo::new(ID, "Echo", env!("CARGO_PKG_VERSION"))
            .description(
                "Echoes its input; sleeps, fails, panics and touches host services on request. For tests and demos.",
            )
            .authors(["The Plexus developers"])
            .license("Apache-2.0")
            .capabilities([capability::WORKFLOW_STEP, capability::SCHEDULED_TASK, capability::CONTEXT_MANAGEMENT])
    }

    fn operations(ops: &mut Operations<Self>) {
        ops.add("echo", "Returns its parameters unchanged", |_, _, params: Value| Ok(params))
            .add("noop", "Does nothing and returns null", |_, _, _: Value| Ok(Value::Null))
            .add("sleep", "Sleeps `ms` milliseconds, ending early if cancelled", Self::sleep)
            .add("spin", "Busy-loops `ms` milliseconds (0 = forever) without checking for cancellation", Self::spin)
            .add("fail", "Returns an error of the chosen kind and retryable flag", |_, _, p: Fail| {
                Err::<Value, _>(PluginError { kind: p.kind, message: p.message, retryable: p.retryable })
            })
            .add("panic", "Panics (native) or traps (WASM)", |_, _, _: Value| -> Result<Value, PluginError> {
                panic!("echo was asked to panic")
            })
            .add("count", "Increments a shared-state key, reporting progress and logging", Self::count)
            .add("read_file", "Reads a file and returns its text", |_, _, p: ReadFile| {
                std::fs::read_to_string(&p.path).map_err(|e| PluginError::failed(format!("{}: {e}", p.path)))
            })
            .add("write_file", "Writes text to a file", |_, _, p: WriteFile| {
                std::fs::write(&p.path, &p.text).map_err(|e| PluginError::failed(format!("{}: {e}", p.path)))
            })
            .add(
                "append",
                "Appends `text` and a newline to the file at `path`, then sleeps `ms` (cancellable)",
                Self::append,
            )
            .add(
                "print",
                "Prints `text` to stdout and stderr `times` times; returns the bytes printed",
                |_, _, p: Print| {
                    let mut bytes = 0;
                    for _ in 0..p.times {
                        println!("{}", p.text);
                        eprintln!("{}", p.text);
                        bytes += 2 * (p.text.len() + 1);
                    }
                    Ok(bytes)
                },
            )
            .add(
                "flaky",
                "Fails with a retryable error on the first `failures` attempts, then succeeds",
                |_, ctx, p: Flaky| {
                    if ctx.attempt() <= p.failures {
                        return Err(PluginError::failed(format!(
                            "attempt {} of a flaky operation failed",
                            ctx.attempt()
                        ))
                        .retryable());
                    }
                    Ok(serde_json::json!({"attempt": ctx.attempt()}))
                },
            )
            .add("env", "Returns an environment variable, or null", |_, _, p: EnvVar| Ok(std::env::var(&p.name).ok()))
            .add("grow_memory", "Allocates and touches `mib` MiB", |_, _, p: Grow| {
                let block = vec![1u8; p.mib * 1024 * 1024];
                Ok(block.iter().map(|&b| b as u64).sum::<u64>())
            })
            .add(
                "exit",
                "Ends the process with `code` (native: the host's process; WASM: the guest, a trap)",
                |_, _, p: Exit| -> Result<Value, PluginError> { std::process::exit(p.code) },
            )
            .add(
                "fill",
                "Writes artifact `name` of `bytes` pseudo-random bytes (from `seed`), 64 KiB at a time",
                Self::fill,
            )
            .add("digest", "Reads the artifact `artifact` names, 1 MiB at a time: its sha256 and size", Self::digest);
    }
}

/// `fill`'s parameters.
#[derive(Deserialize, JsonSchema)]
pub struct Fill {
    /// The artifact's name.
    pub name: String,
    /// Its size, bytes.
    pub bytes: u64,
    /// The generator's seed.
    #[serde(default)]
    pub seed: u64,
}

/// `digest`'s parameters.
#[derive(Deserialize, JsonSchema)]
pub struct DigestOf {
    /// An artifact reference, e.g. `${{ steps.fill.artifacts.blob }}`.
    pub artifact: plexus_sdk::ArtifactRef,
}

/// `digest`'s output.
#[derive(Serialize, JsonSchema)]
pub struct Digested {
    /// `sha256:<hex>` of what was read.
    pub sha256: String,
    /// Bytes read.
    pub bytes: u64,
}

impl Echo {
    fn sleep(&self, ctx: &mut Context<'_>, p: Wait) -> Result<u64, PluginError> {
        let start = Instant::now();
        let total = Duration::from_millis(p.ms);
        while start.elapsed() < total {
            if ctx.is_cancelled() {
                return Err(PluginError::failed("cancelled while sleeping").retryable());
            }
            // Saturating: the clock is read twice, and may pass `total` between the reads.
            std::thread::sleep(total.saturating_sub(start.elapsed()).min(Duration::from_millis(5)));
        }
        Ok(p.ms)
    }

    fn append(&self, ctx: &mut Context<'_>, p: Append) -> Result<u64, PluginError> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.path)
            .map_err(|e| PluginError::failed(format!("{}: {e}", p.path)))?;
        // One write: lines appended by calls at the same moment never interleave.
        file.write_all(format!("{}\n", p.text).as_bytes())
            .map_err(|e| PluginError::failed(format!("{}: {e}", p.path)))?;
        file.sync_all().map_err(|e| PluginError::failed(format!("{}: {e}", p.path)))?;
        self.sleep(ctx, Wait { ms: p.ms })
    }

    fn fill(&self, ctx: &mut Context<'_>, p: Fill) -> Result<plexus_sdk::ArtifactRef, PluginError> {
        use std::io::Write;
        let mut out = ctx.create_artifact(&p.name, Some("application/octet-stream"))?;
        // xorshift64*: cheap, and a given seed always gives the same bytes.
        let mut x = p.seed | 1;
        let mut block = vec![0u8; 64 << 10];
        let mut left = p.bytes;
        while left > 0 {
            ctx.check_cancelled()?;
            for chunk in block.chunks_mut(8) {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                chunk.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes()[..chunk.len()]);
            }
            let n = left.min(block.len() as u64) as usize;
            out.write_all(&block[..n]).map_err(|e| PluginError::failed(format!("writing `{}`: {e}", p.name)))?;
            left -= n as u64;
        }
        out.finish()
    }

    fn digest(&self, ctx: &mut Context<'_>, p: DigestOf) -> Result<Digested, PluginError> {
        use sha2::Digest;
        use std::io::Read;
        let mut input = ctx.open_artifact(&p.artifact)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = input.read(&mut buf).map_err(|e| PluginError::failed(format!("reading: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Digested { sha256: format!("sha256:{hex}"), bytes })
    }

    fn spin(&self, _ctx: &mut Context<'_>, p: Wait) -> Result<u64, PluginError> {
        let start = Instant::now();
        let mut n: u64 = 0;
        while p.ms == 0 || start.elapsed() < Duration::from_millis(p.ms) {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        Ok(n)
    }

    fn count(&self, ctx: &mut Context<'_>, p: Count) -> Result<Counted, PluginError> {
        let before = ctx.state_get(&p.key).and_then(|v| v.as_i64()).unwrap_or(0);
        for i in 1..=p.steps {
            ctx.progress(f64::from(i) / f64::from(p.steps), format!("step {i} of {}", p.steps));
        }
        ctx.state_set(&p.key, before + 1);
        ctx.info(format!("{} went from {before} to {}", p.key, before + 1));
        ctx.metric("after", (before + 1) as f64);
        Ok(Counted { before, after: before + 1 })
    }
}

plexus_sdk::export_plugin!(Echo);

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_sdk::testing::TestHost;
    use serde_json::json;

    #[test]
    fn echo_returns_params() {
        let host = TestHost::<Echo>::new();
        assert_eq!(host.call("echo", json!({"a": [1, 2]})).unwrap().output, json!({"a": [1, 2]}));
    }

    #[test]
    fn count_uses_state_progress_and_logs() {
        let host = TestHost::<Echo>::new();
        host.call("count", json!({"steps": 2})).unwrap();
        let out = host.call("count", json!({"steps": 2})).unwrap();
        assert_eq!(out.output, json!({"before": 1, "after": 2}));
        assert_eq!(out.metrics, vec![("after".to_string(), 2.0)]);
        assert_eq!(host.state.borrow()["counter"], json!(2));
        assert_eq!(host.progress.borrow().len(), 4);
        assert_eq!(host.logs.borrow().len(), 2);
    }

    #[test]
    fn fail_returns_chosen_error() {
        let host = TestHost::<Echo>::new();
        let err = host.call("fail", json!({"kind": "not-found", "retryable": true})).unwrap_err();
        assert_eq!((err.kind, err.retryable), (ErrorKind::NotFound, true));
    }

    #[test]
    fn sleep_stops_when_cancelled() {
        let host = TestHost::<Echo>::new();
        host.cancelled.set(true);
        let err = host.call("sleep", json!({"ms": 10_000})).unwrap_err();
        assert!(err.retryable);
    }

    #[test]
    fn bad_params_and_unknown_operations_are_errors() {
        let host = TestHost::<Echo>::new();
        assert_eq!(host.call("sleep", json!({"ms": "x"})).unwrap_err().kind, ErrorKind::InvalidInput);
        assert_eq!(host.call("nope", json!(null)).unwrap_err().kind, ErrorKind::UnsupportedOperation);
    }
}
