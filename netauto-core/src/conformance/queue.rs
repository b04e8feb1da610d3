//! Checks of the [`JobQueue`](crate::JobQueue) contract.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{Backend, at};
use crate::{ClaimRequest, Enqueued, Error, FailAction, Job, JobFilter, JobId, JobState, NewJob};

/// A job on `queue` for the worker `conformance`.
pub(super) fn job(queue: &str) -> NewJob {
    NewJob::new(queue, "conformance", json!({}))
}

pub(super) async fn enqueue(b: &Backend, new: NewJob, now: DateTime<Utc>) -> Job {
    match b.queue.enqueue(new.clone(), now).await {
        Ok(Enqueued::Inserted(job)) => job,
        other => panic!("enqueue({new:?}) should insert a job, got {other:?}"),
    }
}

pub(super) async fn get(b: &Backend, id: JobId) -> Job {
    b.queue
        .job(id)
        .await
        .unwrap_or_else(|e| panic!("job({id}) failed: {e}"))
}

pub(super) async fn claim(b: &Backend, req: &ClaimRequest, now: DateTime<Utc>) -> Vec<Job> {
    b.queue
        .claim(req, now)
        .await
        .unwrap_or_else(|e| panic!("claim({req:?}) failed: {e}"))
}

/// Enqueues `new` on a queue of its own and claims it with a lease of `lease_secs`.
pub(super) async fn executing(
    b: &Backend,
    new: NewJob,
    now: DateTime<Utc>,
    lease_secs: i64,
) -> Job {
    let queue = new.queue.clone();
    let id = enqueue(b, new, now).await.id;
    let req = ClaimRequest::new(queue, 1, "worker-1").with_lease(TimeDelta::seconds(lease_secs));
    let claimed = claim(b, &req, now).await;
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [id],
        "claiming the only job of a queue should hand out exactly that job"
    );
    claimed.into_iter().next().unwrap()
}

/// Many concurrent claimers never get the same job: 200 jobs, 8 tasks claiming 3 at a time.
pub async fn claim_is_exclusive(b: &Backend) {
    let now = at(0);
    let jobs = (0..200)
        .map(|i| NewJob::new("exclusive", "conformance", json!({ "i": i })))
        .collect();
    let inserted = b.queue.enqueue_all(jobs, now).await.expect("enqueue_all");
    assert!(inserted.iter().all(Enqueued::is_inserted));
    let start = Arc::new(Barrier::new(8));
    let mut tasks = JoinSet::new();
    for t in 0..8 {
        let queue = b.queue.clone();
        let start = start.clone();
        tasks.spawn(async move {
            start.wait().await;
            let claimer = format!("claimer-{t}");
            let req = ClaimRequest::new("exclusive", 3, claimer.clone());
            let mut got = Vec::new();
            loop {
                let batch = queue.claim(&req, now).await.expect("claim");
                assert!(batch.len() <= 3, "claim returned {} > limit 3", batch.len());
                if batch.is_empty() {
                    return got;
                }
                for job in batch {
                    assert_eq!(job.attempted_by.as_deref(), Some(claimer.as_str()));
                    got.push(job);
                }
                tokio::task::yield_now().await;
            }
        });
    }
    let mut seen: BTreeMap<JobId, usize> = BTreeMap::new();
    while let Some(got) = tasks.join_next().await {
        for job in got.expect("claimer task panicked") {
            assert_eq!(job.state, JobState::Executing, "{job:?}");
            assert_eq!(job.attempt, 1, "{job:?}");
            *seen.entry(job.id).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "jobs handed out more than once: {twice:?}"
    );
    let expected: Vec<JobId> = inserted.iter().map(|e| e.job().id).collect();
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        expected,
        "every job must be claimed exactly once"
    );
    let executing = b
        .queue
        .list(&JobFilter::all().with_states([JobState::Executing]))
        .await
        .expect("list");
    assert_eq!(executing.len(), 200);
}

