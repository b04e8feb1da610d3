//! [`ExecLimits`]: the deadline and output cap every device command runs under, and the
//! per-bulk [`LimitOverrides`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ValidationError};

/// Environment variable of the default command deadline (`NETAUTO_COMMAND_TIMEOUT`).
pub const COMMAND_TIMEOUT_VAR: &str = "NETAUTO_COMMAND_TIMEOUT";
/// Environment variable of the default output cap per run (`NETAUTO_RUN_MAX_OUTPUT`).
pub const RUN_MAX_OUTPUT_VAR: &str = "NETAUTO_RUN_MAX_OUTPUT";
/// Default deadline of a device command: 300 s.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Default output cap of one run: 16 MiB.
pub const DEFAULT_RUN_MAX_OUTPUT: u64 = 16 << 20;
/// Shortest deadline accepted: 100 ms.
pub const MIN_COMMAND_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest deadline accepted: 7 days.
pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);
/// Largest output cap accepted: 64 GiB.
pub const MAX_RUN_MAX_OUTPUT: u64 = 64 << 30;

/// The limits one device command runs under.
///
/// * `timeout`: the deadline of the whole command — connect, authentication, channel open,
///   exec/PTY request and output all count against it. Past it the run ends `timeout` with
///   the output received so far.
/// * `max_output`: the most output bytes kept for one run. At the cap the session is closed,
///   exactly `max_output` bytes are kept and the run is marked `truncated`.
///
/// | variable | default | format |
/// |---|---|---|
/// | `NETAUTO_COMMAND_TIMEOUT` | `300` (seconds) | seconds, or with a unit: `500ms`, `90s`, `5m`, `2h` (100 ms – 7 days) |
/// | `NETAUTO_RUN_MAX_OUTPUT` | `16MiB` | bytes, or with a `KiB`/`MiB`/`GiB` suffix (1 – 64 GiB) |
///
/// ```
/// use std::time::Duration;
/// use netauto_core::ExecLimits;
///
/// let env = |name: &str| match name {
///     "NETAUTO_COMMAND_TIMEOUT" => Some("90s".to_owned()),
///     _ => None,
/// };
/// let limits = ExecLimits::from_lookup(env).unwrap();
/// assert_eq!(limits.timeout, Duration::from_secs(90));
/// assert_eq!(limits.max_output, 16 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// Deadline of the whole command.
    pub timeout: Duration,
    /// Most output bytes kept.
    pub max_output: u64,
}

impl Default for ExecLimits {
    /// 300 s and 16 MiB.
    fn default() -> Self {
        Self {
            timeout: DEFAULT_COMMAND_TIMEOUT,
            max_output: DEFAULT_RUN_MAX_OUTPUT,
        }
    }
}

impl ExecLimits {
    /// The defaults, replaced by `NETAUTO_COMMAND_TIMEOUT` / `NETAUTO_RUN_MAX_OUTPUT` where set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the knobs through `lookup` (a variable name → its value, `None` when unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut limits = Self::default();
        if let Some(v) = lookup(COMMAND_TIMEOUT_VAR) {
            limits.timeout = parse_timeout(&v).map_err(|reason| ConfigError {
                var: COMMAND_TIMEOUT_VAR,
                value: v.clone(),
                reason,
            })?;
        }
        if let Some(v) = lookup(RUN_MAX_OUTPUT_VAR) {
            limits.max_output = parse_max_output(&v).map_err(|reason| ConfigError {
                var: RUN_MAX_OUTPUT_VAR,
                value: v.clone(),
                reason,
            })?;
        }
        Ok(limits)
    }

    /// These limits with `overrides` applied.
    pub fn with_overrides(self, overrides: &LimitOverrides) -> Self {
        Self {
            timeout: overrides.timeout().unwrap_or(self.timeout),
            max_output: overrides.max_output.unwrap_or(self.max_output),
        }
    }
}

/// Per-bulk replacements of the [`ExecLimits`] of the node that runs the bulk; `None` keeps
/// that node's default. Stored with the bulk and in its jobs' args.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOverrides {
    /// Deadline of each device's command, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Output cap of each run, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output: Option<u64>,
    /// Whether the platform's answers may be typed when a device asks a question
    /// (`[confirm]`, `(y/n)`); otherwise such a run ends `failed`, kind `prompt_unanswered`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_prompts: bool,
}

impl LimitOverrides {
    /// No override.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets the deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets the output cap.
    pub fn with_max_output(mut self, bytes: u64) -> Self {
        self.max_output = Some(bytes);
        self
    }

    /// The deadline, if overridden.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    /// Allows answering the platform's prompts.
    pub fn with_answer_prompts(mut self, answer: bool) -> Self {
        self.answer_prompts = answer;
        self
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.timeout_ms.is_none() && self.max_output.is_none() && !self.answer_prompts
    }

