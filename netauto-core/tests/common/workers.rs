//! Test workers shared by the runner and `testing` helper tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use netauto_core::runtime::{JobContext, Worker, WorkerError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NoArgs {}

#[derive(Debug, Serialize, Deserialize)]
pub struct CountArgs {
    pub n: u32,
}

/// Completes at once.
#[derive(Debug)]
pub struct Noop;

#[async_trait]
impl Worker for Noop {
    const NAME: &'static str = "test.noop";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        Ok(())
    }
}

/// Typed args; adds `n` to its total.
#[derive(Debug, Clone, Default)]
pub struct Counter(pub Arc<AtomicUsize>);

#[async_trait]
impl Worker for Counter {
    const NAME: &'static str = "test.counter";
    type Args = CountArgs;

    async fn perform(&self, _ctx: &JobContext, args: CountArgs) -> Result<(), WorkerError> {
        self.0.fetch_add(args.n as usize, Ordering::SeqCst);
        Ok(())
    }
}

/// Always fails with a retryable error.
#[derive(Debug)]
pub struct AlwaysRetry;

#[async_trait]
impl Worker for AlwaysRetry {
    const NAME: &'static str = "test.always_retry";
    const MAX_ATTEMPTS: u32 = 3;
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        Err(WorkerError::retry("device unreachable"))
    }
}

/// Fails for good.
#[derive(Debug)]
pub struct Discards;

#[async_trait]
impl Worker for Discards {
    const NAME: &'static str = "test.discards";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        Err(WorkerError::discard("bad input"))
    }
}
