//! API tokens: a user creates named tokens (optionally expiring) on `/tokens`, sees each
//! secret once, and revokes them. Scripts send `Authorization: Bearer <secret>` to any
//! `/api/*` route, without a session or CSRF token. Only the SHA-256 of a secret is stored.

use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{TimeDelta, Utc};
use maud::{Markup, html};
use netauto_core::{ApiToken, NewApiToken};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::auth::{CurrentUser, csrf_rejected};
use crate::error::{ApiError, PageError};
use crate::pages::layout::{Section, page};
use crate::pages::time;

/// Prefix of every secret (so that a leaked one is recognisable, e.g. by secret scanners).
const PREFIX: &str = "netauto_";

/// The stored form of a secret: hex SHA-256.
pub(crate) fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new secret: 256 random bits, hex.
fn generate() -> Result<String, getrandom::Error> {
    generate_with(PREFIX)
}

/// `prefix` and 256 random bits, hex.
pub(crate) fn generate_with(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{prefix}{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn status(t: &ApiToken) -> &'static str {
    let now = Utc::now();
    if t.revoked_at.is_some() {
        "revoked"
    } else if !t.is_live(now) {
        "expired"
    } else {
        "active"
    }
}

fn render(
    user: &CurrentUser,
    tokens: &[ApiToken],
    flash: Option<&str>,
    created: Option<(&ApiToken, &str)>,
    error: Option<&str>,
) -> Markup {
    let body = html! {
        div.page-head { h1 { "API tokens" } }
        p.hint { "A token acts as you on every " code { "/api/" } " route: send " code { "Authorization: Bearer <token>" } ". It is shown once; only its hash is kept." }
        @if let Some((t, secret)) = created {
            div.banner.ok #new-token {
                p { "Token " strong { (t.name) } " created. Copy it now: it will not be shown again." }
                pre #token-secret { (secret) }
            }
        }
        @if let Some(e) = error { p.error #token-error role="alert" { (e) } }
        form #token-form method="post" action="/tokens" {
            input type="hidden" name="csrf" value=(user.csrf);
            label { "Name " input name="name" type="text" required maxlength="100" placeholder="ci-pipeline"; }
            label { "Expires after (days, empty: never) " input name="days" type="text" maxlength="5"; }
            button.primary #create-token type="submit" { "Create token" }
        }
        @if tokens.is_empty() {
            p.empty #no-tokens { "No token yet." }
        } @else {
            table.grid #tokens {
                thead { tr { th { "Name" } th { "Created" } th { "Expires" } th { "Last used" } th { "Status" } th { "" } } }
                tbody {
                    @for t in tokens {
                        tr data-token=(t.id) {
                            td { (t.name) }
                            td { (time(t.created_at)) }
                            td { @if let Some(e) = t.expires_at { (time(e)) } @else { "never" } }
                            td { @if let Some(u) = t.last_used_at { (time(u)) } @else { "never" } }
                            td { (status(t)) }
                            td {
                                @if t.revoked_at.is_none() {
                                    form.inline method="post" action={ "/tokens/" (t.id) "/revoke" } {
                                        input type="hidden" name="csrf" value=(user.csrf);
                                        button.danger.revoke-token type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page("API tokens", Section::Tokens, user, flash, body)
}

/// GET /tokens
pub(crate) async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let tokens = state.store.tokens_of(&user.name).await?;
    let flash = user.take_flash(&state);
    Ok(render(&user, &tokens, flash.as_deref(), None, None))
}

/// The create form.
#[derive(Debug, Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    days: String,
}

/// POST /tokens (`csrf`, `name`, `days`): the page again with the secret, shown this once.
pub(crate) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<CreateForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let name = form.name.trim();
    let days = form.days.trim();
    let problem = if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        Some("a name of 1 to 100 characters, on one line".to_owned())
    } else if !days.is_empty() && days.parse::<u32>().map_or(true, |d| d == 0 || d > 3650) {
        Some(format!("{days:?} is not a number of days from 1 to 3650"))
    } else {
        None
    };
    if let Some(p) = problem {
        let tokens = state.store.tokens_of(&user.name).await?;
        return Ok(render(
            &user,
            &tokens,
            None,
            None,
            Some(&format!("Not created: {p}.")),
        )
        .into_response());
    }
    let secret = generate().map_err(|e| {
        PageError::Core(netauto_core::Error::Backend {
            source: format!("no randomness for a token: {e}").into(),
        })
    })?;
    let expires_at = days
        .parse::<i64>()
        .ok()
        .map(|d| Utc::now() + TimeDelta::days(d));
    let token = state
        .store
        .create_token(
            NewApiToken {
                user: user.name.clone(),
                name: name.to_owned(),
                hash: hash(&secret),
                expires_at,
            },
            Utc::now(),
        )
        .await?;
    tracing::info!(user = %user.name, token_id = token.id, token = %token.name, "API token created");
    let expiry = token
        .expires_at
        .map_or_else(|| "no expiry".to_owned(), |e| format!("expires {e}"));
    state
        .audit(
            &user,
            "token.create",
            &token.name,
            format!("id {}, {expiry}", token.id),
        )
        .await;
    let tokens = state.store.tokens_of(&user.name).await?;
    let mut res = render(&user, &tokens, None, Some((&token, &secret)), None).into_response();
    // The secret is on this page only: never cache it.
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// The revoke form.
#[derive(Debug, Deserialize)]
pub(crate) struct RevokeForm {
    #[serde(default)]
    csrf: String,
}

/// POST /tokens/{id}/revoke
pub(crate) async fn revoke(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::NotFound("no such token".to_owned()))?;
    let t = state.store.revoke_token(id, &user.name, Utc::now()).await?;
    tracing::info!(user = %user.name, token_id = t.id, token = %t.name, "API token revoked");
    state
        .audit(&user, "token.revoke", &t.name, format!("id {}", t.id))
        .await;
    state
        .sessions
        .set_flash(&user.token, format!("Token {} revoked.", t.name));
    Ok(Redirect::to("/tokens").into_response())
}

/// GET /api/tokens → `{"tokens": [{id, name, created_at, expires_at, last_used_at, revoked_at, status}]}`:
/// the caller's own tokens, never a secret.
pub(crate) async fn api(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let tokens = state.store.tokens_of(&user.name).await?;
    Ok(Json(json!({
        "tokens": tokens.iter().map(|t| json!({
            "id": t.id,
            "name": t.name,
            "created_at": t.created_at,
            "expires_at": t.expires_at,
            "last_used_at": t.last_used_at,
            "revoked_at": t.revoked_at,
            "status": status(t),
        })).collect::<Vec<_>>(),
    })))
}
