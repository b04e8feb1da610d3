//! [`FaultyStore`]: the one test [`RunStore`] wrapper. It forwards every call — every method
//! of the trait, so that a wrapped backend keeps its atomic `create_devices` and its cheap
//! `bulk_state` — and injects the faults a test asks for:
//!
//! * purge batches ([`crate::RetentionStore::delete_runs`]) that fail after a number of calls (an
//!   interrupted purge, a node dying between transactions), recorded by size;
//! * batches announced on stdout and slowed down, so that a test can kill a purge process
//!   between or inside batches;
//! * `create_run` refused while the test says the database is down.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backend::store::{BulkStore, DeviceStore, RetentionStore, RunLog, RunStore};
use crate::error::{Error, Result};
use crate::model::bulk::{
    Bulk, BulkCancelled, BulkQuery, BulkState, BulkSummary, CancelRequests, DeviceOutcome, NewBulk,
    OutcomeRecorded,
};
use crate::model::device::{Device, NewDevice};
use crate::model::ids::{BulkRef, DeviceId, RunId};
use crate::model::job::{Enqueued, NewJob};
use crate::model::run::{ChunkAppended, NewRun, OutputStream, Run, RunChunk, RunFinish};
use crate::retention::{DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, RunFootprint};

/// Prefix of the line printed after each committed batch when announcing:
/// `BATCH <n> <runs deleted>`.
pub const BATCH: &str = "BATCH ";

