//! The real `netauto-server` binary under abuse, over HTTP (issue 12, item 7): SIGTERM with
//! an open event stream, slow and idle connections, the connection cap, memory with many idle
//! connections and with 20 subscribers of a huge run, and the rate of password checks for one
//! user under attack.
//!
//! The server is a child process on a SQLite file prepared by the test (devices, a run that
//! stays `running`, a big run of `NETAUTO_TEST_BIG_RUN_MIB` MiB — 64 by default, 1024 to
//! measure the issue's 1 GiB by hand), configured by environment like a deployment. Figures
//! are printed on a `FIGURES server-abuse:` line (`--nocapture` shows it):
//!
//! ```sh
//! cargo test -p netauto-server --test abuse_http -- --nocapture
//! NETAUTO_TEST_BIG_RUN_MIB=1024 NETAUTO_TEST_ATTACK_SECS=60 \
//!     cargo test -p netauto-server --test abuse_http memory -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::http::{self, Body};
use netauto_core::{NewDevice, NewRun, OutputStream, RunId};
use netauto_reliability::harness::{Proc, peak_rss_kib, rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_netauto-server");
const USER: &str = "ops";
const PASSWORD: &str = "abuse-test-password";
/// Bytes per stored chunk of the big run: the most the core stores in one chunk.
const CHUNK: usize = 64 * 1024;

/// What the database holds before the server starts.
struct Seeded {
    /// A run that stays `running` with no output: its event stream stays open.
    running: RunId,
    /// The big run (also `running`) and its chunk count.
    big: Option<(RunId, u64)>,
}

/// Prepares the server's database: one device, a quiet running run, and a running run of
/// `big_mib` MiB (none when 0), appended chunk by chunk as a device would.
async fn seed(url: &str, big_mib: u64) -> Seeded {
    let db = netauto_sqlx::Database::connect(url)
        .await
        .expect("open the database");
    db.migrate().await.expect("migrate");
    let store = db.store();
    let device = store
        .create_device(NewDevice::new("core-1", "127.0.0.1", "linux", "netauto"))
        .await
        .expect("device");
    let run = |command: &str| NewRun {
        device_id: device.id,
        command: command.to_owned(),
        requested_by: USER.to_owned(),
        bulk_ref: None,
    };
    let running = store
        .create_run(run("tail -f /var/log/messages"), chrono::Utc::now())
        .await
        .expect("run")
        .id;
    let big = if big_mib == 0 {
        None
    } else {
        let id = store
            .create_run(run("show tech-support"), chrono::Utc::now())
            .await
            .expect("run")
            .id;
        let n = big_mib * (1 << 20) / CHUNK as u64;
        let data = output_chunk();
        for _ in 0..n {
            store
                .append_chunk(id, OutputStream::Stdout, &data, chrono::Utc::now())
                .await
                .expect("append");
        }
        Some((id, n))
    };
    Seeded { running, big }
}

/// 64 KiB of plausible device output.
fn output_chunk() -> Vec<u8> {
    let mut out = Vec::with_capacity(CHUNK);
    let mut i = 0;
    while out.len() < CHUNK {
        out.extend_from_slice(
            format!("GigabitEthernet0/{i:<4} is up, line protocol is up (connected)\n").as_bytes(),
        );
        i += 1;
    }
    out.truncate(CHUNK);
    out
}

/// Starts the server on `url` with `env` on top of a clean environment; answers it and its
/// address.
async fn start(dir: &Path, url: &str, env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let params = argon2::Params::new(8, 1, 1, None).expect("argon2 params");
    let hash = netauto_server::hash_password_with(PASSWORD, params).expect("hash");
    let mut cmd = Command::new(BIN);
    cmd.args(["--bind", "127.0.0.1:0"])
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env("HOME", dir)
        .env("NETAUTO_USERS", format!("{USER}:{hash}"))
        .env_remove("NETAUTO_USERS_FILE")
        .env_remove("NET_AUTO_QUEUES")
        .env_remove("NETAUTO_QUEUES");
    for var in netauto_server::config::VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    http::spawn_server(cmd).await
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("abuse.db").display())
}

