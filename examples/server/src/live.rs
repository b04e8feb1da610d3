//! Live updates as server-sent events.
//!
//! Each stream subscribes to its topic *first*, then reads the durable state from the store
//! and sends it, then follows the subscription: whatever happens between the page render, the
//! subscription and the snapshot is in the snapshot or in the stream (the browser ignores
//! what it already has), so nothing is missed and a reload is always safe. A subscriber that
//! lagged re-reads the snapshot. A bulk stream that has been quiet for [`RESYNC_AFTER`] asks
//! the store where the bulk stands and re-sends the snapshot if outcomes arrived that the
//! stream never announced: an event the publisher never sent (a worker killed between storing
//! an outcome and publishing it) cannot leave a page stale, or waiting forever for a summary.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::StreamExt;
use netauto_core::{
    Bulk, BulkEvent, BulkRef, DeviceId, FeedItem, ProgressEvent, Run, RunEvent, RunId, RunStore,
    Subscription, run_topic,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::PageError;
use crate::pages::bulk::parse_ref;
use crate::pages::runs::{CHUNK_PAGE, parse_run_id};

type EventStream = Sse<
    axum::response::sse::KeepAliveStream<
        futures_util::stream::BoxStream<'static, Result<Event, Infallible>>,
    >,
>;

fn event(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

fn snapshot(bulk: &Bulk) -> Event {
    let devices: Vec<Value> = bulk
        .outcomes
        .values()
        .map(|o| json!({"device_id": o.device_id, "status": o.status, "run_id": o.run_id, "error_kind": o.error_kind}))
        .collect();
    let duration_ms = bulk
        .finished_at
        .and_then(|f| (f - bulk.created_at).to_std().ok())
        .map(|d| d.as_millis() as u64);
    event(
        "snapshot",
        &json!({
            "counters": bulk.counters,
            "finished": bulk.finished_at.is_some(),
            "duration_ms": duration_ms,
            "devices": devices,
        }),
    )
}

/// How long a bulk stream waits without an event before it checks the store.
pub(crate) const RESYNC_AFTER: Duration = Duration::from_secs(10);

struct BulkFollow {
    sub: Subscription,
    store: Arc<dyn RunStore>,
    bulk_ref: BulkRef,
    pending: Option<Event>,
    done: bool,
    /// Devices whose outcome this stream has sent.
    sent: HashSet<DeviceId>,
    resync_after: Duration,
}

impl BulkFollow {
    /// The snapshot of `bulk`, remembering what it sends.
    fn snapshot(&mut self, bulk: &Bulk) {
        self.sent = bulk.outcomes.keys().copied().collect();
        self.pending = Some(snapshot(bulk));
        self.done = bulk.finished_at.is_some();
    }

    /// After a quiet spell: the snapshot again if the store knows outcomes (or the end) this
    /// stream never sent. `false` if the store failed.
    async fn resync(&mut self) -> bool {
        match self.store.bulk_state(&self.bulk_ref).await {
            Ok(state) => {
                let recorded = state.counters.ok + state.counters.failed;
                if recorded == self.sent.len() as u64 && state.finished_at.is_none() {
                    return true;
                }
            }
            // Gone (deleted): nothing more will happen.
            Err(netauto_core::Error::NotFound { .. }) => return false,
            Err(e) => {
                // Keep following: the feed itself may be fine.
                tracing::warn!(error = %e, "bulk state check failed");
                return true;
            }
        }
        match self.store.bulk(&self.bulk_ref).await {
            Ok(bulk) => {
                tracing::info!(bulk_ref = %self.bulk_ref, "bulk stream missed events; re-sent the snapshot");
                self.snapshot(&bulk);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "bulk snapshot after a quiet spell failed; closing the stream");
                false
            }
        }
    }
}

/// GET /bulk/{ref}/events: `snapshot`, then `progress` per device, then one `summary`.
pub(crate) async fn bulk_events(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<EventStream, PageError> {
    let bulk_ref = parse_ref(&raw)?;
    let sub = state.progress.subscribe(&bulk_ref.topic()).await;
    let bulk = state.store.bulk(&bulk_ref).await?;
    let mut follow = BulkFollow {
        sub,
        store: state.store.clone(),
        bulk_ref,
        pending: None,
        done: false,
        sent: HashSet::new(),
        resync_after: state.resync_after,
    };
    follow.snapshot(&bulk);
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(ev) = f.pending.take() {
                return Some((Ok(ev), f));
            }
            if f.done {
                return None;
            }
            let Ok(item) = tokio::time::timeout(f.resync_after, f.sub.next()).await else {
                if f.resync().await {
                    continue;
                }
                return None;
            };
            match item? {
                FeedItem::Event(ProgressEvent::Bulk(BulkEvent::Progress {
                    device_id,
                    run_id,
                    status,
                    done,
                    total,
                    ..
                })) => {
                    f.sent.insert(device_id);
                    let data = json!({"device_id": device_id, "run_id": run_id, "status": status, "done": done, "total": total});
                    f.pending = Some(event("progress", &data));
                }
                FeedItem::Event(ProgressEvent::Bulk(BulkEvent::Summary {
                    ok,
                    failed,
                    total,
                    duration,
                    ..
                })) => {
                    let data = json!({"ok": ok, "failed": failed, "total": total, "duration_ms": duration.as_millis() as u64});
                    f.pending = Some(event("summary", &data));
                    f.done = true;
                }
                FeedItem::Lagged { .. } => match f.store.bulk(&f.bulk_ref).await {
                    Ok(bulk) => f.snapshot(&bulk),
                    Err(e) => {
                        tracing::warn!(error = %e, "bulk snapshot after lag failed; closing the stream");
                        return None;
                    }
                },
                FeedItem::Event(_) => {}
            }
        }
    });
    Ok(Sse::new(stream.boxed()).keep_alive(KeepAlive::default()))
}

