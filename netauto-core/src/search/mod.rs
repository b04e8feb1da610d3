//! Full-text search over stored output: which runs' output contains a text, and the
//! matching lines with their context.
//!
//! **What a query means** — everywhere (memory, SQLite, PostgreSQL, UI, API, CLI): the runs
//! whose output contains [`SearchQuery::text`] as a literal substring, ignoring case (ASCII
//! letters for sure; other letters as the backend folds them), like `| include` on a device.
//! The text is at least [`MIN_SEARCH_CHARS`] characters (the indexes are made of trigrams), at
//! most [`MAX_SEARCH_BYTES`] bytes, on one line (no control characters). Filters narrow it to
//! one device, one platform, a command containing a text, a time range of the run's start.
//! Results are newest first (descending run id) and paged with [`SearchQuery::before`].
//!
//! **How backends answer it** — [`RunLog::search_runs`](crate::RunLog::search_runs): the
//! in-memory store scans; SQLite keeps an FTS5 trigram index and PostgreSQL a `pg_trgm` GIN
//! index, both written in the same transaction as each output chunk (so a running run is
//! found as soon as its output is stored) and emptied with the chunks when retention purges a
//! run (a purged run is never found). Each chunk is indexed with the unfinished line that
//! preceded it ([`line_carry`], at most [`MAX_LINE_CARRY`] bytes), so a line split between
//! two chunks is still found whole; a line longer than that which is split across chunks can
//! be missed.
//!
//! **Matching lines** — [`search`] pages runs through the store and reads each run's output
//! chunk by chunk to show the matching lines with context (bounded per run), never a whole
//! output in memory.
//!
//! ```
//! use netauto_core::search::{Excerpts, SearchQuery};
//!
//! let query = SearchQuery::new("ip address 10.0.0")?;
//! let mut lines = Excerpts::new(&query.text, 1, 10);
//! lines.feed(b"interface Gi0/1\n IP Address 10.0.0.1 255.255.255.0\n shutdown\n!\n");
//! let found = lines.finish();
//! assert_eq!(found.excerpts.len(), 1);
//! let shown: Vec<_> = found.excerpts[0].lines.iter().map(|l| (l.number, l.matched)).collect();
//! assert_eq!(shown, [(1, false), (2, true), (3, false)]);
//! # Ok::<(), netauto_core::ValidationError>(())
//! ```

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backend::store::RunStore;
use crate::error::{Result, ValidationError};
use crate::model::device::Device;
use crate::model::ids::{DeviceId, RunId};
use crate::model::run::Run;

/// The shortest search text, in characters (the indexes are made of trigrams).
pub const MIN_SEARCH_CHARS: usize = 3;
/// The longest search text, in bytes.
pub const MAX_SEARCH_BYTES: usize = 256;
/// The most runs one [`RunLog::search_runs`](crate::RunLog::search_runs) call answers.
pub const MAX_SEARCH_PAGE: usize = 200;
/// The most bytes of an unfinished line carried into the next chunk's index entry.
pub const MAX_LINE_CARRY: usize = 2048;
/// The most earlier chunks a backend reads to build a chunk's [`line_carry`].
pub const MAX_CARRY_CHUNKS: usize = 32;

/// Which runs [`RunLog::search_runs`](crate::RunLog::search_runs) answers: output contains
/// `text` (case-insensitive) and every filter set matches; newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The text to find (checked by [`SearchQuery::new`]).
    pub text: String,
    /// Only runs on this device.
    pub device: Option<DeviceId>,
    /// Only runs on devices of this platform (the device's stored platform, exactly).
    pub platform: Option<String>,
    /// The run's command contains this (case-insensitive for ASCII letters).
    pub command: Option<String>,
    /// Runs started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Runs started before.
    pub until: Option<DateTime<Utc>>,
    /// Only runs with a smaller id (keyset pagination: the last run of the previous page).
    pub before: Option<RunId>,
    /// At most this many (the store caps it at [`MAX_SEARCH_PAGE`]).
    pub limit: usize,
}

impl SearchQuery {
    /// A query for `text` with no filter, 50 runs a page; `text` must be at least
    /// [`MIN_SEARCH_CHARS`] characters, at most [`MAX_SEARCH_BYTES`] bytes, without control
    /// characters.
    pub fn new(text: impl Into<String>) -> std::result::Result<Self, ValidationError> {
        let text = text.into();
        check_text(&text)?;
        Ok(Self {
            text,
            device: None,
            platform: None,
            command: None,
            since: None,
            until: None,
            before: None,
            limit: 50,
        })
    }

