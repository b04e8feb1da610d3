//! `queue_throughput`: no-op jobs per second through the [`Runner`] on the in-memory queue,
//! at concurrency 10 (queue `default` limited to 10 jobs in flight).
//!
//! Each iteration enqueues 10,000 no-op jobs with one `enqueue_all`, starts a runner (1 ms
//! poll interval) and measures until its stats say all 10,000 completed; the enqueue and the
//! shutdown are outside the measurement.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netauto_core::JobQueue;
use netauto_core::runner::{QueueLimits, Runner, RunnerConfig};
use netauto_core::worker::{JobContext, Worker, WorkerError, WorkerRegistry};
use netauto_memory::InMemoryJobQueue;
use serde::{Deserialize, Serialize};

const JOBS: u64 = 10_000;
const CONCURRENCY: usize = 10;

#[derive(Debug, Serialize, Deserialize)]
struct NoopArgs {
    n: u64,
}

#[derive(Debug)]
struct Noop;

#[async_trait]
impl Worker for Noop {
    const NAME: &'static str = "bench.noop";
    type Args = NoopArgs;

    async fn perform(&self, _ctx: &JobContext, _args: NoopArgs) -> Result<(), WorkerError> {
        Ok(())
    }
}

fn config() -> RunnerConfig {
    RunnerConfig {
        node: "bench".to_owned(),
        queues: QueueLimits::empty().with("default", CONCURRENCY),
        poll_interval: Duration::from_millis(1),
        ..RunnerConfig::default()
    }
}

/// Runs `JOBS` no-op jobs through a fresh runner; answers the time from start to the last
/// completion.
async fn run_all() -> Duration {
    let queue: Arc<dyn JobQueue> = Arc::new(InMemoryJobQueue::new());
    let jobs = (0..JOBS)
        .map(|n| Noop::new_job(&NoopArgs { n }))
        .collect::<Result<Vec<_>, _>>()
        .expect("no-op args serialize");
    queue
        .enqueue_all(jobs, Utc::now())
        .await
        .expect("in-memory enqueue");

    let runner = Runner::new(queue, WorkerRegistry::new().with(Noop)).with_config(config());
    let started = Instant::now();
    let handle = runner.start();
    while handle.runner().stats().completed < JOBS {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = started.elapsed();
    let stats = handle.runner().stats();
    let report = handle.shutdown().await;
    assert!(stats.peak_in_flight <= CONCURRENCY, "{stats:?}");
    assert!(report.released.is_empty(), "{report:?}");
    elapsed
}

fn queue_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("queue_throughput");
    group
        .throughput(Throughput::Elements(JOBS))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("memory_noop_concurrency_10", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += run_all().await;
                }
                total
            })
        });
    });
    group.finish();
}

criterion_group!(benches, queue_throughput);
criterion_main!(benches);
