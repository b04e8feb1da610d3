//! Demo mode: netauto-ssh's device simulator registered as devices, and a demo user: one
//! device per platform (`cisco-ios-01`, `juniper-junos-01`, …, each playing its platform's
//! prompts, paging, error text and confirm question, and rejecting
//! `show nonexistent-command`), plus ~25 devices of mixed platforms, one rejecting every
//! login and one answering with exit code 1.

use std::sync::Arc;

use netauto_core::platform::{LoadError, Platforms};
use netauto_core::{Conflict, Device, Error, NetworkClient, RunStore};
use netauto_ssh::SshNetworkClient;
use netauto_ssh::sim::{DeviceFarm, demo_specs, platform_specs};

/// The demo user's name.
pub const DEMO_USER: &str = "demo";
/// Mixed simulated devices started by the demo, besides one per platform.
pub const DEMO_DEVICES: usize = 25;

/// A running simulator and a client that reaches it.
#[derive(Debug)]
pub struct Demo {
    /// The simulated devices (they stop when this is dropped).
    pub farm: DeviceFarm,
    /// An SSH client trusting exactly the farm's host keys and knowing its passwords.
    pub client: Arc<dyn NetworkClient>,
    /// The devices as registered in the store.
    pub devices: Vec<Device>,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The simulator could not start.
    #[error("cannot start the device simulator: {0}")]
    Simulator(#[from] std::io::Error),
    /// A device of the same name but another address is in the database (the simulator's
    /// ports change at every start).
    #[error("device {0:?} already exists with another address: start the demo on a fresh database")]
    Stale(String),
    /// The platform definitions (`NETAUTO_PLATFORMS_DIR`) could not be loaded.
    #[error(transparent)]
    Platforms(#[from] LoadError),
    /// An SSH setting (`NETAUTO_REDACT_SECRETS`, …) is unusable.
    #[error(transparent)]
    Settings(#[from] netauto_ssh::SettingsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] Error),
}

/// Starts one simulated device per platform (the shipped ones and `NETAUTO_PLATFORMS_DIR`'s)
/// and `n` mixed ones, and registers them in `store` (devices that already exist with the
/// same address are reused).
pub async fn start(store: &dyn RunStore, n: usize) -> Result<Demo, DemoError> {
    let platforms = Platforms::from_env()?;
    let mut specs = platform_specs(&platforms);
    specs.extend(demo_specs(n));
    let farm = DeviceFarm::start(specs).await?;
    let mut devices = Vec::with_capacity(farm.devices().len());
    let existing = store.list_devices().await?;
    for new in farm.new_devices() {
        match store.create_device(new.clone()).await {
            Ok(d) => devices.push(d),
            Err(Error::Conflict(Conflict::Exists { .. })) => {
                match existing.iter().find(|d| d.name == new.name) {
                    Some(d) if d.host == new.host && d.port == new.port => devices.push(d.clone()),
                    _ => return Err(DemoError::Stale(new.name)),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The same pacing knobs as outside the demo (NETAUTO_SSH_CONNECTIONS_PER_SECOND, …).
    let pacing = netauto_ssh::PacingConfig::from_env().map_err(Error::from)?;
    let client: Arc<dyn NetworkClient> = Arc::new(SshNetworkClient::new(
        farm.client_config()
            .with_pacing(pacing)
            .with_platforms(platforms)
            .with_redact_secrets(netauto_ssh::SshSettings::from_env()?.redact_secrets),
    ));
    Ok(Demo {
        farm,
        client,
        devices,
    })
}

/// A random password for the demo user: 16 characters from an unambiguous alphabet.
pub fn random_password() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw)?;
    Ok(raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}