/// Claims follow `priority`, then `scheduled_at`, then `id`, and set the lease fields.
pub async fn claim_order_is_priority_scheduled_at_id(b: &Backend) {
    let t0 = at(0);
    let specs: [(&str, i16, Option<i64>); 7] = [
        ("a", 2, Some(10)),
        ("b", 0, Some(50)),
        ("c", 1, Some(5)),
        ("d", 0, Some(20)),
        ("e", 1, Some(5)),
        ("f", 0, Some(50)),
        ("g", 0, None),
    ];
    let mut ids = BTreeMap::new();
    for (name, priority, sched) in specs {
        let mut new =
            NewJob::new("order", "conformance", json!({ "name": name })).with_priority(priority);
        if let Some(s) = sched {
            new = new.with_scheduled_at(at(s));
        }
        ids.insert(enqueue(b, new, t0).await.id, name);
    }
    let now = at(100);
    let lease = TimeDelta::seconds(45);
    let req = ClaimRequest::new("order", 1, "orderly").with_lease(lease);
    let mut order = Vec::new();
    loop {
        let batch = claim(b, &req, now).await;
        assert!(batch.len() <= 1, "limit 1 returned {}", batch.len());
        let Some(job) = batch.into_iter().next() else {
            break;
        };
        assert_eq!(job.state, JobState::Executing);
        assert_eq!(job.attempt, 1);
        assert_eq!(job.attempted_at, Some(now));
        assert_eq!(job.attempted_by.as_deref(), Some("orderly"));
        assert_eq!(job.lease_expires_at, Some(now + lease));
        assert_eq!(
            job,
            get(b, job.id).await,
            "claim must answer the stored job"
        );
        order.push(ids[&job.id]);
    }
    assert_eq!(order, ["g", "d", "b", "f", "c", "e", "a"]);
}

/// Future jobs wait for their time; a claim takes at most `limit` jobs of its own queue.
pub async fn claim_respects_schedule_limit_and_queue(b: &Backend) {
    let t0 = at(0);
    let later = enqueue(b, job("sched").with_scheduled_at(at(60)), t0).await;
    assert_eq!(later.state, JobState::Scheduled);
    assert_eq!(later.scheduled_at, at(60));
    let mut now_ids = Vec::new();
    for _ in 0..3 {
        let j = enqueue(b, job("sched"), t0).await;
        assert_eq!(j.state, JobState::Available);
        assert_eq!(j.scheduled_at, t0, "no scheduled_at means now");
        now_ids.push(j.id);
    }
    let other: Vec<JobId> = [
        enqueue(b, job("other"), t0).await,
        enqueue(b, job("other"), t0).await,
    ]
    .iter()
    .map(|j| j.id)
    .collect();

    let none = claim(b, &ClaimRequest::new("sched", 0, "w"), t0).await;
    assert!(none.is_empty(), "limit 0 must claim nothing, got {none:?}");
    let first = claim(b, &ClaimRequest::new("sched", 2, "w"), t0).await;
    assert_eq!(first.len(), 2, "limit 2 with 3 due jobs");
    let rest = claim(b, &ClaimRequest::new("sched", 10, "w"), at(59)).await;
    let mut claimed: Vec<JobId> = first.iter().chain(&rest).map(|j| j.id).collect();
    claimed.sort_unstable();
    assert_eq!(
        claimed, now_ids,
        "only due jobs of queue `sched` are claimed"
    );
    assert_eq!(get(b, later.id).await.state, JobState::Scheduled);
    let due = claim(b, &ClaimRequest::new("sched", 10, "w"), at(60)).await;
    assert_eq!(
        due.iter().map(|j| j.id).collect::<Vec<_>>(),
        [later.id],
        "a job is claimable once scheduled_at <= now"
    );
    assert!(
        claim(b, &ClaimRequest::new("missing", 10, "w"), at(60))
            .await
            .is_empty()
    );
    for id in other {
        assert_eq!(
            get(b, id).await.state,
            JobState::Available,
            "other queue untouched"
        );
    }
}

