//! `/retention`: the policy in force, the next cron slot, the last purge of this process and a
//! dry-run preview of the next purge.

use axum::extract::State;
use chrono::Utc;
use maud::{Markup, html};
use netauto_core::retention::PurgePlan;

use crate::app::AppState;
use axum::Form;
use axum::response::{IntoResponse, Redirect, Response};
use netauto_core::Role;
use netauto_core::retention::{RetentionArgs, RetentionWorker};
use netauto_core::runtime::Worker as _;

use crate::auth::{CurrentUser, csrf_rejected};
use crate::error::PageError;
use crate::login::CsrfForm;
use crate::pages::layout::{Section, page};
use crate::pages::{human_bytes, human_duration, time, time_opt};

/// Planned deletions listed in the preview.
const PREVIEW_ROWS: usize = 50;

/// GET /retention
pub(crate) async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let now = Utc::now();
    let config = state.retention.config();
    let plan = state.retention.plan(now).await?;
    let last = state.last_purge.get();
    let body = html! {
        h1 { "Retention" }
        div.cards {
            section.card {
                h2 { "Policy in force" }
                dl.meta {
                    dt { "Maximum age" } dd { (config.max_days()) " days " span.muted { "NET_AUTO_RUN_MAX_DAYS" } }
                    dt { "Per-device cap" } dd { (human_bytes(u128::from(config.max_bytes()))) " " span.muted { "NET_AUTO_RUN_MAX_BYTES" } }
                    dt { "Schedule" } dd { code { (state.schedule.as_str()) } " UTC " span.muted { "NET_AUTO_RETENTION_CRON" } }
                    dt { "Next purge" } dd #next-slot { (time_opt(state.schedule.next_after(now))) }
                }
            }
            section.card {
                h2 { "Last purge" }
                @match &last {
                    None => p.muted { "No purge has run in this process since it started." },
                    Some(r) => dl.meta {
                        dt { "Planned at" } dd { (time(r.plan.now)) @if r.dry_run { " (dry run)" } }
                        dt { "Deleted by age" } dd { (r.deleted_age.runs) " runs, " (human_bytes(u128::from(r.deleted_age.bytes))) }
                        dt { "Deleted by byte cap" } dd { (r.deleted_bytes.runs) " runs, " (human_bytes(u128::from(r.deleted_bytes.bytes))) }
                        dt { "Batches" } dd { (r.batches) }
                        dt { "Kept by guard" } dd { (r.kept_by_guard) }
                        dt { "Devices over cap" } dd { (r.plan.devices_over_cap_before) " before, " (r.plan.devices_over_cap_after) " after" }
                        dt { "Duration" } dd { (human_duration(r.duration)) }
                    },
                }
            }
        }
        @if user.role >= Role::Admin {
            form #retention-run method="post" action="/retention/run" {
                input type="hidden" name="csrf" value=(user.csrf);
                button.danger #run-retention type="submit" { "Purge now" }
                span.muted { " deletes what the dry run below lists, as the schedule would" }
            }
        }
        section.card {
            h2 { "Dry run: what a purge now would delete" }
            (preview(&plan))
        }
    };
    let flash = user.take_flash(&state);
    Ok(page(
        "Retention",
        Section::Retention,
        &user,
        flash.as_deref(),
        body,
    ))
}

/// POST /retention/run (`csrf`): queues a purge now; the runner takes it like a scheduled one.
pub(crate) async fn run_now(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    if !user.csrf_ok(&form.csrf) {
        return Ok(csrf_rejected());
    }
    let job = RetentionWorker::new_job(&RetentionArgs::default())?;
    // Through the runner's queue: this node's runner wakes at once.
    let queued = state.runner.queue().enqueue(job, Utc::now()).await?;
    state
        .audit(
            &user,
            "retention.run",
            "",
            format!("job {}", queued.job().id),
        )
        .await;
    state.sessions.set_flash(
        &user.token,
        "Purge queued: the last purge below shows its result when it has run.".to_owned(),
    );
    Ok(Redirect::to("/retention").into_response())
}

fn preview(plan: &PurgePlan) -> Markup {
    html! {
        dl.meta #preview {
            dt { "Age cutoff" } dd { (time(plan.cutoff)) }
            dt { "By age" } dd { (plan.age.runs) " runs, " (human_bytes(plan.age.bytes)) }
            dt { "By byte cap" } dd { (plan.bytes.runs) " runs, " (human_bytes(plan.bytes.bytes)) }
            dt { "Devices over cap" } dd { (plan.devices_over_cap_before) " now, " (plan.devices_over_cap_after) " after" }
            @if !plan.unresolved.is_empty() {
                dt { "Unresolved devices" } dd {
                    @for (i, d) in plan.unresolved.iter().enumerate() { @if i > 0 { ", " } (d) }
                }
            }
        }
        @if plan.is_empty() {
            p.muted { "Nothing to delete." }
        } @else {
            table.grid {
                thead { tr { th { "Run" } th { "Timestamp" } th { "Reason" } } }
                tbody {
                    @for d in plan.deletions.iter().take(PREVIEW_ROWS) {
                        tr {
                            td { a href={ "/runs/" (d.run_id) } { "#" (d.run_id) } }
                            td { (time(d.ts)) }
                            td { (d.reason.as_str()) }
                        }
                    }
                }
            }
            @if plan.deletions.len() > PREVIEW_ROWS {
                p.muted { "… and " (plan.deletions.len() - PREVIEW_ROWS) " more." }
            }
        }
    }
}
