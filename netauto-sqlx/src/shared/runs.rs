//! Runs and their output chunks.

use chrono::{DateTime, Utc};
use netauto_core::{
    BulkRef, CancelRequests, ChunkAppended, DeviceId, Error, NewRun, OutputStream, Result, Run,
    RunChunk, RunFinish, RunId,
};

use crate::error::{db, missing_or_db};
use crate::rows;
use crate::rules::{self, clamp};
use crate::shared::bulks::raw;
use crate::sql::{Bind, Dialect, Pools, Portable, not_cancellable, not_running};

pub(crate) async fn create_run<P: Pools>(s: &P, run: NewRun, now: DateTime<Utc>) -> Result<Run> {
    // PostgreSQL share-locks the bulk's row: a concurrent `cancel_bulk` (which updates it
    // first) either commits before this reads it (the run is refused) or waits for this
    // insert to commit (and then sees the run as running). In SQLite the one writer makes
    // the check and the insert atomic with respect to `cancel_bulk`; it stores
    // `retention_ts` itself (PostgreSQL generates it).
    let row = sqlx::query::<P::DB>(P::DB::pick(
        "WITH b AS (SELECT cancelled_at FROM bulks WHERE ref = $4 FOR SHARE)
         INSERT INTO runs (device_id, command, requested_by, bulk_ref, status, inserted_at, started_at)
         SELECT $1, $2, $3, $4, 'running', $5, $5
         WHERE NOT EXISTS (SELECT 1 FROM b WHERE cancelled_at IS NOT NULL)
         RETURNING *",
        "INSERT INTO runs (device_id, command, requested_by, bulk_ref, status, inserted_at, started_at, retention_ts)
         SELECT $1, $2, $3, $4, 'running', $5, $5, $5
         WHERE NOT EXISTS (SELECT 1 FROM bulks WHERE ref = $4 AND cancelled_at IS NOT NULL)
         RETURNING *",
    ))
    .int(run.device_id.get())
    .text(&run.command)
    .text(&run.requested_by)
    .opt_text(run.bulk_ref.as_ref().map(BulkRef::as_str))
    .time(now)
    .fetch_optional(P::DB::pool(s.writer()))
    .await
    .map_err(|e| missing_or_db(e, || Error::device_not_found(run.device_id)))?;
    rules::inserted_run(row, run.bulk_ref)
}

