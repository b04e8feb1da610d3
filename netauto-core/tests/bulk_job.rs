//! [`BulkJob`] against the in-memory backend: each device runs once, failures are outcomes,
//! a rerun after a crash skips what was done, and every outcome is announced once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use common::{Fixture, REQUESTER, auth_error, bulk_jobs_filter, published, t0};
use futures_util::StreamExt;
use netauto_core::bulk::{BulkArgs, BulkJob};
use netauto_core::exec::Executor;
use netauto_core::prelude::*;
use netauto_core::runtime::WorkerRegistry;
use netauto_core::telemetry;
use netauto_core::testing::{
    Capture, DrainOptions, DrainReport, FaultyStore, all_enqueued, drain_queue, events, exit, out,
    perform_job_with_clock,
};
use netauto_core::{
    BulkCounters, BulkEvent, Device, DeviceId, DeviceOutcome, FeedItem, LocalProgressHub,
    MockNetworkClient, NewRun, OutputEvents, OutputStream, ProgressEvent, ProgressSink, Run,
    RunFinish, RunStatus, Subscription,
};

fn ok_reply(device: &Device) -> OutputEvents {
    events(vec![out(&format!("{} ok\n", device.name)), exit(0)])
}

/// Expects exactly one `execute` of `command` on `device`.
fn expect_once(mock: &mut MockNetworkClient, device: DeviceId, command: &'static str, fails: bool) {
    let expectation = mock
        .expect_execute()
        .withf(move |d, c, _| d.id == device && c == command)
        .times(1);
    if fails {
        expectation.returning(|d, _, _| Err(auth_error(d)));
    } else {
        expectation.returning(|d, _, _| Ok(ok_reply(d)));
    }
}

fn expect_never(mock: &mut MockNetworkClient, device: DeviceId) {
    mock.expect_execute()
        .withf(move |d, _, _| d.id == device)
        .never();
}

/// A Progress as `(device, status, done)`.
type ProgressSeen = (DeviceId, RunStatus, u64);
/// A Summary as `(ok, failed, total)`.
type SummarySeen = (u64, u64, u64);

fn bulk_events(seen: &[ProgressEvent]) -> (Vec<ProgressSeen>, Vec<SummarySeen>) {
    let mut progress = Vec::new();
    let mut summaries = Vec::new();
    for e in seen {
        match e {
            ProgressEvent::Bulk(BulkEvent::Progress {
                device_id,
                status,
                done,
                ..
            }) => progress.push((*device_id, *status, *done)),
            ProgressEvent::Bulk(BulkEvent::Summary {
                ok, failed, total, ..
            }) => summaries.push((*ok, *failed, *total)),
            other => panic!("unexpected event on a bulk topic: {other:?}"),
        }
    }
    (progress, summaries)
}

