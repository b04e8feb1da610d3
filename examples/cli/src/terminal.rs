//! Device-controlled text on the operator's terminal.
//!
//! Run output, and the error messages derived from it, come from devices. Written to a
//! terminal as they are, their control characters would drive it: set the window title
//! (`ESC ] 0 ; … BEL`), clear the screen (`ESC [ 2 J`), move the cursor to hide a line,
//! redefine keys on some terminals. So on a terminal the CLI shows such text escaped:
//!
//! * ESC and every other C0 control character (U+0000–U+001F) but newline and tab, and DEL
//!   (U+007F), become `\xNN` (`\x1b`);
//! * a carriage return is kept only right before a newline (`\r\n` line ends); alone it
//!   would rewrite the line, so it becomes `\x0d`;
//! * C1 control characters (U+0080–U+009F, which some terminals read as ESC sequences)
//!   become `\u{NN}` (`\u{9b}`);
//! * bytes that are not UTF-8 become `\xNN` too (`\xff`): never a C0 escape, since those
//!   bytes are all at least 0x80.
//!
//! Everything else, backslashes included, is shown as it is (so the escaping is not
//! reversible: it is for reading, not for copying output). A pipe or a file gets the bytes
//! unchanged, and so does a terminal with `netauto runs show --raw`.
//!
//! `NETAUTO_FORCE_TTY=1` makes the CLI treat stdout and stderr as terminals: a knob for
//! tests (their stdout is a pipe), not for operators.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

/// The environment variable that makes stdout and stderr count as terminals (for tests).
pub(crate) const FORCE_TTY: &str = "NETAUTO_FORCE_TTY";

fn forced() -> bool {
    std::env::var_os(FORCE_TTY).is_some_and(|v| v == "1")
}

/// Whether stdout is a terminal (or [`FORCE_TTY`] says so).
pub(crate) fn stdout_is_terminal() -> bool {
    forced() || io::stdout().is_terminal()
}

/// Whether stderr is a terminal (or [`FORCE_TTY`] says so).
pub(crate) fn stderr_is_terminal() -> bool {
    forced() || io::stderr().is_terminal()
}

/// `text` as it may be shown on a terminal (see the [module documentation](self)).
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        push_char(c, chars.peek().copied(), &mut out);
    }
    Cow::Owned(out)
}

