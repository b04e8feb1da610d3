//! The naive purge planner: sort everything, loop. Slow and obviously right; the real
//! planner and every backend's retention queries are checked against it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{PlannedDeletion, PurgePlan, PurgeReason, ReasonTotals, RetentionPolicy, RunFootprint};
use crate::model::ids::DeviceId;

/// Plans a purge the obvious way (for tests).
pub fn naive_plan(
    footprints: &[RunFootprint],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> PurgePlan {
    let cutoff = policy.cutoff(now);
    let cap = u128::from(policy.max_bytes);
    let clamped_future = footprints.iter().filter(|f| f.ts > now).count() as u64;
    let mut all: Vec<RunFootprint> = footprints
        .iter()
        .map(|f| RunFootprint {
            ts: f.ts.min(now),
            ..*f
        })
        .collect();
    all.sort_by_key(|f| (f.ts, f.run_id));

    let mut deletions = Vec::new();
    let mut age = ReasonTotals::default();
    let mut bytes = ReasonTotals::default();
    let mut before: BTreeMap<DeviceId, u128> = BTreeMap::new();
    let mut kept: BTreeMap<DeviceId, Vec<RunFootprint>> = BTreeMap::new();
    for f in &all {
        *before.entry(f.device_id).or_default() += u128::from(f.bytes);
        if f.ts < cutoff {
            age.add(f.bytes);
            deletions.push(deletion(f, PurgeReason::Age));
        } else {
            kept.entry(f.device_id).or_default().push(*f);
        }
    }
    let mut byte_deletions = Vec::new();
    let mut unresolved = Vec::new();
    for (device, runs) in &kept {
        let mut total: u128 = runs.iter().map(|f| u128::from(f.bytes)).sum();
        for f in runs {
            if total <= cap {
                break;
            }
            if f.finished {
                total -= u128::from(f.bytes);
                bytes.add(f.bytes);
                byte_deletions.push(deletion(f, PurgeReason::Bytes));
            }
        }
        if total > cap {
            unresolved.push(*device);
        }
    }
    byte_deletions.sort_by_key(|d| (d.ts, d.run_id));
    deletions.extend(byte_deletions);
    PurgePlan {
        now,
        cutoff,
        policy: *policy,
        deletions,
        age,
        bytes,
        devices_over_cap_before: before.values().filter(|t| **t > cap).count() as u64,
        devices_over_cap_after: unresolved.len() as u64,
        unresolved,
        clamped_future,
    }
}

fn deletion(f: &RunFootprint, reason: PurgeReason) -> PlannedDeletion {
    PlannedDeletion {
        run_id: f.run_id,
        ts: f.ts,
        reason,
    }
}
