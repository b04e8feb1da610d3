//! Host keys against the simulator: a host known by a key of another type is refused under
//! accept-new (never learned), and known_hosts lines split by tabs and runs of blanks are
//! read as OpenSSH reads them.
#![cfg(feature = "sim")]
#![allow(missing_docs)]

mod common;

use common::run_to_exit;
use netauto_core::{DeviceId, NetworkError};
use netauto_ssh::sim::{DeviceFarm, DeviceSpec};
use netauto_ssh::{HostKeyPolicy, KnownHosts, SshNetworkClient};

/// An `ecdsa-sha2-nistp256` key: the simulator's devices present `ssh-ed25519` keys.
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBBPrIYvk8HxRqfvibT41jY3hjNbboYGg+0gt4el/MuM9ssj2EaVIjQbWNj9/Ea3xZwmspNjSo0l6LHlPn0+lsM=";

/// The farm's own known_hosts line for `name`, without its host field.
fn recorded_key(farm: &DeviceFarm, dir: &std::path::Path, name: &str) -> String {
    let path = dir.join("farm_known_hosts");
    farm.write_known_hosts(&path).expect("write");
    let port = farm.device(name).expect("device").port;
    std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("[127.0.0.1]:{port} "))
                .map(str::to_owned)
        })
        .expect("device line")
}

#[tokio::test]
async fn accept_new_refuses_a_key_of_another_type_for_a_known_host() {
    let farm = DeviceFarm::start(vec![DeviceSpec::new("r1", "linux")])
        .await
        .expect("farm starts");
    let r1 = farm.device("r1").expect("r1");
    let device = r1.to_new_device().into_device(DeviceId(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    let text = format!("[127.0.0.1]:{} {ECDSA}\n", r1.port);
    std::fs::write(&path, &text).expect("write");
    let ecdsa_fp = netauto_ssh::known_hosts::fingerprint(
        &russh::keys::PublicKey::from_openssh(ECDSA).expect("key"),
    );

    for policy in [
        HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path)),
        HostKeyPolicy::Strict(KnownHosts::from_file(&path)),
    ] {
        let client = SshNetworkClient::new(farm.client_config().with_host_keys(policy));
        let err = run_to_exit(&client, &device).await.expect_err("refused");
        let NetworkError::HostKey {
            host,
            expected,
            actual,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(host, &format!("127.0.0.1:{}", r1.port));
        assert!(expected.contains(&ecdsa_fp), "{err}");
        assert_eq!(actual, &r1.host_key_fingerprint);
        // Nothing learned.
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }
}

#[tokio::test]
async fn known_hosts_lines_split_by_tabs_and_blanks_are_trusted() {
    let farm = DeviceFarm::start(vec![DeviceSpec::new("r1", "linux")])
        .await
        .expect("farm starts");
    let r1 = farm.device("r1").expect("r1");
    let device = r1.to_new_device().into_device(DeviceId(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let key = recorded_key(&farm, dir.path(), "r1");
    let (key_type, base64) = key.split_once(' ').expect("type and key");
    let path = dir.path().join("known_hosts");
    let text = format!(" \t[127.0.0.1]:{}\t\t{key_type}   {base64}\tr1\n", r1.port);
    std::fs::write(&path, &text).expect("write");

    let strict = SshNetworkClient::new(
        farm.client_config()
            .with_host_keys(HostKeyPolicy::Strict(KnownHosts::from_file(&path))),
    );
    run_to_exit(&strict, &device).await.expect("trusted");
    // Accept-new finds it too: nothing appended.
    let tofu = SshNetworkClient::new(
        farm.client_config()
            .with_host_keys(HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path))),
    );
    run_to_exit(&tofu, &device).await.expect("trusted");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
}
