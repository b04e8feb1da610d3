//! Webhooks: an admin registers a URL for some events; each event becomes one job per
//! webhook on the job queue (`netauto.webhook`, queue `default`), which POSTs a signed JSON
//! body and is retried with backoff until the receiver answers 2xx. Every attempt is in the
//! delivery log.
//!
//! Events: `bulk.finished` (a bulk ended, not cancelled), `bulk.cancelled`, `bulk.failed` (a
//! bulk ended with at least the webhook's threshold of failed devices: `N` or `P%`), and
//! `retention.purge` (a purge deleted runs or not).
//!
//! A bulk's events are enqueued by the bulk job that sees it finished (a wrapper around
//! [`BulkJob`]: a job is marked complete only after that, so a node killed in between leaves
//! the job to be run again, and it enqueues then), and by a cancel that ends it. Each has the
//! unique key `webhook:<id>:<event>:<bulk>`, so however many jobs see it, one delivery.
//!
//! The body: `{"event", "sent_at", "data": {…}}`. Headers: `X-Netauto-Event`,
//! `X-Netauto-Delivery` (the job id: the same on retries), `X-Netauto-Timestamp` (Unix
//! seconds) and `X-Netauto-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use hmac::{Hmac, Mac};
use netauto_core::bulk::{BulkArgs, BulkJob};
use netauto_core::runtime::{JobContext, Worker, WorkerError};
use netauto_core::{BulkRef, Job, JobQueue, NewWebhookDelivery, RunStore, Webhook};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

/// The `tracing` event of each delivery attempt (fields `webhook_event`, `outcome`:
/// `delivered` or `failed`, `attempt`, `duration_ms`), counted by `/metrics`.
pub const DELIVERY_EVENT: &str = "netauto.webhook.delivery";

/// Every event a webhook may get.
pub const EVENTS: [&str; 4] = [
    "bulk.finished",
    "bulk.cancelled",
    "bulk.failed",
    "retention.purge",
];

/// Longest wait for a receiver's answer.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Default first retry delay (doubling per attempt, at most [`MAX_BACKOFF`]).
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
/// Largest part of a receiver's error answer kept in the delivery log.
const KEPT_ERROR_BODY: usize = 200;

/// Checks a failed-devices threshold: `N` (devices, at least 1) or `P%` (1–100).
pub(crate) fn parse_threshold(s: &str) -> Result<Threshold, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a number of devices (1 or more) or a percentage (1%–100%)");
    if let Some(p) = s.strip_suffix('%') {
        match p.trim().parse::<u32>() {
            Ok(p) if (1..=100).contains(&p) => Ok(Threshold::Percent(p)),
            _ => Err(bad()),
        }
    } else {
        match s.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Threshold::Devices(n)),
            _ => Err(bad()),
        }
    }
}

/// When failed devices make a bulk a `bulk.failed` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threshold {
    Devices(u64),
    Percent(u32),
}

impl Threshold {
    fn reached(self, failed: u64, total: u64) -> bool {
        match self {
            Self::Devices(n) => failed >= n,
            Self::Percent(p) => failed > 0 && failed * 100 >= u64::from(p) * total,
        }
    }
}

/// `sha256=<hex>` of `timestamp.body` under `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Args of one delivery job (never the secret: the worker reads it from the store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeliveryArgs {
    webhook_id: i64,
    event: String,
    target: String,
    data: Value,
}

/// Enqueues the deliveries of events.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    store: Arc<dyn RunStore>,
    queue: Arc<dyn JobQueue>,
}

impl Notifier {
    pub(crate) fn new(store: Arc<dyn RunStore>, queue: Arc<dyn JobQueue>) -> Self {
        Self { store, queue }
    }

