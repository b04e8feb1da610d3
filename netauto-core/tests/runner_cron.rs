//! Cron and queue selection of the runner, driven against the in-memory queue: one job per
//! slot across nodes, pruned slots not run again, only the configured queues claimed.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::SOON;
use common::runner::{at, config, default_queue, enqueue, job, new_queue, tick_and_wait};
use common::workers::{NoArgs, Noop};
use netauto_core::runtime::{
    CronEntry, CronSchedule, JobContext, QueueLimits, Runner, RunnerConfig, Worker, WorkerError,
    WorkerRegistry,
};
use netauto_core::{Clock, JobFilter, JobQueue, JobState, ManualClock};

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
