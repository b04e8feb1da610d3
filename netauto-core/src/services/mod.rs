//! The services: run a command, start a bulk, run bulk jobs, purge old runs.

pub mod bulk;
pub mod cancel;
pub mod follow;
pub mod network;
pub mod retention;

pub use bulk::{Bulk, BulkArgs, BulkJob, Wake};
pub use cancel::{CancelReason, CancelWatch, Cancellations};
pub use follow::{BulkFollower, FollowUpdate};
pub use network::{ExecuteOptions, Network};
pub use retention::{PurgeReport, RetentionArgs, RetentionWorker};
