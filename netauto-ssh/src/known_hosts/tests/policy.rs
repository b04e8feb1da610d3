//! What checks and policies make of the recorded keys: trusted, changed, revoked, of another
//! type, unverifiable; what accept-new learns.

use std::time::Duration;

use netauto_core::NetworkError;
use russh::keys::PublicKey;

use super::{base64_key, ecdsa, ed, fp, line, rsa, sk};
use crate::known_hosts::cache::HostsFile;
use crate::known_hosts::{HostKeyCheck, HostKeyPolicy, KnownHosts};

#[test]
fn check_trusts_the_same_key_and_reports_the_first_of_the_same_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(
        &path,
        line("a", &ed(1)) + &line("a", &ed(2)) + &line("[a]:2222", &sk(3)),
    )
    .unwrap();
    let known = KnownHosts::from_file(&path);
    assert_eq!(known.check("a", 22, &ed(2)), HostKeyCheck::Trusted);
    assert_eq!(
        known.check("a", 22, &ed(9)),
        HostKeyCheck::Changed {
            expected: fp(&ed(1))
        }
    );
    // Another type: the host is known all the same (see
    // `a_host_with_a_key_of_another_type_is_known_and_the_key_refused`).
    assert_eq!(
        known.check("a", 22, &sk(9)),
        HostKeyCheck::OtherKeyType {
            recorded: vec![
                format!("ssh-ed25519 {}", fp(&ed(1))),
                format!("ssh-ed25519 {}", fp(&ed(2))),
            ]
        }
    );
    assert_eq!(
        known.check("a", 2222, &sk(9)),
        HostKeyCheck::Changed {
            expected: fp(&sk(3))
        }
    );
    assert_eq!(known.check("b", 22, &ed(1)), HostKeyCheck::Unknown);
    // Keys in memory come first.
    known.insert("a", 22, ed(5));
    assert_eq!(
        known.check("a", 22, &ed(9)),
        HostKeyCheck::Changed {
            expected: fp(&ed(5))
        }
    );
}

