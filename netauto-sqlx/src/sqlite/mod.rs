//! The SQLite backend: the embedded default for one machine.
//!
//! Writes go through one writer connection (SQLite has one writer at a time; queueing them
//! in the pool avoids `SQLITE_BUSY` storms) in `BEGIN IMMEDIATE` transactions; reads use a
//! small pool of WAL readers. `foreign_keys` is verified on at start (chunks and outcomes
//! cascade with their runs and bulks), and the backend refuses to run without it.

mod columns;
mod queue;

use std::str::FromStr;
use std::time::Duration;

use netauto_core::{ConfigError, Error, Result};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite};

use crate::error::db;
use crate::forward::{job_queue_by_concern, run_store_by_concern};
use crate::migrate::{adopt_legacy, migrate_error};
use crate::sql::{DbPools, Pools};

/// The embedded migrations (`migrations/sqlite`).
static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// Readers in the pool of a file database.
const READERS: u32 = 4;

/// The pools: writes (lease renewals too) are serialized on `writer`, in `BEGIN IMMEDIATE`
/// transactions; `reader` serves reads (the same pool for an in-memory database, which
/// lives in one connection).
pub(crate) type Db = DbPools<Sqlite>;

run_store_by_concern! {
    /// Devices, runs, chunks and bulks in SQLite.
    pub struct SqliteRunStore(Db);
}

job_queue_by_concern! {
    /// The job queue in SQLite. Every write runs in a `BEGIN IMMEDIATE` transaction on the one
    /// writer connection, so claims are exclusive and unique keys race-free.
    pub struct SqliteJobQueue(Db);
}

/// A connected SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    db: Db,
    progress: netauto_core::LocalProgressHub,
}

impl SqliteBackend {
    /// Opens (creating if missing) the database at `url`: `sqlite://path/to/file.db`,
    /// `sqlite:relative.db`, or `sqlite::memory:` for a private in-memory database.
    ///
    /// On Unix a database file this creates has mode `0600`, and so have the `-wal` and
    /// `-shm` files SQLite creates beside it (SQLite gives them the database file's mode):
    /// run output and device inventories are readable by their owner only. An existing
    /// database file keeps the mode its owner gave it.
    pub async fn connect(url: &str) -> Result<Self> {
        let bad = |reason: String| {
            Error::Config(ConfigError {
                var: "DATABASE_URL",
                value: url.to_owned(),
                reason,
            })
        };
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|e| bad(e.to_string()))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .synchronous(SqliteSynchronous::Normal);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        #[cfg(unix)]
        if !in_memory {
            // A new database file is created here, mode 0600 (set after the open, whatever
            // the umask), before SQLite opens it: SQLite creates the `-wal` and `-shm` files
            // with the mode of the database file, so they are private too. An existing file
            // keeps the mode its owner gave it.
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let path = base.get_filename();
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|file| file.set_permissions(std::fs::Permissions::from_mode(0o600)));
            if let Err(e) = created
                && std::fs::symlink_metadata(path).is_err()
            {
                return Err(Error::backend(format!(
                    "cannot create the SQLite database {}: {e}",
                    path.display()
                )));
            }
        }
        let pools = if in_memory {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(base)
                .await
                .map_err(db)?;
            Db {
                writer: pool.clone(),
                lease_writer: pool.clone(),
                reader: pool,
            }
        } else {
            // Checkpoint the WAL every ~40 MiB rather than SQLite's 4 MiB: purges and bulk
            // writes commit many small transactions, and each checkpoint syncs the database.
            let opts = base
                .journal_mode(SqliteJournalMode::Wal)
                .pragma("wal_autocheckpoint", "10000");
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.clone())
                .await
                .map_err(db)?;
            let reader = SqlitePoolOptions::new()
                .max_connections(READERS)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.read_only(true))
                .await
                .map_err(db)?;
            Db {
                lease_writer: writer.clone(),
                writer,
                reader,
            }
        };
        for pool in [&pools.writer, &pools.reader] {
            let on: i64 = sqlx::query("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .map_err(db)?
                .try_get(0)
                .map_err(db)?;
            if on != 1 {
                return Err(Error::backend(
                    "SQLite foreign_keys is off on this connection; refusing to run (chunks and outcomes would not cascade)",
                ));
            }
        }
        Ok(Self {
            db: pools,
            progress: netauto_core::LocalProgressHub::new(),
        })
    }

    /// Applies the embedded migrations not applied yet, each in its own transaction. A
    /// database migrated by an earlier version of netauto (which recorded its migrations in
    /// `netauto_migrations`) is adopted first: only the migrations it lacks run.
    pub async fn migrate(&self) -> Result<()> {
        // The one writer connection serializes migrators within this process.
        let mut tx = self.db.begin_write().await?;
        adopt_legacy::<Sqlite>(&mut tx, &MIGRATOR).await?;
        tx.commit().await.map_err(db)?;
        MIGRATOR.run(&self.db.writer).await.map_err(migrate_error)
    }

    /// The job queue.
    pub fn queue(&self) -> SqliteJobQueue {
        SqliteJobQueue {
            db: self.db.clone(),
        }
    }

    /// The run store.
    pub fn store(&self) -> SqliteRunStore {
        SqliteRunStore {
            db: self.db.clone(),
        }
    }

    /// The progress feed (in-process: SQLite serves one process).
    pub fn progress(&self) -> netauto_core::LocalProgressHub {
        self.progress.clone()
    }

    /// The writer pool (for tools and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.db.writer
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "netauto-sqlite-{tag}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &str) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_new_database_and_its_wal_and_shm_files_are_private() {
        let dir = TempDir::new("private");
        let path = dir.0.join("netauto.db").display().to_string();
        let backend = SqliteBackend::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        // A write, so that the WAL and the shared-memory index exist.
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(backend.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(backend.pool())
            .await
            .unwrap();
        for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
            assert_eq!(mode(&file), 0o600, "{file}: {:o}", mode(&file));
        }
    }

    #[tokio::test]
    async fn an_existing_database_keeps_the_mode_its_owner_gave_it() {
        let dir = TempDir::new("existing");
        let path = dir.0.join("netauto.db").display().to_string();
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let backend = SqliteBackend::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(backend.pool())
            .await
            .unwrap();
        for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
            assert_eq!(mode(&file), 0o640, "{file}: {:o}", mode(&file));
        }
    }
}
