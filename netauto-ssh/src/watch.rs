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
    streams: [Stream; 2],
    answered: bool,
    rejected: Option<String>,
}

impl ExecWatch {
    pub(crate) fn new(platform: Arc<Platform>, answer_prompts: bool) -> Self {
        let stream = || Stream {
            ansi: platform.strip_ansi.then(AnsiStripper::new),
            ..Stream::default()
        };
        Self {
            streams: [stream(), stream()],
            platform,
            answer_prompts,
            answered: false,
            rejected: None,
        }
    }

    /// Takes a piece of stdout (`stderr == false`) or stderr; answers the bytes to pass on
    /// and what to do.
    pub(crate) fn feed(&mut self, stderr: bool, data: Bytes) -> (Bytes, Reaction) {
        let stream = &mut self.streams[usize::from(stderr)];
        let data = match &mut stream.ansi {
            Some(ansi) => Bytes::from(ansi.strip(&data)),
            None => data,
        };
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
            stream.line.clear();
            stream.cut = false;
            if !stderr {
                self.answered = false;
            }
        }
        stream.line.extend_from_slice(rest);
        if stream.line.len() > TAIL_LIMIT {
            let excess = stream.line.len() - TAIL_LIMIT;
            stream.line.drain(..excess);
            stream.cut = true;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use netauto_core::platform::Platforms;

    fn watch(platform: &str, answer: bool) -> ExecWatch {
        let platforms = Platforms::builtin();
        ExecWatch::new(platforms.get(platform).unwrap().clone(), answer)
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
