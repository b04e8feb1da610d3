//! The cached index of the file: re-read when it changes, parsed only where it changed.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use russh::keys::PublicKey;

use super::{ed, file, fp, line, replace};
use crate::known_hosts::cache::HostsFile;
use crate::known_hosts::{HostKeyCheck, HostKeyPolicy, KnownHosts};

#[test]
fn a_key_added_to_the_file_is_trusted_at_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, line("a", &ed(1)) + &line("b", &ed(2))).unwrap();
    let known = KnownHosts::from_file(&path);
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    assert_eq!(known.check("c", 22, &ed(3)), HostKeyCheck::Unknown);
    let parsed = file(&known).parsed_lines.load(Ordering::Relaxed);
    assert_eq!(parsed, 2);

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, line("c", &ed(3)).as_bytes()).unwrap();
    drop(f);
    assert_eq!(known.check("c", 22, &ed(3)), HostKeyCheck::Trusted);
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    // Only the appended line was parsed.
    assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 3);
}

#[test]
fn a_key_removed_from_the_file_is_no_longer_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, line("a", &ed(1)) + &line("b", &ed(2))).unwrap();
    let known = KnownHosts::from_file(&path);
    assert_eq!(known.check("b", 22, &ed(2)), HostKeyCheck::Trusted);
    std::fs::write(&path, line("a", &ed(1))).unwrap();
    assert_eq!(known.check("b", 22, &ed(2)), HostKeyCheck::Unknown);
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
}

#[test]
fn a_key_replaced_in_place_by_one_of_the_same_length_is_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, line("a", &ed(1))).unwrap();
    let known = KnownHosts::from_file(&path);
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    // Same length, same inode, very likely the same mtime tick.
    std::fs::write(&path, line("a", &ed(2))).unwrap();
    assert_eq!(
        known.check("a", 22, &ed(1)),
        HostKeyCheck::Changed {
            expected: fp(&ed(2))
        }
    );
}

#[cfg(unix)]
#[test]
fn a_rewrite_that_puts_the_old_mtime_back_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let old = SystemTime::now() - Duration::from_secs(3600);
    let write = |key: &PublicKey| {
        std::fs::write(&path, line("a", key)).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    write(&ed(1));
    let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::from_millis(20)));
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    assert_eq!(file(&known).reads.load(Ordering::Relaxed), 1, "settled");
    write(&ed(2));
    assert_eq!(
        known.check("a", 22, &ed(1)),
        HostKeyCheck::Changed {
            expected: fp(&ed(2))
        }
    );
}

#[test]
fn an_unchanged_file_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let text: String = (0..100u8).map(|i| line(&format!("h{i}"), &ed(i))).collect();
    std::fs::write(&path, text).unwrap();
    let known = KnownHosts::with_file(HostsFile::new(path, Duration::from_millis(20)));
    std::thread::sleep(Duration::from_millis(40));
    for round in 0..3 {
        for i in 0..100u8 {
            assert_eq!(
                known.check(&format!("h{i}"), 22, &ed(i)),
                HostKeyCheck::Trusted,
                "round {round} h{i}"
            );
        }
    }
    assert_eq!(file(&known).reads.load(Ordering::Relaxed), 1);
    assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 100);
}

#[test]
fn a_recently_changed_file_is_reread_but_not_reparsed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, line("a", &ed(1))).unwrap();
    // Default settle time: the file was written just now.
    let known = KnownHosts::from_file(&path);
    for _ in 0..5 {
        assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    }
    assert_eq!(file(&known).reads.load(Ordering::Relaxed), 5);
    assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 1);
}

#[test]
fn a_missing_file_trusts_nothing_until_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ssh").join("known_hosts");
    let known = KnownHosts::from_file(&path);
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Unknown);
    assert_eq!(file(&known).keys_opt("a"), None);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, line("a", &ed(1))).unwrap();
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Unknown);
    assert!(file(&known).current().is_none(), "cache dropped");
}

#[test]
fn a_file_that_cannot_be_read_trusts_nothing_and_drops_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, line("a", &ed(1))).unwrap();
    let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);

    // A directory opens but does not read.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert!(matches!(
        known.check("a", 22, &ed(1)),
        HostKeyCheck::Unverifiable { reason } if reason.contains("cannot read")
    ));
    assert!(file(&known).current().is_none());
    std::fs::remove_dir(&path).unwrap();

    // Not UTF-8: the file vouches for nothing.
    let mut bytes = line("a", &ed(1)).into_bytes();
    bytes.extend_from_slice(b"# \xff\n");
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        known.check("a", 22, &ed(1)),
        HostKeyCheck::Unverifiable { reason } if reason.contains("UTF-8")
    ));

    std::fs::write(&path, line("a", &ed(1))).unwrap();
    assert_eq!(known.check("a", 22, &ed(1)), HostKeyCheck::Trusted);
}

