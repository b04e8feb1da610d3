//! What retention reads and deletes: per-device totals, run footprints in keyset pages,
//! guarded deletes.

use chrono::{DateTime, Utc};
use netauto_core::retention::{
    DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, RunFootprint,
};
use netauto_core::{DeviceId, Result, RunId};

use crate::error::db;
use crate::rows;
use crate::rules::clamp;
use crate::shared::bulks::raw;
use crate::sql::{Bind, Dialect, Pools, Portable};

pub(crate) async fn device_totals<P: Pools>(s: &P) -> Result<Vec<DeviceTotal>> {
    // PostgreSQL's sum is NUMERIC: clamped into a BIGINT.
    let totals = sqlx::query::<P::DB>(P::DB::pick(
        "SELECT device_id, LEAST(SUM(bytes), 9223372036854775807)::bigint AS bytes, COUNT(*) AS runs
         FROM runs GROUP BY device_id ORDER BY device_id",
        "SELECT device_id, SUM(bytes) AS bytes, COUNT(*) AS runs FROM runs GROUP BY device_id ORDER BY device_id",
    ))
    .fetch_all(P::DB::pool(s.reader()))
    .await
    .map_err(db)?;
    totals.iter().map(rows::device_total).collect()
}

pub(crate) async fn device_footprints<P: Pools>(
    s: &P,
    devices: &[DeviceId],
    after: Option<FootprintCursor>,
    limit: usize,
) -> Result<Vec<RunFootprint>> {
    let (d, ts, id) = match after {
        Some(c) => (c.device_id.get(), c.ts, c.run_id.get()),
        None => (i64::MIN, DateTime::<Utc>::MIN_UTC, i64::MIN),
    };
    let page = sqlx::query::<P::DB>(P::DB::pick(
        "SELECT id, device_id, retention_ts, bytes, finished_at FROM runs
         WHERE device_id = ANY($1) AND (device_id, retention_ts, id) > ($2, $3, $4)
         ORDER BY device_id, retention_ts, id LIMIT $5",
        "SELECT id, device_id, retention_ts, bytes, finished_at FROM runs
         WHERE device_id IN (SELECT value FROM json_each($1)) AND (device_id, retention_ts, id) > ($2, $3, $4)
         ORDER BY device_id, retention_ts, id LIMIT $5",
    ))
    .ids(&raw(devices))
    .int(d)
    .time(P::DB::stored_range(ts))
    .int(id)
    .int(clamp(limit))
    .fetch_all(P::DB::pool(s.reader()))
    .await
    .map_err(db)?;
    page.iter().map(rows::footprint).collect()
}

pub(crate) async fn aged_footprints<P: Pools>(
    s: &P,
    cutoff: DateTime<Utc>,
    after: Option<FootprintCursor>,
    limit: usize,
) -> Result<Vec<RunFootprint>> {
    let (ts, id) = match after {
        Some(c) => (c.ts, c.run_id.get()),
        None => (DateTime::<Utc>::MIN_UTC, i64::MIN),
    };
    let page = sqlx::query::<P::DB>(
        "SELECT id, device_id, retention_ts, bytes, finished_at FROM runs
         WHERE retention_ts < $1 AND (retention_ts, id) > ($2, $3)
         ORDER BY retention_ts, id LIMIT $4",
    )
    .time(P::DB::stored_range(cutoff))
    .time(P::DB::stored_range(ts))
    .int(id)
    .int(clamp(limit))
    .fetch_all(P::DB::pool(s.reader()))
    .await
    .map_err(db)?;
    page.iter().map(rows::footprint).collect()
}

pub(crate) async fn delete_runs<P: Pools>(
    s: &P,
    ids: &[RunId],
    guard: DeleteGuard,
) -> Result<DeletedRuns> {
    if ids.is_empty() {
        return Ok(DeletedRuns::default());
    }
    let raw_ids: Vec<i64> = ids.iter().map(|r| r.get()).collect();
    // In SQLite `+retention_ts` keeps the planner from scanning the retention index (every
    // aged run matches it) instead of looking up the 200 ids.
    let query = match guard {
        DeleteGuard::AgedBefore(cutoff) => sqlx::query::<P::DB>(P::DB::pick(
            "DELETE FROM runs WHERE id = ANY($1) AND retention_ts < $2 RETURNING id, bytes, chunks",
            "DELETE FROM runs WHERE id IN (SELECT value FROM json_each($1)) AND +retention_ts < $2
             RETURNING id, bytes, chunks",
        ))
        .ids(&raw_ids)
        .time(P::DB::stored_range(cutoff)),
        DeleteGuard::Finished => sqlx::query::<P::DB>(P::DB::pick(
            "DELETE FROM runs WHERE id = ANY($1) AND finished_at IS NOT NULL RETURNING id, bytes, chunks",
            "DELETE FROM runs WHERE id IN (SELECT value FROM json_each($1)) AND +finished_at IS NOT NULL
             RETURNING id, bytes, chunks",
        ))
        .ids(&raw_ids),
    };
    let mut tx = s.begin_write().await?;
    let deleted = query.fetch_all(P::DB::conn(&mut *tx)).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    rows::deleted_runs(&deleted)
}
