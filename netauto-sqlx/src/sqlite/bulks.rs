//! Bulks, their devices' outcomes and their cancellation in [`SqliteRunStore`].

use chrono::{DateTime, Utc};
use netauto_core::bulk::dedup_ids;
use netauto_core::{
    Bulk, BulkCancelled, BulkRef, BulkState, DeviceId, DeviceOutcome, Enqueued, Error, NewBulk,
    NewJob, OutcomeRecorded, Result, RunId,
};

use super::SqliteRunStore;
use super::columns::{from_micros, to_micros};
use super::devices::ids_json;
use super::queue::insert_job;
use crate::error::{db, exists_or_db};
use crate::rows;
use crate::rules::{self, clamp};
use crate::sql::bulk_exists;

pub(super) async fn create_bulk(
    s: &SqliteRunStore,
    bulk: NewBulk,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Result<(Bulk, Vec<Enqueued>)> {
    rules::validate_jobs(&jobs)?;
    let device_ids = dedup_ids(&bulk.device_ids);
    let mut tx = s.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO bulks (ref, command, requested_by, created_at, total, timeout_ms, max_output)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(bulk.bulk_ref.as_str())
    .bind(&bulk.command)
    .bind(&bulk.requested_by)
    .bind(to_micros(now))
    .bind(device_ids.len() as i64)
    .bind(bulk.limits.timeout_ms.map(clamp))
    .bind(bulk.limits.max_output.map(clamp))
    .execute(&mut *tx)
    .await
    .map_err(|e| exists_or_db(e, "bulk", bulk.bulk_ref.to_string()))?;
    sqlx::query(
        "INSERT INTO bulk_devices (bulk_ref, position, device_id) SELECT ?, key, value FROM json_each(?)",
    )
    .bind(bulk.bulk_ref.as_str())
    .bind(ids_json(&device_ids))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let enqueued = rules::insert_each(&mut *tx, jobs, now, insert_job).await?;
    tx.commit().await.map_err(db)?;
    let created_at = from_micros(to_micros(now));
    Ok((rules::new_bulk(bulk, device_ids, created_at), enqueued))
}

pub(super) async fn bulk_state(s: &SqliteRunStore, bulk_ref: &BulkRef) -> Result<BulkState> {
    let row = sqlx::query(
        "SELECT created_at, total, ok, failed, cancelled, finished_at, cancelled_at FROM bulks WHERE ref = ?",
    )
    .bind(bulk_ref.as_str())
    .fetch_optional(&s.db.reader)
    .await
    .map_err(db)?
    .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
    rows::bulk_state(&row)
}

pub(super) async fn bulk(s: &SqliteRunStore, bulk_ref: &BulkRef) -> Result<Bulk> {
    // One connection: a reader snapshot for the bulk and its members together.
    let mut conn = s.db.reader.acquire().await.map_err(db)?;
    let row = sqlx::query("SELECT * FROM bulks WHERE ref = ?")
        .bind(bulk_ref.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
    let members = sqlx::query("SELECT * FROM bulk_devices WHERE bulk_ref = ? ORDER BY position")
        .bind(bulk_ref.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    rows::bulk(bulk_ref, &row, &members)
}

pub(super) async fn device_outcomes(
    s: &SqliteRunStore,
    bulk_ref: &BulkRef,
    device_ids: &[DeviceId],
) -> Result<Vec<DeviceOutcome>> {
    let mut conn = s.db.reader.acquire().await.map_err(db)?;
    bulk_exists(&mut *conn, bulk_ref).await?;
    let ids = dedup_ids(device_ids);
    let rows = sqlx::query(
        "SELECT * FROM bulk_devices WHERE bulk_ref = ? AND status IS NOT NULL
           AND device_id IN (SELECT value FROM json_each(?))",
    )
    .bind(bulk_ref.as_str())
    .bind(ids_json(&ids))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    rows::outcomes_in_order(&ids, &rows)
}

pub(super) async fn record_outcome(
    s: &SqliteRunStore,
    bulk_ref: &BulkRef,
    outcome: DeviceOutcome,
) -> Result<OutcomeRecorded> {
    rules::check_outcome(&outcome)?;
    let mut tx = s.db.begin_write().await?;
    let updated = sqlx::query(
        "UPDATE bulk_devices SET run_id = ?, status = ?, error_kind = ?, recorded_at = ?, truncated = ?
         WHERE bulk_ref = ? AND device_id = ? AND status IS NULL",
    )
    .bind(outcome.run_id.map(RunId::get))
    .bind(outcome.status.as_str())
    .bind(&outcome.error_kind)
    .bind(to_micros(outcome.recorded_at))
    .bind(outcome.truncated)
    .bind(bulk_ref.as_str())
    .bind(outcome.device_id.get())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let newly = updated.rows_affected() == 1;
    let (ok_inc, failed_inc, cancelled_inc) = rules::increments(newly, outcome.status);
    let row = sqlx::query(
        "UPDATE bulks SET ok = ok + ?1, failed = failed + ?2, cancelled = cancelled + ?3,
             finished_at = CASE WHEN ?4 AND ok + ?1 + failed + ?2 + cancelled + ?3 = total THEN ?5 ELSE finished_at END
         WHERE ref = ?6 RETURNING total, ok, failed, cancelled",
    )
    .bind(ok_inc)
    .bind(failed_inc)
    .bind(cancelled_inc)
    .bind(newly)
    .bind(to_micros(outcome.recorded_at))
    .bind(bulk_ref.as_str())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?
    .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
    if !newly {
        let member = sqlx::query("SELECT 1 FROM bulk_devices WHERE bulk_ref = ? AND device_id = ?")
            .bind(bulk_ref.as_str())
            .bind(outcome.device_id.get())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if member.is_none() {
            return Err(rules::not_a_member(bulk_ref, outcome.device_id));
        }
    }
    tx.commit().await.map_err(db)?;
    rules::outcome_recorded(newly, &row)
}

pub(super) async fn cancel_bulk(
    s: &SqliteRunStore,
    bulk_ref: &BulkRef,
    now: DateTime<Utc>,
) -> Result<BulkCancelled> {
    let t = to_micros(now);
    let mut tx = s.db.begin_write().await?;
    let marked = sqlx::query(
        "UPDATE bulks SET cancelled_at = ? WHERE ref = ? AND cancelled_at IS NULL AND finished_at IS NULL",
    )
    .bind(t)
    .bind(bulk_ref.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected()
        == 1;
    if !marked {
        let row = sqlx::query("SELECT total, ok, failed, cancelled FROM bulks WHERE ref = ?")
            .bind(bulk_ref.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
        return rules::not_cancelled_now(&row);
    }
    // Devices not started: no outcome and no running run of this bulk.
    let n = sqlx::query(
        "UPDATE bulk_devices SET status = 'cancelled', error_kind = 'cancelled', recorded_at = ?1,
             run_id = (SELECT max(r.id) FROM runs r WHERE r.bulk_ref = ?2 AND r.device_id = bulk_devices.device_id)
         WHERE bulk_ref = ?2 AND status IS NULL
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.bulk_ref = ?2
                           AND r.device_id = bulk_devices.device_id AND r.status = 'running')",
    )
    .bind(t)
    .bind(bulk_ref.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected() as i64;
    let row = sqlx::query(
        "UPDATE bulks SET cancelled = cancelled + ?1,
             finished_at = CASE WHEN ?1 > 0 AND ok + failed + cancelled + ?1 = total THEN ?2 ELSE finished_at END
         WHERE ref = ?3 RETURNING total, ok, failed, cancelled",
    )
    .bind(n)
    .bind(t)
    .bind(bulk_ref.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    rules::bulk_cancelled(n, &row)
}
