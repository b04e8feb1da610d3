//! Checks of the device, run and chunk side of the [`RunStore`](crate::RunStore) contract.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{Backend, at, day, devices, new_run};
use crate::retention::{DeleteGuard, DeletedRuns};
use crate::{
    BulkRef, Conflict, DeviceId, Error, NewDevice, NewRun, OutputStream, Run, RunFinish, RunId,
    RunStatus,
};

async fn run(b: &Backend, id: RunId) -> Run {
    b.store
        .run(id)
        .await
        .unwrap_or_else(|e| panic!("run({id}) failed: {e}"))
}

async fn start(b: &Backend, device: DeviceId, secs: i64) -> Run {
    b.store
        .create_run(new_run(device), at(secs))
        .await
        .unwrap_or_else(|e| panic!("create_run on device {device} failed: {e}"))
}

async fn append(b: &Backend, id: RunId, data: &[u8], secs: i64) {
    b.store
        .append_chunk(id, OutputStream::Stdout, data, at(secs))
        .await
        .unwrap_or_else(|e| panic!("append_chunk to run {id} failed: {e}"));
}

async fn finish(b: &Backend, id: RunId, secs: i64) -> Run {
    b.store
        .finish_run(
            id,
            RunFinish::new(RunStatus::Ok).with_exit_status(0),
            at(secs),
        )
        .await
        .unwrap_or_else(|e| panic!("finish_run({id}) failed: {e}"))
}

/// `create_devices` creates all devices of a batch or none of them.
pub async fn create_devices_is_all_or_nothing(b: &Backend) {
    let dev = |name: &str| NewDevice::new(name, "10.0.0.9", "linux", "ops");
    b.store.create_device(dev("taken")).await.expect("create");
    let clash = b
        .store
        .create_devices(vec![dev("b"), dev("c"), dev("taken")])
        .await;
    assert!(
        matches!(
            clash,
            Err(crate::Error::Conflict(crate::Conflict::Exists { .. }))
        ),
        "a name already in the store: {clash:?}"
    );
    let twice = b
        .store
        .create_devices(vec![dev("x"), dev("y"), dev("x")])
        .await;
    assert!(
        matches!(
            twice,
            Err(crate::Error::Conflict(crate::Conflict::Exists { .. }))
        ),
        "a name twice in the batch: {twice:?}"
    );
    let names: Vec<String> = b
        .store
        .list_devices()
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["taken"], "a failed batch leaves nothing behind");
    let made = b
        .store
        .create_devices(vec![dev("d"), dev("e")])
        .await
        .expect("batch");
    assert_eq!(
        made.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["d", "e"]
    );
    assert!(made[0].id < made[1].id, "ids in input order");
    for d in &made {
        assert_eq!(&b.store.device(d.id).await.expect("stored"), d);
    }
    assert!(
        b.store
            .create_devices(Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );
}

/// Devices round-trip, names are unique, listing is by ascending id.
pub async fn devices_are_unique_by_name(b: &Backend) {
    let new = NewDevice::new("core-sw-01", "10.0.0.1", "cisco_ios", "netops")
        .with_port(2222)
        .with_credential_ref("vault:core")
        .with_tags(["core", "dc1"])
        .with_site("dc1")
        .with_jump_host("netops@bastion-1:2222,bastion-2")
        .with_var("uplink", "Ethernet49/1")
        .with_var("loopback", "10.255.0.1");
    let created = b
        .store
        .create_device(new.clone())
        .await
        .expect("create_device");
    assert_eq!(
        created,
        new.clone().into_device(created.id),
        "fields round-trip"
    );
    assert_eq!(b.store.device(created.id).await.expect("device"), created);
    assert_err!(
        b.store
            .create_device(NewDevice::new("core-sw-01", "10.0.0.2", "linux", "x"))
            .await,
        Error::Conflict(Conflict::Exists { .. }),
        "a second device named core-sw-01"
    );
    let second = b
        .store
        .create_device(NewDevice::new(
            "core-sw-02",
            "10.0.0.2",
            "arista_eos",
            "netops",
        ))
        .await
        .expect("create_device");
    assert!(second.id > created.id, "ids ascend");
    let listed = b.store.list_devices().await.expect("list_devices");
    assert_eq!(
        listed,
        [created, second],
        "exactly the created devices, ascending id"
    );
    assert_err!(
        b.store.device(DeviceId(i64::MAX)).await,
        Error::NotFound { .. },
        "an unknown device"
    );
}

