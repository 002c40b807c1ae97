//! [`Store`] for [`PgStore`]: each call one transaction on a pooled
//! connection; a step transition is one statement (the execution's event
//! number, the step's record, the state keys it set and its log line), so it
//! costs one round trip and one commit.

use super::PgStore;
use crate::dbfile::FileChanged;
use crate::store::HookRow;
use crate::store::shape::{self, ExecutionHead, ExecutionInsert, ExecutionUpdate, StateEntry, StepWrite};
use crate::store::{
    Event, ExecutionFilter, ExecutionSummary, Fire, FireOutcome, ScheduleRow, SecretRow, SourceFormat, Store,
    StoreError, StoreFuture, StoreResult, StoredExecution, TemplateRow, Transaction, TransactionState, WorkflowRow,
    json, now_ms,
};
use plexus_client::{TransactionSummary, Transition};
use plexus_workflow::status::ItemRecord;
use plexus_workflow::status::{CompensationRecord, ExecutionStatus, StepRecord, WorkflowStatus};
use serde_json::{Map, Value};
use std::future::Future;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// The statuses of an execution that has not ended.
const UNFINISHED: &str = "('pending', 'running', 'rolling_back')";

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl PgStore {
    /// Run `f` with a clone of this store, boxed as a [`StoreFuture`].
    pub(super) fn run<T, F, Fut>(&self, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(PgStore) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let this = self.clone();
        Box::pin(async move { f(this).await })
    }

    /// Run one write statement; how many rows it changed.
    pub(super) async fn exec(&self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        self.writable()?;
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.err(&e))?;
        client.execute(&stmt, params).await.map_err(|e| self.err(&e))
    }

    /// Run one query.
    pub(super) async fn query(&self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.err(&e))?;
        client.query(&stmt, params).await.map_err(|e| self.err(&e))
    }

    /// Run one query that returns at most one row.
    pub(super) async fn query_opt(&self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.err(&e))?;
        client.query_opt(&stmt, params).await.map_err(|e| self.err(&e))
    }

    fn workflow_row(&self, row: &Row) -> StoreResult<WorkflowRow> {
        let format: String = self.col(row, 3)?;
        Ok(WorkflowRow {
            id: self.col(row, 0)?,
            version: self.version(row, 1)?,
            source: self.col(row, 2)?,
            format: SourceFormat::parse(&format).ok_or_else(|| self.corrupt(format!("format `{format}`")))?,
            created_at_ms: self.unsigned(row, 4)?,
            definition: None,
        })
    }

    fn version(&self, row: &Row, i: usize) -> StoreResult<u32> {
        let v: i64 = self.col(row, i)?;
        u32::try_from(v).map_err(|_| self.corrupt(format!("column {i}: version {v} out of range")))
    }

    pub(super) fn status(&self, id: &str, text: &str) -> StoreResult<WorkflowStatus> {
        WorkflowStatus::parse(text).ok_or_else(|| self.corrupt(format!("execution {id}: unknown status `{text}`")))
    }

    /// Everything stored about execution `id`, read in one snapshot.
    async fn read_execution(&self, id: &str) -> StoreResult<Option<StoredExecution>> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| self.err(&e))?;
        let head = tx
            .query_opt(
                "SELECT workflow_id, workflow_version, status, inputs, outputs, error, state, schedule_id,
                        scheduled_at_ms, created_at_ms, started_at_ms, ended_at_ms, runs, transaction_id, priority
                 FROM executions WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(|e| self.err(&e))?;
        let Some(r) = head else { return Ok(None) };
        let runs: i64 = self.col(&r, 12)?;
        let head = ExecutionHead {
            id: id.to_owned(),
            workflow_id: self.col(&r, 0)?,
            workflow_version: self.version(&r, 1)?,
            status: self.col(&r, 2)?,
            inputs: self.col(&r, 3)?,
            outputs: self.col(&r, 4)?,
            error: self.col(&r, 5)?,
            state: self.col(&r, 6)?,
            schedule_id: self.col(&r, 7)?,
            scheduled_at_ms: self.col(&r, 8)?,
            created_at_ms: self.col(&r, 9)?,
            started_at_ms: self.col(&r, 10)?,
            ended_at_ms: self.col(&r, 11)?,
            runs: u32::try_from(runs).unwrap_or(u32::MAX),
            transaction_id: self.col(&r, 13)?,
            priority: self.col(&r, 14)?,
        };
        let texts = |rows: Vec<Row>| -> StoreResult<Vec<String>> { rows.iter().map(|r| self.col(r, 0)).collect() };
        let steps = tx
            .query("SELECT record FROM steps WHERE execution_id = $1 ORDER BY idx", &[&id])
            .await
            .map_err(|e| self.err(&e))?;
        let compensations = tx
            .query("SELECT record FROM compensations WHERE execution_id = $1 ORDER BY seq", &[&id])
            .await
            .map_err(|e| self.err(&e))?;
        let entries = tx
            .query("SELECT key, value, from_step FROM state_entries WHERE execution_id = $1", &[&id])
            .await
            .map_err(|e| self.err(&e))?;
        let entries = entries
            .iter()
            .map(|r| Ok(StateEntry { key: self.col(r, 0)?, value: self.col(r, 1)?, from_step: self.col(r, 2)? }))
            .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await.map_err(|e| self.err(&e))?;
        shape::assemble(head, &texts(steps)?, &texts(compensations)?, entries, &|m| self.corrupt(m)).map(Some)
    }

    /// Write every step record (JSON, in declaration order) of execution `id`.
    async fn put_steps(&self, tx: &deadpool_postgres::Transaction<'_>, id: &str, steps: &[String]) -> StoreResult<()> {
        tx.execute(
            "INSERT INTO steps (execution_id, idx, record)
             SELECT $1, t.i - 1, t.r FROM unnest($2::text[]) WITH ORDINALITY AS t(r, i)
             ON CONFLICT (execution_id, idx) DO UPDATE SET record = excluded.record",
            &[&id, &steps],
        )
        .await
        .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// This store's node, once it joined a cluster: execution writes are
    /// fenced by it.
    /// `text` as a PostgreSQL `TEXT` value can hold it: NUL (which
    /// PostgreSQL refuses, and a plugin's error message may contain) becomes
    /// U+FFFD. JSON columns need nothing: JSON escapes it.
    fn text(text: Option<String>) -> Option<String> {
        text.map(|t| if t.contains('\0') { t.replace('\0', "\u{FFFD}") } else { t })
    }

    pub(super) fn node(&self) -> Option<&str> {
        self.0.node.get().map(String::as_str)
    }

    /// `Ok` when a fenced write changed `rows` rows of execution `id`; with
    /// none, the node no longer owns it ([`StoreError::NotOwner`]; a write
    /// without a node that found no execution changes nothing, as SQLite's).
    pub(super) fn owned(&self, id: &str, rows: u64) -> StoreResult<()> {
        match self.node() {
            Some(node) if rows == 0 => Err(StoreError::NotOwner { execution: id.to_owned(), node: node.to_owned() }),
            _ => Ok(()),
        }
    }

    /// The next event number of execution `id` (taking its row lock until
    /// `tx` ends) after setting `set` (`, col = $2, …`; `params` are $2…),
    /// if it exists and this node owns it.
    async fn next_event(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        id: &str,
        set: &str,
        params: Params<'_>,
    ) -> StoreResult<Option<i64>> {
        let node = self.node();
        let fence = params.len() + 2;
        let sql = format!(
            "UPDATE executions SET last_event = last_event + 1{set}
             WHERE id = $1 AND (${fence}::text IS NULL OR owner = ${fence}) RETURNING last_event"
        );
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&id];
        all.extend_from_slice(params);
        all.push(&node);
        let row = tx.query_opt(&sql, &all).await.map_err(|e| self.err(&e))?;
        row.map(|r| self.col(&r, 0)).transpose()
    }
}

