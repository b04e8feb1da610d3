//! Malformed rows in the jobs table are discarded with a clear error on their first attempt
//! and never stop a worker; device output with invalid UTF-8, ANSI escapes and `<script>` is
//! stored byte-exact.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Db, Fleet, wait_bulk_finished};
use netauto_core::LocalProgressHub;
use netauto_core::bulk::{BulkJob, BulkService};
use netauto_core::exec::{Executor, RunOptions};
use netauto_core::runtime::WorkerRegistry;
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig};
use netauto_core::{OutputStream, RunStatus, RunStore};
use netauto_memory::{InMemoryJobQueue, InMemoryRunStore};
use netauto_reliability::TestDb;
use netauto_reliability::backend::Kind;
use netauto_ssh::SshNetworkClient;
use netauto_ssh::sim::{CannedOutput, DeviceFarm, DeviceSpec};

/// Six bad rows: args that are not JSON (SQLite only: PostgreSQL's JSONB refuses them), of
/// the wrong shape, `null`, a malformed bulk reference, an unknown worker, and a well-formed
/// job of a bulk that does not exist.
const BAD_SQLITE: &str = r#"INSERT INTO jobs (queue, worker, args, state, attempt, max_attempts, priority, inserted_at, scheduled_at) VALUES
 ('bulk', 'netauto.bulk', 'not json at all', 'available', 0, 20, 0, 0, 0),
 ('bulk', 'netauto.bulk', '{"device_ids": "nope"}', 'available', 0, 20, 0, 0, 0),
 ('bulk', 'netauto.bulk', 'null', 'available', 0, 20, 0, 0, 0),
 ('bulk', 'netauto.bulk', '{"device_ids": [1], "command": "show version", "requested_by": "x", "bulk_ref": "NOT-A-REF"}', 'available', 0, 20, 0, 0, 0),
 ('bulk', 'netauto.no-such-worker', '{}', 'available', 0, 20, 0, 0, 0),
 ('bulk', 'netauto.bulk', '{"device_ids": [1], "command": "show version", "requested_by": "x", "bulk_ref": "0123456789abcdef0123456789abcdef"}', 'available', 0, 20, 0, 0, 0)"#;
const BAD_PG: &str = r#"INSERT INTO jobs (queue, worker, args, state, attempt, max_attempts, priority, inserted_at, scheduled_at) VALUES
 ('bulk', 'netauto.bulk', '"not an object"', 'available', 0, 20, 0, now(), now()),
 ('bulk', 'netauto.bulk', '{"device_ids": "nope"}', 'available', 0, 20, 0, now(), now()),
 ('bulk', 'netauto.bulk', 'null', 'available', 0, 20, 0, now(), now()),
 ('bulk', 'netauto.bulk', '{"device_ids": [1], "command": "show version", "requested_by": "x", "bulk_ref": "NOT-A-REF"}', 'available', 0, 20, 0, now(), now()),
 ('bulk', 'netauto.no-such-worker', '{}', 'available', 0, 20, 0, now(), now()),
 ('bulk', 'netauto.bulk', '{"device_ids": [1], "command": "show version", "requested_by": "x", "bulk_ref": "0123456789abcdef0123456789abcdef"}', 'available', 0, 20, 0, now(), now())"#;
const BAD_ROWS: i64 = 6;

async fn malformed_rows_are_discarded_once(db: Db) {
    let be = db.connect().await;
    be.migrate().await.expect("migrate");
    let fleet = Fleet::start(&be, 3, Duration::ZERO, 64).await;
    let sql = match be.kind {
        Kind::Sqlite(_) => BAD_SQLITE,
        Kind::Postgres(_) => BAD_PG,
    };
    assert_eq!(
        be.execute(sql).await.expect("insert bad rows"),
        BAD_ROWS as u64
    );
    // A good bulk queued behind the bad rows: it must still run.
    let bulk_ref = BulkService::new(be.store.clone(), be.progress.clone())
        .enqueue(&fleet.ids(), "show version", "reliability")
        .await
        .expect("enqueue");

    let runner = worker_runner(&be, &fleet);
    let handle = runner.clone().start();
    let finished = wait_bulk_finished(&be, &bulk_ref, Duration::from_secs(60)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while be.live_jobs().await.expect("sql") > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = runner.stats();
    let report = handle.shutdown().await;
    match be.queue.list(&netauto_core::JobFilter::all()).await {
        Ok(jobs) => {
            for j in jobs {
                eprintln!(
                    "job {} {} {} attempt {} errors {:?}",
                    j.id,
                    j.worker,
                    j.state.as_str(),
                    j.attempt,
                    j.errors
                        .iter()
                        .map(|e| e.error.as_str())
                        .collect::<Vec<_>>()
                );
            }
        }
        Err(e) => eprintln!("cannot list the jobs: {e}"),
    }
    assert!(
        finished,
        "the good bulk did not run behind the bad rows ({stats:?})"
    );
    assert!(report.released.is_empty());
    assert_eq!(
        be.live_jobs().await.expect("sql"),
        0,
        "jobs left: {stats:?}"
    );
    assert_eq!(
        be.scalar("SELECT count(*) FROM jobs WHERE state = 'discarded' AND attempt = 1")
            .await
            .expect("sql"),
        BAD_ROWS,
        "every bad row discarded on its first attempt (no retry loop): {stats:?}"
    );
    assert_eq!(
        be.scalar("SELECT count(*) FROM jobs WHERE state = 'completed'")
            .await
            .expect("sql"),
        1
    );
    let errors = match be.kind {
        Kind::Sqlite(_) => be
            .scalar(
                "SELECT count(*) FROM jobs WHERE state = 'discarded' AND (errors LIKE '%malformed args for worker netauto.bulk%' OR errors LIKE '%no worker named%' OR errors LIKE '%not found%')",
            )
            .await,
        Kind::Postgres(_) => be
            .scalar(
                "SELECT count(*) FROM jobs WHERE state = 'discarded' AND (errors::text LIKE '%malformed args for worker netauto.bulk%' OR errors::text LIKE '%no worker named%' OR errors::text LIKE '%not found%')",
            )
            .await,
    }
    .expect("sql");
    assert_eq!(errors, BAD_ROWS, "every discarded row says why");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.discarded, BAD_ROWS as u64, "{stats:?}");
    eprintln!(
        "FIGURES bad rows[{}]: {BAD_ROWS} malformed jobs discarded on attempt 1, 0 retries, good bulk done behind them; runner {stats:?}",
        db.label
    );
}

