//! Many nodes on one PostgreSQL database: exclusive claims under load, one cron job per slot,
//! cross-node wake-ups and progress.
#![cfg(feature = "postgres")]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};
use futures_util::StreamExt;
use netauto_core::prelude::*;
use netauto_core::runtime::{CronEntry, CronSchedule};
use netauto_core::runtime::{JobContext, Worker, WorkerError, WorkerRegistry};
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig};
use netauto_core::{
    BulkEvent, BulkRef, DeviceId, FeedItem, JobFilter, JobId, JobQueue, JobState, ManualClock,
    NewDevice, NewRun, OutputStream, ProgressEvent, ProgressSink, RunEvent,
};
use netauto_sqlx::postgres::PgBackend;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default)]
struct Counting {
    seen: Arc<Mutex<HashMap<JobId, u32>>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NoArgs {}

#[async_trait]
impl Worker for Counting {
    const NAME: &'static str = "test.counting";
    type Args = NoArgs;

    async fn perform(&self, ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        *self
            .seen
            .lock()
            .expect("lock")
            .entry(ctx.job().id)
            .or_default() += 1;
        Ok(())
    }
}

fn config(node: &str) -> RunnerConfig {
    RunnerConfig {
        node: node.to_owned(),
        queues: QueueLimits::empty().with("default", 10),
        poll_interval: Duration::from_millis(50),
        ..RunnerConfig::default()
    }
}

async fn nodes(n: usize) -> Option<Vec<PgBackend>> {
    let opts = support::fresh_schema().await?;
    let mut out = Vec::new();
    for _ in 0..n {
        // A pool of its own per node, as separate processes would have.
        out.push(
            PgBackend::connect_with(opts.clone(), 6)
                .await
                .expect("connect"),
        );
    }
    out[0].migrate().await.expect("migrate");
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_runners_drain_5000_jobs_each_exactly_once() {
    let Some(nodes) = nodes(3).await else { return };
    let jobs: Vec<_> = (0..5000)
        .map(|_| Counting::new_job(&NoArgs {}).expect("job"))
        .collect();
    let inserted = nodes[0]
        .queue()
        .enqueue_all(jobs, Utc::now())
        .await
        .expect("enqueue");
    assert_eq!(inserted.len(), 5000);

    let worker = Counting::default();
    let handles: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let registry = WorkerRegistry::new().with(worker.clone());
            Runner::new(Arc::new(n.queue()), registry)
                .with_config(config(&format!("node-{i}")))
                .start()
        })
        .collect();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = worker.seen.lock().expect("lock").len();
        if done == 5000 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut per_node = Vec::new();
    for h in handles {
        let stats = h.runner().stats();
        per_node.push(stats.completed);
        let report = h.shutdown().await;
        assert!(report.released.is_empty(), "{report:?}");
    }
    let seen = worker.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 5000, "every job ran");
    assert!(
        seen.values().all(|n| *n == 1),
        "a job ran twice: {:?}",
        seen.iter().find(|(_, n)| **n > 1)
    );
    assert_eq!(per_node.iter().sum::<u64>(), 5000, "per node: {per_node:?}");
    assert!(
        per_node.iter().all(|n| *n > 0),
        "every node took part: {per_node:?}"
    );
    let completed = nodes[0]
        .queue()
        .list(&JobFilter::all().with_states([JobState::Completed]))
        .await
        .expect("list");
    assert_eq!(completed.len(), 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_runners_insert_one_cron_job_per_slot() {
    let Some(nodes) = nodes(3).await else { return };
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 10, 2, 0).unwrap());
    let schedule = CronSchedule::parse("*/5 * * * *").expect("cron");
    let runners: Vec<Runner> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let cron = CronEntry::new::<Counting>(schedule.clone(), &NoArgs {}).expect("entry");
            // No queues: these runners only insert cron jobs, nobody runs them.
            let cfg = RunnerConfig {
                queues: QueueLimits::empty().with("nothing", 1),
                ..config(&format!("cron-{i}"))
            };
            Runner::new(Arc::new(n.queue()), WorkerRegistry::new())
                .with_config(cfg)
                .with_clock(Arc::new(clock.clone()))
                .with_cron(cron)
        })
        .collect();
    for step in 0..8 {
        let (a, b, c) = tokio::join!(runners[0].tick(), runners[1].tick(), runners[2].tick());
        for r in [a, b, c] {
            r.expect("tick");
        }
        clock.advance(TimeDelta::minutes(if step == 4 { 23 } else { 2 }));
    }
    let jobs = nodes[0]
        .queue()
        .list(&JobFilter::all().with_worker(Counting::NAME))
        .await
        .expect("list");
    let mut keys: Vec<String> = jobs.iter().filter_map(|j| j.unique_key.clone()).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a slot was inserted twice: {keys:?}");
    // Ticks at 10:02, 10:04, 10:06, 10:08, 10:10 give slots 10:00, 10:05, 10:10; then the
    // clock jumps to 10:33: of the missed 10:15 … 10:30 only the latest, 10:30, is caught up;
    // ticks at 10:35 and 10:37 give 10:35.
    assert_eq!(
        keys,
        [
            "cron:test.counting:2026-03-01T10:00:00Z",
            "cron:test.counting:2026-03-01T10:05:00Z",
            "cron:test.counting:2026-03-01T10:10:00Z",
            "cron:test.counting:2026-03-01T10:30:00Z",
            "cron:test.counting:2026-03-01T10:35:00Z",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_on_one_node_wakes_a_runner_on_another() {
    let Some(nodes) = nodes(2).await else { return };
    let worker = Counting::default();
    let cfg = RunnerConfig {
        poll_interval: Duration::from_secs(600),
        ..config("sleepy")
    };
    let runner = Runner::new(
        Arc::new(nodes[1].queue()),
        WorkerRegistry::new().with(worker.clone()),
    )
    .with_config(cfg);
    let listener = nodes[1].wake_on_new_jobs(runner.waker());
    let handle = runner.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes[0]
        .queue()
        .enqueue(Counting::new_job(&NoArgs {}).expect("job"), Utc::now())
        .await
        .expect("enqueue");
    let started = tokio::time::Instant::now();
    while worker.seen.lock().expect("lock").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the NOTIFY did not wake the runner"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    listener.abort();
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_crosses_nodes_and_big_chunks_travel_by_reference() {
    let Some(nodes) = nodes(2).await else { return };
    let (a, b) = (&nodes[0], &nodes[1]);
    let bulk_ref = BulkRef::generate();
    let mut bulk_feed = a.progress().subscribe(&bulk_ref.topic()).await;

    let store = b.store();
    let device = store
        .create_device(NewDevice::new("r1", "10.0.0.1", "linux", "ops"))
        .await
        .expect("device");
    let run = store
        .create_run(
            NewRun {
                device_id: device.id,
                command: "show tech".into(),
                requested_by: "ann".into(),
                bulk_ref: None,
            },
            Utc::now(),
        )
        .await
        .expect("run");
    let mut run_feed = a
        .progress()
        .subscribe(&netauto_core::run_topic(run.id))
        .await;
    // Give the LISTEN connection a moment to be established.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let progress = BulkEvent::Progress {
        bulk_ref: bulk_ref.clone(),
        device_id: DeviceId(7),
        run_id: None,
        status: netauto_core::RunStatus::Ok,
        error_kind: None,
        truncated: false,
        done: 1,
        total: 2,
    };
    b.progress()
        .publish(ProgressEvent::Bulk(progress.clone()))
        .await;
    let got = tokio::time::timeout(Duration::from_secs(10), bulk_feed.next())
        .await
        .expect("event in time");
    assert_eq!(got, Some(FeedItem::Event(ProgressEvent::Bulk(progress))));

    let big = vec![b'x'; 20_000];
    let appended = store
        .append_chunk(run.id, OutputStream::Stdout, &big, Utc::now())
        .await
        .expect("append");
    b.progress()
        .publish(ProgressEvent::Run(RunEvent::Output {
            run_id: run.id,
            seq: appended.seq,
            stream: OutputStream::Stdout,
            data: big.clone().into(),
        }))
        .await;
    let got = tokio::time::timeout(Duration::from_secs(10), run_feed.next())
        .await
        .expect("chunk in time");
    match got {
        Some(FeedItem::Event(ProgressEvent::Run(RunEvent::Output { data, seq, .. }))) => {
            assert_eq!(seq, appended.seq);
            assert_eq!(
                &data[..],
                &big[..],
                "the referenced chunk was read back from the store"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}
