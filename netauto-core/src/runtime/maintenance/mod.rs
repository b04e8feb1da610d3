//! The runner's maintenance tasks, one file each, run by [`Runner::tick`](super::Runner::tick)
//! beside the claim loop:
//!
//! * [`rescue`]: jobs whose lease expired (their node died) go back to the queue, or are
//!   discarded — after their worker's discard hook — when no attempt is left.
//! * [`prune`]: terminal jobs older than the prune age are deleted.
//! * [`periodic`]: due cron slots are enqueued (one job per slot across all nodes).

pub(crate) mod periodic;
pub(crate) mod prune;
pub(crate) mod rescue;

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Whether a task last run at `last` is due again at `now`.
pub(crate) fn due(last: Option<DateTime<Utc>>, now: DateTime<Utc>, every: Duration) -> bool {
    match last {
        None => true,
        Some(t) => (now - t).to_std().map(|d| d >= every).unwrap_or(false),
    }
}

/// `now - after`, or `None` when `after` is too large to subtract.
pub(crate) fn cutoff(now: DateTime<Utc>, after: Duration) -> Option<DateTime<Utc>> {
    chrono::Duration::from_std(after)
        .ok()
        .and_then(|a| now.checked_sub_signed(a))
}
