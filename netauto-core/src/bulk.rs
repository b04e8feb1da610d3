//! Bulk records: one command fanned out to many devices.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{BulkRef, DeviceId, RunId};
use crate::run::RunStatus;

/// Counters of a bulk. `ok + failed + pending == total` at all times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkCounters {
    /// Devices in the bulk.
    pub total: u64,
    /// Devices whose run finished `ok`.
    pub ok: u64,
    /// Devices whose run finished any other way (or could not start).
    pub failed: u64,
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
            pending: total,
        }
    }

    /// Devices with an outcome.
    pub fn done(&self) -> u64 {
        self.ok + self.failed
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
    /// Per-device outcomes recorded so far.
    pub outcomes: BTreeMap<DeviceId, DeviceOutcome>,
}

/// Where a bulk stands, without its per-device outcomes (see
/// [`RunStore::bulk_state`](crate::RunStore::bulk_state)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkState {
    /// Counters.
    pub counters: BulkCounters,
    /// When the last outcome was recorded.
    pub finished_at: Option<DateTime<Utc>>,
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
}

/// What [`RunStore::record_outcome`](crate::RunStore::record_outcome) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeRecorded {
    /// Counters after this call.
    pub counters: BulkCounters,
    /// `false` when the device already had an outcome (this call changed nothing).
    pub newly_recorded: bool,
    /// `true` for exactly one call per bulk: the one that recorded the last pending device.
    pub completed_now: bool,
}
