//! The retention policy and the plain data the planner reads and writes.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::model::ids::{DeviceId, RunId};

/// What the planner needs to know about one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunFootprint {
    /// The run.
    pub run_id: RunId,
    /// Its device.
    pub device_id: DeviceId,
    /// Retention timestamp as stored: `finished_at`, or `inserted_at` while running.
    pub ts: DateTime<Utc>,
    /// Output size.
    pub bytes: u64,
    /// Whether the run has finished.
    pub finished: bool,
}

/// Position in a footprint listing, for paging: the last footprint of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FootprintCursor {
    /// The device of the last footprint.
    pub device_id: DeviceId,
    /// Its retention timestamp.
    pub ts: DateTime<Utc>,
    /// Its run id.
    pub run_id: RunId,
}

impl From<&RunFootprint> for FootprintCursor {
    fn from(fp: &RunFootprint) -> Self {
        Self {
            device_id: fp.device_id,
            ts: fp.ts,
            run_id: fp.run_id,
        }
    }
}

/// A device's byte total over all its runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTotal {
    /// The device.
    pub device_id: DeviceId,
    /// Sum of its runs' bytes (saturating at `u64::MAX`).
    pub bytes: u64,
    /// Number of runs.
    pub runs: u64,
}

/// The re-check [`crate::RetentionStore::delete_runs`](crate::RetentionStore::delete_runs) applies to each run
/// inside its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteGuard {
    /// Delete only if the run's retention timestamp is still before this cutoff (a run that
    /// finished since planning moved past the cutoff and is kept).
    AgedBefore(DateTime<Utc>),
    /// Delete only if the run is finished.
    Finished,
}

impl DeleteGuard {
    /// Whether a run with this retention timestamp and finished state may be deleted.
    pub fn allows(&self, ts: DateTime<Utc>, finished: bool) -> bool {
        match *self {
            Self::AgedBefore(cutoff) => ts < cutoff,
            Self::Finished => finished,
        }
    }
}

/// What one [`crate::RetentionStore::delete_runs`](crate::RetentionStore::delete_runs) call deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedRuns {
    /// The runs deleted, ascending id.
    pub ids: Vec<RunId>,
    /// Their bytes.
    pub bytes: u64,
    /// Their chunks.
    pub chunks: u64,
}

/// Why a run is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeReason {
    /// Older than the maximum age.
    Age,
    /// Its device is over the byte cap.
    Bytes,
}

impl PurgeReason {
    /// `"age"` or `"bytes"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Age => "age",
            Self::Bytes => "bytes",
        }
    }
}

/// The two limits of the retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Runs older than this are deleted.
    pub max_age: TimeDelta,
    /// Per-device byte cap.
    pub max_bytes: u64,
}

impl RetentionPolicy {
    /// A policy of `max_days` days and `max_bytes` bytes per device.
    pub fn new(max_days: u32, max_bytes: u64) -> Self {
        Self {
            max_age: TimeDelta::days(i64::from(max_days)),
            max_bytes,
        }
    }

    /// The age cutoff for `now`: runs with `ts < cutoff` are too old. Saturates at the
    /// earliest representable time.
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_signed(self.max_age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// One run the plan deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlannedDeletion {
    /// The run.
    pub run_id: RunId,
    /// Its retention timestamp, clamped to `now`.
    pub ts: DateTime<Utc>,
    /// Why.
    pub reason: PurgeReason,
}

/// Runs and bytes for one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonTotals {
    /// Runs.
    pub runs: u64,
    /// Bytes (never overflows).
    pub bytes: u128,
}

impl ReasonTotals {
    pub(super) fn add(&mut self, bytes: u64) {
        self.runs += 1;
        self.bytes += u128::from(bytes);
    }
}

/// The result of planning a purge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgePlan {
    /// The `now` planned for.
    pub now: DateTime<Utc>,
    /// The age cutoff.
    pub cutoff: DateTime<Utc>,
    /// The policy.
    pub policy: RetentionPolicy,
    /// The runs to delete, oldest first by `(ts, id)`: all age deletions, then the byte-rule
    /// deletions. Deleting any prefix and planning again yields the rest.
    pub deletions: Vec<PlannedDeletion>,
    /// Deleted by the age rule.
    pub age: ReasonTotals,
    /// Deleted by the byte rule.
    pub bytes: ReasonTotals,
    /// Devices whose total exceeded the cap before anything was deleted.
    pub devices_over_cap_before: u64,
    /// Devices still over the cap after the whole plan (the unresolved ones).
    pub devices_over_cap_after: u64,
    /// Devices that cannot get under the cap (their running runs alone exceed it), ascending.
    pub unresolved: Vec<DeviceId>,
    /// Footprints whose timestamp was after `now` and was clamped.
    pub clamped_future: u64,
}

impl PurgePlan {
    /// Whether the plan deletes nothing.
    pub fn is_empty(&self) -> bool {
        self.deletions.is_empty()
    }

    /// The deletions cut into batches of at most `max_runs` runs, oldest first, each of one
    /// reason, with the guard to delete it under.
    pub fn batches(
        &self,
        max_runs: usize,
    ) -> impl Iterator<Item = (DeleteGuard, &[PlannedDeletion])> + '_ {
        let split = self
            .deletions
            .partition_point(|d| d.reason == PurgeReason::Age);
        let (aged, capped) = self.deletions.split_at(split);
        let max_runs = max_runs.max(1);
        let cutoff = self.cutoff;
        aged.chunks(max_runs)
            .map(move |b| (DeleteGuard::AgedBefore(cutoff), b))
            .chain(capped.chunks(max_runs).map(|b| (DeleteGuard::Finished, b)))
    }
}
