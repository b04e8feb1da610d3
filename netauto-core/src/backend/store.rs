//! The store: [`RunStore`] is every capability a backend's store has — [`DeviceStore`]
//! (devices), [`RunLog`] (runs and their output), [`BulkStore`] (bulk records and outcomes)
//! and [`RetentionStore`] (the queries and deletes of a purge). Code that needs the whole
//! store takes `Arc<dyn RunStore>`; supertrait methods are callable on it directly.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::bulk::{
    Bulk, BulkCancelled, BulkQuery, BulkState, BulkSummary, CancelRequests, DeviceOutcome, NewBulk,
    OutcomeRecorded,
};
use crate::model::device::{Device, NewDevice};
use crate::model::ids::{BulkRef, DeviceId, RunId};
use crate::model::job::{Enqueued, NewJob};
use crate::model::run::{ChunkAppended, NewRun, OutputStream, Run, RunChunk, RunFinish};
use crate::model::team::{
    AuditEvent, AuditQuery, NewAuditEvent, NewUser, NewWebhook, NewWebhookDelivery, Role, User,
    Webhook, WebhookDelivery,
};
use crate::model::token::{ApiToken, NewApiToken};
use crate::retention::{DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, RunFootprint};
use crate::search::SearchQuery;

/// Devices: what commands run on. Part of [`RunStore`].
#[async_trait]
pub trait DeviceStore: Send + Sync + Debug + 'static {
    /// Creates a device. A duplicate name is [`Conflict::Exists`](crate::Conflict::Exists).
    async fn create_device(&self, device: NewDevice) -> Result<Device>;

    /// Creates several devices atomically (an inventory import): all of them, or — on any
    /// error, e.g. a duplicate name in the batch or in the store
    /// ([`Conflict::Exists`](crate::Conflict::Exists)) — none. Answers them in input order.
    ///
    /// The default creates them one by one and is **not** atomic; every backend overrides it
    /// (the conformance suite checks that), wrappers should forward it.
    async fn create_devices(&self, devices: Vec<NewDevice>) -> Result<Vec<Device>> {
        let mut created = Vec::with_capacity(devices.len());
        for d in devices {
            created.push(self.create_device(d).await?);
        }
        Ok(created)
    }

    /// One device, or [`Error::NotFound`](crate::Error::NotFound).
    async fn device(&self, id: DeviceId) -> Result<Device>;

    /// All devices, ascending id.
    async fn list_devices(&self) -> Result<Vec<Device>>;

    /// The ids of `ids` that are not devices, in the order given (duplicates kept once).
    async fn unknown_devices(&self, ids: &[DeviceId]) -> Result<Vec<DeviceId>>;

    /// Replaces every field of device `id` with `device`'s. An unknown id is
    /// [`Error::NotFound`](crate::Error::NotFound); another device's name is
    /// [`Conflict::Exists`](crate::Conflict::Exists).
    async fn update_device(&self, id: DeviceId, device: NewDevice) -> Result<Device>;

    /// Deletes device `id` with its runs and their output (and their search index entries).
    /// Answers how many runs went with it. An unknown id is
    /// [`Error::NotFound`](crate::Error::NotFound).
    async fn delete_device(&self, id: DeviceId) -> Result<u64>;
}

