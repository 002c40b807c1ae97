//! The one trait every runtime implements, and the checks every loaded plugin passes.

use crate::error::{CallError, LoadErrorKind};
use crate::manifest::{Manifest, PluginKind};
use crate::services::CallServices;
use plexus_sdk::{CONTRACT_VERSION, CallOutput, ExecutionContext, Metadata};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

/// A loaded plugin, native or WASM. The rest of the host talks only to this.
pub trait Runtime: Send + Sync {
    /// The metadata the plugin declared at load time.
    fn metadata(&self) -> &Metadata;

    /// Native or WASM.
    fn kind(&self) -> PluginKind;

    /// Whether a call given a timeout stops by itself when it expires (WASM:
    /// epoch interruption). A runtime that cannot be pre-empted (native code)
    /// is timed by its caller instead, who stops waiting and abandons the
    /// call's thread (see [`crate::Host::invoke`]).
    fn preemptible(&self) -> bool {
        false
    }

    /// Whether the plugin's code runs on the calling thread (WASM,
    /// in-process native code), so that the thread's CPU time during the
    /// call is the call's ([`crate::services::CallUsage::cpu_ms`]); a
    /// runtime that runs it elsewhere (worker processes) measures its own.
    fn runs_on_caller_thread(&self) -> bool {
        true
    }

    /// Whether a changed or removed plugin can be replaced or unloaded while
    /// the host runs (false for a native library loaded into the host's
    /// process: it is never unloaded, see [`crate::Change::RestartRequired`]).
    fn replaceable(&self) -> bool {
        true
    }

    /// Why the plugin cannot be called now, if it cannot (e.g. its worker
    /// processes crashed too often, see [`crate::worker`]). Its calls fail
    /// at once with [`CallError::Unavailable`].
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Execution `execution_id` ended: drop what the runtime kept for its
    /// calls (a WASM plugin's per-execution instances, see
    /// [`crate::manifest::Reuse::Execution`]).
    fn end_execution(&self, _execution_id: &str) {}

    /// The host stops: run the plugin's `cleanup` now where it was
    /// initialized (a native plugin's value, idle WASM instances, idle worker
    /// processes), waiting for it (each within [`CLEANUP_TIMEOUT`] or the
    /// plugin's timeout, the shorter). Dropping the runtime does the same;
    /// this is for a process that may end while something still holds it
    /// (see [`crate::Host::stop`]). Calls after it still work.
    fn stop(&self) {}

    /// Run `exec.operation`, blocking the calling thread.
    ///
    /// With a `timeout`, a WASM call is interrupted when it expires; a native
    /// call runs on its own thread, gets its cancel flag set, and its thread is
    /// abandoned (native code cannot be pre-empted). Either way the call
    /// returns [`CallError::Timeout`] within a few milliseconds of the timeout.
    fn call(
        &self,
        exec: &ExecutionContext,
        services: &CallServices,
        timeout: Option<Duration>,
    ) -> Result<CallOutput, CallError>;
}

/// The longest a plugin's `cleanup` may take: 10 s (or its timeout, if shorter).
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many abandoned calls of one plugin may be still running. Past it the
/// plugin is unavailable: its calls fail at once with
/// [`CallError::Unavailable`] until some of those threads return.
pub const ABANDONED_CALL_BUDGET: usize = 8;

/// Abandoned calls of one plugin.
#[derive(Debug, Default)]
struct Abandoned {
    /// Abandoned and still running.
    alive: AtomicUsize,
    /// Abandoned since the process started.
    total: AtomicU64,
}

/// Abandoned calls are counted per plugin id for the whole process: an
/// abandoned thread belongs to the process, whichever host or engine gave up
/// on it, and outlives hot reloads.
static ABANDONED: LazyLock<Mutex<BTreeMap<String, Arc<Abandoned>>>> = LazyLock::new(Default::default);
/// How many plugins are at or past their budget: while 0, [`over_budget`] needs no lock.
static OVER_BUDGET: AtomicUsize = AtomicUsize::new(0);

