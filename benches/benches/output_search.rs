//! `output_search`: full-text search over stored output (`search_runs`, and the whole
//! `search()` a page or `GET /api/search` makes, matching lines included) on SQLite, and on
//! PostgreSQL when `NETAUTO_BENCH_POSTGRES_URL` (or `NETAUTO_TEST_POSTGRES_URL`) names a
//! server and `NETAUTO_BENCH_SEARCH_POSTGRES=1`.
//!
//! The data: `NETAUTO_BENCH_SEARCH_RUNS` runs (default 100,000) of 1,000 devices, each one
//! chunk of about 20 KiB of configuration-like output (48 interfaces with descriptions and
//! addresses, 200 access-list lines, a serial number unique to the run), indexed as the
//! store indexes a chunk. The SQLite file is kept under the temp dir
//! (`netauto-bench-search-RUNS.db`) and reused by later runs of the bench; delete it to
//! re-seed. Seeding prints its time and the sizes of the output and of the index.
//!
//! The queries (page of 20 runs, newest first):
//! * `unique_serial` — a serial number in one run of the 100,000;
//! * `one_device_address` — an interface address of one device (every 1,000th run);
//! * `everywhere` — a text in every run (the newest page is found without reading the rest);
//! * `absent` — a text in no run;
//! * `everywhere_one_device` — a text in every run, filtered to one device (the device's runs
//!   are looked up in the index one by one);
//! * `unique_serial_one_device` — the serial, filtered to its device (24 of the device's runs
//!   looked up one by one find nothing, then the index scan finds it).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use netauto_core::search::{self, ExcerptOptions, SearchQuery};
use netauto_core::{DeviceId, RunStore};
use netauto_sqlx::postgres::PgBackend;
use netauto_sqlx::sqlite::SqliteBackend;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const DEVICES: i64 = 1_000;
const WORDS: [&str; 16] = [
    "uplink", "core", "access", "wan", "mpls", "transit", "peering", "backup", "mgmt", "voice",
    "cctv", "printer", "ap", "server", "storage", "dmz",
];

fn runs_wanted() -> i64 {
    std::env::var("NETAUTO_BENCH_SEARCH_RUNS")
        .ok()
        .map(|v| v.parse().expect("NETAUTO_BENCH_SEARCH_RUNS: a number"))
        .unwrap_or(100_000)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// The output of run `i` (1-based) on device `d`.
fn output(i: i64, d: i64) -> String {
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |n: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as usize) % n
    };
    let mut s = String::with_capacity(21 * 1024);
    let _ = write!(
        s,
        "Building configuration...\n\nCurrent configuration : 20480 bytes\n!\nhostname edge-{d}\n!\n\
         serial FTX{i:010}\n!\n"
    );
    for k in 0..48 {
        let _ = write!(
            s,
            "interface GigabitEthernet0/{k}\n description {}-{} to {}-{}\n ip address 10.{}.{}.{} 255.255.255.0\n no shutdown\n!\n",
            WORDS[next(WORDS.len())],
            WORDS[next(WORDS.len())],
            WORDS[next(WORDS.len())],
            next(500),
            d / 256,
            d % 256,
            k + 1,
        );
    }
    for k in 0..200 {
        let _ = writeln!(
            s,
            "access-list {} permit tcp 10.{}.{}.0 0.0.0.255 host 192.168.{}.{} eq {}",
            100 + k % 50,
            next(256),
            next(256),
            next(256),
            next(256),
            [22, 23, 80, 443, 161, 179][next(6)],
        );
    }
    s.push_str("end\n");
    s
}

