//! End-to-end tests of the `netauto` binary on a temporary SQLite database.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use chrono::{TimeDelta, Utc};
use netauto_core::{DeviceId, NewDevice, NewRun, OutputStream, RunFinish, RunId, RunStatus};
use netauto_sqlx::Database;
use netauto_ssh::sim::{DeviceFarm, DeviceSpec, FailureMode};
use serde_json::Value;

mod common;
use common::Env;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a blocking command without stalling the test's runtime (the simulator lives on it).
async fn run_async(cmd: Command) -> Output {
    let mut cmd = cmd;
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let env = Env::new();
    env.ok(&["migrate"]);
    assert!(env.path("netauto.db").exists());
    env.ok(&["migrate"]);
    assert_eq!(env.ok(&["devices", "list", "--json"]).trim(), "[]");
}

#[test]
fn an_import_with_a_bad_row_imports_nothing_and_names_the_line() {
    let env = Env::new();
    env.ok(&["migrate"]);
    std::fs::write(
        env.path("inv.csv"),
        "name,host,port,platform,username,credential_ref,tags,site\n\
         r1,10.0.0.1,22,cisco_ios,admin,lab,core;edge,ams\n\
         r2,10.0.0.2,not-a-port,linux,root,,,\n\
         r3,10.0.0.3,22,linux,root,,,\n",
    )
    .unwrap();
    let out = env.run(&["devices", "import", "inv.csv"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("line 3") && err.contains("not-a-port") && err.contains("nothing imported"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one readable line: {err}");
    assert_eq!(env.ok(&["devices", "list", "--json"]).trim(), "[]");

    std::fs::write(
        env.path("inv.yaml"),
        "devices:\n  - name: y1\n    host: h1\n    platform: junos\n    username: u\n  - name: y2\n    host: h2\n    platform: junos\n",
    )
    .unwrap();
    let out = env.run(&["devices", "import", "inv.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 6") && stderr(&out).contains("username"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.ok(&["devices", "list", "--json"]).trim(), "[]");

    // Fixed, the same file imports whole; importing it again clashes and changes nothing.
    std::fs::write(
        env.path("inv.csv"),
        "name,host,port,platform,username\nr1,10.0.0.1,22,cisco_ios,admin\nr2,10.0.0.2,2222,linux,root\n",
    )
    .unwrap();
    env.ok(&["devices", "import", "inv.csv"]);
    let out = env.run(&["devices", "import", "inv.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let list = env.ok(&["devices", "list", "--filter", "platform=linux"]);
    assert!(list.contains("r2") && !list.contains("r1"), "{list}");
}

fn specs() -> Vec<DeviceSpec> {
    vec![
        DeviceSpec::new("sw-01", "linux"),
        DeviceSpec::new("sw-02", "arista_eos").with_output_bytes(20 * 1024),
        DeviceSpec::new("sw-03", "linux"),
        DeviceSpec::new("bad-01", "linux").with_failure(FailureMode::AuthReject),
    ]
}

/// Writes what a worker needs to reach `farm`: known_hosts and a credentials file.
fn write_ssh_files(farm: &DeviceFarm, dir: &Path) {
    farm.write_known_hosts(dir.join("known_hosts")).unwrap();
    let mut creds = serde_json::Map::new();
    for device in farm.devices() {
        let spec = farm.spec(&device.name).unwrap();
        creds.insert(
            device.credential_ref.clone(),
            serde_json::json!({ "password": spec.password }),
        );
    }
    std::fs::write(
        dir.join("credentials.json"),
        serde_json::to_vec(&creds).unwrap(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_run_wait_runs_simulated_devices_and_fails_when_one_fails() {
    let env = Env::new();
    let farm = DeviceFarm::start(specs()).await.unwrap();
    farm.write_inventory(env.path("inventory.json")).unwrap();
    write_ssh_files(&farm, env.dir.path());
    let out = run_async(env.cmd(&["devices", "import", "inventory.json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let ssh = [
        "--known-hosts",
        "known_hosts",
        "--credentials",
        "credentials.json",
    ];
    let mut args = vec![
        "bulk",
        "run",
        "--filter",
        "name=sw-*",
        "--command",
        "show version",
        "--wait",
    ];
    args.extend(ssh);
    let out = run_async(env.cmd(&args)).await;
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(out.status.success(), "{}\n{stdout}", stderr(&out));
    let bulk_ref = stdout.lines().next().unwrap().to_owned();
    assert_eq!(bulk_ref.len(), 32, "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" ok ")).count(),
        3,
        "{stdout}"
    );
    assert!(
        stdout.contains("3 devices: 3 ok, 0 failed, 0 pending"),
        "{stdout}"
    );

    // The stored bulk and one run's output.
    let shown: Value =
        serde_json::from_str(&env.ok(&["bulk", "show", &bulk_ref, "--json"])).unwrap();
    assert_eq!(shown["counters"]["ok"], 3);
    let run_id = shown["outcomes"]
        .as_object()
        .unwrap()
        .values()
        .find_map(|o| o["run_id"].as_i64())
        .unwrap();
    let output = env.ok(&["runs", "show", &run_id.to_string()]);
    assert!(output.contains(": output of 'show version'"), "{output}");

    // All devices, one rejecting logins: the table says which, the exit code is 3.
    let mut args = vec!["bulk", "run", "--all", "--command", "show clock", "--wait"];
    args.extend(ssh);
    let out = run_async(env.cmd(&args)).await;
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(out.status.code(), Some(3), "{}\n{stdout}", stderr(&out));
    let bad = stdout.lines().find(|l| l.contains("bad-01")).unwrap();
    assert!(bad.contains("error"), "{stdout}");
    assert!(
        stdout.contains("4 devices: 3 ok, 1 failed, 0 pending"),
        "{stdout}"
    );

    // Strict host keys without the farm's keys: every device fails with a host-key error.
    let out = run_async(env.cmd(&[
        "bulk",
        "run",
        "--devices",
        "sw-01",
        "--command",
        "show clock",
        "--wait",
        "--credentials",
        "credentials.json",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("host key"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Seeds a finished run of `bytes` bytes that finished `days_ago` days ago.
async fn seed_run(db: &Database, device: DeviceId, days_ago: i64, bytes: usize) -> RunId {
    let store = db.store();
    let at = Utc::now() - TimeDelta::days(days_ago);
    let run = store
        .create_run(
            NewRun {
                device_id: device,
                command: "show tech".into(),
                requested_by: "seed".into(),
                bulk_ref: None,
            },
            at,
        )
        .await
        .unwrap();
    store
        .append_chunk(run.id, OutputStream::Stdout, &vec![b'x'; bytes], at)
        .await
        .unwrap();
    store
        .finish_run(run.id, RunFinish::new(RunStatus::Ok), at)
        .await
        .unwrap();
    run.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_plan_json_lists_exactly_the_runs_to_delete() {
    let env = Env::new();
    let db = env.db().await;
    let store = db.store();
    let d1 = store
        .create_device(NewDevice::new("d1", "h1", "linux", "u"))
        .await
        .unwrap()
        .id;
    let d2 = store
        .create_device(NewDevice::new("d2", "h2", "linux", "u"))
        .await
        .unwrap()
        .id;
    let old_d1 = seed_run(&db, d1, 60, 100).await; // age
    let mid_d1 = seed_run(&db, d1, 10, 600).await; // bytes: d1 holds 1 200 > 1 000
    let _new_d1 = seed_run(&db, d1, 5, 600).await; // kept
    let old_d2 = seed_run(&db, d2, 40, 70).await; // age
    let _new_d2 = seed_run(&db, d2, 1, 50).await; // kept

    let plan = |env: &Env| {
        let mut cmd = env.cmd(&["retention", "plan", "--json"]);
        cmd.env("NET_AUTO_RUN_MAX_DAYS", "30")
            .env("NET_AUTO_RUN_MAX_BYTES", "1000");
        run_async(cmd)
    };
    let out = plan(&env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let deletions: Vec<(i64, i64, String, u64)> = json["deletions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["run_id"].as_i64().unwrap(),
                d["device_id"].as_i64().unwrap(),
                d["reason"].as_str().unwrap().to_owned(),
                d["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        deletions,
        [
            (old_d1.0, d1.0, "age".to_owned(), 100),
            (old_d2.0, d2.0, "age".to_owned(), 70),
            (mid_d1.0, d1.0, "bytes".to_owned(), 600),
        ]
    );
    assert_eq!(json["max_days"], 30);
    assert_eq!(json["max_bytes"], 1000);
    assert_eq!(json["unresolved_devices"], serde_json::json!([]));

    // The dry run deleted nothing; `retention run` deletes exactly that, then nothing is left.
    assert!(store.run(old_d1).await.is_ok());
    let mut cmd = env.cmd(&["retention", "run"]);
    cmd.env("NET_AUTO_RUN_MAX_DAYS", "30")
        .env("NET_AUTO_RUN_MAX_BYTES", "1000");
    let out = run_async(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted 2 runs by age"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let json: Value = serde_json::from_slice(&plan(&env).await.stdout).unwrap();
    assert_eq!(json["deletions"], serde_json::json!([]));
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let env = Env::new();
    let cases: [(&[&str], &str); 5] = [
        (&["bulk", "run", "--command", "x"], "--devices"),
        (
            &[
                "bulk",
                "run",
                "--all",
                "--filter",
                "platform=x",
                "--command",
                "x",
            ],
            "cannot be used with",
        ),
        (
            &[
                "bulk",
                "run",
                "--all",
                "--filter",
                "colour=red",
                "--command",
                "x",
            ],
            "colour",
        ),
        (
            &["worker", "--queues", "bulk=0"],
            "limit of bulk must be 1 to 1000",
        ),
        (&["bulk", "show", "nope"], "invalid bulk reference"),
    ];
    for (args, needle) in cases {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn runtime_errors_are_one_line_and_verbose_adds_the_causes() {
    let env = Env::new();
    let out = env.run(&["runs", "show", "42"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "netauto: run 42 not found");

    let mut cmd = env.cmd(&["retention", "plan"]);
    cmd.env("NET_AUTO_RUN_MAX_DAYS", "soon");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("NET_AUTO_RUN_MAX_DAYS"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));

    let out = env.run(&[
        "--verbose",
        "--database",
        "mysql://u:secret@h/db",
        "devices",
        "list",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("caused by") && !err.contains("secret"),
        "{err}"
    );
}

#[test]
fn worker_starts_and_stops_gracefully_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let env = Env::new();
    env.ok(&["migrate"]);
    let mut child = env
        .cmd(&["worker", "--queues", "bulk=2,retention=1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains("queues bulk=2,retention=1") && first.contains("SIGTERM"),
        "{first}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped;")), "{rest:?}");
}

/// Issue 12: `bulk run --timeout` and `--max-output` bound a bulk's devices; `bulk cancel`
/// cancels devices not started at once and, with a worker running, closes running sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_limits_and_cancel_from_the_command_line() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let env = Env::new();
    let farm = DeviceFarm::start(vec![
        DeviceSpec::new("hang-01", "linux").with_failure(FailureMode::Hang),
        DeviceSpec::new("yes-01", "linux").with_failure(FailureMode::Endless),
    ])
    .await
    .unwrap();
    farm.write_inventory(env.path("inventory.json")).unwrap();
    write_ssh_files(&farm, env.dir.path());
    env.ok(&["devices", "import", "inventory.json"]);
    let ssh = [
        "--known-hosts",
        "known_hosts",
        "--credentials",
        "credentials.json",
    ];

    // A hanging device ends at the bulk's deadline.
    let mut args = vec![
        "bulk",
        "run",
        "--devices",
        "hang-01",
        "--command",
        "show clock",
        "--wait",
        "--timeout",
        "1s",
    ];
    args.extend(ssh);
    let started = Instant::now();
    let out = run_async(env.cmd(&args)).await;
    let took = started.elapsed();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(out.status.code(), Some(3), "{}\n{stdout}", stderr(&out));
    assert!(stdout.contains("timeout"), "{stdout}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let bulk_ref = stdout.lines().next().unwrap().to_owned();
    let shown = env.ok(&["bulk", "show", &bulk_ref]);
    assert!(shown.contains("deadline: 1s per device"), "{shown}");

    // `yes` stops at the bulk's cap; the table says truncated.
    let mut args = vec![
        "bulk",
        "run",
        "--devices",
        "yes-01",
        "--command",
        "yes",
        "--wait",
        "--max-output",
        "64KiB",
    ];
    args.extend(ssh);
    let out = run_async(env.cmd(&args)).await;
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(out.status.code(), Some(3), "{}\n{stdout}", stderr(&out));
    let row = stdout.lines().find(|l| l.contains("yes-01")).unwrap();
    assert!(row.contains("65536") && row.contains(" yes "), "{stdout}");

    // Bad values are refused before anything is enqueued.
    let out = env.run(&[
        "bulk",
        "run",
        "--all",
        "--command",
        "x",
        "--timeout",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--timeout"), "{}", stderr(&out));

    // No worker: cancelling records every device cancelled at once.
    let queued = env.ok(&["bulk", "run", "--all", "--command", "show clock"]);
    let queued = queued.lines().next().unwrap().to_owned();
    let out = env.run(&["bulk", "cancel", &queued]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 devices that had not started are cancelled"),
        "{}",
        stderr(&out)
    );
    let shown = env.ok(&["bulk", "show", &queued]);
    assert!(
        shown.contains("2 devices: 0 ok, 0 failed, 2 cancelled, 0 pending (bulk cancelled)"),
        "{shown}"
    );

    // A worker running the hanging device: `bulk cancel --wait` returns once it stopped.
    let mut worker_args = vec!["worker", "--queues", "bulk=2"];
    worker_args.extend(ssh);
    let mut worker = env
        .cmd(&worker_args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(worker.stderr.take().unwrap()).lines();
    let _banner = lines.next().unwrap().unwrap();
    let running = env.ok(&[
        "bulk",
        "run",
        "--devices",
        "hang-01",
        "--command",
        "show clock",
    ]);
    let running = running.lines().next().unwrap().to_owned();
    let db = env.db().await;
    let store = db.store();
    let started = Instant::now();
    loop {
        let runs = store.device_runs(DeviceId(1), 10).await.unwrap();
        if runs.iter().any(|r| r.status == RunStatus::Running) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker never started it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    let out = run_async(env.cmd(&["bulk", "cancel", &running, "--wait"])).await;
    let took = asked.elapsed();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(out.status.success(), "{}\n{stdout}", stderr(&out));
    assert!(
        stdout.contains("1 devices: 0 ok, 0 failed, 1 cancelled, 0 pending (bulk cancelled)"),
        "{stdout}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let _ = worker.wait();
}

/// Issue 13: the SSH pacing knobs parse the same way as flags and as environment variables.
#[test]
fn pacing_knobs_parse_as_flags_and_variables() {
    let env = Env::new();
    env.ok(&["migrate"]);
    let out = env.run(&[
        "devices",
        "add",
        "r1",
        "--host",
        "10.0.0.1",
        "--platform",
        "linux",
        "--username",
        "ops",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.ok(&[
        "bulk",
        "run",
        "--all",
        "--command",
        "show clock",
        "--connections-per-second",
        "unlimited",
        "--max-sessions",
        "unlimited",
        "--sessions-per-endpoint",
        "8",
        "--devices-per-job",
        "20",
    ]);
    let out = env
        .cmd(&["bulk", "run", "--all", "--command", "show clock"])
        .env("NETAUTO_SSH_SESSIONS_PER_ENDPOINT", "unlimited")
        .env("NETAUTO_SSH_CONNECTIONS_PER_SECOND", "400")
        .env("NETAUTO_DEVICES_PER_JOB", "50")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for (flag, bad) in [
        ("--sessions-per-endpoint", "0"),
        ("--connections-per-second", "fast"),
        ("--devices-per-job", "0"),
    ] {
        let out = env.run(&["bulk", "run", "--all", "--command", "x", flag, bad]);
        assert_eq!(out.status.code(), Some(2), "{flag} {bad}");
        assert!(stderr(&out).contains(flag), "{}", stderr(&out));
    }
}

/// `runs diff`: unified diff of two stored runs, the previous run by default; exit 0 when
/// identical, 4 when different; no previous run is an error naming the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_diff_prints_a_unified_diff_and_exits_4_when_outputs_differ() {
    let env = Env::new();
    let db = env.db().await;
    let device = db
        .store()
        .create_device(netauto_core::NewDevice::new("r1", "h", "cisco_ios", "u"))
        .await
        .unwrap()
        .id;
    let mut ids = Vec::new();
    for (i, text) in [
        "a\nr1 uptime is 1 day\nb\n",
        "a\nr1 uptime is 2 days\nb\n",
        "a\nr1 uptime is 3 days\nc\n",
    ]
    .into_iter()
    .enumerate()
    {
        let at = Utc::now() - TimeDelta::minutes(10 - i as i64);
        let run = db
            .store()
            .create_run(
                NewRun {
                    device_id: device,
                    command: "show version".into(),
                    requested_by: "seed".into(),
                    bulk_ref: None,
                },
                at,
            )
            .await
            .unwrap();
        db.store()
            .append_chunk(run.id, OutputStream::Stdout, text.as_bytes(), at)
            .await
            .unwrap();
        db.store()
            .finish_run(run.id, RunFinish::new(RunStatus::Ok), at)
            .await
            .unwrap();
        ids.push(run.id.to_string());
    }
    let out = env.run(&["runs", "diff", &ids[1]]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("--- run {}", ids[0])), "{text}");
    assert!(
        text.contains("-r1 uptime is 1 day\n+r1 uptime is 2 days\n"),
        "{text}"
    );
    let out = env.run(&["runs", "diff", &ids[1], "--ignore-volatile"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "only uptime changed: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("2 volatile lines ignored"));
    let out = env.run(&["runs", "diff", &ids[1], &ids[2], "--ignore-volatile"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("-b\n+c\n"));
    let out = env.run(&["runs", "diff", &ids[0]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no previous run of \"show version\""),
        "{}",
        stderr(&out)
    );
}

/// `search`: runs whose output contains the text, newest first, grep-like lines with context;
/// filters by device; exit 4 when nothing is found; a short text is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_prints_matching_lines_with_context_and_exits_4_when_nothing_matches() {
    let env = Env::new();
    let db = env.db().await;
    let mut ids = Vec::new();
    for name in ["edge-1", "edge-2"] {
        let device = db
            .store()
            .create_device(netauto_core::NewDevice::new(name, "h", "cisco_ios", "u"))
            .await
            .unwrap()
            .id;
        let at = Utc::now() - TimeDelta::minutes(5);
        let run = db
            .store()
            .create_run(
                NewRun {
                    device_id: device,
                    command: "show running-config".into(),
                    requested_by: "seed".into(),
                    bulk_ref: None,
                },
                at,
            )
            .await
            .unwrap();
        let text = format!(
            "hostname {name}\ninterface Gi0/1\n description UPLINK to core\n ip address 10.9.0.1 255.255.255.0\n!\n"
        );
        db.store()
            .append_chunk(run.id, OutputStream::Stdout, text.as_bytes(), at)
            .await
            .unwrap();
        db.store()
            .finish_run(run.id, RunFinish::new(RunStatus::Ok), at)
            .await
            .unwrap();
        ids.push(run.id.to_string());
    }
    let out = env.run(&["search", "uplink TO", "-C", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.find(&format!("== run {} on edge-2", ids[1]));
    let second = text.find(&format!("== run {} on edge-1", ids[0]));
    assert!(
        first.is_some() && second.is_some() && first < second,
        "newest first: {text}"
    );
    assert!(
        text.contains(
            "     2- interface Gi0/1\n     3:  description UPLINK to core\n     4-  ip address"
        ),
        "{text}"
    );
    let out = env.run(&["search", "uplink", "--device", "edge-1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["device"], "edge-1");
    assert_eq!(lines[0]["matches"], 1);
    let out = env.run(&["search", "10.9.0.2"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("no stored output contains"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["search", "ab"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("at least 3 characters"),
        "{}",
        stderr(&out)
    );
}

/// `bulk export`: CSV to stdout, a tar to a file that `tar` lists; a tar is not written to a
/// terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_export_writes_csv_and_a_tar_archive() {
    use netauto_core::{DeviceOutcome, NewBulk};
    let env = Env::new();
    let db = env.db().await;
    let store = db.store();
    let mut ids = Vec::new();
    for name in ["core-1", "core-2"] {
        ids.push(
            store
                .create_device(NewDevice::new(name, "h", "cisco_ios", "u"))
                .await
                .unwrap()
                .id,
        );
    }
    let bulk_ref = netauto_core::BulkRef::generate();
    store
        .create_bulk(
            NewBulk {
                bulk_ref: bulk_ref.clone(),
                command: "show clock".into(),
                requested_by: "seed".into(),
                device_ids: ids.clone(),
                limits: Default::default(),
                parent: None,
            },
            Vec::new(),
            Utc::now(),
        )
        .await
        .unwrap();
    let run = store
        .create_run(
            NewRun {
                device_id: ids[0],
                command: "show clock".into(),
                requested_by: "seed".into(),
                bulk_ref: Some(bulk_ref.clone()),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    store
        .append_chunk(run.id, OutputStream::Stdout, b"12:00:00 UTC\n", Utc::now())
        .await
        .unwrap();
    store
        .finish_run(
            run.id,
            RunFinish::new(RunStatus::Ok).with_exit_status(0),
            Utc::now(),
        )
        .await
        .unwrap();
    store
        .record_outcome(
            &bulk_ref,
            DeviceOutcome {
                device_id: ids[0],
                run_id: Some(run.id),
                status: RunStatus::Ok,
                error_kind: None,
                recorded_at: Utc::now(),
                truncated: false,
            },
        )
        .await
        .unwrap();
    let out = env.run(&["bulk", "export", bulk_ref.as_str(), "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.contains(&format!(
            "core-1,{},h,cisco_ios,ok,0,,,13,false,{},",
            ids[0], run.id
        )),
        "{csv}"
    );
    assert!(
        csv.contains("core-2,") && csv.contains(",pending,"),
        "{csv}"
    );
    let tar = env.path("bulk.tar");
    let out = env.run(&[
        "bulk",
        "export",
        bulk_ref.as_str(),
        "--format",
        "tar",
        "-o",
        tar.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        format!("{bulk_ref}/core-1.txt\n{bulk_ref}/results.csv\n")
    );
    let out = env.run(&["bulk", "export", bulk_ref.as_str(), "--format", "zip"]);
    assert_eq!(out.status.code(), Some(2), "a bad format is a usage error");
}
