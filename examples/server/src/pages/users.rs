//! `/users` (admins): the accounts with their role; add one, change a role, remove one.
//! Accounts from the users file are shown but changed only in the file.

use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use netauto_core::{NewUser, Role, check_user_name};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{CurrentUser, csrf_rejected};
use crate::error::{ApiError, PageError};
use crate::pages::layout::{Section, page};
use crate::team::Source;
use crate::users::MIN_PASSWORD;

fn render(
    user: &CurrentUser,
    accounts: &[(String, Role, Source)],
    flash: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let body = html! {
        div.page-head { h1 { "Users" } }
        p.hint {
            "Viewers read; operators also run, cancel and re-run bulks; admins also manage devices, users, queues and retention and read the audit log. "
            "Accounts from the users file (" code { "NETAUTO_USERS_FILE" } ") are changed in the file."
        }
        @if let Some(e) = error { p.error #user-error role="alert" { (e) } }
        form #user-form method="post" action="/users" {
            input type="hidden" name="csrf" value=(user.csrf);
            label { "Name " input name="name" type="text" required maxlength="64" autocomplete="off"; }
            label { "Password " input name="password" type="password" required minlength=(MIN_PASSWORD) autocomplete="new-password"; }
            label { "Role " (role_select(Role::Viewer)) }
            button.primary #add-user type="submit" { "Add user" }
        }
        table.grid #users {
            thead { tr { th { "Name" } th { "Role" } th { "Source" } th { "" } } }
            tbody {
                @for (name, role, source) in accounts {
                    tr data-user=(name) {
                        td { (name) }
                        @match source {
                            Source::File => {
                                td { (role.as_str()) }
                                td.muted { "users file" }
                                td {}
                            }
                            Source::Database => {
                                td {
                                    form.inline method="post" action={ "/users/" (name) "/role" } {
                                        input type="hidden" name="csrf" value=(user.csrf);
                                        (role_select(*role))
                                        button.set-role type="submit" { "Set" }
                                    }
                                }
                                td.muted { "database" }
                                td {
                                    form.inline method="post" action={ "/users/" (name) "/remove" } {
                                        input type="hidden" name="csrf" value=(user.csrf);
                                        button.danger.remove-user type="submit" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Users", Section::Users, user, flash, body)
}

fn role_select(selected: Role) -> Markup {
    html! {
        select name="role" {
            @for r in Role::ALL {
                option value=(r.as_str()) selected[r == selected] { (r.as_str()) }
            }
        }
    }
}

/// GET /users
pub(crate) async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let accounts = state.accounts().await?;
    let flash = user.take_flash(&state);
    Ok(render(&user, &accounts, flash.as_deref(), None))
}

/// GET /api/users → `{"users": [{name, role, source}]}`.
pub(crate) async fn api(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let accounts = state.accounts().await?;
    Ok(Json(json!({
        "users": accounts.iter().map(|(name, role, source)| json!({
            "name": name,
            "role": role,
            "source": match source { Source::File => "file", Source::Database => "database" },
        })).collect::<Vec<_>>(),
    })))
}

/// The add form.
#[derive(Deserialize)]
pub(crate) struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

/// The page again with a problem, answered `422`.
async fn problem(
    state: &AppState,
    user: &CurrentUser,
    message: &str,
) -> Result<Response, PageError> {
    let accounts = state.accounts().await?;
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        render(user, &accounts, None, Some(message)),
    )
        .into_response())
}

/// POST /users (`csrf`, `name`, `password`, `role`)
pub(crate) async fn add(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let name = form.name.trim().to_owned();
    let role = match form.role.parse::<Role>() {
        Ok(r) => r,
        Err(e) => return problem(&state, &user, &format!("Not added: {e}.")).await,
    };
    if let Err(e) = check_user_name(&name) {
        return problem(&state, &user, &format!("Not added: {e}.")).await;
    }
    if form.password.chars().count() < MIN_PASSWORD {
        return problem(
            &state,
            &user,
            &format!("Not added: the password needs at least {MIN_PASSWORD} characters."),
        )
        .await;
    }
    if state.users.role(&name).is_some() {
        return problem(
            &state,
            &user,
            &format!("Not added: {name} is in the users file."),
        )
        .await;
    }
    let password = form.password;
    let hash = tokio::task::spawn_blocking(move || crate::users::hash_password(&password))
        .await
        .map_err(|e| PageError::Core(netauto_core::Error::backend(e.to_string())))?
        .map_err(|e| PageError::Core(netauto_core::Error::backend(e.to_string())))?;
    let created = state
        .store
        .create_user(
            NewUser {
                name: name.clone(),
                role,
                password_hash: hash,
            },
            Utc::now(),
        )
        .await;
    match created {
        Ok(u) => {
            state
                .audit(&user, "user.add", &u.name, format!("role {}", u.role))
                .await;
            state
                .sessions
                .set_flash(&user.token, format!("User {} added as {}.", u.name, u.role));
            Ok(Redirect::to("/users").into_response())
        }
        Err(netauto_core::Error::Conflict(_)) => {
            problem(&state, &user, &format!("Not added: {name} exists already.")).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The role and remove forms.
#[derive(Deserialize)]
pub(crate) struct RoleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

/// Why `name` may not be changed here (or lose the admin role, when `losing_admin`): it is
/// managed by the users file, or it is the last admin.
async fn kept(
    state: &AppState,
    name: &str,
    losing_admin: bool,
) -> Result<Option<String>, PageError> {
    if state.users.role(name).is_some() {
        return Ok(Some(format!("{name} is in the users file")));
    }
    if !losing_admin {
        return Ok(None);
    }
    let accounts = state.accounts().await?;
    let admins: Vec<_> = accounts
        .iter()
        .filter(|(_, r, _)| *r == Role::Admin)
        .collect();
    Ok((admins.len() == 1 && admins[0].0 == name).then(|| format!("{name} is the last admin")))
}

/// POST /users/{name}/role (`csrf`, `role`)
pub(crate) async fn set_role(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let role = match form.role.parse::<Role>() {
        Ok(r) => r,
        Err(e) => return problem(&state, &user, &format!("Not changed: {e}.")).await,
    };
    if let Some(why) = kept(&state, &name, role != Role::Admin).await? {
        return problem(&state, &user, &format!("Not changed: {why}.")).await;
    }
    let before = state.store.user(&name).await?.map(|u| u.role);
    let u = state.store.set_user_role(&name, role, Utc::now()).await?;
    let from = before.map_or_else(|| "?".to_owned(), |r| r.to_string());
    state
        .audit(&user, "user.role", &u.name, format!("{from} → {}", u.role))
        .await;
    state
        .sessions
        .set_flash(&user.token, format!("{} is now {}.", u.name, u.role));
    Ok(Redirect::to("/users").into_response())
}

/// POST /users/{name}/remove (`csrf`): the account goes, its API tokens are revoked, its
/// sessions stop working at their next request.
pub(crate) async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    if let Some(why) = kept(&state, &name, true).await? {
        return problem(&state, &user, &format!("Not removed: {why}.")).await;
    }
    let u = state.store.remove_user(&name, Utc::now()).await?;
    state
        .audit(
            &user,
            "user.remove",
            &u.name,
            format!("was {}; API tokens revoked", u.role),
        )
        .await;
    state
        .sessions
        .set_flash(&user.token, format!("User {} removed.", u.name));
    Ok(Redirect::to("/users").into_response())
}
