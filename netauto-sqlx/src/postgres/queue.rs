//! [`PgJobQueue`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netauto_core::{
    ClaimRequest, Conflict, Enqueued, Error, FailAction, Job, JobFailure, JobFilter, JobId,
    JobQueue, JobState, NewJob, Result,
};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};

use crate::error::{corrupt, db};

/// The job queue in PostgreSQL. Claims lock rows with `FOR UPDATE SKIP LOCKED`, so any
/// number of runners on any number of machines share one queue without handing a job to two.
#[derive(Debug, Clone)]
pub struct PgJobQueue {
    pub(super) pool: PgPool,
    /// Renews leases (see `PgBackend`).
    pub(super) lease_pool: PgPool,
}

pub(super) fn job_from_row(r: &PgRow) -> Result<Job> {
    let state: String = r.try_get("state").map_err(db)?;
    let args: Json<serde_json::Value> = r.try_get("args").map_err(db)?;
    let errors: Json<Vec<JobFailure>> = r.try_get("errors").map_err(db)?;
    Ok(Job {
        id: JobId(r.try_get("id").map_err(db)?),
        queue: r.try_get("queue").map_err(db)?,
        worker: r.try_get("worker").map_err(db)?,
        args: args.0,
        state: state.parse().map_err(|_| corrupt("job state", &state))?,
        attempt: r.try_get::<i32, _>("attempt").map_err(db)? as u32,
        max_attempts: r.try_get::<i32, _>("max_attempts").map_err(db)? as u32,
        priority: r.try_get("priority").map_err(db)?,
        inserted_at: r.try_get("inserted_at").map_err(db)?,
        scheduled_at: r.try_get("scheduled_at").map_err(db)?,
        attempted_at: r.try_get("attempted_at").map_err(db)?,
        finished_at: r.try_get("finished_at").map_err(db)?,
        unique_key: r.try_get("unique_key").map_err(db)?,
        attempted_by: r.try_get("attempted_by").map_err(db)?,
        lease_expires_at: r.try_get("lease_expires_at").map_err(db)?,
        errors: errors.0,
    })
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

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
            return Ok(Enqueued::Inserted(job_from_row(&row)?));
        }
        let existing = sqlx::query(
            "SELECT * FROM jobs WHERE unique_key = $1 AND state NOT IN ('discarded', 'cancelled')",
        )
        .bind(&job.unique_key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        if let Some(row) = existing {
            return Ok(Enqueued::Existing(job_from_row(&row)?));
        }
        // The holder was discarded or cancelled in between: try the insert again.
    }
}

impl PgJobQueue {
    async fn fence_error(&self, id: JobId, attempt: u32) -> Error {
        match sqlx::query("SELECT 1 FROM jobs WHERE id = $1")
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await
        {
            Ok(Some(_)) => Conflict::StaleAttempt { job: id, attempt }.into(),
            Ok(None) => Error::job_not_found(id),
            Err(e) => db(e),
        }
    }
}

#[async_trait]
impl JobQueue for PgJobQueue {
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
        job.validate()?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        insert_job(&mut conn, job, now).await
    }

    async fn enqueue_all(&self, jobs: Vec<NewJob>, now: DateTime<Utc>) -> Result<Vec<Enqueued>> {
        for job in &jobs {
            job.validate()?;
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
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
        let rows = sqlx::query(
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
        .bind(i64::try_from(req.limit).unwrap_or(i64::MAX))
        .bind(&req.claimer)
        .bind(now + req.lease)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (j.priority, j.scheduled_at, j.id));
        Ok(jobs)
    }

    async fn heartbeat(&self, id: JobId, attempt: u32, lease_until: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND attempt = $3 AND state = 'executing'",
        )
        .bind(lease_until)
        .bind(id.get())
        .bind(int(attempt))
        .execute(&self.lease_pool)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(self.fence_error(id, attempt).await);
        }
        Ok(())
    }

    async fn complete(&self, id: JobId, attempt: u32, now: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'completed', finished_at = $1, lease_expires_at = NULL
             WHERE id = $2 AND attempt = $3 AND state = 'executing'",
        )
        .bind(now)
        .bind(id.get())
        .bind(int(attempt))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(self.fence_error(id, attempt).await);
        }
        Ok(())
    }

    async fn complete_many(
        &self,
        attempts: &[(JobId, u32)],
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = attempts.iter().map(|(id, _)| id.get()).collect();
        let tries: Vec<i32> = attempts.iter().map(|(_, a)| int(*a)).collect();
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'completed', finished_at = $3, lease_expires_at = NULL
             FROM unnest($1::bigint[], $2::int[]) AS t(id, attempt)
             WHERE jobs.id = t.id AND jobs.attempt = t.attempt AND jobs.state = 'executing'
             RETURNING jobs.id",
        )
        .bind(ids)
        .bind(tries)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| r.try_get("id").map(JobId).map_err(db))
            .collect()
    }

    async fn fail(
        &self,
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
        let row = sqlx::query(
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
        .fetch_optional(&self.pool)
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
        let done = sqlx::query(
            "UPDATE jobs SET state = 'available', scheduled_at = $1, lease_expires_at = NULL
             WHERE id = $2 AND attempt = $3 AND state = 'executing'",
        )
        .bind(now)
        .bind(id.get())
        .bind(int(attempt))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(self.fence_error(id, attempt).await);
        }
        Ok(())
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<Job> {
        let row = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, lease_expires_at = NULL
             WHERE id = $2 AND state NOT IN ('completed', 'discarded', 'cancelled') RETURNING *",
        )
        .bind(now)
        .bind(id.get())
        .fetch_optional(&self.pool)
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
        let rows = sqlx::query(
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
        .fetch_all(&self.pool)
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
            "DELETE FROM jobs WHERE state IN ('completed', 'discarded', 'cancelled') AND finished_at < $1",
        )
        .bind(finished_before)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn job(&self, id: JobId) -> Result<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map_or_else(|| Err(Error::job_not_found(id)), |r| job_from_row(&r))
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let states: Vec<String> = filter
            .states
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        let limit = filter
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT * FROM jobs
             WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR worker = $2)
               AND (cardinality($3::text[]) = 0 OR state = ANY($3))
             ORDER BY id LIMIT $4",
        )
        .bind(&filter.queue)
        .bind(&filter.worker)
        .bind(&states)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(job_from_row).collect()
    }
}
