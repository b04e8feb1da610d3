//! `netauto bulk list`: bulk history newest first, filters, pages.

#![allow(clippy::unwrap_used)]

mod common;
use common::Env;

#[test]
fn bulk_list_shows_bulks_newest_first_filtered_and_paged() {
    let env = Env::new();
    let inv = env.path("inv.csv");
    std::fs::write(&inv, "name,host,platform,username\nr1,10.0.0.1,linux,u\n").unwrap();
    env.ok(&["devices", "import", inv.to_str().unwrap()]);
    let mut refs = Vec::new();
    for command in ["show version", "show clock", "show VERSION brief"] {
        let out = env.ok(&["bulk", "run", "--devices", "r1", "--command", command]);
        refs.push(out.trim().to_owned());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let refs_of = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["bulk_ref"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let all = env.ok(&["bulk", "list", "--json"]);
    assert_eq!(
        refs_of(&all),
        [refs[2].clone(), refs[1].clone(), refs[0].clone()]
    );
    let line: serde_json::Value = serde_json::from_str(all.lines().next().unwrap()).unwrap();
    assert_eq!(line["status"], "running");
    assert_eq!(line["requested_by"], "tester");

    let version = env.ok(&["bulk", "list", "--json", "--command", "version"]);
    assert_eq!(refs_of(&version), [refs[2].clone(), refs[0].clone()]);

    let out = env.run(&["bulk", "list", "--limit", "1"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("REF") && stdout.contains(&refs[2]),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let after = stderr
        .trim()
        .strip_prefix("more: add --after ")
        .expect("a cursor")
        .to_owned();
    let next = env.ok(&["bulk", "list", "--json", "--limit", "1", "--after", &after]);
    assert_eq!(refs_of(&next), [refs[1].clone()]);

    let bad = env.run(&["bulk", "list", "--status", "done"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("running, finished, cancelled"));
}
