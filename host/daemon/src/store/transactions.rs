//! Transactions: their state and the compensations their rollback ran; the
//! executions in one carry its id (`executions.transaction_id`).

use super::{SqliteStore, StoreResult, Transaction, TransactionState};
use plexus_client::TransactionSummary;
use rusqlite::{OptionalExtension, params};

impl SqliteStore {
    /// Record `tx`; `false` if its id is taken.
    pub fn insert_transaction(&self, tx: &Transaction) -> StoreResult<bool> {
        self.writable()?;
        let (id, state, created) = (tx.id.clone(), tx.state.as_str(), tx.created_at_ms as i64);
        let n = self.write(move |conn, err| {
            conn.execute(
                "INSERT OR IGNORE INTO transactions (id, state, created_at_ms) VALUES (?1, ?2, ?3)",
                params![id, state, created],
            )
            .map_err(err)
        })?;
        Ok(n > 0)
    }

    /// Transaction `id` with its executions, oldest first.
    pub fn transaction(&self, id: &str) -> StoreResult<Option<Transaction>> {
        let conn = self.conn();
        let row: Option<(String, i64, Option<i64>, String)> = conn
            .query_row(
                "SELECT state, created_at_ms, ended_at_ms, compensations FROM transactions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((state, created, ended, compensations)) = row else { return Ok(None) };
        let mut stmt = conn
            .prepare_cached("SELECT id FROM executions WHERE transaction_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let executions: Vec<String> =
            stmt.query_map([id], |r| r.get(0)).and_then(Iterator::collect).map_err(|e| self.err(e))?;
        Ok(Some(Transaction {
            id: id.to_owned(),
            state: TransactionState::parse(&state)
                .ok_or_else(|| self.corrupt(format!("transaction {id}: unknown state `{state}`")))?,
            executions,
            compensations: self.parse("transaction compensations", &compensations)?,
            created_at_ms: created as u64,
            ended_at_ms: ended.map(|t| t as u64),
        }))
    }

    /// Write `tx`'s state, end time and compensations if it is in `from`.
    pub fn update_transaction(&self, tx: &Transaction, from: TransactionState) -> StoreResult<bool> {
        self.writable()?;
        let id = tx.id.clone();
        let (state, ended) = (tx.state.as_str(), tx.ended_at_ms.map(|t| t as i64));
        let compensations = serde_json::to_string(&tx.compensations).unwrap_or_else(|_| "[]".into());
        let n = self.write(move |conn, err| {
            conn.execute(
                "UPDATE transactions SET state = ?2, ended_at_ms = ?3, compensations = ?4
                 WHERE id = ?1 AND state = ?5",
                params![id, state, ended, compensations, from.as_str()],
            )
            .map_err(err)
        })?;
        Ok(n > 0)
    }

    /// Transactions (in `state`, if given), newest first, at most `limit`.
    pub fn list_transactions(
        &self,
        state: Option<TransactionState>,
        limit: u32,
    ) -> StoreResult<Vec<TransactionSummary>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT t.id, t.state, t.created_at_ms, t.ended_at_ms,
                        (SELECT COUNT(*) FROM executions e WHERE e.transaction_id = t.id)
                 FROM transactions t WHERE ?1 IS NULL OR t.state = ?1
                 ORDER BY t.created_at_ms DESC, t.id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, String, i64, Option<i64>, i64)> = stmt
            .query_map(params![state.map(TransactionState::as_str), limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(id, state, created, ended, executions)| {
                Ok(TransactionSummary {
                    state: TransactionState::parse(&state)
                        .ok_or_else(|| self.corrupt(format!("transaction {id}: unknown state `{state}`")))?,
                    id,
                    executions: executions.max(0) as u64,
                    created_at_ms: created.max(0) as u64,
                    ended_at_ms: ended.map(|t| t.max(0) as u64),
                })
            })
            .collect()
    }

    /// Ids of the transactions in `state`, oldest first.
    pub fn transactions_in(&self, state: TransactionState) -> StoreResult<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM transactions WHERE state = ?1 ORDER BY created_at_ms, id")
            .map_err(|e| self.err(e))?;
        stmt.query_map([state.as_str()], |r| r.get(0)).and_then(Iterator::collect).map_err(|e| self.err(e))
    }
}
