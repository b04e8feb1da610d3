//! Checks of the job lifecycle after a claim: fencing by attempt, fail and retry, lease
//! rescue and heartbeats, release, cancel and prune.

use chrono::TimeDelta;

use super::queue::{claim, enqueue, executing, get, job};
use super::{Backend, at};
use crate::{ClaimRequest, Conflict, Error, FailAction, JobFilter, JobId, JobState};

/// `complete_many` completes exactly the attempts still executing, fenced like `complete`.
pub async fn complete_many_is_fenced(b: &Backend) {
    let a = executing(b, job("many"), at(0), 30).await;
    let c = executing(b, job("many"), at(0), 30).await;
    let d = executing(b, job("many").with_max_attempts(5), at(0), 30).await;
    let gone = JobId(i64::MAX - 7);
    let done = b
        .queue
        .complete_many(&[(a.id, 1), (c.id, 2), (d.id, 1), (gone, 1)], at(5))
        .await
        .expect("complete_many");
    let mut done = done;
    done.sort_unstable();
    assert_eq!(
        done,
        [a.id, d.id],
        "only current attempts complete; stale and unknown are left out"
    );
    for (id, state) in [
        (a.id, JobState::Completed),
        (c.id, JobState::Executing),
        (d.id, JobState::Completed),
    ] {
        let j = get(b, id).await;
        assert_eq!(j.state, state, "job {id}");
        if state == JobState::Completed {
            assert_eq!((j.finished_at, j.lease_expires_at), (Some(at(5)), None));
        }
    }
    let again = b
        .queue
        .complete_many(&[(a.id, 1)], at(6))
        .await
        .expect("again");
    assert!(
        again.is_empty(),
        "completing twice completes nothing: {again:?}"
    );
    assert!(
        b.queue
            .complete_many(&[], at(6))
            .await
            .expect("empty")
            .is_empty()
    );
}

/// After a rescue or a cancel, the old attempt can no longer heartbeat, complete, fail or
/// release the job.
pub async fn fenced_operations_reject_stale_attempts(b: &Backend) {
    let old = executing(b, job("fence").with_max_attempts(5), at(0), 30).await;
    assert_eq!(
        b.queue.rescue_expired(at(31)).await.expect("rescue"),
        [old.id]
    );
    let req = ClaimRequest::new("fence", 1, "worker-2").with_lease(TimeDelta::seconds(30));
    let new = claim(b, &req, at(31)).await;
    assert_eq!(new.len(), 1);
    assert_eq!((new[0].id, new[0].attempt), (old.id, 2));
    let id = old.id;

    let stale = |attempt| move |e: &Error| matches!(e, Error::Conflict(Conflict::StaleAttempt { job, attempt: a }) if *job == id && *a == attempt);
    let r = b.queue.heartbeat(id, 1, at(500)).await;
    assert!(
        r.as_ref().is_err_and(stale(1)),
        "heartbeat by rescued attempt: {r:?}"
    );
    let r = b.queue.complete(id, 1, at(32)).await;
    assert!(
        r.as_ref().is_err_and(stale(1)),
        "complete by rescued attempt: {r:?}"
    );
    let r = b
        .queue
        .fail(id, 1, "late", FailAction::RetryAt(at(40)), at(32))
        .await;
    assert!(
        r.as_ref().is_err_and(stale(1)),
        "fail by rescued attempt: {r:?}"
    );
    let r = b.queue.release(id, 1, at(32)).await;
    assert!(
        r.as_ref().is_err_and(stale(1)),
        "release by rescued attempt: {r:?}"
    );
    let r = b.queue.complete(id, 3, at(32)).await;
    assert!(
        r.as_ref().is_err_and(stale(3)),
        "complete by a future attempt: {r:?}"
    );
    assert_eq!(get(b, id).await, new[0], "stale calls must change nothing");

    b.queue
        .complete(id, 2, at(33))
        .await
        .expect("current attempt completes");
    let r = b.queue.complete(id, 2, at(34)).await;
    assert!(r.as_ref().is_err_and(stale(2)), "completing twice: {r:?}");
    assert_eq!(get(b, id).await.finished_at, Some(at(33)));

    let victim = executing(b, job("fence-cancel"), at(0), 60).await;
    b.queue.cancel(victim.id, at(10)).await.expect("cancel");
    let after_cancel = get(b, victim.id).await;
    assert_err!(
        b.queue.heartbeat(victim.id, 1, at(100)).await,
        Error::Conflict(Conflict::StaleAttempt { .. }),
        "heartbeat after cancel"
    );
    assert_err!(
        b.queue.complete(victim.id, 1, at(11)).await,
        Error::Conflict(Conflict::StaleAttempt { .. }),
        "complete after cancel"
    );
    assert_err!(
        b.queue
            .fail(victim.id, 1, "x", FailAction::Discard, at(11))
            .await,
        Error::Conflict(Conflict::StaleAttempt { .. }),
        "fail after cancel"
    );
    assert_err!(
        b.queue.release(victim.id, 1, at(11)).await,
        Error::Conflict(Conflict::StaleAttempt { .. }),
        "release after cancel"
    );
    assert_eq!(
        get(b, victim.id).await,
        after_cancel,
        "cancelled job unchanged"
    );
    assert_err!(
        b.queue.complete(JobId(i64::MAX), 1, at(11)).await,
        Error::NotFound { .. },
        "complete of an unknown job"
    );
}

