//! Devices of [`SqliteRunStore`].

use std::collections::HashSet;

use netauto_core::bulk::dedup_ids;
use netauto_core::{Device, DeviceId, Error, NewDevice, Result};
use sqlx::SqliteConnection;

use super::Db;
use crate::error::{db, exists_or_db, json};
use crate::rows::{self, StoredRow};

/// `ids` as the JSON array `json_each` reads.
pub(super) fn ids_json(ids: &[DeviceId]) -> String {
    let raw: Vec<i64> = ids.iter().map(|d| d.get()).collect();
    serde_json::Value::from(raw).to_string()
}

/// Inserts one device on `conn` (a transaction or a pooled connection).
async fn insert_device(conn: &mut SqliteConnection, d: &NewDevice) -> Result<Device> {
    let row = sqlx::query(
        "INSERT INTO devices (name, host, port, platform, username, credential_ref, tags, site)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(&d.name)
    .bind(&d.host)
    .bind(i64::from(d.port))
    .bind(&d.platform)
    .bind(&d.username)
    .bind(&d.credential_ref)
    .bind(serde_json::to_string(&d.tags).map_err(json)?)
    .bind(&d.site)
    .fetch_one(conn)
    .await
    .map_err(|e| exists_or_db(e, "device", &d.name))?;
    rows::device(&row)
}

pub(super) async fn create_device(s: &Db, d: NewDevice) -> Result<Device> {
    let mut conn = s.writer.acquire().await.map_err(db)?;
    insert_device(&mut conn, &d).await
}

pub(super) async fn create_devices(s: &Db, devices: Vec<NewDevice>) -> Result<Vec<Device>> {
    let mut tx = s.begin_write().await?;
    let mut created = Vec::with_capacity(devices.len());
    for d in &devices {
        created.push(insert_device(&mut tx, d).await?);
    }
    tx.commit().await.map_err(db)?;
    Ok(created)
}

pub(super) async fn device(s: &Db, id: DeviceId) -> Result<Device> {
    let row = sqlx::query("SELECT * FROM devices WHERE id = ?")
        .bind(id.get())
        .fetch_optional(&s.reader)
        .await
        .map_err(db)?;
    row.map_or_else(|| Err(Error::device_not_found(id)), |r| rows::device(&r))
}

pub(super) async fn list_devices(s: &Db) -> Result<Vec<Device>> {
    let rows = sqlx::query("SELECT * FROM devices ORDER BY id")
        .fetch_all(&s.reader)
        .await
        .map_err(db)?;
    rows.iter().map(rows::device).collect()
}

pub(super) async fn unknown_devices(s: &Db, ids: &[DeviceId]) -> Result<Vec<DeviceId>> {
    let ids = dedup_ids(ids);
    let mut known = HashSet::new();
    // Batches keep each JSON argument, and SQLite's work per statement, bounded.
    for batch in ids.chunks(10_000) {
        let rows =
            sqlx::query("SELECT id FROM devices WHERE id IN (SELECT value FROM json_each(?))")
                .bind(ids_json(batch))
                .fetch_all(&s.reader)
                .await
                .map_err(db)?;
        for r in rows {
            known.insert(DeviceId(r.int("id")?));
        }
    }
    Ok(ids.into_iter().filter(|id| !known.contains(id)).collect())
}