/// Runs and their output chunks, and run cancel requests. Part of [`RunStore`].
#[async_trait]
pub trait RunLog: Send + Sync + Debug + 'static {
    /// Creates a `running` run with `inserted_at = started_at = now`, `bytes = 0`.
    /// An unknown device is [`Error::NotFound`](crate::Error::NotFound). A run of a bulk that
    /// was cancelled is refused with [`Conflict::BulkCancelled`](crate::Conflict::BulkCancelled),
    /// atomically with [`cancel_bulk`](crate::BulkStore::cancel_bulk): a run is either created before
    /// the cancel (and seen by it as running) or refused.
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<Run>;

    /// Appends a chunk with the next `seq` and adds its length to the run's `bytes`, atomically.
    /// A run that no longer exists answers [`Error::RunGone`](crate::Error::RunGone); a
    /// finished run answers [`Conflict::RunFinished`](crate::Conflict::RunFinished).
    async fn append_chunk(
        &self,
        run_id: RunId,
        stream: OutputStream,
        data: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ChunkAppended>;

    /// Asks the node running a run to stop it: the run keeps running until that node sees the
    /// request (see [`cancel_requests`](crate::RunLog::cancel_requests)) and finishes it `cancelled`.
    /// Answers the run. A finished run is
    /// [`Conflict::RunFinished`](crate::Conflict::RunFinished); an unknown one
    /// [`Error::NotFound`](crate::Error::NotFound). Asking twice is harmless.
    async fn request_run_cancel(&self, run_id: RunId, now: DateTime<Utc>) -> Result<Run>;

    /// Which of `bulks` are cancelled and which of `runs` have a cancel request: what a node
    /// polls for the runs and bulks it is running. Unknown refs and ids are left out.
    async fn cancel_requests(&self, bulks: &[BulkRef], runs: &[RunId]) -> Result<CancelRequests>;

    /// Finishes a running run (`finished_at = now`). A deleted run is
    /// [`Error::RunGone`](crate::Error::RunGone); an already finished one is
    /// [`Conflict::RunFinished`](crate::Conflict::RunFinished); a `Running` status in
    /// `finish` is a validation error.
    async fn finish_run(&self, run_id: RunId, finish: RunFinish, now: DateTime<Utc>)
    -> Result<Run>;

    /// One run, or [`Error::NotFound`](crate::Error::NotFound).
    async fn run(&self, id: RunId) -> Result<Run>;

    /// Chunks of a run with `seq >= from_seq`, ascending, at most `limit`. For live tailing.
    async fn chunks(&self, run_id: RunId, from_seq: u64, limit: usize) -> Result<Vec<RunChunk>>;

    /// The newest runs of a device, newest first, at most `limit`.
    async fn device_runs(&self, device_id: DeviceId, limit: usize) -> Result<Vec<Run>>;

    /// Runs whose output contains `query.text` (case-insensitive) and that pass every filter
    /// ([`SearchQuery::admits`]), newest first (descending id), at most its page size.
    /// Continue with `query.before = Some(last.id)`. The index behind it is kept in step with
    /// [`append_chunk`](RunLog::append_chunk) (a running run's stored output is found) and
    /// with [`delete_runs`](crate::RetentionStore::delete_runs) (a purged run is never
    /// found). See [`crate::search`] for the exact meaning.
    async fn search_runs(&self, query: &SearchQuery) -> Result<Vec<Run>>;
}

/// Bulk records: their devices, outcomes, counters and cancels. Part of [`RunStore`].
#[async_trait]
pub trait BulkStore: Send + Sync + Debug + 'static {
    /// The runs of a bulk on the given devices, whatever their status, ascending id. A bulk
    /// job uses this to recognise devices a previous attempt already ran.
    async fn bulk_runs(&self, bulk_ref: &BulkRef, device_ids: &[DeviceId]) -> Result<Vec<Run>>;

    /// Creates the bulk record (all devices pending) and enqueues `jobs` in one atomic step:
    /// afterwards both exist or neither does. A duplicate reference is
    /// [`Conflict::Exists`](crate::Conflict::Exists).
    async fn create_bulk(
        &self,
        bulk: NewBulk,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<(Bulk, Vec<Enqueued>)>;

    /// The bulk with all its outcomes, or [`Error::NotFound`](crate::Error::NotFound).
    async fn bulk(&self, bulk_ref: &BulkRef) -> Result<Bulk>;

    /// Bulks newest first (`created_at`, then reference, descending) that pass every filter
    /// of `query` ([`BulkQuery::matches`] is the rule), at most its page size, without their
    /// devices and outcomes. Continue with `query.after = Some(last.cursor())`: keyset
    /// pagination, as fast on the thousandth page as on the first.
    async fn list_bulks(&self, query: &BulkQuery) -> Result<Vec<BulkSummary>>;

    /// The bulk's counters and `finished_at` only: what a live view polls. The default reads
    /// the whole bulk; backends answer from the bulk's own row.
    async fn bulk_state(&self, bulk_ref: &BulkRef) -> Result<BulkState> {
        let bulk = self.bulk(bulk_ref).await?;
        Ok(BulkState {
            created_at: bulk.created_at,
            counters: bulk.counters,
            finished_at: bulk.finished_at,
            cancelled_at: bulk.cancelled_at,
        })
    }

    /// The recorded outcomes of the given devices of a bulk (devices without one are left out).
    async fn device_outcomes(
        &self,
        bulk_ref: &BulkRef,
        device_ids: &[DeviceId],
    ) -> Result<Vec<DeviceOutcome>>;

    /// Cancels a bulk, atomically: sets `cancelled_at = now` and records a `cancelled` outcome
    /// (with the device's latest run of this bulk, if any) for every device that has no
    /// outcome and no `running` run of this bulk. Devices with a running run are left to the
    /// node running them, which sees the cancel through [`cancel_requests`](crate::RunLog::cancel_requests).
    /// A bulk already cancelled or finished changes nothing (`newly_cancelled: false`). An
    /// unknown bulk is [`Error::NotFound`](crate::Error::NotFound).
    async fn cancel_bulk(&self, bulk_ref: &BulkRef, now: DateTime<Utc>) -> Result<BulkCancelled>;

    /// Records a device's outcome, at most once per device: a second call for the same device
    /// changes nothing and answers `newly_recorded: false`. Exactly one call per bulk answers
    /// `completed_now: true` (the one that recorded the last pending device; it also sets
    /// `finished_at`), however many run concurrently. A device that is not part of the bulk
    /// is a validation error.
    async fn record_outcome(
        &self,
        bulk_ref: &BulkRef,
        outcome: DeviceOutcome,
    ) -> Result<OutcomeRecorded>;
}

