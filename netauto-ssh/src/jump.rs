//! Jump hosts (bastions): reaching a device through one or more SSH servers that forward a
//! `direct-tcpip` channel to it, as `ssh -J` does.
//!
//! A device names its jump host(s) in [`Device::jump_host`]: names from the jump-host file
//! ([`JumpHosts::from_file`], `NETAUTO_SSH_JUMP_HOSTS`) or inline `user@host:port`, several
//! separated by commas, outermost first. A device without one uses its site's jump host when
//! the file names one (`[sites]`), `direct` overrides the site's. Each hop is logged into with
//! its own credential reference and its host key checked like a device's (known_hosts by its
//! own address). One SSH connection per jump host (per chain of hops) carries the channels of
//! every device behind it, at most [`DEFAULT_CHANNELS_PER_JUMP`] at once; a lost connection
//! is opened again by the next device that needs it.
//!
//! ```toml
//! # NETAUTO_SSH_JUMP_HOSTS=/etc/netauto/jump_hosts.toml
//! [jump_hosts.dmz]
//! address = "netops@dmz-gw.example.net:22"
//! credential_ref = "bastion"
//!
//! [jump_hosts.east]
//! address = "netops@10.20.0.5"     # port 22
//! credential_ref = "bastion"
//! via = "dmz"                      # reached through dmz: two hops
//!
//! [sites]
//! east-dc = "east"                 # devices of site east-dc go through east
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use netauto_core::{Device, NetworkError};
use russh::ChannelStream;
use russh::client::{Handle, Msg};
use serde::Deserialize;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::client::{ClientHandler, Inner};

/// The jump-host file (`NETAUTO_SSH_JUMP_HOSTS`): named jump hosts and site defaults.
pub const JUMP_HOSTS_VAR: &str = "NETAUTO_SSH_JUMP_HOSTS";
/// Channels open at once through one jump-host connection.
pub const DEFAULT_CHANNELS_PER_JUMP: usize = 64;
/// The most hops of one route.
pub const MAX_HOPS: usize = 8;

/// One named jump host of the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JumpHost {
    /// `[user@]host[:port]` (the device's user and port 22 when left out).
    pub address: String,
    /// Credential reference of its login (the device's when left out).
    #[serde(default)]
    pub credential_ref: Option<String>,
    /// Another jump host (a name) this one is reached through.
    #[serde(default)]
    pub via: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    jump_hosts: BTreeMap<String, JumpHost>,
    #[serde(default)]
    sites: BTreeMap<String, String>,
}

/// Named jump hosts and each site's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JumpHosts {
    named: BTreeMap<String, JumpHost>,
    sites: BTreeMap<String, String>,
}

/// One hop of a route, resolved for one device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hop {
    /// Login user.
    pub user: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Credential reference of the login.
    pub credential_ref: Option<String>,
}

impl Hop {
    /// `user@host:port`.
    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

impl JumpHosts {
    /// No jump hosts: devices are reached directly unless they name inline hops.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a jump-host file (TOML, see the [module docs](self)); checks every address and
    /// `via` (names exist, no loops), naming the problem.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, String> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads jump hosts from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        let hosts = Self {
            named: file.jump_hosts,
            sites: file.sites,
        };
        for (name, jump) in &hosts.named {
            parse_address(&jump.address).map_err(|e| format!("jump host {name:?}: {e}"))?;
            hosts
                .expand(name, "x", None, &mut Vec::new(), 0)
                .map_err(|e| format!("jump host {name:?}: {e}"))?;
        }
        for (site, jump) in &hosts.sites {
            if jump != "direct" {
                hosts
                    .expand_spec(jump, "x", None)
                    .map_err(|e| format!("site {site:?}: {e}"))?;
            }
        }
        Ok(hosts)
    }

    /// Adds a named jump host.
    pub fn with(mut self, name: impl Into<String>, jump: JumpHost) -> Self {
        self.named.insert(name.into(), jump);
        self
    }

    /// Makes `jump` (a name or inline hops) the default of the devices of `site`.
    pub fn with_site(mut self, site: impl Into<String>, jump: impl Into<String>) -> Self {
        self.sites.insert(site.into(), jump.into());
        self
    }

    /// The hops to `device`, outermost first (empty: direct).
    pub fn route(&self, device: &Device) -> Result<Vec<Hop>, String> {
        let spec = device.jump_host.as_deref().or_else(|| {
            device
                .site
                .as_ref()
                .and_then(|s| self.sites.get(s))
                .map(String::as_str)
        });
        match spec.map(str::trim) {
            None | Some("" | "direct") => Ok(Vec::new()),
            Some(spec) => {
                self.expand_spec(spec, &device.username, device.credential_ref.as_deref())
            }
        }
    }

    fn expand_spec(
        &self,
        spec: &str,
        user: &str,
        credential_ref: Option<&str>,
    ) -> Result<Vec<Hop>, String> {
        let mut hops = Vec::new();
        for part in spec.split(',').map(str::trim) {
            if self.named.contains_key(part) {
                self.expand(part, user, credential_ref, &mut hops, 0)?;
            } else {
                let (u, host, port) = parse_address(part).map_err(|e| {
                    format!("{part:?} is neither a jump host of the file nor an address: {e}")
                })?;
                hops.push(Hop {
                    user: u.unwrap_or(user).to_owned(),
                    host: host.to_owned(),
                    port,
                    credential_ref: credential_ref.map(str::to_owned),
                });
            }
        }
        if hops.len() > MAX_HOPS {
            return Err(format!("{} hops, at most {MAX_HOPS}", hops.len()));
        }
        Ok(hops)
    }

    /// Appends the hops of the named jump host (its `via` chain first).
    fn expand(
        &self,
        name: &str,
        user: &str,
        credential_ref: Option<&str>,
        hops: &mut Vec<Hop>,
        depth: usize,
    ) -> Result<(), String> {
        if depth >= MAX_HOPS {
            return Err(format!("`via` goes {MAX_HOPS} deep: a loop?"));
        }
        let jump = self
            .named
            .get(name)
            .ok_or_else(|| format!("no jump host named {name:?}"))?;
        if let Some(via) = &jump.via {
            self.expand(via, user, credential_ref, hops, depth + 1)?;
        }
        let (u, host, port) = parse_address(&jump.address)?;
        hops.push(Hop {
            user: u.unwrap_or(user).to_owned(),
            host: host.to_owned(),
            port,
            credential_ref: jump
                .credential_ref
                .clone()
                .or_else(|| credential_ref.map(str::to_owned)),
        });
        Ok(())
    }
}

