//! Workflow templates (the project orchestrator's `register_template`) and
//! secrets (sealed values, see `crate::secrets`).

use super::{SecretRow, SqliteStore, StoreResult, TemplateRow, now_ms};
use rusqlite::{OptionalExtension, params};

impl SqliteStore {
    /// Store `source` as template `id`, replacing it; returns the time, ms.
    pub fn put_template(&self, id: &str, source: &str) -> StoreResult<u64> {
        self.writable()?;
        let (id, source, at) = (id.to_owned(), source.to_owned(), now_ms());
        self.write(move |conn, err| {
            conn.execute(
                "INSERT INTO templates (id, source, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET source = excluded.source, updated_at_ms = excluded.updated_at_ms",
                params![id, source, at as i64],
            )
            .map_err(err)?;
            Ok(at)
        })
    }

    /// Template `id`.
    pub fn template(&self, id: &str) -> StoreResult<Option<TemplateRow>> {
        let conn = self.conn();
        conn.query_row("SELECT id, source, updated_at_ms FROM templates WHERE id = ?1", [id], template_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every template, by id.
    pub fn templates(&self) -> StoreResult<Vec<TemplateRow>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, source, updated_at_ms FROM templates ORDER BY id").map_err(|e| self.err(e))?;
        stmt.query_map([], template_row).and_then(Iterator::collect).map_err(|e| self.err(e))
    }

    /// Delete template `id`; whether it existed.
    pub fn delete_template(&self, id: &str) -> StoreResult<bool> {
        self.writable()?;
        let id = id.to_owned();
        let n = self.write(move |conn, err| conn.execute("DELETE FROM templates WHERE id = ?1", [id]).map_err(err))?;
        Ok(n > 0)
    }
}

impl SqliteStore {
    /// Store secret `name`'s sealed value, replacing it; returns the time, ms.
    pub fn put_secret(&self, name: &str, sealed: Vec<u8>, key_id: &str) -> StoreResult<u64> {
        self.writable()?;
        let (name, key_id, at) = (name.to_owned(), key_id.to_owned(), now_ms());
        self.write(move |conn, err| {
            conn.execute(
                "INSERT INTO secrets (name, sealed, key_id, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, key_id = excluded.key_id,
                     updated_at_ms = excluded.updated_at_ms",
                params![name, sealed, key_id, at as i64],
            )
            .map_err(err)?;
            Ok(at)
        })
    }

    /// Every secret, by name (sealed).
    pub fn secrets(&self) -> StoreResult<Vec<SecretRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, sealed, key_id, updated_at_ms FROM secrets ORDER BY name")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(SecretRow {
                name: r.get(0)?,
                sealed: r.get(1)?,
                key_id: r.get(2)?,
                updated_at_ms: r.get::<_, i64>(3)?.max(0) as u64,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// Delete secret `name`; whether it existed.
    pub fn delete_secret(&self, name: &str) -> StoreResult<bool> {
        self.writable()?;
        let name = name.to_owned();
        let n =
            self.write(move |conn, err| conn.execute("DELETE FROM secrets WHERE name = ?1", [name]).map_err(err))?;
        Ok(n > 0)
    }
}

fn template_row(r: &rusqlite::Row) -> rusqlite::Result<TemplateRow> {
    Ok(TemplateRow { id: r.get(0)?, source: r.get(1)?, updated_at_ms: r.get::<_, i64>(2)?.max(0) as u64 })
}
