//! The shell-mode state machine: a pure function of the bytes the device prints, so it is
//! tested without a network.
//!
//! Flow: wait for the first prompt, send each setup command (`terminal length 0`) and wait for
//! the prompt after it, remember that prompt, send the command, then stream every output line
//! except the echoed command, answering pager prompts (`--More--`) with a space and removing
//! the erase sequence the device prints after it, until the remembered prompt comes back.
//!
//! Bounded memory, linear time: a prompt or a pager prompt can only be at the end of the
//! unterminated last line, so the driver keeps at most [`TAIL_LIMIT`] bytes of that line
//! (plus the command's length while its echo is awaited). The older bytes of a longer line are
//! passed on at once, as output while the command runs (discarded before), so a device
//! printing 50 MB without a newline (Cisco `!!!!` progress, a hostile device) is streamed in
//! pieces and each [`ShellDriver::feed`] costs O(fed bytes + [`TAIL_LIMIT`]). What that
//! bound means for matching:
//! - an unterminated line longer than [`TAIL_LIMIT`] bytes is never a prompt (a prompt line
//!   that long does not exist; the line is output);
//! - a pager prompt is looked for in the last [`TAIL_LIMIT`] bytes of the line, so leading
//!   blanks of a pager match beyond them are output instead of being dropped;
//! - the echo of the command is a first line of at most the command plus [`TAIL_LIMIT`]
//!   bytes; a longer first line is output.
//!
//! Patterns run on text, device output is bytes: the tail is decoded lossily for the patterns
//! only, match offsets are mapped back to byte offsets, and the bytes passed on are always the
//! bytes received (minus `\r`, the echo, pager prompts and their erase sequences).

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use netauto_core::platform::{AnsiStripper, Platform};
use netauto_core::{Rejection, RejectionKind};

use crate::credentials::Secret;
use crate::watch::redact_line;

/// The most bytes of the unterminated last line the driver keeps to find a prompt or a pager
/// prompt in: 1 KiB.
///
/// Prompts are short (an IOS host name has at most 63 characters; with a `(config-…)` mode a
/// prompt stays under 100 bytes) and so are pager prompts (` --More-- `); a prompt filling a
/// whole row of the default 511-column PTY still fits twice. The patterns run over up to this
/// many bytes at every feed, so the bound is also the fixed cost of a feed: in a release
/// build about 22 µs with 1 KiB, 90 µs with 4 KiB, which matters when a device prints its
/// `!!!!` a byte per packet.
pub(crate) const TAIL_LIMIT: usize = 1024;

/// What the driver wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Type this on the channel.
    Send(String),
    /// Type the escalation secret, then the line ending.
    SendSecret,
    /// Command output (`\r` removed): complete lines, or the start of a line longer than
    /// [`TAIL_LIMIT`].
    Output(Bytes),
    /// The command finished (its prompt is back): it ends with this status.
    Done(Option<Rejection>),
    /// The device asked a question the bulk does not allow answering: stop here.
    Refused(Rejection),
    /// Privilege escalation failed.
    EscalationFailed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the first prompt.
    Login,
    /// The escalation command was sent; `secret_sent` once the secret was typed.
    Escalating { secret_sent: bool },
    /// Waiting for a prompt; `n` commands of `after_login` were sent so far.
    Setup(usize),
    /// The command was sent; output is streaming.
    Running,
    /// Finished.
    Done,
}

/// Drives one command through an interactive shell, as the platform definition says.
#[derive(Debug)]
pub(crate) struct ShellDriver {
    platform: Arc<Platform>,
    command: String,
    answer_prompts: bool,
    state: State,
    ansi: Option<AnsiStripper>,
    /// The unterminated last line, or its last bytes when it is too long to keep whole.
    buf: Vec<u8>,
    /// Whether the start of the line in `buf` was already passed on (the line is too long to
    /// be a prompt).
    tail_cut: bool,
    prompt: Option<String>,
    echo_pending: bool,
    after_pager: bool,
    /// A question on the current line was answered (not again until the line ends).
    answered: bool,
    /// The first output line that matched a failure pattern.
    rejected: Option<String>,
    /// Replace the platform's secrets in output lines.
    redact: bool,
    /// A line was redacted.
    redacted: bool,
}

