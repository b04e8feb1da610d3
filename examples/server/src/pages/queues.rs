//! `/queues` and its API: per queue the jobs by state, paused or not (pause and resume hold
//! on every node: the pause is stored with the jobs and every claim honours it); the recent
//! failures with their errors; retry, cancel or discard a job.

use std::collections::BTreeMap;

use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use netauto_core::{Job, JobFilter, JobId, JobState};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{CurrentUser, api_csrf_ok, csrf_rejected};
use crate::error::{ApiError, PageError};
use crate::login::CsrfForm;
use crate::pages::layout::{Section, page};
use crate::pages::time;

/// Failures listed (the newest).
const FAILURES: usize = 25;

/// One queue's row.
struct QueueRow {
    name: String,
    limit: Option<usize>,
    counts: BTreeMap<&'static str, u64>,
    paused: Option<chrono::DateTime<Utc>>,
    /// Jobs completed in the last 5 minutes and the last hour (every node).
    completed_5m: u64,
    completed_1h: u64,
}

/// Every queue this node runs or that has jobs, with counts and pause; the newest failures.
async fn overview(state: &AppState) -> netauto_core::Result<(Vec<QueueRow>, Vec<Job>)> {
    let mut rows: BTreeMap<String, QueueRow> = BTreeMap::new();
    for (name, limit) in state.runner.config().queues.iter() {
        entry(&mut rows, name).limit = Some(limit);
    }
    for c in state.queue.counts().await? {
        *entry(&mut rows, &c.queue)
            .counts
            .entry(c.state.as_str())
            .or_default() += c.count;
    }
    for p in state.queue.paused_queues().await? {
        entry(&mut rows, &p.queue).paused = Some(p.paused_at);
    }
    let now = Utc::now();
    for c in state
        .queue
        .finished_since(now - chrono::TimeDelta::hours(1))
        .await?
    {
        if c.state == JobState::Completed {
            entry(&mut rows, &c.queue).completed_1h += c.count;
        }
    }
    for c in state
        .queue
        .finished_since(now - chrono::TimeDelta::minutes(5))
        .await?
    {
        if c.state == JobState::Completed {
            entry(&mut rows, &c.queue).completed_5m += c.count;
        }
    }
    let mut failures = state
        .queue
        .list(&JobFilter::all().with_states([JobState::Retryable, JobState::Discarded]))
        .await?;
    failures.retain(|j| !j.errors.is_empty());
    failures.reverse();
    failures.truncate(FAILURES);
    Ok((rows.into_values().collect(), failures))
}

fn entry<'a>(rows: &'a mut BTreeMap<String, QueueRow>, name: &str) -> &'a mut QueueRow {
    rows.entry(name.to_owned()).or_insert_with(|| QueueRow {
        name: name.to_owned(),
        limit: None,
        counts: BTreeMap::new(),
        paused: None,
        completed_5m: 0,
        completed_1h: 0,
    })
}

const STATES: [JobState; 5] = [
    JobState::Available,
    JobState::Scheduled,
    JobState::Executing,
    JobState::Retryable,
    JobState::Discarded,
];

