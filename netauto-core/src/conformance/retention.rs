//! Checks of the retention queries of [`RunStore`](crate::RunStore) against the naive oracle.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Backend, day, devices, new_run};
use crate::retention::oracle::naive_plan;
use crate::retention::{
    DeviceTotal, FootprintCursor, PlanBuilder, PurgePlan, PurgeReason, RetentionPolicy,
    RunFootprint,
};
use crate::{DeviceId, OutputStream, RunFinish, RunId, RunStatus};

/// When the fixture is planned: day 60, so the 30-day cutoff is day 30.
fn now() -> DateTime<Utc> {
    day(60)
}

fn policy() -> RetentionPolicy {
    RetentionPolicy::new(30, 1_000)
}

/// The fixture: four devices with runs (one device without any), built through the store.
struct Fixture {
    devices: Vec<DeviceId>,
    /// What the store must hold, computed from what was written.
    footprints: Vec<RunFootprint>,
}

/// `(device index, inserted day, bytes, finished day)`, in creation order. Chosen so that
/// the plan has age deletions (one of a running run), a run exactly at the cutoff, byte
/// deletions with a `ts` tie broken by id, a finished run dated after `now`, a zero-byte run
/// and an unresolved device whose running run alone exceeds the cap.
const RUNS: [(usize, i64, u64, Option<i64>); 16] = [
    (0, 1, 100, Some(2)),
    (0, 40, 400, Some(41)),
    (0, 42, 500, Some(45)),
    (0, 50, 300, Some(50)),
    (0, 55, 200, None),
    (1, 5, 50, None),
    (1, 30, 10, Some(30)),
    (1, 20, 10, Some(29)),
    (2, 58, 1_200, None),
    (2, 31, 100, Some(33)),
    (2, 10, 100, Some(12)),
    (2, 59, 0, Some(62)),
    (3, 45, 600, Some(46)),
    (3, 45, 600, Some(46)),
    (3, 44, 0, Some(44)),
    (0, 11, 5, Some(12)),
];

async fn fixture(b: &Backend) -> Fixture {
    let devices = devices(b, "retained", 5).await;
    let mut footprints = Vec::new();
    for (dev, inserted, bytes, finished) in RUNS {
        let device_id = devices[dev];
        let run = b
            .store
            .create_run(new_run(device_id), day(inserted))
            .await
            .expect("create_run");
        let mut left = bytes;
        while left > 0 {
            let n = left.min(256);
            let data = vec![b'#'; n as usize];
            b.store
                .append_chunk(run.id, OutputStream::Stdout, &data, day(inserted))
                .await
                .expect("append_chunk");
            left -= n;
        }
        if let Some(f) = finished {
            b.store
                .finish_run(run.id, RunFinish::new(RunStatus::Ok), day(f))
                .await
                .expect("finish_run");
        }
        let stored = b.store.run(run.id).await.expect("run");
        assert_eq!(stored.bytes, bytes, "run {} bytes", run.id);
        assert_eq!(stored.chunks, bytes.div_ceil(256), "run {} chunks", run.id);
        let ts = day(finished.unwrap_or(inserted));
        assert_eq!(stored.retention_ts(), ts);
        footprints.push(RunFootprint {
            run_id: run.id,
            device_id,
            ts,
            bytes,
            finished: finished.is_some(),
        });
    }
    Fixture {
        devices,
        footprints,
    }
}

