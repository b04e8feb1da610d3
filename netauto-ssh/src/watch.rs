//! [`ExecWatch`]: what the platform definition says about the output of an exec channel —
//! ANSI escapes removed, failure patterns looked for line by line, questions noticed — in
//! bounded memory, as a pure function of the bytes, so it is tested without a network.

use std::sync::Arc;

use bytes::Bytes;
use netauto_core::platform::{AnsiStripper, Platform};
use netauto_core::{Rejection, RejectionKind};

use crate::shell::TAIL_LIMIT;

/// What to do after a piece of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reaction {
    /// Nothing: keep reading.
    Read,
    /// Type this on the channel's stdin (an answer, with the line ending).
    Reply(String),
    /// A question the bulk does not allow answering: stop with this rejection.
    Refuse(Rejection),
}

/// One stream's unterminated line and ANSI state.
#[derive(Debug, Default)]
struct Stream {
    ansi: Option<AnsiStripper>,
    /// The unterminated last line (at most [`TAIL_LIMIT`] bytes of it).
    line: Vec<u8>,
    /// The start of the line was dropped: it is no prompt and no failure line.
    cut: bool,
}

/// Watches stdout and stderr of one exec command.
#[derive(Debug)]
pub(crate) struct ExecWatch {
    platform: Arc<Platform>,
    answer_prompts: bool,
    /// Replace secrets: output is passed on a line at a time (lines longer than
    /// [`TAIL_LIMIT`] are passed on in pieces, unredacted).
    redact: bool,
    /// A line was redacted.
    redacted: bool,
    streams: [Stream; 2],
    answered: bool,
    rejected: Option<String>,
}

impl ExecWatch {
    pub(crate) fn new(platform: Arc<Platform>, answer_prompts: bool, redact: bool) -> Self {
        let stream = || Stream {
            ansi: platform.strip_ansi.then(AnsiStripper::new),
            ..Stream::default()
        };
        Self {
            streams: [stream(), stream()],
            redact: redact && !platform.secrets.is_empty(),
            redacted: false,
            platform,
            answer_prompts,
            answered: false,
            rejected: None,
        }
    }

    /// Whether a line was redacted so far.
    pub(crate) fn redacted(&self) -> bool {
        self.redacted
    }

    /// What is held of an unterminated last line (redacting: output not passed on yet).
    pub(crate) fn flush(&mut self, stderr: bool) -> Option<Bytes> {
        if !self.redact {
            return None;
        }
        let stream = &mut self.streams[usize::from(stderr)];
        if stream.line.is_empty() {
            return None;
        }
        let line = std::mem::take(&mut stream.line);
        let cut = std::mem::replace(&mut stream.cut, false);
        Some(if cut {
            Bytes::from(line)
        } else {
            let (bytes, hit) = redact_line(&self.platform, &line);
            self.redacted |= hit;
            bytes
        })
    }

    /// Takes a piece of stdout (`stderr == false`) or stderr; answers the bytes to pass on
    /// and what to do.
    pub(crate) fn feed(&mut self, stderr: bool, data: Bytes) -> (Bytes, Reaction) {
        let stream = &mut self.streams[usize::from(stderr)];
        let data = match &mut stream.ansi {
            Some(ansi) => Bytes::from(ansi.strip(&data)),
            None => data,
        };
        let mut out = Vec::new();
        let mut rest = &data[..];
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            stream.line.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            if !stream.cut && self.rejected.is_none() {
                let text = String::from_utf8_lossy(&stream.line);
                let text = text.trim_end_matches('\r');
                if self.platform.failure_in(text).is_some() {
                    self.rejected = Some(text.trim().chars().take(200).collect());
                }
            }
            if self.redact {
                if stream.cut {
                    out.extend_from_slice(&stream.line);
                } else {
                    let (line, hit) = redact_line(&self.platform, &stream.line);
                    self.redacted |= hit;
                    out.extend_from_slice(&line);
                }
                out.push(b'\n');
            }
            stream.line.clear();
            stream.cut = false;
            if !stderr {
                self.answered = false;
            }
        }
        stream.line.extend_from_slice(rest);
        if stream.line.len() > TAIL_LIMIT {
            let excess = stream.line.len() - TAIL_LIMIT;
            if self.redact {
                out.extend_from_slice(&stream.line[..excess]);
            }
            stream.line.drain(..excess);
            stream.cut = true;
        }
        let data = if self.redact { Bytes::from(out) } else { data };
        if stderr || stream.cut || self.answered || self.platform.answers.is_empty() {
            return (data, Reaction::Read);
        }
        let tail = String::from_utf8_lossy(&stream.line);
        let Some(answer) = self.platform.answer_for(&tail) else {
            return (data, Reaction::Read);
        };
        if self.answer_prompts {
            self.answered = true;
            let reply = format!("{}{}", answer.reply, self.platform.line_ending);
            return (data, Reaction::Reply(reply));
        }
        let rejection = Rejection {
            kind: RejectionKind::PromptUnanswered,
            detail: format!(
                "the device asked {:?} and this bulk does not allow answering prompts",
                tail.trim()
            ),
        };
        (data, Reaction::Refuse(rejection))
    }

    /// The first line that matched a failure pattern, as a rejection.
    pub(crate) fn rejection(&mut self) -> Option<Rejection> {
        for stderr in [false, true] {
            let stream = &mut self.streams[usize::from(stderr)];
            if !stream.line.is_empty() && !stream.cut && self.rejected.is_none() {
                let text = String::from_utf8_lossy(&stream.line);
                if self.platform.failure_in(text.trim_end()).is_some() {
                    self.rejected = Some(text.trim().chars().take(200).collect());
                }
            }
        }
        self.rejected.take().map(|line| Rejection {
            kind: RejectionKind::CommandRejected,
            detail: line,
        })
    }
}