    /// Enqueues one delivery of `event` about `target` to each of `hooks` that wants it (and,
    /// for `bulk.failed`, whose threshold `wants` accepts), once per `key`.
    async fn fan_out(
        &self,
        hooks: &[Webhook],
        event: &str,
        target: &str,
        key: &str,
        data: &Value,
        wants: impl Fn(&Webhook) -> bool,
    ) -> netauto_core::Result<usize> {
        let mut n = 0;
        for hook in hooks {
            if !hook.events.iter().any(|e| e == event) || !wants(hook) {
                continue;
            }
            let args = DeliveryArgs {
                webhook_id: hook.id,
                event: event.to_owned(),
                target: target.to_owned(),
                data: data.clone(),
            };
            let job = WebhookJob::new_job(&args)?
                .with_unique_key(format!("webhook:{}:{event}:{key}", hook.id));
            if self.queue.enqueue(job, Utc::now()).await?.is_inserted() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The events of a bulk that has ended (nothing when it is still running). Every bulk
    /// job calls it: without webhooks it costs one small read, while the bulk runs two (its
    /// counters); the whole bulk is read only once it has ended.
    pub(crate) async fn bulk_ended(&self, bulk_ref: &BulkRef) -> netauto_core::Result<()> {
        let hooks = self.store.webhooks().await?;
        if hooks.is_empty() || self.store.bulk_state(bulk_ref).await?.finished_at.is_none() {
            return Ok(());
        }
        let bulk = self.store.bulk(bulk_ref).await?;
        let c = bulk.counters;
        let data = json!({
            "bulk_ref": bulk.bulk_ref,
            "path": format!("/bulk/{}", bulk.bulk_ref),
            "command": bulk.command,
            "requested_by": bulk.requested_by,
            "created_at": bulk.created_at,
            "finished_at": bulk.finished_at,
            "cancelled_at": bulk.cancelled_at,
            "counters": c,
        });
        let target = bulk_ref.to_string();
        let ended = if bulk.cancelled_at.is_some() {
            "bulk.cancelled"
        } else {
            "bulk.finished"
        };
        self.fan_out(&hooks, ended, &target, &target, &data, |_| true)
            .await?;
        self.fan_out(&hooks, "bulk.failed", &target, &target, &data, |hook| {
            parse_threshold(&hook.failed_threshold).is_ok_and(|t| t.reached(c.failed, c.total))
        })
        .await?;
        Ok(())
    }

    /// The event of a purge that ran (job `job_id`).
    pub(crate) async fn purged(&self, job_id: i64, data: Value) -> netauto_core::Result<()> {
        let hooks = self.store.webhooks().await?;
        self.fan_out(
            &hooks,
            "retention.purge",
            "",
            &job_id.to_string(),
            &data,
            |_| true,
        )
        .await
        .map(drop)
    }

    /// [`bulk_ended`](Self::bulk_ended), logging a failure (the caller's work is done).
    pub(crate) async fn bulk_ended_or_log(&self, bulk_ref: &BulkRef) {
        if let Err(e) = self.bulk_ended(bulk_ref).await {
            tracing::warn!(bulk_ref = %bulk_ref, error = %e, "cannot enqueue webhook deliveries");
        }
    }
}

/// [`BulkJob`] that, once its devices are done, enqueues the webhook events of its bulk if
/// the bulk has ended (before the job is marked complete).
#[derive(Debug, Clone)]
pub(crate) struct NotifyingBulkJob {
    inner: BulkJob,
    notifier: Notifier,
}

impl NotifyingBulkJob {
    pub(crate) fn new(inner: BulkJob, notifier: Notifier) -> Self {
        Self { inner, notifier }
    }
}

#[async_trait]
impl Worker for NotifyingBulkJob {
    const NAME: &'static str = BulkJob::NAME;
    const QUEUE: &'static str = BulkJob::QUEUE;
    const MAX_ATTEMPTS: u32 = BulkJob::MAX_ATTEMPTS;
    type Args = BulkArgs;

    async fn perform(&self, ctx: &JobContext, args: BulkArgs) -> Result<(), WorkerError> {
        let bulk_ref = args.bulk_ref.clone();
        self.inner.perform(ctx, args).await?;
        // An error here fails the attempt: the retry finds the devices done and tries again.
        self.notifier
            .bulk_ended(&bulk_ref)
            .await
            .map_err(|e| WorkerError::retry(format!("webhook events: {e}")))
    }

    fn timeout(&self) -> Option<Duration> {
        self.inner.timeout()
    }

    async fn on_discard(&self, job: &Job, reason: &str) -> Result<(), WorkerError> {
        self.inner.on_discard(job, reason).await?;
        if let Ok(args) = serde_json::from_value::<BulkArgs>(job.args.clone()) {
            self.notifier.bulk_ended_or_log(&args.bulk_ref).await;
        }
        Ok(())
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.inner.backoff(attempt)
    }
}

/// Delivers one event to one webhook.
#[derive(Debug, Clone)]
pub(crate) struct WebhookJob {
    store: Arc<dyn RunStore>,
    http: reqwest::Client,
    /// First retry delay in milliseconds (doubling).
    backoff_ms: Arc<AtomicU64>,
}

impl WebhookJob {
    pub(crate) fn new(store: Arc<dyn RunStore>, backoff_ms: Arc<AtomicU64>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("netauto-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            store,
            http,
            backoff_ms,
        }
    }

    /// POSTs the event; the status, or why there is none.
    async fn post(
        &self,
        hook: &Webhook,
        args: &DeliveryArgs,
        delivery: i64,
    ) -> (Option<u16>, Option<String>) {
        let now = Utc::now();
        let body = json!({ "event": args.event, "sent_at": now, "data": args.data }).to_string();
        let timestamp = now.timestamp();
        let sent = self
            .http
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-netauto-event", &args.event)
            .header("x-netauto-delivery", delivery.to_string())
            .header("x-netauto-timestamp", timestamp.to_string())
            .header(
                "x-netauto-signature",
                signature(&hook.secret, timestamp, body.as_bytes()),
            )
            .body(body)
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => (Some(res.status().as_u16()), None),
            Ok(res) => {
                let status = res.status().as_u16();
                let text = res.text().await.unwrap_or_default();
                let text: String = text
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(KEPT_ERROR_BODY)
                    .collect();
                (Some(status), Some(format!("HTTP {status}: {text}")))
            }
            Err(e) => (None, Some(describe(&e))),
        }
    }
}

/// A transport error in a line, without the URL's query (it may hold a token).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "redirected (not followed)"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {detail}")
    }
}

