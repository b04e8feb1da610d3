//! Issue 12 against the in-memory backend, cancel: runs and bulks can be cancelled (also from
//! another "node" sharing the store), and a bulk always ends, whatever ends its jobs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use common::{Behaviour, Fixture, REQUESTER, eventually, fake_client, published, summaries};
use netauto_core::bulk::{ABANDONED, BulkArgs, BulkJob};
use netauto_core::exec::{Executor, RunOptions};
use netauto_core::prelude::*;
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig, Worker, WorkerRegistry};
use netauto_core::testing::{DrainOptions, drain_queue};
use netauto_core::{
    BulkEvent, BulkRef, ClaimRequest, Clock, DeviceId, JobFilter, JobQueue, JobState,
    LimitOverrides, ManualClock, NewBulk, ProgressEvent, ProgressSink, RunStatus, Subscription,
    SystemClock,
};
use serde_json::json;
use tokio::sync::mpsc;

#[tokio::test]
async fn a_run_cancelled_on_another_node_is_closed_within_a_poll() {
    let fx = Fixture::live();
    let dev = fx.devices(1).await[0];
    let client = fake_client(Behaviour::Silent);
    // Node A runs the command; node B (its own service, sharing only the store) cancels.
    let node_a = fx.network(client.clone());
    let node_b = fx.network(fake_client(Behaviour::Ok));
    let task = tokio::spawn(async move {
        node_a
            .execute_command(dev, "monitor", RunOptions::new(REQUESTER))
            .await
    });
    let run_id = eventually("the run to start", Duration::from_secs(5), || async {
        let runs = fx.store.device_runs(dev, 1).await.unwrap();
        runs.first().filter(|r| r.chunks > 0).map(|r| r.id)
    })
    .await;
    let asked = Instant::now();
    node_b.cancel_run(run_id).await.unwrap();
    let run = task.await.unwrap().unwrap();
    let took = asked.elapsed();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.error_kind.as_deref(), Some("cancelled"));
    assert_eq!(run.chunks, 1, "output so far kept");
    assert_eq!(client.open(), 0, "session closed");
    assert!(
        took < Duration::from_secs(2),
        "closed {took:?} after the cancel"
    );
    assert!(matches!(
        node_b.cancel_run(run_id).await,
        Err(netauto_core::Error::Conflict(_))
    ));
}

fn runner(fx: &Fixture, net: Executor, jobs: usize) -> Runner {
    let registry = WorkerRegistry::new().with(BulkJob::new(net).with_concurrency(10));
    Runner::new(fx.queue_dyn(), registry).with_config(RunnerConfig {
        queues: QueueLimits::empty().with("bulk", jobs),
        poll_interval: Duration::from_millis(20),
        ..RunnerConfig::default()
    })
}

#[tokio::test]
async fn a_cancelled_bulk_closes_running_sessions_and_ends_with_one_summary() {
    let fx = Fixture::live();
    let ids = fx.devices(120).await;
    let client = fake_client(Behaviour::Silent);
    // 2 jobs of 50 run at a time, 10 devices each: 20 sessions open, 100 devices never start.
    let runner = runner(&fx, fx.network(client.clone()), 2);
    let bulk = fx.bulk().with_wake(runner.waker());
    let bulk_ref = bulk.enqueue(&ids, "monitor", REQUESTER).await.unwrap();
    let mut feed = fx.hub.subscribe(&bulk_ref.topic()).await;
    let handle = runner.start();
    eventually("20 sessions", Duration::from_secs(10), || async {
        (client.open() == 20).then_some(())
    })
    .await;

    let asked = Instant::now();
    let c = bulk.cancel(&bulk_ref).await.unwrap();
    assert!(c.newly_cancelled);
    assert_eq!(
        c.devices_cancelled, 100,
        "devices not started are cancelled at once"
    );
    assert!(!c.completed_now);
    eventually("every session closed", Duration::from_secs(5), || async {
        (client.open() == 0).then_some(())
    })
    .await;
    let closed = asked.elapsed();
    let state = eventually("the bulk to end", Duration::from_secs(5), || async {
        let s = fx.store.bulk_state(&bulk_ref).await.unwrap();
        s.finished_at.is_some().then_some(s)
    })
    .await;
    assert!(
        closed < Duration::from_secs(2),
        "sessions closed {closed:?} after the cancel"
    );
    assert_eq!(state.counters.cancelled, 120);
    assert_eq!(state.counters.done(), 120);
    assert!(state.cancelled_at.is_some());
    assert_eq!(client.started(), 20, "nothing started after the cancel");
    let b = fx.store.bulk(&bulk_ref).await.unwrap();
    let with_runs = b.outcomes.values().filter(|o| o.run_id.is_some()).count();
    assert_eq!(with_runs, 20, "the stopped devices keep their run");
    for run in fx.store.bulk_runs(&bulk_ref, &ids).await.unwrap() {
        assert_eq!(run.status, RunStatus::Cancelled);
        assert_eq!(run.chunks, 1, "output so far kept");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = published(&mut feed);
    assert_eq!(summaries(&seen), [(0, 0, 120, 120)], "exactly one Summary");
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, ProgressEvent::Bulk(BulkEvent::Cancelled { .. })))
            .count(),
        1
    );
    // Cancelling again changes nothing.
    assert!(!bulk.cancel(&bulk_ref).await.unwrap().newly_cancelled);
    // The remaining jobs complete without starting anything.
    assert!(runner_idle(&fx).await);
    handle.shutdown().await;
    assert_eq!(client.started(), 20);
}

