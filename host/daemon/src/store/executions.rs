//! Executions: their status, steps, compensations, shared state and log, and
//! their deletion once past the retention.

use super::shape::{self, ExecutionHead, ExecutionInsert, ExecutionUpdate, StateEntry, StepWrite};
use super::{
    Event, ExecutionFilter, ExecutionMeta, ExecutionSummary, SqliteStore, StoreResult, StoreWrite, StoredExecution,
    json, now_ms,
};
use plexus_client::Transition;
use plexus_workflow::status::{CompensationRecord, ExecutionStatus, ItemRecord, StepRecord, WorkflowStatus};
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value};

impl SqliteStore {
    /// Record a new execution (status pending) with its steps and initial
    /// shared state, blocking until it is durable.
    ///
    /// # Errors
    /// The write failed (see [`super::StoreError`]).
    pub fn insert_execution(
        &self,
        status: &ExecutionStatus,
        meta: &ExecutionMeta,
        state: &Map<String, Value>,
    ) -> StoreResult<()> {
        self.prepare_insert(status, meta, state).commit()
    }

    /// [`Self::insert_execution`], to commit or await.
    pub fn prepare_insert(
        &self,
        status: &ExecutionStatus,
        meta: &ExecutionMeta,
        state: &Map<String, Value>,
    ) -> StoreWrite<()> {
        let row = ExecutionInsert::new(status, meta, state);
        self.prepare(move |tx, err| {
            tx.prepare_cached(
                "INSERT INTO executions (id, workflow_id, workflow_version, status, inputs, schedule_id,
                    scheduled_at_ms, created_at_ms, state, transaction_id, priority)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    row.id,
                    row.workflow_id,
                    row.workflow_version,
                    row.status,
                    row.inputs,
                    row.schedule_id,
                    row.scheduled_at_ms,
                    row.created_at_ms,
                    row.state,
                    row.transaction_id,
                    row.priority,
                ])
            })
            .map_err(err)?;
            let mut stmt =
                tx.prepare_cached("INSERT INTO steps (execution_id, idx, record) VALUES (?1, ?2, ?3)").map_err(err)?;
            for (i, step) in row.steps.iter().enumerate() {
                stmt.execute(params![row.id, i as i64, step]).map_err(err)?;
            }
            tx.prepare_cached("INSERT INTO events (execution_id, at_ms, status) VALUES (?1, ?2, 'pending')")
                .and_then(|mut s| s.execute(params![row.id, row.created_at_ms]))
                .map_err(err)?;
            Ok(())
        })
    }

    /// Write the execution-level fields of `status` and log the transition.
    pub fn update_execution(&self, status: &ExecutionStatus) -> StoreWrite<()> {
        let u = ExecutionUpdate::new(status);
        self.prepare(move |tx, err| {
            tx.prepare_cached(
                "UPDATE executions SET status = ?2, outputs = ?3, error = ?4, started_at_ms = ?5, ended_at_ms = ?6
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![u.id, u.status, u.outputs, u.error, u.started_at_ms, u.ended_at_ms]))
            .map_err(err)?;
            tx.prepare_cached("INSERT INTO events (execution_id, at_ms, status, message) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![u.id, u.at, u.status, u.error]))
                .map_err(err)?;
            Ok(())
        })
    }

    /// Write step `index`'s record (and the shared state's changed keys,
    /// when given: a row each in `state_entries`) and log the transition, in
    /// one transaction.
    pub fn update_step(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> StoreWrite<()> {
        let id = execution_id.to_owned();
        let w = StepWrite::new(index, record, state);
        self.prepare(move |tx, err| {
            // Keys that refer to this step's output take a copy of their
            // value before its record is replaced: a completed step's record
            // is not rewritten, but if it were, its output must not vanish
            // from the state with it.
            keep_referred_outputs(tx, &id, index).map_err(err)?;
            tx.prepare_cached("INSERT OR REPLACE INTO steps (execution_id, idx, record) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![id, w.index, w.record]))
                .map_err(err)?;
            if !w.state.is_empty() {
                let mut put = tx
                    .prepare_cached(
                        "INSERT INTO state_entries (execution_id, key, value, from_step) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (execution_id, key)
                         DO UPDATE SET value = excluded.value, from_step = excluded.from_step",
                    )
                    .map_err(err)?;
                for entry in &w.state {
                    put.execute(params![id, entry.key, entry.value, entry.from_step]).map_err(err)?;
                }
            }
            tx.prepare_cached(
                "INSERT INTO events (execution_id, at_ms, step_id, attempt, status, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| s.execute(params![id, w.at, w.step_id, w.attempts, w.status, w.message]))
            .map_err(err)?;
            Ok(())
        })
    }

    /// Write item `record.index` of map step `step`.
    pub fn update_item(&self, execution_id: &str, step: usize, record: &ItemRecord) -> StoreWrite<()> {
        let id = execution_id.to_owned();
        let (index, status, record) = (record.index as i64, record.status.as_str(), json(record));
        self.prepare(move |tx, err| {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO step_items (execution_id, step_index, item_index, status, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, step as i64, index, status, record]))
            .map_err(err)?;
            Ok(())
        })
    }

    /// See [`super::Store::items`].
    pub fn items(
        &self,
        execution_id: &str,
        step: Option<usize>,
        after: Option<usize>,
        limit: u32,
    ) -> StoreResult<Vec<(usize, ItemRecord)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT step_index, record FROM step_items
                 WHERE execution_id = ?1 AND (?2 IS NULL OR step_index = ?2) AND (?3 IS NULL OR item_index > ?3)
                 ORDER BY step_index, item_index LIMIT ?4",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(i64, String)> = stmt
            .query_map(params![execution_id, step.map(|s| s as i64), after.map(|a| a as i64), limit], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(|(step, record)| Ok((step.max(0) as usize, self.parse("item", &record)?))).collect()
    }

    /// See [`super::Store::put_signal`].
    pub fn put_signal(&self, execution_id: &str, signal: &plexus_client::SignalRecord) -> StoreWrite<bool> {
        let (id, name, record, at) = (execution_id.to_owned(), signal.name.clone(), json(signal), signal.at_ms as i64);
        self.prepare(move |tx, err| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO signals (execution_id, name, record, at_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![id, name, record, at],
                )
                .map_err(err)?;
            Ok(n > 0)
        })
    }

    /// See [`super::Store::signals`].
    pub fn signals(&self, execution_id: &str) -> StoreResult<Vec<plexus_client::SignalRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT record FROM signals WHERE execution_id = ?1 ORDER BY at_ms, name")
            .map_err(|e| self.err(e))?;
        let rows: Vec<String> =
            stmt.query_map([execution_id], |r| r.get(0)).and_then(Iterator::collect).map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.parse("signal", r)).collect()
    }

    /// See [`super::Store::delete_signals`].
    pub fn delete_signals(&self, execution_id: &str, names: &[String]) -> StoreWrite<()> {
        let (id, names) = (execution_id.to_owned(), names.to_vec());
        self.prepare(move |tx, err| {
            for name in &names {
                tx.execute("DELETE FROM signals WHERE execution_id = ?1 AND name = ?2", params![id, name])
                    .map_err(err)?;
            }
            Ok(())
        })
    }

    /// See [`super::Store::signalled`].
    pub fn signalled(&self, ids: &[String], since_ms: u64) -> StoreResult<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name FROM signals WHERE execution_id = ?1 AND at_ms >= ?2")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for id in ids {
            let names: Vec<String> = stmt
                .query_map(params![id, since_ms as i64], |r| r.get(0))
                .and_then(Iterator::collect)
                .map_err(|e| self.err(e))?;
            out.extend(names.into_iter().map(|n| (id.clone(), n)));
        }
        Ok(out)
    }

    /// Record compensation number `seq` of an execution.
    pub fn put_compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord) -> StoreWrite<()> {
        let id = execution_id.to_owned();
        let record_json = json(record);
        let step = record.step.clone();
        let status_text = Transition::Compensation(record.status).to_string();
        let message = record.error.as_ref().map(|e| e.message.clone());
        self.prepare(move |tx, err| {
            tx.execute(
                "INSERT OR REPLACE INTO compensations (execution_id, seq, record) VALUES (?1, ?2, ?3)",
                params![id, seq as i64, record_json],
            )
            .map_err(err)?;
            tx.execute(
                "INSERT INTO events (execution_id, at_ms, step_id, status, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, now_ms() as i64, step, status_text, message],
            )
            .map_err(err)?;
            Ok(())
        })
    }

    /// Prepare a finished execution for `exec retry`: steps that did not
    /// complete go back to pending with no attempts, compensations are
    /// forgotten (they stay in the log), the run counter goes up.
    ///
    /// The change is conditional: it happens only if the stored execution is
    /// still failed, cancelled or rollback-failed, so of two retries racing
    /// one wins. Returns `false` (and changes nothing) when it is not.
    pub fn reset_for_retry(&self, stored: &mut StoredExecution) -> StoreResult<bool> {
        self.writable()?;
        let id = stored.status.execution_id.clone();
        let reset = shape::reset_for_retry(stored);
        let runs = reset.meta.runs;
        let steps: Vec<String> = reset.status.steps.iter().map(json).collect();
        let changed = self.write(move |tx, err| {
            let changed = tx
                .execute(
                    "UPDATE executions SET status = 'pending', error = NULL, ended_at_ms = NULL, runs = ?2
                     WHERE id = ?1 AND status IN ('failed', 'cancelled', 'rollback_failed')",
                    params![id, runs],
                )
                .map_err(err)?;
            if changed == 0 {
                return Ok(false);
            }
            put_steps(tx, &id, &steps).map_err(err)?;
            tx.execute("DELETE FROM compensations WHERE execution_id = ?1", [&id]).map_err(err)?;
            tx.execute(
                "INSERT INTO events (execution_id, at_ms, status, message) VALUES (?1, ?2, 'pending', ?3)",
                params![id, now_ms() as i64, format!("retry (run {runs})")],
            )
            .map_err(err)?;
            Ok(true)
        })?;
        if changed {
            *stored = reset;
        }
        Ok(changed)
    }

    /// Write everything about a running execution at once — status, every
    /// step, every compensation, the shared state — and log one event saying
    /// so. Used after state writes failed, to record what happened meanwhile
    /// before the execution goes on.
    pub fn record_snapshot(&self, status: &ExecutionStatus, state: &Map<String, Value>) -> StoreWrite<()> {
        let id = status.execution_id.clone();
        let status_text = status.status.as_str();
        let outputs = serde_json::to_string(&status.outputs).unwrap_or_else(|_| "{}".into());
        let error = status.error.clone();
        let started_at_ms = status.started_at_ms.map(|t| t as i64);
        let ended_at_ms = status.ended_at_ms.map(|t| t as i64);
        let state = serde_json::to_string(state).unwrap_or_else(|_| "{}".into());
        let steps: Vec<String> = status.steps.iter().map(json).collect();
        let compensations: Vec<String> = status.compensations.iter().map(json).collect();
        self.prepare(move |tx, err| {
            tx.execute(
                "UPDATE executions SET status = ?2, outputs = ?3, error = ?4, started_at_ms = ?5, ended_at_ms = ?6,
                    state = ?7 WHERE id = ?1",
                params![id, status_text, outputs, error, started_at_ms, ended_at_ms, state],
            )
            .map_err(err)?;
            put_steps(tx, &id, &steps).map_err(err)?;
            // The whole state is in `executions.state` now.
            tx.execute("DELETE FROM state_entries WHERE execution_id = ?1", [&id]).map_err(err)?;
            tx.execute("DELETE FROM compensations WHERE execution_id = ?1", [&id]).map_err(err)?;
            for (seq, record) in compensations.iter().enumerate() {
                tx.execute(
                    "INSERT INTO compensations (execution_id, seq, record) VALUES (?1, ?2, ?3)",
                    params![id, seq as i64, record],
                )
                .map_err(err)?;
            }
            tx.execute(
                "INSERT INTO events (execution_id, at_ms, status, message) VALUES (?1, ?2, ?3, ?4)",
                params![id, now_ms() as i64, status_text, "recorded again after state writes failed"],
            )
            .map_err(err)?;
            Ok(())
        })
    }

    /// Everything stored about execution `id`.
    pub fn execution(&self, id: &str) -> StoreResult<Option<StoredExecution>> {
        let guard = self.conn();
        // One read transaction: the execution, its steps and its state as of
        // one commit (a state entry refers to a step's record of the same
        // moment). Dropped, it ends; the connection keeps no old snapshot.
        let conn = guard.unchecked_transaction().map_err(|e| self.err(e))?;
        let head: Option<ExecutionHead> = conn
            .query_row(
                "SELECT workflow_id, workflow_version, status, inputs, outputs, error, state, schedule_id,
                        scheduled_at_ms, created_at_ms, started_at_ms, ended_at_ms, runs, transaction_id, priority
                 FROM executions WHERE id = ?1",
                [id],
                |r| {
                    Ok(ExecutionHead {
                        id: id.to_owned(),
                        workflow_id: r.get(0)?,
                        workflow_version: r.get(1)?,
                        status: r.get(2)?,
                        inputs: r.get(3)?,
                        outputs: r.get(4)?,
                        error: r.get(5)?,
                        state: r.get(6)?,
                        schedule_id: r.get(7)?,
                        scheduled_at_ms: r.get(8)?,
                        created_at_ms: r.get(9)?,
                        started_at_ms: r.get(10)?,
                        ended_at_ms: r.get(11)?,
                        runs: r.get(12)?,
                        transaction_id: r.get(13)?,
                        priority: r.get(14)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(head) = head else { return Ok(None) };
        // The records of every row of `sql` for this execution, in order.
        let records = |sql: &str| -> StoreResult<Vec<String>> {
            let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
            stmt.query_map([id], |r| r.get(0)).and_then(Iterator::collect).map_err(|e| self.err(e))
        };
        let steps = records("SELECT record FROM steps WHERE execution_id = ?1 ORDER BY idx")?;
        let compensations = records("SELECT record FROM compensations WHERE execution_id = ?1 ORDER BY seq")?;
        let mut stmt = conn
            .prepare_cached("SELECT key, value, from_step FROM state_entries WHERE execution_id = ?1")
            .map_err(|e| self.err(e))?;
        let entries: Vec<StateEntry> = stmt
            .query_map([id], |r| Ok(StateEntry { key: r.get(0)?, value: r.get(1)?, from_step: r.get(2)? }))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        shape::assemble(head, &steps, &compensations, entries, &|m| self.corrupt(m)).map(Some)
    }

    /// The status of execution `id`, if it exists.
    pub fn execution_status(&self, id: &str) -> StoreResult<Option<WorkflowStatus>> {
        let conn = self.conn();
        let text: Option<String> = conn
            .prepare_cached("SELECT status FROM executions WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        text.map(|t| self.status(id, &t)).transpose()
    }

    /// The stored status text `text` of execution `id`, read.
    fn status(&self, id: &str, text: &str) -> StoreResult<WorkflowStatus> {
        WorkflowStatus::parse(text).ok_or_else(|| self.corrupt(format!("execution {id}: unknown status `{text}`")))
    }

    /// Executions matching `filter`, newest first.
    pub fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<Vec<ExecutionSummary>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, workflow_id, workflow_version, status, error, schedule_id, created_at_ms, ended_at_ms
                 FROM executions
                 WHERE (?1 IS NULL OR workflow_id = ?1) AND (?2 IS NULL OR status = ?2)
                   AND (?3 IS NULL OR schedule_id = ?3)
                   AND (?5 = 0 OR status IN ('pending', 'running', 'rolling_back'))
                   AND (?6 IS NULL OR id < ?6)
                 ORDER BY id DESC LIMIT ?4",
            )
            .map_err(|e| self.err(e))?;
        let status = filter.status.map(WorkflowStatus::as_str);
        type Row = (String, String, u32, String, Option<String>, Option<String>, i64, Option<i64>);
        let rows: Vec<Row> = stmt
            .query_map(
                params![
                    filter.workflow_id,
                    status,
                    filter.schedule_id,
                    filter.limit.unwrap_or(100),
                    filter.active,
                    filter.before
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
            )
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(execution_id, workflow_id, workflow_version, status, error, schedule_id, created, ended)| {
                Ok(ExecutionSummary {
                    status: self.status(&execution_id, &status)?,
                    execution_id,
                    workflow_id,
                    workflow_version,
                    error,
                    schedule_id,
                    created_at_ms: created as u64,
                    ended_at_ms: ended.map(|t| t as u64),
                })
            })
            .collect()
    }

    /// Ids of executions that had not ended (pending, running, rolling back),
    /// oldest first: the ones to resume after a restart.
    pub fn unfinished_executions(&self) -> StoreResult<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM executions WHERE status IN ('pending', 'running', 'rolling_back') ORDER BY id")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| r.get(0)).and_then(Iterator::collect).map_err(|e| self.err(e))
    }

    /// Count of executions per status.
    pub fn execution_counts(&self) -> StoreResult<Vec<(WorkflowStatus, u64)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT status, COUNT(*) FROM executions GROUP BY status").map_err(|e| self.err(e))?;
        let rows: Vec<(String, u64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(|(text, n)| Ok((self.status("(count)", &text)?, n))).collect()
    }

    /// The log of execution `id` after event `after` (exclusive), at most `limit` lines.
    pub fn events(&self, id: &str, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, at_ms, step_id, attempt, status, message FROM events
                 WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        type Row = (i64, i64, Option<String>, Option<u32>, String, Option<String>);
        let rows: Vec<Row> = stmt
            .query_map(params![id, after, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(seq, at_ms, step_id, attempt, text, message)| {
                let transition = Transition::parse(&text, step_id.is_some())
                    .ok_or_else(|| self.corrupt(format!("event {seq} of execution {id}: unknown status `{text}`")))?;
                Ok(Event { seq, at_ms: at_ms as u64, step_id, attempt, transition, message })
            })
            .collect()
    }

    /// Delete up to `limit` executions that ended (completed, failed,
    /// cancelled, rollback-failed or rolled back) before `ended_before_ms`,
    /// with their steps, compensations and log. Returns how many were
    /// deleted; running, pending and held executions, and those of a
    /// transaction still open or rolling back, are never touched. Settled
    /// transactions that ended before `ended_before_ms` and have no
    /// execution left are deleted too (at most `limit`).
    pub fn prune(&self, ended_before_ms: u64, limit: u32) -> StoreResult<usize> {
        self.writable()?;
        self.write(move |tx, err| {
            let ids: Vec<String> = tx
                .prepare_cached(
                    "SELECT id FROM executions
                     WHERE ended_at_ms < ?1
                       AND status IN ('completed', 'failed', 'cancelled', 'rollback_failed', 'rolled_back')
                       AND (transaction_id IS NULL OR transaction_id NOT IN
                            (SELECT id FROM transactions WHERE state IN ('open', 'rolling_back')))
                     ORDER BY ended_at_ms LIMIT ?2",
                )
                .and_then(|mut s| s.query_map(params![ended_before_ms as i64, limit], |r| r.get(0))?.collect())
                .map_err(err)?;
            for id in &ids {
                for sql in [
                    "DELETE FROM events WHERE execution_id = ?1",
                    "DELETE FROM steps WHERE execution_id = ?1",
                    "DELETE FROM compensations WHERE execution_id = ?1",
                    "DELETE FROM state_entries WHERE execution_id = ?1",
                    "DELETE FROM step_items WHERE execution_id = ?1",
                    "DELETE FROM signals WHERE execution_id = ?1",
                    "DELETE FROM artifacts WHERE execution_id = ?1",
                    "DELETE FROM executions WHERE id = ?1",
                ] {
                    tx.prepare_cached(sql).and_then(|mut s| s.execute([id])).map_err(err)?;
                }
            }
            // Settled transactions that ended as long ago and have no execution left go too.
            tx.prepare_cached(
                "DELETE FROM transactions WHERE id IN (
                     SELECT t.id FROM transactions t
                     WHERE t.state IN ('committed', 'rolled_back', 'rollback_failed') AND t.ended_at_ms < ?1
                       AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.transaction_id = t.id)
                     LIMIT ?2)",
            )
            .and_then(|mut s| s.execute(params![ended_before_ms as i64, limit]))
            .map_err(err)?;
            Ok(ids.len())
        })
    }
}

