//! [`Executor::execute_command`] against the in-memory backend, with scripted or mocked
//! network clients, a manual clock and the progress hub: chunking, streams, exit statuses,
//! transport errors, deadlines, deletion mid-stream, live output, input validation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use chrono::TimeDelta;
use common::{Fixture, REQUESTER, SOON, auth_error, concat, eventually, published, t0};
use netauto_core::exec::RunOptions;
use netauto_core::prelude::*;
use netauto_core::retention::{DeleteGuard, DeviceTotal};
use netauto_core::testing::{Reply, ScriptedClient, err, exit, out};
use netauto_core::{
    CommandError, DeviceId, Error, ExecOptions, ExitStatus, MockNetworkClient, NetworkError,
    OutputEvent, OutputStream, ProgressEvent, ProgressSink, Rejection, RejectionKind, Run,
    RunChunk, RunEvent, RunId, RunStatus, TimeoutPhase, ValidationError, run_topic,
};
use tokio::sync::mpsc;

fn shape(chunks: &[RunChunk]) -> Vec<(OutputStream, String)> {
    chunks
        .iter()
        .map(|c| (c.stream, String::from_utf8_lossy(&c.data).into_owned()))
        .collect()
}

/// Checks the invariants every stored run keeps: `seq` 0, 1, 2… and `bytes`/`chunks` exact.
async fn assert_consistent(fx: &Fixture, run: &Run) -> Vec<RunChunk> {
    let chunks = fx.chunks(run.id).await;
    let seqs: Vec<u64> = chunks.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (0..chunks.len() as u64).collect::<Vec<_>>());
    assert_eq!(run.chunks, chunks.len() as u64);
    assert_eq!(
        run.bytes,
        chunks.iter().map(|c| c.data.len() as u64).sum::<u64>()
    );
    assert!(chunks.iter().all(|c| !c.data.is_empty()), "empty chunk");
    chunks
}

#[tokio::test]
async fn many_small_reads_are_coalesced_into_bounded_chunks() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let mut expected = Vec::new();
    let mut items = Vec::new();
    for i in 0..1000 {
        let line = format!("line {i:04}\n");
        expected.extend_from_slice(line.as_bytes());
        items.push(out(&line));
    }
    items.push(exit(0));
    let client = ScriptedClient::with([Reply::Events(items)]);
    let net = fx.network(client.clone()).with_chunk_bytes(256);

    let run = net
        .execute_command(dev, "show logging", RunOptions::new(REQUESTER))
        .await
        .unwrap();

    assert_eq!(run.status, RunStatus::Ok);
    let chunks = assert_consistent(&fx, &run).await;
    assert!(chunks.iter().all(|c| c.data.len() <= 256));
    assert_eq!(
        chunks.len(),
        expected.len().div_ceil(256),
        "1000 reads of 10 bytes must be coalesced into full 256-byte chunks"
    );
    assert_eq!(run.bytes, expected.len() as u64);
    assert_eq!(concat(&chunks), expected);
    assert_eq!(
        fx.store.device_totals().await.unwrap(),
        [DeviceTotal {
            device_id: dev,
            bytes: 10_000,
            runs: 1
        }]
    );
    assert_eq!(
        client.calls(),
        [(
            dev,
            "show logging".to_owned(),
            // Every command has a deadline: the service's default when none is asked for.
            ExecOptions::default().with_timeout(Duration::from_secs(300))
        )]
    );
}

#[tokio::test]
async fn a_single_huge_read_is_split_into_chunks_of_the_default_size() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let size = netauto_core::exec::DEFAULT_CHUNK_BYTES;
    let data: Vec<u8> = (0..3 * size + 100).map(|i| (i % 251) as u8).collect();
    let client = ScriptedClient::with([Reply::Events(vec![
        Ok(OutputEvent::Stdout(Bytes::from(data.clone()))),
        exit(0),
    ])]);

    let run = fx
        .network(client)
        .execute_command(dev, "show tech-support", RunOptions::new(REQUESTER))
        .await
        .unwrap();

    let chunks = assert_consistent(&fx, &run).await;
    let sizes: Vec<usize> = chunks.iter().map(|c| c.data.len()).collect();
    assert_eq!(sizes, [size, size, size, 100]);
    assert_eq!(concat(&chunks), data);
    assert_eq!(run.bytes, data.len() as u64);
}

