//! Host-key algorithm preference against the simulator: like OpenSSH (`order_hostkeyalgs`),
//! the client asks first for the host-key types recorded for a host, so a device offering
//! several types is not refused because the client preferred one nothing is recorded for;
//! the check itself is as strict as ever.
#![cfg(feature = "sim")]
#![allow(missing_docs)]

mod common;

use common::run_to_exit;
use std::path::Path;

use netauto_core::{Device, DeviceId, NetworkError};
use netauto_ssh::known_hosts::fingerprint;
use netauto_ssh::sim::{DeviceFarm, DeviceSpec};
use netauto_ssh::{HostKeyPolicy, KnownHosts, SshNetworkClient};
use russh::keys::{Algorithm, EcdsaCurve, PublicKey};

const ECDSA_P256: Algorithm = Algorithm::Ecdsa {
    curve: EcdsaCurve::NistP256,
};
const RSA: Algorithm = Algorithm::Rsa { hash: None };

/// An `ecdsa-sha2-nistp256` key no simulated device has.
const OTHER_ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBBPrIYvk8HxRqfvibT41jY3hjNbboYGg+0gt4el/MuM9ssj2EaVIjQbWNj9/Ea3xZwmspNjSo0l6LHlPn0+lsM=";

/// A farm of one device, `r1`, with one host key of each type in `types` (the first is the
/// one `farm.known_hosts()` records).
async fn farm_of(types: &[Algorithm]) -> (DeviceFarm, Device) {
    let farm = DeviceFarm::start(vec![
        DeviceSpec::new("r1", "linux").with_host_key_algorithms(types),
    ])
    .await
    .expect("farm starts");
    let device = farm
        .device("r1")
        .expect("r1")
        .to_new_device()
        .into_device(DeviceId(1));
    (farm, device)
}

fn client(farm: &DeviceFarm, policy: HostKeyPolicy) -> SshNetworkClient {
    SshNetworkClient::new(farm.client_config().with_host_keys(policy))
}

/// r1's host key of type `algorithm`.
fn key_of(farm: &DeviceFarm, algorithm: &Algorithm) -> PublicKey {
    farm.host_keys("r1")
        .expect("r1")
        .iter()
        .find(|k| k.algorithm() == *algorithm)
        .expect("r1 has a key of that type")
        .clone()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read known_hosts")
}

/// The device offers ECDSA and Ed25519 and known_hosts holds only its ECDSA key (as an older
/// OpenSSH or `ssh-keyscan -t ecdsa` wrote it): the client asks for ECDSA first, gets the
/// recorded key and logs in, under strict and accept-new, and accept-new records nothing.
#[tokio::test]
async fn a_host_recorded_by_its_ecdsa_key_only_is_trusted() {
    let (farm, device) = farm_of(&[Algorithm::Ed25519, ECDSA_P256]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    farm.known_hosts_of(&ECDSA_P256)
        .write_memory_to(&path)
        .expect("write");
    let text = read(&path);
    assert!(text.contains("ecdsa-sha2-nistp256") && !text.contains("ssh-ed25519"));

    let strict = client(&farm, HostKeyPolicy::Strict(KnownHosts::from_file(&path)));
    run_to_exit(&strict, &device)
        .await
        .expect("strict trusts r1");
    let tofu = client(
        &farm,
        HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path)),
    );
    run_to_exit(&tofu, &device)
        .await
        .expect("accept-new trusts r1");
    run_to_exit(&tofu, &device).await.expect("and again");
    assert_eq!(read(&path), text, "accept-new appended nothing");
}

/// The same with the key recorded in memory (the farm's own client configuration records
/// each device's first key, here its ECDSA key).
#[tokio::test]
async fn a_key_type_recorded_in_memory_is_preferred_too() {
    let (farm, device) = farm_of(&[ECDSA_P256, Algorithm::Ed25519]).await;
    let client = SshNetworkClient::new(farm.client_config());
    run_to_exit(&client, &device)
        .await
        .expect("strict trusts r1");
    assert_eq!(
        farm.device("r1").expect("r1").host_key_fingerprint,
        fingerprint(&key_of(&farm, &ECDSA_P256))
    );
}

/// The preference never weakens the check: a recorded ECDSA key that is not the device's is
/// a changed key, refused under both policies, and nothing is learned.
#[tokio::test]
async fn a_wrong_recorded_ecdsa_key_is_refused() {
    let (farm, device) = farm_of(&[Algorithm::Ed25519, ECDSA_P256]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    let text = format!("[127.0.0.1]:{} {OTHER_ECDSA}\n", device.port);
    std::fs::write(&path, &text).expect("write");
    let recorded = fingerprint(&PublicKey::from_openssh(OTHER_ECDSA).expect("key"));
    let presented = fingerprint(&key_of(&farm, &ECDSA_P256));

    for policy in [
        HostKeyPolicy::Strict(KnownHosts::from_file(&path)),
        HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path)),
    ] {
        let err = run_to_exit(&client(&farm, policy), &device)
            .await
            .expect_err("refused");
        let NetworkError::HostKey {
            expected, actual, ..
        } = &err
        else {
            panic!("not a host-key error: {err:?}");
        };
        assert_eq!(expected, &recorded, "{err}");
        // The device was asked for its ECDSA key, and that key was compared.
        assert_eq!(actual, &presented, "{err}");
        assert_eq!(read(&path), text, "nothing learned");
    }
}

