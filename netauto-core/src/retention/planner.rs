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

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    DeviceTotal, PlannedDeletion, PurgePlan, PurgeReason, ReasonTotals, RetentionPolicy,
    RunFootprint,
};
use crate::model::ids::{DeviceId, RunId};

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
    let cutoff = core.cutoff;

    // Pass 1: what the store computes with GROUP BY (per-device totals, here also the bytes
    // the age rule removes) and the age deletions, which do not depend on the cap.
    let mut index = DeviceIndex::default();
    let mut devices: Vec<DeviceTotals> = Vec::new();
    for fp in footprints {
        let slot = index.slot(fp.device_id, || {
            devices.push(DeviceTotals {
                id: fp.device_id,
                total: 0,
                aged: 0,
            });
            devices.len() - 1
        });
        let d = &mut devices[slot];
        d.total += u128::from(fp.bytes);
        if fp.ts < cutoff {
            d.aged += u128::from(fp.bytes);
            core.push_aged(fp.ts, fp.run_id, fp.bytes);
        } else if fp.ts > now {
            core.clamped += 1;
        }
    }

    // Devices still over the cap after the age rule need the byte rule: gather their
    // finished, kept runs (pass 2) and plan them one by one.
    let cap = u128::from(policy.max_bytes);
    let mut bucket_of: Vec<u32> = vec![u32::MAX; devices.len()];
    let mut buckets: Vec<(DeviceId, u128, Vec<Kept>)> = Vec::new();
    for (slot, d) in devices.iter().enumerate() {
        if d.total > cap {
            core.over_before += 1;
        }
        if d.total - d.aged > cap {
            bucket_of[slot] = u32::try_from(buckets.len()).unwrap_or(u32::MAX);
            buckets.push((d.id, d.total - d.aged, Vec::new()));
        }
    }
    if !buckets.is_empty() {
        for fp in footprints {
            if !fp.finished || fp.ts < cutoff {
                continue;
            }
            let slot = index.get(fp.device_id).unwrap_or(usize::MAX);
            if let Some(&b) = bucket_of.get(slot)
                && b != u32::MAX
            {
                buckets[b as usize].2.push(Kept {
                    ts: fp.ts.min(now),
                    run_id: fp.run_id,
                    bytes: fp.bytes,
                });
            }
        }
    }
    for (device, kept_total, kept) in buckets {
        core.byte_rule(device, kept_total, kept);
    }
    core.finish()
}

#[derive(Debug)]
struct DeviceTotals {
    id: DeviceId,
    total: u128,
    aged: u128,
}

/// A finished run the age rule kept, with its timestamp clamped.
#[derive(Debug, Clone, Copy)]
struct Kept {
    ts: DateTime<Utc>,
    run_id: RunId,
    bytes: u64,
}

