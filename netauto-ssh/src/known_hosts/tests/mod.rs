//! Tests of the known_hosts store, by concern: reading lines (`parse`), the cached index
//! of the file (`cache`), and what checks and policies make of it (`policy`).

mod cache;
mod parse;
mod policy;

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use russh::keys::ssh_key::encoding::base64::{Base64, Encoding};
use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData, SkEd25519};
use sha1::Sha1;

use super::cache::HostsFile;
use super::{KnownHosts, fingerprint};

pub(super) fn ed(n: u8) -> PublicKey {
    PublicKey::new(KeyData::Ed25519(Ed25519PublicKey([n; 32])), "")
}

/// Another key type (sk-ssh-ed25519@openssh.com).
pub(super) fn sk(n: u8) -> PublicKey {
    let key = SkEd25519::new(Ed25519PublicKey([n; 32]), "ssh:");
    PublicKey::new(KeyData::SkEd25519(key), "")
}

pub(super) fn base64_key(key: &PublicKey) -> String {
    let line = key.to_openssh().unwrap();
    line.split(' ').nth(1).unwrap().to_owned()
}

pub(super) fn line(names: &str, key: &PublicKey) -> String {
    format!("{names} {}\n", key.to_openssh().unwrap())
}

/// `name` hashed as `ssh-keygen -H` does.
pub(super) fn hashed(name: &str, salt: u8) -> String {
    let salt = [salt; 20];
    let hash = Hmac::<Sha1>::new_from_slice(&salt)
        .unwrap()
        .chain_update(name)
        .finalize()
        .into_bytes();
    format!(
        "|1|{}|{}",
        Base64::encode_string(&salt),
        Base64::encode_string(&hash)
    )
}

/// Replaces the file in one step, as an editor or config management would.
pub(super) fn replace(path: &Path, text: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub(super) fn file(known: &KnownHosts) -> &HostsFile {
    known.inner.file.as_ref().unwrap()
}

pub(super) fn fp(key: &PublicKey) -> String {
    fingerprint(key)
}

/// What russh made of the file before the cache: `None` for an error (which `check`
/// ignored, like nothing found).
pub(super) fn russh_keys(host: &str, port: u16, path: &Path) -> Option<Vec<PublicKey>> {
    russh::keys::known_hosts::known_host_keys_path(host, port, path)
        .ok()
        .map(|found| found.into_iter().map(|(_, k)| k).collect())
}

/// A host key of another type than the `ed` keys.
pub(super) fn ecdsa() -> PublicKey {
    PublicKey::from_openssh(
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBBPrIYvk8Hx\
         RqfvibT41jY3hjNbboYGg+0gt4el/MuM9ssj2EaVIjQbWNj9/Ea3xZwmspNjSo0l6LHlPn0+lsM=",
    )
    .unwrap()
}

/// Yet another type.
pub(super) fn rsa() -> PublicKey {
    PublicKey::from_openssh(
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC6uzTW9X8nz6PtBBf3yToN9I+hjynGch7n+y+OHu4OpHSO\
         hUkdKR3m/NylEZUW50yg5zziou80CeVwaICIvFpuV4cDQe1r9WWm5oWP80Z8WyLHVIgtOmK2NKR4KzxFZl7f\
         zgzd/cRR1L26ffwjLZp3bcQctYAsk/o882J8UWDXhw==",
    )
    .unwrap()
}