/// `unknown_devices` answers the unknown ids in input order, each once.
pub async fn unknown_devices_keep_input_order(b: &Backend) {
    let ids = devices(b, "known", 2).await;
    let (x, y) = (DeviceId(i64::MAX), DeviceId(i64::MAX - 7));
    let asked = [x, ids[0], y, x, ids[1], DeviceId(-1)];
    let unknown = b
        .store
        .unknown_devices(&asked)
        .await
        .expect("unknown_devices");
    assert_eq!(unknown, [x, y, DeviceId(-1)]);
    assert!(
        b.store
            .unknown_devices(&ids)
            .await
            .expect("unknown_devices")
            .is_empty()
    );
    assert!(
        b.store
            .unknown_devices(&[])
            .await
            .expect("unknown_devices")
            .is_empty()
    );
}

/// A run needs an existing device and starts `running` with no output.
pub async fn create_run_needs_a_device(b: &Backend) {
    assert_err!(
        b.store.create_run(new_run(DeviceId(i64::MAX)), at(0)).await,
        Error::NotFound { .. },
        "create_run on an unknown device"
    );
    let device = devices(b, "runner", 1).await[0];
    let bulk_ref = BulkRef::generate();
    let created = b
        .store
        .create_run(
            NewRun {
                device_id: device,
                command: "show ip route".into(),
                requested_by: "alice".into(),
                bulk_ref: Some(bulk_ref.clone()),
            },
            at(7),
        )
        .await
        .expect("create_run");
    assert_eq!(created.device_id, device);
    assert_eq!(created.command, "show ip route");
    assert_eq!(created.requested_by, "alice");
    assert_eq!(created.bulk_ref, Some(bulk_ref));
    assert_eq!(created.status, RunStatus::Running);
    assert_eq!(
        (created.inserted_at, created.started_at),
        (at(7), Some(at(7)))
    );
    assert_eq!(created.finished_at, None);
    assert_eq!((created.bytes, created.chunks), (0, 0));
    assert_eq!(created.exit_status, None);
    assert_eq!(run(b, created.id).await, created);
    assert!(
        b.store
            .chunks(created.id, 0, 10)
            .await
            .expect("chunks")
            .is_empty()
    );
}

/// Chunks get seq 0, 1, 2…, the run's bytes are their exact sum, and `chunks(from, limit)`
/// pages through them.
pub async fn chunks_are_sequenced_and_paged(b: &Backend) {
    let device = devices(b, "pager", 1).await[0];
    let r = start(b, device, 0).await;
    let pieces: Vec<(OutputStream, Vec<u8>)> = (0..7u8)
        .map(|i| {
            let stream = if i % 3 == 2 {
                OutputStream::Stderr
            } else {
                OutputStream::Stdout
            };
            (stream, [0xff - i, 0, b'\n', i].repeat(usize::from(i) + 1))
        })
        .collect();
    let mut total = 0;
    for (i, (stream, data)) in pieces.iter().enumerate() {
        let appended = b
            .store
            .append_chunk(r.id, *stream, data, at(i as i64))
            .await
            .expect("append_chunk");
        total += data.len() as u64;
        assert_eq!(appended.seq, i as u64, "seq counts from 0 without gaps");
        assert_eq!(appended.run_bytes, total, "run_bytes is the running sum");
    }
    let stored = run(b, r.id).await;
    assert_eq!((stored.bytes, stored.chunks), (total, 7));

    let all = b.store.chunks(r.id, 0, 100).await.expect("chunks");
    assert_eq!(all.len(), 7);
    for (i, chunk) in all.iter().enumerate() {
        assert_eq!(chunk.run_id, r.id);
        assert_eq!(chunk.seq, i as u64);
        assert_eq!(chunk.stream, pieces[i].0);
        assert_eq!(
            &chunk.data[..],
            &pieces[i].1[..],
            "bytes are stored verbatim"
        );
        assert_eq!(chunk.inserted_at, at(i as i64));
    }
    let seqs = |from, limit| async move {
        let page = b.store.chunks(r.id, from, limit).await.expect("chunks");
        page.iter().map(|c| c.seq).collect::<Vec<_>>()
    };
    assert_eq!(seqs(2, 3).await, [2, 3, 4]);
    assert_eq!(seqs(5, 3).await, [5, 6]);
    assert_eq!(seqs(7, 3).await, Vec::<u64>::new());
    assert_eq!(seqs(0, 0).await, Vec::<u64>::new());
    assert_eq!(seqs(6, 1).await, [6]);
}

