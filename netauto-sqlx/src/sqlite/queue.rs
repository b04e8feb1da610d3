//! [`SqliteJobQueue`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netauto_core::{
    ClaimRequest, Conflict, Enqueued, Error, FailAction, Job, JobFailure, JobFilter, JobId,
    JobQueue, JobState, NewJob, Result,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, SqliteConnection};

use super::Db;
use crate::error::{corrupt, db, json};
use crate::time::{from_micros, opt_from_micros, to_micros};

/// The job queue in SQLite. Every write runs in a `BEGIN IMMEDIATE` transaction on the one
/// writer connection, so claims are exclusive and unique keys race-free.
#[derive(Debug, Clone)]
pub struct SqliteJobQueue {
    pub(super) db: Db,
}

const LIVE_KEY: &str = "state NOT IN ('discarded', 'cancelled')";

pub(super) fn job_from_row(r: &SqliteRow) -> Result<Job> {
    let state: String = r.try_get("state").map_err(db)?;
    let args: String = r.try_get("args").map_err(db)?;
    let errors: String = r.try_get("errors").map_err(db)?;
    let id = JobId(r.try_get("id").map_err(db)?);
    // Args that are not JSON (a row written behind the queue's back) used to fail the whole
    // claim after it committed, stranding every job of the batch until its lease expired,
    // again and again. The raw text goes to the worker as a JSON string instead: decoding it
    // fails and the job is discarded as malformed on its first attempt.
    let args = serde_json::from_str(&args).unwrap_or_else(|e| {
        tracing::warn!(job_id = id.get(), error = %e, "job args are not JSON; the job will be discarded as malformed");
        serde_json::Value::String(args)
    });
    Ok(Job {
        id,
        queue: r.try_get("queue").map_err(db)?,
        worker: r.try_get("worker").map_err(db)?,
        args,
        state: state.parse().map_err(|_| corrupt("job state", &state))?,
        attempt: r.try_get::<i64, _>("attempt").map_err(db)? as u32,
        max_attempts: r.try_get::<i64, _>("max_attempts").map_err(db)? as u32,
        priority: r.try_get::<i64, _>("priority").map_err(db)? as i16,
        inserted_at: from_micros(r.try_get("inserted_at").map_err(db)?),
        scheduled_at: from_micros(r.try_get("scheduled_at").map_err(db)?),
        attempted_at: opt_from_micros(r.try_get("attempted_at").map_err(db)?),
        finished_at: opt_from_micros(r.try_get("finished_at").map_err(db)?),
        unique_key: r.try_get("unique_key").map_err(db)?,
        attempted_by: r.try_get("attempted_by").map_err(db)?,
        lease_expires_at: opt_from_micros(r.try_get("lease_expires_at").map_err(db)?),
        errors: serde_json::from_str::<Vec<JobFailure>>(&errors).map_err(json)?,
    })
}

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
            return Ok(Enqueued::Existing(job_from_row(&row)?));
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
    Ok(Enqueued::Inserted(job_from_row(&row)?))
}

impl SqliteJobQueue {
    /// Fails with the right fencing error when `id` is not executing `attempt`.
    async fn fence_error(&self, id: JobId, attempt: u32) -> Error {
        match sqlx::query("SELECT 1 FROM jobs WHERE id = ?")
            .bind(id.get())
            .fetch_optional(&self.db.reader)
            .await
        {
            Ok(Some(_)) => Conflict::StaleAttempt { job: id, attempt }.into(),
            Ok(None) => Error::job_not_found(id),
            Err(e) => db(e),
        }
    }

    /// Runs a fenced single-row update; zero rows means a stale attempt (or no such job).
    async fn fenced(
        &self,
        sql: &'static str,
        id: JobId,
        attempt: u32,
        binds: &[Option<i64>],
    ) -> Result<()> {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        let done = q
            .bind(id.get())
            .bind(i64::from(attempt))
            .execute(&self.db.writer)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(self.fence_error(id, attempt).await);
        }
        Ok(())
    }
}