/// Builds a plan from the store's streaming inputs.
///
/// 1. [`totals`](Self::totals) with every device's total: answers the devices whose
///    footprints must be read (total over the cap).
/// 2. [`aged`](Self::aged) with each footprint of [`crate::RetentionStore::aged_footprints`](crate::RetentionStore::aged_footprints)
///    (`ts < cutoff`), in any order.
/// 3. [`device`](Self::device) with all footprints of each device from step 1
///    ([`crate::RetentionStore::device_footprints`](crate::RetentionStore::device_footprints)).
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
        if fp.ts < self.core.cutoff {
            self.core.push_aged(fp.ts, fp.run_id, fp.bytes);
        } else if fp.ts > self.core.now {
            self.core.clamped += 1;
        }
    }

    /// Takes all footprints of one device named by [`totals`](Self::totals), in any order.
    pub fn device(&mut self, device: DeviceId, footprints: impl IntoIterator<Item = RunFootprint>) {
        let core = &mut self.core;
        let (now, cutoff) = (core.now, core.cutoff);
        let (mut total, mut kept_total) = (0u128, 0u128);
        let mut kept = Vec::new();
        for fp in footprints.into_iter().filter(|fp| fp.device_id == device) {
            total += u128::from(fp.bytes);
            if fp.ts < cutoff {
                core.push_aged(fp.ts, fp.run_id, fp.bytes);
                continue;
            }
            if fp.ts > now {
                core.clamped += 1;
            }
            kept_total += u128::from(fp.bytes);
            if fp.finished {
                kept.push(Kept {
                    ts: fp.ts.min(now),
                    run_id: fp.run_id,
                    bytes: fp.bytes,
                });
            }
        }
        let cap = u128::from(core.policy.max_bytes);
        if total > cap {
            core.over_before += 1;
        }
        if kept_total > cap {
            core.byte_rule(device, kept_total, kept);
        }
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
    /// Age deletions, unordered until [`Core::finish`].
    aged: Deletions,
    /// Byte-rule deletions (clamped timestamps), unordered until [`Core::finish`].
    capped: Deletions,
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
            aged: Deletions::default(),
            capped: Deletions::default(),
            age_totals: ReasonTotals::default(),
            byte_totals: ReasonTotals::default(),
            over_before: 0,
            unresolved: Vec::new(),
            clamped: 0,
        }
    }

    /// Records an age deletion; the caller checked `ts < cutoff` (so `ts < now`: no clamp).
    fn push_aged(&mut self, ts: DateTime<Utc>, run_id: RunId, bytes: u64) {
        self.age_totals.add(bytes);
        self.aged.push(ts, run_id);
    }

    /// The byte rule for one device whose runs kept by the age rule total `kept_total > cap`;
    /// `finished` are its finished kept runs, in any order.
    fn byte_rule(&mut self, device: DeviceId, kept_total: u128, mut finished: Vec<Kept>) {
        let excess = kept_total.saturating_sub(u128::from(self.policy.max_bytes));
        finished.sort_unstable_by_key(|k| (k.ts, k.run_id));
        let mut freed: u128 = 0;
        for k in &finished {
            if freed >= excess {
                return;
            }
            self.byte_totals.add(k.bytes);
            self.capped.push(k.ts, k.run_id);
            freed += u128::from(k.bytes);
        }
        if freed < excess {
            self.unresolved.push(device);
        }
    }

    fn finish(self) -> PurgePlan {
        let mut deletions = self.aged.into_sorted(PurgeReason::Age);
        deletions.extend(self.capped.into_sorted(PurgeReason::Bytes));
        let mut unresolved = self.unresolved;
        unresolved.sort_unstable();
        PurgePlan {
            now: self.now,
            cutoff: self.cutoff,
            policy: self.policy,
            deletions,
            age: self.age_totals,
            bytes: self.byte_totals,
            devices_over_cap_before: self.over_before,
            devices_over_cap_after: unresolved.len() as u64,
            unresolved,
            clamped_future: self.clamped,
        }
    }
}

/// Deletions collected in any order, kept as plain integers (seconds, nanoseconds, id) so
/// that ordering them needs no calendar arithmetic, with the ranges seen so far.
#[derive(Debug)]
struct Deletions {
    items: Vec<Entry>,
    min_secs: i64,
    max_secs: i64,
    max_nanos: u32,
    min_id: i64,
    max_id: i64,
}

/// One deletion; field order makes the derived `Ord` the `(ts, id)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    secs: i64,
    nanos: u32,
    id: i64,
}

impl Default for Deletions {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            min_secs: i64::MAX,
            max_secs: i64::MIN,
            max_nanos: 0,
            min_id: i64::MAX,
            max_id: i64::MIN,
        }
    }
}

impl Deletions {
    fn push(&mut self, ts: DateTime<Utc>, run_id: RunId) {
        let e = Entry {
            secs: ts.timestamp(),
            nanos: ts.timestamp_subsec_nanos(),
            id: run_id.0,
        };
        self.min_secs = self.min_secs.min(e.secs);
        self.max_secs = self.max_secs.max(e.secs);
        self.max_nanos = self.max_nanos.max(e.nanos);
        self.min_id = self.min_id.min(e.id);
        self.max_id = self.max_id.max(e.id);
        self.items.push(e);
    }