async fn runner_idle(fx: &Fixture) -> bool {
    eventually("every job completed", Duration::from_secs(10), || async {
        let live = fx
            .queue
            .list(&JobFilter::all().with_states([
                JobState::Available,
                JobState::Executing,
                JobState::Retryable,
            ]))
            .await
            .unwrap();
        live.is_empty().then_some(true)
    })
    .await
}

// ---- every bulk ends -----------------------------------------------------------------------

/// How a test ends the bulk's jobs.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// The jobs run normally.
    Completed,
    /// The job's args do not decode (but still name the bulk and its devices).
    MalformedArgs,
    /// The worker panics on the last (only) attempt: attempts exhausted.
    AttemptsExhausted,
    /// The last attempt's node dies: the lease expires and the rescue discards the job.
    RescuedAfterLastAttempt,
    /// The bulk is cancelled before any job runs.
    Cancelled,
}

/// Asserts the invariant: the bulk ended (pending 0, finished_at), every device has an
/// outcome, the counters add up, and exactly one Summary was published.
async fn assert_ended(
    fx: &Fixture,
    bulk_ref: &BulkRef,
    ids: &[DeviceId],
    feed: &mut Subscription,
    why: Ending,
) {
    let bulk = fx.store.bulk(bulk_ref).await.unwrap();
    let c = bulk.counters;
    assert_eq!(c.pending, 0, "{why:?}: {c:?}");
    assert_eq!(c.ok + c.failed + c.cancelled, c.total, "{why:?}");
    assert!(bulk.finished_at.is_some(), "{why:?}");
    assert_eq!(bulk.outcomes.len(), ids.len(), "{why:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = published(feed);
    assert_eq!(
        summaries(&seen),
        [(c.ok, c.failed, c.cancelled, c.total)],
        "{why:?}: exactly one Summary"
    );
}

#[tokio::test]
async fn every_terminal_path_of_a_bulk_job_ends_its_bulk() {
    for why in [
        Ending::Completed,
        Ending::MalformedArgs,
        Ending::AttemptsExhausted,
        Ending::RescuedAfterLastAttempt,
        Ending::Cancelled,
    ] {
        let fx = Fixture::live();
        let ids = fx.devices(7).await;
        let behaviour = match why {
            Ending::AttemptsExhausted => Behaviour::Panic,
            _ => Behaviour::Ok,
        };
        let net = fx.network(fake_client(behaviour));
        let registry = WorkerRegistry::new().with(BulkJob::new(net));
        let bulk_ref = BulkRef::generate();
        let args = |ids: &[DeviceId]| BulkArgs {
            device_ids: ids.to_vec(),
            command: "show version".into(),
            requested_by: REQUESTER.into(),
            bulk_ref: bulk_ref.clone(),
            limits: LimitOverrides::none(),
        };
        let mut jobs = vec![
            BulkJob::new_job(&args(&ids[..4]))
                .unwrap()
                .with_max_attempts(1),
            BulkJob::new_job(&args(&ids[4..]))
                .unwrap()
                .with_max_attempts(1),
        ];
        if let Ending::MalformedArgs = why {
            // A command that is a number: the args do not decode, the bulk and devices do.
            jobs[1].args = json!({"bulk_ref": bulk_ref, "device_ids": &ids[4..], "command": 42});
        }
        fx.store
            .create_bulk(
                NewBulk {
                    bulk_ref: bulk_ref.clone(),
                    command: "show version".into(),
                    requested_by: REQUESTER.into(),
                    device_ids: ids.clone(),
                    limits: LimitOverrides::none(),
                    parent: None,
                },
                jobs,
                Utc::now(),
            )
            .await
            .unwrap();
        let mut feed = fx.hub.subscribe(&bulk_ref.topic()).await;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        match why {
            Ending::Cancelled => {
                let c = fx.bulk().cancel(&bulk_ref).await.unwrap();
                assert!(c.completed_now);
                drain_queue(
                    &fx.queue_dyn(),
                    &registry,
                    &clock,
                    &DrainOptions::new("bulk"),
                )
                .await
                .unwrap();
            }
            Ending::RescuedAfterLastAttempt => {
                // A node claims both jobs (their one attempt) and dies: nothing runs.
                let base = Utc::now();
                let manual = ManualClock::new(base);
                let claimed = fx
                    .queue
                    .claim(
                        &ClaimRequest::new("bulk", 10, "dead-node")
                            .with_lease(TimeDelta::seconds(30)),
                        base,
                    )
                    .await
                    .unwrap();
                assert_eq!(claimed.len(), 2);
                manual.advance(TimeDelta::seconds(31));
                let survivor = Runner::new(fx.queue_dyn(), registry.clone())
                    .with_clock(Arc::new(manual.clone()));
                let report = survivor.tick().await.unwrap();
                assert_eq!(report.rescued, 2);
                let discarded = fx
                    .queue
                    .list(&JobFilter::all().with_states([JobState::Discarded]))
                    .await
                    .unwrap();
                assert_eq!(discarded.len(), 2);
            }
            _ => {
                drain_queue(
                    &fx.queue_dyn(),
                    &registry,
                    &clock,
                    &DrainOptions::new("bulk"),
                )
                .await
                .unwrap();
            }
        }
        assert_ended(&fx, &bulk_ref, &ids, &mut feed, why).await;
        let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
        let kinds: BTreeMap<String, usize> =
            bulk.outcomes.values().fold(BTreeMap::new(), |mut m, o| {
                *m.entry(format!(
                    "{}/{}",
                    o.status,
                    o.error_kind.as_deref().unwrap_or("-")
                ))
                .or_default() += 1;
                m
            });
        let expected: &[(&str, usize)] = match why {
            Ending::Completed => &[("ok/-", 7)],
            Ending::MalformedArgs => &[("error/job_discarded", 3), ("ok/-", 4)],
            Ending::AttemptsExhausted | Ending::RescuedAfterLastAttempt => {
                &[("error/job_discarded", 7)]
            }
            Ending::Cancelled => &[("cancelled/cancelled", 7)],
        };
        let expected: BTreeMap<String, usize> = expected
            .iter()
            .map(|(k, n)| ((*k).to_owned(), *n))
            .collect();
        assert_eq!(kinds, expected, "{why:?}");
        assert_eq!(ABANDONED, "job_discarded");
    }
}

/// The discard hook runs before the job is discarded; when it cannot record (the store is
/// down), the job is not discarded but retried, so the bulk still ends once the store is back.
#[tokio::test]
async fn a_discard_hook_that_fails_leaves_the_job_to_try_again() {
    let fx = Fixture::live();
    let ids = fx.devices(2).await;
    let bulk_ref = fx
        .bulk()
        .enqueue(&ids, "show version", REQUESTER)
        .await
        .unwrap();
    // No store behind the worker's network: its hook cannot record anything.
    let broken = netauto_memory::backend().1;
    let job = fx.queue.list(&JobFilter::all()).await.unwrap().remove(0);
    let worker = BulkJob::new(Executor::new(
        Arc::new(broken),
        Arc::new(fake_client(Behaviour::Ok)),
        Arc::new(fx.hub.clone()),
    ));
    // Its bulk is unknown to that store: the hook has nothing to do and says so.
    worker.on_discard(&job, "test").await.unwrap();
    // The real one records both devices.
    let worker = BulkJob::new(fx.network(fake_client(Behaviour::Ok)));
    worker.on_discard(&job, "test").await.unwrap();
    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    assert_eq!((bulk.counters.failed, bulk.counters.pending), (2, 0));
    // Idempotent.
    worker.on_discard(&job, "test").await.unwrap();
    assert_eq!(fx.store.bulk(&bulk_ref).await.unwrap().counters.failed, 2);
}

#[tokio::test]
async fn a_bulk_deadline_override_reaches_every_device() {
    let fx = Fixture::live();
    let ids = fx.devices(3).await;
    let client = fake_client(Behaviour::Silent);
    let net = fx.network(client.clone());
    let registry = WorkerRegistry::new().with(BulkJob::new(net));
    let bulk_ref = fx
        .bulk()
        .enqueue_with_limits(
            &ids,
            "monitor",
            REQUESTER,
            LimitOverrides::none().with_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    assert_eq!(
        fx.store.bulk(&bulk_ref).await.unwrap().limits.timeout(),
        Some(Duration::from_millis(200))
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let started = Instant::now();
    drain_queue(
        &fx.queue_dyn(),
        &registry,
        &clock,
        &DrainOptions::new("bulk"),
    )
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    assert!(
        bulk.outcomes
            .values()
            .all(|o| o.status == RunStatus::Timeout)
    );
    assert_eq!(client.open(), 0);
    // Out-of-range overrides are refused before anything is written.
    let e = fx
        .bulk()
        .enqueue_with_limits(
            &ids,
            "x",
            REQUESTER,
            LimitOverrides::none().with_max_output(0),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, netauto_core::Error::Validation(_)), "{e}");
    let _ = mpsc::unbounded_channel::<()>();
}
