//! The worker runtime and cron of netauto-core, driven against the in-memory queue.
//!
//! Timing-sensitive tests drive the runner with [`Runner::tick`] and a [`ManualClock`]; the
//! loop ([`Runner::start`] / shutdown) is exercised with short real intervals and polled
//! with timeouts, never asserted on by sleeping.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use netauto_core::runtime::{CronEntry, CronSchedule};
use netauto_core::runtime::{JobContext, Worker, WorkerError, WorkerRegistry};
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig};
use netauto_core::{
    ClaimRequest, Clock, Conflict, Enqueued, Error, FailAction, Job, JobFilter, JobId, JobQueue,
    JobState, ManualClock, NewJob,
};
use netauto_memory::InMemoryJobQueue;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;

/// Generous bound for anything that should happen "soon"; tests normally finish far sooner.
const SOON: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Serialize, Deserialize)]
struct NoArgs {}

/// Completes at once.
#[derive(Debug)]
struct Noop;

#[async_trait]
impl Worker for Noop {
    const NAME: &'static str = "test.noop";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        Ok(())
    }
}

/// Counts how many of its jobs run at the same time.
#[derive(Debug, Clone, Default)]
struct Probe {
    current: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
}

#[async_trait]
impl Worker for Probe {
    const NAME: &'static str = "test.probe";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(15)).await;
        self.current.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Always fails with a retryable error.
#[derive(Debug)]
struct AlwaysRetry;

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
struct Discards;

#[async_trait]
impl Worker for Discards {
    const NAME: &'static str = "test.discards";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        Err(WorkerError::discard("bad input"))
    }
}

/// Panics.
#[derive(Debug)]
struct Panics;

#[async_trait]
impl Worker for Panics {
    const NAME: &'static str = "test.panics";
    type Args = NoArgs;

    async fn perform(&self, ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        panic!("boom at attempt {}", ctx.attempt());
    }
}

/// Takes far longer than its timeout.
#[derive(Debug)]
struct TooSlow;

#[async_trait]
impl Worker for TooSlow {
    const NAME: &'static str = "test.too_slow";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    }

    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_millis(50))
    }
}

/// Never finishes.
#[derive(Debug)]
struct Blocks;

#[async_trait]
impl Worker for Blocks {
    const NAME: &'static str = "test.blocks";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Finishes after a short while.
#[derive(Debug)]
struct Brief;

#[async_trait]
impl Worker for Brief {
    const NAME: &'static str = "test.brief";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }
}

/// Waits until the test opens its gate.
#[derive(Debug, Clone)]
struct Gated(Arc<Semaphore>);

#[async_trait]
impl Worker for Gated {
    const NAME: &'static str = "test.gated";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        let permit = self.0.acquire().await.map_err(WorkerError::retry)?;
        permit.forget();
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CountArgs {
    n: u32,
}

/// Typed args; adds `n` to its total.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<AtomicUsize>);

#[async_trait]
impl Worker for Counter {
    const NAME: &'static str = "test.counter";
    type Args = CountArgs;

