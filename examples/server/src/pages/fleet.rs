//! `/bulk/{ref}/fleet` and `GET /api/bulk/{ref}/fleet`: the devices of a bulk grouped by
//! identical output (the platform's volatile lines removed), largest group first, each other
//! group diffed against the largest.

use axum::Json;
use axum::extract::{Path, State};
use maud::{Markup, html};
use netauto_core::diff::{FleetGroup, LineDiff, fleet_groups};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, PageError};
use crate::pages::bulk::{device_names, parse_ref};
use crate::pages::diff::{platforms, side_by_side};
use crate::pages::layout::{Section, page};

/// Output read per run for grouping.
const MAX_BYTES: u64 = 4 << 20;

async fn groups(
    state: &AppState,
    bulk_ref: &netauto_core::BulkRef,
) -> Result<(netauto_core::Bulk, Vec<FleetGroup>), netauto_core::Error> {
    let bulk = state.store.bulk(bulk_ref).await?;
    let groups = fleet_groups(state.store.as_ref(), platforms(), &bulk, MAX_BYTES).await?;
    Ok((bulk, groups))
}

fn headline(groups: &[FleetGroup]) -> String {
    let devices = |n: usize| {
        if n == 1 {
            "1 device".to_owned()
        } else {
            format!("{n} devices")
        }
    };
    match groups {
        [] => "No device has output yet.".to_owned(),
        [one] => format!("All {} identical.", devices(one.members.len())),
        [first, rest @ ..] => {
            let others: usize = rest.iter().map(|g| g.members.len()).sum();
            format!(
                "{} identical, {} {} ({} other {}).",
                devices(first.members.len()),
                devices(others),
                if others == 1 { "differs" } else { "differ" },
                rest.len(),
                if rest.len() == 1 { "group" } else { "groups" },
            )
        }
    }
}

/// GET /api/bulk/{ref}/fleet
pub(crate) async fn api(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let bulk_ref = netauto_core::BulkRef::parse(&raw)
        .map_err(|_| ApiError::NotFound(format!("bulk {raw:?} not found")))?;
    let (_, groups) = groups(&state, &bulk_ref).await?;
    let largest = groups.first().map(|g| g.text.clone()).unwrap_or_default();
    let out: Vec<Value> = groups
        .iter()
        .map(|g| {
            let diff = LineDiff::of(largest.clone(), g.text.clone(), 3);
            json!({
                "devices": g.members.iter().map(|(d, r)| json!({"device_id": d, "run_id": r})).collect::<Vec<_>>(),
                "diff_against_largest": diff.unified("largest group", "this group"),
            })
        })
        .collect();
    Ok(Json(json!({"summary": headline(&groups), "groups": out})))
}

/// GET /bulk/{ref}/fleet
pub(crate) async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<Markup, PageError> {
    let (bulk, groups) = groups(&state, &parse_ref(&raw)?).await?;
    let names = device_names(&state).await?;
    let largest = groups.first().map(|g| g.text.clone()).unwrap_or_default();
    let body = html! {
        div.page-head {
            h1 { "Fleet view of bulk " a href={ "/bulk/" (bulk.bulk_ref) } { code.ref { (bulk.bulk_ref) } } }
        }
        p.muted { code { (bulk.command) } " — volatile lines (uptime, clocks) removed" }
        p.banner #fleet-summary { (headline(&groups)) }
        @for (i, g) in groups.iter().enumerate() {
            section.group id={ "group-" (i + 1) } {
                h2 { "Group " (i + 1) ": " (g.members.len()) " devices" @if i == 0 { " (largest)" } }
                p.devices {
                    @for (d, r) in &g.members {
                        a href={ "/runs/" (r) } { (names.get(d).map_or("(deleted device)", String::as_str)) } " "
                    }
                }
                @if i > 0 {
                    @let diff = LineDiff::of(largest.clone(), g.text.clone(), 3);
                    (side_by_side(&format!("diff-{}", i + 1), "largest group", "this group", &diff))
                }
            }
        }
    };
    Ok(page("Fleet view", Section::Bulks, &user, None, body))
}