/// What a purge reads and deletes. Part of [`RunStore`].
#[async_trait]
pub trait RetentionStore: Send + Sync + Debug + 'static {
    /// Per-device byte totals and run counts over all runs (running ones included), ascending
    /// device id; devices without runs are left out. Totals beyond `u64::MAX` saturate.
    async fn device_totals(&self) -> Result<Vec<DeviceTotal>>;

    /// One page of the footprints of `devices` ordered by `(device_id, retention_ts, id)`,
    /// starting strictly after `after`, at most `limit`. An empty page means the end.
    async fn device_footprints(
        &self,
        devices: &[DeviceId],
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>>;

    /// One page of the footprints of all runs with `retention_ts < cutoff`, ordered by
    /// `(retention_ts, id)`, starting strictly after `after` (`after.device_id` is ignored),
    /// at most `limit`.
    async fn aged_footprints(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>>;

    /// Deletes the given runs and their chunks in one transaction, each only if it still
    /// passes `guard` (runs that changed since planning, or are already gone, are kept or
    /// skipped). Answers what was deleted.
    async fn delete_runs(&self, ids: &[RunId], guard: DeleteGuard) -> Result<DeletedRuns>;
}

/// Storage of devices, runs, their output and bulk records: every store capability.
///
/// A backend's store shares its database with the backend's [`JobQueue`](crate::JobQueue)
/// so that [`create_bulk`](BulkStore::create_bulk) can write the bulk and its jobs in one
/// transaction. The semantics are checked for every backend by
/// [`conformance`](crate::conformance) (feature `conformance`). A backend implements the four
/// capability traits; `RunStore` comes with them. A wrapper forwards every method of each
/// (`#[deny(clippy::missing_trait_methods)]` on its impls), provided ones included.
pub trait RunStore:
    DeviceStore + RunLog + BulkStore + RetentionStore + TokenStore + TeamStore
{
}

impl<T: DeviceStore + RunLog + BulkStore + RetentionStore + TokenStore + TeamStore> RunStore for T {}

/// API tokens: stored hashed, looked up by hash. Part of [`RunStore`].
#[async_trait]
pub trait TokenStore: Send + Sync + Debug + 'static {
    /// Stores a token; a second token with the same hash is
    /// [`Conflict::Exists`](crate::Conflict::Exists).
    async fn create_token(&self, token: NewApiToken, now: DateTime<Utc>) -> Result<ApiToken>;

    /// A user's tokens, newest first, revoked and expired ones included.
    async fn tokens_of(&self, user: &str) -> Result<Vec<ApiToken>>;

    /// Revokes token `id` of `user` (at once, on every node). Another user's or an unknown
    /// token is [`Error::NotFound`](crate::Error::NotFound); revoking twice keeps the first
    /// time.
    async fn revoke_token(&self, id: i64, user: &str, now: DateTime<Utc>) -> Result<ApiToken>;

    /// The live token (not revoked, not expired at `now`) with this hash, its last use set
    /// to `now` when it was unset or at least a minute old (so that frequent calls do not
    /// all write); `None` for anything else.
    async fn use_token(&self, hash: &str, now: DateTime<Utc>) -> Result<Option<ApiToken>>;
}