    /// The page size to use: `limit` within 1..=[`MAX_SEARCH_PAGE`].
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_SEARCH_PAGE)
    }

    /// Whether `run` on `device` passes every filter and comes before the cursor (the text
    /// itself is not checked here): the rule every backend implements.
    pub fn admits(&self, run: &Run, device: &Device) -> bool {
        self.device.is_none_or(|d| d == run.device_id)
            && self.platform.as_ref().is_none_or(|p| *p == device.platform)
            && self.command.as_ref().is_none_or(|c| {
                run.command
                    .to_ascii_lowercase()
                    .contains(&c.to_ascii_lowercase())
            })
            && self.since.is_none_or(|t| run.inserted_at >= t)
            && self.until.is_none_or(|t| run.inserted_at < t)
            && self.before.is_none_or(|b| run.id < b)
    }

    /// Whether `output` contains the text, ignoring case: what the in-memory store checks.
    pub fn found_in(&self, output: &str) -> bool {
        output.to_lowercase().contains(&self.text.to_lowercase())
    }
}

/// Checks a search text (see [`SearchQuery::new`]).
pub fn check_text(text: &str) -> std::result::Result<(), ValidationError> {
    let reason = if text.chars().count() < MIN_SEARCH_CHARS {
        format!("search for at least {MIN_SEARCH_CHARS} characters")
    } else if text.len() > MAX_SEARCH_BYTES {
        format!(
            "{} bytes is too long (at most {MAX_SEARCH_BYTES})",
            text.len()
        )
    } else if text.chars().any(char::is_control) {
        "one line of text without control characters (tab, newline, …)".to_owned()
    } else if text.trim().is_empty() {
        "only spaces".to_owned()
    } else {
        return Ok(());
    };
    Err(ValidationError::Field {
        field: "search text",
        reason,
    })
}

/// The unfinished line that precedes a chunk, from the tails of the chunks before it, newest
/// first (each the last at most [`MAX_LINE_CARRY`] bytes of its chunk): the bytes after the
/// last newline, at most [`MAX_LINE_CARRY`] of them. Backends index a chunk as
/// `carry + chunk` ([`index_text`]).
pub fn line_carry<T: AsRef<[u8]>>(tails_newest_first: impl IntoIterator<Item = T>) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut len = 0;
    for tail in tails_newest_first {
        let tail = tail.as_ref();
        let (part, done) = match tail.iter().rposition(|&b| b == b'\n') {
            Some(nl) => (&tail[nl + 1..], true),
            None => (tail, false),
        };
        len += part.len();
        parts.push(part.to_vec());
        if done || len >= MAX_LINE_CARRY {
            break;
        }
    }
    let mut carry: Vec<u8> = parts.into_iter().rev().flatten().collect();
    if carry.len() > MAX_LINE_CARRY {
        carry.drain(..carry.len() - MAX_LINE_CARRY);
    }
    carry
}

/// The text a backend indexes for a chunk: `carry` then `data`, invalid UTF-8 replaced and
/// NUL bytes (which PostgreSQL text cannot hold) replaced by U+FFFD.
pub fn index_text(carry: &[u8], data: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(carry.len() + data.len());
    bytes.extend_from_slice(carry);
    bytes.extend_from_slice(data);
    let text = String::from_utf8_lossy(&bytes);
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.into_owned()
    }
}

/// One line of an excerpt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExcerptLine {
    /// 1-based line number in the run's output.
    pub number: u64,
    /// The line (invalid UTF-8 replaced, the line ending removed, at most
    /// [`Excerpts::MAX_LINE_CHARS`] characters shown).
    pub text: String,
    /// Whether it contains the search text.
    pub matched: bool,
}

/// Consecutive lines of a run's output around one or more matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excerpt {
    /// The lines, in order.
    pub lines: Vec<ExcerptLine>,
}

/// What [`Excerpts::finish`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Found {
    /// The excerpts, in output order.
    pub excerpts: Vec<Excerpt>,
    /// Matching lines in the part of the output read.
    pub matches: u64,
    /// Whether reading stopped at the limit of matching lines (there may be more).
    pub more: bool,
}

