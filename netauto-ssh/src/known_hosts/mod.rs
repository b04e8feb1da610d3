//! Host-key verification: known_hosts files, trust on first use, and the lab-only
//! accept-anything mode.
//!
//! ## The known_hosts file and its cache
//!
//! A [`KnownHosts`] backed by a file parses it once into an index and reuses that index for
//! every check, so a login costs one `stat` of the file, one hash-map lookup for plain
//! entries and one HMAC per hashed (`|1|salt|hash`) entry, whatever the size of the fleet.
//! The file is read again when it changes, so a key an operator adds (or removes) counts at
//! the next login, without a restart:
//!
//! * every check stats the file; a different length, mtime, ctime or inode means a re-read;
//! * file timestamps are coarse, so a same-length rewrite within the same clock tick as the
//!   previous change would look unchanged: until the file's last change is two seconds old at
//!   the time it was read, every check re-reads it (and compares the bytes with the cached
//!   copy, parsing nothing when they are equal);
//! * a re-read that finds the old bytes followed by new lines (an append, by an operator or
//!   by [`KnownHosts::learn`]) parses only the new lines;
//! * [`KnownHosts::learn`] (accept-new) invalidates the cache after it writes to the file.
//!
//! ## Reading the lines
//!
//! Each line is read as OpenSSH's `hostfile.c` reads it (`parse.rs`): fields are separated by
//! runs of spaces and tabs, leading blanks are skipped, and a line whose first field starts
//! with `#` is a comment. The fields themselves are parsed by `ssh-key`'s `known_hosts`
//! module (the `ssh-key` russh re-exports, so keys are the very type russh presents): the
//! marker ([`Marker`](russh::keys::ssh_key::known_hosts::Marker)), each hashed
//! `|1|salt|hash` name ([`HostPatterns`](russh::keys::ssh_key::known_hosts::HostPatterns))
//! and the key (`<type> <base64>`, read as `ssh-key` reads an entry's key: the type field
//! must name the key's type, as OpenSSH requires; anything after the key is a comment).
//!
//! The first field is a comma-separated list of names, each either `host` / `[host]:port`
//! compared literally or a hashed name; patterns (`*`, `?`, `!host`) are compared literally
//! too (`index.rs` matches names: `ssh-key` parses them but matches nothing).
//! `@cert-authority` lines name no host (certificates are not supported) and a line with any
//! other `@` marker is skipped, as OpenSSH skips it (logged at debug level with its line
//! number, as is every line skipped as malformed:
//! `netauto.ssh.known_hosts_line_skipped`). A line whose key does not parse is reported
//! with its line number and why when a check meets it (see below).
//!
//! A host with any key recorded (in the file or in memory) is known: a presented key of a
//! type no recorded key of that host has (an `ecdsa-sha2-nistp256` key where `ssh-ed25519`
//! is recorded) is refused under either policy ([`HostKeyCheck::OtherKeyType`]) and never
//! learned by accept-new. Unlike russh, `@revoked <hosts> <type> <key>` lines are honoured:
//! the key is refused for every host ([`HostKeyCheck::Revoked`]), under either policy and
//! whatever other lines say, so accept-new never learns it. When the file is missing or
//! cannot be read (an I/O error, or bytes that are not UTF-8), or when a line naming the
//! host has a key that does not parse, the file vouches for nothing for that check
//! ([`HostKeyCheck::Unverifiable`]): the login is refused under either policy, since
//! accept-new would otherwise record whatever key the device presents (a missing file is
//! different: accept-new creates it). A failed read also drops the cached index: a key
//! removed from the file is never trusted from an old copy; the read is retried at the next
//! check, and the failure is logged once (`netauto.ssh.known_hosts_unreadable`).

mod cache;
mod index;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use netauto_core::NetworkError;
use russh::keys::{Algorithm, HashAlg, PublicKey};

use self::cache::{FileKeys, HostsFile, SETTLE};

/// How server host keys are checked.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// Only keys already in [`KnownHosts`] are accepted; an unknown host or a changed key is a
    /// [`NetworkError::HostKey`]. The default.
    Strict(KnownHosts),
    /// Trust on first use: the key of a host with no key recorded is recorded (and written to
    /// the known_hosts file, if any); a *changed* key, or a key of another type than those
    /// recorded for the host, is still a hard [`NetworkError::HostKey`].
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
/// keys added in memory. Cheap to clone; clones share the same keys and the same cached
/// index of the file (see the [module documentation](self) for how and when it is re-read).
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    file: Option<HostsFile>,
    memory: Mutex<HashMap<String, Vec<PublicKey>>>,
}

