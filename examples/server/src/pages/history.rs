//! `/bulks` and `GET /api/bulks`: bulk history, newest first, filtered, in keyset pages.

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use netauto_core::{BulkCursor, BulkQuery, BulkStatus, BulkSummary};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, PageError};
use crate::pages::layout::{Section, page};
use crate::pages::time;

/// Bulks per page of `/bulks` and the API's default.
pub(crate) const PAGE: usize = 50;

/// The query string of both: every field optional, empty means unset.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct HistoryParams {
    #[serde(default)]
    requested_by: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    command: String,
    /// `YYYY-MM-DD` (UTC) or RFC 3339.
    #[serde(default)]
    since: String,
    /// `YYYY-MM-DD` (UTC; bulks created before that day) or RFC 3339.
    #[serde(default)]
    until: String,
    /// The `next` cursor of the previous page.
    #[serde(default)]
    after: String,
    #[serde(default)]
    limit: Option<usize>,
}

impl HistoryParams {
    /// The store query, or the field and what is wrong with it.
    fn query(&self) -> Result<BulkQuery, String> {
        let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        let date = |field: &str, v: &str| -> Result<Option<DateTime<Utc>>, String> {
            text(v)
                .map(|v| BulkQuery::parse_time(&v))
                .transpose()
                .map_err(|e| format!("{field}: {e}"))
        };
        Ok(BulkQuery {
            requested_by: text(&self.requested_by),
            status: text(&self.status)
                .map(|s| s.parse::<BulkStatus>())
                .transpose()
                .map_err(|e| format!("status: {e}"))?,
            command: text(&self.command),
            parent: None,
            since: date("since", &self.since)?,
            until: date("until", &self.until)?,
            after: text(&self.after)
                .map(|a| a.parse::<BulkCursor>())
                .transpose()
                .map_err(|e| format!("after: {e}"))?,
            limit: self.limit.unwrap_or(PAGE),
        })
    }

    /// This query string with `after` replaced (for the next page's link).
    fn with_after(&self, after: &BulkCursor) -> String {
        let mut pairs = url_pairs(&[
            ("requested_by", &self.requested_by),
            ("status", &self.status),
            ("command", &self.command),
            ("since", &self.since),
            ("until", &self.until),
        ]);
        pairs.push(format!("after={after}"));
        pairs.join("&")
    }
}

pub(crate) fn url_pairs(fields: &[(&str, &str)]) -> Vec<String> {
    fields
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", percent(v.trim())))
        .collect()
}

/// Percent-encodes everything but unreserved characters.
pub(crate) fn percent(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The page, and the cursor of the next one when it is full.
async fn list(
    state: &AppState,
    query: &BulkQuery,
) -> Result<(Vec<BulkSummary>, Option<BulkCursor>), netauto_core::Error> {
    let bulks = state.store.list_bulks(query).await?;
    let next = (bulks.len() == query.page_size())
        .then(|| bulks.last().map(BulkSummary::cursor))
        .flatten();
    Ok((bulks, next))
}

fn summary_json(b: &BulkSummary) -> Value {
    json!({
        "bulk_ref": b.bulk_ref,
        "url": format!("/bulk/{}", b.bulk_ref),
        "command": b.command,
        "requested_by": b.requested_by,
        "created_at": b.created_at,
        "finished_at": b.finished_at,
        "cancelled_at": b.cancelled_at,
        "status": b.status(),
        "counters": b.counters,
    })
}

/// GET /api/bulks?requested_by=&status=&command=&since=&until=&after=&limit= →
/// `{"bulks": [...], "next": cursor|null}`, newest first.
pub(crate) async fn api(
    State(state): State<AppState>,
    _user: CurrentUser,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let query = params.query().map_err(ApiError::BadRequest)?;
    let (bulks, next) = list(&state, &query).await?;
    Ok(Json(json!({
        "bulks": bulks.iter().map(summary_json).collect::<Vec<_>>(),
        "next": next.map(|c| c.to_string()),
    })))
}

/// GET /bulks: the filter form, one page of bulks, a link to older ones.
pub(crate) async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, PageError> {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let (bulks, next, error) = match params.query() {
        Ok(query) => {
            let (bulks, next) = list(&state, &query).await?;
            (bulks, next, None)
        }
        Err(e) => (Vec::new(), None, Some(e)),
    };
    let flash = user.take_flash(&state);
    Ok(page(
        "Bulks",
        Section::Bulks,
        &user,
        flash.as_deref(),
        body(&params, &bulks, next.as_ref(), error.as_deref()),
    ))
}

fn body(
    params: &HistoryParams,
    bulks: &[BulkSummary],
    next: Option<&BulkCursor>,
    error: Option<&str>,
) -> Markup {
    html! {
        div.page-head { h1 { "Bulks" } }
        form.filters #bulk-filters method="get" action="/bulks" {
            input name="command" type="search" placeholder="Command contains…" value=(params.command) aria-label="Command contains";
            input name="requested_by" type="text" placeholder="Requested by" value=(params.requested_by) aria-label="Requested by";
            select name="status" aria-label="Status" {
                option value="" { "Any status" }
                @for s in BulkStatus::ALL {
                    option value=(s.as_str()) selected[params.status == s.as_str()] { (s.as_str()) }
                }
            }
            label { "From " input name="since" type="date" value=(params.since); }
            label { "before " input name="until" type="date" value=(params.until); }
            button type="submit" { "Filter" }
            @if !params.after.is_empty() { a href="/bulks" { "Newest" } }
        }
        @if let Some(e) = error {
            p.error #history-error role="alert" { (e) }
        }
        @if bulks.is_empty() && error.is_none() {
            p.empty { "No bulk matches." }
        } @else if !bulks.is_empty() {
            table.grid #bulks {
                thead { tr {
                    th { "Started" } th { "Status" } th { "Command" } th { "Requested by" }
                    th { "ok" } th { "failed" } th { "cancelled" } th { "devices" }
                } }
                tbody {
                    @for b in bulks {
                        tr {
                            td { a href={ "/bulk/" (b.bulk_ref) } { (time(b.created_at)) } }
                            td { span class={ "badge bulk-" (b.status().as_str()) } { (b.status().as_str()) } }
                            td { code { (b.command) } }
                            td { (b.requested_by) }
                            td.n { (b.counters.ok) }
                            td.n { (b.counters.failed) }
                            td.n { (b.counters.cancelled) }
                            td.n { (b.counters.total) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p.more { a #older href={ "/bulks?" (params.with_after(next)) } { "Older bulks →" } }
        }
    }
}
