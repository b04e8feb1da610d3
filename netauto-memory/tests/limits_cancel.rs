//! Issue 12 against the in-memory backend: every command has a deadline and an output cap,
//! runs and bulks can be cancelled (also from another "node" sharing the store), chunks never
//! split a UTF-8 character, and a bulk always ends, whatever ends its jobs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use futures_util::{FutureExt, StreamExt};
use netauto_core::LocalProgressHub;
use netauto_core::bulk::{ABANDONED, BulkArgs};
use netauto_core::bulk::{BulkJob, BulkService};
use netauto_core::exec::{Executor, RunOptions};
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig};
use netauto_core::runtime::{Worker, WorkerRegistry};
use netauto_core::testing::{DrainOptions, drain_queue};
use netauto_core::{
    BulkEvent, BulkRef, ClaimRequest, Clock, Device, DeviceId, ExecLimits, ExecOptions, ExitStatus,
    FeedItem, JobFilter, JobQueue, JobState, LimitOverrides, ManualClock, NetworkClient,
    NetworkError, NewBulk, NewDevice, OutputEvent, OutputEvents, ProgressEvent, ProgressSink,
    RunEvent, RunStatus, RunStore, Subscription, SystemClock, run_topic,
};
use netauto_memory::{InMemoryJobQueue, InMemoryRunStore};
use serde_json::json;
use tokio::sync::mpsc;

const REQUESTER: &str = "ann@example.com";

struct Fixture {
    queue: InMemoryJobQueue,
    store: InMemoryRunStore,
    hub: LocalProgressHub,
}

impl Fixture {
    fn new() -> Self {
        let (queue, store) = netauto_memory::backend();
        Self {
            queue,
            store,
            hub: LocalProgressHub::new(),
        }
    }

    fn store_dyn(&self) -> Arc<dyn RunStore> {
        Arc::new(self.store.clone())
    }

    fn queue_dyn(&self) -> Arc<dyn JobQueue> {
        Arc::new(self.queue.clone())
    }

    /// A network service over `client` (cancel polls every 50 ms).
    fn network(&self, client: impl NetworkClient) -> Executor {
        Executor::new(
            self.store_dyn(),
            Arc::new(client),
            Arc::new(self.hub.clone()),
        )
        .with_cancel_poll(Duration::from_millis(50))
    }

    fn bulk(&self) -> BulkService {
        BulkService::new(self.store_dyn(), Arc::new(self.hub.clone()))
    }

    async fn devices(&self, n: usize) -> Vec<DeviceId> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let d = NewDevice::new(format!("d{i:03}"), "10.0.0.1", "linux", "ops");
            ids.push(self.store.create_device(d).await.unwrap().id);
        }
        ids
    }
}

/// What each `execute` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// `yes`: the same line forever, as fast as it is read.
    Endless,
    /// A line of output, then silence forever (a command that never ends).
    Silent,
    /// `ok\n` and exit 0.
    Ok,
    /// The worker panics.
    Panic,
}

/// A client whose sessions are counted: a session is open from `execute` until its output
/// stream is dropped (that is how the service closes a session).
#[derive(Debug, Clone)]
struct FakeClient {
    behaviour: Behaviour,
    open: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
}

impl FakeClient {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            open: Arc::default(),
            started: Arc::default(),
        }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

struct Session(Arc<AtomicUsize>);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl NetworkClient for FakeClient {
    async fn execute(
        &self,
        _device: &Device,
        _command: &str,
        _options: &ExecOptions,
    ) -> Result<OutputEvents, NetworkError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.open.fetch_add(1, Ordering::SeqCst);
        let session = Session(self.open.clone());
        let line = Bytes::from_static(b"y\n");
        Ok(match self.behaviour {
            Behaviour::Endless => futures_util::stream::unfold(session, move |s| {
                let line = line.clone();
                async move {
                    tokio::task::yield_now().await;
                    Some((Ok(OutputEvent::Stdout(line.repeat(512).into())), s))
                }
            })
            .boxed(),
            Behaviour::Silent => futures_util::stream::once(async move {
                Ok(OutputEvent::Stdout(Bytes::from_static(b"started\n")))
            })
            .chain(futures_util::stream::unfold(session, |s| async move {
                std::future::pending::<()>().await;
                Some((Ok(OutputEvent::Stdout(Bytes::new())), s))
            }))
            .boxed(),
            Behaviour::Ok => {
                drop(session);
                futures_util::stream::iter([
                    Ok(OutputEvent::Stdout(Bytes::from_static(b"ok\n"))),
                    Ok(OutputEvent::Exit(ExitStatus::Code(0))),
                ])
                .boxed()
            }
            Behaviour::Panic => panic!("simulated worker bug"),
        })
    }
}

