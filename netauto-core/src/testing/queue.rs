//! Test [`JobQueue`] wrappers, all one type: [`HookedQueue`] forwards every call to the
//! wrapped queue and lets its [`QueueHooks`] step in where a test needs it.
//!
//! * [`InlineQueue`]: *inline* mode, each enqueued job runs before `enqueue` returns.
//! * [`FaultyQueue`]: the queue as a node whose database connection is down sees it:
//!   heartbeats that fail or hang, claims that answer already expired leases.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::{DrainOptions, drain_queue};
use crate::backend::queue::JobQueue;
use crate::error::{Error, Result};
use crate::model::ids::JobId;
use crate::model::job::{ClaimRequest, Enqueued, FailAction, Job, JobFilter, JobState, NewJob};
use crate::runtime::{Clock, WorkerRegistry};

/// Where a [`HookedQueue`] lets a test step in. Every hook defaults to passing through.
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
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<H: QueueHooks> JobQueue for HookedQueue<H> {
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
        let out = self.inner.enqueue(job, now).await?;
        let mut out = self.hooks.enqueued(&self.inner, vec![out]).await?;
        Ok(out
            .pop()
            .expect("the enqueued hook answers one entry per job"))
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
}

// ---- inline mode ----------------------------------------------------------------------------

/// The hooks of [`InlineQueue`]: run what was enqueued, with these workers and this clock.
#[derive(Debug, Clone)]
pub struct Inline {
    registry: WorkerRegistry,
    clock: Arc<dyn Clock>,
}

/// A queue in *inline* mode: each enqueued job is run at once (with recursion: jobs it
/// enqueues run too) before `enqueue` returns, which answers the job as it is after running.
/// Everything else is forwarded.
pub type InlineQueue = HookedQueue<Inline>;

impl InlineQueue {
    /// Wraps `inner`, running jobs with `registry`'s workers.
    pub fn new(inner: Arc<dyn JobQueue>, registry: WorkerRegistry, clock: Arc<dyn Clock>) -> Self {
        Self::with_hooks(inner, Inline { registry, clock })
    }
}

#[async_trait]
impl QueueHooks for Inline {
    async fn enqueued(
        &self,
        inner: &Arc<dyn JobQueue>,
        out: Vec<Enqueued>,
    ) -> Result<Vec<Enqueued>> {
        let mut queues: Vec<String> = out.iter().map(|e| e.job().queue.clone()).collect();
        queues.sort();
        queues.dedup();
        for queue in queues {
            drain_queue(
                inner,
                &self.registry,
                &self.clock,
                &DrainOptions::new(queue).with_recursion(),
            )
            .await?;
        }
        // Answer the jobs as they are after running.
        let mut ran = Vec::with_capacity(out.len());
        for e in out {
            let job = inner.job(e.job().id).await?;
            ran.push(if e.is_inserted() {
                Enqueued::Inserted(job)
            } else {
                Enqueued::Existing(job)
            });
        }
        Ok(ran)
    }
}

// ---- faults ---------------------------------------------------------------------------------

/// How a cut-off [`FaultyQueue`] answers heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Every heartbeat fails at once with a retryable error (connection refused).
    Refused,
    /// Every heartbeat hangs (a dead TCP peer, a pool waiting for a connection).
    Hanging,
}

/// The hooks of [`FaultyQueue`].
#[derive(Debug)]
pub struct QueueFaults {
    down: AtomicBool,
    outage: Outage,
    stale_claims: bool,
}

/// The queue as seen by a node whose database connection is down: while cut off, its
/// heartbeats fail (or hang); optionally its claims answer leases that already ran out (a
/// claim slower than the lease). Everything else passes through.
pub type FaultyQueue = HookedQueue<QueueFaults>;

impl FaultyQueue {
    /// Wraps `inner`, connected, heartbeats refused once cut off.
    pub fn new(inner: Arc<dyn JobQueue>) -> Self {
        Self::with_hooks(
            inner,
            QueueFaults {
                down: AtomicBool::new(false),
                outage: Outage::Refused,
                stale_claims: false,
            },
        )
    }

    /// How heartbeats fail while cut off.
    pub fn with_outage(mut self, outage: Outage) -> Self {
        self.hooks.outage = outage;
        self
    }

    /// Claims answer leases that expired a second before the claim.
    pub fn with_stale_claims(mut self) -> Self {
        self.hooks.stale_claims = true;
        self
    }

    /// Cuts the connection off (`true`) or restores it.
    pub fn cut_off(&self, down: bool) {
        self.hooks.down.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl QueueHooks for QueueFaults {
    fn claimed(&self, mut jobs: Vec<Job>, now: DateTime<Utc>) -> Vec<Job> {
        if self.stale_claims {
            for j in &mut jobs {
                j.lease_expires_at = Some(now - TimeDelta::seconds(1));
            }
        }
        jobs
    }

    async fn before_heartbeat(&self) -> Result<()> {
        if !self.down.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.outage {
            Outage::Refused => Err(Error::Unavailable {
                source: "connection refused".into(),
            }),
            Outage::Hanging => std::future::pending().await,
        }
    }
}
