//! Workers: typed job handlers, and the registry the runner looks them up in.

use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::model::job::{DEFAULT_MAX_ATTEMPTS, Job, NewJob};
use crate::runtime::Clock;

/// A job handler with typed arguments.
///
/// ```
/// use async_trait::async_trait;
/// use netauto_core::runtime::{JobContext, Worker, WorkerError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug)]
/// struct Greeter;
///
/// #[derive(Serialize, Deserialize)]
/// struct Greet {
///     name: String,
/// }
///
/// #[async_trait]
/// impl Worker for Greeter {
///     const NAME: &'static str = "greeter";
///     type Args = Greet;
///
///     async fn perform(&self, _ctx: &JobContext, args: Greet) -> Result<(), WorkerError> {
///         if args.name.is_empty() {
///             return Err(WorkerError::discard("nobody to greet"));
///         }
///         Ok(())
///     }
/// }
///
/// let job = Greeter::new_job(&Greet { name: "ann".into() }).unwrap();
/// assert_eq!((job.queue.as_str(), job.worker.as_str()), ("default", "greeter"));
/// ```
#[async_trait]
pub trait Worker: Send + Sync + Debug + 'static {
    /// Stable name stored in jobs; renaming a worker orphans its queued jobs.
    const NAME: &'static str;
    /// The queue its jobs go to by default.
    const QUEUE: &'static str = "default";
    /// Attempts before a failing job is discarded.
    const MAX_ATTEMPTS: u32 = DEFAULT_MAX_ATTEMPTS;

    /// The job arguments. Never put secrets here: args are stored in plain text.
    type Args: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Does the work. An `Err` is retried with backoff (or discarded, see [`WorkerError`]).
    async fn perform(&self, ctx: &JobContext, args: Self::Args) -> Result<(), WorkerError>;

    /// How long one attempt may take before it is stopped and counted as failed.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Called once a job of this worker is about to end for good without completing: the
    /// worker discarded it, its args are malformed (so `job.args` may not decode into
    /// [`Self::Args`]), or its attempts ran out — also when they ran out while the node
    /// running it was gone (the runner that rescues it calls this). It lets the worker record
    /// what the job will never do, e.g. a bulk job gives each of its devices an outcome so
    /// that the bulk ends.
    ///
    /// It runs *before* the job is marked discarded and must be idempotent: when it fails,
    /// the job is not discarded yet and the call is made again later.
    async fn on_discard(&self, job: &Job, reason: &str) -> Result<(), WorkerError> {
        let _ = (job, reason);
        Ok(())
    }

    /// The delay before retrying after failed attempt number `attempt` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        default_backoff(attempt)
    }

    /// A job for this worker with these args, on [`Self::QUEUE`] with [`Self::MAX_ATTEMPTS`].
    fn new_job(args: &Self::Args) -> Result<NewJob, Error>
    where
        Self: Sized,
    {
        Ok(
            NewJob::new(Self::QUEUE, Self::NAME, serde_json::to_value(args)?)
                .with_max_attempts(Self::MAX_ATTEMPTS),
        )
    }
}

/// The default retry delay, like Oban's: `15 s + 2^attempt s`, with ±10% jitter so that jobs
/// failing together do not retry together. The exponent stops growing at 20 (about 12 days).
pub fn default_backoff(attempt: u32) -> Duration {
    let base = 15.0 + f64::from(1u32 << attempt.min(20));
    let jitter = (getrandom::u64().unwrap_or(0) % 2001) as f64 / 10_000.0 - 0.1;
    Duration::from_secs_f64(base * (1.0 + jitter))
}

/// What a worker's attempt failed with.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WorkerError {
    message: String,
    discard: bool,
}

impl WorkerError {
    /// A failure worth retrying (with backoff, until the attempts run out).
    pub fn retry(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            discard: false,
        }
    }

    /// A failure no retry can fix: the job is discarded at once.
    pub fn discard(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            discard: true,
        }
    }

    /// Whether the job should be discarded rather than retried.
    pub fn is_discard(&self) -> bool {
        self.discard
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl Debug for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.discard { "discard" } else { "retry" };
        write!(f, "WorkerError({kind}: {})", self.message)
    }
}

