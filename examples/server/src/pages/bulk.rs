//! `/bulk/<ref>`: the durable snapshot of a bulk, then live updates (see `live.rs`).

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use netauto_core::bulk::Rerun;
use netauto_core::{Bulk, BulkQuery, BulkRef, BulkSummary, DeviceId};

use crate::app::AppState;
use crate::auth::{CurrentUser, csrf_rejected};
use crate::error::PageError;
use crate::login::CsrfForm;
use crate::pages::layout::{Section, page};
use crate::pages::{badge, human_bytes, human_duration, time, time_opt};

/// Parses a reference from a URL; a malformed one is a 404 like an unknown one.
pub(crate) fn parse_ref(raw: &str) -> Result<BulkRef, PageError> {
    BulkRef::parse(raw).map_err(|_| PageError::NotFound("no such bulk".to_owned()))
}

/// Every device's name by id (rows of deleted devices are named by the caller).
pub(crate) async fn device_names(
    state: &AppState,
) -> Result<HashMap<DeviceId, String>, netauto_core::Error> {
    Ok(state
        .store
        .list_devices()
        .await?
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect())
}

/// GET /bulk/{ref}
pub(crate) async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<Markup, PageError> {
    let bulk_ref = parse_ref(&raw)?;
    let bulk = state.store.bulk(&bulk_ref).await?;
    let names = device_names(&state).await?;
    let reruns = state
        .store
        .list_bulks(&BulkQuery {
            parent: Some(bulk.bulk_ref.clone()),
            ..BulkQuery::newest(20)
        })
        .await?;
    let flash = user.take_flash(&state);
    Ok(page(
        "Bulk",
        Section::Bulks,
        &user,
        flash.as_deref(),
        body(&bulk, &names, &user, &reruns),
    ))
}

/// Form of POST /bulk/{ref}/rerun.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RerunForm {
    csrf: String,
    /// `failed` or `all`.
    devices: Rerun,
}