#[tokio::test]
async fn bulk_jobs_run_each_device_once_and_a_failure_is_an_outcome() {
    let fx = Fixture::new();
    let ids = fx.devices(120).await;
    let failing = ids[17];
    let bulk_ref = fx
        .bulk()
        .enqueue(&ids, "show version", REQUESTER)
        .await
        .unwrap();
    let mut mock = MockNetworkClient::new();
    for &id in &ids {
        expect_once(&mut mock, id, "show version", id == failing);
    }
    let registry = WorkerRegistry::new().with(BulkJob::new(fx.network(mock)).with_concurrency(4));
    let capture = Capture::install_scoped();
    let mut feed = fx.hub.subscribe(&bulk_ref.topic()).await;

    let report = drain_queue(
        &fx.queue_dyn(),
        &registry,
        &fx.clock_dyn(),
        &DrainOptions::new("bulk"),
    )
    .await
    .unwrap();
    assert_eq!(
        report,
        DrainReport {
            success: 3,
            failure: 0,
            discard: 0
        },
        "a device failure is not a job failure"
    );

    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    assert_eq!(
        bulk.counters,
        BulkCounters {
            total: 120,
            ok: 119,
            failed: 1,
            cancelled: 0,
            pending: 0
        }
    );
    assert_eq!(bulk.finished_at, Some(t0()));
    assert_eq!(bulk.outcomes.len(), 120);
    let bad = &bulk.outcomes[&failing];
    assert_eq!(
        (bad.status, bad.error_kind.as_deref()),
        (RunStatus::Error, Some("auth"))
    );

    let runs = fx.store.bulk_runs(&bulk_ref, &ids).await.unwrap();
    assert_eq!(runs.len(), 120, "one run per device");
    let per_device: BTreeMap<DeviceId, &Run> = runs.iter().map(|r| (r.device_id, r)).collect();
    assert_eq!(per_device.len(), 120);
    for run in &runs {
        assert_eq!(run.requested_by, REQUESTER);
        assert_eq!(run.command, "show version");
        assert_eq!(run.bulk_ref.as_ref(), Some(&bulk_ref));
        let outcome = &bulk.outcomes[&run.device_id];
        assert_eq!((outcome.run_id, outcome.status), (Some(run.id), run.status));
        if run.device_id == failing {
            assert_eq!(run.status, RunStatus::Error);
            assert_eq!(run.error_kind.as_deref(), Some("auth"));
        } else {
            assert_eq!(run.status, RunStatus::Ok);
            assert!(run.bytes > 0);
        }
    }

    let (progress, summaries) = bulk_events(&published(&mut feed));
    assert_eq!(progress.len(), 120, "one Progress per device");
    let devices: BTreeSet<DeviceId> = progress.iter().map(|p| p.0).collect();
    assert_eq!(devices, ids.iter().copied().collect());
    let mut done: Vec<u64> = progress.iter().map(|p| p.2).collect();
    done.sort_unstable();
    assert_eq!(done, (1..=120).collect::<Vec<_>>());
    let not_ok: Vec<_> = progress.iter().filter(|p| p.1 != RunStatus::Ok).collect();
    assert_eq!(not_ok.len(), 1);
    assert_eq!((not_ok[0].0, not_ok[0].1), (failing, RunStatus::Error));
    assert_eq!(summaries, [(119, 1, 120)], "exactly one Summary");

    assert_eq!(capture.count(telemetry::BULK_OK), 119);
    let error = capture.single(telemetry::BULK_ERROR);
    assert_eq!(error.field_as::<i64>("device_id"), Some(failing.get()));
    assert_eq!(error.field("error_kind"), Some("auth"));
    assert_eq!(error.field("status"), Some("error"));
    assert_eq!(error.field("bulk_ref"), Some(bulk_ref.as_str()));
    let summary = capture.single(telemetry::BULK_SUMMARY);
    assert_eq!(summary.field("ok"), Some("119"));
    assert_eq!(summary.field("failed"), Some("1"));
    assert_eq!(summary.field("total"), Some("120"));
    assert_eq!(capture.count(telemetry::JOB_STOP), 3);
    assert_eq!(capture.count(telemetry::JOB_EXCEPTION), 0);
    // `registry` drops the mock here, which checks every `.times(1)`.
}

