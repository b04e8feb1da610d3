//! The job queue's statements that both backends run alike.

use chrono::{DateTime, Utc};
use netauto_core::{Enqueued, Error, Job, JobId, NewJob, Result};

use crate::error::db;
use crate::rows;
use crate::rules;
use crate::sql::{Bind, Dialect, Pools, Portable, fenced, not_cancellable_job};

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
    let cancelled = sqlx::query::<P::DB>(
        "UPDATE jobs SET state = 'cancelled', finished_at = $1, lease_expires_at = NULL
         WHERE id = $2 AND state NOT IN ('completed', 'discarded', 'cancelled') RETURNING *",
    )
    .time(now)
    .int(id.get())
    .fetch_optional(P::DB::pool(q.writer()))
    .await
    .map_err(db)?;
    match cancelled {
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
