//! `GET /bulk/{ref}/export?format=csv|json|tar` (page links) and
//! `GET /api/bulk/{ref}/export?format=…`: a bulk's results, streamed as they are read (see
//! `netauto_core::export`). A failure after the first bytes aborts the response, so a
//! download is never silently short.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use netauto_core::Bulk;
use netauto_core::export::{ExportFormat, export_bulk};
use serde::Deserialize;
use tokio::io::AsyncReadExt as _;

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, PageError};
use crate::pages::bulk::parse_ref;

/// Bytes buffered between the export and the client.
const PIPE: usize = 64 * 1024;

/// `?format=` (default csv).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ExportParams {
    #[serde(default)]
    format: Option<String>,
}

impl ExportParams {
    fn format(&self) -> Result<ExportFormat, String> {
        self.format
            .as_deref()
            .map_or(Ok(ExportFormat::Csv), str::parse)
    }
}

/// The streamed response of `bulk`'s export.
fn stream(state: &AppState, bulk: Bulk, format: ExportFormat, user: &str) -> Response {
    let (mut writer, reader) = tokio::io::duplex(PIPE);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let store = state.store.clone();
    let name = format!("bulk-{}.{}", bulk.bulk_ref, format.as_str());
    tracing::info!(user, bulk_ref = %bulk.bulk_ref, %format, "bulk exported");
    tokio::spawn(async move {
        if let Err(e) = export_bulk(store.as_ref(), &bulk, format, &mut writer).await {
            tracing::warn!(bulk_ref = %bulk.bulk_ref, error = %e, "bulk export stopped");
            let _ = failed_tx.send(e.to_string());
        }
    });
    let body = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0; 16 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(reader)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
    .chain(futures_util::stream::once(async move {
        // The export dropped its end: an error it sent aborts the response.
        match failed_rx.await {
            Ok(e) => Err(std::io::Error::other(e)),
            Err(_) => Ok(Bytes::new()),
        }
    }));
    (
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// GET /bulk/{ref}/export?format=
pub(crate) async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    Query(params): Query<ExportParams>,
) -> Result<Response, PageError> {
    let bulk_ref = parse_ref(&raw)?;
    let Ok(format) = params.format() else {
        return Err(PageError::NotFound("no such export format".to_owned()));
    };
    let bulk = state.store.bulk(&bulk_ref).await?;
    Ok(stream(&state, bulk, format, &user.name))
}

/// GET /api/bulk/{ref}/export?format=csv|json|tar
pub(crate) async fn api(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    params: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let format = params.format().map_err(ApiError::BadRequest)?;
    let bulk_ref = netauto_core::BulkRef::parse(&raw)
        .map_err(|_| ApiError::NotFound(format!("bulk {raw} not found")))?;
    let bulk = state.store.bulk(&bulk_ref).await?;
    Ok(stream(&state, bulk, format, &user.name))
}