/// Concurrent appends to one run keep `seq` gap-free and `bytes` exact.
pub async fn concurrent_appends_keep_seq_and_bytes(b: &Backend) {
    let device = devices(b, "racer", 1).await[0];
    let r = start(b, device, 0).await;
    let start = Arc::new(Barrier::new(8));
    let mut tasks = JoinSet::new();
    for t in 0..8u8 {
        let store = b.store.clone();
        let start = start.clone();
        tasks.spawn(async move {
            start.wait().await;
            let mut seqs = Vec::new();
            for i in 0..25u8 {
                let data = vec![t; usize::from(i % 5) + 1 + usize::from(t)];
                let appended = store
                    .append_chunk(r.id, OutputStream::Stdout, &data, at(1))
                    .await
                    .expect("concurrent append_chunk");
                seqs.push((appended.seq, data.len() as u64));
                tokio::task::yield_now().await;
            }
            seqs
        });
    }
    let mut seqs = BTreeSet::new();
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        for (seq, len) in done.expect("append task panicked") {
            assert!(seqs.insert(seq), "seq {seq} handed out twice");
            total += len;
        }
    }
    assert_eq!(seqs, (0..200).collect(), "seqs 0..200, each once");
    let stored = run(b, r.id).await;
    assert_eq!((stored.bytes, stored.chunks), (total, 200));
    let chunks = b.store.chunks(r.id, 0, 1000).await.expect("chunks");
    let sum: u64 = chunks.iter().map(|c| c.data.len() as u64).sum();
    assert_eq!(sum, total, "bytes equals the sum of chunk sizes");
    assert!(chunks.iter().enumerate().all(|(i, c)| c.seq == i as u64));
}

/// `finish_run` stores the final status and time; it finishes once and never as running.
pub async fn finish_run_records_the_outcome(b: &Backend) {
    let device = devices(b, "finisher", 1).await[0];
    let r = start(b, device, 0).await;
    append(b, r.id, b"% Invalid input\n", 1).await;
    assert_err!(
        b.store
            .finish_run(r.id, RunFinish::new(RunStatus::Running), at(2))
            .await,
        Error::Validation(_),
        "finishing as running"
    );
    assert_eq!(
        run(b, r.id).await.status,
        RunStatus::Running,
        "rejected finish changed it"
    );
    let finished = b
        .store
        .finish_run(
            r.id,
            RunFinish::new(RunStatus::Failed)
                .with_exit_status(2)
                .with_error("exit", "exit status 2")
                .with_credential_ref(Some("tacacs-fallback".to_owned()))
                .with_redacted(true),
            at(3),
        )
        .await
        .expect("finish_run");
    assert_eq!(finished.status, RunStatus::Failed);
    assert_eq!(finished.credential_ref.as_deref(), Some("tacacs-fallback"));
    assert!(finished.redacted);
    assert_eq!(finished.exit_status, Some(2));
    assert_eq!(finished.error_kind.as_deref(), Some("exit"));
    assert_eq!(finished.error_message.as_deref(), Some("exit status 2"));
    assert_eq!(finished.finished_at, Some(at(3)));
    assert_eq!(finished.retention_ts(), at(3));
    assert_eq!(
        (finished.inserted_at, finished.bytes, finished.chunks),
        (at(0), 16, 1)
    );
    assert_eq!(run(b, r.id).await, finished);
    assert_err!(
        b.store
            .finish_run(r.id, RunFinish::new(RunStatus::Ok), at(4))
            .await,
        Error::Conflict(Conflict::RunFinished(id)) if id == r.id,
        "finishing twice"
    );
    assert_eq!(run(b, r.id).await, finished);
}

