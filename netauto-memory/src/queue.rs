//! [`InMemoryJobQueue`]: the [`JobQueue`] contract over a mutex-guarded map.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netauto_core::{
    ClaimRequest, Conflict, Enqueued, Error, FailAction, Job, JobFailure, JobFilter, JobId,
    JobQueue, JobState, NewJob, Result,
};

/// An in-process [`JobQueue`].
///
/// Clones share one queue. Every operation takes a short, synchronous lock (never held across
/// an `.await`), so concurrent claimers are serialised and no job is handed out twice. Ids
/// start at 1, unique keys block duplicates among jobs not discarded or cancelled, and fenced operations answer
/// [`Conflict::StaleAttempt`] exactly like the SQL backends.
#[derive(Debug, Clone, Default)]
pub struct InMemoryJobQueue {
    state: Arc<Mutex<QueueState>>,
}

impl InMemoryJobQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the queue's state. Also used by the run store to enqueue a bulk's jobs in the
    /// same step as the bulk record.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, QueueState>> {
        self.state
            .lock()
            .map_err(|_| Error::backend("in-memory job queue lock poisoned by a panic"))
    }
}

/// Claim order within one queue: priority, then `scheduled_at`, then id.
type ReadyKey = (i16, DateTime<Utc>, JobId);

/// The jobs and the indexes that keep claim, rescue and unique-key lookups cheap.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    last_id: i64,
    jobs: BTreeMap<JobId, Job>,
    /// Jobs holding their unique key (not discarded or cancelled), by key.
    unique: HashMap<String, JobId>,
    /// Claimable-state jobs (whatever their `scheduled_at`) per queue, in claim order.
    ready: HashMap<String, BTreeSet<ReadyKey>>,
    /// Executing jobs by lease expiry.
    leases: BTreeSet<(DateTime<Utc>, JobId)>,
    /// Paused queues and since when.
    paused: BTreeMap<String, DateTime<Utc>>,
}

impl QueueState {
    /// Validates every job, then inserts them in order (or resolves them to their live
    /// duplicates). Nothing is inserted when any job is invalid.
    pub(crate) fn enqueue_all(
        &mut self,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Enqueued>> {
        for job in &jobs {
            job.validate()?;
        }
        Ok(jobs.into_iter().map(|job| self.insert(job, now)).collect())
    }

    /// Inserts one validated job, or answers the job holding its unique key.
    fn insert(&mut self, new: NewJob, now: DateTime<Utc>) -> Enqueued {
        if let Some(existing) = new
            .unique_key
            .as_ref()
            .and_then(|key| self.unique.get(key))
            .and_then(|id| self.jobs.get(id))
        {
            return Enqueued::Existing(existing.clone());
        }
        self.last_id += 1;
        let job = Job {
            id: JobId(self.last_id),
            state: new.initial_state(now),
            queue: new.queue,
            worker: new.worker,
            args: new.args,
            attempt: 0,
            max_attempts: new.max_attempts,
            priority: new.priority,
            inserted_at: now,
            scheduled_at: new.scheduled_at.unwrap_or(now),
            attempted_at: None,
            finished_at: None,
            unique_key: new.unique_key,
            attempted_by: None,
            lease_expires_at: None,
            errors: Vec::new(),
        };
        self.index(&job);
        self.jobs.insert(job.id, job.clone());
        Enqueued::Inserted(job)
    }

    /// Adds `job` to the indexes its state calls for.
    fn index(&mut self, job: &Job) {
        if job.state.is_claimable() {
            self.ready.entry(job.queue.clone()).or_default().insert((
                job.priority,
                job.scheduled_at,
                job.id,
            ));
        }
        if let (JobState::Executing, Some(until)) = (job.state, job.lease_expires_at) {
            self.leases.insert((until, job.id));
        }
        if let (true, Some(key)) = (job.state.holds_unique_key(), &job.unique_key) {
            self.unique.insert(key.clone(), job.id);
        }
    }

    /// Removes `job` from every index it is in.
    fn unindex(&mut self, job: &Job) {
        if job.state.is_claimable()
            && let Some(ready) = self.ready.get_mut(&job.queue)
        {
            ready.remove(&(job.priority, job.scheduled_at, job.id));
            if ready.is_empty() {
                self.ready.remove(&job.queue);
            }
        }
        if let Some(until) = job.lease_expires_at {
            self.leases.remove(&(until, job.id));
        }
        if let Some(key) = &job.unique_key
            && self.unique.get(key) == Some(&job.id)
        {
            self.unique.remove(key);
        }
    }

    /// Applies `change` to job `id`, keeping the indexes in step. Answers the new job.
    /// Ends a job that is not terminal in `end` (cancelled or discarded).
    fn end_job(&mut self, id: JobId, end: JobState, now: DateTime<Utc>) -> Result<Job> {
        let current = self.jobs.get(&id).ok_or_else(|| Error::job_not_found(id))?;
        if current.state.is_terminal() {
            return Err(Conflict::JobFinished(id).into());
        }
        self.update(id, |job| {
            job.state = end;
            job.finished_at = Some(now);
            job.lease_expires_at = None;
        })
    }

    fn update(&mut self, id: JobId, change: impl FnOnce(&mut Job)) -> Result<Job> {
        let mut job = self
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::job_not_found(id))?;
        self.unindex(&job);
        change(&mut job);
        self.index(&job);
        self.jobs.insert(id, job.clone());
        Ok(job)
    }

