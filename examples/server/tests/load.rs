//! Load through the web server (issue 8): one bulk of N simulated devices started through the
//! login and bulk forms of the real `netauto-server` binary, followed live by C concurrent
//! browsers (bulk page, then its server-sent events): no event dropped, memory bounded.
//!
//! Two processes: the server is a child process configured like a deployment (SQLite file in
//! `DATABASE_URL`, the farm's host keys in `$HOME/.ssh/known_hosts`, one device credential in
//! `NETAUTO_SSH_LOAD_PASSWORD`, a user in `NETAUTO_USERS`), so its RSS is its own; the device
//! farm (netauto-ssh's simulator) and the clients run in this test process, over real TCP.
//!
//! The farm holds every command until each client has its first `snapshot` (which the server
//! sends after subscribing), so every client follows the bulk from its start. Each must see
//! exactly one `snapshot` (a second one is what the server sends a subscriber that lagged,
//! i.e. dropped events), a `progress` event for every device, each once, and one `summary`
//! with ok + failed = N. Every device must have run the command exactly once, and the
//! server's RSS (sampled every 250 ms, `VmHWM` at the end) must stay under 512 MiB.
//!
//! On SQLite by default with 10,000 devices (`NETAUTO_LOAD_DEVICES`) and 50 clients
//! (`NETAUTO_LOAD_CLIENTS`); on PostgreSQL, where progress crosses LISTEN/NOTIFY, with 2,000
//! devices (`NETAUTO_LOAD_PG_DEVICES`) in a fresh schema of `NETAUTO_TEST_POSTGRES_URL` (skipped
//! with a printed reason when that is unset, failed under `CI=true`). Figures are printed on a
//! `FIGURES server-load[…]:` line (`--nocapture` shows it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::http::{csrf_of, request, send};
use netauto_core::DeviceId;
use netauto_reliability::harness::{fresh_pg_schema, peak_rss_kib, pg_url, rss_kib};
use netauto_ssh::sim::{DeviceFarm, DeviceSpec};
use serde::Deserialize;

const BIN: &str = env!("CARGO_BIN_EXE_netauto-server");
const USER: &str = "load";
const PASSWORD: &str = "load-test-password";
/// Every simulated device accepts this password; the devices share credential reference
/// `load`, which the server reads from `NETAUTO_SSH_LOAD_PASSWORD`.
const DEVICE_PASSWORD: &str = "sim-load-password";
const CREDENTIAL_REF: &str = "load";
/// Output of each device: short.
const OUTPUT_BYTES: usize = 128;
/// The server's resident memory must stay below this.
const RSS_BOUND_KIB: u64 = 512 * 1024;

/// The soft limit of open files of this process (the farm holds one listener per device).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: what the test needs of a browser, over a plain TcpStream.

// ---------------------------------------------------------------------------------------
// One following browser.

