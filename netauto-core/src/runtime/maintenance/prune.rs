//! Prune: terminal jobs older than the prune age are deleted (which frees their unique keys).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::cutoff;
use crate::backend::queue::JobQueue;
use crate::error::Result;

/// How often terminal jobs are pruned.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes the terminal jobs of `queue` that ended more than `after` before `now` (an age too
/// large to subtract prunes nothing).
pub(crate) async fn prune(queue: &dyn JobQueue, after: Duration, now: DateTime<Utc>) -> Result<()> {
    if let Some(cutoff) = cutoff(now, after) {
        queue.prune(cutoff).await?;
    }
    Ok(())
}
