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
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "sqlite")]
mod time;

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
                reason: format!(
                    "unsupported scheme {scheme:?}; this build supports {}",
                    supported().join(", ")
                ),
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

/// A URL with any password replaced, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://ann:s3cret@db:5432/x"),
            "postgres://ann:***@db:5432/x"
        );
        assert_eq!(redact("postgres://ann@db/x"), "postgres://ann@db/x");
        assert_eq!(redact("sqlite://netauto.db"), "sqlite://netauto.db");
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