    /// Checks the ranges: a deadline from 100 ms to 7 days, a cap from 1 byte to 64 GiB.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(t) = self.timeout()
            && !(MIN_COMMAND_TIMEOUT..=MAX_COMMAND_TIMEOUT).contains(&t)
        {
            return Err(ValidationError::Field {
                field: "timeout",
                reason: format!("{t:?} is out of range (100 ms to 7 days)"),
            });
        }
        if let Some(b) = self.max_output
            && !(1..=MAX_RUN_MAX_OUTPUT).contains(&b)
        {
            return Err(ValidationError::Field {
                field: "max_output",
                reason: format!("{b} bytes is out of range (1 byte to 64 GiB)"),
            });
        }
        Ok(())
    }
}

/// Parses a deadline: plain seconds (`300`, `2.5`) or a number with `ms`, `s`, `m` or `h`.
/// The reason of an error is written for a person.
pub fn parse_timeout(value: &str) -> Result<Duration, String> {
    let reason = || {
        "must be a duration from 100 ms to 7 days: seconds (`300`) or with a unit (`500ms`, `90s`, `5m`, `2h`)"
            .to_owned()
    };
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(reason()),
    };
    let n: f64 = number.parse().map_err(|_| reason())?;
    let secs = n * scale;
    if !secs.is_finite() {
        return Err(reason());
    }
    let d = Duration::try_from_secs_f64(secs).map_err(|_| reason())?;
    if (MIN_COMMAND_TIMEOUT..=MAX_COMMAND_TIMEOUT).contains(&d) {
        Ok(d)
    } else {
        Err(reason())
    }
}

/// Parses an output cap: bytes, or with a `KiB`, `MiB` or `GiB` suffix (1 byte to 64 GiB).
pub fn parse_max_output(value: &str) -> Result<u64, String> {
    let reason = || {
        "must be a number of bytes from 1 to 64 GiB, optionally with a KiB, MiB or GiB suffix"
            .to_owned()
    };
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return Err(reason()),
    };
    match digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
    {
        Some(n) if (1..=MAX_RUN_MAX_OUTPUT).contains(&n) => Ok(n),
        _ => Err(reason()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_unset() {
        assert_eq!(
            ExecLimits::from_lookup(|_| None).unwrap(),
            ExecLimits {
                timeout: Duration::from_secs(300),
                max_output: 16 << 20
            }
        );
    }

    #[test]
    fn timeouts_parse_with_units() {
        for (text, want) in [
            ("300", Duration::from_secs(300)),
            (" 2.5 ", Duration::from_millis(2500)),
            ("500ms", Duration::from_millis(500)),
            ("90s", Duration::from_secs(90)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7200)),
        ] {
            assert_eq!(parse_timeout(text), Ok(want), "{text}");
        }
        for bad in [
            "", "0", "-1", "50ms", "8d", "1e3", "fast", "NaN", "inf", "9999999h",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn caps_parse_with_units() {
        assert_eq!(parse_max_output("16MiB"), Ok(16 << 20));
        assert_eq!(parse_max_output("1"), Ok(1));
        assert_eq!(parse_max_output("64 GiB"), Ok(64 << 30));
        for bad in ["", "0", "65GiB", "1.5MiB", "-3", "12 MB"] {
            assert!(parse_max_output(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = ExecLimits::from_lookup(|n| (n == COMMAND_TIMEOUT_VAR).then(|| "soon".to_owned()))
            .unwrap_err();
        assert_eq!((e.var, e.value.as_str()), (COMMAND_TIMEOUT_VAR, "soon"));
        let e = ExecLimits::from_lookup(|n| (n == RUN_MAX_OUTPUT_VAR).then(|| "0".to_owned()))
            .unwrap_err();
        assert_eq!(e.var, RUN_MAX_OUTPUT_VAR);
    }

    #[test]
    fn overrides_replace_defaults_and_are_checked() {
        let o = LimitOverrides::none().with_timeout(Duration::from_secs(5));
        let l = ExecLimits::default().with_overrides(&o);
        assert_eq!(
            (l.timeout, l.max_output),
            (Duration::from_secs(5), 16 << 20)
        );
        assert!(o.validate().is_ok());
        assert!(
            LimitOverrides::none()
                .with_timeout(Duration::from_millis(1))
                .validate()
                .is_err()
        );
        assert!(
            LimitOverrides::none()
                .with_max_output(0)
                .validate()
                .is_err()
        );
        let json = serde_json::to_string(&LimitOverrides::none()).unwrap();
        assert_eq!(json, "{}");
    }
}