/// `fail` with `RetryAt` makes the job retryable at that time with the error recorded, and
/// discards it once attempts are exhausted; `Discard` discards at once.
pub async fn fail_retries_then_discards(b: &Backend) {
    let j = executing(b, job("retry").with_max_attempts(2), at(0), 60).await;
    let st = b
        .queue
        .fail(j.id, 1, "boom 1", FailAction::RetryAt(at(100)), at(10))
        .await
        .expect("fail");
    assert_eq!(st, JobState::Retryable);
    let stored = get(b, j.id).await;
    assert_eq!(stored.state, JobState::Retryable);
    assert_eq!(stored.scheduled_at, at(100));
    assert_eq!(stored.lease_expires_at, None, "no lease unless executing");
    assert_eq!(stored.finished_at, None);
    assert_eq!(stored.errors.len(), 1);
    assert_eq!(
        (
            stored.errors[0].attempt,
            stored.errors[0].at,
            stored.errors[0].error.as_str()
        ),
        (1, at(10), "boom 1")
    );

    let req = ClaimRequest::new("retry", 5, "w");
    assert!(
        claim(b, &req, at(99)).await.is_empty(),
        "not before its retry time"
    );
    let again = claim(b, &req, at(100)).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempt), (j.id, 2));
    let st = b
        .queue
        .fail(j.id, 2, "boom 2", FailAction::RetryAt(at(200)), at(110))
        .await
        .expect("fail");
    assert_eq!(st, JobState::Discarded, "attempt 2 of 2 failed: discard");
    let stored = get(b, j.id).await;
    assert_eq!(stored.state, JobState::Discarded);
    assert_eq!(stored.finished_at, Some(at(110)));
    let errors: Vec<_> = stored
        .errors
        .iter()
        .map(|e| (e.attempt, e.error.as_str()))
        .collect();
    assert_eq!(errors, [(1, "boom 1"), (2, "boom 2")]);
    assert!(
        claim(b, &req, at(1000)).await.is_empty(),
        "discarded jobs are never claimed"
    );

    let k = executing(b, job("discard"), at(0), 60).await;
    assert_eq!(k.max_attempts, crate::DEFAULT_MAX_ATTEMPTS);
    let st = b
        .queue
        .fail(k.id, 1, "malformed args", FailAction::Discard, at(5))
        .await
        .expect("fail");
    assert_eq!(st, JobState::Discarded);
    let stored = get(b, k.id).await;
    assert_eq!(stored.state, JobState::Discarded);
    assert_eq!(stored.finished_at, Some(at(5)));
    assert_eq!(stored.errors.len(), 1);
    assert_eq!(stored.errors[0].error, "malformed args");
}

