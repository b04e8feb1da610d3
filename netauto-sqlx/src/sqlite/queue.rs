//! The job queue in SQLite ([`SqliteJobQueue`]). Every write runs on the one writer
//! connection, most in a `BEGIN IMMEDIATE` transaction, so claims are exclusive and unique
//! keys race-free.

use chrono::{DateTime, Utc};
use netauto_core::{ClaimRequest, Enqueued, Error, Job, JobFilter, JobId, NewJob, Result};
use sqlx::{AssertSqlSafe, Sqlite, SqliteConnection};

use super::Db;
use super::columns::to_micros;
use crate::error::{db, json};
use crate::rows;
use crate::rules::clamp;
use crate::shared::queue::COMPLETE;
use crate::sql::{InsertJob, Pools};

pub(super) use crate::shared::queue::{
    cancel, complete, counts, discard_job, enqueue_all, fail, finished_since, heartbeat, job,
    pause_queue, paused_queues, prune, release, rescue_expired, resume_queue, retry_job,
};

/// A job that holds its unique key.
const LIVE_KEY: &str = "state NOT IN ('discarded', 'cancelled')";

impl InsertJob for Sqlite {
    /// Inserts one validated job inside the caller's transaction, or answers the job holding
    /// its unique key.
    async fn insert_job(
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
               AND NOT EXISTS (SELECT 1 FROM queue_pauses WHERE queue = ?4)
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
