//! Checks of the bulk side of the [`RunStore`](crate::RunStore) contract.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{Backend, at, devices, new_run};
use crate::{
    BulkCounters, BulkRef, BulkState, Conflict, DeviceId, DeviceOutcome, Enqueued, Error,
    JobFilter, NewBulk, NewJob, RunId, RunStatus,
};

pub(crate) fn new_bulk(bulk_ref: &BulkRef, device_ids: &[DeviceId]) -> NewBulk {
    NewBulk {
        bulk_ref: bulk_ref.clone(),
        command: "show version".into(),
        requested_by: "alice".into(),
        device_ids: device_ids.to_vec(),
        limits: crate::LimitOverrides::none(),
        parent: None,
    }
}

pub(crate) fn bulk_job(bulk_ref: &BulkRef, device_ids: &[DeviceId]) -> NewJob {
    NewJob::new(
        "bulk",
        "bulk",
        json!({
            "device_ids": device_ids,
            "command": "show version",
            "requested_by": "alice",
            "bulk_ref": bulk_ref,
        }),
    )
}

pub(crate) fn outcome(
    device: DeviceId,
    run_id: Option<RunId>,
    status: RunStatus,
    secs: i64,
) -> DeviceOutcome {
    DeviceOutcome {
        device_id: device,
        run_id,
        status,
        error_kind: (!status.is_ok()).then(|| "exit".to_owned()),
        recorded_at: at(secs),
        truncated: false,
    }
}

/// A bulk and its jobs are created together or not at all; a reused reference is
/// `Conflict::Exists`.
pub async fn create_bulk_is_atomic(b: &Backend) {
    let ids = devices(b, "fan", 3).await;
    let r = BulkRef::generate();
    let jobs = vec![bulk_job(&r, &ids[..2]), bulk_job(&r, &ids[2..])];
    let (bulk, enqueued) = b
        .store
        .create_bulk(new_bulk(&r, &ids), jobs, at(0))
        .await
        .expect("create_bulk");
    assert_eq!(bulk.bulk_ref, r);
    assert_eq!(bulk.device_ids, ids, "devices in the order given");
    assert_eq!(
        (bulk.command.as_str(), bulk.requested_by.as_str()),
        ("show version", "alice")
    );
    assert_eq!(bulk.created_at, at(0));
    assert_eq!(bulk.counters, BulkCounters::new(3));
    assert_eq!(bulk.finished_at, None);
    assert!(bulk.outcomes.is_empty());
    assert_eq!(b.store.bulk(&r).await.expect("bulk"), bulk);
    assert_eq!(enqueued.len(), 2);
    assert!(enqueued.iter().all(Enqueued::is_inserted), "{enqueued:?}");
    let queued = b
        .queue
        .list(&JobFilter::all().with_queue("bulk"))
        .await
        .expect("list");
    let queued_ids: Vec<_> = queued.iter().map(|j| j.id).collect();
    assert_eq!(
        queued_ids,
        enqueued.iter().map(|e| e.job().id).collect::<Vec<_>>()
    );
    assert_eq!(
        queued[0].args["bulk_ref"],
        json!(r.as_str()),
        "jobs are in the shared queue"
    );

    let broken = BulkRef::generate();
    let jobs = vec![bulk_job(&broken, &ids), NewJob::new("", "bulk", json!({}))];
    assert_err!(
        b.store
            .create_bulk(new_bulk(&broken, &ids), jobs, at(1))
            .await,
        Error::Validation(_),
        "create_bulk with an invalid job"
    );
    assert_err!(
        b.store.bulk(&broken).await,
        Error::NotFound { .. },
        "bulk of a failed create"
    );

    let jobs = vec![bulk_job(&r, &ids)];
    assert_err!(
        b.store
            .create_bulk(new_bulk(&r, &ids[..1]), jobs, at(2))
            .await,
        Error::Conflict(Conflict::Exists { .. }),
        "create_bulk with a reference in use"
    );
    assert_eq!(
        b.store.bulk(&r).await.expect("bulk"),
        bulk,
        "the first bulk is unchanged"
    );
    let after = b.queue.list(&JobFilter::all()).await.expect("list");
    assert_eq!(
        after.iter().map(|j| j.id).collect::<Vec<_>>(),
        queued_ids,
        "failed creates enqueue nothing"
    );
}