#[test]
fn a_revoked_key_is_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let revoked = |key: &PublicKey| format!("@revoked * {}", key.to_openssh().unwrap());
    // Trusted for a, then revoked further down (an append, parsed as a new part).
    std::fs::write(&path, line("a", &ed(1)) + &line("b", &ed(2))).unwrap();
    let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text += &format!("{}\n", revoked(&ed(1)));
    text += "@revoked * ssh-ed25519 AAAA-not-base64\n";
    std::fs::write(&path, &text).unwrap();
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Revoked);
    assert_eq!(known.check("other", 2222, &ed(1)), HostKeyCheck::Revoked);
    assert_eq!(known.check("b", 22, &ed(2)), HostKeyCheck::Trusted);

    // Accept-new neither trusts nor learns it; other keys are learned as before.
    let policy = HostKeyPolicy::AcceptNew(known.clone());
    let e = policy.verify("c", 22, &ed(1)).unwrap_err();
    assert_eq!(e.kind(), "host_key");
    assert!(e.to_string().contains("revoked"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    policy.verify("c", 22, &ed(3)).unwrap();
    assert_eq!(known.check("c", 22, &ed(3)), HostKeyCheck::Trusted);

    // Leading blanks and tabs, as OpenSSH accepts them.
    text += &format!("  @revoked\t*\tssh-ed25519\t{}\n", base64_key(&ed(2)));
    std::fs::write(&path, &text).unwrap();
    assert_eq!(known.check("b", 22, &ed(2)), HostKeyCheck::Revoked);

    // Un-revoked when the line goes.
    std::fs::write(&path, line("a", &ed(1))).unwrap();
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
}

#[test]
fn accept_new_learns_nothing_from_a_file_that_cannot_vouch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let policy = HostKeyPolicy::AcceptNew(KnownHosts::with_file(HostsFile::new(
        path.clone(),
        Duration::ZERO,
    )));

    // Not UTF-8: refused, and nothing appended.
    let mut bytes = line("a", &ed(1)).into_bytes();
    bytes.extend_from_slice(b"# \xff\n");
    std::fs::write(&path, &bytes).unwrap();
    let e = policy.verify("b", 22, &ed(2)).unwrap_err();
    assert_eq!(e.kind(), "host_key");
    assert!(e.to_string().contains("UTF-8"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    // A line for the host whose key does not parse: refused, not appended again.
    let broken = "b ssh-ed25519 AAAAnotakey\n";
    std::fs::write(&path, broken).unwrap();
    let e = policy.verify("b", 22, &ed(2)).unwrap_err();
    assert!(e.to_string().contains("does not parse"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    // Other hosts are still learned.
    policy.verify("c", 22, &ed(3)).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{broken}{}", line("c", &ed(3)))
    );

    // No file at all: the first key is learned, and the file created.
    std::fs::remove_file(&path).unwrap();
    policy.verify("d", 22, &ed(4)).unwrap();
    assert_eq!(
        HostKeyPolicy::Strict(KnownHosts::from_file(&path)).verify("d", 22, &ed(4)),
        Ok(())
    );
}

#[test]
fn a_host_with_a_key_of_another_type_is_known_and_the_key_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let text = line("a", &ed(1)) + &line("[b]:2222", &ed(2)) + &line("[b]:2222", &rsa());
    std::fs::write(&path, &text).unwrap();
    let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
    for presented in [ecdsa(), rsa(), sk(9)] {
        let check = known.check("a", 22, &presented);
        assert!(
            matches!(&check, HostKeyCheck::OtherKeyType { recorded }
                if recorded == &[format!("ssh-ed25519 {}", fp(&ed(1)))]),
            "{check:?}"
        );
        for policy in [
            HostKeyPolicy::AcceptNew(known.clone()),
            HostKeyPolicy::Strict(known.clone()),
        ] {
            let e = policy.verify("a", 22, &presented).unwrap_err();
            let NetworkError::HostKey {
                host,
                expected,
                actual,
            } = &e
            else {
                panic!("{e:?}");
            };
            assert_eq!(host, "a:22");
            assert!(expected.contains(&fp(&ed(1))), "{expected}");
            assert!(expected.contains(presented.algorithm().as_str()), "{e}");
            assert_eq!(actual, &fp(&presented));
            // Never learned: not in the file, not in memory.
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
            assert!(matches!(
                known.check("a", 22, &presented),
                HostKeyCheck::OtherKeyType { .. }
            ));
        }
    }
    // Keys of two types recorded: a third type is refused naming both.
    let e = HostKeyPolicy::AcceptNew(known.clone())
        .verify("b", 2222, &ecdsa())
        .unwrap_err();
    assert!(e.to_string().contains(&fp(&ed(2))), "{e}");
    assert!(e.to_string().contains(&fp(&rsa())), "{e}");
    assert!(
        e.to_string().contains("[b]:2222") || e.to_string().contains("b:2222"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // Each recorded type is still trusted, and a host with no key at all still learned.
    HostKeyPolicy::Strict(known.clone())
        .verify("b", 2222, &rsa())
        .unwrap();
    HostKeyPolicy::AcceptNew(known.clone())
        .verify("c", 22, &ecdsa())
        .unwrap();
    assert_eq!(known.check("c", 22, &ecdsa()), HostKeyCheck::Trusted);
    assert!(matches!(
        known.check("c", 22, &ed(3)),
        HostKeyCheck::OtherKeyType { .. }
    ));

    // Keys learned in memory count too.
    let memory = KnownHosts::new();
    let policy = HostKeyPolicy::AcceptNew(memory.clone());
    policy.verify("d", 22, &ed(4)).unwrap();
    let e = policy.verify("d", 22, &ecdsa()).unwrap_err();
    assert_eq!(e.kind(), "host_key");
    assert!(e.to_string().contains(&fp(&ed(4))), "{e}");
    policy.verify("d", 22, &ed(4)).unwrap();
}
