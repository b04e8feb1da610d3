//! [`BulkJob`]: the worker that runs the devices of one bulk job.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::backend::progress::{BulkEvent, ProgressEvent, ProgressSink};
use crate::backend::store::RunStore;
use crate::error::{Error, Result};
use crate::exec::CancelWatch;
use crate::exec::LimitOverrides;
use crate::exec::{CANCELLED, Executor, RunOptions, is_bulk_cancelled};
use crate::model::bulk::{BulkCounters, DeviceOutcome};
use crate::model::ids::{BulkRef, DeviceId};
use crate::model::job::Job;
use crate::model::run::{Run, RunFinish, RunStatus};
use crate::runtime::Clock;
use crate::runtime::{JobContext, Worker, WorkerError};
use crate::telemetry;

/// Arguments of a [`BulkJob`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkArgs {
    /// The devices of this job.
    pub device_ids: Vec<DeviceId>,
    /// The command.
    pub command: String,
    /// Who asked.
    pub requested_by: String,
    /// The bulk.
    pub bulk_ref: BulkRef,
    /// The bulk's own deadline and output cap (empty: the node's defaults).
    #[serde(default, skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
}

/// The part of a bulk job's args that names its bulk and devices: read from the stored args
/// of a job being discarded, even when the rest of them does not decode.
#[derive(Debug, Deserialize)]
struct BulkMembers {
    device_ids: Vec<DeviceId>,
    bulk_ref: BulkRef,
}

/// Default number of devices of one job run at the same time.
pub const DEFAULT_DEVICE_CONCURRENCY: usize = 10;
/// `NETAUTO_DEVICES_PER_JOB`: devices of one bulk job run at the same time (1–1000, default
/// 10). With `bulk` jobs per node (`NETAUTO_QUEUES`), it sets the devices in flight per node.
pub const DEVICES_PER_JOB_VAR: &str = "NETAUTO_DEVICES_PER_JOB";

/// Parses a number of devices per job (1–1000).
pub fn parse_devices_per_job(value: &str) -> std::result::Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n @ 1..=1000) => Ok(n),
        _ => Err("not a number of devices from 1 to 1000".to_owned()),
    }
}

/// `NETAUTO_DEVICES_PER_JOB`, or [`DEFAULT_DEVICE_CONCURRENCY`] when unset.
pub fn devices_per_job_from_env() -> std::result::Result<usize, crate::ConfigError> {
    match std::env::var(DEVICES_PER_JOB_VAR) {
        Err(_) => Ok(DEFAULT_DEVICE_CONCURRENCY),
        Ok(v) => parse_devices_per_job(&v).map_err(|reason| crate::ConfigError {
            var: DEVICES_PER_JOB_VAR,
            value: v,
            reason,
        }),
    }
}

/// `error_kind` of a run a bulk job closed because the worker running it stopped.
const INTERRUPTED: &str = "interrupted";
/// `error_kind` of the outcome of a device whose bulk job ended for good without running it.
pub const ABANDONED: &str = "job_discarded";

/// Runs the devices of one bulk job (queue `bulk`).
///
/// A device that already has an outcome in the bulk is skipped, and a device whose run of
/// this bulk already finished gets that run recorded instead of a new one — so a retried or
/// rescued job never runs a finished device again. A run left `running` by a killed worker
/// is closed as `error`/`interrupted` and the device runs again. Device failures are
/// outcomes; a store failure fails the job so it is retried. When the bulk is cancelled,
/// devices not started yet are recorded `cancelled` and running ones are stopped. When the
/// job ends for good without completing ([`Worker::on_discard`]), every device of it without
/// an outcome is recorded `error`/`job_discarded` (or `cancelled`), so its bulk always ends.
#[derive(Debug, Clone)]
pub struct BulkJob {
    network: Executor,
    concurrency: usize,
}

impl BulkJob {
    /// A worker running devices through `network` (whose [`ExecLimits`](crate::ExecLimits)
    /// apply unless the bulk sets its own).
    pub fn new(network: Executor) -> Self {
        Self {
            network,
            concurrency: DEFAULT_DEVICE_CONCURRENCY,
        }
    }

