//! The SSH client against a real OpenSSH sshd on loopback.
//!
//! `tests/sshd/start.sh` (run by `.ci/run`) starts sshd and exports:
//! `NETAUTO_TEST_SSHD_ADDR` (`127.0.0.1:22022`), `NETAUTO_TEST_SSHD_USER` and
//! `NETAUTO_TEST_SSHD_DIR` (password, client keys, passphrase, known_hosts). Without them the
//! tests print why and pass, except under `CI=true`, where they fail.
#![allow(missing_docs)]

mod common;

use common::{Collected, collect};
use std::path::PathBuf;
use std::time::Duration;

use netauto_core::prelude::*;
use netauto_core::{Device, DeviceId, ExecOptions, ExitStatus, NetworkError, NewDevice};
use netauto_ssh::{
    Credential, HostKeyPolicy, KnownHosts, SshClientConfig, SshNetworkClient, StaticCredentials,
};

struct Sshd {
    host: String,
    port: u16,
    user: String,
    dir: PathBuf,
}

impl Sshd {
    /// The sshd from the environment, or `None` (after saying why) when it is not configured.
    fn from_env() -> Option<Self> {
        let addr = std::env::var("NETAUTO_TEST_SSHD_ADDR").ok();
        let user = std::env::var("NETAUTO_TEST_SSHD_USER").ok();
        let dir = std::env::var("NETAUTO_TEST_SSHD_DIR").ok();
        let (Some(addr), Some(user), Some(dir)) = (addr, user, dir) else {
            let why = "NETAUTO_TEST_SSHD_ADDR/_USER/_DIR not set; \
                       run `source netauto-ssh/tests/sshd/start.sh` (as root) first";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("sshd interop tests cannot run under CI=true: {why}");
            }
            eprintln!("skipping sshd interop test: {why}");
            return None;
        };
        let (host, port) = addr
            .rsplit_once(':')
            .expect("NETAUTO_TEST_SSHD_ADDR is host:port");
        Some(Self {
            host: host.to_owned(),
            port: port.parse().expect("port number"),
            user,
            dir: dir.into(),
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name))
            .unwrap_or_else(|e| panic!("{}: {e}", self.file(name).display()))
            .trim()
            .to_owned()
    }

    fn device(&self) -> Device {
        NewDevice::new("sshd", &self.host, "linux", &self.user)
            .with_port(self.port)
            .with_credential_ref("sshd")
            .into_device(DeviceId(1))
    }

    fn client(&self, credential: Credential, host_keys: HostKeyPolicy) -> SshNetworkClient {
        let mut config = SshClientConfig::new(StaticCredentials::new().with("sshd", credential))
            .with_host_keys(host_keys);
        config.pacing.connections_per_second = None;
        SshNetworkClient::new(config)
    }

    fn strict(&self) -> HostKeyPolicy {
        HostKeyPolicy::Strict(KnownHosts::from_file(self.file("known_hosts")))
    }
}

/// `command` on `device` under a 30 s deadline.
async fn run(
    client: &SshNetworkClient,
    device: &Device,
    command: &str,
) -> Result<Collected, NetworkError> {
    let options = ExecOptions::default().with_timeout(Duration::from_secs(30));
    collect(client, device, command, &options).await
}

#[tokio::test]
async fn password_login_exec_output_stderr_and_exit_code() {
    let Some(sshd) = Sshd::from_env() else { return };
    let client = sshd.client(Credential::password(sshd.read("password")), sshd.strict());
    let out = run(
        &client,
        &sshd.device(),
        "echo hello; echo oops >&2; head -c 300000 /dev/zero | tr '\\0' x; exit 7",
    )
    .await
    .expect("runs");
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.stdout.len(), "hello\n".len() + 300_000);
    assert!(out.stdout.starts_with(b"hello\n"));
    assert_eq!(&out.stderr[..], b"oops\n");
    assert_eq!(out.exit, Some(ExitStatus::Code(7)));
}