/// Query of the run stream: the first chunk the page does not have.
#[derive(Debug, Deserialize)]
pub(crate) struct FromSeq {
    #[serde(default)]
    from: u64,
}

struct RunFollow {
    sub: Subscription,
    store: Arc<dyn RunStore>,
    run_id: RunId,
    next: u64,
    backlog: VecDeque<Event>,
    done: bool,
}

impl RunFollow {
    /// Sends every stored chunk from `next` on; then, if the run finished, its end.
    async fn catch_up(&mut self) -> netauto_core::Result<()> {
        loop {
            let page = self
                .store
                .chunks(self.run_id, self.next, CHUNK_PAGE)
                .await?;
            if page.is_empty() {
                break;
            }
            for c in page {
                self.next = c.seq + 1;
                let data = json!({"seq": c.seq, "stream": c.stream, "text": String::from_utf8_lossy(&c.data)});
                self.backlog.push_back(event("chunk", &data));
            }
        }
        let run = self.store.run(self.run_id).await?;
        if run.status.is_finished() {
            self.backlog.push_back(finished(&run));
            self.done = true;
        }
        Ok(())
    }
}

fn finished(run: &Run) -> Event {
    let duration_ms = match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => (f - s).to_std().ok().map(|d| d.as_millis() as u64),
        _ => None,
    };
    event(
        "finished",
        &json!({
            "status": run.status,
            "exit_status": run.exit_status,
            "error_kind": run.error_kind,
            "error_message": run.error_message,
            "finished_at": run.finished_at,
            "bytes": run.bytes,
            "chunks": run.chunks,
            "duration_ms": duration_ms,
        }),
    )
}

/// GET /runs/{id}/events?from=N: `chunk` events from seq N on, then one `finished`.
pub(crate) async fn run_events(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(raw): Path<String>,
    Query(q): Query<FromSeq>,
) -> Result<EventStream, PageError> {
    let run_id = parse_run_id(&raw)?;
    let sub = state.progress.subscribe(&run_topic(run_id)).await;
    let mut follow = RunFollow {
        sub,
        store: state.store.clone(),
        run_id,
        next: q.from,
        backlog: VecDeque::new(),
        done: false,
    };
    follow.catch_up().await?;
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(ev) = f.backlog.pop_front() {
                return Some((Ok(ev), f));
            }
            if f.done {
                return None;
            }
            let caught = match f.sub.next().await {
                Some(FeedItem::Event(ProgressEvent::Run(RunEvent::Output {
                    seq,
                    stream,
                    data,
                    ..
                }))) if seq == f.next => {
                    f.next = seq + 1;
                    let data = json!({"seq": seq, "stream": stream, "text": String::from_utf8_lossy(&data)});
                    f.backlog.push_back(event("chunk", &data));
                    Ok(())
                }
                Some(FeedItem::Event(ProgressEvent::Run(RunEvent::Output { seq, .. })))
                    if seq < f.next =>
                {
                    Ok(())
                }
                // A gap, the end, a lag or a closed feed: the store has the truth.
                Some(FeedItem::Event(ProgressEvent::Run(_)) | FeedItem::Lagged { .. }) => {
                    f.catch_up().await
                }
                Some(FeedItem::Event(ProgressEvent::Bulk(_))) => Ok(()),
                None => {
                    let r = f.catch_up().await;
                    f.done = true;
                    r
                }
            };
            if let Err(e) = caught {
                tracing::warn!(error = %e, "run output catch-up failed; closing the stream");
                return None;
            }
        }
    });
    Ok(Sse::new(stream.boxed()).keep_alive(KeepAlive::default()))
}
