//! Reading known_hosts lines: as russh read them, but fields split as OpenSSH splits them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use russh::keys::PublicKey;

use super::{base64_key, ed, file, hashed, line, replace, russh_keys, sk};
use crate::known_hosts::cache::HostsFile;
use crate::known_hosts::{HostKeyCheck, HostKeyPolicy, KnownHosts, host_entry_name};

/// Where russh split on single spaces, the index splits as OpenSSH does (runs of blanks,
/// leading blanks, markers): those lines are spelled out below and in
/// `fields_are_split_on_runs_of_blanks_as_openssh_does`; every other line reads as
/// russh read it.
#[test]
fn the_index_reads_the_file_as_russh_did_but_for_blanks_and_markers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let mut text = String::new();
    text += &format!("# a.example ssh-ed25519 {}\n", base64_key(&ed(0)));
    text += &line("a.example", &ed(1));
    text += &line("a.example,b.example", &ed(2));
    text += &line("[a.example]:2222", &ed(3));
    text += &line(&hashed("c.example", 7), &ed(4));
    // Named plainly and hashed: one entry.
    text += &line(&format!("d.example,{}", hashed("d.example", 8)), &ed(5));
    text += &line(&hashed("[d.example]:2200", 9), &ed(6));
    text += &line("|1|!!!|???,|1|", &ed(7));
    // Patterns and markers are compared literally.
    text += &line("*.example", &ed(8));
    text += &line("!f.example,f.example", &ed(9));
    text += &line("@revoked a.example", &ed(10));
    text += &line("@cert-authority *.example", &ed(11));
    // A key that does not parse: the file vouches for nothing for g.example.
    text += "g.example ssh-ed25519 AAAA-not-base64\n";
    text += &line("g.example", &ed(12));
    // Two spaces, tabs: russh read no key, OpenSSH (and the index) read one.
    text += &format!("h.example  ssh-ed25519 {}\n", base64_key(&ed(13)));
    text += &format!("i.example\tssh-ed25519\t{}\n", base64_key(&ed(14)));
    text += &format!("j.example ssh-ed25519 {} a comment\n", base64_key(&ed(15)));
    text += &format!("k.example ssh-ed25519 {}\r\n", base64_key(&ed(16)));
    text += &line("a.example", &sk(17));
    text += "\n";
    text += "l.example ssh-ed25519\n";
    text += &format!(" a.example ssh-ed25519 {}\n", base64_key(&ed(18)));
    text += &format!("m.example ssh-ed25519 {}", base64_key(&ed(19)));
    std::fs::write(&path, &text).unwrap();

    let known = KnownHosts::from_file(&path);
    let queries: &[(&str, u16)] = &[
        ("a.example", 2222),
        ("b.example", 22),
        ("c.example", 22),
        ("c.example", 2222),
        ("d.example", 22),
        ("d.example", 2200),
        ("*.example", 22),
        ("x.example", 22),
        ("!f.example", 22),
        ("f.example", 22),
        // (`@revoked` lines are honoured now: see `a_revoked_key_is_refused_everywhere`.)
        ("g.example", 22),
        ("j.example", 22),
        ("k.example", 22),
        ("l.example", 22),
        ("m.example", 22),
        ("unknown.example", 22),
    ];
    for &(host, port) in queries {
        let ours = file(&known).keys_opt(&host_entry_name(host, port));
        assert_eq!(ours, russh_keys(host, port, &path), "{host}:{port}");
    }
    // Where OpenSSH and russh differ, as OpenSSH reads it: runs of blanks and leading
    // blanks separate fields; a marker line names no host.
    let a = file(&known).keys_opt("a.example").unwrap();
    assert_eq!(a, vec![ed(1), ed(2), sk(17), ed(18)]);
    assert_eq!(file(&known).keys_opt("h.example"), Some(vec![ed(13)]));
    assert_eq!(file(&known).keys_opt("i.example"), Some(vec![ed(14)]));
    assert_eq!(file(&known).keys_opt("@cert-authority"), Some(vec![]));
    assert_eq!(file(&known).keys_opt(""), Some(vec![]));
    // The cases that matter, spelled out.
    assert_eq!(file(&known).keys_opt("c.example"), Some(vec![ed(4)]));
    assert_eq!(file(&known).keys_opt("d.example"), Some(vec![ed(5)]));
    assert_eq!(file(&known).keys_opt("[d.example]:2200"), Some(vec![ed(6)]));
    assert_eq!(file(&known).keys_opt("x.example"), Some(vec![]));
    assert_eq!(file(&known).keys_opt("g.example"), None);
    assert_eq!(file(&known).keys_opt("k.example"), Some(vec![ed(16)]));
    // Written just now, so re-read at every check, but parsed once.
    let lines = text.split_inclusive('\n').count() as u64;
    assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), lines);

    // Not UTF-8: russh failed for every host, and the file vouches for nothing.
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\xff\xfe n.example\n");
    replace(&path, &bytes);
    for &(host, port) in queries {
        let ours = file(&known).keys_opt(&host_entry_name(host, port));
        assert_eq!(ours, None, "{host}:{port}");
        assert_eq!(russh_keys(host, port, &path), None, "{host}:{port}");
    }
}

