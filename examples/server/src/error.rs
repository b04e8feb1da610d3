//! Errors of handlers: pages answer an HTML page, the API a JSON body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use netauto_core::{Error, ValidationError};
use serde_json::json;

use crate::pages::layout;

/// An error answered as an HTML page.
#[derive(Debug)]
pub(crate) enum PageError {
    /// 404 with what was not found.
    NotFound(String),
    /// Anything else from the services (logged, answered 500 or 503).
    Core(Error),
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

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                layout::error_page("Not found", &what),
            )
                .into_response(),
            Self::Core(e) => {
                tracing::error!(error = %e, "request failed");
                let status = status_of(&e);
                (
                    status,
                    layout::error_page("Something went wrong", &e.to_string()),
                )
                    .into_response()
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
    /// Anything else (500/503).
    Core(Error),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { what, id } => Self::NotFound(format!("{what} {id} not found")),
            Error::Validation(v) => Self::Validation(v),
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
                tracing::error!(error = %e, "API request failed");
                (
                    status_of(&e),
                    json!({"error": "internal", "message": e.to_string()}),
                )
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
    body
}
