//! Checks of cancels, truncated runs and per-bulk limits in the [`RunStore`](crate::RunStore)
//! contract.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::bulk::{new_bulk, outcome};
use super::{Backend, at, devices, new_run};
use crate::{
    BulkRef, Conflict, DeviceOutcome, Error, LimitOverrides, NewRun, RunFinish, RunId, RunStatus,
};

fn bulk_run(device: crate::DeviceId, bulk_ref: &BulkRef) -> NewRun {
    NewRun {
        bulk_ref: Some(bulk_ref.clone()),
        ..new_run(device)
    }
}

/// Cancelling a bulk records `cancelled` for devices without an outcome and without a
/// running run (keeping a finished run's id), leaves running devices to their node, refuses
/// new runs of the bulk, and is idempotent; the last running device's outcome completes it.
pub async fn cancel_bulk_records_devices_not_started(b: &Backend) {
    let ids = devices(b, "cx", 5).await;
    let r = BulkRef::generate();
    b.store
        .create_bulk(new_bulk(&r, &ids), Vec::new(), at(0))
        .await
        .expect("create_bulk");
    // ids[0]: done ok. ids[1]: running. ids[2]: a finished run but no outcome yet (its
    // worker stopped in between). ids[3], ids[4]: never started.
    let done = b
        .store
        .create_run(bulk_run(ids[0], &r), at(1))
        .await
        .expect("run 0");
    b.store
        .record_outcome(&r, outcome(ids[0], Some(done.id), RunStatus::Ok, 2))
        .await
        .expect("outcome 0");
    let running = b
        .store
        .create_run(bulk_run(ids[1], &r), at(1))
        .await
        .expect("run 1");
    let finished = b
        .store
        .create_run(bulk_run(ids[2], &r), at(1))
        .await
        .expect("run 2");
    b.store
        .finish_run(finished.id, RunFinish::new(RunStatus::Ok), at(2))
        .await
        .expect("finish 2");

    let c = b.store.cancel_bulk(&r, at(3)).await.expect("cancel_bulk");
    assert!(c.newly_cancelled);
    assert_eq!(c.devices_cancelled, 3, "{c:?}");
    assert!(!c.completed_now, "device 1 still runs");
    assert_eq!(
        (
            c.counters.ok,
            c.counters.failed,
            c.counters.cancelled,
            c.counters.pending
        ),
        (1, 0, 3, 1)
    );
    let bulk = b.store.bulk(&r).await.expect("bulk");
    assert_eq!(bulk.cancelled_at, Some(at(3)));
    assert_eq!(bulk.finished_at, None);
    assert_eq!(bulk.counters, c.counters);
    assert!(!bulk.outcomes.contains_key(&ids[1]), "running device left");
    for (i, run) in [(2, Some(finished.id)), (3, None), (4, None)] {
        let o = &bulk.outcomes[&ids[i]];
        assert_eq!(
            (o.status, o.run_id, o.error_kind.as_deref(), o.recorded_at),
            (RunStatus::Cancelled, run, Some("cancelled"), at(3)),
            "device {i}"
        );
    }
    let state = b.store.bulk_state(&r).await.expect("bulk_state");
    assert_eq!(
        (state.cancelled_at, state.counters),
        (Some(at(3)), c.counters)
    );

    assert_err!(
        b.store.create_run(bulk_run(ids[3], &r), at(4)).await,
        Error::Conflict(Conflict::BulkCancelled(ref got)) if *got == r,
        "create_run in a cancelled bulk"
    );
    b.store
        .create_run(new_run(ids[3]), at(4))
        .await
        .expect("a run outside the bulk is not affected");

    let again = b.store.cancel_bulk(&r, at(5)).await.expect("cancel again");
    assert!(!again.newly_cancelled && again.devices_cancelled == 0 && !again.completed_now);
    assert_eq!(again.counters, c.counters);
    assert_eq!(
        b.store.bulk(&r).await.expect("bulk").cancelled_at,
        Some(at(3)),
        "the first cancel's time stays"
    );

    b.store
        .finish_run(
            running.id,
            RunFinish::new(RunStatus::Cancelled).with_error("cancelled", "cancelled"),
            at(6),
        )
        .await
        .expect("finish 1");
    let last = b
        .store
        .record_outcome(
            &r,
            DeviceOutcome {
                error_kind: Some("cancelled".into()),
                ..outcome(ids[1], Some(running.id), RunStatus::Cancelled, 6)
            },
        )
        .await
        .expect("outcome 1");
    assert!(last.newly_recorded && last.completed_now);
    assert_eq!(
        (
            last.counters.cancelled,
            last.counters.pending,
            last.counters.done()
        ),
        (4, 0, 5)
    );
    assert_eq!(
        b.store.bulk(&r).await.expect("bulk").finished_at,
        Some(at(6))
    );
}

