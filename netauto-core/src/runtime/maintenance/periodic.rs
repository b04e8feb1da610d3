//! Periodic jobs: the latest due slot of every cron entry is enqueued once (its unique key
//! keeps one job per slot however many nodes insert it).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::cutoff;
use crate::backend::queue::JobQueue;
use crate::error::Result;
use crate::runtime::cron::CronEntry;

/// The cron entries of a runner and the last slot each one enqueued.
#[derive(Debug, Default)]
pub(crate) struct PeriodicEnqueuer {
    entries: Vec<CronEntry>,
    last: Mutex<HashMap<usize, DateTime<Utc>>>,
}

impl PeriodicEnqueuer {
    pub(crate) fn new(entries: Vec<CronEntry>) -> Self {
        Self {
            entries,
            last: Mutex::default(),
        }
    }

    pub(crate) fn entries(&self) -> &[CronEntry] {
        &self.entries
    }

    /// Enqueues the latest slot at or before `now` of every entry not enqueued yet by this
    /// node; answers how many jobs were newly inserted (another node may have inserted a slot
    /// first).
    ///
    /// A slot older than the prune age (`prune_after`) may have run and been pruned, which
    /// freed its unique key: a node starting now (e.g. weeks after an @yearly slot) must not
    /// run it again, so such a slot is not caught up.
    pub(crate) async fn enqueue_due(
        &self,
        queue: &dyn JobQueue,
        prune_after: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let mut inserted = 0;
        for (i, entry) in self.entries.iter().enumerate() {
            let Some(slot) = entry.schedule().latest_at_or_before(now) else {
                continue;
            };
            if self.last().get(&i) == Some(&slot) {
                continue;
            }
            let forgotten = prune_after
                .and_then(|after| cutoff(now, after))
                .is_some_and(|cutoff| slot < cutoff);
            if forgotten {
                continue;
            }
            if queue
                .enqueue(entry.job_for_slot(slot), now)
                .await?
                .is_inserted()
            {
                inserted += 1;
            }
            self.last().insert(i, slot);
        }
        Ok(inserted)
    }

    fn last(&self) -> std::sync::MutexGuard<'_, HashMap<usize, DateTime<Utc>>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
