//! `/search` and `GET /api/search`: full-text search over stored output, newest runs first,
//! each with its matching lines in context (see `netauto_core::search`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use netauto_core::search::{self, ExcerptOptions, SearchHit, SearchPage, SearchQuery};
use netauto_core::{BulkQuery, DeviceId, RunId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, PageError};
use crate::pages::bulk::device_names;
use crate::pages::history::url_pairs;
use crate::pages::layout::{Section, page};
use crate::pages::{badge, time};

/// Runs per page of `/search` and the API's default.
pub(crate) const PAGE: usize = 20;

/// The query string of both: `q` is required, the rest optional (empty means unset).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchParams {
    /// The text to find.
    #[serde(default)]
    q: String,
    /// A device name, exactly.
    #[serde(default)]
    device: String,
    #[serde(default)]
    platform: String,
    /// The command contains.
    #[serde(default)]
    command: String,
    /// `YYYY-MM-DD` (UTC) or RFC 3339: runs started at or after.
    #[serde(default)]
    since: String,
    /// `YYYY-MM-DD` (UTC) or RFC 3339: runs started before.
    #[serde(default)]
    until: String,
    /// The `next` cursor of the previous page (a run id).
    #[serde(default)]
    before: String,
    #[serde(default)]
    limit: Option<usize>,
    /// Lines of context around each match (default 2, at most 10).
    #[serde(default)]
    context: Option<usize>,
}

impl SearchParams {
    /// The store query, or what is wrong with the parameters.
    fn query(&self, devices: &HashMap<String, DeviceId>) -> Result<SearchQuery, String> {
        let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        let date = |field: &str, v: &str| -> Result<Option<DateTime<Utc>>, String> {
            text(v)
                .map(|v| BulkQuery::parse_time(&v))
                .transpose()
                .map_err(|e| format!("{field}: {e}"))
        };
        let mut query = SearchQuery::new(self.q.clone()).map_err(|e| e.to_string())?;
        query.device = text(&self.device)
            .map(|name| {
                devices
                    .get(&name)
                    .copied()
                    .ok_or_else(|| format!("device: no device is named {name:?}"))
            })
            .transpose()?;
        query.platform = text(&self.platform);
        query.command = text(&self.command);
        query.since = date("since", &self.since)?;
        query.until = date("until", &self.until)?;
        query.before = text(&self.before)
            .map(|b| {
                b.parse::<RunId>()
                    .map_err(|_| format!("before: {b:?} is not a run id"))
            })
            .transpose()?;
        query.limit = self.limit.unwrap_or(PAGE);
        Ok(query)
    }

    fn options(&self) -> ExcerptOptions {
        ExcerptOptions {
            context: self.context.unwrap_or(2).min(10),
            ..ExcerptOptions::default()
        }
    }

    /// This query string with `before` replaced (for the next page's link).
    fn with_before(&self, before: RunId) -> String {
        let mut pairs = url_pairs(&[
            ("q", &self.q),
            ("device", &self.device),
            ("platform", &self.platform),
            ("command", &self.command),
            ("since", &self.since),
            ("until", &self.until),
        ]);
        pairs.push(format!("before={before}"));
        pairs.join("&")
    }
}

