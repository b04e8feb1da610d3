//! Bulks, their devices' outcomes and their cancellation.

use chrono::{DateTime, Utc};
use netauto_core::bulk::dedup_ids;
use netauto_core::{
    Bulk, BulkCancelled, BulkQuery, BulkRef, BulkState, BulkStatus, BulkSummary, DeviceId,
    DeviceOutcome, Enqueued, Error, NewBulk, NewJob, OutcomeRecorded, Result, RunId,
};

use crate::error::{db, exists_or_db};
use crate::rows::{self, Columns, StoredRow};
use crate::rules::{self, clamp};
use crate::sql::{Bind, Dialect, InsertJob, Kind, Pools, Portable, bulk_exists};

/// `ids` as bound.
pub(crate) fn raw(ids: &[DeviceId]) -> Vec<i64> {
    ids.iter().map(|d| d.get()).collect()
}

pub(crate) async fn create_bulk<P: Pools>(
    s: &P,
    bulk: NewBulk,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Result<(Bulk, Vec<Enqueued>)> {
    rules::validate_jobs(&jobs)?;
    let device_ids = dedup_ids(&bulk.device_ids);
    let mut tx = s.begin_write().await?;
    // The stored timestamp (microseconds) is the one answered.
    let created_at = sqlx::query::<P::DB>(
        "INSERT INTO bulks (ref, command, requested_by, created_at, total, timeout_ms, max_output,
                            answer_prompts, parent_ref)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at",
    )
    .text(bulk.bulk_ref.as_str())
    .text(&bulk.command)
    .text(&bulk.requested_by)
    .time(now)
    .int(device_ids.len() as i64)
    .opt_int(bulk.limits.timeout_ms.map(clamp))
    .opt_int(bulk.limits.max_output.map(clamp))
    .flag(bulk.limits.answer_prompts)
    .opt_text(bulk.parent.as_ref().map(BulkRef::as_str))
    .fetch_one(P::DB::conn(&mut *tx))
    .await
    .map_err(|e| exists_or_db(e, "bulk", bulk.bulk_ref.to_string()))?
    .time("created_at")?;
    sqlx::query::<P::DB>(P::DB::pick(
        "INSERT INTO bulk_devices (bulk_ref, position, device_id)
         SELECT $1, ord - 1, id FROM unnest($2::bigint[]) WITH ORDINALITY AS t(id, ord)",
        "INSERT INTO bulk_devices (bulk_ref, position, device_id) SELECT $1, key, value FROM json_each($2)",
    ))
    .text(bulk.bulk_ref.as_str())
    .ids(&raw(&device_ids))
    .execute(P::DB::conn(&mut *tx))
    .await
    .map_err(db)?;
    let enqueued = rules::insert_each(&mut *tx, jobs, now, P::DB::insert_job).await?;
    tx.commit().await.map_err(db)?;
    Ok((rules::new_bulk(bulk, device_ids, created_at), enqueued))
}

pub(crate) async fn bulk_state<P: Pools>(s: &P, bulk_ref: &BulkRef) -> Result<BulkState> {
    let row = sqlx::query::<P::DB>(
        "SELECT created_at, total, ok, failed, cancelled, finished_at, cancelled_at FROM bulks WHERE ref = $1",
    )
    .text(bulk_ref.as_str())
    .fetch_optional(P::DB::pool(s.reader()))
    .await
    .map_err(db)?
    .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
    rows::bulk_state(&row)
}

