//! The JSON data of each server-sent event of [`live`](crate::live), as typed views of core's
//! values.
//!
//! Fields are declared in alphabetical order: the bytes are those the pages' script and the
//! tests have always read (the payloads used to be `serde_json::Value` maps, which sort their
//! keys).

use chrono::{DateTime, Utc};
use netauto_core::{
    Bulk, BulkCounters, DeviceId, DeviceOutcome, OutputStream, Run, RunId, RunStatus,
};
use serde::Serialize;

/// `snapshot`: the whole bulk as stored.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot<'a> {
    pub(crate) cancelled: bool,
    pub(crate) counters: Counters,
    pub(crate) devices: Vec<Outcome<'a>>,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) finished: bool,
}

impl<'a> Snapshot<'a> {
    pub(crate) fn of(bulk: &'a Bulk) -> Self {
        Self {
            cancelled: bulk.cancelled_at.is_some(),
            counters: Counters::from(bulk.counters),
            devices: bulk.outcomes.values().map(Outcome::from).collect(),
            duration_ms: bulk
                .finished_at
                .and_then(|f| (f - bulk.created_at).to_std().ok())
                .map(|d| d.as_millis() as u64),
            finished: bulk.finished_at.is_some(),
        }
    }
}

/// A bulk's counters.
#[derive(Debug, Serialize)]
pub(crate) struct Counters {
    cancelled: u64,
    failed: u64,
    ok: u64,
    pending: u64,
    total: u64,
}

impl From<BulkCounters> for Counters {
    fn from(c: BulkCounters) -> Self {
        Self {
            cancelled: c.cancelled,
            failed: c.failed,
            ok: c.ok,
            pending: c.pending,
            total: c.total,
        }
    }
}

/// One device's outcome in a snapshot.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome<'a> {
    device_id: DeviceId,
    error_kind: Option<&'a str>,
    run_id: Option<RunId>,
    status: RunStatus,
    truncated: bool,
}

impl<'a> From<&'a DeviceOutcome> for Outcome<'a> {
    fn from(o: &'a DeviceOutcome) -> Self {
        Self {
            device_id: o.device_id,
            error_kind: o.error_kind.as_deref(),
            run_id: o.run_id,
            status: o.status,
            truncated: o.truncated,
        }
    }
}

/// `progress`: one device got its outcome.
#[derive(Debug, Serialize)]
pub(crate) struct Progress {
    pub(crate) device_id: DeviceId,
    pub(crate) done: u64,
    pub(crate) error_kind: Option<String>,
    pub(crate) run_id: Option<RunId>,
    pub(crate) status: RunStatus,
    pub(crate) total: u64,
    pub(crate) truncated: bool,
}

/// `summary`: the bulk ended.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) cancelled: u64,
    pub(crate) duration_ms: u64,
    pub(crate) failed: u64,
    pub(crate) ok: u64,
    pub(crate) total: u64,
}

/// `chunk`: a piece of a run's output, as text.
#[derive(Debug, Serialize)]
pub(crate) struct Chunk<'a> {
    pub(crate) seq: u64,
    pub(crate) stream: OutputStream,
    pub(crate) text: &'a str,
}

/// `finished`: the run's end; `tail` is text of the last chunk still undecoded.
#[derive(Debug, Serialize)]
pub(crate) struct Finished<'a> {
    bytes: u64,
    chunks: u64,
    duration_ms: Option<u64>,
    error_kind: Option<&'a str>,
    error_message: Option<&'a str>,
    exit_status: Option<i32>,
    finished_at: Option<DateTime<Utc>>,
    status: RunStatus,
    tail: &'a str,
    truncated: bool,
}

impl<'a> Finished<'a> {
    pub(crate) fn of(run: &'a Run, tail: &'a str) -> Self {
        let duration_ms = match (run.started_at, run.finished_at) {
            (Some(s), Some(f)) => (f - s).to_std().ok().map(|d| d.as_millis() as u64),
            _ => None,
        };
        Self {
            bytes: run.bytes,
            chunks: run.chunks,
            duration_ms,
            error_kind: run.error_kind.as_deref(),
            error_message: run.error_message.as_deref(),
            exit_status: run.exit_status,
            finished_at: run.finished_at,
            status: run.status,
            tail,
            truncated: run.truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeDelta;
    use netauto_core::{BulkRef, LimitOverrides};
    use serde_json::json;

    use super::*;

    /// The views write exactly the bytes of the `serde_json::Value` maps they replace.
    #[test]
    fn views_write_the_bytes_of_sorted_maps() {
        let at = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000);
        let outcome = DeviceOutcome {
            device_id: DeviceId(3),
            run_id: Some(RunId(9)),
            status: RunStatus::Error,
            error_kind: Some("auth".to_owned()),
            recorded_at: at,
            truncated: false,
        };
        let bulk = Bulk {
            bulk_ref: BulkRef::generate(),
            command: "show clock".to_owned(),
            requested_by: "ann".to_owned(),
            device_ids: vec![DeviceId(3)],
            created_at: at - TimeDelta::seconds(2),
            counters: BulkCounters::from_counts(1, 0, 1, 0),
            finished_at: Some(at),
            cancelled_at: None,
            limits: LimitOverrides::default(),
            parent: None,
            outcomes: BTreeMap::from([(DeviceId(3), outcome.clone())]),
        };
        let o = &outcome;
        let old = json!({
            "counters": bulk.counters,
            "finished": true,
            "cancelled": false,
            "duration_ms": 2000,
            "devices": [json!({"device_id": o.device_id, "status": o.status, "run_id": o.run_id, "error_kind": o.error_kind, "truncated": o.truncated})],
        });
        assert_eq!(
            serde_json::to_string(&Snapshot::of(&bulk)).unwrap(),
            old.to_string()
        );

        let run = Run {
            id: RunId(9),
            device_id: DeviceId(3),
            command: "show clock".to_owned(),
            requested_by: "ann".to_owned(),
            bulk_ref: None,
            status: RunStatus::Error,
            exit_status: Some(1),
            error_kind: None,
            error_message: Some("boom".to_owned()),
            inserted_at: at,
            started_at: Some(at),
            finished_at: Some(at + TimeDelta::milliseconds(1500)),
            bytes: 10,
            chunks: 2,
            truncated: true,
            credential_ref: Some("tacacs".to_owned()),
            redacted: false,
        };
        let old = json!({
            "status": run.status,
            "exit_status": run.exit_status,
            "error_kind": run.error_kind,
            "error_message": run.error_message,
            "finished_at": run.finished_at,
            "bytes": run.bytes,
            "chunks": run.chunks,
            "truncated": run.truncated,
            "duration_ms": 1500,
            "tail": "é",
        });
        assert_eq!(
            serde_json::to_string(&Finished::of(&run, "é")).unwrap(),
            old.to_string()
        );

        let progress = Progress {
            device_id: DeviceId(3),
            done: 1,
            error_kind: None,
            run_id: None,
            status: RunStatus::Ok,
            total: 4,
            truncated: true,
        };
        let old = json!({"device_id": 3, "run_id": null, "status": RunStatus::Ok, "error_kind": null,
                         "truncated": true, "done": 1, "total": 4});
        assert_eq!(serde_json::to_string(&progress).unwrap(), old.to_string());

        let chunk = Chunk {
            seq: 7,
            stream: OutputStream::Stderr,
            text: "a\"b",
        };
        let old = json!({"seq": 7, "stream": OutputStream::Stderr, "text": "a\"b"});
        assert_eq!(serde_json::to_string(&chunk).unwrap(), old.to_string());
    }
}