#[derive(Debug, Deserialize)]
struct SnapshotData {
    counters: Counters,
    devices: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Counters {
    total: u64,
    pending: u64,
}

#[derive(Debug, Deserialize)]
struct ProgressData {
    device_id: u64,
}

#[derive(Debug, Deserialize)]
struct SummaryData {
    ok: u64,
    failed: u64,
    total: u64,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    snapshots: usize,
    /// Devices with an outcome in the first snapshot (0: the client saw the bulk start).
    done_in_first_snapshot: u64,
    progress: HashSet<u64>,
    duplicate_progress: usize,
    summaries: Vec<SummaryData>,
    events: u64,
    bytes: u64,
    summary_at: Option<Instant>,
}

impl Seen {
    fn on_event(&mut self, name: &str, data: &str, ready: &tokio::sync::mpsc::UnboundedSender<()>) {
        self.events += 1;
        match name {
            "snapshot" => {
                let s: SnapshotData = serde_json::from_str(data).expect("snapshot json");
                if self.snapshots == 0 {
                    self.done_in_first_snapshot = s.counters.total - s.counters.pending;
                    assert_eq!(s.devices.len() as u64, self.done_in_first_snapshot);
                    let _ = ready.send(());
                }
                self.snapshots += 1;
            }
            "progress" => {
                let p: ProgressData = serde_json::from_str(data).expect("progress json");
                if !self.progress.insert(p.device_id) {
                    self.duplicate_progress += 1;
                }
            }
            "summary" => {
                self.summaries
                    .push(serde_json::from_str(data).expect("summary json"));
                self.summary_at = Some(Instant::now());
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
}

/// A browser following the bulk: logs in, loads the bulk page, then reads its event stream
/// to the end. Signals `ready` at its first snapshot.
async fn follow(
    addr: SocketAddr,
    bulk_path: String,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
) -> Seen {
    let cookie = common::http::login(addr, USER, PASSWORD).await;
    let page = request(addr, "GET", &bulk_path, Some(&cookie), None).await;
    assert_eq!(page.status, 200, "GET {bulk_path}");
    let events_path = format!("{bulk_path}/events");
    let (res, mut body) = send(
        addr,
        "GET",
        &events_path,
        Some(&cookie),
        None,
        "text/event-stream",
    )
    .await
    .expect("open the event stream");
    assert_eq!(res.status, 200, "GET {events_path}");
    assert!(
        res.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "{:?}",
        res.headers
    );
    let mut seen = Seen::default();
    let mut buf = Vec::new();
    let mut consumed = 0;
    let (mut name, mut data) = (String::new(), String::new());
    loop {
        match body.next_piece(&mut buf).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => panic!(
                "reading the event stream after {} events ({} snapshots, {} progress, {} \
                 summaries): {e}",
                seen.events,
                seen.snapshots,
                seen.progress.len(),
                seen.summaries.len()
            ),
        }
        // Complete lines only; a line may span pieces.
        while let Some(nl) = buf[consumed..].iter().position(|b| *b == b'\n') {
            let raw = &buf[consumed..consumed + nl];
            consumed += nl + 1;
            let line = std::str::from_utf8(raw).expect("utf-8 event stream");
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                if !data.is_empty() || !name.is_empty() {
                    seen.on_event(&name, &data, &ready);
                }
                name.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                name = v.strip_prefix(' ').unwrap_or(v).to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
            // `:` comments are keep-alives.
        }
        seen.bytes += consumed as u64;
        buf.drain(..consumed);
        consumed = 0;
    }
    seen
}

// ---------------------------------------------------------------------------------------

/// CPU time (user + system) a process has used so far, in seconds (Linux `/proc/<pid>/stat`).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(command)`: state is the 3rd field, utime and stime the 14th and 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

/// The last `n` lines, one per line.
fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Samples a process's RSS until stopped; answers the largest sample and the sample count.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let max = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(kib) = rss_kib(pid) {
                max.fetch_max(kib, Ordering::Relaxed);
                samples += 1;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (max.load(Ordering::Relaxed), samples)
    })
}

/// Creates the devices in the server's SQLite file before it starts; answers their ids.
async fn register_devices(url: &str, farm: &DeviceFarm) -> Vec<DeviceId> {
    let db = netauto_sqlx::Database::connect(url)
        .await
        .expect("open the database");
    db.migrate().await.expect("migrate");
    let devices = farm
        .new_devices()
        .into_iter()
        .map(|d| d.with_credential_ref(CREDENTIAL_REF))
        .collect();
    let created = db
        .store()
        .create_devices(devices)
        .await
        .expect("create the devices");
    created.into_iter().map(|d| d.id).collect()
}

fn server_command(dir: &Path, url: &str) -> Command {
    let home = dir.join("home");
    let params = argon2::Params::new(8, 1, 1, None).expect("argon2 params");
    let hash = netauto_server::hash_password_with(PASSWORD, params).expect("hash");
    let mut cmd = Command::new(BIN);
    cmd.args(["--bind", "127.0.0.1:0"])
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env("HOME", &home)
        .env("NETAUTO_USERS", format!("{USER}:{hash}"))
        .env_remove("NETAUTO_USERS_FILE")
        .env("NETAUTO_SSH_LOAD_PASSWORD", DEVICE_PASSWORD)
        // The simulator takes logins as fast as they come; the default 50/s would make the
        // login rate, not the server, the subject of the test.
        .env("NETAUTO_SSH_CONNECTIONS_PER_SECOND", "unlimited")
        .env_remove("NETAUTO_SSH_MAX_SESSIONS")
        .env_remove("NET_AUTO_QUEUES")
        .env_remove("NETAUTO_QUEUES");
    cmd
}