/// Appending to a finished run is `RunFinished`; appending to or finishing a deleted run is
/// `RunGone`; a deleted run reads as `NotFound` with no chunks.
pub async fn writes_to_finished_or_deleted_runs_are_typed_errors(b: &Backend) {
    let device = devices(b, "gone", 1).await[0];
    let done = start(b, device, 0).await;
    append(b, done.id, b"hello", 1).await;
    finish(b, done.id, 2).await;
    assert_err!(
        b.store
            .append_chunk(done.id, OutputStream::Stdout, b"late", at(3))
            .await,
        Error::Conflict(Conflict::RunFinished(id)) if id == done.id,
        "append to a finished run"
    );
    assert_eq!(
        run(b, done.id).await.bytes,
        5,
        "the rejected append added nothing"
    );

    let doomed = start(b, device, 0).await;
    append(b, doomed.id, b"partial output", 1).await;
    let deleted = b
        .store
        .delete_runs(&[doomed.id], DeleteGuard::AgedBefore(at(10)))
        .await
        .expect("delete_runs");
    assert_eq!(deleted.ids, [doomed.id]);
    assert_err!(
        b.store
            .append_chunk(doomed.id, OutputStream::Stdout, b"more", at(3))
            .await,
        Error::RunGone(id) if id == doomed.id,
        "append to a deleted run"
    );
    assert_err!(
        b.store
            .finish_run(doomed.id, RunFinish::new(RunStatus::Ok), at(3))
            .await,
        Error::RunGone(id) if id == doomed.id,
        "finish of a deleted run"
    );
    assert_err!(
        b.store.run(doomed.id).await,
        Error::NotFound { .. },
        "read of a deleted run"
    );
    assert!(
        b.store
            .chunks(doomed.id, 0, 10)
            .await
            .expect("chunks")
            .is_empty()
    );
    assert_err!(
        b.store
            .append_chunk(RunId(i64::MAX), OutputStream::Stdout, b"x", at(3))
            .await,
        Error::RunGone(_),
        "append to a run that never existed"
    );
}

/// `device_runs` answers a device's newest runs first, at most `limit`.
pub async fn device_runs_are_newest_first(b: &Backend) {
    let ids = devices(b, "history", 2).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        mine.push(start(b, ids[0], i * 10).await.id);
        start(b, ids[1], i * 10 + 1).await;
    }
    finish(b, mine[1], 100).await;
    let newest: Vec<RunId> = b
        .store
        .device_runs(ids[0], 3)
        .await
        .expect("device_runs")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(newest, [mine[4], mine[3], mine[2]]);
    let all = b.store.device_runs(ids[0], 100).await.expect("device_runs");
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|r| r.device_id == ids[0]));
    assert_eq!(all[3], run(b, mine[1]).await, "full runs are answered");
    assert!(
        b.store
            .device_runs(DeviceId(i64::MAX), 5)
            .await
            .expect("device_runs")
            .is_empty()
    );
}

/// `delete_runs` removes the runs with their chunks and reports exactly what it removed.
pub async fn delete_runs_cascades_to_chunks(b: &Backend) {
    let device = devices(b, "cascade", 1).await[0];
    let mut runs = Vec::new();
    for i in 0..3 {
        let r = start(b, device, i).await;
        for _ in 0..=i {
            append(b, r.id, &[b'x'; 10], i).await;
        }
        finish(b, r.id, i + 1).await;
        runs.push(r.id);
    }
    let deleted = b
        .store
        .delete_runs(&[runs[2], runs[0], runs[2]], DeleteGuard::Finished)
        .await
        .expect("delete_runs");
    assert_eq!(
        deleted,
        DeletedRuns {
            ids: vec![runs[0], runs[2]],
            bytes: 40,
            chunks: 4,
        },
        "ids ascending, bytes and chunks of the deleted runs"
    );
    for id in [runs[0], runs[2]] {
        assert!(
            b.store.chunks(id, 0, 100).await.expect("chunks").is_empty(),
            "chunks cascade"
        );
        assert_err!(
            b.store.run(id).await,
            Error::NotFound { .. },
            "deleted run {id}"
        );
    }
    assert_eq!(
        b.store.chunks(runs[1], 0, 100).await.expect("chunks").len(),
        2
    );
    let totals = b.store.device_totals().await.expect("device_totals");
    assert_eq!(totals.len(), 1);
    assert_eq!(
        (totals[0].bytes, totals[0].runs),
        (20, 1),
        "totals forget deleted runs"
    );
    let again = b
        .store
        .delete_runs(&[runs[0], runs[2]], DeleteGuard::Finished)
        .await
        .expect("deleting deleted runs is not an error");
    assert_eq!(again, DeletedRuns::default());
}

