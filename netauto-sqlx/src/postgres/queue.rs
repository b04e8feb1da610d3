//! The job queue in PostgreSQL ([`PgJobQueue`]). Claims lock rows with
//! `FOR UPDATE SKIP LOCKED`, so any number of runners on any number of machines share one
//! queue without handing a job to two.

use chrono::{DateTime, Utc};
use netauto_core::{ClaimRequest, Enqueued, Job, JobFilter, JobId, NewJob, Result};
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres};

use super::PgPools;
use super::columns::int;
use crate::error::db;
use crate::rows::{self, StoredRow};
use crate::rules::clamp;
use crate::sql::InsertJob;

pub(super) use crate::shared::queue::{
    cancel, complete, counts, discard_job, enqueue_all, fail, finished_since, heartbeat, job,
    pause_queue, paused_queues, prune, release, rescue_expired, resume_queue, retry_job,
};

impl InsertJob for Postgres {
    /// Inserts one validated job inside the caller's transaction, or answers the job holding
    /// its unique key.
    async fn insert_job(
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
}

pub(super) async fn enqueue(q: &PgPools, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
    job.validate()?;
    // No transaction: the insert is one statement.
    let mut conn = q.writer.acquire().await.map_err(db)?;
    Postgres::insert_job(&mut conn, job, now).await
}

pub(super) async fn claim(q: &PgPools, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Job>> {
    let picked = sqlx::query(
        "WITH picked AS (
             SELECT id FROM jobs
             WHERE queue = $1 AND state IN ('available', 'scheduled', 'retryable') AND scheduled_at <= $2
               AND NOT EXISTS (SELECT 1 FROM queue_pauses WHERE queue = $1)
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
    .fetch_all(&q.writer)
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
    .fetch_all(&q.writer)
    .await
    .map_err(db)?;
    completed.iter().map(|r| r.int("id").map(JobId)).collect()
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
    .fetch_all(&q.writer)
    .await
    .map_err(db)?;
    listed.iter().map(rows::job).collect()
}
