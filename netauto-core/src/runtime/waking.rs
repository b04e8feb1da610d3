//! Waking a local runner when jobs are enqueued.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::backend::queue::JobQueue;
use crate::error::Result;
use crate::model::ids::JobId;
use crate::model::job::{ClaimRequest, Enqueued, FailAction, Job, JobFilter, JobState, NewJob};

/// Something to poke when jobs were enqueued behind the queue's back (the runner's wake-up).
pub trait Wake: Send + Sync + std::fmt::Debug + 'static {
    /// New jobs may be available.
    fn wake(&self);
}

/// Wakes a runner's claim loop.
#[derive(Debug, Clone)]
pub struct RunnerWaker(Arc<Notify>);

impl RunnerWaker {
    pub(crate) fn new(notify: Arc<Notify>) -> Self {
        Self(notify)
    }
}

impl Wake for RunnerWaker {
    fn wake(&self) {
        self.0.notify_one();
    }
}

/// A [`JobQueue`] that wakes a runner after every enqueue; everything else is forwarded.
#[derive(Debug, Clone)]
pub struct WakingQueue {
    inner: Arc<dyn JobQueue>,
    waker: Arc<RunnerWaker>,
}

impl WakingQueue {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JobQueue>, waker: Arc<RunnerWaker>) -> Self {
        Self { inner, waker }
    }
}

// A wrapper forwards every method, provided ones too (a default would silently bypass the
// inner queue's own implementation).
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl JobQueue for WakingQueue {
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
        let out = self.inner.enqueue(job, now).await?;
        self.waker.wake();
        Ok(out)
    }

    async fn enqueue_all(&self, jobs: Vec<NewJob>, now: DateTime<Utc>) -> Result<Vec<Enqueued>> {
        let out = self.inner.enqueue_all(jobs, now).await?;
        self.waker.wake();
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Job>> {
        self.inner.claim(req, now).await
    }

    async fn heartbeat(&self, id: JobId, attempt: u32, lease_until: DateTime<Utc>) -> Result<()> {
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
}
