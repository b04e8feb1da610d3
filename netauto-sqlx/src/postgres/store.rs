//! [`PgRunStore`].

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use netauto_core::bulk::dedup_ids;
use netauto_core::retention::{
    DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, RunFootprint,
};
use netauto_core::{
    Bulk, BulkCancelled, BulkCounters, BulkRef, BulkState, CancelRequests, ChunkAppended, Conflict,
    Device, DeviceId, DeviceOutcome, Enqueued, Error, LimitOverrides, NewBulk, NewDevice, NewJob,
    NewRun, OutcomeRecorded, OutputStream, Result, Run, RunChunk, RunFinish, RunId, RunStatus,
    RunStore, ValidationError,
};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgPool, Row};

use super::queue::insert_job;
use crate::error::{corrupt, db, is_foreign_key_violation, is_unique_violation};
use crate::increments;

/// Devices, runs, chunks and bulks in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgRunStore {
    pub(super) pool: PgPool,
}

fn raw(ids: &[DeviceId]) -> Vec<i64> {
    ids.iter().map(|d| d.get()).collect()
}

fn device_from_row(r: &PgRow) -> Result<Device> {
    let tags: Json<Vec<String>> = r.try_get("tags").map_err(db)?;
    Ok(Device {
        id: DeviceId(r.try_get("id").map_err(db)?),
        name: r.try_get("name").map_err(db)?,
        host: r.try_get("host").map_err(db)?,
        port: u16::try_from(r.try_get::<i32, _>("port").map_err(db)?)
            .map_err(|e| corrupt("port", e))?,
        platform: r.try_get("platform").map_err(db)?,
        username: r.try_get("username").map_err(db)?,
        credential_ref: r.try_get("credential_ref").map_err(db)?,
        tags: tags.0,
        site: r.try_get("site").map_err(db)?,
    })
}

fn status(s: &str) -> Result<RunStatus> {
    s.parse().map_err(|_| corrupt("status", s))
}

fn run_from_row(r: &PgRow) -> Result<Run> {
    let st: String = r.try_get("status").map_err(db)?;
    let bulk_ref: Option<String> = r.try_get("bulk_ref").map_err(db)?;
    Ok(Run {
        id: RunId(r.try_get("id").map_err(db)?),
        device_id: DeviceId(r.try_get("device_id").map_err(db)?),
        command: r.try_get("command").map_err(db)?,
        requested_by: r.try_get("requested_by").map_err(db)?,
        bulk_ref: bulk_ref
            .map(|b| BulkRef::parse(&b).map_err(|e| corrupt("bulk ref", e)))
            .transpose()?,
        status: status(&st)?,
        exit_status: r.try_get("exit_status").map_err(db)?,
        error_kind: r.try_get("error_kind").map_err(db)?,
        error_message: r.try_get("error_message").map_err(db)?,
        inserted_at: r.try_get("inserted_at").map_err(db)?,
        started_at: r.try_get("started_at").map_err(db)?,
        finished_at: r.try_get("finished_at").map_err(db)?,
        bytes: r.try_get::<i64, _>("bytes").map_err(db)? as u64,
        chunks: r.try_get::<i64, _>("chunks").map_err(db)? as u64,
        truncated: r.try_get("truncated").map_err(db)?,
    })
}

fn footprint_from_row(r: &PgRow) -> Result<RunFootprint> {
    Ok(RunFootprint {
        run_id: RunId(r.try_get("id").map_err(db)?),
        device_id: DeviceId(r.try_get("device_id").map_err(db)?),
        ts: r.try_get("retention_ts").map_err(db)?,
        bytes: r.try_get::<i64, _>("bytes").map_err(db)? as u64,
        finished: r.try_get::<bool, _>("finished").map_err(db)?,
    })
}

fn outcome_from_row(r: &PgRow) -> Result<DeviceOutcome> {
    let st: String = r.try_get("status").map_err(db)?;
    Ok(DeviceOutcome {
        device_id: DeviceId(r.try_get("device_id").map_err(db)?),
        run_id: r
            .try_get::<Option<i64>, _>("run_id")
            .map_err(db)?
            .map(RunId),
        status: status(&st)?,
        error_kind: r.try_get("error_kind").map_err(db)?,
        recorded_at: r.try_get("recorded_at").map_err(db)?,
        truncated: r.try_get("truncated").map_err(db)?,
    })
}

