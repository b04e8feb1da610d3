//! `bulk_history`: `list_bulks` over 100,000 bulks on SQLite (and PostgreSQL when
//! `NETAUTO_BENCH_POSTGRES_URL` or `NETAUTO_TEST_POSTGRES_URL` names a server): the newest page,
//! a page near the end (keyset: as fast as the first), one requester's newest page, and a
//! command-text filter (which has to scan: the contrast).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use netauto_core::{BulkCursor, BulkQuery, BulkRef, BulkStore};
use netauto_sqlx::postgres::PgBackend;
use netauto_sqlx::sqlite::SqliteBackend;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const BULKS: i64 = 100_000;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// Bulk `i` (1-based): created `i` seconds after `t0`, by one of 20 requesters.
const SEED_SQLITE: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
     INSERT INTO bulks (ref, command, requested_by, created_at, total, ok, failed)
     SELECT printf('%032x', i), 'show version ' || (i % 97), 'user' || (i % 20), ?2 + i * 1000000, 10, 10, 0 FROM n";
const SEED_PG: &str =
    "INSERT INTO bulks (ref, command, requested_by, created_at, total, ok, failed)
     SELECT lpad(to_hex(i), 32, '0'), 'show version ' || (i % 97), 'user' || (i % 20),
            $2 + make_interval(secs => i), 10, 10, 0
     FROM generate_series(1, $1) AS i";

/// The queries measured: (name, query).
fn queries() -> Vec<(&'static str, BulkQuery)> {
    let deep = BulkCursor {
        created_at: t0() + TimeDelta::seconds(100),
        bulk_ref: BulkRef::parse(&format!("{:032x}", 100)).unwrap(),
    };
    vec![
        ("newest_50", BulkQuery::newest(50)),
        (
            "page_near_the_end_50",
            BulkQuery {
                after: Some(deep),
                ..BulkQuery::newest(50)
            },
        ),
        (
            "one_requester_50",
            BulkQuery {
                requested_by: Some("user7".into()),
                ..BulkQuery::newest(50)
            },
        ),
        (
            "command_contains_50",
            BulkQuery {
                command: Some("version 42".into()),
                ..BulkQuery::newest(50)
            },
        ),
    ]
}

fn bulk_history(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("bulk_history");
    group.sample_size(30);

    let dir = std::env::temp_dir().join(format!("netauto-bench-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = rt.block_on(async {
        let b = SqliteBackend::connect(&format!("sqlite://{}", dir.join("h.db").display()))
            .await
            .unwrap();
        b.migrate().await.unwrap();
        sqlx::query(SEED_SQLITE)
            .bind(BULKS)
            .bind(t0().timestamp_micros())
            .execute(b.pool())
            .await
            .unwrap();
        sqlx::query("ANALYZE").execute(b.pool()).await.unwrap();
        b
    });
    let store = sqlite.store();
    for (name, q) in queries() {
        let found = rt.block_on(store.list_bulks(&q)).unwrap();
        assert_eq!(found.len(), 50, "{name}");
        group.bench_function(format!("sqlite/{name}"), |b| {
            b.iter(|| rt.block_on(store.list_bulks(&q)).unwrap())
        });
    }

    let url = std::env::var("NETAUTO_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("NETAUTO_TEST_POSTGRES_URL"));
    match url {
        Err(_) => eprintln!("bulk_history: PostgreSQL skipped (set NETAUTO_BENCH_POSTGRES_URL)"),
        Ok(url) => {
            let pg = rt.block_on(async {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(
                    "DROP SCHEMA IF EXISTS netauto_bench_history CASCADE; CREATE SCHEMA netauto_bench_history",
                )
                .execute(&mut conn)
                .await
                .unwrap();
                let opts = PgConnectOptions::from_str(&url)
                    .unwrap()
                    .options([("search_path", "netauto_bench_history")]);
                let b = PgBackend::connect_with(opts, 4).await.unwrap();
                b.migrate().await.unwrap();
                sqlx::query(SEED_PG)
                    .bind(BULKS)
                    .bind(t0())
                    .execute(b.pool())
                    .await
                    .unwrap();
                sqlx::query("ANALYZE bulks").execute(b.pool()).await.unwrap();
                b
            });
            let store = pg.store();
            for (name, q) in queries() {
                let found = rt.block_on(store.list_bulks(&q)).unwrap();
                assert_eq!(found.len(), 50, "{name}");
                group.bench_function(format!("postgres/{name}"), |b| {
                    b.iter(|| rt.block_on(store.list_bulks(&q)).unwrap())
                });
            }
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bulk_history);
criterion_main!(benches);
