//! `fanout_openssh`: one command on 1,000 devices served by real OpenSSH sshd on loopback,
//! through the product path — `Bulk::enqueue`, the `Runner` with `BulkJob` (20 jobs × 10
//! devices = 200 in flight), `Executor::execute_command` into a SQLite file, progress followed
//! with `BulkFollower` — and how close that is to the machine's floor.
//!
//! It starts `FANOUT_SSHD` (default 4) sshd with `netauto-ssh/tests/sshd/start.sh` (as root;
//! ports 2201…, each also listening on 15 more loopback addresses `127.0.<i+1>.1…15`), logs in
//! with keys under strict known_hosts, and runs `sleep 0.1; head -c 20480 /dev/zero | tr '\0'
//! x; echo` (20 KiB of output after 100 ms) on every device. Scenarios:
//!
//! * `64-endpoints`: the 1,000 devices spread over 64 endpoints (host:port), the default cap
//!   of 4 sessions per endpoint (256 ≥ 200 in flight: it does not bind);
//! * `4-endpoints-unlimited`: all on the 4 sshd addresses, the per-endpoint cap raised to
//!   `unlimited`;
//! * `4-endpoints-cap4` (with `FANOUT_OPENSSH_ALL=1`): the default cap of 4 binding (16 in
//!   flight).
//!
//! Pacing of new connections is off (`unlimited`) in all of them. Printed per scenario: wall
//! time, devices/s, the client's CPU per device (this process: SSH client, SQLite, runner,
//! progress), the sshd processes' CPU (the listeners' own and reaped children's CPU from
//! `/proc`, i.e. every login, session and remote command), the floor `(sshd CPU + client
//! CPU) / cores` and the ratio wall / floor (target ≤ 1.15).
//!
//! ```text
//! cargo bench -p netauto-benches --bench fanout_openssh
//! FANOUT_OPENSSH_DEVICES=3000 FANOUT_OPENSSH_ALL=1 cargo bench -p netauto-benches --bench fanout_openssh
//! ```
//!
//! Without root or `/usr/sbin/sshd` (Debian's openssh-server; `start.sh` installs it when
//! it can) it prints why and exits.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netauto_core::bulk::{BulkJob, BulkService};
use netauto_core::exec::Executor;
use netauto_core::follow::{BulkUpdate, follow_bulk};
use netauto_core::runtime::WorkerRegistry;
use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig};
use netauto_core::{DeviceId, NewDevice, RunStore};
use netauto_sqlx::sqlite::SqliteBackend;
use netauto_ssh::{
    Credential, HostKeyPolicy, KnownHosts, PacingConfig, SshClientConfig, SshNetworkClient,
    StaticCredentials,
};

const COMMAND: &str = "sleep 0.1; head -c 20480 /dev/zero | tr '\\0' x; echo";
const OUTPUT_BYTES: u64 = 20 * 1024 + 1;
const LOGIN: &str = "netauto-bench";
const FIRST_PORT: u16 = 2201;
/// Extra loopback addresses per sshd (sshd listens on at most 16 addresses).
const EXTRA_ADDRESSES: usize = 15;
const JOBS: usize = 20;
const DEVICES_PER_JOB: usize = 10;

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Clock ticks per second of `/proc/stat` times.
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU of this process (every thread), in seconds.
fn own_cpu_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_SELF)
}

/// CPU of every descendant this process has reaped, in seconds.
fn children_cpu_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_CHILDREN)
}

#[allow(unsafe_code)]
fn rusage_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Makes this process the reaper of its orphaned descendants: sshd's daemon, and the
/// post-authentication children that outlive their monitor, are then reparented here
/// instead of to init, so their CPU is counted when they are reaped (see [`reap_all`]).
#[allow(unsafe_code)]
fn become_subreaper() -> bool {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// Reaps every exited child (`block`: waits until there is none left).
#[allow(unsafe_code)]
fn reap_all(block: bool) {
    loop {
        let mut status = 0;
        let flags = if block { 0 } else { libc::WNOHANG };
        // SAFETY: waitpid writes the status into `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid <= 0 {
            return;
        }
    }
}

/// Busy time of the whole machine (all CPUs, everything but idle and iowait), in seconds.
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 =
        v.iter().take(8).sum::<f64>() - v.get(3).unwrap_or(&0.0) - v.get(4).unwrap_or(&0.0);
    busy / ticks_per_second()
}

struct Sshd {
    dir: PathBuf,
    port: u16,
    pid: u32,
    addresses: Vec<String>,
}