/// With nothing recorded the client's own order holds: accept-new negotiates, and records,
/// the Ed25519 key, and strict then trusts it.
#[tokio::test]
async fn with_nothing_recorded_ed25519_comes_first() {
    let (farm, device) = farm_of(&[ECDSA_P256, RSA, Algorithm::Ed25519]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");

    let tofu = client(
        &farm,
        HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path)),
    );
    run_to_exit(&tofu, &device)
        .await
        .expect("accept-new learns r1");
    let learned = read(&path);
    let ed25519 = key_of(&farm, &Algorithm::Ed25519);
    let line = ed25519.to_openssh().expect("openssh");
    assert_eq!(
        learned.lines().filter(|l| !l.is_empty()).count(),
        1,
        "{learned}"
    );
    assert!(learned.contains(&line), "{learned}");

    let strict = client(&farm, HostKeyPolicy::Strict(KnownHosts::from_file(&path)));
    run_to_exit(&strict, &device)
        .await
        .expect("strict trusts the learned key");
}

/// A recorded `ssh-rsa` key means the RSA signature algorithms: rsa-sha2-512/256 for every
/// device, plus `ssh-rsa` on the legacy list of devices allowed legacy algorithms.
#[tokio::test]
async fn a_recorded_rsa_key_prefers_the_rsa_signature_algorithms() {
    let (farm, device) = farm_of(&[Algorithm::Ed25519, RSA]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    farm.known_hosts_of(&RSA)
        .write_memory_to(&path)
        .expect("write");
    let text = read(&path);
    assert!(text.contains("ssh-rsa") && !text.contains("ssh-ed25519"));

    for legacy in [false, true] {
        let mut config = farm
            .client_config()
            .with_host_keys(HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path)));
        if legacy {
            config = config.with_legacy_device("r1");
        }
        let client = SshNetworkClient::new(config);
        run_to_exit(&client, &device).await.expect("trusted");
        assert_eq!(read(&path), text, "nothing learned");
    }
}

/// A key on an `@revoked` line is not a recorded key: it is not preferred (and still refused).
#[tokio::test]
async fn a_revoked_key_type_is_not_preferred() {
    let (farm, device) = farm_of(&[Algorithm::Ed25519, ECDSA_P256]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    let ecdsa = key_of(&farm, &ECDSA_P256);
    let revoked = format!(
        "@revoked [127.0.0.1]:{} {}\n",
        device.port,
        ecdsa.to_openssh().expect("openssh")
    );
    std::fs::write(&path, &revoked).expect("write");

    let tofu = client(
        &farm,
        HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path)),
    );
    run_to_exit(&tofu, &device)
        .await
        .expect("accept-new learns r1");
    let ed25519 = key_of(&farm, &Algorithm::Ed25519);
    let learned = read(&path);
    assert!(learned.starts_with(&revoked), "{learned}");
    assert!(
        learned.contains(&ed25519.to_openssh().expect("openssh")),
        "{learned}"
    );
}

/// What the client prefers: the types of the keys in memory, then in the file in file order,
/// each once, without revoked keys; nothing for a host with nothing recorded or under
/// accept-any.
#[tokio::test]
async fn recorded_algorithms_are_memory_then_file_without_revoked_keys() {
    let (farm, device) = farm_of(&[Algorithm::Ed25519, ECDSA_P256, RSA]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    let name = format!("[127.0.0.1]:{}", device.port);
    let openssh = |k: &PublicKey| k.to_openssh().expect("openssh");
    let ed25519 = key_of(&farm, &Algorithm::Ed25519);
    let text = format!(
        "{name} {}\n{name} {}\n{name} {OTHER_ECDSA}\n@revoked * {}\n",
        openssh(&ed25519),
        openssh(&key_of(&farm, &RSA)),
        openssh(&ed25519),
    );
    std::fs::write(&path, text).expect("write");
    let known = KnownHosts::from_file(&path);
    known.insert("127.0.0.1", device.port, key_of(&farm, &ECDSA_P256));

    assert_eq!(
        known.recorded_algorithms("127.0.0.1", device.port),
        vec![ECDSA_P256, RSA]
    );
    let policy = HostKeyPolicy::Strict(known.clone());
    assert_eq!(
        policy.recorded_algorithms("127.0.0.1", device.port),
        vec![ECDSA_P256, RSA]
    );
    assert!(known.recorded_algorithms("127.0.0.1", 1).is_empty());
    assert!(
        HostKeyPolicy::AcceptAny
            .recorded_algorithms("127.0.0.1", device.port)
            .is_empty()
    );
}