/// `text` escaped when `on`, as it is otherwise.
pub(crate) fn escape_if(on: bool, text: &str) -> Cow<'_, str> {
    if on {
        escape(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether `c` may need escaping (`\r` does only when no `\n` follows it).
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || c == '\r'
}

/// Appends `c` (followed by `next`) as it may be shown.
fn push_char(c: char, next: Option<char>, out: &mut String) {
    match c {
        '\n' | '\t' => out.push(c),
        '\r' if next == Some('\n') => out.push(c),
        '\u{0}'..='\u{1f}' | '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        '\u{80}'..='\u{9f}' => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        _ => out.push(c),
    }
}

/// Escapes a stream of bytes that arrive in pieces (the chunks of a run): a UTF-8 character
/// or a `\r\n` split across two pieces is treated as one.
#[derive(Debug, Default)]
pub(crate) struct Escaper {
    /// The end of the last piece, held back until the next one says what it is: an
    /// incomplete UTF-8 sequence, or a `\r`.
    carry: Vec<u8>,
}

impl Escaper {
    /// Appends `bytes`, escaped, to `out` (holding back at most a few bytes at the end).
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut String) {
        if self.carry.is_empty() {
            self.escape(bytes, false, out);
        } else {
            let mut input = std::mem::take(&mut self.carry);
            input.extend_from_slice(bytes);
            self.escape(&input, false, out);
        }
    }

    /// Appends what is held back, escaped: the stream has ended.
    pub(crate) fn finish(&mut self, out: &mut String) {
        let input = std::mem::take(&mut self.carry);
        self.escape(&input, true, out);
    }

    fn escape(&mut self, input: &[u8], last: bool, out: &mut String) {
        let mut chunks = input.utf8_chunks().peekable();
        while let Some(chunk) = chunks.next() {
            let (valid, invalid) = (chunk.valid(), chunk.invalid());
            let at_end = chunks.peek().is_none();
            let mut chars = valid.chars().peekable();
            while let Some(c) = chars.next() {
                let next = chars.peek().copied();
                if c == '\r' && next.is_none() && invalid.is_empty() && at_end && !last {
                    self.carry.push(b'\r');
                    break;
                }
                push_char(c, next, out);
            }
            let incomplete = std::str::from_utf8(invalid)
                .err()
                .is_some_and(|e| e.error_len().is_none());
            if at_end && !last && incomplete {
                self.carry.extend_from_slice(invalid);
            } else {
                for b in invalid {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
        }
    }
}

/// A writer of device bytes: as they are, or escaped for a terminal.
#[derive(Debug)]
pub(crate) struct DeviceWriter<W: Write> {
    inner: W,
    /// `None`: raw.
    escaper: Option<Escaper>,
    buf: String,
}

impl<W: Write> DeviceWriter<W> {
    /// Writes to `inner`, escaping when `escape`.
    pub(crate) fn new(inner: W, escape: bool) -> Self {
        Self {
            inner,
            escaper: escape.then(Escaper::default),
            buf: String::new(),
        }
    }

    /// Writes one piece of the stream.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.escaper {
            None => self.inner.write_all(bytes),
            Some(escaper) => {
                self.buf.clear();
                escaper.push(bytes, &mut self.buf);
                self.inner.write_all(self.buf.as_bytes())
            }
        }
    }

    /// Writes what is held back and flushes.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if let Some(escaper) = &mut self.escaper {
            self.buf.clear();
            escaper.finish(&mut self.buf);
            self.inner.write_all(self.buf.as_bytes())?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped_in_pieces(pieces: &[&[u8]]) -> String {
        let mut escaper = Escaper::default();
        let mut out = String::new();
        for piece in pieces {
            escaper.push(piece, &mut out);
        }
        escaper.finish(&mut out);
        out
    }

    #[test]
    fn control_characters_are_escaped_and_text_kept() {
        assert_eq!(
            escape("plain text, ünïcødé ✓\n\tok"),
            "plain text, ünïcødé ✓\n\tok"
        );
        assert!(matches!(escape("plain\n"), Cow::Borrowed(_)));
        assert_eq!(
            escape("\x1b]0;owned\x07\x1b[2Jx"),
            "\\x1b]0;owned\\x07\\x1b[2Jx"
        );
        assert_eq!(escape("a\0b\x08c\x7fd"), "a\\x00b\\x08c\\x7fd");
        assert_eq!(
            escape("csi\u{9b}2J osc\u{9d} \u{85}"),
            "csi\\u{9b}2J osc\\u{9d} \\u{85}"
        );
        // `\r\n` line ends stay; a lone `\r` would rewrite the line.
        assert_eq!(escape("one\r\ntwo\rthree\r"), "one\r\ntwo\\x0dthree\\x0d");
        // Characters next to the C1 range are not controls.
        assert_eq!(escape("\u{7e}\u{a0}\u{ff}"), "\u{7e}\u{a0}\u{ff}");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_hex() {
        assert_eq!(
            escaped_in_pieces(&[b"a\xffb\xc3(\x80"]),
            "a\\xffb\\xc3(\\x80"
        );
        // Cut short at the very end.
        assert_eq!(escaped_in_pieces(&[b"ab\xe2\x82"]), "ab\\xe2\\x82");
    }

    #[test]
    fn pieces_split_anywhere_escape_like_the_whole() {
        let whole: &[u8] =
            b"r1#show run\r\n\x1b[2J\xe2\x9c\x93 ok\r\n\xc2\x9b31m \xff\r\rx\xf0\x9f\x98\x80\r";
        let expected = escaped_in_pieces(&[whole]);
        assert_eq!(
            expected,
            "r1#show run\r\n\\x1b[2J\u{2713} ok\r\n\\u{9b}31m \\xff\\x0d\\x0dx\u{1f600}\\x0d"
        );
        for cut in 0..=whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(escaped_in_pieces(&[a, b]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(escaped_in_pieces(&bytes), expected);
    }

    #[test]
    fn the_device_writer_is_raw_unless_asked_to_escape() {
        let bytes = b"\x1b]0;t\x07\xff\r\n";
        let mut raw = DeviceWriter::new(Vec::new(), false);
        raw.write(bytes).unwrap();
        raw.finish().unwrap();
        assert_eq!(raw.inner, bytes);
        let mut tty = DeviceWriter::new(Vec::new(), true);
        tty.write(&bytes[..3]).unwrap();
        tty.write(&bytes[3..]).unwrap();
        tty.finish().unwrap();
        assert_eq!(tty.inner, b"\\x1b]0;t\\x07\\xff\r\n");
        assert_eq!(escape_if(false, "\x1b"), "\x1b");
        assert_eq!(escape_if(true, "\x1b"), "\\x1b");
    }
}
