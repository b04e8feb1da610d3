//! The transport outside demo mode: netauto-ssh's client built from [`SshSettings::from_env`],
//! the same settings `netauto worker` and `netauto bulk run --wait` read (strict
//! `~/.ssh/known_hosts` unless `NETAUTO_SSH_HOST_KEYS`/`NETAUTO_SSH_KNOWN_HOSTS` say otherwise;
//! credentials from `NETAUTO_SSH_<REF>_PASSWORD`/`_KEY_FILE`/… or `NETAUTO_SSH_CREDENTIALS`;
//! pacing from `NETAUTO_SSH_CONNECTIONS_PER_SECOND`, `_MAX_SESSIONS`, `_SESSIONS_PER_ENDPOINT`).

use std::sync::Arc;

use netauto_core::NetworkClient;
use netauto_ssh::{SettingsError, SshNetworkClient, SshSettings};

/// The SSH client configured from the environment.
pub fn from_env() -> Result<Arc<dyn NetworkClient>, SettingsError> {
    Ok(Arc::new(SshNetworkClient::new(
        SshSettings::from_env()?.build()?,
    )))
}
