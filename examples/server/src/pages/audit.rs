//! `/audit` and `GET /api/audit` (admins): who did what, when, from where; newest first,
//! filtered by actor and action, in keyset pages.

use axum::Json;
use axum::extract::{Query, State};
use maud::{Markup, html};
use netauto_core::{AuditEvent, AuditQuery};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, PageError};
use crate::pages::history::url_pairs;
use crate::pages::layout::{Section, page};
use crate::pages::time;

/// The link to the page after `events` (same filters), when the page was full.
fn next_page(query: &AuditQuery, events: &[AuditEvent]) -> Option<String> {
    let last = events
        .last()
        .filter(|_| events.len() == query.page_size())?;
    let limit = query.limit.map(|l| l.to_string()).unwrap_or_default();
    let mut pairs = url_pairs(&[
        ("actor", query.actor.as_deref().unwrap_or_default()),
        ("action", query.action.as_deref().unwrap_or_default()),
        ("limit", &limit),
    ]);
    pairs.push(format!("before={}", last.id));
    Some(format!("/audit?{}", pairs.join("&")))
}

/// GET /audit?actor=&action=&before=&limit=
pub(crate) async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<AuditQuery>,
) -> Result<Markup, PageError> {
    let events = state.store.audit_events(&query).await?;
    let body = html! {
        div.page-head { h1 { "Audit log" } }
        form.filters method="get" action="/audit" {
            label { "Actor " input name="actor" type="text" value=[query.actor.as_deref()]; }
            label { "Action " input name="action" type="text" placeholder="bulk, login.failed" value=[query.action.as_deref()]; }
            button type="submit" { "Filter" }
        }
        @if events.is_empty() {
            p.empty #no-audit { "No entry." }
        } @else {
            table.grid #audit {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Detail" } th { "Address" } } }
                tbody {
                    @for e in &events {
                        tr data-action=(e.action) {
                            td { (time(e.at)) }
                            td { (e.actor) }
                            td { code { (e.action) } }
                            td { (e.target) }
                            td { (e.detail) }
                            td.muted { (e.address.as_deref().unwrap_or("—")) }
                        }
                    }
                }
            }
            @if let Some(next) = next_page(&query, &events) {
                p { a #audit-next href=(next) { "Older entries →" } }
            }
        }
    };
    Ok(page("Audit log", Section::Audit, &user, None, body))
}

/// GET /api/audit?actor=&action=&before=&limit= → `{"events": [...], "next_before": id|null}`.
pub(crate) async fn api(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let events = state.store.audit_events(&query).await?;
    let next = events
        .last()
        .filter(|_| events.len() == query.page_size())
        .map(|e| e.id);
    Ok(Json(json!({ "events": events, "next_before": next })))
}
