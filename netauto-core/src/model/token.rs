//! API tokens: named, per user, stored hashed (the secret is shown once and never stored).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A token as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// Its id.
    pub id: i64,
    /// The user it acts as.
    pub user: String,
    /// Its name (what it is for).
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// Whether it works at `now` (not revoked, not expired).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

/// A token to store: the hash of its secret (e.g. hex SHA-256), never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// The user it acts as.
    pub user: String,
    /// Its name.
    pub name: String,
    /// The hash of its secret.
    pub hash: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}