#[tokio::test]
async fn stdout_and_stderr_are_kept_apart_in_order() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let client = ScriptedClient::with([Reply::Events(vec![
        out("a"),
        out("b"),
        err("E1"),
        out("c"),
        err("E2"),
        err("E3"),
        exit(0),
    ])]);

    let run = fx
        .network(client)
        .execute_command(dev, "show version", RunOptions::new(REQUESTER))
        .await
        .unwrap();

    let chunks = assert_consistent(&fx, &run).await;
    assert_eq!(
        shape(&chunks),
        [
            (OutputStream::Stdout, "ab".to_owned()),
            (OutputStream::Stderr, "E1".to_owned()),
            (OutputStream::Stdout, "c".to_owned()),
            (OutputStream::Stderr, "E2E3".to_owned()),
        ]
    );
}

#[tokio::test]
async fn the_exit_status_decides_ok_or_failed() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let client = ScriptedClient::with([
        Reply::Events(vec![out("fine\n"), exit(0)]),
        Reply::Events(vec![err("% Invalid input\n"), exit(3)]),
        Reply::Events(vec![out("no exit status\n")]),
        Reply::Events(vec![Ok(OutputEvent::Exit(ExitStatus::Signal(
            "KILL".into(),
        )))]),
    ]);
    let net = fx.network(client);
    let mut runs = Vec::new();
    for _ in 0..4 {
        let run = net
            .execute_command(dev, "show version", RunOptions::new(REQUESTER))
            .await
            .unwrap();
        assert_eq!(run.finished_at, Some(t0()));
        assert_eq!(
            fx.store.run(run.id).await.unwrap(),
            run,
            "answered as stored"
        );
        runs.push(run);
    }
    let summary: Vec<_> = runs
        .iter()
        .map(|r| (r.status, r.exit_status, r.error_kind.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (RunStatus::Ok, Some(0), None),
            (RunStatus::Failed, Some(3), None),
            // Closed without an exit status: the command may not have finished.
            (RunStatus::Error, None, Some("closed")),
            (RunStatus::Failed, None, Some("signal")),
        ]
    );
    assert_eq!(
        shape(&fx.chunks(runs[1].id).await),
        [(OutputStream::Stderr, "% Invalid input\n".to_owned())]
    );
}

#[tokio::test]
async fn a_transport_error_before_the_start_ends_the_run_with_its_kind() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let device = fx.store.device(dev).await.unwrap();
    let cases = [
        (auth_error(&device), RunStatus::Error, "auth"),
        (
            NetworkError::Connect {
                host: "10.0.0.1:22".into(),
                message: "connection refused".into(),
            },
            RunStatus::Error,
            "connect",
        ),
        (
            NetworkError::HostKey {
                host: "10.0.0.1:22".into(),
                expected: "SHA256:aaaa".into(),
                actual: "SHA256:bbbb".into(),
            },
            RunStatus::Error,
            "host_key",
        ),
        (
            NetworkError::Timeout {
                phase: TimeoutPhase::Connect,
                after: Duration::from_secs(10),
            },
            RunStatus::Timeout,
            "timeout",
        ),
    ];
    let client = ScriptedClient::with(cases.iter().map(|(e, _, _)| Reply::Refuse(e.clone())));
    let net = fx.network(client);
    for (error, status, kind) in cases {
        let run = net
            .execute_command(dev, "show version", RunOptions::new(REQUESTER))
            .await
            .unwrap();
        assert_eq!(run.status, status, "{error}");
        assert_eq!(run.error_kind.as_deref(), Some(kind));
        assert_eq!(run.error_message, Some(error.to_string()));
        assert_eq!((run.bytes, run.chunks, run.exit_status), (0, 0, None));
        assert!(run.finished_at.is_some());
        assert!(fx.chunks(run.id).await.is_empty());
    }
}

