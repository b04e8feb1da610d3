//! One platform definition: the data read from a TOML file, checked and compiled.

use std::fmt;

use regex_lite::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A regular expression kept with its source text (shown by `Debug`, `Display` and
/// `netauto platforms show`).
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source` (the syntax of the `regex-lite` crate: Perl-like, no look-around).
    pub fn new(source: &str) -> Result<Self, regex_lite::Error> {
        Ok(Self {
            source: source.to_owned(),
            regex: Regex::new(source)?,
        })
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled expression.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// Whether `text` matches anywhere.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Pattern::new(&source)
            .map_err(|e| serde::de::Error::custom(format!("invalid pattern {source:?}: {e}")))
    }
}

/// How commands reach a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// One SSH exec channel per command; the exit status is the device's.
    Exec,
    /// A PTY and an interactive shell: wait for the prompt, type the command, read to the
    /// next prompt.
    Shell,
}

impl Transport {
    /// `exec` or `shell`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Shell => "shell",
        }
    }
}

/// Prompt patterns per privilege level, matched against the last, unterminated line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompts {
    /// Unprivileged (`r1>`); needed when the platform has an escalation.
    #[serde(default)]
    pub user: Option<Pattern>,
    /// Privileged, where commands run (`r1#`).
    pub privileged: Pattern,
    /// Configuration mode (`r1(config)#`), if the platform has one.
    #[serde(default)]
    pub config: Option<Pattern>,
}

/// Going from the user prompt to the privileged one (`enable`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Typed at the user prompt (`enable`).
    pub command: String,
    /// The device asking for the secret (`Password:`); answered with the credential's enable
    /// secret, or its password when it has none.
    pub password_prompt: Pattern,
}

/// A question the device may ask while a command runs, and the reply. Replies are typed only
/// when the bulk allows it; otherwise the run ends `failed` with kind `prompt_unanswered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// Matches the question at the end of the output (`\[confirm\]\s*$`).
    pub pattern: Pattern,
    /// Typed as the reply (the line ending is added; empty means just the line ending).
    pub reply: String,
}

/// PTY settings of shell platforms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terminal {
    /// Terminal type.
    #[serde(default = "default_term")]
    pub term: String,
    /// Width in columns (wide, so devices do not wrap long lines).
    #[serde(default = "default_width")]
    pub width: u32,
    /// Height in rows.
    #[serde(default = "default_height")]
    pub height: u32,
}

impl Default for Terminal {
    fn default() -> Self {
        Self {
            term: default_term(),
            width: default_width(),
            height: default_height(),
        }
    }
}

fn default_term() -> String {
    "vt100".to_owned()
}
fn default_width() -> u32 {
    511
}
fn default_height() -> u32 {
    24
}
fn default_line_ending() -> String {
    "\n".to_owned()
}
fn default_paging_reply() -> String {
    " ".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_prompt_timeout() -> u64 {
    20
}

/// How a real device of the platform behaves, as the simulator plays it and the platform
/// conformance suite checks it: texts copied from the vendor's documentation. `{name}` in a
/// prompt stands for the device's host name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    /// The user-level prompt (`{name}>`); the device starts there when set.
    #[serde(default)]
    pub user_prompt: Option<String>,
    /// The privileged prompt (`{name}#`).
    pub privileged_prompt: String,
    /// Printed when asking for the escalation secret (`Password: `).
    #[serde(default)]
    pub password_prompt: Option<String>,
    /// Printed at a page break (` --More-- `); the device does not page when unset.
    #[serde(default)]
    pub pager: Option<String>,
    /// Commands that turn paging off for the session (`terminal length 0`).
    #[serde(default)]
    pub paging_off: Vec<String>,
    /// What the device prints for a command it does not know.
    pub rejected: String,
    /// Exit status of a rejected command (exec platforms).
    #[serde(default)]
    pub rejected_exit: u32,
    /// Whether the error text goes to stderr (exec platforms).
    #[serde(default)]
    pub rejected_on_stderr: bool,
    /// A command that asks for confirmation (`reload`).
    #[serde(default)]
    pub confirm_command: Option<String>,
    /// The question it asks (`Proceed with reload? [confirm]`).
    #[serde(default)]
    pub confirm_prompt: Option<String>,
}

