//! [`Cluster`] for [`PgStore`]: nodes, leases, claims and leaderships in
//! the `nodes`, `executions` (`owner`, `needs`, `cancel_requested`) and
//! `leaders` tables, on the database's clock.

use super::PgStore;
use crate::store::{CancelRequest, Claim, Cluster, NodeJoin, Placement, StoreError, StoreFuture, StoreResult};
use plexus_client::{NodeState, NodeView};
use plexus_workflow::status::WorkflowStatus;

/// Now, ms since the Unix epoch, by the database's clock.
pub const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// How long stopped and lost nodes stay listed.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// `e.owner` is not a live node (the alias `e` is the execution).
fn unowned() -> String {
    format!(
        "(e.owner IS NULL OR NOT EXISTS (SELECT 1 FROM nodes n
             WHERE n.id = e.owner AND NOT n.stopped AND n.lease_until_ms > {NOW_MS}))"
    )
}

/// Statuses of an execution that has not ended.
const UNFINISHED: &str = "('pending', 'running', 'rolling_back')";

fn lease(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX / 4)
}

impl Cluster for PgStore {
    fn join(&self, node: &NodeJoin, lease_ms: u64) -> StoreFuture<()> {
        let node = node.clone();
        self.run(move |s| async move {
            s.exec(
                &format!(
                    "INSERT INTO nodes (id, address, started_at_ms, heartbeat_ms, lease_until_ms, plugins, workers)
                     VALUES ($1, $2, {NOW_MS}, {NOW_MS}, {NOW_MS} + $3, $4, $5)
                     ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                        started_at_ms = excluded.started_at_ms, heartbeat_ms = excluded.heartbeat_ms,
                        lease_until_ms = excluded.lease_until_ms, plugins = excluded.plugins,
                        workers = excluded.workers, running = 0, stopped = false
                     WHERE nodes.stopped OR nodes.lease_until_ms < {NOW_MS}"
                ),
                &[&node.id, &node.address, &lease(lease_ms), &node.plugins, &lease(node.workers)],
            )
            .await
            .and_then(|n| if n == 0 { Err(StoreError::NodeIdInUse { node: node.id.clone() }) } else { Ok(()) })?;
            s.exec(&format!("DELETE FROM nodes WHERE lease_until_ms < {NOW_MS} - $1"), &[&FORGET_AFTER_MS]).await?;
            // Fenced from now on: this store changes an execution only while the node owns it.
            let _ = s.0.node.set(node.id.clone());
            Ok(())
        })
    }

    fn heartbeat(
        &self,
        node: &str,
        plugins: &[String],
        running: &[String],
        lease_ms: u64,
    ) -> StoreFuture<Option<Vec<String>>> {
        let (node, plugins, running) = (node.to_owned(), plugins.to_vec(), running.to_vec());
        self.run(move |s| async move {
            let renewed = s
                .exec(
                    &format!(
                        "UPDATE nodes SET heartbeat_ms = {NOW_MS}, lease_until_ms = {NOW_MS} + $2, plugins = $3,
                            running = $4
                         WHERE id = $1 AND NOT stopped"
                    ),
                    &[&node, &lease(lease_ms), &plugins, &(running.len() as i64)],
                )
                .await?;
            if renewed == 0 {
                return Ok(None);
            }
            let rows = s
                .query(
                    "SELECT r FROM unnest($1::text[]) AS r
                     WHERE NOT EXISTS (SELECT 1 FROM executions e WHERE e.id = r AND e.owner = $2)",
                    &[&running, &node],
                )
                .await?;
            rows.iter().map(|r| s.col(r, 0)).collect::<StoreResult<Vec<String>>>().map(Some)
        })
    }

    fn release(&self, node: &str, running: &[String]) -> StoreFuture<Vec<String>> {
        let (node, running) = (node.to_owned(), running.to_vec());
        self.run(move |s| async move {
            let rows = s
                .query(
                    &format!(
                        "UPDATE executions SET owner = NULL
                         WHERE owner = $1 AND status IN {UNFINISHED} AND NOT (id = ANY($2::text[]))
                         RETURNING id"
                    ),
                    &[&node, &running],
                )
                .await?;
            rows.iter().map(|r| s.col(r, 0)).collect()
        })
    }