/// User accounts with their role, the audit log, and webhooks with their delivery log. Part
/// of [`RunStore`].
#[async_trait]
pub trait TeamStore: Send + Sync + Debug + 'static {
    /// Creates an account; a taken name is [`Conflict::Exists`](crate::Conflict::Exists).
    async fn create_user(&self, user: NewUser, now: DateTime<Utc>) -> Result<User>;

    /// The account named `name`, if there is one.
    async fn user(&self, name: &str) -> Result<Option<User>>;

    /// Every account, by name.
    async fn users(&self) -> Result<Vec<User>>;

    /// Sets an account's role; an unknown name is [`Error::NotFound`](crate::Error::NotFound).
    async fn set_user_role(&self, name: &str, role: Role, now: DateTime<Utc>) -> Result<User>;

    /// Sets an account's password hash; an unknown name is
    /// [`Error::NotFound`](crate::Error::NotFound).
    async fn set_user_password(&self, name: &str, hash: &str, now: DateTime<Utc>) -> Result<User>;

    /// Removes an account and revokes its API tokens at `now`, in one transaction (a name
    /// added again later does not get the old tokens back); an unknown name is
    /// [`Error::NotFound`](crate::Error::NotFound).
    async fn remove_user(&self, name: &str, now: DateTime<Utc>) -> Result<User>;

    /// Appends an entry to the audit log, stamped `now`.
    async fn record_audit(&self, event: NewAuditEvent, now: DateTime<Utc>) -> Result<AuditEvent>;

    /// One page of the audit log, newest first (see [`AuditQuery`]).
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;

    /// Deletes the audit entries and webhook delivery records older than `cutoff`; answers
    /// how many audit entries.
    async fn prune_audit(&self, cutoff: DateTime<Utc>) -> Result<u64>;

    /// Stores a webhook.
    async fn create_webhook(&self, webhook: NewWebhook, now: DateTime<Utc>) -> Result<Webhook>;

    /// Every webhook, by id.
    async fn webhooks(&self) -> Result<Vec<Webhook>>;

    /// Deletes a webhook and its delivery records; an unknown id is
    /// [`Error::NotFound`](crate::Error::NotFound).
    async fn delete_webhook(&self, id: i64) -> Result<Webhook>;

    /// Records a delivery attempt, stamped `now`.
    async fn record_delivery(
        &self,
        delivery: NewWebhookDelivery,
        now: DateTime<Utc>,
    ) -> Result<WebhookDelivery>;

    /// The newest `limit` delivery attempts (of one webhook, or of all), newest first.
    async fn deliveries(
        &self,
        webhook_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>>;
}

#[cfg(any(test, feature = "mock"))]
mockall::mock! {
    /// A mockall mock of the whole store (every capability trait).
    pub RunStore {}

    #[async_trait]
    impl DeviceStore for RunStore {
        async fn create_device(&self, device: NewDevice) -> Result<Device>;
        async fn create_devices(&self, devices: Vec<NewDevice>) -> Result<Vec<Device>>;
        async fn device(&self, id: DeviceId) -> Result<Device>;
        async fn list_devices(&self) -> Result<Vec<Device>>;
        async fn unknown_devices(&self, ids: &[DeviceId]) -> Result<Vec<DeviceId>>;
        async fn update_device(&self, id: DeviceId, device: NewDevice) -> Result<Device>;
        async fn delete_device(&self, id: DeviceId) -> Result<u64>;
    }

    #[async_trait]
    impl RunLog for RunStore {
        async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<Run>;
        async fn append_chunk(
            &self,
            run_id: RunId,
            stream: OutputStream,
            data: &[u8],
            now: DateTime<Utc>,
        ) -> Result<ChunkAppended>;
        async fn request_run_cancel(&self, run_id: RunId, now: DateTime<Utc>) -> Result<Run>;
        async fn cancel_requests(&self, bulks: &[BulkRef], runs: &[RunId]) -> Result<CancelRequests>;
        async fn finish_run(&self, run_id: RunId, finish: RunFinish, now: DateTime<Utc>)
        -> Result<Run>;
        async fn run(&self, id: RunId) -> Result<Run>;
        async fn chunks(&self, run_id: RunId, from_seq: u64, limit: usize) -> Result<Vec<RunChunk>>;
        async fn device_runs(&self, device_id: DeviceId, limit: usize) -> Result<Vec<Run>>;
        async fn search_runs(&self, query: &SearchQuery) -> Result<Vec<Run>>;
    }

    #[async_trait]
    impl BulkStore for RunStore {
        async fn bulk_runs(&self, bulk_ref: &BulkRef, device_ids: &[DeviceId]) -> Result<Vec<Run>>;
        async fn create_bulk(
            &self,
            bulk: NewBulk,
            jobs: Vec<NewJob>,
            now: DateTime<Utc>,
        ) -> Result<(Bulk, Vec<Enqueued>)>;
        async fn bulk(&self, bulk_ref: &BulkRef) -> Result<Bulk>;
        async fn list_bulks(&self, query: &BulkQuery) -> Result<Vec<BulkSummary>>;
        async fn bulk_state(&self, bulk_ref: &BulkRef) -> Result<BulkState>;
        async fn device_outcomes(
            &self,
            bulk_ref: &BulkRef,
            device_ids: &[DeviceId],
        ) -> Result<Vec<DeviceOutcome>>;
        async fn cancel_bulk(&self, bulk_ref: &BulkRef, now: DateTime<Utc>) -> Result<BulkCancelled>;
        async fn record_outcome(
            &self,
            bulk_ref: &BulkRef,
            outcome: DeviceOutcome,
        ) -> Result<OutcomeRecorded>;
    }

    #[async_trait]
    impl RetentionStore for RunStore {
        async fn device_totals(&self) -> Result<Vec<DeviceTotal>>;
        async fn device_footprints(
            &self,
            devices: &[DeviceId],
            after: Option<FootprintCursor>,
            limit: usize,
        ) -> Result<Vec<RunFootprint>>;
        async fn aged_footprints(
            &self,
            cutoff: DateTime<Utc>,
            after: Option<FootprintCursor>,
            limit: usize,
        ) -> Result<Vec<RunFootprint>>;
        async fn delete_runs(&self, ids: &[RunId], guard: DeleteGuard) -> Result<DeletedRuns>;
    }
}

