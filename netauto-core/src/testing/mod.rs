//! Test helpers, the Rust counterpart of `Oban.Testing` (feature `testing`).
//!
//! * [`perform_job`]: run a worker on args, as the runner would, without a queue.
//! * [`assert_enqueued`], [`refute_enqueued`], [`all_enqueued`]: look at what is waiting in a
//!   queue, filtered by worker, queue and an args *subset*.
//! * [`drain_queue`]: run everything waiting in one queue, now, in this task, and count
//!   successes, failures and discards.
//! * Modes: *manual* is a plain queue (jobs wait until drained or a runner takes them);
//!   *inline* is [`InlineQueue`], which runs each job as soon as it is enqueued.
//! * Test doubles, one of each kind: [`ScriptedClient`] (a [`NetworkClient`](crate::NetworkClient)
//!   answering scripted [`Reply`]s), [`FaultyStore`] (a [`RunStore`](crate::RunStore) wrapper
//!   injecting faults), [`FaultyQueue`] (a [`JobQueue`] wrapper cut off from its database on
//!   demand); the queue wrappers are [`HookedQueue`](crate::runtime::HookedQueue)s, which forward every call.
//! * Time: [`ManualClock`](crate::ManualClock), given to the runner, cron, services and these
//!   helpers.
//!
//! ```
//! # #[cfg(feature = "testing")] {
//! use netauto_core::testing::{EnqueuedFilter, json_contains};
//! use serde_json::json;
//!
//! let filter = EnqueuedFilter::worker("netauto.bulk").with_args(json!({"command": "show clock"}));
//! assert_eq!(filter.worker.as_deref(), Some("netauto.bulk"));
//! assert!(json_contains(&json!({"command": "show clock", "device_ids": [1, 2]}), &json!({"command": "show clock"})));
//! # }
//! ```

pub mod capture;
mod client;
mod faulty_store;
mod queue;
mod services;

pub use capture::{Capture, CaptureGuard, CaptureLayer, CapturedEvent};
pub use client::{Call, Item, Reply, ScriptedClient, Step, err, events, exit, out};
pub use faulty_store::{BATCH, FaultyStore};
pub use queue::{FaultyQueue, Inline, InlineQueue, Outage, QueueFaults};
pub use services::{POSTGRES_URL_VAR, postgres_url};

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::backend::queue::JobQueue;
use crate::error::Result;
use crate::model::ids::JobId;
use crate::model::job::{ClaimRequest, Job, JobFilter, JobState};
use crate::runtime::{AttemptOutcome, LeaseSettings, execute_job};
use crate::runtime::{Clock, SystemClock};
use crate::runtime::{JobContext, Worker, WorkerError, WorkerRegistry};

/// Runs `worker` on `args` as the runner would for a first attempt (the args go through
/// JSON, so a type that does not round-trip fails here as it would in production), with the
/// system clock.
pub async fn perform_job<W: Worker>(worker: &W, args: W::Args) -> Result<(), WorkerError> {
    perform_job_with_clock(worker, args, Arc::new(SystemClock)).await
}

/// [`perform_job`] reading time from `clock`.
pub async fn perform_job_with_clock<W: Worker>(
    worker: &W,
    args: W::Args,
    clock: Arc<dyn Clock>,
) -> Result<(), WorkerError> {
    let new = W::new_job(&args).map_err(WorkerError::from)?;
    let args: W::Args = serde_json::from_value(new.args.clone())
        .map_err(|e| WorkerError::discard(format!("args do not round-trip through JSON: {e}")))?;
    let now = clock.now();
    let job = Job {
        id: JobId(0),
        queue: new.queue,
        worker: new.worker,
        args: new.args,
        state: JobState::Executing,
        attempt: 1,
        max_attempts: new.max_attempts,
        priority: new.priority,
        inserted_at: now,
        scheduled_at: now,
        attempted_at: Some(now),
        finished_at: None,
        unique_key: new.unique_key,
        attempted_by: Some("perform_job".into()),
        lease_expires_at: None,
        errors: Vec::new(),
    };
    worker.perform(&JobContext::new(job, clock), args).await
}

