//! SSH settings of the commands that run jobs (`worker`, `bulk run --wait`): host-key mode,
//! known_hosts file, credentials, and the limits every device command runs under.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use netauto_core::exec::{parse_max_output, parse_timeout};
use netauto_core::{ExecLimits, NetworkClient};
use netauto_ssh::{
    EnvCredentials, FileCredentials, HostKeyPolicy, KnownHosts, PacingConfig, SshClientConfig,
    SshNetworkClient,
};

/// How host keys are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum HostKeyMode {
    /// Only keys already in the known_hosts file; unknown or changed keys fail the device.
    Strict,
    /// Trust on first use: unknown keys are recorded in the file; a changed key still fails.
    AcceptNew,
    /// Accept every key (labs only; every connection logs a warning).
    AcceptAny,
}

/// SSH options, from flags or environment variables.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SshArgs {
    /// Host-key checking.
    #[arg(
        long,
        env = "NETAUTO_SSH_HOST_KEYS",
        value_enum,
        default_value = "strict"
    )]
    pub(crate) host_keys: HostKeyMode,
    /// OpenSSH known_hosts file [default: ~/.ssh/known_hosts].
    #[arg(long, env = "NETAUTO_SSH_KNOWN_HOSTS", value_name = "FILE")]
    pub(crate) known_hosts: Option<PathBuf>,
    /// JSON credentials file (`{"<credential_ref>": {"password": …} | {"private_key_file": …}}`);
    /// without it, secrets come from NETAUTO_SSH_<REF>_PASSWORD / _KEY_FILE / _KEY / _PASSPHRASE.
    #[arg(long, env = "NETAUTO_SSH_CREDENTIALS", value_name = "FILE")]
    pub(crate) credentials: Option<PathBuf>,
    /// Deadline of each device's command, connect, login and output included: seconds, or
    /// with a unit (`500ms`, `90s`, `5m`, `2h`). A bulk's own `--timeout` wins.
    #[arg(long, env = "NETAUTO_COMMAND_TIMEOUT", value_name = "DURATION", default_value = "300", value_parser = duration_arg)]
    pub(crate) command_timeout: Duration,
    /// Most output kept per run: bytes, or with a KiB/MiB/GiB suffix. At the cap the session
    /// is closed and the run marked truncated. A bulk's own `--max-output` wins.
    #[arg(long, env = "NETAUTO_RUN_MAX_OUTPUT", value_name = "BYTES", default_value = "16MiB", value_parser = bytes_arg)]
    pub(crate) run_max_output: u64,
    /// New SSH connections started per second over all devices (`unlimited` or 0: no pacing).
    #[arg(long, env = netauto_ssh::CONNECTIONS_PER_SECOND_VAR, value_name = "N", default_value = "50", value_parser = rate_arg)]
    pub(crate) connections_per_second: OrUnlimited<f64>,
    /// SSH sessions open at once over all devices (or `unlimited`).
    #[arg(long, env = netauto_ssh::MAX_SESSIONS_VAR, value_name = "N", default_value = "200", value_parser = count_arg)]
    pub(crate) max_sessions: OrUnlimited<usize>,
    /// SSH sessions open at once to one endpoint host:port (or `unlimited`): many devices
    /// behind one address share it.
    #[arg(long, env = netauto_ssh::SESSIONS_PER_ENDPOINT_VAR, value_name = "N", default_value = "4", value_parser = count_arg)]
    pub(crate) sessions_per_endpoint: OrUnlimited<usize>,
    /// Devices of one bulk job run at the same time (1-1000); devices in flight = this x the
    /// bulk jobs run at once.
    #[arg(long, env = "NETAUTO_DEVICES_PER_JOB", value_name = "N", default_value = "10", value_parser = netauto_core::bulk::parse_devices_per_job)]
    pub(crate) devices_per_job: usize,
}

/// A limit that may be `unlimited` (`None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OrUnlimited<T>(pub(crate) Option<T>);

fn rate_arg(s: &str) -> Result<OrUnlimited<f64>, String> {
    netauto_ssh::parse_rate(s).map(OrUnlimited)
}

fn count_arg(s: &str) -> Result<OrUnlimited<usize>, String> {
    netauto_ssh::parse_count(s).map(OrUnlimited)
}

/// Parses a deadline flag (`300`, `90s`, `5m`…).
pub(crate) fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_timeout(s)
}

/// Parses a byte-size flag (`16MiB`…).
pub(crate) fn bytes_arg(s: &str) -> Result<u64, String> {
    parse_max_output(s)
}

impl SshArgs {
    /// The SSH client these settings describe.
    pub(crate) fn client(&self) -> anyhow::Result<Arc<dyn NetworkClient>> {
        let known = match &self.known_hosts {
            Some(path) => KnownHosts::from_file(path),
            None => match std::env::var_os("HOME") {
                Some(home) => KnownHosts::from_file(PathBuf::from(home).join(".ssh/known_hosts")),
                None => KnownHosts::new(),
            },
        };
        let host_keys = match self.host_keys {
            HostKeyMode::Strict => HostKeyPolicy::Strict(known),
            HostKeyMode::AcceptNew => HostKeyPolicy::AcceptNew(known),
            HostKeyMode::AcceptAny => {
                tracing::warn!("host keys are not checked (--host-keys accept-any): labs only");
                HostKeyPolicy::AcceptAny
            }
        };
        let config = match &self.credentials {
            Some(path) => {
                SshClientConfig::new(FileCredentials::open(path).with_context(|| {
                    format!("cannot load the credentials file {}", path.display())
                })?)
            }
            None => SshClientConfig::new(EnvCredentials::new()),
        }
        .with_host_keys(host_keys)
        .with_pacing(PacingConfig {
            max_sessions: self.max_sessions.0.unwrap_or(usize::MAX),
            connections_per_second: self.connections_per_second.0,
            sessions_per_endpoint: self.sessions_per_endpoint.0,
            ..PacingConfig::default()
        });
        Ok(Arc::new(SshNetworkClient::new(config)))
    }

    /// The limits of every device command this process runs.
    pub(crate) fn limits(&self) -> ExecLimits {
        ExecLimits {
            timeout: self.command_timeout,
            max_output: self.run_max_output,
        }
    }
}
