//! [`DeviceFarm`]: starts simulated devices and tells clients how to reach them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use netauto_core::NewDevice;
use russh::keys::{Algorithm, PrivateKey, PublicKey};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::DeviceSpec;
use super::server::{ActiveGuard, Counters, Gate, SimHandler};
use crate::algorithms;
use crate::config::{LEGACY_TAG, SshClientConfig};
use crate::credentials::{Credential, StaticCredentials};
use crate::known_hosts::{HostKeyPolicy, KnownHosts, fingerprint};

/// How to reach one simulated device: everything a device inventory needs, and no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimDevice {
    /// Device name.
    pub name: String,
    /// Always `127.0.0.1`.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Platform.
    pub platform: String,
    /// Login user.
    pub username: String,
    /// Reference of its credential in [`DeviceFarm::credentials`] (`sim:<name>`).
    pub credential_ref: String,
    /// SHA-256 fingerprint of its (main) host key: see [`DeviceFarm::host_keys`] for all.
    pub host_key_fingerprint: String,
    /// Tags: [`LEGACY_TAG`] on legacy-only devices.
    pub tags: Vec<String>,
}

impl SimDevice {
    /// The device as a [`NewDevice`] to create in a store.
    pub fn to_new_device(&self) -> NewDevice {
        NewDevice::new(&self.name, &self.host, &self.platform, &self.username)
            .with_port(self.port)
            .with_credential_ref(&self.credential_ref)
            .with_tags(self.tags.clone())
            .with_site("simulator")
    }
}

/// Counters of one simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimStats {
    /// Connections accepted so far.
    pub connections: usize,
    /// Connections open now.
    pub active: usize,
    /// Most connections open at once.
    pub max_active: usize,
    /// Commands started (exec or shell).
    pub commands: usize,
    /// Rejected logins.
    pub auth_failures: usize,
    /// `direct-tcpip` channels forwarded (as a jump host).
    pub forwards: usize,
}

