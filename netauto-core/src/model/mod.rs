//! Plain data, no I/O: ids, devices, runs and their chunks, jobs, bulk records.

pub(crate) mod bulk;
pub(crate) mod device;
pub(crate) mod ids;
pub(crate) mod job;
pub(crate) mod run;
pub(crate) mod team;
pub(crate) mod token;
