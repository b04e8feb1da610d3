//! Rescue: jobs whose lease expired go back to the queue (or are discarded when no attempt
//! is left), after the discard hooks of the jobs about to be discarded.

use chrono::{DateTime, Utc};

use crate::backend::queue::JobQueue;
use crate::error::Result;
use crate::model::job::{JobFilter, JobState};
use crate::runtime::WorkerRegistry;

/// Rescues the expired leases of `queue`. Jobs about to be discarded by the rescue (attempts
/// exhausted) get their worker's discard hook first; if one fails, nothing is rescued this
/// round (the hooks run again at the next one), so no job is discarded without it. Answers
/// how many jobs were rescued.
pub(crate) async fn rescue_expired(
    queue: &dyn JobQueue,
    registry: &WorkerRegistry,
    now: DateTime<Utc>,
) -> Result<usize> {
    if !finalize_exhausted(queue, registry, now).await {
        return Ok(0);
    }
    Ok(queue.rescue_expired(now).await?.len())
}

/// Runs the discard hook of every executing job whose lease expired before `now` with no
/// attempt left (the rescue will discard them). Answers whether all hooks succeeded.
async fn finalize_exhausted(
    queue: &dyn JobQueue,
    registry: &WorkerRegistry,
    now: DateTime<Utc>,
) -> bool {
    let filter = JobFilter::all().with_states([JobState::Executing]);
    let jobs = match queue.list(&filter).await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list executing jobs before the rescue");
            return false;
        }
    };
    let mut all_ok = true;
    for job in jobs.iter().filter(|j| {
        j.attempt >= j.max_attempts && j.lease_expires_at.is_some_and(|until| until < now)
    }) {
        let Some(worker) = registry.get(&job.worker) else {
            continue;
        };
        let reason =
            "attempts exhausted: the node running the last attempt stopped renewing its lease";
        if let Err(e) = worker.on_discard(job, reason).await {
            tracing::warn!(job_id = job.id.get(), error = %e, "discard hook failed; rescue postponed");
            all_ok = false;
        }
    }
    all_ok
}