/// Expired leases are rescued (to available, or discarded when attempts are exhausted);
/// unexpired ones, including one expiring exactly at `now`, are not.
pub async fn rescue_recovers_only_expired_leases(b: &Backend) {
    let again = executing(b, job("rescue-a").with_max_attempts(3), at(0), 10).await;
    let spent = executing(b, job("rescue-b").with_max_attempts(1), at(0), 10).await;
    let alive = executing(b, job("rescue-c"), at(0), 100).await;
    let edge = executing(b, job("rescue-d"), at(0), 20).await;
    let waiting = enqueue(b, job("rescue-e"), at(0)).await;

    let rescued = b.queue.rescue_expired(at(20)).await.expect("rescue");
    assert_eq!(
        rescued,
        [again.id, spent.id],
        "only leases expired before now, ascending"
    );
    let a = get(b, again.id).await;
    assert_eq!(a.state, JobState::Available);
    assert_eq!(a.attempt, 1, "rescue keeps the attempt count");
    assert_eq!(a.lease_expires_at, None);
    let s = get(b, spent.id).await;
    assert_eq!(s.state, JobState::Discarded, "no attempts remain");
    assert_eq!(s.finished_at, Some(at(20)));
    assert!(!s.errors.is_empty(), "a discarded rescue records why");
    assert_eq!(get(b, alive.id).await, alive, "unexpired lease untouched");
    assert_eq!(
        get(b, edge.id).await,
        edge,
        "lease expiring at now is not expired yet"
    );
    assert_eq!(
        get(b, waiting.id).await,
        waiting,
        "non-executing job untouched"
    );
    assert!(
        b.queue
            .rescue_expired(at(20))
            .await
            .expect("rescue")
            .is_empty()
    );

    let reclaimed = claim(b, &ClaimRequest::new("rescue-a", 1, "w"), at(20)).await;
    assert_eq!(reclaimed.len(), 1);
    assert_eq!((reclaimed[0].id, reclaimed[0].attempt), (again.id, 2));
}

/// A heartbeat moves the lease forward so rescue leaves the job alone until then.
pub async fn heartbeat_extends_the_lease(b: &Backend) {
    let j = executing(b, job("beat"), at(0), 30).await;
    b.queue
        .heartbeat(j.id, 1, at(120))
        .await
        .expect("heartbeat");
    let stored = get(b, j.id).await;
    assert_eq!(stored.lease_expires_at, Some(at(120)));
    assert_eq!(stored.state, JobState::Executing);
    assert!(
        b.queue
            .rescue_expired(at(60))
            .await
            .expect("rescue")
            .is_empty()
    );
    assert_eq!(get(b, j.id).await.state, JobState::Executing);
    assert_eq!(
        b.queue.rescue_expired(at(121)).await.expect("rescue"),
        [j.id]
    );
    assert_eq!(get(b, j.id).await.state, JobState::Available);
}