/// The queries measured: (name, query, runs expected on the first page).
fn queries(
    device_of: impl Fn(i64) -> DeviceId,
    runs: i64,
) -> Vec<(&'static str, SearchQuery, usize)> {
    let serial = runs / 2;
    let d = 845 % DEVICES;
    let mut one_device = SearchQuery::new("description").unwrap();
    one_device.device = Some(device_of(d));
    let mut serial_on_its_device = SearchQuery::new(format!("FTX{serial:010}")).unwrap();
    serial_on_its_device.device = Some(device_of((serial - 1) % DEVICES));
    let with_page = |mut q: SearchQuery| {
        q.limit = 20;
        q
    };
    let per_device = usize::try_from(runs / DEVICES).unwrap().min(20);
    vec![
        (
            "unique_serial",
            with_page(SearchQuery::new(format!("ftx{serial:010}")).unwrap()),
            1,
        ),
        (
            "one_device_address",
            with_page(
                SearchQuery::new(format!("ip address 10.{}.{}.7 ", d / 256, d % 256)).unwrap(),
            ),
            per_device,
        ),
        (
            "everywhere",
            with_page(SearchQuery::new("Description").unwrap()),
            20,
        ),
        (
            "absent",
            with_page(SearchQuery::new("no-such-text-anywhere").unwrap()),
            0,
        ),
        ("everywhere_one_device", with_page(one_device), per_device),
        (
            "unique_serial_one_device",
            with_page(serial_on_its_device),
            1,
        ),
    ]
}

