//! [`BulkFollower`]: follow a bulk — its durable snapshot, then its live events.
//!
//! It subscribes to the bulk's topic *before* reading the snapshot, so nothing that happens
//! in between is missed (an event the snapshot already has is harmless: a viewer keys
//! outcomes by device). A Summary that overtook some device's Progress (published by
//! another job a moment earlier, on another database connection) is held until those arrive,
//! for at most [`STRAGGLER_GRACE`]; if they do not (an event the feed lost), a fresh snapshot
//! goes first: a viewer always ends complete. Each event costs O(1): the store is read again only when events
//! were missed — the subscriber lagged, a cancel recorded many devices at once (without a
//! Progress each), or the feed has been quiet for [`DEFAULT_RESYNC_AFTER`] while the store
//! knows outcomes (or the end) no event announced (a worker killed between storing an
//! outcome and publishing it, or a feed that does not cross processes, like SQLite's
//! in-process one while a separate `netauto worker` runs the jobs). The quiet check reads
//! only the bulk's counters ([`crate::BulkStore::bulk_state`]); the whole bulk is read only when
//! they show something was missed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::backend::progress::{BulkEvent, FeedItem, ProgressEvent, ProgressSink, Subscription};
use crate::backend::store::RunStore;
use crate::error::{Error, Result};
use crate::model::bulk::Bulk;
use crate::model::ids::{BulkRef, DeviceId, RunId};
use crate::model::run::RunStatus;

/// Default quiet spell after which a follower checks the store.
pub const DEFAULT_RESYNC_AFTER: Duration = Duration::from_secs(10);

/// Longest a Summary waits for Progress events it overtook (at most the resync spell).
pub const STRAGGLER_GRACE: Duration = Duration::from_secs(2);

/// What a [`BulkFollower`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkUpdate {
    /// The whole bulk as stored: first, and again whenever events were missed. Replaces
    /// whatever the viewer had.
    Snapshot(Box<Bulk>),
    /// One device got its outcome.
    Progress {
        /// The device.
        device_id: DeviceId,
        /// Its run, if one was created.
        run_id: Option<RunId>,
        /// Its status.
        status: RunStatus,
        /// Its error kind, for failures.
        error_kind: Option<String>,
        /// The run's output was cut at the output cap.
        truncated: bool,
        /// Devices done so far.
        done: u64,
        /// Devices in the bulk.
        total: u64,
    },
    /// The feed dropped `missed` events (this follower fell behind); a fresh
    /// [`Snapshot`](Self::Snapshot) comes next.
    Lagged {
        /// Events dropped.
        missed: u64,
    },
    /// The bulk ended (its one Summary). Nothing follows.
    Summary {
        /// Devices that finished `ok`.
        ok: u64,
        /// Devices that did not (cancelled ones excluded).
        failed: u64,
        /// Devices cancelled.
        cancelled: u64,
        /// Devices in the bulk.
        total: u64,
        /// From the bulk's creation to its last outcome.
        duration: Duration,
    },
}

/// Follows one bulk; see [`follow_bulk`] and the [`follow`](crate::follow) module.
pub struct BulkFollower {
    store: Arc<dyn RunStore>,
    bulk_ref: BulkRef,
    sub: Option<Subscription>,
    resync_after: Duration,
    /// Devices whose outcome was yielded.
    known: HashSet<DeviceId>,
    first: Option<Box<Bulk>>,
    /// A lag was reported: re-read the store before anything else.
    resync: bool,
    /// A Summary waiting for the Progress events it overtook: the outcomes it counts, and
    /// until when it waits.
    held: Option<(BulkUpdate, u64, tokio::time::Instant)>,
    /// The Summary to yield next (after the snapshot that filled in what never came).
    after: Option<BulkUpdate>,
    done: bool,
}

impl std::fmt::Debug for BulkFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkFollower")
            .field("bulk_ref", &self.bulk_ref)
            .field("subscribed", &self.sub.is_some())
            .field("resync_after", &self.resync_after)
            .field("known", &self.known.len())
            .field("done", &self.done)
            .finish()
    }
}

impl BulkFollower {
    /// Subscribes to the bulk's topic, then reads its snapshot (the first update). An unknown
    /// bulk is [`Error::NotFound`].
    async fn start(
        store: Arc<dyn RunStore>,
        progress: &dyn ProgressSink,
        bulk_ref: &BulkRef,
    ) -> Result<Self> {
        let sub = progress.subscribe(&bulk_ref.topic()).await;
        let bulk = store.bulk(bulk_ref).await?;
        let mut f = Self {
            store,
            bulk_ref: bulk_ref.clone(),
            sub: Some(sub),
            resync_after: DEFAULT_RESYNC_AFTER,
            known: HashSet::new(),
            first: None,
            resync: false,
            held: None,
            after: None,
            done: false,
        };
        f.first = Some(f.snapshot(bulk));
        Ok(f)
    }

    /// Checks the store after this long without an event (default 10 s; at least 10 ms).
    pub fn with_resync_after(mut self, after: Duration) -> Self {
        self.resync_after = after.max(Duration::from_millis(10));
        self
    }

    /// The bulk followed.
    pub fn bulk_ref(&self) -> &BulkRef {
        &self.bulk_ref
    }

