//! Errors of handlers: pages answer an HTML page, the API a JSON body.
//!
//! A `500` or `503` never shows the internal error (database messages, file paths…): it
//! carries a random error id, and the server logs the error under that id.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use netauto_core::{Error, ValidationError};
use serde_json::json;

use crate::pages::layout;
use crate::session::random_hex;

/// How long a client should wait after a `503` before trying again.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// An error answered as an HTML page.
#[derive(Debug)]
pub(crate) enum PageError {
    /// 404 with what was not found.
    NotFound(String),
    /// Anything else from the services (logged, answered 500 or 503).
    Core(Error),
    /// 429: too many of something at once (event streams of a session).
    TooMany {
        /// What the user is told.
        message: String,
        /// The `Retry-After`.
        retry_after: Duration,
    },
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { what, id } => Self::NotFound(format!("{what} {id} not found")),
            other => Self::Core(other),
        }
    }
}

fn status_of(e: &Error) -> StatusCode {
    if e.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// An internal error, logged under a fresh random id (16 hex characters): its status, the id,
/// and the `Retry-After` of a `503`.
fn logged(
    e: &Error,
    what: &str,
) -> (
    StatusCode,
    String,
    Option<(header::HeaderName, HeaderValue)>,
) {
    let id = random_hex::<8>();
    let status = status_of(e);
    tracing::error!(error_id = %id, status = status.as_u16(), error = %e, "{what} failed");
    let retry = (status == StatusCode::SERVICE_UNAVAILABLE).then(|| {
        (
            header::RETRY_AFTER,
            HeaderValue::from(UNAVAILABLE_RETRY.as_secs()),
        )
    });
    (status, id, retry)
}

fn retry_after(d: Duration) -> [(header::HeaderName, HeaderValue); 1] {
    [(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)))]
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                layout::error_page("Not found", &what),
            )
                .into_response(),
            Self::TooMany {
                message,
                retry_after: after,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                retry_after(after),
                layout::error_page("Too many requests", &message),
            )
                .into_response(),
            Self::Core(e) => {
                let (status, id, retry) = logged(&e, "request");
                let (title, message) = if status == StatusCode::SERVICE_UNAVAILABLE {
                    (
                        "Temporarily unavailable",
                        format!(
                            "A service the server needs is unavailable right now. Try again in a \
                             moment. Error id {id}."
                        ),
                    )
                } else {
                    (
                        "Something went wrong",
                        format!(
                            "The request failed on the server. Error id {id}: the details are in \
                             the server log under this id."
                        ),
                    )
                };
                let mut res = (status, layout::error_page(title, &message)).into_response();
                if let Some((k, v)) = retry {
                    res.headers_mut().insert(k, v);
                }
                res
            }
        }
    }
}

/// An error answered as JSON: `{"error": kind, "message": …}` plus details.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 404.
    NotFound(String),
    /// 400: the request itself could not be read.
    BadRequest(String),
    /// 422: the body was well-formed but not of the expected shape.
    Unprocessable(String),
    /// 403: the CSRF header is missing or wrong.
    Csrf,
    /// 422: the input was read but rejected; nothing changed.
    Validation(ValidationError),
    /// 409: the request does not fit the current state (cancelling a finished run).
    Conflict(String),
    /// Anything else (500/503).
    Core(Error),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { what, id } => Self::NotFound(format!("{what} {id} not found")),
            Error::Validation(v) => Self::Validation(v),
            Error::Conflict(c) => Self::Conflict(c.to_string()),
            other => Self::Core(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::NotFound(m) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": m}),
            ),
            Self::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request", "message": m}),
            ),
            Self::Conflict(m) => (
                StatusCode::CONFLICT,
                json!({"error": "conflict", "message": m}),
            ),
            Self::Unprocessable(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid_body", "message": m}),
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                json!({"error": "csrf", "message": "missing or wrong x-csrf-token header"}),
            ),
            Self::Validation(v) => (StatusCode::UNPROCESSABLE_ENTITY, validation_body(&v)),
            Self::Core(e) => {
                let (status, id, retry) = logged(&e, "API request");
                let (kind, message) = if status == StatusCode::SERVICE_UNAVAILABLE {
                    (
                        "unavailable",
                        "a service the server needs is unavailable; try again later",
                    )
                } else {
                    (
                        "internal",
                        "the request failed on the server; the log has the details under error_id",
                    )
                };
                let body = json!({"error": kind, "message": message, "error_id": id});
                let mut res = (status, Json(body)).into_response();
                if let Some((k, v)) = retry {
                    res.headers_mut().insert(k, v);
                }
                return res;
            }
        };
        (status, Json(body)).into_response()
    }
}

/// The JSON body of a 422: a kind, the message, and the unknown ids when that is the problem.
pub(crate) fn validation_body(v: &ValidationError) -> serde_json::Value {
    let (kind, extra) = match v {
        ValidationError::Command(_) => ("invalid_command", None),
        ValidationError::EmptyRequestedBy => ("empty_requested_by", None),
        ValidationError::NoDevices => ("no_devices", None),
        ValidationError::TooManyDevices { .. } => ("too_many_devices", None),
        ValidationError::UnknownDevices(ids) => ("unknown_devices", Some(json!(ids))),
        _ => ("invalid", None),
    };
    let mut body = json!({"error": "validation", "kind": kind, "message": v.to_string()});
    if let Some(ids) = extra {
        body["unknown_device_ids"] = ids;
    }
    if let ValidationError::Field { field, .. } = v {
        body["field"] = json!(field);
    }
    body
}
