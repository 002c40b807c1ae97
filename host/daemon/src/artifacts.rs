//! The daemon's artifacts (contract 0.4): the blob store beside the state
//! database and its index in the store (table `artifacts`: which execution
//! holds which artifact). A call may read an artifact its execution, or an
//! execution it descends from (a sub-workflow's parent), holds; an
//! artifact's bytes go once no execution holds it any more (its executions
//! were deleted past the retention, see [`Daemon::collect_artifacts`]).

use crate::core::Daemon;
use crate::store::Store;
use plexus_client::ArtifactRecord;
use plexus_host::artifacts::{ArtifactIndex, Artifacts, BlobStore, lineage};
use plexus_sdk::ArtifactRef;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a store request from a plugin's call may take: 30 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Blobs younger than this are never collected: a call may be writing and
/// linking one right now. One hour.
pub const COLLECT_GRACE: Duration = Duration::from_secs(3600);

/// [`ArtifactIndex`] over the daemon's store.
struct StoreIndex {
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Handle,
    clock: Arc<dyn plexus_workflow::Clock>,
}

impl StoreIndex {
    /// Run `request` on the daemon's runtime; this (the plugin's call) thread waits.
    fn wait<T: Send + 'static>(
        &self,
        request: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(request.await);
        });
        rx.recv_timeout(REQUEST_TIMEOUT)
            .unwrap_or_else(|_| Err(format!("the store did not answer within {} s", REQUEST_TIMEOUT.as_secs())))
    }
}

impl ArtifactIndex for StoreIndex {
    fn link(&self, execution: &str, step: Option<&str>, reference: &ArtifactRef) -> Result<(), String> {
        let record = ArtifactRecord {
            artifact: reference.artifact.clone(),
            name: reference.name.clone(),
            bytes: reference.bytes,
            media_type: reference.media_type.clone(),
            step: step.map(str::to_owned),
            created_at_ms: plexus_workflow::status::epoch_ms(self.clock.now()),
        };
        let (store, id) = (self.store.clone(), execution.to_owned());
        self.wait(async move { store.link_artifact(&id, &record).await.map_err(|e| e.to_string()) })
    }

    fn readable(&self, execution: &str, digest: &str) -> Result<bool, String> {
        let ids: Vec<String> = lineage(execution).map(str::to_owned).collect();
        let (store, digest) = (self.store.clone(), digest.to_owned());
        self.wait(async move { store.holds_artifact(&ids, &digest).await.map_err(|e| e.to_string()) })
    }
}

/// The daemon's artifacts: the blob store under `dir` and the index in `daemon`'s store.
///
/// # Errors
/// The folder cannot be created.
pub fn open(daemon: &Daemon, dir: &Path) -> std::io::Result<Artifacts> {
    let index =
        StoreIndex { store: daemon.store().clone(), runtime: daemon.runtime().clone(), clock: daemon.clock().clone() };
    Ok(Artifacts { store: Arc::new(BlobStore::open(dir)?), index: Arc::new(index) })
}

impl Daemon {
    /// Delete the blobs no execution holds any more and older than `grace`
    /// (see [`BlobStore::collect`]); how many. Runs after executions were
    /// deleted past the retention, and once at start.
    ///
    /// # Errors
    /// The folder cannot be read or the store cannot answer.
    pub async fn collect_artifacts(&self, grace: Duration) -> Result<usize, String> {
        let Some(artifacts) = self.artifacts().cloned() else { return Ok(0) };
        let (store, runtime) = (self.store().clone(), self.runtime().clone());
        let held = move |digests: &[String]| -> Result<HashSet<String>, String> {
            runtime.block_on(store.held_artifacts(digests)).map_err(|e| e.to_string())
        };
        tokio::task::spawn_blocking(move || artifacts.store.collect(grace, &held))
            .await
            .map_err(|e| format!("collecting artifacts: {e}"))?
    }
}