    fn snapshot(&mut self, bulk: Bulk) -> Box<Bulk> {
        self.known = bulk.outcomes.keys().copied().collect();
        self.done = bulk.finished_at.is_some();
        Box::new(bulk)
    }

    /// The next update; `None` once the bulk ended (after its Summary, or a snapshot of the
    /// finished bulk) or was deleted. A store error while re-reading the bulk is returned
    /// (a failed quiet-spell check is only logged); the follower can be polled again after it.
    pub async fn next(&mut self) -> Option<Result<BulkUpdate>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(BulkUpdate::Snapshot(first)));
        }
        if let Some(summary) = self.after.take() {
            return Some(Ok(summary));
        }
        loop {
            if std::mem::take(&mut self.resync) {
                return self.reread().await;
            }
            if let Some((_, counted, until)) = &self.held {
                let (counted, until) = (*counted, *until);
                if self.known.len() as u64 >= counted || tokio::time::Instant::now() >= until {
                    let (summary, ..) = self.held.take()?;
                    self.done = true;
                    if self.known.len() as u64 >= counted {
                        return Some(Ok(summary));
                    }
                    tracing::debug!(
                        bulk_ref = %self.bulk_ref,
                        announced = self.known.len(),
                        counted,
                        "bulk ended with outcomes no event announced; re-reading it"
                    );
                    self.after = Some(summary);
                    return self.reread().await;
                }
            }
            if self.done {
                return None;
            }
            let wait = match &self.held {
                Some((_, _, until)) => until.saturating_duration_since(tokio::time::Instant::now()),
                None => self.resync_after,
            };
            let item = match &mut self.sub {
                Some(sub) => match tokio::time::timeout(wait, sub.next()).await {
                    Ok(Some(item)) => Some(item),
                    // The feed ended: the store is all there is from now on.
                    Ok(None) => {
                        self.sub = None;
                        continue;
                    }
                    Err(_) => None,
                },
                None => {
                    tokio::time::sleep(self.resync_after).await;
                    None
                }
            };
            let resync = match item {
                // Waiting for stragglers: the top of the loop decides.
                None if self.held.is_some() => continue,
                None => match missed(&self.store, &self.bulk_ref, self.known.len()).await {
                    Ok(true) => true,
                    Ok(false) => continue,
                    Err(Error::NotFound { .. }) => return None,
                    // Keep following: the feed itself may be fine.
                    Err(e) => {
                        tracing::warn!(bulk_ref = %self.bulk_ref, error = %e, "bulk state check failed");
                        continue;
                    }
                },
                Some(FeedItem::Lagged { missed }) => {
                    self.resync = true;
                    return Some(Ok(BulkUpdate::Lagged { missed }));
                }
                Some(FeedItem::Event(ProgressEvent::Bulk(event))) => match event {
                    BulkEvent::Progress {
                        device_id,
                        run_id,
                        status,
                        error_kind,
                        truncated,
                        done,
                        total,
                        ..
                    } => {
                        self.known.insert(device_id);
                        return Some(Ok(BulkUpdate::Progress {
                            device_id,
                            run_id,
                            status,
                            error_kind,
                            truncated,
                            done,
                            total,
                        }));
                    }
                    BulkEvent::Summary {
                        ok,
                        failed,
                        cancelled,
                        total,
                        duration,
                        ..
                    } => {
                        let summary = BulkUpdate::Summary {
                            ok,
                            failed,
                            cancelled,
                            total,
                            duration,
                        };
                        let counted = ok + failed + cancelled;
                        if self.known.len() as u64 >= counted {
                            self.done = true;
                            return Some(Ok(summary));
                        }
                        // Overtaken: wait a moment for the Progress events still on the way.
                        let grace = STRAGGLER_GRACE.min(self.resync_after);
                        self.held = Some((summary, counted, tokio::time::Instant::now() + grace));
                        continue;
                    }
                    // Devices recorded at once, without a Progress each.
                    BulkEvent::Cancelled { .. } => true,
                },
                Some(FeedItem::Event(ProgressEvent::Run(_))) => false,
            };
            if resync {
                return self.reread().await;
            }
        }
    }

    /// A fresh snapshot from the store (`None`: the bulk was deleted).
    async fn reread(&mut self) -> Option<Result<BulkUpdate>> {
        match self.store.bulk(&self.bulk_ref).await {
            Ok(bulk) => Some(Ok(BulkUpdate::Snapshot(self.snapshot(bulk)))),
            Err(Error::NotFound { .. }) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Follows bulk `bulk_ref`: subscribes to its topic, then reads its snapshot (the first
/// update). An unknown bulk is [`Error::NotFound`].
pub async fn follow_bulk(
    store: Arc<dyn RunStore>,
    progress: &dyn ProgressSink,
    bulk_ref: &BulkRef,
) -> Result<BulkFollower> {
    BulkFollower::start(store, progress, bulk_ref).await
}

/// Whether the store knows outcomes (or the end) beyond the `known` ones a follower yielded.
/// (A function of the follower's fields, not a method: a future holding `&BulkFollower`
/// would not be `Send`, its subscription is not `Sync`.)
async fn missed(store: &Arc<dyn RunStore>, bulk_ref: &BulkRef, known: usize) -> Result<bool> {
    let state = store.bulk_state(bulk_ref).await?;
    Ok(state.counters.done() != known as u64 || state.finished_at.is_some())
}
