//! [`RetentionWorker`] against the in-memory backend: the age and byte rules, the job and its
//! telemetry, dry runs, batches, and purges interrupted between transactions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use common::{Fixture, concat, days_ago, t0};
use netauto_core::prelude::*;
use netauto_core::retention::{
    DEFAULT_BATCH_RUNS, Deleted, DeviceTotal, PurgeReason, PurgeReport, RetentionArgs,
    RetentionConfig, RetentionWorker,
};
use netauto_core::telemetry;
use netauto_core::testing::{Capture, FaultyStore, perform_job_with_clock};
use netauto_core::{DeviceId, Error, NewRun, OutputStream, RunFinish, RunId, RunStatus};
use netauto_memory::InMemoryRunStore;

/// Creates a run of `device` inserted at `inserted` with chunks of the given sizes, finished
/// at `finished` (or left running).
async fn seed_run(
    store: &InMemoryRunStore,
    device: DeviceId,
    inserted: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    chunk_sizes: &[usize],
) -> RunId {
    let run = store
        .create_run(
            NewRun {
                device_id: device,
                command: "show tech-support".into(),
                requested_by: "seed".into(),
                bulk_ref: None,
            },
            inserted,
        )
        .await
        .unwrap();
    for &n in chunk_sizes {
        store
            .append_chunk(run.id, OutputStream::Stdout, &vec![b'x'; n], inserted)
            .await
            .unwrap();
    }
    if let Some(at) = finished {
        store
            .finish_run(run.id, RunFinish::new(RunStatus::Ok), at)
            .await
            .unwrap();
    }
    run.id
}

/// A finished run of one chunk, inserted a minute before it finished.
async fn finished_run(
    store: &InMemoryRunStore,
    device: DeviceId,
    at: DateTime<Utc>,
    bytes: usize,
) -> RunId {
    seed_run(
        store,
        device,
        at - TimeDelta::minutes(1),
        Some(at),
        &[bytes],
    )
    .await
}

fn config(max_days: u32, max_bytes: u64) -> RetentionConfig {
    RetentionConfig::default()
        .with_max_days(max_days)
        .with_max_bytes(max_bytes)
        .build()
        .unwrap()
}

fn planned(report: &PurgeReport) -> Vec<(RunId, PurgeReason)> {
    report
        .plan
        .deletions
        .iter()
        .map(|d| (d.run_id, d.reason))
        .collect()
}

async fn assert_gone(fx: &Fixture, runs: &[RunId]) {
    for &id in runs {
        assert!(
            matches!(fx.store.run(id).await, Err(Error::NotFound { .. })),
            "run {id} survived"
        );
        assert!(fx.chunks(id).await.is_empty(), "chunks of {id} survived");
    }
}