#[async_trait]
impl Worker for WebhookJob {
    const NAME: &'static str = "netauto.webhook";
    const QUEUE: &'static str = "default";
    const MAX_ATTEMPTS: u32 = 10;
    type Args = DeliveryArgs;

    async fn perform(&self, ctx: &JobContext, args: DeliveryArgs) -> Result<(), WorkerError> {
        let hooks = self.store.webhooks().await?;
        let Some(hook) = hooks.into_iter().find(|h| h.id == args.webhook_id) else {
            tracing::info!(
                webhook_id = args.webhook_id,
                "webhook deleted: delivery dropped"
            );
            return Ok(());
        };
        let started = Instant::now();
        let (status_code, error) = self.post(&hook, &args, ctx.job().id.get()).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let attempt = ctx.job().attempt;
        let recorded = self
            .store
            .record_delivery(
                NewWebhookDelivery {
                    webhook_id: hook.id,
                    event: args.event.clone(),
                    target: args.target.clone(),
                    attempt,
                    status_code,
                    error: error.clone(),
                    duration_ms,
                },
                Utc::now(),
            )
            .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "cannot record a webhook delivery");
        }
        match error {
            None => {
                tracing::info!(
                    event = DELIVERY_EVENT,
                    webhook_event = %args.event,
                    outcome = "delivered",
                    webhook_id = hook.id,
                    attempt,
                    duration_ms,
                    "webhook delivered"
                );
                Ok(())
            }
            Some(e) => {
                tracing::warn!(
                    event = DELIVERY_EVENT,
                    webhook_event = %args.event,
                    outcome = "failed",
                    webhook_id = hook.id,
                    attempt,
                    duration_ms,
                    error = %e,
                    "webhook delivery failed"
                );
                Err(WorkerError::retry(e))
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = Duration::from_millis(self.backoff_ms.load(Ordering::Relaxed).max(1));
        base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_apply() {
        assert_eq!(parse_threshold("3"), Ok(Threshold::Devices(3)));
        assert_eq!(parse_threshold(" 10% "), Ok(Threshold::Percent(10)));
        for bad in ["0", "0%", "101%", "x", "", "-1"] {
            assert!(parse_threshold(bad).is_err(), "{bad:?}");
        }
        assert!(Threshold::Devices(2).reached(2, 100));
        assert!(!Threshold::Devices(2).reached(1, 100));
        assert!(Threshold::Percent(10).reached(10, 100));
        assert!(!Threshold::Percent(10).reached(9, 100));
        assert!(!Threshold::Percent(1).reached(0, 0));
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231 test case 2 ("Jefe" / "what do ya want for nothing?"), split at the dot
        // this scheme puts between the timestamp and the body.
        let sig = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
            mac.update(b"what do ya want for nothing?");
            mac.finalize().into_bytes()
        };
        assert_eq!(
            sig.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let a = signature("k", 1700000000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature("k", 1700000001, b"{}"));
        assert_ne!(a, signature("k2", 1700000000, b"{}"));
    }
}