fn start_sshd(i: usize) -> Result<Sshd, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netauto-ssh/tests/sshd/start.sh");
    let dir = PathBuf::from(format!("/tmp/netauto-bench-sshd-{i}"));
    let port = FIRST_PORT + i as u16;
    let extra: Vec<String> = (1..=EXTRA_ADDRESSES)
        .map(|a| format!("127.0.{}.{a}", i + 1))
        .collect();
    let status = std::process::Command::new("bash")
        .arg(&script)
        .env("NETAUTO_TEST_SSHD_DIR", &dir)
        .env("NETAUTO_TEST_SSHD_PORT", port.to_string())
        .env("NETAUTO_TEST_SSHD_LOGIN", LOGIN)
        .env("NETAUTO_TEST_SSHD_LISTEN", extra.join(" "))
        .env("NETAUTO_TEST_SSHD_QUIET", "1")
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!(
            "{} failed ({status}); it needs root and openssh-server",
            script.display()
        ));
    }
    let pid = std::fs::read_to_string(dir.join("sshd.pid"))
        .map_err(|e| format!("sshd pid: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("sshd pid: {e}"))?;
    let mut addresses = vec!["127.0.0.1".to_owned()];
    addresses.extend(extra);
    Ok(Sshd {
        dir,
        port,
        pid,
        addresses,
    })
}

/// Stops the sshd listeners and reaps them and every orphan adopted meanwhile (at most
/// `timeout`): their CPU is then in [`children_cpu_seconds`].
fn stop(sshds: &[Sshd], timeout: Duration) {
    for s in sshds {
        let _ = std::process::Command::new("kill")
            .arg(s.pid.to_string())
            .status();
    }
    let until = Instant::now() + timeout;
    loop {
        reap_all(false);
        let alive = sshds
            .iter()
            .any(|s| Path::new(&format!("/proc/{}", s.pid)).exists());
        if !alive || Instant::now() > until {
            reap_all(false);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `instances` sshd and writes one known_hosts for all their endpoints.
fn start_all(instances: usize, known_hosts: &Path) -> Result<Vec<Sshd>, String> {
    let mut sshds = Vec::new();
    for i in 0..instances {
        match start_sshd(i) {
            Ok(s) => sshds.push(s),
            Err(why) => {
                stop(&sshds, Duration::from_secs(5));
                return Err(why);
            }
        }
    }
    let mut lines = String::new();
    for s in &sshds {
        let key = std::fs::read_to_string(s.dir.join("ssh_host_ed25519_key.pub"))
            .map_err(|e| format!("host key: {e}"))?;
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        for a in &s.addresses {
            lines.push_str(&format!("[{a}]:{} {}\n", s.port, key.join(" ")));
        }
    }
    std::fs::write(known_hosts, lines).map_err(|e| format!("known_hosts: {e}"))?;
    Ok(sshds)
}

/// Devices spread round-robin over `endpoints` (address, sshd index).
async fn add_devices(
    store: &Arc<dyn RunStore>,
    sshds: &[Sshd],
    endpoints: &[(String, usize)],
    n: usize,
    prefix: &str,
) -> Vec<DeviceId> {
    let devices: Vec<NewDevice> = (0..n)
        .map(|i| {
            let (host, s) = &endpoints[i % endpoints.len()];
            NewDevice::new(format!("{prefix}-{i:05}"), host, "linux", LOGIN)
                .with_port(sshds[*s].port)
                .with_credential_ref(format!("sshd{s}"))
        })
        .collect();
    store
        .create_devices(devices)
        .await
        .expect("devices")
        .into_iter()
        .map(|d| d.id)
        .collect()
}

/// Where a scenario puts its devices.
#[derive(Debug, Clone, Copy)]
enum Spread {
    /// Round-robin over every address of every sshd.
    AllAddresses,
    /// On the first address (127.0.0.1) of each sshd.
    OneAddressPerSshd,
}

async fn scenario(
    label: &str,
    instances: usize,
    spread: Spread,
    per_endpoint: Option<usize>,
    n: usize,
) -> Result<(), String> {
    let known_hosts = PathBuf::from("/tmp/netauto-bench-sshd-known_hosts");
    let sshds = start_all(instances, &known_hosts)?;
    let endpoints: Vec<(String, usize)> = match spread {
        Spread::AllAddresses => sshds
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.addresses.iter().map(move |a| (a.clone(), i)))
            .collect(),
        Spread::OneAddressPerSshd => (0..sshds.len())
            .map(|i| ("127.0.0.1".to_owned(), i))
            .collect(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("fanout.db").display());
    let backend = SqliteBackend::connect(&url).await.expect("sqlite");
    backend.migrate().await.expect("migrate");
    // FANOUT_OPENSSH_STORE=memory: the in-memory backend instead, to see what SQLite costs.
    let (store, queue): (Arc<dyn RunStore>, Arc<dyn netauto_core::JobQueue>) =
        if std::env::var("FANOUT_OPENSSH_STORE").as_deref() == Ok("memory") {
            let (q, s) = netauto_memory::backend();
            (Arc::new(s), Arc::new(q))
        } else {
            (Arc::new(backend.store()), Arc::new(backend.queue()))
        };
    let progress = Arc::new(backend.progress());
    let ids = add_devices(&store, &sshds, &endpoints, n, label).await;

    let mut credentials = StaticCredentials::new();
    for (i, s) in sshds.iter().enumerate() {
        credentials = credentials.with(
            format!("sshd{i}"),
            Credential::key_file(s.dir.join("client_ed25519")),
        );
    }
    let config = SshClientConfig::new(credentials)
        .with_host_keys(HostKeyPolicy::Strict(KnownHosts::from_file(&known_hosts)))
        .with_pacing(PacingConfig {
            sessions_per_endpoint: per_endpoint,
            ..PacingConfig::unlimited()
        });
    let network = Executor::new(
        store.clone(),
        Arc::new(SshNetworkClient::new(config)),
        progress.clone(),
    );
    let registry =
        WorkerRegistry::new().with(BulkJob::new(network).with_concurrency(DEVICES_PER_JOB));
    let runner = Runner::new(queue, registry).with_config(RunnerConfig {
        queues: QueueLimits::empty().with("bulk", JOBS),
        poll_interval: Duration::from_millis(50),
        ..RunnerConfig::default()
    });
    let bulk = BulkService::new(store.clone(), progress.clone()).with_wake(runner.waker());
    let handle = runner.start();

    reap_all(false);
    let sshd_before = children_cpu_seconds();
    let machine_before = machine_busy_seconds();
    let client_before = own_cpu_seconds();
    let started = Instant::now();
    let bulk_ref = bulk.enqueue(&ids, COMMAND, "bench").await.expect("enqueue");
    let mut follower = follow_bulk(store.clone(), progress.as_ref(), &bulk_ref)
        .await
        .expect("follow");
    while let Some(update) = follower.next().await {
        if let BulkUpdate::Summary { .. } = update.expect("follow") {
            break;
        }
    }
    let wall = started.elapsed();
    let client_cpu = own_cpu_seconds() - client_before;
    let machine = machine_busy_seconds() - machine_before;
    handle.shutdown().await;
    // Every sshd process, the listeners included, is reaped here: the children's CPU is
    // then the whole server side of the logins, sessions and remote commands.
    stop(&sshds, Duration::from_secs(10));
    let sshd_cpu = children_cpu_seconds() - sshd_before;

    let b = store.bulk(&bulk_ref).await.expect("bulk");
    let runs = store.bulk_runs(&bulk_ref, &ids).await.expect("runs");
    let wrong: BTreeMap<String, usize> = runs
        .iter()
        .filter(|r| !r.status.is_ok() || r.bytes != OUTPUT_BYTES)
        .fold(BTreeMap::new(), |mut m, r| {
            *m.entry(format!(
                "{}/{}",
                r.status,
                r.error_kind.as_deref().unwrap_or("-")
            ))
            .or_default() += 1;
            m
        });
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let floor = (sshd_cpu + client_cpu) / cores;
    println!(
        "fanout_openssh/{label}: {n} devices on {} endpoints, {} ok, {} failed {wrong:?}; wall {:.2} s, {:.0} \
         devices/s; client CPU {:.2} s = {:.3} ms/device; sshd CPU {:.2} s = {:.2} ms/device; \
         floor (sshd + client CPU) / {cores} cores = {:.2} s; wall / floor = {:.2} (target <= 1.15); \
         machine busy {:.2} s of {:.2} s ({:.0} %)",
        endpoints.len(),
        b.counters.ok,
        b.counters.failed,
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        client_cpu,
        client_cpu * 1000.0 / n as f64,
        sshd_cpu,
        sshd_cpu * 1000.0 / n as f64,
        floor,
        wall.as_secs_f64() / floor,
        machine,
        wall.as_secs_f64() * cores,
        100.0 * machine / (wall.as_secs_f64() * cores),
    );
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; this binary has no options of its own.
    let n = env_usize("FANOUT_OPENSSH_DEVICES", 1000);
    let instances = env_usize("FANOUT_SSHD", 4).clamp(1, 16);
    if !become_subreaper() {
        println!("fanout_openssh: cannot become a subreaper; sshd CPU would be undercounted");
    }
    println!(
        "fanout_openssh: {n} devices, {instances} sshd, {JOBS} jobs x {DEVICES_PER_JOB} devices in flight, \
         command {COMMAND:?}, key auth, strict known_hosts, no connection pacing"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        let all = instances * (1 + EXTRA_ADDRESSES);
        scenario(
            &format!("{all}-endpoints"),
            instances,
            Spread::AllAddresses,
            Some(4),
            n,
        )
        .await?;
        scenario(
            &format!("{instances}-endpoints-unlimited"),
            instances,
            Spread::OneAddressPerSshd,
            None,
            n,
        )
        .await?;
        if std::env::var("FANOUT_OPENSSH_ALL").as_deref() == Ok("1") {
            scenario(
                &format!("{instances}-endpoints-cap4"),
                instances,
                Spread::OneAddressPerSshd,
                Some(4),
                n,
            )
            .await?;
        }
        Ok::<(), String>(())
    });
    if let Err(why) = result {
        println!("fanout_openssh: skipped: {why}");
    }
}
