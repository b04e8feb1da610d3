//! `/runs/{a}/diff[/{b}]` and `GET /api/runs/{a}/diff[/{b}]`: two runs' output compared
//! (default partner: the previous run of the same command on the same device).

use std::sync::OnceLock;

use axum::Json;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use netauto_core::RunId;
use netauto_core::diff::{DiffOptions, LineDiff, Row, RunDiff, diff_runs, previous_run};
use netauto_core::platform::Platforms;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, PageError};
use crate::pages::layout::{Section, page};

/// The platform definitions (shipped + `NETAUTO_PLATFORMS_DIR`), read once.
pub(crate) fn platforms() -> &'static Platforms {
    static PLATFORMS: OnceLock<Platforms> = OnceLock::new();
    PLATFORMS.get_or_init(|| {
        Platforms::from_env().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "platform definitions: using the shipped ones");
            Platforms::builtin()
        })
    })
}

/// `?ignore_volatile=true`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DiffParams {
    #[serde(default)]
    ignore_volatile: bool,
}

/// The two ids from the path; the right one defaults to the previous run.
async fn compare(
    state: &AppState,
    left: &str,
    right: Option<&str>,
    ignore_volatile: bool,
) -> Result<Option<RunDiff>, netauto_core::Error> {
    let not_found = |raw: &str| netauto_core::Error::NotFound {
        what: "run",
        id: raw.to_owned(),
    };
    let left: RunId = left.parse().map_err(|_| not_found(left))?;
    let right = match right {
        Some(raw) => raw.parse::<RunId>().map_err(|_| not_found(raw))?,
        None => match previous_run(state.store.as_ref(), &state.store.run(left).await?).await? {
            Some(prev) => {
                return compare_ids(state, prev.id, left, ignore_volatile)
                    .await
                    .map(Some);
            }
            None => return Ok(None),
        },
    };
    compare_ids(state, left, right, ignore_volatile)
        .await
        .map(Some)
}

async fn compare_ids(
    state: &AppState,
    left: RunId,
    right: RunId,
    ignore_volatile: bool,
) -> Result<RunDiff, netauto_core::Error> {
    let options = DiffOptions {
        ignore_volatile,
        ..DiffOptions::default()
    };
    diff_runs(state.store.as_ref(), platforms(), left, right, options).await
}

fn names(d: &RunDiff) -> (String, String) {
    (format!("run {}", d.left.id), format!("run {}", d.right.id))
}

/// GET /api/runs/{a}/diff/{b}?ignore_volatile=true
pub(crate) async fn api_pair(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((a, b)): Path<(String, String)>,
    Query(p): Query<DiffParams>,
) -> Result<Json<Value>, ApiError> {
    let d = compare(&state, &a, Some(&b), p.ignore_volatile).await?;
    Ok(Json(diff_json(d.as_ref())))
}

/// GET /api/runs/{a}/diff: against the previous run of the same command on the same device.
pub(crate) async fn api_previous(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(a): Path<String>,
    Query(p): Query<DiffParams>,
) -> Result<Json<Value>, ApiError> {
    match compare(&state, &a, None, p.ignore_volatile).await? {
        Some(d) => Ok(Json(diff_json(Some(&d)))),
        None => Err(ApiError::NotFound(format!(
            "run {a} has no previous run of the same command on its device"
        ))),
    }
}

fn diff_json(d: Option<&RunDiff>) -> Value {
    let Some(d) = d else { return Value::Null };
    let (l, r) = names(d);
    json!({
        "left": d.left.id,
        "right": d.right.id,
        "identical": d.lines.identical(),
        "truncated": d.truncated,
        "ignored_volatile": d.ignored_volatile,
        "unified": d.lines.unified(&l, &r),
        "rows": d.lines.rows(),
    })
}

/// GET /runs/{a}/diff/{b}
pub(crate) async fn page_pair(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((a, b)): Path<(String, String)>,
    Query(p): Query<DiffParams>,
) -> Result<Markup, PageError> {
    let d = compare(&state, &a, Some(&b), p.ignore_volatile).await?;
    Ok(render(&user, d.as_ref(), &a, p.ignore_volatile))
}

/// GET /runs/{a}/diff
pub(crate) async fn page_previous(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(a): Path<String>,
    Query(p): Query<DiffParams>,
) -> Result<Markup, PageError> {
    let d = compare(&state, &a, None, p.ignore_volatile).await?;
    Ok(render(&user, d.as_ref(), &a, p.ignore_volatile))
}

/// The rows of `diff` as a two-column table (`id` on the table).
pub(crate) fn side_by_side(id: &str, left: &str, right: &str, diff: &LineDiff) -> Markup {
    html! {
        table.grid.diff id=(id) {
            thead { tr { th { (left) } th { (right) } } }
            tbody {
                @for row in diff.rows() {
                    @match row {
                        Row::Same { text } => tr.same { td { pre { (text) } } td { pre { (text) } } },
                        Row::Removed { text } => tr.removed { td { pre { (text) } } td {} },
                        Row::Added { text } => tr.added { td {} td { pre { (text) } } },
                        Row::Skipped { lines } => tr.skipped { td colspan="2" { "… " (lines) " unchanged lines" } },
                    }
                }
            }
        }
    }
}

fn render(user: &CurrentUser, d: Option<&RunDiff>, a: &str, ignore_volatile: bool) -> Markup {
    let body = html! {
        @match d {
            None => {
                div.page-head { h1 { "Diff of run " (a) } }
                p.empty #no-previous { "This run has no previous run of the same command on its device." }
            }
            Some(d) => {
                div.page-head {
                    h1 { "Run " a href={ "/runs/" (d.left.id) } { (d.left.id) } " → run " a href={ "/runs/" (d.right.id) } { (d.right.id) } }
                    @if ignore_volatile {
                        a href="?" { "Show volatile lines" }
                    } @else {
                        a #ignore-volatile href="?ignore_volatile=true" { "Ignore volatile lines" }
                    }
                }
                p.muted { code { (d.left.command) } }
                @if d.truncated { p.notice { "Only the first 16 MiB of each output were compared." } }
                @if d.ignored_volatile > 0 { p.muted #ignored { (d.ignored_volatile) " volatile lines ignored" } }
                @if d.lines.identical() {
                    p.banner.ok #identical { "Identical output." }
                } @else {
                    (side_by_side("side-by-side", &format!("run {}", d.left.id), &format!("run {}", d.right.id), &d.lines))
                    @let (l, r) = names(d);
                    details { summary { "Unified diff" } pre #unified { (d.lines.unified(&l, &r)) } }
                }
            }
        }
    };
    page("Diff", Section::Bulks, user, None, body)
}