/// A unique key is held by every job not discarded or cancelled: a live or completed job
/// answers the existing job; a discarded, cancelled or pruned one lets a new job in.
pub async fn unique_key_blocks_duplicates_until_discarded(b: &Backend) {
    let t0 = at(0);
    let keyed = |n: i32| NewJob::new("uniq", "conformance", json!({ "n": n })).with_unique_key("k");
    let first = enqueue(b, keyed(1), t0).await;
    let again = b.queue.enqueue(keyed(2), at(1)).await.expect("enqueue");
    assert_eq!(
        again,
        Enqueued::Existing(first.clone()),
        "available job blocks its key"
    );

    let req = ClaimRequest::new("uniq", 1, "w");
    let running = claim(b, &req, at(2)).await;
    assert_eq!(running.len(), 1);
    let dup = b.queue.enqueue(keyed(3), at(3)).await.expect("enqueue");
    assert!(
        !dup.is_inserted() && dup.job().id == first.id,
        "executing job blocks: {dup:?}"
    );
    let st = b
        .queue
        .fail(first.id, 1, "boom", FailAction::RetryAt(at(4)), at(3))
        .await
        .expect("fail");
    assert_eq!(st, JobState::Retryable);
    let dup = b.queue.enqueue(keyed(4), at(4)).await.expect("enqueue");
    assert!(
        !dup.is_inserted() && dup.job().id == first.id,
        "retryable job blocks: {dup:?}"
    );
    assert_eq!(
        dup.job().state,
        JobState::Retryable,
        "Existing carries the live job"
    );

    claim(b, &req, at(5)).await;
    b.queue
        .complete(first.id, 2, at(6))
        .await
        .expect("complete");
    let dup = b.queue.enqueue(keyed(5), at(7)).await.expect("enqueue");
    assert!(
        !dup.is_inserted() && dup.job().id == first.id && dup.job().state == JobState::Completed,
        "a completed job keeps its key (a cron slot runs once): {dup:?}"
    );
    assert_eq!(b.queue.prune(at(8)).await.expect("prune"), 1);
    let second = enqueue(b, keyed(5), at(8)).await;
    assert_ne!(second.id, first.id, "a pruned job frees its key");
    b.queue.cancel(second.id, at(8)).await.expect("cancel");
    let third = enqueue(b, keyed(6), at(9)).await;
    claim(b, &req, at(9)).await;
    b.queue
        .fail(third.id, 1, "bad", FailAction::Discard, at(10))
        .await
        .expect("fail");
    let fourth = enqueue(b, keyed(7), at(11)).await;
    assert_eq!(fourth.unique_key.as_deref(), Some("k"));
    enqueue(b, job("uniq").with_unique_key("other"), at(11)).await;
    enqueue(b, job("uniq"), at(11)).await;
    enqueue(b, job("uniq"), at(11)).await;
    let all = b.queue.list(&JobFilter::all()).await.expect("list");
    assert_eq!(
        all.len(),
        6,
        "exactly the inserted, unpruned jobs exist: {all:?}"
    );
}

/// `enqueue_all` inserts nothing when one job is invalid, and resolves duplicate unique keys
/// (inside the batch and against live jobs) to the first job.
pub async fn enqueue_all_is_all_or_nothing(b: &Backend) {
    let batch = vec![job("batch"), job("batch").with_unique_key("x"), job("")];
    assert_err!(
        b.queue.enqueue_all(batch, at(0)).await,
        Error::Validation(_),
        "a batch with an empty queue name"
    );
    let bad_first = vec![job("batch").with_priority(42), job("batch")];
    assert_err!(
        b.queue.enqueue_all(bad_first, at(0)).await,
        Error::Validation(_),
        "a batch with priority 42"
    );
    let none = b.queue.list(&JobFilter::all()).await.expect("list");
    assert!(
        none.is_empty(),
        "a rejected batch inserts nothing: {none:?}"
    );

    let pre = enqueue(b, job("batch").with_unique_key("pre"), at(0)).await;
    let answers = b
        .queue
        .enqueue_all(
            vec![
                NewJob::new("batch", "conformance", json!({ "n": 1 })).with_unique_key("dup"),
                job("batch"),
                NewJob::new("batch", "conformance", json!({ "n": 2 })).with_unique_key("dup"),
                job("batch").with_unique_key("pre"),
            ],
            at(1),
        )
        .await
        .expect("enqueue_all");
    assert_eq!(answers.len(), 4, "one answer per input job");
    let (Enqueued::Inserted(x), Enqueued::Inserted(y)) = (&answers[0], &answers[1]) else {
        panic!("the first two jobs should be inserted: {answers:?}");
    };
    assert_eq!(x.args, json!({ "n": 1 }));
    assert_ne!(x.id, y.id);
    assert_eq!(
        answers[2],
        Enqueued::Existing(x.clone()),
        "in-batch duplicate → first"
    );
    assert_eq!(
        answers[3],
        Enqueued::Existing(pre.clone()),
        "live duplicate → existing"
    );
    let all: Vec<JobId> = b
        .queue
        .list(&JobFilter::all())
        .await
        .expect("list")
        .iter()
        .map(|j| j.id)
        .collect();
    let mut expected = vec![pre.id, x.id, y.id];
    expected.sort_unstable();
    assert_eq!(all, expected);
    assert!(
        b.queue
            .enqueue_all(Vec::new(), at(2))
            .await
            .expect("empty batch")
            .is_empty()
    );
}