#[tokio::test]
async fn key_login_from_a_file_with_and_without_passphrase() {
    let Some(sshd) = Sshd::from_env() else { return };
    let plain = sshd.client(
        Credential::key_file(sshd.file("client_ed25519")),
        sshd.strict(),
    );
    let out = run(&plain, &sshd.device(), "id -un").await.expect("runs");
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), sshd.user);
    assert_eq!(out.exit, Some(ExitStatus::Code(0)));

    let encrypted = sshd.client(
        Credential::key_file(sshd.file("client_ed25519_enc"))
            .with_passphrase(sshd.read("passphrase")),
        sshd.strict(),
    );
    let out = run(&encrypted, &sshd.device(), "true").await.expect("runs");
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.exit, Some(ExitStatus::Code(0)));

    let wrong_passphrase = sshd.client(
        Credential::key_file(sshd.file("client_ed25519_enc")).with_passphrase("not-it"),
        sshd.strict(),
    );
    let err = run(&wrong_passphrase, &sshd.device(), "true")
        .await
        .expect_err("cannot decrypt");
    assert!(matches!(err, NetworkError::Unsupported(_)), "{err:?}");
    assert!(!err.to_string().contains("not-it"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() {
    let Some(sshd) = Sshd::from_env() else { return };
    let client = sshd.client(Credential::password("definitely-wrong"), sshd.strict());
    let err = run(&client, &sshd.device(), "true")
        .await
        .expect_err("rejected");
    assert!(matches!(err, NetworkError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("definitely-wrong"));
}

#[tokio::test]
async fn strict_known_hosts_rejects_unknown_and_changed_keys() {
    let Some(sshd) = Sshd::from_env() else { return };
    let password = Credential::password(sshd.read("password"));
    let actual = {
        let line = sshd.read("known_hosts");
        let key = line
            .split_once(' ')
            .map(|(_, k)| k)
            .expect("known_hosts line");
        let key = russh::keys::PublicKey::from_openssh(key).expect("public key");
        netauto_ssh::known_hosts::fingerprint(&key)
    };
    let empty = sshd.client(password.clone(), HostKeyPolicy::Strict(KnownHosts::new()));
    let err = run(&empty, &sshd.device(), "true")
        .await
        .expect_err("unknown host");
    assert_eq!(
        err,
        NetworkError::HostKey {
            host: format!("{}:{}", sshd.host, sshd.port),
            expected: "none".to_owned(),
            actual: actual.clone(),
        }
    );

    let other = russh::keys::PrivateKey::from(
        russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[42u8; 32]),
    );
    let changed = KnownHosts::new();
    changed.insert(&sshd.host, sshd.port, other.public_key().clone());
    let client = sshd.client(password, HostKeyPolicy::Strict(changed));
    let err = run(&client, &sshd.device(), "true")
        .await
        .expect_err("changed key");
    assert_eq!(
        err,
        NetworkError::HostKey {
            host: format!("{}:{}", sshd.host, sshd.port),
            expected: netauto_ssh::known_hosts::fingerprint(other.public_key()),
            actual,
        }
    );
}

#[tokio::test]
async fn accept_new_records_the_server_key() {
    let Some(sshd) = Sshd::from_env() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    let client = sshd.client(
        Credential::password(sshd.read("password")),
        HostKeyPolicy::AcceptNew(KnownHosts::from_file(&path)),
    );
    let out = run(&client, &sshd.device(), "echo first")
        .await
        .expect("runs");
    assert!(out.error.is_none(), "{:?}", out.error);
    let learned = std::fs::read_to_string(&path).expect("written");
    let expected = sshd.read("known_hosts");
    assert_eq!(learned.trim(), expected.trim());
    let out = run(&client, &sshd.device(), "echo second")
        .await
        .expect("runs");
    assert_eq!(&out.stdout[..], b"second\n");
}

/// A network service over `client` storing runs in memory (issue 12's limits and cancel).
fn network(
    client: &SshNetworkClient,
    limits: netauto_core::ExecLimits,
) -> (
    netauto_core::exec::Executor,
    netauto_memory::InMemoryRunStore,
) {
    let (_queue, store) = netauto_memory::backend();
    let network = netauto_core::exec::Executor::new(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(client.clone()),
        std::sync::Arc::new(netauto_core::LocalProgressHub::new()),
    )
    .with_limits(limits)
    .with_cancel_poll(Duration::from_millis(100));
    (network, store)
}

async fn sessions_closed(client: &SshNetworkClient) -> Duration {
    let started = std::time::Instant::now();
    while client.active_sessions() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "session still open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Processes of the test user running `name`, as `pgrep` counts them.
fn remote_processes(user: &str, name: &str) -> usize {
    std::process::Command::new("pgrep")
        .args(["-u", user, "-x", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yes_on_openssh_stops_at_the_output_cap() {
    let Some(sshd) = Sshd::from_env() else { return };
    let client = sshd.client(Credential::password(sshd.read("password")), sshd.strict());
    let (network, store) = network(
        &client,
        netauto_core::ExecLimits {
            timeout: Duration::from_secs(60),
            max_output: 1 << 20,
        },
    );
    let device = sshd.device();
    store
        .create_device(
            NewDevice::new(&device.name, &device.host, "linux", &device.username)
                .with_port(device.port)
                .with_credential_ref("sshd"),
        )
        .await
        .expect("device");
    let run = network
        .execute_command(
            DeviceId(1),
            "yes",
            netauto_core::exec::RunOptions::new("ops"),
        )
        .await
        .expect("runs");
    assert_eq!(
        (
            run.status,
            run.error_kind.as_deref(),
            run.truncated,
            run.bytes
        ),
        (
            netauto_core::RunStatus::Error,
            Some("output_cap"),
            true,
            1 << 20
        )
    );
    sessions_closed(&client).await;
    // The closed channel ends `yes` on the server too.
    let started = std::time::Instant::now();
    while remote_processes(&sshd.user, "yes") > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "yes still runs on the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_command_on_openssh_times_out_and_a_cancel_closes_it() {
    let Some(sshd) = Sshd::from_env() else { return };
    let client = sshd.client(Credential::password(sshd.read("password")), sshd.strict());
    let (network, store) = network(
        &client,
        netauto_core::ExecLimits {
            timeout: Duration::from_secs(1),
            max_output: 1 << 20,
        },
    );
    let device = sshd.device();
    let id = store
        .create_device(
            NewDevice::new(&device.name, &device.host, "linux", &device.username)
                .with_port(device.port)
                .with_credential_ref("sshd"),
        )
        .await
        .expect("device")
        .id;
    let started = std::time::Instant::now();
    let run = network
        .execute_command(
            id,
            "echo started; sleep 30",
            netauto_core::exec::RunOptions::new("ops"),
        )
        .await
        .expect("runs");
    let took = started.elapsed();
    assert_eq!(run.status, netauto_core::RunStatus::Timeout);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(run.bytes, "started\n".len() as u64, "output so far kept");
    sessions_closed(&client).await;

    // Cancelled from another node (its own service over the same store).
    let task = {
        let network = network.clone();
        tokio::spawn(async move {
            network
                .execute_command(
                    id,
                    "echo started; sleep 30",
                    netauto_core::exec::RunOptions::new("ops")
                        .with_timeout(Duration::from_secs(60)),
                )
                .await
        })
    };
    let run_id = loop {
        let runs = store.device_runs(id, 1).await.expect("runs");
        if let Some(r) = runs
            .first()
            .filter(|r| r.chunks > 0 && !r.status.is_finished())
        {
            break r.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let other = netauto_core::exec::Executor::new(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(client.clone()),
        std::sync::Arc::new(netauto_core::LocalProgressHub::new()),
    );
    let asked = std::time::Instant::now();
    other.cancel_run(run_id).await.expect("cancel");
    let run = task.await.expect("task").expect("runs");
    let closed = asked.elapsed() + sessions_closed(&client).await;
    assert_eq!(run.status, netauto_core::RunStatus::Cancelled);
    assert!(
        closed < Duration::from_secs(2),
        "closed {closed:?} after the cancel"
    );
    eprintln!(
        "FIGURES openssh: cancel to session closed {closed:?}; deadline 1 s ended the run after {took:?}"
    );
}

/// The second sshd (`tests/sshd/start_inner.sh`), reached only through the first one as a
/// jump host; `None` (after saying why) when it is not configured, a failure under `CI=true`.
fn inner_sshd() -> Option<Sshd> {
    let vars =
        ["ADDR", "USER", "DIR"].map(|v| std::env::var(format!("NETAUTO_TEST_SSHD_INNER_{v}")).ok());
    let [Some(addr), Some(user), Some(dir)] = vars else {
        let why = "NETAUTO_TEST_SSHD_INNER_ADDR/_USER/_DIR not set; \
                   run `source netauto-ssh/tests/sshd/start_inner.sh` (as root) after start.sh";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the jump-host interop test cannot run under CI=true: {why}"
        );
        eprintln!("skipping the jump-host interop test: {why}");
        return None;
    };
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    Some(Sshd {
        host: host.to_owned(),
        port: port.parse().expect("port"),
        user,
        dir: dir.into(),
    })
}

/// A real OpenSSH bastion (`AllowTcpForwarding yes`) in front of a second real sshd: commands
/// reach the inner sshd through one connection to the bastion, also over two hops (the
/// bastion through itself); each hop logs in with its own credential and has its host key
/// checked; a wrong bastion password is an auth failure naming the jump host; an inner host
/// key missing from known_hosts is refused.
#[tokio::test]
async fn a_real_sshd_bastion_in_front_of_a_second_sshd() {
    let Some(outer) = Sshd::from_env() else {
        return;
    };
    let Some(inner) = inner_sshd() else { return };
    // One known_hosts with both servers' keys.
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "{}\n{}\n",
            outer.read("known_hosts"),
            inner.read("known_hosts")
        ),
    )
    .unwrap();
    let credentials = |bastion_password: String| {
        StaticCredentials::new()
            .with("bastion", Credential::password(bastion_password))
            .with("inner", Credential::password(inner.read("password")))
    };
    let bastion = netauto_ssh::JumpHost {
        address: format!("{}@{}:{}", outer.user, outer.host, outer.port),
        credential_ref: Some("bastion".to_owned()),
        via: None,
    };
    let twice = netauto_ssh::JumpHost {
        via: Some("bastion".to_owned()),
        ..bastion.clone()
    };
    let jumps = netauto_ssh::JumpHosts::new()
        .with("bastion", bastion)
        .with("bastion-twice", twice);
    let client_with = |password: String, known: &std::path::Path| {
        let mut config = SshClientConfig::new(credentials(password))
            .with_host_keys(HostKeyPolicy::Strict(KnownHosts::from_file(known)))
            .with_jump_hosts(jumps.clone());
        config.pacing.connections_per_second = None;
        SshNetworkClient::new(config)
    };
    let device = |id: i64, jump: &str| {
        NewDevice::new(format!("inner-{id}"), &inner.host, "linux", &inner.user)
            .with_port(inner.port)
            .with_credential_ref("inner")
            .with_jump_host(jump)
            .into_device(DeviceId(id))
    };

    let client = client_with(outer.read("password"), &known);
    let runs = (1..=6).map(|i| {
        let client = client.clone();
        let d = device(i, "bastion");
        async move { run(&client, &d, "echo via $SSH_CONNECTION; id -un").await }
    });
    for out in futures_util::future::join_all(runs).await {
        let out = out.expect("runs through the bastion");
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.exit, Some(ExitStatus::Code(0)));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.ends_with(&format!("{}\n", inner.user)), "{text}");
        // sshd's SSH_CONNECTION: client address and port, server address and port.
        assert!(
            text.contains(&format!(" {} {}\n", inner.host, inner.port)),
            "{text}"
        );
    }
    assert_eq!(
        client.jump_connections_opened(),
        1,
        "one connection to the bastion"
    );
    assert_eq!(client.jump_channels_opened(), 6);

    // Two hops: the bastion, then the bastion again through itself, then the inner sshd.
    let out = run(&client, &device(7, "bastion-twice"), "id -un")
        .await
        .expect("runs");
    assert_eq!(out.exit, Some(ExitStatus::Code(0)), "{:?}", out.error);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), inner.user);
    assert_eq!(
        client.jump_connections_opened(),
        2,
        "the first hop's connection is reused"
    );

    let wrong = client_with("not-the-password".to_owned(), &known);
    let err = run(&wrong, &device(8, "bastion"), "true")
        .await
        .expect_err("bastion refuses");
    assert!(
        matches!(&err, NetworkError::Auth { host, .. } if host.contains("jump host")),
        "{err:?}"
    );

    let outer_only = dir.path().join("outer_only");
    std::fs::write(&outer_only, format!("{}\n", outer.read("known_hosts"))).unwrap();
    let unknown_inner = client_with(outer.read("password"), &outer_only);
    let err = run(&unknown_inner, &device(9, "bastion"), "true")
        .await
        .expect_err("inner key unknown");
    assert!(matches!(err, NetworkError::HostKey { .. }), "{err:?}");
}