#[test]
fn fields_are_split_on_runs_of_blanks_as_openssh_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let b = base64_key;
    let mut text = String::new();
    text += &format!("a.example  ssh-ed25519   {}\n", b(&ed(1)));
    text += &format!("b.example\tssh-ed25519\t{}\n", b(&ed(2)));
    text += &format!(
        " \t c.example \t ssh-ed25519\t\t{}\t comment\there\n",
        b(&ed(3))
    );
    text += &format!("\td.example,e.example ssh-ed25519 {}  \r\n", b(&ed(4)));
    text += &format!("{}\t ssh-ed25519  {}\n", hashed("f.example", 3), b(&ed(5)));
    text += &format!("[g.example]:2222\tssh-ed25519 {}\n", b(&ed(6)));
    // Comments may be indented.
    text += &format!("  # a.example ssh-ed25519 {}\n", b(&ed(7)));
    text += &format!("\t#a.example ssh-ed25519 {}\n", b(&ed(8)));
    // Markers with any blanks: @cert-authority names no host (certificates are not
    // supported), an unknown marker makes the line invalid, @revoked revokes.
    text += &format!("@cert-authority\ta.example\tssh-ed25519 {}\n", b(&ed(9)));
    text += &format!("  @cert-authority  h.example ssh-ed25519 {}\n", b(&ed(9)));
    text += &format!("@bogus a.example ssh-ed25519 {}\n", b(&ed(10)));
    text += &format!("\t@revoked\t\ti.example   ssh-ed25519\t{}\n", b(&ed(11)));
    // A key that does not parse, whatever the blanks: nothing vouched for j.
    text += "j.example\t\tssh-ed25519\tAAAA-not-base64\n";
    // Too few fields.
    text += "k.example\tssh-ed25519\n";
    text += "   \t  \n";
    std::fs::write(&path, &text).unwrap();

    let known = KnownHosts::from_file(&path);
    let keys = |name: &str| file(&known).keys_opt(name);
    assert_eq!(keys("a.example"), Some(vec![ed(1)]));
    assert_eq!(keys("b.example"), Some(vec![ed(2)]));
    assert_eq!(keys("c.example"), Some(vec![ed(3)]));
    assert_eq!(keys("d.example"), Some(vec![ed(4)]));
    assert_eq!(keys("e.example"), Some(vec![ed(4)]));
    assert_eq!(keys("f.example"), Some(vec![ed(5)]));
    assert_eq!(keys("[g.example]:2222"), Some(vec![ed(6)]));
    assert_eq!(keys("h.example"), Some(vec![]));
    assert_eq!(keys("@cert-authority"), Some(vec![]));
    assert_eq!(keys("@bogus"), Some(vec![]));
    assert_eq!(keys("@revoked"), Some(vec![]));
    assert_eq!(keys("i.example"), Some(vec![]));
    assert_eq!(keys("j.example"), None);
    assert_eq!(keys("k.example"), Some(vec![]));
    assert_eq!(keys(""), Some(vec![]));
    assert_eq!(known.check("c.example", 22, &ed(3)), HostKeyCheck::Trusted);
    assert_eq!(known.check("x.example", 22, &ed(11)), HostKeyCheck::Revoked);
    assert!(matches!(
        known.check("j.example", 22, &ed(12)),
        HostKeyCheck::Unverifiable { .. }
    ));
    // Accept-new finds the tab-separated key: no second line is appended for b.
    HostKeyPolicy::AcceptNew(known.clone())
        .verify("b.example", 22, &ed(2))
        .unwrap();
    assert!(
        HostKeyPolicy::AcceptNew(known.clone())
            .verify("b.example", 22, &ed(13))
            .is_err()
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    // The same lines appended to a cached file parse the same way.
    std::fs::write(&path, line("z", &ed(20))).unwrap();
    let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));
    assert_eq!(known.check("z", 22, &ed(20)), HostKeyCheck::Trusted);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    drop(f);
    assert_eq!(known.check("b.example", 22, &ed(2)), HostKeyCheck::Trusted);
    assert_eq!(known.check("c.example", 22, &ed(3)), HostKeyCheck::Trusted);
    assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 1 + 15);
}

