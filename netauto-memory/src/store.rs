//! [`InMemoryRunStore`]: devices, runs, chunks and bulks behind one mutex.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use netauto_core::bulk::dedup_ids;
use netauto_core::retention::{
    DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, RunFootprint,
};
use netauto_core::search::SearchQuery;
use netauto_core::{
    Bulk, BulkCancelled, BulkCounters, BulkQuery, BulkRef, BulkSummary, CancelRequests,
    ChunkAppended, Conflict, Device, DeviceId, DeviceOutcome, Enqueued, Error, NewBulk, NewDevice,
    NewJob, NewRun, OutcomeRecorded, OutputStream, Result, Run, RunChunk, RunFinish, RunId,
    RunStatus, ValidationError,
};
use netauto_core::{BulkStore, DeviceStore, RetentionStore, RunLog};

use crate::queue::InMemoryJobQueue;

/// An in-process [`RunStore`](netauto_core::RunStore) sharing its "database" with an [`InMemoryJobQueue`].
///
/// [`create_bulk`](netauto_core::BulkStore::create_bulk) holds the store's lock and the queue's lock together
/// (always in that order) while it validates the jobs, inserts them and inserts the bulk, so
/// no observer ever sees one without the other. Clones share one store.
#[derive(Debug, Clone)]
pub struct InMemoryRunStore {
    state: Arc<Mutex<StoreState>>,
    queue: InMemoryJobQueue,
}

impl InMemoryRunStore {
    /// An empty store whose bulks enqueue their jobs into `queue`.
    pub fn new(queue: InMemoryJobQueue) -> Self {
        Self {
            state: Arc::default(),
            queue,
        }
    }

    /// The queue this store enqueues bulk jobs into.
    pub fn queue(&self) -> &InMemoryJobQueue {
        &self.queue
    }

    fn lock(&self) -> Result<MutexGuard<'_, StoreState>> {
        self.state
            .lock()
            .map_err(|_| Error::backend("in-memory run store lock poisoned by a panic"))
    }
}

#[derive(Debug)]
struct StoredRun {
    run: Run,
    chunks: Vec<RunChunk>,
    cancel_requested: bool,
}

#[derive(Debug)]
struct StoredBulk {
    bulk: Bulk,
    members: HashSet<DeviceId>,
}

#[derive(Debug, Default)]
struct StoreState {
    /// API tokens by id, with the hash of their secret.
    tokens: BTreeMap<i64, (netauto_core::ApiToken, String)>,
    /// User accounts by name.
    users: BTreeMap<String, netauto_core::User>,
    /// The audit log by id.
    audit: BTreeMap<i64, netauto_core::AuditEvent>,
    last_audit_id: i64,
    /// Webhooks by id.
    webhooks: BTreeMap<i64, netauto_core::Webhook>,
    last_webhook_id: i64,
    /// Webhook delivery attempts by id.
    deliveries: BTreeMap<i64, netauto_core::WebhookDelivery>,
    last_delivery_id: i64,
    last_device_id: i64,
    devices: BTreeMap<DeviceId, Device>,
    device_names: HashMap<String, DeviceId>,
    last_run_id: i64,
    runs: HashMap<RunId, StoredRun>,
    /// Retention order per device: `(device_id, retention_ts, id)`.
    by_device: BTreeSet<(DeviceId, DateTime<Utc>, RunId)>,
    /// Retention order over all runs: `(retention_ts, id)`.
    by_ts: BTreeSet<(DateTime<Utc>, RunId)>,
    /// Creation order per device, for [`netauto_core::RunLog::device_runs`].
    by_inserted: BTreeSet<(DeviceId, DateTime<Utc>, RunId)>,
    /// Bytes and run count per device with runs.
    totals: BTreeMap<DeviceId, (u128, u64)>,
    bulks: HashMap<BulkRef, StoredBulk>,
}

impl StoreState {
    fn index_run(&mut self, run: &Run) {
        let ts = run.retention_ts();
        self.by_device.insert((run.device_id, ts, run.id));
        self.by_ts.insert((ts, run.id));
    }

    fn unindex_run(&mut self, run: &Run) {
        let ts = run.retention_ts();
        self.by_device.remove(&(run.device_id, ts, run.id));
        self.by_ts.remove(&(ts, run.id));
    }

