//! Property tests of the purge planner against the naive oracle.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

use super::oracle::naive_plan;
use super::*;
use crate::{DeviceId, RunId};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn policy(max_age_min: i64, cap: u64) -> RetentionPolicy {
    RetentionPolicy {
        max_age: TimeDelta::minutes(max_age_min),
        max_bytes: cap,
    }
}

fn bytes_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0u64..100,
        1 => Just(0u64),
        1 => (u64::MAX - 100)..=u64::MAX,
        1 => Just(u64::MAX / 2),
    ]
}

fn cap_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 0u64..400, 1 => Just(u64::MAX), 1 => Just(u64::MAX / 2), 1 => Just(u64::MAX - 1)]
}

/// Runs with unique ids over a few devices, timestamps in a narrow range (many ties, some in
/// the future), mostly finished.
fn footprints() -> impl Strategy<Value = Vec<RunFootprint>> {
    proptest::collection::vec(
        (
            1i64..5,
            -120i64..15,
            bytes_strategy(),
            proptest::bool::weighted(0.8),
        ),
        0..60,
    )
    .prop_flat_map(|rows| {
        let n = rows.len();
        (
            Just(rows),
            Just((1..=n as i64).collect::<Vec<_>>()).prop_shuffle(),
        )
    })
    .prop_map(|(rows, ids)| {
        rows.into_iter()
            .zip(ids)
            .map(|((device, minutes, bytes, finished), id)| RunFootprint {
                run_id: RunId(id),
                device_id: DeviceId(device),
                ts: now() + TimeDelta::minutes(minutes),
                bytes,
                finished,
            })
            .collect()
    })
}

fn case() -> impl Strategy<Value = (Vec<RunFootprint>, RetentionPolicy)> {
    (footprints(), 0i64..150, cap_strategy()).prop_map(|(f, age, cap)| (f, policy(age, cap)))
}

fn apply(footprints: &[RunFootprint], deletions: &[PlannedDeletion]) -> Vec<RunFootprint> {
    let gone: HashSet<RunId> = deletions.iter().map(|d| d.run_id).collect();
    footprints
        .iter()
        .filter(|f| !gone.contains(&f.run_id))
        .copied()
        .collect()
}

fn ids(deletions: &[PlannedDeletion]) -> Vec<RunId> {
    deletions.iter().map(|d| d.run_id).collect()
}

