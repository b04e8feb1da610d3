//! Following: one way, for every viewer (the web app's event streams, the CLI's progress
//! bar, an embedding host), to watch a bulk or a run — the durable state from the store, then
//! the live feed, back to the store whenever the feed missed something.
//!
//! * [`follow_bulk`] → [`BulkFollower`] yields [`BulkUpdate`]s: a snapshot, progress per
//!   device, one summary (and a note when events were missed, before the fresh snapshot).
//! * [`follow_run`] → [`RunFollower`] yields [`RunUpdate`]s: chunks in order, then the
//!   finished run.

mod bulk;
mod run;

pub use bulk::{BulkFollower, BulkUpdate, DEFAULT_RESYNC_AFTER, STRAGGLER_GRACE, follow_bulk};
pub use run::{DEFAULT_RUN_PAGE, RunFollower, RunUpdate, follow_run};
