//! [`BulkService`]: validates and writes a bulk with its jobs, and cancels bulks.

use std::num::NonZeroUsize;
use std::sync::Arc;

use super::job::{BulkArgs, BulkJob, announce_summary};
use crate::backend::progress::{BulkEvent, ProgressEvent, ProgressSink};
use crate::backend::store::RunStore;
use crate::bulk::{BulkRequest, DEFAULT_CHUNK_SIZE, check_templates, chunk_ids, is_template};
use crate::error::{Result, ValidationError};
use crate::exec::LimitOverrides;
use crate::model::bulk::{BulkCancelled, NewBulk};
use crate::model::ids::{BulkRef, DeviceId};
use crate::runtime::Wake;
use crate::runtime::Worker;
use crate::runtime::{Clock, SystemClock};
use crate::telemetry;

/// Which devices of a bulk [`BulkService::rerun`] runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rerun {
    /// Those whose outcome is not `ok` (failed, error, timeout, cancelled).
    Failed,
    /// All of them.
    All,
}

/// Starts and cancels bulk runs.
#[derive(Debug, Clone)]
pub struct BulkService {
    store: Arc<dyn RunStore>,
    progress: Arc<dyn ProgressSink>,
    clock: Arc<dyn Clock>,
    chunk_size: NonZeroUsize,
    wake: Option<Arc<dyn Wake>>,
}

impl BulkService {
    /// A service writing bulks and their jobs through `store` and announcing cancels on
    /// `progress`.
    pub fn new(store: Arc<dyn RunStore>, progress: Arc<dyn ProgressSink>) -> Self {
        Self {
            store,
            progress,
            clock: Arc::new(SystemClock),
            chunk_size: DEFAULT_CHUNK_SIZE,
            wake: None,
        }
    }

    /// Reads time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Devices per job (default 50).
    pub fn with_chunk_size(mut self, size: NonZeroUsize) -> Self {
        self.chunk_size = size;
        self
    }

    /// Wakes a local runner after enqueueing, so the jobs start without waiting for a poll.
    pub fn with_wake(mut self, wake: Arc<dyn Wake>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Validates the request, then creates the bulk record and all its jobs (queue `bulk`,
    /// worker [`BulkJob`], up to 50 devices each) in one atomic step. Bad input answers one
    /// [`Error::Validation`](crate::Error::Validation) — all unknown ids listed together — and enqueues nothing. Each
    /// device runs under the limits of the node that runs it (see
    /// [`ExecLimits`](crate::ExecLimits)); [`enqueue_with_limits`](Self::enqueue_with_limits)
    /// sets them for this bulk.
    pub async fn enqueue(
        &self,
        device_ids: &[DeviceId],
        command: &str,
        requested_by: &str,
    ) -> Result<BulkRef> {
        self.enqueue_with_limits(device_ids, command, requested_by, LimitOverrides::none())
            .await
    }

    /// [`enqueue`](Self::enqueue) with a deadline and output cap of this bulk's own
    /// (validated: 100 ms to 7 days, 1 byte to 64 GiB).
    pub async fn enqueue_with_limits(
        &self,
        device_ids: &[DeviceId],
        command: &str,
        requested_by: &str,
        limits: LimitOverrides,
    ) -> Result<BulkRef> {
        self.enqueue_inner(device_ids, command, requested_by, limits, None)
            .await
    }

    /// Runs a bulk again as a new bulk linked to it (`parent`): on the devices whose outcome
    /// is not `ok` (failed, error, timeout, cancelled — [`Rerun::Failed`]) or on all its
    /// devices ([`Rerun::All`]), with the same command (a template is rendered again) and
    /// limits, requested by `requested_by`. A bulk with no such device is
    /// [`ValidationError::NoDevices`]; devices deleted since are
    /// [`ValidationError::UnknownDevices`].
    pub async fn rerun(
        &self,
        bulk_ref: &BulkRef,
        which: Rerun,
        requested_by: &str,
    ) -> Result<BulkRef> {
        let bulk = self.store.bulk(bulk_ref).await?;
        let ids: Vec<DeviceId> = match which {
            Rerun::All => bulk.device_ids.clone(),
            Rerun::Failed => bulk
                .device_ids
                .iter()
                .copied()
                .filter(|id| bulk.outcomes.get(id).is_some_and(|o| !o.status.is_ok()))
                .collect(),
        };
        self.enqueue_inner(
            &ids,
            &bulk.command,
            requested_by,
            bulk.limits,
            Some(bulk.bulk_ref.clone()),
        )
        .await
    }

    async fn enqueue_inner(
        &self,
        device_ids: &[DeviceId],
        command: &str,
        requested_by: &str,
        limits: LimitOverrides,
        parent: Option<BulkRef>,
    ) -> Result<BulkRef> {
        let valid = BulkRequest {
            device_ids,
            command,
            requested_by,
        }
        .validate()?;
        limits.validate()?;
        let unknown = self.store.unknown_devices(&valid.device_ids).await?;
        if !unknown.is_empty() {
            return Err(ValidationError::UnknownDevices(unknown).into());
        }
        if is_template(&valid.command) {
            let wanted: std::collections::HashSet<_> = valid.device_ids.iter().collect();
            let devices = self.store.list_devices().await?;
            check_templates(
                &valid.command,
                devices.iter().filter(|d| wanted.contains(&d.id)),
            )?;
        }
        let bulk_ref = BulkRef::generate();
        let jobs = chunk_ids(&valid.device_ids, self.chunk_size)
            .map(|ids| {
                BulkJob::new_job(&BulkArgs {
                    device_ids: ids.to_vec(),
                    command: valid.command.clone(),
                    requested_by: valid.requested_by.clone(),
                    bulk_ref: bulk_ref.clone(),
                    limits,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bulk = NewBulk {
            bulk_ref: bulk_ref.clone(),
            command: valid.command,
            requested_by: valid.requested_by,
            device_ids: valid.device_ids,
            limits,
            parent,
        };
        self.store.create_bulk(bulk, jobs, self.clock.now()).await?;
        if let Some(wake) = &self.wake {
            wake.wake();
        }
        Ok(bulk_ref)
    }

    /// Cancels a bulk: devices not started are recorded `cancelled` at once; sessions still
    /// running are closed by the nodes running them within about one cancel poll (see
    /// [`Cancellations`](crate::exec::Cancellations)), each then recorded
    /// `cancelled` with its output so far. Publishes [`BulkEvent::Cancelled`], and the bulk's
    /// one Summary when nothing was running. Cancelling a bulk that is already cancelled or
    /// finished changes nothing (`newly_cancelled: false`).
    pub async fn cancel(&self, bulk_ref: &BulkRef) -> Result<BulkCancelled> {
        let cancelled = self.store.cancel_bulk(bulk_ref, self.clock.now()).await?;
        if !cancelled.newly_cancelled {
            return Ok(cancelled);
        }
        let c = cancelled.counters;
        tracing::info!(
            event = telemetry::BULK_CANCELLED,
            bulk_ref = %bulk_ref,
            devices_cancelled = cancelled.devices_cancelled,
            pending = c.pending,
        );
        self.progress
            .publish(ProgressEvent::Bulk(BulkEvent::Cancelled {
                bulk_ref: bulk_ref.clone(),
                cancelled: cancelled.devices_cancelled,
                done: c.done(),
                total: c.total,
            }))
            .await;
        if cancelled.completed_now {
            announce_summary(
                self.store.as_ref(),
                self.progress.as_ref(),
                self.clock.as_ref(),
                bulk_ref,
                c,
            )
            .await;
        }
        Ok(cancelled)
    }
}
