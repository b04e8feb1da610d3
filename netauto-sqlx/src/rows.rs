//! Stored rows decoded into the domain, once for both backends.
//!
//! [`Columns`] reads what every backend stores alike (text, flags, bytes, NULL) through
//! sqlx's own decoding; [`StoredRow`] adds what each backend stores its own way (timestamps
//! are INTEGER microseconds in SQLite and TIMESTAMPTZ in PostgreSQL, PostgreSQL integers
//! come in several widths, JSON is TEXT or JSONB), implemented in each backend's
//! `columns.rs`. The decoders below are written against those two traits only.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use netauto_core::retention::{DeletedRuns, DeviceTotal, RunFootprint};
use netauto_core::{
    Bulk, BulkCounters, BulkRef, BulkState, Device, DeviceId, DeviceOutcome, Job, JobFailure,
    JobId, LimitOverrides, Result, Run, RunChunk, RunId, RunStatus,
};
use serde::de::DeserializeOwned;
use sqlx::{ColumnIndex, Decode, Row, Type, ValueRef};

use crate::error::{corrupt, db};

/// The columns every backend decodes alike.
pub(crate) trait Columns {
    /// A TEXT column.
    fn text(&self, col: &str) -> Result<String>;
    /// A nullable TEXT column.
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    /// A boolean column (an INTEGER 0/1 in SQLite).
    fn flag(&self, col: &str) -> Result<bool>;
    /// A BLOB/BYTEA column.
    fn blob(&self, col: &str) -> Result<Vec<u8>>;
    /// Whether the column is NULL (without decoding it).
    fn is_null(&self, col: &str) -> Result<bool>;
}

impl<R> Columns for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> Result<String> {
        self.try_get(col).map_err(db)
    }

    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(db)
    }

    fn flag(&self, col: &str) -> Result<bool> {
        self.try_get(col).map_err(db)
    }

    fn blob(&self, col: &str) -> Result<Vec<u8>> {
        self.try_get(col).map_err(db)
    }

    fn is_null(&self, col: &str) -> Result<bool> {
        Ok(self.try_get_raw(col).map_err(db)?.is_null())
    }
}

/// A JSON column's value, or the stored text that is not JSON and why.
pub(crate) type LooseJson = std::result::Result<serde_json::Value, (String, serde_json::Error)>;

/// The columns each backend stores its own way.
pub(crate) trait StoredRow: Columns {
    /// An integer column, whatever its width.
    fn int(&self, col: &str) -> Result<i64>;
    /// A nullable integer column, whatever its width.
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    /// A timestamp column.
    fn time(&self, col: &str) -> Result<DateTime<Utc>>;
    /// A nullable timestamp column.
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
    /// A JSON column.
    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T>;
    /// A JSON column that may hold text that is not JSON (written behind the store's back).
    fn loose_json(&self, col: &str) -> Result<LooseJson>;
}

/// A stored run status.
pub(crate) fn status(s: &str) -> Result<RunStatus> {
    s.parse().map_err(|_| corrupt("status", s))
}

/// A stored bulk reference.
pub(crate) fn bulk_ref(s: &str) -> Result<BulkRef> {
    BulkRef::parse(s).map_err(|e| corrupt("bulk ref", e))
}

/// A `devices` row.
pub(crate) fn device(r: &impl StoredRow) -> Result<Device> {
    Ok(Device {
        id: DeviceId(r.int("id")?),
        name: r.text("name")?,
        host: r.text("host")?,
        port: u16::try_from(r.int("port")?).map_err(|e| corrupt("port", e))?,
        platform: r.text("platform")?,
        username: r.text("username")?,
        credential_ref: r.opt_text("credential_ref")?,
        tags: r.json("tags")?,
        site: r.opt_text("site")?,
        jump_host: r.opt_text("jump_host")?,
        vars: r.json("vars")?,
    })
}