/// `list` filters by queue, worker and states, ascending id, at most `limit`.
pub async fn list_filters_jobs(b: &Backend) {
    let a1 = enqueue(b, NewJob::new("la", "alpha", json!({})), at(0)).await;
    let b1 = enqueue(b, NewJob::new("lb", "beta", json!({})), at(0)).await;
    let a2 = enqueue(b, NewJob::new("la", "beta", json!({})), at(0)).await;
    let a3 = enqueue(
        b,
        NewJob::new("la", "alpha", json!({})).with_scheduled_at(at(99)),
        at(0),
    )
    .await;
    let ids = |jobs: Vec<Job>| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    let list = |f: JobFilter| async move { ids(b.queue.list(&f).await.expect("list")) };
    assert_eq!(list(JobFilter::all()).await, [a1.id, b1.id, a2.id, a3.id]);
    assert_eq!(
        list(JobFilter::all().with_queue("la")).await,
        [a1.id, a2.id, a3.id]
    );
    assert_eq!(
        list(JobFilter::all().with_worker("beta")).await,
        [b1.id, a2.id]
    );
    assert_eq!(
        list(JobFilter::all().with_queue("la").with_worker("alpha")).await,
        [a1.id, a3.id]
    );
    assert_eq!(
        list(JobFilter::all().with_states([JobState::Scheduled])).await,
        [a3.id]
    );
    assert_eq!(
        list(
            JobFilter::all()
                .with_states([JobState::Scheduled, JobState::Available])
                .with_limit(2)
        )
        .await,
        [a1.id, b1.id]
    );
    assert!(
        list(JobFilter::all().with_states([JobState::Completed]))
            .await
            .is_empty()
    );
    assert_eq!(get(b, a2.id).await, a2);
    assert_err!(
        b.queue.job(JobId(i64::MAX)).await,
        Error::NotFound { .. },
        "unknown job"
    );
}

/// `counts` answers jobs per queue and state, ordered by queue then state, in step with
/// `list`.
pub async fn counts_by_queue_and_state(b: &Backend) {
    enqueue(b, NewJob::new("ca", "w", json!({})), at(0)).await;
    enqueue(b, NewJob::new("ca", "w", json!({})), at(0)).await;
    enqueue(
        b,
        NewJob::new("ca", "w", json!({})).with_scheduled_at(at(99)),
        at(0),
    )
    .await;
    let gone = enqueue(b, NewJob::new("cb", "w", json!({})), at(0)).await;
    b.queue.cancel(gone.id, at(1)).await.expect("cancel");
    let counts: Vec<(String, JobState, u64)> = b
        .queue
        .counts()
        .await
        .expect("counts")
        .into_iter()
        .map(|c| (c.queue, c.state, c.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("ca".to_owned(), JobState::Available, 2),
            ("ca".to_owned(), JobState::Scheduled, 1),
            ("cb".to_owned(), JobState::Cancelled, 1),
        ]
    );
}

/// A paused queue hands out no job to any claimer until resumed; other queues go on.
pub async fn paused_queues_are_not_claimed(b: &Backend) {
    let job = enqueue(b, NewJob::new("pz", "w", json!({})), at(0)).await;
    enqueue(b, NewJob::new("pz-other", "w", json!({})), at(0)).await;
    b.queue.pause_queue("pz", at(1)).await.expect("pause");
    b.queue.pause_queue("pz", at(2)).await.expect("pause twice");
    let paused = b.queue.paused_queues().await.expect("paused_queues");
    assert_eq!(paused.len(), 1);
    assert_eq!(
        (paused[0].queue.as_str(), paused[0].paused_at),
        ("pz", at(1))
    );
    assert!(
        claim(b, &ClaimRequest::new("pz", 5, "node-a"), at(3))
            .await
            .is_empty()
    );
    assert!(
        claim(b, &ClaimRequest::new("pz", 5, "node-b"), at(3))
            .await
            .is_empty()
    );
    assert_eq!(
        claim(b, &ClaimRequest::new("pz-other", 5, "node-a"), at(3))
            .await
            .len(),
        1,
        "other queues are not paused"
    );
    b.queue.resume_queue("pz").await.expect("resume");
    b.queue.resume_queue("pz").await.expect("resume twice");
    assert!(b.queue.paused_queues().await.expect("paused").is_empty());
    let claimed = claim(b, &ClaimRequest::new("pz", 5, "node-b"), at(4)).await;
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [job.id]);
}

