#![doc = include_str!("../../README.md")]
//!
//! # netauto-core
//!
//! ## Overview
//!
//! * Domain types: [`Device`], [`Run`], [`RunChunk`], [`Bulk`], [`Job`].
//! * The four backend traits: [`JobQueue`], [`RunStore`], [`NetworkClient`], [`ProgressSink`].
//! * Pure policies: the purge planner ([`retention`]) and bulk validation/chunking
//!   ([`validation`]).
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

mod bulk;
mod clock;
pub mod cron;
mod device;
mod error;
mod hub;
mod ids;
mod job;
pub mod limits;
mod network;
mod progress;
mod queue;
pub mod retention;
mod run;
pub mod runner;
pub mod services;
mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validation;
pub mod worker;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use bulk::{
    Bulk, BulkCancelled, BulkCounters, BulkState, CancelRequests, DeviceOutcome, NewBulk,
    OutcomeRecorded,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use device::{Device, NewDevice};
pub use error::{BoxError, CommandError, ConfigError, Conflict, Error, Result, ValidationError};
pub use hub::{DEFAULT_HUB_CAPACITY, LocalProgressHub};
pub use ids::{BulkRef, DeviceId, InvalidBulkRef, JobId, RunId};
pub use job::{
    ClaimRequest, DEFAULT_MAX_ATTEMPTS, Enqueued, FailAction, Job, JobFailure, JobFilter, JobState,
    NewJob,
};
pub use limits::{ExecLimits, LimitOverrides};
pub use network::{
    ExecOptions, ExitStatus, NetworkClient, NetworkError, OutputEvent, OutputEvents, TimeoutPhase,
};
pub use progress::{
    BulkEvent, FeedItem, ProgressEvent, ProgressSink, RunEvent, Subscription, run_topic,
};
pub use queue::JobQueue;
pub use run::{
    ChunkAppended, NewRun, OutputStream, Run, RunChunk, RunFinish, RunStatus, UnknownStatus,
};
pub use store::RunStore;

#[cfg(any(test, feature = "mock"))]
pub use network::MockNetworkClient;
#[cfg(any(test, feature = "mock"))]
pub use progress::MockProgressSink;
#[cfg(any(test, feature = "mock"))]
pub use queue::MockJobQueue;
#[cfg(any(test, feature = "mock"))]
pub use store::MockRunStore;

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