/// One load test at a time: the two would share the machine and the figures.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_bulk_of_ten_thousand_devices_followed_by_fifty_browsers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let n = common::env_number("NETAUTO_LOAD_DEVICES", 10_000);
    let clients = common::env_number("NETAUTO_LOAD_CLIENTS", 50);
    scenario("sqlite", n, clients, |dir| {
        format!("sqlite://{}", dir.join("load.db").display())
    })
    .await;
}

/// The same on PostgreSQL, where progress reaches the event streams over LISTEN/NOTIFY.
/// Smaller by default (CI runs both): `NETAUTO_LOAD_PG_DEVICES` changes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_bulk_followed_by_fifty_browsers() {
    let Some(base) = pg_url() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let schema = fresh_pg_schema(&base).await;
    let n = common::env_number("NETAUTO_LOAD_PG_DEVICES", 2_000);
    let clients = common::env_number("NETAUTO_LOAD_CLIENTS", 50);
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options[search_path]={schema}");
    scenario("postgres", n, clients, move |_| url).await;
}

/// Farm, database, server, operator, followers, figures and checks; `url_in` answers the
/// database URL given the test's directory.
async fn scenario(label: &str, n: usize, clients: usize, url_in: impl FnOnce(&Path) -> String) {
    assert!(n > 0 && clients > 0);
    if let Some(limit) = open_files_limit() {
        assert!(
            limit as usize > n + 2 * clients + 200,
            "open files limit {limit} is too low for {n} simulated devices (ulimit -n)"
        );
    }
    let t_setup = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = (0..n)
        .map(|i| {
            DeviceSpec::new(format!("ld{i:05}"), "linux")
                .with_output_bytes(OUTPUT_BYTES)
                .with_login("netauto", DEVICE_PASSWORD)
        })
        .collect();
    let farm = DeviceFarm::start(specs).await.expect("start the farm");
    // Nothing answers until every client follows the bulk.
    farm.pause();
    std::fs::create_dir_all(dir.path().join("home/.ssh")).expect("home");
    farm.write_known_hosts(dir.path().join("home/.ssh/known_hosts"))
        .expect("known_hosts");
    let url = url_in(dir.path());
    let ids = register_devices(&url, &farm).await;

    let (mut server, addr) = common::http::spawn_server(server_command(dir.path(), &url)).await;
    let pid = server.pid();
    let rss_start = rss_kib(pid).unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());
    let setup = t_setup.elapsed();

    // The operator: log in, open the devices page, submit the bulk form.
    let cookie = common::http::login(addr, USER, PASSWORD).await;
    let devices_page = request(addr, "GET", "/devices", Some(&cookie), None).await;
    assert_eq!(devices_page.status, 200);
    let csrf = csrf_of(&devices_page.text());
    drop(devices_page);
    let mut form = format!("csrf={csrf}&command=show+version");
    for id in &ids {
        form.push_str(&format!("&device_id={id}"));
    }
    let t_submit = Instant::now();
    let res = request(addr, "POST", "/bulk", Some(&cookie), Some(&form)).await;
    assert_eq!(res.status, 303, "POST /bulk: {}", res.text());
    let bulk_path = res.header("location").expect("redirect").to_owned();
    assert!(bulk_path.starts_with("/bulk/"), "{bulk_path}");
    let submit = t_submit.elapsed();

    // The followers: each logs in, loads the bulk page, opens the event stream.
    let t_follow = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut followers: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(follow(addr, bulk_path.clone(), ready_tx.clone())))
        .collect();
    drop(ready_tx);
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut ready = 0;
    while ready < clients {
        if let Ok(Some(())) =
            tokio::time::timeout(Duration::from_millis(200), ready_rx.recv()).await
        {
            ready += 1;
            continue;
        }
        // Nothing can end before the farm answers: a finished client failed.
        if let Some(i) = followers.iter().position(|f| f.is_finished()) {
            let failed = followers.swap_remove(i).await;
            panic!("a client failed before following the bulk: {failed:?}");
        }
        assert!(
            Instant::now() < deadline,
            "only {ready} of {clients} clients got their snapshot in 240 s"
        );
    }
    let follow_setup = t_follow.elapsed();
    let rss_followed = rss_kib(pid).unwrap_or(0);

    // Go.
    let cpu0 = (cpu_seconds(&pid.to_string()), cpu_seconds("self"));
    let t0 = Instant::now();
    farm.resume();
    let mut seen = Vec::new();
    for f in followers {
        match tokio::time::timeout(Duration::from_secs(1800), f).await {
            Ok(Ok(s)) => seen.push(s),
            Ok(Err(e)) => panic!(
                "a client failed: {e}; the server says (last lines, exited: {}):\n{}",
                server.exited(),
                tail(&server.lines(), 30)
            ),
            Err(_) => panic!("a client did not see the end of the bulk in 30 min"),
        }
    }
    let last_summary = seen
        .iter()
        .filter_map(|s| s.summary_at)
        .max()
        .unwrap_or_else(Instant::now);
    let wall = last_summary.saturating_duration_since(t0);
    let peak = peak_rss_kib(pid).unwrap_or(0);
    let cpu = (
        cpu_seconds(&pid.to_string()) - cpu0.0,
        cpu_seconds("self") - cpu0.1,
    );
    stop.store(true, Ordering::Relaxed);
    let (max_sampled, samples) = sampler.await.expect("sampler");
    let server_alive = !server.exited();
    server.kill9();

    // Executions on the devices.
    let mut not_once = Vec::new();
    for d in farm.devices() {
        let c = farm.stats(&d.name).expect("stats").commands;
        if c != 1 {
            not_once.push((d.name, c));
        }
    }

    let events: u64 = seen.iter().map(|s| s.events).sum();
    let bytes: u64 = seen.iter().map(|s| s.bytes).sum();
    let lag_snapshots: usize = seen.iter().map(|s| s.snapshots.saturating_sub(1)).sum();
    let started_late = seen.iter().filter(|s| s.done_in_first_snapshot > 0).count();
    let missing: usize = seen.iter().map(|s| n - s.progress.len()).sum();
    let duplicates: usize = seen.iter().map(|s| s.duplicate_progress).sum();
    let (ok, failed) = seen
        .first()
        .and_then(|s| s.summaries.first())
        .map_or((0, 0), |s| (s.ok, s.failed));
    eprintln!(
        "FIGURES server-load[{label}]: {n} devices, {clients} SSE clients (each: login, bulk page, event \
         stream); setup {:.1} s (farm, {n} devices in {label}, server start), bulk form {:.2} s, \
         clients following in {:.1} s; bulk {:.1} s from release to the last summary = {:.0} \
         devices/s; ok {ok} failed {failed}; events delivered {events} ({:.1} MiB, {:.0}/s); \
         lag snapshots {lag_snapshots}; progress missing {missing}, duplicated {duplicates}; \
         server RSS at start {:.1} MiB, after {clients} snapshots {:.1} MiB, max sampled {:.1} \
         MiB ({samples} samples), peak (VmHWM) {:.1} MiB; CPU during the bulk: server {:.2} s \
         ({:.3} ms/device), farm + clients {:.2} s; load average {}",
        setup.as_secs_f64(),
        submit.as_secs_f64(),
        follow_setup.as_secs_f64(),
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        bytes as f64 / (1024.0 * 1024.0),
        events as f64 / wall.as_secs_f64(),
        rss_start as f64 / 1024.0,
        rss_followed as f64 / 1024.0,
        max_sampled as f64 / 1024.0,
        peak as f64 / 1024.0,
        cpu.0,
        cpu.0 * 1000.0 / n as f64,
        cpu.1,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    assert!(server_alive, "the server exited during the test");
    assert_eq!(
        started_late, 0,
        "a client's first snapshot already had outcomes"
    );
    assert_eq!(lag_snapshots, 0, "clients lagged: events were dropped");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.snapshots, 1, "client {i}: snapshots");
        assert_eq!(s.duplicate_progress, 0, "client {i}: duplicated progress");
        assert_eq!(
            s.progress.len(),
            n,
            "client {i}: devices with a progress event"
        );
        assert_eq!(s.summaries.len(), 1, "client {i}: summaries");
        let sum = &s.summaries[0];
        assert_eq!(
            (sum.ok + sum.failed, sum.total),
            (n as u64, n as u64),
            "client {i}: summary"
        );
    }
    assert_eq!(failed, 0, "devices failed");
    assert!(
        not_once.is_empty(),
        "{} devices did not run the command exactly once, e.g. {:?}",
        not_once.len(),
        &not_once[..not_once.len().min(5)]
    );
    assert!(
        peak < RSS_BOUND_KIB && max_sampled < RSS_BOUND_KIB,
        "server peak RSS {peak} KiB (sampled {max_sampled}) over {RSS_BOUND_KIB} KiB"
    );
}