fn abandoned_of(plugin: &str) -> Arc<Abandoned> {
    ABANDONED.lock().unwrap_or_else(PoisonError::into_inner).entry(plugin.to_owned()).or_default().clone()
}

/// Abandoned calls per plugin id: (still running, abandoned in all). Only
/// plugins that ever had one are listed.
pub fn abandoned_calls() -> BTreeMap<String, (usize, u64)> {
    let map = ABANDONED.lock().unwrap_or_else(PoisonError::into_inner);
    map.iter()
        .map(|(id, a)| (id.clone(), (a.alive.load(Ordering::SeqCst), a.total.load(Ordering::SeqCst))))
        .filter(|(_, (_, total))| *total > 0)
        .collect()
}

/// Why plugin `id` cannot be called now: too many of its abandoned calls are
/// still running ([`ABANDONED_CALL_BUDGET`]).
pub fn over_budget(id: &str) -> Option<String> {
    if OVER_BUDGET.load(Ordering::SeqCst) == 0 {
        return None;
    }
    let alive = ABANDONED.lock().unwrap_or_else(PoisonError::into_inner).get(id)?.alive.load(Ordering::SeqCst);
    (alive >= ABANDONED_CALL_BUDGET).then(|| {
        format!(
            "{alive} of its calls timed out and are still running (budget: {ABANDONED_CALL_BUDGET} abandoned calls); \
             it is unavailable until they return or the host restarts"
        )
    })
}

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const GAVE_UP: u8 = 2;

/// One call whose caller may stop waiting for it (a native or in-process
/// call past its timeout). [`CallTicket::abandon`] counts the call against
/// its plugin's [`ABANDONED_CALL_BUDGET`]; [`CallTicket::finish`], from the
/// call's own thread when the plugin finally returns, gives it back. Each
/// happens at most once, in either order. Clones share the call.
#[derive(Debug, Clone)]
pub struct CallTicket {
    plugin: String,
    state: Arc<AtomicU8>,
}

impl CallTicket {
    /// A call of `plugin` that has started.
    pub fn new(plugin: &str) -> Self {
        Self { plugin: plugin.to_owned(), state: Arc::new(AtomicU8::new(RUNNING)) }
    }

    /// The caller stops waiting while the call's thread runs on. Returns
    /// false if the call had already finished (nothing is abandoned).
    pub fn abandon(&self) -> bool {
        if self.state.compare_exchange(RUNNING, GAVE_UP, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return false;
        }
        let a = abandoned_of(&self.plugin);
        a.total.fetch_add(1, Ordering::SeqCst);
        let alive = a.alive.fetch_add(1, Ordering::SeqCst) + 1;
        if alive == ABANDONED_CALL_BUDGET {
            OVER_BUDGET.fetch_add(1, Ordering::SeqCst);
            tracing::error!(plugin = %self.plugin, alive, "plugin unavailable: too many abandoned calls still running");
        }
        true
    }

    /// The call's thread has returned (call this on that thread, whatever the outcome).
    pub fn finish(&self) {
        if self.state.compare_exchange(RUNNING, FINISHED, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            // Abandoned earlier: give its place in the budget back.
            let a = abandoned_of(&self.plugin);
            let before = a.alive.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if before == Ok(ABANDONED_CALL_BUDGET) {
                OVER_BUDGET.fetch_sub(1, Ordering::SeqCst);
            }
            tracing::info!(plugin = %self.plugin, "an abandoned call returned");
        }
    }
}

/// Run `call` on a thread of its own and wait at most `timeout` for it. On
/// timeout the call is interrupted (its cancel flag set, see
/// [`CallServices::interrupt`]) and its thread abandoned: native code cannot be
/// pre-empted; it counts against the plugin's [`ABANDONED_CALL_BUDGET`] until
/// it returns. Used by the native and in-process runtimes.
pub(crate) fn call_on_thread<F>(
    plugin: &str,
    services: &CallServices,
    timeout: Duration,
    call: F,
) -> Result<CallOutput, CallError>
where
    F: FnOnce(&CallServices) -> Result<CallOutput, CallError> + Send + 'static,
{
    let thread_services = services.clone();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let ticket = CallTicket::new(plugin);
    let thread_ticket = ticket.clone();
    std::thread::Builder::new()
        .name(format!("plexus-call-{plugin}"))
        .spawn(move || {
            let result = call(&thread_services);
            thread_ticket.finish();
            let _ = tx.send(result);
        })
        .map_err(|e| CallError::Host { plugin: plugin.to_owned(), message: format!("cannot start a thread: {e}") })?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => match give_up(plugin, services, &ticket, timeout) {
            // It returned just now.
            None => rx.try_recv().unwrap_or_else(|_| Err(timed_out(plugin, timeout))),
            Some(timeout) => Err(timeout),
        },
    }
}