struct Running {
    device: SimDevice,
    spec: Arc<DeviceSpec>,
    /// One key per type, the main one first.
    host_keys: Vec<PublicKey>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

/// A set of running simulated devices. Dropping it stops them.
pub struct DeviceFarm {
    devices: Vec<Running>,
    by_name: HashMap<String, usize>,
    /// `true` while commands may run (see [`DeviceFarm::pause`]).
    open: watch::Sender<bool>,
}

impl std::fmt::Debug for DeviceFarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceFarm")
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

impl Drop for DeviceFarm {
    fn drop(&mut self) {
        for running in &self.devices {
            running.task.abort();
        }
    }
}

impl DeviceFarm {
    /// Starts one SSH server per spec on `127.0.0.1` (a free port each), each with fresh
    /// host keys (one Ed25519 key unless [`DeviceSpec::host_key_algorithms`] lists others;
    /// one RSA key on legacy-only devices). Needs a tokio runtime.
    pub async fn start(specs: Vec<DeviceSpec>) -> std::io::Result<Self> {
        let mut devices = Vec::with_capacity(specs.len());
        let mut by_name = HashMap::new();
        let (open, _) = watch::channel(true);
        for spec in specs {
            if by_name.contains_key(&spec.name) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("two simulated devices are named {:?}", spec.name),
                ));
            }
            let running = start_device(spec, Gate(open.subscribe())).await?;
            by_name.insert(running.device.name.clone(), devices.len());
            devices.push(running);
        }
        Ok(Self {
            devices,
            by_name,
            open,
        })
    }

    /// Holds every command from now on until [`resume`](Self::resume): devices still accept
    /// connections and logins, and count each command in [`SimStats::commands`] when it
    /// arrives, but answer none. For tests that must act before any device answers (e.g.
    /// subscribe to a bulk's progress before its first outcome). A client's idle timeout
    /// still applies to a held command.
    pub fn pause(&self) {
        self.open.send_replace(false);
    }

    /// Lets held and future commands run.
    pub fn resume(&self) {
        self.open.send_replace(true);
    }

    /// Whether commands are held.
    pub fn is_paused(&self) -> bool {
        !*self.open.borrow()
    }

    /// The devices, in spec order.
    pub fn devices(&self) -> Vec<SimDevice> {
        self.devices.iter().map(|r| r.device.clone()).collect()
    }

    /// The devices as [`NewDevice`]s to create in a store.
    pub fn new_devices(&self) -> Vec<NewDevice> {
        self.devices
            .iter()
            .map(|r| r.device.to_new_device())
            .collect()
    }

    /// One device by name.
    pub fn device(&self, name: &str) -> Option<SimDevice> {
        self.by_name
            .get(name)
            .map(|i| self.devices[*i].device.clone())
    }

    /// The spec a device was started with.
    pub fn spec(&self, name: &str) -> Option<&DeviceSpec> {
        self.by_name.get(name).map(|i| &*self.devices[*i].spec)
    }

    /// Counters of one device.
    pub fn stats(&self, name: &str) -> Option<SimStats> {
        self.by_name.get(name).map(|i| {
            let c = &self.devices[*i].counters;
            SimStats {
                connections: c.connections.load(Ordering::SeqCst),
                active: c.active.load(Ordering::SeqCst),
                max_active: c.max_active.load(Ordering::SeqCst),
                commands: c.commands.load(Ordering::SeqCst),
                auth_failures: c.auth_failures.load(Ordering::SeqCst),
                forwards: c.forwards.load(Ordering::SeqCst),
            }
        })
    }

    /// The devices' passwords under their credential references (`sim:<name>`).
    pub fn credentials(&self) -> StaticCredentials {
        let mut creds = StaticCredentials::new();
        for r in &self.devices {
            creds.insert(
                r.device.credential_ref.clone(),
                Credential::password(r.spec.password.clone())
                    .with_enable_secret(r.spec.enable_secret.clone()),
            );
        }
        creds
    }

    /// The host keys of one device, one per type, its main key first (see
    /// [`DeviceSpec::host_key_algorithms`]).
    pub fn host_keys(&self, name: &str) -> Option<&[PublicKey]> {
        self.by_name
            .get(name)
            .map(|i| self.devices[*i].host_keys.as_slice())
    }

    /// A known_hosts store trusting exactly the farm's main host keys (one per device, as
    /// [`write_known_hosts`](Self::write_known_hosts) writes them).
    pub fn known_hosts(&self) -> KnownHosts {
        let known = KnownHosts::new();
        for r in &self.devices {
            if let Some(key) = r.host_keys.first() {
                known.insert(&r.device.host, r.device.port, key.clone());
            }
        }
        known
    }

    /// A known_hosts store trusting, for each device, only its host key of type
    /// `algorithm` (any RSA algorithm names a device's RSA key); a device without one has
    /// nothing recorded. Like a file written by `ssh-keyscan -t <type>`; write it out with
    /// [`KnownHosts::write_memory_to`].
    pub fn known_hosts_of(&self, algorithm: &Algorithm) -> KnownHosts {
        let known = KnownHosts::new();
        for r in &self.devices {
            let of_type = r
                .host_keys
                .iter()
                .filter(|k| same_key_type(&k.algorithm(), algorithm));
            for key in of_type {
                known.insert(&r.device.host, r.device.port, key.clone());
            }
        }
        known
    }

    /// A client configuration for the farm: its credentials, strict checking against its
    /// host keys, and no connection-rate limit.
    pub fn client_config(&self) -> SshClientConfig {
        let mut config = SshClientConfig::new(self.credentials())
            .with_host_keys(HostKeyPolicy::Strict(self.known_hosts()));
        config.pacing.connections_per_second = None;
        config
    }

    /// Writes the inventory as JSON: `{"devices": [SimDevice…]}` (no secrets).
    pub fn write_inventory(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Inventory {
            devices: Vec<SimDevice>,
        }
        let json = serde_json::to_vec_pretty(&Inventory {
            devices: self.devices(),
        })
        .map_err(std::io::Error::other)?;
        std::fs::write(path, json)
    }

    /// Writes the farm's main host keys (one per device) as an OpenSSH known_hosts file.
    pub fn write_known_hosts(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        self.known_hosts().write_memory_to(path)
    }
}

