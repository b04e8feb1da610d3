//! PostgreSQL restarted (`pg_ctlcluster … restart`) while two worker processes run a bulk:
//! the workers reconnect and finish, every device has one outcome, no finished device runs
//! again. Its own test binary, so no other PostgreSQL test runs during the restart; the
//! server is started again at the end whatever happens.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Db, Fleet, printed_events, wait_bulk_finished};
use netauto_core::bulk::BulkService;
use netauto_core::{DeviceId, Run};
use netauto_reliability::harness::Proc;
use netauto_reliability::sink::PROGRESS;

const N: usize = 300;

/// The newest PostgreSQL cluster version under /etc/postgresql (as `.ci/run` picks it).
fn cluster_version() -> Option<String> {
    let mut versions: Vec<(u32, String)> = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|v| Some((v.split('.').next()?.parse().ok()?, v)))
        .collect();
    versions.sort();
    versions.pop().map(|(_, v)| v)
}

fn pg_ctl(version: &str, action: &str) -> bool {
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", action])
        .status()
        .is_ok_and(|s| s.success())
}

fn pg_ready() -> bool {
    Command::new("pg_isready")
        .args(["-h", "127.0.0.1", "-p", "5432", "-q"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the server again if it is down when the test ends (pass or fail).
struct EnsureUp(String);

impl Drop for EnsureUp {
    fn drop(&mut self) {
        for _ in 0..30 {
            if pg_ready() {
                return;
            }
            pg_ctl(&self.0, "start");
            std::thread::sleep(Duration::from_secs(1));
        }
        eprintln!("PostgreSQL is still down after the restart test");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_and_finish_after_a_postgres_restart() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let Some(version) = cluster_version().filter(|_| pg_ready()) else {
        assert!(!ci, "CI=true but no local PostgreSQL cluster to restart");
        eprintln!("skipped: no local PostgreSQL cluster under /etc/postgresql to restart");
        return;
    };
    let _up = EnsureUp(version.clone());
    let be = db.connect().await;
    be.migrate().await.expect("migrate");
    let fleet = Fleet::start(&be, N, Duration::from_millis(1500), 256).await;
    let ids = fleet.ids();
    let bulk_ref = BulkService::new(be.store.clone(), be.progress.clone())
        .with_chunk_size(std::num::NonZeroUsize::new(25).expect("25"))
        .enqueue(&ids, "show version", "reliability")
        .await
        .expect("enqueue");
    let mut workers: Vec<Proc> = ["node-a", "node-b"]
        .iter()
        .map(|n| Proc::spawn(n, BIN, &fleet.worker_args(&db, n)).expect("spawn"))
        .collect();
    let progress = |w: &[Proc]| w.iter().map(|p| p.count(PROGRESS)).sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(90);
    while progress(&workers) < 60 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = progress(&workers);
    assert!(
        before >= 60,
        "the bulk did not get going: {before} outcomes"
    );

    let t = Instant::now();
    assert!(pg_ctl(&version, "restart"), "pg_ctlcluster restart failed");
    let restart = t.elapsed();
    // The restart must land mid-bulk (the pool reconnects on its own; retry until it has).
    let mut pending = None;
    for _ in 0..100 {
        if let Ok(b) = be.store.bulk(&bulk_ref).await {
            pending = Some(b.counters.pending);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        pending.is_some_and(|p| p > 0),
        "the bulk was done before the server came back ({pending:?} pending): the test proves nothing"
    );
    let finished = wait_bulk_finished(&be, &bulk_ref, Duration::from_secs(240)).await;
    let after_restart = t.elapsed();
    let rss: Vec<u64> = workers.iter().filter_map(Proc::peak_rss_kib).collect();
    assert!(finished, "the bulk did not finish after the restart");
    for w in &mut workers {
        assert!(
            w.terminate(Duration::from_secs(40)).await,
            "a worker did not stop cleanly"
        );
    }

    let bulk = be.store.bulk(&bulk_ref).await.expect("bulk");
    assert_eq!((bulk.counters.total, bulk.counters.pending), (N as u64, 0));
    assert!(
        bulk.outcomes.values().all(|o| o.is_ok()),
        "the outage turned into device failures: {:?}",
        bulk.outcomes
            .values()
            .filter(|o| !o.is_ok())
            .collect::<Vec<_>>()
    );
    let runs = be.store.bulk_runs(&bulk_ref, &ids).await.expect("runs");
    let mut by_device: BTreeMap<DeviceId, Vec<Run>> = BTreeMap::new();
    for r in runs {
        assert!(r.status.is_finished(), "run {} still running", r.id);
        by_device.entry(r.device_id).or_default().push(r);
    }
    let executions = fleet.executions();
    let (mut duplicates, mut reruns) = (0, 0);
    for d in &ids {
        let runs = by_device.get(d).map_or(&[][..], Vec::as_slice);
        // Every execution has its run (the run is written before the command starts).
        assert_eq!(executions[d], runs.len(), "device {d}: executions vs runs");
        // Runs before the last one were interrupted, never finished: else a finished device
        // ran again.
        for r in &runs[..runs.len().saturating_sub(1)] {
            if r.error_kind.as_deref() == Some("interrupted") {
                reruns += 1;
            } else {
                duplicates += 1;
            }
        }
    }
    let (printed, summaries) = printed_events(&workers.iter().map(Proc::lines).collect::<Vec<_>>());
    assert_eq!(summaries, 1, "Summary published {summaries} times");
    assert_eq!(printed.len(), N, "a device's outcome was never published");
    assert_eq!(be.running_runs().await.expect("sql"), 0);
    assert_eq!(be.orphan_chunks().await.expect("sql"), 0);
    assert_eq!(be.live_jobs().await.expect("sql"), 0);
    assert_eq!(
        be.scalar("SELECT count(*) FROM jobs WHERE state = 'discarded'")
            .await
            .expect("sql"),
        0
    );
    let retried = be
        .scalar("SELECT count(*) FROM jobs WHERE attempt > 1")
        .await
        .expect("sql");
    assert_eq!(duplicates, 0, "finished devices executed again");
    eprintln!(
        "FIGURES pg restart: {N} devices, 2 worker processes; restart after {before} outcomes \
         took {:.1} s ({} devices still pending when it was back); bulk done {:.1} s after the restart began; jobs retried {retried}; \
         interrupted runs re-run {reruns}; duplicates of finished devices {duplicates}; \
         Summary published {summaries}; peak RSS per worker {rss:?} KiB",
        restart.as_secs_f64(),
        pending.unwrap_or(0),
        after_restart.as_secs_f64()
    );
}