pub(crate) async fn append_chunk<P: Pools>(
    s: &P,
    run_id: RunId,
    stream: OutputStream,
    data: &[u8],
    now: DateTime<Utc>,
) -> Result<ChunkAppended> {
    let mut tx = s.begin_write().await?;
    let Some(counted) = sqlx::query::<P::DB>(
        "UPDATE runs SET bytes = bytes + $1, chunks = chunks + 1 WHERE id = $2 AND status = 'running'
         RETURNING chunks, bytes",
    )
    .int(data.len() as i64)
    .int(run_id.get())
    .fetch_optional(P::DB::conn(&mut *tx))
    .await
    .map_err(db)?
    else {
        drop(tx);
        return Err(not_running(P::DB::pool(s.writer()), run_id).await);
    };
    let (seq, appended) = rules::chunk_appended(&counted)?;
    // (In SQLite the run, just updated in this transaction, cannot be gone.)
    sqlx::query::<P::DB>(
        "INSERT INTO run_chunks (run_id, seq, stream, data, inserted_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .int(run_id.get())
    .int(seq)
    .text(stream.as_str())
    .bytes(data)
    .time(now)
    .execute(P::DB::conn(&mut *tx))
    .await
    .map_err(|e| missing_or_db(e, || Error::RunGone(run_id)))?;
    crate::shared::search::index_chunk::<P::DB>(&mut *tx, run_id.get(), seq, data).await?;
    tx.commit().await.map_err(db)?;
    Ok(appended)
}

pub(crate) async fn finish_run<P: Pools>(
    s: &P,
    run_id: RunId,
    finish: RunFinish,
    now: DateTime<Utc>,
) -> Result<Run> {
    rules::check_finish(&finish)?;
    let finished = sqlx::query::<P::DB>(P::DB::pick(
        "UPDATE runs SET status = $1, exit_status = $2, error_kind = $3, error_message = $4, finished_at = $5,
             truncated = $7, credential_ref = $8, redacted = $9
         WHERE id = $6 AND status = 'running' RETURNING *",
        "UPDATE runs SET status = $1, exit_status = $2, error_kind = $3, error_message = $4, finished_at = $5,
             truncated = $7, credential_ref = $8, redacted = $9, retention_ts = $5
         WHERE id = $6 AND status = 'running' RETURNING *",
    ))
    .text(finish.status.as_str())
    .opt_int32(finish.exit_status)
    .opt_text(finish.error_kind.as_deref())
    .opt_text(finish.error_message.as_deref())
    .time(now)
    .int(run_id.get())
    .flag(finish.truncated)
    .opt_text(finish.credential_ref.as_deref())
    .flag(finish.redacted)
    .fetch_optional(P::DB::pool(s.writer()))
    .await
    .map_err(db)?;
    match finished {
        Some(r) => rows::run(&r),
        None => Err(not_running(P::DB::pool(s.writer()), run_id).await),
    }
}

pub(crate) async fn request_run_cancel<P: Pools>(
    s: &P,
    run_id: RunId,
    now: DateTime<Utc>,
) -> Result<Run> {
    let updated = sqlx::query::<P::DB>(
        "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, $1)
         WHERE id = $2 AND status = 'running' RETURNING *",
    )
    .time(now)
    .int(run_id.get())
    .fetch_optional(P::DB::pool(s.writer()))
    .await
    .map_err(db)?;
    match updated {
        Some(r) => rows::run(&r),
        None => Err(not_cancellable(P::DB::pool(s.writer()), run_id).await),
    }
}

pub(crate) async fn cancel_requests<P: Pools>(
    s: &P,
    bulks: &[BulkRef],
    runs: &[RunId],
) -> Result<CancelRequests> {
    let refs: Vec<&str> = bulks.iter().map(BulkRef::as_str).collect();
    let ids: Vec<i64> = runs.iter().map(|r| r.get()).collect();
    let cancelled_bulks = if refs.is_empty() {
        Vec::new()
    } else {
        sqlx::query::<P::DB>(P::DB::pick(
            "SELECT ref FROM bulks WHERE ref = ANY($1) AND cancelled_at IS NOT NULL",
            "SELECT ref FROM bulks WHERE ref IN (SELECT value FROM json_each($1)) AND cancelled_at IS NOT NULL",
        ))
        .texts(&refs)
        .fetch_all(P::DB::pool(s.reader()))
        .await
        .map_err(db)?
    };
    let cancelled_runs = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query::<P::DB>(P::DB::pick(
            "SELECT id FROM runs WHERE id = ANY($1) AND cancel_requested_at IS NOT NULL",
            "SELECT id FROM runs WHERE id IN (SELECT value FROM json_each($1)) AND cancel_requested_at IS NOT NULL",
        ))
        .ids(&ids)
        .fetch_all(P::DB::pool(s.reader()))
        .await
        .map_err(db)?
    };
    rules::cancel_requests(&cancelled_bulks, &cancelled_runs)
}

pub(crate) async fn run<P: Pools>(s: &P, id: RunId) -> Result<Run> {
    sqlx::query::<P::DB>("SELECT * FROM runs WHERE id = $1")
        .int(id.get())
        .fetch_optional(P::DB::pool(s.reader()))
        .await
        .map_err(db)?
        .map_or_else(|| Err(Error::run_not_found(id)), |r| rows::run(&r))
}

pub(crate) async fn chunks<P: Pools>(
    s: &P,
    run_id: RunId,
    from_seq: u64,
    limit: usize,
) -> Result<Vec<RunChunk>> {
    let page = sqlx::query::<P::DB>(
        "SELECT * FROM run_chunks WHERE run_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
    )
    .int(run_id.get())
    .int(clamp(from_seq))
    .int(clamp(limit))
    .fetch_all(P::DB::pool(s.reader()))
    .await
    .map_err(db)?;
    page.iter().map(|r| rows::chunk(run_id, r)).collect()
}

pub(crate) async fn device_runs<P: Pools>(
    s: &P,
    device_id: DeviceId,
    limit: usize,
) -> Result<Vec<Run>> {
    let latest = sqlx::query::<P::DB>(
        "SELECT * FROM runs WHERE device_id = $1 ORDER BY inserted_at DESC, id DESC LIMIT $2",
    )
    .int(device_id.get())
    .int(clamp(limit))
    .fetch_all(P::DB::pool(s.reader()))
    .await
    .map_err(db)?;
    latest.iter().map(rows::run).collect()
}

pub(crate) async fn bulk_runs<P: Pools>(
    s: &P,
    bulk_ref: &BulkRef,
    device_ids: &[DeviceId],
) -> Result<Vec<Run>> {
    let of_bulk = sqlx::query::<P::DB>(P::DB::pick(
        "SELECT * FROM runs WHERE bulk_ref = $1 AND device_id = ANY($2) ORDER BY id",
        "SELECT * FROM runs WHERE bulk_ref = $1 AND device_id IN (SELECT value FROM json_each($2)) ORDER BY id",
    ))
    .text(bulk_ref.as_str())
    .ids(&raw(device_ids))
    .fetch_all(P::DB::pool(s.reader()))
    .await
    .map_err(db)?;
    of_bulk.iter().map(rows::run).collect()
}