#[tokio::test]
async fn an_error_mid_stream_keeps_what_arrived() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let client = ScriptedClient::with([Reply::Events(vec![
        out("partial output\n"),
        err("warning\n"),
        Err(NetworkError::Closed("peer reset the connection".into())),
        out("never read\n"),
    ])]);

    let run = fx
        .network(client)
        .execute_command(dev, "show interfaces", RunOptions::new(REQUESTER))
        .await
        .unwrap();

    assert_eq!(run.status, RunStatus::Error);
    assert_eq!(run.error_kind.as_deref(), Some("closed"));
    let chunks = assert_consistent(&fx, &run).await;
    assert_eq!(
        shape(&chunks),
        [
            (OutputStream::Stdout, "partial output\n".to_owned()),
            (OutputStream::Stderr, "warning\n".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_hanging_stream_times_out_and_keeps_its_output() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(out("before the hang\n")).unwrap();
    let client = ScriptedClient::with([Reply::Live(rx), Reply::Hang]);
    let net = fx.network(client.clone());
    let timeout = Duration::from_millis(100);

    let started = std::time::Instant::now();
    let run = net
        .execute_command(
            dev,
            "show tech-support",
            RunOptions::new(REQUESTER).with_timeout(timeout),
        )
        .await
        .unwrap();
    let took = started.elapsed();

    assert_eq!(run.status, RunStatus::Timeout);
    assert_eq!(run.error_kind.as_deref(), Some("timeout"));
    assert!(took >= timeout && took < Duration::from_secs(5), "{took:?}");
    let chunks = assert_consistent(&fx, &run).await;
    assert_eq!(
        shape(&chunks),
        [(OutputStream::Stdout, "before the hang\n".to_owned())],
        "output buffered when the deadline passed is stored"
    );

    // A connect that never answers times out the same way, with nothing stored.
    let run = net
        .execute_command(
            dev,
            "show version",
            RunOptions::new(REQUESTER).with_timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Timeout);
    assert_eq!((run.bytes, run.chunks), (0, 0));
    // The deadline is handed to the transport too.
    let calls = client.calls();
    assert_eq!(calls[0].2, ExecOptions::default().with_timeout(timeout));
    drop(tx);
}

#[tokio::test]
async fn output_after_the_exit_event_is_still_stored() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let client = ScriptedClient::with([Reply::Events(vec![
        out("body\n"),
        exit(0),
        out("trailer\n"),
        err("late warning\n"),
    ])]);

    let run = fx
        .network(client)
        .execute_command(dev, "show version", RunOptions::new(REQUESTER))
        .await
        .unwrap();

    assert_eq!((run.status, run.exit_status), (RunStatus::Ok, Some(0)));
    let chunks = assert_consistent(&fx, &run).await;
    assert_eq!(
        shape(&chunks),
        [
            (OutputStream::Stdout, "body\ntrailer\n".to_owned()),
            (OutputStream::Stderr, "late warning\n".to_owned()),
        ]
    );
}

#[tokio::test]
async fn partial_output_is_flushed_while_the_device_is_quiet() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let (tx, rx) = mpsc::unbounded_channel();
    let net = fx
        .network(ScriptedClient::with([Reply::Live(rx)]))
        .with_flush_after(Duration::from_millis(10));
    let task = tokio::spawn(async move {
        net.execute_command(dev, "show clock", RunOptions::new(REQUESTER))
            .await
    });

    tx.send(out("12:00:00.000 UTC")).unwrap();
    let run_id = eventually("the first chunk to be stored", SOON, || async {
        let runs = fx.store.device_runs(dev, 1).await.unwrap();
        runs.first().filter(|r| r.chunks == 1).map(|r| r.id)
    })
    .await;
    assert_eq!(
        fx.store.run(run_id).await.unwrap().status,
        RunStatus::Running
    );

    tx.send(out(" Sun Mar 1 2026\n")).unwrap();
    tx.send(exit(0)).unwrap();
    drop(tx);
    let run = task.await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(
        shape(&assert_consistent(&fx, &run).await),
        [
            (OutputStream::Stdout, "12:00:00.000 UTC".to_owned()),
            (OutputStream::Stdout, " Sun Mar 1 2026\n".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_run_deleted_mid_stream_stops_writing_with_run_gone() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let (tx, rx) = mpsc::unbounded_channel();
    let net = fx
        .network(ScriptedClient::with([Reply::Live(rx)]))
        .with_flush_after(Duration::from_millis(10));
    let mut feed = fx.hub.subscribe(&run_topic(RunId(1))).await;
    let task = tokio::spawn(async move {
        net.execute_command(dev, "show tech-support", RunOptions::new(REQUESTER))
            .await
    });

    tx.send(out("first part\n")).unwrap();
    let run_id = eventually("the first chunk to be stored", SOON, || async {
        let runs = fx.store.device_runs(dev, 1).await.unwrap();
        runs.first().filter(|r| r.chunks == 1).map(|r| r.id)
    })
    .await;
    assert_eq!(run_id, RunId(1));

    // Retention deletes the run while the device is still talking.
    let far_future = t0() + TimeDelta::days(365);
    let deleted = fx
        .store
        .delete_runs(&[run_id], DeleteGuard::AgedBefore(far_future))
        .await
        .unwrap();
    assert_eq!(deleted.ids, [run_id]);

    tx.send(out("second part\n")).unwrap();
    tx.send(exit(0)).unwrap();
    drop(tx);
    let result = task.await.unwrap();
    assert!(
        matches!(result, Err(Error::RunGone(id)) if id == run_id),
        "{result:?}"
    );

    assert!(matches!(
        fx.store.run(run_id).await,
        Err(Error::NotFound { what: "run", .. })
    ));
    assert!(fx.chunks(run_id).await.is_empty());
    assert!(fx.store.device_runs(dev, 10).await.unwrap().is_empty());
    assert!(
        fx.store.device_totals().await.unwrap().is_empty(),
        "nothing was written after the deletion"
    );
    let seen = published(&mut feed);
    assert_eq!(seen.len(), 1, "only the first chunk, no Finished: {seen:?}");
    assert!(matches!(
        &seen[0],
        ProgressEvent::Run(RunEvent::Output { seq: 0, data, .. }) if data.as_ref() == b"first part\n"
    ));
}

#[tokio::test]
async fn output_and_the_finish_are_published_on_the_run_topic() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let mut feed = fx.hub.subscribe(&run_topic(RunId(1))).await;
    let mut other = fx.hub.subscribe(&run_topic(RunId(2))).await;
    let client = ScriptedClient::with([Reply::Events(vec![
        out("hello "),
        err("oops"),
        out("world"),
        exit(0),
    ])]);

    let run = fx
        .network(client)
        .execute_command(dev, "show version", RunOptions::new(REQUESTER))
        .await
        .unwrap();
    assert_eq!(run.id, RunId(1));

    let output = |seq, stream, data: &'static str| {
        ProgressEvent::Run(RunEvent::Output {
            run_id: run.id,
            seq,
            stream,
            data: Bytes::from_static(data.as_bytes()),
        })
    };
    assert_eq!(
        published(&mut feed),
        [
            output(0, OutputStream::Stdout, "hello "),
            output(1, OutputStream::Stderr, "oops"),
            output(2, OutputStream::Stdout, "world"),
            ProgressEvent::Run(RunEvent::Finished {
                run_id: run.id,
                status: RunStatus::Ok
            }),
        ]
    );
    assert!(published(&mut other).is_empty());
}

#[tokio::test]
async fn invalid_input_creates_no_run_and_reaches_no_device() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let mut client = MockNetworkClient::new();
    client.expect_execute().never();
    let net = fx.network(client);

    type Check = fn(&Error) -> bool;
    let cases: [(&str, &str, Check); 6] = [
        ("", REQUESTER, |e| {
            matches!(
                e,
                Error::Validation(ValidationError::Command(CommandError::Empty))
            )
        }),
        ("  \t ", REQUESTER, |e| {
            matches!(
                e,
                Error::Validation(ValidationError::Command(CommandError::Empty))
            )
        }),
        ("\n", REQUESTER, |e| {
            matches!(
                e,
                Error::Validation(ValidationError::Command(CommandError::Empty))
            )
        }),
        ("show run\nreload", REQUESTER, |e| {
            matches!(
                e,
                Error::Validation(ValidationError::Command(CommandError::Newline { at: 8 }))
            )
        }),
        ("show\0version", REQUESTER, |e| {
            matches!(
                e,
                Error::Validation(ValidationError::Command(CommandError::Nul { at: 4 }))
            )
        }),
        ("show version", "  ", |e| {
            matches!(e, Error::Validation(ValidationError::EmptyRequestedBy))
        }),
    ];
    for (command, requested_by, expected) in cases {
        let e = net
            .execute_command(dev, command, RunOptions::new(requested_by))
            .await
            .unwrap_err();
        assert!(expected(&e), "{command:?}/{requested_by:?}: {e:?}");
    }
    let e = net
        .execute_command(DeviceId(999), "show version", RunOptions::new(REQUESTER))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { what: "device", .. }), "{e:?}");

    assert!(fx.store.device_runs(dev, 10).await.unwrap().is_empty());
    assert!(matches!(
        fx.store.run(RunId(1)).await,
        Err(Error::NotFound { .. })
    ));
}