/// `line` (without its line ending) with the platform's secrets replaced, and whether any
/// was. A line with a secret comes out as text (invalid UTF-8 replaced).
pub(crate) fn redact_line(platform: &Platform, line: &[u8]) -> (Bytes, bool) {
    let text = String::from_utf8_lossy(line);
    let (body, cr) = match text.strip_suffix('\r') {
        Some(body) => (body, "\r"),
        None => (&*text, ""),
    };
    match platform.redact(body) {
        Some(redacted) => (Bytes::from(format!("{redacted}{cr}")), true),
        None => (Bytes::copy_from_slice(line), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netauto_core::platform::Platforms;

    fn watch(platform: &str, answer: bool) -> ExecWatch {
        let platforms = Platforms::builtin();
        ExecWatch::new(platforms.get(platform).unwrap().clone(), answer, false)
    }

    #[test]
    fn secrets_are_redacted_line_by_line_however_split() {
        let text =
            b"hostname r1\nsnmp-server community s3cr3t RO\nusername admin secret 5 $1$abc\nend";
        for size in 1..text.len() {
            let platforms = Platforms::builtin();
            let mut w = ExecWatch::new(platforms.get("cisco_ios").unwrap().clone(), false, true);
            let mut out = Vec::new();
            for piece in text.chunks(size) {
                out.extend_from_slice(&w.feed(false, Bytes::copy_from_slice(piece)).0);
            }
            out.extend_from_slice(&w.flush(false).unwrap_or_default());
            assert_eq!(
                String::from_utf8_lossy(&out),
                "hostname r1\nsnmp-server community <redacted> RO\nusername admin secret 5 <redacted>\nend",
                "pieces of {size}"
            );
            assert!(w.redacted());
        }
    }

    #[test]
    fn a_failure_line_split_anywhere_is_found() {
        let text = b"line 1\n% Invalid input detected at '^' marker.\nline 3\n";
        for size in 1..text.len() {
            let mut w = watch("cisco_ios", false);
            for piece in text.chunks(size) {
                let (_, r) = w.feed(false, Bytes::copy_from_slice(piece));
                assert_eq!(r, Reaction::Read);
            }
            let rejection = w.rejection().expect("found");
            assert_eq!(rejection.kind, RejectionKind::CommandRejected);
            assert_eq!(rejection.detail, "% Invalid input detected at '^' marker.");
        }
        let mut w = watch("cisco_ios", false);
        w.feed(false, Bytes::from_static(b"all fine\n"));
        assert_eq!(w.rejection(), None);
    }

    #[test]
    fn a_failure_line_on_stderr_without_newline_is_found() {
        let mut w = watch("cisco_ios", false);
        w.feed(true, Bytes::from_static(b"% Incomplete command."));
        assert!(w.rejection().is_some());
    }

    #[test]
    fn questions_are_answered_only_when_allowed() {
        let mut w = watch("cisco_ios", true);
        let (_, r) = w.feed(false, Bytes::from_static(b"Proceed with reload? [confirm]"));
        assert_eq!(r, Reaction::Reply("\n".to_owned()));
        let (_, r) = w.feed(false, Bytes::from_static(b" "));
        assert_eq!(r, Reaction::Read, "answered once per line");
        let mut w = watch("cisco_ios", false);
        let (_, r) = w.feed(false, Bytes::from_static(b"Proceed with reload? [confirm]"));
        assert!(
            matches!(
                r,
                Reaction::Refuse(Rejection {
                    kind: RejectionKind::PromptUnanswered,
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_long_line_is_kept_bounded() {
        let mut w = watch("cisco_ios", false);
        for _ in 0..100 {
            w.feed(false, Bytes::from(vec![b'!'; 4096]));
            assert!(w.streams[0].line.len() <= TAIL_LIMIT);
        }
        w.feed(false, Bytes::from_static(b"% Invalid input\n"));
        assert_eq!(
            w.rejection(),
            None,
            "the end of a cut line is not a failure line"
        );
    }
}
