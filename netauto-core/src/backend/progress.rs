//! The [`ProgressSink`] trait: live bulk progress and run output for browsers and CLIs.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_core::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::model::ids::{BulkRef, DeviceId, RunId};
use crate::model::run::{OutputStream, RunStatus};

/// Progress of a bulk, published on topic `bulk:<ref>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BulkEvent {
    /// One device finished.
    Progress {
        /// The bulk.
        bulk_ref: BulkRef,
        /// The device.
        device_id: DeviceId,
        /// Its run, if one was created.
        run_id: Option<RunId>,
        /// The run's final status.
        status: RunStatus,
        /// Short error kind for failures (`timeout`, `auth`, `closed`, …).
        #[serde(default)]
        error_kind: Option<String>,
        /// The run's output was cut at the output cap.
        #[serde(default)]
        truncated: bool,
        /// Devices done so far.
        done: u64,
        /// Devices in the bulk.
        total: u64,
    },
    /// The bulk was cancelled: `cancelled` devices that had not started were recorded
    /// `cancelled` at once (no Progress is published for them; followers re-read the
    /// snapshot). Devices still running follow with a Progress each as their sessions close.
    Cancelled {
        /// The bulk.
        bulk_ref: BulkRef,
        /// Devices recorded `cancelled` by the cancel itself.
        cancelled: u64,
        /// Devices done so far.
        done: u64,
        /// Devices in the bulk.
        total: u64,
    },
    /// The last device finished. Published exactly once per bulk.
    Summary {
        /// The bulk.
        bulk_ref: BulkRef,
        /// Devices that finished `ok`.
        ok: u64,
        /// Devices that did not (cancelled ones excluded).
        failed: u64,
        /// Devices cancelled.
        #[serde(default)]
        cancelled: u64,
        /// Devices in the bulk.
        total: u64,
        /// From the bulk's creation to its last outcome.
        #[serde(with = "duration_ms")]
        duration: Duration,
    },
}

/// Live output of a run, published on topic `run:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    /// A chunk was stored.
    Output {
        /// The run.
        run_id: RunId,
        /// The chunk's sequence number.
        seq: u64,
        /// Which stream.
        stream: OutputStream,
        /// The bytes.
        data: Bytes,
    },
    /// The run finished.
    Finished {
        /// The run.
        run_id: RunId,
        /// Its final status.
        status: RunStatus,
    },
}

/// Anything published on a progress feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// Bulk progress.
    Bulk(BulkEvent),
    /// Run output.
    Run(RunEvent),
}

impl ProgressEvent {
    /// The topic this event is published on: `bulk:<ref>` or `run:<id>`.
    pub fn topic(&self) -> String {
        match self {
            Self::Bulk(
                BulkEvent::Progress { bulk_ref, .. }
                | BulkEvent::Cancelled { bulk_ref, .. }
                | BulkEvent::Summary { bulk_ref, .. },
            ) => bulk_ref.topic(),
            Self::Run(RunEvent::Output { run_id, .. } | RunEvent::Finished { run_id, .. }) => {
                run_topic(*run_id)
            }
        }
    }
}

/// The topic of a run's live output, `run:<id>`.
pub fn run_topic(run_id: RunId) -> String {
    format!("run:{run_id}")
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// An event, in publish order.
    Event(ProgressEvent),
    /// The subscriber fell behind and `missed` events were dropped; re-read the durable
    /// snapshot from the store, then go on.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

/// A subscription's stream.
pub type Subscription = BoxStream<'static, FeedItem>;

/// Publishes progress and lets viewers subscribe to it.
///
/// Publishing never blocks a job on slow viewers and never fails it: a sink that cannot
/// deliver drops the event (viewers recover from the store's durable snapshot).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ProgressSink: Send + Sync + Debug + 'static {
    /// Publishes `event` on [`ProgressEvent::topic`].
    async fn publish(&self, event: ProgressEvent);

    /// Follows a topic from now on. A late subscriber first reads the durable snapshot from
    /// the store, then follows this stream.
    async fn subscribe(&self, topic: &str) -> Subscription;
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
