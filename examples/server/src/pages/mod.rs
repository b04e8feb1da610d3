//! HTML pages (maud: everything interpolated is escaped).

pub(crate) mod audit;
pub(crate) mod bulk;
pub(crate) mod device_admin;
pub(crate) mod devices;
pub(crate) mod diff;
pub(crate) mod export;
pub(crate) mod fleet;
pub(crate) mod history;
pub(crate) mod layout;
pub(crate) mod queues;
pub(crate) mod retention;
pub(crate) mod runs;
pub(crate) mod search;
pub(crate) mod users;
pub(crate) mod webhooks;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use netauto_core::RunStatus;

/// GET /
pub(crate) async fn home() -> Redirect {
    Redirect::to("/devices")
}

/// Anything unrouted.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        layout::error_page("Not found", "There is no page at this address."),
    )
        .into_response()
}

/// `2026-11-25 13:05:09 UTC`.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An optional time, `—` when absent.
pub(crate) fn time_opt(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".to_owned(), time)
}

/// `1.5 KiB`, `12 B`.
pub(crate) fn human_bytes(n: u128) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// Seconds with one decimal, or minutes and seconds.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// A status badge; `None` is a pending device.
pub(crate) fn badge(status: Option<RunStatus>) -> Markup {
    let name = status.map_or("pending", RunStatus::as_str);
    html! { span class={ "badge status-" (name) } { (name) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }
}
