//! The backend conformance suite: one function per documented rule of [`JobQueue`] and
//! [`RunStore`], run against every backend (memory, SQLite, PostgreSQL), and the
//! [`ProgressSink`](crate::ProgressSink) checks of [`progress`]
//! ([`progress_conformance_tests!`](crate::progress_conformance_tests)).
//!
//! A backend crate runs the whole suite from an integration test with
//! [`conformance_tests!`](crate::conformance_tests), giving it a constructor of a fresh
//! [`Backend`]:
//!
//! ```ignore
//! // tests/conformance.rs of a backend crate
//! async fn backend() -> Option<netauto_core::conformance::Backend> {
//!     let (queue, store) = my_backend::connect_fresh().await;
//!     Some(netauto_core::conformance::Backend::new(queue, store))
//! }
//!
//! netauto_core::conformance_tests!(backend);
//! ```
//!
//! Each check panics with a message saying which rule was broken. Checks use a fixed base
//! time ([`base_time`]) and explicit `now` values; none of them sleeps. Every check expects an
//! empty backend of its own (its constructor is called once per check, and checks run in
//! parallel), and the store and queue of a [`Backend`] must share one database so that
//! [`crate::BulkStore::create_bulk`] enqueues into that queue.
//!
//! The checks are listed in [`CHECKS`] (as `module::name`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use crate::{DeviceId, JobQueue, NewDevice, NewRun, RunStore};

/// Asserts that a result is an error matching a pattern, naming what was attempted.
macro_rules! assert_err {
    ($res:expr, $pat:pat $(if $guard:expr)?, $($ctx:tt)+) => {
        match $res {
            Err($pat) $(if $guard)? => {}
            other => panic!(
                "{}: expected Err({}), got {:?}",
                format_args!($($ctx)+),
                stringify!($pat),
                other
            ),
        }
    };
}

pub mod bulk;
pub mod cancel;
pub mod lifecycle;
pub mod progress;
pub mod queue;
pub mod retention;
pub mod search;
pub mod store;

/// The backend under test: a queue and a store sharing one database.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The job queue.
    pub queue: Arc<dyn JobQueue>,
    /// The run store; its [`crate::BulkStore::create_bulk`] enqueues into `queue`.
    pub store: Arc<dyn RunStore>,
}

impl Backend {
    /// Wraps a queue and the store that shares its database.
    pub fn new(queue: impl JobQueue, store: impl RunStore) -> Self {
        Self {
            queue: Arc::new(queue),
            store: Arc::new(store),
        }
    }
}

/// The base time of every check: 2026-01-01T00:00:00Z. Checks pass `base_time() + offset`
/// as `now`.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// [`base_time`] plus `secs` seconds.
pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    base_time() + TimeDelta::seconds(secs)
}

/// [`base_time`] plus `days` days.
pub(crate) fn day(days: i64) -> DateTime<Utc> {
    base_time() + TimeDelta::days(days)
}

/// Creates `n` devices named `<prefix>-<i>`, answering their ids in creation order.
pub(crate) async fn devices(b: &Backend, prefix: &str, n: usize) -> Vec<DeviceId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        let device = b
            .store
            .create_device(NewDevice::new(
                &name,
                format!("{name}.example.net"),
                "linux",
                "ops",
            ))
            .await
            .unwrap_or_else(|e| panic!("create_device({name}) failed: {e}"));
        ids.push(device.id);
    }
    ids
}

/// A run of `show version` on `device`.
pub(crate) fn new_run(device: DeviceId) -> NewRun {
    NewRun {
        device_id: device,
        command: "show version".into(),
        requested_by: "conformance".into(),
        bulk_ref: None,
    }
}

/// How long one check may take before it is declared hung.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one check, failing it when it takes longer than [`CHECK_TIMEOUT`] (a deadlock or a
/// lost wake-up in the backend). Used by [`conformance_tests!`](crate::conformance_tests).
pub async fn run_check(name: &str, check: impl Future<Output = ()>) {
    if tokio::time::timeout(CHECK_TIMEOUT, check).await.is_err() {
        panic!("conformance check {name} did not finish within {CHECK_TIMEOUT:?}");
    }
}

/// Every check, as `module::name`, in the order [`conformance_tests!`](crate::conformance_tests)
/// expands them.
pub const CHECKS: &[&str] = crate::__netauto_conformance_checks!(names);