/// Finds the lines of one output that contain a text, with `context` lines around each, fed
/// chunk by chunk; keeps at most `context` earlier lines and one unfinished line (itself cut
/// at [`Excerpts::MAX_LINE_BYTES`]).
#[derive(Debug)]
pub struct Excerpts {
    needle: String,
    context: usize,
    max_matches: u64,
    partial: Vec<u8>,
    line_no: u64,
    before: VecDeque<ExcerptLine>,
    after_left: usize,
    current: Option<Excerpt>,
    found: Found,
}

impl Excerpts {
    /// A line longer than this (in bytes) is cut into several.
    pub const MAX_LINE_BYTES: usize = 64 * 1024;
    /// Characters of a line kept for display.
    pub const MAX_LINE_CHARS: usize = 400;

    /// Lines containing `text` (ignoring case), `context` lines around, the first
    /// `max_matches` matching lines.
    pub fn new(text: &str, context: usize, max_matches: u64) -> Self {
        Self {
            needle: text.to_lowercase(),
            context,
            max_matches: max_matches.max(1),
            partial: Vec::new(),
            line_no: 0,
            before: VecDeque::new(),
            after_left: 0,
            current: None,
            found: Found::default(),
        }
    }

    /// Whether enough has been found: the caller may stop feeding.
    pub fn done(&self) -> bool {
        self.found.more
    }

    /// Feeds the next piece of output.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.done() {
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.take_partial(&data[..nl]);
                    data = &data[nl + 1..];
                    let line = std::mem::take(&mut self.partial);
                    self.line(&line);
                }
                None => {
                    self.take_partial(data);
                    data = &[];
                }
            }
        }
    }

    fn take_partial(&mut self, mut data: &[u8]) {
        while self.partial.len() + data.len() > Self::MAX_LINE_BYTES {
            let room = Self::MAX_LINE_BYTES - self.partial.len();
            self.partial.extend_from_slice(&data[..room]);
            data = &data[room..];
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        self.partial.extend_from_slice(data);
    }

    fn line(&mut self, raw: &[u8]) {
        if self.done() {
            return;
        }
        self.line_no += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        let matched = text.to_lowercase().contains(&self.needle);
        if matched && self.found.matches == self.max_matches {
            self.found.more = true;
            self.close();
            return;
        }
        let shown: String = text.chars().take(Self::MAX_LINE_CHARS).collect();
        let line = ExcerptLine {
            number: self.line_no,
            text: shown,
            matched,
        };
        if matched {
            self.found.matches += 1;
            let excerpt = self
                .current
                .get_or_insert_with(|| Excerpt { lines: Vec::new() });
            excerpt.lines.extend(self.before.drain(..));
            excerpt.lines.push(line);
            self.after_left = self.context;
        } else if self.after_left > 0 {
            self.after_left -= 1;
            if let Some(e) = self.current.as_mut() {
                e.lines.push(line);
            }
        } else {
            self.close();
            if self.context > 0 {
                if self.before.len() == self.context {
                    self.before.pop_front();
                }
                self.before.push_back(line);
            }
        }
    }

    fn close(&mut self) {
        if let Some(e) = self.current.take() {
            self.found.excerpts.push(e);
        }
    }

    /// The excerpts (an unfinished last line counts as a line).
    pub fn finish(mut self) -> Found {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        self.close();
        self.found
    }
}

/// Options of [`search`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExcerptOptions {
    /// Lines shown before and after each matching line.
    pub context: usize,
    /// Matching lines shown per run.
    pub max_matches: u64,
    /// Output read per run to find them, in bytes.
    pub max_bytes: u64,
}

impl Default for ExcerptOptions {
    fn default() -> Self {
        Self {
            context: 2,
            max_matches: 5,
            max_bytes: 16 << 20,
        }
    }
}

/// One run found, with its matching lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// The run.
    pub run: Run,
    /// Its matching lines.
    #[serde(flatten)]
    pub found: Found,
}

/// One page of [`search`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchPage {
    /// The runs found, newest first.
    pub hits: Vec<SearchHit>,
    /// The cursor of the next page ([`SearchQuery::before`]), when this one is full.
    pub next_before: Option<RunId>,
}

