//! Bulk records: one command fanned out to many devices.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::exec::LimitOverrides;
use crate::model::ids::{BulkRef, DeviceId, RunId};
use crate::model::run::RunStatus;

/// Counters of a bulk. `ok + failed + cancelled + pending == total` at all times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkCounters {
    /// Devices in the bulk.
    pub total: u64,
    /// Devices whose run finished `ok`.
    pub ok: u64,
    /// Devices whose run finished any other way but cancelled (or could not start).
    pub failed: u64,
    /// Devices cancelled: never started, or stopped, because the bulk or the run was
    /// cancelled.
    #[serde(default)]
    pub cancelled: u64,
    /// Devices without an outcome yet.
    pub pending: u64,
}

impl BulkCounters {
    /// Counters of a fresh bulk of `total` devices.
    pub fn new(total: u64) -> Self {
        Self {
            total,
            ok: 0,
            failed: 0,
            cancelled: 0,
            pending: total,
        }
    }

    /// Counters from the stored `total`, `ok`, `failed` and `cancelled` (pending derived).
    pub fn from_counts(total: u64, ok: u64, failed: u64, cancelled: u64) -> Self {
        Self {
            total,
            ok,
            failed,
            cancelled,
            pending: total.saturating_sub(ok + failed + cancelled),
        }
    }

    /// Devices with an outcome.
    pub fn done(&self) -> u64 {
        self.ok + self.failed + self.cancelled
    }

    /// Whether every device finished `ok`.
    pub fn all_ok(&self) -> bool {
        self.ok == self.total
    }

    /// Adds one outcome of `status` (not `Running`) to the counters.
    pub fn count(&mut self, status: RunStatus) {
        match status {
            RunStatus::Ok => self.ok += 1,
            RunStatus::Cancelled => self.cancelled += 1,
            _ => self.failed += 1,
        }
        self.pending = self.pending.saturating_sub(1);
    }
}

/// What happened on one device of a bulk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOutcome {
    /// The device.
    pub device_id: DeviceId,
    /// Its run, if one was created.
    pub run_id: Option<RunId>,
    /// Final status of the run (never `Running`); `Error` when no run could be created.
    pub status: RunStatus,
    /// Short error kind for failures.
    pub error_kind: Option<String>,
    /// When the outcome was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The run's output was cut at the output cap.
    #[serde(default)]
    pub truncated: bool,
}

impl DeviceOutcome {
    /// Whether this outcome counts as `ok`.
    pub fn is_ok(&self) -> bool {
        self.status.is_ok()
    }
}

/// A bulk as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bulk {
    /// The reference.
    pub bulk_ref: BulkRef,
    /// The command (validated, trimmed).
    pub command: String,
    /// Who asked.
    pub requested_by: String,
    /// The devices, de-duplicated, in the order given.
    pub device_ids: Vec<DeviceId>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Counters.
    pub counters: BulkCounters,
    /// When the last outcome was recorded.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it was cancelled, if it was.
    #[serde(default)]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The deadline and output cap asked for this bulk (empty: each node's defaults).
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Per-device outcomes recorded so far.
    pub outcomes: BTreeMap<DeviceId, DeviceOutcome>,
}

/// Where a bulk stands, without its per-device outcomes (see
/// [`crate::BulkStore::bulk_state`](crate::BulkStore::bulk_state)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkState {
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Counters.
    pub counters: BulkCounters,
    /// When the last outcome was recorded.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// A bulk to create together with its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBulk {
    /// The reference (see [`BulkRef::generate`]).
    pub bulk_ref: BulkRef,
    /// The command (already validated).
    pub command: String,
    /// Who asked.
    pub requested_by: String,
    /// The devices, de-duplicated.
    pub device_ids: Vec<DeviceId>,
    /// The deadline and output cap asked for (already validated).
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// What [`crate::BulkStore::record_outcome`](crate::BulkStore::record_outcome) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeRecorded {
    /// Counters after this call.
    pub counters: BulkCounters,
    /// `false` when the device already had an outcome (this call changed nothing).
    pub newly_recorded: bool,
    /// `true` for exactly one call per bulk: the one that recorded the last pending device.
    pub completed_now: bool,
}

/// What [`crate::BulkStore::cancel_bulk`](crate::BulkStore::cancel_bulk) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkCancelled {
    /// Counters after this call.
    pub counters: BulkCounters,
    /// `false` when the bulk was already cancelled or had already finished (nothing changed).
    pub newly_cancelled: bool,
    /// Devices this call recorded as `cancelled` (those with no outcome and no running run).
    pub devices_cancelled: u64,
    /// `true` when this call recorded the last pending device: the caller publishes the
    /// bulk's one Summary.
    pub completed_now: bool,
}

/// Which of the runs and bulks asked about have a cancel request (see
/// [`crate::RunLog::cancel_requests`](crate::RunLog::cancel_requests)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelRequests {
    /// Cancelled bulks.
    pub bulks: Vec<BulkRef>,
    /// Runs whose cancel was requested.
    pub runs: Vec<RunId>,
}