/// Retry makes a discarded, cancelled or scheduled job available now (one more attempt if
/// they were used up); discard gives up a live job; both refuse what does not fit.
pub async fn retry_and_discard_jobs(b: &Backend) {
    // A job out of attempts, discarded by its last failure.
    let done = executing(
        b,
        NewJob::new("rd-1", "w", json!({})).with_max_attempts(1),
        at(0),
        60,
    )
    .await;
    b.queue
        .fail(done.id, 1, "boom", FailAction::RetryAt(at(10)), at(1))
        .await
        .expect("fail");
    assert_eq!(get(b, done.id).await.state, JobState::Discarded);
    let again = b.queue.retry_job(done.id, at(2)).await.expect("retry");
    assert_eq!(
        (again.state, again.max_attempts, again.scheduled_at),
        (JobState::Available, 2, at(2))
    );
    assert_eq!(again.finished_at, None);
    let claimed = claim(b, &ClaimRequest::new("rd-1", 1, "w"), at(2)).await;
    assert_eq!(claimed.len(), 1, "the retried job is claimed");

    // Executing: retry refused, discard fences the attempt out.
    assert_err!(
        b.queue.retry_job(done.id, at(3)).await,
        Error::Conflict(crate::Conflict::JobActive(_)),
        "retry of an executing job"
    );
    let gone = b.queue.discard_job(done.id, at(3)).await.expect("discard");
    assert_eq!(
        (gone.state, gone.finished_at),
        (JobState::Discarded, Some(at(3)))
    );
    assert_err!(
        b.queue.complete(done.id, 2, at(4)).await,
        Error::Conflict(_),
        "the discarded attempt cannot complete"
    );
    assert_err!(
        b.queue.discard_job(done.id, at(4)).await,
        Error::Conflict(crate::Conflict::JobFinished(_)),
        "discard of a terminal job"
    );

    // A scheduled job runs now.
    let later = enqueue(
        b,
        NewJob::new("rd-2", "w", json!({})).with_scheduled_at(at(999)),
        at(0),
    )
    .await;
    let now = b
        .queue
        .retry_job(later.id, at(5))
        .await
        .expect("retry scheduled");
    assert_eq!((now.state, now.scheduled_at), (JobState::Available, at(5)));
    assert_err!(
        b.queue.retry_job(JobId::from(987_654), at(5)).await,
        Error::NotFound { .. },
        "an unknown job"
    );
}

/// `finished_since` counts the jobs that ended at or after a time, per queue and terminal
/// state: recent throughput.
pub async fn finished_since_counts_recent_ends(b: &Backend) {
    let done = executing(b, NewJob::new("tp", "w", json!({})), at(0), 60).await;
    b.queue
        .complete(done.id, 1, at(10))
        .await
        .expect("complete");
    let gone = enqueue(b, NewJob::new("tp", "w", json!({})), at(0)).await;
    b.queue.cancel(gone.id, at(20)).await.expect("cancel");
    enqueue(b, NewJob::new("tp", "w", json!({})), at(0)).await;
    let count = |since| async move {
        b.queue
            .finished_since(since)
            .await
            .expect("finished_since")
            .into_iter()
            .map(|c| (c.queue, c.state, c.count))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        count(at(0)).await,
        [
            ("tp".to_owned(), JobState::Cancelled, 1),
            ("tp".to_owned(), JobState::Completed, 1),
        ]
    );
    assert_eq!(
        count(at(20)).await,
        [("tp".to_owned(), JobState::Cancelled, 1)]
    );
    assert!(count(at(21)).await.is_empty());
}