/// GET /queues
pub(crate) async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let (queues, failures) = overview(&state).await?;
    let flash = user.take_flash(&state);
    let body = html! {
        div.page-head { h1 { "Queues" } }
        p.hint { "Paused queues stay paused on every node until resumed; jobs already running finish." }
        table.grid #queues {
            thead { tr {
                th { "Queue" } th { "This node runs" }
                @for s in STATES { th { (s.as_str()) } }
                th { "completed" } th title="Jobs completed by every node" { "last 5 min / hour" } th { "" }
            } }
            tbody {
                @for q in &queues {
                    tr data-queue=(q.name) {
                        td { code { (q.name) } @if q.paused.is_some() { " " span.badge.bulk-cancelled.paused { "paused" } } }
                        td.n { @if let Some(l) = q.limit { (l) " at once" } @else { "—" } }
                        @for s in STATES { td.n { (q.counts.get(s.as_str()).copied().unwrap_or(0)) } }
                        td.n { (q.counts.get("completed").copied().unwrap_or(0)) }
                        td.n.throughput { (q.completed_5m) " / " (q.completed_1h) }
                        td {
                            @let (action, label) = if q.paused.is_some() { ("resume", "Resume") } else { ("pause", "Pause") };
                            @if user.is_admin() { form.inline method="post" action={ "/queues/" (q.name) "/" (action) } {
                                input type="hidden" name="csrf" value=(user.csrf);
                                button.pause-toggle type="submit" { (label) }
                            } }
                        }
                    }
                }
            }
        }
        h2 { "Recent failures" }
        @if failures.is_empty() {
            p.empty #no-failures { "No job is waiting for a retry or was discarded after errors." }
        } @else {
            table.grid #failures {
                thead { tr { th { "Job" } th { "Queue" } th { "Worker" } th { "State" } th { "Attempt" } th { "Last error" } th { "" } } }
                tbody {
                    @for j in &failures {
                        tr data-job=(j.id) {
                            td.n { (j.id) }
                            td { code { (j.queue) } }
                            td { (j.worker) }
                            td { span class={ "badge job-" (j.state.as_str()) } { (j.state.as_str()) } }
                            td.n { (j.attempt) " / " (j.max_attempts) }
                            td {
                                @if let Some(e) = j.errors.last() { (time(e.at)) ": " code { (e.error) } }
                            }
                            td {
                                @for (action, label) in [("retry", "Retry"), ("cancel", "Cancel"), ("discard", "Discard")] {
                                    @if user.is_admin() && (action == "retry" || !j.state.is_terminal()) {
                                        form.inline method="post" action={ "/jobs/" (j.id) "/" (action) } {
                                            input type="hidden" name="csrf" value=(user.csrf);
                                            button type="submit" class={ "job-" (action) } { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        "Queues",
        Section::Queues,
        &user,
        flash.as_deref(),
        body,
    ))
}

/// What a queue or job action did, as a flash message.
async fn act(
    state: &AppState,
    user: &CurrentUser,
    what: &str,
    target: &str,
) -> Result<String, netauto_core::Error> {
    let now = Utc::now();
    let message = match what {
        "pause" => {
            state.queue.pause_queue(target, now).await?;
            format!("Queue {target} paused on every node.")
        }
        "resume" => {
            state.queue.resume_queue(target).await?;
            netauto_core::runtime::Wake::wake(state.runner.waker().as_ref());
            format!("Queue {target} resumed.")
        }
        _ => {
            let id: JobId = target.parse().map_err(|_| netauto_core::Error::NotFound {
                what: "job",
                id: target.to_owned(),
            })?;
            let job = match what {
                "retry" => state.queue.retry_job(id, now).await?,
                "cancel" => state.queue.cancel(id, now).await?,
                _ => state.queue.discard_job(id, now).await?,
            };
            if what == "retry" {
                netauto_core::runtime::Wake::wake(state.runner.waker().as_ref());
            }
            format!("Job {id}: {}.", job.state.as_str())
        }
    };
    tracing::info!(user = %user.name, action = what, target, "queue action");
    let action = if QUEUE_ACTIONS.contains(&what) {
        format!("queue.{what}")
    } else {
        format!("job.{what}")
    };
    state.audit(user, &action, target, message.clone()).await;
    Ok(message)
}

const QUEUE_ACTIONS: [&str; 2] = ["pause", "resume"];
const JOB_ACTIONS: [&str; 3] = ["retry", "cancel", "discard"];

/// POST /queues/{queue}/{pause|resume} (`csrf`).
pub(crate) async fn page_queue_action(
    state: State<AppState>,
    user: CurrentUser,
    path: Path<(String, String)>,
    form: Form<CsrfForm>,
) -> Result<Response, PageError> {
    page_action(state, user, path, form, &QUEUE_ACTIONS).await
}

/// POST /jobs/{id}/{retry|cancel|discard} (`csrf`).
pub(crate) async fn page_job_action(
    state: State<AppState>,
    user: CurrentUser,
    path: Path<(String, String)>,
    form: Form<CsrfForm>,
) -> Result<Response, PageError> {
    page_action(state, user, path, form, &JOB_ACTIONS).await
}

async fn page_action(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((target, what)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
    allowed: &[&str],
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    if !allowed.contains(&what.as_str()) {
        return Err(PageError::NotFound("no such action".to_owned()));
    }
    let message = match act(&state, &user, &what, &target).await {
        Ok(m) => m,
        Err(netauto_core::Error::Conflict(c)) => format!("Not done: {c}."),
        Err(e) => return Err(e.into()),
    };
    state.sessions.set_flash(&user.token, message);
    Ok(Redirect::to("/queues").into_response())
}

/// GET /api/queues → `{"queues": [{name, limit, paused_at, counts: {state: n},
/// completed_last_5m, completed_last_hour}], "failures": [job…]}`.
pub(crate) async fn api(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let (queues, failures) = overview(&state).await?;
    Ok(Json(json!({
        "queues": queues.iter().map(|q| json!({
            "name": q.name,
            "limit": q.limit,
            "paused_at": q.paused,
            "counts": q.counts,
            "completed_last_5m": q.completed_5m,
            "completed_last_hour": q.completed_1h,
        })).collect::<Vec<_>>(),
        "failures": failures,
    })))
}

/// POST /api/queues/{queue}/{pause|resume} (`X-CSRF-Token`) → `{"message"}`.
pub(crate) async fn api_queue_action(
    state: State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    path: Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    api_action(state, user, headers, path, &QUEUE_ACTIONS).await
}

/// POST /api/jobs/{id}/{retry|cancel|discard} (`X-CSRF-Token`) → `{"message"}`; 409 when
/// the job's state does not allow it.
pub(crate) async fn api_job_action(
    state: State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    path: Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    api_action(state, user, headers, path, &JOB_ACTIONS).await
}

async fn api_action(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path((target, what)): Path<(String, String)>,
    allowed: &[&str],
) -> Result<Json<Value>, ApiError> {
    if !api_csrf_ok(&user, &headers) {
        return Err(ApiError::Csrf);
    }
    if !allowed.contains(&what.as_str()) {
        return Err(ApiError::NotFound(format!("no action {what:?}")));
    }
    let message = act(&state, &user, &what, &target).await?;
    Ok(Json(json!({ "message": message })))
}