/// Where `ssh-key` reads a line more strictly than russh did, it reads it as OpenSSH does: a
/// key type field that does not name the key's type, or a hashed name with more after its
/// hash. A key that does not parse is reported with its line number and why, in appended
/// lines too.
#[test]
fn stricter_lines_read_as_openssh_reads_them_and_bad_keys_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let mut text = String::new();
    text += "# line 1\n";
    text += &line("a.example", &ed(1));
    text += "b.example ssh-ed25519 AAAA-not-base64\n";
    text += &format!("c.example ssh-rsa {}\n", base64_key(&ed(2)));
    text += &line(&format!("{}|junk", hashed("d.example", 1)), &ed(3));
    text += &line(&hashed("d.example", 2), &ed(4));
    std::fs::write(&path, &text).unwrap();
    let known = KnownHosts::with_file(HostsFile::new(path.clone(), Duration::ZERO));

    assert_eq!(known.check("a.example", 22, &ed(1)), HostKeyCheck::Trusted);
    let unverifiable = |host: &str, key: &PublicKey| match known.check(host, 22, key) {
        HostKeyCheck::Unverifiable { reason } => reason,
        other => panic!("{host}: {other:?}"),
    };
    let reason = unverifiable("b.example", &ed(9));
    let at = format!("{}:3: ", path.display());
    assert!(reason.starts_with(&at), "{reason}");
    assert!(reason.contains("does not parse"), "{reason}");
    // russh trusted the key whatever the type field said; OpenSSH and ssh-key refuse it.
    assert_eq!(
        russh_keys("c.example", 22, &path),
        Some(vec![ed(2)]),
        "as russh read it"
    );
    let reason = unverifiable("c.example", &ed(2));
    assert!(reason.contains(":4: "), "{reason}");
    // `|1|salt|hash|junk` is no name (russh matched it), `|1|salt|hash` is.
    assert_eq!(russh_keys("d.example", 22, &path), Some(vec![ed(3), ed(4)]));
    assert_eq!(file(&known).keys_opt("d.example"), Some(vec![ed(4)]));

    // Appended lines are numbered on from the cached ones.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"\ne.example ssh-ed25519 AAAA\n").unwrap();
    drop(f);
    assert_eq!(known.check("a.example", 22, &ed(1)), HostKeyCheck::Trusted);
    let reason = unverifiable("e.example", &ed(5));
    assert!(reason.contains(":8: "), "{reason}");
    assert_eq!(file(&known).parsed_lines.load(Ordering::Relaxed), 8);
}