/// Bulks newest first, filtered: the statement holds only the conditions asked for, so each
/// list is one walk down the `bulks_newest` index (or `bulks_requester`) from the cursor.
pub(crate) async fn list_bulks<P: Pools>(s: &P, q: &BulkQuery) -> Result<Vec<BulkSummary>> {
    let mut sql = String::from(
        "SELECT ref, command, requested_by, created_at, total, ok, failed, cancelled, finished_at, \
         cancelled_at, parent_ref FROM bulks WHERE TRUE",
    );
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if q.requested_by.is_some() {
        sql.push_str(&format!(" AND requested_by = {}", next()));
    }
    match q.status {
        None => {}
        Some(BulkStatus::Cancelled) => sql.push_str(" AND cancelled_at IS NOT NULL"),
        Some(BulkStatus::Finished) => {
            sql.push_str(" AND cancelled_at IS NULL AND ok + failed + cancelled >= total")
        }
        Some(BulkStatus::Running) => {
            sql.push_str(" AND cancelled_at IS NULL AND ok + failed + cancelled < total")
        }
    }
    if q.command.is_some() {
        let op = P::DB::pick("ILIKE", "LIKE");
        sql.push_str(&format!(" AND command {op} {} ESCAPE '\\'", next()));
    }
    if q.parent.is_some() {
        sql.push_str(&format!(" AND parent_ref = {}", next()));
    }
    if q.since.is_some() {
        sql.push_str(&format!(" AND created_at >= {}", next()));
    }
    if q.until.is_some() {
        sql.push_str(&format!(" AND created_at < {}", next()));
    }
    if q.after.is_some() {
        let (t, r) = (next(), next());
        sql.push_str(&format!(" AND (created_at, ref) < ({t}, {r})"));
    }
    sql.push_str(&format!(
        " ORDER BY created_at DESC, ref DESC LIMIT {}",
        q.page_size()
    ));
    let pattern = q.command.as_deref().map(|c| {
        let escaped = c
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    // Safe: the statement is assembled from fixed fragments; every value is a bound parameter.
    let mut query = sqlx::query::<P::DB>(sqlx::AssertSqlSafe(sql));
    if let Some(r) = &q.requested_by {
        query = query.text(r);
    }
    if let Some(p) = &pattern {
        query = query.text(p);
    }
    if let Some(p) = &q.parent {
        query = query.text(p.as_str());
    }
    if let Some(t) = q.since {
        query = query.time(t);
    }
    if let Some(t) = q.until {
        query = query.time(t);
    }
    if let Some(a) = &q.after {
        query = query.time(a.created_at).text(a.bulk_ref.as_str());
    }
    let found = query.fetch_all(P::DB::pool(s.reader())).await.map_err(db)?;
    found
        .iter()
        .map(|r| {
            Ok(BulkSummary {
                bulk_ref: rows::bulk_ref(&r.text("ref")?)?,
                command: r.text("command")?,
                requested_by: r.text("requested_by")?,
                created_at: r.time("created_at")?,
                counters: rows::counters(r)?,
                finished_at: r.opt_time("finished_at")?,
                cancelled_at: r.opt_time("cancelled_at")?,
                parent: r
                    .opt_text("parent_ref")?
                    .as_deref()
                    .map(rows::bulk_ref)
                    .transpose()?,
            })
        })
        .collect()
}

pub(crate) async fn bulk<P: Pools>(s: &P, bulk_ref: &BulkRef) -> Result<Bulk> {
    // One connection: in SQLite a reader snapshot for the bulk and its members together.
    let mut conn = s.reader().acquire().await.map_err(db)?;
    let row = sqlx::query::<P::DB>("SELECT * FROM bulks WHERE ref = $1")
        .text(bulk_ref.as_str())
        .fetch_optional(P::DB::conn(&mut *conn))
        .await
        .map_err(db)?
        .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
    let members =
        sqlx::query::<P::DB>("SELECT * FROM bulk_devices WHERE bulk_ref = $1 ORDER BY position")
            .text(bulk_ref.as_str())
            .fetch_all(P::DB::conn(&mut *conn))
            .await
            .map_err(db)?;
    rows::bulk(bulk_ref, &row, &members)
}

pub(crate) async fn device_outcomes<P: Pools>(
    s: &P,
    bulk_ref: &BulkRef,
    device_ids: &[DeviceId],
) -> Result<Vec<DeviceOutcome>> {
    let mut conn = s.reader().acquire().await.map_err(db)?;
    bulk_exists(P::DB::conn(&mut *conn), bulk_ref).await?;
    let ids = dedup_ids(device_ids);
    let recorded = sqlx::query::<P::DB>(P::DB::pick(
        "SELECT * FROM bulk_devices WHERE bulk_ref = $1 AND status IS NOT NULL AND device_id = ANY($2)",
        "SELECT * FROM bulk_devices WHERE bulk_ref = $1 AND status IS NOT NULL
           AND device_id IN (SELECT value FROM json_each($2))",
    ))
    .text(bulk_ref.as_str())
    .ids(&raw(&ids))
    .fetch_all(P::DB::conn(&mut *conn))
    .await
    .map_err(db)?;
    rows::outcomes_in_order(&ids, &recorded)
}

pub(crate) async fn record_outcome<P: Pools>(
    s: &P,
    bulk_ref: &BulkRef,
    outcome: DeviceOutcome,
) -> Result<OutcomeRecorded> {
    rules::check_outcome(&outcome)?;
    let mut tx = s.begin_write().await?;
    let newly = sqlx::query::<P::DB>(
        "UPDATE bulk_devices SET run_id = $1, status = $2, error_kind = $3, recorded_at = $4, truncated = $7
         WHERE bulk_ref = $5 AND device_id = $6 AND status IS NULL",
    )
    .opt_int(outcome.run_id.map(RunId::get))
    .text(outcome.status.as_str())
    .opt_text(outcome.error_kind.as_deref())
    .time(outcome.recorded_at)
    .text(bulk_ref.as_str())
    .int(outcome.device_id.get())
    .flag(outcome.truncated)
    .execute(P::DB::conn(&mut *tx))
    .await
    .map(|done| P::DB::rows_affected(&done))
    .map_err(db)?
        == 1;
    let (ok_inc, failed_inc, cancelled_inc) = rules::increments(newly, outcome.status);
    // In PostgreSQL the row lock on the bulk serializes concurrent recorders (in SQLite the
    // one writer does): exactly one of them sees the counters reach the total.
    let counted = sqlx::query::<P::DB>(
        "UPDATE bulks SET ok = ok + $1, failed = failed + $2, cancelled = cancelled + $6,
             finished_at = CASE WHEN $3 AND ok + $1 + failed + $2 + cancelled + $6 = total THEN $4 ELSE finished_at END
         WHERE ref = $5 RETURNING total, ok, failed, cancelled",
    )
    .int(ok_inc)
    .int(failed_inc)
    .flag(newly)
    .time(outcome.recorded_at)
    .text(bulk_ref.as_str())
    .int(cancelled_inc)
    .fetch_optional(P::DB::conn(&mut *tx))
    .await
    .map_err(db)?
    .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
    if !newly
        && sqlx::query::<P::DB>("SELECT 1 FROM bulk_devices WHERE bulk_ref = $1 AND device_id = $2")
            .text(bulk_ref.as_str())
            .int(outcome.device_id.get())
            .fetch_optional(P::DB::conn(&mut *tx))
            .await
            .map_err(db)?
            .is_none()
    {
        return Err(rules::not_a_member(bulk_ref, outcome.device_id));
    }
    tx.commit().await.map_err(db)?;
    rules::outcome_recorded(newly, &counted)
}

pub(crate) async fn cancel_bulk<P: Pools>(
    s: &P,
    bulk_ref: &BulkRef,
    now: DateTime<Utc>,
) -> Result<BulkCancelled> {
    let mut tx = s.begin_write().await?;
    if P::DB::KIND == Kind::Postgres {
        // Lock order bulk_devices → bulks, as `record_outcome` takes them, so the two never
        // deadlock. The pending rows are locked first (a recorder holding one finishes
        // before this goes on), then the bulk row is marked: from then on `create_run`
        // refuses runs of this bulk, and a run it inserted before is committed and seen as
        // running below. (SQLite's one writer serializes all of this already.)
        sqlx::query::<P::DB>(
            "SELECT device_id FROM bulk_devices WHERE bulk_ref = $1 AND status IS NULL
             ORDER BY device_id FOR UPDATE",
        )
        .text(bulk_ref.as_str())
        .fetch_all(P::DB::conn(&mut *tx))
        .await
        .map_err(db)?;
    }
    let marked = sqlx::query::<P::DB>(
        "UPDATE bulks SET cancelled_at = $1 WHERE ref = $2 AND cancelled_at IS NULL AND finished_at IS NULL",
    )
    .time(now)
    .text(bulk_ref.as_str())
    .execute(P::DB::conn(&mut *tx))
    .await
    .map(|done| P::DB::rows_affected(&done))
    .map_err(db)?;
    if marked != 1 {
        let current =
            sqlx::query::<P::DB>("SELECT total, ok, failed, cancelled FROM bulks WHERE ref = $1")
                .text(bulk_ref.as_str())
                .fetch_optional(P::DB::conn(&mut *tx))
                .await
                .map_err(db)?
                .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
        return rules::not_cancelled_now(&current);
    }
    // Devices not started: no outcome and no running run of this bulk.
    let n = sqlx::query::<P::DB>(P::DB::pick(
        "UPDATE bulk_devices bd SET status = 'cancelled', error_kind = 'cancelled', recorded_at = $1,
             run_id = (SELECT max(r.id) FROM runs r WHERE r.bulk_ref = $2 AND r.device_id = bd.device_id)
         WHERE bd.bulk_ref = $2 AND bd.status IS NULL
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.bulk_ref = $2
                           AND r.device_id = bd.device_id AND r.status = 'running')",
        "UPDATE bulk_devices SET status = 'cancelled', error_kind = 'cancelled', recorded_at = $1,
             run_id = (SELECT max(r.id) FROM runs r WHERE r.bulk_ref = $2 AND r.device_id = bulk_devices.device_id)
         WHERE bulk_ref = $2 AND status IS NULL
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.bulk_ref = $2
                           AND r.device_id = bulk_devices.device_id AND r.status = 'running')",
    ))
    .time(now)
    .text(bulk_ref.as_str())
    .execute(P::DB::conn(&mut *tx))
    .await
    .map(|done| P::DB::rows_affected(&done))
    .map_err(db)? as i64;
    let after = sqlx::query::<P::DB>(
        "UPDATE bulks SET cancelled = cancelled + $1,
             finished_at = CASE WHEN $1 > 0 AND ok + failed + cancelled + $1 = total THEN $2 ELSE finished_at END
         WHERE ref = $3 RETURNING total, ok, failed, cancelled",
    )
    .int(n)
    .time(now)
    .text(bulk_ref.as_str())
    .fetch_one(P::DB::conn(&mut *tx))
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    rules::bulk_cancelled(n, &after)
}