impl Store for PgStore {
    fn put_workflow(&self, id: &str, source: &str, format: SourceFormat) -> StoreFuture<(u32, bool)> {
        let (id, source) = (id.to_owned(), source.to_owned());
        self.run(move |s| async move {
            s.writable()?;
            let mut client = s.client().await?;
            let tx = client.transaction().await.map_err(|e| s.err(&e))?;
            // Two daemons registering one id at once: one after the other.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('workflow:' || $1))", &[&id])
                .await
                .map_err(|e| s.err(&e))?;
            let latest = tx
                .query_opt(
                    "SELECT version, source, deleted FROM workflows WHERE id = $1 ORDER BY version DESC LIMIT 1",
                    &[&id],
                )
                .await
                .map_err(|e| s.err(&e))?;
            let mut version = 1;
            if let Some(row) = &latest {
                let (v, text, deleted): (u32, String, bool) = (s.version(row, 0)?, s.col(row, 1)?, s.col(row, 2)?);
                if !deleted && text == source {
                    return Ok((v, false));
                }
                version = v + 1;
            }
            tx.execute(
                "INSERT INTO workflows (id, version, source, format, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &i64::from(version), &source, &format.as_str(), &(now_ms() as i64)],
            )
            .await
            .map_err(|e| s.err(&e))?;
            tx.execute("UPDATE workflows SET deleted = false WHERE id = $1", &[&id]).await.map_err(|e| s.err(&e))?;
            tx.commit().await.map_err(|e| s.err(&e))?;
            Ok((version, true))
        })
    }

