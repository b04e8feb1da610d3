//! The retention worker as the app runs it: [`RetentionWorker`] itself, plus a record of the
//! last purge this process ran for the retention page.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use netauto_core::retention::{PurgeReport, RetentionArgs, RetentionWorker};
use netauto_core::runtime::{JobContext, Worker, WorkerError};
use netauto_core::{NewAuditEvent, RunStore};

use crate::app::lock;
use crate::webhooks::Notifier;

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

/// Runs [`RetentionWorker`] under its own name and queue, records each report (for the page
/// and in the audit log) and prunes the audit log by its own age limit.
#[derive(Debug, Clone)]
pub(crate) struct RecordingRetention {
    inner: RetentionWorker,
    last: LastPurge,
    store: Arc<dyn RunStore>,
    /// Days of audit log kept ([`crate::team::AUDIT_MAX_DAYS_VAR`]).
    audit_days: Arc<AtomicU32>,
    /// Tells webhooks of each purge.
    notifier: Notifier,
}

impl RecordingRetention {
    pub(crate) fn new(
        inner: RetentionWorker,
        last: LastPurge,
        store: Arc<dyn RunStore>,
        audit_days: Arc<AtomicU32>,
        notifier: Notifier,
    ) -> Self {
        Self {
            inner,
            last,
            store,
            audit_days,
            notifier,
        }
    }
}

#[async_trait]
impl Worker for RecordingRetention {
    const NAME: &'static str = RetentionWorker::NAME;
    const QUEUE: &'static str = RetentionWorker::QUEUE;
    const MAX_ATTEMPTS: u32 = RetentionWorker::MAX_ATTEMPTS;
    type Args = RetentionArgs;

    async fn perform(&self, ctx: &JobContext, args: RetentionArgs) -> Result<(), WorkerError> {
        let now = ctx.now();
        let report = self.inner.purge(now, args.dry_run).await?;
        let days = self.audit_days.load(Ordering::Relaxed).max(1);
        let pruned = if args.dry_run {
            0
        } else {
            self.store
                .prune_audit(now - chrono::TimeDelta::days(i64::from(days)))
                .await?
        };
        let detail = format!(
            "{}deleted {} runs ({} bytes) by age, {} runs ({} bytes) by byte cap; {} audit entries older than {days} days pruned",
            if report.dry_run { "dry run: " } else { "" },
            report.deleted_age.runs,
            report.deleted_age.bytes,
            report.deleted_bytes.runs,
            report.deleted_bytes.bytes,
            pruned,
        );
        let event = NewAuditEvent::new("system", "retention.purge", "").detail(detail);
        if let Err(e) = self.store.record_audit(event, now).await {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
        if !report.dry_run {
            let data = serde_json::json!({
                "deleted_by_age": { "runs": report.deleted_age.runs, "bytes": report.deleted_age.bytes },
                "deleted_by_byte_cap": { "runs": report.deleted_bytes.runs, "bytes": report.deleted_bytes.bytes },
                "audit_entries_pruned": pruned,
                "duration_ms": u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            });
            // Failing here retries the purge, which then finds less to delete: fine.
            self.notifier
                .purged(ctx.job().id.get(), data)
                .await
                .map_err(|e| WorkerError::retry(format!("webhook events: {e}")))?;
        }
        self.last.set(report);
        Ok(())
    }
}
