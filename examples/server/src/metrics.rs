//! `/metrics` (Prometheus text format) and `/healthz`.
//!
//! The counters and histograms come from netauto's own `tracing` events (see
//! `netauto_core::telemetry`): [`MetricsLayer`] turns each into metrics as it is emitted, so
//! the library itself knows nothing of Prometheus. A host that builds its own subscriber adds
//! [`Metrics::layer`] to it. At each scrape, gauges read from the database are added: jobs by
//! queue and state, runs and bytes stored. No label ever holds a device name or id.
//!
//! Series:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `netauto_jobs` | gauge (scrape) | `queue`, `state` |
//! | `netauto_job_attempts_total` | counter | `queue`, `outcome` (`completed`, `retry`, `discard`, `timeout`, `lease_lost`, …) |
//! | `netauto_job_duration_seconds` | histogram | `queue` |
//! | `netauto_bulk_device_outcomes_total` | counter | `status` |
//! | `netauto_bulks_completed_total` | counter | |
//! | `netauto_run_duration_seconds` | histogram | `status` (connect, login and output included) |
//! | `netauto_output_bytes_total` | counter | |
//! | `netauto_stored_runs`, `netauto_stored_bytes` | gauge (scrape) | |
//! | `netauto_ssh_connect_duration_seconds` | histogram | `outcome` (`ok`, `connect`, `auth`, `host_key`, …) |
//! | `netauto_retention_purges_total` | counter | |
//! | `netauto_retention_purged_runs_total`, `netauto_retention_purged_bytes_total` | counter | `reason` (`age`, `bytes`) |
//! | `netauto_webhook_deliveries_total` | counter | `event`, `outcome` (`delivered`, `failed`) |

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use netauto_core::telemetry;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use crate::app::AppState;

