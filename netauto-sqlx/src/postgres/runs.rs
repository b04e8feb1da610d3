//! Runs and their output chunks in [`PgRunStore`].

use chrono::{DateTime, Utc};
use netauto_core::{
    BulkRef, CancelRequests, ChunkAppended, DeviceId, Error, NewRun, OutputStream, Result, Run,
    RunChunk, RunFinish, RunId,
};

use super::PgPools;
use crate::error::{db, missing_or_db};
use crate::rows;
use crate::rules::{self, clamp};
use crate::shared::bulks::raw;
use crate::sql::{not_cancellable, not_running};

pub(super) async fn create_run(s: &PgPools, run: NewRun, now: DateTime<Utc>) -> Result<Run> {
    // The bulk's row is share-locked: a concurrent `cancel_bulk` (which updates it first)
    // either commits before this reads it (the run is refused) or waits for this insert
    // to commit (and then sees the run as running).
    let row = sqlx::query(
        "WITH b AS (SELECT cancelled_at FROM bulks WHERE ref = $4 FOR SHARE)
         INSERT INTO runs (device_id, command, requested_by, bulk_ref, status, inserted_at, started_at)
         SELECT $1, $2, $3, $4, 'running', $5, $5
         WHERE NOT EXISTS (SELECT 1 FROM b WHERE cancelled_at IS NOT NULL)
         RETURNING *",
    )
    .bind(run.device_id.get())
    .bind(&run.command)
    .bind(&run.requested_by)
    .bind(run.bulk_ref.as_ref().map(BulkRef::as_str))
    .bind(now)
    .fetch_optional(&s.pool)
    .await
    .map_err(|e| missing_or_db(e, || Error::device_not_found(run.device_id)))?;
    rules::inserted_run(row, run.bulk_ref)
}

pub(super) async fn append_chunk(
    s: &PgPools,
    run_id: RunId,
    stream: OutputStream,
    data: &[u8],
    now: DateTime<Utc>,
) -> Result<ChunkAppended> {
    let mut tx = s.pool.begin().await.map_err(db)?;
    let Some(counted) = sqlx::query(
        "UPDATE runs SET bytes = bytes + $1, chunks = chunks + 1 WHERE id = $2 AND status = 'running'
         RETURNING chunks, bytes",
    )
    .bind(data.len() as i64)
    .bind(run_id.get())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?
    else {
        drop(tx);
        return Err(not_running(&s.pool, run_id).await);
    };
    let (seq, appended) = rules::chunk_appended(&counted)?;
    sqlx::query(
        "INSERT INTO run_chunks (run_id, seq, stream, data, inserted_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(run_id.get())
    .bind(seq)
    .bind(stream.as_str())
    .bind(data)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| missing_or_db(e, || Error::RunGone(run_id)))?;
    tx.commit().await.map_err(db)?;
    Ok(appended)
}

pub(super) async fn finish_run(
    s: &PgPools,
    run_id: RunId,
    finish: RunFinish,
    now: DateTime<Utc>,
) -> Result<Run> {
    rules::check_finish(&finish)?;
    let finished = sqlx::query(
        "UPDATE runs SET status = $1, exit_status = $2, error_kind = $3, error_message = $4, finished_at = $5,
             truncated = $7
         WHERE id = $6 AND status = 'running' RETURNING *",
    )
    .bind(finish.status.as_str())
    .bind(finish.exit_status)
    .bind(&finish.error_kind)
    .bind(&finish.error_message)
    .bind(now)
    .bind(run_id.get())
    .bind(finish.truncated)
    .fetch_optional(&s.pool)
    .await
    .map_err(db)?;
    match finished {
        Some(r) => rows::run(&r),
        None => Err(not_running(&s.pool, run_id).await),
    }
}

pub(super) async fn request_run_cancel(
    s: &PgPools,
    run_id: RunId,
    now: DateTime<Utc>,
) -> Result<Run> {
    let updated = sqlx::query(
        "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, $1)
         WHERE id = $2 AND status = 'running' RETURNING *",
    )
    .bind(now)
    .bind(run_id.get())
    .fetch_optional(&s.pool)
    .await
    .map_err(db)?;
    match updated {
        Some(r) => rows::run(&r),
        None => Err(not_cancellable(&s.pool, run_id).await),
    }
}

pub(super) async fn cancel_requests(
    s: &PgPools,
    bulks: &[BulkRef],
    runs: &[RunId],
) -> Result<CancelRequests> {
    let refs: Vec<&str> = bulks.iter().map(BulkRef::as_str).collect();
    let ids: Vec<i64> = runs.iter().map(|r| r.get()).collect();
    let cancelled_bulks = if refs.is_empty() {
        Vec::new()
    } else {
        sqlx::query("SELECT ref FROM bulks WHERE ref = ANY($1) AND cancelled_at IS NOT NULL")
            .bind(&refs)
            .fetch_all(&s.pool)
            .await
            .map_err(db)?
    };
    let cancelled_runs = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query("SELECT id FROM runs WHERE id = ANY($1) AND cancel_requested_at IS NOT NULL")
            .bind(&ids)
            .fetch_all(&s.pool)
            .await
            .map_err(db)?
    };
    rules::cancel_requests(&cancelled_bulks, &cancelled_runs)
}

pub(super) async fn run(s: &PgPools, id: RunId) -> Result<Run> {
    sqlx::query("SELECT * FROM runs WHERE id = $1")
        .bind(id.get())
        .fetch_optional(&s.pool)
        .await
        .map_err(db)?
        .map_or_else(|| Err(Error::run_not_found(id)), |r| rows::run(&r))
}

pub(super) async fn chunks(
    s: &PgPools,
    run_id: RunId,
    from_seq: u64,
    limit: usize,
) -> Result<Vec<RunChunk>> {
    let page = sqlx::query(
        "SELECT * FROM run_chunks WHERE run_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
    )
    .bind(run_id.get())
    .bind(clamp(from_seq))
    .bind(clamp(limit))
    .fetch_all(&s.pool)
    .await
    .map_err(db)?;
    page.iter().map(|r| rows::chunk(run_id, r)).collect()
}

pub(super) async fn device_runs(
    s: &PgPools,
    device_id: DeviceId,
    limit: usize,
) -> Result<Vec<Run>> {
    let latest = sqlx::query(
        "SELECT * FROM runs WHERE device_id = $1 ORDER BY inserted_at DESC, id DESC LIMIT $2",
    )
    .bind(device_id.get())
    .bind(clamp(limit))
    .fetch_all(&s.pool)
    .await
    .map_err(db)?;
    latest.iter().map(rows::run).collect()
}

pub(super) async fn bulk_runs(
    s: &PgPools,
    bulk_ref: &BulkRef,
    device_ids: &[DeviceId],
) -> Result<Vec<Run>> {
    let of_bulk =
        sqlx::query("SELECT * FROM runs WHERE bulk_ref = $1 AND device_id = ANY($2) ORDER BY id")
            .bind(bulk_ref.as_str())
            .bind(raw(device_ids))
            .fetch_all(&s.pool)
            .await
            .map_err(db)?;
    of_bulk.iter().map(rows::run).collect()
}
