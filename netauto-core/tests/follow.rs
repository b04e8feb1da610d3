//! [`BulkFollower`] (issue 13, item 3): following a bulk costs O(1) per event — the store is
//! read once at the start and again only when events were missed (lag, cancel, a quiet spell
//! with outcomes nobody announced, a feed that ended).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use netauto_core::LocalProgressHub;
use netauto_core::follow::{BulkFollower, BulkUpdate, follow_bulk};
use netauto_core::{
    Bulk, BulkCounters, BulkEvent, BulkRef, BulkState, DeviceId, DeviceOutcome, LimitOverrides,
    MockRunStore, ProgressEvent, ProgressSink, RunStatus,
};

fn bulk(bulk_ref: &BulkRef, n: u64, done: &[u64]) -> Bulk {
    let mut counters = BulkCounters::new(n);
    let mut outcomes = BTreeMap::new();
    for &d in done {
        counters.count(RunStatus::Ok);
        outcomes.insert(
            DeviceId(d as i64),
            DeviceOutcome {
                device_id: DeviceId(d as i64),
                run_id: None,
                status: RunStatus::Ok,
                error_kind: None,
                recorded_at: Utc::now(),
                truncated: false,
            },
        );
    }
    Bulk {
        bulk_ref: bulk_ref.clone(),
        command: "show version".into(),
        requested_by: "ann".into(),
        device_ids: (1..=n as i64).map(DeviceId).collect(),
        created_at: Utc::now(),
        counters,
        finished_at: (done.len() as u64 == n).then(Utc::now),
        cancelled_at: None,
        limits: LimitOverrides::none(),
        parent: None,
        outcomes,
    }
}

fn progress(bulk_ref: &BulkRef, device: u64, done: u64, total: u64) -> ProgressEvent {
    ProgressEvent::Bulk(BulkEvent::Progress {
        bulk_ref: bulk_ref.clone(),
        device_id: DeviceId(device as i64),
        run_id: None,
        status: RunStatus::Ok,
        error_kind: None,
        truncated: false,
        done,
        total,
    })
}

fn summary(bulk_ref: &BulkRef, total: u64) -> ProgressEvent {
    ProgressEvent::Bulk(BulkEvent::Summary {
        bulk_ref: bulk_ref.clone(),
        ok: total,
        failed: 0,
        cancelled: 0,
        total,
        duration: Duration::from_millis(5),
    })
}

async fn collect(mut f: BulkFollower) -> Vec<BulkUpdate> {
    let mut out = Vec::new();
    while let Some(u) = tokio::time::timeout(Duration::from_secs(5), f.next())
        .await
        .expect("the follower ends")
    {
        out.push(u.expect("no store error"));
    }
    out
}

#[tokio::test]
async fn a_thousand_events_cost_one_read_of_the_bulk() {
    let r = BulkRef::generate();
    let n = 1000;
    let mut store = MockRunStore::new();
    let initial = bulk(&r, n, &[]);
    // The snapshot is read once; the events do the rest. (Any other call panics.)
    store
        .expect_bulk()
        .times(1)
        .returning(move |_| Ok(initial.clone()));
    let hub = LocalProgressHub::with_capacity(4096);
    let follower = follow_bulk(Arc::new(store), &hub, &r).await.unwrap();
    for d in 1..=n {
        hub.publish(progress(&r, d, d, n)).await;
    }
    hub.publish(summary(&r, n)).await;
    let updates = collect(follower).await;
    assert!(matches!(updates[0], BulkUpdate::Snapshot(_)));
    assert_eq!(updates.len() as u64, 1 + n + 1);
    assert!(matches!(
        updates.last(),
        Some(BulkUpdate::Summary { ok: 1000, .. })
    ));
}

