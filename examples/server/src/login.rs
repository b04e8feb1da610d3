//! `GET /login`, `POST /login`, `POST /logout`: the login form, throttled attempts and a
//! bounded number of password verifications at once.
//!
//! An attempt goes through, in order: the session and CSRF check; the throttle
//! ([`LoginThrottle`]): a user name or client address backing off is answered `429` with
//! `Retry-After` and its password is not checked at all; a verification slot (argon2 is CPU
//! and memory heavy: at most [`login_concurrency`](crate::WebLimits::login_concurrency) run at
//! once, a request that waits longer than
//! [`login_queue_wait`](crate::WebLimits::login_queue_wait) for one is answered `503` with
//! `Retry-After`); then the check. Failed attempts are logged with the user name and the
//! client address, never the password.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::AppState;
use crate::auth::{
    CurrentUser, cookie_token, csrf_rejected, expire_cookie, same_token, set_cookie,
};
use crate::config::WebLimits;
use crate::pages::layout;
use crate::session::SessionView;
use crate::throttle::{Attempt, LoginThrottle, ThrottlePolicy, Throttled};

/// How often an attempt waiting for others on the same name or address looks again.
const BUSY_POLL: Duration = Duration::from_millis(20);
/// Longest user name shown in a log line (characters).
const LOGGED_NAME: usize = 64;

/// The client's address: the TCP peer, when the server knows it (it does when served by
/// [`serve`](crate::serve::serve); a router driven without a connection, as in tests, does
/// not, and then only the user name is throttled).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(peer(parts)))
    }
}

/// The TCP peer's address, when the server knows it.
pub(crate) fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The throttle and the verification slots.
#[derive(Debug)]
pub(crate) struct LoginGate {
    throttle: Arc<LoginThrottle>,
    slots: Arc<Semaphore>,
    wait: Duration,
}

/// Why an attempt is not checked.
#[derive(Debug)]
enum Refused {
    /// Backing off: `429`.
    Throttled { retry_after: Duration, first: bool },
    /// No verification slot in time: `503`.
    Busy,
}

impl LoginGate {
    pub(crate) fn new(limits: &WebLimits) -> Self {
        Self {
            throttle: Arc::new(LoginThrottle::new(ThrottlePolicy {
                free: limits.login_free_failures,
                max: limits.login_backoff_max,
                entries: limits.login_throttle_entries,
            })),
            slots: Arc::new(Semaphore::new(limits.login_concurrency)),
            wait: limits.login_queue_wait,
        }
    }

    /// Lets an attempt through the throttle and into a verification slot, or says why not.
    async fn admit(
        &self,
        user: &str,
        addr: Option<IpAddr>,
    ) -> Result<(Attempt, OwnedSemaphorePermit), Refused> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let attempt = loop {
            match self.throttle.begin(user, addr, Instant::now()) {
                Ok(a) => break a,
                Err(Throttled::Blocked { retry_after, first }) => {
                    return Err(Refused::Throttled { retry_after, first });
                }
                Err(Throttled::Busy) if tokio::time::Instant::now() + BUSY_POLL <= deadline => {
                    tokio::time::sleep(BUSY_POLL).await;
                }
                Err(Throttled::Busy) => return Err(Refused::Busy),
            }
        };
        match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok((attempt, permit)),
            _ => Err(Refused::Busy),
        }
    }
}