/// A cancel that records the last pending devices completes the bulk (`completed_now`,
/// `finished_at`); cancelling a finished bulk, or an unknown one, changes nothing.
pub async fn cancel_bulk_completes_and_finished_bulks_stay(b: &Backend) {
    let ids = devices(b, "cz", 3).await;
    let r = BulkRef::generate();
    b.store
        .create_bulk(new_bulk(&r, &ids), Vec::new(), at(0))
        .await
        .expect("create_bulk");
    b.store
        .record_outcome(&r, outcome(ids[0], None, RunStatus::Failed, 1))
        .await
        .expect("outcome");
    let c = b.store.cancel_bulk(&r, at(2)).await.expect("cancel");
    assert!(c.newly_cancelled && c.completed_now);
    assert_eq!(
        (c.devices_cancelled, c.counters.failed, c.counters.pending),
        (2, 1, 0)
    );
    assert_eq!(
        b.store.bulk(&r).await.expect("bulk").finished_at,
        Some(at(2))
    );

    let done = BulkRef::generate();
    b.store
        .create_bulk(new_bulk(&done, &ids[..1]), Vec::new(), at(0))
        .await
        .expect("create_bulk");
    b.store
        .record_outcome(&done, outcome(ids[0], None, RunStatus::Ok, 1))
        .await
        .expect("outcome");
    let c = b
        .store
        .cancel_bulk(&done, at(2))
        .await
        .expect("cancel done");
    assert!(!c.newly_cancelled && !c.completed_now && c.devices_cancelled == 0);
    assert_eq!(
        b.store.bulk(&done).await.expect("bulk").cancelled_at,
        None,
        "a finished bulk is not marked cancelled"
    );
    assert_err!(
        b.store.cancel_bulk(&BulkRef::generate(), at(3)).await,
        Error::NotFound { .. },
        "cancel of an unknown bulk"
    );
}

/// Concurrent `create_run`s racing one `cancel_bulk`: every device ends with exactly one of
/// "a run created before the cancel, left to its node" or "a cancelled outcome and no run
/// created after the cancel" — never a run started after its device was recorded cancelled.
pub async fn cancel_bulk_and_create_run_are_atomic(b: &Backend) {
    let ids = devices(b, "race", 40).await;
    let r = BulkRef::generate();
    b.store
        .create_bulk(new_bulk(&r, &ids), Vec::new(), at(0))
        .await
        .expect("create_bulk");
    let start = Arc::new(Barrier::new(ids.len() + 1));
    let mut tasks = JoinSet::new();
    for &id in &ids {
        let (store, start, r) = (b.store.clone(), start.clone(), r.clone());
        tasks.spawn(async move {
            start.wait().await;
            match store.create_run(bulk_run(id, &r), at(1)).await {
                Ok(run) => Some(run.id),
                Err(Error::Conflict(Conflict::BulkCancelled(_))) => None,
                Err(e) => panic!("create_run: {e}"),
            }
        });
    }
    let (store, r2) = (b.store.clone(), r.clone());
    let cancel = tokio::spawn(async move {
        start.wait().await;
        store.cancel_bulk(&r2, at(1)).await.expect("cancel")
    });
    let mut created = 0;
    while let Some(res) = tasks.join_next().await {
        if res.expect("task").is_some() {
            created += 1;
        }
    }
    let c = cancel.await.expect("cancel task");
    let bulk = b.store.bulk(&r).await.expect("bulk");
    let runs = b.store.bulk_runs(&r, &ids).await.expect("bulk_runs");
    assert_eq!(runs.len(), created);
    for id in &ids {
        let has_run = runs.iter().any(|run| run.device_id == *id);
        let cancelled = bulk.outcomes.contains_key(id);
        assert!(
            has_run != cancelled,
            "device {id}: run created {has_run}, recorded cancelled {cancelled}"
        );
    }
    assert_eq!(c.devices_cancelled as usize + created, ids.len());
}