/// The guard re-checks each run inside the delete: a run that finished after the cutoff was
/// computed, or is still running, is kept; already deleted or unknown ids are skipped.
pub async fn delete_guard_keeps_runs_that_changed(b: &Backend) {
    let device = devices(b, "guarded", 1).await[0];
    let cutoff = day(10);
    let late = b
        .store
        .create_run(new_run(device), day(0))
        .await
        .expect("create_run");
    append(b, late.id, b"0123456789", 0).await;
    let old = b
        .store
        .create_run(new_run(device), day(0))
        .await
        .expect("create_run");
    append(b, old.id, b"01234", 0).await;
    append(b, old.id, b"56789", 0).await;
    b.store
        .finish_run(old.id, RunFinish::new(RunStatus::Ok), day(1))
        .await
        .expect("finish_run");
    let stuck = b
        .store
        .create_run(new_run(device), day(2))
        .await
        .expect("create_run");
    // Planned while `late` was running with ts = day 0; it finishes before the delete runs.
    b.store
        .finish_run(late.id, RunFinish::new(RunStatus::Ok), day(40))
        .await
        .expect("finish_run");

    let deleted = b
        .store
        .delete_runs(
            &[late.id, old.id, stuck.id],
            DeleteGuard::AgedBefore(cutoff),
        )
        .await
        .expect("delete_runs");
    assert_eq!(
        deleted.ids,
        [old.id, stuck.id],
        "a running run inserted before the cutoff is aged"
    );
    assert_eq!((deleted.bytes, deleted.chunks), (10, 2));
    assert_eq!(
        run(b, late.id).await.bytes,
        10,
        "the run that moved past the cutoff is kept"
    );

    let fresh = b
        .store
        .create_run(new_run(device), day(50))
        .await
        .expect("create_run");
    append(b, fresh.id, b"abc", 0).await;
    let done = b
        .store
        .create_run(new_run(device), day(50))
        .await
        .expect("create_run");
    append(b, done.id, b"abcd", 0).await;
    b.store
        .finish_run(
            done.id,
            RunFinish::new(RunStatus::Error).with_error("auth", "denied"),
            day(51),
        )
        .await
        .expect("finish_run");
    let deleted = b
        .store
        .delete_runs(
            &[fresh.id, done.id, old.id, RunId(i64::MAX)],
            DeleteGuard::Finished,
        )
        .await
        .expect("delete_runs");
    assert_eq!(
        deleted,
        DeletedRuns {
            ids: vec![done.id],
            bytes: 4,
            chunks: 1,
        },
        "Finished keeps running runs and skips gone ids"
    );
    assert_eq!(run(b, fresh.id).await.status, RunStatus::Running);
    let empty = b
        .store
        .delete_runs(&[], DeleteGuard::Finished)
        .await
        .expect("delete_runs");
    assert_eq!(empty, DeletedRuns::default());
}

