//! [`App`]: the services, the runner and the router, wired to whatever backend is given.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use netauto_core::bulk::{BulkJob, BulkService};
use netauto_core::exec::Executor;
use netauto_core::retention::RetentionConfig;
use netauto_core::retention::{RetentionArgs, RetentionWorker};
use netauto_core::runtime::WorkerRegistry;
use netauto_core::runtime::{CronEntry, CronSchedule};
use netauto_core::runtime::{Runner, RunnerConfig};
use netauto_core::{ExecLimits, JobQueue, NetworkClient, ProgressSink, RunStore};

use crate::access::{Access, Routes};
use crate::config::WebLimits;
use crate::login::{self, LoginGate};
use crate::retention::{LastPurge, RecordingRetention};
use crate::session::Sessions;
use crate::users::Users;
use crate::webhooks::{self, Notifier, NotifyingBulkJob, WebhookJob};
use crate::{api, assets, live, metrics, pages, tokens};

/// Largest login form accepted (user name, password, CSRF token).
const LOGIN_BODY_LIMIT: usize = 8 * 1024;
/// An inventory upload: the largest inventory the parser takes, and the form around it.
const IMPORT_BODY_LIMIT: usize = netauto_cli::inventory::MAX_INVENTORY_BYTES + 64 * 1024;

/// What an [`App`] is built from.
#[derive(Debug, Clone)]
pub struct AppParts {
    /// Devices, runs, output and bulks.
    pub store: Arc<dyn RunStore>,
    /// The job queue (same database as `store`).
    pub queue: Arc<dyn JobQueue>,
    /// Live progress (publish and subscribe).
    pub progress: Arc<dyn ProgressSink>,
    /// How commands reach devices.
    pub client: Arc<dyn NetworkClient>,
    /// The retention knobs (see [`RetentionConfig::from_env`]).
    pub retention: RetentionConfig,
    /// Who may log in.
    pub users: Users,
    /// Runner identity, queue limits and timings.
    pub runner: RunnerConfig,
    /// Mark the session cookie `Secure` (serve over HTTPS).
    pub secure_cookies: bool,
    /// Deadline and output cap of every device command run here, unless a bulk sets its own
    /// (see [`ExecLimits::from_env`]: `NETAUTO_COMMAND_TIMEOUT`, `NETAUTO_RUN_MAX_OUTPUT`).
    pub exec_limits: ExecLimits,
    /// Devices of one bulk job run at the same time (`NETAUTO_DEVICES_PER_JOB`, default 10;
    /// with `bulk` jobs per node from `NETAUTO_QUEUES`, the devices in flight).
    pub devices_per_job: usize,
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn RunStore>,
    pub(crate) progress: Arc<dyn ProgressSink>,
    pub(crate) bulk: BulkService,
    /// Runs commands (and cancels runs).
    pub(crate) network: Executor,
    pub(crate) retention: RetentionWorker,
    pub(crate) schedule: CronSchedule,
    pub(crate) last_purge: LastPurge,
    pub(crate) users: Arc<Users>,
    pub(crate) sessions: Arc<Sessions>,
    /// Login throttle and password verification slots.
    pub(crate) login: Arc<LoginGate>,
    pub(crate) secure_cookies: bool,
    /// How long a live bulk stream stays quiet before it checks the store.
    pub(crate) resync_after: std::time::Duration,
    /// The job queue (counts for `/metrics` and `/healthz`).
    pub(crate) queue: Arc<dyn JobQueue>,
    /// The runner (its last tick for `/healthz`).
    pub(crate) runner: Runner,
    /// The bearer token `/metrics` requires, if any.
    pub(crate) metrics_token: Option<String>,
    /// Days of audit log kept (pruned with every retention run).
    pub(crate) audit_days: Arc<AtomicU32>,
    /// Enqueues webhook deliveries.
    pub(crate) notifier: Notifier,
    /// First retry delay of a webhook delivery (milliseconds).
    pub(crate) webhook_backoff_ms: Arc<AtomicU64>,
}

/// The web app and its (not yet started) job runner.
#[derive(Debug, Clone)]
pub struct App {
    state: AppState,
    runner: Runner,
}