#[tokio::test]
async fn a_bulk_job_rerun_after_a_crash_skips_finished_devices() {
    let fx = Fixture::new();
    let ids = fx.devices(10).await;
    let bulk_ref = fx
        .bulk()
        .enqueue(&ids, "show version", REQUESTER)
        .await
        .unwrap();
    let job = all_enqueued(&fx.queue, &bulk_jobs_filter()).await.unwrap();
    assert_eq!(job.len(), 1);
    let args: BulkArgs = serde_json::from_value(job[0].args.clone()).unwrap();

    // What the crashed attempt left behind.
    let earlier = t0() - TimeDelta::minutes(5);
    let new_run = |device| NewRun {
        device_id: device,
        command: "show version".into(),
        requested_by: REQUESTER.into(),
        bulk_ref: Some(bulk_ref.clone()),
    };
    // Devices 0-2: ran and recorded.
    let mut recorded = Vec::new();
    for &d in &ids[..3] {
        let run = fx.store.create_run(new_run(d), earlier).await.unwrap();
        let run = fx
            .store
            .finish_run(
                run.id,
                RunFinish::new(RunStatus::Ok).with_exit_status(0),
                earlier,
            )
            .await
            .unwrap();
        let outcome = DeviceOutcome {
            device_id: d,
            run_id: Some(run.id),
            status: run.status,
            error_kind: None,
            recorded_at: earlier,
            truncated: false,
        };
        fx.store
            .record_outcome(&bulk_ref, outcome.clone())
            .await
            .unwrap();
        recorded.push(outcome);
    }
    // Device 3: ran ok, crashed before recording. Device 4: ran and failed, not recorded.
    let finished_ok = fx.store.create_run(new_run(ids[3]), earlier).await.unwrap();
    let finished_ok = fx
        .store
        .finish_run(
            finished_ok.id,
            RunFinish::new(RunStatus::Ok).with_exit_status(0),
            earlier,
        )
        .await
        .unwrap();
    let finished_failed = fx.store.create_run(new_run(ids[4]), earlier).await.unwrap();
    let finished_failed = fx
        .store
        .finish_run(
            finished_failed.id,
            RunFinish::new(RunStatus::Failed).with_exit_status(2),
            earlier,
        )
        .await
        .unwrap();
    // Device 5: was running when the worker died.
    let stale = fx.store.create_run(new_run(ids[5]), earlier).await.unwrap();
    fx.store
        .append_chunk(stale.id, OutputStream::Stdout, b"half of the out", earlier)
        .await
        .unwrap();
    // Devices 6-9: never started.

    let mut mock = MockNetworkClient::new();
    for &d in &ids[..5] {
        expect_never(&mut mock, d);
    }
    for &d in &ids[5..] {
        expect_once(&mut mock, d, "show version", false);
    }
    let worker = BulkJob::new(fx.network(mock));
    let registry = WorkerRegistry::new().with(worker.clone());
    let capture = Capture::install_scoped();
    let mut feed = fx.hub.subscribe(&bulk_ref.topic()).await;

    let report = drain_queue(
        &fx.queue_dyn(),
        &registry,
        &fx.clock_dyn(),
        &DrainOptions::new("bulk"),
    )
    .await
    .unwrap();
    assert_eq!(report.success, 1);

    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    assert_eq!(
        bulk.counters,
        BulkCounters {
            total: 10,
            ok: 9,
            failed: 1,
            cancelled: 0,
            pending: 0
        }
    );
    for outcome in &recorded {
        assert_eq!(
            &bulk.outcomes[&outcome.device_id], outcome,
            "kept as recorded"
        );
    }
    let reused = &bulk.outcomes[&ids[3]];
    assert_eq!(
        (reused.run_id, reused.status),
        (Some(finished_ok.id), RunStatus::Ok)
    );
    let reused = &bulk.outcomes[&ids[4]];
    assert_eq!(
        (reused.run_id, reused.status, reused.error_kind.as_deref()),
        (
            Some(finished_failed.id),
            RunStatus::Failed,
            Some("exit_status")
        )
    );

    let stale = fx.store.run(stale.id).await.unwrap();
    assert_eq!(stale.status, RunStatus::Error);
    assert_eq!(stale.error_kind.as_deref(), Some("interrupted"));
    assert_eq!(stale.finished_at, Some(t0()));
    let rerun = &bulk.outcomes[&ids[5]];
    assert_eq!(rerun.status, RunStatus::Ok);
    assert_ne!(rerun.run_id, Some(stale.id));
    let device_5_runs = fx.store.bulk_runs(&bulk_ref, &ids[5..6]).await.unwrap();
    assert_eq!(
        device_5_runs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [RunStatus::Error, RunStatus::Ok]
    );
    for &d in &ids[6..] {
        assert_eq!(bulk.outcomes[&d].status, RunStatus::Ok);
    }
    assert_eq!(
        fx.store.bulk_runs(&bulk_ref, &ids).await.unwrap().len(),
        11,
        "one new run for each of devices 5-9 only"
    );

    let (progress, summaries) = bulk_events(&published(&mut feed));
    let devices: BTreeSet<DeviceId> = progress.iter().map(|p| p.0).collect();
    assert_eq!(devices, ids[3..].iter().copied().collect(), "{progress:?}");
    assert_eq!(progress.len(), 7);
    assert_eq!(summaries, [(9, 1, 10)]);
    assert_eq!(capture.count(telemetry::BULK_SUMMARY), 1);

    // Yet another attempt (a retry racing the completion) runs nothing and publishes nothing.
    perform_job_with_clock(&worker, args, fx.clock_dyn())
        .await
        .unwrap();
    assert!(published(&mut feed).is_empty());
    assert_eq!(fx.store.bulk(&bulk_ref).await.unwrap(), bulk);
    assert_eq!(capture.count(telemetry::BULK_SUMMARY), 1);
}