    fn live_run(&mut self, id: RunId) -> Result<&mut StoredRun> {
        let stored = self.runs.get_mut(&id).ok_or(Error::RunGone(id))?;
        if stored.run.status.is_finished() {
            return Err(Conflict::RunFinished(id).into());
        }
        Ok(stored)
    }

    fn delete_run(&mut self, id: RunId) -> Option<StoredRun> {
        let stored = self.runs.remove(&id)?;
        let run = &stored.run;
        self.unindex_run(run);
        self.by_inserted
            .remove(&(run.device_id, run.inserted_at, run.id));
        if let Some(total) = self.totals.get_mut(&run.device_id) {
            total.0 -= u128::from(run.bytes);
            total.1 -= 1;
            if total.1 == 0 {
                self.totals.remove(&run.device_id);
            }
        }
        Some(stored)
    }

    fn footprint(&self, id: RunId) -> Option<RunFootprint> {
        self.runs.get(&id).map(|s| RunFootprint {
            run_id: s.run.id,
            device_id: s.run.device_id,
            ts: s.run.retention_ts(),
            bytes: s.run.bytes,
            finished: s.run.status.is_finished(),
        })
    }
}

/// The smallest key of a device in the `(device, ts, id)` order.
fn device_start(device: DeviceId) -> (DeviceId, DateTime<Utc>, RunId) {
    (device, DateTime::<Utc>::MIN_UTC, RunId(i64::MIN))
}

fn device_end(device: DeviceId) -> (DeviceId, DateTime<Utc>, RunId) {
    (device, DateTime::<Utc>::MAX_UTC, RunId(i64::MAX))
}

#[async_trait]
impl DeviceStore for InMemoryRunStore {
    async fn create_device(&self, device: NewDevice) -> Result<Device> {
        let mut state = self.lock()?;
        if state.device_names.contains_key(&device.name) {
            return Err(Conflict::Exists {
                what: "device",
                key: device.name,
            }
            .into());
        }
        state.last_device_id += 1;
        let device = device.into_device(DeviceId(state.last_device_id));
        state.device_names.insert(device.name.clone(), device.id);
        state.devices.insert(device.id, device.clone());
        Ok(device)
    }
    async fn update_device(&self, id: DeviceId, device: NewDevice) -> Result<Device> {
        let mut state = self.lock()?;
        let old = state
            .devices
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::device_not_found(id))?;
        if state
            .device_names
            .get(&device.name)
            .is_some_and(|other| *other != id)
        {
            return Err(Conflict::Exists {
                what: "device",
                key: device.name,
            }
            .into());
        }
        state.device_names.remove(&old.name);
        let device = device.into_device(id);
        state.device_names.insert(device.name.clone(), id);
        state.devices.insert(id, device.clone());
        Ok(device)
    }
    async fn delete_device(&self, id: DeviceId) -> Result<u64> {
        let mut state = self.lock()?;
        let device = state
            .devices
            .remove(&id)
            .ok_or_else(|| Error::device_not_found(id))?;
        state.device_names.remove(&device.name);
        let runs: Vec<RunId> = state
            .runs
            .iter()
            .filter(|(_, s)| s.run.device_id == id)
            .map(|(r, _)| *r)
            .collect();
        for r in &runs {
            state.delete_run(*r);
        }
        Ok(runs.len() as u64)
    }
    async fn create_devices(&self, devices: Vec<NewDevice>) -> Result<Vec<Device>> {
        let mut state = self.lock()?;
        let mut names = HashSet::with_capacity(devices.len());
        for d in &devices {
            if state.device_names.contains_key(&d.name) || !names.insert(d.name.as_str()) {
                return Err(Conflict::Exists {
                    what: "device",
                    key: d.name.clone(),
                }
                .into());
            }
        }
        let mut created = Vec::with_capacity(devices.len());
        for d in devices {
            state.last_device_id += 1;
            let device = d.into_device(DeviceId(state.last_device_id));
            state.device_names.insert(device.name.clone(), device.id);
            state.devices.insert(device.id, device.clone());
            created.push(device);
        }
        Ok(created)
    }
    async fn device(&self, id: DeviceId) -> Result<Device> {
        self.lock()?
            .devices
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::device_not_found(id))
    }
    async fn list_devices(&self) -> Result<Vec<Device>> {
        Ok(self.lock()?.devices.values().cloned().collect())
    }
    async fn unknown_devices(&self, ids: &[DeviceId]) -> Result<Vec<DeviceId>> {
        let state = self.lock()?;
        let mut unknown = dedup_ids(ids);
        unknown.retain(|id| !state.devices.contains_key(id));
        Ok(unknown)
    }
}