/// Stop waiting for a call past its `timeout`: interrupt it (its cancel flag)
/// and abandon its thread. `None` when the call had finished meanwhile (its
/// result is there to take); otherwise the [`CallError::Timeout`] to report.
pub(crate) fn give_up(
    plugin: &str,
    services: &CallServices,
    ticket: &CallTicket,
    timeout: Duration,
) -> Option<CallError> {
    services.interrupt();
    if !ticket.abandon() {
        return None;
    }
    tracing::warn!(plugin, timeout_ms = timeout.as_millis() as u64, "call timed out; its thread is abandoned");
    Some(timed_out(plugin, timeout))
}

fn timed_out(plugin: &str, after: Duration) -> CallError {
    CallError::Timeout { plugin: plugin.to_owned(), after }
}

/// Every contract version this host implements: the current one and the
/// previous worlds it keeps (`wit/previous/`), newest first.
pub const IMPLEMENTED_CONTRACTS: [&str; 4] = [CONTRACT_VERSION, "0.3.0", "0.2.0", "0.1.0"];

/// [`IMPLEMENTED_CONTRACTS`], parsed.
fn implemented_contracts() -> [semver::Version; 4] {
    IMPLEMENTED_CONTRACTS.map(|v| semver::Version::parse(v).expect("implemented versions are semver"))
}

/// The handshake: a plugin built against contract `plugin` runs on this host
/// when one version the host implements ([`IMPLEMENTED_CONTRACTS`]) is
/// semver-compatible with it (`^plugin`: same major, or same minor on 0.x,
/// and not older) and fits the manifest's `contract` requirement, if any.
pub fn check_contract(plugin: &str, manifest: Option<&semver::VersionReq>) -> Result<(), LoadErrorKind> {
    let implemented = implemented_contracts();
    let host = IMPLEMENTED_CONTRACTS.join(" and ");
    let incompatible = |why: String| LoadErrorKind::IncompatibleContract(why);
    let plugin_version = semver::Version::parse(plugin)
        .map_err(|e| incompatible(format!("contract version `{plugin}` is not semver: {e}")))?;
    let req = semver::VersionReq::parse(&format!("^{plugin_version}")).expect("caret of a version parses");
    let fitting: Vec<&semver::Version> = implemented.iter().filter(|v| req.matches(v)).collect();
    if fitting.is_empty() {
        return Err(incompatible(format!(
            "plugin was built against contract {plugin_version}, this host implements {host}"
        )));
    }
    if let Some(req) = manifest
        && !fitting.iter().any(|v| req.matches(v))
    {
        return Err(incompatible(format!("plugin.toml requires contract {req}, this host implements {host}")));
    }
    Ok(())
}

/// Before loading: whether a manifest's `contract` requirement accepts a
/// contract version this host implements at all (the plugin's own version is
/// checked against it once loaded, see [`check_contract`]).
///
/// # Errors
/// [`LoadErrorKind::IncompatibleContract`] naming the requirement and the versions implemented.
pub fn check_requirement(req: &semver::VersionReq) -> Result<(), LoadErrorKind> {
    if implemented_contracts().iter().any(|v| req.matches(v)) {
        return Ok(());
    }
    Err(LoadErrorKind::IncompatibleContract(format!(
        "plugin.toml requires contract {req}, this host implements {}",
        IMPLEMENTED_CONTRACTS.join(" and ")
    )))
}

