//! Host-key verification: known_hosts files, trust on first use, and the lab-only
//! accept-anything mode.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use netauto_core::NetworkError;
use russh::keys::{HashAlg, PublicKey};

/// How server host keys are checked.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// Only keys already in [`KnownHosts`] are accepted; an unknown host or a changed key is a
    /// [`NetworkError::HostKey`]. The default.
    Strict(KnownHosts),
    /// Trust on first use: an unknown host's key is recorded (and written to the known_hosts
    /// file, if any); a *changed* key is still a hard [`NetworkError::HostKey`].
    AcceptNew(KnownHosts),
    /// Accept every key. For labs only: every connection logs a warning.
    AcceptAny,
}

impl Default for HostKeyPolicy {
    /// Strict checking against the user's `~/.ssh/known_hosts` (empty when there is no home).
    fn default() -> Self {
        let known = std::env::var_os("HOME")
            .map(|home| KnownHosts::from_file(Path::new(&home).join(".ssh/known_hosts")))
            .unwrap_or_default();
        Self::Strict(known)
    }
}

/// SHA-256 fingerprint as OpenSSH prints it (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The known_hosts name of a host: `host` on port 22, `[host]:port` otherwise.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Trusted host keys: an optional OpenSSH known_hosts file (plain and hashed entries) plus
/// keys added in memory. Cheap to clone; clones share the same keys.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    path: Option<PathBuf>,
    memory: Mutex<HashMap<String, Vec<PublicKey>>>,
}

/// What the store says about a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// The key is known for this host.
    Trusted,
    /// Nothing is known about this host (for this key type).
    Unknown,
    /// A different key of the same type is recorded: possible man in the middle.
    Changed {
        /// Fingerprint of the recorded key.
        expected: String,
    },
}

impl KnownHosts {
    /// An empty in-memory store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store backed by an OpenSSH known_hosts file (it need not exist yet; accept-new
    /// creates it).
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: Some(path.into()),
                memory: Mutex::default(),
            }),
        }
    }

    /// The backing file.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Trusts `key` for `host:port` in memory (not written to the file).
    pub fn insert(&self, host: &str, port: u16, key: PublicKey) {
        if let Ok(mut memory) = self.inner.memory.lock() {
            memory
                .entry(host_entry_name(host, port))
                .or_default()
                .push(key);
        }
    }

    /// Checks `key` presented by `host:port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyCheck {
        let mut recorded: Vec<PublicKey> = self
            .inner
            .memory
            .lock()
            .ok()
            .and_then(|m| m.get(&host_entry_name(host, port)).cloned())
            .unwrap_or_default();
        if let Some(path) = &self.inner.path
            && let Ok(from_file) = russh::keys::known_hosts::known_host_keys_path(host, port, path)
        {
            recorded.extend(from_file.into_iter().map(|(_, k)| k));
        }
        if recorded.iter().any(|k| k.key_data() == key.key_data()) {
            return HostKeyCheck::Trusted;
        }
        match recorded.iter().find(|k| k.algorithm() == key.algorithm()) {
            Some(old) => HostKeyCheck::Changed {
                expected: fingerprint(old),
            },
            None => HostKeyCheck::Unknown,
        }
    }

    /// Records `key` for `host:port`: in memory, and appended to the file if there is one.
    pub fn learn(&self, host: &str, port: u16, key: &PublicKey) -> Result<(), NetworkError> {
        // One writer at a time: a bulk run learns many hosts concurrently.
        let mut memory = self
            .inner
            .memory
            .lock()
            .map_err(|_| NetworkError::Protocol("known_hosts lock poisoned".to_owned()))?;
        if let Some(path) = &self.inner.path {
            russh::keys::known_hosts::learn_known_hosts_path(host, port, key, path).map_err(
                |e| {
                    NetworkError::Unsupported(format!(
                        "cannot record host key in {}: {e}",
                        path.display()
                    ))
                },
            )?;
        }
        memory
            .entry(host_entry_name(host, port))
            .or_default()
            .push(key.clone());
        Ok(())
    }

    /// Writes every in-memory key as OpenSSH known_hosts lines to `path`.
    pub fn write_memory_to(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let memory = self
            .inner
            .memory
            .lock()
            .map_err(|_| std::io::Error::other("known_hosts lock poisoned"))?;
        let mut names: Vec<&String> = memory.keys().collect();
        names.sort();
        let mut out = String::new();
        for name in names {
            for key in &memory[name] {
                let line = key.to_openssh().map_err(std::io::Error::other)?;
                out.push_str(name);
                out.push(' ');
                out.push_str(&line);
                out.push('\n');
            }
        }
        std::fs::write(path, out)
    }
}

impl HostKeyPolicy {
    /// Decides on `key` presented by `host:port`; `Err` is the [`NetworkError::HostKey`] to
    /// report.
    pub fn verify(&self, host: &str, port: u16, key: &PublicKey) -> Result<(), NetworkError> {
        let name = format!("{host}:{port}");
        let actual = fingerprint(key);
        match self {
            Self::AcceptAny => {
                tracing::warn!(
                    event = "netauto.ssh.host_key_unchecked",
                    host = %name,
                    fingerprint = %actual,
                    "accepting SSH host key WITHOUT verification (accept-any is for labs only)"
                );
                Ok(())
            }
            Self::Strict(known) | Self::AcceptNew(known) => match known.check(host, port, key) {
                HostKeyCheck::Trusted => Ok(()),
                HostKeyCheck::Changed { expected } => {
                    tracing::error!(
                        event = "netauto.ssh.host_key_changed",
                        host = %name,
                        expected = %expected,
                        actual = %actual,
                        "SSH host key CHANGED"
                    );
                    Err(NetworkError::HostKey {
                        host: name,
                        expected,
                        actual,
                    })
                }
                HostKeyCheck::Unknown => match self {
                    Self::AcceptNew(known) => {
                        tracing::info!(
                            event = "netauto.ssh.host_key_learned",
                            host = %name,
                            fingerprint = %actual,
                            "recording new SSH host key"
                        );
                        known.learn(host, port, key)
                    }
                    _ => Err(NetworkError::HostKey {
                        host: name,
                        expected: "none".to_owned(),
                        actual,
                    }),
                },
            },
        }
    }
}
