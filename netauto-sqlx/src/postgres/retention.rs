//! What retention reads and deletes in [`PgRunStore`]: per-device totals, run footprints in
//! keyset pages, guarded deletes.

use chrono::{DateTime, Utc};
use netauto_core::retention::{
    DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, RunFootprint,
};
use netauto_core::{DeviceId, Result, RunId};

use super::PgPools;
use super::columns::pg_min;
use crate::error::db;
use crate::rows;
use crate::rules::clamp;
use crate::shared::bulks::raw;

pub(super) async fn device_totals(s: &PgPools) -> Result<Vec<DeviceTotal>> {
    // The sum is NUMERIC: clamped into a BIGINT.
    let totals = sqlx::query(
        "SELECT device_id, LEAST(SUM(bytes), 9223372036854775807)::bigint AS bytes, COUNT(*) AS runs
         FROM runs GROUP BY device_id ORDER BY device_id",
    )
    .fetch_all(&s.pool)
    .await
    .map_err(db)?;
    totals.iter().map(rows::device_total).collect()
}

pub(super) async fn device_footprints(
    s: &PgPools,
    devices: &[DeviceId],
    after: Option<FootprintCursor>,
    limit: usize,
) -> Result<Vec<RunFootprint>> {
    let (d, ts, id) = match after {
        Some(c) => (c.device_id.get(), c.ts, c.run_id.get()),
        None => (i64::MIN, DateTime::<Utc>::MIN_UTC, i64::MIN),
    };
    let page = sqlx::query(
        "SELECT id, device_id, retention_ts, bytes, finished_at FROM runs
         WHERE device_id = ANY($1) AND (device_id, retention_ts, id) > ($2, $3, $4)
         ORDER BY device_id, retention_ts, id LIMIT $5",
    )
    .bind(raw(devices))
    .bind(d)
    .bind(ts.max(pg_min()))
    .bind(id)
    .bind(clamp(limit))
    .fetch_all(&s.pool)
    .await
    .map_err(db)?;
    page.iter().map(rows::footprint).collect()
}

pub(super) async fn aged_footprints(
    s: &PgPools,
    cutoff: DateTime<Utc>,
    after: Option<FootprintCursor>,
    limit: usize,
) -> Result<Vec<RunFootprint>> {
    let (ts, id) = match after {
        Some(c) => (c.ts, c.run_id.get()),
        None => (DateTime::<Utc>::MIN_UTC, i64::MIN),
    };
    let page = sqlx::query(
        "SELECT id, device_id, retention_ts, bytes, finished_at FROM runs
         WHERE retention_ts < $1 AND (retention_ts, id) > ($2, $3)
         ORDER BY retention_ts, id LIMIT $4",
    )
    .bind(cutoff.max(pg_min()))
    .bind(ts.max(pg_min()))
    .bind(id)
    .bind(clamp(limit))
    .fetch_all(&s.pool)
    .await
    .map_err(db)?;
    page.iter().map(rows::footprint).collect()
}

pub(super) async fn delete_runs(
    s: &PgPools,
    ids: &[RunId],
    guard: DeleteGuard,
) -> Result<DeletedRuns> {
    if ids.is_empty() {
        return Ok(DeletedRuns::default());
    }
    let raw_ids: Vec<i64> = ids.iter().map(|r| r.get()).collect();
    let query = match guard {
        DeleteGuard::AgedBefore(cutoff) => sqlx::query(
            "DELETE FROM runs WHERE id = ANY($1) AND retention_ts < $2 RETURNING id, bytes, chunks",
        )
        .bind(raw_ids)
        .bind(cutoff.max(pg_min())),
        DeleteGuard::Finished => sqlx::query(
            "DELETE FROM runs WHERE id = ANY($1) AND finished_at IS NOT NULL RETURNING id, bytes, chunks",
        )
        .bind(raw_ids),
    };
    let mut tx = s.pool.begin().await.map_err(db)?;
    let deleted = query.fetch_all(&mut *tx).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    rows::deleted_runs(&deleted)
}