/// POST /bulk/{ref}/rerun (`csrf`, `devices=failed|all`): a new bulk linked to this one.
pub(crate) async fn rerun(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    Form(form): Form<RerunForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let bulk_ref = parse_ref(&raw)?;
    match state.bulk.rerun(&bulk_ref, form.devices, &user.name).await {
        Ok(child) => {
            tracing::info!(user = %user.name, parent = %bulk_ref, bulk_ref = %child, "bulk run again");
            let total = state.store.bulk_state(&child).await?.counters.total;
            state
                .audit(
                    &user,
                    "bulk.rerun",
                    child.to_string(),
                    format!("{total} devices, from {bulk_ref}"),
                )
                .await;
            state
                .sessions
                .set_flash(&user.token, format!("Running again on {total} devices"));
            Ok(Redirect::to(&format!("/bulk/{child}")).into_response())
        }
        Err(netauto_core::Error::Validation(v)) => {
            state
                .sessions
                .set_flash(&user.token, format!("Not run again: {v}"));
            Ok(Redirect::to(&format!("/bulk/{bulk_ref}")).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// POST /bulk/{ref}/cancel (`csrf`): cancels the bulk and shows it again.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let bulk_ref = parse_ref(&raw)?;
    let c = state.bulk.cancel(&bulk_ref).await?;
    tracing::info!(user = %user.name, bulk_ref = %bulk_ref, devices_cancelled = c.devices_cancelled, "bulk cancelled");
    state
        .audit(
            &user,
            "bulk.cancel",
            bulk_ref.to_string(),
            crate::api::cancel_detail(&c),
        )
        .await;
    if c.completed_now {
        state.notifier.bulk_ended_or_log(&bulk_ref).await;
    }
    let message = if !c.newly_cancelled {
        "This bulk had already finished or been cancelled.".to_owned()
    } else if c.counters.pending == 0 {
        format!(
            "Cancelled: {} devices that had not started.",
            c.devices_cancelled
        )
    } else {
        format!(
            "Cancelled: {} devices that had not started; {} running are being stopped.",
            c.devices_cancelled, c.counters.pending
        )
    };
    state.sessions.set_flash(&user.token, message);
    Ok(Redirect::to(&format!("/bulk/{bulk_ref}")).into_response())
}

fn body(
    bulk: &Bulk,
    names: &HashMap<DeviceId, String>,
    user: &CurrentUser,
    reruns: &[BulkSummary],
) -> Markup {
    let c = bulk.counters;
    let finished = bulk.finished_at.is_some();
    let duration = bulk
        .finished_at
        .and_then(|f| (f - bulk.created_at).to_std().ok())
        .unwrap_or_default();
    html! {
        section #bulk data-ref=(bulk.bulk_ref) data-finished=(finished) {
            div.page-head {
                h1 { "Bulk " code.ref { (bulk.bulk_ref) } }
                span #live-state .live {
                    @if bulk.cancelled_at.is_some() && !finished { "cancelling" }
                    @else if finished { "finished" } @else { "live" }
                }
                @if user.can_run() && !finished && bulk.cancelled_at.is_none() {
                    form #cancel-form method="post" action={ "/bulk/" (bulk.bulk_ref) "/cancel" } {
                        input type="hidden" name="csrf" value=(user.csrf);
                        button #cancel-bulk-run .danger type="submit" { "Cancel bulk" }
                    }
                }
                a #fleet-view href={ "/bulk/" (bulk.bulk_ref) "/fleet" } { "Fleet view" }
                @if user.can_run() {
                    form #rerun-failed-form .rerun method="post" action={ "/bulk/" (bulk.bulk_ref) "/rerun" } {
                        input type="hidden" name="csrf" value=(user.csrf);
                        input type="hidden" name="devices" value="failed";
                        button #rerun-failed type="submit" title="Failed, error, timeout and cancelled devices" { "Run again on failed devices" }
                    }
                    form #rerun-all-form .rerun method="post" action={ "/bulk/" (bulk.bulk_ref) "/rerun" } {
                        input type="hidden" name="csrf" value=(user.csrf);
                        input type="hidden" name="devices" value="all";
                        button #rerun-all type="submit" { "Run again on all" }
                    }
                }
            }
            dl.meta {
                dt { "Command" } dd { code { (bulk.command) } }
                dt { "Requested by" } dd { (bulk.requested_by) }
                dt { "Started" } dd { (time(bulk.created_at)) }
                dt { "Finished" } dd #finished-at { (time_opt(bulk.finished_at)) }
                dt { "Export" } dd #export {
                    a #export-csv href={ "/bulk/" (bulk.bulk_ref) "/export?format=csv" } { "CSV" } " · "
                    a #export-json href={ "/bulk/" (bulk.bulk_ref) "/export?format=json" } { "JSON" } " · "
                    a #export-tar href={ "/bulk/" (bulk.bulk_ref) "/export?format=tar" } title="Every device's output and results.csv" { "all outputs (tar)" }
                }
                @if let Some(at) = bulk.cancelled_at {
                    dt { "Cancelled" } dd #cancelled-at { (time(at)) }
                }
                @if let Some(t) = bulk.limits.timeout() {
                    dt { "Deadline" } dd { (human_duration(t)) " per device" }
                }
                @if let Some(b) = bulk.limits.max_output {
                    dt { "Output cap" } dd { (human_bytes(u128::from(b))) " per run" }
                }
                @if let Some(parent) = &bulk.parent {
                    dt { "Runs again" } dd #parent { a href={ "/bulk/" (parent) } { code { (parent) } } }
                }
                @if !reruns.is_empty() {
                    dt { "Run again as" } dd #reruns {
                        @for r in reruns {
                            a href={ "/bulk/" (r.bulk_ref) } { code { (r.bulk_ref) } } " "
                        }
                    }
                }
                @if bulk.limits.answer_prompts {
                    dt { "Questions" } dd #answers-prompts { "answered with the platform's replies" }
                }
            }
            div.counters {
                div.counter.ok { span #c-ok .n { (c.ok) } span.label { "ok" } }
                div.counter.failed { span #c-failed .n { (c.failed) } span.label { "failed" } }
                div.counter.cancelled { span #c-cancelled .n { (c.cancelled) } span.label { "cancelled" } }
                div.counter.pending { span #c-pending .n { (c.pending) } span.label { "pending" } }
                div.counter.total { span #c-total .n { (c.total) } span.label { "devices" } }
            }
            progress #bar max=(c.total.max(1)) value=(c.done()) {}
            div #summary .banner .ok[finished && c.failed == 0 && c.cancelled == 0] .failed[finished && (c.failed > 0 || c.cancelled > 0)] hidden[!finished] {
                @if finished {
                    "Finished: " (c.ok) " ok, " (c.failed) " failed"
                    @if c.cancelled > 0 { ", " (c.cancelled) " cancelled" }
                    " of " (c.total) " in " (human_duration(duration)) "."
                }
            }
            table.grid #bulk-devices {
                thead { tr { th { "Device" } th { "Status" } th { "Run" } } }
                tbody {
                    @for id in &bulk.device_ids {
                        @let outcome = bulk.outcomes.get(id);
                        tr id={ "d-" (id) } {
                            td.name { (names.get(id).map_or("(deleted device)", String::as_str)) }
                            td.status {
                                (badge(outcome.map(|o| o.status)))
                                @if outcome.is_some_and(|o| o.truncated) { " " span.badge.truncated { "truncated" } }
                            }
                            td.run {
                                @match outcome.and_then(|o| o.run_id) {
                                    Some(run) => {
                                        a href={ "/runs/" (run) } { "run #" (run) }
                                        @if let Some(kind) = outcome.filter(|o| !o.status.is_ok()).and_then(|o| o.error_kind.as_deref()) {
                                            " " span.kind.muted { (kind) }
                                        }
                                    },
                                    None => span.muted { (outcome.and_then(|o| o.error_kind.as_deref()).unwrap_or("—")) },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
