//! The devices index, its "Run command on selected devices" modal and the form it posts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use maud::{Markup, html};
use netauto_core::exec::{parse_max_output, parse_timeout};
use netauto_core::{Device, DeviceId, Error, ExecLimits, LimitOverrides, Run, RunStore};

use crate::app::AppState;
use crate::auth::{CurrentUser, csrf_rejected};
use crate::error::PageError;
use crate::pages::layout::{Section, page};
use crate::pages::{badge, human_bytes, human_duration, time};

/// Per-device look-ups of the last run running at once.
const LOOKUP_CONCURRENCY: usize = 16;

/// Each device's newest run (devices without runs are left out).
pub(crate) async fn last_runs(
    store: &Arc<dyn RunStore>,
    devices: &[Device],
) -> Result<HashMap<DeviceId, Run>, Error> {
    let ids: Vec<DeviceId> = devices.iter().map(|d| d.id).collect();
    let found: Vec<Result<Option<Run>, Error>> = futures_util::stream::iter(ids)
        .map(|id| {
            let store = store.clone();
            async move { Ok(store.device_runs(id, 1).await?.into_iter().next()) }
        })
        .buffer_unordered(LOOKUP_CONCURRENCY)
        .collect()
        .await;
    let mut map = HashMap::with_capacity(found.len());
    for run in found {
        if let Some(run) = run? {
            map.insert(run.device_id, run);
        }
    }
    Ok(map)
}

/// What the modal shows when the page is rendered.
#[derive(Debug, Default)]
struct Modal {
    open: bool,
    command: String,
    timeout: String,
    max_output: String,
    answer_prompts: bool,
    selected: HashSet<DeviceId>,
    error: Option<String>,
}

/// GET /devices
pub(crate) async fn index(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, PageError> {
    let flash = user.take_flash(&state);
    render(&state, &user, flash.as_deref(), Modal::default())
        .await
        .map(IntoResponse::into_response)
}

async fn render(
    state: &AppState,
    user: &CurrentUser,
    flash: Option<&str>,
    modal: Modal,
) -> Result<Markup, PageError> {
    let devices = state.store.list_devices().await?;
    let last = last_runs(&state.store, &devices).await?;
    Ok(page(
        "Devices",
        Section::Devices,
        user,
        flash,
        devices_body(&devices, &last, user, &modal, state.network.limits()),
    ))
}

fn devices_body(
    devices: &[Device],
    last: &HashMap<DeviceId, Run>,
    user: &CurrentUser,
    modal: &Modal,
    defaults: ExecLimits,
) -> Markup {
    html! {
        div.page-head {
            h1 { "Devices" span.count { (devices.len()) } }
            div.toolbar {
                input #filter type="search" placeholder="Filter by name, host, platform, site…"
                    aria-label="Filter devices" autocomplete="off";
                select #platform-filter aria-label="Only this platform" {
                    option value="" { "All platforms" }
                    @for platform in devices.iter().map(|d| d.platform.as_str()).collect::<std::collections::BTreeSet<_>>() {
                        option value=(platform) { (platform) }
                    }
                }
                @if user.can_run() {
                    button #open-bulk .primary type="button" disabled[modal.selected.is_empty()] {
                        "Run command on selected devices"
                    }
                }
                @if user.is_admin() {
                    a.button #add-device href="/devices/new" { "Add device" }
                    a.button #import-link href="/devices/import" { "Import" }
                }
            }
        }
        p.muted #selection-line { span #selected-count { (modal.selected.len()) } " selected" }
        @if devices.is_empty() {
            p.empty { "No devices yet. Start the server with --demo for simulated ones." }
        } @else {
            table.grid #devices {
                thead { tr {
                    th.pick { input #select-all type="checkbox" aria-label="Select all shown devices"; }
                    th { "Name" } th { "Host" } th { "Platform" } th { "Site" } th { "Last run" }
                } }
                tbody {
                    @for d in devices {
                        @let search = format!("{} {} {} {} {}", d.name, d.host, d.platform,
                            d.site.as_deref().unwrap_or(""), d.tags.join(" ")).to_lowercase();
                        tr data-search=(search) data-platform=(d.platform) {
                            td.pick {
                                input .pick type="checkbox" name="device_id" value=(d.id) form="bulk-form"
                                    aria-label={ "Select " (d.name) } checked[modal.selected.contains(&d.id)];
                            }
                            td.name { a href={ "/devices/" (d.id) } { (d.name) } }
                            td.mono { (d.host) ":" (d.port) }
                            td { span.platform { (d.platform) } }
                            td { (d.site.as_deref().unwrap_or("—")) }
                            td {
                                @if let Some(run) = last.get(&d.id) {
                                    a href={ "/runs/" (run.id) } { (badge(Some(run.status))) }
                                    " " span.muted { (time(run.finished_at.unwrap_or(run.inserted_at))) }
                                } @else {
                                    span.muted { "never" }
                                }
                            }
                        }
                    }
                }
            }
        }
        dialog #bulk-dialog data-open=(modal.open) aria-labelledby="bulk-title" {
            form #bulk-form method="post" action="/bulk" {
                h2 #bulk-title { "Run command on selected devices" }
                p.muted { "On " span #dialog-count { (modal.selected.len()) } " selected devices, as " strong { (user.name) } "." }
                @if let Some(e) = &modal.error {
                    p.error #bulk-error role="alert" { (e) }
                }
                input type="hidden" name="csrf" value=(user.csrf);
                label for="command" { "Command" }
                input #command name="command" type="text" value=(modal.command) maxlength="4096"
                    autocomplete="off" spellcheck="false" placeholder="show version";
                div.limits {
                    div {
                        label for="timeout" { "Deadline per device" }
                        input #timeout name="timeout" type="text" value=(modal.timeout) maxlength="32"
                            autocomplete="off" spellcheck="false"
                            placeholder={ (human_duration(defaults.timeout)) " (default)" };
                    }
                    div {
                        label for="max_output" { "Output cap per run" }
                        input #max_output name="max_output" type="text" value=(modal.max_output) maxlength="32"
                            autocomplete="off" spellcheck="false"
                            placeholder={ (human_bytes(u128::from(defaults.max_output))) " (default)" };
                    }
                }
                p.muted.hint { "Deadline: seconds or 90s, 5m, 2h. Cap: bytes or 512KiB, 64MiB. At the cap the session is closed and the output kept is marked truncated." }
                label.check {
                    input #answer_prompts name="answer_prompts" type="checkbox" value="true" checked[modal.answer_prompts];
                    " Answer device questions ("  code { "[confirm]" } ", " code { "(y/n)" } ") with the platform's replies"
                }
                p.muted.hint { "Otherwise a device that asks a question ends failed (prompt_unanswered) at once instead of waiting for the deadline." }
                div.actions {
                    button #cancel-bulk type="button" { "Cancel" }
                    button #submit-bulk .primary type="submit" { "Run" }
                }
            }
        }
    }
}

