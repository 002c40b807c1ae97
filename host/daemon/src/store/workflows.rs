//! Workflows: every registered version, kept (executions are pinned to theirs).

use super::{SourceFormat, SqliteStore, StoreResult, WorkflowRow, now_ms};
use rusqlite::{OptionalExtension, params};

impl SqliteStore {
    /// Store `source` as the newest version of workflow `id`. Returns the
    /// version and whether it is new: registering the same text again returns
    /// the current version unchanged.
    pub fn put_workflow(&self, id: &str, source: &str, format: SourceFormat) -> StoreResult<(u32, bool)> {
        self.writable()?;
        let (id, source, format) = (id.to_owned(), source.to_owned(), format.as_str());
        self.write(move |conn, err| {
            let latest: Option<(u32, String, bool)> = conn
                .query_row(
                    "SELECT version, source, deleted FROM workflows WHERE id = ?1 ORDER BY version DESC LIMIT 1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
                )
                .optional()
                .map_err(err)?;
            if let Some((version, text, false)) = &latest
                && *text == source
            {
                return Ok((*version, false));
            }
            let version = latest.map_or(1, |(v, _, _)| v + 1);
            conn.execute(
                "INSERT INTO workflows (id, version, source, format, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, version, source, format, now_ms() as i64],
            )
            .map_err(err)?;
            conn.execute("UPDATE workflows SET deleted = 0 WHERE id = ?1", [&id]).map_err(err)?;
            Ok((version, true))
        })
    }

    /// Version `version` of workflow `id` (deleted ones too: executions stay
    /// pinned to them), or its newest live version when `version` is `None`.
    pub fn workflow(&self, id: &str, version: Option<u32>) -> StoreResult<Option<WorkflowRow>> {
        let conn = self.conn();
        let result = match version {
            Some(v) => conn.query_row(
                "SELECT id, version, source, format, created_at_ms FROM workflows WHERE id = ?1 AND version = ?2",
                params![id, v],
                workflow_row,
            ),
            None => conn.query_row(
                "SELECT id, version, source, format, created_at_ms FROM workflows
                 WHERE id = ?1 AND deleted = 0 ORDER BY version DESC LIMIT 1",
                [id],
                workflow_row,
            ),
        };
        result.optional().map_err(|e| self.err(e))
    }

    /// The newest version of every live workflow, by id.
    pub fn workflows(&self) -> StoreResult<Vec<WorkflowRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, MAX(version), source, format, created_at_ms FROM workflows
                 WHERE deleted = 0 GROUP BY id ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], workflow_row).and_then(Iterator::collect).map_err(|e| self.err(e))
    }

    /// Every version of workflow `id` (deleted ones too), newest first.
    pub fn workflow_versions(&self, id: &str) -> StoreResult<Vec<WorkflowRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, version, source, format, created_at_ms FROM workflows
                 WHERE id = ?1 ORDER BY version DESC",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([id], workflow_row).and_then(Iterator::collect).map_err(|e| self.err(e))
    }

    /// Mark every workflow deleted (QtForge's `clear_workflows`); returns
    /// how many were live. Their versions stay for pinned executions.
    pub fn delete_all_workflows(&self) -> StoreResult<usize> {
        self.writable()?;
        self.write(move |conn, err| {
            let n: i64 = conn
                .query_row("SELECT COUNT(DISTINCT id) FROM workflows WHERE deleted = 0", [], |r| r.get(0))
                .map_err(err)?;
            conn.execute("UPDATE workflows SET deleted = 1 WHERE deleted = 0", []).map_err(err)?;
            Ok(n as usize)
        })
    }

    /// Mark workflow `id` deleted. Its versions stay for the executions
    /// pinned to them. Returns whether it existed.
    pub fn delete_workflow(&self, id: &str) -> StoreResult<bool> {
        self.writable()?;
        let id = id.to_owned();
        let n = self.write(move |conn, err| {
            conn.execute("UPDATE workflows SET deleted = 1 WHERE id = ?1 AND deleted = 0", [id]).map_err(err)
        })?;
        Ok(n > 0)
    }
}

/// A `workflows` row: `id, version, source, format, created_at_ms`.
fn workflow_row(r: &rusqlite::Row) -> rusqlite::Result<WorkflowRow> {
    let format: String = r.get(3)?;
    Ok(WorkflowRow {
        id: r.get(0)?,
        version: r.get(1)?,
        source: r.get(2)?,
        format: SourceFormat::parse(&format).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("format `{format}`").into(),
            )
        })?,
        created_at_ms: r.get::<_, i64>(4)? as u64,
        definition: None,
    })
}
