//! Credential providers: where passwords and private keys come from.
//!
//! A [`Device`](netauto_core::Device) carries only a credential *reference*; the client asks
//! its [`CredentialProvider`] for the [`Credential`] behind it just before logging in. Secrets
//! are wrapped in [`Secret`], whose `Debug` and `Display` print `***`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

/// A secret string (password, passphrase, PEM key). Never printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself. Call only where it is handed to the SSH library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Overwrite the bytes so the secret does not linger in freed memory.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Where a private key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PrivateKeySource {
    /// An OpenSSH/PEM key file on disk.
    File(PathBuf),
    /// The key text itself (OpenSSH or PEM format).
    Memory(Secret),
}

impl fmt::Debug for PrivateKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Memory(_) => f.write_str("Memory(***)"),
        }
    }
}

/// What a device login may use. The client tries the private key first, then the password,
/// then keyboard-interactive answering password prompts with the password.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credential {
    /// Password (also used for keyboard-interactive password prompts).
    pub password: Option<Secret>,
    /// Private key.
    pub private_key: Option<PrivateKeySource>,
    /// Passphrase of an encrypted private key.
    pub passphrase: Option<Secret>,
    /// The secret of the platform's privilege escalation (`enable`); the password is used
    /// when there is none.
    pub enable_secret: Option<Secret>,
}

impl Credential {
    /// A password credential.
    pub fn password(password: impl Into<String>) -> Self {
        Self {
            password: Some(Secret::new(password)),
            ..Self::default()
        }
    }

    /// A private-key credential read from `path`.
    pub fn key_file(path: impl Into<PathBuf>) -> Self {
        Self {
            private_key: Some(PrivateKeySource::File(path.into())),
            ..Self::default()
        }
    }

    /// A private-key credential from the key text.
    pub fn key_pem(pem: impl Into<String>) -> Self {
        Self {
            private_key: Some(PrivateKeySource::Memory(Secret::new(pem))),
            ..Self::default()
        }
    }

    /// Sets the enable secret.
    pub fn with_enable_secret(mut self, secret: impl Into<String>) -> Self {
        self.enable_secret = Some(Secret::new(secret));
        self
    }

    /// The secret typed when the platform escalates privileges: the enable secret, else the
    /// password.
    pub fn escalation_secret(&self) -> Option<&Secret> {
        self.enable_secret.as_ref().or(self.password.as_ref())
    }

    /// Sets the key passphrase.
    pub fn with_passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(Secret::new(passphrase));
        self
    }

    /// Sets the password.
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password));
        self
    }

    fn is_empty(&self) -> bool {
        self.password.is_none() && self.private_key.is_none()
    }
}

/// Why a credential could not be found. Never contains a secret.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Nothing is stored under the reference.
    #[error("no credential for reference {0:?}")]
    NotFound(String),
    /// The store could not be read or is malformed.
    #[error("credential store unreadable: {0}")]
    Unreadable(String),
}

/// Resolves credential references to secrets.
#[async_trait]
pub trait CredentialProvider: Send + Sync + fmt::Debug + 'static {
    /// The credential stored under `reference`.
    async fn credential(&self, reference: &str) -> Result<Credential, CredentialError>;
}

#[async_trait]
impl<T: CredentialProvider + ?Sized> CredentialProvider for Arc<T> {
    async fn credential(&self, reference: &str) -> Result<Credential, CredentialError> {
        (**self).credential(reference).await
    }
}

/// Credentials held in memory (tests, the simulator, hosts that load secrets themselves).
#[derive(Clone, Default)]
pub struct StaticCredentials {
    entries: HashMap<String, Credential>,
}

impl StaticCredentials {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the credential under `reference`.
    pub fn with(mut self, reference: impl Into<String>, credential: Credential) -> Self {
        self.insert(reference, credential);
        self
    }

    /// Adds (or replaces) the credential under `reference`.
    pub fn insert(&mut self, reference: impl Into<String>, credential: Credential) {
        self.entries.insert(reference.into(), credential);
    }

    /// How many references are stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut refs: Vec<&String> = self.entries.keys().collect();
        refs.sort();
        f.debug_struct("StaticCredentials")
            .field("references", &refs)
            .finish()
    }
}