/// Which enqueued jobs to look at. By default: every worker and queue, states `available`,
/// `scheduled` and `retryable` (jobs waiting to run).
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueuedFilter {
    /// Only this worker.
    pub worker: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only jobs whose args contain this (see [`json_contains`]).
    pub args: Option<Value>,
    /// Only these states.
    pub states: Vec<JobState>,
}

impl Default for EnqueuedFilter {
    fn default() -> Self {
        Self {
            worker: None,
            queue: None,
            args: None,
            states: vec![
                JobState::Available,
                JobState::Scheduled,
                JobState::Retryable,
            ],
        }
    }
}

impl EnqueuedFilter {
    /// Waiting jobs of any worker.
    pub fn any() -> Self {
        Self::default()
    }

    /// Waiting jobs of the named worker.
    pub fn worker(name: impl Into<String>) -> Self {
        Self {
            worker: Some(name.into()),
            ..Self::default()
        }
    }

    /// Waiting jobs of worker `W`.
    pub fn of<W: Worker>() -> Self {
        Self::worker(W::NAME)
    }

    /// Only this queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only jobs whose args contain `args`.
    pub fn with_args(mut self, args: Value) -> Self {
        self.args = Some(args);
        self
    }

    /// Only these states (e.g. to include `completed`).
    pub fn with_states(mut self, states: impl IntoIterator<Item = JobState>) -> Self {
        self.states = states.into_iter().collect();
        self
    }

    /// Whether `job` passes.
    pub fn matches(&self, job: &Job) -> bool {
        self.worker.as_deref().is_none_or(|w| w == job.worker)
            && self.queue.as_deref().is_none_or(|q| q == job.queue)
            && (self.states.is_empty() || self.states.contains(&job.state))
            && self
                .args
                .as_ref()
                .is_none_or(|a| json_contains(&job.args, a))
    }
}

/// Whether `haystack` contains `needle`: objects match when every key of `needle` is in
/// `haystack` with a containing value; anything else must be equal.
pub fn json_contains(haystack: &Value, needle: &Value) -> bool {
    match (haystack, needle) {
        (Value::Object(h), Value::Object(n)) => n
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| json_contains(hv, v))),
        (h, n) => h == n,
    }
}

/// The jobs matching `filter`, ascending id.
pub async fn all_enqueued(queue: &dyn JobQueue, filter: &EnqueuedFilter) -> Result<Vec<Job>> {
    let candidates = queue
        .list(&JobFilter {
            queue: filter.queue.clone(),
            worker: filter.worker.clone(),
            states: filter.states.clone(),
            limit: None,
        })
        .await?;
    Ok(candidates
        .into_iter()
        .filter(|j| filter.matches(j))
        .collect())
}

/// Panics unless some job matches `filter`, listing what is enqueued.
pub async fn assert_enqueued(queue: &dyn JobQueue, filter: &EnqueuedFilter) {
    let found = all_enqueued(queue, filter).await;
    match found {
        Ok(jobs) if !jobs.is_empty() => {}
        Ok(_) => panic!(
            "expected a job matching {filter:?}; enqueued: {}",
            describe(queue).await
        ),
        Err(e) => panic!("could not list jobs: {e}"),
    }
}

/// Panics if any job matches `filter`, listing the matches.
pub async fn refute_enqueued(queue: &dyn JobQueue, filter: &EnqueuedFilter) {
    match all_enqueued(queue, filter).await {
        Ok(jobs) if jobs.is_empty() => {}
        Ok(jobs) => panic!(
            "expected no job matching {filter:?}; found {}",
            summarize(&jobs)
        ),
        Err(e) => panic!("could not list jobs: {e}"),
    }
}

