//! Databases migrated by the hand-written migrator of earlier versions (which recorded the
//! applied versions in `netauto_migrations`) open, keep their data and migrate with
//! `sqlx::migrate!`: the versions they have are adopted, only the missing ones run.

use chrono::Utc;
use netauto_core::prelude::*;
use netauto_core::{NewDevice, NewRun, RunFinish, RunStatus, RunStore};

#[cfg(feature = "postgres")]
mod support;

/// Every embedded migration, applied: a legacy database (versions 1 and 2) gets the later
/// ones too.
const ALL_APPLIED: [(i64, bool); 7] = [
    (1, true),
    (2, true),
    (3, true),
    (4, true),
    (5, true),
    (6, true),
    (7, true),
];

/// A device written as the version that ran the legacy migrator wrote it (its columns only).
const LEGACY_DEVICE: &str = "INSERT INTO devices (name, host, port, platform, username, credential_ref, tags, site) \
     VALUES ($1, '10.0.0.1', 22, 'cisco_ios', 'ops', NULL, '[]', NULL)";

/// A device, a run that finishes truncated (a column of migration 2) and reads it back.
async fn store_works(store: &dyn RunStore, name: &str) {
    let device = store
        .create_device(NewDevice::new(name, "10.0.0.1", "cisco_ios", "ops"))
        .await
        .expect("create device");
    let run = store
        .create_run(
            NewRun {
                device_id: device.id,
                command: "show version".into(),
                requested_by: "test".into(),
                bulk_ref: None,
            },
            Utc::now(),
        )
        .await
        .expect("create run");
    let finished = store
        .finish_run(
            run.id,
            RunFinish::new(RunStatus::Ok)
                .with_exit_status(0)
                .with_truncated(true)
                .with_credential_ref(Some("tacacs".to_owned()))
                .with_redacted(true),
            Utc::now(),
        )
        .await
        .expect("finish run");
    assert!(finished.truncated);
    assert_eq!(finished.credential_ref.as_deref(), Some("tacacs"));
    assert!(finished.redacted);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::sync::atomic::{AtomicU32, Ordering};

    use netauto_sqlx::sqlite::SqliteBackend;
    use sqlx::SqlitePool;

    use super::*;

    /// What the legacy migrator ran, in order: (version, name, SQL).
    const LEGACY: &[(i64, &str, &str)] = &[
        (
            1,
            "init",
            include_str!("../migrations/sqlite/0001_init.sql"),
        ),
        (
            2,
            "limits_cancel",
            include_str!("../migrations/sqlite/0002_limits_cancel.sql"),
        ),
    ];

    /// Migrates `pool` as the legacy migrator did, up to `upto`.
    async fn legacy_migrate(pool: &SqlitePool, upto: i64) {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS netauto_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        )
        .execute(pool)
        .await
        .expect("test database");
        for (version, name, sql) in LEGACY.iter().filter(|m| m.0 <= upto) {
            let mut tx = pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .expect("test database");
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .expect("test database");
            sqlx::query("INSERT INTO netauto_migrations (version, name) VALUES (?, ?)")
                .bind(version)
                .bind(name)
                .execute(&mut *tx)
                .await
                .expect("test database");
            tx.commit().await.expect("test database");
        }
    }

    async fn applied(pool: &SqlitePool) -> Vec<(i64, bool)> {
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .expect("test database")
    }

    static N: AtomicU32 = AtomicU32::new(0);

    async fn fresh_file() -> SqliteBackend {
        let dir = std::env::temp_dir().join(format!("netauto-legacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test database");
        let path = dir.join(format!("db-{}.sqlite", N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_file(&path);
        SqliteBackend::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("test database")
    }

    #[tokio::test]
    async fn a_fully_migrated_legacy_database_is_adopted() {
        let b = fresh_file().await;
        legacy_migrate(b.pool(), 2).await;
        sqlx::query(LEGACY_DEVICE)
            .bind("before")
            .execute(b.pool())
            .await
            .expect("a device written by the legacy version");

        b.migrate().await.expect("migrate adopts");
        assert_eq!(applied(b.pool()).await, ALL_APPLIED.to_vec());
        assert_eq!(
            b.store().list_devices().await.expect("test database").len(),
            1
        );
        store_works(&b.store(), "after").await;

        // Again: nothing to do, and the legacy table is left as it was.
        b.migrate().await.expect("migrate again");
        let legacy: i64 = sqlx::query_scalar("SELECT count(*) FROM netauto_migrations")
            .fetch_one(b.pool())
            .await
            .expect("test database");
        assert_eq!(legacy, 2);
    }

    #[tokio::test]
    async fn a_partly_migrated_legacy_database_gets_the_rest() {
        let b = fresh_file().await;
        legacy_migrate(b.pool(), 1).await;

        b.migrate().await.expect("migrate");
        assert_eq!(applied(b.pool()).await, ALL_APPLIED.to_vec());
        store_works(&b.store(), "d").await;
    }

    #[tokio::test]
    async fn a_new_database_migrates_from_scratch() {
        let b = SqliteBackend::connect("sqlite::memory:")
            .await
            .expect("test database");
        b.migrate().await.expect("migrate");
        b.migrate().await.expect("migrate again");
        assert_eq!(applied(b.pool()).await, ALL_APPLIED.to_vec());
        store_works(&b.store(), "d").await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use netauto_sqlx::postgres::PgBackend;
    use sqlx::PgPool;

    use super::support;
    use super::*;

    /// What the legacy migrator ran, in order: (version, name, SQL).
    const LEGACY: &[(i64, &str, &str)] = &[
        (
            1,
            "init",
            include_str!("../migrations/postgres/0001_init.sql"),
        ),
        (
            2,
            "limits_cancel",
            include_str!("../migrations/postgres/0002_limits_cancel.sql"),
        ),
    ];

    /// Migrates `pool` as the legacy migrator did, up to `upto`.
    async fn legacy_migrate(pool: &PgPool, upto: i64) {
        let mut tx = pool.begin().await.expect("test database");
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS netauto_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await
        .expect("test database");
        for (version, name, sql) in LEGACY.iter().filter(|m| m.0 <= upto) {
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .expect("test database");
            sqlx::query("INSERT INTO netauto_migrations (version, name) VALUES ($1, $2)")
                .bind(version)
                .bind(name)
                .execute(&mut *tx)
                .await
                .expect("test database");
        }
        tx.commit().await.expect("test database");
    }

    async fn applied(pool: &PgPool) -> Vec<(i64, bool)> {
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .expect("test database")
    }

    async fn backend() -> Option<PgBackend> {
        let opts = support::fresh_schema().await?;
        Some(PgBackend::connect_with(opts, 4).await.expect("connect"))
    }

    #[tokio::test]
    async fn a_fully_migrated_legacy_database_is_adopted() {
        let Some(b) = backend().await else { return };
        legacy_migrate(b.pool(), 2).await;
        sqlx::query(LEGACY_DEVICE)
            .bind("before")
            .execute(b.pool())
            .await
            .expect("a device written by the legacy version");

        b.migrate().await.expect("migrate adopts");
        assert_eq!(applied(b.pool()).await, ALL_APPLIED.to_vec());
        assert_eq!(
            b.store().list_devices().await.expect("test database").len(),
            1
        );
        store_works(&b.store(), "after").await;
        b.migrate().await.expect("migrate again");
    }

    #[tokio::test]
    async fn a_partly_migrated_legacy_database_gets_the_rest() {
        let Some(b) = backend().await else { return };
        legacy_migrate(b.pool(), 1).await;

        b.migrate().await.expect("migrate");
        assert_eq!(applied(b.pool()).await, ALL_APPLIED.to_vec());
        store_works(&b.store(), "d").await;
    }

    #[tokio::test]
    async fn nodes_migrating_a_legacy_database_together_agree() {
        let Some(b) = backend().await else { return };
        legacy_migrate(b.pool(), 1).await;
        let nodes: Vec<PgBackend> = (0..4)
            .map(|_| PgBackend::from_pool(b.pool().clone()))
            .collect();
        let all = futures_util::future::join_all(nodes.iter().map(PgBackend::migrate)).await;
        assert!(all.iter().all(Result::is_ok), "{all:?}");
        assert_eq!(applied(b.pool()).await, ALL_APPLIED.to_vec());
    }
}
