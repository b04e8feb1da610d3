//! The retention worker as the app runs it: [`RetentionWorker`] itself, plus a record of the
//! last purge this process ran for the retention page.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use netauto_core::retention::{PurgeReport, RetentionArgs, RetentionWorker};
use netauto_core::runtime::{JobContext, Worker, WorkerError};

use crate::app::lock;

/// Planned deletions kept in the recorded report (the counts cover all of them).
const KEEP_DELETIONS: usize = 100;

/// The last purge report of this process, with when it ran.
#[derive(Debug, Clone, Default)]
pub(crate) struct LastPurge(Arc<Mutex<Option<PurgeReport>>>);

impl LastPurge {
    pub(crate) fn get(&self) -> Option<PurgeReport> {
        lock(&self.0).clone()
    }

    fn set(&self, mut report: PurgeReport) {
        report.plan.deletions.truncate(KEEP_DELETIONS);
        *lock(&self.0) = Some(report);
    }
}

/// Runs [`RetentionWorker`] under its own name and queue, and records each report.
#[derive(Debug, Clone)]
pub(crate) struct RecordingRetention {
    inner: RetentionWorker,
    last: LastPurge,
}

impl RecordingRetention {
    pub(crate) fn new(inner: RetentionWorker, last: LastPurge) -> Self {
        Self { inner, last }
    }
}

#[async_trait]
impl Worker for RecordingRetention {
    const NAME: &'static str = RetentionWorker::NAME;
    const QUEUE: &'static str = RetentionWorker::QUEUE;
    const MAX_ATTEMPTS: u32 = RetentionWorker::MAX_ATTEMPTS;
    type Args = RetentionArgs;

    async fn perform(&self, ctx: &JobContext, args: RetentionArgs) -> Result<(), WorkerError> {
        let report = self.inner.purge(ctx.now(), args.dry_run).await?;
        self.last.set(report);
        Ok(())
    }
}
