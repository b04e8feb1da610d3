//! SSH settings of the commands that run jobs (`worker`, `bulk run --wait`): host-key mode,
//! known_hosts file, credentials, and the limits every device command runs under.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use netauto_core::exec::{parse_max_output, parse_timeout};
use netauto_core::{ExecLimits, NetworkClient};
use netauto_ssh::{HostKeyMode, SshNetworkClient, SshSettings};

/// SSH options. The host-key, known_hosts, credentials and pacing flags override the
/// `NETAUTO_SSH_…` variables, which [`SshSettings::from_env`] reads (as the server does).
// The field docs are `--help` text, which names variables like NETAUTO_SSH_<REF>_PASSWORD.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SshArgs {
    /// Host-key checking [env: NETAUTO_SSH_HOST_KEYS] [default: strict].
    #[arg(long, value_enum)]
    pub(crate) host_keys: Option<HostKeyMode>,
    /// OpenSSH known_hosts file [env: NETAUTO_SSH_KNOWN_HOSTS] [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE")]
    pub(crate) known_hosts: Option<PathBuf>,
    /// JSON credentials file (`{"<credential_ref>": {"password": …} | {"private_key_file": …}}`);
    /// without it, secrets come from NETAUTO_SSH_<REF>_PASSWORD / _KEY_FILE / _KEY / _PASSPHRASE
    /// [env: NETAUTO_SSH_CREDENTIALS].
    #[arg(long, value_name = "FILE")]
    pub(crate) credentials: Option<PathBuf>,
    /// Deadline of each device's command, connect, login and output included: seconds, or
    /// with a unit (`500ms`, `90s`, `5m`, `2h`). A bulk's own `--timeout` wins.
    #[arg(long, env = "NETAUTO_COMMAND_TIMEOUT", value_name = "DURATION", default_value = "300", value_parser = duration_arg)]
    pub(crate) command_timeout: Duration,
    /// Most output kept per run: bytes, or with a KiB/MiB/GiB suffix. At the cap the session
    /// is closed and the run marked truncated. A bulk's own `--max-output` wins.
    #[arg(long, env = "NETAUTO_RUN_MAX_OUTPUT", value_name = "BYTES", default_value = "16MiB", value_parser = bytes_arg)]
    pub(crate) run_max_output: u64,
    /// New SSH connections started per second over all devices (`unlimited` or 0: no pacing)
    /// [env: NETAUTO_SSH_CONNECTIONS_PER_SECOND] [default: 50].
    #[arg(long, value_name = "N", value_parser = rate_arg)]
    pub(crate) connections_per_second: Option<OrUnlimited<f64>>,
    /// SSH sessions open at once over all devices (or `unlimited`)
    /// [env: NETAUTO_SSH_MAX_SESSIONS] [default: 200].
    #[arg(long, value_name = "N", value_parser = count_arg)]
    pub(crate) max_sessions: Option<OrUnlimited<usize>>,
    /// SSH sessions open at once to one endpoint host:port (or `unlimited`): many devices
    /// behind one address share it [env: NETAUTO_SSH_SESSIONS_PER_ENDPOINT] [default: 4].
    #[arg(long, value_name = "N", value_parser = count_arg)]
    pub(crate) sessions_per_endpoint: Option<OrUnlimited<usize>>,
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
    /// The environment's SSH settings with the flags that were given applied over them.
    pub(crate) fn settings(&self) -> anyhow::Result<SshSettings> {
        let mut settings = SshSettings::from_env()?;
        if let Some(mode) = self.host_keys {
            settings = settings.with_host_keys(mode);
        }
        if let Some(path) = &self.known_hosts {
            settings = settings.with_known_hosts(path);
        }
        if let Some(path) = &self.credentials {
            settings = settings.with_credentials(path);
        }
        if let Some(OrUnlimited(rate)) = self.connections_per_second {
            settings = settings.with_connections_per_second(rate);
        }
        if let Some(OrUnlimited(max)) = self.max_sessions {
            settings = settings.with_max_sessions(max);
        }
        if let Some(OrUnlimited(max)) = self.sessions_per_endpoint {
            settings = settings.with_sessions_per_endpoint(max);
        }
        Ok(settings)
    }

    /// The SSH client these settings describe.
    pub(crate) fn client(&self) -> anyhow::Result<Arc<dyn NetworkClient>> {
        let settings = self.settings()?;
        if settings.host_keys == HostKeyMode::AcceptAny {
            tracing::warn!("host keys are not checked (--host-keys accept-any): labs only");
        }
        Ok(Arc::new(SshNetworkClient::new(settings.build()?)))
    }

    /// The limits of every device command this process runs.
    pub(crate) fn limits(&self) -> ExecLimits {
        ExecLimits {
            timeout: self.command_timeout,
            max_output: self.run_max_output,
        }
    }
}