impl ShellDriver {
    pub(crate) fn new(platform: Arc<Platform>, command: &str, answer_prompts: bool) -> Self {
        Self {
            redact: false,
            redacted: false,
            ansi: platform.strip_ansi.then(AnsiStripper::new),
            platform,
            command: command.trim().to_owned(),
            answer_prompts,
            state: State::Login,
            buf: Vec::new(),
            tail_cut: false,
            prompt: None,
            echo_pending: false,
            after_pager: false,
            answered: false,
            rejected: None,
        }
    }

    /// Replaces the platform's secrets in output lines (lines longer than [`TAIL_LIMIT`]
    /// are passed on in pieces, unredacted).
    pub(crate) fn redacting(mut self, redact: bool) -> Self {
        self.redact = redact && !self.platform.secrets.is_empty();
        self
    }

    /// Whether a line was redacted so far.
    pub(crate) fn redacted(&self) -> bool {
        self.redacted
    }

    /// Whether the command finished.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the command was sent (the first prompt was seen and setup is over).
    pub(crate) fn is_running(&self) -> bool {
        self.state == State::Running
    }

    /// The secret line the driver asks for with [`Step::SendSecret`]: `secret` and the line
    /// ending.
    pub(crate) fn secret_line(&self, secret: &Secret) -> Bytes {
        Bytes::from(format!("{}{}", secret.expose(), self.platform.line_ending))
    }

    fn line(&self, text: &str) -> String {
        format!("{text}{}", self.platform.line_ending)
    }

