#![doc = include_str!("../../README.md")]
//!
//! # netauto-core
//!
//! ## Overview
//!
//! One module per concept:
//!
//! * Domain types: [`Device`], [`Run`], [`RunChunk`], [`Bulk`], [`Job`] (plain data).
//! * The four backend traits: [`JobQueue`], [`RunStore`], [`NetworkClient`], [`ProgressSink`],
//!   and the in-process feed [`LocalProgressHub`].
//! * [`exec`]: one command on one device into stored chunks ([`exec::Executor`]), under
//!   [`ExecLimits`] and cancellable.
//! * [`bulk`]: validation, [`bulk::BulkService`] (enqueue, cancel) and [`bulk::BulkJob`].
//! * [`follow`]: [`follow::follow_bulk`] and [`follow::follow_run`], the one way to watch a
//!   bulk or a run.
//! * [`runtime`]: the [`runtime::Runner`] and its maintenance tasks, workers, cron, clock.
//! * [`retention`]: the policy, its configuration, the pure purge planner and the worker.
//!
//! ## Backends
//!
//! * `netauto-memory`: in-process, for tests and demos.
//! * `netauto-sqlx`: SQLite (embedded default) and PostgreSQL (many worker nodes).
//! * `netauto-ssh`: the SSH [`NetworkClient`] and a device simulator.
//!
//! ## Feature flags
//!
//! * `mock`: mockall mocks of the traits (`MockJobQueue`, `MockRunStore`,
//!   `MockNetworkClient`, `MockProgressSink`).
//! * `testing`: Oban.Testing-style helpers ([`testing`]): perform a job, assert what is
//!   enqueued, drain a queue, inline mode.
//! * `conformance`: the backend conformance suite ([`conformance`]) and the
//!   [`conformance_tests!`] macro.
//!
//! ## Errors
//!
//! Every fallible call answers [`Error`], whose variants say what happened (not which backend
//! failed) and whose [`Error::is_retryable`] says whether trying again can help.

mod backend;
pub mod bulk;
pub mod diff;
mod env;
mod error;
pub mod exec;
pub mod export;
pub mod follow;
mod model;
pub mod platform;
pub mod prelude;
pub mod retention;
pub mod runtime;
pub mod search;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use backend::hub::{DEFAULT_HUB_CAPACITY, LocalProgressHub};
pub use backend::network::{
    ExecOptions, ExitStatus, NetworkClient, NetworkError, OutputEvent, OutputEvents, Rejection,
    RejectionKind, TimeoutPhase,
};
pub use backend::progress::{
    BulkEvent, FeedItem, ProgressEvent, ProgressSink, RunEvent, Subscription, run_topic,
};
pub use backend::queue::JobQueue;
pub use backend::store::{
    BulkStore, DeviceStore, RetentionStore, RunLog, RunStore, TeamStore, TokenStore,
};
pub use error::{BoxError, CommandError, ConfigError, Conflict, Error, Result, ValidationError};
pub use exec::{ExecLimits, LimitOverrides};
pub use model::bulk::{
    Bulk, BulkCancelled, BulkCounters, BulkCursor, BulkQuery, BulkState, BulkStatus, BulkSummary,
    CancelRequests, DeviceOutcome, MAX_BULK_PAGE, NewBulk, OutcomeRecorded,
};
pub use model::device::{Device, NewDevice};
pub use model::ids::{BulkRef, DeviceId, InvalidBulkRef, JobId, RunId};
pub use model::job::{
    ClaimRequest, DEFAULT_MAX_ATTEMPTS, Enqueued, FailAction, Job, JobCount, JobFailure, JobFilter,
    JobState, NewJob, QueuePause,
};
pub use model::run::{
    ChunkAppended, NewRun, OutputStream, Run, RunChunk, RunFinish, RunStatus, UnknownStatus,
};
pub use model::team::{
    AuditEvent, AuditQuery, MAX_AUDIT_PAGE, MAX_USER_NAME, NewAuditEvent, NewUser, NewWebhook,
    NewWebhookDelivery, Role, User, Webhook, WebhookDelivery, check_user_name,
};
pub use model::token::{ApiToken, NewApiToken};
pub use runtime::{Clock, ManualClock, SystemClock};

#[cfg(any(test, feature = "mock"))]
pub use backend::network::MockNetworkClient;
#[cfg(any(test, feature = "mock"))]
pub use backend::progress::MockProgressSink;
#[cfg(any(test, feature = "mock"))]
pub use backend::queue::MockJobQueue;
#[cfg(any(test, feature = "mock"))]
pub use backend::store::MockRunStore;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<Error>();
        assert_send_sync::<Device>();
        assert_send_sync::<Run>();
        assert_send_sync::<Job>();
        assert_send_sync::<Bulk>();
        assert_send_sync::<ProgressEvent>();
        assert_send_sync::<retention::PurgePlan>();
        assert_send_sync::<std::sync::Arc<dyn JobQueue>>();
        assert_send_sync::<std::sync::Arc<dyn RunStore>>();
        assert_send_sync::<std::sync::Arc<dyn NetworkClient>>();
        assert_send_sync::<std::sync::Arc<dyn ProgressSink>>();
    }
}
