//! Bulks, their devices' outcomes and their cancellation in [`PgRunStore`].

use chrono::{DateTime, Utc};
use netauto_core::bulk::dedup_ids;
use netauto_core::{
    Bulk, BulkCancelled, BulkRef, BulkState, DeviceId, DeviceOutcome, Enqueued, Error, NewBulk,
    NewJob, OutcomeRecorded, Result, RunId,
};

use super::PgRunStore;
use super::devices::raw;
use super::queue::insert_job;
use crate::error::{db, exists_or_db};
use crate::rows::{self, StoredRow};
use crate::rules::{self, clamp};
use crate::sql::bulk_exists;

pub(super) async fn create_bulk(
    s: &PgRunStore,
    bulk: NewBulk,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Result<(Bulk, Vec<Enqueued>)> {
    rules::validate_jobs(&jobs)?;
    let device_ids = dedup_ids(&bulk.device_ids);
    let mut tx = s.pool.begin().await.map_err(db)?;
    // The stored timestamp (microseconds) is the one answered.
    let created_at = sqlx::query(
        "INSERT INTO bulks (ref, command, requested_by, created_at, total, timeout_ms, max_output)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at",
    )
    .bind(bulk.bulk_ref.as_str())
    .bind(&bulk.command)
    .bind(&bulk.requested_by)
    .bind(now)
    .bind(device_ids.len() as i64)
    .bind(bulk.limits.timeout_ms.map(clamp))
    .bind(bulk.limits.max_output.map(clamp))
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| exists_or_db(e, "bulk", bulk.bulk_ref.to_string()))?
    .time("created_at")?;
    sqlx::query(
        "INSERT INTO bulk_devices (bulk_ref, position, device_id)
         SELECT $1, ord - 1, id FROM unnest($2::bigint[]) WITH ORDINALITY AS t(id, ord)",
    )
    .bind(bulk.bulk_ref.as_str())
    .bind(raw(&device_ids))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let enqueued = rules::insert_each(&mut *tx, jobs, now, insert_job).await?;
    tx.commit().await.map_err(db)?;
    Ok((rules::new_bulk(bulk, device_ids, created_at), enqueued))
}

pub(super) async fn bulk_state(s: &PgRunStore, bulk_ref: &BulkRef) -> Result<BulkState> {
    let row = sqlx::query(
        "SELECT created_at, total, ok, failed, cancelled, finished_at, cancelled_at FROM bulks WHERE ref = $1",
    )
    .bind(bulk_ref.as_str())
    .fetch_optional(&s.pool)
    .await
    .map_err(db)?
    .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
    rows::bulk_state(&row)
}