fn counters(r: &PgRow) -> Result<BulkCounters> {
    let get = |c: &str| r.try_get::<i64, _>(c).map_err(db).map(|v| v.max(0) as u64);
    Ok(BulkCounters::from_counts(
        get("total")?,
        get("ok")?,
        get("failed")?,
        get("cancelled")?,
    ))
}

fn limits(r: &PgRow) -> Result<LimitOverrides> {
    let get = |c: &str| {
        r.try_get::<Option<i64>, _>(c)
            .map_err(db)
            .map(|v| v.map(|v| v.max(0) as u64))
    };
    Ok(LimitOverrides {
        timeout_ms: get("timeout_ms")?,
        max_output: get("max_output")?,
    })
}

impl PgRunStore {
    async fn not_running(&self, id: RunId) -> Error {
        match sqlx::query("SELECT 1 FROM runs WHERE id = $1")
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await
        {
            Ok(Some(_)) => Conflict::RunFinished(id).into(),
            Ok(None) => Error::RunGone(id),
            Err(e) => db(e),
        }
    }
}

/// Inserts one device on `conn` (a transaction or a pooled connection).
async fn insert_device(conn: &mut sqlx::PgConnection, d: &NewDevice) -> Result<Device> {
    let row = sqlx::query(
        "INSERT INTO devices (name, host, port, platform, username, credential_ref, tags, site)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
    )
    .bind(&d.name)
    .bind(&d.host)
    .bind(i32::from(d.port))
    .bind(&d.platform)
    .bind(&d.username)
    .bind(&d.credential_ref)
    .bind(Json(&d.tags))
    .bind(&d.site)
    .fetch_one(conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Conflict::Exists {
                what: "device",
                key: d.name.clone(),
            }
            .into()
        } else {
            db(e)
        }
    })?;
    device_from_row(&row)
}

