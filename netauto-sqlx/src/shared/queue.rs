//! The job queue's statements that both backends run alike.

use chrono::{DateTime, Utc};
use netauto_core::{Enqueued, Error, FailAction, Job, JobFailure, JobId, JobState, NewJob, Result};

use crate::error::db;
use crate::rows;
use crate::rules;
use crate::sql::{
    Bind, Dialect, InsertJob, Kind, Pools, Portable, fence_error, fenced, not_cancellable_job,
};

/// Completes one attempt (`finished_at`, the job id and the attempt bound).
pub(crate) const COMPLETE: &str =
    "UPDATE jobs SET state = 'completed', finished_at = $1, lease_expires_at = NULL
     WHERE id = $2 AND attempt = $3 AND state = 'executing'";

pub(crate) async fn enqueue_all<P: Pools>(
    q: &P,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Result<Vec<Enqueued>> {
    rules::validate_jobs(&jobs)?;
    let mut tx = q.begin_write().await?;
    let out = rules::insert_each(&mut *tx, jobs, now, P::DB::insert_job).await?;
    tx.commit().await.map_err(db)?;
    Ok(out)
}

pub(crate) async fn heartbeat<P: Pools>(
    q: &P,
    id: JobId,
    attempt: u32,
    lease_until: DateTime<Utc>,
) -> Result<()> {
    // On the lease writer: in PostgreSQL a heartbeat must not queue behind a busy bulk's
    // statements.
    let sql = "UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND attempt = $3 AND state = 'executing'";
    let (write, check) = (P::DB::pool(q.lease_writer()), P::DB::pool(q.reader()));
    fenced(write, check, sql, lease_until, id, attempt).await
}

pub(crate) async fn complete<P: Pools>(
    q: &P,
    id: JobId,
    attempt: u32,
    now: DateTime<Utc>,
) -> Result<()> {
    let (write, check) = (P::DB::pool(q.writer()), P::DB::pool(q.reader()));
    fenced(write, check, COMPLETE, now, id, attempt).await
}

pub(crate) async fn release<P: Pools>(
    q: &P,
    id: JobId,
    attempt: u32,
    now: DateTime<Utc>,
) -> Result<()> {
    let sql = "UPDATE jobs SET state = 'available', scheduled_at = $1, lease_expires_at = NULL
         WHERE id = $2 AND attempt = $3 AND state = 'executing'";
    let (write, check) = (P::DB::pool(q.writer()), P::DB::pool(q.reader()));
    fenced(write, check, sql, now, id, attempt).await
}

pub(crate) async fn cancel<P: Pools>(q: &P, id: JobId, now: DateTime<Utc>) -> Result<Job> {
    end_job(q, id, JobState::Cancelled, now).await
}

/// Ends a job that is not terminal in `state` (`cancelled` or `discarded`); an executing
/// attempt is fenced out, a terminal job is a conflict.
async fn end_job<P: Pools>(q: &P, id: JobId, state: JobState, now: DateTime<Utc>) -> Result<Job> {
    let ended = sqlx::query::<P::DB>(
        "UPDATE jobs SET state = $3, finished_at = $1, lease_expires_at = NULL
         WHERE id = $2 AND state NOT IN ('completed', 'discarded', 'cancelled') RETURNING *",
    )
    .time(now)
    .int(id.get())
    .text(state.as_str())
    .fetch_optional(P::DB::pool(q.writer()))
    .await
    .map_err(db)?;
    match ended {
        Some(r) => rows::job(&r),
        None => Err(not_cancellable_job(P::DB::pool(q.reader()), id).await),
    }
}

pub(crate) async fn prune<P: Pools>(q: &P, finished_before: DateTime<Utc>) -> Result<u64> {
    sqlx::query::<P::DB>(
        "DELETE FROM jobs WHERE state IN ('completed', 'discarded', 'cancelled') AND finished_at < $1",
    )
    .time(finished_before)
    .execute(P::DB::pool(q.writer()))
    .await
    .map(|done| P::DB::rows_affected(&done))
    .map_err(db)
}

pub(crate) async fn job<P: Pools>(q: &P, id: JobId) -> Result<Job> {
    sqlx::query::<P::DB>("SELECT * FROM jobs WHERE id = $1")
        .int(id.get())
        .fetch_optional(P::DB::pool(q.reader()))
        .await
        .map_err(db)?
        .map_or_else(|| Err(Error::job_not_found(id)), |r| rows::job(&r))
}

pub(crate) async fn fail<P: Pools>(
    q: &P,
    id: JobId,
    attempt: u32,
    error: &str,
    action: FailAction,
    now: DateTime<Utc>,
) -> Result<JobState> {
    let failure = JobFailure {
        attempt,
        at: now,
        error: error.to_owned(),
    };
    let retry_at = match action {
        FailAction::RetryAt(at) => Some(at),
        FailAction::Discard => None,
    };
    let failed = sqlx::query::<P::DB>(P::DB::pick(
        "UPDATE jobs SET
             errors = errors || jsonb_build_array($1::jsonb),
             lease_expires_at = NULL,
             state = CASE WHEN $2::timestamptz IS NOT NULL AND attempt < max_attempts THEN 'retryable' ELSE 'discarded' END,
             scheduled_at = CASE WHEN $2::timestamptz IS NOT NULL AND attempt < max_attempts THEN $2 ELSE scheduled_at END,
             finished_at = CASE WHEN $2::timestamptz IS NOT NULL AND attempt < max_attempts THEN NULL ELSE $3 END
         WHERE id = $4 AND attempt = $5 AND state = 'executing'
         RETURNING state",
        "UPDATE jobs SET
             errors = json_insert(errors, '$[#]', json($1)),
             lease_expires_at = NULL,
             state = CASE WHEN $2 IS NOT NULL AND attempt < max_attempts THEN 'retryable' ELSE 'discarded' END,
             scheduled_at = CASE WHEN $2 IS NOT NULL AND attempt < max_attempts THEN $2 ELSE scheduled_at END,
             finished_at = CASE WHEN $2 IS NOT NULL AND attempt < max_attempts THEN NULL ELSE $3 END
         WHERE id = $4 AND attempt = $5 AND state = 'executing'
         RETURNING state",
    ))
    .json(&failure)?
    .opt_time(retry_at)
    .time(now)
    .int(id.get())
    .attempt(attempt)
    .fetch_optional(P::DB::pool(q.writer()))
    .await
    .map_err(db)?;
    match failed {
        Some(r) => rows::job_state(&r),
        None => Err(fence_error(P::DB::pool(q.reader()), id, attempt).await),
    }
}

pub(crate) async fn rescue_expired<P: Pools>(q: &P, now: DateTime<Utc>) -> Result<Vec<JobId>> {
    // PostgreSQL skips the rows other nodes hold and writes the failure in SQL; SQLite's
    // one writer holds them all, and it is given the failure with its attempt left to set.
    let rescue = sqlx::query::<P::DB>(P::DB::pick(
        "UPDATE jobs SET
             lease_expires_at = NULL,
             state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
             finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE $1 END,
             errors = CASE WHEN attempt < max_attempts THEN errors
                      ELSE errors || jsonb_build_array(jsonb_build_object(
                          'attempt', attempt, 'at', $1, 'error', 'lease expired and no attempts remain')) END
         WHERE id IN (SELECT id FROM jobs WHERE state = 'executing' AND lease_expires_at < $1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
        "UPDATE jobs SET
             lease_expires_at = NULL,
             state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
             finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE $1 END,
             errors = CASE WHEN attempt < max_attempts THEN errors
                      ELSE json_insert(errors, '$[#]', json_set(json($2), '$.attempt', attempt)) END
         WHERE state = 'executing' AND lease_expires_at < $1
         RETURNING id",
    ))
    .time(now);
    let rescue = match P::DB::KIND {
        Kind::Postgres => rescue,
        Kind::Sqlite => rescue.json(&JobFailure {
            attempt: 0,
            at: now,
            error: "lease expired and no attempts remain".into(),
        })?,
    };
    let rescued = rescue
        .fetch_all(P::DB::pool(q.writer()))
        .await
        .map_err(db)?;
    rows::sorted_ids(&rescued, JobId)
}

pub(crate) async fn counts<P: Pools>(q: &P) -> Result<Vec<netauto_core::JobCount>> {
    let rows = sqlx::query::<P::DB>(
        "SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state ORDER BY queue, state",
    )
    .fetch_all(P::DB::pool(q.reader()))
    .await
    .map_err(db)?;
    job_counts::<P>(&rows)
}

pub(crate) async fn finished_since<P: Pools>(
    q: &P,
    since: DateTime<Utc>,
) -> Result<Vec<netauto_core::JobCount>> {
    let rows = sqlx::query::<P::DB>(
        "SELECT queue, state, count(*) AS n FROM jobs
         WHERE state IN ('completed', 'discarded', 'cancelled') AND finished_at >= $1
         GROUP BY queue, state ORDER BY queue, state",
    )
    .time(since)
    .fetch_all(P::DB::pool(q.reader()))
    .await
    .map_err(db)?;
    job_counts::<P>(&rows)
}

fn job_counts<P: Pools>(
    rows: &[<P::DB as sqlx::Database>::Row],
) -> Result<Vec<netauto_core::JobCount>> {
    rows.iter()
        .map(|r| {
            use crate::rows::{Columns, StoredRow};
            let state = r.text("state")?;
            Ok(netauto_core::JobCount {
                queue: r.text("queue")?,
                state: state
                    .parse()
                    .map_err(|_| crate::error::corrupt("job state", &state))?,
                count: u64::try_from(r.int("n")?).unwrap_or(0),
            })
        })
        .collect()
}

pub(crate) async fn pause_queue<P: Pools>(q: &P, queue: &str, now: DateTime<Utc>) -> Result<()> {
    sqlx::query::<P::DB>(
        "INSERT INTO queue_pauses (queue, paused_at) VALUES ($1, $2) ON CONFLICT (queue) DO NOTHING",
    )
    .text(queue)
    .time(now)
    .execute(P::DB::pool(q.writer()))
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn resume_queue<P: Pools>(q: &P, queue: &str) -> Result<()> {
    sqlx::query::<P::DB>("DELETE FROM queue_pauses WHERE queue = $1")
        .text(queue)
        .execute(P::DB::pool(q.writer()))
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) async fn paused_queues<P: Pools>(q: &P) -> Result<Vec<netauto_core::QueuePause>> {
    use crate::rows::{Columns, StoredRow};
    let rows = sqlx::query::<P::DB>("SELECT queue, paused_at FROM queue_pauses ORDER BY queue")
        .fetch_all(P::DB::pool(q.reader()))
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(netauto_core::QueuePause {
                queue: r.text("queue")?,
                paused_at: r.time("paused_at")?,
            })
        })
        .collect()
}

pub(crate) async fn retry_job<P: Pools>(q: &P, id: JobId, now: DateTime<Utc>) -> Result<Job> {
    let retried = sqlx::query::<P::DB>(
        "UPDATE jobs SET state = 'available', scheduled_at = $1, finished_at = NULL,
             lease_expires_at = NULL,
             max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 ELSE max_attempts END
         WHERE id = $2 AND state NOT IN ('executing', 'completed') RETURNING *",
    )
    .time(now)
    .int(id.get())
    .fetch_optional(P::DB::pool(q.writer()))
    .await
    .map_err(db)?;
    match retried {
        Some(r) => rows::job(&r),
        None => Err(
            match crate::sql::not_cancellable_job(P::DB::pool(q.reader()), id).await {
                Error::Conflict(_) => netauto_core::Conflict::JobActive(id).into(),
                e => e,
            },
        ),
    }
}

pub(crate) async fn discard_job<P: Pools>(q: &P, id: JobId, now: DateTime<Utc>) -> Result<Job> {
    end_job(q, id, JobState::Discarded, now).await
}
