//! Network devices: what a command runs on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ids::DeviceId;

/// A network device known to netauto.
///
/// Holds a *reference* to credentials ([`Device::credential_ref`]), never a secret: the
/// transport resolves the reference through its credential provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Database id.
    pub id: DeviceId,
    /// Unique, human-readable name (`core-sw-01`).
    pub name: String,
    /// Host name or address to connect to.
    pub host: String,
    /// TCP port (22 for SSH).
    pub port: u16,
    /// Platform profile name (`cisco_ios`, `arista_eos`, `junos`, `linux`, …).
    pub platform: String,
    /// Login user name.
    pub username: String,
    /// Key under which the transport's credential provider finds the secret; several
    /// separated by commas are tried in order, the next only after an authentication
    /// failure (the run records which one logged in).
    pub credential_ref: Option<String>,
    /// Free-form tags for filtering.
    pub tags: Vec<String>,
    /// Site or location, for filtering.
    pub site: Option<String>,
    /// The jump host(s) the device is reached through: a name from the SSH client's jump-host
    /// file, or `user@host:port`; several separated by commas, outermost first. `None`: the
    /// site's jump host if the file names one, else direct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump_host: Option<String>,
    /// Per-device variables for command templates (`show interface {{ vars.uplink }}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

/// A device to be created; the store assigns the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDevice {
    /// Unique, human-readable name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Platform profile name.
    pub platform: String,
    /// Login user name.
    pub username: String,
    /// Credential reference (never the secret).
    pub credential_ref: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Site.
    pub site: Option<String>,
    /// Jump host(s) (see [`Device::jump_host`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump_host: Option<String>,
    /// Variables for command templates (see [`Device::vars`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

impl NewDevice {
    /// A device on port 22 with no credential reference, tags or site.
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        platform: impl Into<String>,
        username: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            port: 22,
            platform: platform.into(),
            username: username.into(),
            credential_ref: None,
            tags: Vec::new(),
            site: None,
            jump_host: None,
            vars: BTreeMap::new(),
        }
    }

    /// Sets the TCP port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the credential reference.
    pub fn with_credential_ref(mut self, credential_ref: impl Into<String>) -> Self {
        self.credential_ref = Some(credential_ref.into());
        self
    }

    /// Sets the tags.
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the site.
    pub fn with_site(mut self, site: impl Into<String>) -> Self {
        self.site = Some(site.into());
        self
    }

    /// Sets the jump host(s).
    pub fn with_jump_host(mut self, jump_host: impl Into<String>) -> Self {
        self.jump_host = Some(jump_host.into());
        self
    }

    /// Sets a template variable.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Turns this into a [`Device`] with the given id.
    pub fn into_device(self, id: DeviceId) -> Device {
        Device {
            id,
            name: self.name,
            host: self.host,
            port: self.port,
            platform: self.platform,
            username: self.username,
            credential_ref: self.credential_ref,
            tags: self.tags,
            site: self.site,
            jump_host: self.jump_host,
            vars: self.vars,
        }
    }
}
