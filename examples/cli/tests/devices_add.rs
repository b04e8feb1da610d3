//! `netauto devices add` checks its values as an inventory import checks a row.

#![allow(clippy::unwrap_used)]

use std::process::Output;

mod common;
use common::Env;

/// `devices list --json` of `env`'s database.
fn devices(env: &Env) -> serde_json::Value {
    let out = env.run(&["devices", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `devices add` with `name` and the flags of a good device, `extra` replacing or adding
/// to them.
fn add_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["devices", "add", name];
    let defaults = [
        ("--host", "10.0.0.1"),
        ("--platform", "linux"),
        ("--username", "root"),
    ];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    args
}

#[test]
fn devices_add_refuses_what_an_import_refuses_naming_the_field() {
    let env = Env::new();
    let long = "x".repeat(1025);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (add_args("core sw", &[]), "bad device name \"core sw\""),
        (add_args("r1\x1b[2J", &[]), "device name"),
        (add_args("r1", &["--host", "10.0.0.1 evil"]), "bad host"),
        (add_args("r1", &["--host", "h\u{7}"]), "host"),
        (
            add_args("r1", &["--platform", "linux\x1b]0;t\x07"]),
            "platform \"linux\\u{1b}]0;t\\u{7}\" has a control character",
        ),
        (add_args("r1", &["--platform", "  "]), "platform is empty"),
        (add_args("r1", &["--username", " "]), "username is empty"),
        (
            add_args("r1", &["--username", &long]),
            "username is too long (1025 bytes, at most 1024)",
        ),
        (add_args("r1", &["--port", "0"]), "port must be 1 to 65535"),
        (
            add_args("r1", &["--credential-ref", "la\rb"]),
            "credential_ref",
        ),
        (
            add_args("r1", &["--tags", "core,ed\x08ge"]),
            "tag \"ed\\u{8}ge\"",
        ),
        (add_args("r1", &["--site", "ams\x7f"]), "site"),
    ];
    for (args, expected) in cases {
        let out = env.run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(err.contains("no device added"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one readable line: {err}");
        assert!(!err.contains('\x1b'), "{err}");
    }
    assert_eq!(devices(&env), serde_json::json!([]));

    // Good values are stored trimmed, blank optional ones dropped, as an import stores them.
    let out = env.run(&add_args(
        " r1 ",
        &[
            "--host",
            " 10.0.0.1 ",
            "--credential-ref",
            " ",
            "--tags",
            "core, edge,",
            "--site",
            " ams ",
        ],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let devices = devices(&env);
    let d = &devices[0];
    assert_eq!(d["name"], "r1");
    assert_eq!(d["host"], "10.0.0.1");
    assert_eq!(d["credential_ref"], serde_json::Value::Null);
    assert_eq!(d["tags"], serde_json::json!(["core", "edge"]));
    assert_eq!(d["site"], "ams");
}
