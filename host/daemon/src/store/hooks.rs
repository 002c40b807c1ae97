//! Webhook triggers and their deliveries.

use super::{HookRow, SqliteStore, StoreResult};
use plexus_client::HookDelivery;
use rusqlite::{OptionalExtension, params};

impl SqliteStore {
    /// Create hook `row.id`; `false` if the id is taken.
    pub fn insert_hook(&self, row: &HookRow) -> StoreResult<bool> {
        self.writable()?;
        let row = row.clone();
        let n = self.write(move |conn, err| {
            conn.execute(
                "INSERT OR IGNORE INTO hooks (id, spec, sealed, key_id, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![row.id, row.spec.to_string(), row.sealed, row.key_id, row.created_at_ms as i64],
            )
            .map_err(err)
        })?;
        Ok(n > 0)
    }

    /// Every hook, by id.
    pub fn hooks(&self) -> StoreResult<Vec<HookRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, spec, sealed, key_id, created_at_ms FROM hooks ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, String, Vec<u8>, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(id, spec, sealed, key_id, created)| {
                Ok(HookRow {
                    spec: self.parse("hook", &spec)?,
                    id,
                    sealed,
                    key_id,
                    created_at_ms: created.max(0) as u64,
                })
            })
            .collect()
    }

    /// Hook `id`.
    pub fn hook(&self, id: &str) -> StoreResult<Option<HookRow>> {
        let conn = self.conn();
        let row: Option<(String, String, Vec<u8>, String, i64)> = conn
            .query_row("SELECT id, spec, sealed, key_id, created_at_ms FROM hooks WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(id, spec, sealed, key_id, created)| {
            Ok(HookRow { spec: self.parse("hook", &spec)?, id, sealed, key_id, created_at_ms: created.max(0) as u64 })
        })
        .transpose()
    }

    /// Delete hook `id` and its deliveries; whether it existed.
    pub fn delete_hook(&self, id: &str) -> StoreResult<bool> {
        self.writable()?;
        let id = id.to_owned();
        let n = self.write(move |conn, err| {
            conn.execute("DELETE FROM hook_deliveries WHERE hook_id = ?1", [&id]).map_err(err)?;
            conn.execute("DELETE FROM hooks WHERE id = ?1", [&id]).map_err(err)
        })?;
        Ok(n > 0)
    }

    /// See [`super::Store::claim_delivery`].
    pub fn claim_delivery(&self, hook: &str, delivery: &str, at_ms: u64, forget_before_ms: u64) -> StoreResult<bool> {
        self.writable()?;
        let (hook, delivery) = (hook.to_owned(), delivery.to_owned());
        let n = self.write(move |conn, err| {
            conn.execute(
                "DELETE FROM hook_deliveries WHERE hook_id = ?1 AND received_at_ms < ?2",
                params![hook, forget_before_ms as i64],
            )
            .map_err(err)?;
            conn.execute(
                "INSERT OR IGNORE INTO hook_deliveries (hook_id, delivery, received_at_ms) VALUES (?1, ?2, ?3)",
                params![hook, delivery, at_ms as i64],
            )
            .map_err(err)
        })?;
        Ok(n > 0)
    }

    /// See [`super::Store::finish_delivery`].
    pub fn finish_delivery(&self, hook: &str, delivery: &str, execution: Option<&str>) -> StoreResult<()> {
        self.writable()?;
        let (hook, delivery, execution) = (hook.to_owned(), delivery.to_owned(), execution.map(str::to_owned));
        self.write(move |conn, err| {
            match execution {
                Some(e) => conn.execute(
                    "UPDATE hook_deliveries SET execution_id = ?3 WHERE hook_id = ?1 AND delivery = ?2",
                    params![hook, delivery, e],
                ),
                None => conn.execute(
                    "DELETE FROM hook_deliveries WHERE hook_id = ?1 AND delivery = ?2",
                    params![hook, delivery],
                ),
            }
            .map_err(err)?;
            Ok(())
        })
    }

    /// Hook `hook`'s newest `limit` deliveries, newest first.
    pub fn deliveries(&self, hook: &str, limit: u32) -> StoreResult<Vec<HookDelivery>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT delivery, received_at_ms, execution_id FROM hook_deliveries WHERE hook_id = ?1
                 ORDER BY received_at_ms DESC, delivery LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![hook, limit], |r| {
            Ok(HookDelivery {
                delivery: r.get(0)?,
                received_at_ms: r.get::<_, i64>(1)?.max(0) as u64,
                execution_id: r.get(2)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }
}
