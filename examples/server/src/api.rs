//! The JSON API: the same flows as the pages, for scripts. Authentication is the session
//! cookie; writes also carry the session's CSRF token in `x-csrf-token`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use netauto_core::{BulkRef, DeviceId, LimitOverrides, RunId, ValidationError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{CurrentUser, api_csrf_ok};
use crate::error::ApiError;
use crate::pages::devices::last_runs;
use crate::pages::runs::{CHUNK_PAGE, PAGE_OUTPUT_LIMIT};

/// GET /api/devices
pub(crate) async fn devices(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let devices = state.store.list_devices().await?;
    let last = last_runs(&state.store, &devices).await?;
    let list: Vec<Value> = devices
        .iter()
        .map(|d| {
            let run = last.get(&d.id).map(|r| {
                json!({"id": r.id, "status": r.status, "at": r.finished_at.unwrap_or(r.inserted_at)})
            });
            json!({
                "id": d.id, "name": d.name, "host": d.host, "port": d.port,
                "platform": d.platform, "site": d.site, "tags": d.tags, "last_run": run,
            })
        })
        .collect();
    Ok(Json(json!({ "devices": list })))
}

/// Body of POST /api/bulk.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkBody {
    device_ids: Vec<DeviceId>,
    command: String,
    /// This bulk's deadline per device, in seconds (default: the server's).
    #[serde(default)]
    timeout_secs: Option<f64>,
    /// This bulk's output cap per run, in bytes (default: the server's).
    #[serde(default)]
    max_output: Option<u64>,
    /// Type the platform's replies when a device asks a question (default `false`: such a
    /// device's run ends `failed`, `prompt_unanswered`).
    #[serde(default)]
    answer_prompts: bool,
}

/// Per-bulk limits from seconds and bytes; an unusable deadline is a validation error
/// naming the field (ranges are checked by the bulk service).
pub(crate) fn limit_overrides(
    timeout_secs: Option<f64>,
    max_output: Option<u64>,
) -> Result<LimitOverrides, ValidationError> {
    let mut limits = LimitOverrides::none();
    if let Some(secs) = timeout_secs {
        let t =
            std::time::Duration::try_from_secs_f64(secs).map_err(|_| ValidationError::Field {
                field: "timeout",
                reason: format!("{secs} is not a number of seconds from 0.1 to 604800"),
            })?;
        limits = limits.with_timeout(t);
    }
    if let Some(bytes) = max_output {
        limits = limits.with_max_output(bytes);
    }
    Ok(limits)
}

/// A JSON body, or 422 (well-formed, wrong shape) / 400 (unreadable) with the reason.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|r| match r.status() {
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(r.body_text()),
        _ => ApiError::BadRequest(r.body_text()),
    })
}

/// POST /api/bulk → 201 `{"bulk_ref", "url", "devices"}`; 422 names the problem.
pub(crate) async fn create_bulk(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: Result<Json<BulkBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    if !api_csrf_ok(&user, &headers) {
        return Err(ApiError::Csrf);
    }
    let body = json_body(body)?;
    let limits = limit_overrides(body.timeout_secs, body.max_output)
        .map_err(ApiError::Validation)?
        .with_answer_prompts(body.answer_prompts);
    let bulk_ref = state
        .bulk
        .enqueue_with_limits(&body.device_ids, &body.command, &user.name, limits)
        .await?;
    let total = state.store.bulk(&bulk_ref).await?.counters.total;
    state
        .audit(
            &user,
            "bulk.start",
            bulk_ref.to_string(),
            format!("{total} devices: {}", body.command),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "bulk_ref": bulk_ref,
            "url": format!("/bulk/{bulk_ref}"),
            "devices": total,
        })),
    )
        .into_response())
}

/// Body of POST /api/bulk/{ref}/rerun.
#[derive(Debug, Deserialize)]
pub(crate) struct RerunBody {
    /// `failed` (failed, error, timeout, cancelled) or `all`.
    devices: netauto_core::bulk::Rerun,
}

/// POST /api/bulk/{ref}/rerun `{"devices": "failed"|"all"}` → 201 like POST /api/bulk, with
/// `parent`; 422 when there is no such device.
pub(crate) async fn rerun_bulk(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Json<RerunBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    if !api_csrf_ok(&user, &headers) {
        return Err(ApiError::Csrf);
    }
    let parent =
        BulkRef::parse(&raw).map_err(|_| ApiError::NotFound(format!("bulk {raw:?} not found")))?;
    let body = json_body(body)?;
    let bulk_ref = state.bulk.rerun(&parent, body.devices, &user.name).await?;
    let total = state.store.bulk_state(&bulk_ref).await?.counters.total;
    state
        .audit(
            &user,
            "bulk.rerun",
            bulk_ref.to_string(),
            format!("{total} devices, from {parent}"),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "bulk_ref": bulk_ref,
            "url": format!("/bulk/{bulk_ref}"),
            "devices": total,
            "parent": parent,
        })),
    )
        .into_response())
}

