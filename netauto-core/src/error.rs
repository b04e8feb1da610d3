//! The one error type of netauto-core and the typed validation/configuration errors inside it.

use std::fmt;

use crate::backend::network::NetworkError;
use crate::model::ids::{BulkRef, DeviceId, JobId, RunId};

/// A boxed error from a backend (database driver, I/O) kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with netauto's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in netauto-core and its backends.
///
/// Variants are semantic (what happened), not per-backend; adapters map their own errors into
/// them. [`Error::is_retryable`] says whether trying the same operation again can help.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// What was looked up: `"device"`, `"run"`, `"job"`, `"bulk"`.
        what: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// The run was deleted (by retention, usually) while something was still writing to it.
    #[error("run {0} is gone (deleted or never created)")]
    RunGone(RunId),
    /// The operation lost a race or does not fit the current state (a stale job attempt, a
    /// finished run being appended to, …).
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// The input was rejected; nothing was changed.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A configuration value is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Running a command on a device failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// Stored data could not be encoded or decoded (job args, events).
    #[error("serialization failed: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The backend could not be reached or is overloaded (pool timeout, connection refused,
    /// database locked). Retrying later can help.
    #[error("backend unavailable: {source}")]
    Unavailable {
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
    /// The backend failed in a way that retrying will not fix (constraint violated, schema
    /// missing, corrupt data).
    #[error("backend error: {source}")]
    Backend {
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Network(e) => e.is_retryable(),
            Self::NotFound { .. }
            | Self::RunGone(_)
            | Self::Conflict(_)
            | Self::Validation(_)
            | Self::Config(_)
            | Self::Serialization(_)
            | Self::Backend { .. } => false,
        }
    }

    /// A [`Error::NotFound`] for a device.
    pub fn device_not_found(id: DeviceId) -> Self {
        Self::NotFound {
            what: "device",
            id: id.to_string(),
        }
    }

    /// A [`Error::NotFound`] for a run.
    pub fn run_not_found(id: RunId) -> Self {
        Self::NotFound {
            what: "run",
            id: id.to_string(),
        }
    }

    /// A [`Error::NotFound`] for a job.
    pub fn job_not_found(id: JobId) -> Self {
        Self::NotFound {
            what: "job",
            id: id.to_string(),
        }
    }

    /// A [`Error::NotFound`] for a bulk.
    pub fn bulk_not_found(bulk_ref: &BulkRef) -> Self {
        Self::NotFound {
            what: "bulk",
            id: bulk_ref.to_string(),
        }
    }

    /// Wraps a backend error that retrying can fix.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            source: source.into(),
        }
    }

    /// Wraps a backend error that retrying will not fix.
    pub fn backend(source: impl Into<BoxError>) -> Self {
        Self::Backend {
            source: source.into(),
        }
    }
}

/// Why an operation conflicted with the current state.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// A fenced job operation named an attempt that is no longer the executing one (the job
    /// was rescued, cancelled or already finished).
    #[error("job {job} attempt {attempt} is no longer executing")]
    StaleAttempt {
        /// The job.
        job: JobId,
        /// The attempt the caller held.
        attempt: u32,
    },
    /// The job is already in a terminal state.
    #[error("job {0} is already finished")]
    JobFinished(JobId),
    /// The job is executing or completed: it cannot be run again now.
    #[error("job {0} is executing or completed")]
    JobActive(JobId),
    /// The run is already finished; output can no longer be appended and it cannot finish again.
    #[error("run {0} is already finished")]
    RunFinished(RunId),
    /// The bulk was cancelled: no new run may start in it.
    #[error("bulk {0} was cancelled")]
    BulkCancelled(BulkRef),
    /// A record with this key exists already.
    #[error("{what} {key} already exists")]
    Exists {
        /// What kind of record.
        what: &'static str,
        /// Its key.
        key: String,
    },
}

impl From<Conflict> for Error {
    fn from(c: Conflict) -> Self {
        Self::Conflict(c)
    }
}

/// Input that was rejected. Nothing was written when one of these is returned.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The command is a problem; see [`CommandError`].
    #[error("invalid command: {0}")]
    Command(#[from] CommandError),
    /// `requested_by` was empty or blank.
    #[error("requested_by must not be empty")]
    EmptyRequestedBy,
    /// No device ids were given.
    #[error("no devices given")]
    NoDevices,
    /// More device ids than one bulk may hold (after de-duplication).
    #[error("too many devices: {count} (at most {max} per bulk)")]
    TooManyDevices {
        /// How many distinct ids were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Some device ids do not exist. All of them are listed, in the order given.
    #[error("unknown device ids: {}", DisplayIds(.0))]
    UnknownDevices(Vec<DeviceId>),
    /// The command template cannot be rendered for some devices (or has a syntax error):
    /// one line per device (`name: problem`).
    #[error("the command template does not render: {}", problems.join("; "))]
    Template {
        /// What is wrong, per device.
        problems: Vec<String>,
    },
    /// A field of a record was invalid (`field` says which).
    #[error("invalid {field}: {reason}")]
    Field {
        /// The field name, e.g. `"queue"`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

struct DisplayIds<'a>(&'a [DeviceId]);

impl fmt::Display for DisplayIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        for (i, id) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, " and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Why a command was rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Empty, or only whitespace.
    #[error("command is empty")]
    Empty,
    /// Longer than the limit, in bytes, after trimming.
    #[error("command is {len} bytes long (at most {max})")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Contains a NUL byte.
    #[error("command contains a NUL character at byte {at}")]
    Nul {
        /// Byte offset in the trimmed command.
        at: usize,
    },
    /// Contains a line break (`\n` or `\r`): one bulk runs exactly one command line.
    #[error("command contains a line break at byte {at}; run one command per bulk")]
    Newline {
        /// Byte offset in the trimmed command.
        at: usize,
    },
    /// Contains another control character (tab, escape, C1 controls, …).
    #[error("command contains control character {ch:?} at byte {at}")]
    Control {
        /// The character.
        ch: char,
        /// Byte offset in the trimmed command.
        at: usize,
    },
}

/// A configuration value that could not be used. Names the variable and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    /// The variable (environment variable or setting) name.
    pub var: &'static str,
    /// The value that was given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_is_semantic() {
        assert!(Error::unavailable("pool timed out").is_retryable());
        assert!(!Error::backend("constraint").is_retryable());
        assert!(!Error::RunGone(RunId(1)).is_retryable());
        assert!(!Error::from(ValidationError::NoDevices).is_retryable());
    }

    #[test]
    fn unknown_ids_are_listed_and_truncated_in_the_message() {
        let few = ValidationError::UnknownDevices(vec![DeviceId(3), DeviceId(9)]);
        assert_eq!(few.to_string(), "unknown device ids: 3, 9");
        let many = ValidationError::UnknownDevices((0..25).map(DeviceId).collect());
        assert!(many.to_string().ends_with("19 and 5 more"), "{many}");
    }
}
