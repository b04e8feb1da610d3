//! Helpers of the runner tests: their clock, configuration and queue.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig, TickReport};
use netauto_core::{Job, JobFilter, JobId, JobQueue, JobState, NewJob};
use netauto_memory::InMemoryJobQueue;

use super::SOON;

pub fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap()
}

pub fn config(node: &str, queues: QueueLimits) -> RunnerConfig {
    RunnerConfig {
        node: node.to_owned(),
        queues,
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(60),
        heartbeat_every: Duration::from_secs(15),
        rescue_every: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(2),
    }
}

pub fn default_queue(limit: usize) -> QueueLimits {
    QueueLimits::empty().with("default", limit)
}

pub fn new_queue() -> (InMemoryJobQueue, Arc<dyn JobQueue>) {
    let queue = InMemoryJobQueue::new();
    let dyn_queue: Arc<dyn JobQueue> = Arc::new(queue.clone());
    (queue, dyn_queue)
}

pub async fn enqueue(queue: &dyn JobQueue, job: NewJob, now: DateTime<Utc>) -> JobId {
    queue.enqueue(job, now).await.unwrap().into_job().id
}

pub async fn job(queue: &dyn JobQueue, id: JobId) -> Job {
    queue.job(id).await.unwrap()
}

pub async fn count_in(queue: &dyn JobQueue, state: JobState) -> usize {
    queue
        .list(&JobFilter::all().with_states([state]))
        .await
        .unwrap()
        .len()
}

/// One tick, then waits for every job it started to finish.
pub async fn tick_and_wait(runner: &Runner) -> TickReport {
    let report = runner.tick().await.unwrap();
    assert!(runner.wait_idle(SOON).await, "jobs still running");
    report
}
