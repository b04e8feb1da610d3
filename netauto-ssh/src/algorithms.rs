//! Algorithm lists: modern by default, legacy ones only for devices that opt in.

use std::borrow::Cow;

use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
use russh::{Preferred, cipher, kex, mac};

const MODERN_KEX: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::ECDH_SHA2_NISTP256,
    kex::ECDH_SHA2_NISTP384,
    kex::ECDH_SHA2_NISTP521,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G14_SHA256,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

const LEGACY_KEX: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::ECDH_SHA2_NISTP256,
    kex::DH_GEX_SHA256,
    kex::DH_G14_SHA256,
    kex::DH_G14_SHA1,
    kex::DH_GEX_SHA1,
    kex::DH_G1_SHA1,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

const MODERN_KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

const LEGACY_KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
    Algorithm::Rsa { hash: None },
];

const MODERN_CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

const LEGACY_CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
    cipher::AES_256_CBC,
    cipher::AES_192_CBC,
    cipher::AES_128_CBC,
];

const MODERN_MACS: &[mac::Name] = &[
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512,
    mac::HMAC_SHA256,
];

const LEGACY_MACS: &[mac::Name] = &[
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512,
    mac::HMAC_SHA256,
    mac::HMAC_SHA1_ETM,
    mac::HMAC_SHA1,
];

/// The algorithms offered to every device: no SHA-1, no CBC.
pub fn modern() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(MODERN_KEX),
        key: Cow::Borrowed(MODERN_KEYS),
        cipher: Cow::Borrowed(MODERN_CIPHERS),
        mac: Cow::Borrowed(MODERN_MACS),
        ..Preferred::DEFAULT
    }
}

/// The modern algorithms plus, after them, diffie-hellman-group14-sha1 (and group1, gex-sha1),
/// `ssh-rsa` host keys, aes-cbc ciphers and hmac-sha1: for old devices that opt in.
pub fn legacy() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(LEGACY_KEX),
        key: Cow::Borrowed(LEGACY_KEYS),
        cipher: Cow::Borrowed(LEGACY_CIPHERS),
        mac: Cow::Borrowed(LEGACY_MACS),
        ..Preferred::DEFAULT
    }
}

/// `keys` (a host-key algorithm preference list, such as [`modern`]'s or [`legacy`]'s) with
/// the algorithms of the `recorded` host keys first, in their order in `keys`, then the
/// others in theirs, as OpenSSH's `order_hostkeyalgs` orders them: a device offering several
/// host-key types then presents one that known_hosts records, instead of one it does not
/// (which the check would refuse). A recorded RSA key (`ssh-rsa`) stands for every RSA
/// signature algorithm in `keys` (`rsa-sha2-512`, `rsa-sha2-256`, and `ssh-rsa` in the legacy
/// list); an ECDSA key for its own curve only. `None` when the order would not change
/// (nothing recorded, or only types already first), so the caller keeps its shared list.
pub fn order_host_keys(keys: &[Algorithm], recorded: &[Algorithm]) -> Option<Vec<Algorithm>> {
    let is_recorded = |a: &Algorithm| recorded.iter().any(|r| same_key_type(a, r));
    let mut rest = keys.iter().skip_while(|a| is_recorded(a));
    if !rest.any(is_recorded) {
        return None;
    }
    let (mut first, last): (Vec<Algorithm>, Vec<Algorithm>) =
        keys.iter().cloned().partition(is_recorded);
    first.extend(last);
    Some(first)
}

/// Whether the host-key algorithms `a` and `b` take the same type of key: equal, or both
/// RSA (`ssh-rsa`, `rsa-sha2-256` and `rsa-sha2-512` all sign with an RSA key).
fn same_key_type(a: &Algorithm, b: &Algorithm) -> bool {
    a == b || matches!((a, b), (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }))
}

