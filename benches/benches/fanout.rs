//! `fanout`: one command on 1,000 simulated SSH devices through
//! [`Executor::execute_command`] into the SQLite store, 200 at a time.
//!
//! Every device answers `show version` with 20 KiB after 100 ms, so the ideal wall time is
//! 100 ms × ⌈1000 / 200⌉ = 0.5 s; the target is at most twice that. Each round creates a
//! run per device, streams its output into chunks in a SQLite file and finishes it. The
//! client runs with the simulator's strict host keys, a 200-session cap and no
//! connection-rate limit (a rate limit, there to protect AAA servers, would dominate).
//!
//! Prints, per round and overall: wall time, device-runs per second, the ratio to the ideal,
//! and the process's peak resident memory (VmHWM). Run it with
//! `cargo bench -p netauto-benches --bench fanout`.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use netauto_core::exec::{Executor, RunOptions};
use netauto_core::{DeviceId, ProgressSink, RunStatus, RunStore};
use netauto_sqlx::sqlite::SqliteBackend;
use netauto_ssh::sim::{DeviceFarm, DeviceSpec};
use netauto_ssh::{PacingConfig, SshNetworkClient};

const DEVICES: usize = 1000;
const CONCURRENCY: usize = 200;
const LATENCY: Duration = Duration::from_millis(100);
const OUTPUT_BYTES: usize = 20 * 1024;
const ROUNDS: usize = 3;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn round(network: &Executor, ids: &[DeviceId]) -> Duration {
    let started = Instant::now();
    let runs: Vec<_> = futures_util::stream::iter(ids.iter().copied())
        .map(|id| network.execute_command(id, "show version", RunOptions::new("bench")))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for run in runs {
        let run = run.expect("run recorded");
        assert_eq!(run.status, RunStatus::Ok, "{run:?}");
        assert_eq!(run.bytes, OUTPUT_BYTES as u64);
    }
    elapsed
}

async fn measure(
    label: &str,
    farm: &DeviceFarm,
    store: Arc<dyn RunStore>,
    progress: Arc<dyn ProgressSink>,
) {
    let mut ids = Vec::with_capacity(DEVICES);
    for device in farm.new_devices() {
        ids.push(store.create_device(device).await.expect("device").id);
    }
    let config = farm.client_config().with_pacing(PacingConfig {
        max_sessions: CONCURRENCY,
        connections_per_second: None,
        jitter: 0.0,
        sessions_per_endpoint: None,
    });
    let client = Arc::new(SshNetworkClient::new(config));
    let network = Executor::new(store, client, progress);
    let ideal = LATENCY * DEVICES.div_ceil(CONCURRENCY) as u32;
    let mut times = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let elapsed = round(&network, &ids).await;
        println!(
            "fanout/{label} round {}: {:.3} s, {:.0} device-runs/s, {:.2}x ideal",
            i + 1,
            elapsed.as_secs_f64(),
            DEVICES as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() / ideal.as_secs_f64()
        );
        times.push(elapsed);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "fanout/{label}_1000x20KiB_c200: median {:.3} s (best {:.3} s), {:.0} device-runs/s, \
         {:.2}x the ideal {:.1} s (target <= 2x), peak RSS so far {} MiB",
        median.as_secs_f64(),
        times[0].as_secs_f64(),
        DEVICES as f64 / median.as_secs_f64(),
        median.as_secs_f64() / ideal.as_secs_f64(),
        ideal.as_secs_f64(),
        peak_rss_kib().map_or("?".to_owned(), |k| (k / 1024).to_string()),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let setup = Instant::now();
        let specs = (0..DEVICES)
            .map(|i| {
                DeviceSpec::new(format!("sim-{i:04}"), "linux")
                    .with_output_bytes(OUTPUT_BYTES)
                    .with_latency(LATENCY)
            })
            .collect();
        let farm = DeviceFarm::start(specs).await.expect("farm starts");
        println!(
            "fanout: {DEVICES} devices, {} KiB after {LATENCY:?}, concurrency {CONCURRENCY}; farm started in {:?}",
            OUTPUT_BYTES / 1024,
            setup.elapsed()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("fanout.db").display());
        let backend = SqliteBackend::connect(&url).await.expect("sqlite");
        backend.migrate().await.expect("migrate");
        let progress = Arc::new(backend.progress());
        measure("sqlite", &farm, Arc::new(backend.store()), progress.clone()).await;
        // Reference: the same fan-out into the in-memory store, to separate SSH from SQLite.
        let (_queue, memory) = netauto_memory::backend();
        measure("memory", &farm, Arc::new(memory), progress).await;
    });
}
