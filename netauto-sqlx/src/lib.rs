//! SQL backends of netauto: SQLite (feature `sqlite`, the embedded default) and PostgreSQL
//! (feature `postgres`, many worker nodes sharing one queue).
//!
//! ```no_run
//! # async fn demo() -> netauto_core::Result<()> {
//! let db = netauto_sqlx::Database::connect("sqlite://netauto.db").await?;
//! db.migrate().await?;
//! let (queue, store) = (db.queue(), db.store());
//! # let _ = (queue, store); Ok(()) }
//! ```
//!
//! Both backends pass the conformance suite of `netauto-core`. Timestamps are stored with
//! microsecond precision.

mod error;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod forward;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod migrate;
#[cfg(feature = "postgres")]
pub mod postgres;
mod redact;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rows;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rules;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod shared;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use redact::redact;

use std::sync::Arc;

use netauto_core::{Error, JobQueue, Result, RunStore};

/// A connected database of either kind.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Database {
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteBackend),
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgBackend),
}

impl Database {
    /// Connects to `url`, choosing the backend by its scheme: `sqlite:` (a file path, or
    /// `sqlite::memory:`) or `postgres:`/`postgresql:`. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self> {
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            #[cfg(feature = "sqlite")]
            "sqlite" => Ok(Self::Sqlite(sqlite::SqliteBackend::connect(url).await?)),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => {
                Ok(Self::Postgres(postgres::PgBackend::connect(url).await?))
            }
            _ => Err(Error::Config(netauto_core::ConfigError {
                var: "DATABASE_URL",
                value: redact(url),
                // Only a scheme-like word is repeated: in a `key=value` connection string
                // the text before the first `:` can hold the password.
                reason: if !scheme.is_empty()
                    && scheme.len() <= 16
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                {
                    format!(
                        "unsupported scheme {scheme:?}; this build supports {}",
                        supported().join(", ")
                    )
                } else {
                    format!(
                        "not a database URL; this build supports {}",
                        supported().join(", ")
                    )
                },
            })),
        }
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(b) => b.migrate().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(b) => b.migrate().await,
        }
    }

    /// The job queue.
    pub fn queue(&self) -> Arc<dyn JobQueue> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(b) => Arc::new(b.queue()),
            #[cfg(feature = "postgres")]
            Self::Postgres(b) => Arc::new(b.queue()),
        }
    }

    /// The progress feed: in-process for SQLite, LISTEN/NOTIFY across nodes for PostgreSQL.
    pub fn progress(&self) -> Arc<dyn netauto_core::ProgressSink> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(b) => Arc::new(b.progress()),
            #[cfg(feature = "postgres")]
            Self::Postgres(b) => Arc::new(b.progress()),
        }
    }

    /// The run store (shares the queue's database).
    pub fn store(&self) -> Arc<dyn RunStore> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(b) => Arc::new(b.store()),
            #[cfg(feature = "postgres")]
            Self::Postgres(b) => Arc::new(b.store()),
        }
    }
}

fn supported() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "sqlite") {
        v.push("sqlite:");
    }
    if cfg!(feature = "postgres") {
        v.push("postgres:");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_value_string_is_refused_without_repeating_its_password() {
        let e = Database::connect("host=db user=ann password=s3cr:et dbname=x")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("s3cr"), "{msg}");
        assert!(msg.contains("not a database URL"), "{msg}");
    }

    #[tokio::test]
    async fn unknown_schemes_are_a_config_error() {
        let e = Database::connect("mysql://u:pw@h/db").await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("DATABASE_URL") && msg.contains("***") && !msg.contains("pw@"),
            "{msg}"
        );
    }
}