    /// Answers `Ok` when `id` is executing `attempt`, else the fencing error.
    fn fence(&self, id: JobId, attempt: u32) -> Result<()> {
        let job = self.jobs.get(&id).ok_or_else(|| Error::job_not_found(id))?;
        if job.state == JobState::Executing && job.attempt == attempt {
            Ok(())
        } else {
            Err(Conflict::StaleAttempt { job: id, attempt }.into())
        }
    }

    fn claim(&mut self, req: &ClaimRequest, now: DateTime<Utc>) -> Vec<Job> {
        if self.paused.contains_key(&req.queue) {
            return Vec::new();
        }
        let ids: Vec<JobId> = self
            .ready
            .get(&req.queue)
            .map(|ready| {
                ready
                    .iter()
                    .filter(|(_, at, _)| *at <= now)
                    .take(req.limit)
                    .map(|(_, _, id)| *id)
                    .collect()
            })
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| {
                self.update(id, |job| {
                    job.state = JobState::Executing;
                    job.attempt = job.attempt.saturating_add(1);
                    job.attempted_at = Some(now);
                    job.attempted_by = Some(req.claimer.clone());
                    job.lease_expires_at = Some(now + req.lease);
                })
                .ok()
            })
            .collect()
    }

    fn rescue_expired(&mut self, now: DateTime<Utc>) -> Vec<JobId> {
        let expired: Vec<JobId> = self
            .leases
            .iter()
            .take_while(|(until, _)| *until < now)
            .map(|(_, id)| *id)
            .collect();
        let mut rescued = Vec::with_capacity(expired.len());
        for id in expired {
            let changed = self.update(id, |job| {
                job.lease_expires_at = None;
                if job.attempt < job.max_attempts {
                    job.state = JobState::Available;
                } else {
                    job.state = JobState::Discarded;
                    job.finished_at = Some(now);
                    job.errors.push(JobFailure {
                        attempt: job.attempt,
                        at: now,
                        error: "lease expired and no attempts remain".into(),
                    });
                }
            });
            if changed.is_ok() {
                rescued.push(id);
            }
        }
        rescued.sort_unstable();
        rescued
    }

    fn prune(&mut self, finished_before: DateTime<Utc>) -> u64 {
        let doomed: Vec<JobId> = self
            .jobs
            .values()
            .filter(|job| {
                job.state.is_terminal() && job.finished_at.is_some_and(|at| at < finished_before)
            })
            .map(|job| job.id)
            .collect();
        for id in &doomed {
            if let Some(job) = self.jobs.remove(id) {
                self.unindex(&job);
            }
        }
        doomed.len() as u64
    }
}

