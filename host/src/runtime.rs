//! The one trait both runtimes implement, and the checks every loaded plugin passes.

use crate::error::{CallError, LoadErrorKind};
use crate::manifest::{Manifest, PluginKind};
use crate::services::CallServices;
use plexus_sdk::{CONTRACT_VERSION, CallOutput, ExecutionContext, Metadata};
use std::time::Duration;

/// A loaded plugin, native or WASM. The rest of the host talks only to this.
pub trait Runtime: Send + Sync {
    /// The metadata the plugin declared at load time.
    fn metadata(&self) -> &Metadata;

    /// Native or WASM.
    fn kind(&self) -> PluginKind;

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

/// Run `call` on a thread of its own and wait at most `timeout` for it. On
/// timeout the call is interrupted (its cancel flag set, see
/// [`CallServices::interrupt`]) and its thread abandoned: native code cannot be
/// pre-empted. Used by the native and in-process runtimes.
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
    std::thread::Builder::new()
        .name(format!("plexus-call-{plugin}"))
        .spawn(move || {
            let _ = tx.send(call(&thread_services));
        })
        .map_err(|e| CallError::Host { plugin: plugin.to_owned(), message: format!("cannot start a thread: {e}") })?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => {
            services.interrupt();
            tracing::warn!(plugin, timeout_ms = timeout.as_millis() as u64, "call timed out; its thread is abandoned");
            Err(CallError::Timeout { plugin: plugin.to_owned(), after: timeout })
        }
    }
}

/// The contract version this host implements.
pub fn host_contract_version() -> semver::Version {
    semver::Version::parse(CONTRACT_VERSION).expect("CONTRACT_VERSION is semver")
}

/// The handshake: a plugin built against contract `plugin` runs on this host
/// when the host's version is semver-compatible with it (`^plugin`: same major,
/// or same minor on 0.x, and not older), and the manifest's `contract`
/// requirement, if any, accepts the host's version.
pub fn check_contract(plugin: &str, manifest: Option<&semver::VersionReq>) -> Result<(), LoadErrorKind> {
    let host = host_contract_version();
    let incompatible = |why: String| LoadErrorKind::IncompatibleContract(why);
    let plugin_version = semver::Version::parse(plugin)
        .map_err(|e| incompatible(format!("contract version `{plugin}` is not semver: {e}")))?;
    let req = semver::VersionReq::parse(&format!("^{plugin_version}")).expect("caret of a version parses");
    if !req.matches(&host) {
        return Err(incompatible(format!(
            "plugin was built against contract {plugin_version}, this host implements {host}"
        )));
    }
    if let Some(req) = manifest
        && !req.matches(&host)
    {
        return Err(incompatible(format!("plugin.toml requires contract {req}, this host implements {host}")));
    }
    Ok(())
}

/// Check a loaded plugin's own metadata against its manifest and the contract.
pub fn check_metadata(metadata: &Metadata, manifest: &Manifest) -> Result<(), LoadErrorKind> {
    let mismatch = |field: &str, plugin: &str, manifest: &str| LoadErrorKind::MetadataMismatch {
        field: field.into(),
        plugin: plugin.into(),
        manifest: manifest.into(),
    };
    check_contract(&metadata.contract_version, manifest.contract.as_ref())?;
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
    fn contract_handshake_follows_semver() {
        assert!(check_contract(CONTRACT_VERSION, None).is_ok());
        let err = check_contract("1.0.0", None).unwrap_err().to_string();
        assert!(err.contains("built against contract 1.0.0") && err.contains(CONTRACT_VERSION), "{err}");
        assert!(check_contract("0.0.9", None).is_err(), "0.x minors are incompatible");
        assert!(check_contract("0.1.9", None).is_err(), "a plugin newer than the host is refused");
        let req = semver::VersionReq::parse("^0.2").unwrap();
        assert!(check_contract(CONTRACT_VERSION, Some(&req)).unwrap_err().to_string().contains("requires contract"));
        assert!(check_contract("banana", None).is_err());
    }
}
