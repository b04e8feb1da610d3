//! Starts a farm of simulated SSH devices and writes an inventory for them.
//!
//! ```sh
//! cargo run -p netauto-ssh --features sim --example sim_farm -- [N] [OUT_DIR]
//! ```
//!
//! N defaults to 25 (the mixed demo set, one device failing); OUT_DIR (default
//! `./netauto-sim`) receives `inventory.json` (devices, no secrets), `credentials.json`
//! (passwords by credential reference, for `FileCredentials`; mode 600) and `known_hosts`.
//! The farm runs until Ctrl-C.

use std::path::PathBuf;

use netauto_ssh::sim::{DeviceFarm, demo_specs};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(25);
    let out: PathBuf = args
        .next()
        .unwrap_or_else(|| "netauto-sim".to_owned())
        .into();
    std::fs::create_dir_all(&out)?;

    let farm = DeviceFarm::start(demo_specs(n)).await?;
    farm.write_inventory(out.join("inventory.json"))?;
    farm.write_known_hosts(out.join("known_hosts"))?;
    let mut creds = serde_json::Map::new();
    for device in farm.devices() {
        let spec = farm.spec(&device.name).ok_or("device without spec")?;
        creds.insert(
            device.credential_ref.clone(),
            serde_json::json!({ "password": spec.password }),
        );
    }
    let creds_path = out.join("credentials.json");
    std::fs::write(&creds_path, serde_json::to_vec_pretty(&creds)?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&creds_path, std::fs::Permissions::from_mode(0o600))?;
    }
    for device in farm.devices() {
        println!(
            "{:<12} {:<11} {}:{}",
            device.name, device.platform, device.host, device.port
        );
    }
    println!(
        "{} simulated devices; inventory, credentials and known_hosts in {}; Ctrl-C stops",
        farm.devices().len(),
        out.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