/// What the store says about a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostKeyCheck {
    /// The key is known for this host.
    Trusted,
    /// No key at all is recorded for this host (of any type).
    Unknown,
    /// A different key of the same type is recorded: possible man in the middle.
    Changed {
        /// Fingerprint of the recorded key.
        expected: String,
    },
    /// The known_hosts file exists but cannot vouch for this host: it cannot be read, is not
    /// UTF-8, or a line naming the host has a key that does not parse. Nothing is trusted and
    /// nothing may be learned (accept-new would otherwise record whatever key is presented,
    /// or append it again at every login).
    Unverifiable {
        /// Why.
        reason: String,
    },
    /// The key is on an `@revoked` line of the known_hosts file: refused for every host,
    /// whatever else the file says.
    Revoked,
    /// The host is known, but only by keys of other types (say an `ssh-ed25519` key is
    /// recorded and the device presents `ecdsa-sha2-nistp256`): refused like a changed key,
    /// under either policy, and never learned (a man in the middle could otherwise pick an
    /// algorithm nothing is recorded for).
    OtherKeyType {
        /// The recorded keys, each `"<algorithm> <fingerprint>"`: those in memory first, then
        /// the file's in file order.
        recorded: Vec<String>,
    },
}

impl KnownHosts {
    /// An empty in-memory store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store backed by an OpenSSH known_hosts file (it need not exist yet; accept-new
    /// creates it). The file is read at the first check, not here.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self::with_file(HostsFile::new(path.into(), SETTLE))
    }

    fn with_file(file: HostsFile) -> Self {
        Self {
            inner: Arc::new(Inner {
                file: Some(file),
                memory: Mutex::default(),
            }),
        }
    }

    /// The backing file.
    pub fn path(&self) -> Option<&Path> {
        self.inner.file.as_ref().map(|f| f.path.as_path())
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

    /// Checks `key` presented by `host:port`: the keys in memory, then those of the file in
    /// file order (the first recorded key of the same type is the `expected` of
    /// [`HostKeyCheck::Changed`]). A host with any key recorded is known: a key of a type
    /// none of its recorded keys has is [`HostKeyCheck::OtherKeyType`], not
    /// [`HostKeyCheck::Unknown`].
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyCheck {
        let name = host_entry_name(host, port);
        let in_memory = self
            .inner
            .memory
            .lock()
            .ok()
            .and_then(|m| m.get(&name).cloned());
        self.check_against(in_memory.as_deref(), &name, key)
    }

    /// [`check`](Self::check) with the keys in memory for `name` already at hand.
    fn check_against(
        &self,
        in_memory: Option<&[PublicKey]>,
        name: &str,
        key: &PublicKey,
    ) -> HostKeyCheck {
        let mut recorded: Vec<PublicKey> = in_memory.map(<[_]>::to_vec).unwrap_or_default();
        if let Some(file) = &self.inner.file {
            match file.keys_for(name, key) {
                FileKeys::Keys(from_file) => recorded.extend(from_file),
                FileKeys::Missing => {}
                FileKeys::Unusable(reason) => return HostKeyCheck::Unverifiable { reason },
                FileKeys::Revoked => return HostKeyCheck::Revoked,
            }
        }
        if recorded.iter().any(|k| k.key_data() == key.key_data()) {
            return HostKeyCheck::Trusted;
        }
        if let Some(old) = recorded.iter().find(|k| k.algorithm() == key.algorithm()) {
            return HostKeyCheck::Changed {
                expected: fingerprint(old),
            };
        }
        if recorded.is_empty() {
            return HostKeyCheck::Unknown;
        }
        // Known by keys of other types only: as OpenSSH's accept-new, never learned.
        let mut shown: Vec<String> = Vec::with_capacity(recorded.len());
        for k in &recorded {
            let line = format!("{} {}", k.algorithm(), fingerprint(k));
            if !shown.contains(&line) {
                shown.push(line);
            }
        }
        HostKeyCheck::OtherKeyType { recorded: shown }
    }

    /// The algorithms of the keys recorded for `host:port`, each once: those in memory, then
    /// the file's in file order. A key an `@revoked` line names is not a recorded key; a file
    /// that cannot vouch for the host adds nothing (a check refuses the host anyway). The
    /// client asks a device for these host-key types first, as OpenSSH does, so that a device
    /// offering several types presents the one recorded. Costs what a check costs: a `stat`
    /// of the file (re-read only if it changed), one lookup and one HMAC per hashed entry.
    pub fn recorded_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = host_entry_name(host, port);
        let snapshot = self.inner.file.as_ref().and_then(|f| f.snapshot().ok());
        let index = snapshot.as_deref().and_then(|s| s.index.as_ref());
        let mut algorithms: Vec<Algorithm> = Vec::new();
        let mut add = |key: &PublicKey| {
            let algorithm = key.algorithm();
            if index.is_none_or(|i| !i.is_revoked(key)) && !algorithms.contains(&algorithm) {
                algorithms.push(algorithm);
            }
        };
        if let Ok(memory) = self.inner.memory.lock()
            && let Some(keys) = memory.get(&name)
        {
            keys.iter().for_each(&mut add);
        }
        if let Some(keys) = index.and_then(|i| i.lookup(&name).ok()) {
            keys.iter().for_each(add);
        }
        algorithms
    }

    /// Records `key` for `host:port`: in memory, and appended to the file if there is one
    /// (which invalidates the cached index of the file). The host is checked again under the
    /// writer's lock: of two logins learning the same host at once, the second finds the
    /// first's key (the same key: nothing to record; any other key: refused as a changed key
    /// or one of another type, so a man in the middle racing the real device is never
    /// trusted too).
    pub fn learn(&self, host: &str, port: u16, key: &PublicKey) -> Result<(), NetworkError> {
        // One writer at a time: a bulk run learns many hosts concurrently.
        let mut memory = self
            .inner
            .memory
            .lock()
            .map_err(|_| NetworkError::Protocol("known_hosts lock poisoned".to_owned()))?;
        let name = host_entry_name(host, port);
        let check = self.check_against(memory.get(&name).map(Vec::as_slice), &name, key);
        if judge(check, host, port, key)? {
            return Ok(());
        }
        if let Some(file) = &self.inner.file {
            let written =
                russh::keys::known_hosts::learn_known_hosts_path(host, port, key, &file.path);
            // Even a failed write may have changed the file.
            file.invalidate();
            written.map_err(|e| {
                NetworkError::Unsupported(format!(
                    "cannot record host key in {}: {e}",
                    file.path.display()
                ))
            })?;
        }
        memory.entry(name).or_default().push(key.clone());
        Ok(())
    }

    /// Writes every in-memory key as OpenSSH known_hosts lines to `path` (invalidating the
    /// cached index if `path` is this store's own file).
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
        let written = std::fs::write(path.as_ref(), out);
        if let Some(file) = &self.inner.file
            && file.path == path.as_ref()
        {
            file.invalidate();
        }
        written
    }
}

