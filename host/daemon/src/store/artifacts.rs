//! Which execution holds which artifact (the artifact store's index; the
//! bytes are in the blob store, see `crate::artifacts`).

use super::{SqliteStore, StoreResult, StoreWrite};
use plexus_client::ArtifactRecord;
use rusqlite::params;
use std::collections::HashSet;

/// The most artifacts [`SqliteStore::artifacts`] lists.
pub(crate) const MAX_LISTED: u32 = 10_000;

impl SqliteStore {
    /// See [`super::Store::link_artifact`].
    pub fn link_artifact(&self, execution_id: &str, a: &ArtifactRecord) -> StoreWrite<()> {
        let (id, a) = (execution_id.to_owned(), a.clone());
        self.prepare(move |tx, err| {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO artifacts (execution_id, digest, name, step_id, bytes, media_type, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    a.artifact,
                    a.name,
                    a.step.as_deref().unwrap_or_default(),
                    a.bytes as i64,
                    a.media_type,
                    a.created_at_ms as i64
                ])
            })
            .map_err(err)?;
            Ok(())
        })
    }

    /// See [`super::Store::artifacts`].
    pub fn artifacts(&self, execution_id: &str) -> StoreResult<Vec<ArtifactRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT digest, name, step_id, bytes, media_type, created_at_ms FROM artifacts
                 WHERE execution_id = ?1 ORDER BY created_at_ms, name LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![execution_id, MAX_LISTED], |r| {
            Ok(ArtifactRecord {
                artifact: r.get(0)?,
                name: r.get(1)?,
                step: Some(r.get::<_, String>(2)?).filter(|s| !s.is_empty()),
                bytes: r.get::<_, i64>(3)?.max(0) as u64,
                media_type: r.get(4)?,
                created_at_ms: r.get::<_, i64>(5)?.max(0) as u64,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.err(e))
    }

    /// See [`super::Store::holds_artifact`].
    pub fn holds_artifact(&self, ids: &[String], digest: &str) -> StoreResult<bool> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT 1 FROM artifacts WHERE execution_id = ?1 AND digest = ?2 LIMIT 1")
            .map_err(|e| self.err(e))?;
        for id in ids {
            if stmt.exists(params![id, digest]).map_err(|e| self.err(e))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// See [`super::Store::held_artifacts`].
    pub fn held_artifacts(&self, digests: &[String]) -> StoreResult<HashSet<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT 1 FROM artifacts WHERE digest = ?1 LIMIT 1").map_err(|e| self.err(e))?;
        let mut held = HashSet::new();
        for digest in digests {
            if stmt.exists([digest]).map_err(|e| self.err(e))? {
                held.insert(digest.clone());
            }
        }
        Ok(held)
    }
}