    async fn perform(&self, _ctx: &JobContext, args: CountArgs) -> Result<(), WorkerError> {
        self.0.fetch_add(args.n as usize, Ordering::SeqCst);
        Ok(())
    }
}

/// A worker of queue `other`.
#[derive(Debug)]
struct OtherQueue;

#[async_trait]
impl Worker for OtherQueue {
    const NAME: &'static str = "test.other_queue";
    const QUEUE: &'static str = "other";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        Ok(())
    }
}

/// The cron worker: counts its runs.
#[derive(Debug, Clone, Default)]
struct CronTick(Arc<AtomicUsize>);

#[async_trait]
impl Worker for CronTick {
    const NAME: &'static str = "test.cron_tick";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap()
}

fn config(node: &str, queues: QueueLimits) -> RunnerConfig {
    RunnerConfig {
        node: node.to_owned(),
        queues,
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(60),
        heartbeat_every: Duration::from_secs(15),
        rescue_every: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(2),
    }
}

fn default_queue(limit: usize) -> QueueLimits {
    QueueLimits::empty().with("default", limit)
}

fn new_queue() -> (InMemoryJobQueue, Arc<dyn JobQueue>) {
    let queue = InMemoryJobQueue::new();
    let dyn_queue: Arc<dyn JobQueue> = Arc::new(queue.clone());
    (queue, dyn_queue)
}

async fn enqueue(queue: &dyn JobQueue, job: NewJob, now: DateTime<Utc>) -> JobId {
    queue.enqueue(job, now).await.unwrap().into_job().id
}

async fn job(queue: &dyn JobQueue, id: JobId) -> Job {
    queue.job(id).await.unwrap()
}

async fn count_in(queue: &dyn JobQueue, state: JobState) -> usize {
    queue
        .list(&JobFilter::all().with_states([state]))
        .await
        .unwrap()
        .len()
}

/// Polls `check` every few milliseconds until it holds; panics with `what` after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One tick, then waits for every job it started to finish.
async fn tick_and_wait(runner: &Runner) -> netauto_core::runtime::TickReport {
    let report = runner.tick().await.unwrap();
    assert!(runner.wait_idle(SOON).await, "jobs still running");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_the_queue_limit_in_flight() {
    let (_, queue) = new_queue();
    let probe = Probe::default();
    let runner = Runner::new(queue.clone(), WorkerRegistry::new().with(probe.clone()))
        .with_config(config("node-a", default_queue(3)));
    let jobs = (0..20)
        .map(|_| Probe::new_job(&NoArgs::default()).unwrap())
        .collect();
    queue.enqueue_all(jobs, Utc::now()).await.unwrap();

    let handle = runner.start();
    eventually("all 20 jobs completed", SOON, || async {
        count_in(&*queue, JobState::Completed).await == 20
    })
    .await;
    let stats = handle.runner().stats();
    let report = handle.shutdown().await;

    assert_eq!(probe.done.load(Ordering::SeqCst), 20);
    let max = probe.max.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} jobs ran at once with a limit of 3");
    assert!(
        max >= 2,
        "jobs never overlapped (max {max}): the limit is not used"
    );
    assert_eq!(stats.peak_in_flight, 3, "{stats:?}");
    assert_eq!((stats.claimed, stats.completed), (20, 20), "{stats:?}");
    assert_eq!(report.released, Vec::<JobId>::new());
}

/// On paused tokio time the clock only moves when every task waits for a timer: an attempt
/// that waits for one before performing (e.g. a heartbeat tick rounded up to the timer's 1 ms
/// resolution) shows up as elapsed time, and would cap throughput at ~1000 jobs/s per slot.
#[tokio::test(start_paused = true)]
async fn attempts_start_without_waiting_for_a_timer() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 0));
    let runner = Runner::new(queue.clone(), WorkerRegistry::new().with(Noop))
        .with_config(config("node-a", default_queue(1)))
        .with_clock(Arc::new(clock.clone()));
    let jobs = (0..20)
        .map(|_| Noop::new_job(&NoArgs::default()).unwrap())
        .collect();
    queue.enqueue_all(jobs, clock.now()).await.unwrap();

    let started = tokio::time::Instant::now();
    let step = Duration::from_micros(500);
    for _ in 0..20 {
        // Between two ticks of the timer wheel, where a timer due "now" is rounded up.
        tokio::time::advance(step).await;
        assert_eq!(tick_and_wait(&runner).await.claimed, 1);
    }
    assert_eq!(runner.stats().completed, 20);
    assert_eq!(started.elapsed(), step * 20, "attempts waited for timers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_back_off_then_discard_after_max_attempts() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 0));
    let runner = Runner::new(queue.clone(), WorkerRegistry::new().with(AlwaysRetry))
        .with_config(config("node-a", default_queue(5)))
        .with_clock(Arc::new(clock.clone()));
    let id = enqueue(
        &*queue,
        AlwaysRetry::new_job(&NoArgs::default()).unwrap(),
        clock.now(),
    )
    .await;

    for attempt in 1..=3u32 {
        let report = tick_and_wait(&runner).await;
        assert_eq!(report.claimed, 1, "attempt {attempt}");
        let j = job(&*queue, id).await;
        assert_eq!(j.attempt, attempt);
        if attempt < 3 {
            assert_eq!(j.state, JobState::Retryable, "attempt {attempt}");
            // Default backoff: 15 s + 2^attempt s, ±10 %.
            let exact = 15.0 + f64::from(1u32 << attempt);
            let delay = (j.scheduled_at - clock.now()).as_seconds_f64();
            assert!(
                delay >= exact * 0.9 - 1e-3 && delay <= exact * 1.1 + 1e-3,
                "attempt {attempt}: retry in {delay} s, expected about {exact} s"
            );
            assert_eq!(
                runner.tick().await.unwrap().claimed,
                0,
                "claimed again before its backoff passed"
            );
            clock.advance(TimeDelta::minutes(5));
        }
    }

    let j = job(&*queue, id).await;
    assert_eq!(j.state, JobState::Discarded);
    assert_eq!(j.finished_at, Some(clock.now()));
    assert_eq!(
        j.errors
            .iter()
            .map(|e| (e.attempt, e.error.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, "device unreachable"),
            (2, "device unreachable"),
            (3, "device unreachable")
        ]
    );
    let stats = runner.stats();
    assert_eq!((stats.retryable, stats.discarded), (2, 1), "{stats:?}");
    clock.advance(TimeDelta::days(1));
    assert_eq!(tick_and_wait(&runner).await.claimed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_error_discards_at_once() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 0));
    let runner = Runner::new(queue.clone(), WorkerRegistry::new().with(Discards))
        .with_config(config("node-a", default_queue(5)))
        .with_clock(Arc::new(clock.clone()));
    let id = enqueue(
        &*queue,
        Discards::new_job(&NoArgs::default()).unwrap(),
        clock.now(),
    )
    .await;

    assert_eq!(tick_and_wait(&runner).await.claimed, 1);
    let j = job(&*queue, id).await;
    assert_eq!(
        (j.state, j.attempt, j.max_attempts),
        (JobState::Discarded, 1, 20)
    );
    assert_eq!(j.errors.len(), 1);
    assert_eq!(j.errors[0].error, "bad input");
    assert_eq!(runner.stats().discarded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_is_retried_with_the_panic_recorded() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 0));
    let runner = Runner::new(queue.clone(), WorkerRegistry::new().with(Panics))
        .with_config(config("node-a", default_queue(5)))
        .with_clock(Arc::new(clock.clone()));
    let id = enqueue(
        &*queue,
        Panics::new_job(&NoArgs::default()).unwrap(),
        clock.now(),
    )
    .await;

    assert_eq!(tick_and_wait(&runner).await.claimed, 1);
    let j = job(&*queue, id).await;
    assert_eq!(j.state, JobState::Retryable);
    assert_eq!(j.errors.len(), 1);
    assert!(
        j.errors[0].error.contains("panicked") && j.errors[0].error.contains("boom at attempt 1"),
        "{:?}",
        j.errors[0].error
    );
    assert_eq!(runner.stats().retryable, 1);

    // The runner survived the panic and runs the retry.
    clock.advance(TimeDelta::minutes(5));
    assert_eq!(tick_and_wait(&runner).await.claimed, 1);
    let j = job(&*queue, id).await;
    assert_eq!((j.state, j.attempt), (JobState::Retryable, 2));
    assert!(
        j.errors[1].error.contains("boom at attempt 2"),
        "{:?}",
        j.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_longer_than_the_worker_timeout_fails() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 0));
    let runner = Runner::new(queue.clone(), WorkerRegistry::new().with(TooSlow))
        .with_config(config("node-a", default_queue(5)))
        .with_clock(Arc::new(clock.clone()));
    let id = enqueue(
        &*queue,
        TooSlow::new_job(&NoArgs::default()).unwrap(),
        clock.now(),
    )
    .await;

    let started = std::time::Instant::now();
    // The worker sleeps 60 s: the attempt must be stopped well before that.
    assert_eq!(tick_and_wait(&runner).await.claimed, 1);
    assert!(started.elapsed() < SOON);
    let j = job(&*queue, id).await;
    assert_eq!((j.state, j.attempt), (JobState::Retryable, 1));
    assert!(
        j.errors[0].error.contains("timed out after 50ms"),
        "{:?}",
        j.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_rescued_and_the_old_attempt_is_fenced_out() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 0));
    let id = enqueue(
        &*queue,
        Noop::new_job(&NoArgs::default()).unwrap(),
        clock.now(),
    )
    .await;

    // "node-a" claims the job and dies.
    let claimed = queue
        .claim(
            &ClaimRequest::new("default", 10, "node-a").with_lease(TimeDelta::seconds(60)),
            clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|j| (j.id, j.attempt))
            .collect::<Vec<_>>(),
        [(id, 1)]
    );

    let runner = Runner::new(queue.clone(), WorkerRegistry::new().with(Noop))
        .with_config(config("node-b", default_queue(5)))
        .with_clock(Arc::new(clock.clone()));
    let report = tick_and_wait(&runner).await;
    assert_eq!(
        (report.rescued, report.claimed),
        (0, 0),
        "lease still valid"
    );

    clock.advance(TimeDelta::seconds(30));
    let report = tick_and_wait(&runner).await;
    assert_eq!(
        (report.rescued, report.claimed),
        (0, 0),
        "lease still valid"
    );

    clock.advance(TimeDelta::seconds(31));
    let report = tick_and_wait(&runner).await;
    assert_eq!((report.rescued, report.claimed), (1, 1), "{report:?}");

    let j = job(&*queue, id).await;
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(j.attempt, 2);
    assert_eq!(j.attempted_by.as_deref(), Some("node-b"));

    // node-a comes back and tries to record its attempt.
    for result in [
        queue.complete(id, 1, clock.now()).await,
        queue.heartbeat(id, 1, clock.now()).await,
    ] {
        match result {
            Err(Error::Conflict(Conflict::StaleAttempt { job, attempt })) => {
                assert_eq!((job, attempt), (id, 1));
            }
            other => panic!("expected a stale attempt, got {other:?}"),
        }
    }
    assert_eq!(job(&*queue, id).await.state, JobState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_quick_jobs_and_releases_blocked_ones() {
    let (_, queue) = new_queue();
    let registry = WorkerRegistry::new().with(Blocks).with(Brief);
    let cfg = RunnerConfig {
        shutdown_grace: Duration::from_secs(1),
        ..config("node-a", default_queue(5))
    };
    let runner = Runner::new(queue.clone(), registry).with_config(cfg);
    let blocked = enqueue(
        &*queue,
        Blocks::new_job(&NoArgs::default()).unwrap(),
        Utc::now(),
    )
    .await;
    let quick = enqueue(
        &*queue,
        Brief::new_job(&NoArgs::default()).unwrap(),
        Utc::now(),
    )
    .await;

    let handle = runner.start();
    eventually("both jobs executing", SOON, || async {
        count_in(&*queue, JobState::Executing).await == 2
    })
    .await;
    let started = std::time::Instant::now();
    let watcher = handle.runner().clone();
    let report = handle.shutdown().await;

    assert_eq!(report.drained, 1, "{report:?}");
    assert_eq!(
        watcher.in_flight("default"),
        0,
        "stopped jobs leave the in-flight count"
    );
    assert_eq!(report.released, [blocked]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown waited past its grace period"
    );
    assert_eq!(job(&*queue, quick).await.state, JobState::Completed);
    let j = job(&*queue, blocked).await;
    assert_eq!((j.state, j.attempt), (JobState::Available, 1));
    assert_eq!(j.lease_expires_at, None);

    // Released means claimable again, by anyone.
    let again = queue
        .claim(&ClaimRequest::new("default", 10, "node-b"), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|j| (j.id, j.attempt)).collect::<Vec<_>>(),
        [(blocked, 2)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_args_and_unknown_workers_are_discarded_with_a_clear_error() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 0));
    let counter = Counter::default();
    let runner = Runner::new(queue.clone(), WorkerRegistry::new().with(counter.clone()))
        .with_config(config("node-a", default_queue(5)))
        .with_clock(Arc::new(clock.clone()));
    let malformed = enqueue(
        &*queue,
        NewJob::new("default", Counter::NAME, json!({"n": "three"})),
        clock.now(),
    )
    .await;
    let unknown = enqueue(
        &*queue,
        NewJob::new("default", "test.nobody", json!({})),
        clock.now(),
    )
    .await;
    let fine = enqueue(
        &*queue,
        Counter::new_job(&CountArgs { n: 3 }).unwrap(),
        clock.now(),
    )
    .await;

    assert_eq!(tick_and_wait(&runner).await.claimed, 3);
    assert_eq!(job(&*queue, fine).await.state, JobState::Completed);
    assert_eq!(counter.0.load(Ordering::SeqCst), 3);

    let j = job(&*queue, malformed).await;
    assert_eq!((j.state, j.attempt), (JobState::Discarded, 1));
    assert_eq!(j.errors.len(), 1);
    assert!(
        j.errors[0]
            .error
            .contains("malformed args for worker test.counter"),
        "{:?}",
        j.errors[0].error
    );

    let j = job(&*queue, unknown).await;
    assert_eq!((j.state, j.attempt), (JobState::Discarded, 1));
    assert!(
        j.errors[0]
            .error
            .contains("no worker named \"test.nobody\""),
        "{:?}",
        j.errors[0].error
    );
    assert_eq!(runner.stats().discarded, 2);

    // No crash loop: nothing is claimed again, however long we wait.
    clock.advance(TimeDelta::days(1));
    assert_eq!(tick_and_wait(&runner).await.claimed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueueing_through_the_runner_wakes_it_before_the_poll_interval() {
    let (_, queue) = new_queue();
    let cfg = RunnerConfig {
        poll_interval: Duration::from_secs(60),
        ..config("node-a", default_queue(5))
    };
    let runner = Runner::new(queue.clone(), WorkerRegistry::new().with(Noop)).with_config(cfg);
    let waking = runner.queue();
    let handle = runner.start();

    // The first tick runs at start; after it the loop sleeps for the poll interval.
    let first = enqueue(
        &*waking,
        Noop::new_job(&NoArgs::default()).unwrap(),
        Utc::now(),
    )
    .await;
    eventually("the first job completed", SOON, || async {
        job(&*queue, first).await.state == JobState::Completed
    })
    .await;

    let started = std::time::Instant::now();
    let second = enqueue(
        &*waking,
        Noop::new_job(&NoArgs::default()).unwrap(),
        Utc::now(),
    )
    .await;
    eventually(
        "the woken runner completed the second job",
        SOON,
        || async { job(&*queue, second).await.state == JobState::Completed },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_job_from_being_rescued() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 0));
    let gate = Arc::new(Semaphore::new(0));
    let lease = Duration::from_secs(10);
    let worker_node = Runner::new(
        queue.clone(),
        WorkerRegistry::new().with(Gated(gate.clone())),
    )
    .with_config(RunnerConfig {
        lease,
        heartbeat_every: Duration::from_millis(10),
        ..config("node-a", default_queue(5))
    })
    .with_clock(Arc::new(clock.clone()));
    let rescuer = Runner::new(
        queue.clone(),
        WorkerRegistry::new().with(Gated(gate.clone())),
    )
    .with_config(RunnerConfig {
        rescue_every: Duration::ZERO,
        ..config("node-b", default_queue(5))
    })
    .with_clock(Arc::new(clock.clone()));
    let id = enqueue(
        &*queue,
        Gated::new_job(&NoArgs::default()).unwrap(),
        clock.now(),
    )
    .await;
    assert_eq!(worker_node.tick().await.unwrap().claimed, 1);

    // 4 × 6 s = 24 s, well past the 10 s lease the job was claimed with.
    for step in 1..=4 {
        clock.advance(TimeDelta::seconds(6));
        let renewed_until = clock.now() + TimeDelta::from_std(lease).unwrap();
        eventually(&format!("a heartbeat after step {step}"), SOON, || async {
            job(&*queue, id)
                .await
                .lease_expires_at
                .is_some_and(|until| until >= renewed_until)
        })
        .await;
        let report = rescuer.tick().await.unwrap();
        assert_eq!((report.rescued, report.claimed), (0, 0), "step {step}");
    }

    gate.add_permits(1);
    assert!(worker_node.wait_idle(SOON).await);
    let j = job(&*queue, id).await;
    assert_eq!((j.state, j.attempt), (JobState::Completed, 1));
    assert_eq!(j.attempted_by.as_deref(), Some("node-a"));
    let stats = worker_node.stats();
    assert_eq!((stats.completed, stats.lease_lost), (1, 0), "{stats:?}");
}

/// The cron jobs in the queue, as (unique key, state), by id.
async fn cron_jobs(queue: &dyn JobQueue) -> Vec<(String, JobState)> {
    queue
        .list(&JobFilter::all().with_worker(CronTick::NAME))
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.unique_key.unwrap_or_default(), j.state))
        .collect()
}

