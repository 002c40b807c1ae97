//! The daemon as a node of a cluster: several daemons on one PostgreSQL
//! database (see [`crate::store::Cluster`]).
//!
//! * **Claims.** A joined node runs the executions it owns. An execution is
//!   recorded unowned; the node that accepted it claims it at once when it
//!   has a free worker, else the first node with a free worker and every
//!   plugin the execution needs claims it (in batches of at most
//!   [`CLAIM_BATCH`], polled every [`CLUSTER_POLL`] and whenever a worker
//!   frees up).
//! * **Leases.** A node renews its lease every quarter of it (default
//!   [`DEFAULT_LEASE`], 10 s). A node that dies stops renewing; once its
//!   lease ran out, the others claim its executions and resume them from
//!   their record exactly as a restarted daemon does (completed steps are
//!   not run again; the interrupted attempt counts and is retried per its
//!   policy). Writes are fenced: a node whose lease ran out (a long pause, a
//!   cut-off network) can no longer change an execution another node took
//!   over, and its next heartbeat stops running it here. A node that could
//!   not renew its lease for a whole lease stops its executions itself and
//!   claims nothing until a heartbeat works again; then it hands back what
//!   it still owns.
//! * **Lifecycle across nodes.** A cancel asked on any node is taken up by
//!   the owner within [`CLUSTER_POLL`] (an unowned execution is cancelled
//!   by the node asked; a cancel never takes one that ended); a retry hands
//!   the execution back to be claimed; a transaction's rollback is the
//!   node's that started it, and another's once that node died.
//! * **A clean stop hands back** the node's unfinished executions at once
//!   (no lease wait), but those still running at the end of the grace
//!   period: they go when its lease runs out.

use super::*;
use crate::store::{CancelRequest, Claim, NodeJoin};
use plexus_client::{NodeList, NodeState, NodeView};

/// How far back a node looks for signals delivered on other nodes, beyond its last look (ms).
const SIGNAL_MARGIN_MS: u64 = 60_000;

impl Daemon {
    /// This daemon's node id (`<host>-<pid>-<8 hex digits>`), new at each start.
    pub fn node_id(&self) -> &str {
        &self.0.node.id
    }

    /// The names this node can call plugins by (ids and aliases), sorted:
    /// what it advertises, and what an execution's steps must all be in for
    /// this node to claim it.
    fn plugin_ids(&self) -> Vec<String> {
        self.host().callable_names()
    }

    /// The store's cluster, once this daemon joined it.
    pub(super) fn cluster(&self) -> Option<(&dyn crate::store::Cluster, ClusterSettings)> {
        let settings = *self.0.node.joined.get()?;
        Some((self.0.store.cluster()?, settings))
    }

    /// Record where this daemon's API listens (for `GET /v1/nodes`) and, if
    /// its store can be shared (PostgreSQL), join the cluster with lease
    /// `lease`: register, then claim, heartbeat and poll in the background.
    /// Returns whether it joined; a daemon that joined does not call
    /// [`Self::resume_unfinished`] (the claims resume what no node runs).
    ///
    /// # Errors
    /// The registration could not be written.
    pub async fn join_cluster(&self, address: Option<String>, lease: Duration) -> DaemonResult<bool> {
        if let Some(address) = &address {
            let _ = self.0.node.address.set(address.clone());
        }
        let Some(cluster) = self.0.store.cluster() else { return Ok(false) };
        let join = NodeJoin {
            id: self.0.node.id.clone(),
            address,
            plugins: self.plugin_ids(),
            workers: self.0.node.workers as u64,
        };
        cluster.join(&join, duration_ms(lease)).await?;
        let _ = self.0.node.joined.set(ClusterSettings { lease });
        self.spawn_cluster_loop();
        tracing::info!(node = %self.0.node.id, lease_ms = duration_ms(lease), "joined the cluster");
        Ok(true)
    }

