//! Multi-node on PostgreSQL: three worker processes drain one bulk; this test process is the
//! fourth, a LISTEN/NOTIFY subscriber that must see every Progress event and the one
//! Summary. The workers also run retention on a cron slot: one job per slot, however many
//! nodes insert it.
//!
//! 5,000 devices, the size the issue asks for (about a minute on two cores shared by the
//! simulator, three workers and the database); `RELIABILITY_MULTI_NODE_DEVICES` changes it.

mod common;

use std::time::{Duration, Instant};

use common::{BIN, Db, Fleet, printed_events, subscribe, wait_bulk_finished};
use netauto_core::bulk::BulkService;
use netauto_reliability::harness::{Proc, peak_rss_kib};
use netauto_reliability::sink::PROGRESS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_drain_a_bulk_and_a_fourth_process_sees_every_event() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let n: usize = std::env::var("RELIABILITY_MULTI_NODE_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let be = db.connect().await;
    be.migrate().await.expect("migrate");
    let t_setup = Instant::now();
    let fleet = Fleet::start(&be, n, Duration::ZERO, 128).await;
    let setup = t_setup.elapsed();
    let ids = fleet.ids();
    let bulk_ref = BulkService::new(be.store.clone(), be.progress.clone())
        .enqueue(&ids, "show version", "reliability")
        .await
        .expect("enqueue");
    let seen = subscribe(&be, &bulk_ref).await;

    let t0 = Instant::now();
    let mut workers: Vec<Proc> = (0..3)
        .map(|i| {
            let node = format!("node-{i}");
            let mut args = fleet.worker_args(&db, &node);
            // Nobody is killed here, so takeover speed does not matter: a lease of 10 s (not the
            // crash tests' 4 s) keeps heartbeats queued behind 50 busy devices on a loaded
            // machine from fencing attempts that are alive.
            args.extend(
                ["--retention-cron", "* * * * *", "--lease-ms", "10000"].map(str::to_owned),
            );
            Proc::spawn(&node, BIN, &args).expect("spawn")
        })
        .collect();
    let finished = wait_bulk_finished(&be, &bulk_ref, Duration::from_secs(420)).await;
    let elapsed = t0.elapsed();
    assert!(
        finished,
        "the bulk did not finish: {:?}",
        be.store.bulk(&bulk_ref).await.map(|b| b.counters)
    );
    // Give the last NOTIFYs a moment to arrive.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && (*seen.summaries.lock().expect("lock") == 0
            || seen.progress.lock().expect("lock").len() < n)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss: Vec<u64> = workers.iter().filter_map(Proc::peak_rss_kib).collect();
    for w in &mut workers {
        assert!(
            w.terminate(Duration::from_secs(40)).await,
            "a worker did not stop cleanly"
        );
    }

    let bulk = be.store.bulk(&bulk_ref).await.expect("bulk");
    assert_eq!(
        (bulk.counters.ok, bulk.counters.pending),
        (n as u64, 0),
        "{:?}",
        bulk.counters
    );
    let executions = fleet.executions();
    let twice = executions.values().filter(|c| **c > 1).count();
    assert!(executions.values().all(|c| *c >= 1), "a device never ran");
    let outputs: Vec<Vec<String>> = workers.iter().map(Proc::lines).collect();
    let stopped: Vec<String> = outputs
        .iter()
        .flatten()
        .filter(|l| l.starts_with("STOPPED"))
        .cloned()
        .collect();
    let (printed, printed_summaries) = printed_events(&outputs);
    let per_worker: Vec<usize> = outputs
        .iter()
        .map(|l| l.iter().filter(|x| x.starts_with(PROGRESS)).count())
        .collect();
    let progress = seen.progress.lock().expect("lock").clone();
    let summaries = *seen.summaries.lock().expect("lock");
    let lagged = *seen.lagged.lock().expect("lock");
    let lost = n - progress.len();
    let retention_jobs = be
        .scalar("SELECT count(*) FROM jobs WHERE worker = 'netauto.retention'")
        .await
        .expect("sql");
    let retention_slots = be
        .scalar("SELECT count(DISTINCT unique_key) FROM jobs WHERE worker = 'netauto.retention'")
        .await
        .expect("sql");
    eprintln!(
        "FIGURES multi-node: {n} devices, 3 worker processes + 1 subscriber process; setup {:.1} \
         s; drained in {:.1} s ({:.0} devices/s); devices per worker {per_worker:?}; duplicates \
         {twice}; events lost {lost} (lagged {lagged}), Summary seen {summaries}, printed \
         {printed_summaries}; retention jobs {retention_jobs} for {retention_slots} cron \
         slot(s); peak RSS per worker {rss:?} KiB, test process (simulator + subscriber) {:?} \
         KiB; workers: {stopped:?}",
        setup.as_secs_f64(),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        peak_rss_kib(std::process::id())
    );
    assert_eq!(twice, 0, "devices executed twice");
    assert_eq!((printed.len(), printed_summaries), (n, 1));
    assert!(
        progress.values().all(|c| *c == 1),
        "a Progress event was delivered twice"
    );
    assert_eq!((lost, lagged, summaries), (0, 0, 1), "events lost");
    assert!(
        per_worker.iter().all(|c| *c > 0),
        "a worker got nothing: {per_worker:?}"
    );
    assert!(
        retention_slots >= 1,
        "no retention job was enqueued by cron"
    );
    assert_eq!(
        retention_jobs, retention_slots,
        "more than one retention job for a cron slot"
    );
    assert_eq!(be.running_runs().await.expect("sql"), 0);
    assert_eq!(be.live_jobs().await.expect("sql"), 0);
}