/// Every event published so far on a subscription.
fn published(sub: &mut Subscription) -> Vec<ProgressEvent> {
    let mut seen = Vec::new();
    while let Some(Some(item)) = sub.next().now_or_never() {
        match item {
            FeedItem::Event(e) => seen.push(e),
            FeedItem::Lagged { missed } => panic!("lagged by {missed}"),
        }
    }
    seen
}

fn summaries(seen: &[ProgressEvent]) -> Vec<(u64, u64, u64, u64)> {
    seen.iter()
        .filter_map(|e| match e {
            ProgressEvent::Bulk(BulkEvent::Summary {
                ok,
                failed,
                cancelled,
                total,
                ..
            }) => Some((*ok, *failed, *cancelled, *total)),
            _ => None,
        })
        .collect()
}

async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---- output cap, deadline, UTF-8 -------------------------------------------------------------

#[tokio::test]
async fn an_endless_output_stops_at_the_cap_with_exactly_the_cap_kept() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let client = FakeClient::new(Behaviour::Endless);
    let cap = 300_000;
    let net = fx.network(client.clone()).with_limits(ExecLimits {
        timeout: Duration::from_secs(60),
        max_output: cap,
    });
    let run = net
        .execute_command(dev, "yes", RunOptions::new(REQUESTER))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Error);
    assert_eq!(run.error_kind.as_deref(), Some("output_cap"));
    assert!(run.truncated);
    assert_eq!(run.bytes, cap, "exactly the cap is kept");
    let chunks = fx.store.chunks(run.id, 0, usize::MAX).await.unwrap();
    assert_eq!(chunks.iter().map(|c| c.data.len() as u64).sum::<u64>(), cap);
    assert_eq!(client.open(), 0, "the session was closed at the cap");

    // A per-run cap wins over the service's.
    let run = net
        .execute_command(dev, "yes", RunOptions::new(REQUESTER).with_max_output(1000))
        .await
        .unwrap();
    assert_eq!((run.bytes, run.truncated), (1000, true));
}

#[tokio::test]
async fn output_exactly_at_the_cap_is_not_truncated() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let net = fx.network(FakeClient::new(Behaviour::Ok));
    let run = net
        .execute_command(dev, "x", RunOptions::new(REQUESTER).with_max_output(3))
        .await
        .unwrap();
    assert_eq!(
        (run.status, run.bytes, run.truncated),
        (RunStatus::Ok, 3, false)
    );
}

#[tokio::test]
async fn every_command_has_a_deadline_by_default() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let client = FakeClient::new(Behaviour::Silent);
    let net = fx.network(client.clone()).with_limits(ExecLimits {
        timeout: Duration::from_millis(300),
        max_output: 1 << 20,
    });
    let started = Instant::now();
    let run = net
        .execute_command(dev, "show tech", RunOptions::new(REQUESTER))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(run.status, RunStatus::Timeout);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let chunks = fx.store.chunks(run.id, 0, usize::MAX).await.unwrap();
    assert_eq!(chunks.len(), 1, "the output before the deadline is kept");
    assert_eq!(client.open(), 0, "the session was closed at the deadline");
    assert_eq!(ExecLimits::default().timeout, Duration::from_secs(300));
    assert_eq!(ExecLimits::default().max_output, 16 << 20);
}

/// Sends its items with a pause after each, so the service flushes between them.
#[derive(Debug, Clone)]
struct Paced(Arc<Mutex<VecDeque<Vec<Bytes>>>>);

#[async_trait]
impl NetworkClient for Paced {
    async fn execute(
        &self,
        _: &Device,
        _: &str,
        _: &ExecOptions,
    ) -> Result<OutputEvents, NetworkError> {
        let items = self.0.lock().unwrap().pop_front().unwrap();
        Ok(futures_util::stream::iter(items)
            .then(|b| async move {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Ok(OutputEvent::Stdout(b))
            })
            .chain(futures_util::stream::iter([Ok(OutputEvent::Exit(
                ExitStatus::Code(0),
            ))]))
            .boxed())
    }
}

