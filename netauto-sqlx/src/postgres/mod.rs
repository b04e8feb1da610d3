//! The PostgreSQL backend: many worker processes on many machines share one queue.
//!
//! Claims use `FOR UPDATE SKIP LOCKED`; new jobs wake runners on every node through
//! `LISTEN netauto_jobs` ([`PgBackend::wake_on_new_jobs`]); progress crosses nodes through
//! `LISTEN netauto_progress` ([`PgProgress`]).

mod progress;
mod queue;
mod store;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use netauto_core::runtime::Wake;
use netauto_core::{ConfigError, Error, Result};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::task::JoinHandle;

pub use progress::{PROGRESS_CHANNEL, PgProgress};
pub use queue::PgJobQueue;
pub use store::PgRunStore;

use crate::error::db;

/// The embedded migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "limits_cancel",
        include_str!("../../migrations/postgres/0002_limits_cancel.sql"),
    ),
];

/// Advisory lock key serializing migrations across nodes ("netauto" in ASCII).
const MIGRATION_LOCK: i64 = 0x006e_6574_6175_746f;

/// The NOTIFY channel on which new available jobs are announced (payload: the queue).
pub const JOBS_CHANNEL: &str = "netauto_jobs";

/// Default pool size per process.
const POOL_SIZE: u32 = 10;

/// Connections of the separate pool that renews leases.
const LEASE_POOL_SIZE: u32 = 2;

/// A connected PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgBackend {
    pool: PgPool,
    /// Heartbeats only: a busy bulk can hold every connection of `pool` for seconds, and a
    /// heartbeat queued behind it lets the lease lapse, which stops the job (see
    /// `RunnerConfig::lease`).
    lease_pool: PgPool,
    progress: PgProgress,
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
            lease_pool,
            pool,
        }
    }

    /// Applies the embedded migrations not applied yet, under an advisory lock so that nodes
    /// starting together do not race.
    pub async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS netauto_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for (version, name, sql) in MIGRATIONS {
            let done = sqlx::query("SELECT 1 FROM netauto_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if done.is_none() {
                sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(db)?;
                sqlx::query("INSERT INTO netauto_migrations (version, name) VALUES ($1, $2)")
                    .bind(version)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tracing::info!(version, name, "applied PostgreSQL migration");
            }
        }
        tx.commit().await.map_err(db)
    }

    /// The job queue.
    pub fn queue(&self) -> PgJobQueue {
        PgJobQueue {
            pool: self.pool.clone(),
            lease_pool: self.lease_pool.clone(),
        }
    }

    /// The run store.
    pub fn store(&self) -> PgRunStore {
        PgRunStore {
            pool: self.pool.clone(),
        }
    }

    /// The cross-node progress feed.
    pub fn progress(&self) -> PgProgress {
        self.progress.clone()
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Wakes `waker` (a runner's) whenever any node enqueues an available job. The task
    /// reconnects on its own; abort the handle to stop it.
    pub fn wake_on_new_jobs(&self, waker: Arc<dyn Wake>) -> JoinHandle<()> {
        let pool = self.pool.clone();
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