/// `update_device` replaces a device's fields (a name taken by another device is a
/// conflict); `delete_device` takes its runs and their output with it.
pub async fn devices_are_updated_and_deleted_with_their_runs(b: &Backend) {
    let ids = devices(b, "edit", 2).await;
    let mut changed = NewDevice::new("edit-renamed", "10.9.9.9", "cisco_ios", "netops");
    changed.port = 2222;
    changed.site = Some("lab".into());
    let d = b
        .store
        .update_device(ids[0], changed.clone())
        .await
        .expect("update");
    assert_eq!(
        (d.id, d.name.as_str(), d.host.as_str(), d.port),
        (ids[0], "edit-renamed", "10.9.9.9", 2222)
    );
    assert_eq!(b.store.device(ids[0]).await.expect("device"), d);
    changed.name = "edit-1".into();
    assert_err!(
        b.store.update_device(ids[0], changed.clone()).await,
        Error::Conflict(crate::Conflict::Exists { .. }),
        "the other device's name"
    );
    assert_err!(
        b.store
            .update_device(DeviceId::from(987_654), changed)
            .await,
        Error::NotFound { .. },
        "an unknown device"
    );
    let run = start(b, ids[1], 1).await;
    append(b, run.id, b"output", 1).await;
    finish(b, run.id, 2).await;
    let kept = start(b, ids[0], 1).await;
    assert_eq!(b.store.delete_device(ids[1]).await.expect("delete"), 1);
    assert_err!(
        b.store.device(ids[1]).await,
        Error::NotFound { .. },
        "deleted device"
    );
    assert_err!(
        b.store.run(run.id).await,
        Error::NotFound { .. },
        "its run went with it"
    );
    assert!(
        b.store
            .chunks(run.id, 0, 10)
            .await
            .map(|c| c.is_empty())
            .unwrap_or(true)
    );
    assert_eq!(b.store.run(kept.id).await.expect("other run").id, kept.id);
    assert_err!(
        b.store.delete_device(ids[1]).await,
        Error::NotFound { .. },
        "twice"
    );
    // The name is free again.
    b.store
        .create_device(NewDevice::new("edit-1", "h", "linux", "u"))
        .await
        .expect("the name is free");
}

/// API tokens: found by hash only while live (not revoked, not expired), last use recorded;
/// listed per user newest first; revoked only by their user; a hash is unique.
pub async fn api_tokens_work_until_revoked_or_expired(b: &Backend) {
    use crate::{ApiToken, NewApiToken};
    let new = |user: &str, name: &str, hash: &str, expires_at| NewApiToken {
        user: user.into(),
        name: name.into(),
        hash: hash.into(),
        expires_at,
    };
    let ci = b
        .store
        .create_token(new("ann", "ci", "h1", None), at(0))
        .await
        .expect("create");
    let short = b
        .store
        .create_token(new("ann", "short", "h2", Some(at(100))), at(1))
        .await
        .expect("create");
    b.store
        .create_token(new("bob", "bob's", "h3", None), at(2))
        .await
        .expect("create");
    assert_err!(
        b.store
            .create_token(new("bob", "again", "h3", None), at(3))
            .await,
        Error::Conflict(crate::Conflict::Exists { .. }),
        "a hash twice"
    );
    let names = |ts: Vec<ApiToken>| ts.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(
        names(b.store.tokens_of("ann").await.expect("tokens")),
        ["short", "ci"]
    );

    let used = b
        .store
        .use_token("h1", at(10))
        .await
        .expect("use")
        .expect("live");
    assert_eq!(
        (used.id, used.user.as_str(), used.last_used_at),
        (ci.id, "ann", Some(at(10)))
    );
    assert!(
        b.store
            .use_token("nope", at(10))
            .await
            .expect("use")
            .is_none()
    );
    assert!(
        b.store
            .use_token("h2", at(99))
            .await
            .expect("use")
            .is_some()
    );
    assert!(
        b.store
            .use_token("h2", at(100))
            .await
            .expect("use")
            .is_none(),
        "expired"
    );

    assert_err!(
        b.store.revoke_token(ci.id, "bob", at(80)).await,
        Error::NotFound { .. },
        "another user's token"
    );
    let revoked = b
        .store
        .revoke_token(ci.id, "ann", at(20))
        .await
        .expect("revoke");
    assert_eq!(revoked.revoked_at, Some(at(20)));
    let again = b
        .store
        .revoke_token(ci.id, "ann", at(30))
        .await
        .expect("revoke twice");
    assert_eq!(again.revoked_at, Some(at(20)), "the first time stays");
    assert!(
        b.store
            .use_token("h1", at(21))
            .await
            .expect("use")
            .is_none(),
        "revoked"
    );
    assert_eq!(short.user, "ann");
}