impl App {
    /// Wires the services: a runner with [`BulkJob`] and [`RetentionWorker`] (cron from
    /// `NET_AUTO_RETENTION_CRON`), and a [`BulkService`](netauto_core::bulk::BulkService) that wakes it on enqueue.
    pub fn new(parts: AppParts) -> netauto_core::Result<Self> {
        let schedule =
            CronSchedule::parse_setting("NET_AUTO_RETENTION_CRON", parts.retention.cron())?;
        let network = Executor::new(parts.store.clone(), parts.client, parts.progress.clone())
            .with_limits(parts.exec_limits);
        let retention = RetentionWorker::new(parts.store.clone(), parts.retention);
        let last_purge = LastPurge::default();
        let audit_days = Arc::new(AtomicU32::new(crate::team::DEFAULT_AUDIT_MAX_DAYS));
        let webhook_backoff_ms = Arc::new(AtomicU64::new(
            u64::try_from(webhooks::DEFAULT_BACKOFF.as_millis()).unwrap_or(u64::MAX),
        ));
        let notifier = Notifier::new(parts.store.clone(), parts.queue.clone());
        let registry = WorkerRegistry::new()
            .with(NotifyingBulkJob::new(
                BulkJob::new(network.clone()),
                notifier.clone(),
            ))
            .with(RecordingRetention::new(
                retention.clone(),
                last_purge.clone(),
                parts.store.clone(),
                audit_days.clone(),
                notifier.clone(),
            ))
            .with(WebhookJob::new(
                parts.store.clone(),
                webhook_backoff_ms.clone(),
            ));
        let queue = parts.queue.clone();
        let runner = Runner::new(parts.queue, registry)
            .with_config(parts.runner)
            .with_cron(CronEntry::new::<RetentionWorker>(
                schedule.clone(),
                &RetentionArgs::default(),
            )?);
        let bulk =
            BulkService::new(parts.store.clone(), parts.progress.clone()).with_wake(runner.waker());
        let state = AppState {
            store: parts.store,
            progress: parts.progress,
            bulk,
            network,
            retention,
            schedule,
            last_purge,
            users: Arc::new(parts.users),
            sessions: Arc::new(Sessions::new(&WebLimits::default())),
            login: Arc::new(LoginGate::new(&WebLimits::default())),
            secure_cookies: parts.secure_cookies,
            resync_after: live::RESYNC_AFTER,
            queue,
            runner: runner.clone(),
            metrics_token: None,
            audit_days,
            notifier,
            webhook_backoff_ms,
        };
        Ok(Self { state, runner })
    }

    /// How long a live bulk stream (`/bulk/{ref}/events`) waits without an event before it
    /// asks the store where the bulk stands and re-sends the snapshot if events were missed
    /// (default 10 s).
    pub fn with_live_resync(mut self, after: std::time::Duration) -> Self {
        self.state.resync_after = after.max(std::time::Duration::from_millis(10));
        self
    }

    /// Requires `Authorization: Bearer TOKEN` on `/metrics` (the binary reads
    /// `NETAUTO_METRICS_TOKEN`); without it `/metrics` is open, as it shows no device, user
    /// or output.
    pub fn with_metrics_token(mut self, token: Option<String>) -> Self {
        self.state.metrics_token = token.filter(|t| !t.is_empty());
        self
    }

    /// Keeps `days` of audit log (default [`DEFAULT_AUDIT_MAX_DAYS`](crate::DEFAULT_AUDIT_MAX_DAYS);
    /// the binary reads `NETAUTO_AUDIT_MAX_DAYS`): older entries go with every retention run.
    pub fn with_audit_max_days(self, days: u32) -> Self {
        self.state.audit_days.store(days.max(1), Ordering::Relaxed);
        self
    }

    /// The first retry delay of a failed webhook delivery (default 10 s), doubling per
    /// attempt up to an hour; 10 attempts in all.
    pub fn with_webhook_backoff(self, first: std::time::Duration) -> Self {
        let ms = u64::try_from(first.as_millis()).unwrap_or(u64::MAX).max(1);
        self.state.webhook_backoff_ms.store(ms, Ordering::Relaxed);
        self
    }

    /// Login throttling, password verification slots, session caps and lifetimes, event
    /// streams per session (default [`WebLimits::default`]; the binary reads
    /// [`WebLimits::from_env`]). Call it before serving: it starts with no session.
    pub fn with_limits(mut self, limits: &WebLimits) -> Self {
        self.state.sessions = Arc::new(Sessions::new(limits));
        self.state.login = Arc::new(LoginGate::new(limits));
        self
    }

    /// Ends every open event stream, and every one opened from now on: call it when the server
    /// starts shutting down, so streams do not hold connections open.
    pub fn end_streams(&self) {
        self.state.sessions.end_streams();
    }

    /// The job runner; call [`Runner::start`] to run jobs in this process.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// All routes: pages, live event streams, JSON API, assets; each behind its role (see
    /// [`route_access`](Self::route_access)).
    pub fn router(&self) -> Router {
        self.routes()
            .finish(self.state.clone())
            .fallback(pages::not_found)
            .layer(middleware::from_fn(security_headers))
            .with_state(self.state.clone())
    }

    /// Every route path with who may use it: [`Access::Open`] for anyone, or the least role.
    /// The same table the router enforces.
    pub fn route_access(&self) -> Vec<(&'static str, Access)> {
        self.routes().rules()
    }

