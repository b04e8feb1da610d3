//! Performing one claimed job: heartbeats, timeout, panics, outcome, telemetry.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tracing::Instrument;

use super::complete::Completer;
use crate::backend::queue::JobQueue;
use crate::error::{Conflict, Error};
use crate::model::job::{FailAction, Job, JobState};
use crate::runtime::Clock;
use crate::runtime::{ErasedWorker, JobContext, PerformError, WorkerRegistry};
use crate::telemetry;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Completed.
    Completed,
    /// Failed and will be retried.
    Retryable,
    /// Failed for good (attempts exhausted, malformed args, unknown worker, or the worker
    /// said so).
    Discarded,
    /// The attempt lost its lease (rescued or cancelled elsewhere), or stopped itself because
    /// it could not renew it; nothing was recorded.
    LeaseLost,
    /// The job ended for good but its worker's [`on_discard`](crate::runtime::Worker::on_discard)
    /// failed on its last attempt: nothing was recorded, so the lease expires and the runner
    /// that rescues the job calls the hook again before discarding it.
    Deferred,
}

/// Lease settings of an attempt, and how its completion is recorded.
#[derive(Debug, Clone)]
pub(crate) struct LeaseSettings {
    pub(crate) lease: Duration,
    pub(crate) heartbeat_every: Duration,
    /// Batches completions with other attempts; `None` completes directly.
    pub(crate) completer: Option<Completer>,
}

/// Performs `job` (already claimed: `executing`, its attempt counted) with the worker the
/// registry names, renewing its lease, and records the result in the queue, fenced by attempt.
pub(crate) async fn execute_job(
    queue: &Arc<dyn JobQueue>,
    registry: &WorkerRegistry,
    clock: &Arc<dyn Clock>,
    job: Job,
    lease: LeaseSettings,
) -> Result<AttemptOutcome, Error> {
    let span = tracing::info_span!("netauto.job", job_id = job.id.get(), worker = %job.worker, queue = %job.queue, attempt = job.attempt);
    attempt_job(queue, registry, clock, job, lease)
        .instrument(span)
        .await
}

async fn attempt_job(
    queue: &Arc<dyn JobQueue>,
    registry: &WorkerRegistry,
    clock: &Arc<dyn Clock>,
    job: Job,
    lease: LeaseSettings,
) -> Result<AttemptOutcome, Error> {
    let (id, attempt) = (job.id, job.attempt);
    let started = Instant::now();
    tracing::info!(event = telemetry::JOB_START, job_id = id.get(), worker = %job.worker, queue = %job.queue, attempt);

    let Some(worker) = registry.get(&job.worker) else {
        let msg = format!(
            "no worker named {:?} is registered on this node",
            job.worker
        );
        return finish_failed(
            queue,
            clock,
            &job,
            started,
            "unknown_worker",
            &msg,
            FailAction::Discard,
            None,
        )
        .await;
    };
    let ctx = JobContext::new(job.clone(), clock.clone());
    let perform = AssertUnwindSafe(worker.perform(&ctx)).catch_unwind();
    let timeout = worker.timeout();
    let perform = async {
        match timeout {
            Some(t) => tokio::time::timeout(t, perform).await.map_err(|_| t),
            None => Ok(perform.await),
        }
    };
    tokio::pin!(perform);

    // The heartbeat runs beside the worker, never instead of it: awaiting it inside a select
    // arm stopped polling `perform` meanwhile, so a worker holding the only writer connection
    // (SQLite) mid-transaction deadlocked with its own heartbeat until the pool timed out. It
    // runs on its own task and is never dropped mid-query either: a pooled query cancelled
    // half-way could keep the pool's only SQLite writer checked out until the acquire
    // timeout. Dropping `stop` (when this attempt ends, however it ends) ends the task
    // between two beats.
    let every = heartbeat_interval(lease.lease, lease.heartbeat_every);
    let margin = fence_margin(lease.lease, every);
    // The lease this attempt holds, as a local deadline: the claim's own at first, then
    // whatever each successful heartbeat secured (measured from before it was sent). If the
    // heartbeats keep failing (the database is unreachable, say), the attempt stops itself
    // `margin` before that deadline, so a node that rescues the job once it expires never
    // runs it beside this one.
    // A claim whose lease already ran out (a claim that took longer than the lease) holds
    // nothing: the attempt stops at once rather than run beside a rescuer.
    let claimed_for = job.lease_expires_at.map_or(lease.lease, |until| {
        (until - clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(lease.lease)
    });
    let (secured_tx, mut secured) =
        tokio::sync::watch::channel(tokio::time::Instant::now() + claimed_for);
    let (stop, mut stopped) = tokio::sync::watch::channel(());
    let (lost_tx, mut lost) = tokio::sync::oneshot::channel::<()>();
    let (hb_queue, hb_clock, lease_len) = (queue.clone(), clock.clone(), lease.lease);
    tokio::spawn(
        async move {
            let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = beat.tick() => {}
                    _ = stopped.changed() => return,
                }
                let sent = tokio::time::Instant::now();
                let until = hb_clock.now()
                    + chrono::Duration::from_std(lease_len).unwrap_or(chrono::Duration::MAX);
                match hb_queue.heartbeat(id, attempt, until).await {
                    Ok(()) => {
                        let _ = secured_tx.send(sent + lease_len);
                    }
                    Err(Error::Conflict(_) | Error::NotFound { .. }) => {
                        let _ = lost_tx.send(());
                        return;
                    }
                    // A failed heartbeat is not fatal: the lease may still be valid.
                    Err(e) => tracing::warn!(job_id = id.get(), error = %e, "heartbeat failed"),
                }
            }
        }
        .in_current_span(),
    );
    let mut lost_open = true;
    let result = loop {
        let fence_at = secured.borrow_and_update().checked_sub(margin);
        let fence = async {
            match fence_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::ready(()).await,
            }
        };
        tokio::select! {
            r = &mut perform => break r,
            r = &mut lost, if lost_open => {
                if r.is_err() {
                    // The heartbeat task is gone without a verdict (it panicked): the fence
                    // below still stops this attempt before its lease runs out.
                    lost_open = false;
                    continue;
                }
                tracing::warn!(event = telemetry::JOB_EXCEPTION, job_id = id.get(), worker = %job.worker,
                    queue = %job.queue, attempt, kind = "lease_lost", error = "the job was rescued or cancelled; stopping");
                return Ok(AttemptOutcome::LeaseLost);
            }
            Ok(()) = secured.changed() => {}
            () = fence => {
                tracing::warn!(event = telemetry::JOB_EXCEPTION, job_id = id.get(), worker = %job.worker,
                    queue = %job.queue, attempt, kind = "lease_unrenewed",
                    error = "the lease could not be renewed; stopping before it expires so that a rescue never runs beside this attempt");
                return Ok(AttemptOutcome::LeaseLost);
            }
        }
    };
    drop(stop);

    let backoff = || {
        let delay = worker.backoff(attempt);
        FailAction::RetryAt(
            clock.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
        )
    };
    match result {
        Ok(Ok(Ok(()))) => {
            let completed = match &lease.completer {
                Some(c) => c.complete(id, attempt).await,
                None => match queue.complete(id, attempt, clock.now()).await {
                    Ok(()) => Ok(true),
                    Err(Error::Conflict(_)) => Ok(false),
                    Err(e) => Err(e),
                },
            };
            if !completed? {
                return Ok(AttemptOutcome::LeaseLost);
            }
            tracing::info!(event = telemetry::JOB_STOP, job_id = id.get(), worker = %job.worker, queue = %job.queue,
                attempt, duration_ms = started.elapsed().as_millis() as u64);
            Ok(AttemptOutcome::Completed)
        }
        Ok(Ok(Err(PerformError::Malformed(msg)))) => {
            finish_failed(
                queue,
                clock,
                &job,
                started,
                "malformed",
                &msg,
                FailAction::Discard,
                Some(&worker),
            )
            .await
        }
        Ok(Ok(Err(PerformError::Failed(e)))) => {
            let (kind, action) = if e.is_discard() {
                ("discard", FailAction::Discard)
            } else {
                ("retry", backoff())
            };
            finish_failed(
                queue,
                clock,
                &job,
                started,
                kind,
                e.message(),
                action,
                Some(&worker),
            )
            .await
        }
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            finish_failed(
                queue,
                clock,
                &job,
                started,
                "panic",
                &format!("worker panicked: {msg}"),
                backoff(),
                Some(&worker),
            )
            .await
        }
        Err(t) => {
            let msg = format!("attempt timed out after {t:?}");
            finish_failed(
                queue,
                clock,
                &job,
                started,
                "timeout",
                &msg,
                backoff(),
                Some(&worker),
            )
            .await
        }
    }
}

