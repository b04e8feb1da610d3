//! Team records: user accounts with a role, and the audit log of who did what.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// What a user may do. Each role may do everything the ones before it may.
///
/// * `viewer`: read devices, bulks, runs, output, queues and retention status; manage their
///   own API tokens.
/// * `operator`: also start, cancel and re-run bulks and cancel runs.
/// * `admin`: also add, edit, delete and import devices, manage users and their roles, run
///   retention, pause and resume queues, retry, cancel and discard jobs, read the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads and runs commands.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// `viewer`, `operator` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ValidationError::Field {
                field: "role",
                reason: format!("{s:?} is not viewer, operator or admin"),
            })
    }
}

/// Longest user name (characters).
pub const MAX_USER_NAME: usize = 64;

/// Checks a user name: 1 to [`MAX_USER_NAME`] characters, no whitespace, no control
/// characters and no `:` (the users file separates fields with it).
pub fn check_user_name(name: &str) -> Result<(), ValidationError> {
    let bad = |reason: &str| ValidationError::Field {
        field: "user name",
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.chars().count() > MAX_USER_NAME {
        return Err(bad(&format!("longer than {MAX_USER_NAME} characters")));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(bad("no spaces, control characters or ':'"));
    }
    Ok(())
}

/// A stored user account.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The login name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The password's hash (an argon2 PHC string); never serialized or shown.
    #[serde(skip)]
    pub password_hash: String,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When its role or password last changed.
    pub updated_at: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash stays out of logs.
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// A user account to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The login name (see [`check_user_name`]).
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The password's hash (an argon2 PHC string), never the password.
    pub password_hash: String,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Its id (increasing).
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it: a user name, or a name for the system (`cron`, `cli`).
    pub actor: String,
    /// What: a dotted name such as `bulk.start`, `login.failed`, `user.role`.
    pub action: String,
    /// What it was done to (a bulk ref, a device name, a user name, a queue), or empty.
    pub target: String,
    /// More, in words (never a secret).
    pub detail: String,
    /// The client address, when known.
    pub address: Option<String>,
}

/// An audit entry to record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewAuditEvent {
    /// Who did it.
    pub actor: String,
    /// What (see [`AuditEvent::action`]).
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// More, in words (never a secret).
    pub detail: String,
    /// The client address, when known.
    pub address: Option<String>,
}

impl NewAuditEvent {
    /// `actor` did `action` to `target`.
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            ..Self::default()
        }
    }

    /// With more words.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// From this client address.
    pub fn address(mut self, address: Option<String>) -> Self {
        self.address = address;
        self
    }

    /// The entry as stored with id `id` at `at` (for stores that build it themselves).
    pub fn stored(self, id: i64, at: DateTime<Utc>) -> AuditEvent {
        AuditEvent {
            id,
            at,
            actor: self.actor,
            action: self.action,
            target: self.target,
            detail: self.detail,
            address: self.address,
        }
    }
}

/// Largest page of audit entries.
pub const MAX_AUDIT_PAGE: usize = 500;

/// Which audit entries to list: newest first, keyset pages.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct AuditQuery {
    /// Only entries with an id below this one (the last id of the previous page).
    #[serde(default)]
    pub before: Option<i64>,
    /// Only this actor's.
    #[serde(default)]
    pub actor: Option<String>,
    /// Only actions equal to this or starting with it and a dot (`bulk` finds `bulk.start`).
    #[serde(default)]
    pub action: Option<String>,
    /// Page size (default 100, at most [`MAX_AUDIT_PAGE`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// The page size to use.
    pub fn page_size(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE)
    }

    /// Whether `event` passes the actor and action filters (not the page bounds).
    pub fn admits(&self, event: &AuditEvent) -> bool {
        self.actor
            .as_deref()
            .filter(|a| !a.is_empty())
            .is_none_or(|a| a == event.actor)
            && self
                .action
                .as_deref()
                .filter(|a| !a.is_empty())
                .is_none_or(|a| {
                    event.action == a
                        || event
                            .action
                            .strip_prefix(a)
                            .is_some_and(|rest| rest.starts_with('.'))
                })
            && self.before.is_none_or(|b| event.id < b)
    }
}

/// A webhook: where to POST which events, signed with its secret.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// Its id.
    pub id: i64,
    /// Where deliveries are POSTed (`http://` or `https://`).
    pub url: String,
    /// The events it gets (`bulk.finished`, `bulk.cancelled`, `bulk.failed`,
    /// `retention.purge`).
    pub events: Vec<String>,
    /// For `bulk.failed`: the failed devices that make a bulk worth telling, `N` devices or
    /// `P%` of the bulk.
    pub failed_threshold: String,
    /// The HMAC-SHA256 key of its signatures; never serialized or shown after creation.
    #[serde(skip)]
    pub secret: String,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("failed_threshold", &self.failed_threshold)
            .field("created_by", &self.created_by)
            .finish_non_exhaustive()
    }
}

/// A webhook to store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// Where to POST.
    pub url: String,
    /// The events it gets.
    pub events: Vec<String>,
    /// See [`Webhook::failed_threshold`].
    pub failed_threshold: String,
    /// The signing key.
    pub secret: String,
    /// Who creates it.
    pub created_by: String,
}

impl fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewWebhook")
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// One attempt to deliver an event to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    /// Its id.
    pub id: i64,
    /// The webhook.
    pub webhook_id: i64,
    /// The event (`bulk.finished`, …).
    pub event: String,
    /// What it is about (a bulk ref), or empty.
    pub target: String,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How long the attempt took (milliseconds).
    pub duration_ms: u64,
    /// When it was made.
    pub at: DateTime<Utc>,
}

/// A delivery attempt to record (stamped with the time given to the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhookDelivery {
    /// The webhook.
    pub webhook_id: i64,
    /// The event.
    pub event: String,
    /// What it is about.
    pub target: String,
    /// Attempt number.
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How long it took (milliseconds).
    pub duration_ms: u64,
}

impl NewWebhookDelivery {
    /// The attempt as stored with id `id` at `at` (for stores that build it themselves).
    pub fn stored(self, id: i64, at: DateTime<Utc>) -> WebhookDelivery {
        WebhookDelivery {
            id,
            webhook_id: self.webhook_id,
            event: self.event,
            target: self.target,
            attempt: self.attempt,
            status_code: self.status_code,
            error: self.error,
            duration_ms: self.duration_ms,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
    }

    #[test]
    fn user_names_are_checked() {
        check_user_name("ann.b-1@corp").unwrap();
        for bad in ["", "a b", "a:b", "a\u{7}", &"x".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashes_stay_out_of_debug() {
        let u = NewUser {
            name: "ann".into(),
            role: Role::Admin,
            password_hash: "$argon2id$secret".into(),
        };
        assert!(!format!("{u:?}").contains("argon2"));
    }

    #[test]
    fn action_filters_match_whole_segments() {
        let e = AuditEvent {
            id: 5,
            at: Utc::now(),
            actor: "ann".into(),
            action: "bulk.start".into(),
            target: String::new(),
            detail: String::new(),
            address: None,
        };
        let q = |action: &str| AuditQuery {
            action: Some(action.into()),
            ..AuditQuery::default()
        };
        assert!(q("bulk").admits(&e));
        assert!(q("bulk.start").admits(&e));
        assert!(!q("bul").admits(&e));
        assert!(!q("bulk.s").admits(&e));
    }
}