/// GET /login
pub(crate) async fn login_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    let existing = cookie_token(&jar).and_then(|t| state.sessions.get(&t));
    match existing {
        Some(SessionView { user: Some(_), .. }) => Redirect::to("/devices").into_response(),
        Some(s) => layout::login(&s.csrf, None).into_response(),
        None => {
            let token = state.sessions.create(None);
            let csrf = state
                .sessions
                .get(&token)
                .map(|s| s.csrf)
                .unwrap_or_default();
            (set_cookie(&state, jar, &token), layout::login(&csrf, None)).into_response()
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

/// A user name as it appears in a log line: at most [`LOGGED_NAME`] characters.
fn logged_name(name: &str) -> &str {
    name.char_indices()
        .nth(LOGGED_NAME)
        .map_or(name, |(i, _)| &name[..i])
}

fn client(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}

/// The login page again with an error, a status and a `Retry-After`.
fn refused(csrf: &str, status: StatusCode, retry_after: Duration, message: &str) -> Response {
    let secs = retry_after.as_secs().max(1);
    (
        status,
        [(header::RETRY_AFTER, HeaderValue::from(secs))],
        layout::login(csrf, Some(message)),
    )
        .into_response()
}

/// POST /login
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some((token, session)) =
        cookie_token(&jar).and_then(|t| state.sessions.get(&t).map(|s| (t, s)))
    else {
        return csrf_rejected();
    };
    if !same_token(&session.csrf, &form.csrf) {
        return csrf_rejected();
    }
    let name = form.username.trim().to_owned();
    let (attempt, permit) = match state.login.admit(&name, addr).await {
        Ok(admitted) => admitted,
        Err(Refused::Throttled { retry_after, first }) => {
            if first {
                tracing::warn!(
                    user = ?logged_name(&name),
                    client = %client(addr),
                    retry_after_s = retry_after.as_secs(),
                    "login throttled after repeated failures"
                );
            }
            let message = format!(
                "Too many failed logins for this user name or from this address. Try again in {} s.",
                retry_after.as_secs().max(1)
            );
            return refused(
                &session.csrf,
                StatusCode::TOO_MANY_REQUESTS,
                retry_after,
                &message,
            );
        }
        Err(Refused::Busy) => {
            tracing::warn!(user = ?logged_name(&name), client = %client(addr), "login refused: verification slots busy");
            return refused(
                &session.csrf,
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(1),
                "The server is busy checking other logins. Try again in a moment.",
            );
        }
    };
    let hash = match state.password_hash(&name).await {
        Ok(hash) => hash,
        Err(e) => {
            tracing::warn!(error = %e, "user lookup failed at login");
            return refused(
                &session.csrf,
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(1),
                "The user database cannot be read. Try again in a moment.",
            );
        }
    };
    // The slot is held by the check itself: a client that hangs up does not free it early.
    let ok = tokio::task::spawn_blocking(move || {
        let ok = crate::users::verify_hash(hash.as_deref(), &form.password);
        drop(permit);
        ok
    })
    .await
    .unwrap_or(false);
    if !ok {
        let failures = attempt.failed(Instant::now());
        tracing::warn!(user = ?logged_name(&name), client = %client(addr), failures, "failed login");
        state
            .audit_as(
                logged_name(&name),
                addr.map(|a| a.to_string()),
                "login.failed",
                String::new(),
                format!("wrong user name or password ({failures} in a row)"),
            )
            .await;
        return (
            StatusCode::UNAUTHORIZED,
            layout::login(&session.csrf, Some("Wrong user name or password.")),
        )
            .into_response();
    }
    attempt.succeeded(Instant::now());
    // A fresh session at login: a token planted before login is worth nothing after it.
    state.sessions.remove(&token);
    let token = state.sessions.create(Some(name.clone()));
    tracing::info!(user = ?logged_name(&name), client = %client(addr), "logged in");
    state
        .audit_as(
            &name,
            addr.map(|a| a.to_string()),
            "login",
            String::new(),
            String::new(),
        )
        .await;
    (set_cookie(&state, jar, &token), Redirect::to("/devices")).into_response()
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// POST /logout: ends the session and its event streams.
pub(crate) async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !user.csrf_ok(&form.csrf) {
        return csrf_rejected();
    }
    state.sessions.remove(&user.token);
    state.audit(&user, "logout", "", "").await;
    (expire_cookie(CookieJar::new()), Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(concurrency: usize, wait: Duration) -> LoginGate {
        LoginGate::new(&WebLimits {
            login_concurrency: concurrency,
            login_queue_wait: wait,
            ..WebLimits::default()
        })
    }

    #[tokio::test]
    async fn verifications_are_bounded_and_waiters_give_up() {
        let g = gate(2, Duration::from_millis(100));
        let a = g.admit("a", None).await.unwrap();
        let b = g.admit("b", None).await.unwrap();
        let t0 = std::time::Instant::now();
        assert!(matches!(g.admit("c", None).await, Err(Refused::Busy)));
        assert!(t0.elapsed() >= Duration::from_millis(90));
        drop(a);
        let c = g.admit("c", None).await.unwrap();
        drop((b, c));
    }

    #[tokio::test]
    async fn throttled_attempts_do_not_wait_for_a_slot() {
        let g = gate(1, Duration::from_secs(5));
        for _ in 0..5 {
            let (a, _slot) = g.admit("ann", None).await.unwrap();
            a.failed(Instant::now());
        }
        let _held = g.admit("bob", None).await.unwrap();
        let t0 = std::time::Instant::now();
        assert!(matches!(
            g.admit("ann", None).await,
            Err(Refused::Throttled { .. })
        ));
        assert!(t0.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn logged_names_are_short() {
        assert_eq!(logged_name("ann"), "ann");
        assert_eq!(logged_name(&"é".repeat(100)).chars().count(), LOGGED_NAME);
    }
}