#[tokio::test]
async fn retention_deletes_runs_older_than_the_cutoff_with_their_chunks() {
    let fx = Fixture::new();
    let d = fx.devices(3).await;
    let s = &fx.store;
    let cutoff = days_ago(30);
    let r1 = seed_run(s, d[0], days_ago(41), Some(days_ago(40)), &[100, 50]).await;
    let r2 = seed_run(s, d[0], days_ago(31), Some(cutoff), &[10]).await;
    let r3 = seed_run(
        s,
        d[0],
        days_ago(31),
        Some(cutoff - TimeDelta::seconds(1)),
        &[20],
    )
    .await;
    let r4 = seed_run(s, d[0], days_ago(1), Some(days_ago(1)), &[5]).await;
    let r5 = seed_run(s, d[1], days_ago(45), None, &[7]).await;
    let r6 = seed_run(s, d[1], days_ago(50), Some(days_ago(10)), &[9]).await;
    let r7 = seed_run(s, d[2], days_ago(32), Some(days_ago(31)), &[1, 1, 1]).await;
    let worker = RetentionWorker::new(fx.store_dyn(), config(30, 1 << 30));
    let capture = Capture::install_scoped();

    let report = worker.purge(t0(), false).await.unwrap();

    assert_eq!(
        planned(&report),
        [
            (r5, PurgeReason::Age),
            (r1, PurgeReason::Age),
            (r7, PurgeReason::Age),
            (r3, PurgeReason::Age),
        ],
        "oldest first by (ts, id); exactly at the cutoff stays"
    );
    assert_eq!(
        report.deleted_age,
        Deleted {
            runs: 4,
            bytes: 150 + 20 + 7 + 3,
            chunks: 2 + 1 + 1 + 3
        }
    );
    assert_eq!(report.deleted_bytes, Deleted::default());
    assert_eq!((report.batches, report.kept_by_guard), (1, 0));
    assert_gone(&fx, &[r1, r3, r5, r7]).await;
    assert_eq!(fx.run_ids(&d).await, BTreeSet::from([r2, r4, r6]));
    assert_eq!(concat(&fx.chunks(r6).await), vec![b'x'; 9]);
    assert_eq!(
        fx.store.device_totals().await.unwrap(),
        [
            DeviceTotal {
                device_id: d[0],
                bytes: 15,
                runs: 2
            },
            DeviceTotal {
                device_id: d[1],
                bytes: 9,
                runs: 1
            },
        ]
    );

    let event = capture.single(telemetry::RETENTION_PURGE);
    assert_eq!(event.field("dry_run"), Some("false"));
    assert_eq!(event.field_as::<u64>("runs_age"), Some(4));
    assert_eq!(event.field_as::<u64>("bytes_age"), Some(180));
    assert_eq!(event.field_as::<u64>("runs_bytes"), Some(0));
    assert_eq!(event.field_as::<u64>("bytes_freed"), Some(180));
    assert_eq!(event.field_as::<u64>("batches"), Some(1));

    let again = worker.purge(t0(), false).await.unwrap();
    assert!(again.plan.is_empty(), "idempotent: {:?}", again.plan);
}

#[tokio::test]
async fn retention_trims_devices_over_the_byte_cap_oldest_first() {
    let fx = Fixture::new();
    let d = fx.devices(4).await;
    let s = &fx.store;
    // Device 0: 5 × 300 = 1500 > 1000: the two oldest go.
    let mut a = Vec::new();
    for days in [10, 9, 8, 7, 6] {
        a.push(
            seed_run(
                s,
                d[0],
                days_ago(days),
                Some(days_ago(days)),
                &[100, 100, 100],
            )
            .await,
        );
    }
    // Device 1: a running run of 800 plus 2 × 300: both finished runs go, the running stays.
    let b_running = seed_run(s, d[1], days_ago(20), None, &[800]).await;
    let b5 = finished_run(s, d[1], days_ago(5), 300).await;
    let b4 = finished_run(s, d[1], days_ago(4), 300).await;
    // Device 2: a running run of 1200 alone exceeds the cap: unresolved.
    let c_running = seed_run(s, d[2], days_ago(3), None, &[1200]).await;
    let c2 = seed_run(s, d[2], days_ago(2), Some(days_ago(2)), &[60, 40]).await;
    // Device 3: 900, under the cap.
    let d_runs = [
        finished_run(s, d[3], days_ago(30), 450).await,
        finished_run(s, d[3], days_ago(29), 450).await,
    ];
    let worker = RetentionWorker::new(fx.store_dyn(), config(36_500, 1000));
    let capture = Capture::install_scoped();

    let report = worker.purge(t0(), false).await.unwrap();

    assert_eq!(
        planned(&report),
        [
            (a[0], PurgeReason::Bytes),
            (a[1], PurgeReason::Bytes),
            (b5, PurgeReason::Bytes),
            (b4, PurgeReason::Bytes),
            (c2, PurgeReason::Bytes),
        ]
    );
    assert_eq!(
        report.deleted_bytes,
        Deleted {
            runs: 5,
            bytes: 4 * 300 + 100,
            chunks: 3 + 3 + 1 + 1 + 2
        }
    );
    assert_eq!(report.deleted_age, Deleted::default());
    assert_eq!(report.plan.devices_over_cap_before, 3);
    assert_eq!(report.plan.devices_over_cap_after, 1);
    assert_eq!(report.plan.unresolved, [d[2]]);
    assert_gone(&fx, &[a[0], a[1], b5, b4, c2]).await;
    let mut survivors = BTreeSet::from([a[2], a[3], a[4], b_running, c_running]);
    survivors.extend(d_runs);
    assert_eq!(fx.run_ids(&d).await, survivors, "running runs survive");
    for running in [b_running, c_running] {
        assert_eq!(
            fx.store.run(running).await.unwrap().status,
            RunStatus::Running
        );
    }
    let totals: Vec<u64> = fx
        .store
        .device_totals()
        .await
        .unwrap()
        .iter()
        .map(|t| t.bytes)
        .collect();
    assert_eq!(totals, [900, 800, 1200, 900]);

    let event = capture.single(telemetry::RETENTION_PURGE);
    assert_eq!(event.field_as::<u64>("runs_bytes"), Some(5));
    assert_eq!(event.field_as::<u64>("bytes_bytes"), Some(1300));
    assert_eq!(event.field_as::<u64>("runs_age"), Some(0));
    assert_eq!(event.field_as::<u64>("devices_over_cap_before"), Some(3));
    assert_eq!(event.field_as::<u64>("devices_over_cap_after"), Some(1));
    assert_eq!(event.field_as::<u64>("unresolved_devices"), Some(1));
}

