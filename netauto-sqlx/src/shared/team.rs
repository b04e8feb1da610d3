//! User accounts and the audit log.

use chrono::{DateTime, Utc};
use netauto_core::{AuditEvent, AuditQuery, Error, NewAuditEvent, NewUser, Result, Role, User};

use crate::error::{db, exists_or_db};
use crate::rows::StoredRow;
use crate::sql::{Bind, Dialect, Pools, Portable};

fn user<R: StoredRow>(r: &R) -> Result<User> {
    let role: String = r.text("role")?;
    Ok(User {
        name: r.text("name")?,
        role: role
            .parse::<Role>()
            .map_err(|e| Error::backend(format!("stored user: {e}")))?,
        password_hash: r.text("password_hash")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn audit<R: StoredRow>(r: &R) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.int("id")?,
        at: r.time("at")?,
        actor: r.text("actor")?,
        action: r.text("action")?,
        target: r.text("target")?,
        detail: r.text("detail")?,
        address: r.opt_text("address")?,
    })
}

fn no_user(name: &str) -> Error {
    Error::NotFound {
        what: "user",
        id: name.to_owned(),
    }
}

pub(crate) async fn create_user<P: Pools>(s: &P, u: NewUser, now: DateTime<Utc>) -> Result<User> {
    let row = sqlx::query::<P::DB>(
        "INSERT INTO users (name, role, password_hash, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4) RETURNING *",
    )
    .text(&u.name)
    .text(u.role.as_str())
    .text(&u.password_hash)
    .time(now)
    .fetch_one(P::DB::pool(s.writer()))
    .await
    .map_err(|e| exists_or_db(e, "user", &u.name))?;
    user(&row)
}

pub(crate) async fn user_named<P: Pools>(s: &P, name: &str) -> Result<Option<User>> {
    let row = sqlx::query::<P::DB>("SELECT * FROM users WHERE name = $1")
        .text(name)
        .fetch_optional(P::DB::pool(s.reader()))
        .await
        .map_err(db)?;
    row.as_ref().map(user).transpose()
}

pub(crate) async fn users<P: Pools>(s: &P) -> Result<Vec<User>> {
    let rows = sqlx::query::<P::DB>("SELECT * FROM users ORDER BY name")
        .fetch_all(P::DB::pool(s.reader()))
        .await
        .map_err(db)?;
    rows.iter().map(user).collect()
}

pub(crate) async fn set_user_role<P: Pools>(
    s: &P,
    name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<User> {
    let row = sqlx::query::<P::DB>(
        "UPDATE users SET role = $1, updated_at = $2 WHERE name = $3 RETURNING *",
    )
    .text(role.as_str())
    .time(now)
    .text(name)
    .fetch_optional(P::DB::pool(s.writer()))
    .await
    .map_err(db)?;
    row.as_ref()
        .map(user)
        .transpose()?
        .ok_or_else(|| no_user(name))
}

pub(crate) async fn set_user_password<P: Pools>(
    s: &P,
    name: &str,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<User> {
    let row = sqlx::query::<P::DB>(
        "UPDATE users SET password_hash = $1, updated_at = $2 WHERE name = $3 RETURNING *",
    )
    .text(hash)
    .time(now)
    .text(name)
    .fetch_optional(P::DB::pool(s.writer()))
    .await
    .map_err(db)?;
    row.as_ref()
        .map(user)
        .transpose()?
        .ok_or_else(|| no_user(name))
}

pub(crate) async fn remove_user<P: Pools>(s: &P, name: &str, now: DateTime<Utc>) -> Result<User> {
    let mut tx = s.begin_write().await?;
    let row = sqlx::query::<P::DB>("DELETE FROM users WHERE name = $1 RETURNING *")
        .text(name)
        .fetch_optional(P::DB::conn(&mut *tx))
        .await
        .map_err(db)?;
    let removed = row
        .as_ref()
        .map(user)
        .transpose()?
        .ok_or_else(|| no_user(name))?;
    sqlx::query::<P::DB>(
        "UPDATE api_tokens SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
    )
    .time(now)
    .text(name)
    .execute(P::DB::conn(&mut *tx))
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(removed)
}

pub(crate) async fn record_audit<P: Pools>(
    s: &P,
    e: NewAuditEvent,
    now: DateTime<Utc>,
) -> Result<AuditEvent> {
    let row = sqlx::query::<P::DB>(
        "INSERT INTO audit_events (at, actor, action, target, detail, address)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
    )
    .time(now)
    .text(&e.actor)
    .text(&e.action)
    .text(&e.target)
    .text(&e.detail)
    .opt_text(e.address.as_deref())
    .fetch_one(P::DB::pool(s.writer()))
    .await
    .map_err(db)?;
    audit(&row)
}

pub(crate) async fn audit_events<P: Pools>(s: &P, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
    let actor = q.actor.as_deref().filter(|a| !a.is_empty());
    let action = q.action.as_deref().filter(|a| !a.is_empty());
    let rows = sqlx::query::<P::DB>(
        "SELECT * FROM audit_events
         WHERE ($1 IS NULL OR id < $1)
           AND ($2 IS NULL OR actor = $2)
           AND ($3 IS NULL OR action = $3 OR substr(action, 1, length($3) + 1) = $3 || '.')
         ORDER BY id DESC LIMIT $4",
    )
    .opt_int(q.before)
    .opt_text(actor)
    .opt_text(action)
    .int(i64::try_from(q.page_size()).unwrap_or(i64::MAX))
    .fetch_all(P::DB::pool(s.reader()))
    .await
    .map_err(db)?;
    rows.iter().map(audit).collect()
}

pub(crate) async fn prune_audit<P: Pools>(s: &P, cutoff: DateTime<Utc>) -> Result<u64> {
    sqlx::query::<P::DB>("DELETE FROM audit_events WHERE at < $1")
        .time(cutoff)
        .execute(P::DB::pool(s.writer()))
        .await
        .map(|done| P::DB::rows_affected(&done))
        .map_err(db)
}
