//! Cancel across nodes on PostgreSQL (issue 12, item 3): two worker processes run a bulk
//! whose devices never answer; this test process — a third node sharing only the database —
//! cancels it. Every running session must close within 2 s on the nodes running them (the
//! cancel reaches them through the database), devices not started are cancelled at once,
//! the counters add up and the one Summary is published.

mod common;

use std::time::{Duration, Instant};

use common::{BIN, Db, Fleet, subscribe, wait_bulk_finished};
use netauto_core::bulk::BulkService;
use netauto_reliability::harness::Proc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_cancelled_on_one_node_stops_sessions_on_the_others() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let n = 120;
    let be = db.connect().await;
    be.migrate().await.expect("migrate");
    let fleet = Fleet::start(&be, n, Duration::ZERO, 128).await;
    // Every command hangs until resumed: the sessions stay open.
    fleet.farm.pause();
    let ids = fleet.ids();
    let bulk_ref = BulkService::new(be.store.clone(), be.progress.clone())
        .enqueue(&ids, "show version", "reliability")
        .await
        .expect("enqueue");
    let seen = subscribe(&be, &bulk_ref).await;
    let mut workers: Vec<Proc> = (0..2)
        .map(|i| {
            let node = format!("node-{i}");
            let mut args = fleet.worker_args(&db, &node);
            args.extend(
                [
                    "--bulk-jobs",
                    "1",
                    "--device-concurrency",
                    "10",
                    "--lease-ms",
                    "10000",
                ]
                .map(str::to_owned),
            );
            Proc::spawn(&node, BIN, &args).expect("spawn")
        })
        .collect();

    // 2 nodes x 1 job x 10 devices: 20 sessions open, 100 devices not started.
    let open = || -> usize {
        fleet
            .names
            .values()
            .map(|name| fleet.farm.stats(name).expect("stats").active)
            .sum()
    };
    let started = Instant::now();
    while open() < 20 || fleet.executions().values().sum::<usize>() < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "20 sessions never opened ({} open)",
            open()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let asked = Instant::now();
    let c = BulkService::new(be.store.clone(), be.progress.clone())
        .cancel(&bulk_ref)
        .await
        .expect("cancel");
    assert!(c.newly_cancelled);
    assert_eq!(
        (c.devices_cancelled, c.counters.pending),
        (100, 20),
        "{c:?}"
    );
    while open() > 0 {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "{} sessions still open",
            open()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed = asked.elapsed();
    assert!(
        wait_bulk_finished(&be, &bulk_ref, Duration::from_secs(20)).await,
        "the bulk did not finish"
    );
    let finished = asked.elapsed();
    let summary_deadline = Instant::now() + Duration::from_secs(10);
    while *seen.summaries.lock().expect("lock") == 0 && Instant::now() < summary_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bulk = be.store.bulk(&bulk_ref).await.expect("bulk");
    let runs = be.store.bulk_runs(&bulk_ref, &ids).await.expect("runs");
    fleet.farm.resume();
    for w in &mut workers {
        assert!(
            w.terminate(Duration::from_secs(30)).await,
            "a worker did not stop"
        );
    }
    eprintln!(
        "FIGURES cancel on PostgreSQL across processes: {} sessions running on 2 worker \
         processes, {} devices not started; every session closed {closed:?} after the cancel, \
         bulk finished after {finished:?}; Summary seen {}",
        runs.len(),
        c.devices_cancelled,
        *seen.summaries.lock().expect("lock")
    );
    assert!(
        closed < Duration::from_secs(2),
        "sessions closed after {closed:?}"
    );
    assert_eq!(
        (
            bulk.counters.cancelled,
            bulk.counters.pending,
            bulk.counters.total
        ),
        (n as u64, 0, n as u64)
    );
    assert_eq!(runs.len(), 20, "nothing started after the cancel");
    assert!(
        runs.iter()
            .all(|r| r.status == netauto_core::RunStatus::Cancelled),
        "{:?}",
        runs.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(*seen.summaries.lock().expect("lock"), 1, "one Summary");
}