/// `release` gives the attempt back: available at `now`, attempt count kept.
pub async fn release_makes_the_job_available(b: &Backend) {
    let j = executing(b, job("release"), at(0), 60).await;
    b.queue.release(j.id, 1, at(5)).await.expect("release");
    let stored = get(b, j.id).await;
    assert_eq!(stored.state, JobState::Available);
    assert_eq!(stored.scheduled_at, at(5));
    assert_eq!(stored.attempt, 1);
    assert_eq!(stored.lease_expires_at, None);
    assert_eq!(stored.finished_at, None);
    let again = claim(b, &ClaimRequest::new("release", 1, "w"), at(5)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert_err!(
        b.queue.release(j.id, 1, at(6)).await,
        Error::Conflict(Conflict::StaleAttempt { .. }),
        "release by a previous attempt"
    );
}

/// Cancel ends any live job (fencing out its worker); a terminal job answers `JobFinished`.
pub async fn cancel_fences_and_is_final(b: &Backend) {
    let avail = enqueue(b, job("cancel"), at(0)).await;
    let cancelled = b.queue.cancel(avail.id, at(5)).await.expect("cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.finished_at, Some(at(5)));
    assert_eq!(
        cancelled,
        get(b, avail.id).await,
        "cancel answers the stored job"
    );
    assert_err!(
        b.queue.cancel(avail.id, at(6)).await,
        Error::Conflict(Conflict::JobFinished(id)) if id == avail.id,
        "cancelling twice"
    );
    assert!(
        claim(b, &ClaimRequest::new("cancel", 10, "w"), at(10))
            .await
            .is_empty()
    );

    let sched = enqueue(b, job("cancel").with_scheduled_at(at(100)), at(0)).await;
    assert_eq!(
        b.queue.cancel(sched.id, at(7)).await.expect("cancel").state,
        JobState::Cancelled
    );

    let running = executing(b, job("cancel-run"), at(0), 10).await;
    let c = b.queue.cancel(running.id, at(8)).await.expect("cancel");
    assert_eq!(c.state, JobState::Cancelled);
    assert_eq!(c.lease_expires_at, None);
    assert!(
        !b.queue
            .rescue_expired(at(1000))
            .await
            .expect("rescue")
            .contains(&running.id),
        "a cancelled job is not rescued"
    );
    assert_eq!(get(b, running.id).await.state, JobState::Cancelled);

    let retry = executing(b, job("cancel-retry"), at(0), 10).await;
    b.queue
        .fail(retry.id, 1, "x", FailAction::RetryAt(at(50)), at(1))
        .await
        .expect("fail");
    assert_eq!(
        b.queue.cancel(retry.id, at(2)).await.expect("cancel").state,
        JobState::Cancelled
    );
    assert!(
        claim(b, &ClaimRequest::new("cancel-retry", 1, "w"), at(60))
            .await
            .is_empty()
    );

    let done = executing(b, job("cancel-done"), at(0), 10).await;
    b.queue.complete(done.id, 1, at(1)).await.expect("complete");
    assert_err!(
        b.queue.cancel(done.id, at(2)).await,
        Error::Conflict(Conflict::JobFinished(_)),
        "cancelling a completed job"
    );
    assert_eq!(get(b, done.id).await.state, JobState::Completed);
    assert_err!(
        b.queue.cancel(JobId(i64::MAX), at(2)).await,
        Error::NotFound { .. },
        "cancelling an unknown job"
    );
}

/// `prune` deletes terminal jobs finished before the cutoff and nothing else.
pub async fn prune_deletes_only_old_terminal_jobs(b: &Backend) {
    let completed = executing(b, job("prune-1"), at(0), 60).await;
    b.queue
        .complete(completed.id, 1, at(10))
        .await
        .expect("complete");
    let discarded = executing(b, job("prune-2"), at(0), 60).await;
    b.queue
        .fail(discarded.id, 1, "x", FailAction::Discard, at(10))
        .await
        .expect("fail");
    let cancelled = enqueue(b, job("prune-3"), at(0)).await;
    b.queue.cancel(cancelled.id, at(10)).await.expect("cancel");
    let recent = executing(b, job("prune-4"), at(0), 60).await;
    b.queue
        .complete(recent.id, 1, at(100))
        .await
        .expect("complete");
    let available = enqueue(b, job("prune-5"), at(0)).await;
    let running = executing(b, job("prune-6"), at(0), 60).await;
    let retryable = executing(b, job("prune-7"), at(0), 60).await;
    b.queue
        .fail(retryable.id, 1, "x", FailAction::RetryAt(at(20)), at(10))
        .await
        .expect("fail");
    let edge = executing(b, job("prune-8"), at(0), 60).await;
    b.queue
        .complete(edge.id, 1, at(50))
        .await
        .expect("complete");

    assert_eq!(b.queue.prune(at(50)).await.expect("prune"), 3);
    for id in [completed.id, discarded.id, cancelled.id] {
        assert_err!(
            b.queue.job(id).await,
            Error::NotFound { .. },
            "job {id} after prune"
        );
    }
    for id in [recent.id, available.id, running.id, retryable.id, edge.id] {
        get(b, id).await;
    }
    assert_eq!(b.queue.prune(at(50)).await.expect("prune"), 0);
    assert_eq!(b.queue.prune(at(1_000_000)).await.expect("prune"), 2);
    let left: Vec<JobId> = b
        .queue
        .list(&JobFilter::all())
        .await
        .expect("list")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        left,
        [available.id, running.id, retryable.id],
        "live jobs are never pruned"
    );
}