    fn claim(&self, node: &str, plugins: &[String], limit: u32) -> StoreFuture<Vec<String>> {
        let (node, plugins) = (node.to_owned(), plugins.to_vec());
        self.run(move |s| async move {
            s.writable()?;
            let rows = s
                .query(
                    &format!(
                        "UPDATE executions SET owner = $1 WHERE id IN (
                            SELECT e.id FROM executions e
                            WHERE e.status IN {UNFINISHED} AND {} AND e.needs <@ $2::text[]
                            ORDER BY e.priority DESC, e.created_at_ms, e.id
                            LIMIT $3
                            FOR UPDATE OF e SKIP LOCKED)
                         RETURNING id",
                        unowned()
                    ),
                    &[&node, &plugins, &i64::from(limit)],
                )
                .await?;
            rows.iter().map(|r| s.col(r, 0)).collect()
        })
    }

    fn claim_one(&self, node: &str, id: &str, purpose: Claim<'_>) -> StoreFuture<bool> {
        let (node, id) = (node.to_owned(), id.to_owned());
        let (condition, plugins) = match purpose {
            Claim::Run(plugins) => (
                format!(
                    "e.owner IS DISTINCT FROM $1 AND e.status IN {UNFINISHED} AND {}
                     AND e.needs <@ $3::text[]",
                    unowned()
                ),
                Some(plugins.to_vec()),
            ),
            Claim::Cancel => {
                (format!("e.owner IS DISTINCT FROM $1 AND e.status IN {UNFINISHED} AND {}", unowned()), None)
            }
            Claim::Compensate => (format!("e.status NOT IN {UNFINISHED}"), None),
        };
        self.run(move |s| async move {
            let sql = format!("UPDATE executions e SET owner = $1 WHERE e.id = $2 AND {condition}");
            let changed = match &plugins {
                Some(plugins) => s.exec(&sql, &[&node, &id, plugins]).await?,
                None => s.exec(&sql, &[&node, &id]).await?,
            };
            Ok(changed > 0)
        })
    }

    fn leave(&self, node: &str, running: &[String]) -> StoreFuture<()> {
        let (node, running) = (node.to_owned(), running.to_vec());
        self.run(move |s| async move {
            s.exec(
                &format!(
                    "UPDATE executions SET owner = NULL
                     WHERE owner = $1 AND status IN {UNFINISHED} AND NOT (id = ANY($2::text[]))"
                ),
                &[&node, &running],
            )
            .await?;
            s.exec("DELETE FROM leaders WHERE node = $1", &[&node]).await?;
            // With executions still running here, the node stays live until
            // its lease runs out (no other node takes them before).
            if running.is_empty() {
                s.exec(
                    &format!("UPDATE nodes SET stopped = true, running = 0, lease_until_ms = {NOW_MS} WHERE id = $1"),
                    &[&node],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn claim_rollback(&self, node: &str, id: &str) -> StoreFuture<bool> {
        let (node, id) = (node.to_owned(), id.to_owned());
        self.run(move |s| async move {
            let changed = s
                .exec(
                    &format!(
                        "UPDATE transactions t SET owner = $1
                         WHERE t.id = $2 AND t.state = 'rolling_back' AND t.owner IS DISTINCT FROM $1
                           AND (t.owner IS NULL OR NOT EXISTS (SELECT 1 FROM nodes n
                                WHERE n.id = t.owner AND NOT n.stopped AND n.lease_until_ms > {NOW_MS}))"
                    ),
                    &[&node, &id],
                )
                .await?;
            Ok(changed > 0)
        })
    }

    fn request_cancel(&self, id: &str) -> StoreFuture<CancelRequest> {
        let id = id.to_owned();
        self.run(move |s| async move {
            s.writable()?;
            let asked = s
                .query_opt(
                    &format!(
                        "UPDATE executions SET cancel_requested = true
                         WHERE id = $1 AND status IN {UNFINISHED} AND NOT cancel_requested RETURNING owner"
                    ),
                    &[&id],
                )
                .await?;
            if let Some(row) = asked {
                return Ok(CancelRequest::Requested { owner: s.col(&row, 0)? });
            }
            let Some(row) = s.query_opt("SELECT status FROM executions WHERE id = $1", &[&id]).await? else {
                return Ok(CancelRequest::NotFound);
            };
            let status: WorkflowStatus = s.status(&id, &s.col::<String>(&row, 0)?)?;
            Ok(if status.is_terminal() { CancelRequest::Ended(status) } else { CancelRequest::AlreadyRequested })
        })
    }

    fn cancel_requests(&self, node: &str) -> StoreFuture<Vec<String>> {
        let node = node.to_owned();
        self.run(move |s| async move {
            let rows = s
                .query(
                    &format!(
                        "SELECT id FROM executions WHERE owner = $1 AND cancel_requested AND status IN {UNFINISHED}"
                    ),
                    &[&node],
                )
                .await?;
            rows.iter().map(|r| s.col(r, 0)).collect()
        })
    }

    fn nodes(&self) -> StoreFuture<Vec<NodeView>> {
        self.run(|s| async move {
            let rows = s
                .query(
                    &format!(
                        "SELECT n.id, n.address, n.started_at_ms, n.heartbeat_ms, n.lease_until_ms, n.stopped,
                                n.lease_until_ms > {NOW_MS}, n.plugins, n.workers,
                                ARRAY(SELECT e.id FROM executions e
                                      WHERE e.owner = n.id AND e.status IN {UNFINISHED} ORDER BY e.id LIMIT 100),
                                (SELECT COUNT(*) FROM executions e WHERE e.owner = n.id AND e.status IN {UNFINISHED})
                         FROM nodes n ORDER BY n.id"
                    ),
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| -> StoreResult<NodeView> {
                    let (stopped, alive): (bool, bool) = (s.col(r, 5)?, s.col(r, 6)?);
                    Ok(NodeView {
                        id: s.col(r, 0)?,
                        address: s.col(r, 1)?,
                        started_at_ms: s.unsigned(r, 2)?,
                        heartbeat_ms: s.unsigned(r, 3)?,
                        lease_until_ms: s.unsigned(r, 4)?,
                        state: match (stopped, alive) {
                            (true, _) => NodeState::Stopped,
                            (false, true) => NodeState::Alive,
                            (false, false) => NodeState::Lost,
                        },
                        plugins: s.col(r, 7)?,
                        workers: s.unsigned(r, 8)?,
                        executions: s.col(r, 9)?,
                        running: s.unsigned(r, 10)?,
                    })
                })
                .collect()
        })
    }

    fn lead(&self, name: &str, node: &str, lease_ms: u64) -> StoreFuture<bool> {
        let (name, node) = (name.to_owned(), node.to_owned());
        self.run(move |s| async move {
            s.writable()?;
            let row = s
                .query_opt(
                    &format!(
                        "INSERT INTO leaders (name, node, lease_until_ms) VALUES ($1, $2, {NOW_MS} + $3)
                         ON CONFLICT (name) DO UPDATE SET node = excluded.node, lease_until_ms = excluded.lease_until_ms
                         WHERE leaders.node = excluded.node OR leaders.lease_until_ms < {NOW_MS}
                         RETURNING node"
                    ),
                    &[&name, &node, &lease(lease_ms)],
                )
                .await?;
            Ok(row.is_some())
        })
    }

    fn placement(&self, id: &str) -> StoreFuture<Option<Placement>> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let row = s
                .query_opt(
                    &format!(
                        "SELECT e.owner, ARRAY(SELECT p FROM unnest(e.needs) AS p WHERE NOT EXISTS (
                             SELECT 1 FROM nodes n
                             WHERE NOT n.stopped AND n.lease_until_ms > {NOW_MS} AND p = ANY(n.plugins)))
                         FROM executions e WHERE e.id = $1"
                    ),
                    &[&id],
                )
                .await?;
            row.map(|r| Ok(Placement { owner: s.col(&r, 0)?, missing: s.col(&r, 1)? })).transpose()
        })
    }
}