/// One page of hits, device names by id.
async fn find(
    state: &AppState,
    params: &SearchParams,
) -> Result<Result<(SearchPage, HashMap<DeviceId, String>), String>, netauto_core::Error> {
    let names = device_names(state).await?;
    let by_name: HashMap<String, DeviceId> = names.iter().map(|(id, n)| (n.clone(), *id)).collect();
    let query = match params.query(&by_name) {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    let found = search::search(state.store.as_ref(), &query, params.options()).await?;
    Ok(Ok((found, names)))
}

fn hit_json(hit: &SearchHit, names: &HashMap<DeviceId, String>) -> Value {
    let run = &hit.run;
    json!({
        "run_id": run.id,
        "url": format!("/runs/{}", run.id),
        "device_id": run.device_id,
        "device": names.get(&run.device_id),
        "command": run.command,
        "status": run.status,
        "inserted_at": run.inserted_at,
        "finished_at": run.finished_at,
        "bulk_ref": run.bulk_ref,
        "matches": hit.found.matches,
        "more": hit.found.more,
        "excerpts": hit.found.excerpts,
    })
}

/// GET /api/search?q=&device=&platform=&command=&since=&until=&before=&limit=&context= →
/// `{"runs": [{run…, "excerpts": [{"lines": [{number, text, matched}]}]}], "next": id|null}`.
pub(crate) async fn api(
    State(state): State<AppState>,
    _user: CurrentUser,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let (found, names) = find(&state, &params).await?.map_err(ApiError::BadRequest)?;
    Ok(Json(json!({
        "runs": found.hits.iter().map(|h| hit_json(h, &names)).collect::<Vec<_>>(),
        "next": found.next_before,
    })))
}

/// GET /search: the form, and with `q` one page of runs with their matching lines.
pub(crate) async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, PageError> {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let result = if params.q.is_empty() {
        None
    } else {
        Some(find(&state, &params).await?)
    };
    let flash = user.take_flash(&state);
    Ok(page(
        "Search",
        Section::Search,
        &user,
        flash.as_deref(),
        body(&params, result.as_ref()),
    ))
}

/// `text` with every case-insensitive occurrence of `needle` in `<mark>` (escaped by maud).
fn highlighted(text: &str, needle: &str) -> Markup {
    let lower = text.to_lowercase();
    let needle = needle.to_lowercase();
    // Lowercasing can change byte lengths outside ASCII: mark only when offsets agree.
    if needle.is_empty() || lower.len() != text.len() {
        return html! { (text) };
    }
    let mut parts = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&needle) {
        let start = from + at;
        let end = start + needle.len();
        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            break;
        }
        parts.push((&text[from..start], &text[start..end]));
        from = end;
    }
    html! {
        @for (plain, hit) in &parts { (plain) mark { (hit) } }
        (text[from..])
    }
}

type Found = Result<(SearchPage, HashMap<DeviceId, String>), String>;

fn body(params: &SearchParams, result: Option<&Found>) -> Markup {
    html! {
        div.page-head { h1 { "Search output" } }
        form.filters #search-form method="get" action="/search" {
            input name="q" type="search" placeholder="Text in the output (3 characters or more)…" value=(params.q) aria-label="Text" required autofocus;
            input name="device" type="text" placeholder="Device" value=(params.device) aria-label="Device";
            input name="platform" type="text" placeholder="Platform" value=(params.platform) aria-label="Platform";
            input name="command" type="text" placeholder="Command contains…" value=(params.command) aria-label="Command contains";
            label { "From " input name="since" type="date" value=(params.since); }
            label { "before " input name="until" type="date" value=(params.until); }
            button type="submit" { "Search" }
        }
        p.hint { "Finds the runs whose output contains the text, ignoring case, like " code { "| include" } " on a device. Newest first." }
        @match result {
            None => {}
            Some(Err(e)) => { p.error #search-error role="alert" { (e) } }
            Some(Ok((found, _))) if found.hits.is_empty() => { p.empty #no-hits { "No stored output contains it." } }
            Some(Ok((found, names))) => {
                div #hits {
                    @for hit in &found.hits {
                        (hit_card(hit, names, &params.q))
                    }
                }
                @if let Some(before) = found.next_before {
                    p.more { a #older href={ "/search?" (params.with_before(before)) } { "Older runs →" } }
                }
            }
        }
    }
}

fn hit_card(hit: &SearchHit, names: &HashMap<DeviceId, String>, needle: &str) -> Markup {
    let run = &hit.run;
    let device = names
        .get(&run.device_id)
        .cloned()
        .unwrap_or_else(|| format!("device {}", run.device_id));
    html! {
        section.card.hit data-run=(run.id) {
            div.output-head {
                h3 { a href={ "/runs/" (run.id) } { (device) } }
                (badge(Some(run.status)))
                code { (run.command) }
                span.muted { (time(run.inserted_at)) }
                span.muted { (hit.found.matches) @if hit.found.more { "+" } " matching line" @if hit.found.matches != 1 { "s" } }
            }
            @for excerpt in &hit.found.excerpts {
                pre.output.excerpt {
                    @for line in &excerpt.lines {
                        span class=[line.matched.then_some("matched")] {
                            span.ln { (line.number) " " }
                            @if line.matched { (highlighted(&line.text, needle)) } @else { (line.text) }
                            "\n"
                        }
                    }
                }
            }
            @if hit.found.excerpts.is_empty() {
                p.muted { "The matching line is longer than what is shown; open the run." }
            }
        }
    }
}
