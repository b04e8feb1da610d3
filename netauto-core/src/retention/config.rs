//! [`RetentionConfig`]: the retention knobs, read from the environment.

use super::RetentionPolicy;
use crate::error::ConfigError;
use crate::runtime::cron::NICKNAMES;

/// Default `NET_AUTO_RUN_MAX_DAYS`.
pub const DEFAULT_MAX_DAYS: u32 = 30;
/// Default `NET_AUTO_RUN_MAX_BYTES` (1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1_073_741_824;
/// Default `NET_AUTO_RETENTION_CRON`.
pub const DEFAULT_RETENTION_CRON: &str = "@daily";

/// Upper bound of `NET_AUTO_RUN_MAX_DAYS` (100 years).
const MAX_DAYS_LIMIT: u32 = 36_500;

const VAR_DAYS: &str = "NET_AUTO_RUN_MAX_DAYS";
const VAR_BYTES: &str = "NET_AUTO_RUN_MAX_BYTES";
const VAR_CRON: &str = "NET_AUTO_RETENTION_CRON";

/// The retention knobs.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `NET_AUTO_RUN_MAX_DAYS` | `30` | runs older than this many days are deleted (1–36500) |
/// | `NET_AUTO_RUN_MAX_BYTES` | `1073741824` | per-device byte cap; a plain number or with a `KiB`/`MiB`/`GiB`/`TiB` suffix |
/// | `NET_AUTO_RETENTION_CRON` | `@daily` | when the purge runs: a nickname or 5 cron fields, UTC |
///
/// An unset variable takes its default; a set one that cannot be used is an error naming
/// the variable and the value — never a silent default.
///
/// ```
/// use netauto_core::retention::RetentionConfig;
///
/// let env = |name: &str| match name {
///     "NET_AUTO_RUN_MAX_DAYS" => Some("7".to_string()),
///     "NET_AUTO_RUN_MAX_BYTES" => Some("512MiB".to_string()),
///     _ => None,
/// };
/// let config = RetentionConfig::from_lookup(env).unwrap();
/// assert_eq!(config.max_days(), 7);
/// assert_eq!(config.max_bytes(), 512 * 1024 * 1024);
/// assert_eq!(config.cron(), "@daily");
///
/// let bad = RetentionConfig::from_lookup(|n| (n == "NET_AUTO_RUN_MAX_DAYS").then(|| "-3".into()));
/// assert_eq!(
///     bad.unwrap_err().to_string(),
///     "invalid NET_AUTO_RUN_MAX_DAYS=\"-3\": must be a whole number of days from 1 to 36500"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    max_days: u32,
    max_bytes: u64,
    cron: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_days: DEFAULT_MAX_DAYS,
            max_bytes: DEFAULT_MAX_BYTES,
            cron: DEFAULT_RETENTION_CRON.to_owned(),
        }
    }
}

impl RetentionConfig {
    /// Reads the knobs from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the knobs through `lookup` (a variable name → its value, `None` when unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(v) = lookup(VAR_DAYS) {
            config.max_days = parse_days(VAR_DAYS, &v)?;
        }
        if let Some(v) = lookup(VAR_BYTES) {
            config.max_bytes = parse_bytes(VAR_BYTES, &v)?;
        }
        if let Some(v) = lookup(VAR_CRON) {
            config.cron = check_cron(VAR_CRON, &v)?;
        }
        Ok(config)
    }

    /// Sets the maximum age in days (checked by [`build`](Self::build)).
    pub fn with_max_days(mut self, days: u32) -> Self {
        self.max_days = days;
        self
    }

    /// Sets the per-device byte cap (checked by [`build`](Self::build)).
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets the cron expression (checked by [`build`](Self::build)).
    pub fn with_cron(mut self, cron: impl Into<String>) -> Self {
        self.cron = cron.into();
        self
    }

    /// Checks values set with the `with_*` setters.
    pub fn build(self) -> Result<Self, ConfigError> {
        parse_days(VAR_DAYS, &self.max_days.to_string())?;
        parse_bytes(VAR_BYTES, &self.max_bytes.to_string())?;
        let cron = check_cron(VAR_CRON, &self.cron)?;
        Ok(Self { cron, ..self })
    }

    /// Maximum age of a run, in days.
    pub fn max_days(&self) -> u32 {
        self.max_days
    }

    /// Per-device byte cap.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The cron expression of the purge schedule.
    pub fn cron(&self) -> &str {
        &self.cron
    }

    /// The policy the planner applies.
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy::new(self.max_days, self.max_bytes)
    }
}

fn err(var: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_days(var: &'static str, value: &str) -> Result<u32, ConfigError> {
    let reason = "must be a whole number of days from 1 to 36500";
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(var, value, reason));
    }
    match v.parse::<u32>() {
        Ok(days) if (1..=MAX_DAYS_LIMIT).contains(&days) => Ok(days),
        _ => Err(err(var, value, reason)),
    }
}