/// A transport that reports a rejection (a platform failure pattern, an unanswered question)
/// makes the run `failed` with that kind, keeping the output.
#[tokio::test]
async fn a_rejected_command_is_failed_with_its_kind() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let rejected = |kind| {
        Reply::Events(vec![
            out("% Invalid input\n"),
            Ok(OutputEvent::Exit(ExitStatus::Rejected(Rejection {
                kind,
                detail: "% Invalid input".into(),
            }))),
        ])
    };
    let client = ScriptedClient::with([
        rejected(RejectionKind::CommandRejected),
        rejected(RejectionKind::PromptUnanswered),
    ]);
    let net = fx.network(client);
    for kind in ["command_rejected", "prompt_unanswered"] {
        let run = net
            .execute_command(dev, "show nope", RunOptions::new(REQUESTER))
            .await
            .unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.error_kind.as_deref(), Some(kind));
        assert_eq!(run.error_message.as_deref(), Some("% Invalid input"));
        assert_eq!(run.bytes, 16);
    }
}

/// What the transport reports besides output — the credential reference that logged in, and
/// that secrets were redacted — is recorded on the run.
#[tokio::test]
async fn the_login_credential_and_redaction_are_recorded_on_the_run() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let client = ScriptedClient::with([Reply::Events(vec![
        Ok(OutputEvent::LoggedIn {
            credential_ref: "local-fallback".into(),
        }),
        out("snmp-server community <redacted> RO\n"),
        Ok(OutputEvent::Redacted),
        exit(0),
    ])]);
    let run = fx
        .network(client)
        .execute_command(dev, "show run", RunOptions::new(REQUESTER))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.credential_ref.as_deref(), Some("local-fallback"));
    assert!(run.redacted);
    assert_eq!(fx.store.run(run.id).await.unwrap(), run);
}
