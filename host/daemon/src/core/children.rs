//! Sub-workflow steps in the daemon: their children are executions of
//! registered workflows, with ids `<parent>~<step>` (so a restarted parent
//! finds its child instead of starting another, and the nesting depth is in
//! the id). A child's end is delivered to its parent as the signal
//! `child:<step>`; the parent's wait for it is parked like any wait.

use super::{Daemon, ErrorCode, Origin};
use plexus_workflow::engine::{ChildFuture, Children, parent_of};
use plexus_workflow::status::{ExecutionStatus, WorkflowStatus, epoch_ms};
use serde_json::{Map, Value};

/// The daemon's [`Children`].
pub(super) struct DaemonChildren(pub(super) Daemon);

impl Children for DaemonChildren {
    fn start(
        &self,
        _: &plexus_workflow::Engine,
        parent: &str,
        step: &str,
        call: &plexus_workflow::definition::SubWorkflow,
        inputs: Map<String, Value>,
    ) -> ChildFuture<String> {
        let daemon = self.0.clone();
        let (id, workflow, version) =
            (plexus_workflow::engine::child_id(parent, step), call.workflow.clone(), call.version);
        // An inline definition is registered under its id (a new version only when it changed).
        let inline = call.inline.as_ref().map(|inline| serde_json::to_string_pretty(&inline.to_json()));
        Box::pin(async move {
            if let Some(status) = daemon.0.store.execution_status(&id).await.map_err(|e| e.to_string())? {
                // Started before: a restarted parent finds it. One that failed
                // or was cancelled runs again (the parent is being retried);
                // one that ended is told again (its end may have been lost).
                if matches!(status, WorkflowStatus::Failed | WorkflowStatus::Cancelled) {
                    daemon.retry(&id).await.map_err(|e| e.to_string())?;
                } else if status.is_terminal() {
                    let (ended, _) = daemon.status(&id).await.map_err(|e| e.to_string())?;
                    daemon.child_ended(&ended).await;
                }
                return Ok(id);
            }
            let version = match inline {
                Some(source) => {
                    let source = source.map_err(|e| e.to_string())?;
                    Some(daemon.register_inline(&source).await.map_err(|e| e.to_string())?.version)
                }
                None => version,
            };
            let origin = Origin { version, execution_id: Some(id.clone()), ..Origin::default() };
            let exec = daemon.start(&workflow, inputs, origin).await.map_err(|e| e.to_string())?;
            tracing::info!(child = %id, %workflow, "child execution started");
            Ok(exec.id().to_owned())
        })
    }

    fn cancel(&self, child: &str) -> ChildFuture<()> {
        let (daemon, child) = (self.0.clone(), child.to_owned());
        Box::pin(async move {
            match daemon.cancel(&child).await {
                Ok(()) => Ok(()),
                // Ended, being cancelled, or never started: nothing to stop.
                Err(e) if matches!(e.code, ErrorCode::InvalidState | ErrorCode::NotFound) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn compensate(&self, _: &plexus_workflow::Engine, child: &str) -> ChildFuture<bool> {
        let (daemon, child) = (self.0.clone(), child.to_owned());
        Box::pin(async move { daemon.compensate_execution(&child).await.map_err(|e| e.to_string()) })
    }
}

impl Daemon {
    /// Execution `status` (a child: its id is `<parent>~<step>`) ended: tell
    /// its parent, as the signal its sub-workflow step waits for.
    pub(super) async fn child_ended(&self, status: &ExecutionStatus) {
        let Some((parent, step)) = parent_of(&status.execution_id) else { return };
        self.hand_up_artifacts(status, parent, step).await;
        let signal = plexus_workflow::engine::child_ended_signal(step, status, epoch_ms(self.0.clock.now()));
        match self.0.store.put_signal(parent, &signal).await {
            Ok(true) => {}
            Ok(false) => return, // told before (a child's end recorded twice)
            Err(e) => {
                tracing::error!(parent, child = %status.execution_id, "cannot tell the parent its child ended: {e}");
                return;
            }
        }
        let taken = self.live(parent).is_some_and(|exec| exec.deliver_signal(signal));
        if !taken {
            self.resume_parked(parent).await;
        }
    }

    /// The artifacts child `status` wrote that its outputs name become its
    /// parent's too (as step `step`'s): a parent may read what its
    /// sub-workflow hands it, as it may read its own (at most 1,000 references).
    async fn hand_up_artifacts(&self, status: &ExecutionStatus, parent: &str, step: &str) {
        let outputs = serde_json::Value::Object(status.outputs.clone());
        let found = plexus_host::artifacts::references(&outputs, 1000);
        let child = std::slice::from_ref(&status.execution_id);
        for reference in found {
            // Only what the child holds itself (what it got from its parent, the parent holds).
            if !self.0.store.holds_artifact(child, &reference.artifact).await.unwrap_or(false) {
                continue;
            }
            let record = plexus_client::ArtifactRecord {
                artifact: reference.artifact,
                name: reference.name,
                bytes: reference.bytes,
                media_type: reference.media_type,
                step: Some(step.to_owned()),
                created_at_ms: epoch_ms(self.0.clock.now()),
            };
            if let Err(e) = self.0.store.link_artifact(parent, &record).await {
                tracing::warn!(parent, child = %status.execution_id, "cannot hand the child's artifact to its parent: {e}");
            }
        }
    }

    /// Roll back completed execution `id` (a sub-workflow's child whose
    /// parent rolls back): its completed steps' compensations run, latest
    /// first, and it ends `rolled_back` (or `rollback_failed`). One that did
    /// not complete rolled itself back already. Whether every compensation
    /// succeeded.
    pub(super) async fn compensate_execution(&self, id: &str) -> super::DaemonResult<bool> {
        let stored = self.stored(id).await?;
        if stored.status.status != WorkflowStatus::Completed {
            return Ok(true);
        }
        if let Some((cluster, _)) = self.cluster() {
            cluster.claim_one(&self.0.node.id, id, crate::store::Claim::Compensate).await?;
        }
        let prepared = self.prepared(&stored.status.workflow_id, stored.meta.workflow_version).await?;
        let (exec, meta) = self.restore(stored).await;
        let entry = super::Live { exec: exec.clone(), meta, stop: self.0.drain.child_token() };
        self.0.live.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_owned(), entry);
        let _live = super::LiveWhile { daemon: self.clone(), ids: vec![id.to_owned()] };
        let engine = self.engine();
        let (ok, _) = engine.roll_back_transaction(id, &[(prepared, exec)]).await;
        Ok(ok)
    }
}
