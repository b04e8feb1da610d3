//! `purge_planning`: the retention planner over 1M and 10M runs (10k devices) in two shapes,
//! against `scan_baseline`, a loop that reads every footprint once and sums its bytes.
//!
//! Before measuring, the bench prints each case's plan size and the planner's peak extra
//! heap (measured with a counting allocator), to check the O(devices + deletions) bound.
#![allow(missing_docs, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use netauto_benches::{Shape, bench_now, bench_policy, footprints};
use netauto_core::retention::{PlannedDeletion, RunFootprint, plan_purge};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const DEVICES: usize = 10_000;

fn scan_baseline(footprints: &[RunFootprint]) -> u64 {
    footprints
        .iter()
        .fold(0u64, |acc, f| acc.wrapping_add(f.bytes))
}

fn report_memory(name: &str, data: &[RunFootprint]) {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let plan = plan_purge(data, &bench_policy(), bench_now());
    let peak_extra = PEAK.load(Ordering::Relaxed) - before;
    let deletions = plan.deletions.len();
    let output = deletions * size_of::<PlannedDeletion>();
    eprintln!(
        "purge_planning/{name}: runs={} deletions={deletions} (age {}, bytes {}) over_cap_before={} \
         unresolved={} peak_extra_heap={:.1} MiB = {:.2}x the plan's own size ({:.1} MiB), input {:.1} MiB",
        data.len(),
        plan.age.runs,
        plan.bytes.runs,
        plan.devices_over_cap_before,
        plan.unresolved.len(),
        peak_extra as f64 / 1048576.0,
        peak_extra as f64 / output.max(1) as f64,
        output as f64 / 1048576.0,
        std::mem::size_of_val(data) as f64 / 1048576.0,
    );
}

fn purge_planning(c: &mut Criterion) {
    let sizes: &[usize] = match std::env::var("PURGE_BENCH_SIZES") {
        Ok(v) if v == "small" => &[1_000_000],
        _ => &[1_000_000, 10_000_000],
    };
    for &shape in &[Shape::AgeHeavy, Shape::CapHeavy] {
        let mut group = c.benchmark_group(format!("purge_planning/{}", shape.name()));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(8));
        for &runs in sizes {
            let data = footprints(runs, DEVICES, shape, 0x5eed ^ runs as u64);
            report_memory(&format!("{}/{runs}", shape.name()), &data);
            group.throughput(Throughput::Elements(runs as u64));
            group.bench_with_input(BenchmarkId::new("planner", runs), &data, |b, data| {
                b.iter(|| plan_purge(black_box(data), &bench_policy(), bench_now()));
            });
            group.bench_with_input(BenchmarkId::new("scan_baseline", runs), &data, |b, data| {
                b.iter(|| scan_baseline(black_box(data)));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, purge_planning);
criterion_main!(benches);
