//! What both backends decide alike around their SQL: what a write accepts, what a bulk's
//! counters gain, and how the rows a statement answered become the store's answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use netauto_core::{
    Bulk, BulkCancelled, BulkCounters, BulkRef, CancelRequests, ChunkAppended, Conflict, DeviceId,
    DeviceOutcome, Enqueued, Error, NewBulk, NewJob, OutcomeRecorded, Result, Run, RunFinish,
    RunId, RunStatus, ValidationError,
};

use crate::rows::{self, StoredRow};

/// A count or position as bound: SQL integers are signed, so larger values are clamped.
pub(crate) fn clamp(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Validates every job of a batch before any is written.
pub(crate) fn validate_jobs(jobs: &[NewJob]) -> Result<()> {
    Ok(jobs.iter().try_for_each(NewJob::validate)?)
}

/// A run cannot finish as running.
pub(crate) fn check_finish(finish: &RunFinish) -> Result<()> {
    refuse_running(finish.status, "a run cannot finish as running")
}

/// An outcome cannot be running.
pub(crate) fn check_outcome(outcome: &DeviceOutcome) -> Result<()> {
    refuse_running(outcome.status, "an outcome cannot be running")
}

fn refuse_running(status: RunStatus, reason: &str) -> Result<()> {
    if status == RunStatus::Running {
        return Err(ValidationError::Field {
            field: "status",
            reason: reason.into(),
        }
        .into());
    }
    Ok(())
}

/// What the conditional insert of a run answered: the run, or nothing because its bulk
/// is cancelled.
pub(crate) fn inserted_run<R: StoredRow>(row: Option<R>, bulk_ref: Option<BulkRef>) -> Result<Run> {
    match (row, bulk_ref) {
        (Some(row), _) => rows::run(&row),
        (None, Some(bulk_ref)) => Err(Conflict::BulkCancelled(bulk_ref).into()),
        (None, None) => Err(Error::backend(
            "a run insert without a bulk inserted nothing",
        )),
    }
}

/// A chunk's answer from the run row it was counted in (`chunks, bytes` after the append).
pub(crate) fn chunk_appended(run: &impl StoredRow) -> Result<(i64, ChunkAppended)> {
    let seq = run.int("chunks")? - 1;
    let run_bytes = run.int("bytes")? as u64;
    Ok((
        seq,
        ChunkAppended {
            seq: seq as u64,
            run_bytes,
        },
    ))
}

/// The bulks (`ref` rows) and runs (`id` rows) found with a cancel request.
pub(crate) fn cancel_requests<R: StoredRow>(bulks: &[R], runs: &[R]) -> Result<CancelRequests> {
    Ok(CancelRequests {
        bulks: bulks
            .iter()
            .map(|r| rows::bulk_ref(&r.text("ref")?))
            .collect::<Result<_>>()?,
        runs: runs
            .iter()
            .map(|r| r.int("id").map(RunId))
            .collect::<Result<_>>()?,
    })
}

/// A new bulk as created: no outcome yet.
pub(crate) fn new_bulk(
    bulk: NewBulk,
    device_ids: Vec<DeviceId>,
    created_at: DateTime<Utc>,
) -> Bulk {
    Bulk {
        bulk_ref: bulk.bulk_ref,
        command: bulk.command,
        requested_by: bulk.requested_by,
        counters: BulkCounters::new(device_ids.len() as u64),
        device_ids,
        created_at,
        finished_at: None,
        cancelled_at: None,
        limits: bulk.limits,
        parent: bulk.parent,
        outcomes: BTreeMap::new(),
    }
}

/// What recording one outcome of `status` adds to a bulk's `ok`, `failed` and `cancelled`
/// counters (`newly`: the device had no outcome yet).
pub(crate) fn increments(newly: bool, status: RunStatus) -> (i64, i64, i64) {
    match (newly, status) {
        (false, _) => (0, 0, 0),
        (true, RunStatus::Ok) => (1, 0, 0),
        (true, RunStatus::Cancelled) => (0, 0, 1),
        (true, _) => (0, 1, 0),
    }
}

/// An outcome for a device that is not part of the bulk.
pub(crate) fn not_a_member(bulk_ref: &BulkRef, device_id: DeviceId) -> Error {
    ValidationError::Field {
        field: "device_id",
        reason: format!("device {device_id} is not part of bulk {bulk_ref}"),
    }
    .into()
}

/// The answer of `record_outcome` from the bulk's counters after it.
pub(crate) fn outcome_recorded(newly: bool, bulk: &impl StoredRow) -> Result<OutcomeRecorded> {
    let counters = rows::counters(bulk)?;
    Ok(OutcomeRecorded {
        counters,
        newly_recorded: newly,
        completed_now: newly && counters.pending == 0,
    })
}

/// The answer of `cancel_bulk` that cancelled `n` devices, from the bulk's counters after it.
pub(crate) fn bulk_cancelled(n: i64, bulk: &impl StoredRow) -> Result<BulkCancelled> {
    let counters = rows::counters(bulk)?;
    Ok(BulkCancelled {
        counters,
        newly_cancelled: true,
        devices_cancelled: n as u64,
        completed_now: n > 0 && counters.pending == 0,
    })
}

/// The answer of `cancel_bulk` for a bulk already cancelled or finished.
pub(crate) fn not_cancelled_now(bulk: &impl StoredRow) -> Result<BulkCancelled> {
    Ok(BulkCancelled {
        counters: rows::counters(bulk)?,
        newly_cancelled: false,
        devices_cancelled: 0,
        completed_now: false,
    })
}

/// Inserts `jobs` one after the other on `conn` (a transaction) with the backend's
/// `insert`, stopping at the first error.
pub(crate) async fn insert_each<C: ?Sized>(
    conn: &mut C,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
    mut insert: impl AsyncFnMut(&mut C, NewJob, DateTime<Utc>) -> Result<Enqueued>,
) -> Result<Vec<Enqueued>> {
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        out.push(insert(&mut *conn, job, now).await?);
    }
    Ok(out)
}
