//! [`FaultyStore`]: a [`RunStore`](netauto_core::RunStore) that passes everything through,
//! except that its purge batches can fail after a number of calls (an interrupted purge
//! without killing a process) or be announced on stdout ([`BATCH`] lines) and slowed down (so
//! a test can kill a purge process between or inside batches). It is the test store wrapper
//! of `netauto_core::testing`, re-exported here for the `crash_worker` binary and the tests.

pub use netauto_core::testing::{BATCH, FaultyStore};
