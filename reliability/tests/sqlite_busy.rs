//! SQLite busy under concurrent writers: three worker processes drain one bulk on one SQLite
//! file at once. Nothing is lost (every run has all its chunks), nothing runs twice.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{BIN, Db, Fleet, printed_events, wait_bulk_finished};
use netauto_core::bulk::BulkService;
use netauto_reliability::harness::Proc;

const N: usize = 200;
const OUTPUT: usize = 150 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_writing_one_sqlite_file_lose_no_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::sqlite(dir.path(), "busy.db");
    let be = db.connect().await;
    be.migrate().await.expect("migrate");
    // 150 KiB each, written in several chunks: many small write transactions from 3 processes.
    let fleet = Fleet::start(&be, N, Duration::from_millis(50), OUTPUT).await;
    let ids = fleet.ids();
    // Jobs of 10 devices, so that all three processes get work at once.
    let bulk_ref = BulkService::new(be.store.clone(), be.progress.clone())
        .with_chunk_size(std::num::NonZeroUsize::new(10).expect("10"))
        .enqueue(&ids, "show tech", "reliability")
        .await
        .expect("enqueue");
    let t0 = Instant::now();
    let mut workers: Vec<Proc> = (0..3)
        .map(|i| {
            let mut args = fleet.worker_args(&db, &format!("node-{i}"));
            // Not a takeover test: a lease like a deployment's (the default is 60 s), not the
            // takeover tests' 4 s. Three processes appending 150 KiB runs to one SQLite file
            // on a loaded two-core machine can keep a heartbeat waiting for the one writer
            // lock for more than 3 s; with a 4 s lease the attempt then stops itself and
            // another node runs its devices again, which is the lease doing its job, not
            // what this test is about.
            let at = args
                .iter()
                .position(|a| a == "--lease-ms")
                .expect("worker_args sets a lease");
            args[at + 1] = "20000".to_owned();
            Proc::spawn(&format!("worker-{i}"), BIN, &args).expect("spawn")
        })
        .collect();
    let finished = wait_bulk_finished(&be, &bulk_ref, Duration::from_secs(180)).await;
    let elapsed = t0.elapsed();
    let rss: Vec<u64> = workers.iter().filter_map(Proc::peak_rss_kib).collect();
    assert!(
        finished,
        "the bulk did not finish: {:?}",
        be.store.bulk(&bulk_ref).await.map(|b| b.counters)
    );
    for w in &mut workers {
        let t = Instant::now();
        let stopped = w.terminate(Duration::from_secs(30)).await;
        let tail: Vec<String> = w.lines().into_iter().rev().take(2).collect();
        assert!(
            stopped,
            "a worker did not stop cleanly after {:?}: {tail:?}",
            t.elapsed()
        );
    }

    let bulk = be.store.bulk(&bulk_ref).await.expect("bulk");
    assert_eq!(
        (bulk.counters.ok, bulk.counters.pending),
        (N as u64, 0),
        "{:?}",
        bulk.counters
    );
    let runs = be.store.bulk_runs(&bulk_ref, &ids).await.expect("runs");
    let extra: Vec<_> = runs
        .iter()
        .filter(|r| runs.iter().filter(|o| o.device_id == r.device_id).count() > 1)
        .map(|r| (r.device_id, r.id, r.status, r.error_kind.clone(), r.bytes))
        .collect();
    let retried_jobs = be
        .scalar("SELECT count(*) FROM jobs WHERE attempt > 1")
        .await;
    assert_eq!(
        runs.len(),
        N,
        "one run per device: {extra:?}; retried jobs {retried_jobs:?}"
    );
    let mut chunks_total = 0;
    for r in &runs {
        assert_eq!(r.bytes, OUTPUT as u64, "run {} bytes", r.id);
        let chunks = be.store.chunks(r.id, 0, 10_000).await.expect("chunks");
        let stored: usize = chunks.iter().map(|c| c.data.len()).sum();
        assert_eq!(stored, OUTPUT, "run {}: chunks lost", r.id);
        assert!(
            chunks.iter().enumerate().all(|(i, c)| c.seq == i as u64),
            "gap in run {}",
            r.id
        );
        chunks_total += chunks.len();
    }
    let executions: HashMap<_, _> = fleet.executions();
    assert!(
        executions.values().all(|n| *n == 1),
        "a device ran twice or never"
    );
    let outputs: Vec<Vec<String>> = workers.iter().map(Proc::lines).collect();
    let (progress, summaries) = printed_events(&outputs);
    assert_eq!((progress.len(), summaries), (N, 1));
    let retried = be
        .scalar("SELECT count(*) FROM jobs WHERE attempt > 1")
        .await
        .expect("sql");
    assert_eq!(be.live_jobs().await.expect("sql"), 0);
    assert_eq!(be.orphan_chunks().await.expect("sql"), 0);
    let per_worker: Vec<usize> = outputs
        .iter()
        .map(|l| l.iter().filter(|x| x.starts_with("EV progress")).count())
        .collect();
    assert!(
        per_worker.iter().all(|n| *n > 0),
        "the writers did not overlap: {per_worker:?}"
    );
    assert_eq!(retried, 0, "jobs retried after SQLITE_BUSY");
    eprintln!(
        "FIGURES sqlite busy: 3 processes, {N} devices x {OUTPUT} B in {chunks_total} chunks, \
         {:.1} s; devices per process {per_worker:?}; lost chunks 0; duplicates 0; jobs \
         retried {retried}; peak RSS per worker {rss:?} KiB",
        elapsed.as_secs_f64()
    );
}
