//! Shared by the reliability test binaries: where the database is, worker processes, and the
//! crash scenario run on both backends.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use netauto_core::bulk::BulkService;
use netauto_core::{BulkEvent, BulkRef, DeviceId, FeedItem, ProgressEvent, RunStatus};
use netauto_reliability::TestDb;
use netauto_reliability::backend::Kind;
use netauto_reliability::harness::{
    self, Proc, Rng, fresh_pg_schema, pg_url, sim_specs, write_farm_files,
};
use netauto_reliability::sink::{PROGRESS, SUMMARY};
use netauto_ssh::sim::DeviceFarm;

/// The worker binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_crash_worker");

/// A database the test and its worker processes share.
#[derive(Debug, Clone)]
pub struct Db {
    pub url: String,
    pub schema: Option<String>,
    pub label: &'static str,
}

impl Db {
    /// A fresh SQLite file in `dir`.
    pub fn sqlite(dir: &Path, name: &str) -> Self {
        Self {
            url: format!("sqlite://{}", dir.join(name).display()),
            schema: None,
            label: "sqlite",
        }
    }

    /// A fresh schema on the PostgreSQL test server, or `None` (skip, reason printed).
    pub async fn postgres() -> Option<Self> {
        let url = pg_url()?;
        let schema = fresh_pg_schema(&url).await;
        Some(Self {
            url,
            schema: Some(schema),
            label: "postgres",
        })
    }

    pub fn args(&self) -> Vec<String> {
        let mut v = vec!["--db".to_owned(), self.url.clone()];
        if let Some(s) = &self.schema {
            v.extend(["--schema".to_owned(), s.clone()]);
        }
        v
    }

    pub async fn connect(&self) -> TestDb {
        TestDb::connect(&self.url, self.schema.as_deref(), 10)
            .await
            .expect("connect")
    }
}

/// A farm of simulated devices, its files for worker processes, and the devices in the store.
pub struct Fleet {
    pub farm: DeviceFarm,
    pub dir: tempfile::TempDir,
    pub creds: String,
    pub known_hosts: String,
    pub names: BTreeMap<DeviceId, String>,
}

impl Fleet {
    pub async fn start(be: &TestDb, n: usize, latency: Duration, output: usize) -> Self {
        let farm = DeviceFarm::start(sim_specs(n, latency, output))
            .await
            .expect("start the simulator farm");
        let dir = tempfile::tempdir().expect("tempdir");
        let (creds, kh) = write_farm_files(&farm, dir.path()).expect("farm files");
        let mut names = BTreeMap::new();
        for nd in farm.new_devices() {
            let d = be.store.create_device(nd).await.expect("create device");
            names.insert(d.id, d.name);
        }
        Self {
            farm,
            dir,
            creds: creds.display().to_string(),
            known_hosts: kh.display().to_string(),
            names,
        }
    }

    pub fn ids(&self) -> Vec<DeviceId> {
        self.names.keys().copied().collect()
    }

    /// Commands each device has started so far.
    pub fn executions(&self) -> HashMap<DeviceId, usize> {
        self.names
            .iter()
            .map(|(id, name)| (*id, self.farm.stats(name).expect("stats").commands))
            .collect()
    }

    pub fn worker_args(&self, db: &Db, node: &str) -> Vec<String> {
        let mut v = vec!["worker".to_owned()];
        v.extend(db.args());
        v.extend(
            [
                "--creds",
                &self.creds,
                "--known-hosts",
                &self.known_hosts,
                "--node",
                node,
                // Short, so a takeover after a SIGKILL takes seconds; long enough that an
                // attempt on a loaded two-core machine renews it in time (a lease not renewed
                // for 3 s stops its attempt).
                "--lease-ms",
                "4000",
            ]
            .map(str::to_owned),
        );
        v
    }
}

/// Distinct devices of the Progress lines and the number of Summary lines of some processes'
/// output; panics if a device's Progress was printed twice.
pub fn printed_events(outputs: &[Vec<String>]) -> (HashSet<String>, usize) {
    let mut devices = HashSet::new();
    let mut summaries = 0;
    for lines in outputs {
        for l in lines {
            if let Some(rest) = l.strip_prefix(PROGRESS) {
                let device = rest.split(' ').nth(1).expect("device field").to_owned();
                assert!(
                    devices.insert(device.clone()),
                    "Progress printed twice for device {device}"
                );
            } else if l.starts_with(SUMMARY) {
                summaries += 1;
            }
        }
    }
    (devices, summaries)
}

/// Counts a bulk topic's events as seen by a subscriber (PostgreSQL: LISTEN/NOTIFY from other
/// processes).
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub progress: Arc<Mutex<HashMap<DeviceId, usize>>>,
    pub summaries: Arc<Mutex<usize>>,
    pub lagged: Arc<Mutex<u64>>,
}