#[async_trait]
impl JobQueue for SqliteJobQueue {
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
        job.validate()?;
        let mut tx = self
            .db
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let out = insert_job(&mut tx, job, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn enqueue_all(&self, jobs: Vec<NewJob>, now: DateTime<Utc>) -> Result<Vec<Enqueued>> {
        for job in &jobs {
            job.validate()?;
        }
        let mut tx = self
            .db
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            out.push(insert_job(&mut tx, job, now).await?);
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Job>> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let lease_until = now + req.lease;
        let mut tx = self
            .db
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
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
        .bind(i64::try_from(req.limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (j.priority, j.scheduled_at, j.id));
        Ok(jobs)
    }

    async fn heartbeat(&self, id: JobId, attempt: u32, lease_until: DateTime<Utc>) -> Result<()> {
        self.fenced(
            "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND attempt = ? AND state = 'executing'",
            id,
            attempt,
            &[Some(to_micros(lease_until))],
        )
        .await
    }

    async fn complete(&self, id: JobId, attempt: u32, now: DateTime<Utc>) -> Result<()> {
        self.fenced(
            "UPDATE jobs SET state = 'completed', finished_at = ?, lease_expires_at = NULL
             WHERE id = ? AND attempt = ? AND state = 'executing'",
            id,
            attempt,
            &[Some(to_micros(now))],
        )
        .await
    }

    async fn complete_many(
        &self,
        attempts: &[(JobId, u32)],
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction for the whole batch: one commit instead of one per job.
        let mut tx = self
            .db
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db)?;
        let mut done = Vec::with_capacity(attempts.len());
        for &(id, attempt) in attempts {
            let r = sqlx::query(
                "UPDATE jobs SET state = 'completed', finished_at = ?, lease_expires_at = NULL
                 WHERE id = ? AND attempt = ? AND state = 'executing'",
            )
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

    async fn fail(
        &self,
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
        .fetch_optional(&self.db.writer)
        .await
        .map_err(db)?;
        match row {
            Some(r) => {
                let state: String = r.try_get("state").map_err(db)?;
                state.parse().map_err(|_| corrupt("job state", &state))
            }
            None => Err(self.fence_error(id, attempt).await),
        }
    }

    async fn release(&self, id: JobId, attempt: u32, now: DateTime<Utc>) -> Result<()> {
        self.fenced(
            "UPDATE jobs SET state = 'available', scheduled_at = ?, lease_expires_at = NULL
             WHERE id = ? AND attempt = ? AND state = 'executing'",
            id,
            attempt,
            &[Some(to_micros(now))],
        )
        .await
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<Job> {
        let row = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?, lease_expires_at = NULL
             WHERE id = ? AND state NOT IN ('completed', 'discarded', 'cancelled') RETURNING *",
        )
        .bind(to_micros(now))
        .bind(id.get())
        .fetch_optional(&self.db.writer)
        .await
        .map_err(db)?;
        match row {
            Some(r) => job_from_row(&r),
            None => match self.job(id).await {
                Ok(_) => Err(Conflict::JobFinished(id).into()),
                Err(e) => Err(e),
            },
        }
    }

    async fn rescue_expired(&self, now: DateTime<Utc>) -> Result<Vec<JobId>> {
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
        .fetch_all(&self.db.writer)
        .await
        .map_err(db)?;
        let mut ids = rows
            .iter()
            .map(|r| r.try_get("id").map(JobId).map_err(db))
            .collect::<Result<Vec<_>>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn prune(&self, finished_before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE state IN ('completed', 'discarded', 'cancelled') AND finished_at < ?",
        )
        .bind(to_micros(finished_before))
        .execute(&self.db.writer)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn job(&self, id: JobId) -> Result<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(id.get())
            .fetch_optional(&self.db.reader)
            .await
            .map_err(db)?;
        row.map_or_else(|| Err(Error::job_not_found(id)), |r| job_from_row(&r))
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut sql = String::from("SELECT * FROM jobs WHERE 1 = 1");
        if filter.queue.is_some() {
            sql.push_str(" AND queue = ?");
        }
        if filter.worker.is_some() {
            sql.push_str(" AND worker = ?");
        }
        if !filter.states.is_empty() {
            let states: Vec<String> = filter
                .states
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            sql.push_str(&format!(" AND state IN ({})", states.join(", ")));
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(queue) = &filter.queue {
            q = q.bind(queue);
        }
        if let Some(worker) = &filter.worker {
            q = q.bind(worker);
        }
        let limit = filter
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = q.bind(limit).fetch_all(&self.db.reader).await.map_err(db)?;
        rows.iter().map(job_from_row).collect()
    }
}
