//! Bulks: one command on many devices.
//!
//! | file | holds |
//! |---|---|
//! | `validate.rs` | the request's checks and its chunking into jobs |
//! | `service.rs` | [`BulkService`]: validate, write the bulk and its jobs atomically, cancel |
//! | `job.rs` | [`BulkJob`]: the worker running one job's devices, exactly once each |
//! | `template.rs` | command templates rendered per device ([`render_command`]) |
//!
//! Following a bulk is [`crate::follow::follow_bulk`].

mod job;
mod service;
mod template;
mod validate;

pub use job::{
    ABANDONED, BulkArgs, BulkJob, DEFAULT_DEVICE_CONCURRENCY, DEVICES_PER_JOB_VAR,
    devices_per_job_from_env, parse_devices_per_job,
};
pub use service::{BulkService, Rerun};
pub use template::{check_templates, is_template, render_command};
pub use validate::{
    BulkRequest, DEFAULT_CHUNK_SIZE, MAX_BULK_DEVICES, MAX_COMMAND_BYTES, ValidBulk, chunk_ids,
    dedup_ids, validate_command,
};