/// Feeds the streaming builder the way the retention worker feeds it from a store.
fn plan_streaming(
    footprints: &[RunFootprint],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> PurgePlan {
    let mut totals: BTreeMap<DeviceId, (u64, u64)> = BTreeMap::new();
    for f in footprints {
        let t = totals.entry(f.device_id).or_default();
        t.0 = t.0.saturating_add(f.bytes);
        t.1 += 1;
    }
    let mut builder = PlanBuilder::new(policy, now);
    let over = builder.totals(totals.iter().map(|(d, (bytes, runs))| DeviceTotal {
        device_id: *d,
        bytes: *bytes,
        runs: *runs,
    }));
    let cutoff = builder.cutoff();
    let mut aged: Vec<&RunFootprint> = footprints.iter().filter(|f| f.ts < cutoff).collect();
    aged.sort_by_key(|f| (f.ts, f.run_id));
    for f in aged {
        builder.aged(f);
    }
    for device in over {
        let mut runs: Vec<RunFootprint> = footprints
            .iter()
            .filter(|f| f.device_id == device)
            .copied()
            .collect();
        runs.sort_by_key(|f| (f.ts, f.run_id));
        builder.device(device, runs);
    }
    builder.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn planner_matches_the_oracle((fps, pol) in case()) {
        let expected = naive_plan(&fps, &pol, now());
        prop_assert_eq!(plan_purge(&fps, &pol, now()), expected);
    }

    #[test]
    fn streaming_builder_matches_the_oracle((fps, pol) in case()) {
        let expected = naive_plan(&fps, &pol, now());
        let got = plan_streaming(&fps, &pol, now());
        // The builder only sees the future timestamps of the footprints it reads.
        prop_assert_eq!(PurgePlan { clamped_future: expected.clamped_future, ..got }, expected);
    }

    #[test]
    fn input_order_does_not_matter((fps, pol) in case(), seed in any::<u64>()) {
        let mut shuffled = fps.clone();
        // A deterministic Fisher–Yates driven by the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(plan_purge(&shuffled, &pol, now()), plan_purge(&fps, &pol, now()));
    }

    #[test]
    fn deletions_are_oldest_first_and_unique((fps, pol) in case()) {
        let plan = plan_purge(&fps, &pol, now());
        let keys: Vec<_> = plan.deletions.iter().map(|d| (d.reason, d.ts, d.run_id)).collect();
        prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let by_ts: Vec<_> = plan.deletions.iter().map(|d| (d.ts, d.run_id)).collect();
        prop_assert!(by_ts.windows(2).all(|w| w[0] < w[1]), "age deletions precede byte deletions in time");
        prop_assert_eq!(plan.age.runs + plan.bytes.runs, plan.deletions.len() as u64);
    }

    #[test]
    fn age_rule_is_exact((fps, pol) in case()) {
        let plan = plan_purge(&fps, &pol, now());
        let aged: HashSet<RunId> = plan.deletions.iter().filter(|d| d.reason == PurgeReason::Age).map(|d| d.run_id).collect();
        for f in &fps {
            prop_assert_eq!(aged.contains(&f.run_id), f.ts < plan.cutoff, "run {:?} ts {} cutoff {}", f.run_id, f.ts, plan.cutoff);
        }
    }

    #[test]
    fn byte_rule_per_device((fps, pol) in case()) {
        let plan = plan_purge(&fps, &pol, now());
        let cap = u128::from(pol.max_bytes);
        let deleted: HashSet<RunId> = ids(&plan.deletions).into_iter().collect();
        let by_id: BTreeMap<RunId, &RunFootprint> = fps.iter().map(|f| (f.run_id, f)).collect();
        let byte_deleted: Vec<&RunFootprint> =
            plan.deletions.iter().filter(|d| d.reason == PurgeReason::Bytes).map(|d| by_id[&d.run_id]).collect();
        let devices: HashSet<DeviceId> = fps.iter().map(|f| f.device_id).collect();
        for device in devices {
            let mut runs: Vec<RunFootprint> = fps.iter().filter(|f| f.device_id == device && f.ts >= plan.cutoff).copied().collect();
            runs.sort_by_key(|f| (f.ts.min(now()), f.run_id));
            // Running runs are never deleted by the byte rule.
            prop_assert!(runs.iter().filter(|f| !f.finished).all(|f| !deleted.contains(&f.run_id)));
            // Among finished runs, the deleted ones form a prefix: the kept ones a suffix.
            let flags: Vec<bool> = runs.iter().filter(|f| f.finished).map(|f| deleted.contains(&f.run_id)).collect();
            prop_assert!(flags.windows(2).all(|w| w[0] || !w[1]), "kept runs of {device:?} are not a suffix: {flags:?}");
            let after: u128 = runs.iter().filter(|f| !deleted.contains(&f.run_id)).map(|f| u128::from(f.bytes)).sum();
            let unresolved = plan.unresolved.contains(&device);
            // Total ≤ cap afterwards, or the device is unresolved (and then every finished run went).
            prop_assert_eq!(after > cap, unresolved);
            if unresolved {
                prop_assert!(flags.iter().all(|d| *d));
            }
            // Minimality: without the last byte-rule deletion the device would be over the cap.
            if let Some(last) = byte_deleted.iter().rfind(|d| d.device_id == device) {
                prop_assert!(after + u128::from(last.bytes) > cap);
            }
        }
        prop_assert_eq!(plan.devices_over_cap_after, plan.unresolved.len() as u64);
    }

    #[test]
    fn replanning_after_applying_is_empty((fps, pol) in case()) {
        let plan = plan_purge(&fps, &pol, now());
        let rest = apply(&fps, &plan.deletions);
        let again = plan_purge(&rest, &pol, now());
        prop_assert!(again.is_empty(), "second plan deletes {:?}", ids(&again.deletions));
        prop_assert_eq!(again.unresolved, plan.unresolved);
    }

    #[test]
    fn prefix_confluence((fps, pol) in case(), cut in any::<prop::sample::Index>()) {
        let plan = plan_purge(&fps, &pol, now());
        let k = if plan.deletions.is_empty() { 0 } else { cut.index(plan.deletions.len() + 1) };
        let rest = apply(&fps, &plan.deletions[..k]);
        let again = plan_purge(&rest, &pol, now());
        prop_assert_eq!(&again.deletions[..], &plan.deletions[k..]);
    }

    #[test]
    fn smaller_cap_deletes_a_superset((fps, pol) in case(), shrink in 0u64..200) {
        let smaller = RetentionPolicy { max_bytes: pol.max_bytes.saturating_sub(shrink), ..pol };
        let big: HashSet<RunId> = ids(&plan_purge(&fps, &pol, now()).deletions).into_iter().collect();
        let small: HashSet<RunId> = ids(&plan_purge(&fps, &smaller, now()).deletions).into_iter().collect();
        prop_assert!(big.is_subset(&small));
    }

    #[test]
    fn smaller_max_age_ages_out_a_superset((fps, pol) in case(), shrink in 0i64..100) {
        let younger = RetentionPolicy { max_age: pol.max_age - TimeDelta::minutes(shrink), ..pol };
        let aged = |p: &PurgePlan| -> HashSet<RunId> {
            p.deletions.iter().filter(|d| d.reason == PurgeReason::Age).map(|d| d.run_id).collect()
        };
        let a = aged(&plan_purge(&fps, &pol, now()));
        let b = aged(&plan_purge(&fps, &younger, now()));
        prop_assert!(a.is_subset(&b));
    }
}

fn run(id: i64, device: i64, minutes_ago: i64, bytes: u64, finished: bool) -> RunFootprint {
    RunFootprint {
        run_id: RunId(id),
        device_id: DeviceId(device),
        ts: now() - TimeDelta::minutes(minutes_ago),
        bytes,
        finished,
    }
}

fn deleted(plan: &PurgePlan) -> Vec<(i64, PurgeReason)> {
    plan.deletions
        .iter()
        .map(|d| (d.run_id.0, d.reason))
        .collect()
}

#[test]
fn empty_input_gives_an_empty_plan() {
    let plan = plan_purge(&[], &policy(10, 10), now());
    assert!(plan.is_empty());
    assert_eq!(plan, naive_plan(&[], &policy(10, 10), now()));
    assert_eq!((plan.devices_over_cap_before, plan.clamped_future), (0, 0));
}

#[test]
fn a_run_exactly_at_the_cutoff_stays() {
    let fps = [
        run(1, 1, 60, 1, true),
        run(2, 1, 61, 1, true),
        run(3, 1, 59, 1, false),
    ];
    assert_eq!(
        deleted(&plan_purge(&fps, &policy(60, 100), now())),
        [(2, PurgeReason::Age)]
    );
}

#[test]
fn a_total_exactly_at_the_cap_stays() {
    let fps = [run(1, 1, 3, 40, true), run(2, 1, 2, 60, true)];
    let plan = plan_purge(&fps, &policy(60, 100), now());
    assert!(plan.is_empty());
    assert_eq!(plan.devices_over_cap_before, 0);
    assert_eq!(
        deleted(&plan_purge(&fps, &policy(60, 99), now())),
        [(1, PurgeReason::Bytes)]
    );
}

#[test]
fn timestamp_ties_break_by_id() {
    let fps = [
        run(9, 1, 5, 10, true),
        run(4, 1, 5, 10, true),
        run(7, 1, 5, 10, true),
    ];
    assert_eq!(
        deleted(&plan_purge(&fps, &policy(60, 15), now())),
        [(4, PurgeReason::Bytes), (7, PurgeReason::Bytes)]
    );
}

#[test]
fn one_run_larger_than_the_cap_is_deleted_alone() {
    let fps = [
        run(1, 1, 5, 10, true),
        run(2, 1, 4, 500, true),
        run(3, 1, 3, 10, true),
    ];
    let plan = plan_purge(&fps, &policy(60, 100), now());
    assert_eq!(
        deleted(&plan),
        [(1, PurgeReason::Bytes), (2, PurgeReason::Bytes)]
    );
    assert!(plan.unresolved.is_empty());
}

#[test]
fn running_runs_alone_over_the_cap_leave_the_device_unresolved() {
    let fps = [
        run(1, 1, 5, 10, true),
        run(2, 1, 4, 500, false),
        run(3, 1, 3, 10, true),
        run(4, 2, 3, 5, true),
    ];
    let plan = plan_purge(&fps, &policy(60, 100), now());
    assert_eq!(
        deleted(&plan),
        [(1, PurgeReason::Bytes), (3, PurgeReason::Bytes)]
    );
    assert_eq!(plan.unresolved, [DeviceId(1)]);
    assert_eq!(
        (plan.devices_over_cap_before, plan.devices_over_cap_after),
        (1, 1)
    );
}

#[test]
fn a_running_run_that_ages_out_is_deleted_by_age() {
    let fps = [run(1, 1, 120, 500, false), run(2, 1, 5, 50, true)];
    let plan = plan_purge(&fps, &policy(60, 100), now());
    assert_eq!(deleted(&plan), [(1, PurgeReason::Age)]);
    assert_eq!(plan.devices_over_cap_before, 1);
    assert!(plan.unresolved.is_empty());
}

#[test]
fn future_timestamps_are_clamped_and_counted() {
    // Run 5 claims to be from the future; clamped to now it is newer than everything, and
    // among runs at `now` the id decides.
    let fps = [
        run(5, 1, -30, 50, true),
        run(3, 1, 0, 50, true),
        run(1, 1, 10, 50, true),
    ];
    let plan = plan_purge(&fps, &policy(60, 60), now());
    assert_eq!(plan.clamped_future, 1);
    assert_eq!(
        deleted(&plan),
        [(1, PurgeReason::Bytes), (3, PurgeReason::Bytes)]
    );
    assert_eq!(plan.deletions[1].ts, now());
    // A future run is never too old, whatever the policy.
    let aged = plan_purge(&fps, &policy(0, u64::MAX), now());
    assert_eq!(deleted(&aged), [(1, PurgeReason::Age)]);
}

#[test]
fn zero_byte_runs_before_the_needed_prefix_go_with_it() {
    let fps = [
        run(1, 1, 5, 0, true),
        run(2, 1, 4, 30, true),
        run(3, 1, 3, 0, true),
        run(4, 1, 2, 80, true),
    ];
    assert_eq!(
        deleted(&plan_purge(&fps, &policy(60, 100), now())),
        [(1, PurgeReason::Bytes), (2, PurgeReason::Bytes)]
    );
}

#[test]
fn totals_near_u64_max_do_not_overflow() {
    let fps = [
        run(1, 1, 5, u64::MAX, true),
        run(2, 1, 4, u64::MAX, true),
        run(3, 1, 3, u64::MAX, false),
    ];
    let plan = plan_purge(&fps, &policy(60, u64::MAX), now());
    assert_eq!(
        deleted(&plan),
        [(1, PurgeReason::Bytes), (2, PurgeReason::Bytes)]
    );
    assert_eq!(plan.bytes.bytes, 2 * u128::from(u64::MAX));
    assert!(plan.unresolved.is_empty());
    assert_eq!(plan, plan_streaming(&fps, &policy(60, u64::MAX), now()));
}

#[test]
fn batches_split_by_reason_and_size() {
    let mut fps: Vec<RunFootprint> = (1..=5).map(|i| run(i, 1, 100 + i, 10, true)).collect();
    fps.extend((6..=10).map(|i| run(i, 2, 10 - (i - 6), 10, true)));
    let plan = plan_purge(&fps, &policy(60, 20), now());
    let batches: Vec<(DeleteGuard, Vec<i64>)> = plan
        .batches(2)
        .map(|(g, b)| (g, b.iter().map(|d| d.run_id.0).collect()))
        .collect();
    let age = DeleteGuard::AgedBefore(plan.cutoff);
    assert_eq!(
        batches,
        [
            (age, vec![5, 4]),
            (age, vec![3, 2]),
            (age, vec![1]),
            (DeleteGuard::Finished, vec![6, 7]),
            (DeleteGuard::Finished, vec![8]),
        ]
    );
}
