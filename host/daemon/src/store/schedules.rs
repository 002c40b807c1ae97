//! Schedules and their fire history.

use super::{Fire, FireOutcome, ScheduleRow, SqliteStore, StoreResult};
use rusqlite::params;
use serde_json::Value;

impl SqliteStore {
    /// Create schedule `id` at `created_at_ms` (intervals count from it).
    /// Returns `false` if the id is taken.
    pub fn insert_schedule(&self, id: &str, spec: &Value, enabled: bool, created_at_ms: u64) -> StoreResult<bool> {
        self.writable()?;
        let (id, spec) = (id.to_owned(), spec.to_string());
        let n = self.write(move |conn, err| {
            conn.execute(
                "INSERT OR IGNORE INTO schedules (id, spec, enabled, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, spec, enabled, created_at_ms as i64],
            )
            .map_err(err)
        })?;
        Ok(n > 0)
    }

    /// Every schedule, by id.
    pub fn schedules(&self) -> StoreResult<Vec<ScheduleRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, spec, enabled, last_fire_ms, created_at_ms FROM schedules ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, String, bool, Option<i64>, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(id, spec, enabled, last, created)| {
                Ok(ScheduleRow {
                    spec: self.parse("schedule", &spec)?,
                    id,
                    enabled,
                    last_fire_ms: last.map(|t| t as u64),
                    created_at_ms: created as u64,
                })
            })
            .collect()
    }

    /// Pause or resume schedule `id`. Returns whether it exists.
    pub fn set_schedule_enabled(&self, id: &str, enabled: bool) -> StoreResult<bool> {
        self.writable()?;
        let id = id.to_owned();
        let n = self.write(move |conn, err| {
            conn.execute("UPDATE schedules SET enabled = ?2 WHERE id = ?1", params![id, enabled]).map_err(err)
        })?;
        Ok(n > 0)
    }

    /// Delete schedule `id` (its fire history stays). Returns whether it existed.
    pub fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
        self.writable()?;
        let id = id.to_owned();
        let n = self.write(move |conn, err| conn.execute("DELETE FROM schedules WHERE id = ?1", [id]).map_err(err))?;
        Ok(n > 0)
    }

    /// Record how fire time `fire.fire_time_ms` of schedule `id` was handled;
    /// with `advance`, it also becomes the schedule's last handled fire time.
    pub fn record_fire(&self, id: &str, fire: &Fire, advance: bool) -> StoreResult<()> {
        self.writable()?;
        let (id, fire) = (id.to_owned(), fire.clone());
        self.write(move |tx, err| {
            tx.execute(
                "INSERT INTO fires (schedule_id, fire_time_ms, fired_at_ms, outcome, execution_id, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    fire.fire_time_ms as i64,
                    fire.fired_at_ms as i64,
                    fire.outcome.as_str(),
                    fire.execution_id,
                    fire.message
                ],
            )
            .map_err(err)?;
            if advance {
                tx.execute(
                    "UPDATE schedules SET last_fire_ms = MAX(COALESCE(last_fire_ms, 0), ?2) WHERE id = ?1",
                    params![id, fire.fire_time_ms as i64],
                )
                .map_err(err)?;
            }
            Ok(())
        })
    }

    /// The newest `limit` fires of schedule `id`, newest first.
    pub fn fires(&self, id: &str, limit: u32) -> StoreResult<Vec<Fire>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT fire_time_ms, fired_at_ms, outcome, execution_id, message FROM fires
                 WHERE schedule_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        type Row = (i64, i64, String, Option<String>, Option<String>);
        let rows: Vec<Row> = stmt
            .query_map(params![id, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(fire_time, fired_at, outcome, execution_id, message)| {
                Ok(Fire {
                    fire_time_ms: fire_time as u64,
                    fired_at_ms: fired_at as u64,
                    outcome: FireOutcome::parse(&outcome)
                        .ok_or_else(|| self.corrupt(format!("fire of schedule {id}: unknown outcome `{outcome}`")))?,
                    execution_id,
                    message,
                })
            })
            .collect()
    }
}