    /// Two background tasks until the daemon stops: the heartbeat (every
    /// quarter of the lease, on its own so that a slow claim never delays
    /// it) and the claims with the cancel polls (every [`CLUSTER_POLL`],
    /// and whenever a worker frees up).
    fn spawn_cluster_loop(&self) {
        let weak = Arc::downgrade(&self.0);
        self.0.runtime.spawn(async move {
            // When the lease last held for sure: the start of the last heartbeat that renewed it.
            let mut renewed = tokio::time::Instant::now();
            loop {
                let pause = {
                    let Some(inner) = weak.upgrade() else { return };
                    let daemon = Daemon(inner);
                    let Some((_, settings)) = daemon.cluster() else { return };
                    if daemon.0.drain.is_cancelled() {
                        return;
                    }
                    let started = tokio::time::Instant::now();
                    if daemon.heartbeat().await {
                        if daemon.0.node.fenced.swap(false, Ordering::AcqRel) {
                            daemon.hand_back_stopped().await;
                        }
                        renewed = started;
                        // Rollbacks left by a node that died are carried on here.
                        if let Err(e) = daemon.resume_rollbacks().await {
                            tracing::warn!("cannot look for interrupted rollbacks: {e}");
                        }
                    } else if renewed.elapsed() >= settings.lease {
                        daemon.fence_self();
                    }
                    settings.lease / 4
                };
                tokio::time::sleep(pause).await;
            }
        });
        let weak = Arc::downgrade(&self.0);
        let wake = self.0.node.claim.clone();
        self.0.runtime.spawn(async move {
            loop {
                let notified = wake.notified();
                {
                    let Some(inner) = weak.upgrade() else { return };
                    let daemon = Daemon(inner);
                    if daemon.0.drain.is_cancelled() {
                        return;
                    }
                    if !daemon.0.node.fenced.load(Ordering::Acquire) {
                        daemon.take_cancels().await;
                        daemon.claim_free().await;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(CLUSTER_POLL) => {}
                    _ = notified => {}
                }
            }
        });
    }

    /// The ids of the executions running here.
    fn running_ids(&self) -> Vec<String> {
        // A parked execution stays this node's: it resumes here.
        let mut ids: Vec<String> = self.0.live.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        ids.extend(self.parked_ids());
        ids
    }

    /// Renew the lease (joining again if this node's registration went);
    /// stop running here what another node took over. Whether the lease
    /// was renewed.
    async fn heartbeat(&self) -> bool {
        let Some((cluster, settings)) = self.cluster() else { return false };
        let lease_ms = duration_ms(settings.lease);
        let running = self.running_ids();
        match cluster.heartbeat(&self.0.node.id, &self.plugin_ids(), &running, lease_ms).await {
            Ok(Some(lost)) => {
                self.0.health.recover("cluster");
                // Another node may have set or deleted a secret.
                if let Some(secrets) = self.0.secrets.get().cloned() {
                    let daemon = self.clone();
                    self.0.runtime.spawn(async move {
                        match secrets.refresh().await {
                            Ok(true) => daemon.load_plugins_waiting_for_secrets().await,
                            Ok(false) => {}
                            Err(e) => tracing::warn!("cannot re-read the secrets: {e}"),
                        }
                    });
                }
                for id in lost {
                    self.unpark(&id);
                    let live = self.0.live.read().unwrap_or_else(PoisonError::into_inner).get(&id).cloned();
                    if let Some(live) = live {
                        tracing::warn!(execution = %id, "another node took this execution over; stopping it here");
                        live.stop.cancel();
                    }
                }
                true
            }
            Ok(None) => {
                tracing::warn!(node = %self.0.node.id, "this node's registration went; joining again");
                let join = NodeJoin {
                    id: self.0.node.id.clone(),
                    address: self.0.node.address.get().cloned(),
                    plugins: self.plugin_ids(),
                    workers: self.0.node.workers as u64,
                };
                match cluster.join(&join, lease_ms).await {
                    Ok(()) => true,
                    Err(e) => {
                        self.0.health.degrade("cluster", format!("cannot join the cluster again: {e}"));
                        false
                    }
                }
            }
            Err(e) => {
                tracing::warn!(node = %self.0.node.id, "heartbeat failed: {e}");
                self.0.health.degrade("cluster", format!("heartbeat failed: {e}"));
                false
            }
        }
    }

    /// The lease ran out without a heartbeat (the database cannot be
    /// reached): another node may take this node's executions over, so none
    /// goes on here — each stops starting steps (as at shutdown, recording
    /// nothing more) and no new one is claimed until a heartbeat works again.
    fn fence_self(&self) {
        if self.0.node.fenced.swap(true, Ordering::AcqRel) {
            return;
        }
        let live: Vec<Live> = self.0.live.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        tracing::error!(
            node = %self.0.node.id,
            executions = live.len(),
            "the lease ran out without a heartbeat: stopping this node's executions (another node takes them over)"
        );
        self.0.health.degrade("cluster", "the lease ran out: this node's executions were stopped");
        // Parked ones too: another node takes them over.
        self.unpark_all();
        for entry in live {
            entry.stop.cancel();
        }
    }

    /// After the lease was lost and renewed again: hand back the executions
    /// this node still owns but no longer runs, for any node to claim.
    async fn hand_back_stopped(&self) {
        let Some((cluster, _)) = self.cluster() else { return };
        let _claims = self.0.node.claiming.lock().await;
        match cluster.release(&self.0.node.id, &self.running_ids()).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(executions = ids.len(), "handed back after the lease was lost")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot hand executions back: {e}"),
        }
    }

