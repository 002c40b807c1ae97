//! In-process plugins: a `plexus-sdk` [`Plugin`] compiled into the host
//! itself, called directly (no ABI, no sandbox). For embedding and tests.

use crate::error::CallError;
use crate::manifest::{Limits, Manifest, Permissions, PluginKind};
use crate::runtime::{self, Runtime};
use crate::services::CallServices;
use plexus_sdk::{CallOutput, ExecutionContext, Metadata, Plugin};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A [`Plugin`] running inside the host process. Its `initialize` runs
/// before its first call (an error fails that call and the next ones, each
/// trying again), its `cleanup` when the host drops it, if it was initialized.
pub(crate) struct InProcessPlugin<P: Plugin> {
    runtime: Arc<plexus_sdk::Runtime<P>>,
    initialized: Arc<std::sync::Mutex<bool>>,
}

impl<P: Plugin> Default for InProcessPlugin<P> {
    fn default() -> Self {
        Self { runtime: Arc::new(plexus_sdk::Runtime::new()), initialized: Arc::default() }
    }
}

impl<P: Plugin> Drop for InProcessPlugin<P> {
    fn drop(&mut self) {
        self.clean_up();
    }
}

impl<P: Plugin> InProcessPlugin<P> {
    /// Run the plugin's cleanup if it was initialized (the next call initializes it again).
    fn clean_up(&self) {
        let mut initialized = self.initialized.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if std::mem::take(&mut *initialized) {
            let runtime = &self.runtime;
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.cleanup())).is_err() {
                tracing::warn!(plugin = %runtime.metadata().id, "cleanup panicked");
            }
        }
    }
}

impl<P: Plugin> InProcessPlugin<P> {
    /// The manifest an in-process plugin is listed with: its own id and
    /// version, default limits, `config` as its configuration.
    pub(crate) fn manifest(&self, config: Value) -> Manifest {
        let meta = self.runtime.metadata();
        Manifest {
            dir: PathBuf::from("<in-process>"),
            id: meta.id.clone(),
            version: semver::Version::parse(&meta.version).unwrap_or(semver::Version::new(0, 0, 0)),
            kind: PluginKind::InProcess,
            artifact: PathBuf::from("<in-process>"),
            contract: None,
            sha256: None,
            config,
            limits: Limits::default(),
            permissions: Permissions::default(),
            isolation: None,
            worker: Default::default(),
            instances: Default::default(),
            aliases: Vec::new(),
            resolved: None,
        }
    }
}

impl<P: Plugin> Runtime for InProcessPlugin<P> {
    fn metadata(&self) -> &Metadata {
        self.runtime.metadata()
    }

    fn kind(&self) -> PluginKind {
        PluginKind::InProcess
    }

    fn stop(&self) {
        self.clean_up();
    }

    fn call(
        &self,
        exec: &ExecutionContext,
        services: &CallServices,
        timeout: Option<Duration>,
    ) -> Result<CallOutput, CallError> {
        let plugin = self.runtime.metadata().id.clone();
        let Some(timeout) = timeout else {
            return call_catching(&self.runtime, &self.initialized, &plugin, exec, services);
        };
        let (runtime, initialized, exec) = (self.runtime.clone(), self.initialized.clone(), exec.clone());
        runtime::call_on_thread(&plugin.clone(), services, timeout, move |services| {
            call_catching(&runtime, &initialized, &plugin, &exec, services)
        })
    }
}

/// Call `runtime` (initializing it first if it is not), turning a panic into [`CallError::Panic`].
fn call_catching<P: Plugin>(
    runtime: &plexus_sdk::Runtime<P>,
    initialized: &std::sync::Mutex<bool>,
    plugin: &str,
    exec: &ExecutionContext,
    services: &CallServices,
) -> Result<CallOutput, CallError> {
    let run = || {
        let mut done = initialized.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*done {
            runtime
                .initialize(&exec.config)
                .map_err(|e| plexus_sdk::PluginError { message: format!("initialize: {}", e.message), ..e })?;
            *done = true;
        }
        drop(done);
        runtime.call(exec, services)
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(error)) => Err(CallError::Plugin { plugin: plugin.to_owned(), error }),
        Err(payload) => Err(CallError::Panic {
            plugin: plugin.to_owned(),
            message: plexus_sdk::abi::panic_message(payload.as_ref()),
        }),
    }
}