fn worker_runner(be: &TestDb, fleet: &Fleet) -> Runner {
    let client = Arc::new(SshNetworkClient::new(fleet.farm.client_config()));
    let network = Executor::new(be.store.clone(), client, be.progress.clone());
    let config = RunnerConfig {
        node: "bad-rows".to_owned(),
        queues: QueueLimits::empty().with("bulk", 2),
        poll_interval: Duration::from_millis(50),
        lease: Duration::from_secs(10),
        heartbeat_every: Duration::from_secs(2),
        rescue_every: Duration::from_secs(1),
        ..RunnerConfig::default()
    };
    Runner::new(
        be.queue.clone(),
        WorkerRegistry::new().with(BulkJob::new(network)),
    )
    .with_config(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_job_rows_on_sqlite_are_discarded_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    malformed_rows_are_discarded_once(Db::sqlite(dir.path(), "bad.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_job_rows_on_postgres_are_discarded_once() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    malformed_rows_are_discarded_once(db).await;
}

/// Output no terminal or browser should interpret, plus 200 KiB of every byte value (crossing
/// chunk boundaries).
fn evil_output() -> CannedOutput {
    let mut stdout = b"\xff\xfe invalid \x80 utf-8 \xc3\x28 \x1b[31mRED\x1b[0m \x1b]0;title\x07 <script>alert(1)</script>\r\n\0nul\r".to_vec();
    stdout.extend((0..200 * 1024).map(|i| (i * 7 % 256) as u8));
    stdout.extend_from_slice(b"</pre><img src=x onerror=alert(2)>");
    CannedOutput {
        stdout: Bytes::from(stdout),
        stderr: Bytes::from_static(
            b"\x1b[2J<script>document.cookie</script>\xed\xa0\x80\xf4\x90\x80\x80",
        ),
        exit_code: 0,
    }
}

async fn output_is_stored_byte_exact(store: Arc<dyn RunStore>, label: &str) {
    let mut spec = DeviceSpec::new("evil", "linux");
    let canned = evil_output();
    spec.commands = BTreeMap::from([("show evil".to_owned(), canned.clone())]);
    let farm = DeviceFarm::start(vec![spec]).await.expect("farm");
    let device = store
        .create_device(farm.new_devices().remove(0))
        .await
        .expect("device");
    let client = Arc::new(SshNetworkClient::new(farm.client_config()));
    let network = Executor::new(store.clone(), client, Arc::new(LocalProgressHub::new()));
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        network.execute_command(device.id, "show evil", RunOptions::new("reliability")),
    )
    .await
    .expect("timely")
    .expect("run");
    assert_eq!(run.status, RunStatus::Ok, "{run:?}");
    let chunks = store.chunks(run.id, 0, 100_000).await.expect("chunks");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.seq, i as u64, "chunk sequence");
        match c.stream {
            OutputStream::Stdout => out.extend_from_slice(&c.data),
            OutputStream::Stderr => err.extend_from_slice(&c.data),
        }
    }
    assert!(
        out == canned.stdout.as_ref(),
        "[{label}] stdout differs ({} vs {} bytes)",
        out.len(),
        canned.stdout.len()
    );
    assert!(
        err == canned.stderr.as_ref(),
        "[{label}] stderr differs: {err:?}"
    );
    assert_eq!(run.bytes, (out.len() + err.len()) as u64);
    eprintln!(
        "FIGURES output[{label}]: {} bytes in {} chunks stored byte-exact (invalid UTF-8, ANSI, NUL, <script>)",
        run.bytes,
        chunks.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_output_is_stored_byte_exact_in_memory() {
    output_is_stored_byte_exact(
        Arc::new(InMemoryRunStore::new(InMemoryJobQueue::new())),
        "memory",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_output_is_stored_byte_exact_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let be = Db::sqlite(dir.path(), "out.db").connect().await;
    be.migrate().await.expect("migrate");
    output_is_stored_byte_exact(be.store.clone(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_output_is_stored_byte_exact_on_postgres() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let be = db.connect().await;
    be.migrate().await.expect("migrate");
    output_is_stored_byte_exact(be.store.clone(), "postgres").await;
}
