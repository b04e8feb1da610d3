//! The logged-in user extractor, session cookies and CSRF checks.
//!
//! Sessions live in memory ([`Sessions`](crate::session::Sessions); a restart logs everyone
//! out). The cookie holds only a random 256-bit token; it is `HttpOnly`, `SameSite=Lax` and
//! `Path=/` (plus `Secure` when the app is configured for HTTPS). Every session — anonymous
//! ones too, for the login form — has its own CSRF token, rotated with the session at login.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use crate::app::AppState;
use netauto_core::Role;

use crate::session::SessionView;

/// Name of the session cookie.
pub(crate) const COOKIE: &str = "netauto_session";
/// Header carrying the CSRF token on JSON API writes.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Compares two tokens in time independent of where they differ.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty()
        && a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The session token of the request's cookie.
pub(crate) fn cookie_token(jar: &CookieJar) -> Option<String> {
    jar.get(COOKIE).map(|c| c.value().to_owned())
}

/// The session cookie holding `token` (empty: an expired one).
fn session_cookie(token: String) -> Cookie<'static> {
    Cookie::build((COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .build()
}

/// `jar` with the session cookie set to `token`.
pub(crate) fn set_cookie(state: &AppState, jar: CookieJar, token: &str) -> CookieJar {
    let mut cookie = session_cookie(token.to_owned());
    cookie.set_secure(state.secure_cookies.then_some(true));
    jar.add(cookie)
}

/// `jar` with the session cookie expired (`Max-Age=0`): the browser forgets it.
pub(crate) fn expire_cookie(jar: CookieJar) -> CookieJar {
    let mut cookie = session_cookie(String::new());
    // The default duration is zero.
    cookie.set_max_age(Some(Default::default()));
    jar.add(cookie)
}

/// The logged-in user of a request. Rejects with a redirect to `/login` (pages) or a 401 JSON
/// body (paths under `/api/`).
#[derive(Debug, Clone)]
pub(crate) struct CurrentUser {
    /// The user name (`requested_by` of what they start).
    pub(crate) name: String,
    /// The session's CSRF token (put in every form).
    pub(crate) csrf: String,
    /// The session token (empty for a request authenticated by an API token).
    pub(crate) token: String,
    /// Authenticated by `Authorization: Bearer` (an API token): no session, no CSRF needed.
    pub(crate) bearer: bool,
    /// What they may do (looked up on every request: a changed role or a removed user
    /// takes effect at once).
    pub(crate) role: Role,
    /// The client's address, when the server knows it (for the audit log).
    pub(crate) address: Option<IpAddr>,
}

impl CurrentUser {
    /// Whether `given` is this session's CSRF token.
    pub(crate) fn csrf_ok(&self, given: &str) -> bool {
        same_token(&self.csrf, given)
    }

    /// Whether they may run, cancel and re-run bulks (pages show those buttons only then;
    /// the route check is what enforces it).
    pub(crate) fn can_run(&self) -> bool {
        self.role >= Role::Operator
    }

    /// Whether they are an admin (devices, users, queues, retention, audit).
    pub(crate) fn is_admin(&self) -> bool {
        self.role >= Role::Admin
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
                    "message": "log in first (POST /login, then send the session cookie) or send Authorization: Bearer <API token>",
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
        // The authorization layer has resolved the user already on every protected route.
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        resolve(parts, state).await
    }
}

/// The user of a request (session cookie, or an API token on `/api/*`) with their current
/// role; a user removed since their session started is unauthenticated.
pub(crate) async fn resolve(
    parts: &Parts,
    state: &AppState,
) -> Result<CurrentUser, Unauthenticated> {
    let api = parts.uri.path().starts_with("/api/");
    let address = crate::login::peer(parts);
    let (name, csrf, token, bearer) = identify(parts, state, api).await?;
    match state.role_of(&name).await {
        Ok(Some(role)) => Ok(CurrentUser {
            name,
            csrf,
            token,
            bearer,
            role,
            address,
        }),
        Ok(None) => Err(Unauthenticated { api }),
        Err(e) => {
            tracing::warn!(error = %e, "user lookup failed");
            Err(Unauthenticated { api })
        }
    }
}

/// Name, CSRF token, session token and whether by API token.
async fn identify(
    parts: &Parts,
    state: &AppState,
    api: bool,
) -> Result<(String, String, String, bool), Unauthenticated> {
    // API tokens work on /api/* only; pages need a session.
    if let Some(secret) = bearer(&parts.headers).filter(|_| api) {
        let found = state
            .store
            .use_token(&crate::tokens::hash(secret), chrono::Utc::now())
            .await;
        return match found {
            Ok(Some(t)) => Ok((t.user, String::new(), String::new(), true)),
            Ok(None) => Err(Unauthenticated { api }),
            Err(e) => {
                tracing::warn!(error = %e, "API token lookup failed");
                Err(Unauthenticated { api })
            }
        };
    }
    let token =
        cookie_token(&CookieJar::from_headers(&parts.headers)).ok_or(Unauthenticated { api })?;
    match state.sessions.get(&token) {
        Some(SessionView {
            user: Some(name),
            csrf,
        }) => Ok((name, csrf, token, false)),
        _ => Err(Unauthenticated { api }),
    }
}

/// The secret of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The CSRF header of an API request, checked against the session. A request authenticated
/// by an API token needs none (a browser never sends one on its own).
pub(crate) fn api_csrf_ok(user: &CurrentUser, headers: &HeaderMap) -> bool {
    user.bearer
        || headers
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::random_token;

    #[test]
    fn tokens_are_compared_fully() {
        let (a, b) = (random_token(), random_token());
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &b));
        assert!(!same_token("", ""));
    }

    #[test]
    fn cookies_keep_their_attributes() {
        let set = session_cookie("ab12".to_owned()).to_string();
        assert_eq!(set, "netauto_session=ab12; HttpOnly; SameSite=Lax; Path=/");
        let expired = expire_cookie(CookieJar::new());
        assert_eq!(
            expired.get(COOKIE).map(|c| c.to_string()).as_deref(),
            Some("netauto_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
        );
    }

    #[test]
    fn the_token_comes_from_the_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(
            axum::http::header::COOKIE,
            "theme=dark; netauto_session=ab12".parse().unwrap(),
        );
        assert_eq!(
            cookie_token(&CookieJar::from_headers(&headers)).as_deref(),
            Some("ab12")
        );
        assert_eq!(cookie_token(&CookieJar::new()), None);
    }
}