/// Users: unique names, a role and a password hash that change, listed by name; removing
/// one revokes their API tokens (a name added again does not get them back).
pub async fn users_keep_their_role_and_removal_revokes_tokens(b: &Backend) {
    use crate::{NewApiToken, NewUser, Role};
    let new = |name: &str, role| NewUser {
        name: name.into(),
        role,
        password_hash: format!("$argon2id$hash-of-{name}"),
    };
    let ann = b
        .store
        .create_user(new("ann", Role::Admin), at(0))
        .await
        .expect("create");
    assert_eq!((ann.role, ann.created_at), (Role::Admin, at(0)));
    b.store
        .create_user(new("bob", Role::Viewer), at(1))
        .await
        .expect("create");
    assert_err!(
        b.store.create_user(new("bob", Role::Admin), at(2)).await,
        Error::Conflict(crate::Conflict::Exists { .. }),
        "a name twice"
    );
    let names: Vec<_> = b
        .store
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(|u| (u.name, u.role))
        .collect();
    assert_eq!(
        names,
        [("ann".into(), Role::Admin), ("bob".into(), Role::Viewer)]
    );
    let bob = b
        .store
        .set_user_role("bob", Role::Operator, at(5))
        .await
        .expect("role");
    assert_eq!((bob.role, bob.updated_at), (Role::Operator, at(5)));
    let bob = b
        .store
        .set_user_password("bob", "$argon2id$new", at(6))
        .await
        .expect("password");
    assert_eq!(bob.password_hash, "$argon2id$new");
    assert_eq!(
        b.store.user("bob").await.expect("user").map(|u| u.role),
        Some(Role::Operator)
    );
    assert!(b.store.user("carol").await.expect("user").is_none());
    assert_err!(
        b.store.set_user_role("carol", Role::Admin, at(7)).await,
        Error::NotFound { .. },
        "unknown user"
    );

    b.store
        .create_token(
            NewApiToken {
                user: "bob".into(),
                name: "ci".into(),
                hash: "bob-h".into(),
                expires_at: None,
            },
            at(8),
        )
        .await
        .expect("token");
    let removed = b.store.remove_user("bob", at(9)).await.expect("remove");
    assert_eq!(removed.name, "bob");
    assert!(b.store.user("bob").await.expect("user").is_none());
    assert_err!(
        b.store.remove_user("bob", at(10)).await,
        Error::NotFound { .. },
        "removed twice"
    );
    b.store
        .create_user(new("bob", Role::Viewer), at(11))
        .await
        .expect("the name is free again");
    assert!(
        b.store
            .use_token("bob-h", at(12))
            .await
            .expect("use")
            .is_none(),
        "the old token stays revoked"
    );
}

