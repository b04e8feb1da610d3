//! The SSH client against the simulator: every mode and every failure mode.
#![cfg(feature = "sim")]
#![allow(missing_docs)]

mod common;

use common::{Collected, collect};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use netauto_core::exec::{Executor, RunOptions};
use netauto_core::platform::Platforms;
use netauto_core::{
    Device, DeviceId, ExecOptions, ExitStatus, NetworkClient, NetworkError, OutputEvent, RunStatus,
    RunStore, TimeoutPhase,
};
use netauto_ssh::sim::{DeviceFarm, DeviceSpec, FailureMode, demo_specs};
use netauto_ssh::{
    Credential, HostKeyPolicy, KnownHosts, LEGACY_TAG, PacingConfig, SshNetworkClient,
    StaticCredentials, Timeouts,
};

async fn run(client: &SshNetworkClient, device: &Device, command: &str) -> Collected {
    collect(client, device, command, &ExecOptions::default())
        .await
        .expect("command starts")
}

/// The farm's device `name`, with an id of its own (its position in the farm): the client
/// runs one command at a time per device id.
fn device(farm: &DeviceFarm, name: &str) -> Device {
    let sim = farm.device(name).expect("device in farm");
    let id = farm
        .devices()
        .iter()
        .position(|d| d.name == name)
        .expect("position") as i64
        + 1;
    sim.to_new_device().into_device(DeviceId(id))
}

async fn farm(specs: Vec<DeviceSpec>) -> DeviceFarm {
    DeviceFarm::start(specs).await.expect("farm starts")
}

fn fast_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        auth: Duration::from_secs(5),
        command: None,
        idle: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn exec_streams_stdout_stderr_and_the_exit_code() {
    let spec = DeviceSpec::new("r1", "linux")
        .with_output_bytes(200 * 1024)
        .with_stderr("warning: something\n")
        .with_exit_code(3);
    let expected = spec.answer("show version");
    let farm = farm(vec![spec]).await;
    let client = SshNetworkClient::new(farm.client_config());
    let out = run(&client, &device(&farm, "r1"), "show version").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.stdout.len(), expected.stdout.len());
    assert_eq!(&out.stdout[..], &expected.stdout[..]);
    assert_eq!(&out.stderr[..], b"warning: something\n");
    assert_eq!(out.exit, Some(ExitStatus::Code(3)));
    assert_eq!(farm.stats("r1").expect("stats").commands, 1);
}

#[tokio::test]
async fn canned_answers_win_over_generated_output() {
    let spec = DeviceSpec::new("r1", "arista_eos").with_command(
        "show clock",
        netauto_ssh::sim::CannedOutput::stdout("12:00:00 UTC\n"),
    );
    let farm = farm(vec![spec]).await;
    let client = SshNetworkClient::new(farm.client_config());
    let out = run(&client, &device(&farm, "r1"), "show clock").await;
    assert_eq!(&out.stdout[..], b"12:00:00 UTC\n");
    assert_eq!(out.exit, Some(ExitStatus::Code(0)));
}

#[tokio::test]
async fn latency_and_throughput_are_simulated() {
    let spec = DeviceSpec::new("slow", "linux")
        .with_latency(Duration::from_millis(300))
        .with_output_bytes(40 * 1024)
        .with_throughput(100 * 1024);
    let farm = farm(vec![spec]).await;
    let client = SshNetworkClient::new(farm.client_config());
    let d = device(&farm, "slow");
    let started = Instant::now();
    let mut events = client
        .execute(&d, "show tech", &ExecOptions::default())
        .await
        .expect("starts");
    let first = loop {
        match events.next().await {
            Some(Ok(OutputEvent::LoggedIn { .. })) => continue,
            other => break other,
        }
    };
    let first_at = started.elapsed();
    assert!(
        matches!(first, Some(Ok(OutputEvent::Stdout(_)))),
        "{first:?}"
    );
    while events.next().await.is_some() {}
    let total = started.elapsed();
    assert!(first_at >= Duration::from_millis(300), "{first_at:?}");
    // 40 KiB at 100 KiB/s: about 400 ms after the first byte.
    assert!(total >= Duration::from_millis(600), "{total:?}");
    assert!(total < Duration::from_secs(5), "{total:?}");
}

