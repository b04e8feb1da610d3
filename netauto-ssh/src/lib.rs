#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! * [`SshNetworkClient`] runs a command on a [`Device`](netauto_core::Device) and streams
//!   stdout and stderr as they arrive, then the exit status; it reads until the channel
//!   closes (data may follow the exit status).
//! * Secrets come from a [`CredentialProvider`] keyed by the device's `credential_ref`:
//!   [`EnvCredentials`], [`FileCredentials`] (JSON), [`StaticCredentials`]. Logins try the
//!   private key (file or memory, with passphrase), then the password, then
//!   keyboard-interactive answering password prompts. Secrets never appear in `Debug` output,
//!   errors or logs.
//! * Host keys ([`HostKeyPolicy`]): strict known_hosts checking by default (an unknown or
//!   changed key is a [`NetworkError::HostKey`](netauto_core::NetworkError::HostKey) naming
//!   the host and both fingerprints); accept-new records unknown keys (trust on first use);
//!   accept-any logs a warning on every connection and is for labs only.
//! * Deadlines ([`Timeouts`]): connect, auth, whole command (the caller's
//!   `ExecOptions::timeout` wins) and idle output, each reported as
//!   `NetworkError::Timeout { phase, .. }` with its own [`TimeoutPhase`](netauto_core::TimeoutPhase).
//!   SSH keepalives (15 s, 3 missed) and TCP nodelay are on by default.
//! * Pacing ([`PacingConfig`], [`PacingConfig::from_env`]): one command at a time per
//!   device, a cap of sessions per endpoint `host:port` (4), a global cap on sessions (200)
//!   and on new connections per second (50, with 50 % jitter) so a bulk run storms neither a
//!   console server nor the AAA server; each can be `unlimited`.
//! * Settings ([`SshSettings`], [`SshSettings::from_env`]): the operator's choices — host-key
//!   mode (`NETAUTO_SSH_HOST_KEYS`), known_hosts file (`NETAUTO_SSH_KNOWN_HOSTS`), credentials
//!   file (`NETAUTO_SSH_CREDENTIALS`) and pacing — read in one place, overridden field by field
//!   (`with_*`), then [`SshSettings::build`] into an [`SshClientConfig`].
//! * Platforms ([`netauto_core::platform::Platforms`], [`SshClientConfig::with_platforms`]):
//!   each device's platform definition says how its commands run. `exec` platforms get one
//!   exec channel per command; `shell` platforms a PTY, where the client waits for a prompt,
//!   escalates privileges (`enable`, with the credential's enable secret), runs the
//!   `after_login` commands (paging off), types the command, answers pager prompts, strips
//!   the echo and the prompt, and answers the platform's questions only when the bulk allows
//!   it. On both, an output line matching a failure pattern ends the run `failed` with kind
//!   `command_rejected`, and an unanswered question ends it `failed` with kind
//!   `prompt_unanswered` at once. Devices whose platform is unknown use `generic` (exec).
//! * Legacy algorithms (diffie-hellman-group14-sha1, ssh-rsa, aes-cbc, hmac-sha1) only for
//!   devices tagged [`LEGACY_TAG`] (`ssh-legacy`) or listed with
//!   [`SshClientConfig::with_legacy_device`]. A negotiation failure is a
//!   `NetworkError::Protocol` listing what each side offered.
//!
//! ```no_run
//! use netauto_ssh::{EnvCredentials, HostKeyPolicy, KnownHosts, SshClientConfig, SshNetworkClient};
//!
//! let config = SshClientConfig::new(EnvCredentials::new())
//!     .with_host_keys(HostKeyPolicy::AcceptNew(KnownHosts::from_file("/var/lib/netauto/known_hosts")));
//! let client = SshNetworkClient::new(config);
//! # let _ = client;
//! ```
//!
//! ## The simulator (feature `sim`)
//!
//! [`sim::DeviceFarm::start`]`(specs).await` starts one russh server per
//! [`sim::DeviceSpec`] on `127.0.0.1`; [`sim::demo_specs`]`(n)` gives a mixed demo set (one
//! device failing). The farm gives everything a host needs:
//!
//! * `farm.devices()`: name, host, port, platform, username, credential_ref (no secret), and
//!   `farm.new_devices()` as [`NewDevice`](netauto_core::NewDevice)s to create in a store;
//! * `farm.credentials()`: a [`StaticCredentials`] with every device's password;
//! * `farm.known_hosts()`: a [`KnownHosts`] trusting exactly the farm's host keys;
//! * `farm.client_config()`: an [`SshClientConfig`] combining both (strict host keys);
//! * `farm.write_inventory(path)` (JSON) and `farm.write_known_hosts(path)`;
//! * `farm.stats(name)`: connections, concurrent sessions, commands, rejected logins.
//!
//! ## Feature flags
//!
//! * `sim`: the device simulator ([`sim`]) and the `sim_farm` example.
//! * `clap`: [`HostKeyMode`] implements `clap::ValueEnum`, for command-line flags.
//!
//! ## Errors
//!
//! Everything is a [`netauto_core::NetworkError`]; `is_retryable()` is true for connect
//! failures, timeouts and dropped connections, false for auth, host keys, protocol and
//! configuration problems.

pub mod algorithms;
mod client;
mod config;
pub mod credentials;
mod error;
pub mod jump;
pub mod known_hosts;
mod pacing;
mod settings;
mod shell;
#[cfg(feature = "sim")]
pub mod sim;
mod watch;

pub use client::SshNetworkClient;
pub use config::{LEGACY_TAG, SshClientConfig, Timeouts};
pub use credentials::{
    Credential, CredentialError, CredentialProvider, EnvCredentials, FileCredentials,
    PrivateKeySource, Secret, StaticCredentials,
};
pub use jump::{Hop, JUMP_HOSTS_VAR, JumpHost, JumpHosts};
pub use known_hosts::{HostKeyCheck, HostKeyPolicy, KnownHosts};
pub use pacing::{
    CONNECTIONS_PER_SECOND_VAR, MAX_SESSIONS_VAR, PacingConfig, SESSIONS_PER_ENDPOINT_VAR,
    parse_count, parse_rate,
};
pub use settings::{
    CREDENTIALS_VAR, HOST_KEYS_VAR, HostKeyMode, KNOWN_HOSTS_VAR, REDACT_SECRETS_VAR,
    SettingsError, SshSettings,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<SshNetworkClient>();
        assert_send_sync::<SshClientConfig>();
        assert_send_sync::<HostKeyPolicy>();
        assert_send_sync::<FileCredentials>();
        assert_send_sync::<EnvCredentials>();
        assert_send_sync::<SshSettings>();
    }
}