#[async_trait]
impl CredentialProvider for StaticCredentials {
    async fn credential(&self, reference: &str) -> Result<Credential, CredentialError> {
        self.entries
            .get(reference)
            .cloned()
            .ok_or_else(|| CredentialError::NotFound(reference.to_owned()))
    }
}

/// Credentials from environment variables.
///
/// Reference `core-lab` with the default prefix `NETAUTO_SSH` reads
/// `NETAUTO_SSH_CORE_LAB_PASSWORD`, `NETAUTO_SSH_CORE_LAB_KEY_FILE`,
/// `NETAUTO_SSH_CORE_LAB_KEY` (key text), `NETAUTO_SSH_CORE_LAB_PASSPHRASE` and
/// `NETAUTO_SSH_CORE_LAB_ENABLE_SECRET`: the reference is
/// upper-cased and every character that is not a letter or digit becomes `_`.
#[derive(Debug, Clone)]
pub struct EnvCredentials {
    prefix: String,
}

impl Default for EnvCredentials {
    fn default() -> Self {
        Self {
            prefix: "NETAUTO_SSH".to_owned(),
        }
    }
}

impl EnvCredentials {
    /// Reads variables starting with `NETAUTO_SSH_`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads variables starting with `<prefix>_`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The variable name of `field` (`PASSWORD`, `KEY_FILE`, `KEY`, `PASSPHRASE`) for
    /// `reference`.
    pub fn variable(&self, reference: &str, field: &str) -> String {
        let name: String = reference
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}_{name}_{field}", self.prefix)
    }

    fn read(&self, reference: &str, field: &str) -> Option<String> {
        std::env::var(self.variable(reference, field))
            .ok()
            .filter(|v| !v.is_empty())
    }
}

#[async_trait]
impl CredentialProvider for EnvCredentials {
    async fn credential(&self, reference: &str) -> Result<Credential, CredentialError> {
        let private_key = match (
            self.read(reference, "KEY"),
            self.read(reference, "KEY_FILE"),
        ) {
            (Some(pem), _) => Some(PrivateKeySource::Memory(Secret::new(pem))),
            (None, Some(path)) => Some(PrivateKeySource::File(path.into())),
            (None, None) => None,
        };
        let credential = Credential {
            password: self.read(reference, "PASSWORD").map(Secret::new),
            private_key,
            passphrase: self.read(reference, "PASSPHRASE").map(Secret::new),
            enable_secret: self.read(reference, "ENABLE_SECRET").map(Secret::new),
        };
        if credential.is_empty() {
            return Err(CredentialError::NotFound(reference.to_owned()));
        }
        Ok(credential)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    password: Option<Secret>,
    private_key_file: Option<PathBuf>,
    private_key: Option<Secret>,
    passphrase: Option<Secret>,
    enable_secret: Option<Secret>,
}

/// Credentials from a JSON file mapping references to entries:
///
/// ```json
/// { "core-lab": { "password": "…" },
///   "edge":     { "private_key_file": "/etc/netauto/edge_ed25519", "passphrase": "…" } }
/// ```
///
/// Fields: `password`, `private_key_file`, `private_key` (key text), `passphrase`,
/// `enable_secret` (the platform's privilege escalation; the password when absent). The file is
/// read when the provider is opened; [`FileCredentials::reload`] reads it again. On Unix a file
/// readable by group or others is logged as a warning.
#[derive(Clone)]
pub struct FileCredentials {
    path: PathBuf,
    entries: Arc<std::sync::RwLock<StaticCredentials>>,
}

impl fmt::Debug for FileCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCredentials")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileCredentials {
    /// Reads the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CredentialError> {
        let path = path.as_ref().to_path_buf();
        let entries = Self::load(&path)?;
        Ok(Self {
            path,
            entries: Arc::new(std::sync::RwLock::new(entries)),
        })
    }

    /// Reads the file again, replacing what was loaded.
    pub fn reload(&self) -> Result<(), CredentialError> {
        let entries = Self::load(&self.path)?;
        let mut guard = self
            .entries
            .write()
            .map_err(|_| CredentialError::Unreadable("lock poisoned".to_owned()))?;
        *guard = entries;
        Ok(())
    }

    fn load(path: &Path) -> Result<StaticCredentials, CredentialError> {
        let unreadable =
            |e: &dyn fmt::Display| CredentialError::Unreadable(format!("{}: {e}", path.display()));
        warn_if_shared(path);
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(&e))?;
        // serde_json errors name the position, never the value, so they are safe to show.
        let raw: HashMap<String, FileEntry> =
            serde_json::from_str(&text).map_err(|e| unreadable(&e))?;
        let mut store = StaticCredentials::new();
        for (reference, entry) in raw {
            let private_key = match (entry.private_key, entry.private_key_file) {
                (Some(pem), _) => Some(PrivateKeySource::Memory(pem)),
                (None, Some(file)) => Some(PrivateKeySource::File(file)),
                (None, None) => None,
            };
            store.insert(
                reference,
                Credential {
                    password: entry.password,
                    private_key,
                    passphrase: entry.passphrase,
                    enable_secret: entry.enable_secret,
                },
            );
        }
        Ok(store)
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            event = "netauto.ssh.credentials_readable",
            path = %path.display(),
            "credential file is readable by group or others; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

