//! Timestamps as stored by SQLite: INTEGER microseconds since the Unix epoch, UTC.

use chrono::{DateTime, Utc};

/// Microseconds since the epoch (sub-microsecond precision is dropped, as PostgreSQL does).
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Back from microseconds.
pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Optional form.
pub(crate) fn opt_from_micros(us: Option<i64>) -> Option<DateTime<Utc>> {
    us.map(from_micros)
}
