//! `netauto platforms list|show`, inventories checked against the known platforms, and the
//! operator's own definitions in `NETAUTO_PLATFORMS_DIR`.

#![allow(clippy::unwrap_used)]

mod common;
use common::Env;

const ACME: &str = r#"
name = "acme_os"
aliases = ["acme"]
description = "ACME OS"
transport = "exec"
failures = ['^Error: unknown command']

[persona]
privileged_prompt = "{name}$ "
rejected = "Error: unknown command '{command}'\n"
"#;

#[test]
fn platforms_list_and_show_name_every_shipped_platform() {
    let env = Env::new();
    let list = env.ok(&["platforms", "list", "--json"]);
    let names: Vec<String> = list
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    for name in ["cisco_ios", "juniper_junos", "arista_eos", "generic"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let show = env.ok(&["platforms", "show", "junos"]);
    assert!(show.starts_with("# juniper_junos (builtin)\n"), "{show}");
    assert!(show.contains("transport = \"exec\""), "{show}");
    let out = env.run(&["platforms", "show", "junso"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown platform \"junso\"") && err.contains("juniper_junos"),
        "{err}"
    );
}

#[test]
fn an_inventory_naming_an_unknown_platform_imports_nothing_and_names_the_known_ones() {
    let env = Env::new();
    let file = env.path("inv.csv");
    std::fs::write(
        &file,
        "name,host,platform,username\nr1,10.0.0.1,ios,u\nr2,10.0.0.2,cisco_io,u\nr3,10.0.0.3,acme_os,u\n",
    )
    .unwrap();
    let out = env.run(&["devices", "import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 rows name an unknown platform, nothing imported"),
        "{err}"
    );
    assert!(
        err.contains("line 3: unknown platform \"cisco_io\""),
        "{err}"
    );
    assert!(
        err.contains("line 4: unknown platform \"acme_os\""),
        "{err}"
    );
    assert!(err.contains("known platforms: arista_eos,"), "{err}");
    assert_eq!(env.ok(&["devices", "list", "--json"]).trim(), "[]");
    let out = env.run(&[
        "devices",
        "add",
        "r9",
        "--host",
        "h",
        "--platform",
        "nope",
        "--username",
        "u",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no device added: unknown platform \"nope\""),
        "{err}"
    );

    // The operator's own definition makes the same file import.
    let dir = env.path("platforms");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("acme_os.toml"), ACME).unwrap();
    std::fs::write(
        &file,
        "name,host,platform,username\nr1,10.0.0.1,ios,u\nr3,10.0.0.3,acme,u\n",
    )
    .unwrap();
    let out = env
        .cmd(&["devices", "import", file.to_str().unwrap()])
        .env("NETAUTO_PLATFORMS_DIR", &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = env
        .cmd(&["platforms", "list"])
        .env("NETAUTO_PLATFORMS_DIR", &dir)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("acme_os") && l.ends_with("acme_os.toml")),
        "{listed}"
    );
}

#[test]
fn a_broken_definition_stops_the_program_naming_the_file_and_the_problem() {
    let env = Env::new();
    let dir = env.path("platforms");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        ACME.replace("'^Error: unknown command'", "'(unclosed'"),
    )
    .unwrap();
    std::fs::write(dir.join("worse.toml"), "name = \"Bad Name\"\n").unwrap();
    let out = env
        .cmd(&["platforms", "list"])
        .env("NETAUTO_PLATFORMS_DIR", &dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 platform definition problem(s)"), "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("(unclosed"),
        "{err}"
    );
    assert!(err.contains("worse.toml"), "{err}");
}
