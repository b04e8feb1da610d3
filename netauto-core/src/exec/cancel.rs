//! [`Cancellations`]: how a node learns that a run or bulk it is running was cancelled.
//!
//! A cancel is recorded in the store ([`crate::BulkStore::cancel_bulk`],
//! [`crate::RunLog::request_run_cancel`]) by whichever process takes the request: the web app, the
//! CLI, another node. Every node that runs devices polls the store for the runs and bulks it
//! is running right now — one [`crate::RunLog::cancel_requests`] call per interval (500 ms by
//! default) however many it runs, and none while it runs nothing — and fires the matching
//! watches, so a running session is closed within about one interval on whichever node runs
//! it, on PostgreSQL as on SQLite. A cancel made through the same [`Cancellations`] fires at
//! once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::backend::store::RunStore;
use crate::model::ids::{BulkRef, RunId};

/// Default interval between two polls of the store for cancel requests.
pub const DEFAULT_CANCEL_POLL: Duration = Duration::from_millis(500);

/// What was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The run itself.
    Run,
    /// The bulk it belongs to.
    Bulk,
}

/// Watches for cancel requests of the runs and bulks this process runs. Cheap to clone;
/// clones share one registry and one poller.
#[derive(Debug, Clone)]
pub struct Cancellations {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn RunStore>,
    poll_every: Duration,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    bulks: HashMap<BulkRef, Entry>,
    runs: HashMap<RunId, Entry>,
    poller_running: bool,
}

#[derive(Debug)]
struct Entry {
    watchers: usize,
    tx: watch::Sender<bool>,
}

impl Entry {
    fn new() -> Self {
        Self {
            watchers: 0,
            tx: watch::channel(false).0,
        }
    }
}

impl Cancellations {
    /// Watches `store` for cancel requests every [`DEFAULT_CANCEL_POLL`].
    pub fn new(store: Arc<dyn RunStore>) -> Self {
        Self::with_poll(store, DEFAULT_CANCEL_POLL)
    }