#[async_trait]
impl CredentialProvider for FileCredentials {
    async fn credential(&self, reference: &str) -> Result<Credential, CredentialError> {
        let entries = self
            .entries
            .read()
            .map_err(|_| CredentialError::Unreadable("lock poisoned".to_owned()))?
            .clone();
        entries.credential(reference).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let cred = Credential::password("hunter2")
            .with_passphrase("s3cret-pass")
            .with_password("hunter2");
        let key = Credential::key_pem("-----BEGIN OPENSSH PRIVATE KEY-----abc");
        let shown = format!("{cred:?} {key:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("BEGIN"), "{shown}");
        let store = StaticCredentials::new().with("lab", cred);
        assert!(!format!("{store:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn env_credentials_read_variables_named_after_the_reference() {
        let env = EnvCredentials::new().with_prefix("NETAUTO_SSH_UNIT_TEST_ENV");
        assert_eq!(
            env.variable("core-lab.1", "PASSWORD"),
            "NETAUTO_SSH_UNIT_TEST_ENV_CORE_LAB_1_PASSWORD"
        );
        unsafe_set("NETAUTO_SSH_UNIT_TEST_ENV_CORE_LAB_1_PASSWORD", "pw");
        let cred = env.credential("core-lab.1").await.expect("found");
        assert_eq!(cred.password.as_ref().map(Secret::expose), Some("pw"));
        assert!(matches!(
            env.credential("missing").await,
            Err(CredentialError::NotFound(_))
        ));
    }

    #[allow(unsafe_code)]
    fn unsafe_set(name: &str, value: &str) {
        // SAFETY: tests in this crate never read this variable from another thread.
        unsafe { std::env::set_var(name, value) }
    }

    #[tokio::test]
    async fn file_credentials_load_json_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("creds.json");
        std::fs::write(
            &path,
            r#"{"lab": {"password": "pw1"}, "edge": {"private_key_file": "/k", "passphrase": "pp"}}"#,
        )
        .expect("write");
        let file = FileCredentials::open(&path).expect("open");
        let lab = file.credential("lab").await.expect("lab");
        assert_eq!(lab.password.as_ref().map(Secret::expose), Some("pw1"));
        let edge = file.credential("edge").await.expect("edge");
        assert_eq!(
            edge.private_key,
            Some(PrivateKeySource::File(PathBuf::from("/k")))
        );
        std::fs::write(&path, r#"{"lab": {"password": "pw2"}}"#).expect("rewrite");
        file.reload().expect("reload");
        let lab = file.credential("lab").await.expect("lab");
        assert_eq!(lab.password.as_ref().map(Secret::expose), Some("pw2"));
        assert!(file.credential("edge").await.is_err());
        std::fs::write(&path, r#"{"lab": {"pasword": "typo-secret"}}"#).expect("rewrite");
        let err = file.reload().expect_err("unknown field");
        assert!(!err.to_string().contains("typo-secret"), "{err}");
    }
}
