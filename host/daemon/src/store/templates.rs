//! Workflow templates (the project orchestrator's `register_template`).

use super::{SqliteStore, StoreResult, TemplateRow, now_ms};
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

fn template_row(r: &rusqlite::Row) -> rusqlite::Result<TemplateRow> {
    Ok(TemplateRow { id: r.get(0)?, source: r.get(1)?, updated_at_ms: r.get::<_, i64>(2)?.max(0) as u64 })
}