/// A [`RunStore`] that forwards everything to another one, with faults on demand.
pub struct FaultyStore {
    inner: Arc<dyn RunStore>,
    fail_after: Option<u64>,
    announce: bool,
    delay: Duration,
    /// The size of each `delete_runs` call, failed ones included.
    deletes: Mutex<Vec<usize>>,
    refuse_runs: AtomicBool,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("fail_after", &self.fail_after)
            .field("delete_calls", &self.delete_calls())
            .field("refuse_runs", &self.refuse_runs.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    /// Passes everything through to `inner`.
    pub fn new(inner: Arc<dyn RunStore>) -> Self {
        Self {
            inner,
            fail_after: None,
            announce: false,
            delay: Duration::ZERO,
            deletes: Mutex::default(),
            refuse_runs: AtomicBool::new(false),
        }
    }

    /// `delete_runs` answers an `Unavailable` error from call `k + 1` on, deleting nothing.
    pub fn fail_after(mut self, k: u64) -> Self {
        self.fail_after = Some(k);
        self
    }

    /// Prints [`BATCH`] lines after each committed batch, then sleeps `delay`.
    pub fn announce(mut self, delay: Duration) -> Self {
        self.announce = true;
        self.delay = delay;
        self
    }

    /// While `refuse` is set, `create_run` fails as an unreachable database would.
    pub fn refuse_runs(&self, refuse: bool) {
        self.refuse_runs.store(refuse, Ordering::SeqCst);
    }

    /// `delete_runs` calls so far (failed ones included).
    pub fn delete_calls(&self) -> u64 {
        self.delete_sizes().len() as u64
    }

    /// How many runs each `delete_runs` call asked to delete, in order (failed ones included).
    pub fn delete_sizes(&self) -> Vec<usize> {
        self.deletes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl DeviceStore for FaultyStore {
    async fn create_device(&self, device: NewDevice) -> Result<Device> {
        self.inner.create_device(device).await
    }
    async fn create_devices(&self, devices: Vec<NewDevice>) -> Result<Vec<Device>> {
        self.inner.create_devices(devices).await
    }
    async fn device(&self, id: DeviceId) -> Result<Device> {
        self.inner.device(id).await
    }
    async fn list_devices(&self) -> Result<Vec<Device>> {
        self.inner.list_devices().await
    }
    async fn unknown_devices(&self, ids: &[DeviceId]) -> Result<Vec<DeviceId>> {
        self.inner.unknown_devices(ids).await
    }
    async fn update_device(&self, id: DeviceId, device: NewDevice) -> Result<Device> {
        self.inner.update_device(id, device).await
    }
    async fn delete_device(&self, id: DeviceId) -> Result<u64> {
        self.inner.delete_device(id).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl RunLog for FaultyStore {
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<Run> {
        if self.refuse_runs.load(Ordering::SeqCst) {
            return Err(Error::unavailable("database restarting"));
        }
        self.inner.create_run(run, now).await
    }
    async fn append_chunk(
        &self,
        run_id: RunId,
        stream: OutputStream,
        data: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ChunkAppended> {
        self.inner.append_chunk(run_id, stream, data, now).await
    }
    async fn request_run_cancel(&self, run_id: RunId, now: DateTime<Utc>) -> Result<Run> {
        self.inner.request_run_cancel(run_id, now).await
    }
    async fn cancel_requests(&self, bulks: &[BulkRef], runs: &[RunId]) -> Result<CancelRequests> {
        self.inner.cancel_requests(bulks, runs).await
    }
    async fn finish_run(
        &self,
        run_id: RunId,
        finish: RunFinish,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        self.inner.finish_run(run_id, finish, now).await
    }
    async fn run(&self, id: RunId) -> Result<Run> {
        self.inner.run(id).await
    }
    async fn chunks(&self, run_id: RunId, from_seq: u64, limit: usize) -> Result<Vec<RunChunk>> {
        self.inner.chunks(run_id, from_seq, limit).await
    }
    async fn device_runs(&self, device_id: DeviceId, limit: usize) -> Result<Vec<Run>> {
        self.inner.device_runs(device_id, limit).await
    }
    async fn search_runs(&self, query: &crate::search::SearchQuery) -> Result<Vec<Run>> {
        self.inner.search_runs(query).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl crate::TokenStore for FaultyStore {
    async fn create_token(
        &self,
        token: crate::NewApiToken,
        now: DateTime<Utc>,
    ) -> Result<crate::ApiToken> {
        self.inner.create_token(token, now).await
    }
    async fn tokens_of(&self, user: &str) -> Result<Vec<crate::ApiToken>> {
        self.inner.tokens_of(user).await
    }
    async fn revoke_token(
        &self,
        id: i64,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<crate::ApiToken> {
        self.inner.revoke_token(id, user, now).await
    }
    async fn use_token(&self, hash: &str, now: DateTime<Utc>) -> Result<Option<crate::ApiToken>> {
        self.inner.use_token(hash, now).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl crate::TeamStore for FaultyStore {
    async fn create_user(&self, user: crate::NewUser, now: DateTime<Utc>) -> Result<crate::User> {
        self.inner.create_user(user, now).await
    }
    async fn user(&self, name: &str) -> Result<Option<crate::User>> {
        self.inner.user(name).await
    }
    async fn users(&self) -> Result<Vec<crate::User>> {
        self.inner.users().await
    }
    async fn set_user_role(
        &self,
        name: &str,
        role: crate::Role,
        now: DateTime<Utc>,
    ) -> Result<crate::User> {
        self.inner.set_user_role(name, role, now).await
    }
    async fn set_user_password(
        &self,
        name: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<crate::User> {
        self.inner.set_user_password(name, hash, now).await
    }
    async fn remove_user(&self, name: &str, now: DateTime<Utc>) -> Result<crate::User> {
        self.inner.remove_user(name, now).await
    }
    async fn record_audit(
        &self,
        event: crate::NewAuditEvent,
        now: DateTime<Utc>,
    ) -> Result<crate::AuditEvent> {
        self.inner.record_audit(event, now).await
    }
    async fn audit_events(&self, query: &crate::AuditQuery) -> Result<Vec<crate::AuditEvent>> {
        self.inner.audit_events(query).await
    }
    async fn prune_audit(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        self.inner.prune_audit(cutoff).await
    }
    async fn create_webhook(
        &self,
        webhook: crate::NewWebhook,
        now: DateTime<Utc>,
    ) -> Result<crate::Webhook> {
        self.inner.create_webhook(webhook, now).await
    }
    async fn webhooks(&self) -> Result<Vec<crate::Webhook>> {
        self.inner.webhooks().await
    }
    async fn delete_webhook(&self, id: i64) -> Result<crate::Webhook> {
        self.inner.delete_webhook(id).await
    }
    async fn record_delivery(
        &self,
        delivery: crate::NewWebhookDelivery,
        now: DateTime<Utc>,
    ) -> Result<crate::WebhookDelivery> {
        self.inner.record_delivery(delivery, now).await
    }
    async fn deliveries(
        &self,
        webhook_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<crate::WebhookDelivery>> {
        self.inner.deliveries(webhook_id, limit).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl BulkStore for FaultyStore {
    async fn bulk_runs(&self, bulk_ref: &BulkRef, device_ids: &[DeviceId]) -> Result<Vec<Run>> {
        self.inner.bulk_runs(bulk_ref, device_ids).await
    }
    async fn create_bulk(
        &self,
        bulk: NewBulk,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<(Bulk, Vec<Enqueued>)> {
        self.inner.create_bulk(bulk, jobs, now).await
    }
    async fn bulk(&self, bulk_ref: &BulkRef) -> Result<Bulk> {
        self.inner.bulk(bulk_ref).await
    }
    async fn list_bulks(&self, query: &BulkQuery) -> Result<Vec<BulkSummary>> {
        self.inner.list_bulks(query).await
    }
    async fn bulk_state(&self, bulk_ref: &BulkRef) -> Result<BulkState> {
        self.inner.bulk_state(bulk_ref).await
    }
    async fn device_outcomes(
        &self,
        bulk_ref: &BulkRef,
        device_ids: &[DeviceId],
    ) -> Result<Vec<DeviceOutcome>> {
        self.inner.device_outcomes(bulk_ref, device_ids).await
    }
    async fn cancel_bulk(&self, bulk_ref: &BulkRef, now: DateTime<Utc>) -> Result<BulkCancelled> {
        self.inner.cancel_bulk(bulk_ref, now).await
    }
    async fn record_outcome(
        &self,
        bulk_ref: &BulkRef,
        outcome: DeviceOutcome,
    ) -> Result<OutcomeRecorded> {
        self.inner.record_outcome(bulk_ref, outcome).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl RetentionStore for FaultyStore {
    async fn device_totals(&self) -> Result<Vec<DeviceTotal>> {
        self.inner.device_totals().await
    }
    async fn device_footprints(
        &self,
        devices: &[DeviceId],
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        self.inner.device_footprints(devices, after, limit).await
    }
    async fn aged_footprints(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        self.inner.aged_footprints(cutoff, after, limit).await
    }
    async fn delete_runs(&self, ids: &[RunId], guard: DeleteGuard) -> Result<DeletedRuns> {
        let n = {
            let mut deletes = self.deletes.lock().unwrap_or_else(PoisonError::into_inner);
            deletes.push(ids.len());
            deletes.len() as u64
        };
        if self.fail_after.is_some_and(|k| n > k) {
            return Err(Error::unavailable(format!(
                "injected fault: purge batch {n} fails"
            )));
        }
        let deleted = self.inner.delete_runs(ids, guard).await?;
        if self.announce {
            println!("{BATCH}{n} {}", deleted.ids.len());
            tokio::time::sleep(self.delay).await;
        }
        Ok(deleted)
    }
}