#[cfg(any(test, feature = "mock"))]
#[async_trait]
impl TokenStore for MockRunStore {
    async fn create_token(&self, token: NewApiToken, _now: DateTime<Utc>) -> Result<ApiToken> {
        Err(crate::Error::Validation(crate::ValidationError::Field {
            field: "token",
            reason: format!("the mock store keeps no tokens ({})", token.name),
        }))
    }
    async fn tokens_of(&self, _user: &str) -> Result<Vec<ApiToken>> {
        Ok(Vec::new())
    }
    async fn revoke_token(&self, id: i64, _user: &str, _now: DateTime<Utc>) -> Result<ApiToken> {
        Err(crate::Error::NotFound {
            what: "token",
            id: id.to_string(),
        })
    }
    async fn use_token(&self, _hash: &str, _now: DateTime<Utc>) -> Result<Option<ApiToken>> {
        Ok(None)
    }
}

#[cfg(any(test, feature = "mock"))]
#[async_trait]
impl TeamStore for MockRunStore {
    async fn create_user(&self, user: NewUser, _now: DateTime<Utc>) -> Result<User> {
        Err(crate::Error::Validation(crate::ValidationError::Field {
            field: "user",
            reason: format!("the mock store keeps no users ({})", user.name),
        }))
    }
    async fn user(&self, _name: &str) -> Result<Option<User>> {
        Ok(None)
    }
    async fn users(&self) -> Result<Vec<User>> {
        Ok(Vec::new())
    }
    async fn set_user_role(&self, name: &str, _role: Role, _now: DateTime<Utc>) -> Result<User> {
        Err(crate::Error::NotFound {
            what: "user",
            id: name.to_owned(),
        })
    }
    async fn set_user_password(
        &self,
        name: &str,
        _hash: &str,
        _now: DateTime<Utc>,
    ) -> Result<User> {
        Err(crate::Error::NotFound {
            what: "user",
            id: name.to_owned(),
        })
    }
    async fn remove_user(&self, name: &str, _now: DateTime<Utc>) -> Result<User> {
        Err(crate::Error::NotFound {
            what: "user",
            id: name.to_owned(),
        })
    }
    async fn record_audit(&self, event: NewAuditEvent, now: DateTime<Utc>) -> Result<AuditEvent> {
        // Accepted and forgotten: handlers that audit still work against the mock.
        Ok(event.stored(0, now))
    }
    async fn audit_events(&self, _query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        Ok(Vec::new())
    }
    async fn prune_audit(&self, _cutoff: DateTime<Utc>) -> Result<u64> {
        Ok(0)
    }
    async fn create_webhook(&self, webhook: NewWebhook, _now: DateTime<Utc>) -> Result<Webhook> {
        Err(crate::Error::Validation(crate::ValidationError::Field {
            field: "webhook",
            reason: format!("the mock store keeps no webhooks ({})", webhook.url),
        }))
    }
    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        Ok(Vec::new())
    }
    async fn delete_webhook(&self, id: i64) -> Result<Webhook> {
        Err(crate::Error::NotFound {
            what: "webhook",
            id: id.to_string(),
        })
    }
    async fn record_delivery(
        &self,
        d: NewWebhookDelivery,
        now: DateTime<Utc>,
    ) -> Result<WebhookDelivery> {
        Ok(d.stored(0, now))
    }
    async fn deliveries(
        &self,
        _webhook_id: Option<i64>,
        _limit: usize,
    ) -> Result<Vec<WebhookDelivery>> {
        Ok(Vec::new())
    }
}

#[cfg(any(test, feature = "mock"))]
impl Debug for MockRunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockRunStore")
    }
}
