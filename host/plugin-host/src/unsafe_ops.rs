//! Every `unsafe` block of the host lives here, each with a `SAFETY` comment.
#![allow(unsafe_code)]

use wasmtime::component::Component;
use wasmtime::{Engine, Result};

/// Load a precompiled component from the host's own cache, whose tag verified.
///
/// Only call this with bytes whose HMAC tag (see `wasm::cache`) was checked: a
/// precompiled artifact is native code and is trusted as such.
pub(crate) fn deserialize_verified_component(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    // SAFETY: `bytes` come from the component cache, a directory the host
    // created owner-only and that no plugin is granted, and their HMAC-SHA256
    // tag under the cache's secret key verified: the host itself wrote them
    // with `Engine::precompile_component`, for an engine with the same
    // compatibility hash (part of the entry's name, which the tag covers);
    // wasmtime checks the header again and refuses a mismatch.
    unsafe { Component::deserialize(engine, bytes) }
}

/// Load a component the host has just precompiled in memory.
pub(crate) fn deserialize_fresh_component(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    // SAFETY: `bytes` came from `engine.precompile_component` in this process a
    // moment ago; they were never written anywhere a plugin could touch.
    unsafe { Component::deserialize(engine, bytes) }
}

/// Have `handler` run when the process ends through `exit()` (C `atexit`,
/// which Rust's `std::process::exit` and returning from `main` both reach).
/// Returns false if it could not be registered (or on non-Unix systems).
pub(crate) fn at_exit(handler: extern "C" fn()) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: `atexit` only stores the pointer; `handler` is a plain
        // `extern "C" fn()` with no captured state, valid for the whole
        // process (it is a function of this binary, never unloaded).
        unsafe { libc::atexit(handler) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = handler;
        false
    }
}

/// End the process now with `code`, running no further exit handlers (to be
/// called from an exit handler, where `exit` must not be called again).
pub(crate) fn exit_now(code: i32) -> ! {
    #[cfg(unix)]
    {
        // SAFETY: `_exit` takes no pointers and does not return; skipping the
        // remaining exit handlers is the intent (the process is already
        // exiting, and calling `exit` again from a handler is undefined).
        unsafe { libc::_exit(code) }
    }
    #[cfg(not(unix))]
    std::process::exit(code)
}

/// Raise this process's soft limit of open files to its hard limit; returns
/// the limit now in force, or `None` where it cannot be read (non-Unix).
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `getrlimit` writes one `rlimit` through a valid, exclusive
        // pointer to a local; it keeps no reference to it.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            // SAFETY: `setrlimit` reads one `rlimit` through a valid pointer to
            // a local; raising the soft limit up to the hard one needs no privilege.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        #[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every Unix
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// Make file descriptor 0 (standard input) read `/dev/null` (a worker
/// process, whose standard input was the socket to its host, keeps a
/// duplicate of it). Best effort: on failure standard input stays as it was.
#[cfg(unix)]
pub(crate) fn stdin_from_dev_null() {
    use std::os::fd::AsRawFd;
    let Ok(null) = std::fs::File::open("/dev/null") else { return };
    // SAFETY: `dup2` takes two descriptors and no pointers. `null` is open
    // for the whole call; replacing descriptor 0 is the intent, and nothing
    // in this process holds it as an owned `File` (std's `Stdin` reads fd 0
    // by number, and now reads /dev/null).
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
    }
}

/// Limit this process (a worker, before it loads a plugin) on Linux: its
/// address space to `memory_bytes` (`RLIMIT_AS`), its CPU time to
/// `cpu_seconds` (`RLIMIT_CPU`: `SIGXCPU` at the limit, `SIGKILL` a second
/// later), and with `no_new_privs`, `PR_SET_NO_NEW_PRIVS`. Elsewhere a limit
/// asked for is an error and `no_new_privs` is ignored.
///
/// # Errors
/// Which limit could not be set, and why.
pub(crate) fn limit_worker(
    memory_bytes: Option<u64>,
    cpu_seconds: Option<u64>,
    no_new_privs: bool,
) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let set = |resource: libc::__rlimit_resource_t, name: &str, soft: u64, hard: u64| {
            let limit = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
            // SAFETY: `setrlimit` reads one `rlimit` through a valid pointer
            // to a local and keeps no reference; lowering a limit needs no privilege.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(format!("cannot set {name}: {}", std::io::Error::last_os_error()));
            }
            Ok(())
        };
        if let Some(bytes) = memory_bytes {
            set(libc::RLIMIT_AS, "RLIMIT_AS (worker.memory_mib)", bytes, bytes)?;
        }
        if let Some(seconds) = cpu_seconds {
            set(libc::RLIMIT_CPU, "RLIMIT_CPU (worker.cpu_seconds)", seconds, seconds.saturating_add(1))?;
        }
        if no_new_privs {
            // SAFETY: `prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)` takes integers
            // only; it can only remove abilities from this process.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(format!("cannot set no_new_privs: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = no_new_privs;
        if memory_bytes.is_some() || cpu_seconds.is_some() {
            return Err("worker.memory_mib and worker.cpu_seconds are supported on Linux only".into());
        }
        Ok(())
    }
}

/// CPU time the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`);
/// `None` where the clock is not available.
pub(crate) fn thread_cpu_time() -> Option<std::time::Duration> {
    #[cfg(unix)]
    {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid, writable `timespec` owned by this frame;
        // `clock_gettime` only writes it and reports failure by its return.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut now) } == 0;
        let secs = u64::try_from(now.tv_sec).ok()?;
        let nanos = u32::try_from(now.tv_nsec).ok()?;
        ok.then(|| std::time::Duration::new(secs, nanos))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// This process's CPU time (user + system, all threads) and peak resident
/// set so far (KiB), by `getrusage(RUSAGE_SELF)`; `None` where unavailable.
pub(crate) fn process_usage() -> Option<(std::time::Duration, u64)> {
    #[cfg(unix)]
    {
        // SAFETY: `rusage` is plain old data, valid when zeroed.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable `rusage` owned by this frame;
        // `getrusage` only writes it and reports failure by its return.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) } != 0 {
            return None;
        }
        let time = |t: libc::timeval| {
            std::time::Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + std::time::Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        Some((time(usage.ru_utime) + time(usage.ru_stime), u64::try_from(usage.ru_maxrss).unwrap_or(0)))
    }
    #[cfg(not(unix))]
    {
        None
    }
}