fn parse_bytes(var: &'static str, value: &str) -> Result<u64, ConfigError> {
    let reason = "must be a positive number of bytes that fits in 64 bits, optionally with a KiB, MiB, GiB or TiB suffix";
    let v = value.trim();
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, suffix) = v.split_at(digits_end);
    let unit: u64 = match suffix.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(err(var, value, reason)),
    };
    if digits.is_empty() {
        return Err(err(var, value, reason));
    }
    match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)) {
        Some(0) | None => Err(err(var, value, reason)),
        Some(n) => Ok(n),
    }
}

/// Structural check of a cron expression: a nickname, or five fields of digits, names,
/// `*`, `,`, `-` and `/`.
fn check_cron(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    if v.starts_with('@') {
        return if NICKNAMES.contains(&v) {
            Ok(v.to_owned())
        } else {
            Err(err(
                var,
                value,
                format!("unknown nickname; use one of {}", NICKNAMES.join(" ")),
            ))
        };
    }
    let fields: Vec<&str> = v.split_whitespace().collect();
    let field_ok = |f: &&str| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || "*,-/".contains(c))
    };
    if fields.len() != 5 || !fields.iter().all(field_ok) {
        return Err(err(
            var,
            value,
            "must be a nickname (@daily, …) or 5 fields: minute hour day-of-month month day-of-week",
        ));
    }
    let expr = fields.join(" ");
    // The shape check alone let through expressions the scheduler rejects (`* , , * -`):
    // parse here, so a bad value fails where it is read, naming the variable.
    crate::runtime::cron::CronSchedule::parse_setting(var, &expr)
        .map_err(|e| err(var, value, e.reason))?;
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(var: &'static str, value: &str) -> Result<RetentionConfig, ConfigError> {
        let value = value.to_owned();
        RetentionConfig::from_lookup(move |n| (n == var).then(|| value.clone()))
    }

    #[test]
    fn defaults_when_unset() {
        let c = RetentionConfig::from_lookup(|_| None).unwrap();
        assert_eq!(
            (c.max_days(), c.max_bytes(), c.cron()),
            (30, 1_073_741_824, "@daily")
        );
        assert_eq!(c, RetentionConfig::default());
        assert_eq!(c.policy(), RetentionPolicy::new(30, 1_073_741_824));
    }

    #[test]
    fn good_values_parse() {
        assert_eq!(with(VAR_DAYS, " 7 ").unwrap().max_days(), 7);
        assert_eq!(with(VAR_DAYS, "36500").unwrap().max_days(), 36_500);
        assert_eq!(with(VAR_BYTES, "1").unwrap().max_bytes(), 1);
        assert_eq!(with(VAR_BYTES, "2GiB").unwrap().max_bytes(), 2 << 30);
        assert_eq!(with(VAR_BYTES, "3 MiB").unwrap().max_bytes(), 3 << 20);
        assert_eq!(
            with(VAR_BYTES, "18446744073709551615").unwrap().max_bytes(),
            u64::MAX
        );
        assert_eq!(with(VAR_CRON, "@hourly").unwrap().cron(), "@hourly");
        assert_eq!(
            with(VAR_CRON, " 0  3 * * 1-5 ").unwrap().cron(),
            "0 3 * * 1-5"
        );
    }

    #[test]
    fn bad_days_name_the_variable_and_value() {
        for bad in [
            "",
            "abc",
            "-1",
            "0",
            "1.5",
            "36501",
            "99999999999999999999",
            "+3",
            "7d",
        ] {
            let e = with(VAR_DAYS, bad).unwrap_err();
            assert_eq!(e.var, VAR_DAYS, "{bad:?}");
            assert_eq!(e.value, bad);
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid NET_AUTO_RUN_MAX_DAYS={bad:?}"))
            );
        }
    }

    #[test]
    fn bad_bytes_name_the_variable_and_value() {
        for bad in [
            "",
            "x",
            "-5",
            "0",
            "0GiB",
            "1.5GiB",
            "18446744073709551616",
            "17179869184GiB",
            "5 GB",
            "GiB",
        ] {
            let e = with(VAR_BYTES, bad).unwrap_err();
            assert_eq!((e.var, e.value.as_str()), (VAR_BYTES, bad), "{bad:?}");
        }
    }

    #[test]
    fn bad_cron_names_the_variable_and_value() {
        for bad in [
            "",
            "@sometimes",
            "* * * *",
            "* * * * * *",
            "0 3 * * mon;rm",
            "daily",
            "* , , * -",
            "61 * * * *",
        ] {
            let e = with(VAR_CRON, bad).unwrap_err();
            assert_eq!((e.var, e.value.as_str()), (VAR_CRON, bad), "{bad:?}");
        }
    }

    #[test]
    fn setters_are_checked_by_build() {
        assert!(RetentionConfig::default().with_max_days(0).build().is_err());
        assert!(
            RetentionConfig::default()
                .with_max_bytes(0)
                .build()
                .is_err()
        );
        assert!(
            RetentionConfig::default()
                .with_cron("nope")
                .build()
                .is_err()
        );
        let ok = RetentionConfig::default()
            .with_max_days(2)
            .with_cron("@weekly")
            .build()
            .unwrap();
        assert_eq!((ok.max_days(), ok.cron()), (2, "@weekly"));
    }
}
