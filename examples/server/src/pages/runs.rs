//! `/runs/<id>`: the run workspace (meta, escaped output tailing live, device history).

use axum::Form;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use maud::{Markup, html};
use netauto_core::{OutputStream, Run, RunChunk, RunId};

use crate::app::AppState;
use crate::auth::{CurrentUser, csrf_rejected};
use crate::error::PageError;
use crate::login::CsrfForm;
use crate::pages::layout::{Section, page};
use crate::pages::{badge, human_bytes, human_duration, time_opt};
use crate::text::Utf8Carry;

/// Most output bytes rendered into the page; the rest is at `/runs/<id>/raw`.
pub(crate) const PAGE_OUTPUT_LIMIT: u64 = 1 << 20;
/// Chunks read per store call.
pub(crate) const CHUNK_PAGE: usize = 16;
/// Runs listed in the device history.
const HISTORY: usize = 25;

/// Parses a run id from a URL; a malformed one is a 404.
pub(crate) fn parse_run_id(raw: &str) -> Result<RunId, PageError> {
    raw.parse::<RunId>()
        .map_err(|_| PageError::NotFound("no such run".to_owned()))
}

/// The run's chunks from seq 0 up to about `limit` bytes; answers them and whether more exist.
pub(crate) async fn chunks_upto(
    state: &AppState,
    run: RunId,
    limit: u64,
) -> Result<(Vec<RunChunk>, bool), netauto_core::Error> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut from = 0u64;
    loop {
        let page = state.store.chunks(run, from, CHUNK_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok((out, false));
        };
        from = last.seq + 1;
        for c in page {
            if bytes >= limit {
                return Ok((out, true));
            }
            bytes += c.data.len() as u64;
            out.push(c);
        }
    }
}

