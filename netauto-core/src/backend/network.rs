//! The [`NetworkClient`] trait: how a command reaches a device.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_core::stream::BoxStream;

use crate::model::device::Device;

/// One event of a command's output, in the order the device produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputEvent {
    /// Bytes on standard output.
    Stdout(Bytes),
    /// Bytes on standard error.
    Stderr(Bytes),
    /// The command ended. Output may still follow on some transports; the stream ends when
    /// the channel closes.
    Exit(ExitStatus),
    /// The login used this credential reference (of the device's, tried in order); recorded
    /// on the run, never the secret.
    LoggedIn {
        /// The reference.
        credential_ref: String,
    },
    /// The transport replaced secrets in the output (the platform's secret patterns);
    /// recorded on the run.
    Redacted,
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// An exit code.
    Code(i32),
    /// Killed by a signal.
    Signal(String),
    /// The transport finished, but the device's platform says the command failed: an output
    /// line matched a failure pattern, or the device asked a question that was not answered.
    Rejected(Rejection),
}

/// Why a command counts as failed although its session ended cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What happened.
    pub kind: RejectionKind,
    /// The output line or question that showed it.
    pub detail: String,
}

/// The kinds of [`Rejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// An output line matched one of the platform's failure patterns (`% Invalid input`).
    CommandRejected,
    /// The device asked a question (`[confirm]`) and the bulk does not allow answering.
    PromptUnanswered,
}

impl RejectionKind {
    /// The run's `error_kind`: `command_rejected` or `prompt_unanswered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommandRejected => "command_rejected",
            Self::PromptUnanswered => "prompt_unanswered",
        }
    }
}

/// The stream of a command's output.
pub type OutputEvents = BoxStream<'static, Result<OutputEvent, NetworkError>>;

/// Options of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOptions {
    /// Deadline for the whole command, connect included.
    pub timeout: Option<Duration>,
    /// Whether the platform's answers may be typed when the device asks a question
    /// (`[confirm]`); when `false` the command ends as soon as a question shows.
    pub answer_prompts: bool,
}

impl ExecOptions {
    /// Sets the whole-command deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Allows typing the platform's answers to questions.
    pub fn with_answer_prompts(mut self, answer: bool) -> Self {
        self.answer_prompts = answer;
        self
    }
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Establishing the TCP connection and SSH handshake.
    Connect,
    /// Authenticating.
    Auth,
    /// The whole command.
    Command,
    /// No output for too long.
    Idle,
}

impl TimeoutPhase {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Auth => "auth",
            Self::Command => "command",
            Self::Idle => "idle",
        }
    }
}

/// Why a command could not be run (or finished) on a device. Messages never contain secrets.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The device could not be reached.
    #[error("cannot connect to {host}: {message}")]
    Connect {
        /// `host:port`.
        host: String,
        /// What failed.
        message: String,
    },
    /// Authentication was rejected.
    #[error("authentication failed on {host}: {message}")]
    Auth {
        /// `host:port`.
        host: String,
        /// What failed.
        message: String,
    },
    /// The host key did not match (or was unknown under strict checking).
    #[error("host key of {host} not trusted: expected {expected}, got {actual}")]
    HostKey {
        /// `host:port`.
        host: String,
        /// The known fingerprint, or `"none"`.
        expected: String,
        /// The fingerprint presented.
        actual: String,
    },
    /// A deadline passed.
    #[error("{} timeout after {after:?}", phase.as_str())]
    Timeout {
        /// Which deadline.
        phase: TimeoutPhase,
        /// Its length.
        after: Duration,
    },
    /// The peer violated the protocol or offered nothing we accept.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection closed before the command finished.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The device or its platform is not supported or misconfigured (no credentials, …).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl NetworkError {
    /// Short machine-readable kind, stored on runs and used in telemetry.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Auth { .. } => "auth",
            Self::HostKey { .. } => "host_key",
            Self::Timeout { .. } => "timeout",
            Self::Protocol(_) => "protocol",
            Self::Closed(_) => "closed",
            Self::Unsupported(_) => "unsupported",
        }
    }

    /// Whether trying again later can help (unreachable, timed out, dropped), as opposed to
    /// errors that need a person (bad credentials, changed host key, unsupported device).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Timeout { .. } | Self::Closed(_)
        )
    }
}

/// Runs commands on devices.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait NetworkClient: Send + Sync + Debug + 'static {
    /// Starts `command` on `device` and returns its output as it arrives: stdout/stderr
    /// events, then (normally) one [`OutputEvent::Exit`]; the stream ends when the session
    /// closes. Errors before the command starts are returned directly; errors after it
    /// started end the stream with an `Err` item.
    async fn execute(
        &self,
        device: &Device,
        command: &str,
        options: &ExecOptions,
    ) -> Result<OutputEvents, NetworkError>;
}
