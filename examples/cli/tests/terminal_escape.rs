//! `runs show` and `bulk show` on a terminal: control characters of device text are shown
//! escaped; a pipe (and `--raw`) gets the bytes as stored. Terminal mode is forced with
//! `NETAUTO_FORCE_TTY=1`, since a test's stdout is a pipe.

#![allow(clippy::unwrap_used)]

use std::process::Output;

mod common;
use common::Env;

use chrono::Utc;
use netauto_core::{BulkRef, NewDevice, NewRun, OutputStream, RunFinish, RunId, RunStatus};
use netauto_sqlx::Database;

/// Output with what a hostile device could send: a title change (OSC), a screen clear (CSI),
/// a C1 CSI, a lone carriage return, a byte that is not UTF-8, and a UTF-8 character split
/// across two chunks.
const STDOUT_CHUNKS: [&[u8]; 2] = [
    b"r1#show version\r\n\x1b]0;owned\x07\x1b[2Jversion 1.0 \xe2\x9c",
    b"\x93\r\nfake prompt\rreal\xc2\x9b31m \xff\n",
];
const STDERR_CHUNK: &[u8] = b"warning\x1b[31m red\n";
const ERROR_MESSAGE: &str = "protocol error: banner \x1b]0;owned\x07\x1b[2J";

/// The binary in `env`, as a terminal (`tty`) or a pipe; it must succeed.
fn run(env: &Env, args: &[&str], tty: bool) -> Output {
    let mut cmd = env.cmd(args);
    if tty {
        cmd.env("NETAUTO_FORCE_TTY", "1");
    } else {
        cmd.env_remove("NETAUTO_FORCE_TTY");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "netauto {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A device, a failed run with the hostile output, and a bulk whose outcome is that run.
async fn seed(env: &Env) -> (RunId, BulkRef) {
    let db = Database::connect(&env.url()).await.unwrap();
    db.migrate().await.unwrap();
    let store = db.store();
    let now = Utc::now();
    let device = store
        .create_device(NewDevice::new("r1", "10.0.0.1", "linux", "root"))
        .await
        .unwrap();
    let bulk_ref = BulkRef::generate();
    // Through serde, so fields other work adds (with their defaults) need no change here.
    let bulk = serde_json::from_value(serde_json::json!({
        "bulk_ref": bulk_ref,
        "command": "show version",
        "requested_by": "tester",
        "device_ids": [device.id],
    }))
    .unwrap();
    store.create_bulk(bulk, Vec::new(), now).await.unwrap();
    let run = store
        .create_run(
            NewRun {
                device_id: device.id,
                command: "show version".into(),
                requested_by: "tester".into(),
                bulk_ref: Some(bulk_ref.clone()),
            },
            now,
        )
        .await
        .unwrap();
    for chunk in STDOUT_CHUNKS {
        store
            .append_chunk(run.id, OutputStream::Stdout, chunk, now)
            .await
            .unwrap();
    }
    store
        .append_chunk(run.id, OutputStream::Stderr, STDERR_CHUNK, now)
        .await
        .unwrap();
    store
        .finish_run(
            run.id,
            RunFinish::new(RunStatus::Error).with_error("protocol", ERROR_MESSAGE),
            now,
        )
        .await
        .unwrap();
    let outcome = serde_json::from_value(serde_json::json!({
        "device_id": device.id,
        "run_id": run.id,
        "status": "error",
        "error_kind": "protocol",
        "recorded_at": now,
    }))
    .unwrap();
    store.record_outcome(&bulk_ref, outcome).await.unwrap();
    (run.id, bulk_ref)
}

/// Whether `bytes` hold a byte a terminal would act on: C0 controls but `\n`, `\t` and the
/// `\r` of `\r\n`, DEL, and C1 controls (`\xc2\x80`–`\xc2\x9f` in UTF-8).
fn has_terminal_controls(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\n' | b'\t' => false,
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        0..=0x1f | 0x7f => true,
        0xc2 => bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)),
        _ => false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_escapes_device_control_characters_on_a_terminal_only() {
    let env = Env::new();
    let (run_id, _) = seed(&env).await;
    let id = run_id.to_string();
    let stored: Vec<u8> = STDOUT_CHUNKS.concat();

    // A pipe: the bytes as stored.
    let piped = run(&env, &["runs", "show", &id], false);
    assert_eq!(piped.stdout, stored);
    assert!(piped.stderr.starts_with(STDERR_CHUNK));

    // A terminal: nothing it would act on, everything readable.
    let tty = run(&env, &["runs", "show", &id], true);
    assert!(
        !has_terminal_controls(&tty.stdout),
        "{:?}",
        String::from_utf8_lossy(&tty.stdout)
    );
    assert!(
        !has_terminal_controls(&tty.stderr),
        "{:?}",
        String::from_utf8_lossy(&tty.stderr)
    );
    let shown = String::from_utf8(tty.stdout).unwrap();
    assert_eq!(
        shown,
        "r1#show version\r\n\\x1b]0;owned\\x07\\x1b[2Jversion 1.0 \u{2713}\r\n\
         fake prompt\\x0dreal\\u{9b}31m \\xff\n"
    );
    let status = String::from_utf8(tty.stderr).unwrap();
    assert!(status.starts_with("warning\\x1b[31m red\n"), "{status}");
    assert!(
        status.contains("protocol error: banner \\x1b]0;owned\\x07\\x1b[2J"),
        "{status}"
    );

    // A terminal with --raw: the bytes as stored.
    let raw = run(&env, &["runs", "show", &id, "--raw"], true);
    assert_eq!(raw.stdout, stored);
    assert!(raw.stderr.starts_with(STDERR_CHUNK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_show_escapes_error_messages_on_a_terminal() {
    let env = Env::new();
    let (_, bulk_ref) = seed(&env).await;
    let tty = run(&env, &["bulk", "show", bulk_ref.as_str()], true);
    assert!(
        !has_terminal_controls(&tty.stdout),
        "{:?}",
        String::from_utf8_lossy(&tty.stdout)
    );
    let table = String::from_utf8(tty.stdout).unwrap();
    assert!(
        table.contains("protocol error: banner \\x1b]0;owned\\x07\\x1b[2J"),
        "{table}"
    );
    // A pipe gets the message as stored.
    let piped = run(&env, &["bulk", "show", bulk_ref.as_str()], false);
    let table = String::from_utf8(piped.stdout).unwrap();
    assert!(table.contains(ERROR_MESSAGE), "{table}");
}