/// Waits until the server closes `stream`; answers how long that took (`None`: still open
/// after `within`). A response sent before closing (`408`) is read and ignored.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within.saturating_sub(t0.elapsed()), stream.read(&mut buf)).await
        {
            Ok(Ok(0) | Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_an_open_event_stream_does_not_hold_the_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path());
    // 32 MiB: more than the socket buffers hold, so a client that stops reading it holds its
    // request open.
    let seeded = seed(&url, 32).await;
    let (big, _) = seeded.big.expect("big run");
    let (mut server, addr) = start(dir.path(), &url, &[("NETAUTO_SHUTDOWN_GRACE", "3s")]).await;
    let cookie = http::login(addr, USER, PASSWORD).await;

    let (res, mut stream) = http::send(
        addr,
        "GET",
        &format!("/runs/{}/events", seeded.running),
        Some(&cookie),
        None,
        "text/event-stream",
    )
    .await
    .expect("open the event stream");
    assert_eq!(res.status, 200);
    // A download nobody reads: its response cannot finish.
    let (res, _stalled) = http::send(
        addr,
        "GET",
        &format!("/runs/{big}/raw"),
        Some(&cookie),
        None,
        "text/plain",
    )
    .await
    .expect("start the download");
    assert_eq!(res.status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while stream.next_piece(&mut rest).await? {}
        std::io::Result::Ok(())
    })
    .await;
    let stream_end = t0.elapsed();
    let exited_ok = server.wait_exit(Duration::from_secs(8)).await;
    let exit = t0.elapsed();
    eprintln!(
        "SIGTERM: event stream ended after {:.2} s ({ended:?}), process exited after {:.2} s \
         (status 0: {exited_ok})",
        stream_end.as_secs_f64(),
        exit.as_secs_f64()
    );
    assert!(
        matches!(ended, Ok(Ok(()))),
        "the event stream did not end cleanly within 2 s of SIGTERM: {ended:?}"
    );
    assert!(exited_ok, "SIGTERM did not drain to a clean exit");
    assert!(
        exit >= Duration::from_millis(2500),
        "the stalled download should have had the grace period ({exit:?})"
    );
    assert!(
        exit < Duration::from_secs(3 + 3),
        "the drain outlived the 3 s grace period: {exit:?}"
    );
    assert!(
        server
            .lines()
            .iter()
            .any(|l| l.contains("grace period over")),
        "the cut connection is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path());
    seed(&url, 0).await;
    let (_server, addr) = start(dir.path(), &url, &[("NETAUTO_HEADER_TIMEOUT", "1s")]).await;

    // Part of a header, then nothing.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(format!("GET /login HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    // A header trickled a byte every 200 ms, forever (slowloris).
    let trickle = TcpStream::connect(addr).await.unwrap();
    let (mut trickle_read, mut trickle_write) = trickle.into_split();
    let trickler = tokio::spawn(async move {
        trickle_write
            .write_all(b"GET /login HTTP/1.1\r\nX-Slow: ")
            .await?;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trickle_write.write_all(b"a").await?;
        }
        #[allow(unreachable_code)]
        std::io::Result::Ok(())
    });
    // Connected, silent.
    let mut idle = TcpStream::connect(addr).await.unwrap();

    let limit = Duration::from_secs(4);
    let (p, i, t) = tokio::join!(
        closed_within(&mut partial, limit),
        closed_within(&mut idle, limit),
        async {
            let t0 = Instant::now();
            let mut buf = [0u8; 1024];
            loop {
                match tokio::time::timeout(
                    limit.saturating_sub(t0.elapsed()),
                    trickle_read.read(&mut buf),
                )
                .await
                {
                    Ok(Ok(0) | Err(_)) => return Some(t0.elapsed()),
                    Ok(Ok(_)) => {}
                    Err(_) => return None,
                }
            }
        }
    );
    trickler.abort();
    eprintln!("header timeout 1 s: partial header closed after {p:?}, idle {i:?}, trickle {t:?}");
    for (what, closed) in [("partial header", p), ("idle", i), ("trickled header", t)] {
        let after = closed.unwrap_or_else(|| panic!("the {what} connection was open after 4 s"));
        assert!(
            after >= Duration::from_millis(700),
            "the {what} connection was closed too early ({after:?})"
        );
    }
    // A prompt client is served as ever.
    assert_eq!(
        http::request(addr, "GET", "/login", None, None)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path());
    seed(&url, 0).await;
    let (server, addr) = start(
        dir.path(),
        &url,
        &[
            ("NETAUTO_MAX_CONNECTIONS", "4"),
            ("NETAUTO_HEADER_TIMEOUT", "60s"),
        ],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The fifth connects (the kernel queues it) but is not served…
    let fifth = TcpStream::connect(addr).await.unwrap();
    let waiting = tokio::spawn(async move {
        let t0 = Instant::now();
        let (res, _) = http::send_on(fifth, addr, "GET", "/login", None, None, "text/html")
            .await
            .expect("the fifth request");
        (res.status, t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "a fifth connection was served while 4 were open: {:?}",
        waiting.await
    );
    // …until one of the four closes.
    drop(held.pop());
    let (status, after) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the fifth connection is served once a slot is free")
        .unwrap();
    assert_eq!(status, 200);
    assert!(after >= Duration::from_millis(1400), "{after:?}");
    assert!(
        server
            .lines()
            .iter()
            .any(|l| l.contains("connection cap reached")),
        "the cap is logged"
    );
}

/// One subscriber of the big run: logs in, opens the run's event stream from seq 0, reads
/// `first` bytes, reports ready, waits for `go`, then reads until the run's last chunk.
/// Answers the bytes read.
async fn subscriber(
    addr: SocketAddr,
    run: RunId,
    last_seq: u64,
    first: u64,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
    mut go: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let cookie = http::login(addr, USER, PASSWORD).await;
    let (res, mut body): (_, Body) = http::send(
        addr,
        "GET",
        &format!("/runs/{run}/events?from=0"),
        Some(&cookie),
        None,
        "text/event-stream",
    )
    .await
    .expect("open the run stream");
    assert_eq!(res.status, 200, "run stream");
    let needle = format!("\"seq\":{last_seq},");
    let mut bytes = 0u64;
    let mut signalled = false;
    let mut buf = Vec::new();
    let mut tail = String::new();
    loop {
        buf.clear();
        if !body
            .next_piece(&mut buf)
            .await
            .expect("read the run stream")
        {
            panic!("the run stream ended before the last chunk");
        }
        bytes += buf.len() as u64;
        // The needle may straddle two pieces: look at the end of the last one too.
        tail.push_str(&String::from_utf8_lossy(&buf));
        if tail.contains(&needle) {
            return bytes;
        }
        let keep = tail.len().saturating_sub(64);
        let keep = (keep..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(tail.len());
        tail.drain(..keep);
        if !signalled && bytes >= first {
            signalled = true;
            let _ = ready.send(());
            let _ = go.wait_for(|g| *g).await;
        }
    }
}

/// Samples a process's RSS until stopped; answers the largest sample.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let max = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            if let Some(kib) = rss_kib(pid) {
                max.fetch_max(kib, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        max.load(Ordering::Relaxed)
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_and_one_user_under_attack_gets_few_password_checks() {
    let big_mib = common::env_number("NETAUTO_TEST_BIG_RUN_MIB", 64);
    let idle_n = common::env_number("NETAUTO_TEST_IDLE_CONNECTIONS", 1000);
    let subscribers = common::env_number("NETAUTO_TEST_SUBSCRIBERS", 20);
    let attack_secs = common::env_number("NETAUTO_TEST_ATTACK_SECS", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path());
    let t_seed = Instant::now();
    let seeded = seed(&url, big_mib).await;
    let seed_time = t_seed.elapsed();
    let (big, chunks) = seeded.big.expect("big run");
    let max_connections = (idle_n + 64).to_string();
    let (mut server, addr) = start(
        dir.path(),
        &url,
        &[
            ("NETAUTO_MAX_CONNECTIONS", max_connections.as_str()),
            ("NETAUTO_HEADER_TIMEOUT", "120s"),
            ("NETAUTO_STREAMS_PER_SESSION", "16"),
        ],
    )
    .await;
    let pid = server.pid();
    let rss_start = rss_kib(pid).unwrap_or(0);

    // Idle connections: open, silent.
    let mut idle = Vec::new();
    for _ in 0..idle_n {
        idle.push(TcpStream::connect(addr).await.expect("idle connection"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        http::request(addr, "GET", "/login", None, None)
            .await
            .status,
        200,
        "served beside {idle_n} idle connections"
    );
    let rss_idle = rss_kib(pid).unwrap_or(0);
    drop(idle);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Subscribers of the big run: each reads 4 MiB and stalls until all do, then all read on
    // to the last chunk.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let t_sub = Instant::now();
    let tasks: Vec<_> = (0..subscribers)
        .map(|_| {
            tokio::spawn(subscriber(
                addr,
                big,
                chunks - 1,
                4 << 20,
                ready_tx.clone(),
                go_rx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    for i in 0..subscribers {
        tokio::time::timeout(Duration::from_secs(300), ready_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {i} of {subscribers} subscribers read 4 MiB"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_stalled = rss_kib(pid).unwrap_or(0);
    go_tx.send_replace(true);
    let mut delivered = 0;
    for t in tasks {
        delivered += tokio::time::timeout(Duration::from_secs(3600), t)
            .await
            .expect("a subscriber did not reach the last chunk")
            .expect("subscriber");
    }
    let sub_time = t_sub.elapsed();
    stop.store(true, Ordering::Relaxed);
    let rss_subscribed_max = sampler.await.expect("sampler");
    let peak = peak_rss_kib(pid).unwrap_or(0);

    // One user under attack: wrong passwords as fast as they are answered, one CSRF token.
    let (anon, csrf) = http::login_form(addr).await;
    let form = format!("username={USER}&password=wrong-guess&csrf={csrf}");
    let (mut checked, mut throttled, mut busy, mut other) = (0u64, 0u64, 0u64, 0u64);
    let t_attack = Instant::now();
    while t_attack.elapsed() < Duration::from_secs(attack_secs) {
        let res = http::request(addr, "POST", "/login", Some(&anon), Some(&form)).await;
        match res.status {
            401 => checked += 1,
            429 => {
                throttled += 1;
                assert!(
                    res.header("retry-after").is_some(),
                    "429 without Retry-After"
                );
            }
            503 => busy += 1,
            _ => other += 1,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let attack = t_attack.elapsed();
    let alive = !server.exited();
    server.kill9();

    eprintln!(
        "FIGURES server-abuse: RSS at start {:.1} MiB; with {idle_n} idle connections {:.1} MiB; \
         big run {big_mib} MiB ({chunks} chunks, seeded in {:.1} s); {subscribers} subscribers \
         of it: {:.1} MiB while each had read 4 MiB and stalled, max sampled {:.1} MiB while \
         all read it to the end ({:.1} MiB delivered in {:.1} s), peak (VmHWM) {:.1} MiB; one \
         user under attack for {:.1} s: {checked} wrong passwords checked ({:.1}/min over the \
         run), {throttled} answered 429, {busy} answered 503, {other} other; load average {}",
        mib(rss_start),
        mib(rss_idle),
        seed_time.as_secs_f64(),
        mib(rss_stalled),
        mib(rss_subscribed_max),
        delivered as f64 / (1 << 20) as f64,
        sub_time.as_secs_f64(),
        mib(peak),
        attack.as_secs_f64(),
        checked as f64 * 60.0 / attack.as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    assert!(alive, "the server exited during the test");
    assert_eq!(other, 0, "unexpected answers to wrong logins");
    // 5 free failures, then one per backoff of 1, 2, 4… s.
    let allowed = 5 + (attack_secs as f64 + 1.0).log2().ceil() as u64 + 1;
    assert!(
        checked <= allowed,
        "{checked} wrong passwords checked in {attack:?} (at most {allowed} expected)"
    );
    assert!(throttled > 0);
    let per_subscriber = 8 << 10;
    let bound = rss_start + 64 * 1024 + subscribers * per_subscriber;
    assert!(
        rss_subscribed_max < bound && rss_stalled < bound,
        "{subscribers} subscribers of a {big_mib} MiB run took the server to {} KiB (bound {bound} KiB)",
        rss_subscribed_max.max(rss_stalled)
    );
    assert!(
        rss_idle < rss_start + 64 * 1024,
        "{idle_n} idle connections took the server from {rss_start} to {rss_idle} KiB"
    );
}