#[async_trait]
impl JobQueue for InMemoryJobQueue {
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
        job.validate()?;
        Ok(self.lock()?.insert(job, now))
    }

    async fn enqueue_all(&self, jobs: Vec<NewJob>, now: DateTime<Utc>) -> Result<Vec<Enqueued>> {
        self.lock()?.enqueue_all(jobs, now)
    }

    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Job>> {
        Ok(self.lock()?.claim(req, now))
    }

    async fn heartbeat(&self, id: JobId, attempt: u32, lease_until: DateTime<Utc>) -> Result<()> {
        let mut state = self.lock()?;
        state.fence(id, attempt)?;
        state.update(id, |job| job.lease_expires_at = Some(lease_until))?;
        Ok(())
    }

    async fn complete(&self, id: JobId, attempt: u32, now: DateTime<Utc>) -> Result<()> {
        let mut state = self.lock()?;
        state.fence(id, attempt)?;
        state.update(id, |job| {
            job.state = JobState::Completed;
            job.finished_at = Some(now);
            job.lease_expires_at = None;
        })?;
        Ok(())
    }

    async fn fail(
        &self,
        id: JobId,
        attempt: u32,
        error: &str,
        action: FailAction,
        now: DateTime<Utc>,
    ) -> Result<JobState> {
        let mut state = self.lock()?;
        state.fence(id, attempt)?;
        let job = state.update(id, |job| {
            job.errors.push(JobFailure {
                attempt,
                at: now,
                error: error.to_owned(),
            });
            job.lease_expires_at = None;
            match action {
                FailAction::RetryAt(at) if job.attempt < job.max_attempts => {
                    job.state = JobState::Retryable;
                    job.scheduled_at = at;
                }
                FailAction::RetryAt(_) | FailAction::Discard => {
                    job.state = JobState::Discarded;
                    job.finished_at = Some(now);
                }
            }
        })?;
        Ok(job.state)
    }

    async fn release(&self, id: JobId, attempt: u32, now: DateTime<Utc>) -> Result<()> {
        let mut state = self.lock()?;
        state.fence(id, attempt)?;
        state.update(id, |job| {
            job.state = JobState::Available;
            job.scheduled_at = now;
            job.lease_expires_at = None;
        })?;
        Ok(())
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<Job> {
        self.lock()?.end_job(id, JobState::Cancelled, now)
    }

    async fn rescue_expired(&self, now: DateTime<Utc>) -> Result<Vec<JobId>> {
        Ok(self.lock()?.rescue_expired(now))
    }

    async fn pause_queue(&self, queue: &str, now: DateTime<Utc>) -> Result<()> {
        self.lock()?.paused.entry(queue.to_owned()).or_insert(now);
        Ok(())
    }

    async fn resume_queue(&self, queue: &str) -> Result<()> {
        self.lock()?.paused.remove(queue);
        Ok(())
    }

    async fn paused_queues(&self) -> Result<Vec<netauto_core::QueuePause>> {
        Ok(self
            .lock()?
            .paused
            .iter()
            .map(|(queue, at)| netauto_core::QueuePause {
                queue: queue.clone(),
                paused_at: *at,
            })
            .collect())
    }

    async fn retry_job(&self, id: JobId, now: DateTime<Utc>) -> Result<Job> {
        let mut state = self.lock()?;
        let current = state
            .jobs
            .get(&id)
            .ok_or_else(|| Error::job_not_found(id))?;
        if matches!(current.state, JobState::Executing | JobState::Completed) {
            return Err(Conflict::JobActive(id).into());
        }
        state.update(id, |job| {
            job.state = JobState::Available;
            job.scheduled_at = now;
            job.finished_at = None;
            job.lease_expires_at = None;
            if job.attempt >= job.max_attempts {
                job.max_attempts = job.attempt + 1;
            }
        })
    }

    async fn discard_job(&self, id: JobId, now: DateTime<Utc>) -> Result<Job> {
        self.lock()?.end_job(id, JobState::Discarded, now)
    }

    async fn prune(&self, finished_before: DateTime<Utc>) -> Result<u64> {
        Ok(self.lock()?.prune(finished_before))
    }

    async fn job(&self, id: JobId) -> Result<Job> {
        self.lock()?
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::job_not_found(id))
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let state = self.lock()?;
        Ok(state
            .jobs
            .values()
            .filter(|job| filter.matches(job))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }
}