    /// The deletions in `(ts, id)` order.
    ///
    /// When the spread of seconds, the sub-second nanoseconds and the spread of ids fit in
    /// 64 bits together (the usual case: weeks of timestamps at whole-second or millisecond
    /// precision, millions of ids), each deletion is packed into one `u64` whose order is the
    /// `(ts, id)` order and radix-sorted; otherwise a comparison sort is used.
    fn into_sorted(self, reason: PurgeReason) -> Vec<PlannedDeletion> {
        let mut out = Vec::with_capacity(self.items.len());
        let mut dates = DateCache::default();
        let packing = Packing {
            min_secs: self.min_secs,
            min_id: self.min_id,
            secs_bits: bits_of(self.max_secs.wrapping_sub(self.min_secs) as u64),
            nano_bits: bits_of(u64::from(self.max_nanos)),
            id_bits: bits_of(self.max_id.wrapping_sub(self.min_id) as u64),
        };
        if self.items.len() >= RADIX_MIN && packing.bits() <= u64::BITS {
            let mut keys: Vec<u64> = self.items.iter().map(|e| packing.pack(e)).collect();
            drop(self.items);
            radix_sort(&mut keys, packing.bits());
            out.extend(
                keys.into_iter()
                    .map(|k| dates.deletion(packing.unpack(k), reason)),
            );
        } else {
            let mut items = self.items;
            items.sort_unstable();
            out.extend(items.into_iter().map(|e| dates.deletion(e, reason)));
        }
        out
    }
}

/// Turns entries back into timestamps, remembering the last day (sorted entries come day by
/// day, so the calendar arithmetic runs about once a day, not once a run).
#[derive(Debug, Default)]
struct DateCache {
    day: Option<(i64, DateTime<Utc>)>,
}

impl DateCache {
    fn deletion(&mut self, e: Entry, reason: PurgeReason) -> PlannedDeletion {
        let day = e.secs.div_euclid(86_400);
        let midnight = match self.day {
            Some((d, m)) if d == day => m,
            _ => {
                let m =
                    DateTime::from_timestamp(day * 86_400, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
                self.day = Some((day, m));
                m
            }
        };
        let ts = match TimeDelta::new(e.secs.rem_euclid(86_400), e.nanos) {
            Some(offset) => midnight + offset,
            // A leap second (nanoseconds ≥ 10⁹) has no offset form.
            None => DateTime::from_timestamp(e.secs, e.nanos).unwrap_or(midnight),
        };
        PlannedDeletion {
            run_id: RunId(e.id),
            ts,
            reason,
        }
    }
}

/// Below this many items a comparison sort is as fast.
const RADIX_MIN: usize = 4096;

/// How `(seconds − min, nanoseconds, id − min)` are laid out in a `u64`.
#[derive(Debug, Clone, Copy)]
struct Packing {
    min_secs: i64,
    min_id: i64,
    secs_bits: u32,
    nano_bits: u32,
    id_bits: u32,
}

fn bits_of(x: u64) -> u32 {
    u64::BITS - x.leading_zeros()
}

fn mask(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        u64::MAX >> (u64::BITS - bits)
    }
}

impl Packing {
    fn bits(&self) -> u32 {
        self.secs_bits + self.nano_bits + self.id_bits
    }

    fn pack(&self, e: &Entry) -> u64 {
        let secs = e.secs.wrapping_sub(self.min_secs) as u64;
        let id = e.id.wrapping_sub(self.min_id) as u64;
        let hi = secs.checked_shl(self.nano_bits).unwrap_or(0) | u64::from(e.nanos);
        hi.checked_shl(self.id_bits).unwrap_or(0) | id
    }

    fn unpack(&self, key: u64) -> Entry {
        let id = self.min_id.wrapping_add((key & mask(self.id_bits)) as i64);
        let hi = key.checked_shr(self.id_bits).unwrap_or(0);
        let nanos = (hi & mask(self.nano_bits)) as u32;
        let secs = self
            .min_secs
            .wrapping_add(hi.checked_shr(self.nano_bits).unwrap_or(0) as i64);
        Entry { secs, nanos, id }
    }
}