    /// Devices of one job run at the same time (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The network service it runs devices with.
    pub fn network(&self) -> &Executor {
        &self.network
    }

    async fn run_device(
        &self,
        args: &BulkArgs,
        device_id: DeviceId,
        previous: Option<Run>,
        bulk: &CancelWatch,
    ) -> Result<()> {
        let store = self.network.store();
        let now = || self.network.clock().now();
        let outcome = match previous {
            // A run closed as interrupted never finished on the device: it runs again.
            Some(run)
                if run.status.is_finished() && run.error_kind.as_deref() != Some(INTERRUPTED) =>
            {
                outcome_of_run(&run, now())
            }
            other => {
                let stale = other.map(|r| r.id);
                if let Some(stale) = stale {
                    close_interrupted(store.as_ref(), stale, now()).await?;
                }
                if bulk.is_cancelled() {
                    cancelled_outcome(device_id, stale, now())
                } else {
                    let opts = RunOptions::new(&args.requested_by)
                        .with_bulk_ref(args.bulk_ref.clone())
                        .with_limits(args.limits);
                    match self
                        .network
                        .execute_command(device_id, &args.command, opts)
                        .await
                    {
                        Ok(run) => outcome_of_run(&run, now()),
                        Err(e) if is_store_failure(&e) => return Err(e),
                        Err(e) if is_bulk_cancelled(&e) => {
                            cancelled_outcome(device_id, stale, now())
                        }
                        Err(e) => DeviceOutcome {
                            device_id,
                            run_id: None,
                            status: RunStatus::Error,
                            error_kind: Some(error_kind(&e).to_owned()),
                            recorded_at: now(),
                            truncated: false,
                        },
                    }
                }
            }
        };
        self.record(args, outcome).await
    }

    /// Records a device's outcome, then announces it (and the bulk's Summary when it was the
    /// last). Once the outcome is stored a retry skips the device, so an attempt stopped
    /// between the two (lease lost, timeout, released at shutdown) would lose its Progress, or
    /// the bulk's one Summary, for good: the pair runs on a task of its own, which stopping the
    /// attempt does not cancel. (A process that exits, or is killed, right then still loses
    /// them; live pages recover from the store.)
    async fn record(&self, args: &BulkArgs, outcome: DeviceOutcome) -> Result<()> {
        let network = self.network.clone();
        let bulk_ref = args.bulk_ref.clone();
        tokio::spawn(
            async move { record_and_announce(&network, &bulk_ref, outcome).await }
                .in_current_span(),
        )
        .await
        .map_err(|e| Error::Backend {
            source: format!("recording a device outcome failed: {e}").into(),
        })?
    }
}

