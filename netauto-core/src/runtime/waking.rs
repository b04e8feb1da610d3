//! Waking a local runner when jobs are enqueued.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::hooked::{HookedQueue, QueueHooks};
use crate::backend::queue::JobQueue;
use crate::error::Result;
use crate::model::job::Enqueued;

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

/// The hooks of [`WakingQueue`]: wake the runner after every enqueue.
#[derive(Debug, Clone)]
pub struct WakeAfterEnqueue(Arc<RunnerWaker>);

/// A [`JobQueue`] that wakes a runner after every enqueue; everything else is forwarded.
pub type WakingQueue = HookedQueue<WakeAfterEnqueue>;

impl WakingQueue {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JobQueue>, waker: Arc<RunnerWaker>) -> Self {
        Self::with_hooks(inner, WakeAfterEnqueue(waker))
    }
}

#[async_trait]
impl QueueHooks for WakeAfterEnqueue {
    async fn enqueued(
        &self,
        _inner: &Arc<dyn JobQueue>,
        out: Vec<Enqueued>,
    ) -> Result<Vec<Enqueued>> {
        self.0.wake();
        Ok(out)
    }
}