    /// Watches `store` every `poll_every` (at least 10 ms).
    pub fn with_poll(store: Arc<dyn RunStore>, poll_every: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                poll_every: poll_every.max(Duration::from_millis(10)),
                registry: Mutex::default(),
            }),
        }
    }

    /// The interval between two polls.
    pub fn poll_every(&self) -> Duration {
        self.inner.poll_every
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches a bulk until the returned watch is dropped. Must be called inside a tokio
    /// runtime (it starts the poller when needed).
    pub fn watch_bulk(&self, bulk_ref: &BulkRef) -> CancelWatch {
        let bulk = {
            let mut reg = self.lock();
            let entry = reg.bulks.entry(bulk_ref.clone()).or_insert_with(Entry::new);
            entry.watchers += 1;
            entry.tx.subscribe()
        };
        self.ensure_poller();
        CancelWatch {
            owner: self.clone(),
            run: None,
            bulk: Some((bulk_ref.clone(), bulk)),
        }
    }

    /// Watches a run, and the bulk it belongs to, until the returned watch is dropped.
    pub fn watch_run(&self, run_id: RunId, bulk_ref: Option<&BulkRef>) -> CancelWatch {
        let (run, bulk) = {
            let mut reg = self.lock();
            let entry = reg.runs.entry(run_id).or_insert_with(Entry::new);
            entry.watchers += 1;
            let run = entry.tx.subscribe();
            let bulk = bulk_ref.map(|b| {
                let entry = reg.bulks.entry(b.clone()).or_insert_with(Entry::new);
                entry.watchers += 1;
                (b.clone(), entry.tx.subscribe())
            });
            (run, bulk)
        };
        self.ensure_poller();
        CancelWatch {
            owner: self.clone(),
            run: Some((run_id, run)),
            bulk,
        }
    }

    /// Fires the watches of `bulk_ref` in this process now (the store is not touched).
    pub fn cancel_bulk_locally(&self, bulk_ref: &BulkRef) {
        if let Some(e) = self.lock().bulks.get(bulk_ref) {
            e.tx.send_replace(true);
        }
    }

    /// Fires the watches of `run_id` in this process now (the store is not touched).
    pub fn cancel_run_locally(&self, run_id: RunId) {
        if let Some(e) = self.lock().runs.get(&run_id) {
            e.tx.send_replace(true);
        }
    }

    fn release(&self, run: Option<RunId>, bulk: Option<&BulkRef>) {
        let mut reg = self.lock();
        if let Some(id) = run
            && let Some(e) = reg.runs.get_mut(&id)
        {
            e.watchers -= 1;
            if e.watchers == 0 {
                reg.runs.remove(&id);
            }
        }
        if let Some(b) = bulk
            && let Some(e) = reg.bulks.get_mut(b)
        {
            e.watchers -= 1;
            if e.watchers == 0 {
                reg.bulks.remove(b);
            }
        }
    }

    /// Starts the polling task unless it runs. It stops by itself once nothing is watched
    /// (and starts again at the next watch), and when every clone is dropped.
    fn ensure_poller(&self) {
        {
            let mut reg = self.lock();
            if reg.poller_running {
                return;
            }
            reg.poller_running = true;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(poll(weak, self.inner.poll_every));
    }
}

async fn poll(weak: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let this = Cancellations { inner };
        let (bulks, runs) = {
            let mut reg = this.lock();
            if reg.bulks.is_empty() && reg.runs.is_empty() {
                reg.poller_running = false;
                return;
            }
            watched(&reg)
        };
        if bulks.is_empty() && runs.is_empty() {
            continue;
        }
        match this.inner.store.cancel_requests(&bulks, &runs).await {
            Ok(found) => {
                for b in &found.bulks {
                    this.cancel_bulk_locally(b);
                }
                for r in found.runs {
                    this.cancel_run_locally(r);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot poll the store for cancel requests"),
        }
    }
}

/// Runs and bulks watched and not cancelled yet: what the next poll asks about.
fn watched(reg: &Registry) -> (Vec<BulkRef>, Vec<RunId>) {
    let bulks = reg
        .bulks
        .iter()
        .filter(|(_, e)| !*e.tx.borrow())
        .map(|(b, _)| b.clone())
        .collect();
    let runs = reg
        .runs
        .iter()
        .filter(|(_, e)| !*e.tx.borrow())
        .map(|(r, _)| *r)
        .collect();
    (bulks, runs)
}

/// A registration of one run (and its bulk) or one bulk; dropping it ends the watch.
#[derive(Debug)]
pub struct CancelWatch {
    owner: Cancellations,
    run: Option<(RunId, watch::Receiver<bool>)>,
    bulk: Option<(BulkRef, watch::Receiver<bool>)>,
}

impl CancelWatch {
    /// Why it is cancelled, if it is.
    pub fn reason(&self) -> Option<CancelReason> {
        if self.run.as_ref().is_some_and(|(_, rx)| *rx.borrow()) {
            Some(CancelReason::Run)
        } else if self.bulk.as_ref().is_some_and(|(_, rx)| *rx.borrow()) {
            Some(CancelReason::Bulk)
        } else {
            None
        }
    }

    /// Whether it is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.reason().is_some()
    }

    /// Waits until it is cancelled (forever if it never is).
    pub async fn cancelled(&mut self) -> CancelReason {
        async fn fired(rx: Option<&mut watch::Receiver<bool>>) {
            match rx {
                // An error means the registry entry is gone, which cannot happen while this
                // watch holds it; wait forever rather than report a cancel nobody asked for.
                Some(rx) => {
                    if rx.wait_for(|c| *c).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        let run = self.run.as_mut().map(|(_, rx)| rx);
        let bulk = self.bulk.as_mut().map(|(_, rx)| rx);
        tokio::select! {
            () = fired(run) => CancelReason::Run,
            () = fired(bulk) => CancelReason::Bulk,
        }
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.owner.release(
            self.run.as_ref().map(|(id, _)| *id),
            self.bulk.as_ref().map(|(b, _)| b),
        );
    }
}