pub(super) async fn bulk(s: &PgRunStore, bulk_ref: &BulkRef) -> Result<Bulk> {
    let row = sqlx::query("SELECT * FROM bulks WHERE ref = $1")
        .bind(bulk_ref.as_str())
        .fetch_optional(&s.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
    let members = sqlx::query("SELECT * FROM bulk_devices WHERE bulk_ref = $1 ORDER BY position")
        .bind(bulk_ref.as_str())
        .fetch_all(&s.pool)
        .await
        .map_err(db)?;
    rows::bulk(bulk_ref, &row, &members)
}

pub(super) async fn device_outcomes(
    s: &PgRunStore,
    bulk_ref: &BulkRef,
    device_ids: &[DeviceId],
) -> Result<Vec<DeviceOutcome>> {
    bulk_exists(&s.pool, bulk_ref).await?;
    let ids = dedup_ids(device_ids);
    let recorded = sqlx::query(
        "SELECT * FROM bulk_devices WHERE bulk_ref = $1 AND status IS NOT NULL AND device_id = ANY($2)",
    )
    .bind(bulk_ref.as_str())
    .bind(raw(&ids))
    .fetch_all(&s.pool)
    .await
    .map_err(db)?;
    rows::outcomes_in_order(&ids, &recorded)
}

pub(super) async fn record_outcome(
    s: &PgRunStore,
    bulk_ref: &BulkRef,
    outcome: DeviceOutcome,
) -> Result<OutcomeRecorded> {
    rules::check_outcome(&outcome)?;
    let mut tx = s.pool.begin().await.map_err(db)?;
    let newly = sqlx::query(
        "UPDATE bulk_devices SET run_id = $1, status = $2, error_kind = $3, recorded_at = $4, truncated = $7
         WHERE bulk_ref = $5 AND device_id = $6 AND status IS NULL",
    )
    .bind(outcome.run_id.map(RunId::get))
    .bind(outcome.status.as_str())
    .bind(&outcome.error_kind)
    .bind(outcome.recorded_at)
    .bind(bulk_ref.as_str())
    .bind(outcome.device_id.get())
    .bind(outcome.truncated)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected()
        == 1;
    let (ok_inc, failed_inc, cancelled_inc) = rules::increments(newly, outcome.status);
    // The row lock on the bulk serializes concurrent recorders: exactly one of them sees
    // the counters reach the total.
    let counted = sqlx::query(
        "UPDATE bulks SET ok = ok + $1, failed = failed + $2, cancelled = cancelled + $6,
             finished_at = CASE WHEN $3 AND ok + $1 + failed + $2 + cancelled + $6 = total THEN $4 ELSE finished_at END
         WHERE ref = $5 RETURNING total, ok, failed, cancelled",
    )
    .bind(ok_inc)
    .bind(failed_inc)
    .bind(newly)
    .bind(outcome.recorded_at)
    .bind(bulk_ref.as_str())
    .bind(cancelled_inc)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?
    .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
    if !newly
        && sqlx::query("SELECT 1 FROM bulk_devices WHERE bulk_ref = $1 AND device_id = $2")
            .bind(bulk_ref.as_str())
            .bind(outcome.device_id.get())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_none()
    {
        return Err(rules::not_a_member(bulk_ref, outcome.device_id));
    }
    tx.commit().await.map_err(db)?;
    rules::outcome_recorded(newly, &counted)
}

pub(super) async fn cancel_bulk(
    s: &PgRunStore,
    bulk_ref: &BulkRef,
    now: DateTime<Utc>,
) -> Result<BulkCancelled> {
    let mut tx = s.pool.begin().await.map_err(db)?;
    // Lock order bulk_devices → bulks, as `record_outcome` takes them, so the two never
    // deadlock. The pending rows are locked first (a recorder holding one finishes before
    // this goes on), then the bulk row is marked: from then on `create_run` refuses runs
    // of this bulk, and a run it inserted before is committed and seen as running below.
    sqlx::query(
        "SELECT device_id FROM bulk_devices WHERE bulk_ref = $1 AND status IS NULL
         ORDER BY device_id FOR UPDATE",
    )
    .bind(bulk_ref.as_str())
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let marked = sqlx::query(
        "UPDATE bulks SET cancelled_at = $1 WHERE ref = $2 AND cancelled_at IS NULL AND finished_at IS NULL",
    )
    .bind(now)
    .bind(bulk_ref.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    if marked != 1 {
        let current = sqlx::query("SELECT total, ok, failed, cancelled FROM bulks WHERE ref = $1")
            .bind(bulk_ref.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
        return rules::not_cancelled_now(&current);
    }
    let n = sqlx::query(
        "UPDATE bulk_devices bd SET status = 'cancelled', error_kind = 'cancelled', recorded_at = $1,
             run_id = (SELECT max(r.id) FROM runs r WHERE r.bulk_ref = $2 AND r.device_id = bd.device_id)
         WHERE bd.bulk_ref = $2 AND bd.status IS NULL
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.bulk_ref = $2
                           AND r.device_id = bd.device_id AND r.status = 'running')",
    )
    .bind(now)
    .bind(bulk_ref.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected() as i64;
    let after = sqlx::query(
        "UPDATE bulks SET cancelled = cancelled + $1,
             finished_at = CASE WHEN $1 > 0 AND ok + failed + cancelled + $1 = total THEN $2 ELSE finished_at END
         WHERE ref = $3 RETURNING total, ok, failed, cancelled",
    )
    .bind(n)
    .bind(now)
    .bind(bulk_ref.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    rules::bulk_cancelled(n, &after)
}
