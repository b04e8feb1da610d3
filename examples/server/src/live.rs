//! Live updates as server-sent events.
//!
//! Each stream subscribes to its topic *first*, then reads the durable state from the store
//! and sends it, then follows the subscription: whatever happens between the page render, the
//! subscription and the snapshot is in the snapshot or in the stream (the browser ignores
//! what it already has), so nothing is missed and a reload is always safe. A bulk stream is
//! core's [`BulkFollower`]: a subscriber that lagged, or a cancel, re-reads the snapshot; a
//! stream quiet for [`RESYNC_AFTER`] asks the store where the bulk stands and re-sends the
//! snapshot if outcomes arrived that the stream never announced: an event the publisher never
//! sent (a worker killed between storing an outcome and publishing it) cannot leave a page
//! stale, or waiting forever for a summary.
//!
//! A run stream reads stored output a page of [`FOLLOW_PAGE`] chunks at a time and sends it
//! before reading the next, so a subscriber of a 1 GiB run holds about 1 MiB, not the run.
//!
//! Every stream holds a [`StreamLease`] on its session: a session has at most
//! [`streams_per_session`](crate::WebLimits::streams_per_session) streams open (more are
//! answered `429`), and its streams end when it does (logout, expiry) or the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use futures_util::Stream;
use futures_util::stream::BoxStream;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::StreamExt;
use netauto_core::Run;
use netauto_core::follow::{BulkUpdate, RunUpdate, follow_bulk, follow_run};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::PageError;
use crate::event_data as data;
use crate::pages::bulk::parse_ref;
use crate::pages::runs::parse_run_id;
use crate::session::{StreamLease, StreamRefused};
use crate::text::Utf8Carry;

type EventStream = Sse<
    axum::response::sse::KeepAliveStream<
        futures_util::stream::BoxStream<'static, Result<Event, Infallible>>,
    >,
>;

/// Chunks a run stream reads per store call (chunks are at most 64 KiB: about 1 MiB).
pub(crate) const FOLLOW_PAGE: usize = 16;

/// Counts a new stream against the user's session, or refuses it (`429`).
fn lease(state: &AppState, user: &CurrentUser) -> Result<StreamLease, PageError> {
    state
        .sessions
        .open_stream(&user.token)
        .map_err(|refused| match refused {
            StreamRefused::TooMany(n) => PageError::TooMany {
                message: format!(
                    "This session has {n} live views open already. Close some tabs and reload."
                ),
                retry_after: Duration::from_secs(5),
            },
            StreamRefused::NoSession => PageError::NotFound("no such session".to_owned()),
        })
}

/// `stream` as a server-sent event stream that ends when `lease` says so.
fn sse<S>(stream: S, mut lease: StreamLease) -> EventStream
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    // The lease lives in the end future: dropped when the stream ends either way.
    let until = async move { lease.ended().await };
    let stream: BoxStream<'static, _> = stream.take_until(until).boxed();
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The event `name` with `data` as its JSON data.
fn event(name: &str, data: &impl Serialize) -> Event {
    // The views serialize plain fields only: nothing here can fail.
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}

/// How long a bulk stream waits without an event before it checks the store.
pub(crate) const RESYNC_AFTER: Duration = Duration::from_secs(10);

/// The server-sent event of one update of a followed bulk (a lag has none: the fresh
/// snapshot that follows it says everything).
fn bulk_event(update: BulkUpdate) -> Option<Event> {
    Some(match update {
        BulkUpdate::Lagged { .. } => return None,
        BulkUpdate::Snapshot(bulk) => event("snapshot", &data::Snapshot::of(&bulk)),
        BulkUpdate::Progress {
            device_id,
            run_id,
            status,
            error_kind,
            truncated,
            done,
            total,
        } => event(
            "progress",
            &data::Progress {
                device_id,
                done,
                error_kind,
                run_id,
                status,
                total,
                truncated,
            },
        ),
        BulkUpdate::Summary {
            ok,
            failed,
            cancelled,
            total,
            duration,
        } => event(
            "summary",
            &data::Summary {
                cancelled,
                duration_ms: duration.as_millis() as u64,
                failed,
                ok,
                total,
            },
        ),
    })
}

/// GET /bulk/{ref}/events: `snapshot`, then `progress` per device, then one `summary` (see
/// [`follow_bulk`]: a snapshot again whenever events were missed).
pub(crate) async fn bulk_events(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<EventStream, PageError> {
    let bulk_ref = parse_ref(&raw)?;
    let lease = lease(&state, &user)?;
    let follower = follow_bulk(state.store.clone(), state.progress.as_ref(), &bulk_ref)
        .await?
        .with_resync_after(state.resync_after);
    let stream = futures_util::stream::unfold(follower, |mut f| async move {
        loop {
            match f.next().await? {
                Ok(update) => match bulk_event(update) {
                    Some(event) => return Some((Ok(event), f)),
                    None => continue,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "re-reading a followed bulk failed; closing the stream");
                    return None;
                }
            }
        }
    });
    Ok(sse(stream, lease))
}

/// Query of the run stream: the first chunk the page does not have.
#[derive(Debug, Deserialize)]
pub(crate) struct FromSeq {
    #[serde(default)]
    from: u64,
}

fn chunk_event(seq: u64, stream: netauto_core::OutputStream, text: &str) -> Event {
    event("chunk", &data::Chunk { seq, stream, text })
}

/// The run's end; `tail` is text of the last chunk still undecoded (it ended mid-character).
fn finished(run: &Run, tail: &str) -> Event {
    event("finished", &data::Finished::of(run, tail))
}

/// GET /runs/{id}/events?from=N: `chunk` events from seq N on, then one `finished`.
pub(crate) async fn run_events(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    Query(q): Query<FromSeq>,
) -> Result<EventStream, PageError> {
    let run_id = parse_run_id(&raw)?;
    // A missing run is a 404 before the stream starts.
    let follower = follow_run(state.store.clone(), state.progress.as_ref(), run_id, q.from)
        .await?
        .with_page_size(FOLLOW_PAGE);
    let lease = lease(&state, &user)?;
    // Chunk text is decoded across chunk boundaries.
    let follow = (follower, Utf8Carry::default());
    let stream = futures_util::stream::unfold(follow, |(mut f, mut text)| async move {
        let ev = match f.next().await? {
            Ok(RunUpdate::Chunk { seq, stream, data }) => {
                chunk_event(seq, stream, &text.push(&data))
            }
            Ok(RunUpdate::Finished(run)) => finished(&run, &text.finish()),
            Err(e) => {
                tracing::warn!(error = %e, "run output catch-up failed; closing the stream");
                return None;
            }
        };
        Some((Ok(ev), (f, text)))
    });
    Ok(sse(stream, lease))
}