/// A `runs` row.
pub(crate) fn run(r: &impl StoredRow) -> Result<Run> {
    Ok(Run {
        id: RunId(r.int("id")?),
        device_id: DeviceId(r.int("device_id")?),
        command: r.text("command")?,
        requested_by: r.text("requested_by")?,
        bulk_ref: r
            .opt_text("bulk_ref")?
            .as_deref()
            .map(bulk_ref)
            .transpose()?,
        status: status(&r.text("status")?)?,
        exit_status: r.opt_int("exit_status")?.map(|c| c as i32),
        error_kind: r.opt_text("error_kind")?,
        error_message: r.opt_text("error_message")?,
        inserted_at: r.time("inserted_at")?,
        started_at: r.opt_time("started_at")?,
        finished_at: r.opt_time("finished_at")?,
        bytes: r.int("bytes")? as u64,
        chunks: r.int("chunks")? as u64,
        truncated: r.flag("truncated")?,
        credential_ref: r.opt_text("credential_ref")?,
        redacted: r.flag("redacted")?,
    })
}

/// A `run_chunks` row of `run_id`.
pub(crate) fn chunk(run_id: RunId, r: &impl StoredRow) -> Result<RunChunk> {
    let stream = r.text("stream")?;
    Ok(RunChunk {
        run_id,
        seq: r.int("seq")? as u64,
        stream: stream.parse().map_err(|_| corrupt("stream", &stream))?,
        data: Bytes::from(r.blob("data")?),
        inserted_at: r.time("inserted_at")?,
    })
}

/// A run's footprint: `id, device_id, retention_ts, bytes, finished_at` of `runs`.
pub(crate) fn footprint(r: &impl StoredRow) -> Result<RunFootprint> {
    Ok(RunFootprint {
        run_id: RunId(r.int("id")?),
        device_id: DeviceId(r.int("device_id")?),
        ts: r.time("retention_ts")?,
        bytes: r.int("bytes")? as u64,
        finished: !r.is_null("finished_at")?,
    })
}

/// A device's totals: `device_id, bytes, runs`.
pub(crate) fn device_total(r: &impl StoredRow) -> Result<DeviceTotal> {
    Ok(DeviceTotal {
        device_id: DeviceId(r.int("device_id")?),
        bytes: r.int("bytes")?.max(0) as u64,
        runs: r.int("runs")? as u64,
    })
}

/// The runs a delete returned (`id, bytes, chunks`), ids ascending.
pub(crate) fn deleted_runs<R: StoredRow>(rows: &[R]) -> Result<DeletedRuns> {
    let mut out = DeletedRuns::default();
    for r in rows {
        out.ids.push(RunId(r.int("id")?));
        out.bytes += r.int("bytes")? as u64;
        out.chunks += r.int("chunks")? as u64;
    }
    out.ids.sort_unstable();
    Ok(out)
}

