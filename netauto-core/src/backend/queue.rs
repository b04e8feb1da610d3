//! The [`JobQueue`] trait: durable jobs with leases, retries and unique keys.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::ids::JobId;
use crate::model::job::{
    ClaimRequest, Enqueued, FailAction, Job, JobCount, JobFilter, JobState, NewJob, QueuePause,
};

/// Persistence of jobs. Implemented by every backend; the worker runtime drives it.
///
/// Times are passed in (`now`) rather than read from a clock, so behaviour is reproducible
/// and every node of a deployment agrees on one rule. The semantics below are checked for
/// every backend by [`conformance`](crate::conformance) (feature `conformance`).
///
/// * **States**: a job starts `available` (or `scheduled` when `scheduled_at > now`); a claim
///   makes it `executing` and increments `attempt`; it ends `completed`, `discarded` or
///   `cancelled` (terminal), or goes `retryable` to be claimed again.
/// * **Fencing**: [`heartbeat`](Self::heartbeat), [`complete`](Self::complete),
///   [`fail`](Self::fail) and [`release`](Self::release) name the attempt they hold; when the
///   job is no longer executing that attempt they change nothing and answer
///   [`Conflict::StaleAttempt`](crate::Conflict::StaleAttempt). A worker whose lease expired
///   and whose job was rescued can therefore never overwrite the new attempt.
/// * **Unique keys**: at most one job per `unique_key` among the jobs that are not
///   `discarded` or `cancelled` (a completed job keeps its key until pruned); enqueueing a
///   duplicate returns that job as [`Enqueued::Existing`]. Cron relies on this to insert each
///   slot once, however many nodes try.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync + Debug + 'static {
    /// Inserts one job (validated with [`NewJob::validate`]), or returns the job holding the
    /// same unique key.
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued>;

    /// Inserts all jobs atomically: either every job is inserted (or resolved to its existing
    /// live duplicate) or, on any error, none is. Answers in input order. Two jobs of the
    /// batch with the same unique key resolve to the first.
    async fn enqueue_all(&self, jobs: Vec<NewJob>, now: DateTime<Utc>) -> Result<Vec<Enqueued>>;

    /// Claims up to `req.limit` jobs of `req.queue` whose state is claimable and whose
    /// `scheduled_at <= now`, in order of `priority`, then `scheduled_at`, then `id`. Each
    /// claimed job becomes `executing` with `attempt + 1`, `attempted_at = now`,
    /// `attempted_by = req.claimer` and `lease_expires_at = now + req.lease`. No job is ever
    /// handed to two concurrent claimers.
    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Job>>;

    /// Extends the lease of an executing attempt to `lease_until`.
    async fn heartbeat(&self, id: JobId, attempt: u32, lease_until: DateTime<Utc>) -> Result<()>;

    /// Marks an executing attempt `completed`.
    async fn complete(&self, id: JobId, attempt: u32, now: DateTime<Utc>) -> Result<()>;

    /// Marks many executing attempts `completed` at once, each fenced like
    /// [`complete`](Self::complete); answers the ids that were completed (an attempt no longer
    /// executing is left out). Backends override this to do it in one statement; the default
    /// completes one by one.
    async fn complete_many(
        &self,
        attempts: &[(JobId, u32)],
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>> {
        let mut done = Vec::with_capacity(attempts.len());
        for &(id, attempt) in attempts {
            match self.complete(id, attempt, now).await {
                Ok(()) => done.push(id),
                Err(crate::Error::Conflict(_) | crate::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Records a failed attempt (`error` is appended to the job's errors). With
    /// [`FailAction::RetryAt`] the job becomes `retryable` at that time, unless `attempt >=
    /// max_attempts`, in which case it is `discarded`; [`FailAction::Discard`] discards it
    /// now. Answers the new state.
    async fn fail(
        &self,
        id: JobId,
        attempt: u32,
        error: &str,
        action: FailAction,
        now: DateTime<Utc>,
    ) -> Result<JobState>;

    /// Gives an executing attempt back unfinished (graceful shutdown): the job becomes
    /// `available` at `now`. The attempt still counts (the aborted worker may have done part
    /// of the work, and the attempt number stays a strict fence).
    async fn release(&self, id: JobId, attempt: u32, now: DateTime<Utc>) -> Result<()>;

    /// Cancels a job that is not terminal (an executing attempt is fenced out). Cancelling a
    /// terminal job answers [`Conflict::JobFinished`](crate::Conflict::JobFinished).
    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<Job>;

    /// Rescues executing jobs whose lease expired strictly before `now`: back to `available`
    /// when attempts remain, else `discarded`. Answers the rescued jobs' ids, ascending.
    async fn rescue_expired(&self, now: DateTime<Utc>) -> Result<Vec<JobId>>;

    /// Deletes terminal jobs that finished before `finished_before`; live jobs are never
    /// touched. Answers how many were deleted.
    async fn prune(&self, finished_before: DateTime<Utc>) -> Result<u64>;

    /// One job, or [`Error::NotFound`](crate::Error::NotFound).
    async fn job(&self, id: JobId) -> Result<Job>;

    /// Jobs matching `filter`, ascending id.
    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>>;

    /// Pauses `queue` on every node: from now on [`claim`](Self::claim) answers none of its
    /// jobs (jobs already executing go on) until [`resume_queue`](Self::resume_queue). The
    /// pause is stored with the jobs, so every runner honours it at its next claim. Pausing
    /// a paused queue changes nothing.
    async fn pause_queue(&self, queue: &str, now: DateTime<Utc>) -> Result<()>;

    /// Resumes a paused queue (a queue not paused: nothing changes).
    async fn resume_queue(&self, queue: &str) -> Result<()>;

    /// The paused queues, by name.
    async fn paused_queues(&self) -> Result<Vec<QueuePause>>;

    /// Runs a job again now: an `available`, `scheduled`, `retryable`, `discarded` or
    /// `cancelled` job becomes `available` at `now` (given one more attempt if it had used
    /// them all). An `executing` or `completed` job is
    /// [`Conflict::JobActive`](crate::Conflict::JobActive).
    async fn retry_job(&self, id: JobId, now: DateTime<Utc>) -> Result<Job>;

    /// Gives up a job that is not terminal: it becomes `discarded` (an executing attempt is
    /// fenced out, as by [`cancel`](Self::cancel)). A terminal job is
    /// [`Conflict::JobFinished`](crate::Conflict::JobFinished).
    async fn discard_job(&self, id: JobId, now: DateTime<Utc>) -> Result<Job>;

    /// How many jobs of each queue reached each terminal state (`completed`, `discarded`,
    /// `cancelled`) at or after `since`, ordered by queue then state: recent throughput.
    /// The default reads every job; backends count in the database.
    async fn finished_since(&self, since: DateTime<Utc>) -> Result<Vec<JobCount>> {
        let jobs = self.list(&JobFilter::all()).await?;
        Ok(count_jobs(jobs.into_iter().filter(|j| {
            j.state.is_terminal() && j.finished_at.is_some_and(|t| t >= since)
        })))
    }

    /// How many jobs each queue has in each state, ordered by queue then state; a queue and
    /// state without jobs is left out. For dashboards and metrics: the default reads every
    /// job, backends count in the database.
    async fn counts(&self) -> Result<Vec<JobCount>> {
        Ok(count_jobs(self.list(&JobFilter::all()).await?))
    }
}

/// Jobs counted per queue and state, ordered by queue then state name (as the databases
/// order them).
fn count_jobs(jobs: impl IntoIterator<Item = Job>) -> Vec<JobCount> {
    let mut counts: std::collections::BTreeMap<(String, &'static str), (JobState, u64)> =
        std::collections::BTreeMap::new();
    for job in jobs {
        counts
            .entry((job.queue, job.state.as_str()))
            .or_insert((job.state, 0))
            .1 += 1;
    }
    counts
        .into_iter()
        .map(|((queue, _), (state, count))| JobCount {
            queue,
            state,
            count,
        })
        .collect()
}