/// Reads every page of `device_footprints(devices)` with pages of `limit`.
async fn device_pages(b: &Backend, devices: &[DeviceId], limit: usize) -> Vec<RunFootprint> {
    let mut all: Vec<RunFootprint> = Vec::new();
    for _ in 0..1_000 {
        let after = all.last().map(FootprintCursor::from);
        let page = b
            .store
            .device_footprints(devices, after, limit)
            .await
            .expect("device_footprints");
        assert!(
            page.len() <= limit,
            "page of {} > limit {limit}",
            page.len()
        );
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
    panic!("device_footprints never answered an empty page");
}

/// Reads every page of `aged_footprints(cutoff)` with pages of `limit`, giving cursors a
/// device id that must be ignored.
async fn aged_pages(b: &Backend, cutoff: DateTime<Utc>, limit: usize) -> Vec<RunFootprint> {
    let mut all: Vec<RunFootprint> = Vec::new();
    for _ in 0..1_000 {
        let after = all.last().map(|fp| FootprintCursor {
            device_id: DeviceId(i64::MAX),
            ..FootprintCursor::from(fp)
        });
        let page = b
            .store
            .aged_footprints(cutoff, after, limit)
            .await
            .expect("aged_footprints");
        assert!(
            page.len() <= limit,
            "page of {} > limit {limit}",
            page.len()
        );
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
    panic!("aged_footprints never answered an empty page");
}

/// Plans through [`PlanBuilder`] from the store's queries, the way the retention worker does.
async fn plan_from_store(b: &Backend) -> PurgePlan {
    let mut builder = PlanBuilder::new(&policy(), now());
    let over = builder.totals(b.store.device_totals().await.expect("device_totals"));
    for fp in aged_pages(b, builder.cutoff(), 2).await {
        builder.aged(&fp);
    }
    for device in over {
        let fps = device_pages(b, &[device], 2).await;
        builder.device(device, fps);
    }
    builder.finish()
}

/// `device_totals` equals the per-device sums of the runs, ascending, without empty devices.
pub async fn device_totals_match_runs(b: &Backend) {
    let f = fixture(b).await;
    let mut expected: BTreeMap<DeviceId, DeviceTotal> = BTreeMap::new();
    for fp in &f.footprints {
        let t = expected.entry(fp.device_id).or_insert(DeviceTotal {
            device_id: fp.device_id,
            bytes: 0,
            runs: 0,
        });
        t.bytes += fp.bytes;
        t.runs += 1;
    }
    let totals = b.store.device_totals().await.expect("device_totals");
    assert_eq!(totals, expected.into_values().collect::<Vec<_>>());
    assert!(
        !totals.iter().any(|t| t.device_id == f.devices[4]),
        "no runs, no total"
    );
}

/// `device_footprints` and `aged_footprints`, read in small pages, give exactly the expected
/// ordered lists.
pub async fn footprint_pages_are_ordered_and_complete(b: &Backend) {
    let f = fixture(b).await;
    let d = &f.devices;
    let mut by_device = f.footprints.clone();
    by_device.sort_by_key(|fp| (fp.device_id, fp.ts, fp.run_id));
    let asked = [d[3], d[4], DeviceId(i64::MAX), d[0], d[2], d[1], d[0]];
    for limit in [1, 3, 100] {
        assert_eq!(
            device_pages(b, &asked, limit).await,
            by_device,
            "device_footprints of all devices, pages of {limit}"
        );
    }
    let subset: Vec<RunFootprint> = by_device
        .iter()
        .filter(|fp| fp.device_id == d[2] || fp.device_id == d[0])
        .copied()
        .collect();
    assert_eq!(
        device_pages(b, &[d[2], d[0]], 2).await,
        subset,
        "only the asked devices"
    );
    assert!(device_pages(b, &[d[4]], 2).await.is_empty());

    let cutoff = policy().cutoff(now());
    let mut aged: Vec<RunFootprint> = f
        .footprints
        .iter()
        .filter(|fp| fp.ts < cutoff)
        .copied()
        .collect();
    aged.sort_by_key(|fp| (fp.ts, fp.run_id));
    assert_eq!(aged.len(), 5, "fixture: five runs before the cutoff");
    for limit in [1, 2, 100] {
        assert_eq!(
            aged_pages(b, cutoff, limit).await,
            aged,
            "aged_footprints, pages of {limit}"
        );
    }
    let mut everything = f.footprints.clone();
    everything.sort_by_key(|fp| (fp.ts, fp.run_id));
    assert_eq!(
        aged_pages(b, day(1_000), 4).await,
        everything,
        "a late cutoff covers all"
    );
    assert!(
        aged_pages(b, day(2), 4).await.is_empty(),
        "ts == cutoff is not aged"
    );
}

/// A plan built by [`PlanBuilder`] from the store's queries equals the naive oracle's plan
/// over all footprints; applying it in guarded batches deletes exactly the plan, after which
/// re-planning finds nothing.
pub async fn store_fed_plan_matches_naive_oracle(b: &Backend) {
    let f = fixture(b).await;
    let expected = naive_plan(&f.footprints, &policy(), now());
    assert!(
        expected.age.runs > 0 && expected.bytes.runs > 0,
        "fixture exercises both rules"
    );
    assert_eq!(
        expected.unresolved,
        [f.devices[2]],
        "fixture has one unresolved device"
    );
    let plan = plan_from_store(b).await;
    assert_eq!(
        plan.deletions, expected.deletions,
        "deletions differ from the oracle"
    );
    assert_eq!(plan.unresolved, expected.unresolved);
    assert_eq!((plan.age, plan.bytes), (expected.age, expected.bytes));
    assert_eq!(
        plan.devices_over_cap_before,
        expected.devices_over_cap_before
    );

    let mut deleted_ids: Vec<RunId> = Vec::new();
    let mut deleted_bytes = 0;
    for (guard, batch) in plan.batches(2) {
        let mut ids: Vec<RunId> = batch.iter().map(|d| d.run_id).collect();
        let done = b.store.delete_runs(&ids, guard).await.expect("delete_runs");
        ids.sort_unstable();
        assert_eq!(
            done.ids, ids,
            "an unchanged store deletes the whole batch ({guard:?})"
        );
        deleted_ids.extend(done.ids);
        deleted_bytes += done.bytes;
    }
    let bytes_of: BTreeMap<RunId, u64> = f
        .footprints
        .iter()
        .map(|fp| (fp.run_id, fp.bytes))
        .collect();
    let planned_bytes: u64 = plan.deletions.iter().map(|d| bytes_of[&d.run_id]).sum();
    assert_eq!(deleted_bytes, planned_bytes);
    assert_eq!(deleted_ids.len(), plan.deletions.len());

    let again = plan_from_store(b).await;
    assert!(
        again.is_empty(),
        "re-planning after applying must be empty: {again:?}"
    );
    assert_eq!(again.unresolved, expected.unresolved);
    let age_count = plan
        .deletions
        .iter()
        .filter(|d| d.reason == PurgeReason::Age)
        .count();
    assert_eq!(age_count as u64, expected.age.runs);
}