/// `[user@]host[:port]`, with `[v6]:port` for IPv6.
fn parse_address(address: &str) -> Result<(Option<&str>, &str, u16), String> {
    let (user, rest) = match address.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u), r),
        Some(_) => return Err(format!("{address:?}: empty user before '@'")),
        None => (None, address),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{address:?}: '[' without ']'"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (rest, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{address:?}: bad host"));
    }
    let port = match port {
        None => 22,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{address:?}: bad port {p:?}"))?,
    };
    Ok((user, host, port))
}

/// One logged-in connection to a jump host.
pub(crate) struct JumpConn {
    handle: Handle<ClientHandler>,
    slots: Arc<Semaphore>,
    label: String,
    /// The hop before this one, kept open as long as this one is.
    _parent: Option<Arc<JumpConn>>,
}

/// Keeps a jump route open while a device session uses it.
pub(crate) struct JumpLease {
    _conn: Arc<JumpConn>,
    _permit: OwnedSemaphorePermit,
}

impl JumpLease {
    /// Whether the jump connection under it is gone.
    pub(crate) fn is_lost(&self) -> bool {
        self._conn.handle.is_closed()
    }
}

type Slot = Arc<Mutex<Option<Arc<JumpConn>>>>;

/// The open jump-host connections of one client, one per chain of hops.
#[derive(Default)]
pub(crate) struct JumpPool {
    conns: Mutex<HashMap<Vec<Hop>, Slot>>,
    opened: AtomicUsize,
    channels: AtomicUsize,
}

impl std::fmt::Debug for JumpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JumpPool")
            .field("opened", &self.opened.load(Ordering::Relaxed))
            .field("channels", &self.channels.load(Ordering::Relaxed))
            .finish()
    }
}

impl JumpPool {
    /// Jump-host connections opened so far (reconnections included).
    pub(crate) fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    /// `direct-tcpip` channels opened to devices so far.
    pub(crate) fn channels(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
    }

    /// A stream to `host:port` through `chain`, and the lease that keeps the route open.
    pub(crate) async fn open(
        &self,
        inner: &Inner,
        chain: &[Hop],
        host: &str,
        port: u16,
    ) -> Result<(ChannelStream<Msg>, JumpLease), NetworkError> {
        // A connection found lost when the channel is asked for is opened again, once.
        let mut retried = false;
        loop {
            let conn = self.conn(inner, chain).await?;
            let permit = conn.slots.clone().acquire_owned().await.map_err(|_| {
                NetworkError::Closed(format!("jump host {} is closing", conn.label))
            })?;
            match conn
                .handle
                .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
                .await
            {
                Ok(channel) => {
                    self.channels.fetch_add(1, Ordering::Relaxed);
                    return Ok((
                        channel.into_stream(),
                        JumpLease {
                            _conn: conn,
                            _permit: permit,
                        },
                    ));
                }
                Err(e) if !retried && !matches!(e, russh::Error::ChannelOpenFailure(_)) => {
                    tracing::info!(
                        event = "netauto.ssh.jump_lost",
                        jump_host = %conn.label,
                        error = %e,
                        "jump-host connection lost; opening it again"
                    );
                    retried = true;
                    self.forget(chain, &conn).await;
                }
                Err(e) => {
                    return Err(NetworkError::Connect {
                        host: format!("{host}:{port}"),
                        message: format!(
                            "jump host {} did not open a channel to it: {e}",
                            conn.label
                        ),
                    });
                }
            }
        }
    }

    /// Drops the connection of `lease` from the pool.
    pub(crate) async fn forget_lease(&self, chain: &[Hop], lease: &JumpLease) {
        self.forget(chain, &lease._conn).await;
    }

