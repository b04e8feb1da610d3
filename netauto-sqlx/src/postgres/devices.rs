//! Devices of [`PgRunStore`].

use std::collections::HashSet;

use netauto_core::bulk::dedup_ids;
use netauto_core::{Device, DeviceId, Error, NewDevice, Result};
use sqlx::PgConnection;
use sqlx::types::Json;

use super::PgPools;
use crate::error::{db, exists_or_db};
use crate::rows::{self, StoredRow};

/// `ids` as a BIGINT[] argument.
pub(super) fn raw(ids: &[DeviceId]) -> Vec<i64> {
    ids.iter().map(|d| d.get()).collect()
}

/// Inserts one device on `conn` (a transaction or a pooled connection).
async fn insert_device(conn: &mut PgConnection, d: &NewDevice) -> Result<Device> {
    let row = sqlx::query(
        "INSERT INTO devices (name, host, port, platform, username, credential_ref, tags, site)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
    )
    .bind(&d.name)
    .bind(&d.host)
    .bind(i32::from(d.port))
    .bind(&d.platform)
    .bind(&d.username)
    .bind(&d.credential_ref)
    .bind(Json(&d.tags))
    .bind(&d.site)
    .fetch_one(conn)
    .await
    .map_err(|e| exists_or_db(e, "device", &d.name))?;
    rows::device(&row)
}

pub(super) async fn create_device(s: &PgPools, d: NewDevice) -> Result<Device> {
    let mut conn = s.pool.acquire().await.map_err(db)?;
    insert_device(&mut conn, &d).await
}

pub(super) async fn create_devices(s: &PgPools, devices: Vec<NewDevice>) -> Result<Vec<Device>> {
    let mut tx = s.pool.begin().await.map_err(db)?;
    let mut created = Vec::with_capacity(devices.len());
    for d in &devices {
        created.push(insert_device(&mut tx, d).await?);
    }
    tx.commit().await.map_err(db)?;
    Ok(created)
}

pub(super) async fn device(s: &PgPools, id: DeviceId) -> Result<Device> {
    sqlx::query("SELECT * FROM devices WHERE id = $1")
        .bind(id.get())
        .fetch_optional(&s.pool)
        .await
        .map_err(db)?
        .map_or_else(|| Err(Error::device_not_found(id)), |r| rows::device(&r))
}

pub(super) async fn list_devices(s: &PgPools) -> Result<Vec<Device>> {
    let all = sqlx::query("SELECT * FROM devices ORDER BY id")
        .fetch_all(&s.pool)
        .await
        .map_err(db)?;
    all.iter().map(rows::device).collect()
}

pub(super) async fn unknown_devices(s: &PgPools, ids: &[DeviceId]) -> Result<Vec<DeviceId>> {
    let ids = dedup_ids(ids);
    let known: HashSet<DeviceId> = sqlx::query("SELECT id FROM devices WHERE id = ANY($1)")
        .bind(raw(&ids))
        .fetch_all(&s.pool)
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.int("id").map(DeviceId))
        .collect::<Result<_>>()?;
    Ok(ids.into_iter().filter(|id| !known.contains(id)).collect())
}
