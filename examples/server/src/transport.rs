//! The transport outside demo mode: netauto-ssh's client with its defaults (strict
//! known_hosts, credentials from `NETAUTO_SSH_<REF>_PASSWORD`/`_KEY_FILE`/… variables).

use std::sync::Arc;

use netauto_core::NetworkClient;
use netauto_ssh::{SshClientConfig, SshNetworkClient};

/// The SSH client configured from the environment.
pub fn from_env() -> Arc<dyn NetworkClient> {
    Arc::new(SshNetworkClient::new(SshClientConfig::default()))
}