/// What an old device offers and nothing else (the simulator's legacy devices).
pub fn legacy_only() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(&[kex::DH_G14_SHA1, kex::DH_G1_SHA1]),
        key: Cow::Borrowed(&[Algorithm::Rsa { hash: None }]),
        cipher: Cow::Borrowed(&[cipher::AES_128_CBC, cipher::AES_256_CBC]),
        mac: Cow::Borrowed(&[mac::HMAC_SHA1]),
        ..Preferred::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256: Algorithm = Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    };
    const P384: Algorithm = Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    };
    const P521: Algorithm = Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    };
    const RSA_512: Algorithm = Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    };
    const RSA_256: Algorithm = Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    };
    /// The type of a recorded RSA key, and the legacy `ssh-rsa` signature algorithm.
    const SSH_RSA: Algorithm = Algorithm::Rsa { hash: None };

    #[test]
    fn recorded_types_come_first_in_the_lists_order() {
        assert_eq!(
            order_host_keys(MODERN_KEYS, &[P256]),
            Some(vec![P256, Algorithm::Ed25519, P384, P521, RSA_512, RSA_256])
        );
        assert_eq!(
            order_host_keys(MODERN_KEYS, &[SSH_RSA, P521]),
            Some(vec![P521, RSA_512, RSA_256, Algorithm::Ed25519, P256, P384])
        );
        assert_eq!(
            order_host_keys(LEGACY_KEYS, &[SSH_RSA]),
            Some(vec![RSA_512, RSA_256, SSH_RSA, Algorithm::Ed25519, P256])
        );
        // A curve the list does not offer (P-384 on the legacy list) changes nothing.
        assert_eq!(order_host_keys(LEGACY_KEYS, &[P384]), None);
    }

    #[test]
    fn an_order_that_would_not_change_is_none() {
        assert_eq!(order_host_keys(MODERN_KEYS, &[]), None);
        assert_eq!(order_host_keys(MODERN_KEYS, &[Algorithm::Ed25519]), None);
        assert_eq!(
            order_host_keys(MODERN_KEYS, &[P256, Algorithm::Ed25519]),
            None
        );
        assert_eq!(order_host_keys(LEGACY_KEYS, &[Algorithm::Dsa]), None);
        assert_eq!(order_host_keys(MODERN_KEYS, MODERN_KEYS), None);
    }

    /// OpenSSH's `order_hostkeyalgs` by name: an algorithm goes first when a recorded key
    /// has its plain key type (`rsa-sha2-*` → `ssh-rsa`), else last.
    fn oracle(keys: &[Algorithm], recorded: &[Algorithm]) -> Vec<String> {
        let plain = |name: String| {
            if name.starts_with("rsa-sha2-") {
                "ssh-rsa".to_owned()
            } else {
                name
            }
        };
        let recorded: Vec<String> = recorded.iter().map(|r| plain(r.to_string())).collect();
        let (mut first, mut last) = (Vec::new(), Vec::new());
        for name in keys.iter().map(ToString::to_string) {
            if recorded.contains(&plain(name.clone())) {
                first.push(name);
            } else {
                last.push(name);
            }
        }
        first.append(&mut last);
        first
    }

    #[test]
    fn every_set_of_recorded_types_is_ordered_as_openssh_orders_it() {
        let types = [
            Algorithm::Ed25519,
            P256,
            P384,
            P521,
            SSH_RSA,
            Algorithm::Dsa,
            Algorithm::SkEd25519,
        ];
        for keys in [MODERN_KEYS, LEGACY_KEYS] {
            for set in 0u32..1 << types.len() {
                let recorded: Vec<Algorithm> = types
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| set & (1 << i) != 0)
                    .map(|(_, t)| t.clone())
                    .collect();
                let expected = oracle(keys, &recorded);
                let got: Vec<String> = match order_host_keys(keys, &recorded) {
                    Some(ordered) => {
                        assert_ne!(ordered, keys, "{recorded:?}: Some but unchanged");
                        ordered.iter().map(ToString::to_string).collect()
                    }
                    None => keys.iter().map(ToString::to_string).collect(),
                };
                assert_eq!(got, expected, "{recorded:?}");
            }
        }
    }
}
