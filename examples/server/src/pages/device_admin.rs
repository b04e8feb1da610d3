//! Devices managed in the browser: add one (`/devices/new`), a device's page with its
//! details, edit form, run history and delete (`/devices/{id}`), and import a CSV, YAML or
//! JSON inventory file (`/devices/import`) — checked by the CLI's own parser and rules
//! (`netauto_cli::inventory`), all or nothing, every bad row named by its line.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use netauto_cli::inventory::{self, Format, ImportError};
use netauto_core::{Conflict, Device, DeviceId, Error, NewDevice};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{CurrentUser, csrf_rejected};
use crate::error::PageError;
use crate::pages::diff::platforms;
use crate::pages::layout::{Section, page};
use crate::pages::{badge, time};

/// Runs shown on a device's page.
const HISTORY: usize = 50;

/// The add and edit form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    platform: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    credential_ref: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    jump_host: String,
}

impl DeviceForm {
    fn of(d: &Device) -> Self {
        Self {
            csrf: String::new(),
            name: d.name.clone(),
            host: d.host.clone(),
            port: d.port.to_string(),
            platform: d.platform.clone(),
            username: d.username.clone(),
            credential_ref: d.credential_ref.clone().unwrap_or_default(),
            tags: d.tags.join(", "),
            site: d.site.clone().unwrap_or_default(),
            jump_host: d.jump_host.clone().unwrap_or_default(),
        }
    }