#[tokio::test]
async fn a_paused_farm_holds_commands_until_resumed() {
    let names = ["r1", "sw1"];
    let farm = farm(vec![
        DeviceSpec::new(names[0], "linux").with_output_bytes(64),
        DeviceSpec::new(names[1], "cisco_ios").with_output_bytes(64),
    ])
    .await;
    farm.pause();
    assert!(farm.is_paused());
    let client = Arc::new(SshNetworkClient::new(farm.client_config()));
    let tasks: Vec<_> = names
        .iter()
        .zip(1..)
        .map(|(name, id)| {
            let sim = farm.device(name).expect("device in farm");
            let d = sim.to_new_device().into_device(DeviceId(id));
            let client = client.clone();
            tokio::spawn(async move { run(&client, &d, "show version").await })
        })
        .collect();
    // Both commands (exec and shell) arrive, and wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    while names
        .iter()
        .any(|n| farm.stats(n).expect("stats").commands == 0)
    {
        assert!(Instant::now() < deadline, "the commands never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "a command was answered while the farm was paused"
    );
    farm.resume();
    assert!(!farm.is_paused());
    for t in tasks {
        let out = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("answered after resume")
            .expect("task");
        assert!(out.error.is_none(), "{:?}", out.error);
        assert!(!out.stdout.is_empty());
    }
}

#[tokio::test]
async fn rejected_logins_are_auth_errors() {
    let farm = farm(vec![
        DeviceSpec::new("reject", "linux").with_failure(FailureMode::AuthReject),
        DeviceSpec::new("ok", "linux"),
    ])
    .await;
    let client = SshNetworkClient::new(farm.client_config());
    let err = collect(
        &client,
        &device(&farm, "reject"),
        "x",
        &ExecOptions::default(),
    )
    .await
    .expect_err("auth fails");
    assert!(matches!(err, NetworkError::Auth { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("password"), "{err}");

    // A wrong password, through a provider that has the wrong secret.
    let wrong = StaticCredentials::new().with("sim:ok", Credential::password("nope"));
    let client = SshNetworkClient::new(farm.client_config().with_credentials(wrong));
    let err = collect(&client, &device(&farm, "ok"), "x", &ExecOptions::default())
        .await
        .expect_err("auth fails");
    assert!(matches!(err, NetworkError::Auth { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("nope"),
        "no secret in errors: {err}"
    );
}

#[tokio::test]
async fn keyboard_interactive_answers_the_password_prompt() {
    let farm = farm(vec![
        DeviceSpec::new("kbd", "linux").keyboard_interactive_only(),
    ])
    .await;
    let client = SshNetworkClient::new(farm.client_config());
    let out = run(&client, &device(&farm, "kbd"), "show version").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.exit, Some(ExitStatus::Code(0)));
}

#[tokio::test]
async fn private_key_login_from_memory() {
    let key = russh::keys::PrivateKey::from(
        russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[7u8; 32]),
    );
    let pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .expect("encode")
        .to_string();
    let farm = farm(vec![
        DeviceSpec::new("keyed", "linux")
            .with_login("admin", "unused-password-that-is-not-given")
            .with_authorized_key(key.public_key().clone()),
    ])
    .await;
    let creds = StaticCredentials::new().with("sim:keyed", Credential::key_pem(pem));
    let client = SshNetworkClient::new(farm.client_config().with_credentials(creds));
    let out = run(&client, &device(&farm, "keyed"), "id").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.exit, Some(ExitStatus::Code(0)));
}

#[tokio::test]
async fn a_hanging_device_hits_the_idle_timeout_then_the_command_timeout() {
    let farm = farm(vec![
        DeviceSpec::new("hang", "linux").with_failure(FailureMode::Hang),
    ])
    .await;
    let d = device(&farm, "hang");
    let idle = SshNetworkClient::new(farm.client_config().with_timeouts(Timeouts {
        idle: Duration::from_millis(300),
        ..fast_timeouts()
    }));
    let out = run(&idle, &d, "show version").await;
    assert_eq!(
        out.error,
        Some(NetworkError::Timeout {
            phase: TimeoutPhase::Idle,
            after: Duration::from_millis(300)
        })
    );
    let client = SshNetworkClient::new(farm.client_config().with_timeouts(fast_timeouts()));
    let started = Instant::now();
    let out = collect(
        &client,
        &d,
        "show version",
        &ExecOptions::default().with_timeout(Duration::from_millis(400)),
    )
    .await
    .expect("starts");
    assert_eq!(
        out.error,
        Some(NetworkError::Timeout {
            phase: TimeoutPhase::Command,
            after: Duration::from_millis(400)
        })
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_slow_login_hits_the_auth_timeout() {
    let farm = farm(vec![
        DeviceSpec::new("slowauth", "linux").with_auth_delay(Duration::from_secs(3)),
    ])
    .await;
    let client = SshNetworkClient::new(farm.client_config().with_timeouts(Timeouts {
        auth: Duration::from_millis(300),
        ..fast_timeouts()
    }));
    let err = collect(
        &client,
        &device(&farm, "slowauth"),
        "x",
        &ExecOptions::default(),
    )
    .await
    .expect_err("auth times out");
    assert_eq!(
        err,
        NetworkError::Timeout {
            phase: TimeoutPhase::Auth,
            after: Duration::from_millis(300)
        }
    );
}

#[tokio::test]
async fn a_silent_server_hits_the_connect_timeout() {
    // Accepts TCP connections but never speaks SSH.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let farm = farm(vec![DeviceSpec::new("r1", "linux")]).await;
    let client = SshNetworkClient::new(farm.client_config().with_timeouts(Timeouts {
        connect: Duration::from_millis(300),
        ..fast_timeouts()
    }));
    let mut d = device(&farm, "r1");
    d.port = port;
    let err = collect(&client, &d, "x", &ExecOptions::default())
        .await
        .expect_err("connect times out");
    assert_eq!(
        err,
        NetworkError::Timeout {
            phase: TimeoutPhase::Connect,
            after: Duration::from_millis(300)
        }
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_unreachable_port_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let farm = farm(vec![DeviceSpec::new("r1", "linux")]).await;
    let client = SshNetworkClient::new(farm.client_config());
    let mut d = device(&farm, "r1");
    d.port = port;
    let err = collect(&client, &d, "x", &ExecOptions::default())
        .await
        .expect_err("refused");
    assert!(matches!(err, NetworkError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn a_connection_closed_mid_output_is_a_closed_error_after_partial_output() {
    let spec = DeviceSpec::new("flaky", "linux")
        .with_output_bytes(100 * 1024)
        .with_failure(FailureMode::CloseMidOutput);
    let farm = farm(vec![spec]).await;
    let client = SshNetworkClient::new(farm.client_config());
    let out = run(&client, &device(&farm, "flaky"), "show run").await;
    assert!(
        matches!(out.error, Some(NetworkError::Closed(_))),
        "{:?}",
        out.error
    );
    assert!(out.exit.is_none());
    assert!(
        !out.stdout.is_empty() && out.stdout.len() <= 50 * 1024,
        "{}",
        out.stdout.len()
    );
}

#[tokio::test]
async fn a_device_closing_after_one_exec_still_answers_every_command() {
    let farm = farm(vec![
        DeviceSpec::new("once", "linux").with_failure(FailureMode::CloseAfterOneExec),
    ])
    .await;
    let client = SshNetworkClient::new(farm.client_config());
    let d = device(&farm, "once");
    for _ in 0..3 {
        let out = run(&client, &d, "show version").await;
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.exit, Some(ExitStatus::Code(0)));
    }
    let stats = farm.stats("once").expect("stats");
    assert_eq!(stats.commands, 3);
    assert_eq!(stats.connections, 3, "one login per command");
}

#[tokio::test]
async fn strict_host_keys_reject_unknown_and_changed_keys() {
    let farm = farm(vec![
        DeviceSpec::new("r1", "linux"),
        DeviceSpec::new("r2", "linux"),
    ])
    .await;
    let r1 = farm.device("r1").expect("r1");
    let d = device(&farm, "r1");

    let unknown = SshNetworkClient::new(
        farm.client_config()
            .with_host_keys(HostKeyPolicy::Strict(KnownHosts::new())),
    );
    let err = collect(&unknown, &d, "x", &ExecOptions::default())
        .await
        .expect_err("unknown host");
    assert_eq!(
        err,
        NetworkError::HostKey {
            host: format!("127.0.0.1:{}", r1.port),
            expected: "none".to_owned(),
            actual: r1.host_key_fingerprint.clone(),
        }
    );

    // r1's port recorded with r2's key: the key "changed".
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    farm.write_known_hosts(&path).expect("write");
    let text = std::fs::read_to_string(&path).expect("read");
    let r2 = farm.device("r2").expect("r2");
    let r2_key = text
        .lines()
        .find(|l| l.starts_with(&format!("[127.0.0.1]:{} ", r2.port)))
        .and_then(|l| l.split_once(' '))
        .map(|(_, key)| key.to_owned())
        .expect("r2 line");
    std::fs::write(&path, format!("[127.0.0.1]:{} {r2_key}\n", r1.port)).expect("write");
    let changed = SshNetworkClient::new(
        farm.client_config()
            .with_host_keys(HostKeyPolicy::Strict(KnownHosts::from_file(&path))),
    );
    let err = collect(&changed, &d, "x", &ExecOptions::default())
        .await
        .expect_err("changed key");
    assert_eq!(
        err,
        NetworkError::HostKey {
            host: format!("127.0.0.1:{}", r1.port),
            expected: r2.host_key_fingerprint.clone(),
            actual: r1.host_key_fingerprint.clone(),
        }
    );
    // Accept-new does not paper over a changed key either.
    let tofu = SshNetworkClient::new(
        farm.client_config()
            .with_host_keys(HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path))),
    );
    let err = collect(&tofu, &d, "x", &ExecOptions::default())
        .await
        .expect_err("changed key");
    assert!(matches!(err, NetworkError::HostKey { .. }), "{err:?}");
}

#[tokio::test]
async fn accept_new_records_the_key_and_then_trusts_it() {
    let farm = farm(vec![DeviceSpec::new("r1", "linux")]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ssh").join("known_hosts");
    let client = SshNetworkClient::new(
        farm.client_config()
            .with_host_keys(HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path))),
    );
    let d = device(&farm, "r1");
    assert!(run(&client, &d, "x").await.error.is_none());
    let text = std::fs::read_to_string(&path).expect("known_hosts written");
    let port = farm.device("r1").expect("r1").port;
    let prefix = format!("[127.0.0.1]:{port} ssh-ed25519 ");
    assert_eq!(
        text.lines().filter(|l| l.starts_with(&prefix)).count(),
        1,
        "{text}"
    );
    // A strict client reading that file now trusts the device.
    let strict = SshNetworkClient::new(
        farm.client_config()
            .with_host_keys(HostKeyPolicy::Strict(KnownHosts::from_file(&path))),
    );
    assert!(run(&strict, &d, "x").await.error.is_none());
}

#[tokio::test]
async fn accept_any_connects_without_known_keys() {
    let farm = farm(vec![DeviceSpec::new("r1", "linux")]).await;
    let client = SshNetworkClient::new(
        farm.client_config()
            .with_host_keys(HostKeyPolicy::AcceptAny),
    );
    assert!(
        run(&client, &device(&farm, "r1"), "x")
            .await
            .error
            .is_none()
    );
}

#[tokio::test]
async fn one_session_per_device_at_a_time() {
    let farm = farm(vec![
        DeviceSpec::new("r1", "linux").with_latency(Duration::from_millis(100)),
    ])
    .await;
    let client = SshNetworkClient::new(farm.client_config());
    let d = device(&farm, "r1");
    let runs = (0..4).map(|_| run(&client, &d, "show version"));
    let outs = futures_util::future::join_all(runs).await;
    assert!(outs.iter().all(|o| o.error.is_none()));
    let stats = farm.stats("r1").expect("stats");
    assert_eq!(stats.commands, 4);
    assert_eq!(stats.max_active, 1, "never two sessions on one device");
}

#[tokio::test]
async fn the_global_session_cap_and_the_connection_rate_hold() {
    let specs = (0..6)
        .map(|i| DeviceSpec::new(format!("d{i}"), "linux").with_latency(Duration::from_millis(200)))
        .collect();
    let farm = farm(specs).await;
    let mut config = farm.client_config();
    config.pacing = PacingConfig {
        max_sessions: 2,
        connections_per_second: None,
        jitter: 0.0,
        sessions_per_endpoint: None,
    };
    let client = SshNetworkClient::new(config);
    let devices: Vec<Device> = (0..6).map(|i| device(&farm, &format!("d{i}"))).collect();
    let started = Instant::now();
    let outs = futures_util::future::join_all(devices.iter().map(|d| run(&client, d, "x"))).await;
    assert!(outs.iter().all(|o| o.error.is_none()));
    // 6 devices, 2 at a time, 200 ms each: at least 3 rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );

    let mut config = farm.client_config();
    config.pacing = PacingConfig {
        max_sessions: 100,
        connections_per_second: Some(10.0),
        jitter: 0.5,
        sessions_per_endpoint: None,
    };
    let client = SshNetworkClient::new(config);
    let started = Instant::now();
    let outs = futures_util::future::join_all(devices.iter().map(|d| run(&client, d, "x"))).await;
    assert!(outs.iter().all(|o| o.error.is_none()));
    // 6 logins at 10/s: the last starts at least 500 ms after the first.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn ios_shell_mode_disables_paging_and_strips_echo_and_prompt() {
    let spec = DeviceSpec::new("core-sw-01", "cisco_ios").with_output_bytes(8 * 1024);
    let expected = spec.answer("show version");
    let farm = farm(vec![spec]).await;
    let client = SshNetworkClient::new(farm.client_config());
    let out = run(&client, &device(&farm, "core-sw-01"), "show version").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&expected.stdout)
    );
    assert_eq!(
        out.exit,
        Some(ExitStatus::Code(0)),
        "the prompt came back: the shell's exit status 0"
    );
}

#[tokio::test]
async fn ios_shell_mode_answers_more_prompts_when_paging_stays_on() {
    let spec = DeviceSpec::new("old-sw", "cisco_ios").with_output_bytes(6 * 1024);
    let expected = spec.answer("show running-config");
    let farm = farm(vec![spec]).await;
    // A definition that does not send `terminal length 0`: the device pages every 23 lines.
    let mut ios = (**Platforms::builtin().get("cisco_ios").unwrap()).clone();
    ios.after_login.clear();
    let mut platforms = Platforms::builtin();
    platforms.insert(ios, "test").unwrap();
    let client = SshNetworkClient::new(farm.client_config().with_platforms(platforms));
    let out = run(&client, &device(&farm, "old-sw"), "show running-config").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("More"), "pager prompts removed");
    assert!(!text.contains('\u{8}'), "erase sequences removed");
    assert_eq!(text, String::from_utf8_lossy(&expected.stdout));
}

#[tokio::test]
async fn shell_mode_reports_a_device_closing_mid_output() {
    let spec = DeviceSpec::new("sw-flaky", "cisco_ios")
        .with_output_bytes(8 * 1024)
        .with_failure(FailureMode::CloseMidOutput);
    let farm = farm(vec![spec]).await;
    let client = SshNetworkClient::new(farm.client_config());
    let out = run(&client, &device(&farm, "sw-flaky"), "show version").await;
    assert!(
        matches!(out.error, Some(NetworkError::Closed(_))),
        "{:?}",
        out.error
    );
    assert!(!out.stdout.is_empty());
}

#[tokio::test]
async fn legacy_devices_need_an_opt_in_and_the_error_lists_both_offers() {
    let farm = farm(vec![DeviceSpec::new("old-rtr", "cisco_ios").legacy_only()]).await;
    let sim = farm.device("old-rtr").expect("device");
    assert_eq!(sim.tags, vec![LEGACY_TAG.to_owned()]);
    let client = SshNetworkClient::new(farm.client_config());
    let mut d = device(&farm, "old-rtr");
    d.tags.clear();
    let err = collect(&client, &d, "show version", &ExecOptions::default())
        .await
        .expect_err("no common algorithm");
    let NetworkError::Protocol(message) = &err else {
        panic!("expected a protocol error, got {err:?}");
    };
    assert!(
        message.contains("curve25519-sha256"),
        "ours listed: {message}"
    );
    assert!(
        message.contains("diffie-hellman-group14-sha1"),
        "theirs listed: {message}"
    );
    assert!(message.contains(LEGACY_TAG), "hint: {message}");

    // Tagged: connects with group14-sha1, ssh-rsa, aes-cbc, hmac-sha1.
    let out = run(&client, &device(&farm, "old-rtr"), "show version").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(!out.stdout.is_empty());
    // Or listed by name in the configuration.
    let by_name = SshNetworkClient::new(farm.client_config().with_legacy_device("old-rtr"));
    let out = run(&by_name, &d, "show version").await;
    assert!(out.error.is_none(), "{:?}", out.error);
}

#[tokio::test]
async fn a_device_without_credentials_is_unsupported() {
    let farm = farm(vec![DeviceSpec::new("r1", "linux")]).await;
    let client = SshNetworkClient::new(farm.client_config());
    let mut d = device(&farm, "r1");
    d.credential_ref = None;
    let err = collect(&client, &d, "x", &ExecOptions::default())
        .await
        .expect_err("no credential");
    assert!(matches!(err, NetworkError::Unsupported(_)), "{err:?}");
    d.credential_ref = Some("sim:nobody".to_owned());
    let err = collect(&client, &d, "x", &ExecOptions::default())
        .await
        .expect_err("unknown reference");
    assert!(matches!(err, NetworkError::Unsupported(_)), "{err:?}");
}

#[tokio::test]
async fn the_demo_farm_runs_through_the_network_service_into_a_store() {
    let farm = farm(demo_specs(12)).await;
    let (_queue, store) = netauto_memory::backend();
    let store: Arc<dyn RunStore> = Arc::new(store);
    let mut ids = Vec::new();
    for new in farm.new_devices() {
        ids.push(store.create_device(new).await.expect("device").id);
    }
    let client = Arc::new(SshNetworkClient::new(farm.client_config()));
    let network = Executor::new(
        store.clone(),
        client,
        Arc::new(netauto_core::LocalProgressHub::new()),
    );
    let runs = futures_util::future::join_all(
        ids.iter()
            .map(|id| network.execute_command(*id, "show version", RunOptions::new("tester"))),
    )
    .await;
    let mut statuses = std::collections::BTreeMap::new();
    for (run, spec) in runs.into_iter().zip(demo_specs(12)) {
        let run = run.expect("run recorded");
        *statuses.entry(format!("{:?}", run.status)).or_insert(0) += 1;
        if run.status == RunStatus::Ok {
            let expected = spec.answer("show version");
            assert_eq!(run.bytes, expected.stdout.len() as u64, "{}", spec.name);
        }
    }
    // One device rejects logins, one exits 1; the other ten succeed.
    assert_eq!(statuses.get("Ok"), Some(&10), "{statuses:?}");
    assert_eq!(statuses.get("Error"), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get("Failed"), Some(&1), "{statuses:?}");
}

/// A device may list several credential references: the next is tried only after an
/// authentication failure, and the one that logged in is reported (never the secret).
#[tokio::test]
async fn credential_references_are_tried_in_order_on_auth_failure_only() {
    let farm = farm(vec![
        DeviceSpec::new("r1", "arista_eos").with_login("netauto", "right"),
    ])
    .await;
    let credentials = StaticCredentials::new()
        .with("old", Credential::password("wrong"))
        .with("older", Credential::password("also-wrong"))
        .with("new", Credential::password("right"));
    let client = SshNetworkClient::new(farm.client_config().with_credentials(credentials));
    let mut device = device(&farm, "r1");
    let options = ExecOptions::default().with_timeout(Duration::from_secs(10));

    device.credential_ref = Some("old, older, new".into());
    let out = collect(&client, &device, "show version", &options)
        .await
        .unwrap();
    assert_eq!(out.exit, Some(ExitStatus::Code(0)), "{:?}", out.error);
    assert_eq!(out.credential_ref.as_deref(), Some("new"));
    // Two rejected credentials, each tried as password and keyboard-interactive.
    assert_eq!(farm.stats("r1").unwrap().auth_failures, 2 * 2);

    device.credential_ref = Some("new,old".into());
    let out = collect(&client, &device, "show version", &options)
        .await
        .unwrap();
    assert_eq!(
        out.credential_ref.as_deref(),
        Some("new"),
        "the first that works"
    );

    device.credential_ref = Some("old,older".into());
    let err = collect(&client, &device, "show version", &options)
        .await
        .unwrap_err();
    assert!(matches!(err, NetworkError::Auth { .. }), "{err:?}");

    // A reference the provider does not know is a configuration error, not a reason to try
    // the next one.
    device.credential_ref = Some("typo,new".into());
    let err = collect(&client, &device, "show version", &options)
        .await
        .unwrap_err();
    assert!(matches!(err, NetworkError::Unsupported(_)), "{err:?}");
}

/// With redaction on, the platform's secret patterns are replaced before output leaves the
/// client, on shell and exec platforms alike, and the stream says so; off, output is as the
/// device printed it.
#[tokio::test]
async fn secrets_are_redacted_before_output_leaves_the_client_when_asked() {
    let config = "hostname r1\nsnmp-server community s3cr3t-community RO\nusername admin privilege 15 secret 9 $9$hashhash\nend\n";
    let specs = ["cisco_ios", "arista_eos"].map(|p| {
        DeviceSpec::new(format!("r-{p}"), p).with_command(
            "show running-config",
            netauto_ssh::sim::CannedOutput::stdout(config),
        )
    });
    let farm = farm(specs.to_vec()).await;
    for redact in [true, false] {
        let client = SshNetworkClient::new(farm.client_config().with_redact_secrets(redact));
        for p in ["cisco_ios", "arista_eos"] {
            let d = device(&farm, &format!("r-{p}"));
            let out = run(&client, &d, "show running-config").await;
            assert_eq!(out.exit, Some(ExitStatus::Code(0)), "{p}: {:?}", out.error);
            let text = String::from_utf8_lossy(&out.stdout);
            if redact {
                assert_eq!(
                    text,
                    "hostname r1\nsnmp-server community <redacted> RO\nusername admin privilege 15 secret 9 <redacted>\nend\n",
                    "{p}"
                );
                assert!(out.redacted, "{p}");
            } else {
                assert_eq!(text, config, "{p}");
                assert!(!out.redacted, "{p}");
            }
        }
    }
}