/// LSD radix sort of keys below `2^bits`, 11 bits a pass; passes whose digit is the same in
/// every key are skipped.
fn radix_sort(keys: &mut Vec<u64>, bits: u32) {
    const DIGIT: u32 = 11;
    const BUCKETS: usize = 1 << DIGIT;
    let passes = bits.div_ceil(DIGIT) as usize;
    if passes == 0 || keys.len() < 2 {
        return;
    }
    let mut counts = vec![[0usize; BUCKETS]; passes];
    for &k in keys.iter() {
        for (p, c) in counts.iter_mut().enumerate() {
            c[((k >> (p as u32 * DIGIT)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
    let mut buf = vec![0u64; keys.len()];
    for (p, c) in counts.iter_mut().enumerate() {
        if c.contains(&keys.len()) {
            continue;
        }
        let mut sum = 0;
        for n in c.iter_mut() {
            let here = *n;
            *n = sum;
            sum += here;
        }
        let shift = p as u32 * DIGIT;
        for &k in keys.iter() {
            let d = ((k >> shift) as usize) & (BUCKETS - 1);
            buf[c[d]] = k;
            c[d] += 1;
        }
        std::mem::swap(keys, &mut buf);
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::retention::oracle::naive_plan;

    fn comparison_sorted(items: &[(DateTime<Utc>, RunId)]) -> Vec<PlannedDeletion> {
        let mut v = items.to_vec();
        v.sort();
        v.into_iter()
            .map(|(ts, run_id)| PlannedDeletion {
                run_id,
                ts,
                reason: PurgeReason::Age,
            })
            .collect()
    }

    fn sort_oldest_first(
        items: Vec<(DateTime<Utc>, RunId)>,
        reason: PurgeReason,
    ) -> Vec<PlannedDeletion> {
        let mut d = Deletions::default();
        for (ts, id) in items {
            d.push(ts, id);
        }
        d.into_sorted(reason)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// The packed radix sort agrees with a comparison sort, whatever the spread of
        /// seconds, nanoseconds and ids (including spreads too wide to pack).
        #[test]
        fn radix_path_sorts_like_a_comparison_sort(
            n in RADIX_MIN..RADIX_MIN * 3,
            secs_spread in prop_oneof![Just(0i64), 1i64..100, 1i64..(1 << 40)],
            nanos in prop_oneof![Just(false), Just(true)],
            id_base in prop_oneof![Just(0i64), Just(i64::MIN), Just(i64::MAX - 1_000_000), any::<i64>()],
            id_spread in prop_oneof![1i64..1_000, 1i64..i64::MAX],
            seed in any::<u64>(),
        ) {
            let mut x = seed | 1;
            let mut next = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
            let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
            let items: Vec<(DateTime<Utc>, RunId)> = (0..n)
                .map(|_| {
                    let s = (next() % (secs_spread as u64 + 1)) as i64;
                    let ns = if nanos { (next() % 1_000_000_000) as i64 } else { 0 };
                    let id = id_base.wrapping_add((next() % id_spread as u64) as i64);
                    (base - TimeDelta::seconds(s) + TimeDelta::nanoseconds(ns), RunId(id))
                })
                .collect();
            prop_assert_eq!(sort_oldest_first(items.clone(), PurgeReason::Age), comparison_sorted(&items));
        }
    }

    #[test]
    fn large_inputs_match_the_oracle() {
        let now = DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap();
        let mut x: u64 = 0x1234_5678;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let fps: Vec<RunFootprint> = (0..30_000)
            .map(|i| RunFootprint {
                run_id: RunId(30_000 - i),
                device_id: DeviceId((next() % 40) as i64 * 7919),
                ts: now
                    - TimeDelta::microseconds(
                        (next() % (40 * 86_400_000_000)) as i64 - 86_400_000_000,
                    ),
                bytes: next() % 5_000,
                finished: next() % 10 != 0,
            })
            .collect();
        for (days, cap) in [
            (30, 10_000_000),
            (30, 1_000_000),
            (3, 2_000_000),
            (0, u64::MAX),
        ] {
            let policy = RetentionPolicy::new(days, cap);
            let plan = plan_purge(&fps, &policy, now);
            assert!(
                plan.deletions.len() > RADIX_MIN || days == 0,
                "{days} {cap}"
            );
            assert_eq!(
                plan,
                naive_plan(&fps, &policy, now),
                "{days} days, cap {cap}"
            );
        }
    }
}