/// Device 0: 500 bytes aged, then 3 × 400 (1200 > 1000: the oldest goes). Device 1: 600
/// aged, 900 left. Device 2: one running run of 1500 (unresolved). Answers (aged, capped).
async fn seed_both_rules(fx: &Fixture, d: &[DeviceId]) -> (Vec<RunId>, RunId) {
    let s = &fx.store;
    let a_old = finished_run(s, d[0], days_ago(40), 500).await;
    let a5 = finished_run(s, d[0], days_ago(5), 400).await;
    finished_run(s, d[0], days_ago(4), 400).await;
    finished_run(s, d[0], days_ago(3), 400).await;
    let b_old = finished_run(s, d[1], days_ago(35), 600).await;
    finished_run(s, d[1], days_ago(1), 900).await;
    seed_run(s, d[2], days_ago(1), None, &[1000, 500]).await;
    (vec![a_old, b_old], a5)
}

#[tokio::test]
async fn the_retention_job_applies_both_rules_and_reports_them() {
    let fx = Fixture::new();
    let d = fx.devices(3).await;
    let (aged, capped) = seed_both_rules(&fx, &d).await;
    let before = fx.run_ids(&d).await;
    let worker = RetentionWorker::new(fx.store_dyn(), config(30, 1000));
    let capture = Capture::install_scoped();

    perform_job_with_clock(&worker, RetentionArgs { dry_run: false }, fx.clock_dyn())
        .await
        .unwrap();

    assert_gone(&fx, &[aged[0], aged[1], capped]).await;
    let mut expected = before;
    for id in [aged[0], aged[1], capped] {
        expected.remove(&id);
    }
    assert_eq!(fx.run_ids(&d).await, expected);
    let event = capture.single(telemetry::RETENTION_PURGE);
    let fields: BTreeMap<&str, Option<&str>> = [
        "dry_run",
        "planned_age",
        "planned_bytes",
        "runs_age",
        "runs_bytes",
        "bytes_age",
        "bytes_bytes",
        "bytes_freed",
        "batches",
        "devices_over_cap_before",
        "devices_over_cap_after",
        "unresolved_devices",
        "kept_by_guard",
    ]
    .into_iter()
    .map(|name| (name, event.field(name)))
    .collect();
    let expected: BTreeMap<&str, Option<&str>> = [
        ("dry_run", Some("false")),
        ("planned_age", Some("2")),
        ("planned_bytes", Some("1")),
        ("runs_age", Some("2")),
        ("runs_bytes", Some("1")),
        ("bytes_age", Some("1100")),
        ("bytes_bytes", Some("400")),
        ("bytes_freed", Some("1500")),
        ("batches", Some("2")),
        ("devices_over_cap_before", Some("3")),
        ("devices_over_cap_after", Some("1")),
        ("unresolved_devices", Some("1")),
        ("kept_by_guard", Some("0")),
    ]
    .into_iter()
    .collect();
    assert_eq!(fields, expected);
    assert!(event.field_as::<u64>("duration_ms").is_some());
}