    /// Feeds bytes printed by the device; answers what to do next, in order.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Vec<Step> {
        let mut steps = Vec::new();
        if self.state == State::Done {
            return steps;
        }
        let cleaned;
        let data = match &mut self.ansi {
            Some(ansi) => {
                cleaned = ansi.strip(data);
                &cleaned[..]
            }
            None => data,
        };
        self.buf
            .extend(data.iter().copied().filter(|b| *b != b'\r'));
        if self.after_pager {
            self.strip_erase();
        }
        let mut output = Vec::new();
        self.take_lines(&mut output);
        self.bound_tail(&mut output);
        if !output.is_empty() {
            steps.push(Step::Output(Bytes::from(output)));
        }
        let tail = lossy(&self.buf).into_owned();
        if let Some(at) = self
            .platform
            .paging
            .iter()
            .find_map(|p| p.regex().find(&tail))
            .map(|m| byte_offset(&self.buf, m.start()))
        {
            self.buf.truncate(at);
            self.after_pager = true;
            steps.push(Step::Send(self.platform.paging_reply.clone()));
            return steps;
        }
        if self.tail_cut {
            return steps;
        }
        match self.state {
            State::Running => self.running(&tail, &mut steps),
            State::Login | State::Escalating { .. } | State::Setup(_) => {
                self.logging_in(&tail, &mut steps)
            }
            State::Done => {}
        }
        steps
    }

    /// While the command runs: its prompt back ends it; a question is answered or ends it.
    fn running(&mut self, tail: &str, steps: &mut Vec<Step>) {
        if self.prompt.as_deref() == Some(tail.trim_end()) {
            self.buf.clear();
            self.state = State::Done;
            steps.push(Step::Done(self.rejected.take().map(|line| Rejection {
                kind: RejectionKind::CommandRejected,
                detail: line,
            })));
            return;
        }
        if self.answered || tail.trim().is_empty() {
            return;
        }
        let Some(answer) = self.platform.answer_for(tail) else {
            return;
        };
        if self.answer_prompts {
            self.answered = true;
            steps.push(Step::Send(self.line(&answer.reply)));
            return;
        }
        let mut question = std::mem::take(&mut self.buf);
        question.push(b'\n');
        steps.push(Step::Output(Bytes::from(question)));
        self.state = State::Done;
        steps.push(Step::Refused(Rejection {
            kind: RejectionKind::PromptUnanswered,
            detail: format!(
                "the device asked {:?} and this bulk does not allow answering prompts",
                tail.trim()
            ),
        }));
    }

    /// Before the command: the first prompt, escalation, the `after_login` commands.
    fn logging_in(&mut self, tail: &str, steps: &mut Vec<Step>) {
        let Some(prompts) = &self.platform.prompts else {
            return;
        };
        let privileged = prompts.privileged.is_match(tail)
            || prompts.config.as_ref().is_some_and(|c| c.is_match(tail));
        let user = !privileged && prompts.user.as_ref().is_some_and(|u| u.is_match(tail));
        if let (State::Escalating { secret_sent }, Some(escalation)) =
            (self.state, &self.platform.escalation)
            && !privileged
            && !user
            && escalation.password_prompt.is_match(tail)
        {
            self.buf.clear();
            if secret_sent {
                steps.push(Step::EscalationFailed(format!(
                    "{:?} asked for the secret again: it was refused",
                    escalation.command
                )));
                self.state = State::Done;
            } else {
                self.state = State::Escalating { secret_sent: true };
                steps.push(Step::SendSecret);
            }
            return;
        }
        if !privileged && !user {
            return;
        }
        let prompt = tail.trim_end().to_owned();
        self.buf.clear();
        match (self.state, &self.platform.escalation) {
            (State::Login, Some(escalation)) if user => {
                self.state = State::Escalating { secret_sent: false };
                steps.push(Step::Send(self.line(&escalation.command)));
                return;
            }
            (State::Escalating { .. }, Some(escalation)) if user => {
                steps.push(Step::EscalationFailed(format!(
                    "still at the user prompt {prompt:?} after {:?}",
                    escalation.command
                )));
                self.state = State::Done;
                return;
            }
            _ => {}
        }
        let sent = match self.state {
            State::Setup(n) => n,
            _ => 0,
        };
        if let Some(setup) = self.platform.after_login.get(sent) {
            steps.push(Step::Send(self.line(setup)));
            self.state = State::Setup(sent + 1);
        } else {
            self.prompt = Some(prompt);
            steps.push(Step::Send(self.line(&self.command)));
            self.state = State::Running;
            self.echo_pending = true;
        }
    }

    /// Moves the complete lines out of `buf`: into `output` while the command runs, except
    /// the echoed command; dropped before. Lines matching a failure pattern are remembered.
    fn take_lines(&mut self, output: &mut Vec<u8>) {
        let mut start = 0;
        while let Some(len) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let line = &self.buf[start..=start + len];
            start += len + 1;
            let was_cut = std::mem::replace(&mut self.tail_cut, false);
            self.answered = false;
            if self.state != State::Running {
                continue;
            }
            let text = String::from_utf8_lossy(line);
            if self.echo_pending {
                self.echo_pending = false;
                if text.trim_end().ends_with(&self.command) {
                    continue;
                }
            }
            if !was_cut && self.rejected.is_none() {
                let text = text.trim_end_matches('\n');
                if self.platform.failure_in(text).is_some() {
                    self.rejected = Some(text.trim().chars().take(200).collect());
                }
            }
            if self.redact && !was_cut {
                let (clean, hit) = redact_line(&self.platform, &line[..line.len() - 1]);
                self.redacted |= hit;
                output.extend_from_slice(&clean);
                output.push(b'\n');
                continue;
            }
            output.extend_from_slice(line);
        }
        self.buf.drain(..start);
    }
    /// Passes on the start of an unterminated line too long to be a prompt (into `output`
    /// while the command runs, dropped before), keeping at most the limit, from the start of
    /// a character.
    fn bound_tail(&mut self, output: &mut Vec<u8>) {
        let limit = if self.echo_pending {
            TAIL_LIMIT + self.command.len()
        } else {
            TAIL_LIMIT
        };
        let Some(excess) = self.buf.len().checked_sub(limit).filter(|n| *n > 0) else {
            return;
        };
        let continuation = self.buf[excess..]
            .iter()
            .take(3)
            .take_while(|b| **b & 0xC0 == 0x80)
            .count();
        let cut = excess + continuation;
        if self.state == State::Running {
            output.extend_from_slice(&self.buf[..cut]);
            self.echo_pending = false;
        }
        self.buf.drain(..cut);
        self.tail_cut = true;
    }

    /// Removes the `\x08… …\x08…` sequence a device prints to erase its pager prompt.
    fn strip_erase(&mut self) {
        let run = self
            .buf
            .iter()
            .take_while(|b| **b == 0x08 || **b == b' ')
            .count();
        if run == 0 {
            if !self.buf.is_empty() {
                self.after_pager = false;
            }
            return;
        }
        if let Some(last_bs) = self.buf[..run].iter().rposition(|b| *b == 0x08) {
            self.buf.drain(..=last_bs);
        }
        if self.buf.first().is_some_and(|b| *b != 0x08 && *b != b' ') {
            self.after_pager = false;
        }
    }

    /// What is left unterminated in the buffer (output cut off by a closing device).
    pub(crate) fn take_rest(&mut self) -> Option<Bytes> {
        if self.state != State::Running || self.buf.is_empty() {
            return None;
        }
        Some(Bytes::from(std::mem::take(&mut self.buf)))
    }

    /// How many bytes of output the driver holds.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// `bytes` as text for the patterns: each invalid sequence (as `<[u8]>::utf8_chunks` splits
