//! [`FaultyStore`]: a [`RunStore`] that passes everything through, except that its purge
//! batches ([`RunStore::delete_runs`]) can fail after a number of calls (an interrupted purge
//! without killing a process) or be announced on stdout and slowed down (so a test can kill a
//! purge process between or inside batches).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netauto_core::retention::{
    DeleteGuard, DeletedRuns, DeviceTotal, FootprintCursor, RunFootprint,
};
use netauto_core::{
    Bulk, BulkRef, ChunkAppended, Device, DeviceId, DeviceOutcome, Enqueued, Error, NewBulk,
    NewDevice, NewJob, NewRun, OutcomeRecorded, OutputStream, Result, Run, RunChunk, RunFinish,
    RunId, RunStore,
};

/// Prefix of the line printed after each committed batch: `BATCH <n> <runs deleted>`.
pub const BATCH: &str = "BATCH ";

/// A store whose `delete_runs` fails after `fail_after` successful calls, and optionally prints
/// and sleeps after each successful one.
pub struct FaultyStore {
    inner: Arc<dyn RunStore>,
    fail_after: Option<u64>,
    announce: bool,
    delay: Duration,
    calls: AtomicU64,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("fail_after", &self.fail_after)
            .field("calls", &self.calls.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    /// Passes everything through to `inner`.
    pub fn new(inner: Arc<dyn RunStore>) -> Self {
        Self {
            inner,
            fail_after: None,
            announce: false,
            delay: Duration::ZERO,
            calls: AtomicU64::new(0),
        }
    }

    /// `delete_runs` answers an `Unavailable` error from call `k + 1` on, deleting nothing.
    pub fn fail_after(mut self, k: u64) -> Self {
        self.fail_after = Some(k);
        self
    }

    /// Prints [`BATCH`] lines after each committed batch, then sleeps `delay`.
    pub fn announce(mut self, delay: Duration) -> Self {
        self.announce = true;
        self.delay = delay;
        self
    }

    /// `delete_runs` calls so far (failed ones included).
    pub fn delete_calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl RunStore for FaultyStore {
    async fn create_device(&self, device: NewDevice) -> Result<Device> {
        self.inner.create_device(device).await
    }
    async fn device(&self, id: DeviceId) -> Result<Device> {
        self.inner.device(id).await
    }
    async fn list_devices(&self) -> Result<Vec<Device>> {
        self.inner.list_devices().await
    }
    async fn unknown_devices(&self, ids: &[DeviceId]) -> Result<Vec<DeviceId>> {
        self.inner.unknown_devices(ids).await
    }
    async fn create_run(&self, run: NewRun, now: DateTime<Utc>) -> Result<Run> {
        self.inner.create_run(run, now).await
    }
    async fn append_chunk(
        &self,
        run_id: RunId,
        stream: OutputStream,
        data: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ChunkAppended> {
        self.inner.append_chunk(run_id, stream, data, now).await
    }
    async fn finish_run(
        &self,
        run_id: RunId,
        finish: RunFinish,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        self.inner.finish_run(run_id, finish, now).await
    }
    async fn run(&self, id: RunId) -> Result<Run> {
        self.inner.run(id).await
    }
    async fn chunks(&self, run_id: RunId, from_seq: u64, limit: usize) -> Result<Vec<RunChunk>> {
        self.inner.chunks(run_id, from_seq, limit).await
    }
    async fn device_runs(&self, device_id: DeviceId, limit: usize) -> Result<Vec<Run>> {
        self.inner.device_runs(device_id, limit).await
    }
    async fn bulk_runs(&self, bulk_ref: &BulkRef, device_ids: &[DeviceId]) -> Result<Vec<Run>> {
        self.inner.bulk_runs(bulk_ref, device_ids).await
    }
    async fn create_bulk(
        &self,
        bulk: NewBulk,
        jobs: Vec<NewJob>,
        now: DateTime<Utc>,
    ) -> Result<(Bulk, Vec<Enqueued>)> {
        self.inner.create_bulk(bulk, jobs, now).await
    }
    async fn bulk(&self, bulk_ref: &BulkRef) -> Result<Bulk> {
        self.inner.bulk(bulk_ref).await
    }
    async fn device_outcomes(
        &self,
        bulk_ref: &BulkRef,
        device_ids: &[DeviceId],
    ) -> Result<Vec<DeviceOutcome>> {
        self.inner.device_outcomes(bulk_ref, device_ids).await
    }
    async fn record_outcome(
        &self,
        bulk_ref: &BulkRef,
        outcome: DeviceOutcome,
    ) -> Result<OutcomeRecorded> {
        self.inner.record_outcome(bulk_ref, outcome).await
    }
    async fn request_run_cancel(&self, run_id: RunId, now: DateTime<Utc>) -> Result<Run> {
        self.inner.request_run_cancel(run_id, now).await
    }
    async fn cancel_requests(
        &self,
        bulks: &[BulkRef],
        runs: &[RunId],
    ) -> Result<netauto_core::CancelRequests> {
        self.inner.cancel_requests(bulks, runs).await
    }
    async fn cancel_bulk(
        &self,
        bulk_ref: &BulkRef,
        now: DateTime<Utc>,
    ) -> Result<netauto_core::BulkCancelled> {
        self.inner.cancel_bulk(bulk_ref, now).await
    }
    async fn device_totals(&self) -> Result<Vec<DeviceTotal>> {
        self.inner.device_totals().await
    }
    async fn device_footprints(
        &self,
        devices: &[DeviceId],
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        self.inner.device_footprints(devices, after, limit).await
    }
    async fn aged_footprints(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<FootprintCursor>,
        limit: usize,
    ) -> Result<Vec<RunFootprint>> {
        self.inner.aged_footprints(cutoff, after, limit).await
    }
    async fn delete_runs(&self, ids: &[RunId], guard: DeleteGuard) -> Result<DeletedRuns> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_after.is_some_and(|k| n > k) {
            return Err(Error::unavailable(format!(
                "injected fault: purge batch {n} fails"
            )));
        }
        let deleted = self.inner.delete_runs(ids, guard).await?;
        if self.announce {
            println!("{BATCH}{n} {}", deleted.ids.len());
            tokio::time::sleep(self.delay).await;
        }
        Ok(deleted)
    }
}
