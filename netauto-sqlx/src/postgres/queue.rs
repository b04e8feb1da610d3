//! The job queue in PostgreSQL ([`PgJobQueue`]). Claims lock rows with
//! `FOR UPDATE SKIP LOCKED`, so any number of runners on any number of machines share one
//! queue without handing a job to two.

use chrono::{DateTime, Utc};
use netauto_core::{
    ClaimRequest, Enqueued, FailAction, Job, JobFailure, JobFilter, JobId, JobState, NewJob, Result,
};
use sqlx::PgConnection;
use sqlx::types::Json;

use super::PgPools;
use super::columns::int;
use crate::error::db;
use crate::rows::{self, StoredRow};
use crate::rules::clamp;
use crate::sql::fence_error;

pub(super) use crate::shared::queue::{
    cancel, complete, enqueue_all, heartbeat, job, prune, release,
};

/// Inserts one validated job inside the caller's transaction, or answers the job holding
/// its unique key.
pub(super) async fn insert_job(
    conn: &mut PgConnection,
    job: NewJob,
    now: DateTime<Utc>,
) -> Result<Enqueued> {
    let state = job.initial_state(now);
    loop {
        let inserted = sqlx::query(
            "INSERT INTO jobs (queue, worker, args, state, max_attempts, priority, inserted_at, scheduled_at, unique_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state NOT IN ('discarded', 'cancelled')
             DO NOTHING RETURNING *",
        )
        .bind(&job.queue)
        .bind(&job.worker)
        .bind(Json(&job.args))
        .bind(state.as_str())
        .bind(int(job.max_attempts))
        .bind(job.priority)
        .bind(now)
        .bind(job.scheduled_at.unwrap_or(now))
        .bind(&job.unique_key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        if let Some(row) = inserted {
            return Ok(Enqueued::Inserted(rows::job(&row)?));
        }
        let existing = sqlx::query(
            "SELECT * FROM jobs WHERE unique_key = $1 AND state NOT IN ('discarded', 'cancelled')",
        )
        .bind(&job.unique_key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        if let Some(row) = existing {
            return Ok(Enqueued::Existing(rows::job(&row)?));
        }
        // The holder was discarded or cancelled in between: try the insert again.
    }
}

pub(super) async fn enqueue(q: &PgPools, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
    job.validate()?;
    // No transaction: the insert is one statement.
    let mut conn = q.pool.acquire().await.map_err(db)?;
    insert_job(&mut conn, job, now).await
}

pub(super) async fn claim(q: &PgPools, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Job>> {
    let picked = sqlx::query(
        "WITH picked AS (
             SELECT id FROM jobs
             WHERE queue = $1 AND state IN ('available', 'scheduled', 'retryable') AND scheduled_at <= $2
             ORDER BY priority, scheduled_at, id
             LIMIT $3
             FOR UPDATE SKIP LOCKED)
         UPDATE jobs SET state = 'executing', attempt = jobs.attempt + 1, attempted_at = $2,
             attempted_by = $4, lease_expires_at = $5
         FROM picked WHERE jobs.id = picked.id
         RETURNING jobs.*",
    )
    .bind(&req.queue)
    .bind(now)
    .bind(clamp(req.limit))
    .bind(&req.claimer)
    .bind(now + req.lease)
    .fetch_all(&q.pool)
    .await
    .map_err(db)?;
    rows::claimed(&picked)
}

pub(super) async fn complete_many(
    q: &PgPools,
    attempts: &[(JobId, u32)],
    now: DateTime<Utc>,
) -> Result<Vec<JobId>> {
    let ids: Vec<i64> = attempts.iter().map(|(id, _)| id.get()).collect();
    let tries: Vec<i32> = attempts.iter().map(|(_, a)| int(*a)).collect();
    let completed = sqlx::query(
        "UPDATE jobs SET state = 'completed', finished_at = $3, lease_expires_at = NULL
         FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
         WHERE jobs.id = t.id AND jobs.attempt = t.attempt AND jobs.state = 'executing'
         RETURNING jobs.id",
    )
    .bind(ids)
    .bind(tries)
    .bind(now)
    .fetch_all(&q.pool)
    .await
    .map_err(db)?;
    completed.iter().map(|r| r.int("id").map(JobId)).collect()
}

pub(super) async fn fail(
    q: &PgPools,
    id: JobId,
    attempt: u32,
    error: &str,
    action: FailAction,
    now: DateTime<Utc>,
) -> Result<JobState> {
    let failure = Json(vec![JobFailure {
        attempt,
        at: now,
        error: error.to_owned(),
    }]);
    let retry_at = match action {
        FailAction::RetryAt(at) => Some(at),
        FailAction::Discard => None,
    };
    let failed = sqlx::query(
        "UPDATE jobs SET
             errors = errors || $1,
             lease_expires_at = NULL,
             state = CASE WHEN $2::timestamptz IS NOT NULL AND attempt < max_attempts THEN 'retryable' ELSE 'discarded' END,
             scheduled_at = CASE WHEN $2::timestamptz IS NOT NULL AND attempt < max_attempts THEN $2 ELSE scheduled_at END,
             finished_at = CASE WHEN $2::timestamptz IS NOT NULL AND attempt < max_attempts THEN NULL ELSE $3 END
         WHERE id = $4 AND attempt = $5 AND state = 'executing'
         RETURNING state",
    )
    .bind(failure)
    .bind(retry_at)
    .bind(now)
    .bind(id.get())
    .bind(int(attempt))
    .fetch_optional(&q.pool)
    .await
    .map_err(db)?;
    match failed {
        Some(r) => rows::job_state(&r),
        None => Err(fence_error(&q.pool, id, attempt).await),
    }
}

pub(super) async fn rescue_expired(q: &PgPools, now: DateTime<Utc>) -> Result<Vec<JobId>> {
    let rescued = sqlx::query(
        "UPDATE jobs SET
             lease_expires_at = NULL,
             state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
             finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE $1 END,
             errors = CASE WHEN attempt < max_attempts THEN errors
                      ELSE errors || jsonb_build_array(jsonb_build_object(
                          'attempt', attempt, 'at', $1, 'error', 'lease expired and no attempts remain')) END
         WHERE id IN (SELECT id FROM jobs WHERE state = 'executing' AND lease_expires_at < $1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(now)
    .fetch_all(&q.pool)
    .await
    .map_err(db)?;
    rows::sorted_ids(&rescued, JobId)
}

pub(super) async fn list(q: &PgPools, filter: &JobFilter) -> Result<Vec<Job>> {
    let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
    let limit = filter.limit.map_or(i64::MAX, clamp);
    let listed = sqlx::query(
        "SELECT * FROM jobs
         WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR worker = $2)
           AND (cardinality($3::text[]) = 0 OR state = ANY($3))
         ORDER BY id LIMIT $4",
    )
    .bind(&filter.queue)
    .bind(&filter.worker)
    .bind(&states)
    .bind(limit)
    .fetch_all(&q.pool)
    .await
    .map_err(db)?;
    listed.iter().map(rows::job).collect()
}
