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
    /// The bulk this one runs again ("Run again on failed devices"), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<BulkRef>,
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
    /// The bulk this one runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<BulkRef>,
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

/// Where a bulk stands, for lists and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkStatus {
    /// Devices are still pending.
    Running,
    /// Every device has an outcome and the bulk was not cancelled.
    Finished,
    /// The bulk was cancelled (whether its last devices stopped yet or not).
    Cancelled,
}

impl BulkStatus {
    /// All statuses.
    pub const ALL: [BulkStatus; 3] = [Self::Running, Self::Finished, Self::Cancelled];

    /// `running`, `finished` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for BulkStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BulkStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s.trim())
            .ok_or_else(|| format!("unknown bulk status {s:?} (running, finished, cancelled)"))
    }
}

/// One bulk in a list: no device ids, no outcomes (see
/// [`crate::BulkStore::list_bulks`](crate::BulkStore::list_bulks)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkSummary {
    /// The reference.
    pub bulk_ref: BulkRef,
    /// The command.
    pub command: String,
    /// Who asked.
    pub requested_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Counters.
    pub counters: BulkCounters,
    /// When the last outcome was recorded.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The bulk this one runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<BulkRef>,
}

impl From<&Bulk> for BulkSummary {
    fn from(bulk: &Bulk) -> Self {
        Self {
            bulk_ref: bulk.bulk_ref.clone(),
            command: bulk.command.clone(),
            requested_by: bulk.requested_by.clone(),
            created_at: bulk.created_at,
            counters: bulk.counters,
            finished_at: bulk.finished_at,
            cancelled_at: bulk.cancelled_at,
            parent: bulk.parent.clone(),
        }
    }
}

impl BulkSummary {
    /// Where it stands.
    pub fn status(&self) -> BulkStatus {
        if self.cancelled_at.is_some() {
            BulkStatus::Cancelled
        } else if self.counters.pending == 0 {
            BulkStatus::Finished
        } else {
            BulkStatus::Running
        }
    }

    /// The cursor that lists the bulks after this one.
    pub fn cursor(&self) -> BulkCursor {
        BulkCursor {
            created_at: self.created_at,
            bulk_ref: self.bulk_ref.clone(),
        }
    }
}

/// A position in the newest-first list of bulks: the list continues with bulks created
/// before `created_at` (or at it, with a smaller reference). Shown as `MICROS.REF` in URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BulkCursor {
    /// The last listed bulk's creation time.
    pub created_at: DateTime<Utc>,
    /// And its reference.
    pub bulk_ref: BulkRef,
}

impl std::fmt::Display for BulkCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.bulk_ref
        )
    }
}

impl std::str::FromStr for BulkCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a bulk list cursor (MICROS.REF)");
        let (micros, bulk_ref) = s.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        Ok(Self {
            created_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
            bulk_ref: BulkRef::parse(bulk_ref).map_err(|_| bad())?,
        })
    }
}

/// Which bulks [`crate::BulkStore::list_bulks`](crate::BulkStore::list_bulks) answers:
/// newest first, every filter set must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BulkQuery {
    /// Exactly this requester.
    pub requested_by: Option<String>,
    /// This status.
    pub status: Option<BulkStatus>,
    /// The command contains this text (case-insensitive for ASCII letters).
    pub command: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Only the bulks that run this one again.
    pub parent: Option<BulkRef>,
    /// Continue after this bulk (keyset pagination).
    pub after: Option<BulkCursor>,
    /// At most this many (the store caps it at [`MAX_BULK_PAGE`]).
    pub limit: usize,
}

/// The most bulks one [`crate::BulkStore::list_bulks`](crate::BulkStore::list_bulks) call
/// answers.
pub const MAX_BULK_PAGE: usize = 500;

impl BulkQuery {
    /// The newest `limit` bulks, no filter.
    pub fn newest(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// A `since`/`until` bound as people type it: a day `YYYY-MM-DD` (its midnight, UTC) or
    /// an RFC 3339 time.
    pub fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
        let v = value.trim();
        if let Ok(day) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            && let Some(midnight) = day.and_hms_opt(0, 0, 0)
        {
            return Ok(midnight.and_utc());
        }
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| format!("{v:?} is not a day (YYYY-MM-DD) or an RFC 3339 time"))
    }

    /// The page size to use: `limit` within 1..=[`MAX_BULK_PAGE`].
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_BULK_PAGE)
    }

    /// Whether `bulk` passes every filter and comes after the cursor: the rule every
    /// backend implements (the in-memory one with this function).
    pub fn matches(&self, bulk: &BulkSummary) -> bool {
        self.requested_by
            .as_ref()
            .is_none_or(|r| *r == bulk.requested_by)
            && self.status.is_none_or(|s| s == bulk.status())
            && self.command.as_ref().is_none_or(|c| {
                bulk.command
                    .to_ascii_lowercase()
                    .contains(&c.to_ascii_lowercase())
            })
            && self
                .parent
                .as_ref()
                .is_none_or(|p| bulk.parent.as_ref() == Some(p))
            && self.since.is_none_or(|t| bulk.created_at >= t)
            && self.until.is_none_or(|t| bulk.created_at < t)
            && self.after.as_ref().is_none_or(|a| {
                (bulk.created_at, bulk.bulk_ref.as_str()) < (a.created_at, a.bulk_ref.as_str())
            })
    }
}
