//! [`RetentionWorker`]: plans a purge through the store and deletes oldest first in batches.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::store::RunStore;
use crate::error::Result;
use crate::model::ids::DeviceId;
use crate::retention::{
    DeleteGuard, FootprintCursor, PlanBuilder, PurgePlan, RetentionConfig, RunFootprint,
};
use crate::runtime::{JobContext, Worker, WorkerError};
use crate::telemetry;

/// Most runs deleted in one transaction.
pub const DEFAULT_BATCH_RUNS: usize = 200;
/// Footprints read per store call while planning.
pub const DEFAULT_PAGE: usize = 5_000;

/// Arguments of a [`RetentionWorker`] job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionArgs {
    /// Plan and report, delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Counts and bytes of what a purge deleted for one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Runs deleted.
    pub runs: u64,
    /// Their output bytes.
    pub bytes: u64,
    /// Their chunks.
    pub chunks: u64,
}

/// What one purge did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
    /// The plan: what was to be deleted and why.
    pub plan: PurgePlan,
    /// Deleted by the age rule (zero in a dry run).
    pub deleted_age: Deleted,
    /// Deleted by the byte rule (zero in a dry run).
    pub deleted_bytes: Deleted,
    /// Delete transactions run.
    pub batches: u64,
    /// Planned runs the guard kept because they changed since planning (or were gone).
    pub kept_by_guard: u64,
    /// Wall time of planning and deleting.
    pub duration: Duration,
}

/// Purges runs by age and per-device byte cap (queue `retention`, scheduled by cron).
#[derive(Debug, Clone)]
pub struct RetentionWorker {
    store: Arc<dyn RunStore>,
    config: RetentionConfig,
    batch_runs: usize,
    page: usize,
}

impl RetentionWorker {
    /// A worker purging `store` with `config` (see [`RetentionConfig::from_env`]).
    pub fn new(store: Arc<dyn RunStore>, config: RetentionConfig) -> Self {
        Self {
            store,
            config,
            batch_runs: DEFAULT_BATCH_RUNS,
            page: DEFAULT_PAGE,
        }
    }

    /// Most runs per delete transaction (at least 1).
    pub fn with_batch_runs(mut self, runs: usize) -> Self {
        self.batch_runs = runs.max(1);
        self
    }

    /// Footprints per store call while planning (at least 1).
    pub fn with_page(mut self, page: usize) -> Self {
        self.page = page.max(1);
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &RetentionConfig {
        &self.config
    }

    /// Plans a purge at `now` through the store: per-device totals, then the aged
    /// footprints, then the footprints of the devices over the cap only, one device at a time.
    pub async fn plan(&self, now: DateTime<Utc>) -> Result<PurgePlan> {
        let mut builder = PlanBuilder::new(&self.config.policy(), now);
        let over = builder.totals(self.store.device_totals().await?);
        let cutoff = builder.cutoff();

        let mut after: Option<FootprintCursor> = None;
        loop {
            let page = self.store.aged_footprints(cutoff, after, self.page).await?;
            let Some(last) = page.last() else { break };
            after = Some(FootprintCursor::from(last));
            for fp in &page {
                builder.aged(fp);
            }
        }

        let mut after: Option<FootprintCursor> = None;
        let mut current: Option<(DeviceId, Vec<RunFootprint>)> = None;
        if !over.is_empty() {
            loop {
                let page = self
                    .store
                    .device_footprints(&over, after, self.page)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(FootprintCursor::from(last));
                for fp in page {
                    match &mut current {
                        Some((device, runs)) if *device == fp.device_id => runs.push(fp),
                        _ => {
                            if let Some((device, runs)) = current.replace((fp.device_id, vec![fp]))
                            {
                                builder.device(device, runs);
                            }
                        }
                    }
                }
            }
        }
        if let Some((device, runs)) = current {
            builder.device(device, runs);
        }
        Ok(builder.finish())
    }

    /// Plans and (unless `dry_run`) deletes, oldest first, in batches of at most 200 runs, one
    /// transaction each, under the guard. Emits `netauto.retention.purge`.
    ///
    /// Interrupted halfway, it resumes cleanly: planning again yields exactly what is left.
    pub async fn purge(&self, now: DateTime<Utc>, dry_run: bool) -> Result<PurgeReport> {
        let started = std::time::Instant::now();
        let plan = self.plan(now).await?;
        let mut report = PurgeReport {
            dry_run,
            deleted_age: Deleted::default(),
            deleted_bytes: Deleted::default(),
            batches: 0,
            kept_by_guard: 0,
            duration: Duration::ZERO,
            plan,
        };
        if !dry_run {
            let batches: Vec<(DeleteGuard, Vec<crate::model::ids::RunId>)> = report
                .plan
                .batches(self.batch_runs)
                .map(|(guard, batch)| (guard, batch.iter().map(|d| d.run_id).collect()))
                .collect();
            for (guard, ids) in batches {
                let deleted = self.store.delete_runs(&ids, guard).await?;
                let into = match guard {
                    DeleteGuard::AgedBefore(_) => &mut report.deleted_age,
                    DeleteGuard::Finished => &mut report.deleted_bytes,
                };
                into.runs += deleted.ids.len() as u64;
                into.bytes += deleted.bytes;
                into.chunks += deleted.chunks;
                report.batches += 1;
                report.kept_by_guard += (ids.len() - deleted.ids.len()) as u64;
            }
        }
        report.duration = started.elapsed();
        emit(&report);
        Ok(report)
    }
}

fn emit(r: &PurgeReport) {
    let p = &r.plan;
    tracing::info!(
        event = telemetry::RETENTION_PURGE,
        dry_run = r.dry_run,
        planned_age = p.age.runs,
        planned_bytes = p.bytes.runs,
        runs_age = r.deleted_age.runs,
        runs_bytes = r.deleted_bytes.runs,
        bytes_age = r.deleted_age.bytes,
        bytes_bytes = r.deleted_bytes.bytes,
        bytes_freed = r.deleted_age.bytes + r.deleted_bytes.bytes,
        batches = r.batches,
        devices_over_cap_before = p.devices_over_cap_before,
        devices_over_cap_after = p.devices_over_cap_after,
        unresolved_devices = p.unresolved.len() as u64,
        kept_by_guard = r.kept_by_guard,
        duration_ms = r.duration.as_millis() as u64,
    );
}

#[async_trait]
impl Worker for RetentionWorker {
    const NAME: &'static str = "netauto.retention";
    const QUEUE: &'static str = "retention";
    /// A purge that keeps failing is retried a few times, then the next cron slot tries again.
    const MAX_ATTEMPTS: u32 = 5;
    type Args = RetentionArgs;

    async fn perform(&self, ctx: &JobContext, args: RetentionArgs) -> Result<(), WorkerError> {
        self.purge(ctx.now(), args.dry_run).await?;
        Ok(())
    }
}
