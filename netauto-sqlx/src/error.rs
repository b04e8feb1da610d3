//! Mapping driver errors to netauto's semantic [`Error`].

use netauto_core::{Conflict, Error};
use sqlx::error::ErrorKind;

/// Maps a sqlx error: connection and contention problems are retryable
/// [`Error::Unavailable`], everything else [`Error::Backend`].
pub(crate) fn db(e: sqlx::Error) -> Error {
    let retryable = match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|code| transient_code(&code)),
        _ => false,
    };
    if retryable {
        Error::unavailable(e)
    } else {
        Error::backend(e)
    }
}

/// Whether the error is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == ErrorKind::UniqueViolation)
}

/// Whether the error is a foreign-key violation.
fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == ErrorKind::ForeignKeyViolation)
}

/// Maps an insert's error: a unique-constraint violation is [`Conflict::Exists`] of `what`
/// named `key`.
pub(crate) fn exists_or_db(e: sqlx::Error, what: &'static str, key: impl Into<String>) -> Error {
    if is_unique_violation(&e) {
        Conflict::Exists {
            what,
            key: key.into(),
        }
        .into()
    } else {
        db(e)
    }
}

/// Maps a write's error: a foreign-key violation is `missing()`.
pub(crate) fn missing_or_db(e: sqlx::Error, missing: impl FnOnce() -> Error) -> Error {
    if is_foreign_key_violation(&e) {
        missing()
    } else {
        db(e)
    }
}

/// SQLite BUSY/LOCKED (primary codes 5 and 6, any extended code) and PostgreSQL
/// serialization failures, deadlocks, too many connections, shutdowns, connection errors.
fn transient_code(code: &str) -> bool {
    // PostgreSQL SQLSTATEs first: some are all digits, and no SQLite code collides with them.
    if matches!(
        code,
        "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
    ) || (code.len() == 5 && code.starts_with("08"))
    {
        return true;
    }
    code.len() < 5 && code.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

/// Maps JSON (de)serialization of stored columns (SQLite stores JSON as TEXT) and of
/// JSON values bound.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn json(e: serde_json::Error) -> Error {
    Error::Serialization(e)
}

/// A stored value that does not decode into the domain (corrupt or foreign data).
pub(crate) fn corrupt(what: &str, value: impl std::fmt::Display) -> Error {
    Error::backend(format!("stored {what} {value} is not valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        for c in ["5", "6", "517", "261", "40001", "40P01", "53300", "08006"] {
            assert!(transient_code(c), "{c}");
        }
        for c in ["19", "2067", "23505", "23503", "42P01", "40002"] {
            assert!(!transient_code(c), "{c}");
        }
    }
}
