//! SSH settings of the commands that run jobs (`worker`, `bulk run --wait`): host-key mode,
//! known_hosts file, credentials and the per-command deadline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use netauto_core::NetworkClient;
use netauto_ssh::{
    EnvCredentials, FileCredentials, HostKeyPolicy, KnownHosts, SshClientConfig, SshNetworkClient,
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
    /// Deadline of each device's command, in seconds (default: none; connect 10 s, auth 20 s and
    /// 60 s of silence still apply).
    #[arg(long, env = "NETAUTO_COMMAND_TIMEOUT", value_name = "SECS")]
    pub(crate) command_timeout: Option<u64>,
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
        .with_host_keys(host_keys);
        Ok(Arc::new(SshNetworkClient::new(config)))
    }

    /// The per-command deadline, if any.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.command_timeout.map(Duration::from_secs)
    }
}
