//! [`HookedQueue`]: a [`JobQueue`] that forwards every call to the queue it wraps, through
//! [`QueueHooks`]. The runner's [`WakingQueue`](super::WakingQueue) is one; the test
//! queues of `netauto_core::testing` (inline mode, faults) are others.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backend::queue::JobQueue;
use crate::error::{Error, Result};
use crate::model::ids::JobId;
use crate::model::job::{ClaimRequest, Enqueued, FailAction, Job, JobFilter, JobState, NewJob};

/// Where a [`HookedQueue`] lets its owner step in (waking a runner, running jobs inline in
/// tests, injecting faults). Every hook defaults to passing through.
#[async_trait]
pub trait QueueHooks: Send + Sync + fmt::Debug + 'static {
    /// After `enqueue` / `enqueue_all` wrote `out` to `inner`: what the caller gets (one
    /// entry per job, in order).
    async fn enqueued(
        &self,
        inner: &Arc<dyn JobQueue>,
        out: Vec<Enqueued>,
    ) -> Result<Vec<Enqueued>> {
        let _ = inner;
        Ok(out)
    }

    /// After `claim`: the claimed jobs as the caller sees them.
    fn claimed(&self, jobs: Vec<Job>, now: DateTime<Utc>) -> Vec<Job> {
        let _ = now;
        jobs
    }

    /// Before `heartbeat`: an error stops the call before it reaches the queue.
    async fn before_heartbeat(&self) -> Result<()> {
        Ok(())
    }
}

/// A [`JobQueue`] that forwards every call to `inner`, through `hooks`.
#[derive(Debug, Clone)]
pub struct HookedQueue<H> {
    inner: Arc<dyn JobQueue>,
    hooks: H,
}

impl<H> HookedQueue<H> {
    /// Wraps `inner`.
    pub fn with_hooks(inner: Arc<dyn JobQueue>, hooks: H) -> Self {
        Self { inner, hooks }
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The hooks, to change them.
    pub fn hooks_mut(&mut self) -> &mut H {
        &mut self.hooks
    }
}

// A wrapper forwards every method, provided ones too (a default would silently bypass the
// inner queue's own implementation).
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<H: QueueHooks> JobQueue for HookedQueue<H> {
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
        let out = self.inner.enqueue(job, now).await?;
        let mut out = self.hooks.enqueued(&self.inner, vec![out]).await?;
        out.pop().ok_or_else(|| Error::Unavailable {
            source: "a queue hook answered no job for an enqueue".into(),
        })
    }

    async fn enqueue_all(&self, jobs: Vec<NewJob>, now: DateTime<Utc>) -> Result<Vec<Enqueued>> {
        let out = self.inner.enqueue_all(jobs, now).await?;
        self.hooks.enqueued(&self.inner, out).await
    }

    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Job>> {
        let jobs = self.inner.claim(req, now).await?;
        Ok(self.hooks.claimed(jobs, now))
    }

    async fn heartbeat(&self, id: JobId, attempt: u32, lease_until: DateTime<Utc>) -> Result<()> {
        self.hooks.before_heartbeat().await?;
        self.inner.heartbeat(id, attempt, lease_until).await
    }

    async fn complete(&self, id: JobId, attempt: u32, now: DateTime<Utc>) -> Result<()> {
        self.inner.complete(id, attempt, now).await
    }

    async fn complete_many(
        &self,
        attempts: &[(JobId, u32)],
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>> {
        self.inner.complete_many(attempts, now).await
    }

    async fn fail(
        &self,
        id: JobId,
        attempt: u32,
        error: &str,
        action: FailAction,
        now: DateTime<Utc>,
    ) -> Result<JobState> {
        self.inner.fail(id, attempt, error, action, now).await
    }

    async fn release(&self, id: JobId, attempt: u32, now: DateTime<Utc>) -> Result<()> {
        self.inner.release(id, attempt, now).await
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<Job> {
        self.inner.cancel(id, now).await
    }

    async fn rescue_expired(&self, now: DateTime<Utc>) -> Result<Vec<JobId>> {
        self.inner.rescue_expired(now).await
    }

    async fn prune(&self, finished_before: DateTime<Utc>) -> Result<u64> {
        self.inner.prune(finished_before).await
    }

    async fn job(&self, id: JobId) -> Result<Job> {
        self.inner.job(id).await
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        self.inner.list(filter).await
    }
    async fn counts(&self) -> Result<Vec<crate::JobCount>> {
        self.inner.counts().await
    }
    async fn finished_since(&self, since: DateTime<Utc>) -> Result<Vec<crate::JobCount>> {
        self.inner.finished_since(since).await
    }
    async fn pause_queue(&self, queue: &str, now: DateTime<Utc>) -> Result<()> {
        self.inner.pause_queue(queue, now).await
    }
    async fn resume_queue(&self, queue: &str) -> Result<()> {
        self.inner.resume_queue(queue).await
    }
    async fn paused_queues(&self) -> Result<Vec<crate::QueuePause>> {
        self.inner.paused_queues().await
    }
    async fn retry_job(&self, id: JobId, now: DateTime<Utc>) -> Result<Job> {
        self.inner.retry_job(id, now).await
    }
    async fn discard_job(&self, id: JobId, now: DateTime<Utc>) -> Result<Job> {
        self.inner.discard_job(id, now).await
    }
}