#[tokio::test]
async fn a_device_whose_rerun_never_started_is_run_on_the_next_attempt() {
    let fx = Fixture::new();
    let ids = fx.devices(2).await;
    let bulk_ref = fx
        .bulk()
        .enqueue(&ids, "show version", REQUESTER)
        .await
        .unwrap();
    // A killed worker left device 0's run running.
    let earlier = t0() - TimeDelta::minutes(5);
    let stale = fx
        .store
        .create_run(
            NewRun {
                device_id: ids[0],
                command: "show version".into(),
                requested_by: REQUESTER.into(),
                bulk_ref: Some(bulk_ref.clone()),
            },
            earlier,
        )
        .await
        .unwrap();
    let store = Arc::new(FaultyStore::new(fx.store_dyn()));
    let mut mock = MockNetworkClient::new();
    for &d in &ids {
        expect_once(&mut mock, d, "show version", false);
    }
    let network = Executor::new(store.clone(), Arc::new(mock), Arc::new(fx.hub.clone()))
        .with_clock(fx.clock_dyn());
    let registry = WorkerRegistry::new().with(BulkJob::new(network));

    // The next attempt closes the stale run, then the database goes away before the new runs
    // are created: the job fails and is retried.
    store.refuse_runs(true);
    let first = drain_queue(
        &fx.queue_dyn(),
        &registry,
        &fx.clock_dyn(),
        &DrainOptions::new("bulk"),
    )
    .await
    .unwrap();
    assert_eq!(first.failure, 1);
    let closed = fx.store.run(stale.id).await.unwrap();
    assert_eq!(closed.error_kind.as_deref(), Some("interrupted"));

    // The retry must run device 0 for real, not take the interrupted run as its outcome.
    store.refuse_runs(false);
    let retry = drain_queue(
        &fx.queue_dyn(),
        &registry,
        &fx.clock_dyn(),
        &DrainOptions::new("bulk").with_scheduled(),
    )
    .await
    .unwrap();
    assert_eq!(retry.success, 1);
    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    let outcome = &bulk.outcomes[&ids[0]];
    assert_eq!(outcome.status, RunStatus::Ok, "{outcome:?}");
    assert_ne!(outcome.run_id, Some(stale.id));
    assert_eq!(bulk.counters.ok, 2);
}

/// A progress sink whose bulk events take a while to publish, and which says when one starts.
#[derive(Debug, Clone)]
struct SlowBulkEvents {
    inner: LocalProgressHub,
    started: Arc<tokio::sync::Notify>,
    delay: Duration,
}

#[async_trait]
impl ProgressSink for SlowBulkEvents {
    async fn publish(&self, event: ProgressEvent) {
        if matches!(event, ProgressEvent::Bulk(_)) {
            self.started.notify_one();
            tokio::time::sleep(self.delay).await;
        }
        self.inner.publish(event).await;
    }

    async fn subscribe(&self, topic: &str) -> Subscription {
        self.inner.subscribe(topic).await
    }
}

#[tokio::test]
async fn an_attempt_stopped_after_recording_an_outcome_still_announces_it() {
    let fx = Fixture::new();
    let ids = fx.devices(1).await;
    let bulk_ref = fx
        .bulk()
        .enqueue(&ids, "show version", REQUESTER)
        .await
        .unwrap();
    let mut mock = MockNetworkClient::new();
    expect_once(&mut mock, ids[0], "show version", false);
    let sink = SlowBulkEvents {
        inner: fx.hub.clone(),
        started: Arc::new(tokio::sync::Notify::new()),
        delay: Duration::from_millis(200),
    };
    let network = Executor::new(fx.store_dyn(), Arc::new(mock), Arc::new(sink.clone()))
        .with_clock(fx.clock_dyn());
    let job = BulkJob::new(network);
    let mut feed = fx.hub.subscribe(&bulk_ref.topic()).await;
    let args = BulkArgs {
        device_ids: ids.clone(),
        command: "show version".into(),
        requested_by: REQUESTER.into(),
        bulk_ref: bulk_ref.clone(),
        limits: Default::default(),
    };

    // The attempt is stopped (its lease lost, say) once the outcome is stored and its
    // Progress is on the way out.
    tokio::select! {
        r = perform_job_with_clock(&job, args, fx.clock_dyn()) => panic!("finished first: {r:?}"),
        () = sink.started.notified() => {}
    }
    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    assert_eq!(bulk.counters.ok, 1, "the outcome is stored");

    // A retry skips the recorded device, so the stopped attempt is the only one that can
    // announce it: the Progress and the one Summary still arrive.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), feed.next()).await {
            Ok(Some(FeedItem::Event(e))) => seen.push(e),
            other => panic!("after {seen:?}: {other:?}"),
        }
    }
    let (progress, summaries) = bulk_events(&seen);
    assert_eq!(progress, [(ids[0], RunStatus::Ok, 1)]);
    assert_eq!(summaries, [(1, 0, 1)]);
}