/// GET /api/bulk/{ref}: the bulk with its counters and outcomes.
pub(crate) async fn bulk(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let bulk_ref =
        BulkRef::parse(&raw).map_err(|_| ApiError::NotFound(format!("bulk {raw:?} not found")))?;
    let bulk = state.store.bulk(&bulk_ref).await?;
    let outcomes: Vec<Value> = bulk
        .device_ids
        .iter()
        .map(|id| match bulk.outcomes.get(id) {
            Some(o) => json!({"device_id": id, "status": o.status, "run_id": o.run_id, "error_kind": o.error_kind, "truncated": o.truncated}),
            None => json!({"device_id": id, "status": "pending", "run_id": null, "error_kind": null, "truncated": false}),
        })
        .collect();
    Ok(Json(json!({
        "bulk_ref": bulk.bulk_ref,
        "command": bulk.command,
        "requested_by": bulk.requested_by,
        "created_at": bulk.created_at,
        "finished_at": bulk.finished_at,
        "cancelled_at": bulk.cancelled_at,
        "timeout_secs": bulk.limits.timeout().map(|t| t.as_secs_f64()),
        "max_output": bulk.limits.max_output,
        "answer_prompts": bulk.limits.answer_prompts,
        "parent": bulk.parent,
        "counters": bulk.counters,
        "devices": outcomes,
    })))
}

/// POST /api/bulk/{ref}/cancel → 200 `{"bulk_ref", "cancelled", "devices_cancelled",
/// "counters"}`: devices not started are cancelled at once; running ones stop within about
/// a second on the node running them. Cancelling a finished or cancelled bulk answers
/// `"cancelled": false` and changes nothing.
pub(crate) async fn cancel_bulk(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !api_csrf_ok(&user, &headers) {
        return Err(ApiError::Csrf);
    }
    let bulk_ref =
        BulkRef::parse(&raw).map_err(|_| ApiError::NotFound(format!("bulk {raw:?} not found")))?;
    let c = state.bulk.cancel(&bulk_ref).await?;
    tracing::info!(user = %user.name, bulk_ref = %bulk_ref, devices_cancelled = c.devices_cancelled, "bulk cancelled");
    state
        .audit(
            &user,
            "bulk.cancel",
            bulk_ref.to_string(),
            cancel_detail(&c),
        )
        .await;
    if c.completed_now {
        state.notifier.bulk_ended_or_log(&bulk_ref).await;
    }
    Ok(Json(json!({
        "bulk_ref": bulk_ref,
        "cancelled": c.newly_cancelled,
        "devices_cancelled": c.devices_cancelled,
        "counters": c.counters,
    })))
}

/// POST /api/runs/{id}/cancel → 202 `{"run_id", "status": "cancelling"}`: the node running
/// it closes its session within about a second and finishes it `cancelled`; 409 when it
/// has finished already.
pub(crate) async fn cancel_run(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    if !api_csrf_ok(&user, &headers) {
        return Err(ApiError::Csrf);
    }
    let id: RunId = raw
        .parse()
        .map_err(|_| ApiError::NotFound(format!("run {raw:?} not found")))?;
    let run = state.network.cancel_run(id).await?;
    tracing::info!(user = %user.name, run_id = id.get(), "run cancel requested");
    state.audit(&user, "run.cancel", id.to_string(), "").await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": run.id, "status": "cancelling"})),
    )
        .into_response())
}

/// Query of GET /api/runs/{id}.
#[derive(Debug, Deserialize)]
pub(crate) struct RunQuery {
    /// First chunk wanted (for tailing).
    #[serde(default)]
    from_seq: u64,
}

/// GET /api/runs/{id}?from_seq=N: the run and its output from chunk N (up to 1 MiB; `more`
/// says whether to ask again from `next_seq`).
pub(crate) async fn run(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(raw): Path<String>,
    query: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id: RunId = raw
        .parse()
        .map_err(|_| ApiError::NotFound(format!("run {raw:?} not found")))?;
    let Query(q) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let run = state.store.run(id).await?;
    let mut output = Vec::new();
    let mut bytes = 0u64;
    let mut next = q.from_seq;
    let mut more = false;
    let mut text = crate::text::Utf8Carry::default();
    'pages: loop {
        let page = state.store.chunks(id, next, CHUNK_PAGE).await?;
        if page.is_empty() {
            break;
        }
        for c in page {
            if bytes >= PAGE_OUTPUT_LIMIT {
                more = true;
                break 'pages;
            }
            bytes += c.data.len() as u64;
            next = c.seq + 1;
            output.push(json!({
                "seq": c.seq,
                "stream": c.stream,
                "text": text.push(&c.data),
            }));
        }
    }
    // The output (or this page of it) ended mid-character: what is left is text too.
    let rest = text.finish();
    if let Some(last) = output.last_mut().filter(|_| !rest.is_empty())
        && let Some(t) = last["text"].as_str()
    {
        last["text"] = Value::from(format!("{t}{rest}"));
    }
    Ok(Json(json!({
        "run": run,
        "output": output,
        "next_seq": next,
        "more": more,
    })))
}

/// The audit detail of a bulk cancel.
pub(crate) fn cancel_detail(c: &netauto_core::BulkCancelled) -> String {
    if c.newly_cancelled {
        format!(
            "{} devices not started cancelled, {} running stopped",
            c.devices_cancelled, c.counters.pending
        )
    } else {
        "already finished or cancelled".to_owned()
    }
}
