//! The worker runtime: claims jobs per queue up to each queue's limit, runs them with their
//! workers, renews leases, retries with backoff, rescues jobs of dead nodes, enqueues cron
//! slots, and shuts down gracefully.
//!
//! ```no_run
//! # async fn wire(
//! #     queue: std::sync::Arc<dyn netauto_core::JobQueue>,
//! #     store: std::sync::Arc<dyn netauto_core::RunStore>,
//! #     network: netauto_core::exec::Executor,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use netauto_core::runtime::{CronEntry, CronSchedule};
//! use netauto_core::retention::RetentionConfig;
//! use netauto_core::runtime::{Runner, RunnerConfig};
//! use netauto_core::bulk::BulkJob;
//! use netauto_core::retention::{RetentionArgs, RetentionWorker};
//! use netauto_core::runtime::WorkerRegistry;
//!
//! let retention = RetentionConfig::from_env()?;
//! let schedule = CronSchedule::parse_setting("NET_AUTO_RETENTION_CRON", retention.cron())?;
//! let registry = WorkerRegistry::new()
//!     .with(BulkJob::new(network))
//!     .with(RetentionWorker::new(store, retention));
//! let runner = Runner::new(queue, registry)
//!     .with_config(RunnerConfig::default())
//!     .with_cron(CronEntry::new::<RetentionWorker>(schedule, &RetentionArgs::default())?);
//! let handle = runner.start();
//! // … serve requests …
//! let report = handle.shutdown().await;
//! println!("released {} unfinished jobs", report.released.len());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;

use super::attempt::{AttemptOutcome, LeaseSettings, execute_job};
use super::complete;
use super::config::RunnerConfig;
use super::maintenance::due;
use super::maintenance::periodic::PeriodicEnqueuer;
use super::maintenance::prune::{PRUNE_EVERY, prune};
use super::maintenance::rescue::rescue_expired;
use super::waking::{RunnerWaker, WakingQueue};

use crate::backend::queue::JobQueue;
use crate::error::Result;
use crate::model::ids::JobId;
use crate::model::job::{ClaimRequest, Job};
use crate::runtime::WorkerRegistry;
use crate::runtime::cron::CronEntry;
use crate::runtime::{Clock, SystemClock};

/// Default age of terminal jobs when pruned (cron slot keys are kept this long).
pub const DEFAULT_PRUNE_AFTER: Duration = Duration::from_secs(30 * 86_400);

/// Runs jobs. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: Arc<dyn JobQueue>,
    registry: WorkerRegistry,
    clock: Arc<dyn Clock>,
    config: RunnerConfig,
    cron: PeriodicEnqueuer,
    prune_after: Option<Duration>,
    wake: Arc<Notify>,
    finished: Notify,
    tick_lock: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    completer: std::sync::OnceLock<complete::Completer>,
}

#[derive(Debug, Default)]
struct State {
    in_flight: HashMap<String, usize>,
    running: HashMap<JobId, (u32, String, AbortHandle)>,
    last_rescue: Option<DateTime<Utc>>,
    last_prune: Option<DateTime<Utc>>,
    last_tick: Option<std::time::Instant>,
    stats: RunnerStats,
}

/// Counters of what a runner did since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerStats {
    /// Jobs claimed.
    pub claimed: u64,
    /// Attempts that completed.
    pub completed: u64,
    /// Attempts that failed and will be retried.
    pub retryable: u64,
    /// Attempts that ended with the job discarded.
    pub discarded: u64,
    /// Attempts that lost their lease, or stopped because they could not renew it.
    pub lease_lost: u64,
    /// Attempts whose outcome could not be recorded (the queue failed).
    pub errors: u64,
    /// Most jobs of one queue ever in flight at once, per queue.
    pub peak_in_flight: usize,
}

/// What one [`Runner::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Jobs claimed and started.
    pub claimed: usize,
    /// Cron jobs newly inserted.
    pub cron_inserted: usize,
    /// Jobs rescued from expired leases.
    pub rescued: usize,
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs still running when shutdown began that finished within the grace period.
    pub drained: usize,
    /// Jobs still running after the grace period, stopped and given back to the queue (a
    /// stopped job that could not be released is left to lease-expiry rescue).
    pub released: Vec<JobId>,
}

impl Runner {
    /// A runner claiming from `queue` and running jobs with the workers of `registry`, with
    /// [`RunnerConfig::default`] and the system clock.
    pub fn new(queue: Arc<dyn JobQueue>, registry: WorkerRegistry) -> Self {
        Self::build(
            queue,
            registry,
            RunnerConfig::default(),
            Arc::new(SystemClock),
            Vec::new(),
            Some(DEFAULT_PRUNE_AFTER),
        )
    }

