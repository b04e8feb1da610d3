//! The parsed entries of a known_hosts file, indexed by name: plain names in a hash map,
//! hashed names matched by HMAC-SHA1 (`ssh-key` decodes `|1|salt|hash` names but matches
//! nothing), keys of `@revoked` lines apart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use sha1::Sha1;

use super::parse::{self, Line, Name};

/// The parsed entries of the file: a few parts in file order, each indexed. An append adds
/// a part; parts are merged so that each is at least twice the size of the next one
/// (O(log n) parts, each line copied O(log n) times over any run of appends).
#[derive(Clone, Default)]
pub(super) struct Index {
    pub(super) parts: Vec<Arc<Part>>,
    /// Lines read so far (the next part starts at line `lines + 1`).
    lines: usize,
}

/// Consecutive entries of the file (lines with a key field, comments excluded), numbered
/// from `first` across the whole file.
#[derive(Clone, Default)]
pub(super) struct Part {
    first: usize,
    /// Each entry's key, or why it does not parse.
    keys: Vec<Result<PublicKey, BadKey>>,
    /// Plain names (`host`, `[host]:port`, and anything else that is not hashed, compared
    /// literally) → their entries, ascending.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Hashed names: one HMAC each per check.
    hashed: Vec<Hashed>,
    /// Keys of `@revoked` lines: refused for every host (their host patterns are not
    /// matched, so a revocation is never narrower than meant).
    revoked: Vec<PublicKey>,
}

/// A line whose key does not parse: the file vouches for nothing for the hosts it names.
#[derive(Clone, Debug)]
pub(super) struct BadKey {
    /// Its line number (from 1).
    pub(super) line: usize,
    /// Why the key does not parse.
    pub(super) reason: String,
}

/// A `|1|salt|hash` name: HMAC-SHA1 keyed with the salt, ready to hash a host name.
#[derive(Clone)]
struct Hashed {
    mac: Hmac<Sha1>,
    hash: [u8; 20],
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
    pub(super) fn len(&self) -> usize {
        self.parts.last().map_or(0, |p| p.first + p.keys.len())
    }

    /// This index followed by the lines of `text` (which starts at a line boundary) of the
    /// file at `path` (named in the debug log of malformed lines).
    pub(super) fn extended(&self, text: &str, path: &Path, parsed_lines: &AtomicU64) -> Self {
        let (part, lines) = Part::parse(text, self.len(), self.lines + 1, path);
        parsed_lines.fetch_add(lines as u64, Ordering::Relaxed);
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
        Self {
            parts,
            lines: self.lines + lines,
        }
    }

    /// The keys of the entries naming `name`, in file order; the first of them that does
    /// not parse, if any.
    pub(super) fn lookup(&self, name: &str) -> Result<Vec<PublicKey>, BadKey> {
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
        hits.into_iter()
            .filter_map(|e| self.entry(e).cloned())
            .collect()
    }

    /// Whether an `@revoked` line names `key`.
    pub(super) fn is_revoked(&self, key: &PublicKey) -> bool {
        self.parts
            .iter()
            .any(|p| p.revoked.iter().any(|r| r.key_data() == key.key_data()))
    }

    fn entry(&self, entry: usize) -> Option<&Result<PublicKey, BadKey>> {
        let part = self
            .parts
            .partition_point(|p| p.first <= entry)
            .checked_sub(1)
            .and_then(|i| self.parts.get(i))?;
        part.keys.get(entry - part.first)
    }
}

impl Part {
    /// Indexes the lines of `text` ([`parse::line`]), its entries numbered from `first` and
    /// its lines from `first_line`; also returns the number of lines. Malformed lines are
    /// skipped (logged at debug level); a line whose key does not parse is an entry all the
    /// same, so that the hosts it names are not trusted from the other lines alone.
    fn parse(text: &str, first: usize, first_line: usize, path: &Path) -> (Self, usize) {
        let mut part = Self {
            first,
            ..Self::default()
        };
        let mut lines = 0;
        for (line_number, line) in (first_line..).zip(text.split_inclusive('\n')) {
            lines += 1;
            let skipped = |reason: &str| {
                tracing::debug!(
                    event = "netauto.ssh.known_hosts_line_skipped",
                    path = %path.display(),
                    line = line_number,
                    reason,
                    "known_hosts line (or part of it) ignored"
                );
            };
            let (names, key) = match parse::line(line) {
                Line::Blank | Line::CertAuthority => continue,
                Line::Skipped(reason) => {
                    skipped(&reason);
                    continue;
                }
                Line::Revoked(Ok(key)) => {
                    part.revoked.push(key);
                    continue;
                }
                // An unparsable key revokes nothing (there is nothing to compare), like an
                // unparsable key trusts nothing.
                Line::Revoked(Err(reason)) => {
                    skipped(&format!("@revoked: {reason}"));
                    continue;
                }
                Line::Host { names, key } => (names, key),
            };
            let entry = first + part.keys.len();
            part.keys.push(key.map_err(|reason| {
                skipped(&reason);
                BadKey {
                    line: line_number,
                    reason,
                }
            }));
            for name in parse::names(names) {
                match name {
                    Name::Plain(name) => {
                        let entries = part.exact.entry(name.into()).or_default();
                        if entries.last() != Some(&entry) {
                            entries.push(entry);
                        }
                    }
                    Name::Hashed { salt, hash } => {
                        if let Ok(mac) = Hmac::<Sha1>::new_from_slice(&salt) {
                            part.hashed.push(Hashed { mac, hash, entry });
                        }
                    }
                    Name::Malformed => skipped("a hashed name does not decode"),
                }
            }
        }
        (part, lines)
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
