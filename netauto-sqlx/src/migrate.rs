//! Schema migrations: the SQL files under `migrations/<backend>/`, embedded with
//! `sqlx::migrate!` and applied by sqlx's migrator, which records them in
//! `_sqlx_migrations`.
//!
//! Databases created before that were migrated by a hand-written loop that recorded the
//! applied versions in [`LEGACY_TABLE`]. [`adopt_legacy`] carries those records over
//! to sqlx's table once, so that such a database opens and only the newer migrations run.
//! The legacy table is left in place (an older binary opening the database again sees its
//! own records).

use netauto_core::{Error, Result};
use sqlx::Executor;
use sqlx::migrate::{Migrate, MigrateError, Migrator};

use crate::error::db;
use crate::rows::StoredRow;
use crate::sql::{Dialect, exists};

/// The table of the hand-written migrator of earlier versions: `version`, `name`,
/// `applied_at`.
pub(crate) const LEGACY_TABLE: &str = "netauto_migrations";

/// If the database was migrated by the legacy migrator and never by sqlx's, records the
/// versions it applied in sqlx's table, with the checksums of the embedded migrations.
///
/// Run it in a transaction that excludes other migrators, before `migrator.run`.
pub(crate) async fn adopt_legacy<DB>(conn: &mut DB::Connection, migrator: &Migrator) -> Result<()>
where
    DB: Dialect<Connection: Migrate>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let legacy = exists(
        &mut *conn,
        DB::TABLE_EXISTS,
        DB::Text::from(LEGACY_TABLE.to_owned()),
    )
    .await?;
    if !legacy
        || exists(
            &mut *conn,
            DB::TABLE_EXISTS,
            DB::Text::from(migrator.table_name.to_string()),
        )
        .await?
    {
        return Ok(());
    }
    let rows = sqlx::query::<DB>("SELECT version FROM netauto_migrations")
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let applied = rows
        .iter()
        .map(|r| r.int("version"))
        .collect::<Result<Vec<_>>>()?;
    conn.ensure_migrations_table(&migrator.table_name)
        .await
        .map_err(migrate_error)?;
    for m in migrator.iter() {
        if !m.migration_type.is_down_migration() && applied.contains(&m.version) {
            conn.skip(&migrator.table_name, m)
                .await
                .map_err(migrate_error)?;
        }
    }
    tracing::info!(
        ?applied,
        "adopted the migrations recorded by the legacy migrator"
    );
    Ok(())
}

/// Maps a migrator error: a statement that failed keeps its driver error's meaning
/// (retryable or not); anything else (a modified or missing migration) is a backend error.
pub(crate) fn migrate_error(e: MigrateError) -> Error {
    match e {
        MigrateError::Execute(e) => db(e),
        MigrateError::ExecuteMigration(e, version) => {
            tracing::warn!(version, error = %e, "migration failed");
            db(e)
        }
        other => Error::backend(other),
    }
}