/// The one list of checks. Expands `$crate::__netauto_conformance_expand!` with the given
/// mode followed by every check as `module::name`.
#[doc(hidden)]
#[macro_export]
macro_rules! __netauto_conformance_checks {
    ($($mode:tt)*) => {
        $crate::__netauto_conformance_expand! { [$($mode)*]
            queue::claim_is_exclusive,
            queue::claim_order_is_priority_scheduled_at_id,
            queue::claim_respects_schedule_limit_and_queue,
            queue::unique_key_blocks_duplicates_until_discarded,
            queue::enqueue_all_is_all_or_nothing,
            queue::list_filters_jobs,
            queue::counts_by_queue_and_state,
            queue::paused_queues_are_not_claimed,
            queue::retry_and_discard_jobs,
            queue::finished_since_counts_recent_ends,
            lifecycle::fenced_operations_reject_stale_attempts,
            lifecycle::complete_many_is_fenced,
            lifecycle::fail_retries_then_discards,
            lifecycle::rescue_recovers_only_expired_leases,
            lifecycle::heartbeat_extends_the_lease,
            lifecycle::release_makes_the_job_available,
            lifecycle::cancel_fences_and_is_final,
            lifecycle::prune_deletes_only_old_terminal_jobs,
            store::devices_are_unique_by_name,
            store::create_devices_is_all_or_nothing,
            store::unknown_devices_keep_input_order,
            store::create_run_needs_a_device,
            store::chunks_are_sequenced_and_paged,
            store::concurrent_appends_keep_seq_and_bytes,
            store::finish_run_records_the_outcome,
            store::writes_to_finished_or_deleted_runs_are_typed_errors,
            store::device_runs_are_newest_first,
            store::delete_runs_cascades_to_chunks,
            store::delete_guard_keeps_runs_that_changed,
            store::devices_are_updated_and_deleted_with_their_runs,
            store::api_tokens_work_until_revoked_or_expired,
            store::users_keep_their_role_and_removal_revokes_tokens,
            store::audit_log_pages_filters_and_prunes,
            store::webhooks_keep_their_deliveries,
            bulk::create_bulk_is_atomic,
            bulk::record_outcome_completes_exactly_once,
            bulk::record_outcome_is_idempotent_per_device,
            bulk::record_outcome_rejects_foreign_devices,
            bulk::device_outcomes_filters,
            bulk::list_bulks_filters_and_pages,
            cancel::cancel_bulk_records_devices_not_started,
            cancel::cancel_bulk_completes_and_finished_bulks_stay,
            cancel::cancel_bulk_and_create_run_are_atomic,
            cancel::cancel_requests_report_runs_and_bulks,
            cancel::truncated_runs_and_bulk_limits_are_stored,
            retention::device_totals_match_runs,
            retention::footprint_pages_are_ordered_and_complete,
            retention::store_fed_plan_matches_naive_oracle,
            search::search_finds_substrings_in_stored_output,
            search::search_filters_and_pages,
            search::search_never_finds_purged_runs,
            search::search_one_device_among_many_runs,
        }
    };
}

/// Expands the check list for one mode: `names` (a slice of `module::name` strings) or
/// `tests $ctor` (one `#[tokio::test]` per check).
#[doc(hidden)]
#[macro_export]
macro_rules! __netauto_conformance_expand {
    ([names] $($module:ident :: $check:ident),* $(,)?) => {
        &[$(concat!(stringify!($module), "::", stringify!($check))),*]
    };
    ([tests $ctor:path] $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(backend) = $ctor().await else {
                    return;
                };
                $crate::conformance::run_check(
                    concat!(stringify!($module), "::", stringify!($check)),
                    $crate::conformance::$module::$check(&backend),
                )
                .await;
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per conformance check (see [`CHECKS`]) against the
/// backend built by `$ctor`.
///
/// `$ctor` is the path of an `async fn() -> Option<Backend>` that builds a fresh, empty
/// backend for each check (checks run in parallel). When the backend cannot be had (no
/// database URL configured, server down), the constructor prints `skipped: <reason>` and
/// answers `None`; the check then passes without running.
///
/// The calling crate needs `tokio` as a dev-dependency with the `macros` and
/// `rt-multi-thread` features, because the tests are `#[tokio::test(flavor = "multi_thread")]`
/// functions expanded in that crate:
///
/// ```toml
/// [dev-dependencies]
/// netauto-core = { workspace = true, features = ["conformance"] }
/// tokio = { workspace = true, features = ["macros", "rt-multi-thread"] }
/// ```
///
/// ```ignore
/// async fn memory_backend() -> Option<netauto_core::conformance::Backend> {
///     let (queue, store) = netauto_memory::backend();
///     Some(netauto_core::conformance::Backend::new(queue, store))
/// }
///
/// netauto_core::conformance_tests!(memory_backend);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($ctor:path $(,)?) => {
        $crate::__netauto_conformance_checks! { tests $ctor }
    };
}

#[cfg(test)]
mod tests {
    use super::CHECKS;

    #[test]
    fn checks_are_listed_once() {
        let mut names: Vec<&str> = CHECKS
            .iter()
            .map(|c| c.rsplit("::").next().unwrap())
            .collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(
            before,
            names.len(),
            "a check name appears twice: {CHECKS:?}"
        );
        assert!(CHECKS.len() >= 30);
    }
}
