//! `store_purge`: purging 100k runs × 10 chunks through the retention path (plan through the
//! store, guarded deletes of at most 200 runs per transaction) against `raw_delete_baseline`
//! (one `DELETE` of the same rows, chunks cascading), on SQLite and on PostgreSQL.
//!
//! PostgreSQL runs when `NETAUTO_BENCH_POSTGRES_URL` (or `NETAUTO_TEST_POSTGRES_URL`) names a
//! server; the bench uses a schema of its own there.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netauto_core::RunStore;
use netauto_core::retention::RetentionConfig;
use netauto_core::retention::RetentionWorker;
use netauto_sqlx::postgres::PgBackend;
use netauto_sqlx::sqlite::SqliteBackend;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const RUNS: i64 = 100_000;
const CHUNKS: i64 = 10;
const DEVICES: i64 = 100;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()
}

/// All runs finished 40–41 days ago: past a 30-day maximum age.
fn old() -> DateTime<Utc> {
    now() - TimeDelta::days(41)
}

fn worker(store: Arc<dyn RunStore>) -> RetentionWorker {
    let config = RetentionConfig::default()
        .with_max_days(30)
        .with_max_bytes(u64::MAX)
        .build()
        .unwrap();
    RetentionWorker::new(store, config)
}

async fn seed_sqlite(b: &SqliteBackend) {
    let pool = b.pool();
    sqlx::raw_sql("DELETE FROM runs; DELETE FROM devices;")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO devices (id, name, host, port, platform, username) SELECT i, 'd' || i, 'h', 22, 'linux', 'u' FROM n",
    )
    .bind(DEVICES)
    .execute(pool)
    .await
    .unwrap();
    let t0 = old().timestamp_micros();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO runs (device_id, command, requested_by, status, inserted_at, started_at, finished_at, retention_ts, bytes, chunks)
         SELECT i % ?2 + 1, 'show version', 'bench', 'ok', ?3 + i, ?3 + i, ?3 + i, ?3 + i, 640, ?4 FROM n",
    )
    .bind(RUNS)
    .bind(DEVICES)
    .bind(t0)
    .bind(CHUNKS)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE s(seq) AS (SELECT 0 UNION ALL SELECT seq + 1 FROM s WHERE seq < ?1 - 1)
         INSERT INTO run_chunks (run_id, seq, stream, data, inserted_at)
         SELECT r.id, s.seq, 'stdout', zeroblob(64), r.inserted_at FROM runs r, s",
    )
    .bind(CHUNKS)
    .execute(pool)
    .await
    .unwrap();
}

async fn seed_pg(b: &PgBackend) {
    let pool = b.pool();
    sqlx::raw_sql("TRUNCATE run_chunks, runs, devices CASCADE")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO devices (id, name, host, port, platform, username)
         SELECT i, 'd' || i, 'h', 22, 'linux', 'u' FROM generate_series(1, $1) AS i",
    )
    .bind(DEVICES)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO runs (device_id, command, requested_by, status, inserted_at, started_at, finished_at, bytes, chunks)
         SELECT i % $2 + 1, 'show version', 'bench', 'ok', t, t, t, 640, $4
         FROM generate_series(1, $1) AS i, LATERAL (SELECT $3::timestamptz + i * interval '1 microsecond' AS t) x",
    )
    .bind(RUNS)
    .bind(DEVICES)
    .bind(old())
    .bind(CHUNKS)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO run_chunks (run_id, seq, stream, data, inserted_at)
         SELECT r.id, s, 'stdout', decode(repeat('00', 64), 'hex'), r.inserted_at FROM runs r, generate_series(0, $1 - 1) AS s",
    )
    .bind(CHUNKS)
    .execute(pool)
    .await
    .unwrap();
    sqlx::raw_sql("ANALYZE runs; ANALYZE run_chunks")
        .execute(pool)
        .await
        .unwrap();
}

fn store_purge(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("store_purge");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(RUNS as u64));

    // SQLite, in a file.
    let dir = std::env::temp_dir().join(format!("netauto-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("purge.db");
    let _ = std::fs::remove_file(&path);
    let sqlite = rt.block_on(async {
        let b = SqliteBackend::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        b.migrate().await.unwrap();
        b
    });
    let purge = worker(Arc::new(sqlite.store()));
    group.bench_function("sqlite/retention_purge", |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(seed_sqlite(&sqlite));
                let start = Instant::now();
                let report = rt.block_on(purge.purge(now(), false)).unwrap();
                total += start.elapsed();
                assert_eq!(report.deleted_age.runs, RUNS as u64);
                assert!(report.batches >= (RUNS as u64).div_ceil(200));
            }
            total
        });
    });
    group.bench_function("sqlite/retention_plan_only", |bch| {
        rt.block_on(seed_sqlite(&sqlite));
        bch.iter(|| rt.block_on(purge.plan(now())).unwrap());
    });
    group.bench_function("sqlite/raw_delete_baseline", |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(seed_sqlite(&sqlite));
                let start = Instant::now();
                let done = rt
                    .block_on(
                        sqlx::query("DELETE FROM runs WHERE retention_ts < ?")
                            .bind((now() - TimeDelta::days(30)).timestamp_micros())
                            .execute(sqlite.pool()),
                    )
                    .unwrap();
                total += start.elapsed();
                assert_eq!(done.rows_affected(), RUNS as u64);
            }
            total
        });
    });

    // PostgreSQL, in a schema of its own.
    let url = std::env::var("NETAUTO_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("NETAUTO_TEST_POSTGRES_URL"));
    match url {
        Err(_) => eprintln!("store_purge: PostgreSQL skipped (set NETAUTO_BENCH_POSTGRES_URL)"),
        Ok(url) => {
            let pg = rt.block_on(async {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(
                    "DROP SCHEMA IF EXISTS netauto_bench CASCADE; CREATE SCHEMA netauto_bench",
                )
                .execute(&mut conn)
                .await
                .unwrap();
                let opts = PgConnectOptions::from_str(&url)
                    .unwrap()
                    .options([("search_path", "netauto_bench")]);
                let b = PgBackend::connect_with(opts, 4).await.unwrap();
                b.migrate().await.unwrap();
                b
            });
            let purge = worker(Arc::new(pg.store()));
            group.bench_function("postgres/retention_purge", |bch| {
                bch.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        rt.block_on(seed_pg(&pg));
                        let start = Instant::now();
                        let report = rt.block_on(purge.purge(now(), false)).unwrap();
                        total += start.elapsed();
                        assert_eq!(report.deleted_age.runs, RUNS as u64);
                    }
                    total
                });
            });
            group.bench_function("postgres/raw_delete_baseline", |bch| {
                bch.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        rt.block_on(seed_pg(&pg));
                        let start = Instant::now();
                        let done = rt
                            .block_on(
                                sqlx::query("DELETE FROM runs WHERE retention_ts < $1")
                                    .bind(now() - TimeDelta::days(30))
                                    .execute(pg.pool()),
                            )
                            .unwrap();
                        total += start.elapsed();
                        assert_eq!(done.rows_affected(), RUNS as u64);
                    }
                    total
                });
            });
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, store_purge);
criterion_main!(benches);
