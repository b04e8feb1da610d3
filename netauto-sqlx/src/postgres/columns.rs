//! How PostgreSQL stores what the shared decoders read: TIMESTAMPTZ, integers of the
//! width each column needs (SMALLINT, INTEGER, BIGINT), JSONB.

use chrono::{DateTime, Utc};
use netauto_core::Result;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgQueryResult, PgRow, Postgres};
use sqlx::types::Json;
use sqlx::{Column, Row, TypeInfo};

use crate::error::{db, json};
use crate::rows::{LooseJson, StoredRow};
use crate::sql::{Dialect, Kind};

impl StoredRow for PgRow {
    fn int(&self, col: &str) -> Result<i64> {
        self.opt_int(col)?.ok_or_else(|| {
            db(sqlx::Error::ColumnDecode {
                index: col.to_owned(),
                source: Box::new(sqlx::error::UnexpectedNullError),
            })
        })
    }

    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        let width = self.try_column(col).map_err(db)?.type_info().name();
        match width {
            "INT2" => self
                .try_get::<Option<i16>, _>(col)
                .map(|v| v.map(i64::from)),
            "INT4" => self
                .try_get::<Option<i32>, _>(col)
                .map(|v| v.map(i64::from)),
            _ => self.try_get::<Option<i64>, _>(col),
        }
        .map_err(db)
    }

    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        self.try_get(col).map_err(db)
    }

    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        self.try_get(col).map_err(db)
    }

    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T> {
        self.try_get::<Json<T>, _>(col).map(|j| j.0).map_err(db)
    }

    fn loose_json(&self, col: &str) -> Result<LooseJson> {
        // JSONB holds JSON only.
        self.json(col).map(Ok)
    }
}

impl Dialect for Postgres {
    type Time = DateTime<Utc>;
    type OptTime = Option<DateTime<Utc>>;
    type Attempt = i32;
    type Id = i64;
    type Text = String;
    type Ids = Vec<i64>;
    type Texts = Vec<String>;
    type Json = Json<serde_json::Value>;

    const KIND: Kind = Kind::Postgres;
    // What `Pool::begin` sends.
    const BEGIN_WRITE: &'static str = "BEGIN";
    const TABLE_EXISTS: &'static str = "SELECT 1 WHERE to_regclass($1) IS NOT NULL";

    fn time(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }

    fn opt_time(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        t
    }

    fn attempt(attempt: u32) -> i32 {
        int(attempt)
    }

    fn ids(ids: &[i64]) -> Vec<i64> {
        ids.to_vec()
    }

    fn texts(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| (*t).to_owned()).collect()
    }

    fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Json<serde_json::Value>> {
        serde_json::to_value(v).map(Json).map_err(json)
    }

    fn stored_range(t: DateTime<Utc>) -> DateTime<Utc> {
        t.max(pg_min())
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

/// A count as an INTEGER column holds it (clamped).
pub(super) fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The earliest timestamp PostgreSQL stores (4713 BC); earlier values are clamped to it.
pub(super) fn pg_min() -> DateTime<Utc> {
    DateTime::from_timestamp(-210_866_803_200, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
