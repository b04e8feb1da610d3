//! `queue_throughput`: no-op jobs per second through the [`Runner`] at concurrency 10 (queue
//! `default` limited to 10 jobs in flight), on the in-memory queue, SQLite (a file) and
//! PostgreSQL (when `NETAUTO_BENCH_POSTGRES_URL` or `NETAUTO_TEST_POSTGRES_URL` is set; a
//! schema of its own).
//!
//! Each iteration enqueues the jobs with one `enqueue_all`, starts a runner (1 ms poll
//! interval) and measures until its stats say all completed; the enqueue and the shutdown are
//! outside the measurement. Before each iteration on the SQL backends, also outside the
//! measurement, the previous iterations' completed jobs are deleted (what the runner's pruning
//! does in a deployment; the bench runner has pruning off) and on PostgreSQL the table is
//! vacuumed (what autovacuum does; this machine's test server has autovacuum off, and 130,000
//! dead rows at the head of the claim index made every claim walk ~400 pages). Before the
//! PostgreSQL group the file system is synced, so the SQLite group's write-back does not land
//! in PostgreSQL's measurement (it cost ~35% of its throughput when measured right after).
#![allow(missing_docs)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netauto_core::JobQueue;
use netauto_core::runtime::{JobContext, Worker, WorkerError, WorkerRegistry};
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig};
use netauto_memory::InMemoryJobQueue;
use netauto_sqlx::postgres::PgBackend;
use netauto_sqlx::sqlite::SqliteBackend;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const JOBS: u64 = 10_000;
/// Jobs per iteration on the SQL backends.
const DB_JOBS: u64 = 5_000;
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

/// Runs `count` no-op jobs through a fresh runner on `queue`; answers the time from start to
/// the last completion.
async fn run_all(queue: Arc<dyn JobQueue>, count: u64) -> Duration {
    let jobs = (0..count)
        .map(|n| Noop::new_job(&NoopArgs { n }))
        .collect::<Result<Vec<_>, _>>()
        .expect("no-op args serialize");
    queue
        .enqueue_all(jobs, Utc::now())
        .await
        .expect("in-memory enqueue");

    let runner = Runner::new(queue, WorkerRegistry::new().with(Noop))
        .with_config(config())
        .with_prune_after(None);
    let started = Instant::now();
    let handle = runner.start();
    while handle.runner().stats().completed < count {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = started.elapsed();
    let stats = handle.runner().stats();
    let report = handle.shutdown().await;
    assert!(stats.peak_in_flight <= CONCURRENCY, "{stats:?}");
    assert!(report.released.is_empty(), "{report:?}");
    elapsed
}

/// Housekeeping between iterations, outside the measurement.
#[derive(Clone, Copy)]
enum Tidy<'a> {
    None,
    Sqlite(&'a sqlx::SqlitePool),
    Postgres(&'a sqlx::PgPool),
}

impl Tidy<'_> {
    async fn run(self) {
        const PRUNE: &str = "DELETE FROM jobs WHERE state = 'completed'";
        match self {
            Self::None => {}
            // Then the write-back of that housekeeping, so it does not land in the next
            // measurement: a WAL checkpoint, and (if the role may) a server checkpoint.
            Self::Sqlite(pool) => {
                sqlx::raw_sql(PRUNE).execute(pool).await.expect("prune");
                sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await
                    .expect("checkpoint");
            }
            Self::Postgres(pool) => {
                sqlx::raw_sql(PRUNE).execute(pool).await.expect("prune");
                sqlx::raw_sql("VACUUM (ANALYZE) jobs")
                    .execute(pool)
                    .await
                    .expect("vacuum");
                let _ = sqlx::raw_sql("CHECKPOINT").execute(pool).await;
            }
        }
    }
}

fn bench(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    count: u64,
    tidy: Tidy<'_>,
    queue: impl Fn() -> Arc<dyn JobQueue>,
) {
    group.throughput(Throughput::Elements(count));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    tidy.run().await;
                    total += run_all(queue(), count).await;
                }
                total
            })
        });
    });
}

fn queue_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("queue_throughput");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    bench(
        &mut group,
        &rt,
        "memory_noop_concurrency_10",
        JOBS,
        Tidy::None,
        || Arc::new(InMemoryJobQueue::new()),
    );

    let dir = std::env::temp_dir().join(format!("netauto-queue-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = rt.block_on(async {
        let url = format!("sqlite://{}", dir.join("queue.db").display());
        let b = SqliteBackend::connect(&url).await.expect("sqlite");
        b.migrate().await.expect("migrate");
        b
    });
    bench(
        &mut group,
        &rt,
        "sqlite_noop_concurrency_10",
        DB_JOBS,
        Tidy::Sqlite(sqlite.pool()),
        || Arc::new(sqlite.queue()),
    );

    let url = std::env::var("NETAUTO_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("NETAUTO_TEST_POSTGRES_URL"));
    match url {
        Err(_) => {
            eprintln!("queue_throughput: PostgreSQL skipped (set NETAUTO_BENCH_POSTGRES_URL)")
        }
        Ok(url) => {
            let pg = rt.block_on(async {
                let mut conn = PgConnection::connect(&url).await.expect("postgres");
                sqlx::raw_sql(
                    "DROP SCHEMA IF EXISTS netauto_queue_bench CASCADE; CREATE SCHEMA netauto_queue_bench",
                )
                .execute(&mut conn)
                .await
                .expect("schema");
                let opts = PgConnectOptions::from_str(&url)
                    .expect("url")
                    .options([("search_path", "netauto_queue_bench")]);
                let b = PgBackend::connect_with(opts, 12).await.expect("connect");
                b.migrate().await.expect("migrate");
                b
            });
            // The SQLite group's dirty pages are written back now, not during this one.
            let _ = std::process::Command::new("sync").status();
            bench(
                &mut group,
                &rt,
                "postgres_noop_concurrency_10",
                DB_JOBS,
                Tidy::Postgres(pg.pool()),
                || Arc::new(pg.queue()),
            );
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, queue_throughput);
criterion_main!(benches);