impl HostKeyPolicy {
    /// The algorithms of the host keys recorded for `host:port`
    /// ([`KnownHosts::recorded_algorithms`]); none under [`AcceptAny`](Self::AcceptAny).
    pub fn recorded_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        match self {
            Self::Strict(known) | Self::AcceptNew(known) => known.recorded_algorithms(host, port),
            Self::AcceptAny => Vec::new(),
        }
    }

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
            Self::Strict(known) => {
                if judge(known.check(host, port, key), host, port, key)? {
                    Ok(())
                } else {
                    Err(NetworkError::HostKey {
                        host: name,
                        expected: "none".to_owned(),
                        actual,
                    })
                }
            }
            Self::AcceptNew(known) => {
                if judge(known.check(host, port, key), host, port, key)? {
                    return Ok(());
                }
                tracing::info!(
                    event = "netauto.ssh.host_key_learned",
                    host = %name,
                    fingerprint = %actual,
                    "recording new SSH host key"
                );
                known.learn(host, port, key)
            }
        }
    }
}

/// What a check means for a login: `Ok(true)` trusted, `Ok(false)` unknown (strict refuses
/// it, accept-new learns it), and the logged [`NetworkError::HostKey`] for a key that is
/// refused whatever the policy (changed, revoked, or unverifiable).
fn judge(
    check: HostKeyCheck,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<bool, NetworkError> {
    let (name, actual) = (format!("{host}:{port}"), fingerprint(key));
    let expected = match check {
        HostKeyCheck::Trusted => return Ok(true),
        HostKeyCheck::Unknown => return Ok(false),
        HostKeyCheck::Changed { expected } => {
            tracing::error!(
                event = "netauto.ssh.host_key_changed",
                host = %name,
                expected = %expected,
                actual = %actual,
                "SSH host key CHANGED"
            );
            expected
        }
        HostKeyCheck::Unverifiable { reason } => {
            tracing::error!(
                event = "netauto.ssh.host_key_unverifiable",
                host = %name,
                actual = %actual,
                reason = %reason,
                "cannot verify the SSH host key: known_hosts cannot vouch for this host"
            );
            format!("a key from a readable known_hosts ({reason})")
        }
        HostKeyCheck::Revoked => {
            tracing::error!(
                event = "netauto.ssh.host_key_revoked",
                host = %name,
                actual = %actual,
                "SSH host key is REVOKED in known_hosts"
            );
            "any key but a revoked one".to_owned()
        }
        HostKeyCheck::OtherKeyType { recorded } => {
            let recorded = recorded.join(", ");
            tracing::error!(
                event = "netauto.ssh.host_key_other_type",
                host = %name,
                expected = %recorded,
                actual = %actual,
                algorithm = %key.algorithm(),
                "SSH host key of a type not recorded for a known host"
            );
            format!("{recorded} (no {} key is recorded)", key.algorithm())
        }
    };
    Err(NetworkError::HostKey {
        host: name,
        expected,
        actual,
    })
}
