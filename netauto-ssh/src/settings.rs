//! [`SshSettings`]: what an operator chooses about SSH — host-key mode, known_hosts file,
//! credentials file, pacing — read from the `NETAUTO_SSH_…` variables in one place, then
//! turned into an [`SshClientConfig`] by [`SshSettings::build`].
//!
//! | variable | default | values |
//! |---|---|---|
//! | `NETAUTO_SSH_HOST_KEYS` | `strict` | `strict`, `accept-new` (trust on first use), `accept-any` (labs) |
//! | `NETAUTO_SSH_KNOWN_HOSTS` | `~/.ssh/known_hosts` | an OpenSSH known_hosts file (accept-new appends to it) |
//! | `NETAUTO_SSH_CREDENTIALS` | — | a JSON credentials file ([`FileCredentials`]); without it [`EnvCredentials`] |
//! | pacing | | see [`PacingConfig::from_env`] |

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use netauto_core::ConfigError;
use netauto_core::platform::{LoadError, PLATFORMS_DIR_VAR, Platforms};

use crate::config::SshClientConfig;
use crate::credentials::{CredentialError, EnvCredentials, FileCredentials};
use crate::jump::{JUMP_HOSTS_VAR, JumpHosts};
use crate::known_hosts::{HostKeyPolicy, KnownHosts};
use crate::pacing::PacingConfig;

/// `NETAUTO_SSH_HOST_KEYS`: host-key checking, a [`HostKeyMode`] (`strict`, `accept-new`,
/// `accept-any`). Default `strict`.
pub const HOST_KEYS_VAR: &str = "NETAUTO_SSH_HOST_KEYS";
/// `NETAUTO_SSH_KNOWN_HOSTS`: the OpenSSH known_hosts file. Default `~/.ssh/known_hosts`.
pub const KNOWN_HOSTS_VAR: &str = "NETAUTO_SSH_KNOWN_HOSTS";
/// `NETAUTO_SSH_CREDENTIALS`: a JSON credentials file; unset, secrets come from
/// `NETAUTO_SSH_<REF>_PASSWORD`/`_KEY_FILE`/`_KEY`/`_PASSPHRASE` ([`EnvCredentials`]).
pub const CREDENTIALS_VAR: &str = "NETAUTO_SSH_CREDENTIALS";

/// How host keys are checked (the mode of a [`HostKeyPolicy`], before any file is opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum HostKeyMode {
    /// Only keys already in the known_hosts file; unknown or changed keys fail the device.
    #[default]
    Strict,
    /// Trust on first use: unknown keys are recorded in the file; a changed key still fails.
    AcceptNew,
    /// Accept every key (labs only; every connection logs a warning).
    AcceptAny,
}

impl HostKeyMode {
    /// The value as written in `NETAUTO_SSH_HOST_KEYS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::AcceptNew => "accept-new",
            Self::AcceptAny => "accept-any",
        }
    }
}

impl fmt::Display for HostKeyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HostKeyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Strict, Self::AcceptNew, Self::AcceptAny]
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| "not a host-key mode (strict, accept-new or accept-any)".to_owned())
    }
}

/// `NETAUTO_REDACT_SECRETS`: `true` replaces the platforms' secret patterns in output.
pub const REDACT_SECRETS_VAR: &str = "NETAUTO_REDACT_SECRETS";

/// Why [`SshSettings`] could not be read or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A variable is set to a value that cannot be used (names the variable and the value).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The platform definitions of `NETAUTO_PLATFORMS_DIR` cannot be loaded (every problem,
    /// by file).
    #[error("cannot load the platform definitions of {}: {source}", path.display())]
    Platforms {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: LoadError,
    },
    /// The jump-host file (`NETAUTO_SSH_JUMP_HOSTS`) cannot be loaded.
    #[error("cannot load the jump-host file: {0}")]
    JumpHosts(String),
    /// The credentials file cannot be loaded.
    #[error("cannot load the credentials file {}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CredentialError,
    },
}

