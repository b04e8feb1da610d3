//! Benchmarks of netauto and the data generators they share.
//!
//! Run one with `cargo bench -p netauto-benches --bench purge_planning`.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use netauto_core::retention::{RetentionPolicy, RunFootprint};
use netauto_core::{DeviceId, RunId};

/// A small deterministic PRNG (splitmix64), so every bench run sees the same data.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The two data shapes of the purge-planning bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// ~70% of runs are past the maximum age; no device is over the cap.
    AgeHeavy,
    /// Nothing is past the maximum age; 10% of devices are over the cap by about half.
    CapHeavy,
}

impl Shape {
    /// Short name for bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Self::AgeHeavy => "age_heavy",
            Self::CapHeavy => "cap_heavy",
        }
    }
}

/// The fixed `now` of generated data.
pub fn bench_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The policy the shapes are built for: 30 days, 2 MiB per device.
pub fn bench_policy() -> RetentionPolicy {
    RetentionPolicy::new(30, 2 << 20)
}

/// `runs` footprints over `devices` devices (ids 1..=devices), in shuffled order, with unique
/// run ids; 5% of runs still running.
///
/// Per device there are `runs / devices` runs of 0–2 KiB (mean 1 KiB); in the cap-heavy
/// shape every tenth device's runs are three times larger, so with 1 000 runs per device
/// those devices hold ~3 MiB against a 2 MiB cap.
pub fn footprints(runs: usize, devices: usize, shape: Shape, seed: u64) -> Vec<RunFootprint> {
    let mut rng = SplitMix::new(seed);
    let now = bench_now();
    let per_device = (runs / devices.max(1)).max(1) as u64;
    // Scale sizes so a device holds about the same bytes whatever the run count.
    let unit = (2048 * 1000 / per_device).max(1);
    let span_secs: u64 = match shape {
        Shape::AgeHeavy => 100 * 86_400,
        Shape::CapHeavy => 29 * 86_400,
    };
    let mut out: Vec<RunFootprint> = (0..runs)
        .map(|i| {
            let device = (i % devices.max(1)) as i64 + 1;
            let heavy = shape == Shape::CapHeavy && device % 10 == 0;
            let bytes = rng.below(unit + 1) * if heavy { 3 } else { 1 };
            let age = rng.below(span_secs) as i64;
            RunFootprint {
                run_id: RunId(i as i64 + 1),
                device_id: DeviceId(device),
                ts: now - TimeDelta::seconds(age),
                bytes,
                finished: rng.below(20) != 0,
            }
        })
        .collect();
    for i in (1..out.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    out
}