#[tokio::test]
async fn a_utf8_character_split_across_reads_is_never_split_across_chunks() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let text = "Ports: 1/1 ✓ — 1/2 ✗ 😀 état\n";
    let bytes = text.as_bytes();
    // Split inside "✓" (3 bytes), inside "😀" (4 bytes), and inside "é".
    let cut = |c: &str, at: usize| text.find(c).unwrap() + at;
    let cuts = [cut("✓", 1), cut("😀", 2), cut("😀", 3), cut("é", 1)];
    let mut pieces = Vec::new();
    let mut from = 0;
    for c in cuts {
        pieces.push(Bytes::copy_from_slice(&bytes[from..c]));
        from = c;
    }
    pieces.push(Bytes::copy_from_slice(&bytes[from..]));
    let client = Paced(Arc::new(Mutex::new(VecDeque::from([pieces]))));
    let net = fx
        .network(client)
        .with_flush_after(Duration::from_millis(10))
        .with_chunk_bytes(8);
    let mut live = fx.hub.subscribe("run:1").await;
    let run = net
        .execute_command(dev, "show ports", RunOptions::new(REQUESTER))
        .await
        .unwrap();
    assert_eq!(run_topic(run.id), "run:1");
    let chunks = fx.store.chunks(run.id, 0, usize::MAX).await.unwrap();
    assert!(chunks.len() > 4, "flushed while quiet: {}", chunks.len());
    let mut all = Vec::new();
    for c in &chunks {
        assert!(
            std::str::from_utf8(&c.data).is_ok(),
            "chunk {} is not valid UTF-8 on its own: {:?}",
            c.seq,
            c.data
        );
        all.extend_from_slice(&c.data);
    }
    assert_eq!(all, bytes);
    for e in published(&mut live) {
        if let ProgressEvent::Run(RunEvent::Output { data, .. }) = e {
            assert!(std::str::from_utf8(&data).is_ok(), "live event {data:?}");
        }
    }
}

// ---- cancel --------------------------------------------------------------------------------

#[tokio::test]
async fn a_run_cancelled_on_another_node_is_closed_within_a_poll() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let client = FakeClient::new(Behaviour::Silent);
    // Node A runs the command; node B (its own service, sharing only the store) cancels.
    let node_a = fx.network(client.clone());
    let node_b = fx.network(FakeClient::new(Behaviour::Ok));
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
    let fx = Fixture::new();
    let ids = fx.devices(120).await;
    let client = FakeClient::new(Behaviour::Silent);
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
    assert_eq!(
        client.started.load(Ordering::SeqCst),
        20,
        "nothing started after the cancel"
    );
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
    assert_eq!(client.started.load(Ordering::SeqCst), 20);
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
        let fx = Fixture::new();
        let ids = fx.devices(7).await;
        let behaviour = match why {
            Ending::AttemptsExhausted => Behaviour::Panic,
            _ => Behaviour::Ok,
        };
        let net = fx.network(FakeClient::new(behaviour));
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
    let fx = Fixture::new();
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
        Arc::new(FakeClient::new(Behaviour::Ok)),
        Arc::new(fx.hub.clone()),
    ));
    // Its bulk is unknown to that store: the hook has nothing to do and says so.
    worker.on_discard(&job, "test").await.unwrap();
    // The real one records both devices.
    let worker = BulkJob::new(fx.network(FakeClient::new(Behaviour::Ok)));
    worker.on_discard(&job, "test").await.unwrap();
    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    assert_eq!((bulk.counters.failed, bulk.counters.pending), (2, 0));
    // Idempotent.
    worker.on_discard(&job, "test").await.unwrap();
    assert_eq!(fx.store.bulk(&bulk_ref).await.unwrap().counters.failed, 2);
}

#[tokio::test]
async fn a_bulk_deadline_override_reaches_every_device() {
    let fx = Fixture::new();
    let ids = fx.devices(3).await;
    let client = FakeClient::new(Behaviour::Silent);
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

/// A byte every 20 ms forever: never quiet for long.
#[derive(Debug, Clone)]
struct Trickle;

#[async_trait]
impl NetworkClient for Trickle {
    async fn execute(
        &self,
        _: &Device,
        _: &str,
        _: &ExecOptions,
    ) -> Result<OutputEvents, NetworkError> {
        Ok(futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok(OutputEvent::Stdout(Bytes::from_static(b"!"))), ()))
        })
        .boxed())
    }
}

#[tokio::test]
async fn a_trickling_device_is_stored_at_least_every_flush_interval() {
    let fx = Fixture::new();
    let dev = fx.devices(1).await[0];
    let net = fx
        .network(Trickle)
        .with_flush_after(Duration::from_millis(100));
    let task = tokio::spawn(async move {
        net.execute_command(
            dev,
            "copy tftp: flash:",
            RunOptions::new(REQUESTER).with_timeout(Duration::from_secs(2)),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let run = fx.store.device_runs(dev, 1).await.unwrap().remove(0);
    assert_eq!(run.status, RunStatus::Running);
    assert!(
        run.chunks >= 3,
        "a partial chunk waited for a quiet spell that never came: {} chunks after 700 ms",
        run.chunks
    );
    assert_eq!(task.await.unwrap().unwrap().status, RunStatus::Timeout);
}
