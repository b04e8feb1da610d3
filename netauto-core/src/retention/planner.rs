//! The purge planner: a pure function of (footprints, policy, now).
//!
//! Two entry points feed one core:
//!
//! * [`PlanBuilder`] takes the store's streaming inputs: per-device totals, then the aged
//!   footprints, then the footprints of the devices whose total exceeds the cap. It never
//!   needs every run in memory: it holds O(devices + deletions), plus one device's runs while
//!   that device is planned.
//! * [`plan_purge`] takes a plain slice of footprints in any order, computes the totals
//!   itself and feeds the same core.
//!
//! No step sorts all runs: only the deletions (to put them in `(ts, id)` order) and one
//! over-cap device's finished runs at a time are sorted.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use chrono::{DateTime, Utc};

use super::{
    DeviceTotal, PlannedDeletion, PurgePlan, PurgeReason, ReasonTotals, RetentionPolicy,
    RunFootprint,
};
use crate::ids::DeviceId;

/// Plans a purge of `footprints` (all runs, any order, unique run ids).
///
/// ```
/// use chrono::{TimeDelta, TimeZone, Utc};
/// use netauto_core::retention::{plan_purge, PurgeReason, RetentionPolicy, RunFootprint};
/// use netauto_core::{DeviceId, RunId};
///
/// let now = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
/// let run = |id, days_ago, bytes| RunFootprint {
///     run_id: RunId(id),
///     device_id: DeviceId(1),
///     ts: now - TimeDelta::days(days_ago),
///     bytes,
///     finished: true,
/// };
/// let footprints = [run(1, 40, 10), run(2, 3, 600), run(3, 2, 600), run(4, 1, 600)];
/// let plan = plan_purge(&footprints, &RetentionPolicy::new(30, 1_000), now);
///
/// // Run 1 is too old; then the device holds 1 800 bytes > 1 000, so the two oldest go.
/// let deleted: Vec<_> = plan.deletions.iter().map(|d| (d.run_id.0, d.reason)).collect();
/// assert_eq!(
///     deleted,
///     [(1, PurgeReason::Age), (2, PurgeReason::Bytes), (3, PurgeReason::Bytes)]
/// );
/// ```
pub fn plan_purge(
    footprints: &[RunFootprint],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> PurgePlan {
    let mut core = Core::new(policy, now);

    // Pass 1: exact per-device totals (what the store computes with GROUP BY) and the
    // clamped-timestamp count.
    let mut index = DeviceIndex::default();
    let mut totals: Vec<u128> = Vec::new();
    let mut devices: Vec<DeviceId> = Vec::new();
    for fp in footprints {
        let slot = index.slot(fp.device_id, || {
            devices.push(fp.device_id);
            totals.push(0);
            devices.len() - 1
        });
        totals[slot] += u128::from(fp.bytes);
        if fp.ts > now {
            core.clamped += 1;
        }
    }

    // Devices over the cap get their footprints gathered and planned one by one; all
    // others only contribute their aged runs.
    let cap = u128::from(policy.max_bytes);
    let mut bucket_of: Vec<u32> = vec![u32::MAX; devices.len()];
    let mut buckets: Vec<(DeviceId, Vec<RunFootprint>)> = Vec::new();
    for (slot, total) in totals.iter().enumerate() {
        if *total > cap {
            bucket_of[slot] = u32::try_from(buckets.len()).unwrap_or(u32::MAX);
            buckets.push((devices[slot], Vec::new()));
        }
    }

    // Pass 2.
    for fp in footprints {
        let slot = index.get(fp.device_id).unwrap_or(usize::MAX);
        match bucket_of.get(slot) {
            Some(&b) if b != u32::MAX => buckets[b as usize].1.push(*fp),
            _ => {
                if fp.ts < core.cutoff {
                    core.push_aged(fp);
                }
            }
        }
    }
    for (device, runs) in buckets {
        core.plan_device(device, runs);
    }
    core.finish()
}

/// Builds a plan from the store's streaming inputs.
///
/// 1. [`totals`](Self::totals) with every device's total: answers the devices whose
///    footprints must be read (total over the cap).
/// 2. [`aged`](Self::aged) with each footprint of [`RunStore::aged_footprints`](crate::RunStore::aged_footprints)
///    (`ts < cutoff`), in any order.
/// 3. [`device`](Self::device) with all footprints of each device from step 1
///    ([`RunStore::device_footprints`](crate::RunStore::device_footprints)).
/// 4. [`finish`](Self::finish).
///
/// Footprints of step-1 devices passed to [`aged`](Self::aged) are ignored (their age
/// deletions come with step 3). Clamped future timestamps are counted among the footprints
/// this builder sees.
#[derive(Debug)]
pub struct PlanBuilder {
    core: Core,
    candidates: HashSet<DeviceId, IdBuild>,
}

impl PlanBuilder {
    /// A builder for `policy` at `now`.
    pub fn new(policy: &RetentionPolicy, now: DateTime<Utc>) -> Self {
        Self {
            core: Core::new(policy, now),
            candidates: HashSet::default(),
        }
    }

    /// The age cutoff (`now − max_age`).
    pub fn cutoff(&self) -> DateTime<Utc> {
        self.core.cutoff
    }

    /// Takes the per-device totals and answers, ascending, the devices whose footprints
    /// must be passed to [`device`](Self::device). A saturated total (`u64::MAX`) always
    /// counts as over the cap.
    pub fn totals(&mut self, totals: impl IntoIterator<Item = DeviceTotal>) -> Vec<DeviceId> {
        let cap = self.core.policy.max_bytes;
        let mut over: Vec<DeviceId> = totals
            .into_iter()
            .filter(|t| t.bytes > cap || t.bytes == u64::MAX)
            .map(|t| t.device_id)
            .collect();
        over.sort_unstable();
        over.dedup();
        self.candidates.extend(over.iter().copied());
        over
    }

    /// Takes one aged footprint.
    pub fn aged(&mut self, fp: &RunFootprint) {
        if self.candidates.contains(&fp.device_id) {
            return;
        }
        if fp.ts > self.core.now {
            self.core.clamped += 1;
        }
        if fp.ts < self.core.cutoff {
            self.core.push_aged(fp);
        }
    }

    /// Takes all footprints of one device named by [`totals`](Self::totals), in any order.
    pub fn device(&mut self, device: DeviceId, footprints: impl IntoIterator<Item = RunFootprint>) {
        let now = self.core.now;
        let runs: Vec<RunFootprint> = footprints
            .into_iter()
            .filter(|fp| fp.device_id == device)
            .inspect(|fp| {
                if fp.ts > now {
                    self.core.clamped += 1;
                }
            })
            .collect();
        self.core.plan_device(device, runs);
    }

    /// The plan.
    pub fn finish(self) -> PurgePlan {
        self.core.finish()
    }
}

#[derive(Debug)]
struct Core {
    policy: RetentionPolicy,
    now: DateTime<Utc>,
    cutoff: DateTime<Utc>,
    aged: Vec<PlannedDeletion>,
    capped: Vec<PlannedDeletion>,
    age_totals: ReasonTotals,
    byte_totals: ReasonTotals,
    over_before: u64,
    unresolved: Vec<DeviceId>,
    clamped: u64,
}

impl Core {
    fn new(policy: &RetentionPolicy, now: DateTime<Utc>) -> Self {
        Self {
            policy: *policy,
            now,
            cutoff: policy.cutoff(now),
            aged: Vec::new(),
            capped: Vec::new(),
            age_totals: ReasonTotals::default(),
            byte_totals: ReasonTotals::default(),
            over_before: 0,
            unresolved: Vec::new(),
            clamped: 0,
        }
    }

    /// Records an age deletion; the caller checked `fp.ts < cutoff` (so `fp.ts < now`: no clamp).
    fn push_aged(&mut self, fp: &RunFootprint) {
        self.age_totals.add(fp.bytes);
        self.aged.push(PlannedDeletion {
            run_id: fp.run_id,
            device_id: fp.device_id,
            ts: fp.ts,
            bytes: fp.bytes,
            reason: PurgeReason::Age,
        });
    }

    /// Applies both rules to all runs of one device.
    fn plan_device(&mut self, device: DeviceId, mut runs: Vec<RunFootprint>) {
        let cap = u128::from(self.policy.max_bytes);
        let mut total: u128 = 0;
        let mut kept_total: u128 = 0;
        runs.retain(|fp| {
            total += u128::from(fp.bytes);
            if fp.ts < self.cutoff {
                self.age_totals.add(fp.bytes);
                self.aged.push(PlannedDeletion {
                    run_id: fp.run_id,
                    device_id: fp.device_id,
                    ts: fp.ts,
                    bytes: fp.bytes,
                    reason: PurgeReason::Age,
                });
                false
            } else {
                kept_total += u128::from(fp.bytes);
                fp.finished
            }
        });
        if total > cap {
            self.over_before += 1;
        }
        if kept_total <= cap {
            return;
        }
        let excess = kept_total - cap;
        let now = self.now;
        for fp in &mut runs {
            fp.ts = fp.ts.min(now);
        }
        runs.sort_unstable_by(|a, b| (a.ts, a.run_id).cmp(&(b.ts, b.run_id)));
        let mut freed: u128 = 0;
        for fp in &runs {
            self.byte_totals.add(fp.bytes);
            self.capped.push(PlannedDeletion {
                run_id: fp.run_id,
                device_id: fp.device_id,
                ts: fp.ts,
                bytes: fp.bytes,
                reason: PurgeReason::Bytes,
            });
            freed += u128::from(fp.bytes);
            if freed >= excess {
                return;
            }
        }
        self.unresolved.push(device);
    }

    fn finish(mut self) -> PurgePlan {
        self.aged
            .sort_unstable_by(|a, b| (a.ts, a.run_id).cmp(&(b.ts, b.run_id)));
        self.capped
            .sort_unstable_by(|a, b| (a.ts, a.run_id).cmp(&(b.ts, b.run_id)));
        self.unresolved.sort_unstable();
        let mut deletions = self.aged;
        deletions.append(&mut self.capped);
        PurgePlan {
            now: self.now,
            cutoff: self.cutoff,
            policy: self.policy,
            deletions,
            age: self.age_totals,
            bytes: self.byte_totals,
            devices_over_cap_before: self.over_before,
            devices_over_cap_after: self.unresolved.len() as u64,
            unresolved: self.unresolved,
            clamped_future: self.clamped,
        }
    }
}

/// Maps device ids to dense slots: a table for small non-negative ids (the usual database
/// ids), a hash map for the rest.
#[derive(Debug, Default)]
struct DeviceIndex {
    dense: Vec<u32>,
    sparse: HashMap<DeviceId, usize, IdBuild>,
}

/// Ids below this use the dense table (at most 4 MiB of table).
const DENSE_LIMIT: i64 = 1 << 20;

impl DeviceIndex {
    fn slot(&mut self, id: DeviceId, insert: impl FnOnce() -> usize) -> usize {
        if (0..DENSE_LIMIT).contains(&id.0) {
            let i = id.0 as usize;
            if i >= self.dense.len() {
                self.dense.resize((i + 1).next_power_of_two(), u32::MAX);
            }
            if self.dense[i] == u32::MAX {
                self.dense[i] = u32::try_from(insert()).unwrap_or(u32::MAX);
            }
            self.dense[i] as usize
        } else {
            *self.sparse.entry(id).or_insert_with(insert)
        }
    }

    fn get(&self, id: DeviceId) -> Option<usize> {
        if (0..DENSE_LIMIT).contains(&id.0) {
            match self.dense.get(id.0 as usize) {
                Some(&s) if s != u32::MAX => Some(s as usize),
                _ => None,
            }
        } else {
            self.sparse.get(&id).copied()
        }
    }
}

/// A fast, non-cryptographic hasher for integer ids (the keys are our own ids, not
/// attacker-chosen strings).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

type IdBuild = BuildHasherDefault<IdHasher>;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}
