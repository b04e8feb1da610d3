//! Cron schedules (5 fields or a nickname, UTC) and the entries the runner enqueues from them.
//!
//! Each fire is enqueued with the unique key `cron:<worker>:<slot>`, so any number of runners
//! insert exactly one job per slot without electing a leader.

use chrono::{DateTime, SecondsFormat, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::{ConfigError, Error};
use crate::model::job::NewJob;
use crate::runtime::Worker;

/// The nicknames accepted besides 5-field expressions.
pub const NICKNAMES: [&str; 7] = [
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

/// A parsed cron schedule, evaluated in UTC with minute resolution.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use netauto_core::runtime::CronSchedule;
///
/// let daily = CronSchedule::parse("@daily").unwrap();
/// let t = Utc.with_ymd_and_hms(2026, 11, 25, 13, 5, 0).unwrap();
/// assert_eq!(daily.latest_at_or_before(t), Some(Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()));
/// assert_eq!(daily.next_after(t), Some(Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()));
/// assert!(CronSchedule::parse("*/5 * * *").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    cron: Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl CronSchedule {
    /// Parses `expr`; an error names the setting as `cron`.
    pub fn parse(expr: &str) -> Result<Self, ConfigError> {
        Self::parse_setting("cron", expr)
    }

    /// Parses `expr` taken from the setting `var` (e.g. `NET_AUTO_RETENTION_CRON`), whose name
    /// an error carries.
    pub fn parse_setting(var: &'static str, expr: &str) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError {
            var,
            value: expr.to_owned(),
            reason,
        };
        let trimmed = expr.trim();
        let normalized = if trimmed.starts_with('@') {
            let lower = trimmed.to_ascii_lowercase();
            if !NICKNAMES.contains(&lower.as_str()) {
                return Err(err(format!(
                    "unknown nickname; use one of {}",
                    NICKNAMES.join(" ")
                )));
            }
            if lower == "@midnight" {
                "@daily".to_owned()
            } else {
                lower
            }
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
                    fields.len()
                )));
            }
            fields.join(" ")
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(&normalized).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            expr: normalized,
            cron,
        })
    }

    /// The normalized expression.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The last fire at or before `t` (the slot `t` belongs to).
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&t, true).ok()
    }
}

/// A worker to enqueue on a schedule.
#[derive(Debug, Clone)]
pub struct CronEntry {
    schedule: CronSchedule,
    job: NewJob,
}

impl CronEntry {
    /// An entry enqueueing `W` with `args` on `schedule` (on `W`'s queue).
    pub fn new<W: Worker>(schedule: CronSchedule, args: &W::Args) -> Result<Self, Error> {
        Ok(Self {
            schedule,
            job: W::new_job(args)?,
        })
    }

    /// The schedule.
    pub fn schedule(&self) -> &CronSchedule {
        &self.schedule
    }

    /// The worker name.
    pub fn worker(&self) -> &str {
        &self.job.worker
    }

    /// The job for one slot: unique key `cron:<worker>:<slot RFC 3339>`.
    pub fn job_for_slot(&self, slot: DateTime<Utc>) -> NewJob {
        let key = format!(
            "cron:{}:{}",
            self.job.worker,
            slot.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        self.job.clone().with_unique_key(key)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    #[test]
    fn nicknames_and_fields() {
        for (expr, at, expected) in [
            ("@hourly", t(25, 13, 5), t(25, 13, 0)),
            ("@midnight", t(25, 13, 5), t(25, 0, 0)),
            ("@daily", t(25, 0, 0), t(25, 0, 0)),
            ("@weekly", t(25, 13, 5), t(22, 0, 0)),
            ("@monthly", t(25, 13, 5), t(1, 0, 0)),
            (
                "@yearly",
                t(25, 13, 5),
                Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            ),
            (
                "@ANNUALLY",
                t(25, 13, 5),
                Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            ),
            ("*/15 * * * *", t(25, 13, 5), t(25, 13, 0)),
            ("30 2 * * mon-fri", t(25, 13, 5), t(25, 2, 30)),
        ] {
            let s = CronSchedule::parse(expr).unwrap();
            assert_eq!(s.latest_at_or_before(at), Some(expected), "{expr}");
            assert!(s.next_after(at).unwrap() > at, "{expr}");
        }
    }

    #[test]
    fn bad_expressions_name_the_setting() {
        for bad in [
            "",
            "@sometimes",
            "* * * *",
            "0 * * * * *",
            "61 * * * *",
            "* 25 * * *",
            "x y z a b",
            "@reboot",
        ] {
            let e = CronSchedule::parse_setting("NET_AUTO_RETENTION_CRON", bad).unwrap_err();
            assert_eq!((e.var, e.value.as_str()), ("NET_AUTO_RETENTION_CRON", bad));
        }
    }
}