#[async_trait]
impl RunLog for InMemoryRunStore {
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<Run> {
        let mut state = self.lock()?;
        if !state.devices.contains_key(&run.device_id) {
            return Err(Error::device_not_found(run.device_id));
        }
        if let Some(b) = &run.bulk_ref
            && state
                .bulks
                .get(b)
                .is_some_and(|s| s.bulk.cancelled_at.is_some())
        {
            return Err(Conflict::BulkCancelled(b.clone()).into());
        }
        state.last_run_id += 1;
        let run = Run {
            id: RunId(state.last_run_id),
            device_id: run.device_id,
            command: run.command,
            requested_by: run.requested_by,
            bulk_ref: run.bulk_ref,
            status: RunStatus::Running,
            exit_status: None,
            error_kind: None,
            error_message: None,
            inserted_at: now,
            started_at: Some(now),
            finished_at: None,
            bytes: 0,
            chunks: 0,
            truncated: false,
            credential_ref: None,
            redacted: false,
        };
        state.index_run(&run);
        state
            .by_inserted
            .insert((run.device_id, run.inserted_at, run.id));
        state.totals.entry(run.device_id).or_default().1 += 1;
        state.runs.insert(
            run.id,
            StoredRun {
                run: run.clone(),
                chunks: Vec::new(),
                cancel_requested: false,
            },
        );
        Ok(run)
    }
    async fn append_chunk(
        &self,
        run_id: RunId,
        stream: OutputStream,
        data: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ChunkAppended> {
        let mut state = self.lock()?;
        let stored = state.live_run(run_id)?;
        let len = data.len() as u64;
        let run_bytes = stored
            .run
            .bytes
            .checked_add(len)
            .ok_or_else(|| Error::backend(format!("run {run_id} byte count overflows u64")))?;
        let seq = stored.run.chunks;
        stored.chunks.push(RunChunk {
            run_id,
            seq,
            stream,
            data: Bytes::copy_from_slice(data),
            inserted_at: now,
        });
        stored.run.bytes = run_bytes;
        stored.run.chunks += 1;
        let device = stored.run.device_id;
        state.totals.entry(device).or_default().0 += u128::from(len);
        Ok(ChunkAppended { seq, run_bytes })
    }
    async fn finish_run(
        &self,
        run_id: RunId,
        finish: RunFinish,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        if finish.status == RunStatus::Running {
            return Err(ValidationError::Field {
                field: "status",
                reason: "a run cannot finish as running".into(),
            }
            .into());
        }
        let mut state = self.lock()?;
        let before = state.live_run(run_id)?.run.clone();
        state.unindex_run(&before);
        let stored = state.live_run(run_id)?;
        stored.run.status = finish.status;
        stored.run.exit_status = finish.exit_status;
        stored.run.error_kind = finish.error_kind;
        stored.run.error_message = finish.error_message;
        stored.run.truncated = finish.truncated;
        stored.run.credential_ref = finish.credential_ref;
        stored.run.redacted = finish.redacted;
        stored.run.finished_at = Some(now);
        let run = stored.run.clone();
        state.index_run(&run);
        Ok(run)
    }
    async fn request_run_cancel(&self, run_id: RunId, _now: DateTime<Utc>) -> Result<Run> {
        let mut state = self.lock()?;
        let stored = state
            .runs
            .get_mut(&run_id)
            .ok_or_else(|| Error::run_not_found(run_id))?;
        if stored.run.status.is_finished() {
            return Err(Conflict::RunFinished(run_id).into());
        }
        stored.cancel_requested = true;
        Ok(stored.run.clone())
    }
    async fn cancel_requests(&self, bulks: &[BulkRef], runs: &[RunId]) -> Result<CancelRequests> {
        let state = self.lock()?;
        Ok(CancelRequests {
            bulks: bulks
                .iter()
                .filter(|b| {
                    state
                        .bulks
                        .get(b)
                        .is_some_and(|s| s.bulk.cancelled_at.is_some())
                })
                .cloned()
                .collect(),
            runs: runs
                .iter()
                .copied()
                .filter(|r| state.runs.get(r).is_some_and(|s| s.cancel_requested))
                .collect(),
        })
    }
    async fn run(&self, id: RunId) -> Result<Run> {
        self.lock()?
            .runs
            .get(&id)
            .map(|s| s.run.clone())
            .ok_or_else(|| Error::run_not_found(id))
    }
    async fn chunks(&self, run_id: RunId, from_seq: u64, limit: usize) -> Result<Vec<RunChunk>> {
        let state = self.lock()?;
        let Some(stored) = state.runs.get(&run_id) else {
            return Ok(Vec::new());
        };
        let from = usize::try_from(from_seq).unwrap_or(usize::MAX);
        Ok(stored
            .chunks
            .iter()
            .skip(from)
            .take(limit)
            .cloned()
            .collect())
    }
    async fn device_runs(&self, device_id: DeviceId, limit: usize) -> Result<Vec<Run>> {
        let state = self.lock()?;
        Ok(state
            .by_inserted
            .range(device_start(device_id)..=device_end(device_id))
            .rev()
            .take(limit)
            .filter_map(|(_, _, id)| state.runs.get(id).map(|s| s.run.clone()))
            .collect())
    }

    /// A scan: every run's whole output, newest first (no index to keep).
    async fn search_runs(&self, query: &SearchQuery) -> Result<Vec<Run>> {
        netauto_core::search::check_text(&query.text)?;
        let state = self.lock()?;
        let mut ids: Vec<RunId> = state.runs.keys().copied().collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut found = Vec::new();
        for id in ids {
            let stored = &state.runs[&id];
            let Some(device) = state.devices.get(&stored.run.device_id) else {
                continue;
            };
            if !query.admits(&stored.run, device) {
                continue;
            }
            let output: Vec<u8> = stored
                .chunks
                .iter()
                .flat_map(|c| c.data.iter().copied())
                .collect();
            if query.found_in(&String::from_utf8_lossy(&output)) {
                found.push(stored.run.clone());
                if found.len() == query.page_size() {
                    break;
                }
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl netauto_core::TokenStore for InMemoryRunStore {
    async fn create_token(
        &self,
        token: netauto_core::NewApiToken,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::ApiToken> {
        let mut state = self.lock()?;
        if state.tokens.values().any(|(_, h)| *h == token.hash) {
            return Err(Conflict::Exists {
                what: "token",
                key: token.name,
            }
            .into());
        }
        let id = state.tokens.keys().next_back().map_or(1, |last| last + 1);
        let stored = netauto_core::ApiToken {
            id,
            user: token.user,
            name: token.name,
            created_at: now,
            expires_at: token.expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        state.tokens.insert(id, (stored.clone(), token.hash));
        Ok(stored)
    }
    async fn tokens_of(&self, user: &str) -> Result<Vec<netauto_core::ApiToken>> {
        Ok(self
            .lock()?
            .tokens
            .values()
            .rev()
            .filter(|(t, _)| t.user == user)
            .map(|(t, _)| t.clone())
            .collect())
    }
    async fn revoke_token(
        &self,
        id: i64,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::ApiToken> {
        let mut state = self.lock()?;
        match state.tokens.get_mut(&id) {
            Some((t, _)) if t.user == user => {
                t.revoked_at.get_or_insert(now);
                Ok(t.clone())
            }
            _ => Err(Error::NotFound {
                what: "token",
                id: id.to_string(),
            }),
        }
    }
    async fn use_token(
        &self,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<netauto_core::ApiToken>> {
        let mut state = self.lock()?;
        Ok(state
            .tokens
            .values_mut()
            .find(|(t, h)| h == hash && t.is_live(now))
            .map(|(t, _)| {
                if t.last_used_at
                    .is_none_or(|u| now - u >= chrono::TimeDelta::minutes(1))
                {
                    t.last_used_at = Some(now);
                }
                t.clone()
            }))
    }
}

fn no_user(name: &str) -> Error {
    Error::NotFound {
        what: "user",
        id: name.to_owned(),
    }
}

#[async_trait]
impl netauto_core::TeamStore for InMemoryRunStore {
    async fn create_user(
        &self,
        user: netauto_core::NewUser,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::User> {
        let mut state = self.lock()?;
        if state.users.contains_key(&user.name) {
            return Err(Conflict::Exists {
                what: "user",
                key: user.name,
            }
            .into());
        }
        let stored = netauto_core::User {
            name: user.name.clone(),
            role: user.role,
            password_hash: user.password_hash,
            created_at: now,
            updated_at: now,
        };
        state.users.insert(user.name, stored.clone());
        Ok(stored)
    }
    async fn user(&self, name: &str) -> Result<Option<netauto_core::User>> {
        Ok(self.lock()?.users.get(name).cloned())
    }
    async fn users(&self) -> Result<Vec<netauto_core::User>> {
        Ok(self.lock()?.users.values().cloned().collect())
    }
    async fn set_user_role(
        &self,
        name: &str,
        role: netauto_core::Role,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::User> {
        let mut state = self.lock()?;
        let user = state.users.get_mut(name).ok_or_else(|| no_user(name))?;
        user.role = role;
        user.updated_at = now;
        Ok(user.clone())
    }
    async fn set_user_password(
        &self,
        name: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::User> {
        let mut state = self.lock()?;
        let user = state.users.get_mut(name).ok_or_else(|| no_user(name))?;
        hash.clone_into(&mut user.password_hash);
        user.updated_at = now;
        Ok(user.clone())
    }
    async fn remove_user(&self, name: &str, now: DateTime<Utc>) -> Result<netauto_core::User> {
        let mut state = self.lock()?;
        let user = state.users.remove(name).ok_or_else(|| no_user(name))?;
        for (t, _) in state.tokens.values_mut().filter(|(t, _)| t.user == name) {
            t.revoked_at.get_or_insert(now);
        }
        Ok(user)
    }
    async fn record_audit(
        &self,
        event: netauto_core::NewAuditEvent,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::AuditEvent> {
        let mut state = self.lock()?;
        state.last_audit_id += 1;
        let stored = event.stored(state.last_audit_id, now);
        state.audit.insert(stored.id, stored.clone());
        Ok(stored)
    }
    async fn audit_events(
        &self,
        query: &netauto_core::AuditQuery,
    ) -> Result<Vec<netauto_core::AuditEvent>> {
        Ok(self
            .lock()?
            .audit
            .values()
            .rev()
            .filter(|e| query.admits(e))
            .take(query.page_size())
            .cloned()
            .collect())
    }
    async fn prune_audit(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let mut state = self.lock()?;
        let before = state.audit.len();
        state.audit.retain(|_, e| e.at >= cutoff);
        state.deliveries.retain(|_, d| d.at >= cutoff);
        Ok((before - state.audit.len()) as u64)
    }
    async fn create_webhook(
        &self,
        w: netauto_core::NewWebhook,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::Webhook> {
        let mut state = self.lock()?;
        state.last_webhook_id += 1;
        let stored = netauto_core::Webhook {
            id: state.last_webhook_id,
            url: w.url,
            events: w.events,
            failed_threshold: w.failed_threshold,
            secret: w.secret,
            created_by: w.created_by,
            created_at: now,
        };
        state.webhooks.insert(stored.id, stored.clone());
        Ok(stored)
    }
    async fn webhooks(&self) -> Result<Vec<netauto_core::Webhook>> {
        Ok(self.lock()?.webhooks.values().cloned().collect())
    }
    async fn delete_webhook(&self, id: i64) -> Result<netauto_core::Webhook> {
        let mut state = self.lock()?;
        let gone = state.webhooks.remove(&id).ok_or_else(|| Error::NotFound {
            what: "webhook",
            id: id.to_string(),
        })?;
        state.deliveries.retain(|_, d| d.webhook_id != id);
        Ok(gone)
    }
    async fn record_delivery(
        &self,
        d: netauto_core::NewWebhookDelivery,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::WebhookDelivery> {
        let mut state = self.lock()?;
        if !state.webhooks.contains_key(&d.webhook_id) {
            return Err(Error::NotFound {
                what: "webhook",
                id: d.webhook_id.to_string(),
            });
        }
        state.last_delivery_id += 1;
        let stored = d.stored(state.last_delivery_id, now);
        state.deliveries.insert(stored.id, stored.clone());
        Ok(stored)
    }
    async fn deliveries(
        &self,
        webhook_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<netauto_core::WebhookDelivery>> {
        Ok(self
            .lock()?
            .deliveries
            .values()
            .rev()
            .filter(|d| webhook_id.is_none_or(|w| d.webhook_id == w))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl BulkStore for InMemoryRunStore {
    async fn bulk_runs(&self, bulk_ref: &BulkRef, device_ids: &[DeviceId]) -> Result<Vec<Run>> {
        let state = self.lock()?;
        let mut runs: Vec<Run> = dedup_ids(device_ids)
            .into_iter()
            .flat_map(|d| state.by_inserted.range(device_start(d)..=device_end(d)))
            .filter_map(|(_, _, id)| state.runs.get(id))
            .filter(|s| s.run.bulk_ref.as_ref() == Some(bulk_ref))
            .map(|s| s.run.clone())
            .collect();
        runs.sort_unstable_by_key(|r| r.id);
        Ok(runs)
    }
    async fn create_bulk(
        &self,
        bulk: NewBulk,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<(Bulk, Vec<Enqueued>)> {
        let mut state = self.lock()?;
        if state.bulks.contains_key(&bulk.bulk_ref) {
            return Err(Conflict::Exists {
                what: "bulk",
                key: bulk.bulk_ref.to_string(),
            }
            .into());
        }
        let enqueued = self.queue.lock()?.enqueue_all(jobs, now)?;
        let device_ids = dedup_ids(&bulk.device_ids);
        let bulk = Bulk {
            bulk_ref: bulk.bulk_ref,
            command: bulk.command,
            requested_by: bulk.requested_by,
            counters: BulkCounters::new(device_ids.len() as u64),
            device_ids,
            created_at: now,
            finished_at: None,
            cancelled_at: None,
            limits: bulk.limits,
            parent: bulk.parent,
            outcomes: BTreeMap::new(),
        };
        let members = bulk.device_ids.iter().copied().collect();
        state.bulks.insert(
            bulk.bulk_ref.clone(),
            StoredBulk {
                bulk: bulk.clone(),
                members,
            },
        );
        Ok((bulk, enqueued))
    }
    async fn bulk(&self, bulk_ref: &BulkRef) -> Result<Bulk> {
        self.lock()?
            .bulks
            .get(bulk_ref)
            .map(|s| s.bulk.clone())
            .ok_or_else(|| Error::bulk_not_found(bulk_ref))
    }
    async fn list_bulks(&self, query: &BulkQuery) -> Result<Vec<BulkSummary>> {
        let state = self.lock()?;
        let mut found: Vec<BulkSummary> = state
            .bulks
            .values()
            .map(|s| BulkSummary::from(&s.bulk))
            .filter(|b| query.matches(b))
            .collect();
        found.sort_by(|a, b| {
            (b.created_at, b.bulk_ref.as_str()).cmp(&(a.created_at, a.bulk_ref.as_str()))
        });
        found.truncate(query.page_size());
        Ok(found)
    }
    async fn device_outcomes(
        &self,
        bulk_ref: &BulkRef,
        device_ids: &[DeviceId],
    ) -> Result<Vec<DeviceOutcome>> {
        let state = self.lock()?;
        let stored = state
            .bulks
            .get(bulk_ref)
            .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
        Ok(dedup_ids(device_ids)
            .iter()
            .filter_map(|id| stored.bulk.outcomes.get(id).cloned())
            .collect())
    }
    async fn record_outcome(
        &self,
        bulk_ref: &BulkRef,
        outcome: DeviceOutcome,
    ) -> Result<OutcomeRecorded> {
        if outcome.status == RunStatus::Running {
            return Err(ValidationError::Field {
                field: "status",
                reason: "an outcome cannot be running".into(),
            }
            .into());
        }
        let mut state = self.lock()?;
        let stored = state
            .bulks
            .get_mut(bulk_ref)
            .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
        if !stored.members.contains(&outcome.device_id) {
            return Err(ValidationError::Field {
                field: "device_id",
                reason: format!(
                    "device {} is not part of bulk {bulk_ref}",
                    outcome.device_id
                ),
            }
            .into());
        }
        let bulk = &mut stored.bulk;
        if bulk.outcomes.contains_key(&outcome.device_id) {
            return Ok(OutcomeRecorded {
                counters: bulk.counters,
                newly_recorded: false,
                completed_now: false,
            });
        }
        bulk.counters.count(outcome.status);
        let completed_now = bulk.counters.pending == 0;
        if completed_now {
            bulk.finished_at = Some(outcome.recorded_at);
        }
        bulk.outcomes.insert(outcome.device_id, outcome);
        Ok(OutcomeRecorded {
            counters: bulk.counters,
            newly_recorded: true,
            completed_now,
        })
    }
    async fn cancel_bulk(&self, bulk_ref: &BulkRef, now: DateTime<Utc>) -> Result<BulkCancelled> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let stored = state
            .bulks
            .get_mut(bulk_ref)
            .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
        let bulk = &mut stored.bulk;
        if bulk.cancelled_at.is_some() || bulk.finished_at.is_some() {
            return Ok(BulkCancelled {
                counters: bulk.counters,
                newly_cancelled: false,
                devices_cancelled: 0,
                completed_now: false,
            });
        }
        bulk.cancelled_at = Some(now);
        // The newest run of this bulk per device, and whether it is still running.
        let mut latest: HashMap<DeviceId, (RunId, bool)> = HashMap::new();
        for d in &bulk.device_ids {
            if bulk.outcomes.contains_key(d) {
                continue;
            }
            let newest = state
                .by_inserted
                .range(device_start(*d)..=device_end(*d))
                .filter_map(|(_, _, id)| state.runs.get(id))
                .filter(|s| s.run.bulk_ref.as_ref() == Some(bulk_ref))
                .max_by_key(|s| s.run.id);
            if let Some(s) = newest {
                latest.insert(*d, (s.run.id, !s.run.status.is_finished()));
            }
        }
        let mut cancelled = 0;
        for d in bulk.device_ids.clone() {
            if bulk.outcomes.contains_key(&d) {
                continue;
            }
            let run = latest.get(&d).copied();
            if run.is_some_and(|(_, running)| running) {
                continue;
            }
            bulk.counters.count(RunStatus::Cancelled);
            bulk.outcomes.insert(
                d,
                DeviceOutcome {
                    device_id: d,
                    run_id: run.map(|(id, _)| id),
                    status: RunStatus::Cancelled,
                    error_kind: Some("cancelled".to_owned()),
                    recorded_at: now,
                    truncated: false,
                },
            );
            cancelled += 1;
        }
        let completed_now = cancelled > 0 && bulk.counters.pending == 0;
        if completed_now {
            bulk.finished_at = Some(now);
        }
        Ok(BulkCancelled {
            counters: bulk.counters,
            newly_cancelled: true,
            devices_cancelled: cancelled,
            completed_now,
        })
    }
}

#[async_trait]
impl RetentionStore for InMemoryRunStore {
    async fn device_totals(&self) -> Result<Vec<DeviceTotal>> {
        let state = self.lock()?;
        Ok(state
            .totals
            .iter()
            .map(|(device_id, (bytes, runs))| DeviceTotal {
                device_id: *device_id,
                bytes: u64::try_from(*bytes).unwrap_or(u64::MAX),
                runs: *runs,
            })
            .collect())
    }
    async fn device_footprints(
        &self,
        devices: &[DeviceId],
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        let mut devices = devices.to_vec();
        devices.sort_unstable();
        devices.dedup();
        let state = self.lock()?;
        let mut page = Vec::new();
        for device in devices {
            if page.len() >= limit {
                break;
            }
            let start = match after {
                Some(c) if c.device_id > device => continue,
                Some(c) if c.device_id == device => Bound::Excluded((c.device_id, c.ts, c.run_id)),
                _ => Bound::Included(device_start(device)),
            };
            let keys = state
                .by_device
                .range((start, Bound::Included(device_end(device))))
                .take(limit - page.len());
            page.extend(keys.filter_map(|(_, _, id)| state.footprint(*id)));
        }
        Ok(page)
    }
    async fn aged_footprints(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        let state = self.lock()?;
        let start = after.map_or(Bound::Unbounded, |c| Bound::Excluded((c.ts, c.run_id)));
        Ok(state
            .by_ts
            .range((start, Bound::Unbounded))
            .take_while(|(ts, _)| *ts < cutoff)
            .take(limit)
            .filter_map(|(_, id)| state.footprint(*id))
            .collect())
    }
    async fn delete_runs(&self, ids: &[RunId], guard: DeleteGuard) -> Result<DeletedRuns> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut state = self.lock()?;
        let mut deleted = DeletedRuns::default();
        for id in ids {
            let allowed = state
                .runs
                .get(&id)
                .is_some_and(|s| guard.allows(s.run.retention_ts(), s.run.status.is_finished()));
            if !allowed {
                continue;
            }
            if let Some(stored) = state.delete_run(id) {
                deleted.ids.push(id);
                deleted.bytes = deleted.bytes.saturating_add(stored.run.bytes);
                deleted.chunks += stored.chunks.len() as u64;
            }
        }
        Ok(deleted)
    }
}