    /// Drops `conn` from the pool (if it is still the pooled one for `chain`).
    async fn forget(&self, chain: &[Hop], conn: &Arc<JumpConn>) {
        let slot = self.conns.lock().await.get(chain).cloned();
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
                *slot = None;
            }
        }
    }

    /// The connection to the last hop of `chain`, opened (through the hops before it) when
    /// there is none or it was lost.
    fn conn<'a>(
        &'a self,
        inner: &'a Inner,
        chain: &'a [Hop],
    ) -> BoxFuture<'a, Result<Arc<JumpConn>, NetworkError>> {
        Box::pin(async move {
            let slot = self
                .conns
                .lock()
                .await
                .entry(chain.to_vec())
                .or_default()
                .clone();
            let mut slot = slot.lock().await;
            if let Some(conn) = slot.as_ref().filter(|c| !c.handle.is_closed()) {
                return Ok(conn.clone());
            }
            let (hop, before) = match chain.split_last() {
                Some(split) => split,
                None => unreachable!("a route has at least one hop"),
            };
            let label = hop.label();
            let (handle, parent) = match before {
                [] => {
                    let socket = inner.tcp(&hop.host, hop.port).await?;
                    (inner.login_hop(hop, socket).await?, None)
                }
                _ => {
                    let parent = self.conn(inner, before).await?;
                    let channel = parent
                        .handle
                        .channel_open_direct_tcpip(&hop.host, u32::from(hop.port), "127.0.0.1", 0)
                        .await
                        .map_err(|e| NetworkError::Connect {
                            host: label.clone(),
                            message: format!(
                                "jump host {} did not open a channel to the next jump host: {e}",
                                parent.label
                            ),
                        })?;
                    let handle = inner.login_hop(hop, channel.into_stream()).await?;
                    (handle, Some(parent))
                }
            };
            tracing::debug!(event = "netauto.ssh.jump_connected", jump_host = %label);
            self.opened.fetch_add(1, Ordering::Relaxed);
            let conn = Arc::new(JumpConn {
                handle,
                slots: Arc::new(Semaphore::new(inner.config.channels_per_jump.max(1))),
                label,
                _parent: parent,
            });
            *slot = Some(conn.clone());
            Ok(conn)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netauto_core::{DeviceId, NewDevice};

    fn device(jump: Option<&str>, site: Option<&str>) -> Device {
        let mut d =
            NewDevice::new("r1", "10.1.1.1", "cisco_ios", "ops").with_credential_ref("tacacs");
        if let Some(j) = jump {
            d = d.with_jump_host(j);
        }
        if let Some(s) = site {
            d = d.with_site(s);
        }
        d.into_device(DeviceId(1))
    }

    const FILE: &str = r#"
[jump_hosts.dmz]
address = "netops@dmz-gw:2222"
credential_ref = "bastion"

[jump_hosts.east]
address = "10.20.0.5"
via = "dmz"

[sites]
east-dc = "east"
lab = "direct"
"#;

    #[test]
    fn routes_expand_names_via_chains_inline_hops_and_site_defaults() {
        let hosts = JumpHosts::from_toml(FILE).unwrap();
        let hop = |user: &str, host: &str, port, cred: &str| Hop {
            user: user.into(),
            host: host.into(),
            port,
            credential_ref: Some(cred.into()),
        };
        let dmz = hop("netops", "dmz-gw", 2222, "bastion");
        let east = hop("ops", "10.20.0.5", 22, "tacacs");
        assert_eq!(hosts.route(&device(None, None)).unwrap(), vec![]);
        assert_eq!(hosts.route(&device(None, Some("lab"))).unwrap(), vec![]);
        assert_eq!(
            hosts.route(&device(None, Some("east-dc"))).unwrap(),
            vec![dmz.clone(), east.clone()]
        );
        assert_eq!(
            hosts
                .route(&device(Some("direct"), Some("east-dc")))
                .unwrap(),
            vec![]
        );
        assert_eq!(
            hosts
                .route(&device(Some("dmz, admin@[2001:db8::1]:2200"), None))
                .unwrap(),
            vec![dmz, hop("admin", "2001:db8::1", 2200, "tacacs")]
        );
        let err = hosts.route(&device(Some("nowhere:x"), None)).unwrap_err();
        assert!(
            err.contains("neither a jump host of the file nor an address"),
            "{err}"
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        for (text, needle) in [
            (
                "[jump_hosts.a]\naddress = \"h\"\nvia = \"b\"\n",
                "no jump host named \"b\"",
            ),
            (
                "[jump_hosts.a]\naddress = \"h\"\nvia = \"b\"\n[jump_hosts.b]\naddress = \"h\"\nvia = \"a\"\n",
                "a loop",
            ),
            ("[jump_hosts.a]\naddress = \"h:0\"\n", "bad port"),
            ("[sites]\nx = \"nope host\"\n", "site \"x\""),
            ("[jump_hosts.a]\nadress = \"h\"\n", "unknown field"),
        ] {
            let err = JumpHosts::from_toml(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