/// A platform: how commands run on a kind of device and how its output reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// Name stored on devices (`cisco_ios`): lowercase letters, digits and `_`.
    pub name: String,
    /// Other names accepted for it (`ios`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Vendor and product, for people (`Cisco IOS`).
    pub description: String,
    /// Exec channel or interactive shell.
    pub transport: Transport,
    /// Prompt patterns (shell platforms).
    #[serde(default)]
    pub prompts: Option<Prompts>,
    /// Privilege escalation (shell platforms).
    #[serde(default)]
    pub escalation: Option<Escalation>,
    /// Commands run after login, each awaited to the prompt (`terminal length 0`).
    #[serde(default)]
    pub after_login: Vec<String>,
    /// Typed when the command is done, before the session closes (`exit`).
    #[serde(default)]
    pub exit_command: Option<String>,
    /// Pager prompts at the end of output (`--More--`), answered with [`Self::paging_reply`].
    #[serde(default)]
    pub paging: Vec<Pattern>,
    /// The key that shows the next page.
    #[serde(default = "default_paging_reply")]
    pub paging_reply: String,
    /// An output line matching one of these means the device rejected the command: the run
    /// is `failed` with kind `command_rejected`.
    #[serde(default)]
    pub failures: Vec<Pattern>,
    /// Questions and their replies (used only when the bulk allows answering prompts).
    #[serde(default)]
    pub answers: Vec<Answer>,
    /// Sent after every command.
    #[serde(default = "default_line_ending")]
    pub line_ending: String,
    /// Whether ANSI escape sequences (colours, cursor moves) are removed from output.
    #[serde(default = "default_true")]
    pub strip_ansi: bool,
    /// Lines that change between two runs of the same command without meaning a change
    /// (uptime, clock, counters' timestamps): ignored by diffs.
    #[serde(default)]
    pub volatile: Vec<Pattern>,
    /// Secrets in output (`snmp-server community (\S+)`): every capture group is replaced by
    /// `<redacted>` when the server redacts secrets.
    #[serde(default)]
    pub secrets: Vec<Pattern>,
    /// PTY settings (shell platforms).
    #[serde(default)]
    pub terminal: Terminal,
    /// Longest wait for the first prompt after login, in seconds (shell platforms).
    #[serde(default = "default_prompt_timeout")]
    pub prompt_timeout_secs: u64,
    /// How a real device behaves (the simulator and the platform suite).
    pub persona: Persona,
}

/// What is wrong with a definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform definition {origin}: {message}")]
pub struct DefinitionError {
    /// Where it came from (`builtin cisco_ios.toml`, a file path).
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

impl Platform {
    /// Reads and checks a definition from TOML text; `origin` names it in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<Self, DefinitionError> {
        let platform: Platform = toml::from_str(text).map_err(|e| DefinitionError {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        platform.check().map_err(|message| DefinitionError {
            origin: origin.to_owned(),
            message,
        })?;
        Ok(platform)
    }

    /// The definition as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot show: {e}\n"))
    }

    fn check(&self) -> Result<(), String> {
        for name in std::iter::once(&self.name).chain(&self.aliases) {
            if !valid_name(name) {
                return Err(format!(
                    "name {name:?} must be 1-64 lowercase letters, digits or '_', starting with a letter"
                ));
            }
        }
        match (self.transport, &self.prompts) {
            (Transport::Shell, None) => {
                return Err("a shell platform needs [prompts] with at least `privileged`".into());
            }
            (Transport::Exec, _) if self.escalation.is_some() || !self.after_login.is_empty() => {
                return Err("escalation and after_login need transport = \"shell\"".into());
            }
            _ => {}
        }
        if self.escalation.is_some() && self.prompts.as_ref().is_none_or(|p| p.user.is_none()) {
            return Err("an escalation needs a `user` prompt to escalate from".into());
        }
        if self.line_ending.is_empty() || self.line_ending.chars().any(|c| c != '\r' && c != '\n') {
            return Err(format!(
                "line_ending {:?} must be \\n, \\r or \\r\\n",
                self.line_ending
            ));
        }
        if let Some(p) = self.secrets.iter().find(|p| p.regex().captures_len() < 2) {
            return Err(format!(
                "secret pattern {:?} has no capture group: put the secret in ( )",
                p.as_str()
            ));
        }
        if self.transport == Transport::Shell && self.prompt_timeout_secs == 0 {
            return Err("prompt_timeout_secs must be at least 1".into());
        }
        Ok(())
    }