/// 100 devices, each recorded twice from 16 concurrent tasks: 100 calls record, exactly one
/// completes the bulk, and the counters always add up; `bulk_state` agrees with `bulk`.
pub async fn record_outcome_completes_exactly_once(b: &Backend) {
    let ids = devices(b, "crowd", 100).await;
    let r = BulkRef::generate();
    b.store
        .create_bulk(new_bulk(&r, &ids), Vec::new(), at(0))
        .await
        .expect("create_bulk");
    assert_eq!(
        b.store.bulk_state(&r).await.expect("bulk_state"),
        BulkState {
            created_at: at(0),
            counters: BulkCounters::new(100),
            finished_at: None,
            cancelled_at: None,
        }
    );
    assert!(matches!(
        b.store.bulk_state(&BulkRef::generate()).await,
        Err(Error::NotFound { .. })
    ));
    let status = |i: usize| {
        if i.is_multiple_of(3) {
            RunStatus::Timeout
        } else {
            RunStatus::Ok
        }
    };
    // Both calls for a device sit side by side, so neighbouring tasks make them at the
    // same time.
    let calls: Vec<DeviceOutcome> = (0..200)
        .map(|k| k / 2)
        .map(|i| outcome(ids[i], None, status(i), 5))
        .collect();
    let start = Arc::new(Barrier::new(16));
    let mut tasks = JoinSet::new();
    for t in 0..16 {
        let store = b.store.clone();
        let r = r.clone();
        let start = start.clone();
        let mine: Vec<DeviceOutcome> = calls.iter().skip(t).step_by(16).cloned().collect();
        tasks.spawn(async move {
            start.wait().await;
            let mut answers = Vec::new();
            for o in mine {
                answers.push(store.record_outcome(&r, o).await.expect("record_outcome"));
                tokio::task::yield_now().await;
            }
            answers
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.extend(done.expect("recording task panicked"));
    }
    assert_eq!(answers.len(), 200);
    for a in &answers {
        let c = a.counters;
        assert_eq!((c.total, c.ok + c.failed + c.pending), (100, 100), "{c:?}");
        assert!(
            !a.completed_now || a.newly_recorded,
            "only a recording call completes"
        );
    }
    assert_eq!(answers.iter().filter(|a| a.newly_recorded).count(), 100);
    let completing: Vec<_> = answers.iter().filter(|a| a.completed_now).collect();
    assert_eq!(
        completing.len(),
        1,
        "exactly one call completes the bulk: {completing:?}"
    );
    assert_eq!(completing[0].counters.pending, 0);

    let bulk = b.store.bulk(&r).await.expect("bulk");
    let failed = (0..100).filter(|i| i % 3 == 0).count() as u64;
    assert_eq!(
        bulk.counters,
        BulkCounters {
            total: 100,
            ok: 100 - failed,
            failed,
            cancelled: 0,
            pending: 0,
        }
    );
    assert!(
        bulk.finished_at.is_some(),
        "the completing call sets finished_at"
    );
    assert_eq!(bulk.outcomes.len(), 100);
    assert_eq!(
        b.store.bulk_state(&r).await.expect("bulk_state"),
        BulkState {
            created_at: bulk.created_at,
            counters: bulk.counters,
            finished_at: bulk.finished_at,
            cancelled_at: None,
        },
        "bulk_state agrees with bulk"
    );
    assert_eq!(
        bulk.outcomes[&ids[3]],
        outcome(ids[3], None, RunStatus::Timeout, 5)
    );
}

/// A second outcome for a device changes nothing and answers `newly_recorded: false`.
pub async fn record_outcome_is_idempotent_per_device(b: &Backend) {
    let ids = devices(b, "twice", 2).await;
    let r = BulkRef::generate();
    b.store
        .create_bulk(new_bulk(&r, &ids), Vec::new(), at(0))
        .await
        .expect("create_bulk");
    let first = b
        .store
        .record_outcome(&r, outcome(ids[0], None, RunStatus::Ok, 1))
        .await
        .expect("record_outcome");
    assert!(first.newly_recorded && !first.completed_now);
    assert_eq!(
        first.counters,
        BulkCounters {
            total: 2,
            ok: 1,
            failed: 0,
            cancelled: 0,
            pending: 1
        }
    );
    let second = b
        .store
        .record_outcome(&r, outcome(ids[0], None, RunStatus::Failed, 2))
        .await
        .expect("record_outcome");
    assert!(
        !second.newly_recorded && !second.completed_now,
        "{second:?}"
    );
    assert_eq!(second.counters, first.counters);
    let bulk = b.store.bulk(&r).await.expect("bulk");
    assert_eq!(
        bulk.outcomes[&ids[0]],
        outcome(ids[0], None, RunStatus::Ok, 1),
        "first wins"
    );
    assert_eq!(bulk.finished_at, None, "a device is still pending");

    let last = b
        .store
        .record_outcome(&r, outcome(ids[1], None, RunStatus::Error, 3))
        .await
        .expect("record_outcome");
    assert!(last.newly_recorded && last.completed_now);
    assert_eq!(
        last.counters,
        BulkCounters {
            total: 2,
            ok: 1,
            failed: 1,
            cancelled: 0,
            pending: 0
        }
    );
    let late = b
        .store
        .record_outcome(&r, outcome(ids[1], None, RunStatus::Ok, 4))
        .await
        .expect("record_outcome");
    assert!(
        !late.newly_recorded && !late.completed_now,
        "completion is answered once"
    );
    assert!(b.store.bulk(&r).await.expect("bulk").finished_at.is_some());
}

/// An outcome for a device outside the bulk is a validation error; an unknown bulk is
/// `NotFound`.
pub async fn record_outcome_rejects_foreign_devices(b: &Backend) {
    let ids = devices(b, "member", 3).await;
    let r = BulkRef::generate();
    b.store
        .create_bulk(new_bulk(&r, &ids[..2]), Vec::new(), at(0))
        .await
        .expect("create_bulk");
    for stranger in [ids[2], DeviceId(i64::MAX)] {
        assert_err!(
            b.store
                .record_outcome(&r, outcome(stranger, None, RunStatus::Ok, 1))
                .await,
            Error::Validation(_),
            "outcome for device {stranger}, not in the bulk"
        );
    }
    let bulk = b.store.bulk(&r).await.expect("bulk");
    assert_eq!(
        bulk.counters,
        BulkCounters::new(2),
        "rejected outcomes count nothing"
    );
    assert!(bulk.outcomes.is_empty());
    assert_err!(
        b.store
            .record_outcome(
                &BulkRef::generate(),
                outcome(ids[0], None, RunStatus::Ok, 1)
            )
            .await,
        Error::NotFound { .. },
        "outcome for an unknown bulk"
    );
    assert_err!(
        b.store.bulk(&BulkRef::generate()).await,
        Error::NotFound { .. },
        "unknown bulk"
    );
}

/// `device_outcomes` answers the recorded outcomes of the asked devices only.
pub async fn device_outcomes_filters(b: &Backend) {
    let ids = devices(b, "asked", 4).await;
    let r = BulkRef::generate();
    b.store
        .create_bulk(new_bulk(&r, &ids), Vec::new(), at(0))
        .await
        .expect("create_bulk");
    let mut recorded = Vec::new();
    for (i, status) in [
        (0, RunStatus::Ok),
        (2, RunStatus::Failed),
        (3, RunStatus::Ok),
    ] {
        let run = b
            .store
            .create_run(new_run(ids[i]), at(1))
            .await
            .expect("create_run");
        let o = outcome(ids[i], Some(run.id), status, 2);
        b.store
            .record_outcome(&r, o.clone())
            .await
            .expect("record_outcome");
        recorded.push(o);
    }
    let mut got = b
        .store
        .device_outcomes(&r, &[ids[2], ids[1], ids[0]])
        .await
        .expect("device_outcomes");
    got.sort_by_key(|o| o.device_id);
    assert_eq!(
        got,
        [recorded[0].clone(), recorded[1].clone()],
        "only asked, recorded devices"
    );
    let pending = b
        .store
        .device_outcomes(&r, &[ids[1]])
        .await
        .expect("device_outcomes");
    assert!(
        pending.is_empty(),
        "a pending device has no outcome: {pending:?}"
    );
    assert!(
        b.store
            .device_outcomes(&r, &[])
            .await
            .expect("device_outcomes")
            .is_empty()
    );
    let outside = b
        .store
        .device_outcomes(&r, &[DeviceId(i64::MAX)])
        .await
        .expect("device_outcomes");
    assert!(outside.is_empty());
}

/// `list_bulks`: newest first (`created_at`, then reference, descending), every filter —
/// requester, status, command text (case-insensitive, `%` and `_` literal), date range — as
/// [`BulkQuery::matches`](crate::BulkQuery::matches) says, and keyset pages that add up to
/// the whole list.
pub async fn list_bulks_filters_and_pages(b: &Backend) {
    use crate::{BulkCursor, BulkQuery, BulkStatus, BulkSummary};
    let ids = devices(b, "hist", 2).await;
    let specs: [(i64, &str, &str); 8] = [
        (10, "alice", "show version"),
        (20, "bob", "show ip route"),
        (20, "alice", "show VERSION detail"),
        (30, "carol", "ping 10.0.0.1"),
        (40, "bob", "show version"),
        (50, "alice", "show 100% load_avg"),
        (60, "bob", "show clock"),
        (70, "alice", "show 100x loadXavg"),
    ];
    let mut refs = Vec::new();
    for (secs, who, command) in specs {
        let r = BulkRef::generate();
        let mut bulk = new_bulk(&r, &ids);
        bulk.requested_by = who.into();
        bulk.command = command.into();
        b.store
            .create_bulk(bulk, vec![bulk_job(&r, &ids)], at(secs))
            .await
            .expect("create_bulk");
        refs.push(r);
    }
    // A re-run of the first, linked to it.
    let child = BulkRef::generate();
    let mut rerun = new_bulk(&child, &ids);
    rerun.parent = Some(refs[0].clone());
    b.store
        .create_bulk(rerun, vec![bulk_job(&child, &ids)], at(80))
        .await
        .expect("create_bulk");
    assert_eq!(
        b.store.bulk(&child).await.expect("bulk").parent.as_ref(),
        Some(&refs[0]),
        "the parent round-trips"
    );
    refs.push(child);
    // Finished: the second; cancelled: the fifth; the others running.
    for d in &ids {
        b.store
            .record_outcome(&refs[1], outcome(*d, None, RunStatus::Ok, 25))
            .await
            .expect("record_outcome");
    }
    b.store
        .cancel_bulk(&refs[4], at(45))
        .await
        .expect("cancel_bulk");
    let mut all: Vec<BulkSummary> = Vec::new();
    for r in &refs {
        all.push(BulkSummary::from(&b.store.bulk(r).await.expect("bulk")));
    }
    all.sort_by(|x, y| {
        (y.created_at, y.bulk_ref.as_str()).cmp(&(x.created_at, x.bulk_ref.as_str()))
    });
    assert_eq!(all[0].status(), BulkStatus::Running);
    let oracle = |q: &BulkQuery| -> Vec<BulkSummary> {
        all.iter()
            .filter(|s| q.matches(s))
            .take(q.page_size())
            .cloned()
            .collect()
    };
    let queries = [
        BulkQuery::newest(100),
        BulkQuery::newest(3),
        BulkQuery {
            requested_by: Some("alice".into()),
            ..BulkQuery::newest(100)
        },
        BulkQuery {
            status: Some(BulkStatus::Finished),
            ..BulkQuery::newest(100)
        },
        BulkQuery {
            status: Some(BulkStatus::Cancelled),
            ..BulkQuery::newest(100)
        },
        BulkQuery {
            status: Some(BulkStatus::Running),
            requested_by: Some("bob".into()),
            ..BulkQuery::newest(100)
        },
        BulkQuery {
            command: Some("Version".into()),
            ..BulkQuery::newest(100)
        },
        BulkQuery {
            parent: Some(refs[0].clone()),
            ..BulkQuery::newest(100)
        },
        BulkQuery {
            command: Some("100% load_".into()),
            ..BulkQuery::newest(100)
        },
        BulkQuery {
            since: Some(at(20)),
            until: Some(at(50)),
            ..BulkQuery::newest(100)
        },
        BulkQuery {
            after: Some(BulkCursor {
                created_at: at(20),
                bulk_ref: all
                    .iter()
                    .filter(|s| s.created_at == at(20))
                    .map(|s| s.bulk_ref.clone())
                    .max_by(|x, y| x.as_str().cmp(y.as_str()))
                    .expect("two bulks at 20 s"),
            }),
            ..BulkQuery::newest(100)
        },
    ];
    for q in &queries {
        let listed = b.store.list_bulks(q).await.expect("list_bulks");
        assert_eq!(listed, oracle(q), "{q:?}");
    }
    let children = b.store.list_bulks(&queries[7]).await.expect("list_bulks");
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(children[0].parent.as_ref(), Some(&refs[0]));
    let pct = b.store.list_bulks(&queries[8]).await.expect("list_bulks");
    assert_eq!(pct[0].command, "show 100% load_avg");
    assert_eq!(pct.len(), 1, "% and _ are literal: {pct:?}");
    // Pages of 3 add up to the whole list, in order.
    let mut paged = Vec::new();
    let mut q = BulkQuery::newest(3);
    loop {
        let page = b.store.list_bulks(&q).await.expect("list_bulks");
        if page.is_empty() {
            break;
        }
        q.after = page.last().map(BulkSummary::cursor);
        paged.extend(page);
    }
    assert_eq!(paged, all);
}