    fn routes(&self) -> Routes {
        Routes::new()
            .open("/", get(pages::home))
            .open(
                "/login",
                get(login::login_page)
                    .post(login::login)
                    .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
            )
            .open("/metrics", get(metrics::metrics))
            .open("/healthz", get(metrics::healthz))
            .open("/assets/app.css", get(assets::css))
            .open("/assets/app.js", get(assets::js))
            // Reading: every logged-in user.
            .viewer("/logout", post(login::logout))
            .viewer("/devices", get(pages::devices::index))
            .viewer("/devices/{id}", get(pages::device_admin::show))
            .viewer("/bulks", get(pages::history::page_handler))
            .viewer("/bulk/{bulk_ref}", get(pages::bulk::show))
            .viewer("/bulk/{bulk_ref}/events", get(live::bulk_events))
            .viewer("/bulk/{bulk_ref}/fleet", get(pages::fleet::page_handler))
            .viewer("/bulk/{bulk_ref}/export", get(pages::export::page_handler))
            .viewer("/runs/{id}", get(pages::runs::show))
            .viewer("/runs/{id}/events", get(live::run_events))
            .viewer("/runs/{id}/raw", get(pages::runs::raw))
            .viewer("/runs/{id}/diff", get(pages::diff::page_previous))
            .viewer("/runs/{id}/diff/{other}", get(pages::diff::page_pair))
            .viewer("/search", get(pages::search::page_handler))
            .viewer("/queues", get(pages::queues::page_handler))
            .viewer("/retention", get(pages::retention::show))
            // A user's own API tokens act with the user's role.
            .viewer("/tokens", get(tokens::page_handler).post(tokens::create))
            .viewer("/tokens/{id}/revoke", post(tokens::revoke))
            .viewer("/api/devices", get(api::devices))
            .viewer("/api/bulks", get(pages::history::api))
            .viewer("/api/bulk/{bulk_ref}", get(api::bulk))
            .viewer("/api/bulk/{bulk_ref}/fleet", get(pages::fleet::api))
            .viewer("/api/bulk/{bulk_ref}/export", get(pages::export::api))
            .viewer("/api/search", get(pages::search::api))
            .viewer("/api/queues", get(pages::queues::api))
            .viewer("/api/tokens", get(tokens::api))
            .viewer("/api/runs/{id}", get(api::run))
            .viewer("/api/runs/{id}/diff", get(pages::diff::api_previous))
            .viewer("/api/runs/{id}/diff/{other}", get(pages::diff::api_pair))
            // Running commands: operators.
            .operator("/bulk", post(pages::devices::start_bulk))
            .operator("/bulk/{bulk_ref}/cancel", post(pages::bulk::cancel))
            .operator("/bulk/{bulk_ref}/rerun", post(pages::bulk::rerun))
            .operator("/runs/{id}/cancel", post(pages::runs::cancel))
            .operator("/api/bulk", post(api::create_bulk))
            .operator("/api/bulk/{bulk_ref}/cancel", post(api::cancel_bulk))
            .operator("/api/bulk/{bulk_ref}/rerun", post(api::rerun_bulk))
            .operator("/api/runs/{id}/cancel", post(api::cancel_run))
            // Devices, users, queues and jobs, retention runs, the audit log: admins.
            .admin(
                "/devices/new",
                get(pages::device_admin::new_page).post(pages::device_admin::create),
            )
            .admin(
                "/devices/import",
                get(pages::device_admin::import_page)
                    .post(pages::device_admin::import)
                    .layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
            )
            .admin("/devices/{id}/edit", post(pages::device_admin::edit))
            .admin("/devices/{id}/delete", post(pages::device_admin::delete))
            .admin(
                "/queues/{queue}/{action}",
                post(pages::queues::page_queue_action),
            )
            .admin("/jobs/{id}/{action}", post(pages::queues::page_job_action))
            .admin(
                "/api/queues/{queue}/{action}",
                post(pages::queues::api_queue_action),
            )
            .admin(
                "/api/jobs/{id}/{action}",
                post(pages::queues::api_job_action),
            )
            .admin("/retention/run", post(pages::retention::run_now))
            .admin(
                "/users",
                get(pages::users::page_handler).post(pages::users::add),
            )
            .admin("/users/{name}/role", post(pages::users::set_role))
            .admin("/users/{name}/remove", post(pages::users::remove))
            .admin("/api/users", get(pages::users::api))
            .admin(
                "/webhooks",
                get(pages::webhooks::page_handler).post(pages::webhooks::create),
            )
            .admin("/webhooks/{id}/delete", post(pages::webhooks::delete))
            .admin("/api/webhooks", get(pages::webhooks::api))
            .admin("/audit", get(pages::audit::page_handler))
            .admin("/api/audit", get(pages::audit::api))
    }
}

/// Headers on every response: no inline script or style, no framing, no sniffing.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// A lock that survives a panicked holder (the data is plain and stays consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
