//! Runs and their output chunks in [`PgRunStore`](super::PgRunStore): written once for both backends.

pub(super) use crate::shared::runs::{
    append_chunk, bulk_runs, cancel_requests, chunks, create_run, device_runs, finish_run,
    request_run_cancel, run,
};
