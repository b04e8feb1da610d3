//! The transport outside demo mode: netauto-ssh's client built from [`SshSettings`] with the
//! server's fixed choices (strict `~/.ssh/known_hosts`, credentials from
//! `NETAUTO_SSH_<REF>_PASSWORD`/`_KEY_FILE`/… variables) and its pacing from the environment
//! ([`PacingConfig::from_env`]: connections per second, sessions at once, sessions per
//! endpoint — the same variables as `netauto worker`).
//!
//! The server does not read `NETAUTO_SSH_HOST_KEYS`, `NETAUTO_SSH_KNOWN_HOSTS` nor
//! `NETAUTO_SSH_CREDENTIALS` (those are the CLI's, see the workspace README): its host-key
//! checking is always strict.

use std::sync::Arc;

use netauto_core::NetworkClient;
use netauto_ssh::{PacingConfig, SettingsError, SshNetworkClient, SshSettings};

/// The SSH client configured from the environment.
pub fn from_env() -> Result<Arc<dyn NetworkClient>, SettingsError> {
    let settings = SshSettings::default().with_pacing(PacingConfig::from_env()?);
    Ok(Arc::new(SshNetworkClient::new(settings.build()?)))
}
