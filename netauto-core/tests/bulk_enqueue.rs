//! [`BulkService::enqueue`] against the in-memory backend: chunking into jobs, duplicates,
//! unknown devices and bad input refused before anything is written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;

use common::{Fixture, REQUESTER, bulk_jobs_filter, nothing_enqueued, t0};
use netauto_core::bulk::{BulkArgs, BulkService};
use netauto_core::prelude::*;
use netauto_core::testing::all_enqueued;
use netauto_core::{
    BulkCounters, CommandError, DeviceId, Error, JobFilter, JobQueue, LocalProgressHub,
    MockRunStore, ValidationError,
};
use serde_json::json;

#[tokio::test]
async fn enqueue_splits_120_devices_into_jobs_of_50_50_20() {
    let fx = Fixture::new();
    let ids = fx.devices(120).await;

    let bulk_ref = fx
        .bulk()
        .enqueue(&ids, "  show version ", " ann@example.com ")
        .await
        .unwrap();

    let jobs = all_enqueued(&fx.queue, &bulk_jobs_filter()).await.unwrap();
    let all = fx.queue.list(&JobFilter::all()).await.unwrap();
    assert_eq!(all.len(), jobs.len(), "nothing else is enqueued");
    let sizes: Vec<usize> = jobs
        .iter()
        .map(|j| j.args["device_ids"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [50, 50, 20]);
    for (job, ids) in jobs.iter().zip(ids.chunks(50)) {
        assert_eq!(
            (job.queue.as_str(), job.worker.as_str()),
            ("bulk", "netauto.bulk")
        );
        assert_eq!(
            job.args,
            json!({
                "device_ids": ids,
                "command": "show version",
                "requested_by": REQUESTER,
                "bulk_ref": bulk_ref.as_str(),
            })
        );
        let args: BulkArgs = serde_json::from_value(job.args.clone()).unwrap();
        assert_eq!(args.bulk_ref, bulk_ref);
    }

    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    assert_eq!(bulk.device_ids, ids);
    assert_eq!(bulk.counters, BulkCounters::new(120));
    assert_eq!(
        (bulk.command.as_str(), bulk.requested_by.as_str()),
        ("show version", REQUESTER)
    );
    assert_eq!((bulk.created_at, bulk.finished_at), (t0(), None));
    assert!(bulk.outcomes.is_empty());
}

#[tokio::test]
async fn enqueue_removes_duplicates_keeping_the_first_order() {
    let fx = Fixture::new();
    let d = fx.devices(3).await;
    let given = [d[2], d[0], d[2], d[1], d[0], d[2]];

    let bulk_ref = fx
        .bulk()
        .with_chunk_size(NonZeroUsize::new(2).unwrap())
        .enqueue(&given, "show clock", REQUESTER)
        .await
        .unwrap();

    let jobs = all_enqueued(&fx.queue, &bulk_jobs_filter()).await.unwrap();
    let per_job: Vec<serde_json::Value> =
        jobs.iter().map(|j| j.args["device_ids"].clone()).collect();
    assert_eq!(per_job, [json!([d[2], d[0]]), json!([d[1]])]);
    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    assert_eq!(bulk.device_ids, [d[2], d[0], d[1]]);
    assert_eq!(bulk.counters.total, 3);
}

#[tokio::test]
async fn enqueue_lists_every_unknown_id_in_one_error_and_writes_nothing() {
    let fx = Fixture::new();
    let d = fx.devices(5).await;
    let given = [
        d[0],
        DeviceId(99),
        d[1],
        DeviceId(77),
        DeviceId(99),
        DeviceId(1000),
    ];

    let e = fx
        .bulk()
        .enqueue(&given, "show version", REQUESTER)
        .await
        .unwrap_err();

    match &e {
        Error::Validation(ValidationError::UnknownDevices(unknown)) => {
            assert_eq!(unknown, &[DeviceId(99), DeviceId(77), DeviceId(1000)]);
        }
        other => panic!("expected unknown devices, got {other:?}"),
    }
    assert_eq!(e.to_string(), "unknown device ids: 99, 77, 1000");
    nothing_enqueued(&fx.queue).await;

    // No bulk either: the store is never asked to create one.
    let mut store = MockRunStore::new();
    store
        .expect_unknown_devices()
        .times(1)
        .returning(|_| Ok(vec![DeviceId(99)]));
    store.expect_create_bulk().never();
    let e = BulkService::new(Arc::new(store), Arc::new(LocalProgressHub::new()))
        .enqueue(&given, "show version", REQUESTER)
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Validation(ValidationError::UnknownDevices(_))
    ));
}

