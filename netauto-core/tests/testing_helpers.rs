//! The `testing` helpers of netauto-core (drain, assert/refute enqueued, inline mode,
//! perform), checked against the in-memory queue.

#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::workers::{AlwaysRetry, CountArgs, Counter, Discards, NoArgs};
use netauto_core::runtime::{JobContext, Worker, WorkerError, WorkerRegistry};
use netauto_core::testing::{
    DrainOptions, DrainReport, EnqueuedFilter, InlineQueue, all_enqueued, assert_enqueued,
    drain_queue, perform_job, perform_job_with_clock, refute_enqueued,
};
use netauto_core::{Clock, JobFilter, JobId, JobQueue, JobState, ManualClock, NewJob};
use netauto_memory::InMemoryJobQueue;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Enqueues the next number down until 0: jobs enqueued by jobs.
#[derive(Debug, Clone)]
struct Countdown {
    queue: Arc<dyn JobQueue>,
    seen: Arc<Mutex<Vec<u32>>>,
}

#[async_trait]
impl Worker for Countdown {
    const NAME: &'static str = "test.countdown";
    type Args = CountArgs;

    async fn perform(&self, ctx: &JobContext, args: CountArgs) -> Result<(), WorkerError> {
        self.seen.lock().unwrap().push(args.n);
        if args.n > 0 {
            let next = Self::new_job(&CountArgs { n: args.n - 1 })?;
            self.queue.enqueue(next, ctx.now()).await?;
        }
        Ok(())
    }
}

/// What a worker saw of its context: time, attempt, worker name.
type Seen = (DateTime<Utc>, u32, String);

/// Records what its context said.
#[derive(Debug, Clone, Default)]
struct Witness(Arc<Mutex<Vec<Seen>>>);

#[async_trait]
impl Worker for Witness {
    const NAME: &'static str = "test.witness";
    type Args = NoArgs;

    async fn perform(&self, ctx: &JobContext, _args: NoArgs) -> Result<(), WorkerError> {
        self.0
            .lock()
            .unwrap()
            .push((ctx.now(), ctx.attempt(), ctx.job().worker.clone()));
        Ok(())
    }
}

/// Args written under one name and read under another: they do not survive JSON.
#[derive(Debug, Serialize, Deserialize)]
struct OneWay {
    #[serde(rename(serialize = "written", deserialize = "read"))]
    value: u32,
}

#[derive(Debug)]
struct TakesOneWay;

#[async_trait]
impl Worker for TakesOneWay {
    const NAME: &'static str = "test.one_way";
    type Args = OneWay;