#[tokio::test]
async fn a_dry_run_reports_the_plan_and_deletes_nothing() {
    let fx = Fixture::new();
    let d = fx.devices(3).await;
    let (aged, capped) = seed_both_rules(&fx, &d).await;
    let before = fx.run_ids(&d).await;
    let totals_before = fx.store.device_totals().await.unwrap();
    let worker = RetentionWorker::new(fx.store_dyn(), config(30, 1000));
    let capture = Capture::install_scoped();

    let dry = worker.purge(t0(), true).await.unwrap();
    perform_job_with_clock(&worker, RetentionArgs { dry_run: true }, fx.clock_dyn())
        .await
        .unwrap();

    assert!(dry.dry_run);
    assert_eq!(
        planned(&dry),
        [
            (aged[0], PurgeReason::Age),
            (aged[1], PurgeReason::Age),
            (capped, PurgeReason::Bytes),
        ]
    );
    assert_eq!((dry.plan.age.runs, dry.plan.age.bytes), (2, 1100));
    assert_eq!((dry.plan.bytes.runs, dry.plan.bytes.bytes), (1, 400));
    assert_eq!(dry.deleted_age, Deleted::default());
    assert_eq!(dry.deleted_bytes, Deleted::default());
    assert_eq!(dry.batches, 0);
    assert_eq!(fx.run_ids(&d).await, before, "nothing deleted");
    assert_eq!(fx.store.device_totals().await.unwrap(), totals_before);
    for event in capture.events_named(telemetry::RETENTION_PURGE) {
        assert_eq!(event.field("dry_run"), Some("true"));
        assert_eq!(event.field("planned_age"), Some("2"));
        assert_eq!(event.field("planned_bytes"), Some("1"));
        assert_eq!(event.field("runs_age"), Some("0"));
        assert_eq!(event.field("batches"), Some("0"));
    }
    assert_eq!(capture.count(telemetry::RETENTION_PURGE), 2);

    let real = worker.purge(t0(), false).await.unwrap();
    assert_eq!(
        real.plan, dry.plan,
        "the dry run showed exactly what happens"
    );
}

#[tokio::test]
async fn retention_deletes_in_batches_of_at_most_200_runs() {
    let fx = Fixture::new();
    let d = fx.devices(4).await;
    for (i, &device) in d[..3].iter().enumerate() {
        for k in 0..150 {
            let at = days_ago(31) - TimeDelta::minutes(i as i64 * 1000 + k);
            finished_run(&fx.store, device, at, 10).await;
        }
    }
    let fresh = finished_run(&fx.store, d[3], days_ago(1), 10).await;
    let store = Arc::new(FaultyStore::new(fx.store_dyn()));
    let worker = RetentionWorker::new(store.clone(), config(30, 1 << 30));
    assert_eq!(DEFAULT_BATCH_RUNS, 200);
    let capture = Capture::install_scoped();

    let report = worker.purge(t0(), false).await.unwrap();

    assert_eq!(report.batches, 3);
    assert_eq!(store.delete_sizes(), [200, 200, 50]);
    assert_eq!(
        report.deleted_age,
        Deleted {
            runs: 450,
            bytes: 4500,
            chunks: 450
        }
    );
    assert_eq!(fx.run_ids(&d).await, BTreeSet::from([fresh]));
    let event = capture.single(telemetry::RETENTION_PURGE);
    assert_eq!(event.field("batches"), Some("3"));
    assert_eq!(event.field("runs_age"), Some("450"));
}

