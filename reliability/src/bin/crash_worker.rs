//! A small netauto worker process for the reliability tests (tests SIGKILL it).
//!
//! ```text
//! crash_worker worker --db URL [--schema S] --creds FILE --known-hosts FILE --node NAME
//!                     [--lease-ms 2000] [--bulk-jobs 5] [--device-concurrency 10]
//!                     [--retention-cron EXPR]
//! crash_worker purge  --db URL [--schema S] --now-micros T --max-days D --max-bytes B
//!                     [--batch-runs 10] [--delay-ms 30]
//! ```
//!
//! `worker` runs a Runner with `BulkJob` over SSH to the devices listed in the credentials
//! and known_hosts files (a simulator farm the test runs), prints `READY`, one line per bulk
//! event (see `netauto_reliability::sink`), and shuts down gracefully on SIGTERM. `purge` runs
//! one retention purge, printing `BATCH <n> <runs>` after each committed batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use netauto_core::ExecLimits;
use netauto_core::bulk::BulkJob;
use netauto_core::exec::Executor;
use netauto_core::retention::RetentionConfig;
use netauto_core::retention::{RetentionArgs, RetentionWorker};
use netauto_core::runtime::WorkerRegistry;
use netauto_core::runtime::{CronEntry, CronSchedule};
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig};
use netauto_reliability::{FaultyStore, PrintingSink, TestDb};
use netauto_ssh::{FileCredentials, HostKeyPolicy, KnownHosts, SshClientConfig, SshNetworkClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn parse_args() -> Result<(String, HashMap<String, String>), BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .ok_or("usage: crash_worker worker|purge --key value…")?;
    let mut map = HashMap::new();
    while let Some(key) = args.next() {
        let key = key
            .strip_prefix("--")
            .ok_or_else(|| format!("expected --option, got {key:?}"))?
            .to_owned();
        let value = args
            .next()
            .ok_or_else(|| format!("--{key} needs a value"))?;
        map.insert(key, value);
    }
    Ok((mode, map))
}

fn get<'a>(args: &'a HashMap<String, String>, key: &str) -> Result<&'a str, BoxError> {
    args.get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("--{key} is required").into())
}

fn num<T: std::str::FromStr>(
    args: &HashMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, BoxError> {
    match args.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("--{key}: not a number: {v:?}").into()),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let (mode, args) = parse_args()?;
    // Debugging aid: RELIABILITY_LOG=<dir> writes each process's DEBUG log to <dir>/<node>.log.
    if let Some(dir) = std::env::var_os("RELIABILITY_LOG") {
        let name = args.get("node").map_or("purge", String::as_str);
        let file = std::fs::File::create(std::path::Path::new(&dir).join(format!("{name}.log")))?;
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    }
    let backend = TestDb::connect(
        get(&args, "db")?,
        args.get("schema").map(String::as_str),
        10,
    )
    .await?;
    match mode.as_str() {
        "worker" => worker(backend, &args).await,
        "purge" => purge(backend, &args).await,
        other => Err(format!("unknown mode {other:?}").into()),
    }
}

async fn worker(backend: TestDb, args: &HashMap<String, String>) -> Result<(), BoxError> {
    let mut ssh = SshClientConfig::new(FileCredentials::open(get(args, "creds")?)?).with_host_keys(
        HostKeyPolicy::Strict(KnownHosts::from_file(get(args, "known-hosts")?)),
    );
    ssh.pacing.connections_per_second = None;
    let client = Arc::new(SshNetworkClient::new(ssh));
    let progress = Arc::new(PrintingSink::new(backend.progress.clone()));
    let network = Executor::new(backend.store.clone(), client, progress).with_limits(ExecLimits {
        timeout: Duration::from_secs(30),
        ..ExecLimits::default()
    });
    let bulk = BulkJob::new(network).with_concurrency(num(args, "device-concurrency", 10)?);
    let lease = Duration::from_millis(num(args, "lease-ms", 2000)?);
    let config = RunnerConfig {
        node: get(args, "node")?.to_owned(),
        queues: QueueLimits::empty().with("bulk", num(args, "bulk-jobs", 5)?),
        poll_interval: Duration::from_millis(100),
        lease,
        heartbeat_every: lease / 4,
        rescue_every: Duration::from_millis(250),
        shutdown_grace: Duration::from_secs(20),
    };
    let mut registry = WorkerRegistry::new().with(bulk);
    let mut config = config;
    let mut cron = None;
    if let Some(expr) = args.get("retention-cron") {
        // Retention on a cron slot: every node inserts the slot, the unique key keeps one.
        let retention = RetentionConfig::default().with_cron(expr.clone()).build()?;
        let schedule = CronSchedule::parse_setting("NET_AUTO_RETENTION_CRON", retention.cron())?;
        registry = registry.with(RetentionWorker::new(backend.store.clone(), retention));
        config.queues = config.queues.with("retention", 1);
        cron = Some(CronEntry::new::<RetentionWorker>(
            schedule,
            &RetentionArgs::default(),
        )?);
    }
    let mut runner = Runner::new(backend.queue.clone(), registry).with_config(config);
    if let Some(entry) = cron {
        runner = runner.with_cron(entry);
    }
    let handle = runner.start();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!("READY");
    term.recv().await;
    let stats = handle.runner().stats();
    let report = handle.shutdown().await;
    println!(
        "STOPPED claimed={} completed={} retryable={} discarded={} lease_lost={} errors={} released={}",
        stats.claimed,
        stats.completed,
        stats.retryable,
        stats.discarded,
        stats.lease_lost,
        stats.errors,
        report.released.len()
    );
    Ok(())
}

async fn purge(backend: TestDb, args: &HashMap<String, String>) -> Result<(), BoxError> {
    let now = DateTime::<Utc>::from_timestamp_micros(num(args, "now-micros", 0i64)?)
        .ok_or("--now-micros out of range")?;
    let config = RetentionConfig::default()
        .with_max_days(num(args, "max-days", 30)?)
        .with_max_bytes(num(args, "max-bytes", 1 << 30)?)
        .build()?;
    let store = FaultyStore::new(backend.store.clone())
        .announce(Duration::from_millis(num(args, "delay-ms", 30)?));
    let worker =
        RetentionWorker::new(Arc::new(store), config).with_batch_runs(num(args, "batch-runs", 10)?);
    let report = worker.purge(now, false).await?;
    println!(
        "PURGED age={} bytes={} batches={}",
        report.deleted_age.runs, report.deleted_bytes.runs, report.batches
    );
    Ok(())
}
