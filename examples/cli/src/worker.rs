//! `netauto worker` and the in-process worker of `bulk run --wait`: a runner with
//! [`BulkJob`] and [`RetentionWorker`] (plus the retention cron), stopped gracefully.

use std::sync::Arc;

use anyhow::Context;
use netauto_core::bulk::BulkJob;
use netauto_core::exec::Executor;
use netauto_core::retention::RetentionConfig;
use netauto_core::retention::{RetentionArgs, RetentionWorker};
use netauto_core::runtime::Wake;
use netauto_core::runtime::WorkerRegistry;
use netauto_core::runtime::{CronEntry, CronSchedule};
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig, RunnerWaker};
use netauto_sqlx::Database;
use tokio::task::JoinHandle;

use crate::ssh::SshArgs;

/// Parses `bulk=20,retention=5` (or `bulk:20,…`, the `NETAUTO_QUEUES` syntax).
pub(crate) fn parse_queues(s: &str) -> Result<QueueLimits, String> {
    QueueLimits::parse(&s.replace('=', ":")).map_err(|e| e.reason)
}

/// A runner wired to `db`: bulk jobs over SSH, retention purges, and the retention cron
/// when `cron` is set.
pub(crate) fn runner(
    db: &Database,
    queues: QueueLimits,
    ssh: &SshArgs,
    cron: bool,
) -> anyhow::Result<Runner> {
    let retention = RetentionConfig::from_env()?;
    let network = Executor::new(db.store(), ssh.client()?, db.progress()).with_limits(ssh.limits());
    let bulk = BulkJob::new(network).with_concurrency(ssh.devices_per_job);
    let schedule = CronSchedule::parse_setting("NET_AUTO_RETENTION_CRON", retention.cron())?;
    let registry = WorkerRegistry::new()
        .with(bulk)
        .with(RetentionWorker::new(db.store(), retention));
    let config = RunnerConfig {
        queues,
        ..RunnerConfig::default()
    };
    let mut runner = Runner::new(db.queue(), registry).with_config(config);
    if cron {
        runner = runner.with_cron(CronEntry::new::<RetentionWorker>(
            schedule,
            &RetentionArgs::default(),
        )?);
    }
    Ok(runner)
}

/// On PostgreSQL, wakes the runner whenever any node enqueues a job.
pub(crate) fn wake_on_new_jobs(db: &Database, waker: Arc<RunnerWaker>) -> Option<JoinHandle<()>> {
    match db {
        Database::Postgres(pg) => {
            let waker: Arc<dyn Wake> = Arc::new(waker.as_ref().clone());
            Some(pg.wake_on_new_jobs(waker))
        }
        _ => None,
    }
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully.
pub(crate) async fn run(db: &Database, queues: QueueLimits, ssh: &SshArgs) -> anyhow::Result<()> {
    let names: Vec<String> = queues.iter().map(|(q, n)| format!("{q}={n}")).collect();
    let runner = runner(db, queues, ssh, true)?;
    let node = runner.config().node.clone();
    let listener = wake_on_new_jobs(db, runner.waker());
    // Listen before announcing: a signal sent right after the banner must stop us gracefully,
    // not kill the process.
    let stop = ShutdownSignal::install()?;
    let handle = runner.start();
    eprintln!(
        "netauto worker {node}: queues {}; Ctrl-C or SIGTERM stops",
        names.join(",")
    );
    stop.wait().await?;
    eprintln!("netauto worker {node}: stopping (waiting for running jobs)");
    if let Some(task) = listener {
        task.abort();
    }
    let report = handle.shutdown().await;
    eprintln!(
        "netauto worker {node}: stopped; {} jobs finished during shutdown, {} given back to the queue",
        report.drained,
        report.released.len()
    );
    Ok(())
}

/// SIGINT/SIGTERM listeners, installed up front.
struct ShutdownSignal {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
                term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) -> anyhow::Result<()> {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c()
            .await
            .context("cannot listen for Ctrl-C")?;
        Ok(())
    }
}
