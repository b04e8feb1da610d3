//! API tokens (only the hash of a secret is stored).

use chrono::{DateTime, Utc};
use netauto_core::{ApiToken, Error, NewApiToken, Result};

use crate::error::{db, exists_or_db};
use crate::rows::StoredRow;
use crate::sql::{Bind, Pools, Portable};

fn token<R: StoredRow>(r: &R) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.int("id")?,
        user: r.text("user_name")?,
        name: r.text("name")?,
        created_at: r.time("created_at")?,
        expires_at: r.opt_time("expires_at")?,
        last_used_at: r.opt_time("last_used_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}

pub(crate) async fn create_token<P: Pools>(
    s: &P,
    t: NewApiToken,
    now: DateTime<Utc>,
) -> Result<ApiToken> {
    let row = sqlx::query::<P::DB>(
        "INSERT INTO api_tokens (user_name, name, hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING *",
    )
    .text(&t.user)
    .text(&t.name)
    .text(&t.hash)
    .time(now)
    .opt_time(t.expires_at)
    .fetch_one(P::DB::pool(s.writer()))
    .await
    .map_err(|e| exists_or_db(e, "token", &t.name))?;
    token(&row)
}

pub(crate) async fn tokens_of<P: Pools>(s: &P, user: &str) -> Result<Vec<ApiToken>> {
    let rows =
        sqlx::query::<P::DB>("SELECT * FROM api_tokens WHERE user_name = $1 ORDER BY id DESC")
            .text(user)
            .fetch_all(P::DB::pool(s.reader()))
            .await
            .map_err(db)?;
    rows.iter().map(token).collect()
}

pub(crate) async fn revoke_token<P: Pools>(
    s: &P,
    id: i64,
    user: &str,
    now: DateTime<Utc>,
) -> Result<ApiToken> {
    let row = sqlx::query::<P::DB>(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $1)
         WHERE id = $2 AND user_name = $3 RETURNING *",
    )
    .time(now)
    .int(id)
    .text(user)
    .fetch_optional(P::DB::pool(s.writer()))
    .await
    .map_err(db)?;
    match row {
        Some(r) => token(&r),
        None => Err(Error::NotFound {
            what: "token",
            id: id.to_string(),
        }),
    }
}

pub(crate) async fn use_token<P: Pools>(
    s: &P,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<ApiToken>> {
    // A read first: a script polling the API must not take the (SQLite: only) writer on
    // every request. The last use is written when it is a minute old or more.
    let row = sqlx::query::<P::DB>(
        "SELECT * FROM api_tokens
         WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
    )
    .text(hash)
    .time(now)
    .fetch_optional(P::DB::pool(s.reader()))
    .await
    .map_err(db)?;
    let Some(mut found) = row.as_ref().map(token).transpose()? else {
        return Ok(None);
    };
    if found
        .last_used_at
        .is_none_or(|t| now - t >= chrono::TimeDelta::minutes(1))
    {
        sqlx::query::<P::DB>("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .time(now)
            .int(found.id)
            .execute(P::DB::pool(s.writer()))
            .await
            .map_err(db)?;
        found.last_used_at = Some(now);
    }
    Ok(Some(found))
}
