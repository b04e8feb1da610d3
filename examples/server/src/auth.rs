//! Sessions, login/logout, the logged-in user extractor and CSRF checks.
//!
//! Sessions live in memory (a restart logs everyone out). The cookie holds only a random
//! 256-bit token; it is `HttpOnly`, `SameSite=Lax` and `Path=/` (plus `Secure` when the app is
//! configured for HTTPS). Every session — anonymous ones too, for the login form — has its own
//! CSRF token, rotated with the session at login.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::pages::layout;

/// Name of the session cookie.
pub(crate) const COOKIE: &str = "netauto_session";
/// Header carrying the CSRF token on JSON API writes.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Idle time after which a session ends.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept; the oldest idle ones are dropped beyond it.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
struct Session {
    user: Option<String>,
    csrf: String,
    flash: Option<String>,
    seen: Instant,
}

/// The in-memory session table.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new session; answers its token.
    fn create(&self, user: Option<String>) -> String {
        let token = random_token();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| now.duration_since(s.seen) < IDLE);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.seen)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            token.clone(),
            Session {
                user,
                csrf: random_token(),
                flash: None,
                seen: Instant::now(),
            },
        );
        token
    }

    /// The live session of `token`, refreshed.
    fn get(&self, token: &str) -> Option<Session> {
        let mut map = self.lock();
        let now = Instant::now();
        match map.get_mut(token) {
            Some(s) if now.duration_since(s.seen) < IDLE => {
                s.seen = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Sets the one-shot message shown on the next page.
    pub(crate) fn set_flash(&self, token: &str, message: String) {
        if let Some(s) = self.lock().get_mut(token) {
            s.flash = Some(message);
        }
    }

    fn take_flash(&self, token: &str) -> Option<String> {
        self.lock().get_mut(token).and_then(|s| s.flash.take())
    }
}

/// 32 random bytes as 64 hex characters.
fn random_token() -> String {
    let mut raw = [0u8; 32];
    // Without the OS RNG no session can be made safely; the default here is never reached
    // on a working system and fails closed (every token check then fails).
    if getrandom::fill(&mut raw).is_err() {
        return String::new();
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two tokens in time independent of where they differ.
fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty()
        && a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(state: &AppState, token: &str) -> (header::HeaderName, HeaderValue) {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let value = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}");
    (
        header::SET_COOKIE,
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

/// The logged-in user of a request. Rejects with a redirect to `/login` (pages) or a 401 JSON
/// body (paths under `/api/`).
#[derive(Debug, Clone)]
pub(crate) struct CurrentUser {
    /// The user name (`requested_by` of what they start).
    pub(crate) name: String,
    /// The session's CSRF token (put in every form).
    pub(crate) csrf: String,
    /// The session token.
    pub(crate) token: String,
}

impl CurrentUser {
    /// Whether `given` is this session's CSRF token.
    pub(crate) fn csrf_ok(&self, given: &str) -> bool {
        same_token(&self.csrf, given)
    }

    /// Takes the one-shot flash message.
    pub(crate) fn take_flash(&self, state: &AppState) -> Option<String> {
        state.sessions.take_flash(&self.token)
    }
}

/// Why a request has no user.
#[derive(Debug)]
pub(crate) struct Unauthenticated {
    api: bool,
}

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        if self.api {
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({
                    "error": "unauthenticated",
                    "message": "log in first: POST /login, then send the session cookie",
                })),
            )
                .into_response()
        } else {
            Redirect::to("/login").into_response()
        }
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = Unauthenticated;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let api = parts.uri.path().starts_with("/api/");
        let token = cookie_token(&parts.headers).ok_or(Unauthenticated { api })?;
        match state.sessions.get(&token) {
            Some(Session {
                user: Some(name),
                csrf,
                ..
            }) => Ok(Self { name, csrf, token }),
            _ => Err(Unauthenticated { api }),
        }
    }
}

/// The CSRF header of an API request, checked against the session.
pub(crate) fn api_csrf_ok(user: &CurrentUser, headers: &HeaderMap) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| user.csrf_ok(v))
}

/// `403` page for a missing or wrong CSRF token.
pub(crate) fn csrf_rejected() -> Response {
    (
        StatusCode::FORBIDDEN,
        "invalid or missing CSRF token: reload the page and try again",
    )
        .into_response()
}

/// GET /login
pub(crate) async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let existing = cookie_token(&headers).and_then(|t| state.sessions.get(&t).map(|s| (t, s)));
    match existing {
        Some((_, Session { user: Some(_), .. })) => Redirect::to("/devices").into_response(),
        Some((_, s)) => layout::login(&s.csrf, None).into_response(),
        None => {
            let token = state.sessions.create(None);
            let csrf = state
                .sessions
                .get(&token)
                .map(|s| s.csrf)
                .unwrap_or_default();
            ([set_cookie(&state, &token)], layout::login(&csrf, None)).into_response()
        }
    }
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

/// POST /login
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some((token, session)) =
        cookie_token(&headers).and_then(|t| state.sessions.get(&t).map(|s| (t, s)))
    else {
        return csrf_rejected();
    };
    if !same_token(&session.csrf, &form.csrf) {
        return csrf_rejected();
    }
    let users = state.users.clone();
    let name = form.username.trim().to_owned();
    let check = name.clone();
    let ok = tokio::task::spawn_blocking(move || users.verify(&check, &form.password))
        .await
        .unwrap_or(false);
    if !ok {
        tracing::info!(user = %name, "failed login");
        return (
            StatusCode::UNAUTHORIZED,
            layout::login(&session.csrf, Some("Wrong user name or password.")),
        )
            .into_response();
    }
    // A fresh session at login: a token planted before login is worth nothing after it.
    state.sessions.remove(&token);
    let token = state.sessions.create(Some(name.clone()));
    tracing::info!(user = %name, "logged in");
    ([set_cookie(&state, &token)], Redirect::to("/devices")).into_response()
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// POST /logout
pub(crate) async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !user.csrf_ok(&form.csrf) {
        return csrf_rejected();
    }
    state.sessions.remove(&user.token);
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    (
        [(
            header::SET_COOKIE,
            HeaderValue::from_str(&expired).unwrap_or_else(|_| HeaderValue::from_static("")),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

/// Sessions shared by the app.
pub(crate) type SharedSessions = Arc<Sessions>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compared_fully() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &b));
        assert!(!same_token("", ""));
    }
}
