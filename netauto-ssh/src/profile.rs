//! Platform profiles: how a command is run on a kind of device.
//!
//! A profile is data, not code: `exec` platforms run the command on an SSH exec channel;
//! `shell` platforms (Cisco IOS and friends) get a PTY and an interactive shell, where the
//! client waits for the prompt, disables paging, types the command, answers `--More--`, and
//! strips the echoed command and the final prompt from the output.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use regex_lite::Regex;

/// How commands reach the device.
#[derive(Debug, Clone)]
pub enum ProfileMode {
    /// One SSH exec channel per command (OpenSSH, Arista EOS, Junos, NX-OS…).
    Exec,
    /// An interactive shell on a PTY.
    Shell(Box<ShellProfile>),
}

/// Settings of [`ProfileMode::Shell`].
#[derive(Clone)]
pub struct ShellProfile {
    /// Matches the prompt line (tested against the last, unterminated line of output).
    pub prompt: Regex,
    /// Matches a pager prompt at the end of output (`--More--`); answered with a space.
    pub more: Regex,
    /// Commands sent after the first prompt, each awaited to the next prompt
    /// (`terminal length 0`).
    pub setup: Vec<String>,
    /// Line ending sent after each command.
    pub newline: String,
    /// Sent when the command is done, before the channel is closed.
    pub exit: Option<String>,
    /// Terminal type requested with the PTY.
    pub term: String,
    /// PTY width in columns (wide, so devices do not wrap long lines).
    pub width: u32,
    /// PTY height in rows.
    pub height: u32,
    /// Longest wait for the first prompt after login.
    pub prompt_timeout: Duration,
}

impl fmt::Debug for ShellProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShellProfile")
            .field("prompt", &self.prompt.as_str())
            .field("more", &self.more.as_str())
            .field("setup", &self.setup)
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}

impl ShellProfile {
    /// A Cisco IOS-like shell: prompt `name>` or `name#` (optionally with a `(config…)`
    /// mode), paging disabled with `terminal length 0`, `--More--` answered.
    pub fn cisco_ios() -> Self {
        Self {
            prompt: regex(r"^[A-Za-z0-9._/:@-]+(\([a-z0-9-]+\))?[>#] ?$"),
            more: regex(r"\s*-+ ?\(?[Mm]ore\)? ?-*\s*$"),
            setup: vec!["terminal length 0".to_owned()],
            newline: "\n".to_owned(),
            exit: Some("exit".to_owned()),
            term: "vt100".to_owned(),
            width: 511,
            height: 24,
            prompt_timeout: Duration::from_secs(20),
        }
    }

    /// Replaces the prompt pattern.
    pub fn with_prompt(mut self, pattern: &str) -> Result<Self, regex_lite::Error> {
        self.prompt = Regex::new(pattern)?;
        Ok(self)
    }

    /// Replaces the setup commands.
    pub fn with_setup(mut self, setup: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.setup = setup.into_iter().map(Into::into).collect();
        self
    }
}

fn regex(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(r) => r,
        Err(e) => unreachable!("built-in pattern {pattern:?} is valid: {e}"),
    }
}

/// A named platform profile.
#[derive(Debug, Clone)]
pub struct PlatformProfile {
    /// Platform name as stored on devices (`cisco_ios`).
    pub name: String,
    /// How commands run.
    pub mode: ProfileMode,
}

impl PlatformProfile {
    /// An exec-mode profile.
    pub fn exec(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            mode: ProfileMode::Exec,
        }
    }

    /// A shell-mode profile.
    pub fn shell(name: impl Into<String>, shell: ShellProfile) -> Self {
        Self {
            name: name.into(),
            mode: ProfileMode::Shell(Box::new(shell)),
        }
    }
}

/// Profiles by platform name, with a fallback for unknown platforms.
#[derive(Debug, Clone)]
pub struct Profiles {
    by_name: HashMap<String, PlatformProfile>,
    fallback: PlatformProfile,
}

impl Default for Profiles {
    /// Built in: `linux`, `arista_eos`, `junos`, `cisco_nxos`, `cisco_iosxr` (exec) and
    /// `cisco_ios`, `cisco_iosxe`, `cisco_asa` (shell). Unknown platforms use exec mode.
    fn default() -> Self {
        let mut profiles = Self {
            by_name: HashMap::new(),
            fallback: PlatformProfile::exec("default"),
        };
        for name in ["linux", "arista_eos", "junos", "cisco_nxos", "cisco_iosxr"] {
            profiles.insert(PlatformProfile::exec(name));
        }
        for name in ["cisco_ios", "cisco_iosxe"] {
            profiles.insert(PlatformProfile::shell(name, ShellProfile::cisco_ios()));
        }
        profiles.insert(PlatformProfile::shell(
            "cisco_asa",
            ShellProfile::cisco_ios().with_setup(["terminal pager 0"]),
        ));
        profiles
    }
}

impl Profiles {
    /// Adds or replaces a profile.
    pub fn insert(&mut self, profile: PlatformProfile) {
        self.by_name.insert(profile.name.clone(), profile);
    }

    /// Adds or replaces a profile.
    pub fn with(mut self, profile: PlatformProfile) -> Self {
        self.insert(profile);
        self
    }

    /// Sets the profile of unknown platforms.
    pub fn with_fallback(mut self, profile: PlatformProfile) -> Self {
        self.fallback = profile;
        self
    }

    /// The profile of `platform` (the fallback when unknown).
    pub fn get(&self, platform: &str) -> &PlatformProfile {
        self.by_name.get(platform).unwrap_or(&self.fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ios_patterns_match_prompts_and_pagers() {
        let ios = ShellProfile::cisco_ios();
        for prompt in ["core-sw-01#", "r1>", "r1(config)#", "edge.lab#"] {
            assert!(ios.prompt.is_match(prompt), "{prompt}");
        }
        for line in ["Cisco IOS Software", "interface Gi0/1", ""] {
            assert!(!ios.prompt.is_match(line), "{line}");
        }
        for more in [" --More-- ", "--More--", "output\n --More-- "] {
            assert!(ios.more.is_match(more), "{more}");
        }
        assert!(!ios.more.is_match("more text here"));
    }

    #[test]
    fn unknown_platforms_fall_back_to_exec() {
        let profiles = Profiles::default();
        assert!(matches!(
            profiles.get("cisco_ios").mode,
            ProfileMode::Shell(_)
        ));
        assert!(matches!(profiles.get("vendor_x").mode, ProfileMode::Exec));
    }
}