/// Variable with a bearer token `/metrics` requires (unset: `/metrics` is open, as it shows
/// no device, user or output).
pub const METRICS_TOKEN_VAR: &str = "NETAUTO_METRICS_TOKEN";

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 5 ms … ~82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The process's metrics (one registry, fed by [`MetricsLayer`]).
pub struct Metrics {
    registry: Registry,
    job_attempts: Family<Labels, Counter>,
    job_duration: Histograms,
    device_outcomes: Family<Labels, Counter>,
    bulks_completed: Counter,
    run_duration: Histograms,
    output_bytes: Counter,
    ssh_connect: Histograms,
    purges: Counter,
    purged_runs: Family<Labels, Counter>,
    purged_bytes: Family<Labels, Counter>,
    webhook_deliveries: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("netauto");
        let m = Self {
            job_attempts: Family::default(),
            job_duration: Family::new_with_constructor(seconds),
            device_outcomes: Family::default(),
            bulks_completed: Counter::default(),
            run_duration: Family::new_with_constructor(seconds),
            output_bytes: Counter::default(),
            ssh_connect: Family::new_with_constructor(seconds),
            purges: Counter::default(),
            purged_runs: Family::default(),
            purged_bytes: Family::default(),
            webhook_deliveries: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "job_attempts",
            "Job attempts ended, by queue and outcome",
            m.job_attempts.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Duration of job attempts, by queue",
            m.job_duration.clone(),
        );
        registry.register(
            "bulk_device_outcomes",
            "Bulk devices finished, by outcome",
            m.device_outcomes.clone(),
        );
        registry.register(
            "bulks_completed",
            "Bulks that completed",
            m.bulks_completed.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Duration of device commands (connect, login and output included), by status",
            m.run_duration.clone(),
        );
        registry.register(
            "output_bytes",
            "Device output bytes stored",
            m.output_bytes.clone(),
        );
        registry.register(
            "ssh_connect_duration_seconds",
            "Duration of SSH connection attempts (TCP, jump hosts, handshake, login), by outcome",
            m.ssh_connect.clone(),
        );
        registry.register("retention_purges", "Retention purges run", m.purges.clone());
        registry.register(
            "retention_purged_runs",
            "Runs deleted by retention, by reason",
            m.purged_runs.clone(),
        );
        registry.register(
            "retention_purged_bytes",
            "Output bytes deleted by retention, by reason",
            m.purged_bytes.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by event and outcome",
            m.webhook_deliveries.clone(),
        );
        Self { registry, ..m }
    }

    /// The process's metrics: one per process, as the `tracing` dispatcher is.
    pub fn global() -> Arc<Self> {
        static GLOBAL: OnceLock<Arc<Metrics>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(Self::new())).clone()
    }

    /// The layer that feeds these metrics from netauto's events; add it to the subscriber.
    pub fn layer(self: &Arc<Self>) -> MetricsLayer {
        MetricsLayer(self.clone())
    }

    fn record(&self, e: &Fields) {
        let label = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        let secs = e.num("duration_ms") / 1000.0;
        match e.event.as_str() {
            telemetry::JOB_STOP | telemetry::JOB_EXCEPTION => {
                let outcome = if e.event == telemetry::JOB_STOP {
                    "completed"
                } else {
                    e.text("kind")
                };
                let queue = e.text("queue");
                self.job_attempts
                    .get_or_create(&vec![
                        ("queue".to_owned(), queue.to_owned()),
                        ("outcome".to_owned(), outcome.to_owned()),
                    ])
                    .inc();
                if e.nums.contains_key("duration_ms") {
                    self.job_duration
                        .get_or_create(&label("queue", queue))
                        .observe(secs);
                }
            }
            telemetry::BULK_OK => {
                self.device_outcomes
                    .get_or_create(&label("status", "ok"))
                    .inc();
            }
            telemetry::BULK_ERROR => {
                self.device_outcomes
                    .get_or_create(&label("status", e.text("status")))
                    .inc();
            }
            telemetry::BULK_SUMMARY => {
                self.bulks_completed.inc();
            }
            telemetry::RUN_FINISH => {
                self.run_duration
                    .get_or_create(&label("status", e.text("status")))
                    .observe(secs);
                self.output_bytes.inc_by(e.num("bytes") as u64);
            }
            crate::webhooks::DELIVERY_EVENT => {
                self.webhook_deliveries
                    .get_or_create(&vec![
                        ("event".to_owned(), e.text("webhook_event").to_owned()),
                        ("outcome".to_owned(), e.text("outcome").to_owned()),
                    ])
                    .inc();
            }
            telemetry::SSH_CONNECT => {
                self.ssh_connect
                    .get_or_create(&label("outcome", e.text("outcome")))
                    .observe(secs);
            }
            telemetry::RETENTION_PURGE if !e.flag("dry_run") => {
                self.purges.inc();
                for (reason, runs, bytes) in [
                    ("age", "runs_age", "bytes_age"),
                    ("bytes", "runs_bytes", "bytes_bytes"),
                ] {
                    let l = label("reason", reason);
                    self.purged_runs
                        .get_or_create(&l)
                        .inc_by(e.num(runs) as u64);
                    self.purged_bytes
                        .get_or_create(&l)
                        .inc_by(e.num(bytes) as u64);
                }
            }
            _ => {}
        }
    }

    /// The text exposition: the counters, then the gauges read now from the database.
    async fn render(&self, state: &AppState) -> Result<String, netauto_core::Error> {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        // `encode` ends with "# EOF"; the gauges go before it.
        if let Some(eof) = out.rfind("# EOF") {
            out.truncate(eof);
        }
        let counts = state.queue.counts().await?;
        out.push_str("# HELP netauto_jobs Jobs by queue and state.\n# TYPE netauto_jobs gauge\n");
        for c in &counts {
            let _ = writeln!(
                out,
                "netauto_jobs{{queue=\"{}\",state=\"{}\"}} {}",
                escape_label(&c.queue),
                c.state.as_str(),
                c.count
            );
        }
        let totals = state.store.device_totals().await?;
        let (runs, bytes) = totals
            .iter()
            .fold((0u64, 0u64), |(r, b), t| (r + t.runs, b + t.bytes));
        let _ = write!(
            out,
            "# HELP netauto_stored_runs Runs stored.\n# TYPE netauto_stored_runs gauge\nnetauto_stored_runs {runs}\n\
             # HELP netauto_stored_bytes Output bytes stored.\n# TYPE netauto_stored_bytes gauge\nnetauto_stored_bytes {bytes}\n"
        );
        out.push_str("# EOF\n");
        Ok(out)
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The fields of one event: `event`, texts and numbers.
#[derive(Default)]
struct Fields {
    event: String,
    texts: HashMap<&'static str, String>,
    nums: HashMap<&'static str, f64>,
}

impl Fields {
    fn text(&self, k: &str) -> &str {
        self.texts.get(k).map_or("", String::as_str)
    }
    fn num(&self, k: &str) -> f64 {
        self.nums.get(k).copied().unwrap_or(0.0)
    }
    fn flag(&self, k: &str) -> bool {
        self.nums.get(k).is_some_and(|v| *v != 0.0)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "event" {
            value.clone_into(&mut self.event);
        } else {
            self.texts.insert(field.name(), value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here, already Display-formatted.
        self.texts.insert(field.name(), format!("{value:?}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.nums.insert(field.name(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.nums.insert(field.name(), value as f64);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.nums.insert(field.name(), value as f64);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.nums.insert(field.name(), f64::from(u8::from(value)));
    }
}

/// Turns netauto's `tracing` events into [`Metrics`].
#[derive(Debug, Clone)]
pub struct MetricsLayer(Arc<Metrics>);

impl<S: Subscriber> Layer<S> for MetricsLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("netauto") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.event.starts_with("netauto.") {
            self.0.record(&fields);
        }
    }
}

/// GET /metrics: the Prometheus text format (bearer token when `NETAUTO_METRICS_TOKEN` is set).
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| crate::auth::same_token(token, g)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required\n",
            )
                .into_response();
        }
    }
    match Metrics::global().render(&state).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the database did not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// GET /healthz: 200 when the database answers (within 2 s) and the runner is not stalled
/// (`ok`, or `not_started` in a process that runs no jobs), else 503; says which, and nothing
/// else. No login.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let database = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.queue.counts()).await,
        Ok(Ok(_))
    );
    // A started runner ticks every poll interval: silent for long, it is stuck or stopped.
    let stalled_after = (state.runner.config().poll_interval * 5).max(Duration::from_secs(30));
    let runner = match state.runner.last_tick() {
        None => "not_started",
        Some(t) if t.elapsed() > stalled_after => "stalled",
        Some(_) => "ok",
    };
    let status = if database && runner != "stalled" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "database": if database { "ok" } else { "down" },
            "runner": runner,
        })),
    )
        .into_response()
}
