//! Runs (one command on one device) and their output chunks.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::ids::{BulkRef, DeviceId, RunId};

/// The state of a [`Run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still executing; output may still arrive.
    Running,
    /// Finished with exit status 0 (exec), or with a clean return to the prompt (shell).
    Ok,
    /// Finished with a non-zero exit status.
    Failed,
    /// The transport failed (connect, auth, host key, protocol, closed without an exit
    /// status, output cap reached…); see the run's error.
    Error,
    /// A deadline passed.
    Timeout,
    /// Stopped on purpose (a cancelled run or bulk).
    Cancelled,
}

impl RunStatus {
    /// All statuses, in declaration order.
    pub const ALL: [RunStatus; 6] = [
        Self::Running,
        Self::Ok,
        Self::Failed,
        Self::Error,
        Self::Timeout,
        Self::Cancelled,
    ];

    /// Whether the run has finished (every status but `Running`).
    pub fn is_finished(self) -> bool {
        self != Self::Running
    }

    /// Whether this is a success.
    pub fn is_ok(self) -> bool {
        self == Self::Ok
    }

    /// The lowercase name used in storage and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A status string that is not one of the known names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

/// One command executed on one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Database id.
    pub id: RunId,
    /// The device it ran on.
    pub device_id: DeviceId,
    /// The command line.
    pub command: String,
    /// Who asked for it (user name or e-mail).
    pub requested_by: String,
    /// The bulk it belongs to, if any.
    pub bulk_ref: Option<BulkRef>,
    /// Current status.
    pub status: RunStatus,
    /// The remote exit status, when the transport reported one.
    pub exit_status: Option<i32>,
    /// Short machine-readable error kind (`connect`, `auth`, `timeout`, …) for `error`/`timeout`.
    pub error_kind: Option<String>,
    /// Human-readable error message.
    pub error_message: Option<String>,
    /// When the row was created.
    pub inserted_at: DateTime<Utc>,
    /// When execution started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished; `None` while running.
    pub finished_at: Option<DateTime<Utc>>,
    /// Total size of its output chunks in bytes (always the exact sum).
    pub bytes: u64,
    /// Number of output chunks.
    pub chunks: u64,
    /// The output reached the run's output cap: the session was closed and exactly the cap's
    /// bytes were kept.
    #[serde(default)]
    pub truncated: bool,
    /// The credential reference the login used (one of the device's, tried in order); never
    /// the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ref: Option<String>,
    /// Secrets were replaced by `<redacted>` in the stored output (the platform's secret
    /// patterns, `NETAUTO_REDACT_SECRETS`).
    #[serde(default)]
    pub redacted: bool,
}

impl Run {
    /// The retention timestamp: `finished_at`, or `inserted_at` while running.
    pub fn retention_ts(&self) -> DateTime<Utc> {
        self.finished_at.unwrap_or(self.inserted_at)
    }
}

/// A run to be created (status `running`); the store assigns id and timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRun {
    /// The device.
    pub device_id: DeviceId,
    /// The command line.
    pub command: String,
    /// Who asked for it.
    pub requested_by: String,
    /// The bulk it belongs to.
    pub bulk_ref: Option<BulkRef>,
}

/// How a run finished, given to [`crate::RunLog::finish_run`](crate::RunLog::finish_run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFinish {
    /// Final status; must not be `Running`.
    pub status: RunStatus,
    /// Remote exit status.
    pub exit_status: Option<i32>,
    /// Error kind for `error`/`timeout`.
    pub error_kind: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// The output was cut at the output cap.
    #[serde(default)]
    pub truncated: bool,
    /// The credential reference the login used.
    #[serde(default)]
    pub credential_ref: Option<String>,
    /// Secrets were redacted from the output.
    #[serde(default)]
    pub redacted: bool,
}

impl RunFinish {
    /// A finish with the given status and nothing else.
    pub fn new(status: RunStatus) -> Self {
        Self {
            status,
            exit_status: None,
            error_kind: None,
            error_message: None,
            truncated: false,
            credential_ref: None,
            redacted: false,
        }
    }

    /// Records the credential reference the login used.
    pub fn with_credential_ref(mut self, credential_ref: Option<String>) -> Self {
        self.credential_ref = credential_ref;
        self
    }

    /// Records that secrets were redacted from the output.
    pub fn with_redacted(mut self, redacted: bool) -> Self {
        self.redacted = redacted;
        self
    }

    /// Marks the output as cut at the output cap.
    pub fn with_truncated(mut self, truncated: bool) -> Self {
        self.truncated = truncated;
        self
    }

    /// Sets the exit status.
    pub fn with_exit_status(mut self, code: i32) -> Self {
        self.exit_status = Some(code);
        self
    }

    /// Sets the error kind and message.
    pub fn with_error(mut self, kind: impl Into<String>, message: impl Into<String>) -> Self {
        self.error_kind = Some(kind.into());
        self.error_message = Some(message.into());
        self
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl OutputStream {
    /// `"stdout"` or `"stderr"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

impl FromStr for OutputStream {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(Self::Stdout),
            "stderr" => Ok(Self::Stderr),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// A piece of a run's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunChunk {
    /// The run.
    pub run_id: RunId,
    /// Position in the run's output: 0, 1, 2, … with no gaps.
    pub seq: u64,
    /// Which stream.
    pub stream: OutputStream,
    /// The bytes (device output is not necessarily UTF-8).
    pub data: Bytes,
    /// When it was stored.
    pub inserted_at: DateTime<Utc>,
}

/// What [`crate::RunLog::append_chunk`](crate::RunLog::append_chunk) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkAppended {
    /// The new chunk's sequence number.
    pub seq: u64,
    /// The run's byte total after the append.
    pub run_bytes: u64,
}
