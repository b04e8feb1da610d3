//! In-memory backends of netauto: for tests, demos and single-process use.
//!
//! # Overview
//!
//! * [`InMemoryJobQueue`]: the [`JobQueue`](netauto_core::JobQueue) contract (claim order,
//!   leases, fencing by attempt, live unique keys, rescue, prune).
//! * [`InMemoryRunStore`]: the [`RunStore`](netauto_core::RunStore) contract (devices, runs,
//!   chunks, bulks, retention queries). It shares its "database" with one queue, so
//!   [`create_bulk`](netauto_core::BulkStore::create_bulk) writes the bulk and its jobs in one
//!   atomic step.
//!
//! The in-process progress feed is core's
//! [`LocalProgressHub`](netauto_core::LocalProgressHub), shared with the SQLite backend.
//!
//! Both the queue and the store pass the backend conformance suite of `netauto-core`
//! (`tests/conformance.rs`), so they behave as the SQL backends do: ids start at 1, times are
//! the `now` passed in, and errors are the same typed [`Error`](netauto_core::Error)s.
//! Nothing is persisted: everything is gone when the last clone is dropped.
//!
//! # Example
//!
//! ```
//! use chrono::{TimeDelta, TimeZone, Utc};
//! use netauto_core::{ClaimRequest, JobQueue, JobState, NewJob, ProgressSink};
//! use netauto_core::LocalProgressHub;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let (queue, _store) = netauto_memory::backend();
//! let _hub = LocalProgressHub::new();
//!
//! let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
//! let job = queue
//!     .enqueue(NewJob::new("default", "echo", serde_json::json!({"say": "hi"})), now)
//!     .await?
//!     .into_job();
//!
//! let claimed = queue.claim(&ClaimRequest::new("default", 10, "node-a"), now).await?;
//! assert_eq!(claimed.len(), 1);
//! assert_eq!((claimed[0].id, claimed[0].attempt), (job.id, 1));
//!
//! queue.complete(job.id, 1, now + TimeDelta::seconds(1)).await?;
//! assert_eq!(queue.job(job.id).await?.state, JobState::Completed);
//! # Ok::<(), netauto_core::Error>(())
//! # })?;
//! # Ok(())
//! # }
//! ```

mod queue;
mod store;

pub use queue::InMemoryJobQueue;
pub use store::InMemoryRunStore;

/// A fresh queue and a store that enqueues its bulks' jobs into it.
pub fn backend() -> (InMemoryJobQueue, InMemoryRunStore) {
    let queue = InMemoryJobQueue::new();
    let store = InMemoryRunStore::new(queue.clone());
    (queue, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn backends_are_send_sync_and_clone() {
        assert_send_sync::<InMemoryJobQueue>();
        assert_send_sync::<InMemoryRunStore>();
    }
}