/// The audit log: ids increase, newest first, keyset pages, actor and action filters
/// (`bulk` matches `bulk.start`, not `bulkhead`), pruning by age.
pub async fn audit_log_pages_filters_and_prunes(b: &Backend) {
    use crate::{AuditQuery, NewAuditEvent};
    let entries = [
        ("ann", "login", ""),
        ("ann", "bulk.start", "b1"),
        ("bob", "bulk.cancel", "b1"),
        ("bob", "bulkhead", ""),
        ("ann", "user.role", "bob"),
    ];
    let mut ids = Vec::new();
    for (i, (actor, action, target)) in entries.into_iter().enumerate() {
        let e = b
            .store
            .record_audit(
                NewAuditEvent::new(actor, action, target)
                    .detail("d")
                    .address(Some("127.0.0.1".into())),
                at(i as i64 * 10),
            )
            .await
            .expect("record");
        assert_eq!(
            (e.at, e.address.as_deref()),
            (at(i as i64 * 10), Some("127.0.0.1"))
        );
        ids.push(e.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    let list = |q: AuditQuery| async move {
        b.store
            .audit_events(&q)
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.action)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(AuditQuery::default()).await,
        [
            "user.role",
            "bulkhead",
            "bulk.cancel",
            "bulk.start",
            "login"
        ]
    );
    let page = AuditQuery {
        limit: Some(2),
        ..AuditQuery::default()
    };
    assert_eq!(list(page.clone()).await, ["user.role", "bulkhead"]);
    assert_eq!(
        list(AuditQuery {
            before: Some(ids[3]),
            ..page
        })
        .await,
        ["bulk.cancel", "bulk.start"]
    );
    assert_eq!(
        list(AuditQuery {
            action: Some("bulk".into()),
            ..AuditQuery::default()
        })
        .await,
        ["bulk.cancel", "bulk.start"]
    );
    assert_eq!(
        list(AuditQuery {
            actor: Some("ann".into()),
            action: Some("bulk.start".into()),
            ..AuditQuery::default()
        })
        .await,
        ["bulk.start"]
    );
    assert_eq!(b.store.prune_audit(at(20)).await.expect("prune"), 2);
    assert_eq!(
        list(AuditQuery::default()).await,
        ["user.role", "bulkhead", "bulk.cancel"]
    );
}

/// Webhooks: stored with their secret and events, listed by id; delivery attempts recorded
/// for a known webhook only, listed newest first (per webhook or all), deleted with their
/// webhook and pruned with the audit log.
pub async fn webhooks_keep_their_deliveries(b: &Backend) {
    use crate::{NewWebhook, NewWebhookDelivery};
    let new = |url: &str| NewWebhook {
        url: url.into(),
        events: vec!["bulk.finished".into(), "bulk.failed".into()],
        failed_threshold: "10%".into(),
        secret: "whsec_x".into(),
        created_by: "ann".into(),
    };
    let a = b
        .store
        .create_webhook(new("http://a.example/hook"), at(0))
        .await
        .expect("create");
    let c = b
        .store
        .create_webhook(new("https://c.example/hook"), at(1))
        .await
        .expect("create");
    assert_eq!(
        (
            a.events.clone(),
            a.secret.as_str(),
            a.failed_threshold.as_str()
        ),
        (
            vec!["bulk.finished".to_owned(), "bulk.failed".to_owned()],
            "whsec_x",
            "10%"
        )
    );
    let all = b.store.webhooks().await.expect("list");
    assert_eq!(all.iter().map(|w| w.id).collect::<Vec<_>>(), [a.id, c.id]);
    let delivery = |hook: i64, attempt: u32, status: Option<u16>| NewWebhookDelivery {
        webhook_id: hook,
        event: "bulk.finished".into(),
        target: "b1".into(),
        attempt,
        status_code: status,
        error: status.is_none().then(|| "connection refused".to_owned()),
        duration_ms: 12,
    };
    let d1 = b
        .store
        .record_delivery(delivery(a.id, 1, None), at(10))
        .await
        .expect("record");
    assert_eq!(
        (d1.attempt, d1.status_code, d1.error.as_deref(), d1.at),
        (1, None, Some("connection refused"), at(10))
    );
    b.store
        .record_delivery(delivery(a.id, 2, Some(200)), at(20))
        .await
        .expect("record");
    b.store
        .record_delivery(delivery(c.id, 1, Some(500)), at(30))
        .await
        .expect("record");
    assert_err!(
        b.store
            .record_delivery(delivery(a.id + c.id + 100, 1, None), at(31))
            .await,
        Error::NotFound { .. },
        "an unknown webhook"
    );
    let of_a = b.store.deliveries(Some(a.id), 10).await.expect("list");
    assert_eq!(
        of_a.iter().map(|d| d.status_code).collect::<Vec<_>>(),
        [Some(200), None]
    );
    assert_eq!(b.store.deliveries(None, 2).await.expect("list").len(), 2);
    b.store.prune_audit(at(15)).await.expect("prune");
    assert_eq!(
        b.store
            .deliveries(Some(a.id), 10)
            .await
            .expect("list")
            .len(),
        1
    );
    let gone = b.store.delete_webhook(c.id).await.expect("delete");
    assert_eq!(gone.url, "https://c.example/hook");
    assert!(
        b.store
            .deliveries(Some(c.id), 10)
            .await
            .expect("list")
            .is_empty()
    );
    assert_err!(
        b.store.delete_webhook(c.id).await,
        Error::NotFound { .. },
        "deleted twice"
    );
}
