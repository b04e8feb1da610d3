//! Test [`JobQueue`] wrappers, all the runtime's [`HookedQueue`], which forwards every call to
//! the wrapped queue and lets its [`QueueHooks`] step in where a test needs it.
//!
//! * [`InlineQueue`]: *inline* mode, each enqueued job runs before `enqueue` returns.
//! * [`FaultyQueue`]: the queue as a node whose database connection is down sees it:
//!   heartbeats that fail or hang, claims that answer already expired leases.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::{DrainOptions, drain_queue};
use crate::backend::queue::JobQueue;
use crate::error::{Error, Result};
use crate::model::job::{Enqueued, Job};
use crate::runtime::{Clock, HookedQueue, QueueHooks, WorkerRegistry};

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
        self.hooks_mut().outage = outage;
        self
    }

    /// Claims answer leases that expired a second before the claim.
    pub fn with_stale_claims(mut self) -> Self {
        self.hooks_mut().stale_claims = true;
        self
    }

    /// Cuts the connection off (`true`) or restores it.
    pub fn cut_off(&self, down: bool) {
        self.hooks().down.store(down, Ordering::SeqCst);
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
