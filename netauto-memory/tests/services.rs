//! The services of netauto-core (`Executor`, `Bulk`, `BulkJob`, `RetentionWorker`) run against
//! the in-memory backend, with scripted or mocked network clients, a manual clock, the
//! progress hub and the telemetry capture layer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use futures_util::{FutureExt, StreamExt};
use netauto_core::LocalProgressHub;
use netauto_core::bulk::BulkArgs;
use netauto_core::bulk::{BulkJob, BulkService};
use netauto_core::exec::{Executor, RunOptions};
use netauto_core::retention::{DEFAULT_BATCH_RUNS, Deleted};
use netauto_core::retention::{
    DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, PurgeReason, RetentionConfig,
    RunFootprint,
};
use netauto_core::retention::{PurgeReport, RetentionArgs, RetentionWorker};
use netauto_core::runtime::WorkerRegistry;
use netauto_core::telemetry;
use netauto_core::testing::{
    Capture, DrainOptions, DrainReport, EnqueuedFilter, all_enqueued, drain_queue,
    perform_job_with_clock,
};
use netauto_core::{
    Bulk as BulkRecord, BulkCounters, BulkEvent, BulkRef, ChunkAppended, Clock, CommandError,
    Device, DeviceId, DeviceOutcome, Enqueued, Error, ExecOptions, ExitStatus, FeedItem, JobFilter,
    JobQueue, ManualClock, MockNetworkClient, MockRunStore, NetworkClient, NetworkError, NewBulk,
    NewDevice, NewJob, NewRun, OutcomeRecorded, OutputEvent, OutputEvents, OutputStream,
    ProgressEvent, ProgressSink, Result, Run, RunChunk, RunEvent, RunFinish, RunId, RunStatus,
    RunStore, Subscription, TimeoutPhase, ValidationError, run_topic,
};
use netauto_memory::{InMemoryJobQueue, InMemoryRunStore};
use serde_json::json;
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The test epoch: every clock starts here.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn days_ago(days: i64) -> DateTime<Utc> {
    t0() - TimeDelta::days(days)
}

const REQUESTER: &str = "ann@example.com";

/// A fresh in-memory backend, progress hub and manual clock.
struct Fixture {
    queue: InMemoryJobQueue,
    store: InMemoryRunStore,
    hub: LocalProgressHub,
    clock: ManualClock,
}

impl Fixture {
    fn new() -> Self {
        let (queue, store) = netauto_memory::backend();
        Self {
            queue,
            store,
            hub: LocalProgressHub::new(),
            clock: ManualClock::new(t0()),
        }
    }

    fn store_dyn(&self) -> Arc<dyn RunStore> {
        Arc::new(self.store.clone())
    }

    fn queue_dyn(&self) -> Arc<dyn JobQueue> {
        Arc::new(self.queue.clone())
    }

    fn clock_dyn(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    fn network(&self, client: impl NetworkClient) -> Executor {
        Executor::new(
            self.store_dyn(),
            Arc::new(client),
            Arc::new(self.hub.clone()),
        )
        .with_clock(self.clock_dyn())
    }

    fn bulk(&self) -> BulkService {
        BulkService::new(self.store_dyn(), Arc::new(self.hub.clone())).with_clock(self.clock_dyn())
    }

    async fn devices(&self, n: usize) -> Vec<DeviceId> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let device = NewDevice::new(
                format!("sw-{i:03}"),
                format!("10.0.{}.{}", i / 250, i % 250 + 1),
                "cisco_ios",
                "netops",
            );
            ids.push(self.store.create_device(device).await.unwrap().id);
        }
        ids
    }

    /// All chunks of a run, in `seq` order.
    async fn chunks(&self, run: RunId) -> Vec<RunChunk> {
        self.store.chunks(run, 0, usize::MAX).await.unwrap()
    }

    /// The ids of all runs of these devices.
    async fn run_ids(&self, devices: &[DeviceId]) -> BTreeSet<RunId> {
        let mut ids = BTreeSet::new();
        for &d in devices {
            let runs = self.store.device_runs(d, usize::MAX).await.unwrap();
            ids.extend(runs.into_iter().map(|r| r.id));
        }
        ids
    }
}