#[tokio::test]
async fn a_lag_or_a_cancel_re_reads_the_snapshot() {
    let r = BulkRef::generate();
    let mut store = MockRunStore::new();
    let mut calls = 0;
    let r2 = r.clone();
    store.expect_bulk().times(3).returning(move |_| {
        calls += 1;
        Ok(match calls {
            1 => bulk(&r2, 10, &[]),
            2 => bulk(&r2, 10, &[1, 2, 3, 4, 5, 6]),
            _ => bulk(&r2, 10, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        })
    });
    // A feed of 2 events: 6 published at once lag the subscriber.
    let hub = LocalProgressHub::with_capacity(2);
    let mut f = follow_bulk(Arc::new(store), &hub, &r).await.unwrap();
    assert!(matches!(f.next().await, Some(Ok(BulkUpdate::Snapshot(_)))));
    for d in 1..=6 {
        hub.publish(progress(&r, d, d, 10)).await;
    }
    let mut snapshots = 0;
    // Lagged: the store's snapshot instead of the missed events.
    while let Some(Ok(u)) = tokio::time::timeout(Duration::from_secs(1), f.next())
        .await
        .ok()
        .flatten()
    {
        if let BulkUpdate::Snapshot(b) = &u {
            snapshots += 1;
            assert_eq!(b.counters.done(), 6);
            break;
        }
    }
    assert_eq!(snapshots, 1);
    // A cancel recorded the rest without a Progress each: the snapshot has them.
    hub.publish(ProgressEvent::Bulk(BulkEvent::Cancelled {
        bulk_ref: r.clone(),
        cancelled: 4,
        done: 10,
        total: 10,
    }))
    .await;
    let rest = collect(f).await;
    assert!(
        matches!(rest.last(), Some(BulkUpdate::Snapshot(b)) if b.finished_at.is_some()),
        "{rest:?}"
    );
}

#[tokio::test]
async fn a_quiet_feed_checks_the_counters_and_re_reads_only_when_something_was_missed() {
    let r = BulkRef::generate();
    let mut store = MockRunStore::new();
    let mut reads = 0;
    let r2 = r.clone();
    // Read twice: the start, and once the counters show outcomes nobody announced.
    store.expect_bulk().times(2).returning(move |_| {
        reads += 1;
        Ok(if reads == 1 {
            bulk(&r2, 3, &[])
        } else {
            bulk(&r2, 3, &[1, 2, 3])
        })
    });
    let mut checks = 0;
    store.expect_bulk_state().returning(move |_| {
        checks += 1;
        // Quiet and unchanged twice, then three outcomes the feed never carried (another
        // process recorded them).
        let done = if checks <= 2 { 0 } else { 3 };
        let mut counters = BulkCounters::new(3);
        for _ in 0..done {
            counters.count(RunStatus::Ok);
        }
        Ok(BulkState {
            created_at: Utc::now(),
            counters,
            finished_at: (done == 3).then(Utc::now),
            cancelled_at: None,
        })
    });
    let hub = LocalProgressHub::new();
    let f = follow_bulk(Arc::new(store), &hub, &r)
        .await
        .unwrap()
        .with_resync_after(Duration::from_millis(20));
    let updates = collect(f).await;
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert!(matches!(&updates[1], BulkUpdate::Snapshot(b) if b.counters.done() == 3));
}

#[tokio::test]
async fn a_summary_after_a_lost_progress_event_comes_after_a_fresh_snapshot() {
    let r = BulkRef::generate();
    let mut store = MockRunStore::new();
    let mut reads = 0;
    let r2 = r.clone();
    store.expect_bulk().times(2).returning(move |_| {
        reads += 1;
        Ok(if reads == 1 {
            bulk(&r2, 3, &[])
        } else {
            bulk(&r2, 3, &[1, 2, 3])
        })
    });
    let hub = LocalProgressHub::new();
    let f = follow_bulk(Arc::new(store), &hub, &r)
        .await
        .unwrap()
        .with_resync_after(Duration::from_millis(50));
    // Device 2's Progress is lost on the way; the Summary is not.
    hub.publish(progress(&r, 1, 1, 3)).await;
    hub.publish(progress(&r, 3, 3, 3)).await;
    hub.publish(summary(&r, 3)).await;
    let updates = collect(f).await;
    assert_eq!(updates.len(), 5, "{updates:?}");
    assert!(
        matches!(&updates[3], BulkUpdate::Snapshot(b) if b.outcomes.contains_key(&DeviceId(2))),
        "{updates:?}"
    );
    assert!(matches!(updates[4], BulkUpdate::Summary { ok: 3, .. }));
}

#[tokio::test]
async fn a_summary_that_overtook_a_progress_event_waits_for_it() {
    let r = BulkRef::generate();
    let mut store = MockRunStore::new();
    let initial = bulk(&r, 2, &[]);
    // Read once: the straggler arrives, nothing is re-read.
    store
        .expect_bulk()
        .times(1)
        .returning(move |_| Ok(initial.clone()));
    let hub = LocalProgressHub::new();
    let f = follow_bulk(Arc::new(store), &hub, &r).await.unwrap();
    // Device 1's job published a moment before device 2's job ended the bulk, on another
    // connection: its Progress arrives after the Summary.
    hub.publish(progress(&r, 2, 1, 2)).await;
    hub.publish(summary(&r, 2)).await;
    hub.publish(progress(&r, 1, 2, 2)).await;
    let updates = collect(f).await;
    assert_eq!(updates.len(), 4, "{updates:?}");
    assert!(matches!(
        updates[2],
        BulkUpdate::Progress {
            device_id: DeviceId(1),
            ..
        }
    ));
    assert!(matches!(updates[3], BulkUpdate::Summary { ok: 2, .. }));
}