/// POST /bulk: `csrf`, `command` and one `device_id` per selected device.
pub(crate) async fn start_bulk(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if !user.csrf_ok(field("csrf").unwrap_or_default()) {
        return Ok(csrf_rejected());
    }
    let command = field("command").unwrap_or_default().to_owned();
    let timeout = field("timeout").unwrap_or_default().trim().to_owned();
    let max_output = field("max_output").unwrap_or_default().trim().to_owned();
    let answer_prompts = field("answer_prompts") == Some("true");
    let limits = (|| {
        let mut limits = LimitOverrides::none().with_answer_prompts(answer_prompts);
        if !timeout.is_empty() {
            limits = limits.with_timeout(
                parse_timeout(&timeout)
                    .map_err(|reason| format!("Deadline {timeout:?}: {reason}"))?,
            );
        }
        if !max_output.is_empty() {
            limits = limits.with_max_output(
                parse_max_output(&max_output)
                    .map_err(|reason| format!("Output cap {max_output:?}: {reason}"))?,
            );
        }
        Ok::<_, String>(limits)
    })();
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for (k, v) in &fields {
        if k == "device_id" {
            match v.parse::<DeviceId>() {
                Ok(id) => ids.push(id),
                Err(_) => bad.push(v.clone()),
            }
        }
    }
    let error = if let Err(e) = &limits {
        e.clone()
    } else if bad.is_empty() {
        let limits = limits.unwrap_or_default();
        match state
            .bulk
            .enqueue_with_limits(&ids, &command, &user.name, limits)
            .await
        {
            Ok(bulk_ref) => {
                let n = ids.iter().collect::<HashSet<_>>().len();
                state
                    .audit(
                        &user,
                        "bulk.start",
                        bulk_ref.to_string(),
                        format!("{n} devices: {command}"),
                    )
                    .await;
                state
                    .sessions
                    .set_flash(&user.token, format!("Bulk started on {n} devices"));
                return Ok(Redirect::to(&format!("/bulk/{bulk_ref}")).into_response());
            }
            Err(Error::Validation(v)) => v.to_string(),
            Err(other) => return Err(other.into()),
        }
    } else {
        format!("not device ids: {}", bad.join(", "))
    };
    let modal = Modal {
        open: true,
        command,
        timeout,
        max_output,
        answer_prompts,
        selected: ids.into_iter().collect(),
        error: Some(error),
    };
    let markup = render(&state, &user, None, modal).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, markup).into_response())
}
