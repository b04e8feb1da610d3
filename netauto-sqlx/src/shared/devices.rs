//! Devices.

use std::collections::HashSet;

use crate::error::{db, exists_or_db};
use crate::rows::{self, StoredRow};
use crate::shared::bulks::raw;
use crate::sql::{Bind, Dialect, Kind, Pools, Portable};
use netauto_core::bulk::dedup_ids;
use netauto_core::{Device, DeviceId, Error, NewDevice, Result};

/// Inserts one device on `conn` (a transaction or a pooled connection).
async fn insert_device<DB: Dialect>(conn: &mut DB::Connection, d: &NewDevice) -> Result<Device> {
    let row = sqlx::query::<DB>(
        "INSERT INTO devices (name, host, port, platform, username, credential_ref, tags, site,
                              jump_host, vars)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
    )
    .text(&d.name)
    .text(&d.host)
    .opt_int32(Some(i32::from(d.port)))
    .text(&d.platform)
    .text(&d.username)
    .opt_text(d.credential_ref.as_deref())
    .json(&d.tags)?
    .opt_text(d.site.as_deref())
    .opt_text(d.jump_host.as_deref())
    .json(&d.vars)?
    .fetch_one(DB::conn(conn))
    .await
    .map_err(|e| exists_or_db(e, "device", &d.name))?;
    rows::device(&row)
}

pub(crate) async fn create_device<P: Pools>(s: &P, d: NewDevice) -> Result<Device> {
    let mut conn = s.writer().acquire().await.map_err(db)?;
    insert_device::<P::DB>(&mut *conn, &d).await
}

pub(crate) async fn create_devices<P: Pools>(
    s: &P,
    devices: Vec<NewDevice>,
) -> Result<Vec<Device>> {
    let mut tx = s.begin_write().await?;
    let mut created = Vec::with_capacity(devices.len());
    for d in &devices {
        created.push(insert_device::<P::DB>(&mut *tx, d).await?);
    }
    tx.commit().await.map_err(db)?;
    Ok(created)
}

pub(crate) async fn device<P: Pools>(s: &P, id: DeviceId) -> Result<Device> {
    sqlx::query::<P::DB>("SELECT * FROM devices WHERE id = $1")
        .int(id.get())
        .fetch_optional(P::DB::pool(s.reader()))
        .await
        .map_err(db)?
        .map_or_else(|| Err(Error::device_not_found(id)), |r| rows::device(&r))
}

pub(crate) async fn list_devices<P: Pools>(s: &P) -> Result<Vec<Device>> {
    let all = sqlx::query::<P::DB>("SELECT * FROM devices ORDER BY id")
        .fetch_all(P::DB::pool(s.reader()))
        .await
        .map_err(db)?;
    all.iter().map(rows::device).collect()
}

pub(crate) async fn unknown_devices<P: Pools>(s: &P, ids: &[DeviceId]) -> Result<Vec<DeviceId>> {
    let ids = dedup_ids(ids);
    // In SQLite batches keep each JSON argument, and the work per statement, bounded.
    let batch = match P::DB::KIND {
        Kind::Postgres => ids.len().max(1),
        Kind::Sqlite => 10_000,
    };
    let mut known = HashSet::new();
    for batch in ids.chunks(batch) {
        let found = sqlx::query::<P::DB>(P::DB::pick(
            "SELECT id FROM devices WHERE id = ANY($1)",
            "SELECT id FROM devices WHERE id IN (SELECT value FROM json_each($1))",
        ))
        .ids(&raw(batch))
        .fetch_all(P::DB::pool(s.reader()))
        .await
        .map_err(db)?;
        for r in found {
            known.insert(DeviceId(r.int("id")?));
        }
    }
    Ok(ids.into_iter().filter(|id| !known.contains(id)).collect())
}

pub(crate) async fn update_device<P: Pools>(s: &P, id: DeviceId, d: NewDevice) -> Result<Device> {
    let row = sqlx::query::<P::DB>(
        "UPDATE devices SET name = $1, host = $2, port = $3, platform = $4, username = $5,
             credential_ref = $6, tags = $7, site = $8, jump_host = $9, vars = $10
         WHERE id = $11 RETURNING *",
    )
    .text(&d.name)
    .text(&d.host)
    .opt_int32(Some(i32::from(d.port)))
    .text(&d.platform)
    .text(&d.username)
    .opt_text(d.credential_ref.as_deref())
    .json(&d.tags)?
    .opt_text(d.site.as_deref())
    .opt_text(d.jump_host.as_deref())
    .json(&d.vars)?
    .int(id.get())
    .fetch_optional(P::DB::pool(s.writer()))
    .await
    .map_err(|e| exists_or_db(e, "device", &d.name))?;
    match row {
        Some(r) => rows::device(&r),
        None => Err(Error::device_not_found(id)),
    }
}

pub(crate) async fn delete_device<P: Pools>(s: &P, id: DeviceId) -> Result<u64> {
    let mut tx = s.begin_write().await?;
    let runs = sqlx::query::<P::DB>("SELECT count(*) AS n FROM runs WHERE device_id = $1")
        .int(id.get())
        .fetch_one(P::DB::conn(&mut *tx))
        .await
        .map_err(db)?
        .int("n")?;
    // Runs, their chunks and the chunks' index entries cascade.
    let gone = sqlx::query::<P::DB>("DELETE FROM devices WHERE id = $1")
        .int(id.get())
        .execute(P::DB::conn(&mut *tx))
        .await
        .map_err(db)?;
    if P::DB::rows_affected(&gone) == 0 {
        return Err(Error::device_not_found(id));
    }
    tx.commit().await.map_err(db)?;
    Ok(u64::try_from(runs).unwrap_or(0))
}
