//! The shell-mode state machine: a pure function of the bytes the device prints, so it is
//! tested without a network.
//!
//! Flow: wait for the first prompt, send each setup command (`terminal length 0`) and wait for
//! the prompt after it, remember that prompt, send the command, then stream every complete
//! output line except the echoed command, answering pager prompts (`--More--`) with a space
//! and removing the erase sequence the device prints after it, until the remembered prompt
//! comes back.

use bytes::Bytes;

use crate::profile::ShellProfile;

/// What the driver wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Type this on the channel.
    Send(String),
    /// Command output (complete lines, `\r` removed).
    Output(Bytes),
    /// The command finished (its prompt is back).
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a prompt; `n` setup commands were sent so far.
    Setup(usize),
    /// The command was sent; output is streaming.
    Running,
    /// Finished.
    Done,
}

/// Drives one command through an interactive shell.
#[derive(Debug)]
pub(crate) struct ShellDriver {
    profile: ShellProfile,
    command: String,
    state: State,
    buf: Vec<u8>,
    prompt: Option<String>,
    echo_pending: bool,
    after_pager: bool,
}

impl ShellDriver {
    pub(crate) fn new(profile: ShellProfile, command: &str) -> Self {
        Self {
            profile,
            command: command.trim().to_owned(),
            state: State::Setup(0),
            buf: Vec::new(),
            prompt: None,
            echo_pending: false,
            after_pager: false,
        }
    }

    /// Whether the command finished.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the command was sent (the first prompt was seen and setup is over).
    pub(crate) fn is_running(&self) -> bool {
        self.state == State::Running
    }

    /// Feeds bytes printed by the device; answers what to do next, in order.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Vec<Step> {
        let mut steps = Vec::new();
        if self.state == State::Done {
            return steps;
        }
        self.buf
            .extend(data.iter().copied().filter(|b| *b != b'\r'));
        if self.after_pager {
            self.strip_erase();
        }
        let mut output = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            if self.state != State::Running {
                continue;
            }
            if self.echo_pending {
                self.echo_pending = false;
                let text = String::from_utf8_lossy(&line);
                if text.trim_end().ends_with(&self.command) {
                    continue;
                }
            }
            output.extend_from_slice(&line);
        }
        if !output.is_empty() {
            steps.push(Step::Output(Bytes::from(output)));
        }
        let tail = String::from_utf8_lossy(&self.buf).into_owned();
        if let Some(m) = self.profile.more.find(&tail) {
            self.buf.truncate(m.start());
            self.after_pager = true;
            steps.push(Step::Send(" ".to_owned()));
            return steps;
        }
        match self.state {
            State::Setup(sent) if self.profile.prompt.is_match(&tail) => {
                self.buf.clear();
                if let Some(setup) = self.profile.setup.get(sent) {
                    steps.push(Step::Send(format!("{setup}{}", self.profile.newline)));
                    self.state = State::Setup(sent + 1);
                } else {
                    self.prompt = Some(tail.trim_end().to_owned());
                    steps.push(Step::Send(format!(
                        "{}{}",
                        self.command, self.profile.newline
                    )));
                    self.state = State::Running;
                    self.echo_pending = true;
                }
            }
            State::Running if self.prompt.as_deref() == Some(tail.trim_end()) => {
                self.buf.clear();
                self.state = State::Done;
                steps.push(Step::Done);
            }
            _ => {}
        }
        steps
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut d = ShellDriver::new(ShellProfile::cisco_ios(), "show version");
        let s = d.feed(b"\r\nWelcome\r\nr1#");
        assert_eq!(s, vec![Step::Send("terminal length 0\n".to_owned())]);
        let s = d.feed(b"terminal length 0\r\nr1#");
        assert_eq!(s, vec![Step::Send("show version\n".to_owned())]);
        assert!(d.is_running());
        let mut all = Vec::new();
        all.extend(d.feed(b"show vers"));
        all.extend(d.feed(b"ion\r\nCisco IOS\r\nup"));
        all.extend(d.feed(b"time 1 day\r\nr1"));
        assert!(!d.is_done());
        all.extend(d.feed(b"#"));
        assert_eq!(outputs(&all), "Cisco IOS\nuptime 1 day\n");
        assert_eq!(all.last(), Some(&Step::Done));
        assert!(d.is_done());
    }

    #[test]
    fn pager_prompts_are_answered_and_erased() {
        let profile = ShellProfile::cisco_ios().with_setup(Vec::<String>::new());
        let mut d = ShellDriver::new(profile, "show run");
        assert_eq!(d.feed(b"r1#"), vec![Step::Send("show run\n".to_owned())]);
        let s = d.feed(b"show run\r\nline 1\r\nline 2\r\n --More-- ");
        assert_eq!(outputs(&s), "line 1\nline 2\n");
        assert_eq!(s.last(), Some(&Step::Send(" ".to_owned())));
        let s = d.feed(b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08         \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08  line 3\r\nr1#");
        assert_eq!(outputs(&s), "  line 3\n");
        assert_eq!(s.last(), Some(&Step::Done));
    }

    #[test]
    fn a_prompt_like_line_inside_output_does_not_end_the_command() {
        let profile = ShellProfile::cisco_ios().with_setup(Vec::<String>::new());
        let mut d = ShellDriver::new(profile, "show x");
        d.feed(b"r1#");
        let s = d.feed(b"show x\r\nother#");
        assert!(!s.contains(&Step::Done));
        let s = d.feed(b"\r\nr1#");
        assert_eq!(outputs(&s), "other#\n");
        assert_eq!(s.last(), Some(&Step::Done));
    }
}