    /// Checks that the persona agrees with the patterns: its prompts match the prompt
    /// patterns, its pager the paging patterns, its error text a failure pattern (exec
    /// platforms may rely on the exit status instead), its confirm question an answer, its
    /// password prompt the escalation's, and its paging-off commands are run after login.
    pub fn check_persona(&self) -> Result<(), String> {
        let persona = &self.persona;
        let name = "sw-01.lab";
        let prompt = |p: &str| p.replace("{name}", name);
        if let Some(prompts) = &self.prompts {
            let privileged = prompt(&persona.privileged_prompt);
            if !prompts.privileged.is_match(&privileged) {
                return Err(format!(
                    "privileged prompt pattern {} does not match the persona's {privileged:?}",
                    prompts.privileged
                ));
            }
            match (&prompts.user, &persona.user_prompt) {
                (Some(pattern), Some(user)) => {
                    let user = prompt(user);
                    if !pattern.is_match(&user) || prompts.privileged.is_match(&user) {
                        return Err(format!(
                            "user prompt pattern {pattern} must match {user:?} and the privileged one must not"
                        ));
                    }
                }
                (None, Some(_)) => {
                    return Err("the persona has a user prompt, the prompts no `user`".into());
                }
                _ => {}
            }
        }
        if let (Some(esc), Some(_)) = (&self.escalation, &persona.user_prompt) {
            let asked = persona.password_prompt.as_deref().unwrap_or_default();
            if !esc.password_prompt.is_match(asked) {
                return Err(format!(
                    "escalation password_prompt {} does not match the persona's {asked:?}",
                    esc.password_prompt
                ));
            }
        }
        if let Some(pager) = &persona.pager
            && !self.paging.iter().any(|p| p.is_match(pager))
        {
            return Err(format!(
                "no paging pattern matches the persona's pager {pager:?}"
            ));
        }
        for off in &persona.paging_off {
            if !self.after_login.contains(off) {
                return Err(format!("paging-off command {off:?} is not in after_login"));
            }
        }
        let rejected_by_pattern = persona
            .rejected
            .replace("{command}", "show nonexistent")
            .lines()
            .any(|l| self.failure_in(l).is_some());
        let rejected_by_exit = self.transport == Transport::Exec && persona.rejected_exit != 0;
        if !rejected_by_pattern && !rejected_by_exit {
            return Err(format!(
                "no failure pattern matches a line of the persona's error text {:?}",
                persona.rejected
            ));
        }
        match (&persona.confirm_command, &persona.confirm_prompt) {
            (Some(_), Some(question)) => {
                if self.answer_for(question).is_none() {
                    return Err(format!(
                        "no answer pattern matches the persona's {question:?}"
                    ));
                }
            }
            (None, None) => {}
            _ => return Err("confirm_command and confirm_prompt go together".into()),
        }
        Ok(())
    }

    /// Every name the platform answers to: its name, then its aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }

    /// The first failure pattern `line` matches.
    pub fn failure_in(&self, line: &str) -> Option<&Pattern> {
        self.failures.iter().find(|p| p.is_match(line))
    }

    /// The answer whose pattern matches the end of `tail`.
    pub fn answer_for(&self, tail: &str) -> Option<&Answer> {
        self.answers.iter().find(|a| a.pattern.is_match(tail))
    }

    /// Whether `line` is volatile (ignored by diffs).
    pub fn is_volatile(&self, line: &str) -> bool {
        self.volatile.iter().any(|p| p.is_match(line))
    }

    /// `line` with every secret replaced by `<redacted>`; `None` when it holds none.
    pub fn redact(&self, line: &str) -> Option<String> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for pattern in &self.secrets {
            for caps in pattern.regex().captures_iter(line) {
                spans.extend(caps.iter().skip(1).flatten().map(|m| (m.start(), m.end())));
            }
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(line.len());
        let mut at = 0;
        for (start, end) in spans {
            if start < at {
                at = at.max(end);
                continue;
            }
            out.push_str(&line[at..start]);
            out.push_str(REDACTED);
            at = end;
        }
        out.push_str(&line[at..]);
        Some(out)
    }
}

/// What replaces a secret in redacted output.
pub const REDACTED: &str = "<redacted>";

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
