//! [`PgProgress`]: progress over LISTEN/NOTIFY, so a browser on node A follows a bulk that
//! runs on node B.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use netauto_core::LocalProgressHub;
use netauto_core::prelude::*;
use netauto_core::{ProgressEvent, ProgressSink, RunEvent, RunId, Subscription};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::PgRunStore;

/// The NOTIFY channel of progress events.
pub const PROGRESS_CHANNEL: &str = "netauto_progress";
/// Payloads above this many bytes are sent as a reference (PostgreSQL's limit is 8000).
const MAX_INLINE: usize = 6000;
/// Longest a publish waits for the database before dropping the event.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a subscribe waits for the LISTEN connection before answering anyway.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Wire {
    /// The event itself.
    Event { e: ProgressEvent },
    /// A big output chunk: subscribers read it from the store.
    Chunk { run_id: RunId, seq: u64 },
}

/// Publishes with `pg_notify`; subscribers on every node share one LISTEN connection per
/// process, fanned out to topics locally.
#[derive(Debug, Clone)]
pub struct PgProgress {
    pool: PgPool,
    local: LocalProgressHub,
    listener: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// `true` while the listener's LISTEN is in effect.
    listening: Arc<watch::Sender<bool>>,
}

impl PgProgress {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            local: LocalProgressHub::new(),
            listener: Arc::default(),
            listening: Arc::new(watch::Sender::new(false)),
        }
    }

    fn ensure_listening(&self) {
        let mut slot = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let (pool, local) = (self.pool.clone(), self.local.clone());
        *slot = Some(tokio::spawn(listen(pool, local, self.listening.clone())));
    }
}

impl Drop for PgProgress {
    fn drop(&mut self) {
        // The last clone stops the listener task.
        if Arc::strong_count(&self.listener) == 1
            && let Some(h) = self
                .listener
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        {
            h.abort();
        }
    }
}

async fn listen(pool: PgPool, local: LocalProgressHub, listening: Arc<watch::Sender<bool>>) {
    let store = PgRunStore::on(pool.clone());
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "progress listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(PROGRESS_CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        listening.send_replace(true);
        loop {
            let n = match listener.recv().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "progress listener lost its connection; reconnecting");
                    listening.send_replace(false);
                    break;
                }
            };
            let event = match serde_json::from_str::<Wire>(n.payload()) {
                Ok(Wire::Event { e }) => e,
                Ok(Wire::Chunk { run_id, seq }) => match store.chunks(run_id, seq, 1).await {
                    Ok(mut c) if !c.is_empty() => {
                        let c = c.remove(0);
                        ProgressEvent::Run(RunEvent::Output {
                            run_id,
                            seq,
                            stream: c.stream,
                            data: c.data,
                        })
                    }
                    // Deleted meanwhile: nothing to show.
                    _ => continue,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a malformed progress notification");
                    continue;
                }
            };
            local.publish(event).await;
        }
    }
}

#[async_trait]
impl ProgressSink for PgProgress {
    async fn publish(&self, event: ProgressEvent) {
        let mut payload = match serde_json::to_string(&Wire::Event { e: event.clone() }) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a progress event; dropped");
                return;
            }
        };
        if payload.len() > MAX_INLINE {
            let ProgressEvent::Run(RunEvent::Output { run_id, seq, .. }) = event else {
                tracing::warn!(
                    bytes = payload.len(),
                    "progress event too large to notify; dropped"
                );
                return;
            };
            match serde_json::to_string(&Wire::Chunk { run_id, seq }) {
                Ok(p) => payload = p,
                Err(_) => return,
            }
        }
        let notify = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PROGRESS_CHANNEL)
            .bind(payload)
            .execute(&self.pool);
        match tokio::time::timeout(PUBLISH_TIMEOUT, notify).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "progress notify failed; event dropped"),
            Err(_) => tracing::warn!("progress notify timed out; event dropped"),
        }
    }

    /// Answers once this process's LISTEN is in effect (or after 5 s without the database,
    /// logged), so an event published after `subscribe` returns is delivered: followers
    /// subscribe before they read the store and rely on that.
    async fn subscribe(&self, topic: &str) -> Subscription {
        let sub = self.local.subscribe(topic).await;
        self.ensure_listening();
        let mut listening = self.listening.subscribe();
        if tokio::time::timeout(LISTEN_TIMEOUT, listening.wait_for(|on| *on))
            .await
            .is_err()
        {
            tracing::warn!(
                "progress listener not listening yet; live events may be missed until it is"
            );
        }
        sub
    }
}
