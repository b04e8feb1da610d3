//! The backing file of a [`KnownHosts`](super::KnownHosts): when to read it again, and the
//! [`Index`] of its last good read (see the module documentation of
//! [`known_hosts`](super) for the rules).

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use russh::keys::PublicKey;

use super::index::Index;

/// What the known_hosts file says about one host name.
pub(super) enum FileKeys {
    /// Its keys, in file order (none if the file does not name it).
    Keys(Vec<PublicKey>),
    /// There is no file (accept-new creates it).
    Missing,
    /// The file cannot vouch for the host: why.
    Unusable(String),
    /// The presented key is on an `@revoked` line.
    Revoked,
}

/// How old (by mtime and ctime) a known_hosts file must be, when it is read, for its cached
/// index to be reused on the strength of a `stat` alone. Timestamps are coarse (a few
/// milliseconds on Linux, 1 or 2 s on some file systems): a write in the same tick as the
/// previous one keeps them, and a same-length rewrite would then look unchanged. Until then
/// every check re-reads the file and compares its bytes (cheap; nothing is re-parsed when
/// they are equal).
pub(super) const SETTLE: Duration = Duration::from_secs(2);

/// The backing file of a [`KnownHosts`](super::KnownHosts) and the index of its last good read.
pub(super) struct HostsFile {
    pub(super) path: PathBuf,
    settle: Duration,
    /// The last good read; `None` before the first one and after a failed one.
    current: RwLock<Option<Arc<Snapshot>>>,
    /// One reader of the file at a time. Holds the last failure, so it is logged once.
    reload: Mutex<Option<String>>,
    /// Bumped after every write through this store: a snapshot read before it is stale.
    pub(super) writes: AtomicU64,
    /// Reads of the file (each one a full read, bytes compared with the cached copy).
    pub(super) reads: AtomicU64,
    /// Lines parsed, over all reads (an unchanged file costs none, an append its new lines).
    pub(super) parsed_lines: AtomicU64,
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
    pub(super) fn new(path: PathBuf, settle: Duration) -> Self {
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

    pub(super) fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, snapshot: Option<Arc<Snapshot>>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    pub(super) fn invalidate(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// The file's keys for `name` in file order, or why it vouches for nothing.
    pub(super) fn keys_for(&self, name: &str, presented: &PublicKey) -> FileKeys {
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
            Ok(keys) => FileKeys::Keys(keys),
            Err(bad) => FileKeys::Unusable(format!(
                "{}:{}: a line for {name} has a key that does not parse: {}",
                self.path.display(),
                bad.line,
                bad.reason
            )),
        }
    }

    /// [`keys_for`](Self::keys_for) as an option: `None` when the file vouches for nothing.
    #[cfg(test)]
    pub(super) fn keys_opt(&self, name: &str) -> Option<Vec<PublicKey>> {
        self.snapshot().ok()?.index.as_ref()?.lookup(name).ok()
    }

    /// An up-to-date snapshot of the file, read again if needed; `Err(None)` when there is no
    /// file, `Err(Some(why))` when it cannot be read.
    pub(super) fn snapshot(&self) -> Result<Arc<Snapshot>, Option<String>> {
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
                    .map(|tail| index.extended(tail, &self.path, &self.parsed_lines))
            }
            _ => std::str::from_utf8(&content)
                .ok()
                .map(|text| Index::default().extended(text, &self.path, &self.parsed_lines)),
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
pub(super) struct Snapshot {
    stamp: Stamp,
    /// The file had not changed for [`SETTLE`] when it was read: an equal [`Stamp`] later
    /// means equal bytes.
    settled: bool,
    /// [`HostsFile::writes`] when the read started.
    writes: u64,
    read_started: Instant,
    content: Vec<u8>,
    /// `None`: not UTF-8, so the file vouches for nothing.
    pub(super) index: Option<Index>,
}
