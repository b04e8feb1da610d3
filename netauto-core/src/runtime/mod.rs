//! The worker runtime: the [`Runner`]'s claim loop runs jobs with the [`Worker`]s of a
//! [`WorkerRegistry`], renews their leases and records their outcomes; beside it run the
//! maintenance tasks (rescue, prune, periodic cron jobs). Time comes from a [`Clock`];
//! [`Wake`] lets an enqueue start the loop at once.
//!
//! | file | holds |
//! |---|---|
//! | `runner.rs` | [`Runner`]: the claim loop, shutdown, stats |
//! | `attempt.rs` | one attempt of one job: lease renewal, fencing, outcome |
//! | `complete.rs` | batching of completions |
//! | `config.rs` | [`RunnerConfig`], [`QueueLimits`] (`NETAUTO_QUEUES`) |
//! | `worker.rs` | [`Worker`], [`WorkerRegistry`], [`JobContext`], [`WorkerError`] |
//! | `cron.rs` | [`CronSchedule`], [`CronEntry`] |
//! | `clock.rs` | [`Clock`], [`SystemClock`], [`ManualClock`] |
//! | `waking.rs` | [`Wake`], [`RunnerWaker`], [`WakingQueue`] |
//! | `hooked.rs` | [`HookedQueue`]: a queue wrapper forwarding every call through [`QueueHooks`] |
//! | `maintenance/` | rescue, prune, periodic enqueue |

mod attempt;
mod clock;
mod complete;
mod config;
pub mod cron;
mod hooked;
mod maintenance;
mod runner;
mod waking;
mod worker;

pub use attempt::AttemptOutcome;
#[cfg(feature = "testing")]
pub(crate) use attempt::{LeaseSettings, execute_job};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{LEGACY_QUEUES_VAR, QUEUES_VAR, QueueLimits, RunnerConfig};
pub use cron::{CronEntry, CronSchedule};
pub use hooked::{HookedQueue, QueueHooks};
pub use runner::{
    DEFAULT_PRUNE_AFTER, Runner, RunnerHandle, RunnerStats, ShutdownReport, TickReport,
};
pub use waking::{RunnerWaker, Wake, WakeAfterEnqueue, WakingQueue};
pub(crate) use worker::{ErasedWorker, PerformError};
pub use worker::{JobContext, Worker, WorkerError, WorkerRegistry, default_backoff};