    async fn perform(&self, _ctx: &JobContext, _args: OneWay) -> Result<(), WorkerError> {
        Ok(())
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

struct Fixture {
    queue: Arc<dyn JobQueue>,
    clock: ManualClock,
    dyn_clock: Arc<dyn Clock>,
}

fn fixture() -> Fixture {
    let clock = ManualClock::new(t0());
    Fixture {
        queue: Arc::new(InMemoryJobQueue::new()),
        dyn_clock: Arc::new(clock.clone()),
        clock,
    }
}

impl Fixture {
    async fn enqueue(&self, job: NewJob) -> JobId {
        self.queue
            .enqueue(job, self.clock.now())
            .await
            .unwrap()
            .into_job()
            .id
    }

    async fn state(&self, id: JobId) -> JobState {
        self.queue.job(id).await.unwrap().state
    }

    async fn drain(&self, registry: &WorkerRegistry, opts: DrainOptions) -> DrainReport {
        drain_queue(&self.queue, registry, &self.dyn_clock, &opts)
            .await
            .unwrap()
    }
}

fn report(success: u64, failure: u64, discard: u64) -> DrainReport {
    DrainReport {
        success,
        failure,
        discard,
    }
}

/// The message `fut` panics with.
async fn panic_message(fut: impl Future<Output = ()> + Send + 'static) -> String {
    let err = tokio::spawn(fut).await.expect_err("expected a panic");
    let payload = err.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test]
async fn drain_queue_counts_successes_failures_and_discards() {
    let f = fixture();
    let counter = Counter::default();
    let registry = WorkerRegistry::new()
        .with(counter.clone())
        .with(AlwaysRetry)
        .with(Discards);
    let ok1 = f
        .enqueue(Counter::new_job(&CountArgs { n: 1 }).unwrap())
        .await;
    let ok2 = f
        .enqueue(Counter::new_job(&CountArgs { n: 2 }).unwrap())
        .await;
    let retry = f.enqueue(AlwaysRetry::new_job(&NoArgs {}).unwrap()).await;
    let discard = f.enqueue(Discards::new_job(&NoArgs {}).unwrap()).await;
    let elsewhere = f
        .enqueue(NewJob::new("other", Counter::NAME, json!({"n": 100})))
        .await;

    assert_eq!(
        f.drain(&registry, DrainOptions::new("default")).await,
        report(2, 1, 1)
    );
    assert_eq!(counter.0.load(Ordering::SeqCst), 3);
    assert_eq!(f.state(ok1).await, JobState::Completed);
    assert_eq!(f.state(ok2).await, JobState::Completed);
    assert_eq!(f.state(retry).await, JobState::Retryable);
    assert_eq!(f.state(discard).await, JobState::Discarded);
    assert_eq!(
        f.state(elsewhere).await,
        JobState::Available,
        "another queue was drained"
    );

    // The retry waits for its backoff: nothing to do now, even with recursion.
    assert_eq!(
        f.drain(&registry, DrainOptions::new("default").with_recursion())
            .await,
        report(0, 0, 0)
    );
}

#[tokio::test]
async fn with_scheduled_runs_future_jobs_and_pending_retries() {
    let f = fixture();
    let counter = Counter::default();
    let registry = WorkerRegistry::new()
        .with(counter.clone())
        .with(AlwaysRetry);
    let later = f
        .enqueue(
            Counter::new_job(&CountArgs { n: 5 })
                .unwrap()
                .with_scheduled_at(t0() + TimeDelta::hours(6)),
        )
        .await;
    assert_eq!(f.state(later).await, JobState::Scheduled);

    assert_eq!(
        f.drain(&registry, DrainOptions::new("default")).await,
        report(0, 0, 0)
    );
    assert_eq!(f.state(later).await, JobState::Scheduled);
    assert_eq!(
        f.drain(&registry, DrainOptions::new("default").with_scheduled())
            .await,
        report(1, 0, 0)
    );
    assert_eq!(f.state(later).await, JobState::Completed);
    assert_eq!(counter.0.load(Ordering::SeqCst), 5);

    // With recursion too, retries run through their backoff until the attempts run out.
    let retry = f.enqueue(AlwaysRetry::new_job(&NoArgs {}).unwrap()).await;
    assert_eq!(
        f.drain(
            &registry,
            DrainOptions::new("default")
                .with_scheduled()
                .with_recursion()
        )
        .await,
        report(0, 2, 1)
    );
    let job = f.queue.job(retry).await.unwrap();
    assert_eq!(
        (job.state, job.attempt, job.errors.len()),
        (JobState::Discarded, 3, 3)
    );
}

#[tokio::test]
async fn with_recursion_drains_jobs_enqueued_by_jobs() {
    let f = fixture();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let registry = WorkerRegistry::new().with(Countdown {
        queue: f.queue.clone(),
        seen: seen.clone(),
    });
    f.enqueue(Countdown::new_job(&CountArgs { n: 3 }).unwrap())
        .await;

    // One pass runs only what was waiting when it started.
    assert_eq!(
        f.drain(&registry, DrainOptions::new("default")).await,
        report(1, 0, 0)
    );
    assert_eq!(*seen.lock().unwrap(), [3]);
    assert_enqueued(
        &*f.queue,
        &EnqueuedFilter::of::<Countdown>().with_args(json!({"n": 2})),
    )
    .await;

    assert_eq!(
        f.drain(&registry, DrainOptions::new("default").with_recursion())
            .await,
        report(3, 0, 0)
    );
    assert_eq!(*seen.lock().unwrap(), [3, 2, 1, 0]);
    refute_enqueued(&*f.queue, &EnqueuedFilter::any()).await;
}

#[tokio::test]
async fn assert_and_refute_enqueued_match_worker_queue_args_and_state() {
    let f = fixture();
    let first = f
        .enqueue(NewJob::new(
            "default",
            Counter::NAME,
            json!({"n": 3, "tags": {"site": "lab", "rack": 4}}),
        ))
        .await;
    let second = f
        .enqueue(Counter::new_job(&CountArgs { n: 4 }).unwrap())
        .await;
    f.enqueue(NewJob::new("other", Discards::NAME, json!({})))
        .await;

    let q = &*f.queue;
    assert_enqueued(q, &EnqueuedFilter::of::<Counter>()).await;
    assert_enqueued(
        q,
        &EnqueuedFilter::of::<Counter>().with_args(json!({"tags": {"site": "lab"}})),
    )
    .await;
    assert_enqueued(
        q,
        &EnqueuedFilter::worker(Discards::NAME).with_queue("other"),
    )
    .await;
    refute_enqueued(
        q,
        &EnqueuedFilter::of::<Counter>().with_args(json!({"n": 5})),
    )
    .await;
    refute_enqueued(q, &EnqueuedFilter::of::<Counter>().with_queue("other")).await;
    refute_enqueued(q, &EnqueuedFilter::of::<AlwaysRetry>()).await;

    let ids = |jobs: Vec<netauto_core::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(
        ids(all_enqueued(q, &EnqueuedFilter::of::<Counter>())
            .await
            .unwrap()),
        [first, second]
    );

    // Only waiting jobs count, unless asked for other states.
    let counter = Counter::default();
    f.drain(
        &WorkerRegistry::new().with(counter),
        DrainOptions::new("default"),
    )
    .await;
    refute_enqueued(q, &EnqueuedFilter::of::<Counter>()).await;
    assert_enqueued(
        q,
        &EnqueuedFilter::of::<Counter>()
            .with_args(json!({"n": 4}))
            .with_states([JobState::Completed]),
    )
    .await;
}

#[tokio::test]
async fn assert_enqueued_panics_listing_what_is_enqueued() {
    let f = fixture();
    let msg = panic_message({
        let queue = f.queue.clone();
        async move { assert_enqueued(&*queue, &EnqueuedFilter::of::<Counter>()).await }
    })
    .await;
    assert!(msg.contains("expected a job matching"), "{msg}");
    assert!(msg.contains("test.counter"), "{msg}");
    assert!(msg.contains("enqueued: nothing"), "{msg}");

    let id = f
        .enqueue(Counter::new_job(&CountArgs { n: 3 }).unwrap())
        .await;
    let msg = panic_message({
        let queue = f.queue.clone();
        async move {
            assert_enqueued(
                &*queue,
                &EnqueuedFilter::of::<Counter>().with_args(json!({"n": 4})),
            )
            .await;
        }
    })
    .await;
    assert!(msg.contains("expected a job matching"), "{msg}");
    assert!(
        msg.contains(&format!(
            "#{id} test.counter on default [available] args {{\"n\":3}}"
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn refute_enqueued_panics_listing_the_matches() {
    let f = fixture();
    let id = f
        .enqueue(Counter::new_job(&CountArgs { n: 3 }).unwrap())
        .await;
    let msg = panic_message({
        let queue = f.queue.clone();
        async move { refute_enqueued(&*queue, &EnqueuedFilter::of::<Counter>()).await }
    })
    .await;
    assert!(msg.contains("expected no job matching"), "{msg}");
    assert!(
        msg.contains(&format!(
            "found \n  #{id} test.counter on default [available] args {{\"n\":3}}"
        )),
        "{msg}"
    );
}

#[tokio::test]
#[should_panic(expected = "expected a job matching")]
async fn assert_enqueued_fails_a_test() {
    let f = fixture();
    f.enqueue(NewJob::new("default", Discards::NAME, json!({})))
        .await;
    assert_enqueued(&*f.queue, &EnqueuedFilter::of::<Counter>()).await;
}

#[tokio::test]
async fn inline_queue_runs_each_job_on_enqueue() {
    let f = fixture();
    let counter = Counter::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let registry = WorkerRegistry::new()
        .with(counter.clone())
        .with(AlwaysRetry)
        .with(Countdown {
            queue: f.queue.clone(),
            seen: seen.clone(),
        });
    let inline = InlineQueue::new(f.queue.clone(), registry, f.dyn_clock.clone());

    let out = inline
        .enqueue(
            Counter::new_job(&CountArgs { n: 2 })
                .unwrap()
                .with_unique_key("once"),
            f.clock.now(),
        )
        .await
        .unwrap();
    assert!(out.is_inserted());
    assert_eq!(out.job().state, JobState::Completed);
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);

    // A duplicate is not run again.
    let dup = inline
        .enqueue(
            Counter::new_job(&CountArgs { n: 2 })
                .unwrap()
                .with_unique_key("once"),
            f.clock.now(),
        )
        .await
        .unwrap();
    assert!(!dup.is_inserted());
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);

    // Jobs enqueued by an inline job run too.
    inline
        .enqueue(
            Countdown::new_job(&CountArgs { n: 2 }).unwrap(),
            f.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [2, 1, 0]);

    let all = inline
        .enqueue_all(
            vec![
                Counter::new_job(&CountArgs { n: 10 }).unwrap(),
                AlwaysRetry::new_job(&NoArgs {}).unwrap(),
                Counter::new_job(&CountArgs { n: 20 }).unwrap(),
            ],
            f.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(counter.0.load(Ordering::SeqCst), 32);
    assert_eq!(
        all.iter().map(|e| e.job().state).collect::<Vec<_>>(),
        [
            JobState::Completed,
            JobState::Retryable,
            JobState::Completed
        ],
        "enqueue_all answers the jobs as they are after running, like enqueue"
    );
    let states: Vec<JobState> = {
        let mut v = Vec::new();
        for e in &all {
            v.push(f.state(e.job().id).await);
        }
        v
    };
    assert_eq!(
        states,
        [
            JobState::Completed,
            JobState::Retryable,
            JobState::Completed
        ]
    );
    assert_eq!(
        f.queue
            .list(&JobFilter::all().with_states([JobState::Available]))
            .await
            .unwrap(),
        []
    );
}

#[tokio::test]
async fn perform_job_runs_a_worker_without_a_queue() {
    let counter = Counter::default();
    perform_job(&counter, CountArgs { n: 7 }).await.unwrap();
    assert_eq!(counter.0.load(Ordering::SeqCst), 7);

    let err = perform_job(&Discards, NoArgs {}).await.unwrap_err();
    assert!(err.is_discard());
    assert_eq!(err.message(), "bad input");
    let err = perform_job(&AlwaysRetry, NoArgs {}).await.unwrap_err();
    assert!(!err.is_discard());

    let clock = ManualClock::new(t0());
    let witness = Witness::default();
    perform_job_with_clock(&witness, NoArgs {}, Arc::new(clock))
        .await
        .unwrap();
    assert_eq!(
        *witness.0.lock().unwrap(),
        [(t0(), 1, Witness::NAME.to_owned())]
    );

    // Args go through JSON as they would in the queue.
    let err = perform_job(&TakesOneWay, OneWay { value: 1 })
        .await
        .unwrap_err();
    assert!(err.is_discard());
    assert!(
        err.message().contains("do not round-trip through JSON"),
        "{}",
        err.message()
    );
}
