//! What retention reads and deletes in [`SqliteRunStore`]: per-device totals, run
//! footprints in keyset pages, guarded deletes.

use chrono::{DateTime, Utc};
use netauto_core::retention::{
    DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, RunFootprint,
};
use netauto_core::{DeviceId, Result, RunId};

use super::Db;
use super::columns::to_micros;
use crate::error::db;
use crate::rows;
use crate::rules::clamp;
use crate::shared::bulks::raw;
use crate::sql::Dialect;
use sqlx::Sqlite;

pub(super) async fn device_totals(s: &Db) -> Result<Vec<DeviceTotal>> {
    let rows = sqlx::query(
        "SELECT device_id, SUM(bytes) AS bytes, COUNT(*) AS runs FROM runs GROUP BY device_id ORDER BY device_id",
    )
    .fetch_all(&s.reader)
    .await
    .map_err(db)?;
    rows.iter().map(rows::device_total).collect()
}

pub(super) async fn device_footprints(
    s: &Db,
    devices: &[DeviceId],
    after: Option<FootprintCursor>,
    limit: usize,
) -> Result<Vec<RunFootprint>> {
    let (d, ts, id) = after.map_or((i64::MIN, i64::MIN, i64::MIN), |c| {
        (c.device_id.get(), to_micros(c.ts), c.run_id.get())
    });
    let rows = sqlx::query(
        "SELECT id, device_id, retention_ts, bytes, finished_at FROM runs
         WHERE device_id IN (SELECT value FROM json_each(?)) AND (device_id, retention_ts, id) > (?, ?, ?)
         ORDER BY device_id, retention_ts, id LIMIT ?",
    )
    .bind(Sqlite::ids(&raw(devices)))
    .bind(d)
    .bind(ts)
    .bind(id)
    .bind(clamp(limit))
    .fetch_all(&s.reader)
    .await
    .map_err(db)?;
    rows.iter().map(rows::footprint).collect()
}

pub(super) async fn aged_footprints(
    s: &Db,
    cutoff: DateTime<Utc>,
    after: Option<FootprintCursor>,
    limit: usize,
) -> Result<Vec<RunFootprint>> {
    let (ts, id) = after.map_or((i64::MIN, i64::MIN), |c| (to_micros(c.ts), c.run_id.get()));
    let rows = sqlx::query(
        "SELECT id, device_id, retention_ts, bytes, finished_at FROM runs
         WHERE retention_ts < ? AND (retention_ts, id) > (?, ?)
         ORDER BY retention_ts, id LIMIT ?",
    )
    .bind(to_micros(cutoff))
    .bind(ts)
    .bind(id)
    .bind(clamp(limit))
    .fetch_all(&s.reader)
    .await
    .map_err(db)?;
    rows.iter().map(rows::footprint).collect()
}

pub(super) async fn delete_runs(s: &Db, ids: &[RunId], guard: DeleteGuard) -> Result<DeletedRuns> {
    if ids.is_empty() {
        return Ok(DeletedRuns::default());
    }
    let raw: Vec<i64> = ids.iter().map(|r| r.get()).collect();
    let ids_json = serde_json::Value::from(raw).to_string();
    let query = match guard {
        DeleteGuard::AgedBefore(cutoff) => sqlx::query(
            // `+retention_ts` keeps SQLite from scanning the retention index (every aged
            // run matches it) instead of looking up the 200 ids.
            "DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?)) AND +retention_ts < ?
             RETURNING id, bytes, chunks",
        )
        .bind(ids_json)
        .bind(to_micros(cutoff)),
        DeleteGuard::Finished => sqlx::query(
            "DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?)) AND +finished_at IS NOT NULL
             RETURNING id, bytes, chunks",
        )
        .bind(ids_json),
    };
    let mut tx = s.begin_write().await?;
    let rows = query.fetch_all(&mut *tx).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    rows::deleted_runs(&rows)
}
