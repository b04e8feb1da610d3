//! Connecting to SQLite or PostgreSQL by URL (PostgreSQL optionally in one schema), and a few
//! raw SQL counts the tests assert on.

use std::str::FromStr;
use std::sync::Arc;

use netauto_core::{Error, JobQueue, ProgressSink, Result, RunStore};
use netauto_sqlx::postgres::PgBackend;
use netauto_sqlx::sqlite::SqliteBackend;
use sqlx::postgres::PgConnectOptions;

/// A connected database: its queue, store and progress feed.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// The job queue.
    pub queue: Arc<dyn JobQueue>,
    /// The run store.
    pub store: Arc<dyn RunStore>,
    /// The progress feed (in-process for SQLite, LISTEN/NOTIFY for PostgreSQL).
    pub progress: Arc<dyn ProgressSink>,
    /// The backend itself, for raw SQL.
    pub kind: Kind,
}

/// Which database.
#[derive(Debug, Clone)]
pub enum Kind {
    /// SQLite.
    Sqlite(SqliteBackend),
    /// PostgreSQL.
    Postgres(PgBackend),
}

impl TestDb {
    /// Connects to `url` (`sqlite:` or `postgres:`); on PostgreSQL `schema` is the search path.
    /// Does not migrate.
    pub async fn connect(url: &str, schema: Option<&str>, pool_size: u32) -> Result<Self> {
        if url.starts_with("sqlite:") {
            let b = SqliteBackend::connect(url).await?;
            return Ok(Self {
                queue: Arc::new(b.queue()),
                store: Arc::new(b.store()),
                progress: Arc::new(b.progress()),
                kind: Kind::Sqlite(b),
            });
        }
        let mut opts =
            PgConnectOptions::from_str(url).map_err(|e| Error::backend(e.to_string()))?;
        if let Some(schema) = schema {
            opts = opts.options([("search_path", schema)]);
        }
        let b = PgBackend::connect_with(opts, pool_size).await?;
        Ok(Self {
            queue: Arc::new(b.queue()),
            store: Arc::new(b.store()),
            progress: Arc::new(b.progress()),
            kind: Kind::Postgres(b),
        })
    }

    /// Applies the migrations.
    pub async fn migrate(&self) -> Result<()> {
        match &self.kind {
            Kind::Sqlite(b) => b.migrate().await,
            Kind::Postgres(b) => b.migrate().await,
        }
    }

    /// A single `i64` answered by `sql` (a `count(*)`, say).
    pub async fn scalar(&self, sql: &'static str) -> Result<i64> {
        let r = match &self.kind {
            Kind::Sqlite(b) => sqlx::query_scalar::<_, i64>(sql).fetch_one(b.pool()).await,
            Kind::Postgres(b) => sqlx::query_scalar::<_, i64>(sql).fetch_one(b.pool()).await,
        };
        r.map_err(|e| Error::backend(e.to_string()))
    }

    /// Runs one statement (test setup: inserting malformed rows and the like).
    pub async fn execute(&self, sql: &'static str) -> Result<u64> {
        let r = match &self.kind {
            Kind::Sqlite(b) => sqlx::query(sql)
                .execute(b.pool())
                .await
                .map(|r| r.rows_affected()),
            Kind::Postgres(b) => sqlx::query(sql)
                .execute(b.pool())
                .await
                .map(|r| r.rows_affected()),
        };
        r.map_err(|e| Error::backend(e.to_string()))
    }

    /// Chunks whose run no longer exists (must always be 0: chunks cascade).
    pub async fn orphan_chunks(&self) -> Result<i64> {
        self.scalar(
            "SELECT count(*) FROM run_chunks c LEFT JOIN runs r ON r.id = c.run_id WHERE r.id IS NULL",
        )
        .await
    }

    /// Runs still `running`.
    pub async fn running_runs(&self) -> Result<i64> {
        self.scalar("SELECT count(*) FROM runs WHERE status = 'running'")
            .await
    }

    /// Runs a bulk job closed as interrupted (their worker died mid-command).
    pub async fn interrupted_runs(&self) -> Result<i64> {
        self.scalar("SELECT count(*) FROM runs WHERE error_kind = 'interrupted'")
            .await
    }

    /// Jobs not in a terminal state.
    pub async fn live_jobs(&self) -> Result<i64> {
        self.scalar(
            "SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'discarded', 'cancelled')",
        )
        .await
    }
}
