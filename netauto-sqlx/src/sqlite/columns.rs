//! How SQLite stores what the shared decoders read: timestamps as INTEGER microseconds
//! since the Unix epoch (UTC), every integer as a 64-bit INTEGER, JSON as TEXT.

use chrono::{DateTime, Utc};
use netauto_core::Result;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::sqlite::{Sqlite, SqliteQueryResult, SqliteRow};

use crate::error::{db, json};
use crate::rows::{Columns, LooseJson, StoredRow};
use crate::sql::{Dialect, Kind};

/// Microseconds since the epoch (sub-microsecond precision is dropped, as PostgreSQL does).
pub(super) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Back from microseconds.
pub(super) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl StoredRow for SqliteRow {
    fn int(&self, col: &str) -> Result<i64> {
        self.try_get(col).map_err(db)
    }

    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(db)
    }

    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        self.int(col).map(from_micros)
    }

    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.opt_int(col)?.map(from_micros))
    }

    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T> {
        serde_json::from_str(&self.text(col)?).map_err(json)
    }

    fn loose_json(&self, col: &str) -> Result<LooseJson> {
        let raw = self.text(col)?;
        Ok(serde_json::from_str(&raw).map_err(|e| (raw, e)))
    }
}

impl Dialect for Sqlite {
    type Time = i64;
    type OptTime = Option<i64>;
    type Attempt = i64;
    type Id = i64;
    type Text = String;
    type Ids = String;
    type Texts = String;
    type Json = String;

    const KIND: Kind = Kind::Sqlite;
    // SQLite's write lock at once: a write transaction never fails half-way on a lock
    // upgrade.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const TABLE_EXISTS: &'static str =
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?";

    fn time(t: DateTime<Utc>) -> i64 {
        to_micros(t)
    }

    fn opt_time(t: Option<DateTime<Utc>>) -> Option<i64> {
        t.map(to_micros)
    }

    fn attempt(attempt: u32) -> i64 {
        i64::from(attempt)
    }

    fn ids(ids: &[i64]) -> String {
        serde_json::Value::from(ids).to_string()
    }

    fn texts(texts: &[&str]) -> String {
        serde_json::Value::from(texts).to_string()
    }

    fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
        serde_json::to_string(v).map_err(json)
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}
