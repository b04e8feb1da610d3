//! `/webhooks` (admins): register a URL for events (its signing secret shown once), delete
//! one, and read the delivery log.

use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use netauto_core::{NewWebhook, Webhook, WebhookDelivery};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{CurrentUser, csrf_rejected};
use crate::error::{ApiError, PageError};
use crate::pages::layout::{Section, page};
use crate::pages::time;
use crate::webhooks::{EVENTS, parse_threshold};

/// Delivery attempts shown.
const LOG_ROWS: usize = 50;
/// Longest webhook URL.
const MAX_URL: usize = 2048;

fn render(
    user: &CurrentUser,
    hooks: &[Webhook],
    log: &[WebhookDelivery],
    flash: Option<&str>,
    created: Option<(&Webhook, &str)>,
    error: Option<&str>,
) -> Markup {
    let body = html! {
        div.page-head { h1 { "Webhooks" } }
        p.hint {
            "Each event is POSTed as JSON, signed: " code { "X-Netauto-Signature: sha256=HMAC-SHA256(secret, timestamp + \".\" + body)" }
            " with " code { "X-Netauto-Timestamp" } ". A failed delivery (no 2xx answer) is retried with backoff through the job queue."
        }
        @if let Some((h, secret)) = created {
            div.banner.ok #new-webhook {
                p { "Webhook to " strong { (h.url) } " created. Its signing secret, shown this once:" }
                pre #webhook-secret { (secret) }
            }
        }
        @if let Some(e) = error { p.error #webhook-error role="alert" { (e) } }
        form #webhook-form method="post" action="/webhooks" {
            input type="hidden" name="csrf" value=(user.csrf);
            label { "URL " input name="url" type="url" required maxlength=(MAX_URL) placeholder="https://chat.example.net/hooks/netauto"; }
            fieldset {
                legend { "Events" }
                @for e in EVENTS {
                    label.check { input type="checkbox" name="events" value=(e) checked[e != "retention.purge"]; " " code { (e) } }
                }
            }
            label { "bulk.failed when failed devices reach " input name="failed_threshold" type="text" value="1" maxlength="5" size="5"; " (devices, or a percentage like 10%)" }
            button.primary #add-webhook type="submit" { "Add webhook" }
        }
        @if hooks.is_empty() {
            p.empty #no-webhooks { "No webhook yet." }
        } @else {
            table.grid #webhooks {
                thead { tr { th { "URL" } th { "Events" } th { "Failed threshold" } th { "Created" } th { "" } } }
                tbody {
                    @for h in hooks {
                        tr data-webhook=(h.id) {
                            td { code { (h.url) } }
                            td { (h.events.join(", ")) }
                            td { (h.failed_threshold) }
                            td { (time(h.created_at)) " by " (h.created_by) }
                            td {
                                form.inline method="post" action={ "/webhooks/" (h.id) "/delete" } {
                                    input type="hidden" name="csrf" value=(user.csrf);
                                    button.danger.delete-webhook type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Deliveries" }
        @if log.is_empty() {
            p.empty #no-deliveries { "No delivery yet." }
        } @else {
            table.grid #deliveries {
                thead { tr { th { "When" } th { "Webhook" } th { "Event" } th { "About" } th { "Attempt" } th { "Answer" } th { "Time" } } }
                tbody {
                    @for d in log {
                        tr data-ok=(d.error.is_none()) {
                            td { (time(d.at)) }
                            td.n { (d.webhook_id) }
                            td { code { (d.event) } }
                            td { (d.target) }
                            td.n { (d.attempt) }
                            td { @if let Some(e) = &d.error { span.error { (e) } } @else { (d.status_code.unwrap_or(0)) } }
                            td.n { (d.duration_ms) " ms" }
                        }
                    }
                }
            }
        }
    };
    page("Webhooks", Section::Webhooks, user, flash, body)
}

async fn load(state: &AppState) -> netauto_core::Result<(Vec<Webhook>, Vec<WebhookDelivery>)> {
    Ok((
        state.store.webhooks().await?,
        state.store.deliveries(None, LOG_ROWS).await?,
    ))
}

/// GET /webhooks
pub(crate) async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let (hooks, log) = load(&state).await?;
    let flash = user.take_flash(&state);
    Ok(render(&user, &hooks, &log, flash.as_deref(), None, None))
}

/// GET /api/webhooks → `{"webhooks": [{id, url, events, failed_threshold, created_by,
/// created_at}], "deliveries": [{id, webhook_id, event, target, attempt, status_code, error,
/// duration_ms, at}]}` (never a secret; the newest 50 deliveries).
pub(crate) async fn api(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (hooks, log) = load(&state).await?;
    Ok(Json(json!({ "webhooks": hooks, "deliveries": log })))
}

/// The add form (`events` repeats).
struct CreateForm {
    csrf: String,
    url: String,
    events: Vec<String>,
    failed_threshold: String,
}

impl CreateForm {
    fn from_fields(fields: Vec<(String, String)>) -> Self {
        let mut form = Self {
            csrf: String::new(),
            url: String::new(),
            events: Vec::new(),
            failed_threshold: String::new(),
        };
        for (k, v) in fields {
            match k.as_str() {
                "csrf" => form.csrf = v,
                "url" => form.url = v,
                "events" => form.events.push(v),
                "failed_threshold" => form.failed_threshold = v,
                _ => {}
            }
        }
        form
    }
}

/// What is wrong with a webhook URL, if anything.
fn url_problem(url: &str) -> Option<String> {
    if url.len() > MAX_URL || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("the URL must be one line without spaces".to_owned());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => None,
        _ => Some(format!(
            "{url:?} is not an http:// or https:// URL with a host"
        )),
    }
}

/// POST /webhooks (`csrf`, `url`, `events`…, `failed_threshold`)
pub(crate) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = CreateForm::from_fields(fields);
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let url = form.url.trim().to_owned();
    let threshold = if form.failed_threshold.trim().is_empty() {
        "1".to_owned()
    } else {
        form.failed_threshold.trim().to_owned()
    };
    let unknown: Vec<&String> = form
        .events
        .iter()
        .filter(|e| !EVENTS.contains(&e.as_str()))
        .collect();
    let problem = url_problem(&url)
        .or_else(|| (!unknown.is_empty()).then(|| format!("unknown events {unknown:?}")))
        .or_else(|| {
            form.events
                .is_empty()
                .then(|| "pick at least one event".to_owned())
        })
        .or_else(|| parse_threshold(&threshold).err());
    if let Some(p) = problem {
        let (hooks, log) = load(&state).await?;
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            render(
                &user,
                &hooks,
                &log,
                None,
                None,
                Some(&format!("Not added: {p}.")),
            ),
        )
            .into_response());
    }
    let secret = crate::tokens::generate_with("whsec_").map_err(|e| {
        PageError::Core(netauto_core::Error::backend(format!(
            "no randomness for a secret: {e}"
        )))
    })?;
    let mut events: Vec<String> = Vec::new();
    for e in EVENTS {
        if form.events.iter().any(|f| f == e) {
            events.push(e.to_owned());
        }
    }
    let hook = state
        .store
        .create_webhook(
            NewWebhook {
                url,
                events,
                failed_threshold: threshold,
                secret: secret.clone(),
                created_by: user.name.clone(),
            },
            Utc::now(),
        )
        .await?;
    state
        .audit(
            &user,
            "webhook.create",
            &hook.url,
            format!("id {}, events {}", hook.id, hook.events.join(", ")),
        )
        .await;
    let (hooks, log) = load(&state).await?;
    let mut res = render(&user, &hooks, &log, None, Some((&hook, &secret)), None).into_response();
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// POST /webhooks/{id}/delete (`csrf`): the webhook and its delivery log go; deliveries
/// still queued are dropped when they run.
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<crate::login::CsrfForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::NotFound("no such webhook".to_owned()))?;
    let gone = state.store.delete_webhook(id).await?;
    state
        .audit(&user, "webhook.delete", &gone.url, format!("id {id}"))
        .await;
    state
        .sessions
        .set_flash(&user.token, format!("Webhook to {} deleted.", gone.url));
    Ok(Redirect::to("/webhooks").into_response())
}
