//! The PostgreSQL backend: many worker processes on many machines share one queue.
//!
//! Claims use `FOR UPDATE SKIP LOCKED`; new jobs wake runners on every node through
//! `LISTEN netauto_jobs` ([`PgBackend::wake_on_new_jobs`]); progress crosses nodes through
//! `LISTEN netauto_progress` ([`PgProgress`]).

mod columns;
mod progress;
mod queue;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use netauto_core::runtime::Wake;
use netauto_core::{ConfigError, Error, Result};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::task::JoinHandle;

pub use progress::{PROGRESS_CHANNEL, PgProgress};

use crate::error::db;
use crate::forward::{job_queue_by_concern, run_store_by_concern};
use crate::migrate::{adopt_legacy, migrate_error};
use crate::sql::DbPools;

/// The embedded migrations (`migrations/postgres`).
static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Advisory lock key serializing migrations across nodes ("netauto" in ASCII).
const MIGRATION_LOCK: i64 = 0x006e_6574_6175_746f;

/// The NOTIFY channel on which new available jobs are announced (payload: the queue).
pub const JOBS_CHANNEL: &str = "netauto_jobs";

/// Default pool size per process.
const POOL_SIZE: u32 = 10;

/// Connections of the separate pool that renews leases.
const LEASE_POOL_SIZE: u32 = 2;

/// The pools of a PostgreSQL database: `writer` (and `reader`, the same pool) for every
/// statement but lease renewals, which go to `lease_writer` (see `PgBackend`).
pub(crate) type PgPools = DbPools<Postgres>;

run_store_by_concern! {
    /// Devices, runs, chunks and bulks in PostgreSQL.
    pub struct PgRunStore(PgPools);
}

impl PgRunStore {
    /// The store on `pool` alone (a store renews no lease).
    fn on(pool: PgPool) -> Self {
        Self {
            db: PgPools {
                reader: pool.clone(),
                lease_writer: pool.clone(),
                writer: pool,
            },
        }
    }
}

job_queue_by_concern! {
    /// The job queue in PostgreSQL. Claims lock rows with `FOR UPDATE SKIP LOCKED`, so any
    /// number of runners on any number of machines share one queue without handing a job to two.
    pub struct PgJobQueue(PgPools);
}

/// A connected PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgBackend {
    /// Its `lease_writer` serves heartbeats only: a busy bulk can hold every connection of
    /// `pool` for seconds, and a heartbeat queued behind it lets the lease lapse, which
    /// stops the job (see `RunnerConfig::lease`).
    db: PgPools,
    progress: PgProgress,
}

/// Creates schema `name` (ASCII letters, digits and `_` only) in the database at `url`, to
/// keep one test's or one tenant's tables apart: connect with
/// `PgConnectOptions::options([("search_path", name)])` and migrate.
pub async fn create_schema(url: &str, name: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Config(ConfigError {
            var: "schema",
            value: name.to_owned(),
            reason: "a schema name is ASCII letters, digits and `_`".to_owned(),
        }));
    }
    let mut conn = <PgConnection as sqlx::Connection>::connect(url)
        .await
        .map_err(db)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(&mut conn)
        .await
        .map_err(db)?;
    sqlx::Connection::close(conn).await.ok();
    Ok(())
}

impl PgBackend {
    /// Connects to `url` (`postgres://user:password@host:port/db?…`) with a pool of 10, plus
    /// 2 connections (opened when first needed) that only renew job leases.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url).map_err(|e| {
            Error::Config(ConfigError {
                var: "DATABASE_URL",
                value: crate::redact(url),
                reason: e.to_string(),
            })
        })?;
        Self::connect_with(opts, POOL_SIZE).await
    }

    /// Connects with explicit options and pool size.
    pub async fn connect_with(opts: PgConnectOptions, pool_size: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .map_err(db)?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool. Leases are renewed on 2 more connections made with the pool's
    /// connect options (opened when first needed; count them against the server's
    /// `max_connections`). Settings the pool applies outside its connect options (an
    /// `after_connect` hook running `SET ROLE`, say) do not reach them: put such settings in
    /// the options (`options([("search_path", …)])`) instead.
    pub fn from_pool(pool: PgPool) -> Self {
        let lease_pool = PgPoolOptions::new()
            .max_connections(LEASE_POOL_SIZE)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with((*pool.connect_options()).clone());
        Self {
            progress: PgProgress::new(pool.clone()),
            db: PgPools {
                reader: pool.clone(),
                writer: pool,
                lease_writer: lease_pool,
            },
        }
    }

    /// Applies the embedded migrations not applied yet, under an advisory lock so that nodes
    /// starting together do not race. A database migrated by an earlier version of netauto
    /// (which recorded its migrations in `netauto_migrations`) is adopted first: only the
    /// migrations it lacks run.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.db.writer.acquire().await.map_err(db)?;
        let migrated = migrate_on(&mut conn).await;
        if migrated.is_err() {
            // The session may still hold the advisory locks (sqlx's migrator does not release
            // its own when a migration fails): closing it releases them.
            conn.close_on_drop();
        }
        migrated
    }

    /// The job queue.
    pub fn queue(&self) -> PgJobQueue {
        PgJobQueue {
            db: self.db.clone(),
        }
    }

    /// The run store.
    pub fn store(&self) -> PgRunStore {
        PgRunStore::on(self.db.writer.clone())
    }

    /// The cross-node progress feed.
    pub fn progress(&self) -> PgProgress {
        self.progress.clone()
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.db.writer
    }

    /// Wakes `waker` (a runner's) whenever any node enqueues an available job. The task
    /// reconnects on its own; abort the handle to stop it.
    pub fn wake_on_new_jobs(&self, waker: Arc<dyn Wake>) -> JoinHandle<()> {
        let pool = self.db.writer.clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "job listener cannot connect; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if listener.listen(JOBS_CHANNEL).await.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                // Jobs may have arrived while not listening.
                waker.wake();
                while listener.recv().await.is_ok() {
                    waker.wake();
                }
            }
        })
    }
}

/// Migrates on one session holding [`MIGRATION_LOCK`], the key the legacy migrator locked:
/// nodes of this version and of earlier ones never migrate at the same time. sqlx's
/// migrator takes its own advisory lock as well.
async fn migrate_on(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
    adopt_legacy::<Postgres>(&mut tx, &MIGRATOR).await?;
    tx.commit().await.map_err(db)?;
    MIGRATOR.run(&mut *conn).await.map_err(migrate_error)?;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}
