//! Interrupted purges resume to the same end state as an uninterrupted one: property-tested on
//! the memory backend (a batch fails after k batches), and with a real SIGKILL of a purge
//! process on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::{BIN, Db};
use netauto_core::RunStore;
use netauto_core::retention::RetentionConfig;
use netauto_core::retention::RetentionWorker;
use netauto_memory::{InMemoryJobQueue, InMemoryRunStore};
use netauto_reliability::FaultyStore;
use netauto_reliability::faulty::BATCH;
use netauto_reliability::harness::{self, Proc, Rng, seed_runs, snapshot};
use proptest::prelude::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
        .single()
        .expect("time")
}

fn memory_store() -> Arc<dyn RunStore> {
    Arc::new(InMemoryRunStore::new(InMemoryJobQueue::new()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Kill after k batches (the (k+1)-th delete fails), re-run: same end state as a purge
    /// that was never interrupted.
    #[test]
    fn interrupted_purge_resumes_to_the_uninterrupted_end_state(
        seed in any::<u64>(),
        devices in 1usize..5,
        runs in 1usize..40,
        k in 0u64..12,
        max_days in 1u32..60,
        max_bytes in 1u64..40_000,
        batch in 1usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let config = RetentionConfig::default()
                .with_max_days(max_days)
                .with_max_bytes(max_bytes)
                .build()
                .expect("config");
            let (control, target) = (memory_store(), memory_store());
            seed_runs(&*control, seed, devices, runs, now()).await.expect("seed");
            seed_runs(&*target, seed, devices, runs, now()).await.expect("seed");
            prop_assert_eq!(snapshot(&*control).await.expect("s"), snapshot(&*target).await.expect("s"));

            let full = RetentionWorker::new(control.clone(), config.clone())
                .with_batch_runs(batch)
                .purge(now(), false)
                .await
                .expect("uninterrupted purge");

            let faulty = Arc::new(FaultyStore::new(target.clone()).fail_after(k));
            let first = RetentionWorker::new(faulty.clone(), config.clone())
                .with_batch_runs(batch)
                .purge(now(), false)
                .await;
            // The interruption happened exactly when the plan had more than k batches.
            prop_assert_eq!(first.is_err(), full.batches > k, "{:?}", first.as_ref().err());
            let rerun = RetentionWorker::new(target.clone(), config)
                .with_batch_runs(batch)
                .purge(now(), false)
                .await
                .expect("re-run");
            if full.batches > k {
                prop_assert!(rerun.batches > 0, "the re-run had nothing left to do");
            }
            prop_assert_eq!(snapshot(&*control).await.expect("s"), snapshot(&*target).await.expect("s"));
            Ok(())
        })?;
    }
}

const DEVICES: usize = 20;
const RUNS: usize = 60;
const MAX_DAYS: u32 = 30;
const MAX_BYTES: u64 = 40_000;
const BATCH_RUNS: usize = 10;

fn purge_args(db: &Db, delay_ms: u64) -> Vec<String> {
    let mut v = vec!["purge".to_owned()];
    v.extend(db.args());
    v.extend(
        [
            "--now-micros".to_owned(),
            now().timestamp_micros().to_string(),
            "--max-days".to_owned(),
            MAX_DAYS.to_string(),
            "--max-bytes".to_owned(),
            MAX_BYTES.to_string(),
            "--batch-runs".to_owned(),
            BATCH_RUNS.to_string(),
            "--delay-ms".to_owned(),
            delay_ms.to_string(),
        ]
        .to_vec(),
    );
    v
}

/// Seeds `control` and `target` alike, purges `control` in one go, SIGKILLs a purge process
/// on `target` after a random number of batches (and a random part of the next one), runs it
/// again, and compares.
async fn sigkilled_purge(control: Db, target: Db) {
    let label = control.label;
    let seed = harness::seed();
    let mut rng = Rng::new(seed);
    eprintln!("[purge {label}] seed {seed} (replay with RELIABILITY_SEED={seed})");
    let (c, t) = (control.connect().await, target.connect().await);
    c.migrate().await.expect("migrate");
    t.migrate().await.expect("migrate");
    seed_runs(&*c.store, seed, DEVICES, RUNS, now())
        .await
        .expect("seed");
    seed_runs(&*t.store, seed, DEVICES, RUNS, now())
        .await
        .expect("seed");
    let original = snapshot(&*t.store).await.expect("snapshot");
    assert_eq!(snapshot(&*c.store).await.expect("snapshot"), original);

    let config = RetentionConfig::default()
        .with_max_days(MAX_DAYS)
        .with_max_bytes(MAX_BYTES)
        .build()
        .expect("config");
    let full = RetentionWorker::new(c.store.clone(), config)
        .with_batch_runs(BATCH_RUNS)
        .purge(now(), false)
        .await
        .expect("control purge");
    assert!(
        full.batches >= 10,
        "too few batches to interrupt: {}",
        full.batches
    );
    assert!(
        full.deleted_age.runs > 0 && full.deleted_bytes.runs > 0,
        "{full:?}"
    );
    let expected = snapshot(&*c.store).await.expect("snapshot");

    let k = rng.range(1, full.batches - 2) as usize;
    let mut p = Proc::spawn("purge-1", BIN, &purge_args(&target, 40)).expect("spawn");
    let reached = p
        .wait_for(Duration::from_secs(60), |l| {
            l.iter().filter(|x| x.starts_with(BATCH)).count() >= k
        })
        .await;
    assert!(
        reached,
        "the purge never reached batch {k}: {:?}",
        p.lines()
    );
    tokio::time::sleep(Duration::from_millis(rng.range(0, 40))).await;
    p.kill9();
    let done_before_kill = p.count(BATCH);
    let partial = snapshot(&*t.store).await.expect("snapshot");
    assert!(
        partial != original && partial != expected,
        "the kill did not land mid-purge"
    );
    assert_eq!(
        t.orphan_chunks().await.expect("sql"),
        0,
        "orphaned chunks after the kill"
    );

    let mut again = Proc::spawn("purge-2", BIN, &purge_args(&target, 0)).expect("spawn");
    assert!(
        again.wait_exit(Duration::from_secs(120)).await,
        "the re-run failed"
    );
    let summary = again
        .lines()
        .into_iter()
        .find(|l| l.starts_with("PURGED"))
        .unwrap_or_default();
    let end = snapshot(&*t.store).await.expect("snapshot");
    assert_eq!(
        end, expected,
        "interrupted + re-run differs from one uninterrupted purge"
    );
    assert_eq!(t.orphan_chunks().await.expect("sql"), 0, "orphaned chunks");
    eprintln!(
        "FIGURES purge[{label}]: {} runs seeded; control purge {} batches ({} by age, {} by \
         bytes); SIGKILLed after {done_before_kill} committed batches (waited for {k}); re-run \
         {summary}; end state equal to the control: yes ({} runs left)",
        original.len(),
        full.batches,
        full.deleted_age.runs,
        full.deleted_bytes.runs,
        end.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_purge_on_sqlite_resumes_to_the_same_end_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    sigkilled_purge(
        Db::sqlite(dir.path(), "control.db"),
        Db::sqlite(dir.path(), "target.db"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_purge_on_postgres_resumes_to_the_same_end_state() {
    let (Some(control), Some(target)) = (Db::postgres().await, Db::postgres().await) else {
        return;
    };
    sigkilled_purge(control, target).await;
}