pub async fn subscribe(be: &TestDb, bulk_ref: &BulkRef) -> Seen {
    let seen = Seen::default();
    let mut sub = be.progress.subscribe(&bulk_ref.topic()).await;
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some(item) = sub.next().await {
            match item {
                FeedItem::Event(ProgressEvent::Bulk(BulkEvent::Progress { device_id, .. })) => {
                    *s.progress
                        .lock()
                        .expect("lock")
                        .entry(device_id)
                        .or_default() += 1;
                }
                FeedItem::Event(ProgressEvent::Bulk(BulkEvent::Summary { .. })) => {
                    *s.summaries.lock().expect("lock") += 1;
                }
                FeedItem::Event(_) => {}
                FeedItem::Lagged { missed } => *s.lagged.lock().expect("lock") += missed,
            }
        }
    });
    seen
}

/// Polls until the bulk has finished (`finished_at` set) or `timeout` passes.
pub async fn wait_bulk_finished(be: &TestDb, bulk_ref: &BulkRef, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        match be.store.bulk(bulk_ref).await {
            Ok(b) if b.finished_at.is_some() => return true,
            Ok(_) => {}
            Err(e) => eprintln!("polling the bulk: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Crash test: a worker running a 500-device bulk is SIGKILLed after a random number of
/// outcomes; a second worker takes over once the lease expires. See the asserts.
pub async fn crash_scenario(db: Db) {
    const N: usize = 500;
    let label = db.label;
    let seed = harness::seed();
    let mut rng = Rng::new(seed);
    eprintln!("[crash {label}] seed {seed} (replay with RELIABILITY_SEED={seed})");
    let be = db.connect().await;
    be.migrate().await.expect("migrate");
    let fleet = Fleet::start(&be, N, Duration::from_millis(250), 256).await;
    let ids = fleet.ids();
    let bulk_ref = BulkService::new(be.store.clone(), be.progress.clone())
        .enqueue(&ids, "show version", "reliability")
        .await
        .expect("enqueue");
    let seen = match be.kind {
        Kind::Postgres(_) => Some(subscribe(&be, &bulk_ref).await),
        Kind::Sqlite(_) => None,
    };

    // Worker A: killed at a random point (after 1..=450 outcomes, plus 0–200 ms).
    let kill_after = rng.range(1, 450) as usize;
    let mut a = Proc::spawn("worker-a", BIN, &fleet.worker_args(&db, "node-a")).expect("spawn a");
    let reached = a
        .wait_for(Duration::from_secs(90), |l| {
            l.iter().filter(|x| x.starts_with(PROGRESS)).count() >= kill_after
        })
        .await;
    if !reached {
        let runs = be.store.bulk_runs(&bulk_ref, &ids).await.expect("runs");
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for r in &runs {
            *kinds
                .entry(format!(
                    "{} {:?} {:?}",
                    r.status.as_str(),
                    r.error_kind,
                    r.error_message
                ))
                .or_default() += 1;
        }
        panic!(
            "worker A never reached {kill_after} outcomes: {:?}; runs: {kinds:?}",
            a.lines().last()
        );
    }
    tokio::time::sleep(Duration::from_millis(rng.range(0, 200))).await;
    a.kill9();
    // Let the simulator take in whatever A sent before it died.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = be.store.bulk_runs(&bulk_ref, &ids).await.expect("runs");
    let finished_before: HashSet<DeviceId> = before
        .iter()
        .filter(|r| r.status.is_finished())
        .map(|r| r.device_id)
        .collect();
    let running_before: HashSet<DeviceId> = before
        .iter()
        .filter(|r| r.status == RunStatus::Running)
        .map(|r| r.device_id)
        .collect();
    let outcomes_before = be
        .store
        .bulk(&bulk_ref)
        .await
        .expect("bulk")
        .counters
        .done();
    let c1 = fleet.executions();
    assert!(
        outcomes_before < N as u64,
        "A finished the whole bulk before the kill: the test proves nothing"
    );

    // Worker B: takes over (rescues A's jobs once their 4 s lease expired).
    let t0 = Instant::now();
    let mut b = Proc::spawn("worker-b", BIN, &fleet.worker_args(&db, "node-b")).expect("spawn b");
    let finished = wait_bulk_finished(&be, &bulk_ref, Duration::from_secs(180)).await;
    let takeover = t0.elapsed();
    let rss_b = b.peak_rss_kib();
    assert!(finished, "the bulk did not finish after the takeover");
    assert!(
        b.terminate(Duration::from_secs(30)).await,
        "worker B did not stop cleanly"
    );
    let c2 = fleet.executions();

    // Every device: exactly one outcome, ok, on a finished run.
    let bulk = be.store.bulk(&bulk_ref).await.expect("bulk");
    assert_eq!((bulk.counters.total, bulk.counters.pending), (N as u64, 0));
    assert_eq!(bulk.outcomes.len(), N);
    assert!(
        bulk.outcomes
            .values()
            .all(|o| o.is_ok() && o.run_id.is_some()),
        "{bulk:?}"
    );
    let after = be.store.bulk_runs(&bulk_ref, &ids).await.expect("runs");
    let mut finished_runs: HashMap<DeviceId, usize> = HashMap::new();
    for r in &after {
        assert!(
            r.status.is_finished(),
            "run {} still running after the rescue",
            r.id
        );
        if r.error_kind.as_deref() != Some("interrupted") {
            *finished_runs.entry(r.device_id).or_default() += 1;
        }
    }
    for (d, o) in &bulk.outcomes {
        assert_eq!(finished_runs.get(d), Some(&1), "device {d}: finished runs");
        let run = after
            .iter()
            .find(|r| Some(r.id) == o.run_id)
            .expect("outcome's run");
        assert_eq!(run.device_id, *d);
    }

    // Executions: a device whose run had finished before the kill never ran again; every
    // other device ran exactly once more (in flight at the kill: its first run never finished).
    let mut duplicates = 0;
    let mut reruns = 0;
    for d in &ids {
        let (x1, x2) = (c1[d], c2[d]);
        if finished_before.contains(d) {
            assert_eq!(
                x1, 1,
                "device {d} finished before the kill but ran {x1} times"
            );
            if x2 != x1 {
                duplicates += 1;
            }
        } else {
            assert!(x1 <= 1, "device {d} ran {x1} times before the kill");
            assert_eq!(
                x2,
                x1 + 1,
                "device {d}: not finished at the kill, ran {x1} then {x2}"
            );
            reruns += x1;
        }
    }

    // Events printed by the two workers: each device's Progress at most once, one Summary.
    let (progress_devices, summaries) = printed_events(&[a.lines(), b.lines()]);
    let lost = N - progress_devices.len();
    assert_eq!(summaries, 1, "Summary published {summaries} times");
    assert!(
        lost <= 50,
        "{lost} Progress events lost (more than were in flight at the kill)"
    );

    // The database: nothing orphaned, nothing left running, interrupted runs closed.
    assert_eq!(be.orphan_chunks().await.expect("sql"), 0, "orphaned chunks");
    assert_eq!(
        be.running_runs().await.expect("sql"),
        0,
        "runs stuck running"
    );
    assert_eq!(
        be.interrupted_runs().await.expect("sql"),
        running_before.len() as i64,
        "every run left running by the kill is closed as interrupted, no other"
    );
    assert_eq!(
        be.live_jobs().await.expect("sql"),
        0,
        "jobs left unfinished"
    );
    assert_eq!(
        be.scalar("SELECT count(*) FROM jobs WHERE state = 'discarded'")
            .await
            .expect("sql"),
        0
    );
    let mut sub_line = String::new();
    if let Some(seen) = seen {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let progress = seen.progress.lock().expect("lock").clone();
        let summaries = *seen.summaries.lock().expect("lock");
        assert!(
            progress.values().all(|n| *n == 1),
            "a Progress event was delivered twice"
        );
        assert_eq!(summaries, 1, "subscriber saw {summaries} Summaries");
        sub_line = format!(
            ", subscriber (LISTEN/NOTIFY): {} of {N} Progress (missing ones all from the killed \
             worker), {} Summary, lagged {}",
            progress.len(),
            summaries,
            seen.lagged.lock().expect("lock")
        );
        // Only events of the killed worker's last moments may be missing (printed, then killed
        // before its NOTIFY went out); everything the surviving worker published arrives.
        let (b_devices, _) = printed_events(&[b.lines()]);
        let seen_devices: HashSet<String> = progress.keys().map(|d| d.to_string()).collect();
        let missed_from_b: Vec<_> = b_devices.difference(&seen_devices).collect();
        assert!(
            missed_from_b.is_empty(),
            "subscriber missed the survivor's events: {missed_from_b:?}"
        );
        let sub_lost = N - progress.len();
        assert!(sub_lost <= 50, "subscriber lost {sub_lost} Progress events");
    }
    assert_eq!(duplicates, 0, "finished devices executed again");
    eprintln!(
        "FIGURES crash[{label}]: crashes survived 1; killed after {outcomes_before}/{N} outcomes \
         ({} runs finished, {} running); duplicates of finished devices {duplicates}; \
         re-run in-flight devices {reruns}; Summary published {summaries}; Progress events lost \
         at the kill {lost}{sub_line}; takeover to done {:.1} s; peak RSS worker B {} KiB",
        finished_before.len(),
        running_before.len(),
        takeover.as_secs_f64(),
        rss_b.unwrap_or(0)
    );
}