async fn seed_sqlite(b: &SqliteBackend, runs: i64) {
    let started = Instant::now();
    let mut text_bytes = 0u64;
    let mut tx = b.pool().begin().await.unwrap();
    for d in 1..=DEVICES {
        sqlx::query(
            "INSERT INTO devices (id, name, host, port, platform, username) VALUES (?1, ?2, ?3, 22, ?4, 'ops')",
        )
        .bind(d)
        .bind(format!("edge-{}", d - 1))
        .bind(format!("10.255.{}.{}", d / 256, d % 256))
        .bind(if d % 2 == 0 { "cisco_ios" } else { "arista_eos" })
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    for batch in (1..=runs).collect::<Vec<_>>().chunks(1_000) {
        let mut tx = b.pool().begin().await.unwrap();
        for &i in batch {
            let d = (i - 1) % DEVICES;
            let out = output(i, d);
            text_bytes += out.len() as u64;
            let at = (t0() + chrono::TimeDelta::seconds(i)).timestamp_micros();
            sqlx::query(
                "INSERT INTO runs (id, device_id, command, requested_by, status, exit_status, inserted_at, started_at, finished_at, retention_ts, bytes, chunks)
                 VALUES (?1, ?2, 'show running-config', 'bench', 'ok', 0, ?3, ?3, ?3, ?3, ?4, 1)",
            )
            .bind(i)
            .bind(d + 1)
            .bind(at)
            .bind(out.len() as i64)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO run_chunks (run_id, seq, stream, data, inserted_at) VALUES (?1, 0, 'stdout', ?2, ?3)",
            )
            .bind(i)
            .bind(out.as_bytes())
            .bind(at)
            .execute(&mut *tx)
            .await
            .unwrap();
            // What the store writes for a chunk with no line before it.
            sqlx::query("INSERT INTO run_search (rowid, body) VALUES (?1, ?2)")
                .bind(i << 32)
                .bind(&out)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    sqlx::query("ANALYZE").execute(b.pool()).await.unwrap();
    eprintln!(
        "output_search: seeded {runs} runs, {:.2} GiB of output, in {:.0} s ({:.1} MiB/s, index included)",
        text_bytes as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64(),
        text_bytes as f64 / (1u64 << 20) as f64 / started.elapsed().as_secs_f64()
    );
}

async fn sqlite_sizes(b: &SqliteBackend) {
    let sizes: Result<Vec<(String, i64)>, _> = sqlx::query_as(
        "SELECT CASE WHEN name LIKE 'run_search%' THEN 'search index' WHEN name = 'run_chunks' THEN 'output' ELSE 'other' END AS what,
                sum(pgsize) FROM dbstat GROUP BY what ORDER BY what",
    )
    .fetch_all(b.pool())
    .await;
    match sizes {
        Ok(sizes) => {
            for (what, bytes) in sizes {
                eprintln!(
                    "output_search: sqlite {what}: {:.2} GiB",
                    bytes as f64 / (1u64 << 30) as f64
                );
            }
        }
        Err(e) => eprintln!("output_search: no table sizes ({e})"),
    }
}

fn measure(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    backend: &str,
    store: &dyn RunStore,
    queries: &[(&'static str, SearchQuery, usize)],
) {
    for (name, q, expected) in queries {
        let found = rt.block_on(store.search_runs(q)).unwrap();
        assert_eq!(found.len(), *expected, "{backend}/{name}");
        c.bench_function(format!("{backend}/search_runs/{name}"), |b| {
            b.iter(|| rt.block_on(store.search_runs(q)).unwrap())
        });
        c.bench_function(format!("{backend}/page_with_lines/{name}"), |b| {
            b.iter(|| {
                rt.block_on(search::search(store, q, ExcerptOptions::default()))
                    .unwrap()
            })
        });
    }
}

fn output_search(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let runs = runs_wanted();
    let mut group = c.benchmark_group("output_search");
    group.sample_size(20);

    let path = std::env::temp_dir().join(format!("netauto-bench-search-{runs}.db"));
    let fresh = !path.exists();
    let sqlite = rt.block_on(async {
        let b = SqliteBackend::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        b.migrate().await.unwrap();
        if fresh {
            seed_sqlite(&b, runs).await;
        }
        sqlite_sizes(&b).await;
        b
    });
    let store = sqlite.store();
    let qs = queries(|d| DeviceId::from(d + 1), runs);
    measure(&mut group, &rt, "sqlite", &store, &qs);

    let url = std::env::var("NETAUTO_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("NETAUTO_TEST_POSTGRES_URL"));
    let wanted = std::env::var("NETAUTO_BENCH_SEARCH_POSTGRES").is_ok_and(|v| v == "1");
    match url {
        Ok(url) if wanted => {
            let pg = rt.block_on(seed_postgres(&url, runs));
            let store = pg.store();
            let qs = queries(|d| DeviceId::from(d + 1), runs);
            measure(&mut group, &rt, "postgres", &store, &qs);
        }
        _ => eprintln!(
            "output_search: PostgreSQL skipped (set NETAUTO_BENCH_SEARCH_POSTGRES=1 and NETAUTO_BENCH_POSTGRES_URL)"
        ),
    }
    group.finish();
}

async fn seed_postgres(url: &str, runs: i64) -> PgBackend {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let schema = format!("netauto_bench_search_{runs}");
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'run_search')",
    )
    .bind(&schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let opts = PgConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    if exists {
        let b = PgBackend::connect_with(opts, 4).await.unwrap();
        b.migrate().await.unwrap();
        return b;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let b = PgBackend::connect_with(opts, 4).await.unwrap();
    b.migrate().await.unwrap();
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO devices (id, name, host, port, platform, username)
         SELECT d, 'edge-' || (d - 1), '10.255.0.' || d, 22, CASE WHEN d % 2 = 0 THEN 'cisco_ios' ELSE 'arista_eos' END, 'ops'
         FROM generate_series(1, $1) AS d",
    )
    .bind(DEVICES)
    .execute(b.pool())
    .await
    .unwrap();
    for batch in (1..=runs).collect::<Vec<_>>().chunks(1_000) {
        let mut tx = b.pool().begin().await.unwrap();
        for &i in batch {
            let d = (i - 1) % DEVICES;
            let out = output(i, d);
            let at = t0() + chrono::TimeDelta::seconds(i);
            sqlx::query(
                "INSERT INTO runs (id, device_id, command, requested_by, status, exit_status, inserted_at, started_at, finished_at, bytes, chunks)
                 VALUES ($1, $2, 'show running-config', 'bench', 'ok', 0, $3, $3, $3, $4, 1)",
            )
            .bind(i)
            .bind(d + 1)
            .bind(at)
            .bind(out.len() as i64)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO run_chunks (run_id, seq, stream, data, inserted_at) VALUES ($1, 0, 'stdout', $2, $3)",
            )
            .bind(i)
            .bind(out.as_bytes())
            .bind(at)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query("INSERT INTO run_search (run_id, seq, body) VALUES ($1, 0, $2)")
                .bind(i)
                .bind(&out)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    sqlx::raw_sql("ANALYZE").execute(b.pool()).await.unwrap();
    eprintln!(
        "output_search: PostgreSQL seeded {runs} runs in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    b
}

criterion_group!(benches, output_search);
criterion_main!(benches);
