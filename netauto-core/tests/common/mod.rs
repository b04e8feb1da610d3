//! What the integration tests of netauto-core share: an in-memory backend with a progress hub
//! and a clock ([`Fixture`]), the test epoch, waiting and feed helpers, scripted clients of
//! the limits and cancel tests, and the test workers ([`workers`]) and runner helpers
//! ([`runner`]).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod runner;
pub mod workers;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use futures_util::{FutureExt, StreamExt};
use netauto_core::bulk::{BulkJob, BulkService};
use netauto_core::exec::Executor;
use netauto_core::prelude::*;
use netauto_core::testing::{EnqueuedFilter, Reply, ScriptedClient};
use netauto_core::{
    BulkEvent, Clock, Device, DeviceId, FeedItem, JobQueue, LocalProgressHub, ManualClock,
    NetworkClient, NetworkError, NewDevice, ProgressEvent, RunChunk, RunId, RunStore, Subscription,
    SystemClock,
};
use netauto_memory::{InMemoryJobQueue, InMemoryRunStore};

/// The test epoch: every manual clock starts here.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

pub fn days_ago(days: i64) -> DateTime<Utc> {
    t0() - TimeDelta::days(days)
}

pub const REQUESTER: &str = "ann@example.com";

/// Generous bound for anything that should happen "soon"; tests normally finish far sooner.
pub const SOON: Duration = Duration::from_secs(5);

/// A fresh in-memory backend, progress hub and clock.
pub struct Fixture {
    pub queue: InMemoryJobQueue,
    pub store: InMemoryRunStore,
    pub hub: LocalProgressHub,
    pub clock: ManualClock,
    /// The clock the services read: `clock`, or the system clock for [`Fixture::live`].
    services_clock: Arc<dyn Clock>,
    cancel_poll: Option<Duration>,
}

impl Fixture {
    /// Services on a manual clock at [`t0`].
    pub fn new() -> Self {
        let clock = ManualClock::new(t0());
        Self::with_clock(clock.clone(), Arc::new(clock), None)
    }

    /// Services on the system clock, polling cancel requests every 50 ms (real deadlines and
    /// cancels).
    pub fn live() -> Self {
        Self::with_clock(
            ManualClock::new(t0()),
            Arc::new(SystemClock),
            Some(Duration::from_millis(50)),
        )
    }

    fn with_clock(
        clock: ManualClock,
        services_clock: Arc<dyn Clock>,
        cancel_poll: Option<Duration>,
    ) -> Self {
        let (queue, store) = netauto_memory::backend();
        Self {
            queue,
            store,
            hub: LocalProgressHub::new(),
            clock,
            services_clock,
            cancel_poll,
        }
    }

    pub fn store_dyn(&self) -> Arc<dyn RunStore> {
        Arc::new(self.store.clone())
    }

    pub fn queue_dyn(&self) -> Arc<dyn JobQueue> {
        Arc::new(self.queue.clone())
    }

    pub fn clock_dyn(&self) -> Arc<dyn Clock> {
        self.services_clock.clone()
    }

    /// An executor over `client`.
    pub fn network(&self, client: impl NetworkClient) -> Executor {
        let net = Executor::new(
            self.store_dyn(),
            Arc::new(client),
            Arc::new(self.hub.clone()),
        )
        .with_clock(self.clock_dyn());
        match self.cancel_poll {
            Some(every) => net.with_cancel_poll(every),
            None => net,
        }
    }

    pub fn bulk(&self) -> BulkService {
        BulkService::new(self.store_dyn(), Arc::new(self.hub.clone())).with_clock(self.clock_dyn())
    }

    pub async fn devices(&self, n: usize) -> Vec<DeviceId> {
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
    pub async fn chunks(&self, run: RunId) -> Vec<RunChunk> {
        self.store.chunks(run, 0, usize::MAX).await.unwrap()
    }

    /// The ids of all runs of these devices.
    pub async fn run_ids(&self, devices: &[DeviceId]) -> BTreeSet<RunId> {
        let mut ids = BTreeSet::new();
        for &d in devices {
            let runs = self.store.device_runs(d, usize::MAX).await.unwrap();
            ids.extend(runs.into_iter().map(|r| r.id));
        }
        ids
    }
}

/// All the bytes of `chunks`, in order.
pub fn concat(chunks: &[RunChunk]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.data.iter().copied()).collect()
}

pub fn auth_error(device: &Device) -> NetworkError {
    NetworkError::Auth {
        host: format!("{}:{}", device.host, device.port),
        message: "permission denied (publickey)".into(),
    }
}

/// What every `execute` of a [`fake_client`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `yes`: the same line forever, as fast as it is read.
    Endless,
    /// A line of output, then silence forever (a command that never ends).
    Silent,
    /// `ok\n` and exit 0.
    Ok,
    /// The worker panics.
    Panic,
}

/// A client answering every call the same way, counting its open sessions.
pub fn fake_client(behaviour: Behaviour) -> ScriptedClient {
    ScriptedClient::from_fn(move |_, _| match behaviour {
        Behaviour::Endless => Reply::endless(&"y\n".repeat(512)),
        Behaviour::Silent => Reply::silent_after("started\n"),
        Behaviour::Ok => Reply::ok("ok\n"),
        Behaviour::Panic => Reply::Panic("simulated worker bug".into()),
    })
}

/// Every event already published on a subscription, without waiting.
pub fn published(sub: &mut Subscription) -> Vec<ProgressEvent> {
    let mut seen = Vec::new();
    while let Some(Some(item)) = sub.next().now_or_never() {
        match item {
            FeedItem::Event(e) => seen.push(e),
            FeedItem::Lagged { missed } => panic!("subscriber lagged by {missed}"),
        }
    }
    seen
}

/// The Summaries among `seen`, as `(ok, failed, cancelled, total)`.
pub fn summaries(seen: &[ProgressEvent]) -> Vec<(u64, u64, u64, u64)> {
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

/// Polls `check` every 5 ms until it answers something; panics naming `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`eventually`] for a condition.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, within, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// The bulk jobs waiting in the `bulk` queue.
pub fn bulk_jobs_filter() -> EnqueuedFilter {
    EnqueuedFilter::of::<BulkJob>().with_queue("bulk")
}

pub async fn nothing_enqueued(queue: &InMemoryJobQueue) {
    let jobs = queue.list(&netauto_core::JobFilter::all()).await.unwrap();
    assert!(jobs.is_empty(), "enqueued: {jobs:?}");
}