/// How often an attempt renews its lease: as configured, but at least twice per lease (so a
/// slow heartbeat setting cannot let the lease lapse) and not more than every 10 ms.
fn heartbeat_interval(lease: Duration, configured: Duration) -> Duration {
    configured.min(lease / 2).max(Duration::from_millis(10))
}

/// How long before its last secured lease runs out an attempt that cannot renew it stops:
/// one heartbeat interval, at most a quarter of the lease. It is also the clock skew between
/// nodes that fencing tolerates.
fn fence_margin(lease: Duration, every: Duration) -> Duration {
    every.min(lease / 4)
}

/// Records a failed attempt. When it ends the job for good (a discard, or the last attempt),
/// the worker's discard hook runs first; if the hook fails, a discard becomes a retry, and a
/// last attempt is left to lease expiry (the rescuer runs the hook again).
#[allow(clippy::too_many_arguments)]
async fn finish_failed(
    queue: &Arc<dyn JobQueue>,
    clock: &Arc<dyn Clock>,
    job: &Job,
    started: Instant,
    kind: &'static str,
    message: &str,
    mut action: FailAction,
    worker: Option<&Arc<dyn ErasedWorker>>,
) -> Result<AttemptOutcome, Error> {
    let for_good = action == FailAction::Discard || job.attempt >= job.max_attempts;
    if let (true, Some(worker)) = (for_good, worker)
        && let Err(e) = worker.on_discard(job, message).await
    {
        tracing::warn!(job_id = job.id.get(), worker = %job.worker, error = %e,
            "the worker's discard hook failed; the job is not discarded yet");
        if job.attempt >= job.max_attempts {
            return Ok(AttemptOutcome::Deferred);
        }
        let delay = worker.backoff(job.attempt);
        action = FailAction::RetryAt(
            clock.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
        );
    }
    let state = match queue
        .fail(job.id, job.attempt, message, action, clock.now())
        .await
    {
        Ok(state) => state,
        Err(Error::Conflict(Conflict::StaleAttempt { .. } | Conflict::JobFinished(_))) => {
            return Ok(AttemptOutcome::LeaseLost);
        }
        Err(e) => return Err(e),
    };
    tracing::warn!(
        event = telemetry::JOB_EXCEPTION,
        job_id = job.id.get(),
        worker = %job.worker,
        queue = %job.queue,
        attempt = job.attempt,
        duration_ms = started.elapsed().as_millis() as u64,
        kind,
        error = message,
        state = state.as_str(),
    );
    Ok(if state == JobState::Discarded {
        AttemptOutcome::Discarded
    } else {
        AttemptOutcome::Retryable
    })
}
