//! Accounts from both sources (the users file wins over the database for a name in both)
//! and the audit log as the handlers write it.

use netauto_core::{NewAuditEvent, Role};

use crate::app::AppState;
use crate::auth::CurrentUser;

/// Default age of the oldest audit entry kept (days).
pub const DEFAULT_AUDIT_MAX_DAYS: u32 = 365;
/// Variable setting how many days of audit log are kept (pruned with every retention run).
pub const AUDIT_MAX_DAYS_VAR: &str = "NETAUTO_AUDIT_MAX_DAYS";

/// Reads [`AUDIT_MAX_DAYS_VAR`] (default [`DEFAULT_AUDIT_MAX_DAYS`]; at least 1).
pub fn audit_max_days_from_env() -> Result<u32, netauto_core::ConfigError> {
    match std::env::var(AUDIT_MAX_DAYS_VAR) {
        Err(_) => Ok(DEFAULT_AUDIT_MAX_DAYS),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(days) if days >= 1 => Ok(days),
            _ => Err(netauto_core::ConfigError {
                var: AUDIT_MAX_DAYS_VAR,
                value: v,
                reason: "a whole number of days, at least 1".to_owned(),
            }),
        },
    }
}

/// Where an account is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `NETAUTO_USERS_FILE` / `NETAUTO_USERS` (or the demo user): read-only here.
    File,
    /// The database: managed in the UI and with `netauto-server users`.
    Database,
}

impl AppState {
    /// The current role of `name`, from the users file or else the database.
    pub(crate) async fn role_of(&self, name: &str) -> netauto_core::Result<Option<Role>> {
        if let Some(role) = self.users.role(name) {
            return Ok(Some(role));
        }
        Ok(self.store.user(name).await?.map(|u| u.role))
    }

    /// The password hash of `name`, from the users file or else the database.
    pub(crate) async fn password_hash(&self, name: &str) -> netauto_core::Result<Option<String>> {
        if let Some(hash) = self.users.hash_of(name) {
            return Ok(Some(hash.to_owned()));
        }
        Ok(self.store.user(name).await?.map(|u| u.password_hash))
    }

    /// Every account with its role and source, by name (a name in both: the file's).
    pub(crate) async fn accounts(&self) -> netauto_core::Result<Vec<(String, Role, Source)>> {
        let mut all: Vec<(String, Role, Source)> = self
            .users
            .roles()
            .map(|(n, r)| (n.to_owned(), r, Source::File))
            .collect();
        for u in self.store.users().await? {
            if self.users.role(&u.name).is_none() {
                all.push((u.name, u.role, Source::Database));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    /// Records `action` on `target` by `user` from their address. A failure to write is
    /// logged, not returned: the action itself has happened.
    pub(crate) async fn audit(
        &self,
        user: &CurrentUser,
        action: &str,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) {
        let detail = detail.into();
        let detail = if user.bearer {
            format!("{detail} (API token)").trim_start().to_owned()
        } else {
            detail
        };
        self.audit_as(
            &user.name,
            user.address.map(|a| a.to_string()),
            action,
            target.into(),
            detail,
        )
        .await;
    }

    /// Records an entry for an actor that is not a logged-in user (a failed login, the cron).
    pub(crate) async fn audit_as(
        &self,
        actor: &str,
        address: Option<String>,
        action: &str,
        target: String,
        detail: String,
    ) {
        let event = NewAuditEvent::new(actor, action, target)
            .detail(detail)
            .address(address);
        if let Err(e) = self.store.record_audit(event, chrono::Utc::now()).await {
            tracing::warn!(error = %e, action, "cannot write the audit log");
        }
    }
}
