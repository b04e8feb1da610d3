//! `/bulk/<ref>`: the durable snapshot of a bulk, then live updates (see `live.rs`).

use std::collections::HashMap;

use axum::extract::{Path, State};
use maud::{Markup, html};
use netauto_core::{Bulk, BulkRef, DeviceId};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::PageError;
use crate::pages::layout::{Section, page};
use crate::pages::{badge, human_duration, time, time_opt};

/// Parses a reference from a URL; a malformed one is a 404 like an unknown one.
pub(crate) fn parse_ref(raw: &str) -> Result<BulkRef, PageError> {
    BulkRef::parse(raw).map_err(|_| PageError::NotFound("no such bulk".to_owned()))
}

/// GET /bulk/{ref}
pub(crate) async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<Markup, PageError> {
    let bulk_ref = parse_ref(&raw)?;
    let bulk = state.store.bulk(&bulk_ref).await?;
    let names: HashMap<DeviceId, String> = state
        .store
        .list_devices()
        .await?
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect();
    let flash = user.take_flash(&state);
    Ok(page(
        "Bulk",
        Section::Bulk,
        &user,
        flash.as_deref(),
        body(&bulk, &names),
    ))
}

fn body(bulk: &Bulk, names: &HashMap<DeviceId, String>) -> Markup {
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
                span #live-state .live { @if finished { "finished" } @else { "live" } }
            }
            dl.meta {
                dt { "Command" } dd { code { (bulk.command) } }
                dt { "Requested by" } dd { (bulk.requested_by) }
                dt { "Started" } dd { (time(bulk.created_at)) }
                dt { "Finished" } dd #finished-at { (time_opt(bulk.finished_at)) }
            }
            div.counters {
                div.counter.ok { span #c-ok .n { (c.ok) } span.label { "ok" } }
                div.counter.failed { span #c-failed .n { (c.failed) } span.label { "failed" } }
                div.counter.pending { span #c-pending .n { (c.pending) } span.label { "pending" } }
                div.counter.total { span #c-total .n { (c.total) } span.label { "devices" } }
            }
            progress #bar max=(c.total.max(1)) value=(c.done()) {}
            div #summary .banner .ok[finished && c.failed == 0] .failed[finished && c.failed > 0] hidden[!finished] {
                @if finished {
                    "Finished: " (c.ok) " ok, " (c.failed) " failed of " (c.total) " in " (human_duration(duration)) "."
                }
            }
            table.grid #bulk-devices {
                thead { tr { th { "Device" } th { "Status" } th { "Run" } } }
                tbody {
                    @for id in &bulk.device_ids {
                        @let outcome = bulk.outcomes.get(id);
                        tr id={ "d-" (id) } {
                            td.name { (names.get(id).map_or("(deleted device)", String::as_str)) }
                            td.status { (badge(outcome.map(|o| o.status))) }
                            td.run {
                                @match outcome.and_then(|o| o.run_id) {
                                    Some(run) => a href={ "/runs/" (run) } { "run #" (run) },
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
