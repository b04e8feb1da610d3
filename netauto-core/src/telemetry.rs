//! Names of the `tracing` events netauto emits.
//!
//! Every event carries a stable `event` field with one of these names, so a subscriber (or a
//! test's capturing layer) can match on it. Device ids appear as event fields, never as metric
//! labels; secrets never appear at all.

/// A job attempt started. Fields: `job_id`, `worker`, `queue`, `attempt`.
pub const JOB_START: &str = "netauto.job.start";
/// A job attempt ended without error. Fields: `job_id`, `worker`, `queue`, `attempt`, `duration_ms`.
pub const JOB_STOP: &str = "netauto.job.stop";
/// A job attempt failed. Fields: `job_id`, `worker`, `queue`, `attempt`, `duration_ms`,
/// `kind` (`retry`, `discard`, `timeout`, `malformed`, `unknown_worker`), `error`, `state`.
pub const JOB_EXCEPTION: &str = "netauto.job.exception";
/// A device command's run ended (bulk or not). Fields: `status`, `error_kind` (empty when
/// none), `duration_ms` (connect, login and output included), `bytes` (output stored).
pub const RUN_FINISH: &str = "netauto.run.finish";
/// An SSH connection attempt ended (netauto-ssh; TCP, jump hosts, handshake, host key and
/// login). Fields: `outcome` (`ok` or the error kind: `connect`, `auth`, `host_key`, …),
/// `duration_ms`. Logged at debug level.
pub const SSH_CONNECT: &str = "netauto.ssh.connect";
/// A bulk device finished ok. Fields: `bulk_ref`, `device_id`, `run_id`.
pub const BULK_OK: &str = "netauto.bulk.ok";
/// A bulk device failed. Fields: `bulk_ref`, `device_id`, `run_id`, `status`, `error_kind`.
pub const BULK_ERROR: &str = "netauto.bulk.error";
/// A bulk completed. Fields: `bulk_ref`, `ok`, `failed`, `cancelled`, `total`, `duration_ms`.
pub const BULK_SUMMARY: &str = "netauto.bulk.summary";
/// A bulk was cancelled. Fields: `bulk_ref`, `devices_cancelled` (not started, recorded at
/// once), `pending` (still running, closing).
pub const BULK_CANCELLED: &str = "netauto.bulk.cancelled";
/// A bulk job ended for good without completing and its devices without an outcome were
/// recorded. Fields: `bulk_ref`, `job_id`, `devices`, `reason`.
pub const BULK_ABANDONED: &str = "netauto.bulk.abandoned";
/// A retention purge ran. Fields: `dry_run`, `runs_age`, `runs_bytes`, `bytes_age`,
/// `bytes_bytes`, `bytes_freed`, `batches`, `devices_over_cap_before`,
/// `devices_over_cap_after`, `unresolved_devices`, `kept_by_guard`, `duration_ms`.
pub const RETENTION_PURGE: &str = "netauto.retention.purge";
