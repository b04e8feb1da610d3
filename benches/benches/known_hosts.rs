//! `known_hosts`: host-key checks against a 10,000-line known_hosts file, one per host of
//! the fleet, the way a bulk run over 10,000 devices does them.
//!
//! * `full_parse_per_lookup`: what `KnownHosts::check` did before its cache: read and scan
//!   the whole file at every check (russh's `known_host_keys_path`, then the same decision).
//! * `cached_index`: `KnownHosts::check` today: a `stat` of the file, then the parsed index.
//!
//! Before measuring, the bench checks that both agree (trusted, changed and unknown keys),
//! then times one pass of 10,000 lookups (every host once) through each and prints the
//! ratio; criterion then measures single lookups (rotating through the hosts). Run it with
//! `cargo bench -p netauto-benches --bench known_hosts` (add `-- --quick` on a busy
//! machine).
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netauto_benches::SplitMix;
use netauto_ssh::{HostKeyCheck, KnownHosts};
use russh::keys::PublicKey;
use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};

const HOSTS: usize = 10_000;

struct Fleet {
    hosts: Vec<(String, u16)>,
    keys: Vec<PublicKey>,
}

fn fleet() -> Fleet {
    let mut rng = SplitMix::new(0x6b6e_6f77_6e5f_686f);
    let mut hosts = Vec::with_capacity(HOSTS);
    let mut keys = Vec::with_capacity(HOSTS);
    for i in 0..HOSTS {
        // Most devices on port 22 by name, some by address on another port.
        let host = if i % 4 == 0 {
            (
                format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff),
                830,
            )
        } else {
            (format!("dev{i:05}.pop{:02}.example.net", i % 37), 22)
        };
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        hosts.push(host);
        keys.push(PublicKey::new(
            KeyData::Ed25519(Ed25519PublicKey(bytes)),
            "",
        ));
    }
    Fleet { hosts, keys }
}

fn write_file(fleet: &Fleet, path: &Path) {
    let known = KnownHosts::new();
    for ((host, port), key) in fleet.hosts.iter().zip(&fleet.keys) {
        known.insert(host, *port, key.clone());
    }
    known.write_memory_to(path).expect("write known_hosts");
}

/// `KnownHosts::check` before the cache (no keys in memory): the whole file at every call.
fn full_parse_check(path: &Path, host: &str, port: u16, key: &PublicKey) -> HostKeyCheck {
    let recorded: Vec<PublicKey> =
        match russh::keys::known_hosts::known_host_keys_path(host, port, path) {
            Ok(found) => found.into_iter().map(|(_, k)| k).collect(),
            Err(_) => Vec::new(),
        };
    if recorded.iter().any(|k| k.key_data() == key.key_data()) {
        return HostKeyCheck::Trusted;
    }
    match recorded.iter().find(|k| k.algorithm() == key.algorithm()) {
        Some(old) => HostKeyCheck::Changed {
            expected: netauto_ssh::known_hosts::fingerprint(old),
        },
        None => HostKeyCheck::Unknown,
    }
}

fn agree(fleet: &Fleet, path: &Path, known: &KnownHosts) {
    let stranger = PublicKey::new(KeyData::Ed25519(Ed25519PublicKey([7; 32])), "");
    for (i, ((host, port), key)) in fleet.hosts.iter().zip(&fleet.keys).enumerate().step_by(97) {
        assert_eq!(
            known.check(host, *port, key),
            HostKeyCheck::Trusted,
            "{host}"
        );
        assert_eq!(
            full_parse_check(path, host, *port, key),
            HostKeyCheck::Trusted
        );
        let other = &fleet.keys[(i + 1) % HOSTS];
        let changed = known.check(host, *port, other);
        assert!(matches!(changed, HostKeyCheck::Changed { .. }), "{host}");
        assert_eq!(full_parse_check(path, host, *port, other), changed);
    }
    assert_eq!(
        known.check("nowhere.example.net", 22, &stranger),
        HostKeyCheck::Unknown
    );
    assert_eq!(
        full_parse_check(path, "nowhere.example.net", 22, &stranger),
        HostKeyCheck::Unknown
    );
}

/// One lookup per host, every host once.
fn pass(fleet: &Fleet, mut check: impl FnMut(&str, u16, &PublicKey) -> HostKeyCheck) -> Duration {
    let started = Instant::now();
    for ((host, port), key) in fleet.hosts.iter().zip(&fleet.keys) {
        let verdict = check(black_box(host), *port, black_box(key));
        assert_eq!(verdict, HostKeyCheck::Trusted);
    }
    started.elapsed()
}

fn known_hosts(c: &mut Criterion) {
    let fleet = fleet();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    write_file(&fleet, &path);
    let bytes = std::fs::metadata(&path).expect("stat").len();
    let known = KnownHosts::from_file(&path);
    // A file changed in the last 2 s is re-read (not re-parsed) at every check; a fleet's
    // known_hosts is normally older than that.
    std::thread::sleep(Duration::from_millis(2100));
    agree(&fleet, &path, &known);

    let cached = pass(&fleet, |h, p, k| known.check(h, p, k));
    let full = pass(&fleet, |h, p, k| full_parse_check(&path, h, p, k));
    eprintln!(
        "known_hosts: {HOSTS} lookups against {HOSTS} lines ({:.0} KiB): full parse per lookup \
         {:.2} s ({:.0} µs each), cached index {:.1} ms ({:.2} µs each): {:.0}x",
        bytes as f64 / 1024.0,
        full.as_secs_f64(),
        full.as_secs_f64() * 1e6 / HOSTS as f64,
        cached.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e6 / HOSTS as f64,
        full.as_secs_f64() / cached.as_secs_f64(),
    );

    let mut group = c.benchmark_group(format!("known_hosts/{HOSTS}_lines"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    let mut next = 0usize;
    group.bench_function("full_parse_per_lookup", |b| {
        b.iter(|| {
            next = (next + 1) % HOSTS;
            let (host, port) = &fleet.hosts[next];
            full_parse_check(&path, host, *port, &fleet.keys[next])
        });
    });
    group.bench_function("cached_index", |b| {
        b.iter(|| {
            next = (next + 1) % HOSTS;
            let (host, port) = &fleet.hosts[next];
            known.check(host, *port, &fleet.keys[next])
        });
    });
    group.finish();
    eprintln!("known_hosts: cache after the bench: {known:?}");
}

criterion_group!(benches, known_hosts);
criterion_main!(benches);