/// Give the state keys that refer to step `index`'s output a copy of their
/// value (from its record as stored now), before that record is replaced.
/// Nothing to do, and one indexed look, in the usual case.
fn keep_referred_outputs(tx: &rusqlite::Connection, id: &str, index: usize) -> rusqlite::Result<()> {
    let keys: Vec<String> = tx
        .prepare_cached("SELECT key FROM state_entries WHERE execution_id = ?1 AND from_step = ?2")?
        .query_map(params![id, index as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if keys.is_empty() {
        return Ok(());
    }
    let record: String = tx
        .prepare_cached("SELECT record FROM steps WHERE execution_id = ?1 AND idx = ?2")?
        .query_row(params![id, index as i64], |r| r.get(0))?;
    let output = serde_json::from_str::<StepRecord>(&record).ok().and_then(|r| r.output);
    let mut copy = tx
        .prepare_cached("UPDATE state_entries SET value = ?3, from_step = NULL WHERE execution_id = ?1 AND key = ?2")?;
    for key in keys {
        let value = output.as_ref().and_then(|o| o.get(&key)).unwrap_or(&Value::Null);
        copy.execute(params![id, key, serde_json::to_string(value).unwrap_or_else(|_| "null".into())])?;
    }
    Ok(())
}

/// Write every step record (JSON, in declaration order) of execution `id`.
fn put_steps(tx: &rusqlite::Connection, id: &str, steps: &[String]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO steps (execution_id, idx, record) VALUES (?1, ?2, ?3)")?;
    for (i, step) in steps.iter().enumerate() {
        stmt.execute(params![id, i as i64, step])?;
    }
    Ok(())
}