/// 250 aged runs over two devices, plus byte-rule deletions on two devices: 259 deletions,
/// three batches (200 aged, 50 aged, 9 by bytes).
async fn seed_large(fx: &Fixture, d: &[DeviceId]) {
    let s = &fx.store;
    for k in 0..130 {
        finished_run(s, d[0], days_ago(60) + TimeDelta::minutes(k), 10).await;
    }
    for k in 0..120 {
        finished_run(s, d[1], days_ago(50) + TimeDelta::minutes(k), 10).await;
    }
    for k in 0..10 {
        finished_run(s, d[0], days_ago(20) + TimeDelta::hours(k), 300).await;
    }
    seed_run(s, d[2], days_ago(25), None, &[100]).await;
    for k in 0..5 {
        finished_run(s, d[2], days_ago(10) + TimeDelta::hours(k), 300).await;
    }
}

#[tokio::test]
async fn an_interrupted_purge_finishes_the_rest_on_the_next_run() {
    // One uninterrupted purge, for reference.
    let full_fx = Fixture::new();
    let d = full_fx.devices(3).await;
    seed_large(&full_fx, &d).await;
    let all_runs = full_fx.run_ids(&d).await;
    let full = RetentionWorker::new(full_fx.store_dyn(), config(30, 1000))
        .purge(t0(), false)
        .await
        .unwrap();
    assert_eq!(full.batches, 3);
    assert_eq!((full.deleted_age.runs, full.deleted_bytes.runs), (250, 9));
    let full_survivors = full_fx.run_ids(&d).await;
    let full_deleted: BTreeSet<RunId> = all_runs.difference(&full_survivors).copied().collect();
    let full_order: Vec<RunId> = full.plan.deletions.iter().map(|x| x.run_id).collect();
    assert_eq!(
        full_order.iter().copied().collect::<BTreeSet<_>>(),
        full_deleted
    );

    // The same data; only the first batch gets deleted before the "crash".
    let fx = Fixture::new();
    assert_eq!(fx.devices(3).await, d);
    seed_large(&fx, &d).await;
    assert_eq!(fx.run_ids(&d).await, all_runs, "same ids in both stores");
    let worker = RetentionWorker::new(fx.store_dyn(), config(30, 1000));
    let plan = worker.plan(t0()).await.unwrap();
    assert_eq!(plan, full.plan);
    let paged = worker.clone().with_page(7).plan(t0()).await.unwrap();
    assert_eq!(paged, full.plan, "planning page by page changes nothing");
    let (guard, first) = plan.batches(DEFAULT_BATCH_RUNS).next().unwrap();
    let first: Vec<RunId> = first.iter().map(|x| x.run_id).collect();
    let deleted = fx.store.delete_runs(&first, guard).await.unwrap();
    assert_eq!(deleted.ids.len(), 200);

    let rest = worker.purge(t0(), false).await.unwrap();

    assert_eq!((rest.deleted_age.runs, rest.deleted_bytes.runs), (50, 9));
    assert_eq!(rest.batches, 2);
    let rest_order: Vec<RunId> = rest.plan.deletions.iter().map(|x| x.run_id).collect();
    assert_eq!(
        [first.clone(), rest_order].concat(),
        full_order,
        "the first batch and the resumed purge make up the full plan"
    );
    assert_eq!(fx.run_ids(&d).await, full_survivors);
    assert_eq!(
        fx.store.device_totals().await.unwrap(),
        full_fx.store.device_totals().await.unwrap()
    );
    assert!(worker.purge(t0(), false).await.unwrap().plan.is_empty());

    // A purge whose node dies after its first transaction resumes the same way.
    let crash_fx = Fixture::new();
    crash_fx.devices(3).await;
    seed_large(&crash_fx, &d).await;
    let dying = Arc::new(FaultyStore::new(crash_fx.store_dyn()).fail_after(1));
    let e = RetentionWorker::new(dying.clone(), config(30, 1000))
        .purge(t0(), false)
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(dying.delete_sizes(), [200, 50]);
    RetentionWorker::new(crash_fx.store_dyn(), config(30, 1000))
        .purge(t0(), false)
        .await
        .unwrap();
    assert_eq!(crash_fx.run_ids(&d).await, full_survivors);
}