    fn build(
        queue: Arc<dyn JobQueue>,
        registry: WorkerRegistry,
        config: RunnerConfig,
        clock: Arc<dyn Clock>,
        cron: Vec<CronEntry>,
        prune_after: Option<Duration>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                queue,
                registry,
                clock,
                config,
                cron: PeriodicEnqueuer::new(cron),
                prune_after,
                wake: Arc::new(Notify::new()),
                finished: Notify::new(),
                tick_lock: tokio::sync::Mutex::new(()),
                state: Mutex::new(State::default()),
                completer: std::sync::OnceLock::new(),
            }),
        }
    }

    fn rebuild(
        self,
        f: impl FnOnce(
            &mut RunnerConfig,
            &mut Arc<dyn Clock>,
            &mut Vec<CronEntry>,
            &mut Option<Duration>,
        ),
    ) -> Self {
        let i = &self.inner;
        let (mut config, mut clock, mut cron, mut prune) = (
            i.config.clone(),
            i.clock.clone(),
            i.cron.entries().to_vec(),
            i.prune_after,
        );
        f(&mut config, &mut clock, &mut cron, &mut prune);
        Self::build(
            i.queue.clone(),
            i.registry.clone(),
            config,
            clock,
            cron,
            prune,
        )
    }

    /// Sets the configuration (call before [`start`](Self::start)).
    pub fn with_config(self, config: RunnerConfig) -> Self {
        self.rebuild(|c, _, _, _| *c = config)
    }

    /// Reads time from `clock` (a [`ManualClock`](crate::ManualClock) in tests).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.rebuild(|_, c, _, _| *c = clock)
    }

    /// Adds a cron entry.
    pub fn with_cron(self, entry: CronEntry) -> Self {
        self.rebuild(|_, _, c, _| c.push(entry))
    }

    /// Prunes terminal jobs older than `after` (default 30 days); `None` never prunes.
    ///
    /// Cron catches up a missed slot only while it is younger than `after`: an older slot's
    /// job may have run and been pruned, and running it again is worse than skipping it.
    pub fn with_prune_after(self, after: Option<Duration>) -> Self {
        self.rebuild(|_, _, _, p| *p = after)
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.inner.config
    }

    /// A handle that wakes this runner (give it to [`Bulk::with_wake`](crate::bulk::BulkService::with_wake)).
    pub fn waker(&self) -> Arc<RunnerWaker> {
        Arc::new(RunnerWaker::new(self.inner.wake.clone()))
    }

    /// The queue, wrapped so that enqueueing through it wakes this runner at once.
    pub fn queue(&self) -> Arc<dyn JobQueue> {
        Arc::new(WakingQueue::new(self.inner.queue.clone(), self.waker()))
    }

    /// Counters since the runner was built.
    pub fn stats(&self) -> RunnerStats {
        self.lock().stats
    }

    /// When [`tick`](Self::tick) last ran (a started runner ticks every poll interval, and
    /// at once when woken); `None` before the first. A health check uses it to tell a live
    /// runner from a stalled one.
    pub fn last_tick(&self) -> Option<std::time::Instant> {
        self.lock().last_tick
    }

    /// Jobs of `queue` running right now.
    pub fn in_flight(&self, queue: &str) -> usize {
        self.lock().in_flight.get(queue).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One round of work: enqueue due cron slots, rescue expired leases (when due), prune (when
    /// due), and claim up to the free capacity of every queue, starting each claimed job on
    /// its own task. [`start`](Self::start) calls this in a loop; tests call it directly.
    pub async fn tick(&self) -> Result<TickReport> {
        let _one_at_a_time = self.inner.tick_lock.lock().await;
        self.lock().last_tick = Some(std::time::Instant::now());
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut report = TickReport {
            cron_inserted: inner
                .cron
                .enqueue_due(inner.queue.as_ref(), inner.prune_after, now)
                .await?,
            ..TickReport::default()
        };

        let (rescue_due, prune_due) = {
            let s = self.lock();
            (
                due(s.last_rescue, now, inner.config.rescue_every),
                due(s.last_prune, now, PRUNE_EVERY),
            )
        };
        if rescue_due {
            report.rescued = rescue_expired(inner.queue.as_ref(), &inner.registry, now).await?;
            self.lock().last_rescue = Some(now);
        }
        if let (true, Some(after)) = (prune_due, inner.prune_after) {
            prune(inner.queue.as_ref(), after, now).await?;
            self.lock().last_prune = Some(now);
        }

        let lease = chrono::Duration::from_std(inner.config.lease).unwrap_or(chrono::Duration::MAX);
        // Cron, rescue and prune may have taken a while: leases start from now.
        let now = inner.clock.now();
        for (queue, limit) in inner.config.queues.iter() {
            let free = limit.saturating_sub(self.in_flight(queue));
            if free == 0 {
                continue;
            }
            let req = ClaimRequest::new(queue, free, &inner.config.node).with_lease(lease);
            let jobs = inner.queue.claim(&req, now).await?;
            report.claimed += jobs.len();
            for job in jobs {
                self.spawn(job);
            }
        }
        Ok(report)
    }

    /// The completion batcher, started on first use (inside the runtime).
    fn completer(&self) -> complete::Completer {
        let inner = &self.inner;
        inner
            .completer
            .get_or_init(|| complete::Completer::start(inner.queue.clone(), inner.clock.clone()))
            .clone()
    }

    fn spawn(&self, job: Job) {
        let runner = self.clone();
        let (id, attempt, queue_name) = (job.id, job.attempt, job.queue.clone());
        // Count the job before its task can finish, so the counts never go negative.
        let queue_for_state = queue_name.clone();
        let mut state = self.lock();
        let n = state.in_flight.entry(queue_name.clone()).or_default();
        *n += 1;
        let n = *n;
        state.stats.peak_in_flight = state.stats.peak_in_flight.max(n);
        state.stats.claimed += 1;
        let task = tokio::spawn(async move {
            let inner = &runner.inner;
            let lease = LeaseSettings {
                lease: inner.config.lease,
                heartbeat_every: inner.config.heartbeat_every,
                completer: Some(runner.completer()),
            };
            let outcome =
                execute_job(&inner.queue, &inner.registry, &inner.clock, job, lease).await;
            runner.finished(id, &queue_name, outcome);
        });
        state
            .running
            .insert(id, (attempt, queue_for_state, task.abort_handle()));
    }

    fn finished(&self, id: JobId, queue: &str, outcome: Result<AttemptOutcome>) {
        {
            let mut s = self.lock();
            s.running.remove(&id);
            if let Some(n) = s.in_flight.get_mut(queue) {
                *n = n.saturating_sub(1);
            }
            match outcome {
                Ok(AttemptOutcome::Completed) => s.stats.completed += 1,
                Ok(AttemptOutcome::Retryable) => s.stats.retryable += 1,
                Ok(AttemptOutcome::Discarded) => s.stats.discarded += 1,
                Ok(AttemptOutcome::LeaseLost) => s.stats.lease_lost += 1,
                Ok(AttemptOutcome::Deferred) => s.stats.errors += 1,
                Err(ref e) => {
                    s.stats.errors += 1;
                    tracing::error!(job_id = id.get(), error = %e, "could not record a job's outcome; its lease will expire and it will be rescued");
                }
            }
        }
        self.inner.finished.notify_waiters();
        // Capacity was freed: look for more work now.
        self.inner.wake.notify_one();
    }

    /// Waits until no job is running (or `timeout` passes); answers whether none is.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let finished = self.inner.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            if self.lock().running.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return self.lock().running.is_empty();
            }
        }
    }

    /// Starts the claim loop on a task: tick, then sleep until woken (an enqueue through
    /// [`queue`](Self::queue), a job finishing) or the poll interval passes.
    pub fn start(self) -> RunnerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let runner = self.clone();
        let task = tokio::spawn(async move {
            let inner = &runner.inner;
            loop {
                if let Err(e) = runner.tick().await {
                    tracing::warn!(error = %e, retryable = e.is_retryable(), "runner tick failed");
                }
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = tokio::time::sleep(inner.config.poll_interval) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        RunnerHandle {
            runner: self,
            stop,
            task,
        }
    }

    /// Stops claiming is the caller's part (stop calling `tick`); this waits up to the grace
    /// period for running jobs, then stops the rest and gives them back to the queue.
    pub async fn drain(&self) -> ShutdownReport {
        let before = self.lock().running.len();
        self.wait_idle(self.inner.config.shutdown_grace).await;
        let left: Vec<(JobId, u32, AbortHandle)> = {
            let mut state = self.lock();
            let left: Vec<_> = state.running.drain().collect();
            // Stopped tasks never reach `finished`: take them off the counts here.
            for (_, (_, queue, _)) in &left {
                if let Some(n) = state.in_flight.get_mut(queue) {
                    *n = n.saturating_sub(1);
                }
            }
            left.into_iter()
                .map(|(id, (attempt, _, h))| (id, attempt, h))
                .collect()
        };
        let stopped = left.len();
        let mut released = Vec::new();
        for (id, attempt, handle) in left {
            handle.abort();
            match self
                .inner
                .queue
                .release(id, attempt, self.inner.clock.now())
                .await
            {
                Ok(()) => released.push(id),
                Err(e) => {
                    tracing::warn!(job_id = id.get(), error = %e, "could not release a job at shutdown; it will be rescued")
                }
            }
        }
        released.sort_unstable();
        ShutdownReport {
            drained: before - stopped,
            released,
        }
    }
}

/// A started runner.
#[derive(Debug)]
pub struct RunnerHandle {
    runner: Runner,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunnerHandle {
    /// The runner (for stats, its waking queue…).
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Graceful shutdown: stop claiming, wait up to the grace period for running jobs, stop
    /// and release the rest.
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.runner.drain().await
    }
}
