//! Runs and their output chunks in [`SqliteRunStore`].

use chrono::{DateTime, Utc};
use netauto_core::{
    BulkRef, CancelRequests, ChunkAppended, DeviceId, Error, NewRun, OutputStream, Result, Run,
    RunChunk, RunFinish, RunId,
};

use super::Db;
use super::columns::to_micros;
use crate::error::{db, missing_or_db};
use crate::rows;
use crate::rules::{self, clamp};
use crate::shared::bulks::raw;
use crate::sql::Dialect;
use crate::sql::{not_cancellable, not_running};
use sqlx::Sqlite;

pub(super) async fn create_run(s: &Db, run: NewRun, now: DateTime<Utc>) -> Result<Run> {
    // One writer: the check that the bulk is not cancelled and the insert are atomic with
    // respect to `cancel_bulk`.
    let row = sqlx::query(
        "INSERT INTO runs (device_id, command, requested_by, bulk_ref, status, inserted_at, started_at, retention_ts)
         SELECT ?1, ?2, ?3, ?4, 'running', ?5, ?5, ?5
         WHERE NOT EXISTS (SELECT 1 FROM bulks WHERE ref = ?4 AND cancelled_at IS NOT NULL)
         RETURNING *",
    )
    .bind(run.device_id.get())
    .bind(&run.command)
    .bind(&run.requested_by)
    .bind(run.bulk_ref.as_ref().map(BulkRef::as_str))
    .bind(to_micros(now))
    .fetch_optional(&s.writer)
    .await
    .map_err(|e| missing_or_db(e, || Error::device_not_found(run.device_id)))?;
    rules::inserted_run(row, run.bulk_ref)
}

pub(super) async fn append_chunk(
    s: &Db,
    run_id: RunId,
    stream: OutputStream,
    data: &[u8],
    now: DateTime<Utc>,
) -> Result<ChunkAppended> {
    let mut tx = s.begin_write().await?;
    let row = sqlx::query(
        "UPDATE runs SET bytes = bytes + ?, chunks = chunks + 1 WHERE id = ? AND status = 'running'
         RETURNING chunks, bytes",
    )
    .bind(data.len() as i64)
    .bind(run_id.get())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        drop(tx);
        return Err(not_running(&s.writer, run_id).await);
    };
    let (seq, appended) = rules::chunk_appended(&row)?;
    sqlx::query(
        "INSERT INTO run_chunks (run_id, seq, stream, data, inserted_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(run_id.get())
    .bind(seq)
    .bind(stream.as_str())
    .bind(data)
    .bind(to_micros(now))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(appended)
}

pub(super) async fn finish_run(
    s: &Db,
    run_id: RunId,
    finish: RunFinish,
    now: DateTime<Utc>,
) -> Result<Run> {
    rules::check_finish(&finish)?;
    let t = to_micros(now);
    let row = sqlx::query(
        "UPDATE runs SET status = ?, exit_status = ?, error_kind = ?, error_message = ?, truncated = ?,
             finished_at = ?, retention_ts = ?
         WHERE id = ? AND status = 'running' RETURNING *",
    )
    .bind(finish.status.as_str())
    .bind(finish.exit_status.map(i64::from))
    .bind(&finish.error_kind)
    .bind(&finish.error_message)
    .bind(finish.truncated)
    .bind(t)
    .bind(t)
    .bind(run_id.get())
    .fetch_optional(&s.writer)
    .await
    .map_err(db)?;
    match row {
        Some(r) => rows::run(&r),
        None => Err(not_running(&s.writer, run_id).await),
    }
}

pub(super) async fn request_run_cancel(s: &Db, run_id: RunId, now: DateTime<Utc>) -> Result<Run> {
    let row = sqlx::query(
        "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, ?)
         WHERE id = ? AND status = 'running' RETURNING *",
    )
    .bind(to_micros(now))
    .bind(run_id.get())
    .fetch_optional(&s.writer)
    .await
    .map_err(db)?;
    match row {
        Some(r) => rows::run(&r),
        None => Err(not_cancellable(&s.writer, run_id).await),
    }
}

pub(super) async fn cancel_requests(
    s: &Db,
    bulks: &[BulkRef],
    runs: &[RunId],
) -> Result<CancelRequests> {
    let mut cancelled_bulks = Vec::new();
    if !bulks.is_empty() {
        let refs: Vec<&str> = bulks.iter().map(BulkRef::as_str).collect();
        cancelled_bulks = sqlx::query(
            "SELECT ref FROM bulks WHERE ref IN (SELECT value FROM json_each(?)) AND cancelled_at IS NOT NULL",
        )
        .bind(serde_json::Value::from(refs).to_string())
        .fetch_all(&s.reader)
        .await
        .map_err(db)?;
    }
    let mut cancelled_runs = Vec::new();
    if !runs.is_empty() {
        let ids: Vec<i64> = runs.iter().map(|r| r.get()).collect();
        cancelled_runs = sqlx::query(
            "SELECT id FROM runs WHERE id IN (SELECT value FROM json_each(?)) AND cancel_requested_at IS NOT NULL",
        )
        .bind(serde_json::Value::from(ids).to_string())
        .fetch_all(&s.reader)
        .await
        .map_err(db)?;
    }
    rules::cancel_requests(&cancelled_bulks, &cancelled_runs)
}

pub(super) async fn run(s: &Db, id: RunId) -> Result<Run> {
    let row = sqlx::query("SELECT * FROM runs WHERE id = ?")
        .bind(id.get())
        .fetch_optional(&s.reader)
        .await
        .map_err(db)?;
    row.map_or_else(|| Err(Error::run_not_found(id)), |r| rows::run(&r))
}

pub(super) async fn chunks(
    s: &Db,
    run_id: RunId,
    from_seq: u64,
    limit: usize,
) -> Result<Vec<RunChunk>> {
    let rows =
        sqlx::query("SELECT * FROM run_chunks WHERE run_id = ? AND seq >= ? ORDER BY seq LIMIT ?")
            .bind(run_id.get())
            .bind(clamp(from_seq))
            .bind(clamp(limit))
            .fetch_all(&s.reader)
            .await
            .map_err(db)?;
    rows.iter().map(|r| rows::chunk(run_id, r)).collect()
}

pub(super) async fn device_runs(s: &Db, device_id: DeviceId, limit: usize) -> Result<Vec<Run>> {
    let rows = sqlx::query(
        "SELECT * FROM runs WHERE device_id = ? ORDER BY inserted_at DESC, id DESC LIMIT ?",
    )
    .bind(device_id.get())
    .bind(clamp(limit))
    .fetch_all(&s.reader)
    .await
    .map_err(db)?;
    rows.iter().map(rows::run).collect()
}

pub(super) async fn bulk_runs(
    s: &Db,
    bulk_ref: &BulkRef,
    device_ids: &[DeviceId],
) -> Result<Vec<Run>> {
    let rows = sqlx::query(
        "SELECT * FROM runs WHERE bulk_ref = ? AND device_id IN (SELECT value FROM json_each(?)) ORDER BY id",
    )
    .bind(bulk_ref.as_str())
    .bind(Sqlite::ids(&raw(device_ids)))
    .fetch_all(&s.reader)
    .await
    .map_err(db)?;
    rows.iter().map(rows::run).collect()
}
