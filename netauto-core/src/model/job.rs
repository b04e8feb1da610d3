//! Jobs: durable units of work in a [`JobQueue`](crate::JobQueue).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::model::ids::JobId;
use crate::model::run::UnknownStatus;

/// Default number of attempts before a failing job is discarded.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;

/// The state of a [`Job`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Ready to be claimed.
    Available,
    /// Waiting for its `scheduled_at`.
    Scheduled,
    /// Claimed by a worker that holds a lease.
    Executing,
    /// Failed; will be claimable again at `scheduled_at`.
    Retryable,
    /// Finished successfully. Terminal.
    Completed,
    /// Failed for good (attempts exhausted or malformed). Terminal.
    Discarded,
    /// Cancelled. Terminal.
    Cancelled,
}

impl JobState {
    /// All states, in declaration order.
    pub const ALL: [JobState; 7] = [
        Self::Available,
        Self::Scheduled,
        Self::Executing,
        Self::Retryable,
        Self::Completed,
        Self::Discarded,
        Self::Cancelled,
    ];

    /// Whether the job is done for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Discarded | Self::Cancelled)
    }

    /// Whether the job is live: not terminal.
    pub fn is_live(self) -> bool {
        !self.is_terminal()
    }

    /// Whether a job in this state holds its `unique_key`: every state but `discarded` and
    /// `cancelled`. A completed job keeps its key until it is pruned, so a cron slot that
    /// already ran is not inserted again by a node that comes later.
    pub fn holds_unique_key(self) -> bool {
        !matches!(self, Self::Discarded | Self::Cancelled)
    }

    /// Whether a job in this state may be claimed once its `scheduled_at` has come.
    pub fn is_claimable(self) -> bool {
        matches!(self, Self::Available | Self::Scheduled | Self::Retryable)
    }

    /// Lowercase name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Scheduled => "scheduled",
            Self::Executing => "executing",
            Self::Retryable => "retryable",
            Self::Completed => "completed",
            Self::Discarded => "discarded",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// One recorded failure of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// The attempt that failed.
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// The error message.
    pub error: String,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Database id.
    pub id: JobId,
    /// Queue name (`default`, `bulk`, `retention`, …).
    pub queue: String,
    /// Name of the worker that performs it.
    pub worker: String,
    /// Worker arguments. Never contains secrets.
    pub args: serde_json::Value,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far (incremented by each claim).
    pub attempt: u32,
    /// Attempts allowed before the job is discarded.
    pub max_attempts: u32,
    /// 0 is the highest priority.
    pub priority: i16,
    /// When it was enqueued.
    pub inserted_at: DateTime<Utc>,
    /// Not claimable before this.
    pub scheduled_at: DateTime<Utc>,
    /// When the current/last attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// De-duplication key: at most one job per key among jobs that are not discarded or
    /// cancelled.
    pub unique_key: Option<String>,
    /// Who holds (or last held) the lease: a node/worker identifier.
    pub attempted_by: Option<String>,
    /// When the current lease expires; `None` unless executing.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Failures so far, oldest first.
    pub errors: Vec<JobFailure>,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Queue name.
    pub queue: String,
    /// Worker name.
    pub worker: String,
    /// Worker arguments (JSON). Never put secrets here.
    pub args: serde_json::Value,
    /// 0 is the highest priority.
    pub priority: i16,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Not claimable before this; `None` means now.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// De-duplication key.
    pub unique_key: Option<String>,
}

impl NewJob {
    /// A job with priority 0, [`DEFAULT_MAX_ATTEMPTS`], available now, no unique key.
    pub fn new(
        queue: impl Into<String>,
        worker: impl Into<String>,
        args: serde_json::Value,
    ) -> Self {
        Self {
            queue: queue.into(),
            worker: worker.into(),
            args,
            priority: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            scheduled_at: None,
            unique_key: None,
        }
    }

    /// Sets the priority (0 highest).
    pub fn with_priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the attempts allowed.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Schedules the job for later.
    pub fn with_scheduled_at(mut self, at: DateTime<Utc>) -> Self {
        self.scheduled_at = Some(at);
        self
    }