/// Finishes a run a stopped worker left `running` as `error`/`interrupted`.
async fn close_interrupted(
    store: &dyn RunStore,
    run: crate::model::ids::RunId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let finish = RunFinish::new(RunStatus::Error).with_error(
        INTERRUPTED,
        "the worker running this device stopped; run again",
    );
    match store.finish_run(run, finish, now).await {
        Ok(_) | Err(Error::RunGone(_) | Error::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn record_and_announce(
    network: &Executor,
    bulk_ref: &BulkRef,
    outcome: DeviceOutcome,
) -> Result<()> {
    let store = network.store();
    let (device_id, run_id, status, truncated) = (
        outcome.device_id,
        outcome.run_id,
        outcome.status,
        outcome.truncated,
    );
    let error_kind = outcome.error_kind.clone();
    let run = run_id.map(|r| r.get());
    if status.is_ok() {
        tracing::info!(event = telemetry::BULK_OK, bulk_ref = %bulk_ref, device_id = device_id.get(), run_id = run);
    } else {
        tracing::warn!(
            event = telemetry::BULK_ERROR,
            bulk_ref = %bulk_ref,
            device_id = device_id.get(),
            run_id = run,
            status = status.as_str(),
            error_kind = outcome.error_kind.as_deref().unwrap_or(status.as_str()),
        );
    }
    let recorded = store.record_outcome(bulk_ref, outcome).await?;
    if !recorded.newly_recorded {
        return Ok(());
    }
    let progress = network.progress();
    progress
        .publish(ProgressEvent::Bulk(BulkEvent::Progress {
            bulk_ref: bulk_ref.clone(),
            device_id,
            run_id,
            status,
            error_kind,
            truncated,
            done: recorded.counters.done(),
            total: recorded.counters.total,
        }))
        .await;
    if recorded.completed_now {
        announce_summary(
            store.as_ref(),
            progress.as_ref(),
            network.clock().as_ref(),
            bulk_ref,
            recorded.counters,
        )
        .await;
    }
    Ok(())
}

/// Publishes the bulk's one Summary: called only by the call that completed the bulk (a
/// failed read of the bulk must not lose it — a retry would find every device recorded and
/// publish nothing — so its duration then says 0).
pub(super) async fn announce_summary(
    store: &dyn RunStore,
    progress: &dyn ProgressSink,
    clock: &dyn Clock,
    bulk_ref: &BulkRef,
    c: BulkCounters,
) {
    let duration = match store.bulk_state(bulk_ref).await {
        Ok(state) => {
            let finished = state.finished_at.unwrap_or_else(|| clock.now());
            (finished - state.created_at).to_std().unwrap_or_default()
        }
        Err(e) => {
            tracing::warn!(bulk_ref = %bulk_ref, error = %e, "cannot read the bulk for its duration; summary says 0");
            Duration::ZERO
        }
    };
    tracing::info!(
        event = telemetry::BULK_SUMMARY,
        bulk_ref = %bulk_ref,
        ok = c.ok,
        failed = c.failed,
        cancelled = c.cancelled,
        total = c.total,
        duration_ms = duration.as_millis() as u64,
    );
    progress
        .publish(ProgressEvent::Bulk(BulkEvent::Summary {
            bulk_ref: bulk_ref.clone(),
            ok: c.ok,
            failed: c.failed,
            cancelled: c.cancelled,
            total: c.total,
            duration,
        }))
        .await;
}

#[async_trait]
impl Worker for BulkJob {
    const NAME: &'static str = "netauto.bulk";
    const QUEUE: &'static str = "bulk";
    type Args = BulkArgs;

    async fn perform(&self, _ctx: &JobContext, args: BulkArgs) -> Result<(), WorkerError> {
        let store = self.network.store();
        let outcomes = match store
            .device_outcomes(&args.bulk_ref, &args.device_ids)
            .await
        {
            // The bulk and its jobs are written together: a job without its bulk is a stray
            // row that no retry can mend (it was retried with backoff for weeks).
            Err(e @ Error::NotFound { .. }) => return Err(WorkerError::discard(e)),
            other => other?,
        };
        let done: HashSet<DeviceId> = outcomes.into_iter().map(|o| o.device_id).collect();
        let todo: Vec<DeviceId> = args
            .device_ids
            .iter()
            .copied()
            .filter(|d| !done.contains(d))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        // Watch the bulk for a cancel before anything starts, and ask the store once: the
        // watch learns of a cancel only at its next poll.
        let watch = self.network.cancellations().watch_bulk(&args.bulk_ref);
        if !store
            .cancel_requests(std::slice::from_ref(&args.bulk_ref), &[])
            .await?
            .bulks
            .is_empty()
        {
            self.network
                .cancellations()
                .cancel_bulk_locally(&args.bulk_ref);
        }
        // Runs of this bulk that a previous attempt started: finished ones are reused,
        // unfinished ones closed and run again. The newest run per device counts.
        let mut previous: HashMap<DeviceId, Run> = HashMap::new();
        for run in store.bulk_runs(&args.bulk_ref, &todo).await? {
            match previous.get(&run.device_id) {
                Some(seen) if seen.id > run.id => {}
                _ => {
                    previous.insert(run.device_id, run);
                }
            }
        }
        let results: Vec<Result<()>> = futures_util::stream::iter(todo)
            .map(|device_id| {
                let prev = previous.remove(&device_id);
                let (args, watch) = (&args, &watch);
                async move { self.run_device(args, device_id, prev, watch).await }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        // Every device was attempted; the first store failure fails the job (it is retried and
        // skips what was recorded).
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    async fn on_discard(&self, job: &Job, reason: &str) -> Result<(), WorkerError> {
        let Ok(members) = serde_json::from_value::<BulkMembers>(job.args.clone()) else {
            tracing::error!(
                job_id = job.id.get(),
                reason,
                "a bulk job without a readable bulk_ref and device_ids is discarded; its bulk, if any, cannot be told"
            );
            return Ok(());
        };
        let BulkMembers {
            device_ids,
            bulk_ref,
        } = members;
        let store = self.network.store();
        let now = || self.network.clock().now();
        let outcomes = match store.device_outcomes(&bulk_ref, &device_ids).await {
            Err(Error::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        let done: HashSet<DeviceId> = outcomes.into_iter().map(|o| o.device_id).collect();
        let todo: Vec<DeviceId> = device_ids
            .into_iter()
            .filter(|d| !done.contains(d))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let cancelled = !store
            .cancel_requests(std::slice::from_ref(&bulk_ref), &[])
            .await?
            .bulks
            .is_empty();
        let mut latest: HashMap<DeviceId, Run> = HashMap::new();
        for run in store.bulk_runs(&bulk_ref, &todo).await? {
            latest.insert(run.device_id, run);
        }
        tracing::warn!(
            event = telemetry::BULK_ABANDONED,
            bulk_ref = %bulk_ref,
            job_id = job.id.get(),
            devices = todo.len(),
            reason,
        );
        for device_id in todo {
            let run = latest.remove(&device_id);
            // No attempt of this job runs any more: a run still `running` was left by one
            // that stopped.
            if let Some(r) = run.as_ref().filter(|r| !r.status.is_finished()) {
                close_interrupted(store.as_ref(), r.id, now()).await?;
            }
            let outcome = match run {
                Some(r)
                    if r.status.is_finished() && r.error_kind.as_deref() != Some(INTERRUPTED) =>
                {
                    outcome_of_run(&r, now())
                }
                other if cancelled => cancelled_outcome(device_id, other.map(|r| r.id), now()),
                other => DeviceOutcome {
                    device_id,
                    run_id: other.map(|r| r.id),
                    status: RunStatus::Error,
                    error_kind: Some(ABANDONED.to_owned()),
                    recorded_at: now(),
                    truncated: false,
                },
            };
            record_and_announce(&self.network, &bulk_ref, outcome).await?;
        }
        Ok(())
    }
}

fn cancelled_outcome(
    device_id: DeviceId,
    run_id: Option<crate::model::ids::RunId>,
    now: chrono::DateTime<chrono::Utc>,
) -> DeviceOutcome {
    DeviceOutcome {
        device_id,
        run_id,
        status: RunStatus::Cancelled,
        error_kind: Some(CANCELLED.to_owned()),
        recorded_at: now,
        truncated: false,
    }
}

fn outcome_of_run(run: &Run, now: chrono::DateTime<chrono::Utc>) -> DeviceOutcome {
    DeviceOutcome {
        device_id: run.device_id,
        run_id: Some(run.id),
        status: run.status,
        error_kind: run
            .error_kind
            .clone()
            .or_else(|| (run.status == RunStatus::Failed).then(|| "exit_status".to_owned())),
        recorded_at: now,
        truncated: run.truncated,
    }
}

/// Errors of the store itself (as opposed to this device's input): they fail the job.
fn is_store_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable { .. } | Error::Backend { .. } | Error::Serialization(_)
    )
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "not_found",
        Error::RunGone(_) => "run_gone",
        Error::Validation(_) => "invalid",
        Error::Network(n) => n.kind(),
        Error::Conflict(_) => "conflict",
        _ => "internal",
    }
}
