//! The job queue in SQLite ([`SqliteJobQueue`]). Every write runs on the one writer
//! connection, most in a `BEGIN IMMEDIATE` transaction, so claims are exclusive and unique
//! keys race-free.

use chrono::{DateTime, Utc};
use netauto_core::{
    ClaimRequest, Enqueued, Error, FailAction, Job, JobFailure, JobFilter, JobId, JobState, NewJob,
    Result,
};
use sqlx::{AssertSqlSafe, SqliteConnection};

use super::Db;
use super::columns::to_micros;
use crate::error::{db, json};
use crate::rows;
use crate::rules::clamp;
use crate::shared::queue::COMPLETE;
use crate::sql::fence_error;

pub(super) use crate::shared::queue::{
    cancel, complete, enqueue_all, heartbeat, job, prune, release,
};

/// A job that holds its unique key.
const LIVE_KEY: &str = "state NOT IN ('discarded', 'cancelled')";

/// Inserts one validated job inside the caller's transaction, or answers the job holding
/// its unique key.
pub(super) async fn insert_job(
    conn: &mut SqliteConnection,
    job: NewJob,
    now: DateTime<Utc>,
) -> Result<Enqueued> {
    if let Some(key) = &job.unique_key {
        let existing = sqlx::query(AssertSqlSafe(format!(
            "SELECT * FROM jobs WHERE unique_key = ? AND {LIVE_KEY}"
        )))
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        if let Some(row) = existing {
            return Ok(Enqueued::Existing(rows::job(&row)?));
        }
    }
    let state = job.initial_state(now);
    let row = sqlx::query(
        "INSERT INTO jobs (queue, worker, args, state, max_attempts, priority, inserted_at, scheduled_at, unique_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(&job.queue)
    .bind(&job.worker)
    .bind(serde_json::to_string(&job.args).map_err(json)?)
    .bind(state.as_str())
    .bind(i64::from(job.max_attempts))
    .bind(i64::from(job.priority))
    .bind(to_micros(now))
    .bind(to_micros(job.scheduled_at.unwrap_or(now)))
    .bind(&job.unique_key)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    Ok(Enqueued::Inserted(rows::job(&row)?))
}

pub(super) async fn enqueue(q: &Db, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
    enqueue_all(q, vec![job], now)
        .await?
        .pop()
        .ok_or_else(|| Error::backend("enqueueing one job answered none"))
}

pub(super) async fn claim(q: &Db, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Job>> {
    let lease_until = now + req.lease;
    let mut tx = q.begin_write().await?;
    let rows = sqlx::query(
        "UPDATE jobs SET state = 'executing', attempt = attempt + 1, attempted_at = ?1,
             attempted_by = ?2, lease_expires_at = ?3
         WHERE id IN (
             SELECT id FROM jobs
             WHERE queue = ?4 AND state IN ('available', 'scheduled', 'retryable') AND scheduled_at <= ?1
             ORDER BY priority, scheduled_at, id
             LIMIT ?5)
         RETURNING *",
    )
    .bind(to_micros(now))
    .bind(&req.claimer)
    .bind(to_micros(lease_until))
    .bind(&req.queue)
    .bind(clamp(req.limit))
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    rows::claimed(&rows)
}

pub(super) async fn complete_many(
    q: &Db,
    attempts: &[(JobId, u32)],
    now: DateTime<Utc>,
) -> Result<Vec<JobId>> {
    // One transaction for the whole batch: one commit instead of one per job.
    let mut tx = q.begin_write().await?;
    let mut done = Vec::with_capacity(attempts.len());
    for &(id, attempt) in attempts {
        let r = sqlx::query(COMPLETE)
            .bind(to_micros(now))
            .bind(id.get())
            .bind(i64::from(attempt))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 1 {
            done.push(id);
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(done)
}

pub(super) async fn fail(
    q: &Db,
    id: JobId,
    attempt: u32,
    error: &str,
    action: FailAction,
    now: DateTime<Utc>,
) -> Result<JobState> {
    let failure = serde_json::to_string(&JobFailure {
        attempt,
        at: now,
        error: error.to_owned(),
    })
    .map_err(json)?;
    let retry_at = match action {
        FailAction::RetryAt(at) => Some(to_micros(at)),
        FailAction::Discard => None,
    };
    let row = sqlx::query(
        "UPDATE jobs SET
             errors = json_insert(errors, '$[#]', json(?1)),
             lease_expires_at = NULL,
             state = CASE WHEN ?2 IS NOT NULL AND attempt < max_attempts THEN 'retryable' ELSE 'discarded' END,
             scheduled_at = CASE WHEN ?2 IS NOT NULL AND attempt < max_attempts THEN ?2 ELSE scheduled_at END,
             finished_at = CASE WHEN ?2 IS NOT NULL AND attempt < max_attempts THEN NULL ELSE ?3 END
         WHERE id = ?4 AND attempt = ?5 AND state = 'executing'
         RETURNING state",
    )
    .bind(failure)
    .bind(retry_at)
    .bind(to_micros(now))
    .bind(id.get())
    .bind(i64::from(attempt))
    .fetch_optional(&q.writer)
    .await
    .map_err(db)?;
    match row {
        Some(r) => rows::job_state(&r),
        None => Err(fence_error(&q.reader, id, attempt).await),
    }
}

pub(super) async fn rescue_expired(q: &Db, now: DateTime<Utc>) -> Result<Vec<JobId>> {
    let failure = serde_json::to_string(&JobFailure {
        attempt: 0,
        at: now,
        error: "lease expired and no attempts remain".into(),
    })
    .map_err(json)?;
    let rows = sqlx::query(
        "UPDATE jobs SET
             lease_expires_at = NULL,
             state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
             finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE ?1 END,
             errors = CASE WHEN attempt < max_attempts THEN errors
                      ELSE json_insert(errors, '$[#]', json_set(json(?2), '$.attempt', attempt)) END
         WHERE state = 'executing' AND lease_expires_at < ?1
         RETURNING id",
    )
    .bind(to_micros(now))
    .bind(failure)
    .fetch_all(&q.writer)
    .await
    .map_err(db)?;
    rows::sorted_ids(&rows, JobId)
}

pub(super) async fn list(q: &Db, filter: &JobFilter) -> Result<Vec<Job>> {
    let mut sql = String::from("SELECT * FROM jobs WHERE 1 = 1");
    if filter.queue.is_some() {
        sql.push_str(" AND queue = ?");
    }
    if filter.worker.is_some() {
        sql.push_str(" AND worker = ?");
    }
    if !filter.states.is_empty() {
        // The states are the queue's own names, not input: safe to write into the SQL.
        let states: Vec<String> = filter
            .states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        sql.push_str(&format!(" AND state IN ({})", states.join(", ")));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if let Some(queue) = &filter.queue {
        query = query.bind(queue);
    }
    if let Some(worker) = &filter.worker {
        query = query.bind(worker);
    }
    let limit = filter.limit.map_or(i64::MAX, clamp);
    let rows = query.bind(limit).fetch_all(&q.reader).await.map_err(db)?;
    rows.iter().map(rows::job).collect()
}