#[test]
fn two_logins_learning_one_host_at_once_record_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
    for round in 0..20u8 {
        let host = format!("h{round}");
        let start = std::sync::Barrier::new(2);
        // The device and a man in the middle answer two logins at the same time.
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = [ed(100), ed(200)]
                .into_iter()
                .map(|key| {
                    let (known, host, start) = (known.clone(), host.clone(), &start);
                    s.spawn(move || {
                        start.wait();
                        HostKeyPolicy::AcceptNew(known).verify(&host, 22, &key)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {results:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(&format!("{host} ")))
                .count(),
            1,
            "round {round}: {text}"
        );
        // Learning the same key again records nothing more.
        let winner = if results[0].is_ok() { ed(100) } else { ed(200) };
        known.learn(&host, 22, &winner).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

#[test]
fn learning_a_key_writes_the_file_and_the_cache_follows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, line("a", &ed(1))).unwrap();
    let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
    assert_eq!(known.check("b", 2222, &ed(2)), HostKeyCheck::Unknown);
    let before = file(&known).writes.load(Ordering::SeqCst);
    known.learn("b", 2222, &ed(2)).unwrap();
    assert_eq!(file(&known).writes.load(Ordering::SeqCst), before + 1);
    // From the file itself, not only from memory; one new line parsed.
    assert_eq!(file(&known).keys_opt("[b]:2222"), Some(vec![ed(2)]));
    assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 2);
    assert_eq!(known.check("b", 2222, &ed(2)), HostKeyCheck::Trusted);
    // Another store on the same file agrees.
    let other = KnownHosts::from_file(&path);
    assert_eq!(other.check("b", 2222, &ed(2)), HostKeyCheck::Trusted);
    assert_eq!(
        other.check("b", 2222, &ed(3)),
        HostKeyCheck::Changed {
            expected: fp(&ed(2))
        }
    );
}

#[test]
fn appends_keep_the_index_small_and_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, line("h0", &ed(0))).unwrap();
    let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
    for i in 1..=200u8 {
        // Every host is also named "all", so the lookup spans every part.
        known.learn(&format!("h{i}"), 22, &ed(i)).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, line("all", &ed(i)).as_bytes()).unwrap();
        drop(f);
        assert_eq!(
            known.check(&format!("h{i}"), 22, &ed(i)),
            HostKeyCheck::Trusted
        );
    }
    let snapshot = file(&known).current().unwrap();
    let index = snapshot.index.as_ref().unwrap();
    assert_eq!(index.len(), 401);
    assert!(index.parts.len() <= 10, "{} parts", index.parts.len());
    let all = file(&known).keys_opt("all").unwrap();
    assert_eq!(all, (1..=200u8).map(ed).collect::<Vec<_>>());
    assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 401);
    assert_eq!(known.check("h0", 22, &ed(0)), HostKeyCheck::Trusted);
}

#[test]
fn concurrent_checks_see_the_old_or_the_new_file_never_neither() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let filler: String = (10..60u8).map(|i| line(&format!("h{i}"), &ed(i))).collect();
    replace(&path, (line("a", &ed(1)) + &filler).as_bytes());
    let known = KnownHosts::from_file(&path);
    std::thread::scope(|s| {
        let checkers: Vec<_> = (0..4)
            .map(|_| {
                let known = known.clone();
                s.spawn(move || {
                    for _ in 0..300 {
                        match known.check("a", 22, &ed(1)) {
                            HostKeyCheck::Trusted => {}
                            HostKeyCheck::Changed { expected } => {
                                assert_eq!(expected, fp(&ed(2)));
                            }
                            other => panic!("neither file: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        for i in 0..50 {
            let key = if i % 2 == 0 { ed(2) } else { ed(1) };
            replace(&path, (line("a", &key) + &filler).as_bytes());
        }
        replace(&path, (line("a", &ed(2)) + &filler).as_bytes());
        for checker in checkers {
            checker.join().unwrap();
        }
    });
    assert_eq!(
        known.check("a", 22, &ed(1)),
        HostKeyCheck::Changed {
            expected: fp(&ed(2))
        }
    );
}