type Item = std::result::Result<OutputEvent, NetworkError>;

fn out(text: &str) -> Item {
    Ok(OutputEvent::Stdout(Bytes::copy_from_slice(text.as_bytes())))
}

fn err(text: &str) -> Item {
    Ok(OutputEvent::Stderr(Bytes::copy_from_slice(text.as_bytes())))
}

fn exit(code: i32) -> Item {
    Ok(OutputEvent::Exit(ExitStatus::Code(code)))
}

fn events(items: Vec<Item>) -> OutputEvents {
    Box::pin(futures_util::stream::iter(items))
}

fn auth_error(device: &Device) -> NetworkError {
    NetworkError::Auth {
        host: format!("{}:{}", device.host, device.port),
        message: "permission denied (publickey)".into(),
    }
}

/// What a [`ScriptedClient`] answers to one `execute` call.
#[derive(Debug)]
enum Reply {
    /// Fails before the command starts.
    Refuse(NetworkError),
    /// These events, then the end of the stream.
    Events(Vec<Item>),
    /// Whatever the test sends, until it drops the sender.
    Live(mpsc::UnboundedReceiver<Item>),
    /// Never answers (a connect that hangs).
    Hang,
}

/// A hand-written client answering its calls with scripted replies, in order. Clones share
/// the script and the record of calls.
#[derive(Debug, Clone, Default)]
struct ScriptedClient {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    calls: Arc<Mutex<Vec<(DeviceId, String, ExecOptions)>>>,
}