    /// Cancel here what was asked to be cancelled on other nodes.
    async fn take_cancels(&self) {
        let Some((cluster, _)) = self.cluster() else { return };
        match cluster.cancel_requests(&self.0.node.id).await {
            Ok(ids) => {
                for id in ids {
                    if self.is_parked(&id) {
                        self.resume_parked(&id).await;
                    }
                    if let Some(exec) = self.live(&id)
                        && exec.request_cancel()
                    {
                        tracing::info!(execution = %id, "cancelled (asked on another node)");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read cancel requests: {e}"),
        }
        // Signals delivered on other nodes to executions parked here (a wide
        // margin for the nodes' clocks and commits: a signal already seen is
        // not taken again); the cursor moves only when the store was read.
        let now = epoch_ms(self.0.clock.now());
        let since = self.0.node.signals_polled.load(Ordering::Acquire).saturating_sub(SIGNAL_MARGIN_MS);
        if self.take_signals(since).await {
            self.0.node.signals_polled.store(now, Ordering::Release);
        }
    }

    /// Claim as many executions as there are free workers (at most
    /// [`CLAIM_BATCH`]) and run them.
    async fn claim_free(&self) {
        let Some((cluster, _)) = self.cluster() else { return };
        let busy = self.0.live.read().unwrap_or_else(PoisonError::into_inner).len();
        let free = self.0.node.workers.saturating_sub(busy).min(CLAIM_BATCH as usize);
        if free == 0 || !self.is_accepting() {
            return;
        }
        // Claimed and started under one lock: a hand-back never sees one claimed but not yet running.
        let _claims = self.0.node.claiming.lock().await;
        let claimed = match cluster.claim(&self.0.node.id, &self.plugin_ids(), free as u32).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("cannot claim executions: {e}");
                return;
            }
        };
        let mut unread = false;
        for id in claimed {
            match self.0.store.execution(&id).await {
                Ok(Some(stored)) => {
                    tracing::info!(execution = %id, node = %self.0.node.id, "claimed");
                    self.run_stored(stored).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(execution = %id, "claimed, but its record cannot be read: {e}");
                    unread = true;
                }
            }
        }
        // What could not be read goes back, for a later claim (here or elsewhere).
        if unread && let Err(e) = cluster.release(&self.0.node.id, &self.running_ids()).await {
            tracing::warn!("cannot hand back the executions not read: {e}");
        }
    }

    /// Whether to start `id` (recorded, unowned) here: this node has a free
    /// worker and claimed it. Otherwise it is left to the claims of any node
    /// (a claim that failed is logged: the execution is recorded, and claimed later).
    /// When it returns the claim lock, the caller starts the execution
    /// before dropping it.
    pub(super) async fn run_here_if_free(&self, id: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let (cluster, _) = self.cluster()?;
        if self.0.node.fenced.load(Ordering::Acquire) {
            self.0.node.claim.notify_one();
            return None;
        }
        let claims = self.0.node.claiming.lock().await;
        let busy = self.0.live.read().unwrap_or_else(PoisonError::into_inner).len();
        let claimed = busy < self.0.node.workers
            && cluster.claim_one(&self.0.node.id, id, Claim::Run(&self.plugin_ids())).await.unwrap_or_else(|e| {
                tracing::warn!(execution = %id, "cannot claim it now ({e}); it is claimed later");
                false
            });
        if !claimed {
            self.0.node.claim.notify_one();
            return None;
        }
        Some(claims)
    }

    /// Cancel `id`, which does not run here: ask its owner, or (unowned, or
    /// its owner lost) claim it and cancel it here.
    pub(super) async fn cancel_elsewhere(&self, id: &str) -> DaemonResult<()> {
        let Some((cluster, _)) = self.cluster() else {
            let stored = self.stored(id).await?;
            return Err(DaemonError::invalid_state(format!(
                "execution `{id}` is {}, not running",
                stored.status.status.as_str()
            )));
        };
        match cluster.request_cancel(id).await? {
            CancelRequest::NotFound => Err(DaemonError::not_found(format!("execution `{id}`"))),
            CancelRequest::Ended(status) => {
                Err(DaemonError::invalid_state(format!("execution `{id}` is {}, not running", status.as_str())))
            }
            CancelRequest::AlreadyRequested => {
                Err(DaemonError::invalid_state(format!("execution `{id}` is already being cancelled")))
            }
            CancelRequest::Requested { owner } => {
                let _claims = self.0.node.claiming.lock().await;
                if cluster.claim_one(&self.0.node.id, id, Claim::Cancel).await? {
                    // Nobody runs it: cancel it here (it ends cancelled without a worker).
                    let stored = self.stored(id).await?;
                    let prepared = self.prepared(&stored.status.workflow_id, stored.meta.workflow_version).await?;
                    let (exec, meta) = self.restore(stored).await;
                    exec.request_cancel();
                    self.launch(prepared, exec, meta, false);
                } else {
                    tracing::info!(execution = %id, owner = ?owner, "cancel asked of the node running it");
                }
                Ok(())
            }
        }
    }

    /// Wait up to `wait` for execution `id`, which does not run here, to
    /// end (polling the store every 100 ms); whether it did.
    pub async fn wait_stored(&self, id: &str, wait: Duration) -> DaemonResult<bool> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let status = self.0.store.execution_status(id).await?;
            let status = status.ok_or_else(|| DaemonError::not_found(format!("execution `{id}`")))?;
            if status.is_terminal() {
                return Ok(true);
            }
            if let Some(exec) = self.live(id) {
                // Claimed here meanwhile.
                return Ok(tokio::time::timeout_at(deadline, exec.wait()).await.is_ok());
            }
            if tokio::time::Instant::now() >= deadline || self.0.drain.is_cancelled() {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Which node runs execution `id` and which plugins it waits for (no
    /// live node has them), when this daemon is in a cluster.
    pub async fn placement(&self, id: &str) -> DaemonResult<Option<crate::store::Placement>> {
        match self.cluster() {
            Some((cluster, _)) => Ok(cluster.placement(id).await?),
            None => Ok(None),
        }
    }

    /// Whether this node holds leadership `name` (e.g. `scheduler`), taking
    /// or renewing it for one lease; a daemon that did not join a cluster
    /// (its store is its own) always does. (`serve` starts the schedules
    /// only once it joined.)
    pub async fn leads(&self, name: &str) -> bool {
        let Some((cluster, settings)) = self.cluster() else { return true };
        match cluster.lead(name, &self.0.node.id, duration_ms(settings.lease)).await {
            Ok(leads) => leads,
            Err(e) => {
                tracing::warn!(leadership = name, "cannot renew the leadership: {e}");
                false
            }
        }
    }

    /// The nodes: every node of the cluster, or this daemon alone.
    pub async fn nodes(&self) -> DaemonResult<NodeList> {
        let nodes = match self.cluster() {
            Some((cluster, _)) => cluster.nodes().await?,
            None => {
                let now = epoch_ms(std::time::SystemTime::now());
                let mut executions: Vec<String> =
                    self.0.live.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
                executions.sort();
                let running = executions.len() as u64;
                executions.truncate(100);
                vec![NodeView {
                    id: self.0.node.id.clone(),
                    address: self.0.node.address.get().cloned(),
                    started_at_ms: self.0.node.started_at_ms,
                    heartbeat_ms: now,
                    lease_until_ms: now,
                    state: NodeState::Alive,
                    plugins: self.plugin_ids(),
                    workers: self.0.node.workers as u64,
                    executions,
                    running,
                }]
            }
        };
        Ok(NodeList { this: self.0.node.id.clone(), nodes })
    }

    /// Leave the cluster at the end of a clean stop: the executions this
    /// node still owns are handed back for others to claim at once.
    pub async fn leave_cluster(&self) {
        let Some((cluster, _)) = self.cluster() else { return };
        match cluster.leave(&self.0.node.id, &self.running_ids()).await {
            Ok(()) => tracing::info!(node = %self.0.node.id, "left the cluster"),
            Err(e) => {
                tracing::warn!(node = %self.0.node.id, "cannot leave the cluster cleanly ({e}); its lease runs out")
            }
        }
    }
}

/// `d` in whole ms.
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
