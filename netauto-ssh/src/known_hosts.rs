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
//! Lines are split into fields as OpenSSH splits them (russh's `known_host_keys_path` split
//! on single spaces only): fields are separated by runs of spaces and tabs, leading blanks
//! are skipped, and a line whose first field starts with `#` is a comment. The first field
//! is a comma-separated list of names, each either `host` / `[host]:port` compared literally
//! or a hashed `|1|salt|hash`; then come the key type and the base64 key (anything after it
//! is a comment). Patterns (`*`, `?`, `!host`) are compared literally; `@cert-authority`
//! lines name no host (certificates are not supported) and a line with any other `@` marker
//! is skipped, as OpenSSH skips it.
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

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use data_encoding::BASE64_MIME;
use hmac::{Hmac, KeyInit, Mac};
use netauto_core::NetworkError;
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

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

/// What the known_hosts file says about one host name.
enum FileKeys {
    /// Its keys, in file order (none if the file does not name it).
    Keys(Vec<PublicKey>),
    /// There is no file (accept-new creates it).
    Missing,
    /// The file cannot vouch for the host: why.
    Unusable(String),
    /// The presented key is on an `@revoked` line.
    Revoked,
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
        if let Some(keys) = index.and_then(|i| i.lookup(&name)) {
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

/// How old (by mtime and ctime) a known_hosts file must be, when it is read, for its cached
/// index to be reused on the strength of a `stat` alone. Timestamps are coarse (a few
/// milliseconds on Linux, 1 or 2 s on some file systems): a write in the same tick as the
/// previous one keeps them, and a same-length rewrite would then look unchanged. Until then
/// every check re-reads the file and compares its bytes (cheap; nothing is re-parsed when
/// they are equal).
const SETTLE: Duration = Duration::from_secs(2);

/// The backing file of a [`KnownHosts`] and the index of its last good read.
struct HostsFile {
    path: PathBuf,
    settle: Duration,
    /// The last good read; `None` before the first one and after a failed one.
    current: RwLock<Option<Arc<Snapshot>>>,
    /// One reader of the file at a time. Holds the last failure, so it is logged once.
    reload: Mutex<Option<String>>,
    /// Bumped after every write through this store: a snapshot read before it is stale.
    writes: AtomicU64,
    /// Reads of the file (each one a full read, bytes compared with the cached copy).
    reads: AtomicU64,
    /// Lines parsed, over all reads (an unchanged file costs none, an append its new lines).
    parsed_lines: AtomicU64,
}

impl fmt::Debug for HostsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current();
        f.debug_struct("HostsFile")
            .field("path", &self.path)
            .field("cached_bytes", &current.as_ref().map(|s| s.content.len()))
            .field(
                "cached_entries",
                &current
                    .as_ref()
                    .and_then(|s| s.index.as_ref())
                    .map(Index::len),
            )
            .field("reads", &self.reads.load(Ordering::Relaxed))
            .field("parsed_lines", &self.parsed_lines.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why the file vouches for nothing.
enum ReadFailure {
    /// It does not exist or cannot be opened (as before the cache: silently nothing).
    NotOpened(io::Error),
    /// It was opened but could not be read.
    Unreadable(io::Error),
}

impl HostsFile {
    fn new(path: PathBuf, settle: Duration) -> Self {
        Self {
            path,
            settle,
            current: RwLock::new(None),
            reload: Mutex::new(None),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            parsed_lines: AtomicU64::new(0),
        }
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, snapshot: Option<Arc<Snapshot>>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    fn invalidate(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// The file's keys for `name` in file order, or why it vouches for nothing.
    fn keys_for(&self, name: &str, presented: &PublicKey) -> FileKeys {
        let snapshot = match self.snapshot() {
            Ok(snapshot) => snapshot,
            Err(None) => return FileKeys::Missing,
            Err(Some(error)) => {
                return FileKeys::Unusable(format!("{}: {error}", self.path.display()));
            }
        };
        let Some(index) = snapshot.index.as_ref() else {
            return FileKeys::Unusable(format!("{}: not valid UTF-8", self.path.display()));
        };
        if index.is_revoked(presented) {
            return FileKeys::Revoked;
        }
        match index.lookup(name) {
            Some(keys) => FileKeys::Keys(keys),
            None => FileKeys::Unusable(format!(
                "{}: a line for {name} has a key that does not parse",
                self.path.display()
            )),
        }
    }

    /// [`keys_for`](Self::keys_for) as an option: `None` when the file vouches for nothing.
    #[cfg(test)]
    fn keys_opt(&self, name: &str) -> Option<Vec<PublicKey>> {
        self.snapshot().ok()?.index.as_ref()?.lookup(name)
    }

    /// An up-to-date snapshot of the file, read again if needed; `Err(None)` when there is no
    /// file, `Err(Some(why))` when it cannot be read.
    fn snapshot(&self) -> Result<Arc<Snapshot>, Option<String>> {
        let entered = Instant::now();
        if let Ok(meta) = std::fs::metadata(&self.path)
            && let Some(snapshot) = self.current()
            && snapshot.settled
            && snapshot.stamp == Stamp::of(&meta)
            && snapshot.writes == self.writes.load(Ordering::SeqCst)
        {
            return Ok(snapshot);
        }
        let mut last_failure = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        // A read another check started after this one did is as fresh as our own would be.
        if let Some(snapshot) = self.current()
            && snapshot.read_started >= entered
            && snapshot.writes == self.writes.load(Ordering::SeqCst)
        {
            return Ok(snapshot);
        }
        match self.read() {
            Ok(snapshot) => {
                *last_failure = None;
                let snapshot = Arc::new(snapshot);
                self.publish(Some(Arc::clone(&snapshot)));
                Ok(snapshot)
            }
            Err(failure) => {
                // Never keep trusting an old copy of a file that cannot be read now.
                self.publish(None);
                let error = match failure {
                    ReadFailure::NotOpened(e) if e.kind() == io::ErrorKind::NotFound => None,
                    ReadFailure::NotOpened(e) => Some(format!("cannot open: {e}")),
                    ReadFailure::Unreadable(e) => Some(format!("cannot read: {e}")),
                };
                if let Some(error) = &error
                    && last_failure.as_ref() != Some(error)
                {
                    tracing::warn!(
                        event = "netauto.ssh.known_hosts_unreadable",
                        path = %self.path.display(),
                        error = %error,
                        "known_hosts unreadable: none of its keys is trusted until it can be read"
                    );
                }
                *last_failure = error.clone();
                Err(error)
            }
        }
    }

    /// Reads the file, reusing what it can of the current snapshot's index.
    fn read(&self) -> Result<Snapshot, ReadFailure> {
        let writes = self.writes.load(Ordering::SeqCst);
        let read_started = Instant::now();
        let mut file = File::open(&self.path).map_err(ReadFailure::NotOpened)?;
        let stamp = Stamp::of(&file.metadata().map_err(ReadFailure::Unreadable)?);
        // Taken before the bytes are read: any later write has a later timestamp once the
        // file is settled, whatever the read then sees.
        let settled = stamp.settled(SystemTime::now(), self.settle);
        let mut content = Vec::with_capacity(usize::try_from(stamp.len).unwrap_or(0));
        file.read_to_end(&mut content)
            .map_err(ReadFailure::Unreadable)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        let previous = self.current();
        let index = match previous.as_deref() {
            Some(prev) if prev.content == content => prev.index.clone(),
            Some(Snapshot {
                content: old,
                index: Some(index),
                ..
            }) if content.starts_with(old) && (old.is_empty() || old.ends_with(b"\n")) => {
                // An append: the old bytes end on a line boundary, so only the new lines
                // need parsing (and checking for UTF-8).
                std::str::from_utf8(&content[old.len()..])
                    .ok()
                    .map(|tail| index.extended(tail, &self.parsed_lines))
            }
            _ => std::str::from_utf8(&content)
                .ok()
                .map(|text| Index::default().extended(text, &self.parsed_lines)),
        };
        if index.is_none()
            && previous
                .as_deref()
                .is_none_or(|prev| prev.index.is_some() || prev.content != content)
        {
            tracing::warn!(
                event = "netauto.ssh.known_hosts_unreadable",
                path = %self.path.display(),
                error = "not valid UTF-8",
                "known_hosts unreadable: none of its keys is trusted until it can be read"
            );
        }
        Ok(Snapshot {
            stamp,
            settled,
            writes,
            read_started,
            content,
            index,
        })
    }
}

/// The metadata that tells whether the file changed since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// ctime: a rewrite that puts the old mtime back still changes it.
    #[cfg(unix)]
    changed: (i64, i64),
    /// Device and inode: a file replaced by a rename is another file.
    #[cfg(unix)]
    file_id: (u64, u64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
            #[cfg(unix)]
            file_id: (meta.dev(), meta.ino()),
        }
    }

    /// The last change the metadata records (mtime, and ctime where there is one).
    fn last_change(&self) -> Option<SystemTime> {
        #[cfg(unix)]
        {
            let (secs, nanos) = self.changed;
            let ctime = u64::try_from(secs)
                .ok()
                .zip(u32::try_from(nanos).ok())
                .map(|(s, n)| SystemTime::UNIX_EPOCH + Duration::new(s, n));
            // An unknown or pre-1970 ctime is not a proof of age.
            Some(self.modified?.max(ctime?))
        }
        #[cfg(not(unix))]
        {
            self.modified
        }
    }

    /// Whether, at `now`, the file last changed at least `settle` ago (a timestamp in the
    /// future never is).
    fn settled(&self, now: SystemTime, settle: Duration) -> bool {
        self.last_change()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= settle)
    }
}

/// One read of the file.
struct Snapshot {
    stamp: Stamp,
    /// The file had not changed for [`SETTLE`] when it was read: an equal [`Stamp`] later
    /// means equal bytes.
    settled: bool,
    /// [`HostsFile::writes`] when the read started.
    writes: u64,
    read_started: Instant,
    content: Vec<u8>,
    /// `None`: not UTF-8, so the file vouches for nothing.
    index: Option<Index>,
}

/// The fields of a known_hosts line as OpenSSH's `hostfile.c` splits them: separated by runs
/// of spaces and tabs (leading ones skipped), the line ending (`\n` or `\r\n`) part of none.
fn fields(line: &str) -> impl Iterator<Item = &str> {
    line.trim_end_matches(['\n', '\r'])
        .split([' ', '\t'])
        .filter(|f| !f.is_empty())
}

/// The parsed entries of the file: a few parts in file order, each indexed. An append adds
/// a part; parts are merged so that each is at least twice the size of the next one
/// (O(log n) parts, each line copied O(log n) times over any run of appends).
#[derive(Clone, Default)]
struct Index {
    parts: Vec<Arc<Part>>,
}

/// Consecutive entries of the file (lines with a key field, comments excluded), numbered
/// from `first` across the whole file.
#[derive(Clone, Default)]
struct Part {
    first: usize,
    /// Each entry's key; `None` when it does not parse.
    keys: Vec<Option<PublicKey>>,
    /// Plain names (`host`, `[host]:port`, and anything else that is not hashed, compared
    /// literally) → their entries, ascending.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Hashed names: one HMAC each per check.
    hashed: Vec<Hashed>,
    /// Keys of `@revoked` lines: refused for every host (their host patterns are not
    /// matched, so a revocation is never narrower than meant).
    revoked: Vec<PublicKey>,
}

/// A `|1|salt|hash` name: HMAC-SHA1 keyed with the salt, ready to hash a host name.
#[derive(Clone)]
struct Hashed {
    mac: Hmac<Sha1>,
    hash: Vec<u8>,
    entry: usize,
}

impl Hashed {
    fn matches(&self, name: &str) -> bool {
        self.mac
            .clone()
            .chain_update(name)
            .verify_slice(&self.hash)
            .is_ok()
    }
}

impl Index {
    /// Number of entries.
    fn len(&self) -> usize {
        self.parts.last().map_or(0, |p| p.first + p.keys.len())
    }

    /// This index followed by the lines of `text` (which starts at a line boundary).
    fn extended(&self, text: &str, parsed_lines: &AtomicU64) -> Self {
        let part = Part::parse(text, self.len(), parsed_lines);
        let mut parts = self.parts.clone();
        if !part.keys.is_empty() || !part.revoked.is_empty() {
            parts.push(Arc::new(part));
        }
        while let [.., prev, last] = parts.as_slice()
            && last.keys.len() * 2 > prev.keys.len()
        {
            let merged = Arc::new(prev.merged(last));
            parts.pop();
            parts.pop();
            parts.push(merged);
        }
        Self { parts }
    }

    /// The keys of the entries naming `name`, in file order; `None` if one of them does
    /// not parse.
    fn lookup(&self, name: &str) -> Option<Vec<PublicKey>> {
        let mut hits = Vec::new();
        for part in &self.parts {
            if let Some(entries) = part.exact.get(name) {
                hits.extend_from_slice(entries);
            }
            hits.extend(
                part.hashed
                    .iter()
                    .filter(|h| h.matches(name))
                    .map(|h| h.entry),
            );
        }
        // An entry naming the host twice (plainly and hashed, say) counts once.
        hits.sort_unstable();
        hits.dedup();
        hits.into_iter().map(|e| self.key(e).cloned()).collect()
    }

    /// Whether an `@revoked` line names `key`.
    fn is_revoked(&self, key: &PublicKey) -> bool {
        self.parts
            .iter()
            .any(|p| p.revoked.iter().any(|r| r.key_data() == key.key_data()))
    }

    fn key(&self, entry: usize) -> Option<&PublicKey> {
        let part = self
            .parts
            .partition_point(|p| p.first <= entry)
            .checked_sub(1)
            .and_then(|i| self.parts.get(i))?;
        part.keys.get(entry - part.first)?.as_ref()
    }
}

impl Part {
    /// Parses known_hosts lines as OpenSSH splits them (see [`fields`]): a first field
    /// starting with `#` makes a comment; `@revoked` and `@cert-authority` markers come
    /// before the other fields (any other `@` marker voids the line); then the
    /// comma-separated names, the key type and the base64 key (anything after it is a
    /// comment). A line without a key field is skipped.
    fn parse(text: &str, first: usize, parsed_lines: &AtomicU64) -> Self {
        let mut part = Self {
            first,
            ..Self::default()
        };
        let mut lines = 0;
        for line in text.split_inclusive('\n') {
            lines += 1;
            let mut fields = fields(line);
            let Some(head) = fields.next() else {
                continue;
            };
            if head.starts_with('#') {
                continue;
            }
            let (marker, names) = match head.strip_prefix('@') {
                Some(marker) => (Some(marker), fields.next()),
                None => (None, Some(head)),
            };
            let (Some(names), Some(_type), Some(key)) = (names, fields.next(), fields.next())
            else {
                continue;
            };
            match marker {
                None => {}
                Some("revoked") => {
                    // An unparsable key revokes nothing (there is nothing to compare), like
                    // an unparsable key trusts nothing.
                    if let Ok(key) = russh::keys::parse_public_key_base64(key) {
                        part.revoked.push(key);
                    }
                    continue;
                }
                // `@cert-authority` (certificates are not supported) and unknown markers
                // (OpenSSH skips the line) name no host.
                Some(_) => continue,
            }
            let entry = first + part.keys.len();
            part.keys
                .push(russh::keys::parse_public_key_base64(key).ok());
            for name in names.split(',') {
                if let Some(hashed) = name.strip_prefix("|1|") {
                    // A malformed hashed name matches nothing (and is not compared literally).
                    let mut fields = hashed.split('|');
                    let Some(Ok(salt)) = fields.next().map(|f| BASE64_MIME.decode(f.as_bytes()))
                    else {
                        continue;
                    };
                    let Some(Ok(hash)) = fields.next().map(|f| BASE64_MIME.decode(f.as_bytes()))
                    else {
                        continue;
                    };
                    if let Ok(mac) = Hmac::<Sha1>::new_from_slice(&salt) {
                        part.hashed.push(Hashed { mac, hash, entry });
                    }
                } else {
                    let entries = part.exact.entry(name.into()).or_default();
                    if entries.last() != Some(&entry) {
                        entries.push(entry);
                    }
                }
            }
        }
        parsed_lines.fetch_add(lines, Ordering::Relaxed);
        part
    }

    /// This part followed by `next` (which starts where this one ends).
    fn merged(&self, next: &Self) -> Self {
        let mut merged = self.clone();
        merged.keys.extend(next.keys.iter().cloned());
        for (name, entries) in &next.exact {
            merged
                .exact
                .entry(name.clone())
                .or_default()
                .extend_from_slice(entries);
        }
        merged.hashed.extend(next.hashed.iter().cloned());
        merged.revoked.extend(next.revoked.iter().cloned());
        merged
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use data_encoding::BASE64;
    use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData, SkEd25519};

    use super::*;

    fn ed(n: u8) -> PublicKey {
        PublicKey::new(KeyData::Ed25519(Ed25519PublicKey([n; 32])), "")
    }

    /// Another key type (sk-ssh-ed25519@openssh.com).
    fn sk(n: u8) -> PublicKey {
        let key = SkEd25519::new(Ed25519PublicKey([n; 32]), "ssh:");
        PublicKey::new(KeyData::SkEd25519(key), "")
    }

    fn base64_key(key: &PublicKey) -> String {
        let line = key.to_openssh().unwrap();
        line.split(' ').nth(1).unwrap().to_owned()
    }

    fn line(names: &str, key: &PublicKey) -> String {
        format!("{names} {}\n", key.to_openssh().unwrap())
    }

    /// `name` hashed as `ssh-keygen -H` does.
    fn hashed(name: &str, salt: u8) -> String {
        let salt = [salt; 20];
        let hash = Hmac::<Sha1>::new_from_slice(&salt)
            .unwrap()
            .chain_update(name)
            .finalize()
            .into_bytes();
        format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(&hash))
    }

    /// Replaces the file in one step, as an editor or config management would.
    fn replace(path: &Path, text: &[u8]) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn file(known: &KnownHosts) -> &HostsFile {
        known.inner.file.as_ref().unwrap()
    }

    fn fp(key: &PublicKey) -> String {
        fingerprint(key)
    }

    /// What russh made of the file before the cache: `None` for an error (which `check`
    /// ignored, like nothing found).
    fn russh_keys(host: &str, port: u16, path: &Path) -> Option<Vec<PublicKey>> {
        russh::keys::known_hosts::known_host_keys_path(host, port, path)
            .ok()
            .map(|found| found.into_iter().map(|(_, k)| k).collect())
    }

    /// Where russh split on single spaces, the index splits as OpenSSH does (runs of blanks,
    /// leading blanks, markers): those lines are spelled out below and in
    /// `fields_are_split_on_runs_of_blanks_as_openssh_does`; every other line reads as
    /// russh read it.
    #[test]
    fn the_index_reads_the_file_as_russh_did_but_for_blanks_and_markers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let mut text = String::new();
        text += &format!("# a.example ssh-ed25519 {}\n", base64_key(&ed(0)));
        text += &line("a.example", &ed(1));
        text += &line("a.example,b.example", &ed(2));
        text += &line("[a.example]:2222", &ed(3));
        text += &line(&hashed("c.example", 7), &ed(4));
        // Named plainly and hashed: one entry.
        text += &line(&format!("d.example,{}", hashed("d.example", 8)), &ed(5));
        text += &line(&hashed("[d.example]:2200", 9), &ed(6));
        text += &line("|1|!!!|???,|1|", &ed(7));
        // Patterns and markers are compared literally.
        text += &line("*.example", &ed(8));
        text += &line("!f.example,f.example", &ed(9));
        text += &line("@revoked a.example", &ed(10));
        text += &line("@cert-authority *.example", &ed(11));
        // A key that does not parse: the file vouches for nothing for g.example.
        text += "g.example ssh-ed25519 AAAA-not-base64\n";
        text += &line("g.example", &ed(12));
        // Two spaces, tabs: russh read no key, OpenSSH (and the index) read one.
        text += &format!("h.example  ssh-ed25519 {}\n", base64_key(&ed(13)));
        text += &format!("i.example\tssh-ed25519\t{}\n", base64_key(&ed(14)));
        text += &format!("j.example ssh-ed25519 {} a comment\n", base64_key(&ed(15)));
        text += &format!("k.example ssh-ed25519 {}\r\n", base64_key(&ed(16)));
        text += &line("a.example", &sk(17));
        text += "\n";
        text += "l.example ssh-ed25519\n";
        text += &format!(" a.example ssh-ed25519 {}\n", base64_key(&ed(18)));
        text += &format!("m.example ssh-ed25519 {}", base64_key(&ed(19)));
        std::fs::write(&path, &text).unwrap();

        let known = KnownHosts::from_file(&path);
        let queries: &[(&str, u16)] = &[
            ("a.example", 2222),
            ("b.example", 22),
            ("c.example", 22),
            ("c.example", 2222),
            ("d.example", 22),
            ("d.example", 2200),
            ("*.example", 22),
            ("x.example", 22),
            ("!f.example", 22),
            ("f.example", 22),
            // (`@revoked` lines are honoured now: see `a_revoked_key_is_refused_everywhere`.)
            ("g.example", 22),
            ("j.example", 22),
            ("k.example", 22),
            ("l.example", 22),
            ("m.example", 22),
            ("unknown.example", 22),
        ];
        for &(host, port) in queries {
            let ours = file(&known).keys_opt(&host_entry_name(host, port));
            assert_eq!(ours, russh_keys(host, port, &path), "{host}:{port}");
        }
        // Where OpenSSH and russh differ, as OpenSSH reads it: runs of blanks and leading
        // blanks separate fields; a marker line names no host.
        let a = file(&known).keys_opt("a.example").unwrap();
        assert_eq!(a, vec![ed(1), ed(2), sk(17), ed(18)]);
        assert_eq!(file(&known).keys_opt("h.example"), Some(vec![ed(13)]));
        assert_eq!(file(&known).keys_opt("i.example"), Some(vec![ed(14)]));
        assert_eq!(file(&known).keys_opt("@cert-authority"), Some(vec![]));
        assert_eq!(file(&known).keys_opt(""), Some(vec![]));
        // The cases that matter, spelled out.
        assert_eq!(file(&known).keys_opt("c.example"), Some(vec![ed(4)]));
        assert_eq!(file(&known).keys_opt("d.example"), Some(vec![ed(5)]));
        assert_eq!(file(&known).keys_opt("[d.example]:2200"), Some(vec![ed(6)]));
        assert_eq!(file(&known).keys_opt("x.example"), Some(vec![]));
        assert_eq!(file(&known).keys_opt("g.example"), None);
        assert_eq!(file(&known).keys_opt("k.example"), Some(vec![ed(16)]));
        // Written just now, so re-read at every check, but parsed once.
        let lines = text.split_inclusive('\n').count() as u64;
        assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), lines);

        // Not UTF-8: russh failed for every host, and the file vouches for nothing.
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\xff\xfe n.example\n");
        replace(&path, &bytes);
        for &(host, port) in queries {
            let ours = file(&known).keys_opt(&host_entry_name(host, port));
            assert_eq!(ours, None, "{host}:{port}");
            assert_eq!(russh_keys(host, port, &path), None, "{host}:{port}");
        }
    }

    #[test]
    fn check_trusts_the_same_key_and_reports_the_first_of_the_same_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(
            &path,
            line("a", &ed(1)) + &line("a", &ed(2)) + &line("[a]:2222", &sk(3)),
        )
        .unwrap();
        let known = KnownHosts::from_file(&path);
        assert_eq!(known.check("a", 22, &ed(2)), HostKeyCheck::Trusted);
        assert_eq!(
            known.check("a", 22, &ed(9)),
            HostKeyCheck::Changed {
                expected: fp(&ed(1))
            }
        );
        // Another type: the host is known all the same (see
        // `a_host_with_a_key_of_another_type_is_known_and_the_key_refused`).
        assert_eq!(
            known.check("a", 22, &sk(9)),
            HostKeyCheck::OtherKeyType {
                recorded: vec![
                    format!("ssh-ed25519 {}", fp(&ed(1))),
                    format!("ssh-ed25519 {}", fp(&ed(2))),
                ]
            }
        );
        assert_eq!(
            known.check("a", 2222, &sk(9)),
            HostKeyCheck::Changed {
                expected: fp(&sk(3))
            }
        );
        assert_eq!(known.check("b", 22, &ed(1)), HostKeyCheck::Unknown);
        // Keys in memory come first.
        known.insert("a", 22, ed(5));
        assert_eq!(
            known.check("a", 22, &ed(9)),
            HostKeyCheck::Changed {
                expected: fp(&ed(5))
            }
        );
    }

    #[test]
    fn a_key_added_to_the_file_is_trusted_at_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, line("a", &ed(1)) + &line("b", &ed(2))).unwrap();
        let known = KnownHosts::from_file(&path);
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
        assert_eq!(known.check("c", 22, &ed(3)), HostKeyCheck::Unknown);
        let parsed = file(&known).parsed_lines.load(Ordering::Relaxed);
        assert_eq!(parsed, 2);

        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, line("c", &ed(3)).as_bytes()).unwrap();
        drop(f);
        assert_eq!(known.check("c", 22, &ed(3)), HostKeyCheck::Trusted);
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
        // Only the appended line was parsed.
        assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_key_removed_from_the_file_is_no_longer_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, line("a", &ed(1)) + &line("b", &ed(2))).unwrap();
        let known = KnownHosts::from_file(&path);
        assert_eq!(known.check("b", 22, &ed(2)), HostKeyCheck::Trusted);
        std::fs::write(&path, line("a", &ed(1))).unwrap();
        assert_eq!(known.check("b", 22, &ed(2)), HostKeyCheck::Unknown);
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    }

    #[test]
    fn a_key_replaced_in_place_by_one_of_the_same_length_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, line("a", &ed(1))).unwrap();
        let known = KnownHosts::from_file(&path);
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
        // Same length, same inode, very likely the same mtime tick.
        std::fs::write(&path, line("a", &ed(2))).unwrap();
        assert_eq!(
            known.check("a", 22, &ed(1)),
            HostKeyCheck::Changed {
                expected: fp(&ed(2))
            }
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_rewrite_that_puts_the_old_mtime_back_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let old = SystemTime::now() - Duration::from_secs(3600);
        let write = |key: &PublicKey| {
            std::fs::write(&path, line("a", key)).unwrap();
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        };
        write(&ed(1));
        let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
        assert_eq!(file(&known).reads.load(Ordering::Relaxed), 1, "settled");
        write(&ed(2));
        assert_eq!(
            known.check("a", 22, &ed(1)),
            HostKeyCheck::Changed {
                expected: fp(&ed(2))
            }
        );
    }

    #[test]
    fn an_unchanged_file_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let text: String = (0..100u8).map(|i| line(&format!("h{i}"), &ed(i))).collect();
        std::fs::write(&path, text).unwrap();
        let known = KnownHosts::with_file(HostsFile::new(path, Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(40));
        for round in 0..3 {
            for i in 0..100u8 {
                assert_eq!(
                    known.check(&format!("h{i}"), 22, &ed(i)),
                    HostKeyCheck::Trusted,
                    "round {round} h{i}"
                );
            }
        }
        assert_eq!(file(&known).reads.load(Ordering::Relaxed), 1);
        assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn a_recently_changed_file_is_reread_but_not_reparsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, line("a", &ed(1))).unwrap();
        // Default settle time: the file was written just now.
        let known = KnownHosts::from_file(&path);
        for _ in 0..5 {
            assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
        }
        assert_eq!(file(&known).reads.load(Ordering::Relaxed), 5);
        assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_missing_file_trusts_nothing_until_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh").join("known_hosts");
        let known = KnownHosts::from_file(&path);
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Unknown);
        assert_eq!(file(&known).keys_opt("a"), None);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, line("a", &ed(1))).unwrap();
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Unknown);
        assert!(file(&known).current().is_none(), "cache dropped");
    }

    #[test]
    fn a_file_that_cannot_be_read_trusts_nothing_and_drops_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, line("a", &ed(1))).unwrap();
        let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);

        // A directory opens but does not read.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(
            known.check("a", 22, &ed(1)),
            HostKeyCheck::Unverifiable { reason } if reason.contains("cannot read")
        ));
        assert!(file(&known).current().is_none());
        std::fs::remove_dir(&path).unwrap();

        // Not UTF-8: the file vouches for nothing.
        let mut bytes = line("a", &ed(1)).into_bytes();
        bytes.extend_from_slice(b"# \xff\n");
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            known.check("a", 22, &ed(1)),
            HostKeyCheck::Unverifiable { reason } if reason.contains("UTF-8")
        ));

        std::fs::write(&path, line("a", &ed(1))).unwrap();
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    }

    #[test]
    fn two_logins_learning_one_host_at_once_record_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
        for round in 0..20u8 {
            let host = format!("h{round}");
            let start = std::sync::Barrier::new(2);
            // The device and a man in the middle answer two logins at the same time.
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = [ed(100), ed(200)]
                    .into_iter()
                    .map(|key| {
                        let (known, host, start) = (known.clone(), host.clone(), &start);
                        s.spawn(move || {
                            start.wait();
                            HostKeyPolicy::AcceptNew(known).verify(&host, 22, &key)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(
                results.iter().filter(|r| r.is_ok()).count(),
                1,
                "round {round}: {results:?}"
            );
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                text.lines()
                    .filter(|l| l.starts_with(&format!("{host} ")))
                    .count(),
                1,
                "round {round}: {text}"
            );
            // Learning the same key again records nothing more.
            let winner = if results[0].is_ok() { ed(100) } else { ed(200) };
            known.learn(&host, 22, &winner).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn a_revoked_key_is_refused_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let revoked = |key: &PublicKey| format!("@revoked * {}", key.to_openssh().unwrap());
        // Trusted for a, then revoked further down (an append, parsed as a new part).
        std::fs::write(&path, line("a", &ed(1)) + &line("b", &ed(2))).unwrap();
        let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text += &format!("{}\n", revoked(&ed(1)));
        text += "@revoked * ssh-ed25519 AAAA-not-base64\n";
        std::fs::write(&path, &text).unwrap();
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Revoked);
        assert_eq!(known.check("other", 2222, &ed(1)), HostKeyCheck::Revoked);
        assert_eq!(known.check("b", 22, &ed(2)), HostKeyCheck::Trusted);

        // Accept-new neither trusts nor learns it; other keys are learned as before.
        let policy = HostKeyPolicy::AcceptNew(known.clone());
        let e = policy.verify("c", 22, &ed(1)).unwrap_err();
        assert_eq!(e.kind(), "host_key");
        assert!(e.to_string().contains("revoked"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        policy.verify("c", 22, &ed(3)).unwrap();
        assert_eq!(known.check("c", 22, &ed(3)), HostKeyCheck::Trusted);

        // Leading blanks and tabs, as OpenSSH accepts them.
        text += &format!("  @revoked\t*\tssh-ed25519\t{}\n", base64_key(&ed(2)));
        std::fs::write(&path, &text).unwrap();
        assert_eq!(known.check("b", 22, &ed(2)), HostKeyCheck::Revoked);

        // Un-revoked when the line goes.
        std::fs::write(&path, line("a", &ed(1))).unwrap();
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    }

    #[test]
    fn accept_new_learns_nothing_from_a_file_that_cannot_vouch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let policy = HostKeyPolicy::AcceptNew(KnownHosts::with_file(HostsFile::new(
            path.clone(),
            Duration::ZERO,
        )));

        // Not UTF-8: refused, and nothing appended.
        let mut bytes = line("a", &ed(1)).into_bytes();
        bytes.extend_from_slice(b"# \xff\n");
        std::fs::write(&path, &bytes).unwrap();
        let e = policy.verify("b", 22, &ed(2)).unwrap_err();
        assert_eq!(e.kind(), "host_key");
        assert!(e.to_string().contains("UTF-8"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);

        // A line for the host whose key does not parse: refused, not appended again.
        let broken = "b ssh-ed25519 AAAAnotakey\n";
        std::fs::write(&path, broken).unwrap();
        let e = policy.verify("b", 22, &ed(2)).unwrap_err();
        assert!(e.to_string().contains("does not parse"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
        // Other hosts are still learned.
        policy.verify("c", 22, &ed(3)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{broken}{}", line("c", &ed(3)))
        );

        // No file at all: the first key is learned, and the file created.
        std::fs::remove_file(&path).unwrap();
        policy.verify("d", 22, &ed(4)).unwrap();
        assert_eq!(
            HostKeyPolicy::Strict(KnownHosts::from_file(&path)).verify("d", 22, &ed(4)),
            Ok(())
        );
    }

    #[test]
    fn learning_a_key_writes_the_file_and_the_cache_follows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, line("a", &ed(1))).unwrap();
        let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
        assert_eq!(known.check("b", 2222, &ed(2)), HostKeyCheck::Unknown);
        let before = file(&known).writes.load(Ordering::SeqCst);
        known.learn("b", 2222, &ed(2)).unwrap();
        assert_eq!(file(&known).writes.load(Ordering::SeqCst), before + 1);
        // From the file itself, not only from memory; one new line parsed.
        assert_eq!(file(&known).keys_opt("[b]:2222"), Some(vec![ed(2)]));
        assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 2);
        assert_eq!(known.check("b", 2222, &ed(2)), HostKeyCheck::Trusted);
        // Another store on the same file agrees.
        let other = KnownHosts::from_file(&path);
        assert_eq!(other.check("b", 2222, &ed(2)), HostKeyCheck::Trusted);
        assert_eq!(
            other.check("b", 2222, &ed(3)),
            HostKeyCheck::Changed {
                expected: fp(&ed(2))
            }
        );
    }

    #[test]
    fn appends_keep_the_index_small_and_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, line("h0", &ed(0))).unwrap();
        let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
        for i in 1..=200u8 {
            // Every host is also named "all", so the lookup spans every part.
            known.learn(&format!("h{i}"), 22, &ed(i)).unwrap();
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut f, line("all", &ed(i)).as_bytes()).unwrap();
            drop(f);
            assert_eq!(
                known.check(&format!("h{i}"), 22, &ed(i)),
                HostKeyCheck::Trusted
            );
        }
        let snapshot = file(&known).current().unwrap();
        let index = snapshot.index.as_ref().unwrap();
        assert_eq!(index.len(), 401);
        assert!(index.parts.len() <= 10, "{} parts", index.parts.len());
        let all = file(&known).keys_opt("all").unwrap();
        assert_eq!(all, (1..=200u8).map(ed).collect::<Vec<_>>());
        assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 401);
        assert_eq!(known.check("h0", 22, &ed(0)), HostKeyCheck::Trusted);
    }

    #[test]
    fn concurrent_checks_see_the_old_or_the_new_file_never_neither() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let filler: String = (10..60u8).map(|i| line(&format!("h{i}"), &ed(i))).collect();
        replace(&path, (line("a", &ed(1)) + &filler).as_bytes());
        let known = KnownHosts::from_file(&path);
        std::thread::scope(|s| {
            let checkers: Vec<_> = (0..4)
                .map(|_| {
                    let known = known.clone();
                    s.spawn(move || {
                        for _ in 0..300 {
                            match known.check("a", 22, &ed(1)) {
                                HostKeyCheck::Trusted => {}
                                HostKeyCheck::Changed { expected } => {
                                    assert_eq!(expected, fp(&ed(2)));
                                }
                                other => panic!("neither file: {other:?}"),
                            }
                        }
                    })
                })
                .collect();
            for i in 0..50 {
                let key = if i % 2 == 0 { ed(2) } else { ed(1) };
                replace(&path, (line("a", &key) + &filler).as_bytes());
            }
            replace(&path, (line("a", &ed(2)) + &filler).as_bytes());
            for checker in checkers {
                checker.join().unwrap();
            }
        });
        assert_eq!(
            known.check("a", 22, &ed(1)),
            HostKeyCheck::Changed {
                expected: fp(&ed(2))
            }
        );
    }

    /// A host key of another type than the `ed` keys.
    fn ecdsa() -> PublicKey {
        PublicKey::from_openssh(
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBBPrIYvk8Hx\
             RqfvibT41jY3hjNbboYGg+0gt4el/MuM9ssj2EaVIjQbWNj9/Ea3xZwmspNjSo0l6LHlPn0+lsM=",
        )
        .unwrap()
    }

    /// Yet another type.
    fn rsa() -> PublicKey {
        PublicKey::from_openssh(
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC6uzTW9X8nz6PtBBf3yToN9I+hjynGch7n+y+OHu4OpHSO\
             hUkdKR3m/NylEZUW50yg5zziou80CeVwaICIvFpuV4cDQe1r9WWm5oWP80Z8WyLHVIgtOmK2NKR4KzxFZl7f\
             zgzd/cRR1L26ffwjLZp3bcQctYAsk/o882J8UWDXhw==",
        )
        .unwrap()
    }

    #[test]
    fn a_host_with_a_key_of_another_type_is_known_and_the_key_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let text = line("a", &ed(1)) + &line("[b]:2222", &ed(2)) + &line("[b]:2222", &rsa());
        std::fs::write(&path, &text).unwrap();
        let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
        for presented in [ecdsa(), rsa(), sk(9)] {
            let check = known.check("a", 22, &presented);
            assert!(
                matches!(&check, HostKeyCheck::OtherKeyType { recorded }
                    if recorded == &[format!("ssh-ed25519 {}", fp(&ed(1)))]),
                "{check:?}"
            );
            for policy in [
                HostKeyPolicy::AcceptNew(known.clone()),
                HostKeyPolicy::Strict(known.clone()),
            ] {
                let e = policy.verify("a", 22, &presented).unwrap_err();
                let NetworkError::HostKey {
                    host,
                    expected,
                    actual,
                } = &e
                else {
                    panic!("{e:?}");
                };
                assert_eq!(host, "a:22");
                assert!(expected.contains(&fp(&ed(1))), "{expected}");
                assert!(expected.contains(presented.algorithm().as_str()), "{e}");
                assert_eq!(actual, &fp(&presented));
                // Never learned: not in the file, not in memory.
                assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
                assert!(matches!(
                    known.check("a", 22, &presented),
                    HostKeyCheck::OtherKeyType { .. }
                ));
            }
        }
        // Keys of two types recorded: a third type is refused naming both.
        let e = HostKeyPolicy::AcceptNew(known.clone())
            .verify("b", 2222, &ecdsa())
            .unwrap_err();
        assert!(e.to_string().contains(&fp(&ed(2))), "{e}");
        assert!(e.to_string().contains(&fp(&rsa())), "{e}");
        assert!(
            e.to_string().contains("[b]:2222") || e.to_string().contains("b:2222"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // Each recorded type is still trusted, and a host with no key at all still learned.
        HostKeyPolicy::Strict(known.clone())
            .verify("b", 2222, &rsa())
            .unwrap();
        HostKeyPolicy::AcceptNew(known.clone())
            .verify("c", 22, &ecdsa())
            .unwrap();
        assert_eq!(known.check("c", 22, &ecdsa()), HostKeyCheck::Trusted);
        assert!(matches!(
            known.check("c", 22, &ed(3)),
            HostKeyCheck::OtherKeyType { .. }
        ));

        // Keys learned in memory count too.
        let memory = KnownHosts::new();
        let policy = HostKeyPolicy::AcceptNew(memory.clone());
        policy.verify("d", 22, &ed(4)).unwrap();
        let e = policy.verify("d", 22, &ecdsa()).unwrap_err();
        assert_eq!(e.kind(), "host_key");
        assert!(e.to_string().contains(&fp(&ed(4))), "{e}");
        policy.verify("d", 22, &ed(4)).unwrap();
    }

    #[test]
    fn fields_are_split_on_runs_of_blanks_as_openssh_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let b = base64_key;
        let mut text = String::new();
        text += &format!("a.example  ssh-ed25519   {}\n", b(&ed(1)));
        text += &format!("b.example\tssh-ed25519\t{}\n", b(&ed(2)));
        text += &format!(
            " \t c.example \t ssh-ed25519\t\t{}\t comment\there\n",
            b(&ed(3))
        );
        text += &format!("\td.example,e.example ssh-ed25519 {}  \r\n", b(&ed(4)));
        text += &format!("{}\t ssh-ed25519  {}\n", hashed("f.example", 3), b(&ed(5)));
        text += &format!("[g.example]:2222\tssh-ed25519 {}\n", b(&ed(6)));
        // Comments may be indented.
        text += &format!("  # a.example ssh-ed25519 {}\n", b(&ed(7)));
        text += &format!("\t#a.example ssh-ed25519 {}\n", b(&ed(8)));
        // Markers with any blanks: @cert-authority names no host (certificates are not
        // supported), an unknown marker makes the line invalid, @revoked revokes.
        text += &format!("@cert-authority\ta.example\tssh-ed25519 {}\n", b(&ed(9)));
        text += &format!("  @cert-authority  h.example ssh-ed25519 {}\n", b(&ed(9)));
        text += &format!("@bogus a.example ssh-ed25519 {}\n", b(&ed(10)));
        text += &format!("\t@revoked\t\ti.example   ssh-ed25519\t{}\n", b(&ed(11)));
        // A key that does not parse, whatever the blanks: nothing vouched for j.
        text += "j.example\t\tssh-ed25519\tAAAA-not-base64\n";
        // Too few fields.
        text += "k.example\tssh-ed25519\n";
        text += "   \t  \n";
        std::fs::write(&path, &text).unwrap();

        let known = KnownHosts::from_file(&path);
        let keys = |name: &str| file(&known).keys_opt(name);
        assert_eq!(keys("a.example"), Some(vec![ed(1)]));
        assert_eq!(keys("b.example"), Some(vec![ed(2)]));
        assert_eq!(keys("c.example"), Some(vec![ed(3)]));
        assert_eq!(keys("d.example"), Some(vec![ed(4)]));
        assert_eq!(keys("e.example"), Some(vec![ed(4)]));
        assert_eq!(keys("f.example"), Some(vec![ed(5)]));
        assert_eq!(keys("[g.example]:2222"), Some(vec![ed(6)]));
        assert_eq!(keys("h.example"), Some(vec![]));
        assert_eq!(keys("@cert-authority"), Some(vec![]));
        assert_eq!(keys("@bogus"), Some(vec![]));
        assert_eq!(keys("@revoked"), Some(vec![]));
        assert_eq!(keys("i.example"), Some(vec![]));
        assert_eq!(keys("j.example"), None);
        assert_eq!(keys("k.example"), Some(vec![]));
        assert_eq!(keys(""), Some(vec![]));
        assert_eq!(known.check("c.example", 22, &ed(3)), HostKeyCheck::Trusted);
        assert_eq!(known.check("x.example", 22, &ed(11)), HostKeyCheck::Revoked);
        assert!(matches!(
            known.check("j.example", 22, &ed(12)),
            HostKeyCheck::Unverifiable { .. }
        ));
        // Accept-new finds the tab-separated key: no second line is appended for b.
        HostKeyPolicy::AcceptNew(known.clone())
            .verify("b.example", 22, &ed(2))
            .unwrap();
        assert!(
            HostKeyPolicy::AcceptNew(known.clone())
                .verify("b.example", 22, &ed(13))
                .is_err()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

        // The same lines appended to a cached file parse the same way.
        std::fs::write(&path, line("z", &ed(20))).unwrap();
        let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
        assert_eq!(known.check("z", 22, &ed(20)), HostKeyCheck::Trusted);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        drop(f);
        assert_eq!(known.check("b.example", 22, &ed(2)), HostKeyCheck::Trusted);
        assert_eq!(known.check("c.example", 22, &ed(3)), HostKeyCheck::Trusted);
        assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 1 + 15);
    }
}