/// GET /runs/{id}
pub(crate) async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<Markup, PageError> {
    let id = parse_run_id(&raw)?;
    let run = state.store.run(id).await?;
    let device = state.store.device(run.device_id).await.ok();
    let (chunks, more_than_page) = chunks_upto(&state, id, PAGE_OUTPUT_LIMIT).await?;
    let texts = decode(&chunks);
    let flash = user.take_flash(&state);
    let history = state.store.device_runs(run.device_id, HISTORY).await?;
    let device_name = device
        .as_ref()
        .map_or("(deleted device)", |d| d.name.as_str());
    let body = html! {
        @let live = !run.status.is_finished() && !more_than_page;
        @let next_seq = chunks.last().map_or(0, |c| c.seq + 1);
        section #run data-run=(run.id) data-live=(live) data-next-seq=(next_seq) {
            div.page-head {
                h1 { "Run #" (run.id) " on " (device_name) }
                span #run-status { (badge(Some(run.status))) }
                a #diff-previous href={ "/runs/" (run.id) "/diff" } { "Diff with the previous run" }
                @if user.can_run() && !run.status.is_finished() {
                    form #cancel-form method="post" action={ "/runs/" (run.id) "/cancel" } {
                        input type="hidden" name="csrf" value=(user.csrf);
                        button #cancel-run .danger type="submit" { "Cancel run" }
                    }
                }
            }
            (meta(&run, device.as_ref()))
            div.output-head {
                h2 { "Output" }
                a href={ "/runs/" (run.id) "/raw" } { "raw text" }
            }
            @if run.truncated {
                p.notice #run-truncated { "The output reached the output cap: the session was closed and the first "
                    (human_bytes(u128::from(run.bytes))) " were kept." }
            }
            pre #output .output { @for (stream, text) in &texts { (chunk(*stream, text)) } }
            @if more_than_page {
                p.notice { "Output longer than " (human_bytes(u128::from(PAGE_OUTPUT_LIMIT))) "; the whole output is at "
                    a href={ "/runs/" (run.id) "/raw" } { "raw text" } "." }
            }
            h2 { "History of " (device_name) }
            table.grid {
                thead { tr { th { "Run" } th { "Command" } th { "By" } th { "Status" } th { "Started" } th { "Bytes" } } }
                tbody {
                    @for r in &history {
                        tr.current[r.id == run.id] {
                            td { a href={ "/runs/" (r.id) } { "#" (r.id) } }
                            td { code { (r.command) } }
                            td { (r.requested_by) }
                            td { (badge(Some(r.status))) }
                            td { (time_opt(r.started_at)) }
                            td.num { (human_bytes(u128::from(r.bytes))) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        &format!("Run #{}", run.id),
        Section::Runs,
        &user,
        flash.as_deref(),
        body,
    ))
}

/// POST /runs/{id}/cancel (`csrf`): asks the node running the run to stop it.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let id = parse_run_id(&raw)?;
    let message = match state.network.cancel_run(id).await {
        Ok(_) => {
            tracing::info!(user = %user.name, run_id = id.get(), "run cancel requested");
            state.audit(&user, "run.cancel", id.to_string(), "").await;
            "Cancel requested: the session closes within a second; the output so far is kept."
        }
        Err(netauto_core::Error::Conflict(_)) => "This run had already finished.",
        Err(e) => return Err(e.into()),
    };
    state.sessions.set_flash(&user.token, message.to_owned());
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

/// The chunks as text, decoded across chunk boundaries.
fn decode(chunks: &[RunChunk]) -> Vec<(OutputStream, String)> {
    let mut carry = Utf8Carry::default();
    let mut texts: Vec<(OutputStream, String)> = chunks
        .iter()
        .map(|c| (c.stream, carry.push(&c.data)))
        .collect();
    if let Some(last) = texts.last_mut() {
        last.1.push_str(&carry.finish());
    }
    texts
}

fn meta(run: &Run, device: Option<&netauto_core::Device>) -> Markup {
    let duration = match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => (f - s).to_std().ok().map(human_duration),
        _ => None,
    };
    html! {
        dl.meta {
            dt { "Device" } dd {
                @if let Some(d) = device { (d.name) " " span.muted { "(" (d.host) ":" (d.port) ", " (d.platform) ")" } }
                @else { "(deleted device)" }
            }
            dt { "Command" } dd { code { (run.command) } }
            dt { "Requested by" } dd { (run.requested_by) }
            @if let Some(b) = &run.bulk_ref {
                dt { "Bulk" } dd { a href={ "/bulk/" (b) } { code { (b) } } }
            }
            dt { "Exit code" } dd #run-exit { (run.exit_status.map_or_else(|| "—".to_owned(), |c| c.to_string())) }
            @if let Some(kind) = &run.error_kind {
                dt { "Error" } dd #run-error { (kind) ": " (run.error_message.as_deref().unwrap_or("")) }
            }
            dt { "Started" } dd { (time_opt(run.started_at)) }
            dt { "Finished" } dd #run-finished { (time_opt(run.finished_at)) }
            dt { "Duration" } dd #run-duration { (duration.unwrap_or_else(|| "—".to_owned())) }
            dt { "Output" } dd #run-bytes {
                (human_bytes(u128::from(run.bytes))) " in " (run.chunks) " chunks"
                @if run.truncated { " " span.badge.truncated { "truncated" } }
                @if run.redacted { " " span.badge.redacted #run-redacted { "secrets redacted" } }
            }
            @if let Some(reference) = &run.credential_ref {
                dt { "Credential" } dd #run-credential { code { (reference) } }
            }
        }
    }
}

/// One chunk's text, escaped (stderr marked).
fn chunk(stream: OutputStream, text: &str) -> Markup {
    html! {
        @if stream == OutputStream::Stderr { span.stderr { (text) } } @else { (text) }
    }
}

/// GET /runs/{id}/raw: the whole output as `text/plain`, streamed chunk page by chunk page.
pub(crate) async fn raw(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_run_id(&raw)?;
    state.store.run(id).await?;
    let store = state.store.clone();
    let pages = futures_util::stream::unfold(Some(0u64), move |from| {
        let store = store.clone();
        async move {
            let from = from?;
            match store.chunks(id, from, CHUNK_PAGE).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|c| c.seq + 1);
                    let mut buf = Vec::new();
                    for c in page {
                        buf.extend_from_slice(&c.data);
                    }
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    })
    .boxed();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(pages),
    )
        .into_response())
}
