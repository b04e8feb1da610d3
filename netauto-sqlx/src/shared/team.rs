//! User accounts, the audit log, webhooks and their deliveries.

use chrono::{DateTime, Utc};
use netauto_core::{
    AuditEvent, AuditQuery, Error, NewAuditEvent, NewUser, NewWebhook, NewWebhookDelivery, Result,
    Role, User, Webhook, WebhookDelivery,
};

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
    let mut tx = s.begin_write().await?;
    sqlx::query::<P::DB>("DELETE FROM webhook_deliveries WHERE at < $1")
        .time(cutoff)
        .execute(P::DB::conn(&mut *tx))
        .await
        .map_err(db)?;
    let n = sqlx::query::<P::DB>("DELETE FROM audit_events WHERE at < $1")
        .time(cutoff)
        .execute(P::DB::conn(&mut *tx))
        .await
        .map(|done| P::DB::rows_affected(&done))
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(n)
}

fn webhook<R: StoredRow>(r: &R) -> Result<Webhook> {
    let events: String = r.text("events")?;
    Ok(Webhook {
        id: r.int("id")?,
        url: r.text("url")?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        failed_threshold: r.text("failed_threshold")?,
        secret: r.text("secret")?,
        created_by: r.text("created_by")?,
        created_at: r.time("created_at")?,
    })
}

fn delivery<R: StoredRow>(r: &R) -> Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: r.int("id")?,
        webhook_id: r.int("webhook_id")?,
        event: r.text("event")?,
        target: r.text("target")?,
        attempt: u32::try_from(r.int("attempt")?).unwrap_or(0),
        status_code: r
            .opt_int("status_code")?
            .and_then(|c| u16::try_from(c).ok()),
        error: r.opt_text("error")?,
        duration_ms: u64::try_from(r.int("duration_ms")?).unwrap_or(0),
        at: r.time("at")?,
    })
}

pub(crate) async fn create_webhook<P: Pools>(
    s: &P,
    w: NewWebhook,
    now: DateTime<Utc>,
) -> Result<Webhook> {
    let row = sqlx::query::<P::DB>(
        "INSERT INTO webhooks (url, events, failed_threshold, secret, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
    )
    .text(&w.url)
    .text(&w.events.join(","))
    .text(&w.failed_threshold)
    .text(&w.secret)
    .text(&w.created_by)
    .time(now)
    .fetch_one(P::DB::pool(s.writer()))
    .await
    .map_err(db)?;
    webhook(&row)
}

pub(crate) async fn webhooks<P: Pools>(s: &P) -> Result<Vec<Webhook>> {
    let rows = sqlx::query::<P::DB>("SELECT * FROM webhooks ORDER BY id")
        .fetch_all(P::DB::pool(s.reader()))
        .await
        .map_err(db)?;
    rows.iter().map(webhook).collect()
}

pub(crate) async fn delete_webhook<P: Pools>(s: &P, id: i64) -> Result<Webhook> {
    // Its deliveries cascade.
    let row = sqlx::query::<P::DB>("DELETE FROM webhooks WHERE id = $1 RETURNING *")
        .int(id)
        .fetch_optional(P::DB::pool(s.writer()))
        .await
        .map_err(db)?;
    row.as_ref()
        .map(webhook)
        .transpose()?
        .ok_or_else(|| Error::NotFound {
            what: "webhook",
            id: id.to_string(),
        })
}

pub(crate) async fn record_delivery<P: Pools>(
    s: &P,
    d: NewWebhookDelivery,
    now: DateTime<Utc>,
) -> Result<WebhookDelivery> {
    let row = sqlx::query::<P::DB>(
        "INSERT INTO webhook_deliveries
           (webhook_id, event, target, attempt, status_code, error, duration_ms, at)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $1)
         RETURNING *",
    )
    .int(d.webhook_id)
    .text(&d.event)
    .text(&d.target)
    .opt_int32(Some(i32::try_from(d.attempt).unwrap_or(i32::MAX)))
    .opt_int32(d.status_code.map(i32::from))
    .opt_text(d.error.as_deref())
    .int(i64::try_from(d.duration_ms).unwrap_or(i64::MAX))
    .time(now)
    .fetch_optional(P::DB::pool(s.writer()))
    .await
    .map_err(db)?;
    row.as_ref()
        .map(delivery)
        .transpose()?
        .ok_or_else(|| Error::NotFound {
            what: "webhook",
            id: d.webhook_id.to_string(),
        })
}

pub(crate) async fn deliveries<P: Pools>(
    s: &P,
    webhook_id: Option<i64>,
    limit: usize,
) -> Result<Vec<WebhookDelivery>> {
    let rows = sqlx::query::<P::DB>(
        "SELECT * FROM webhook_deliveries WHERE ($1 IS NULL OR webhook_id = $1)
         ORDER BY id DESC LIMIT $2",
    )
    .opt_int(webhook_id)
    .int(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(P::DB::pool(s.reader()))
    .await
    .map_err(db)?;
    rows.iter().map(delivery).collect()
}