/// The SSH settings an operator chooses, from the environment ([`SshSettings::from_env`]) or
/// set field by field (`with_*`, for command-line flags that override the environment).
///
/// `Debug` shows paths and limits only: secrets stay in the files and variables they name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SshSettings {
    /// Host-key checking.
    pub host_keys: HostKeyMode,
    /// The known_hosts file (`None`: `~/.ssh/known_hosts`, or no file without a home).
    pub known_hosts: Option<PathBuf>,
    /// The JSON credentials file (`None`: [`EnvCredentials`]).
    pub credentials: Option<PathBuf>,
    /// Session and connection-rate limits.
    pub pacing: PacingConfig,
    /// A directory of the operator's platform definitions (`NETAUTO_PLATFORMS_DIR`), read
    /// after the shipped ones.
    pub platforms_dir: Option<PathBuf>,
    /// The jump-host file (`NETAUTO_SSH_JUMP_HOSTS`): named jump hosts and site defaults.
    pub jump_hosts: Option<PathBuf>,
    /// Replace secrets in output (`NETAUTO_REDACT_SECRETS=true`).
    pub redact_secrets: bool,
}

impl SshSettings {
    /// The defaults, replaced by the `NETAUTO_SSH_…` variables that are set (see
    /// [`SshSettings`]).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the settings through `lookup` (a variable name → its value, `None` when unset).
    ///
    /// ```
    /// use netauto_ssh::{HostKeyMode, SshSettings};
    ///
    /// let s = SshSettings::from_lookup(|var| match var {
    ///     "NETAUTO_SSH_HOST_KEYS" => Some("accept-new".into()),
    ///     "NETAUTO_SSH_MAX_SESSIONS" => Some("unlimited".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(s.host_keys, HostKeyMode::AcceptNew);
    /// assert_eq!(s.known_hosts, None);
    /// assert_eq!(s.pacing.max_sessions, usize::MAX);
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let bad =
            |var: &'static str, value: String, reason: String| ConfigError { var, value, reason };
        let path = |var: &'static str| match lookup(var) {
            Some(v) if v.is_empty() => Err(bad(var, v, "an empty path".to_owned())),
            v => Ok(v.map(PathBuf::from)),
        };
        let host_keys = match lookup(HOST_KEYS_VAR) {
            Some(v) => v.parse().map_err(|reason| bad(HOST_KEYS_VAR, v, reason))?,
            None => HostKeyMode::default(),
        };
        Ok(Self {
            host_keys,
            known_hosts: path(KNOWN_HOSTS_VAR)?,
            credentials: path(CREDENTIALS_VAR)?,
            pacing: PacingConfig::from_lookup(&lookup)?,
            platforms_dir: path(PLATFORMS_DIR_VAR)?,
            jump_hosts: path(JUMP_HOSTS_VAR)?,
            redact_secrets: match lookup(REDACT_SECRETS_VAR) {
                None => false,
                Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "" | "0" | "false" | "no" | "off" => false,
                    _ => {
                        return Err(
                            bad(REDACT_SECRETS_VAR, v, "must be true or false".to_owned()).into(),
                        );
                    }
                },
            },
        })
    }

    /// Sets the host-key mode.
    pub fn with_host_keys(mut self, mode: HostKeyMode) -> Self {
        self.host_keys = mode;
        self
    }

    /// Sets the known_hosts file.
    pub fn with_known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts = Some(path.into());
        self
    }

    /// Sets the JSON credentials file.
    pub fn with_credentials(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials = Some(path.into());
        self
    }

    /// Sets the pacing limits.
    pub fn with_pacing(mut self, pacing: PacingConfig) -> Self {
        self.pacing = pacing;
        self
    }

    /// Sets the new connections started per second (`None`: unlimited).
    pub fn with_connections_per_second(mut self, rate: Option<f64>) -> Self {
        self.pacing.connections_per_second = rate;
        self
    }

    /// Sets the sessions open at once over all devices (`None`: unlimited).
    pub fn with_max_sessions(mut self, max: Option<usize>) -> Self {
        self.pacing.max_sessions = max.unwrap_or(usize::MAX);
        self
    }

    /// Sets the sessions open at once to one endpoint `host:port` (`None`: unlimited).
    pub fn with_sessions_per_endpoint(mut self, max: Option<usize>) -> Self {
        self.pacing.sessions_per_endpoint = max;
        self
    }

    /// The client configuration these settings describe: the credentials file is loaded
    /// here; the known_hosts file is read at the first host-key check.
    pub fn build(&self) -> Result<SshClientConfig, SettingsError> {
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
            HostKeyMode::AcceptAny => HostKeyPolicy::AcceptAny,
        };
        let config = match &self.credentials {
            Some(path) => SshClientConfig::new(FileCredentials::open(path).map_err(|source| {
                SettingsError::Credentials {
                    path: path.clone(),
                    source,
                }
            })?),
            None => SshClientConfig::new(EnvCredentials::new()),
        };
        let platforms =
            match &self.platforms_dir {
                Some(dir) => Platforms::builtin().with_dir(dir).map_err(|source| {
                    SettingsError::Platforms {
                        path: dir.clone(),
                        source,
                    }
                })?,
                None => Platforms::builtin(),
            };
        let jump_hosts = match &self.jump_hosts {
            Some(path) => JumpHosts::from_file(path).map_err(SettingsError::JumpHosts)?,
            None => JumpHosts::new(),
        };
        Ok(config
            .with_redact_secrets(self.redact_secrets)
            .with_jump_hosts(jump_hosts)
            .with_host_keys(host_keys)
            .with_pacing(self.pacing.clone())
            .with_platforms(platforms))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_without_variables() {
        assert_eq!(
            SshSettings::from_lookup(|_| None).unwrap(),
            SshSettings::default()
        );
        assert_eq!(SshSettings::default().pacing, PacingConfig::default());
    }

    #[test]
    fn reads_every_variable() {
        let s = SshSettings::from_lookup(env(&[
            (HOST_KEYS_VAR, "accept-any"),
            (KNOWN_HOSTS_VAR, "/etc/netauto/known_hosts"),
            (CREDENTIALS_VAR, "/etc/netauto/credentials.json"),
            (crate::CONNECTIONS_PER_SECOND_VAR, "unlimited"),
            (crate::SESSIONS_PER_ENDPOINT_VAR, "16"),
        ]))
        .unwrap();
        assert_eq!(s.host_keys, HostKeyMode::AcceptAny);
        assert_eq!(
            s.known_hosts,
            Some(PathBuf::from("/etc/netauto/known_hosts"))
        );
        assert_eq!(
            s.credentials,
            Some(PathBuf::from("/etc/netauto/credentials.json"))
        );
        assert_eq!(s.pacing.connections_per_second, None);
        assert_eq!(s.pacing.sessions_per_endpoint, Some(16));
        assert_eq!(s.pacing.max_sessions, 200);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            (HOST_KEYS_VAR, "trusting"),
            (KNOWN_HOSTS_VAR, ""),
            (CREDENTIALS_VAR, ""),
            (crate::MAX_SESSIONS_VAR, "0"),
        ] {
            match SshSettings::from_lookup(env(&[(var, value)])) {
                Err(SettingsError::Invalid(e)) => {
                    assert_eq!(e.var, var);
                    assert_eq!(e.value, value);
                }
                other => panic!("{var}={value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn host_key_modes_round_trip() {
        for mode in [
            HostKeyMode::Strict,
            HostKeyMode::AcceptNew,
            HostKeyMode::AcceptAny,
        ] {
            assert_eq!(mode.to_string().parse::<HostKeyMode>(), Ok(mode));
        }
    }

    #[test]
    fn flags_override_the_environment() {
        let s = SshSettings::from_lookup(env(&[(crate::MAX_SESSIONS_VAR, "10")]))
            .unwrap()
            .with_max_sessions(None)
            .with_sessions_per_endpoint(Some(8))
            .with_connections_per_second(Some(5.0))
            .with_host_keys(HostKeyMode::AcceptNew)
            .with_known_hosts("kh");
        assert_eq!(s.pacing.max_sessions, usize::MAX);
        assert_eq!(s.pacing.sessions_per_endpoint, Some(8));
        assert_eq!(s.pacing.connections_per_second, Some(5.0));
        assert_eq!(s.host_keys, HostKeyMode::AcceptNew);
        assert_eq!(s.known_hosts, Some(PathBuf::from("kh")));
    }

    #[test]
    fn build_loads_the_credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let e = SshSettings::default()
            .with_credentials(&missing)
            .build()
            .unwrap_err();
        assert!(
            matches!(&e, SettingsError::Credentials { path, .. } if *path == missing),
            "{e:?}"
        );
        let config = SshSettings::default()
            .with_host_keys(HostKeyMode::AcceptAny)
            .build()
            .unwrap();
        assert!(matches!(config.host_keys, HostKeyPolicy::AcceptAny));
        assert_eq!(config.pacing, PacingConfig::default());
    }
}