fn slot_key(slot: DateTime<Utc>) -> String {
    format!(
        "cron:{}:{}",
        CronTick::NAME,
        slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Ticks every runner on its own task, all at once; answers the cron jobs inserted in all.
async fn tick_all_concurrently(runners: &[Runner]) -> usize {
    let tasks: Vec<_> = runners
        .iter()
        .cloned()
        .map(|r| tokio::spawn(async move { r.tick().await.unwrap().cron_inserted }))
        .collect();
    let mut inserted = 0;
    for task in tasks {
        inserted += task.await.unwrap();
    }
    for r in runners {
        assert!(r.wait_idle(SOON).await);
    }
    inserted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_inserts_one_job_per_slot_across_nodes() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 2));
    let runs = CronTick::default();
    let entry = CronEntry::new::<CronTick>(
        CronSchedule::parse("*/5 * * * *").unwrap(),
        &NoArgs::default(),
    )
    .unwrap();
    let base = Runner::new(queue.clone(), WorkerRegistry::new().with(runs.clone()))
        .with_config(config("node-1", default_queue(5)))
        .with_clock(Arc::new(clock.clone()))
        .with_cron(entry);
    let node = |name: &str| {
        base.clone().with_config(RunnerConfig {
            node: name.to_owned(),
            ..base.config().clone()
        })
    };
    let (r1, r2, r3) = (node("node-1"), node("node-2"), node("node-3"));

    // 10:02, one after the other: the 10:00 slot (the start-up catch-up), once.
    let mut inserted = 0;
    for r in [&r1, &r2, &r3] {
        inserted += tick_and_wait(r).await.cron_inserted;
    }
    assert_eq!(inserted, 1);
    assert_eq!(
        cron_jobs(&*queue).await,
        [(slot_key(at(10, 0)), JobState::Completed)]
    );

    // 10:05, joined on one task.
    clock.set(at(10, 5));
    let (a, b, c) = tokio::join!(r1.tick(), r2.tick(), r3.tick());
    let inserted: usize = [a, b, c]
        .into_iter()
        .map(|r| r.unwrap().cron_inserted)
        .sum();
    assert_eq!(inserted, 1);
    for r in [&r1, &r2, &r3] {
        assert!(r.wait_idle(SOON).await);
    }

    // 10:07, on parallel tasks, twice: the 10:05 slot is not inserted again.
    clock.set(at(10, 7));
    assert_eq!(
        tick_all_concurrently(&[r1.clone(), r2.clone(), r3.clone()]).await,
        0
    );
    assert_eq!(
        tick_all_concurrently(&[r1.clone(), r2.clone(), r3.clone()]).await,
        0
    );

    // 10:10 on parallel tasks.
    clock.set(at(10, 10));
    assert_eq!(
        tick_all_concurrently(&[r1.clone(), r2.clone(), r3.clone()]).await,
        1
    );

    // Everything down from 10:11 to 10:32: only the latest missed slot (10:30) is caught up.
    clock.set(at(10, 32));
    assert_eq!(
        tick_all_concurrently(&[r1.clone(), r2.clone(), r3.clone()]).await,
        1
    );

    let expected: Vec<_> = [at(10, 0), at(10, 5), at(10, 10), at(10, 30)]
        .into_iter()
        .map(|slot| (slot_key(slot), JobState::Completed))
        .collect();
    assert_eq!(cron_jobs(&*queue).await, expected);
    assert_eq!(runs.0.load(Ordering::SeqCst), 4, "each slot runs once");

    // A restarted node (a new runner, no memory of the slots) after 10:30 completed.
    clock.set(at(10, 33));
    let restarted = node("node-1");
    assert_eq!(tick_and_wait(&restarted).await.cron_inserted, 0);
    assert_eq!(cron_jobs(&*queue).await, expected);
    assert_eq!(runs.0.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_slot_is_not_run_again_by_a_node_started_after_its_job_was_pruned() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap());
    let runs = CronTick::default();
    let entry =
        CronEntry::new::<CronTick>(CronSchedule::parse("@yearly").unwrap(), &NoArgs::default())
            .unwrap();
    let first = Runner::new(queue.clone(), WorkerRegistry::new().with(runs.clone()))
        .with_config(config("node-1", default_queue(5)))
        .with_clock(Arc::new(clock.clone()))
        .with_cron(entry);
    assert_eq!(tick_and_wait(&first).await.cron_inserted, 1);
    assert_eq!(runs.0.load(Ordering::SeqCst), 1);

    // Mid-February: the January job is older than the prune age and is pruned.
    clock.set(Utc.with_ymd_and_hms(2026, 2, 15, 0, 0, 0).unwrap());
    assert_eq!(tick_and_wait(&first).await.cron_inserted, 0);
    assert_eq!(cron_jobs(&*queue).await, []);

    // A node started now must not run the 2026-01-01 slot a second time.
    let second = first.clone().with_config(RunnerConfig {
        node: "node-2".to_owned(),
        ..first.config().clone()
    });
    assert_eq!(tick_and_wait(&second).await.cron_inserted, 0);
    assert_eq!(runs.0.load(Ordering::SeqCst), 1);

    // Without pruning a slot's key is kept forever, so any missed slot is caught up.
    let (_, fresh) = new_queue();
    let keeps_all = Runner::new(fresh.clone(), WorkerRegistry::new().with(runs.clone()))
        .with_config(config("node-3", default_queue(5)))
        .with_clock(Arc::new(clock.clone()))
        .with_cron(
            CronEntry::new::<CronTick>(CronSchedule::parse("@yearly").unwrap(), &NoArgs::default())
                .unwrap(),
        )
        .with_prune_after(None);
    assert_eq!(tick_and_wait(&keeps_all).await.cron_inserted, 1);
    assert_eq!(
        cron_jobs(&*fresh).await,
        [(
            slot_key(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
            JobState::Completed
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_queues_are_claimed() {
    let (_, queue) = new_queue();
    let clock = ManualClock::new(at(10, 0));
    let registry = WorkerRegistry::new().with(Noop).with(OtherQueue);
    let runner = Runner::new(queue.clone(), registry)
        .with_config(config("node-a", default_queue(2)))
        .with_clock(Arc::new(clock.clone()));
    let default_job = enqueue(
        &*queue,
        Noop::new_job(&NoArgs::default()).unwrap(),
        clock.now(),
    )
    .await;
    let other_job = enqueue(
        &*queue,
        OtherQueue::new_job(&NoArgs::default()).unwrap(),
        clock.now(),
    )
    .await;

    for _ in 0..3 {
        tick_and_wait(&runner).await;
        clock.advance(TimeDelta::minutes(1));
    }
    assert_eq!(job(&*queue, default_job).await.state, JobState::Completed);
    let j = job(&*queue, other_job).await;
    assert_eq!((j.state, j.attempt), (JobState::Available, 0));

    // A node configured for `other` takes it.
    let other_node = runner
        .clone()
        .with_config(config("node-b", QueueLimits::parse("other:1").unwrap()));
    assert_eq!(tick_and_wait(&other_node).await.claimed, 1);
    assert_eq!(job(&*queue, other_job).await.state, JobState::Completed);
}

/// How [`CutOff`] treats heartbeats while it is cut off.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// Every heartbeat fails at once with a retryable error (connection refused).
    Refused,
    /// Every heartbeat hangs (a dead TCP peer, a pool waiting for a connection).
    Hanging,
}

/// The queue as seen by a node whose database connection is down: while `down`, its
/// heartbeats fail (or hang); everything else passes through.
#[derive(Debug)]
struct CutOff {
    inner: Arc<dyn JobQueue>,
    down: std::sync::atomic::AtomicBool,
    outage: Outage,
    /// Claims answer leases that already ran out (a claim slower than the lease).
    stale_claims: bool,
}

#[async_trait]
impl JobQueue for CutOff {
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> netauto_core::Result<Enqueued> {
        self.inner.enqueue(job, now).await
    }
    async fn enqueue_all(
        &self,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> netauto_core::Result<Vec<Enqueued>> {
        self.inner.enqueue_all(jobs, now).await
    }
    async fn claim(
        &self,
        req: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> netauto_core::Result<Vec<Job>> {
        let mut jobs = self.inner.claim(req, now).await?;
        if self.stale_claims {
            for j in &mut jobs {
                j.lease_expires_at = Some(now - TimeDelta::seconds(1));
            }
        }
        Ok(jobs)
    }
    async fn heartbeat(
        &self,
        id: JobId,
        attempt: u32,
        lease_until: DateTime<Utc>,
    ) -> netauto_core::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return match self.outage {
                Outage::Refused => Err(Error::Unavailable {
                    source: "connection refused".into(),
                }),
                Outage::Hanging => std::future::pending().await,
            };
        }
        self.inner.heartbeat(id, attempt, lease_until).await
    }
    async fn complete(
        &self,
        id: JobId,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> netauto_core::Result<()> {
        self.inner.complete(id, attempt, now).await
    }
    async fn fail(
        &self,
        id: JobId,
        attempt: u32,
        error: &str,
        action: FailAction,
        now: DateTime<Utc>,
    ) -> netauto_core::Result<JobState> {
        self.inner.fail(id, attempt, error, action, now).await
    }
    async fn release(
        &self,
        id: JobId,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> netauto_core::Result<()> {
        self.inner.release(id, attempt, now).await
    }
    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> netauto_core::Result<Job> {
        self.inner.cancel(id, now).await
    }
    async fn rescue_expired(&self, now: DateTime<Utc>) -> netauto_core::Result<Vec<JobId>> {
        self.inner.rescue_expired(now).await
    }
    async fn prune(&self, finished_before: DateTime<Utc>) -> netauto_core::Result<u64> {
        self.inner.prune(finished_before).await
    }
    async fn job(&self, id: JobId) -> netauto_core::Result<Job> {
        self.inner.job(id).await
    }
    async fn list(&self, filter: &JobFilter) -> netauto_core::Result<Vec<Job>> {
        self.inner.list(filter).await
    }
}

/// Runs until its gate opens, counting attempts alive at once (an attempt stops being alive
/// when it returns or is dropped).
#[derive(Debug, Clone)]
struct Exclusive {
    gate: Arc<Semaphore>,
    alive: Arc<AtomicUsize>,
    max_alive: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
}

impl Default for Exclusive {
    fn default() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            alive: Arc::default(),
            max_alive: Arc::default(),
            started: Arc::default(),
        }
    }
}

struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Worker for Exclusive {
    const NAME: &'static str = "test.exclusive";
    type Args = NoArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        let now = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
        let _alive = Alive(self.alive.clone());
        self.max_alive.fetch_max(now, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        let permit = self.gate.acquire().await.map_err(WorkerError::retry)?;
        permit.forget();
        Ok(())
    }
}

/// A node that cannot renew its lease (its database connection is down) stops its attempt
/// before the lease runs out, so the node that rescues the job never runs it beside it.
async fn an_attempt_that_cannot_renew_its_lease_stops_before_it_expires(outage: Outage) {
    let (_, queue) = new_queue();
    let worker = Exclusive::default();
    let lease = Duration::from_millis(600);
    let cut = Arc::new(CutOff {
        inner: queue.clone(),
        down: std::sync::atomic::AtomicBool::new(false),
        outage,
        stale_claims: false,
    });
    let node_a = Runner::new(cut.clone(), WorkerRegistry::new().with(worker.clone())).with_config(
        RunnerConfig {
            lease,
            heartbeat_every: Duration::from_millis(100),
            ..config("node-a", default_queue(5))
        },
    );
    let node_b = Runner::new(queue.clone(), WorkerRegistry::new().with(worker.clone()))
        .with_config(RunnerConfig {
            lease,
            rescue_every: Duration::ZERO,
            ..config("node-b", default_queue(5))
        });
    let id = enqueue(
        &*queue,
        Exclusive::new_job(&NoArgs::default()).unwrap(),
        Utc::now(),
    )
    .await;
    assert_eq!(node_a.tick().await.unwrap().claimed, 1);
    eventually("node-a's attempt started", SOON, || async {
        worker.started.load(Ordering::SeqCst) == 1
    })
    .await;
    // Heartbeats work for a while: the attempt outlives its first lease.
    tokio::time::sleep(lease + lease / 2).await;
    assert_eq!(
        worker.alive.load(Ordering::SeqCst),
        1,
        "renewed, still running"
    );
    cut.down.store(true, Ordering::SeqCst);
    let cut_at = Utc::now();

    // Node A gives up on its own, while the lease it last renewed is still valid.
    eventually("node-a stopped its attempt", SOON, || async {
        worker.alive.load(Ordering::SeqCst) == 0
    })
    .await;
    let stopped_at = Utc::now();
    let j = job(&*queue, id).await;
    assert_eq!((j.state, j.attempt), (JobState::Executing, 1));
    let until = j.lease_expires_at.unwrap();
    assert!(
        stopped_at < until,
        "stopped at {stopped_at}, after the lease ran out at {until}"
    );
    assert!(
        stopped_at - cut_at >= TimeDelta::milliseconds(200),
        "stopped {:?} after the cut: too soon, the lease was still good",
        stopped_at - cut_at
    );
    assert!(node_a.wait_idle(SOON).await);
    assert_eq!(node_a.stats().lease_lost, 1, "{:?}", node_a.stats());

    // Node B rescues the job once the lease expired and runs it to the end, alone.
    eventually("node-b rescued and claimed the job", SOON, || async {
        let report = node_b.tick().await.unwrap();
        report.claimed == 1
    })
    .await;
    worker.gate.add_permits(1);
    assert!(node_b.wait_idle(SOON).await);
    let j = job(&*queue, id).await;
    assert_eq!((j.state, j.attempt), (JobState::Completed, 2));
    assert_eq!(j.attempted_by.as_deref(), Some("node-b"));
    assert_eq!(worker.started.load(Ordering::SeqCst), 2);
    assert_eq!(
        worker.max_alive.load(Ordering::SeqCst),
        1,
        "the rescued job ran beside the attempt that lost its lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_whose_heartbeats_fail_stops_before_its_lease_expires() {
    an_attempt_that_cannot_renew_its_lease_stops_before_it_expires(Outage::Refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_whose_heartbeats_hang_stops_before_its_lease_expires() {
    an_attempt_that_cannot_renew_its_lease_stops_before_it_expires(Outage::Hanging).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_whose_claim_already_expired_stops_at_once() {
    let (_, queue) = new_queue();
    let worker = Exclusive::default();
    let stale = Arc::new(CutOff {
        inner: queue.clone(),
        down: std::sync::atomic::AtomicBool::new(false),
        outage: Outage::Refused,
        stale_claims: true,
    });
    let node =
        Runner::new(stale, WorkerRegistry::new().with(worker.clone())).with_config(RunnerConfig {
            lease: Duration::from_secs(30),
            heartbeat_every: Duration::from_secs(5),
            ..config("node-a", default_queue(5))
        });
    enqueue(
        &*queue,
        Exclusive::new_job(&NoArgs::default()).unwrap(),
        Utc::now(),
    )
    .await;
    assert_eq!(node.tick().await.unwrap().claimed, 1);
    // Not after the 25 s the lease would leave, had it been fresh: a rescuer may already
    // own the job.
    assert!(node.wait_idle(SOON).await, "the attempt kept running");
    assert_eq!(node.stats().lease_lost, 1, "{:?}", node.stats());
}