    /// Sets the de-duplication key.
    pub fn with_unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Checks the fields every backend requires: non-empty queue and worker names of at most
    /// 128 bytes, `max_attempts ≥ 1`, a non-empty unique key when one is given, and a
    /// priority in `0..=9`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        fn name(field: &'static str, v: &str) -> Result<(), ValidationError> {
            if v.trim().is_empty() || v.len() > 128 {
                return Err(ValidationError::Field {
                    field,
                    reason: format!("must be 1 to 128 bytes, got {:?}", truncate(v)),
                });
            }
            Ok(())
        }
        name("queue", &self.queue)?;
        name("worker", &self.worker)?;
        if self.max_attempts == 0 {
            return Err(ValidationError::Field {
                field: "max_attempts",
                reason: "must be at least 1".into(),
            });
        }
        if !(0..=9).contains(&self.priority) {
            return Err(ValidationError::Field {
                field: "priority",
                reason: format!("must be 0..=9, got {}", self.priority),
            });
        }
        if let Some(key) = &self.unique_key
            && (key.is_empty() || key.len() > 512)
        {
            return Err(ValidationError::Field {
                field: "unique_key",
                reason: "must be 1 to 512 bytes".into(),
            });
        }
        Ok(())
    }

    /// The state a job enqueued at `now` starts in.
    pub fn initial_state(&self, now: DateTime<Utc>) -> JobState {
        match self.scheduled_at {
            Some(at) if at > now => JobState::Scheduled,
            _ => JobState::Available,
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// What [`JobQueue::enqueue`](crate::JobQueue::enqueue) did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Enqueued {
    /// A new job was inserted.
    Inserted(Job),
    /// A job holding the same unique key existed (see [`JobState::holds_unique_key`]); it is
    /// returned and nothing was inserted.
    Existing(Job),
}

impl Enqueued {
    /// The job, new or existing.
    pub fn job(&self) -> &Job {
        match self {
            Self::Inserted(j) | Self::Existing(j) => j,
        }
    }

    /// Consumes this, giving the job.
    pub fn into_job(self) -> Job {
        match self {
            Self::Inserted(j) | Self::Existing(j) => j,
        }
    }

    /// Whether a new job was inserted.
    pub fn is_inserted(&self) -> bool {
        matches!(self, Self::Inserted(_))
    }
}

/// Filter for [`JobQueue::list`](crate::JobQueue::list). Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this worker.
    pub worker: Option<String>,
    /// Only these states (empty = all).
    pub states: Vec<JobState>,
    /// At most this many, lowest ids first (`None` = all).
    pub limit: Option<usize>,
}

impl JobFilter {
    /// Matches every job.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only the given queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only the given worker.
    pub fn with_worker(mut self, worker: impl Into<String>) -> Self {
        self.worker = Some(worker.into());
        self
    }

    /// Only the given states.
    pub fn with_states(mut self, states: impl IntoIterator<Item = JobState>) -> Self {
        self.states = states.into_iter().collect();
        self
    }

    /// At most `limit` jobs.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `job` passes this filter (ignoring `limit`).
    pub fn matches(&self, job: &Job) -> bool {
        self.queue.as_deref().is_none_or(|q| q == job.queue)
            && self.worker.as_deref().is_none_or(|w| w == job.worker)
            && (self.states.is_empty() || self.states.contains(&job.state))
    }
}

/// What a claimer asks [`JobQueue::claim`](crate::JobQueue::claim) for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The queue to claim from.
    pub queue: String,
    /// At most this many jobs.
    pub limit: usize,
    /// Identifier of the claiming node/worker, stored as `attempted_by`.
    pub claimer: String,
    /// How long the lease lasts unless renewed by [`JobQueue::heartbeat`](crate::JobQueue::heartbeat).
    pub lease: chrono::Duration,
}

impl ClaimRequest {
    /// A request for up to `limit` jobs of `queue` with a 60-second lease.
    pub fn new(queue: impl Into<String>, limit: usize, claimer: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            limit,
            claimer: claimer.into(),
            lease: chrono::Duration::seconds(60),
        }
    }

    /// Sets the lease length.
    pub fn with_lease(mut self, lease: chrono::Duration) -> Self {
        self.lease = lease;
        self
    }
}

/// What [`JobQueue::fail`](crate::JobQueue::fail) should do with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// Retry at this time, unless the attempts are exhausted (then the job is discarded).
    RetryAt(DateTime<Utc>),
    /// Discard now, whatever attempts remain (malformed args, permanent errors).
    Discard,
}

/// How many jobs one queue has in one state: what
/// [`JobQueue::counts`](crate::JobQueue::counts) answers, per queue and state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobCount {
    /// The queue.
    pub queue: String,
    /// The state.
    pub state: JobState,
    /// How many jobs.
    pub count: u64,
}

/// A paused queue (see [`JobQueue::pause_queue`](crate::JobQueue::pause_queue)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueuePause {
    /// The queue.
    pub queue: String,
    /// Since when.
    pub paused_at: DateTime<Utc>,
}