    /// The device, checked as `netauto devices add` checks it; `vars` are kept from `old`.
    fn device(&self, vars: BTreeMap<String, String>) -> Result<NewDevice, String> {
        let opt = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        let port = match self.port.trim() {
            "" => 22,
            p => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {p:?} is not 1–65535"))?,
        };
        let mut d = NewDevice::new(
            self.name.clone(),
            self.host.clone(),
            self.platform.clone(),
            self.username.clone(),
        )
        .with_port(port);
        d.credential_ref = opt(&self.credential_ref);
        d.tags = self
            .tags
            .split([',', ';', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        d.site = opt(&self.site);
        d.jump_host = opt(&self.jump_host);
        d.vars = vars;
        inventory::check_device(d, platforms())
    }
}

fn fields(form: &DeviceForm, csrf: &str, submit: &str) -> Markup {
    let mut names: Vec<&str> = platforms().iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    html! {
        input type="hidden" name="csrf" value=(csrf);
        div.form-grid {
            label { "Name" input name="name" type="text" value=(form.name) required maxlength="1024"; }
            label { "Host" input name="host" type="text" value=(form.host) required maxlength="1024"; }
            label { "Port" input name="port" type="text" value=(form.port) placeholder="22" maxlength="5"; }
            label { "Platform"
                select name="platform" required {
                    @for n in &names { option value=(n) selected[*n == form.platform] { (n) } }
                    @if !form.platform.is_empty() && !names.contains(&form.platform.as_str()) {
                        option value=(form.platform) selected { (form.platform) " (unknown)" }
                    }
                }
            }
            label { "Username" input name="username" type="text" value=(form.username) required maxlength="1024"; }
            label { "Credential reference(s)" input name="credential_ref" type="text" value=(form.credential_ref) placeholder="lab, tacacs" maxlength="1024"; }
            label { "Tags" input name="tags" type="text" value=(form.tags) placeholder="core, dc1" maxlength="1024"; }
            label { "Site" input name="site" type="text" value=(form.site) maxlength="1024"; }
            label { "Jump host(s)" input name="jump_host" type="text" value=(form.jump_host) maxlength="1024"; }
        }
        div.actions { button.primary #save-device type="submit" { (submit) } }
    }
}

/// GET /devices/new
pub(crate) async fn new_page(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    Ok(new_form(&state, &user, &DeviceForm::default(), None))
}

fn new_form(
    state: &AppState,
    user: &CurrentUser,
    form: &DeviceForm,
    error: Option<&str>,
) -> Markup {
    let flash = user.take_flash(state);
    let body = html! {
        div.page-head { h1 { "Add a device" } }
        @if let Some(e) = error { p.error #device-error role="alert" { (e) } }
        form #device-form method="post" action="/devices/new" { (fields(form, &user.csrf, "Add device")) }
        p.hint { "Or " a href="/devices/import" { "import an inventory file" } " (CSV, YAML or JSON)." }
    };
    page(
        "Add a device",
        Section::Devices,
        user,
        flash.as_deref(),
        body,
    )
}

/// Why a form's device was not saved: a problem with the form, or the store's error.
enum NotSaved {
    Form(String),
    Store(Error),
}

impl From<String> for NotSaved {
    fn from(p: String) -> Self {
        Self::Form(p)
    }
}

impl From<Error> for NotSaved {
    fn from(e: Error) -> Self {
        Self::Store(e)
    }
}

/// After an add or an edit: the redirect to the device's page with a flash (`what`: added,
/// saved), or the problem to show in the form (a taken name is one); other store errors fail.
async fn saved_or_problem(
    state: &AppState,
    user: &CurrentUser,
    saved: Result<Device, NotSaved>,
    what: &str,
) -> Result<Result<Response, String>, PageError> {
    match saved {
        Ok(d) => {
            tracing::info!(user = %user.name, device_id = d.id.get(), "device {what}");
            let action = if what == "added" {
                "device.create"
            } else {
                "device.update"
            };
            let detail = format!("id {}, {}:{} ({})", d.id, d.host, d.port, d.platform);
            state.audit(user, action, &d.name, detail).await;
            state
                .sessions
                .set_flash(&user.token, format!("Device {} {what}.", d.name));
            Ok(Ok(
                Redirect::to(&format!("/devices/{}", d.id)).into_response()
            ))
        }
        Err(NotSaved::Form(p)) => Ok(Err(p)),
        Err(NotSaved::Store(Error::Conflict(Conflict::Exists { key, .. }))) => {
            Ok(Err(format!("a device named {key:?} already exists")))
        }
        Err(NotSaved::Store(e)) => Err(e.into()),
    }
}

/// POST /devices/new
pub(crate) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<DeviceForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let saved: Result<Device, NotSaved> = match form.device(BTreeMap::new()) {
        Err(p) => Err(p.into()),
        Ok(device) => state.store.create_device(device).await.map_err(Into::into),
    };
    let problem = match saved_or_problem(&state, &user, saved, "added").await? {
        Ok(done) => return Ok(done),
        Err(problem) => problem,
    };
    Ok(new_form(
        &state,
        &user,
        &form,
        Some(&format!("Not added: {problem}.")),
    )
    .into_response())
}

fn parse_id(raw: &str) -> Result<DeviceId, PageError> {
    raw.parse()
        .map_err(|_| PageError::NotFound("no such device".to_owned()))
}

/// GET /devices/{id}
pub(crate) async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
) -> Result<Markup, PageError> {
    let device = state.store.device(parse_id(&raw)?).await?;
    show_device(&state, &user, &device, &DeviceForm::of(&device), None).await
}

async fn show_device(
    state: &AppState,
    user: &CurrentUser,
    device: &Device,
    form: &DeviceForm,
    error: Option<&str>,
) -> Result<Markup, PageError> {
    let runs = state.store.device_runs(device.id, HISTORY).await?;
    let flash = user.take_flash(state);
    let body = html! {
        div.page-head { h1 { "Device " (device.name) } }
        dl.meta #device-details {
            dt { "Host" } dd.mono { (device.host) ":" (device.port) }
            dt { "Platform" } dd { span.platform { (device.platform) } }
            dt { "Username" } dd { (device.username) }
            dt { "Credential" } dd { (device.credential_ref.as_deref().unwrap_or("—")) }
            dt { "Site" } dd { (device.site.as_deref().unwrap_or("—")) }
            dt { "Tags" } dd { @if device.tags.is_empty() { "—" } @else { (device.tags.join(", ")) } }
            dt { "Jump host" } dd { (device.jump_host.as_deref().unwrap_or("—")) }
        }
        h2 { "Runs" }
        @if runs.is_empty() {
            p.empty #no-runs { "No run yet." }
        } @else {
            table.grid #device-runs {
                thead { tr { th { "Run" } th { "Status" } th { "Command" } th { "Started" } th { "Bytes" } th { "By" } } }
                tbody {
                    @for r in &runs {
                        tr {
                            td.n { a href={ "/runs/" (r.id) } { (r.id) } }
                            td { (badge(Some(r.status))) }
                            td { code { (r.command) } }
                            td { (time(r.inserted_at)) }
                            td.n { (r.bytes) }
                            td { (r.requested_by) }
                        }
                    }
                }
            }
        }
        @if user.is_admin() {
            h2 { "Edit" }
            @if let Some(e) = error { p.error #device-error role="alert" { (e) } }
            form #device-form method="post" action={ "/devices/" (device.id) "/edit" } { (fields(form, &user.csrf, "Save")) }
            h2 { "Delete" }
            form #delete-device-form method="post" action={ "/devices/" (device.id) "/delete" } {
                input type="hidden" name="csrf" value=(user.csrf);
                label.check { input name="confirm" type="checkbox" value="yes" required; " Delete " (device.name) " and its runs and their output" }
                div.actions { button.danger #delete-device type="submit" { "Delete device" } }
            }
        }
    };
    Ok(page(
        &device.name,
        Section::Devices,
        user,
        flash.as_deref(),
        body,
    ))
}

/// POST /devices/{id}/edit
pub(crate) async fn edit(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    Form(form): Form<DeviceForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let device = state.store.device(parse_id(&raw)?).await?;
    let saved: Result<Device, NotSaved> = match form.device(device.vars.clone()) {
        Err(p) => Err(p.into()),
        Ok(new) => state
            .store
            .update_device(device.id, new)
            .await
            .map_err(Into::into),
    };
    let problem = match saved_or_problem(&state, &user, saved, "saved").await? {
        Ok(done) => return Ok(done),
        Err(problem) => problem,
    };
    Ok(show_device(
        &state,
        &user,
        &device,
        &form,
        Some(&format!("Not saved: {problem}.")),
    )
    .await?
    .into_response())
}

/// The delete form.
#[derive(Debug, Deserialize)]
pub(crate) struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// POST /devices/{id}/delete (`confirm=yes`)
pub(crate) async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(raw): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let id = parse_id(&raw)?;
    if form.confirm != "yes" {
        state.sessions.set_flash(
            &user.token,
            "Not deleted: tick the box to confirm.".to_owned(),
        );
        return Ok(Redirect::to(&format!("/devices/{id}")).into_response());
    }
    let device = state.store.device(id).await?;
    let runs = state.store.delete_device(id).await?;
    tracing::info!(user = %user.name, device_id = id.get(), runs, "device deleted");
    state
        .audit(
            &user,
            "device.delete",
            &device.name,
            format!("id {id}, with its {runs} runs"),
        )
        .await;
    state.sessions.set_flash(
        &user.token,
        format!("Device {} deleted with its {runs} runs.", device.name),
    );
    Ok(Redirect::to("/devices").into_response())
}