#[async_trait]
impl RunStore for PgRunStore {
    async fn create_device(&self, d: NewDevice) -> Result<Device> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        insert_device(&mut conn, &d).await
    }

    async fn create_devices(&self, devices: Vec<NewDevice>) -> Result<Vec<Device>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut created = Vec::with_capacity(devices.len());
        for d in &devices {
            created.push(insert_device(&mut tx, d).await?);
        }
        tx.commit().await.map_err(db)?;
        Ok(created)
    }

    async fn device(&self, id: DeviceId) -> Result<Device> {
        let row = sqlx::query("SELECT * FROM devices WHERE id = $1")
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map_or_else(|| Err(Error::device_not_found(id)), |r| device_from_row(&r))
    }

    async fn list_devices(&self) -> Result<Vec<Device>> {
        let rows = sqlx::query("SELECT * FROM devices ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn unknown_devices(&self, ids: &[DeviceId]) -> Result<Vec<DeviceId>> {
        let ids = dedup_ids(ids);
        let rows = sqlx::query("SELECT id FROM devices WHERE id = ANY($1)")
            .bind(raw(&ids))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let known: HashSet<DeviceId> = rows
            .iter()
            .map(|r| r.try_get("id").map(DeviceId).map_err(db))
            .collect::<Result<_>>()?;
        Ok(ids.into_iter().filter(|id| !known.contains(id)).collect())
    }

    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<Run> {
        // The bulk's row is share-locked: a concurrent `cancel_bulk` (which updates it first)
        // either commits before this reads it (the run is refused) or waits for this insert
        // to commit (and then sees the run as running).
        let row = sqlx::query(
            "WITH b AS (SELECT cancelled_at FROM bulks WHERE ref = $4 FOR SHARE)
             INSERT INTO runs (device_id, command, requested_by, bulk_ref, status, inserted_at, started_at)
             SELECT $1, $2, $3, $4, 'running', $5, $5
             WHERE NOT EXISTS (SELECT 1 FROM b WHERE cancelled_at IS NOT NULL)
             RETURNING *",
        )
        .bind(run.device_id.get())
        .bind(&run.command)
        .bind(&run.requested_by)
        .bind(run.bulk_ref.as_ref().map(BulkRef::as_str))
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| if is_foreign_key_violation(&e) { Error::device_not_found(run.device_id) } else { db(e) })?;
        match (row, run.bulk_ref) {
            (Some(row), _) => run_from_row(&row),
            (None, Some(bulk_ref)) => Err(Conflict::BulkCancelled(bulk_ref).into()),
            (None, None) => Err(Error::backend(
                "a run insert without a bulk inserted nothing",
            )),
        }
    }

    async fn append_chunk(
        &self,
        run_id: RunId,
        stream: OutputStream,
        data: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ChunkAppended> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(
            "UPDATE runs SET bytes = bytes + $1, chunks = chunks + 1 WHERE id = $2 AND status = 'running'
             RETURNING chunks, bytes",
        )
        .bind(data.len() as i64)
        .bind(run_id.get())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.not_running(run_id).await);
        };
        let seq = row.try_get::<i64, _>("chunks").map_err(db)? - 1;
        let run_bytes = row.try_get::<i64, _>("bytes").map_err(db)? as u64;
        sqlx::query("INSERT INTO run_chunks (run_id, seq, stream, data, inserted_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(run_id.get())
            .bind(seq)
            .bind(stream.as_str())
            .bind(data)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| if is_foreign_key_violation(&e) { Error::RunGone(run_id) } else { db(e) })?;
        tx.commit().await.map_err(db)?;
        Ok(ChunkAppended {
            seq: seq as u64,
            run_bytes,
        })
    }

    async fn finish_run(
        &self,
        run_id: RunId,
        finish: RunFinish,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        if finish.status == RunStatus::Running {
            return Err(ValidationError::Field {
                field: "status",
                reason: "a run cannot finish as running".into(),
            }
            .into());
        }
        let row = sqlx::query(
            "UPDATE runs SET status = $1, exit_status = $2, error_kind = $3, error_message = $4, finished_at = $5,
                 truncated = $7
             WHERE id = $6 AND status = 'running' RETURNING *",
        )
        .bind(finish.status.as_str())
        .bind(finish.exit_status)
        .bind(&finish.error_kind)
        .bind(&finish.error_message)
        .bind(now)
        .bind(run_id.get())
        .bind(finish.truncated)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match row {
            Some(r) => run_from_row(&r),
            None => Err(self.not_running(run_id).await),
        }
    }

    async fn request_run_cancel(&self, run_id: RunId, now: DateTime<Utc>) -> Result<Run> {
        let row = sqlx::query(
            "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, $1)
             WHERE id = $2 AND status = 'running' RETURNING *",
        )
        .bind(now)
        .bind(run_id.get())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match row {
            Some(r) => run_from_row(&r),
            None => match self.not_running(run_id).await {
                Error::RunGone(_) => Err(Error::run_not_found(run_id)),
                other => Err(other),
            },
        }
    }

    async fn cancel_requests(&self, bulks: &[BulkRef], runs: &[RunId]) -> Result<CancelRequests> {
        let mut found = CancelRequests::default();
        if !bulks.is_empty() {
            let refs: Vec<&str> = bulks.iter().map(BulkRef::as_str).collect();
            let rows = sqlx::query(
                "SELECT ref FROM bulks WHERE ref = ANY($1) AND cancelled_at IS NOT NULL",
            )
            .bind(&refs)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            for r in rows {
                let raw: String = r.try_get("ref").map_err(db)?;
                found
                    .bulks
                    .push(BulkRef::parse(&raw).map_err(|e| corrupt("bulk ref", e))?);
            }
        }
        if !runs.is_empty() {
            let ids: Vec<i64> = runs.iter().map(|r| r.get()).collect();
            let rows = sqlx::query(
                "SELECT id FROM runs WHERE id = ANY($1) AND cancel_requested_at IS NOT NULL",
            )
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            for r in rows {
                found.runs.push(RunId(r.try_get("id").map_err(db)?));
            }
        }
        Ok(found)
    }

    async fn run(&self, id: RunId) -> Result<Run> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map_or_else(|| Err(Error::run_not_found(id)), |r| run_from_row(&r))
    }

    async fn chunks(&self, run_id: RunId, from_seq: u64, limit: usize) -> Result<Vec<RunChunk>> {
        let rows = sqlx::query(
            "SELECT * FROM run_chunks WHERE run_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id.get())
        .bind(i64::try_from(from_seq).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let stream: String = r.try_get("stream").map_err(db)?;
                Ok(RunChunk {
                    run_id,
                    seq: r.try_get::<i64, _>("seq").map_err(db)? as u64,
                    stream: stream.parse().map_err(|_| corrupt("stream", &stream))?,
                    data: Bytes::from(r.try_get::<Vec<u8>, _>("data").map_err(db)?),
                    inserted_at: r.try_get("inserted_at").map_err(db)?,
                })
            })
            .collect()
    }

    async fn device_runs(&self, device_id: DeviceId, limit: usize) -> Result<Vec<Run>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE device_id = $1 ORDER BY inserted_at DESC, id DESC LIMIT $2",
        )
        .bind(device_id.get())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn bulk_runs(&self, bulk_ref: &BulkRef, device_ids: &[DeviceId]) -> Result<Vec<Run>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE bulk_ref = $1 AND device_id = ANY($2) ORDER BY id",
        )
        .bind(bulk_ref.as_str())
        .bind(raw(device_ids))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn create_bulk(
        &self,
        bulk: NewBulk,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<(Bulk, Vec<Enqueued>)> {
        for job in &jobs {
            job.validate()?;
        }
        let device_ids = dedup_ids(&bulk.device_ids);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(
            "INSERT INTO bulks (ref, command, requested_by, created_at, total, timeout_ms, max_output)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at",
        )
        .bind(bulk.bulk_ref.as_str())
        .bind(&bulk.command)
        .bind(&bulk.requested_by)
        .bind(now)
        .bind(device_ids.len() as i64)
        .bind(bulk.limits.timeout_ms.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
        .bind(bulk.limits.max_output.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Conflict::Exists { what: "bulk", key: bulk.bulk_ref.to_string() }.into()
            } else {
                db(e)
            }
        })?;
        let created_at: DateTime<Utc> = row.try_get("created_at").map_err(db)?;
        sqlx::query(
            "INSERT INTO bulk_devices (bulk_ref, position, device_id)
             SELECT $1, ord - 1, id FROM unnest($2::bigint[]) WITH ORDINALITY AS t(id, ord)",
        )
        .bind(bulk.bulk_ref.as_str())
        .bind(raw(&device_ids))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let mut enqueued = Vec::with_capacity(jobs.len());
        for job in jobs {
            enqueued.push(insert_job(&mut tx, job, now).await?);
        }
        tx.commit().await.map_err(db)?;
        let created = Bulk {
            bulk_ref: bulk.bulk_ref,
            command: bulk.command,
            requested_by: bulk.requested_by,
            counters: BulkCounters::new(device_ids.len() as u64),
            device_ids,
            created_at,
            finished_at: None,
            cancelled_at: None,
            limits: bulk.limits,
            outcomes: BTreeMap::new(),
        };
        Ok((created, enqueued))
    }

    async fn bulk_state(&self, bulk_ref: &BulkRef) -> Result<BulkState> {
        let row = sqlx::query(
            "SELECT created_at, total, ok, failed, cancelled, finished_at, cancelled_at FROM bulks WHERE ref = $1",
        )
        .bind(bulk_ref.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
        Ok(BulkState {
            created_at: row.try_get("created_at").map_err(db)?,
            counters: counters(&row)?,
            finished_at: row.try_get("finished_at").map_err(db)?,
            cancelled_at: row.try_get("cancelled_at").map_err(db)?,
        })
    }

    async fn bulk(&self, bulk_ref: &BulkRef) -> Result<Bulk> {
        let row = sqlx::query("SELECT * FROM bulks WHERE ref = $1")
            .bind(bulk_ref.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
        let members =
            sqlx::query("SELECT * FROM bulk_devices WHERE bulk_ref = $1 ORDER BY position")
                .bind(bulk_ref.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let mut device_ids = Vec::with_capacity(members.len());
        let mut outcomes = BTreeMap::new();
        for m in &members {
            device_ids.push(DeviceId(m.try_get("device_id").map_err(db)?));
            if m.try_get::<Option<String>, _>("status")
                .map_err(db)?
                .is_some()
            {
                let o = outcome_from_row(m)?;
                outcomes.insert(o.device_id, o);
            }
        }
        Ok(Bulk {
            bulk_ref: bulk_ref.clone(),
            command: row.try_get("command").map_err(db)?,
            requested_by: row.try_get("requested_by").map_err(db)?,
            device_ids,
            created_at: row.try_get("created_at").map_err(db)?,
            counters: counters(&row)?,
            finished_at: row.try_get("finished_at").map_err(db)?,
            cancelled_at: row.try_get("cancelled_at").map_err(db)?,
            limits: limits(&row)?,
            outcomes,
        })
    }

    async fn device_outcomes(
        &self,
        bulk_ref: &BulkRef,
        device_ids: &[DeviceId],
    ) -> Result<Vec<DeviceOutcome>> {
        let exists = sqlx::query("SELECT 1 FROM bulks WHERE ref = $1")
            .bind(bulk_ref.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(Error::bulk_not_found(bulk_ref));
        }
        let ids = dedup_ids(device_ids);
        let rows = sqlx::query(
            "SELECT * FROM bulk_devices WHERE bulk_ref = $1 AND status IS NOT NULL AND device_id = ANY($2)",
        )
        .bind(bulk_ref.as_str())
        .bind(raw(&ids))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut by_id: BTreeMap<DeviceId, DeviceOutcome> = BTreeMap::new();
        for r in &rows {
            let o = outcome_from_row(r)?;
            by_id.insert(o.device_id, o);
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    async fn record_outcome(
        &self,
        bulk_ref: &BulkRef,
        outcome: DeviceOutcome,
    ) -> Result<OutcomeRecorded> {
        if outcome.status == RunStatus::Running {
            return Err(ValidationError::Field {
                field: "status",
                reason: "an outcome cannot be running".into(),
            }
            .into());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let updated = sqlx::query(
            "UPDATE bulk_devices SET run_id = $1, status = $2, error_kind = $3, recorded_at = $4, truncated = $7
             WHERE bulk_ref = $5 AND device_id = $6 AND status IS NULL",
        )
        .bind(outcome.run_id.map(RunId::get))
        .bind(outcome.status.as_str())
        .bind(&outcome.error_kind)
        .bind(outcome.recorded_at)
        .bind(bulk_ref.as_str())
        .bind(outcome.device_id.get())
        .bind(outcome.truncated)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let newly = updated.rows_affected() == 1;
        let (ok_inc, failed_inc, cancelled_inc) = increments(newly, outcome.status);
        // The row lock on the bulk serializes concurrent recorders: exactly one of them sees
        // the counters reach the total.
        let row = sqlx::query(
            "UPDATE bulks SET ok = ok + $1, failed = failed + $2, cancelled = cancelled + $6,
                 finished_at = CASE WHEN $3 AND ok + $1 + failed + $2 + cancelled + $6 = total THEN $4 ELSE finished_at END
             WHERE ref = $5 RETURNING total, ok, failed, cancelled",
        )
        .bind(ok_inc)
        .bind(failed_inc)
        .bind(newly)
        .bind(outcome.recorded_at)
        .bind(bulk_ref.as_str())
        .bind(cancelled_inc)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Err(Error::bulk_not_found(bulk_ref));
        };
        if !newly {
            let member =
                sqlx::query("SELECT 1 FROM bulk_devices WHERE bulk_ref = $1 AND device_id = $2")
                    .bind(bulk_ref.as_str())
                    .bind(outcome.device_id.get())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if member.is_none() {
                return Err(ValidationError::Field {
                    field: "device_id",
                    reason: format!(
                        "device {} is not part of bulk {bulk_ref}",
                        outcome.device_id
                    ),
                }
                .into());
            }
        }
        tx.commit().await.map_err(db)?;
        let counters = counters(&row)?;
        Ok(OutcomeRecorded {
            counters,
            newly_recorded: newly,
            completed_now: newly && counters.pending == 0,
        })
    }

    async fn cancel_bulk(&self, bulk_ref: &BulkRef, now: DateTime<Utc>) -> Result<BulkCancelled> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Lock order bulk_devices → bulks, as `record_outcome` takes them, so the two never
        // deadlock. The pending rows are locked first (a recorder holding one finishes before
        // this goes on), then the bulk row is marked: from then on `create_run` refuses runs
        // of this bulk, and a run it inserted before is committed and seen as running below.
        sqlx::query(
            "SELECT device_id FROM bulk_devices WHERE bulk_ref = $1 AND status IS NULL
             ORDER BY device_id FOR UPDATE",
        )
        .bind(bulk_ref.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let marked = sqlx::query(
            "UPDATE bulks SET cancelled_at = $1 WHERE ref = $2 AND cancelled_at IS NULL AND finished_at IS NULL",
        )
        .bind(now)
        .bind(bulk_ref.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if !marked {
            let row = sqlx::query("SELECT total, ok, failed, cancelled FROM bulks WHERE ref = $1")
                .bind(bulk_ref.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .ok_or_else(|| Error::bulk_not_found(bulk_ref))?;
            return Ok(BulkCancelled {
                counters: counters(&row)?,
                newly_cancelled: false,
                devices_cancelled: 0,
                completed_now: false,
            });
        }
        let n = sqlx::query(
            "UPDATE bulk_devices bd SET status = 'cancelled', error_kind = 'cancelled', recorded_at = $1,
                 run_id = (SELECT max(r.id) FROM runs r WHERE r.bulk_ref = $2 AND r.device_id = bd.device_id)
             WHERE bd.bulk_ref = $2 AND bd.status IS NULL
               AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.bulk_ref = $2
                               AND r.device_id = bd.device_id AND r.status = 'running')",
        )
        .bind(now)
        .bind(bulk_ref.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected() as i64;
        let row = sqlx::query(
            "UPDATE bulks SET cancelled = cancelled + $1,
                 finished_at = CASE WHEN $1 > 0 AND ok + failed + cancelled + $1 = total THEN $2 ELSE finished_at END
             WHERE ref = $3 RETURNING total, ok, failed, cancelled",
        )
        .bind(n)
        .bind(now)
        .bind(bulk_ref.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let counters = counters(&row)?;
        Ok(BulkCancelled {
            counters,
            newly_cancelled: true,
            devices_cancelled: n as u64,
            completed_now: n > 0 && counters.pending == 0,
        })
    }

    async fn device_totals(&self) -> Result<Vec<DeviceTotal>> {
        let rows = sqlx::query(
            "SELECT device_id, LEAST(SUM(bytes), 9223372036854775807)::bigint AS bytes, COUNT(*) AS runs
             FROM runs GROUP BY device_id ORDER BY device_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(DeviceTotal {
                    device_id: DeviceId(r.try_get("device_id").map_err(db)?),
                    bytes: r.try_get::<i64, _>("bytes").map_err(db)?.max(0) as u64,
                    runs: r.try_get::<i64, _>("runs").map_err(db)? as u64,
                })
            })
            .collect()
    }

    async fn device_footprints(
        &self,
        devices: &[DeviceId],
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        let (d, ts, id) = match after {
            Some(c) => (c.device_id.get(), c.ts, c.run_id.get()),
            None => (i64::MIN, DateTime::<Utc>::MIN_UTC, i64::MIN),
        };
        let rows = sqlx::query(
            "SELECT id, device_id, retention_ts, bytes, finished_at IS NOT NULL AS finished FROM runs
             WHERE device_id = ANY($1) AND (device_id, retention_ts, id) > ($2, $3, $4)
             ORDER BY device_id, retention_ts, id LIMIT $5",
        )
        .bind(raw(devices))
        .bind(d)
        .bind(ts.max(pg_min()))
        .bind(id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(footprint_from_row).collect()
    }

    async fn aged_footprints(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        let (ts, id) = match after {
            Some(c) => (c.ts, c.run_id.get()),
            None => (DateTime::<Utc>::MIN_UTC, i64::MIN),
        };
        let rows = sqlx::query(
            "SELECT id, device_id, retention_ts, bytes, finished_at IS NOT NULL AS finished FROM runs
             WHERE retention_ts < $1 AND (retention_ts, id) > ($2, $3)
             ORDER BY retention_ts, id LIMIT $4",
        )
        .bind(cutoff.max(pg_min()))
        .bind(ts.max(pg_min()))
        .bind(id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(footprint_from_row).collect()
    }

    async fn delete_runs(&self, ids: &[RunId], guard: DeleteGuard) -> Result<DeletedRuns> {
        if ids.is_empty() {
            return Ok(DeletedRuns::default());
        }
        let raw_ids: Vec<i64> = ids.iter().map(|r| r.get()).collect();
        let query = match guard {
            DeleteGuard::AgedBefore(cutoff) => sqlx::query(
                "DELETE FROM runs WHERE id = ANY($1) AND retention_ts < $2 RETURNING id, bytes, chunks",
            )
            .bind(raw_ids)
            .bind(cutoff.max(pg_min())),
            DeleteGuard::Finished => sqlx::query(
                "DELETE FROM runs WHERE id = ANY($1) AND finished_at IS NOT NULL RETURNING id, bytes, chunks",
            )
            .bind(raw_ids),
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        let rows = query.fetch_all(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut out = DeletedRuns::default();
        for r in &rows {
            out.ids.push(RunId(r.try_get("id").map_err(db)?));
            out.bytes += r.try_get::<i64, _>("bytes").map_err(db)? as u64;
            out.chunks += r.try_get::<i64, _>("chunks").map_err(db)? as u64;
        }
        out.ids.sort_unstable();
        Ok(out)
    }
}

/// The earliest timestamp PostgreSQL stores (4713 BC); earlier values are clamped to it.
fn pg_min() -> DateTime<Utc> {
    DateTime::from_timestamp(-210_866_803_200, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