/// them) becomes one U+FFFD, which [`byte_offset`] relies on.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    let mut text = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            text.push(char::REPLACEMENT_CHARACTER);
        }
    }
    Cow::Owned(text)
}

/// The offset in `bytes` of the character at offset `at` of `lossy(bytes)`.
fn byte_offset(bytes: &[u8], at: usize) -> usize {
    let (mut text, mut raw) = (0, 0);
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().len();
        if at <= text + valid {
            return raw + (at - text);
        }
        text += valid;
        raw += valid;
        if !chunk.invalid().is_empty() {
            if at < text + char::REPLACEMENT_CHARACTER.len_utf8() {
                return raw;
            }
            text += char::REPLACEMENT_CHARACTER.len_utf8();
            raw += chunk.invalid().len();
        }
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;
    use netauto_core::platform::Platforms;

    /// The shipped `cisco_ios` definition.
    fn ios() -> Arc<Platform> {
        Platforms::builtin().get("cisco_ios").unwrap().clone()
    }

    /// `cisco_ios` without `after_login` commands: the command goes at the first prompt.
    fn bare_ios() -> Arc<Platform> {
        let mut p = (*ios()).clone();
        p.after_login.clear();
        Arc::new(p)
    }

    fn outputs(steps: &[Step]) -> String {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Output(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_whole_ios_session() {
        let mut d = ShellDriver::new(ios(), "show version", false);
        let s = d.feed(b"\r\nWelcome\r\nr1#");
        assert_eq!(s, vec![Step::Send("terminal length 0\n".to_owned())]);
        let s = d.feed(b"terminal length 0\r\nr1#");
        assert_eq!(s, vec![Step::Send("terminal width 511\n".to_owned())]);
        let s = d.feed(b"terminal width 511\r\nr1#");
        assert_eq!(s, vec![Step::Send("show version\n".to_owned())]);
        assert!(d.is_running());
        let mut all = Vec::new();
        all.extend(d.feed(b"show vers"));
        all.extend(d.feed(b"ion\r\nCisco IOS\r\nup"));
        all.extend(d.feed(b"time 1 day\r\nr1"));
        assert!(!d.is_done());
        all.extend(d.feed(b"#"));
        assert_eq!(outputs(&all), "Cisco IOS\nuptime 1 day\n");
        assert_eq!(all.last(), Some(&Step::Done(None)));
        assert!(d.is_done());
    }

    #[test]
    fn a_user_prompt_escalates_and_a_refused_secret_fails() {
        let mut d = ShellDriver::new(bare_ios(), "show version", false);
        assert_eq!(
            d.feed(b"banner\r\nr1>"),
            vec![Step::Send("enable\n".into())]
        );
        assert_eq!(d.feed(b"enable\r\nPassword: "), vec![Step::SendSecret]);
        assert_eq!(
            d.feed(b"\r\nr1#"),
            vec![Step::Send("show version\n".into())]
        );
        let mut d = ShellDriver::new(bare_ios(), "show version", false);
        d.feed(b"r1>");
        d.feed(b"enable\r\nPassword: ");
        let s = d.feed(b"\r\n% Access denied\r\nr1>");
        assert!(matches!(s.last(), Some(Step::EscalationFailed(_))), "{s:?}");
    }

    #[test]
    fn a_failure_line_makes_the_command_rejected_and_is_kept_as_output() {
        let mut d = running("show ip route vrf nope");
        let s = d.feed(b"        ^\r\n% Invalid input detected at '^' marker.\r\n\r\nr1#");
        assert_eq!(
            outputs(&s),
            "        ^\n% Invalid input detected at '^' marker.\n\n"
        );
        assert_eq!(
            s.last(),
            Some(&Step::Done(Some(Rejection {
                kind: RejectionKind::CommandRejected,
                detail: "% Invalid input detected at '^' marker.".into()
            })))
        );
    }

    #[test]
    fn a_question_is_answered_only_when_allowed() {
        let profile_run = |allow: bool| {
            let mut d = ShellDriver::new(bare_ios(), "reload", allow);
            d.feed(b"r1#");
            d.feed(b"reload\r\n");
            d
        };
        let mut d = profile_run(true);
        assert_eq!(
            d.feed(b"Proceed with reload? [confirm]"),
            vec![Step::Send("\n".into())]
        );
        assert_eq!(d.feed(b" "), vec![], "not answered twice on one line");
        let s = d.feed(b"\r\nr1#");
        assert_eq!(outputs(&s), "Proceed with reload? [confirm] \n");
        assert_eq!(s.last(), Some(&Step::Done(None)));
        let mut d = profile_run(false);
        let s = d.feed(b"Proceed with reload? [confirm]");
        assert_eq!(outputs(&s), "Proceed with reload? [confirm]\n");
        assert!(
            matches!(s.last(), Some(Step::Refused(r)) if r.kind == RejectionKind::PromptUnanswered),
            "{s:?}"
        );
        assert!(d.is_done());
    }

    #[test]
    fn ansi_escapes_are_removed_before_prompts_are_matched() {
        let mut d = ShellDriver::new(bare_ios(), "show x", false);
        assert_eq!(
            d.feed(b"\x1b[1mr1#\x1b[0m"),
            vec![Step::Send("show x\n".into())]
        );
        let s = d.feed(b"show x\r\n\x1b[32mup\x1b[0m\r\nr1#");
        assert_eq!(outputs(&s), "up\n");
    }

    #[test]
    fn pager_prompts_are_answered_and_erased() {
        let mut d = ShellDriver::new(bare_ios(), "show run", false);
        assert_eq!(d.feed(b"r1#"), vec![Step::Send("show run\n".to_owned())]);
        let s = d.feed(b"show run\r\nline 1\r\nline 2\r\n --More-- ");
        assert_eq!(outputs(&s), "line 1\nline 2\n");
        assert_eq!(s.last(), Some(&Step::Send(" ".to_owned())));
        let s = d.feed(b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08         \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08  line 3\r\nr1#");
        assert_eq!(outputs(&s), "  line 3\n");
        assert_eq!(s.last(), Some(&Step::Done(None)));
    }

    #[test]
    fn a_prompt_like_line_inside_output_does_not_end_the_command() {
        let mut d = ShellDriver::new(bare_ios(), "show x", false);
        d.feed(b"r1#");
        let s = d.feed(b"show x\r\nother#");
        assert!(!s.contains(&Step::Done(None)));
        let s = d.feed(b"\r\nr1#");
        assert_eq!(outputs(&s), "other#\n");
        assert_eq!(s.last(), Some(&Step::Done(None)));
    }
    fn output_bytes(steps: &[Step]) -> Vec<u8> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Output(b) => Some(&b[..]),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    /// A driver on prompt `r1#` whose `command` was sent and echoed.
    fn running(command: &str) -> ShellDriver {
        let mut d = ShellDriver::new(bare_ios(), command, false);
        assert_eq!(d.feed(b"r1#"), vec![Step::Send(format!("{command}\n"))]);
        assert_eq!(d.feed(format!("{command}\r\n").as_bytes()), vec![]);
        assert!(d.is_running());
        d
    }

    /// Megabytes of `!` without a newline (Cisco copy progress, a hostile device) stream out in
    /// bounded memory. 8 MB by default so debug builds stay fast; `NETAUTO_SHELL_FLOOD_MB=50`
    /// runs the 50 MB of issue 12.
    #[test]
    fn megabytes_without_a_newline_stream_out_in_bounded_memory() {
        let mb: usize = std::env::var("NETAUTO_SHELL_FLOOD_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        let total = mb * 1024 * 1024;
        let mut d = running("copy tftp: flash:");
        let piece = vec![b'!'; 32 * 1024];
        let (mut fed, mut out) = (0, 0);
        while fed < total {
            let n = piece.len().min(total - fed);
            for step in d.feed(&piece[..n]) {
                let Step::Output(bytes) = step else {
                    panic!("only output while the line goes on, got {step:?}");
                };
                assert!(bytes.iter().all(|b| *b == b'!'));
                out += bytes.len();
            }
            fed += n;
            assert!(
                d.buffered() <= TAIL_LIMIT,
                "{} bytes held after {fed} fed",
                d.buffered()
            );
            assert_eq!(out + d.buffered(), fed, "every byte is out or held");
        }
        let held = d.buffered();
        let s = d.feed(b"\r\nr1#");
        let rest = output_bytes(&s);
        assert_eq!(rest.len(), held + 1);
        assert_eq!(rest.last(), Some(&b'\n'));
        assert_eq!(out + rest.len(), total + 1);
        assert_eq!(s.last(), Some(&Step::Done(None)));
    }

    #[test]
    fn a_flood_before_the_first_prompt_is_dropped_in_bounded_memory() {
        let mut d = ShellDriver::new(ios(), "show version", false);
        for _ in 0..64 {
            assert_eq!(d.feed(&[b'x'; 16 * 1024]), vec![]);
            assert!(d.buffered() <= TAIL_LIMIT);
        }
        let s = d.feed(b"\r\nr1#");
        assert_eq!(s, vec![Step::Send("terminal length 0\n".to_owned())]);
    }

    #[test]
    fn a_pager_prompt_after_invalid_utf8_keeps_exactly_the_bytes_before_it() {
        let mut d = running("show x");
        let s = d.feed(b"\xff\xfeabc --More-- ");
        assert_eq!(s, vec![Step::Send(" ".to_owned())]);
        let s = d.feed(b"\r\nr1#");
        assert_eq!(output_bytes(&s), b"\xff\xfeabc\n");
        assert_eq!(s.last(), Some(&Step::Done(None)));
    }

    /// Where `a` and `b` first differ, for assertions on megabytes.
    fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
        (a != b).then(|| a.iter().zip(b).take_while(|(x, y)| x == y).count())
    }

    /// However the device's bytes are split, the same bytes come out once each, long lines
    /// and characters cut at any byte included. (A pager prompt arrives whole, as devices
    /// print it; ` --Mo` alone already matches the pattern.)
    #[test]
    fn output_does_not_depend_on_how_the_bytes_are_split() {
        let mut long = "é".repeat(2500).into_bytes();
        long.push(0xFF);
        long.extend_from_slice(&b"!".repeat(5000));
        long.extend_from_slice("€".repeat(1000).as_bytes());
        let mut before_pager = b"show x\r\n".to_vec();
        before_pager.extend_from_slice(&long);
        before_pager.extend_from_slice(b"\r\nline 2\r\n");
        let mut after_pager = vec![0x08; 10];
        after_pager.extend_from_slice(&[b' '; 10]);
        after_pager.extend_from_slice(&[0x08; 10]);
        after_pager.extend_from_slice("€uro line\r\n".as_bytes());
        after_pager.extend_from_slice(&long);
        after_pager.extend_from_slice(b"\r\nr1#");
        let mut expected = long.clone();
        expected.extend_from_slice("\nline 2\n€uro line\n".as_bytes());
        expected.extend_from_slice(&long);
        expected.push(b'\n');
        for size in [13, 1000, TAIL_LIMIT - 1, TAIL_LIMIT + 1, 1 << 20] {
            let mut d = ShellDriver::new(bare_ios(), "show x", false);
            d.feed(b"r1#");
            let mut steps = Vec::new();
            for piece in before_pager.chunks(size) {
                steps.extend(d.feed(piece));
            }
            let answer = d.feed(b" --More-- ");
            assert_eq!(answer, vec![Step::Send(" ".to_owned())], "{size}");
            for piece in after_pager.chunks(size) {
                steps.extend(d.feed(piece));
            }
            let out = output_bytes(&steps);
            assert_eq!(
                first_difference(&out, &expected),
                None,
                "pieces of {size}: {} bytes out, {} expected",
                out.len(),
                expected.len()
            );
            assert_eq!(steps.last(), Some(&Step::Done(None)), "{size}");
        }
    }

    #[test]
    fn byte_offsets_match_the_lossy_text() {
        const ALPHABET: [u8; 10] = [b'a', b' ', b'-', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xFF, 0xF0];
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let len = (next() % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let text = lossy(&bytes);
            assert_eq!(text, String::from_utf8_lossy(&bytes), "{bytes:?}");
            for (at, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let raw = byte_offset(&bytes, at);
                assert_eq!(
                    String::from_utf8_lossy(&bytes[..raw]).len(),
                    at,
                    "{bytes:?} at {at}"
                );
            }
        }
    }
}