/// The `id` column of each row, as `T`, ascending.
pub(crate) fn sorted_ids<R: StoredRow, T: Ord>(
    rows: &[R],
    id: impl Fn(i64) -> T,
) -> Result<Vec<T>> {
    let mut ids = rows
        .iter()
        .map(|r| r.int("id").map(&id))
        .collect::<Result<Vec<_>>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// The counters of a `bulks` row.
pub(crate) fn counters(r: &impl StoredRow) -> Result<BulkCounters> {
    let get = |c: &str| r.int(c).map(|v| v.max(0) as u64);
    Ok(BulkCounters::from_counts(
        get("total")?,
        get("ok")?,
        get("failed")?,
        get("cancelled")?,
    ))
}

/// The limits of a `bulks` row.
fn limits(r: &impl StoredRow) -> Result<LimitOverrides> {
    let get = |c: &str| r.opt_int(c).map(|v| v.map(|v| v.max(0) as u64));
    Ok(LimitOverrides {
        timeout_ms: get("timeout_ms")?,
        max_output: get("max_output")?,
        answer_prompts: r.flag("answer_prompts")?,
    })
}

/// The state of a `bulks` row.
pub(crate) fn bulk_state(r: &impl StoredRow) -> Result<BulkState> {
    Ok(BulkState {
        created_at: r.time("created_at")?,
        counters: counters(r)?,
        finished_at: r.opt_time("finished_at")?,
        cancelled_at: r.opt_time("cancelled_at")?,
    })
}

/// A `bulks` row with its `bulk_devices` rows (by position).
pub(crate) fn bulk<R: StoredRow>(bulk_ref: &BulkRef, r: &R, members: &[R]) -> Result<Bulk> {
    let mut device_ids = Vec::with_capacity(members.len());
    let mut outcomes = BTreeMap::new();
    for m in members {
        device_ids.push(DeviceId(m.int("device_id")?));
        if !m.is_null("status")? {
            let o = outcome(m)?;
            outcomes.insert(o.device_id, o);
        }
    }
    let state = bulk_state(r)?;
    Ok(Bulk {
        bulk_ref: bulk_ref.clone(),
        command: r.text("command")?,
        requested_by: r.text("requested_by")?,
        device_ids,
        created_at: state.created_at,
        counters: state.counters,
        finished_at: state.finished_at,
        cancelled_at: state.cancelled_at,
        limits: limits(r)?,
        parent: r
            .opt_text("parent_ref")?
            .as_deref()
            .map(self::bulk_ref)
            .transpose()?,
        outcomes,
    })
}

/// A `bulk_devices` row that has an outcome.
pub(crate) fn outcome(r: &impl StoredRow) -> Result<DeviceOutcome> {
    Ok(DeviceOutcome {
        device_id: DeviceId(r.int("device_id")?),
        run_id: r.opt_int("run_id")?.map(RunId),
        status: status(&r.text("status")?)?,
        error_kind: r.opt_text("error_kind")?,
        recorded_at: r.time("recorded_at")?,
        truncated: r.flag("truncated")?,
    })
}

/// The outcomes of `rows`, in the order of `ids` (ids without an outcome are left out).
pub(crate) fn outcomes_in_order<R: StoredRow>(
    ids: &[DeviceId],
    rows: &[R],
) -> Result<Vec<DeviceOutcome>> {
    let mut by_id: BTreeMap<DeviceId, DeviceOutcome> = BTreeMap::new();
    for r in rows {
        let o = outcome(r)?;
        by_id.insert(o.device_id, o);
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// A `jobs` row.
pub(crate) fn job(r: &impl StoredRow) -> Result<Job> {
    let id = JobId(r.int("id")?);
    let state = r.text("state")?;
    // Args that are not JSON (a row written behind the queue's back) used to fail the whole
    // claim after it committed, stranding every job of the batch until its lease expired,
    // again and again. The raw text goes to the worker as a JSON string instead: decoding it
    // fails and the job is discarded as malformed on its first attempt.
    let args = r.loose_json("args")?.unwrap_or_else(|(raw, e)| {
        tracing::warn!(job_id = id.get(), error = %e, "job args are not JSON; the job will be discarded as malformed");
        serde_json::Value::String(raw)
    });
    Ok(Job {
        id,
        queue: r.text("queue")?,
        worker: r.text("worker")?,
        args,
        state: state.parse().map_err(|_| corrupt("job state", &state))?,
        attempt: r.int("attempt")? as u32,
        max_attempts: r.int("max_attempts")? as u32,
        priority: r.int("priority")? as i16,
        inserted_at: r.time("inserted_at")?,
        scheduled_at: r.time("scheduled_at")?,
        attempted_at: r.opt_time("attempted_at")?,
        finished_at: r.opt_time("finished_at")?,
        unique_key: r.opt_text("unique_key")?,
        attempted_by: r.opt_text("attempted_by")?,
        lease_expires_at: r.opt_time("lease_expires_at")?,
        errors: r.json::<Vec<JobFailure>>("errors")?,
    })
}

/// The `state` column of a job row.
pub(crate) fn job_state(r: &impl StoredRow) -> Result<netauto_core::JobState> {
    let state = r.text("state")?;
    state.parse().map_err(|_| corrupt("job state", &state))
}

/// Jobs claimed by one statement, in claim order (priority, schedule, id).
pub(crate) fn claimed<R: StoredRow>(rows: &[R]) -> Result<Vec<Job>> {
    let mut jobs = rows.iter().map(job).collect::<Result<Vec<_>>>()?;
    jobs.sort_by_key(|j| (j.priority, j.scheduled_at, j.id));
    Ok(jobs)
}