/// `request_run_cancel` marks a running run (reported by `cancel_requests`, with cancelled
/// bulks); finished runs are `Conflict::RunFinished`, unknown ones `NotFound`.
pub async fn cancel_requests_report_runs_and_bulks(b: &Backend) {
    let ids = devices(b, "cr", 2).await;
    let r = BulkRef::generate();
    let other = BulkRef::generate();
    for (bulk, members) in [(&r, &ids[..1]), (&other, &ids[1..])] {
        b.store
            .create_bulk(new_bulk(bulk, members), Vec::new(), at(0))
            .await
            .expect("create_bulk");
    }
    let a = b.store.create_run(new_run(ids[0]), at(1)).await.expect("a");
    let c = b.store.create_run(new_run(ids[1]), at(1)).await.expect("c");
    let none = b
        .store
        .cancel_requests(&[r.clone(), other.clone()], &[a.id, c.id])
        .await
        .expect("cancel_requests");
    assert!(none.bulks.is_empty() && none.runs.is_empty(), "{none:?}");

    let marked = b
        .store
        .request_run_cancel(a.id, at(2))
        .await
        .expect("cancel a");
    assert_eq!((marked.id, marked.status), (a.id, RunStatus::Running));
    b.store
        .request_run_cancel(a.id, at(3))
        .await
        .expect("asking twice is harmless");
    b.store.cancel_bulk(&r, at(2)).await.expect("cancel bulk");
    let found = b
        .store
        .cancel_requests(
            &[r.clone(), other.clone(), BulkRef::generate()],
            &[a.id, c.id, RunId(i64::MAX)],
        )
        .await
        .expect("cancel_requests");
    assert_eq!(found.bulks, vec![r.clone()]);
    assert_eq!(found.runs, vec![a.id]);

    b.store
        .finish_run(c.id, RunFinish::new(RunStatus::Ok), at(4))
        .await
        .expect("finish c");
    assert_err!(
        b.store.request_run_cancel(c.id, at(5)).await,
        Error::Conflict(Conflict::RunFinished(id)) if id == c.id,
        "cancel of a finished run"
    );
    assert_err!(
        b.store.request_run_cancel(RunId(i64::MAX), at(5)).await,
        Error::NotFound { .. },
        "cancel of an unknown run"
    );
}

/// `truncated` is stored on runs and outcomes, `cancelled` outcomes count apart from
/// `failed`, and a bulk's limits are read back as given.
pub async fn truncated_runs_and_bulk_limits_are_stored(b: &Backend) {
    let ids = devices(b, "tr", 2).await;
    let run = b
        .store
        .create_run(new_run(ids[0]), at(0))
        .await
        .expect("run");
    assert!(!run.truncated);
    let finished = b
        .store
        .finish_run(
            run.id,
            RunFinish::new(RunStatus::Error)
                .with_error("output_cap", "cap")
                .with_truncated(true),
            at(1),
        )
        .await
        .expect("finish");
    assert!(finished.truncated);
    assert!(b.store.run(run.id).await.expect("run").truncated);

    let r = BulkRef::generate();
    let limits = LimitOverrides::none()
        .with_timeout(Duration::from_millis(1500))
        .with_max_output(4096);
    let mut nb = new_bulk(&r, &ids);
    nb.limits = limits;
    let (created, _) = b
        .store
        .create_bulk(nb, Vec::new(), at(0))
        .await
        .expect("create_bulk");
    assert_eq!(created.limits, limits);
    assert_eq!(b.store.bulk(&r).await.expect("bulk").limits, limits);
    let plain = BulkRef::generate();
    b.store
        .create_bulk(new_bulk(&plain, &ids), Vec::new(), at(0))
        .await
        .expect("create_bulk");
    assert!(b.store.bulk(&plain).await.expect("bulk").limits.is_empty());

    b.store
        .record_outcome(
            &r,
            DeviceOutcome {
                truncated: true,
                ..outcome(ids[0], Some(run.id), RunStatus::Error, 2)
            },
        )
        .await
        .expect("outcome 0");
    let last = b
        .store
        .record_outcome(&r, outcome(ids[1], None, RunStatus::Cancelled, 3))
        .await
        .expect("outcome 1");
    assert!(last.completed_now);
    assert_eq!(
        (
            last.counters.ok,
            last.counters.failed,
            last.counters.cancelled
        ),
        (0, 1, 1)
    );
    let bulk = b.store.bulk(&r).await.expect("bulk");
    assert!(bulk.outcomes[&ids[0]].truncated);
    assert!(!bulk.outcomes[&ids[1]].truncated);
    let got = b
        .store
        .device_outcomes(&r, &ids)
        .await
        .expect("device_outcomes");
    assert!(got[0].truncated);
}