/// One page of runs whose output contains the query's text, each with its matching lines.
pub async fn search(
    store: &dyn RunStore,
    query: &SearchQuery,
    options: ExcerptOptions,
) -> Result<SearchPage> {
    check_text(&query.text)?;
    let runs = store.search_runs(query).await?;
    let next_before = (runs.len() == query.page_size())
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    let mut hits = Vec::with_capacity(runs.len());
    for run in runs {
        let found = excerpts(store, &run, &query.text, options).await?;
        hits.push(SearchHit { run, found });
    }
    Ok(SearchPage { hits, next_before })
}

/// The matching lines of one run's output (read chunk by chunk, stopping at the limits).
pub async fn excerpts(
    store: &dyn RunStore,
    run: &Run,
    text: &str,
    options: ExcerptOptions,
) -> Result<Found> {
    const PAGE: usize = 64;
    let mut lines = Excerpts::new(text, options.context, options.max_matches);
    let (mut seq, mut read) = (0, 0u64);
    while !lines.done() && read < options.max_bytes {
        let chunks = match store.chunks(run.id, seq, PAGE).await {
            Ok(c) => c,
            // Purged since it was found: nothing to show.
            Err(crate::Error::NotFound { .. } | crate::Error::RunGone(_)) => break,
            Err(e) => return Err(e),
        };
        for c in &chunks {
            let room = usize::try_from(options.max_bytes - read).unwrap_or(usize::MAX);
            let data = &c.data[..c.data.len().min(room)];
            read += data.len() as u64;
            lines.feed(data);
            seq = c.seq + 1;
        }
        if chunks.len() < PAGE {
            break;
        }
    }
    Ok(lines.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(found: &Found) -> Vec<Vec<(u64, bool)>> {
        found
            .excerpts
            .iter()
            .map(|e| e.lines.iter().map(|l| (l.number, l.matched)).collect())
            .collect()
    }

    #[test]
    fn texts_are_checked() {
        assert!(SearchQuery::new("ab").is_err());
        assert!(SearchQuery::new("abc").is_ok());
        assert!(SearchQuery::new("a\tb").is_err());
        assert!(SearchQuery::new("   ").is_err());
        assert!(SearchQuery::new("x".repeat(MAX_SEARCH_BYTES + 1)).is_err());
        assert!(SearchQuery::new("ééé").is_ok());
    }

    #[test]
    fn matches_have_context_and_merge_when_close() {
        let text = "a\nb\nHIT one\nc\nd\ne\nf\nhit two\nhit three\ng\n";
        let mut x = Excerpts::new("hit", 1, 10);
        x.feed(text.as_bytes());
        let found = x.finish();
        assert_eq!(
            numbers(&found),
            [
                vec![(2, false), (3, true), (4, false)],
                vec![(7, false), (8, true), (9, true), (10, false)]
            ]
        );
        assert_eq!(found.matches, 3);
        assert!(!found.more);
    }

    #[test]
    fn lines_split_across_pieces_are_whole_and_the_limit_stops_reading() {
        let mut x = Excerpts::new("needle", 0, 2);
        for piece in ["hay nee", "dle hay\r\nneedle\nx\n", "needle again\n"] {
            x.feed(piece.as_bytes());
        }
        assert!(x.done());
        let found = x.finish();
        assert_eq!(
            numbers(&found),
            [vec![(1, true), (2, true)]],
            "adjacent lines, one excerpt"
        );
        assert_eq!(found.excerpts[0].lines[0].text, "hay needle hay");
        assert!(found.more);
    }

    #[test]
    fn an_unfinished_last_line_counts() {
        let mut x = Excerpts::new("prompt", 0, 5);
        x.feed(b"out\nrouter-prompt#");
        assert_eq!(numbers(&x.finish()), [vec![(2, true)]]);
    }

    #[test]
    fn the_carry_is_the_unfinished_line_before_a_chunk() {
        assert_eq!(line_carry([b"line\nip add".as_slice()]), b"ip add");
        assert_eq!(
            line_carry([b"ress".as_slice(), b"x\nip add"]),
            b"ip address"
        );
        assert_eq!(line_carry([b"done\n".as_slice(), b"older"]), b"");
        assert_eq!(line_carry(Vec::<Vec<u8>>::new()), b"");
        let long = vec![b'x'; MAX_LINE_CARRY];
        assert_eq!(line_carry([b"yy".as_slice(), &long]).len(), MAX_LINE_CARRY);
        assert_eq!(index_text(b"ip ", b"a\0b\xff"), "ip a\u{FFFD}b\u{FFFD}");
    }
}