/// Whether keys of types `a` and `b` are the same kind of key (every RSA signature algorithm
/// names the one RSA key type).
fn same_key_type(a: &Algorithm, b: &Algorithm) -> bool {
    a == b || matches!((a, b), (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }))
}

/// The types of the host keys a device gets: one per type, the main one first.
fn host_key_types(spec: &DeviceSpec) -> Vec<Algorithm> {
    if spec.legacy_only {
        return vec![Algorithm::Rsa { hash: None }];
    }
    let mut types: Vec<Algorithm> = Vec::new();
    for algorithm in &spec.host_key_algorithms {
        if !types.iter().any(|t| same_key_type(t, algorithm)) {
            types.push(algorithm.clone());
        }
    }
    if types.is_empty() {
        types.push(Algorithm::Ed25519);
    }
    types
}

fn host_key(algorithm: &Algorithm) -> std::io::Result<PrivateKey> {
    let mut rng = rand::rng();
    if matches!(algorithm, Algorithm::Rsa { .. }) {
        let pair = russh::keys::ssh_key::private::RsaKeypair::random(&mut rng, 2048)
            .map_err(std::io::Error::other)?;
        return Ok(PrivateKey::from(pair));
    }
    PrivateKey::random(&mut rng, algorithm.clone()).map_err(std::io::Error::other)
}

async fn start_device(spec: DeviceSpec, gate: Gate) -> std::io::Result<Running> {
    let keys = host_key_types(&spec)
        .iter()
        .map(host_key)
        .collect::<std::io::Result<Vec<_>>>()?;
    let host_keys: Vec<PublicKey> = keys.iter().map(|k| k.public_key().clone()).collect();
    let main = host_keys
        .first()
        .map(fingerprint)
        .ok_or_else(|| std::io::Error::other("a simulated device needs a host key"))?;
    let mut config = russh::server::Config {
        keys,
        auth_rejection_time: Duration::from_millis(5),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(600)),
        nodelay: true,
        ..russh::server::Config::default()
    };
    if spec.legacy_only {
        config.preferred = algorithms::legacy_only();
    }
    let config = Arc::new(config);
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let device = SimDevice {
        name: spec.name.clone(),
        host: "127.0.0.1".to_owned(),
        port,
        platform: spec.platform.clone(),
        username: spec.username.clone(),
        credential_ref: format!("sim:{}", spec.name),
        host_key_fingerprint: main,
        tags: if spec.legacy_only {
            vec![LEGACY_TAG.to_owned()]
        } else {
            Vec::new()
        },
    };
    let spec = Arc::new(spec);
    let counters = Arc::new(Counters::default());
    let task = tokio::spawn(accept_loop(
        listener,
        config,
        spec.clone(),
        counters.clone(),
        gate,
    ));
    Ok(Running {
        device,
        spec,
        host_keys,
        counters,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    spec: Arc<DeviceSpec>,
    counters: Arc<Counters>,
    gate: Gate,
) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = socket.set_nodelay(true);
        let guard = ActiveGuard::new(counters.clone());
        if spec.failure == Some(super::FailureMode::NoBanner) {
            // Read whatever the client sends, answer nothing, until it gives up.
            tokio::spawn(async move {
                let mut socket = socket;
                let mut buf = [0u8; 1024];
                while matches!(
                    tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await,
                    Ok(n) if n > 0
                ) {}
                drop(guard);
            });
            continue;
        }
        let handler = SimHandler {
            spec: spec.clone(),
            counters: counters.clone(),
            gate: gate.clone(),
            channels: HashMap::new(),
            execs: 0,
            held: Vec::new(),
        };
        let config = config.clone();
        tokio::spawn(async move {
            if let Ok(session) = russh::server::run_stream(config, socket, handler).await {
                let _ = session.await;
            }
            drop(guard);
        });
    }
}