/// Check a loaded plugin's own metadata against its manifest and the contract.
pub fn check_metadata(metadata: &Metadata, manifest: &Manifest) -> Result<(), LoadErrorKind> {
    let mismatch = |field: &str, plugin: &str, manifest: &str| LoadErrorKind::MetadataMismatch {
        field: field.into(),
        plugin: plugin.into(),
        manifest: manifest.into(),
    };
    check_contract(&metadata.contract_version, manifest.contract.as_ref())?;
    if manifest.id.is_empty() {
        // An artifact loaded on its own: named by its metadata (see `Manifest::for_artifact`).
        return Ok(());
    }
    if metadata.id != manifest.id {
        return Err(mismatch("id", &metadata.id, &manifest.id));
    }
    match semver::Version::parse(&metadata.version) {
        Ok(v) if v == manifest.version => Ok(()),
        _ => Err(mismatch("version", &metadata.version, &manifest.version.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_calls_count_against_the_budget_until_they_return() {
        let plugin = "test.budget-ticket";
        let tickets: Vec<CallTicket> = (0..ABANDONED_CALL_BUDGET).map(|_| CallTicket::new(plugin)).collect();
        for t in &tickets[1..] {
            assert!(t.abandon());
        }
        assert!(over_budget(plugin).is_none(), "one below the budget");
        assert!(tickets[0].abandon());
        assert!(!tickets[0].abandon(), "once only");
        let why = over_budget(plugin).unwrap();
        assert!(why.contains("budget: 8 abandoned calls"), "{why}");
        assert_eq!(abandoned_calls()[plugin], (8, 8));
        tickets[0].finish();
        assert!(over_budget(plugin).is_none(), "a returned thread gives its place back");
        // A call that finished before its caller gave up is not abandoned.
        let done = CallTicket::new(plugin);
        done.finish();
        assert!(!done.abandon());
        assert_eq!(abandoned_calls()[plugin], (7, 8));
        for t in &tickets[1..] {
            t.finish();
        }
        assert_eq!(abandoned_calls()[plugin], (0, 8));
    }

    #[test]
    fn contract_handshake_follows_semver() {
        assert!(check_contract(CONTRACT_VERSION, None).is_ok());
        // The previous contracts' plugins still load, and may ask for theirs.
        assert!(check_contract("0.1.0", None).is_ok());
        assert!(check_contract("0.2.0", None).is_ok());
        assert!(check_contract("0.3.0", None).is_ok());
        assert!(check_contract("0.3.0", Some(&semver::VersionReq::parse("^0.3").unwrap())).is_ok());
        assert!(check_contract("0.1.0", Some(&semver::VersionReq::parse("^0.1").unwrap())).is_ok());
        assert!(check_contract("0.2.0", Some(&semver::VersionReq::parse("^0.2").unwrap())).is_ok());
        let err = check_contract("1.0.0", None).unwrap_err().to_string();
        assert!(err.contains("built against contract 1.0.0") && err.contains(CONTRACT_VERSION), "{err}");
        assert!(err.contains("0.4.0 and 0.3.0 and 0.2.0 and 0.1.0"), "{err}");
        assert!(check_contract("0.0.9", None).is_err(), "0.x minors are incompatible");
        assert!(check_contract("0.4.9", None).is_err(), "a plugin newer than the host is refused");
        assert!(check_contract("0.3.9", None).is_err(), "newer than the 0.3 the host keeps");
        assert!(check_contract("0.2.9", None).is_err(), "newer than the 0.2 the host keeps");
        assert!(check_contract("0.1.9", None).is_err(), "newer than the 0.1 the host keeps");
        let req = semver::VersionReq::parse("^0.5").unwrap();
        assert!(check_contract(CONTRACT_VERSION, Some(&req)).unwrap_err().to_string().contains("requires contract"));
        // A 0.4 plugin whose manifest asks for 0.2 only: refused.
        let old = semver::VersionReq::parse("^0.2").unwrap();
        assert!(check_contract(CONTRACT_VERSION, Some(&old)).is_err());
        assert!(check_contract("banana", None).is_err());
    }
}
