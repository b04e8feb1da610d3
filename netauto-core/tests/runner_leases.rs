//! Leases of the runner, driven against the in-memory queue: an enqueue wakes the runner,
//! heartbeats keep a long job, and an attempt that cannot renew its lease (its database cut
//! off, see [`FaultyQueue`]) stops before the lease runs out.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use common::runner::{at, config, default_queue, enqueue, job, new_queue};
use common::workers::{NoArgs, Noop};
use common::{SOON, wait_until};
use netauto_core::runtime::{
    JobContext, Runner, RunnerConfig, Worker, WorkerError, WorkerRegistry,
};
use netauto_core::testing::{FaultyQueue, Outage};
use netauto_core::{Clock, JobState, ManualClock};
use tokio::sync::Semaphore;

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
    wait_until("the first job completed", SOON, || async {
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
    wait_until(
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
        wait_until(&format!("a heartbeat after step {step}"), SOON, || async {
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
    let cut = Arc::new(FaultyQueue::new(queue.clone()).with_outage(outage));
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
    wait_until("node-a's attempt started", SOON, || async {
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
    cut.cut_off(true);
    let cut_at = Utc::now();

    // Node A gives up on its own, while the lease it last renewed is still valid.
    wait_until("node-a stopped its attempt", SOON, || async {
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
    wait_until("node-b rescued and claimed the job", SOON, || async {
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
    let stale = Arc::new(FaultyQueue::new(queue.clone()).with_stale_claims());
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