/// GET /devices/import
pub(crate) async fn import_page(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    Ok(import_form(&state, &user, None, &[]))
}

fn import_form(
    state: &AppState,
    user: &CurrentUser,
    error: Option<&str>,
    problems: &[String],
) -> Markup {
    let flash = user.take_flash(state);
    let body = html! {
        div.page-head { h1 { "Import devices" } }
        p.hint { "A CSV (header: name,host,platform,username and optionally port, credential_ref, tags, site, jump_host, vars.NAME), YAML or JSON inventory, as "
            code { "netauto devices import" } " reads it. Every row is checked first: one bad row imports nothing." }
        @if let Some(e) = error {
            div.error #import-error role="alert" {
                p { (e) }
                @if !problems.is_empty() { ul #import-problems { @for p in problems { li { (p) } } } }
            }
        }
        form #import-form method="post" action="/devices/import" enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(user.csrf);
            label { "File " input #inventory-file name="file" type="file" accept=".csv,.yaml,.yml,.json" required; }
            label { "Format "
                select name="format" {
                    option value="" { "from the file name" }
                    option value="csv" { "CSV" } option value="yaml" { "YAML" } option value="json" { "JSON" }
                }
            }
            div.actions { button.primary #import-devices type="submit" { "Import" } }
        }
    };
    page(
        "Import devices",
        Section::Devices,
        user,
        flash.as_deref(),
        body,
    )
}

/// POST /devices/import (multipart: `csrf`, `file`, optional `format`).
pub(crate) async fn import(
    State(state): State<AppState>,
    user: CurrentUser,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    let (mut csrf, mut format, mut file_name, mut text) =
        (String::new(), String::new(), String::new(), None);
    let mut too_big = false;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Ok(import_form(
                    &state,
                    &user,
                    Some(&format!("The upload could not be read: {e}")),
                    &[],
                )
                .into_response());
            }
        };
        match field.name().unwrap_or_default() {
            "csrf" => csrf = field.text().await.unwrap_or_default(),
            "format" => format = field.text().await.unwrap_or_default(),
            "file" => {
                file_name = field.file_name().unwrap_or_default().to_owned();
                match field.bytes().await {
                    Ok(b) if b.len() > inventory::MAX_INVENTORY_BYTES => too_big = true,
                    Ok(b) => text = Some(String::from_utf8_lossy(&b).into_owned()),
                    Err(e) => {
                        return Ok(import_form(
                            &state,
                            &user,
                            Some(&format!("The upload could not be read: {e}")),
                            &[],
                        )
                        .into_response());
                    }
                }
            }
            _ => {}
        }
    }
    if !user.csrf_ok(&csrf) {
        return Ok(csrf_rejected());
    }
    if too_big {
        let e = format!(
            "The file is over {} MiB.",
            inventory::MAX_INVENTORY_BYTES >> 20
        );
        return Ok(import_form(&state, &user, Some(&e), &[]).into_response());
    }
    let Some(text) = text else {
        return Ok(import_form(&state, &user, Some("Choose a file."), &[]).into_response());
    };
    let format = match format.as_str() {
        "csv" => Some(Format::Csv),
        "yaml" => Some(Format::Yaml),
        "json" => Some(Format::Json),
        _ => Format::from_path(std::path::Path::new(&file_name)),
    };
    let Some(format) = format else {
        let e = format!("Cannot tell the format of {file_name:?}: choose CSV, YAML or JSON.");
        return Ok(import_form(&state, &user, Some(&e), &[]).into_response());
    };
    match inventory::import(state.store.as_ref(), &text, format, platforms()).await {
        Ok(n) => {
            tracing::info!(user = %user.name, devices = n, "devices imported");
            state
                .audit(&user, "device.import", &file_name, format!("{n} devices"))
                .await;
            state.sessions.set_flash(
                &user.token,
                format!("Imported {n} devices from {file_name}."),
            );
            Ok(Redirect::to("/devices").into_response())
        }
        Err(ImportError::Rows {
            summary,
            problems,
            hint,
        }) => {
            let mut e = format!("{file_name}: {summary}, nothing imported.");
            if !hint.is_empty() {
                e = format!("{e} {hint}");
            }
            Ok(import_form(&state, &user, Some(&e), &problems).into_response())
        }
        Err(ImportError::Store(e)) => Err(e.into()),
    }
}