impl ScriptedClient {
    fn with(replies: impl IntoIterator<Item = Reply>) -> Self {
        Self {
            replies: Arc::new(Mutex::new(replies.into_iter().collect())),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<(DeviceId, String, ExecOptions)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl NetworkClient for ScriptedClient {
    async fn execute(
        &self,
        device: &Device,
        command: &str,
        options: &ExecOptions,
    ) -> std::result::Result<OutputEvents, NetworkError> {
        self.calls
            .lock()
            .unwrap()
            .push((device.id, command.to_owned(), options.clone()));
        let reply = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .expect("execute called more often than scripted");
        match reply {
            Reply::Refuse(e) => Err(e),
            Reply::Events(items) => Ok(events(items)),
            Reply::Live(rx) => Ok(Box::pin(futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
            ))),
            Reply::Hang => std::future::pending().await,
        }
    }
}

/// Every event already published on a subscription, without waiting.
fn published(sub: &mut Subscription) -> Vec<ProgressEvent> {
    let mut seen = Vec::new();
    while let Some(Some(item)) = sub.next().now_or_never() {
        match item {
            FeedItem::Event(e) => seen.push(e),
            FeedItem::Lagged { missed } => panic!("subscriber lagged by {missed}"),
        }
    }
    seen
}

/// Polls `check` every 5 ms until it answers something (at most 5 s).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..1000 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

fn concat(chunks: &[RunChunk]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.data.iter().copied()).collect()
}

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

// ---------------------------------------------------------------------------------------------
// Executor::execute_command
// ---------------------------------------------------------------------------------------------

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
    let run_id = eventually("the first chunk to be stored", || async {
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
    let run_id = eventually("the first chunk to be stored", || async {
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

// ---------------------------------------------------------------------------------------------
// Bulk::enqueue
// ---------------------------------------------------------------------------------------------

fn bulk_jobs_filter() -> EnqueuedFilter {
    EnqueuedFilter::of::<BulkJob>().with_queue("bulk")
}

async fn nothing_enqueued(queue: &InMemoryJobQueue) {
    let jobs = queue.list(&JobFilter::all()).await.unwrap();
    assert!(jobs.is_empty(), "enqueued: {jobs:?}");
}

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

// ---------------------------------------------------------------------------------------------
// BulkJob
// ---------------------------------------------------------------------------------------------

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
    let store = RecordingStore::new(fx.store.clone(), None);
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

// ---------------------------------------------------------------------------------------------
// RetentionWorker
// ---------------------------------------------------------------------------------------------

/// Creates a run of `device` inserted at `inserted` with chunks of the given sizes, finished
/// at `finished` (or left running).
async fn seed_run(
    store: &InMemoryRunStore,
    device: DeviceId,
    inserted: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    chunk_sizes: &[usize],
) -> RunId {
    let run = store
        .create_run(
            NewRun {
                device_id: device,
                command: "show tech-support".into(),
                requested_by: "seed".into(),
                bulk_ref: None,
            },
            inserted,
        )
        .await
        .unwrap();
    for &n in chunk_sizes {
        store
            .append_chunk(run.id, OutputStream::Stdout, &vec![b'x'; n], inserted)
            .await
            .unwrap();
    }
    if let Some(at) = finished {
        store
            .finish_run(run.id, RunFinish::new(RunStatus::Ok), at)
            .await
            .unwrap();
    }
    run.id
}

/// A finished run of one chunk, inserted a minute before it finished.
async fn finished_run(
    store: &InMemoryRunStore,
    device: DeviceId,
    at: DateTime<Utc>,
    bytes: usize,
) -> RunId {
    seed_run(
        store,
        device,
        at - TimeDelta::minutes(1),
        Some(at),
        &[bytes],
    )
    .await
}

fn config(max_days: u32, max_bytes: u64) -> RetentionConfig {
    RetentionConfig::default()
        .with_max_days(max_days)
        .with_max_bytes(max_bytes)
        .build()
        .unwrap()
}

fn planned(report: &PurgeReport) -> Vec<(RunId, PurgeReason)> {
    report
        .plan
        .deletions
        .iter()
        .map(|d| (d.run_id, d.reason))
        .collect()
}

async fn assert_gone(fx: &Fixture, runs: &[RunId]) {
    for &id in runs {
        assert!(
            matches!(fx.store.run(id).await, Err(Error::NotFound { .. })),
            "run {id} survived"
        );
        assert!(fx.chunks(id).await.is_empty(), "chunks of {id} survived");
    }
}

#[tokio::test]
async fn retention_deletes_runs_older_than_the_cutoff_with_their_chunks() {
    let fx = Fixture::new();
    let d = fx.devices(3).await;
    let s = &fx.store;
    let cutoff = days_ago(30);
    let r1 = seed_run(s, d[0], days_ago(41), Some(days_ago(40)), &[100, 50]).await;
    let r2 = seed_run(s, d[0], days_ago(31), Some(cutoff), &[10]).await;
    let r3 = seed_run(
        s,
        d[0],
        days_ago(31),
        Some(cutoff - TimeDelta::seconds(1)),
        &[20],
    )
    .await;
    let r4 = seed_run(s, d[0], days_ago(1), Some(days_ago(1)), &[5]).await;
    let r5 = seed_run(s, d[1], days_ago(45), None, &[7]).await;
    let r6 = seed_run(s, d[1], days_ago(50), Some(days_ago(10)), &[9]).await;
    let r7 = seed_run(s, d[2], days_ago(32), Some(days_ago(31)), &[1, 1, 1]).await;
    let worker = RetentionWorker::new(fx.store_dyn(), config(30, 1 << 30));
    let capture = Capture::install_scoped();

    let report = worker.purge(t0(), false).await.unwrap();

    assert_eq!(
        planned(&report),
        [
            (r5, PurgeReason::Age),
            (r1, PurgeReason::Age),
            (r7, PurgeReason::Age),
            (r3, PurgeReason::Age),
        ],
        "oldest first by (ts, id); exactly at the cutoff stays"
    );
    assert_eq!(
        report.deleted_age,
        Deleted {
            runs: 4,
            bytes: 150 + 20 + 7 + 3,
            chunks: 2 + 1 + 1 + 3
        }
    );
    assert_eq!(report.deleted_bytes, Deleted::default());
    assert_eq!((report.batches, report.kept_by_guard), (1, 0));
    assert_gone(&fx, &[r1, r3, r5, r7]).await;
    assert_eq!(fx.run_ids(&d).await, BTreeSet::from([r2, r4, r6]));
    assert_eq!(concat(&fx.chunks(r6).await), vec![b'x'; 9]);
    assert_eq!(
        fx.store.device_totals().await.unwrap(),
        [
            DeviceTotal {
                device_id: d[0],
                bytes: 15,
                runs: 2
            },
            DeviceTotal {
                device_id: d[1],
                bytes: 9,
                runs: 1
            },
        ]
    );

    let event = capture.single(telemetry::RETENTION_PURGE);
    assert_eq!(event.field("dry_run"), Some("false"));
    assert_eq!(event.field_as::<u64>("runs_age"), Some(4));
    assert_eq!(event.field_as::<u64>("bytes_age"), Some(180));
    assert_eq!(event.field_as::<u64>("runs_bytes"), Some(0));
    assert_eq!(event.field_as::<u64>("bytes_freed"), Some(180));
    assert_eq!(event.field_as::<u64>("batches"), Some(1));

    let again = worker.purge(t0(), false).await.unwrap();
    assert!(again.plan.is_empty(), "idempotent: {:?}", again.plan);
}

#[tokio::test]
async fn retention_trims_devices_over_the_byte_cap_oldest_first() {
    let fx = Fixture::new();
    let d = fx.devices(4).await;
    let s = &fx.store;
    // Device 0: 5 × 300 = 1500 > 1000: the two oldest go.
    let mut a = Vec::new();
    for days in [10, 9, 8, 7, 6] {
        a.push(
            seed_run(
                s,
                d[0],
                days_ago(days),
                Some(days_ago(days)),
                &[100, 100, 100],
            )
            .await,
        );
    }
    // Device 1: a running run of 800 plus 2 × 300: both finished runs go, the running stays.
    let b_running = seed_run(s, d[1], days_ago(20), None, &[800]).await;
    let b5 = finished_run(s, d[1], days_ago(5), 300).await;
    let b4 = finished_run(s, d[1], days_ago(4), 300).await;
    // Device 2: a running run of 1200 alone exceeds the cap: unresolved.
    let c_running = seed_run(s, d[2], days_ago(3), None, &[1200]).await;
    let c2 = seed_run(s, d[2], days_ago(2), Some(days_ago(2)), &[60, 40]).await;
    // Device 3: 900, under the cap.
    let d_runs = [
        finished_run(s, d[3], days_ago(30), 450).await,
        finished_run(s, d[3], days_ago(29), 450).await,
    ];
    let worker = RetentionWorker::new(fx.store_dyn(), config(36_500, 1000));
    let capture = Capture::install_scoped();

    let report = worker.purge(t0(), false).await.unwrap();

    assert_eq!(
        planned(&report),
        [
            (a[0], PurgeReason::Bytes),
            (a[1], PurgeReason::Bytes),
            (b5, PurgeReason::Bytes),
            (b4, PurgeReason::Bytes),
            (c2, PurgeReason::Bytes),
        ]
    );
    assert_eq!(
        report.deleted_bytes,
        Deleted {
            runs: 5,
            bytes: 4 * 300 + 100,
            chunks: 3 + 3 + 1 + 1 + 2
        }
    );
    assert_eq!(report.deleted_age, Deleted::default());
    assert_eq!(report.plan.devices_over_cap_before, 3);
    assert_eq!(report.plan.devices_over_cap_after, 1);
    assert_eq!(report.plan.unresolved, [d[2]]);
    assert_gone(&fx, &[a[0], a[1], b5, b4, c2]).await;
    let mut survivors = BTreeSet::from([a[2], a[3], a[4], b_running, c_running]);
    survivors.extend(d_runs);
    assert_eq!(fx.run_ids(&d).await, survivors, "running runs survive");
    for running in [b_running, c_running] {
        assert_eq!(
            fx.store.run(running).await.unwrap().status,
            RunStatus::Running
        );
    }
    let totals: Vec<u64> = fx
        .store
        .device_totals()
        .await
        .unwrap()
        .iter()
        .map(|t| t.bytes)
        .collect();
    assert_eq!(totals, [900, 800, 1200, 900]);

    let event = capture.single(telemetry::RETENTION_PURGE);
    assert_eq!(event.field_as::<u64>("runs_bytes"), Some(5));
    assert_eq!(event.field_as::<u64>("bytes_bytes"), Some(1300));
    assert_eq!(event.field_as::<u64>("runs_age"), Some(0));
    assert_eq!(event.field_as::<u64>("devices_over_cap_before"), Some(3));
    assert_eq!(event.field_as::<u64>("devices_over_cap_after"), Some(1));
    assert_eq!(event.field_as::<u64>("unresolved_devices"), Some(1));
}

/// Device 0: 500 bytes aged, then 3 × 400 (1200 > 1000: the oldest goes). Device 1: 600
/// aged, 900 left. Device 2: one running run of 1500 (unresolved). Answers (aged, capped).
async fn seed_both_rules(fx: &Fixture, d: &[DeviceId]) -> (Vec<RunId>, RunId) {
    let s = &fx.store;
    let a_old = finished_run(s, d[0], days_ago(40), 500).await;
    let a5 = finished_run(s, d[0], days_ago(5), 400).await;
    finished_run(s, d[0], days_ago(4), 400).await;
    finished_run(s, d[0], days_ago(3), 400).await;
    let b_old = finished_run(s, d[1], days_ago(35), 600).await;
    finished_run(s, d[1], days_ago(1), 900).await;
    seed_run(s, d[2], days_ago(1), None, &[1000, 500]).await;
    (vec![a_old, b_old], a5)
}

#[tokio::test]
async fn the_retention_job_applies_both_rules_and_reports_them() {
    let fx = Fixture::new();
    let d = fx.devices(3).await;
    let (aged, capped) = seed_both_rules(&fx, &d).await;
    let before = fx.run_ids(&d).await;
    let worker = RetentionWorker::new(fx.store_dyn(), config(30, 1000));
    let capture = Capture::install_scoped();

    perform_job_with_clock(&worker, RetentionArgs { dry_run: false }, fx.clock_dyn())
        .await
        .unwrap();

    assert_gone(&fx, &[aged[0], aged[1], capped]).await;
    let mut expected = before;
    for id in [aged[0], aged[1], capped] {
        expected.remove(&id);
    }
    assert_eq!(fx.run_ids(&d).await, expected);
    let event = capture.single(telemetry::RETENTION_PURGE);
    let fields: BTreeMap<&str, Option<&str>> = [
        "dry_run",
        "planned_age",
        "planned_bytes",
        "runs_age",
        "runs_bytes",
        "bytes_age",
        "bytes_bytes",
        "bytes_freed",
        "batches",
        "devices_over_cap_before",
        "devices_over_cap_after",
        "unresolved_devices",
        "kept_by_guard",
    ]
    .into_iter()
    .map(|name| (name, event.field(name)))
    .collect();
    let expected: BTreeMap<&str, Option<&str>> = [
        ("dry_run", Some("false")),
        ("planned_age", Some("2")),
        ("planned_bytes", Some("1")),
        ("runs_age", Some("2")),
        ("runs_bytes", Some("1")),
        ("bytes_age", Some("1100")),
        ("bytes_bytes", Some("400")),
        ("bytes_freed", Some("1500")),
        ("batches", Some("2")),
        ("devices_over_cap_before", Some("3")),
        ("devices_over_cap_after", Some("1")),
        ("unresolved_devices", Some("1")),
        ("kept_by_guard", Some("0")),
    ]
    .into_iter()
    .collect();
    assert_eq!(fields, expected);
    assert!(event.field_as::<u64>("duration_ms").is_some());
}

#[tokio::test]
async fn a_dry_run_reports_the_plan_and_deletes_nothing() {
    let fx = Fixture::new();
    let d = fx.devices(3).await;
    let (aged, capped) = seed_both_rules(&fx, &d).await;
    let before = fx.run_ids(&d).await;
    let totals_before = fx.store.device_totals().await.unwrap();
    let worker = RetentionWorker::new(fx.store_dyn(), config(30, 1000));
    let capture = Capture::install_scoped();

    let dry = worker.purge(t0(), true).await.unwrap();
    perform_job_with_clock(&worker, RetentionArgs { dry_run: true }, fx.clock_dyn())
        .await
        .unwrap();

    assert!(dry.dry_run);
    assert_eq!(
        planned(&dry),
        [
            (aged[0], PurgeReason::Age),
            (aged[1], PurgeReason::Age),
            (capped, PurgeReason::Bytes),
        ]
    );
    assert_eq!((dry.plan.age.runs, dry.plan.age.bytes), (2, 1100));
    assert_eq!((dry.plan.bytes.runs, dry.plan.bytes.bytes), (1, 400));
    assert_eq!(dry.deleted_age, Deleted::default());
    assert_eq!(dry.deleted_bytes, Deleted::default());
    assert_eq!(dry.batches, 0);
    assert_eq!(fx.run_ids(&d).await, before, "nothing deleted");
    assert_eq!(fx.store.device_totals().await.unwrap(), totals_before);
    for event in capture.events_named(telemetry::RETENTION_PURGE) {
        assert_eq!(event.field("dry_run"), Some("true"));
        assert_eq!(event.field("planned_age"), Some("2"));
        assert_eq!(event.field("planned_bytes"), Some("1"));
        assert_eq!(event.field("runs_age"), Some("0"));
        assert_eq!(event.field("batches"), Some("0"));
    }
    assert_eq!(capture.count(telemetry::RETENTION_PURGE), 2);

    let real = worker.purge(t0(), false).await.unwrap();
    assert_eq!(
        real.plan, dry.plan,
        "the dry run showed exactly what happens"
    );
}

/// A store that forwards everything to the in-memory one, records the size of each
/// `delete_runs` call, and fails the calls after the first `fail_after` ones (a crash).
#[derive(Debug)]
struct RecordingStore {
    inner: InMemoryRunStore,
    deletes: Mutex<Vec<usize>>,
    fail_after: Option<usize>,
    /// While set, `create_run` fails as an unreachable database would.
    refuse_runs: Mutex<bool>,
}

impl RecordingStore {
    fn new(inner: InMemoryRunStore, fail_after: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            deletes: Mutex::default(),
            fail_after,
            refuse_runs: Mutex::new(false),
        })
    }

    fn refuse_runs(&self, refuse: bool) {
        *self.refuse_runs.lock().unwrap() = refuse;
    }

    fn delete_sizes(&self) -> Vec<usize> {
        self.deletes.lock().unwrap().clone()
    }
}

#[async_trait]
impl RunStore for RecordingStore {
    async fn create_device(&self, device: NewDevice) -> Result<Device> {
        self.inner.create_device(device).await
    }
    async fn device(&self, id: DeviceId) -> Result<Device> {
        self.inner.device(id).await
    }
    async fn list_devices(&self) -> Result<Vec<Device>> {
        self.inner.list_devices().await
    }
    async fn unknown_devices(&self, ids: &[DeviceId]) -> Result<Vec<DeviceId>> {
        self.inner.unknown_devices(ids).await
    }
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<Run> {
        if *self.refuse_runs.lock().unwrap() {
            return Err(Error::unavailable("database restarting"));
        }
        self.inner.create_run(run, now).await
    }
    async fn append_chunk(
        &self,
        run_id: RunId,
        stream: OutputStream,
        data: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ChunkAppended> {
        self.inner.append_chunk(run_id, stream, data, now).await
    }
    async fn finish_run(
        &self,
        run_id: RunId,
        finish: RunFinish,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        self.inner.finish_run(run_id, finish, now).await
    }
    async fn run(&self, id: RunId) -> Result<Run> {
        self.inner.run(id).await
    }
    async fn chunks(&self, run_id: RunId, from_seq: u64, limit: usize) -> Result<Vec<RunChunk>> {
        self.inner.chunks(run_id, from_seq, limit).await
    }
    async fn device_runs(&self, device_id: DeviceId, limit: usize) -> Result<Vec<Run>> {
        self.inner.device_runs(device_id, limit).await
    }
    async fn bulk_runs(&self, bulk_ref: &BulkRef, device_ids: &[DeviceId]) -> Result<Vec<Run>> {
        self.inner.bulk_runs(bulk_ref, device_ids).await
    }
    async fn create_bulk(
        &self,
        bulk: NewBulk,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<(BulkRecord, Vec<Enqueued>)> {
        self.inner.create_bulk(bulk, jobs, now).await
    }
    async fn bulk(&self, bulk_ref: &BulkRef) -> Result<BulkRecord> {
        self.inner.bulk(bulk_ref).await
    }
    async fn device_outcomes(
        &self,
        bulk_ref: &BulkRef,
        device_ids: &[DeviceId],
    ) -> Result<Vec<DeviceOutcome>> {
        self.inner.device_outcomes(bulk_ref, device_ids).await
    }
    async fn record_outcome(
        &self,
        bulk_ref: &BulkRef,
        outcome: DeviceOutcome,
    ) -> Result<OutcomeRecorded> {
        self.inner.record_outcome(bulk_ref, outcome).await
    }
    async fn request_run_cancel(&self, run_id: RunId, now: DateTime<Utc>) -> Result<Run> {
        self.inner.request_run_cancel(run_id, now).await
    }
    async fn cancel_requests(
        &self,
        bulks: &[BulkRef],
        runs: &[RunId],
    ) -> Result<netauto_core::CancelRequests> {
        self.inner.cancel_requests(bulks, runs).await
    }
    async fn cancel_bulk(
        &self,
        bulk_ref: &BulkRef,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::BulkCancelled> {
        self.inner.cancel_bulk(bulk_ref, now).await
    }
    async fn device_totals(&self) -> Result<Vec<DeviceTotal>> {
        self.inner.device_totals().await
    }
    async fn device_footprints(
        &self,
        devices: &[DeviceId],
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        self.inner.device_footprints(devices, after, limit).await
    }
    async fn aged_footprints(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        self.inner.aged_footprints(cutoff, after, limit).await
    }
    async fn delete_runs(&self, ids: &[RunId], guard: DeleteGuard) -> Result<DeletedRuns> {
        let calls = {
            let mut deletes = self.deletes.lock().unwrap();
            deletes.push(ids.len());
            deletes.len()
        };
        if self.fail_after.is_some_and(|n| calls > n) {
            return Err(Error::unavailable("the node died"));
        }
        self.inner.delete_runs(ids, guard).await
    }
}

#[tokio::test]
async fn retention_deletes_in_batches_of_at_most_200_runs() {
    let fx = Fixture::new();
    let d = fx.devices(4).await;
    for (i, &device) in d[..3].iter().enumerate() {
        for k in 0..150 {
            let at = days_ago(31) - TimeDelta::minutes(i as i64 * 1000 + k);
            finished_run(&fx.store, device, at, 10).await;
        }
    }
    let fresh = finished_run(&fx.store, d[3], days_ago(1), 10).await;
    let store = RecordingStore::new(fx.store.clone(), None);
    let worker = RetentionWorker::new(store.clone(), config(30, 1 << 30));
    assert_eq!(DEFAULT_BATCH_RUNS, 200);
    let capture = Capture::install_scoped();

    let report = worker.purge(t0(), false).await.unwrap();

    assert_eq!(report.batches, 3);
    assert_eq!(store.delete_sizes(), [200, 200, 50]);
    assert_eq!(
        report.deleted_age,
        Deleted {
            runs: 450,
            bytes: 4500,
            chunks: 450
        }
    );
    assert_eq!(fx.run_ids(&d).await, BTreeSet::from([fresh]));
    let event = capture.single(telemetry::RETENTION_PURGE);
    assert_eq!(event.field("batches"), Some("3"));
    assert_eq!(event.field("runs_age"), Some("450"));
}

/// 250 aged runs over two devices, plus byte-rule deletions on two devices: 259 deletions,
/// three batches (200 aged, 50 aged, 9 by bytes).
async fn seed_large(fx: &Fixture, d: &[DeviceId]) {
    let s = &fx.store;
    for k in 0..130 {
        finished_run(s, d[0], days_ago(60) + TimeDelta::minutes(k), 10).await;
    }
    for k in 0..120 {
        finished_run(s, d[1], days_ago(50) + TimeDelta::minutes(k), 10).await;
    }
    for k in 0..10 {
        finished_run(s, d[0], days_ago(20) + TimeDelta::hours(k), 300).await;
    }
    seed_run(s, d[2], days_ago(25), None, &[100]).await;
    for k in 0..5 {
        finished_run(s, d[2], days_ago(10) + TimeDelta::hours(k), 300).await;
    }
}

#[tokio::test]
async fn an_interrupted_purge_finishes_the_rest_on_the_next_run() {
    // One uninterrupted purge, for reference.
    let full_fx = Fixture::new();
    let d = full_fx.devices(3).await;
    seed_large(&full_fx, &d).await;
    let all_runs = full_fx.run_ids(&d).await;
    let full = RetentionWorker::new(full_fx.store_dyn(), config(30, 1000))
        .purge(t0(), false)
        .await
        .unwrap();
    assert_eq!(full.batches, 3);
    assert_eq!((full.deleted_age.runs, full.deleted_bytes.runs), (250, 9));
    let full_survivors = full_fx.run_ids(&d).await;
    let full_deleted: BTreeSet<RunId> = all_runs.difference(&full_survivors).copied().collect();
    let full_order: Vec<RunId> = full.plan.deletions.iter().map(|x| x.run_id).collect();
    assert_eq!(
        full_order.iter().copied().collect::<BTreeSet<_>>(),
        full_deleted
    );

    // The same data; only the first batch gets deleted before the "crash".
    let fx = Fixture::new();
    assert_eq!(fx.devices(3).await, d);
    seed_large(&fx, &d).await;
    assert_eq!(fx.run_ids(&d).await, all_runs, "same ids in both stores");
    let worker = RetentionWorker::new(fx.store_dyn(), config(30, 1000));
    let plan = worker.plan(t0()).await.unwrap();
    assert_eq!(plan, full.plan);
    let paged = worker.clone().with_page(7).plan(t0()).await.unwrap();
    assert_eq!(paged, full.plan, "planning page by page changes nothing");
    let (guard, first) = plan.batches(DEFAULT_BATCH_RUNS).next().unwrap();
    let first: Vec<RunId> = first.iter().map(|x| x.run_id).collect();
    let deleted = fx.store.delete_runs(&first, guard).await.unwrap();
    assert_eq!(deleted.ids.len(), 200);

    let rest = worker.purge(t0(), false).await.unwrap();

    assert_eq!((rest.deleted_age.runs, rest.deleted_bytes.runs), (50, 9));
    assert_eq!(rest.batches, 2);
    let rest_order: Vec<RunId> = rest.plan.deletions.iter().map(|x| x.run_id).collect();
    assert_eq!(
        [first.clone(), rest_order].concat(),
        full_order,
        "the first batch and the resumed purge make up the full plan"
    );
    assert_eq!(fx.run_ids(&d).await, full_survivors);
    assert_eq!(
        fx.store.device_totals().await.unwrap(),
        full_fx.store.device_totals().await.unwrap()
    );
    assert!(worker.purge(t0(), false).await.unwrap().plan.is_empty());

    // A purge whose node dies after its first transaction resumes the same way.
    let crash_fx = Fixture::new();
    crash_fx.devices(3).await;
    seed_large(&crash_fx, &d).await;
    let dying = RecordingStore::new(crash_fx.store.clone(), Some(1));
    let e = RetentionWorker::new(dying.clone(), config(30, 1000))
        .purge(t0(), false)
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(dying.delete_sizes(), [200, 50]);
    RetentionWorker::new(crash_fx.store_dyn(), config(30, 1000))
        .purge(t0(), false)
        .await
        .unwrap();
    assert_eq!(crash_fx.run_ids(&d).await, full_survivors);
}