impl From<Error> for WorkerError {
    /// Input and data errors are discarded (a retry sees the same input); everything else
    /// is retried.
    fn from(e: Error) -> Self {
        match e {
            Error::Validation(_) | Error::Serialization(_) | Error::Config(_) => Self::discard(e),
            other => Self::retry(other),
        }
    }
}

/// What a worker sees of the job it performs.
#[derive(Debug, Clone)]
pub struct JobContext {
    job: Job,
    clock: Arc<dyn Clock>,
}

impl JobContext {
    /// A context for `job` reading time from `clock`.
    pub fn new(job: Job, clock: Arc<dyn Clock>) -> Self {
        Self { job, clock }
    }

    /// The job (id, attempt, args, errors so far…).
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The current attempt, 1-based.
    pub fn attempt(&self) -> u32 {
        self.job.attempt
    }

    /// The current time from the runner's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The runner's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

/// Why performing a stored job failed, as the runner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PerformError {
    /// The args do not decode into the worker's `Args`.
    Malformed(String),
    /// The worker failed.
    Failed(WorkerError),
}

/// A worker with its args type erased, as stored in the registry.
#[async_trait]
pub(crate) trait ErasedWorker: Send + Sync + Debug {
    fn timeout(&self) -> Option<Duration>;
    fn backoff(&self, attempt: u32) -> Duration;
    async fn perform(&self, ctx: &JobContext) -> Result<(), PerformError>;
    async fn on_discard(&self, job: &Job, reason: &str) -> Result<(), WorkerError>;
}

#[derive(Debug)]
struct Erased<W>(W);

#[async_trait]
impl<W: Worker> ErasedWorker for Erased<W> {
    fn timeout(&self) -> Option<Duration> {
        self.0.timeout()
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.0.backoff(attempt)
    }

    async fn on_discard(&self, job: &Job, reason: &str) -> Result<(), WorkerError> {
        self.0.on_discard(job, reason).await
    }

    async fn perform(&self, ctx: &JobContext) -> Result<(), PerformError> {
        let args: W::Args = serde_json::from_value(ctx.job().args.clone()).map_err(|e| {
            PerformError::Malformed(format!("malformed args for worker {}: {e}", W::NAME))
        })?;
        self.0
            .perform(ctx, args)
            .await
            .map_err(PerformError::Failed)
    }
}

/// Maps worker names to workers.
#[derive(Debug, Clone, Default)]
pub struct WorkerRegistry {
    workers: HashMap<&'static str, Arc<dyn ErasedWorker>>,
}

impl WorkerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a worker under [`Worker::NAME`], replacing one of the same name.
    pub fn register<W: Worker>(&mut self, worker: W) -> &mut Self {
        self.workers.insert(W::NAME, Arc::new(Erased(worker)));
        self
    }

    /// Adds a worker, builder style.
    pub fn with<W: Worker>(mut self, worker: W) -> Self {
        self.register(worker);
        self
    }

    /// Whether a worker of this name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.workers.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.workers.keys().copied().collect();
        names.sort_unstable();
        names
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn ErasedWorker>> {
        self.workers.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_jittered_within_ten_percent() {
        for attempt in 1..=25 {
            let exact = 15.0 + f64::from(1u32 << attempt.min(20));
            for _ in 0..20 {
                let d = default_backoff(attempt).as_secs_f64();
                assert!(
                    d >= exact * 0.9 - 1e-9 && d <= exact * 1.1 + 1e-9,
                    "{attempt}: {d}"
                );
            }
        }
        let spread: std::collections::HashSet<u128> =
            (0..50).map(|_| default_backoff(10).as_millis()).collect();
        assert!(spread.len() > 5, "backoff is not jittered: {spread:?}");
    }

    #[test]
    fn worker_errors_from_core_errors() {
        assert!(
            WorkerError::from(Error::unavailable("pool"))
                .message()
                .contains("pool")
        );
        assert!(!WorkerError::from(Error::unavailable("pool")).is_discard());
        assert!(WorkerError::from(Error::from(crate::ValidationError::NoDevices)).is_discard());
    }
}
