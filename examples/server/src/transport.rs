//! The transport outside demo mode: netauto-ssh's client with its defaults (strict
//! known_hosts, credentials from `NETAUTO_SSH_<REF>_PASSWORD`/`_KEY_FILE`/… variables), and
//! its pacing from the environment ([`PacingConfig::from_env`]: connections per second,
//! sessions at once, sessions per endpoint — the same variables as `netauto worker`).

use std::sync::Arc;

use netauto_core::{ConfigError, NetworkClient};
use netauto_ssh::{PacingConfig, SshClientConfig, SshNetworkClient};

/// The SSH client configured from the environment.
pub fn from_env() -> Result<Arc<dyn NetworkClient>, ConfigError> {
    let config = SshClientConfig {
        pacing: PacingConfig::from_env()?,
        ..SshClientConfig::default()
    };
    Ok(Arc::new(SshNetworkClient::new(config)))
}
