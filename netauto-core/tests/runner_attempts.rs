//! The runner's attempts, driven against the in-memory queue: queue limits, retries and
//! backoff, discards, panics, worker timeouts, rescued leases, shutdown, malformed jobs.
//!
//! Timing-sensitive tests drive the runner with [`Runner::tick`] and a [`ManualClock`]; the
//! loop ([`Runner::start`] / shutdown) is exercised with short real intervals and polled
//! with timeouts, never asserted on by sleeping.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use common::runner::{at, config, count_in, default_queue, enqueue, job, new_queue, tick_and_wait};
use common::workers::{AlwaysRetry, CountArgs, Counter, Discards, NoArgs, Noop};
use common::{SOON, wait_until};
use netauto_core::runtime::{
    JobContext, Runner, RunnerConfig, Worker, WorkerError, WorkerRegistry,
};
use netauto_core::{ClaimRequest, Clock, Conflict, Error, JobId, JobState, ManualClock, NewJob};
use serde_json::json;

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
    wait_until("all 20 jobs completed", SOON, || async {
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
    wait_until("both jobs executing", SOON, || async {
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
