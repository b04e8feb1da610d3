//! Bulk fan-out: [`Bulk::enqueue`] validates and writes a bulk with its jobs; [`BulkJob`] runs
//! one job's devices.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::bulk::{DeviceOutcome, NewBulk};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result, ValidationError};
use crate::ids::{BulkRef, DeviceId};
use crate::progress::{BulkEvent, ProgressEvent};
use crate::run::{Run, RunFinish, RunStatus};
use crate::services::network::{ExecuteOptions, Network};
use crate::store::RunStore;
use crate::telemetry;
use crate::validation::{BulkRequest, DEFAULT_CHUNK_SIZE, chunk_ids};
use crate::worker::{JobContext, Worker, WorkerError};

/// Something to poke when jobs were enqueued behind the queue's back (the runner's wake-up).
pub trait Wake: Send + Sync + std::fmt::Debug + 'static {
    /// New jobs may be available.
    fn wake(&self);
}

/// Starts bulk runs.
#[derive(Debug, Clone)]
pub struct Bulk {
    store: Arc<dyn RunStore>,
    clock: Arc<dyn Clock>,
    chunk_size: NonZeroUsize,
    wake: Option<Arc<dyn Wake>>,
}

impl Bulk {
    /// A service writing bulks and their jobs through `store`.
    pub fn new(store: Arc<dyn RunStore>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            chunk_size: DEFAULT_CHUNK_SIZE,
            wake: None,
        }
    }

    /// Reads time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Devices per job (default 50).
    pub fn with_chunk_size(mut self, size: NonZeroUsize) -> Self {
        self.chunk_size = size;
        self
    }

    /// Wakes a local runner after enqueueing, so the jobs start without waiting for a poll.
    pub fn with_wake(mut self, wake: Arc<dyn Wake>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Validates the request, then creates the bulk record and all its jobs (queue `bulk`,
    /// worker [`BulkJob`], up to 50 devices each) in one atomic step. Bad input answers one
    /// [`Error::Validation`] — all unknown ids listed together — and enqueues nothing.
    pub async fn enqueue(
        &self,
        device_ids: &[DeviceId],
        command: &str,
        requested_by: &str,
    ) -> Result<BulkRef> {
        let valid = BulkRequest {
            device_ids,
            command,
            requested_by,
        }
        .validate()?;
        let unknown = self.store.unknown_devices(&valid.device_ids).await?;
        if !unknown.is_empty() {
            return Err(ValidationError::UnknownDevices(unknown).into());
        }
        let bulk_ref = BulkRef::generate();
        let jobs = chunk_ids(&valid.device_ids, self.chunk_size)
            .map(|ids| {
                BulkJob::new_job(&BulkArgs {
                    device_ids: ids.to_vec(),
                    command: valid.command.clone(),
                    requested_by: valid.requested_by.clone(),
                    bulk_ref: bulk_ref.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bulk = NewBulk {
            bulk_ref: bulk_ref.clone(),
            command: valid.command,
            requested_by: valid.requested_by,
            device_ids: valid.device_ids,
        };
        self.store.create_bulk(bulk, jobs, self.clock.now()).await?;
        if let Some(wake) = &self.wake {
            wake.wake();
        }
        Ok(bulk_ref)
    }
}

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
}

/// Default number of devices of one job run at the same time.
pub const DEFAULT_DEVICE_CONCURRENCY: usize = 10;

/// `error_kind` of a run a bulk job closed because the worker running it stopped.
const INTERRUPTED: &str = "interrupted";

/// Runs the devices of one bulk job (queue `bulk`).
///
/// A device that already has an outcome in the bulk is skipped, and a device whose run of
/// this bulk already finished gets that run recorded instead of a new one — so a retried or
/// rescued job never runs a finished device again. A run left `running` by a killed worker
/// is closed as `error`/`interrupted` and the device runs again. Device failures are
/// outcomes; a store failure fails the job so it is retried.
#[derive(Debug, Clone)]
pub struct BulkJob {
    network: Network,
    concurrency: usize,
    timeout: Option<Duration>,
}

impl BulkJob {
    /// A worker running devices through `network`.
    pub fn new(network: Network) -> Self {
        Self {
            network,
            concurrency: DEFAULT_DEVICE_CONCURRENCY,
            timeout: None,
        }
    }

    /// Devices of one job run at the same time (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Deadline of each device's command.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run_device(
        &self,
        args: &BulkArgs,
        device_id: DeviceId,
        previous: Option<Run>,
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
                if let Some(stale) = other {
                    let finish = RunFinish::new(RunStatus::Error).with_error(
                        INTERRUPTED,
                        "the worker running this device stopped; run again",
                    );
                    match store.finish_run(stale.id, finish, now()).await {
                        Ok(_) | Err(Error::RunGone(_) | Error::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                let mut opts =
                    ExecuteOptions::new(&args.requested_by).with_bulk_ref(args.bulk_ref.clone());
                if let Some(t) = self.timeout {
                    opts = opts.with_timeout(t);
                }
                match self
                    .network
                    .execute_command(device_id, &args.command, opts)
                    .await
                {
                    Ok(run) => outcome_of_run(&run, now()),
                    Err(e) if is_store_failure(&e) => return Err(e),
                    Err(e) => DeviceOutcome {
                        device_id,
                        run_id: None,
                        status: RunStatus::Error,
                        error_kind: Some(error_kind(&e).to_owned()),
                        recorded_at: now(),
                    },
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

async fn record_and_announce(
    network: &Network,
    bulk_ref: &BulkRef,
    outcome: DeviceOutcome,
) -> Result<()> {
    let store = network.store();
    let (device_id, run_id, status) = (outcome.device_id, outcome.run_id, outcome.status);
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
            done: recorded.counters.done(),
            total: recorded.counters.total,
        }))
        .await;
    if recorded.completed_now {
        // The Summary is published by this call only: a failed read must not lose it
        // (a retry would find every device recorded and publish nothing).
        let duration = match store.bulk(bulk_ref).await {
            Ok(bulk) => {
                let finished = bulk.finished_at.unwrap_or_else(|| network.clock().now());
                (finished - bulk.created_at).to_std().unwrap_or_default()
            }
            Err(e) => {
                tracing::warn!(bulk_ref = %bulk_ref, error = %e, "cannot read the bulk for its duration; summary says 0");
                Duration::ZERO
            }
        };
        let c = recorded.counters;
        tracing::info!(
            event = telemetry::BULK_SUMMARY,
            bulk_ref = %bulk_ref,
            ok = c.ok,
            failed = c.failed,
            total = c.total,
            duration_ms = duration.as_millis() as u64,
        );
        progress
            .publish(ProgressEvent::Bulk(BulkEvent::Summary {
                bulk_ref: bulk_ref.clone(),
                ok: c.ok,
                failed: c.failed,
                total: c.total,
                duration,
            }))
            .await;
    }
    Ok(())
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
                let args = &args;
                async move { self.run_device(args, device_id, prev).await }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        // Every device was attempted; the first store failure fails the job (it is retried and
        // skips what was recorded).
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
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
