//! Run one command on one device: the [`Executor`] opens the session through a
//! [`NetworkClient`](crate::NetworkClient), streams the output into stored chunks, publishes it
//! live, and finishes the run — under [`ExecLimits`] (deadline, output cap) and
//! [`Cancellations`].
//!
//! | file | holds |
//! |---|---|
//! | `executor.rs` | [`Executor`], [`RunOptions`], the run's error kinds |
//! | `limits.rs` | [`ExecLimits`] (`NETAUTO_COMMAND_TIMEOUT`, `NETAUTO_RUN_MAX_OUTPUT`), [`LimitOverrides`] |
//! | `cancel.rs` | [`Cancellations`]: cancel requests polled from the store |

mod cancel;
mod executor;
mod limits;

pub use cancel::{CancelReason, CancelWatch, Cancellations, DEFAULT_CANCEL_POLL};
pub(crate) use executor::is_bulk_cancelled;
pub use executor::{
    CANCELLED, CLOSED, DEFAULT_CHUNK_BYTES, DEFAULT_FLUSH_AFTER, Executor, OUTPUT_CAP, RunOptions,
    incomplete_utf8_tail,
};
pub use limits::{
    COMMAND_TIMEOUT_VAR, DEFAULT_COMMAND_TIMEOUT, DEFAULT_RUN_MAX_OUTPUT, ExecLimits,
    LimitOverrides, MAX_COMMAND_TIMEOUT, MAX_RUN_MAX_OUTPUT, MIN_COMMAND_TIMEOUT,
    RUN_MAX_OUTPUT_VAR, parse_max_output, parse_timeout,
};
