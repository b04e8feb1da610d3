//! Accounts from a file or the environment: user names with an optional role (default
//! `admin`, what every account could do before roles existed) and argon2 password hashes.
//! Accounts in the database ([`TeamStore`](netauto_core::TeamStore)) are the other source;
//! a name in the file is managed by the file.

use std::collections::BTreeMap;
use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use netauto_core::Role;

/// Variable naming a users file: one `name:$argon2id$…` or `name:role:$argon2id$…` line per
/// user, `#` starts a comment.
pub(crate) const USERS_FILE_VAR: &str = "NETAUTO_USERS_FILE";
/// Variable holding users inline: `name:$argon2id$…` entries separated by whitespace.
pub(crate) const USERS_VAR: &str = "NETAUTO_USERS";

/// Shortest password (characters) accepted for an account added in the UI or the CLI.
pub const MIN_PASSWORD: usize = 8;

/// Why the accounts could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    /// A users file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An entry is not `name:<argon2 PHC string>` or `name:role:<argon2 PHC string>`.
    #[error(
        "{origin}: entry {index} is not name:<argon2 hash> or name:role:<argon2 hash> ({reason})"
    )]
    Entry {
        /// Where it came from (a file or a variable).
        origin: String,
        /// 1-based position.
        index: usize,
        /// What is wrong (never the hash itself).
        reason: String,
    },
    /// A password could not be hashed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// The accounts allowed to log in.
#[derive(Clone, Default)]
pub struct Users {
    hashes: BTreeMap<String, (Role, String)>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes stay out of logs.
        f.debug_struct("Users")
            .field("names", &self.hashes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Users {
    /// No accounts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `NETAUTO_USERS_FILE` and `NETAUTO_USERS` (both optional, both may be set).
    pub fn from_env() -> Result<Self, UsersError> {
        let mut users = Self::new();
        if let Some(path) = std::env::var_os(USERS_FILE_VAR) {
            let path = path.to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).map_err(|source| UsersError::Read {
                path: path.clone(),
                source,
            })?;
            let entries = text
                .lines()
                .map(|l| l.split('#').next().unwrap_or_default().trim())
                .filter(|l| !l.is_empty());
            users.add_entries(&path, entries)?;
        }
        if let Ok(inline) = std::env::var(USERS_VAR) {
            users.add_entries(USERS_VAR, inline.split_whitespace())?;
        }
        Ok(users)
    }

    fn add_entries<'a>(
        &mut self,
        origin: &str,
        entries: impl Iterator<Item = &'a str>,
    ) -> Result<(), UsersError> {
        for (i, entry) in entries.enumerate() {
            let bad = |reason: &str| UsersError::Entry {
                origin: origin.to_owned(),
                index: i + 1,
                reason: reason.to_owned(),
            };
            let (name, rest) = entry.split_once(':').ok_or_else(|| bad("no ':'"))?;
            if name.trim().is_empty() {
                return Err(bad("empty name"));
            }
            // A PHC string starts with `$` and holds no ':'.
            let (role, hash) = match rest.split_once(':') {
                Some((role, hash)) if !rest.starts_with('$') => (
                    role.parse::<Role>()
                        .map_err(|_| bad("the role is not viewer, operator or admin"))?,
                    hash,
                ),
                _ => (Role::Admin, rest),
            };
            PasswordHash::new(hash).map_err(|_| bad("not an argon2 PHC string"))?;
            self.hashes
                .insert(name.trim().to_owned(), (role, hash.to_owned()));
        }
        Ok(())
    }

    /// Adds (or replaces) an `admin` whose password hash is already known (a PHC string).
    pub fn with_hash(self, name: impl Into<String>, phc: impl Into<String>) -> Self {
        self.with_role_hash(name, Role::Admin, phc)
    }

    /// Adds (or replaces) a user with a role, whose password hash is already known.
    pub fn with_role_hash(
        mut self,
        name: impl Into<String>,
        role: Role,
        phc: impl Into<String>,
    ) -> Self {
        self.hashes.insert(name.into(), (role, phc.into()));
        self
    }

    /// Adds (or replaces) an `admin`, hashing `password` with the default argon2id parameters.
    pub fn with_password(
        self,
        name: impl Into<String>,
        password: &str,
    ) -> Result<Self, UsersError> {
        Ok(self.with_hash(name, hash_password(password)?))
    }

    /// The role of `name`, if the file or the environment has that user.
    pub fn role(&self, name: &str) -> Option<Role> {
        self.hashes.get(name).map(|(role, _)| *role)
    }

    /// Every user with their role, by name.
    pub fn roles(&self) -> impl Iterator<Item = (&str, Role)> {
        self.hashes.iter().map(|(n, (r, _))| (n.as_str(), *r))
    }

    /// The password hash of `name`, if known here.
    pub(crate) fn hash_of(&self, name: &str) -> Option<&str> {
        self.hashes.get(name).map(|(_, h)| h.as_str())
    }

    /// Whether there is no account.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The user names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.hashes.keys().map(String::as_str)
    }

    /// Whether `password` is `name`'s. Unknown names cost as much as known ones, so timing
    /// does not tell which names exist. CPU-heavy: call it off the async threads.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        verify_hash(self.hash_of(name), password)
    }
}

/// Whether `password` matches `hash`; without a hash (an unknown user) a dummy hash is
/// checked, so the answer takes as long and is `false`. CPU-heavy: call it off the async
/// threads.
pub(crate) fn verify_hash(hash: Option<&str>, password: &str) -> bool {
    let ok = PasswordHash::new(hash.unwrap_or(DUMMY_HASH))
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    ok && hash.is_some()
}

/// A valid hash of a random password, verified against when the user name is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3g5y0xZ2H0r5bKk2mE6rJ0bX6n8R1c3l9b2Qe4tYw1s";

/// Hashes `password` with argon2id and the crate's default (OWASP) parameters.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    hash_password_with(password, Params::default())
}

/// Hashes `password` with argon2id and the given parameters (cheap ones keep tests fast).
pub fn hash_password_with(password: &str, params: Params) -> Result<String, UsersError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| UsersError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UsersError::Hash(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap(pw: &str) -> String {
        hash_password_with(pw, Params::new(8, 1, 1, None).unwrap()).unwrap()
    }

    #[test]
    fn verifies_only_the_right_password() {
        let users = Users::new().with_hash("ann", cheap("s3cret"));
        assert!(users.verify("ann", "s3cret"));
        assert!(!users.verify("ann", "wrong"));
        assert!(!users.verify("bob", "s3cret"));
        assert!(!format!("{users:?}").contains("argon2"));
    }

    #[test]
    fn entries_must_be_name_and_phc() {
        let mut users = Users::new();
        let good = format!("ann:{}", cheap("x"));
        users
            .add_entries("test", [good.as_str()].into_iter())
            .unwrap();
        assert!(users.names().eq(["ann"]));
        assert_eq!(users.role("ann"), Some(Role::Admin), "the default role");
        let viewer = format!("bob:viewer:{}", cheap("y"));
        users
            .add_entries("test", [viewer.as_str()].into_iter())
            .unwrap();
        assert_eq!(users.role("bob"), Some(Role::Viewer));
        assert!(users.verify("bob", "y"));
        let bad_role = format!("carol:root:{}", cheap("z"));
        for bad in [
            "ann",
            ":$argon2id$v=19$x",
            "ann:plaintext",
            bad_role.as_str(),
        ] {
            let e = users.add_entries("test", [bad].into_iter()).unwrap_err();
            assert!(e.to_string().starts_with("test: entry 1"), "{e}");
        }
    }
}