async fn describe(queue: &dyn JobQueue) -> String {
    match queue.list(&JobFilter::all()).await {
        Ok(jobs) if jobs.is_empty() => "nothing".into(),
        Ok(jobs) => summarize(&jobs),
        Err(e) => format!("(could not list: {e})"),
    }
}

fn summarize(jobs: &[Job]) -> String {
    jobs.iter()
        .map(|j| {
            format!(
                "\n  #{} {} on {} [{}] args {}",
                j.id, j.worker, j.queue, j.state, j.args
            )
        })
        .collect()
}

/// What [`drain_queue`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainOptions {
    /// The queue.
    pub queue: String,
    /// Also run jobs scheduled in the future (and retries waiting for their backoff).
    pub with_scheduled: bool,
    /// Keep draining jobs enqueued (or retried) while draining, until the queue is empty.
    pub with_recursion: bool,
}

impl DrainOptions {
    /// Jobs of `queue` available now, one pass.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            with_scheduled: false,
            with_recursion: false,
        }
    }

    /// Also run scheduled jobs.
    pub fn with_scheduled(mut self) -> Self {
        self.with_scheduled = true;
        self
    }

    /// Keep draining until empty.
    pub fn with_recursion(mut self) -> Self {
        self.with_recursion = true;
        self
    }
}

/// What [`drain_queue`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Attempts that completed.
    pub success: u64,
    /// Attempts that failed and were left retryable.
    pub failure: u64,
    /// Attempts that ended discarded.
    pub discard: u64,
}

/// How far ahead `with_scheduled` looks.
const SCHEDULED_HORIZON: TimeDelta = TimeDelta::days(3650);

/// Runs the jobs waiting in one queue, one at a time, in this task, with the workers of
/// `registry`, exactly as the runner would (fencing, backoff, discard), and counts outcomes.
pub async fn drain_queue(
    queue: &Arc<dyn JobQueue>,
    registry: &WorkerRegistry,
    clock: &Arc<dyn Clock>,
    opts: &DrainOptions,
) -> Result<DrainReport> {
    let mut report = DrainReport::default();
    let lease = LeaseSettings {
        lease: Duration::from_secs(3600),
        heartbeat_every: Duration::from_secs(600),
        completer: None,
    };
    loop {
        let now = claim_time(clock.now(), opts.with_scheduled);
        let req = ClaimRequest::new(&opts.queue, 10_000, "drain_queue")
            .with_lease(TimeDelta::seconds(3600));
        let jobs = queue.claim(&req, now).await?;
        if jobs.is_empty() {
            return Ok(report);
        }
        for job in jobs {
            match execute_job(queue, registry, clock, job, lease.clone()).await? {
                AttemptOutcome::Completed => report.success += 1,
                AttemptOutcome::Retryable => report.failure += 1,
                AttemptOutcome::Discarded => report.discard += 1,
                AttemptOutcome::LeaseLost | AttemptOutcome::Deferred => {}
            }
        }
        if !opts.with_recursion {
            return Ok(report);
        }
    }
}

fn claim_time(now: DateTime<Utc>, with_scheduled: bool) -> DateTime<Utc> {
    if with_scheduled {
        now + SCHEDULED_HORIZON
    } else {
        now
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_subset_matching() {
        let job =
            json!({"device_ids": [1, 2], "command": "show clock", "nested": {"a": 1, "b": 2}});
        assert!(json_contains(&job, &json!({})));
        assert!(json_contains(&job, &json!({"command": "show clock"})));
        assert!(json_contains(&job, &json!({"nested": {"b": 2}})));
        assert!(
            !json_contains(&job, &json!({"device_ids": [1]})),
            "arrays must be equal"
        );
        assert!(!json_contains(&job, &json!({"command": "show run"})));
        assert!(!json_contains(&job, &json!({"missing": null})));
    }
}
