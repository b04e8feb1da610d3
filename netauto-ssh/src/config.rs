//! [`SshClientConfig`]: every knob of [`SshNetworkClient`](crate::SshNetworkClient).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use netauto_core::Device;
use netauto_core::platform::Platforms;

use crate::credentials::{CredentialProvider, EnvCredentials};
use crate::jump::{DEFAULT_CHANNELS_PER_JUMP, JumpHosts};
use crate::known_hosts::HostKeyPolicy;
use crate::pacing::PacingConfig;

/// Device tag that turns on legacy algorithms for that device.
pub const LEGACY_TAG: &str = "ssh-legacy";

/// The deadlines of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus SSH handshake (key exchange and host-key check).
    pub connect: Duration,
    /// Authentication.
    pub auth: Duration,
    /// The whole command, connect included, when the caller gives no deadline.
    pub command: Option<Duration>,
    /// Longest silence while the command runs.
    pub idle: Duration,
}

impl Default for Timeouts {
    /// connect 10 s, auth 20 s, command none, idle 60 s.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            auth: Duration::from_secs(20),
            command: None,
            idle: Duration::from_secs(60),
        }
    }
}

/// Configuration of [`SshNetworkClient`](crate::SshNetworkClient).
///
/// `Debug` never shows secrets: credentials live in the provider, which redacts them.
#[derive(Clone)]
pub struct SshClientConfig {
    /// Where secrets come from.
    pub credentials: Arc<dyn CredentialProvider>,
    /// Credential reference of devices that have none.
    pub default_credential_ref: Option<String>,
    /// Host-key checking; strict against `~/.ssh/known_hosts` by default.
    pub host_keys: HostKeyPolicy,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// SSH keepalive interval (`None`: off).
    pub keepalive_interval: Option<Duration>,
    /// Unanswered keepalives before the connection is dropped.
    pub keepalive_max: usize,
    /// Disable Nagle's algorithm on the TCP socket.
    pub nodelay: bool,
    /// Session and connection-rate limits.
    pub pacing: PacingConfig,
    /// Platform definitions: how commands run on each platform (devices whose platform is
    /// unknown use `generic`, an exec channel).
    pub platforms: Arc<Platforms>,
    /// Named jump hosts and site defaults (devices may also name inline hops).
    pub jump_hosts: Arc<JumpHosts>,
    /// Channels open at once through one jump-host connection.
    pub channels_per_jump: usize,
    /// Replace secrets (the platform's secret patterns) in output before it leaves the
    /// client: nothing stored, streamed or searched holds them (`NETAUTO_REDACT_SECRETS`).
    pub redact_secrets: bool,
    /// Names of devices allowed legacy algorithms (besides devices tagged [`LEGACY_TAG`]).
    pub legacy_devices: HashSet<String>,
}

impl fmt::Debug for SshClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshClientConfig")
            .field("credentials", &self.credentials)
            .field("default_credential_ref", &self.default_credential_ref)
            .field("host_keys", &self.host_keys)
            .field("timeouts", &self.timeouts)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("keepalive_max", &self.keepalive_max)
            .field("nodelay", &self.nodelay)
            .field("pacing", &self.pacing)
            .field("platforms", &self.platforms.len())
            .field("jump_hosts", &self.jump_hosts)
            .field("channels_per_jump", &self.channels_per_jump)
            .field("redact_secrets", &self.redact_secrets)
            .field("legacy_devices", &self.legacy_devices)
            .finish()
    }
}

impl Default for SshClientConfig {
    /// Environment credentials, strict known_hosts, default deadlines, keepalive every 15 s
    /// (3 missed drop the connection), nodelay on, default pacing, the shipped platform definitions.
    fn default() -> Self {
        Self {
            credentials: Arc::new(EnvCredentials::new()),
            default_credential_ref: None,
            host_keys: HostKeyPolicy::default(),
            timeouts: Timeouts::default(),
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            pacing: PacingConfig::default(),
            platforms: Arc::new(Platforms::builtin()),
            jump_hosts: Arc::new(JumpHosts::new()),
            channels_per_jump: DEFAULT_CHANNELS_PER_JUMP,
            redact_secrets: false,
            legacy_devices: HashSet::new(),
        }
    }
}

impl SshClientConfig {
    /// The defaults with `credentials` as the secret source.
    pub fn new(credentials: impl CredentialProvider) -> Self {
        Self {
            credentials: Arc::new(credentials),
            ..Self::default()
        }
    }

    /// Sets the credential provider.
    pub fn with_credentials(mut self, credentials: impl CredentialProvider) -> Self {
        self.credentials = Arc::new(credentials);
        self
    }

    /// Sets the credential reference of devices without one.
    pub fn with_default_credential_ref(mut self, reference: impl Into<String>) -> Self {
        self.default_credential_ref = Some(reference.into());
        self
    }

    /// Sets the host-key policy.
    pub fn with_host_keys(mut self, policy: HostKeyPolicy) -> Self {
        self.host_keys = policy;
        self
    }

    /// Sets the deadlines.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets the keepalive interval.
    pub fn with_keepalive(mut self, interval: Option<Duration>, max: usize) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_max = max;
        self
    }

    /// Sets the pacing limits.
    pub fn with_pacing(mut self, pacing: PacingConfig) -> Self {
        self.pacing = pacing;
        self
    }

    /// Sets the platform definitions (e.g. [`Platforms::from_env`], which adds
    /// `NETAUTO_PLATFORMS_DIR`'s).
    pub fn with_platforms(mut self, platforms: impl Into<Arc<Platforms>>) -> Self {
        self.platforms = platforms.into();
        self
    }

    /// Replaces secrets in output (see [`Self::redact_secrets`]).
    pub fn with_redact_secrets(mut self, redact: bool) -> Self {
        self.redact_secrets = redact;
        self
    }

    /// Sets the jump hosts.
    pub fn with_jump_hosts(mut self, jump_hosts: JumpHosts) -> Self {
        self.jump_hosts = Arc::new(jump_hosts);
        self
    }

    /// Allows legacy algorithms (diffie-hellman-group14-sha1, ssh-rsa, aes-cbc, hmac-sha1)
    /// for the device named `name`.
    pub fn with_legacy_device(mut self, name: impl Into<String>) -> Self {
        self.legacy_devices.insert(name.into());
        self
    }

    /// Whether `device` may use legacy algorithms.
    pub fn allows_legacy(&self, device: &Device) -> bool {
        self.legacy_devices.contains(&device.name) || device.tags.iter().any(|t| t == LEGACY_TAG)
    }
}
