//! Retention: the policy (age + per-device byte cap, `policy.rs`), its configuration from the
//! environment (`config.rs`), the pure purge planner (`planner.rs`) and the worker that
//! carries a plan out in batches (`worker.rs`).
//!
//! # Semantics
//!
//! * A run's retention timestamp is `finished_at`, or `inserted_at` while it runs. Timestamps
//!   after `now` are clamped to `now` (and counted). Runs are ordered by `(ts, id)`.
//! * **Age rule**: a run with `ts < now − max_age` is deleted (one exactly at the cutoff stays).
//! * **Byte rule**, per device, on what the age rule left: when the device's total (running
//!   runs included) exceeds `max_bytes`, the shortest oldest-first prefix of its *finished*
//!   runs that brings the total to `≤ max_bytes` is deleted. Running runs are never deleted by
//!   this rule. A device that stays over the cap even with all its finished runs deleted is
//!   reported *unresolved* (and all its finished runs are deleted).
//! * Each run has one reason (age first). The plan is a pure function of (footprints, policy,
//!   now): independent of input order, idempotent, and prefix-confluent: after deleting any
//!   prefix of [`PurgePlan::deletions`], planning again yields the rest.

mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod oracle;
mod planner;
mod policy;
#[cfg(test)]
mod proptests;
mod worker;

pub use config::{DEFAULT_MAX_BYTES, DEFAULT_MAX_DAYS, DEFAULT_RETENTION_CRON, RetentionConfig};
pub use planner::{PlanBuilder, plan_purge};
pub use policy::{
    DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, PlannedDeletion, PurgePlan,
    PurgeReason, ReasonTotals, RetentionPolicy, RunFootprint,
};
pub use worker::{
    DEFAULT_BATCH_RUNS, DEFAULT_PAGE, Deleted, PurgeReport, RetentionArgs, RetentionWorker,
};