    fn workflow(&self, id: &str, version: Option<u32>) -> StoreFuture<Option<WorkflowRow>> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let row = match version {
                Some(v) => {
                    s.query_opt(
                        "SELECT id, version, source, format, created_at_ms FROM workflows
                         WHERE id = $1 AND version = $2",
                        &[&id, &i64::from(v)],
                    )
                    .await?
                }
                None => {
                    s.query_opt(
                        "SELECT id, version, source, format, created_at_ms FROM workflows
                         WHERE id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1",
                        &[&id],
                    )
                    .await?
                }
            };
            row.map(|r| s.workflow_row(&r)).transpose()
        })
    }

    fn workflows(&self) -> StoreFuture<Vec<WorkflowRow>> {
        self.run(|s| async move {
            let rows = s
                .query(
                    "SELECT DISTINCT ON (id) id, version, source, format, created_at_ms FROM workflows
                     WHERE NOT deleted ORDER BY id, version DESC",
                    &[],
                )
                .await?;
            rows.iter().map(|r| s.workflow_row(r)).collect()
        })
    }

    fn delete_workflow(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.run(move |s| async move {
            Ok(s.exec("UPDATE workflows SET deleted = true WHERE id = $1 AND NOT deleted", &[&id]).await? > 0)
        })
    }

    fn workflow_versions(&self, id: &str) -> StoreFuture<Vec<WorkflowRow>> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let rows = s
                .query(
                    "SELECT id, version, source, format, created_at_ms FROM workflows
                     WHERE id = $1 ORDER BY version DESC",
                    &[&id],
                )
                .await?;
            rows.iter().map(|r| s.workflow_row(r)).collect()
        })
    }

    fn delete_all_workflows(&self) -> StoreFuture<usize> {
        self.run(|s| async move {
            s.writable()?;
            let row = s
                .query_opt(
                    "WITH d AS (UPDATE workflows SET deleted = true WHERE NOT deleted RETURNING id)
                     SELECT COUNT(DISTINCT id) FROM d",
                    &[],
                )
                .await?;
            Ok(row.map(|r| s.unsigned(&r, 0)).transpose()?.unwrap_or(0) as usize)
        })
    }

    fn put_template(&self, id: &str, source: &str) -> StoreFuture<u64> {
        let (id, source) = (id.to_owned(), source.to_owned());
        self.run(move |s| async move {
            let at = now_ms();
            s.exec(
                "INSERT INTO templates (id, source, updated_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET source = excluded.source, updated_at_ms = excluded.updated_at_ms",
                &[&id, &source, &(at as i64)],
            )
            .await?;
            Ok(at)
        })
    }

    fn template(&self, id: &str) -> StoreFuture<Option<TemplateRow>> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let row = s.query_opt("SELECT id, source, updated_at_ms FROM templates WHERE id = $1", &[&id]).await?;
            row.map(|r| Ok(TemplateRow { id: s.col(&r, 0)?, source: s.col(&r, 1)?, updated_at_ms: s.unsigned(&r, 2)? }))
                .transpose()
        })
    }

    fn templates(&self) -> StoreFuture<Vec<TemplateRow>> {
        self.run(|s| async move {
            let rows = s.query("SELECT id, source, updated_at_ms FROM templates ORDER BY id", &[]).await?;
            rows.iter()
                .map(|r| Ok(TemplateRow { id: s.col(r, 0)?, source: s.col(r, 1)?, updated_at_ms: s.unsigned(r, 2)? }))
                .collect()
        })
    }

    fn delete_template(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.run(move |s| async move { Ok(s.exec("DELETE FROM templates WHERE id = $1", &[&id]).await? > 0) })
    }

    fn insert_hook(&self, row: &HookRow) -> StoreFuture<bool> {
        let row = row.clone();
        self.run(move |s| async move {
            let n = s
                .exec(
                    "INSERT INTO hooks (id, spec, sealed, key_id, created_at_ms) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO NOTHING",
                    &[&row.id, &row.spec.to_string(), &row.sealed, &row.key_id, &(row.created_at_ms as i64)],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn hooks(&self) -> StoreFuture<Vec<HookRow>> {
        self.run(|s| async move {
            let rows = s.query("SELECT id, spec, sealed, key_id, created_at_ms FROM hooks ORDER BY id", &[]).await?;
            rows.iter()
                .map(|r| {
                    let spec: String = s.col(r, 1)?;
                    Ok(HookRow {
                        id: s.col(r, 0)?,
                        spec: serde_json::from_str(&spec).map_err(|e| s.corrupt(format!("hook: {e}")))?,
                        sealed: s.col(r, 2)?,
                        key_id: s.col(r, 3)?,
                        created_at_ms: s.unsigned(r, 4)?,
                    })
                })
                .collect()
        })
    }

    fn hook(&self, id: &str) -> StoreFuture<Option<HookRow>> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let row =
                s.query_opt("SELECT id, spec, sealed, key_id, created_at_ms FROM hooks WHERE id = $1", &[&id]).await?;
            row.map(|r| {
                let spec: String = s.col(&r, 1)?;
                Ok(HookRow {
                    id: s.col(&r, 0)?,
                    spec: serde_json::from_str(&spec).map_err(|e| s.corrupt(format!("hook: {e}")))?,
                    sealed: s.col(&r, 2)?,
                    key_id: s.col(&r, 3)?,
                    created_at_ms: s.unsigned(&r, 4)?,
                })
            })
            .transpose()
        })
    }

    fn delete_hook(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let row = s
                .query_opt(
                    "WITH d AS (DELETE FROM hook_deliveries WHERE hook_id = $1), h AS (DELETE FROM hooks WHERE id = $1 RETURNING id)
                     SELECT COUNT(*) FROM h",
                    &[&id],
                )
                .await?;
            Ok(row.map(|r| s.unsigned(&r, 0)).transpose()?.unwrap_or(0) > 0)
        })
    }

    fn claim_delivery(&self, hook: &str, delivery: &str, at_ms: u64, forget_before_ms: u64) -> StoreFuture<bool> {
        let (hook, delivery) = (hook.to_owned(), delivery.to_owned());
        self.run(move |s| async move {
            let row = s
                .query_opt(
                    "WITH old AS (DELETE FROM hook_deliveries WHERE hook_id = $1 AND received_at_ms < $4),
                     new AS (INSERT INTO hook_deliveries (hook_id, delivery, received_at_ms) VALUES ($1, $2, $3)
                             ON CONFLICT (hook_id, delivery) DO NOTHING RETURNING 1)
                     SELECT COUNT(*) FROM new",
                    &[&hook, &delivery, &(at_ms as i64), &(forget_before_ms as i64)],
                )
                .await?;
            Ok(row.map(|r| s.unsigned(&r, 0)).transpose()?.unwrap_or(0) > 0)
        })
    }

    fn finish_delivery(&self, hook: &str, delivery: &str, execution: Option<&str>) -> StoreFuture<()> {
        let (hook, delivery, execution) = (hook.to_owned(), delivery.to_owned(), execution.map(str::to_owned));
        self.run(move |s| async move {
            match execution {
                Some(e) => {
                    s.exec(
                        "UPDATE hook_deliveries SET execution_id = $3 WHERE hook_id = $1 AND delivery = $2",
                        &[&hook, &delivery, &e],
                    )
                    .await?
                }
                None => {
                    s.exec("DELETE FROM hook_deliveries WHERE hook_id = $1 AND delivery = $2", &[&hook, &delivery])
                        .await?
                }
            };
            Ok(())
        })
    }

    fn deliveries(&self, hook: &str, limit: u32) -> StoreFuture<Vec<plexus_client::HookDelivery>> {
        let hook = hook.to_owned();
        self.run(move |s| async move {
            let rows = s
                .query(
                    "SELECT delivery, received_at_ms, execution_id FROM hook_deliveries WHERE hook_id = $1
                     ORDER BY received_at_ms DESC, delivery LIMIT $2",
                    &[&hook, &i64::from(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(plexus_client::HookDelivery {
                        delivery: s.col(r, 0)?,
                        received_at_ms: s.unsigned(r, 1)?,
                        execution_id: s.col(r, 2)?,
                    })
                })
                .collect()
        })
    }

    fn put_secret(&self, name: &str, sealed: Vec<u8>, key_id: &str) -> StoreFuture<u64> {
        let (name, key_id) = (name.to_owned(), key_id.to_owned());
        self.run(move |s| async move {
            let at = now_ms();
            s.exec(
                "INSERT INTO secrets (name, sealed, key_id, updated_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, key_id = excluded.key_id,
                     updated_at_ms = excluded.updated_at_ms",
                &[&name, &sealed, &key_id, &(at as i64)],
            )
            .await?;
            Ok(at)
        })
    }

    fn secrets(&self) -> StoreFuture<Vec<SecretRow>> {
        self.run(|s| async move {
            let rows = s.query("SELECT name, sealed, key_id, updated_at_ms FROM secrets ORDER BY name", &[]).await?;
            rows.iter()
                .map(|r| {
                    Ok(SecretRow {
                        name: s.col(r, 0)?,
                        sealed: s.col(r, 1)?,
                        key_id: s.col(r, 2)?,
                        updated_at_ms: s.unsigned(r, 3)?,
                    })
                })
                .collect()
        })
    }

    fn delete_secret(&self, name: &str) -> StoreFuture<bool> {
        let name = name.to_owned();
        self.run(move |s| async move { Ok(s.exec("DELETE FROM secrets WHERE name = $1", &[&name]).await? > 0) })
    }

    fn insert_execution(
        &self,
        status: &ExecutionStatus,
        meta: &crate::store::ExecutionMeta,
        state: &Map<String, Value>,
    ) -> StoreFuture<()> {
        let row = ExecutionInsert::new(status, meta, state);
        let needs: Vec<String> = {
            // Wait and sub-workflow steps call no plugin.
            let mut plugins: Vec<String> =
                status.steps.iter().map(|s| s.plugin_id.clone()).filter(|p| !p.is_empty()).collect();
            plugins.sort();
            plugins.dedup();
            plugins
        };
        self.run(move |s| async move {
            s.exec(
                "WITH e AS (
                    INSERT INTO executions (id, workflow_id, workflow_version, status, inputs, schedule_id,
                        scheduled_at_ms, created_at_ms, state, transaction_id, priority, needs, last_event)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1) RETURNING id),
                 s AS (
                    INSERT INTO steps (execution_id, idx, record)
                    SELECT $1, t.i - 1, t.r FROM unnest($13::text[]) WITH ORDINALITY AS t(r, i))
                 INSERT INTO events (execution_id, seq, at_ms, status) SELECT id, 1, $8, 'pending' FROM e",
                &[
                    &row.id,
                    &row.workflow_id,
                    &i64::from(row.workflow_version),
                    &row.status,
                    &row.inputs,
                    &row.schedule_id,
                    &row.scheduled_at_ms,
                    &row.created_at_ms,
                    &row.state,
                    &row.transaction_id,
                    &i64::from(row.priority),
                    &needs,
                    &row.steps,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn update_execution(&self, status: &ExecutionStatus) -> StoreFuture<()> {
        let mut u = ExecutionUpdate::new(status);
        u.error = Self::text(u.error);
        self.run(move |s| async move {
            s.exec(
                "WITH e AS (
                    UPDATE executions SET status = $2, outputs = $3, error = $4, started_at_ms = $5,
                        ended_at_ms = $6, last_event = last_event + 1
                    WHERE id = $1 AND ($8::text IS NULL OR owner = $8) RETURNING last_event)
                 INSERT INTO events (execution_id, seq, at_ms, status, message)
                 SELECT $1, last_event, $7, $2, $4 FROM e",
                &[&u.id, &u.status, &u.outputs, &u.error, &u.started_at_ms, &u.ended_at_ms, &u.at, &s.node()],
            )
            .await
            .and_then(|n| s.owned(&u.id, n))
        })
    }

    fn update_step(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> StoreFuture<()> {
        let id = execution_id.to_owned();
        let mut w = StepWrite::new(index, record, state);
        w.message = Self::text(w.message);
        self.run(move |s| async move {
            let keys: Vec<&str> = w.state.iter().map(|e| e.key.as_str()).collect();
            let values: Vec<Option<&str>> = w.state.iter().map(|e| e.value.as_deref()).collect();
            let from: Vec<Option<i64>> = w.state.iter().map(|e| e.from_step).collect();
            // One statement, one snapshot: `k` reads the step's record as it
            // was before `r` replaces it. Keys that referred to this step's
            // output keep a copy of their value (unless set again now), so a
            // record rewritten without that output does not take it along.
            s.exec(
                "WITH e AS (
                    UPDATE executions SET last_event = last_event + 1
                    WHERE id = $1 AND ($12::text IS NULL OR owner = $12) RETURNING last_event),
                 k AS (
                    UPDATE state_entries se
                    SET value = COALESCE((SELECT (st.record::json -> 'output' -> se.key)::text FROM steps st
                                          WHERE st.execution_id = $1 AND st.idx = $2), 'null'),
                        from_step = NULL
                    WHERE se.execution_id = $1 AND se.from_step = $2 AND NOT (se.key = ANY($4::text[]))
                      AND EXISTS (SELECT 1 FROM e)),
                 r AS (
                    INSERT INTO steps (execution_id, idx, record) SELECT $1, $2, $3 FROM e
                    ON CONFLICT (execution_id, idx) DO UPDATE SET record = excluded.record),
                 v AS (
                    INSERT INTO state_entries (execution_id, key, value, from_step)
                    SELECT $1, t.k, t.v, t.f FROM unnest($4::text[], $5::text[], $6::bigint[]) AS t(k, v, f)
                    WHERE EXISTS (SELECT 1 FROM e)
                    ON CONFLICT (execution_id, key) DO UPDATE SET value = excluded.value, from_step = excluded.from_step)
                 INSERT INTO events (execution_id, seq, at_ms, step_id, attempt, status, message)
                 SELECT $1, last_event, $7, $8, $9, $10, $11 FROM e",
                &[
                    &id,
                    &w.index,
                    &w.record,
                    &keys,
                    &values,
                    &from,
                    &w.at,
                    &w.step_id,
                    &i64::from(w.attempts),
                    &w.status,
                    &w.message,
                    &s.node(),
                ],
            )
            .await
            .and_then(|n| s.owned(&id, n))
        })
    }

    fn update_step_blocking(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> StoreResult<()> {
        // The engine's runners are on tokio's blocking pool, inside the runtime.
        tokio::runtime::Handle::current().block_on(self.update_step(execution_id, index, record, state))
    }

    fn update_item(&self, execution_id: &str, step: usize, record: &ItemRecord) -> StoreFuture<()> {
        let id = execution_id.to_owned();
        let (index, status, record) = (record.index as i64, record.status.as_str(), json(record));
        self.run(move |s| async move {
            s.exec(
                "INSERT INTO step_items (execution_id, step_index, item_index, status, record)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
                    SELECT 1 FROM executions WHERE id = $1 AND ($6::text IS NULL OR owner = $6) FOR SHARE)
                 ON CONFLICT (execution_id, step_index, item_index)
                 DO UPDATE SET status = excluded.status, record = excluded.record",
                &[&id, &(step as i64), &index, &status, &record, &s.node()],
            )
            .await
            .and_then(|n| s.owned(&id, n))
        })
    }

    fn update_item_blocking(&self, execution_id: &str, step: usize, record: &ItemRecord) -> StoreResult<()> {
        // The engine's runners are on tokio's blocking pool, inside the runtime.
        tokio::runtime::Handle::current().block_on(self.update_item(execution_id, step, record))
    }

    fn items(
        &self,
        execution_id: &str,
        step: Option<usize>,
        after: Option<usize>,
        limit: u32,
    ) -> StoreFuture<Vec<(usize, ItemRecord)>> {
        let id = execution_id.to_owned();
        self.run(move |s| async move {
            let rows = s
                .query(
                    "SELECT step_index, record FROM step_items
                     WHERE execution_id = $1 AND ($2::bigint IS NULL OR step_index = $2)
                       AND ($3::bigint IS NULL OR item_index > $3)
                     ORDER BY step_index, item_index LIMIT $4",
                    &[&id, &step.map(|v| v as i64), &after.map(|v| v as i64), &i64::from(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let record: String = s.col(r, 1)?;
                    let record = serde_json::from_str(&record).map_err(|e| s.corrupt(format!("item: {e}")))?;
                    Ok((s.unsigned(r, 0)? as usize, record))
                })
                .collect()
        })
    }

    fn put_signal(&self, execution_id: &str, signal: &plexus_client::SignalRecord) -> StoreFuture<bool> {
        let (id, name, record, at) = (execution_id.to_owned(), signal.name.clone(), json(signal), signal.at_ms as i64);
        self.run(move |s| async move {
            let n = s
                .exec(
                    "INSERT INTO signals (execution_id, name, record, at_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (execution_id, name) DO NOTHING",
                    &[&id, &name, &record, &at],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn signals(&self, execution_id: &str) -> StoreFuture<Vec<plexus_client::SignalRecord>> {
        let id = execution_id.to_owned();
        self.run(move |s| async move {
            let rows =
                s.query("SELECT record FROM signals WHERE execution_id = $1 ORDER BY at_ms, name", &[&id]).await?;
            rows.iter()
                .map(|r| {
                    let record: String = s.col(r, 0)?;
                    serde_json::from_str(&record).map_err(|e| s.corrupt(format!("signal: {e}")))
                })
                .collect()
        })
    }

    fn delete_signals(&self, execution_id: &str, names: &[String]) -> StoreFuture<()> {
        let (id, names) = (execution_id.to_owned(), names.to_vec());
        self.run(move |s| async move {
            s.exec("DELETE FROM signals WHERE execution_id = $1 AND name = ANY($2)", &[&id, &names]).await?;
            Ok(())
        })
    }

    fn signalled(&self, ids: &[String], since_ms: u64) -> StoreFuture<Vec<(String, String)>> {
        let ids = ids.to_vec();
        self.run(move |s| async move {
            let rows = s
                .query(
                    "SELECT execution_id, name FROM signals WHERE execution_id = ANY($1) AND at_ms >= $2",
                    &[&ids, &(since_ms as i64)],
                )
                .await?;
            rows.iter().map(|r| Ok((s.col(r, 0)?, s.col(r, 1)?))).collect()
        })
    }

    fn link_artifact(&self, execution_id: &str, a: &plexus_client::ArtifactRecord) -> StoreFuture<()> {
        let (id, a) = (execution_id.to_owned(), a.clone());
        let step = a.step.clone().unwrap_or_default();
        self.run(move |s| async move {
            s.writable()?;
            s.exec(
                "INSERT INTO artifacts (execution_id, digest, name, step_id, bytes, media_type, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[&id, &a.artifact, &a.name, &step, &(a.bytes as i64), &a.media_type, &(a.created_at_ms as i64)],
            )
            .await?;
            Ok(())
        })
    }

    fn artifacts(&self, execution_id: &str) -> StoreFuture<Vec<plexus_client::ArtifactRecord>> {
        let id = execution_id.to_owned();
        self.run(move |s| async move {
            let rows = s
                .query(
                    "SELECT digest, name, step_id, bytes, media_type, created_at_ms FROM artifacts
                     WHERE execution_id = $1 ORDER BY created_at_ms, name LIMIT 10000",
                    &[&id],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(plexus_client::ArtifactRecord {
                        artifact: s.col(r, 0)?,
                        name: s.col(r, 1)?,
                        step: Some(s.col::<String>(r, 2)?).filter(|s| !s.is_empty()),
                        bytes: s.col::<i64>(r, 3)?.max(0) as u64,
                        media_type: s.col(r, 4)?,
                        created_at_ms: s.col::<i64>(r, 5)?.max(0) as u64,
                    })
                })
                .collect()
        })
    }

    fn holds_artifact(&self, ids: &[String], digest: &str) -> StoreFuture<bool> {
        let (ids, digest) = (ids.to_vec(), digest.to_owned());
        self.run(move |s| async move {
            let rows = s
                .query("SELECT 1 FROM artifacts WHERE execution_id = ANY($1) AND digest = $2 LIMIT 1", &[&ids, &digest])
                .await?;
            Ok(!rows.is_empty())
        })
    }

    fn held_artifacts(&self, digests: &[String]) -> StoreFuture<std::collections::HashSet<String>> {
        let digests = digests.to_vec();
        self.run(move |s| async move {
            let rows = s.query("SELECT DISTINCT digest FROM artifacts WHERE digest = ANY($1)", &[&digests]).await?;
            rows.iter().map(|r| s.col(r, 0)).collect()
        })
    }

    fn put_compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord) -> StoreFuture<()> {
        let id = execution_id.to_owned();
        let record_json = json(record);
        let step = record.step.clone();
        let status_text = Transition::Compensation(record.status).to_string();
        let message = Self::text(record.error.as_ref().map(|e| e.message.clone()));
        self.run(move |s| async move {
            s.exec(
                "WITH e AS (
                    UPDATE executions SET last_event = last_event + 1
                    WHERE id = $1 AND ($8::text IS NULL OR owner = $8) RETURNING last_event),
                 c AS (
                    INSERT INTO compensations (execution_id, seq, record) SELECT $1, $2, $3 FROM e
                    ON CONFLICT (execution_id, seq) DO UPDATE SET record = excluded.record)
                 INSERT INTO events (execution_id, seq, at_ms, step_id, status, message)
                 SELECT $1, last_event, $4, $5, $6, $7 FROM e",
                &[&id, &(seq as i64), &record_json, &(now_ms() as i64), &step, &status_text, &message, &s.node()],
            )
            .await
            .and_then(|n| s.owned(&id, n))
        })
    }

    fn record_snapshot(&self, status: &ExecutionStatus, state: &Map<String, Value>) -> StoreFuture<()> {
        let mut u = ExecutionUpdate::new(status);
        u.error = Self::text(u.error);
        let state = json(state);
        let steps: Vec<String> = status.steps.iter().map(json).collect();
        let compensations: Vec<String> = status.compensations.iter().map(json).collect();
        self.run(move |s| async move {
            s.writable()?;
            let mut client = s.client().await?;
            let tx = client.transaction().await.map_err(|e| s.err(&e))?;
            let set = ", status = $2, outputs = $3, error = $4, started_at_ms = $5, ended_at_ms = $6, state = $7";
            let params: [&(dyn ToSql + Sync); 6] =
                [&u.status, &u.outputs, &u.error, &u.started_at_ms, &u.ended_at_ms, &state];
            let Some(seq) = s.next_event(&tx, &u.id, set, &params).await? else { return s.owned(&u.id, 0) };
            s.put_steps(&tx, &u.id, &steps).await?;
            // The whole state is in `executions.state` now.
            for sql in [
                "DELETE FROM state_entries WHERE execution_id = $1",
                "DELETE FROM compensations WHERE execution_id = $1",
            ] {
                tx.execute(sql, &[&u.id]).await.map_err(|e| s.err(&e))?;
            }
            tx.execute(
                "INSERT INTO compensations (execution_id, seq, record)
                 SELECT $1, t.i - 1, t.r FROM unnest($2::text[]) WITH ORDINALITY AS t(r, i)",
                &[&u.id, &compensations],
            )
            .await
            .map_err(|e| s.err(&e))?;
            tx.execute(
                "INSERT INTO events (execution_id, seq, at_ms, status, message) VALUES ($1, $2, $3, $4, $5)",
                &[&u.id, &seq, &(now_ms() as i64), &u.status, &"recorded again after state writes failed"],
            )
            .await
            .map_err(|e| s.err(&e))?;
            tx.commit().await.map_err(|e| s.err(&e))
        })
    }

    fn reset_for_retry(&self, stored: StoredExecution) -> StoreFuture<Option<StoredExecution>> {
        self.run(move |s| async move {
            s.writable()?;
            let reset = shape::reset_for_retry(&stored);
            let id = reset.status.execution_id.clone();
            let runs = i64::from(reset.meta.runs);
            let steps: Vec<String> = reset.status.steps.iter().map(json).collect();
            let mut client = s.client().await?;
            let tx = client.transaction().await.map_err(|e| s.err(&e))?;
            let seq = tx
                .query_opt(
                    "UPDATE executions SET status = 'pending', error = NULL, ended_at_ms = NULL, runs = $2,
                            last_event = last_event + 1, cancel_requested = false, owner = NULL
                         WHERE id = $1 AND status IN ('failed', 'cancelled', 'rollback_failed')
                         RETURNING last_event",
                    &[&id, &runs],
                )
                .await
                .map_err(|e| s.err(&e))?;
            let Some(seq) = seq.map(|r| s.col::<i64>(&r, 0)).transpose()? else { return Ok(None) };
            s.put_steps(&tx, &id, &steps).await?;
            tx.execute("DELETE FROM compensations WHERE execution_id = $1", &[&id]).await.map_err(|e| s.err(&e))?;
            tx.execute(
                "INSERT INTO events (execution_id, seq, at_ms, status, message) VALUES ($1, $2, $3, 'pending', $4)",
                &[&id, &seq, &(now_ms() as i64), &format!("retry (run {runs})")],
            )
            .await
            .map_err(|e| s.err(&e))?;
            tx.commit().await.map_err(|e| s.err(&e))?;
            Ok(Some(reset))
        })
    }

    fn execution(&self, id: &str) -> StoreFuture<Option<StoredExecution>> {
        let id = id.to_owned();
        self.run(move |s| async move { s.read_execution(&id).await })
    }

    fn execution_status(&self, id: &str) -> StoreFuture<Option<WorkflowStatus>> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let row = s.query_opt("SELECT status FROM executions WHERE id = $1", &[&id]).await?;
            row.map(|r| s.status(&id, &s.col::<String>(&r, 0)?)).transpose()
        })
    }

    fn list_executions(&self, filter: &ExecutionFilter) -> StoreFuture<Vec<ExecutionSummary>> {
        let filter = filter.clone();
        self.run(move |s| async move {
            let status = filter.status.map(WorkflowStatus::as_str);
            let limit = i64::from(filter.limit.unwrap_or(100));
            let rows = s
                .query(
                    &format!(
                        "SELECT id, workflow_id, workflow_version, status, error, schedule_id, created_at_ms,
                                ended_at_ms
                         FROM executions
                         WHERE ($1::text IS NULL OR workflow_id = $1) AND ($2::text IS NULL OR status = $2)
                           AND ($3::text IS NULL OR schedule_id = $3) AND (NOT $5 OR status IN {UNFINISHED})
                           AND ($6::text IS NULL OR id < $6)
                         ORDER BY id DESC LIMIT $4"
                    ),
                    &[&filter.workflow_id, &status, &filter.schedule_id, &limit, &filter.active, &filter.before],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let execution_id: String = s.col(r, 0)?;
                    Ok(ExecutionSummary {
                        status: s.status(&execution_id, &s.col::<String>(r, 3)?)?,
                        workflow_id: s.col(r, 1)?,
                        workflow_version: s.version(r, 2)?,
                        error: s.col(r, 4)?,
                        schedule_id: s.col(r, 5)?,
                        created_at_ms: s.unsigned(r, 6)?,
                        ended_at_ms: s.col::<Option<i64>>(r, 7)?.map(|t| t.max(0) as u64),
                        execution_id,
                    })
                })
                .collect()
        })
    }

    fn unfinished_executions(&self) -> StoreFuture<Vec<String>> {
        self.run(|s| async move {
            let rows =
                s.query(&format!("SELECT id FROM executions WHERE status IN {UNFINISHED} ORDER BY id"), &[]).await?;
            rows.iter().map(|r| s.col(r, 0)).collect()
        })
    }

    fn execution_counts(&self) -> StoreFuture<Vec<(WorkflowStatus, u64)>> {
        self.run(|s| async move {
            let rows = s.query("SELECT status, COUNT(*) FROM executions GROUP BY status", &[]).await?;
            rows.iter().map(|r| Ok((s.status("(count)", &s.col::<String>(r, 0)?)?, s.unsigned(r, 1)?))).collect()
        })
    }

    fn events(&self, id: &str, after: i64, limit: u32) -> StoreFuture<Vec<Event>> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let rows = s
                .query(
                    "SELECT seq, at_ms, step_id, attempt, status, message FROM events
                     WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&id, &after, &i64::from(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let seq: i64 = s.col(r, 0)?;
                    let (step_id, text): (Option<String>, String) = (s.col(r, 2)?, s.col(r, 4)?);
                    let transition = Transition::parse(&text, step_id.is_some())
                        .ok_or_else(|| s.corrupt(format!("event {seq} of execution {id}: unknown status `{text}`")))?;
                    let attempt: Option<i64> = s.col(r, 3)?;
                    Ok(Event {
                        seq,
                        at_ms: s.unsigned(r, 1)?,
                        step_id,
                        attempt: attempt.and_then(|a| u32::try_from(a).ok()),
                        transition,
                        message: s.col(r, 5)?,
                    })
                })
                .collect()
        })
    }

    fn prune(&self, ended_before_ms: u64, limit: u32) -> StoreFuture<usize> {
        self.run(move |s| async move {
            s.writable()?;
            let (before, limit) = (ended_before_ms as i64, i64::from(limit));
            let mut client = s.client().await?;
            let tx = client.transaction().await.map_err(|e| s.err(&e))?;
            // Rows another daemon is pruning at this moment are skipped, not waited for.
            let rows = tx
                .query(
                    "SELECT id FROM executions
                     WHERE ended_at_ms < $1
                       AND status IN ('completed', 'failed', 'cancelled', 'rollback_failed', 'rolled_back')
                       AND (transaction_id IS NULL OR transaction_id NOT IN
                            (SELECT id FROM transactions WHERE state IN ('open', 'rolling_back')))
                     ORDER BY ended_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
                    &[&before, &limit],
                )
                .await
                .map_err(|e| s.err(&e))?;
            let ids: Vec<String> = rows.iter().map(|r| s.col(r, 0)).collect::<StoreResult<_>>()?;
            for sql in [
                "DELETE FROM events WHERE execution_id = ANY($1)",
                "DELETE FROM steps WHERE execution_id = ANY($1)",
                "DELETE FROM compensations WHERE execution_id = ANY($1)",
                "DELETE FROM state_entries WHERE execution_id = ANY($1)",
                "DELETE FROM step_items WHERE execution_id = ANY($1)",
                "DELETE FROM signals WHERE execution_id = ANY($1)",
                "DELETE FROM artifacts WHERE execution_id = ANY($1)",
                "DELETE FROM executions WHERE id = ANY($1)",
            ] {
                tx.execute(sql, &[&ids]).await.map_err(|e| s.err(&e))?;
            }
            tx.execute(
                "DELETE FROM transactions WHERE id IN (
                     SELECT t.id FROM transactions t
                     WHERE t.state IN ('committed', 'rolled_back', 'rollback_failed') AND t.ended_at_ms < $1
                       AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.transaction_id = t.id)
                     LIMIT $2)",
                &[&before, &limit],
            )
            .await
            .map_err(|e| s.err(&e))?;
            tx.commit().await.map_err(|e| s.err(&e))?;
            Ok(ids.len())
        })
    }

    fn insert_transaction(&self, tx: &Transaction) -> StoreFuture<bool> {
        let (id, state, created) = (tx.id.clone(), tx.state.as_str(), tx.created_at_ms as i64);
        self.run(move |s| async move {
            let n = s
                .exec(
                    "INSERT INTO transactions (id, state, created_at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO NOTHING",
                    &[&id, &state, &created],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn transaction(&self, id: &str) -> StoreFuture<Option<Transaction>> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let row = s
                .query_opt(
                    "SELECT state, created_at_ms, ended_at_ms, compensations,
                            ARRAY(SELECT e.id FROM executions e WHERE e.transaction_id = t.id ORDER BY e.id)
                     FROM transactions t WHERE id = $1",
                    &[&id],
                )
                .await?;
            let Some(r) = row else { return Ok(None) };
            let state: String = s.col(&r, 0)?;
            let compensations: String = s.col(&r, 3)?;
            Ok(Some(Transaction {
                state: TransactionState::parse(&state)
                    .ok_or_else(|| s.corrupt(format!("transaction {id}: unknown state `{state}`")))?,
                executions: s.col(&r, 4)?,
                compensations: serde_json::from_str(&compensations)
                    .map_err(|e| s.corrupt(format!("transaction compensations: {e}")))?,
                created_at_ms: s.unsigned(&r, 1)?,
                ended_at_ms: s.col::<Option<i64>>(&r, 2)?.map(|t| t.max(0) as u64),
                id,
            }))
        })
    }

    fn update_transaction(&self, tx: &Transaction, from: TransactionState) -> StoreFuture<bool> {
        let id = tx.id.clone();
        let (state, ended) = (tx.state.as_str(), tx.ended_at_ms.map(|t| t as i64));
        let compensations = json(&tx.compensations);
        self.run(move |s| async move {
            let n = s
                .exec(
                    // A node that starts a rollback owns it from that moment
                    // (see `Cluster::claim_rollback`).
                    "UPDATE transactions SET state = $2, ended_at_ms = $3, compensations = $4,
                        owner = CASE WHEN $2 = 'rolling_back' THEN $6 ELSE owner END
                     WHERE id = $1 AND state = $5",
                    &[&id, &state, &ended, &compensations, &from.as_str(), &s.node()],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn transactions_in(&self, state: TransactionState) -> StoreFuture<Vec<String>> {
        self.run(move |s| async move {
            let rows = s
                .query("SELECT id FROM transactions WHERE state = $1 ORDER BY created_at_ms, id", &[&state.as_str()])
                .await?;
            rows.iter().map(|r| s.col(r, 0)).collect()
        })
    }

    fn list_transactions(&self, state: Option<TransactionState>, limit: u32) -> StoreFuture<Vec<TransactionSummary>> {
        self.run(move |s| async move {
            let rows = s
                .query(
                    "SELECT t.id, t.state, t.created_at_ms, t.ended_at_ms,
                            (SELECT COUNT(*) FROM executions e WHERE e.transaction_id = t.id)
                     FROM transactions t WHERE $1::text IS NULL OR t.state = $1
                     ORDER BY t.created_at_ms DESC, t.id DESC LIMIT $2",
                    &[&state.map(TransactionState::as_str), &i64::from(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let (id, state): (String, String) = (s.col(r, 0)?, s.col(r, 1)?);
                    Ok(TransactionSummary {
                        state: TransactionState::parse(&state)
                            .ok_or_else(|| s.corrupt(format!("transaction {id}: unknown state `{state}`")))?,
                        id,
                        executions: s.unsigned(r, 4)?,
                        created_at_ms: s.unsigned(r, 2)?,
                        ended_at_ms: s.col::<Option<i64>>(r, 3)?.map(|t| t.max(0) as u64),
                    })
                })
                .collect()
        })
    }

    fn insert_schedule(&self, id: &str, spec: &Value, enabled: bool, created_at_ms: u64) -> StoreFuture<bool> {
        let (id, spec) = (id.to_owned(), spec.to_string());
        self.run(move |s| async move {
            let n = s
                .exec(
                    "INSERT INTO schedules (id, spec, enabled, created_at_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO NOTHING",
                    &[&id, &spec, &enabled, &(created_at_ms as i64)],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn schedules(&self) -> StoreFuture<Vec<ScheduleRow>> {
        self.run(|s| async move {
            let rows = s
                .query("SELECT id, spec, enabled, last_fire_ms, created_at_ms FROM schedules ORDER BY id", &[])
                .await?;
            rows.iter()
                .map(|r| {
                    let spec: String = s.col(r, 1)?;
                    Ok(ScheduleRow {
                        id: s.col(r, 0)?,
                        spec: serde_json::from_str(&spec).map_err(|e| s.corrupt(format!("schedule: {e}")))?,
                        enabled: s.col(r, 2)?,
                        last_fire_ms: s.col::<Option<i64>>(r, 3)?.map(|t| t.max(0) as u64),
                        created_at_ms: s.unsigned(r, 4)?,
                    })
                })
                .collect()
        })
    }

    fn set_schedule_enabled(&self, id: &str, enabled: bool) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.run(move |s| async move {
            Ok(s.exec("UPDATE schedules SET enabled = $2 WHERE id = $1", &[&id, &enabled]).await? > 0)
        })
    }

    fn delete_schedule(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.run(move |s| async move { Ok(s.exec("DELETE FROM schedules WHERE id = $1", &[&id]).await? > 0) })
    }

    fn record_fire(&self, id: &str, fire: &Fire, advance: bool) -> StoreFuture<()> {
        let (id, fire) = (id.to_owned(), fire.clone());
        self.run(move |s| async move {
            s.exec(
                "WITH f AS (
                    INSERT INTO fires (schedule_id, fire_time_ms, fired_at_ms, outcome, execution_id, message)
                    VALUES ($1, $2, $3, $4, $5, $6))
                 UPDATE schedules SET last_fire_ms = GREATEST(COALESCE(last_fire_ms, 0), $2)
                 WHERE id = $1 AND $7",
                &[
                    &id,
                    &(fire.fire_time_ms as i64),
                    &(fire.fired_at_ms as i64),
                    &fire.outcome.as_str(),
                    &fire.execution_id,
                    &fire.message,
                    &advance,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn fires(&self, id: &str, limit: u32) -> StoreFuture<Vec<Fire>> {
        let id = id.to_owned();
        self.run(move |s| async move {
            let rows = s
                .query(
                    "SELECT fire_time_ms, fired_at_ms, outcome, execution_id, message FROM fires
                     WHERE schedule_id = $1 ORDER BY seq DESC LIMIT $2",
                    &[&id, &i64::from(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let outcome: String = s.col(r, 2)?;
                    Ok(Fire {
                        fire_time_ms: s.unsigned(r, 0)?,
                        fired_at_ms: s.unsigned(r, 1)?,
                        outcome: FireOutcome::parse(&outcome)
                            .ok_or_else(|| s.corrupt(format!("fire of schedule {id}: unknown outcome `{outcome}`")))?,
                        execution_id: s.col(r, 3)?,
                        message: s.col(r, 4)?,
                    })
                })
                .collect()
        })
    }

    fn check_file(&self) -> StoreFuture<Result<(), FileChanged>> {
        // No file: a database that went away fails the writes, which health reports.
        Box::pin(std::future::ready(Ok(Ok(()))))
    }

    fn probe_write(&self) -> StoreFuture<()> {
        self.run(|s| async move { s.probe().await })
    }

    fn cluster(&self) -> Option<&dyn crate::store::Cluster> {
        Some(self)
    }
}