#[tokio::test]
async fn enqueue_rejects_bad_input_before_touching_the_store() {
    let fx = Fixture::new();
    let d = fx.devices(2).await;
    let long = "x".repeat(4097);
    let bad: [(&[DeviceId], &str, &str); 8] = [
        (&d, "", REQUESTER),
        (&d, "   ", REQUESTER),
        (&d, "show run\nreload", REQUESTER),
        (&d, "show run\rreload", REQUESTER),
        (&d, "show\0run", REQUESTER),
        (&d, &long, REQUESTER),
        (&d, "show version", " "),
        (&[], "show version", REQUESTER),
    ];
    // A store with no expectations panics on any call.
    let untouched = BulkService::new(
        Arc::new(MockRunStore::new()),
        Arc::new(LocalProgressHub::new()),
    );
    for (ids, command, requested_by) in bad {
        for bulk in [&fx.bulk(), &untouched] {
            let e = bulk.enqueue(ids, command, requested_by).await.unwrap_err();
            assert!(matches!(e, Error::Validation(_)), "{command:?}: {e:?}");
        }
    }
    let e = fx
        .bulk()
        .enqueue(&d, "show run\nreload", REQUESTER)
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Validation(ValidationError::Command(CommandError::Newline { at: 8 }))
    ));
    nothing_enqueued(&fx.queue).await;
}

/// A templated command is rendered for every device before anything is enqueued: a missing
/// variable names each device it is missing on and nothing is written; once every device has
/// it, each run stores its own rendered command.
#[tokio::test]
async fn a_template_missing_a_variable_names_the_devices_and_enqueues_nothing() {
    let fx = Fixture::new();
    let mut ids = Vec::new();
    for (name, uplink) in [
        ("r1", Some("Gi0/1")),
        ("r2", None),
        ("r3", Some("Gi0/3")),
        ("r4", None),
    ] {
        let mut d = netauto_core::NewDevice::new(name, "10.0.0.1", "cisco_ios", "ops");
        if let Some(u) = uplink {
            d = d.with_var("uplink", u);
        }
        ids.push(fx.store.create_device(d).await.unwrap().id);
    }
    let err = fx
        .bulk()
        .enqueue(&ids, "show interface {{ vars.uplink }}", REQUESTER)
        .await
        .unwrap_err();
    let Error::Validation(ValidationError::Template { problems }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("r2: undefined variable"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("r4: undefined variable"),
        "{problems:?}"
    );
    nothing_enqueued(&fx.queue).await;

    // The devices that have it run it, rendered.
    let with_uplink = [ids[0], ids[2]];
    fx.bulk()
        .enqueue(
            &with_uplink,
            "show interface {{ vars.uplink }} ! {{ name }}",
            REQUESTER,
        )
        .await
        .unwrap();
    let client = netauto_core::testing::ScriptedClient::with([
        netauto_core::testing::Reply::Events(vec![netauto_core::testing::exit(0)]),
        netauto_core::testing::Reply::Events(vec![netauto_core::testing::exit(0)]),
    ]);
    let net = fx.network(client.clone());
    for (id, want) in with_uplink
        .iter()
        .zip(["show interface Gi0/1 ! r1", "show interface Gi0/3 ! r3"])
    {
        let run = net
            .execute_command(
                *id,
                "show interface {{ vars.uplink }} ! {{ name }}",
                netauto_core::exec::RunOptions::new(REQUESTER),
            )
            .await
            .unwrap();
        assert_eq!(run.command, want);
    }
}

/// "Run again": on the devices whose outcome is not ok (pending ones are not failed), or on
/// all; the new bulk keeps the command and limits and names its parent; nothing failed is a
/// validation error.
#[tokio::test]
async fn a_bulk_runs_again_on_its_failed_devices_or_on_all() {
    use netauto_core::bulk::Rerun;
    use netauto_core::{BulkQuery, DeviceOutcome, LimitOverrides, RunStatus};
    let fx = Fixture::new();
    let ids = fx.devices(6).await;
    let limits = LimitOverrides::none().with_max_output(4096);
    let parent = fx
        .bulk()
        .enqueue_with_limits(&ids, "show version", REQUESTER, limits)
        .await
        .unwrap();
    let statuses = [
        RunStatus::Ok,
        RunStatus::Failed,
        RunStatus::Error,
        RunStatus::Timeout,
        RunStatus::Cancelled,
    ];
    for (id, status) in ids.iter().zip(statuses) {
        fx.store
            .record_outcome(
                &parent,
                DeviceOutcome {
                    device_id: *id,
                    run_id: None,
                    status,
                    error_kind: None,
                    recorded_at: t0(),
                    truncated: false,
                },
            )
            .await
            .unwrap();
    }
    // ids[5] is still pending.
    let failed = fx
        .bulk()
        .rerun(&parent, Rerun::Failed, "bob")
        .await
        .unwrap();
    let child = fx.store.bulk(&failed).await.unwrap();
    assert_eq!(child.device_ids, ids[1..5]);
    assert_eq!(child.parent.as_ref(), Some(&parent));
    assert_eq!(
        (child.command.as_str(), child.requested_by.as_str()),
        ("show version", "bob")
    );
    assert_eq!(child.limits, limits);
    let all = fx.bulk().rerun(&parent, Rerun::All, "bob").await.unwrap();
    assert_eq!(fx.store.bulk(&all).await.unwrap().device_ids, ids);
    let children = fx
        .store
        .list_bulks(&BulkQuery {
            parent: Some(parent.clone()),
            ..BulkQuery::newest(10)
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 2);

    let clean = fx
        .bulk()
        .enqueue(&ids[..1], "show clock", REQUESTER)
        .await
        .unwrap();
    let err = fx
        .bulk()
        .rerun(&clean, Rerun::Failed, "bob")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Validation(ValidationError::NoDevices)),
        "{err:?}"
    );
}
