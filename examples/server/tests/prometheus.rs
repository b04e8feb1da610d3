//! A real Prometheus scrapes the server: the app (SQLite, the demo's simulated devices, its
//! runner) runs a bulk; Prometheus (the Debian package's binary, its own config and data
//! directory, bearer token on the scrape) scrapes `/metrics` every second; the test asks
//! Prometheus's query API for the series: the bulk's device outcomes, job and run
//! histograms, SSH connect latency, job gauges by queue and state, bytes stored, and that
//! no series carries a device label. Also `/healthz`.
//!
//! Skips (printing why) when `prometheus` is absent, unless `CI=true`, where that fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "scrape-secret-for-the-test";

fn prometheus() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETAUTO_PROMETHEUS") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from("/usr/bin/prometheus");
    p.exists().then_some(p)
}

/// A GET over HTTP/1.0 (the response is not chunked): status and body.
async fn get(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn percent(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's answer to an instant query: `[(labels, value)]`.
async fn query(prom: &str, q: &str) -> Vec<(Value, f64)> {
    let (status, body) = get(prom, &format!("/api/v1/query?query={}", percent(q)), None).await;
    assert_eq!(status, 200, "{q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"].clone(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_bulk_job_and_ssh_series() {
    let Some(bin) = prometheus() else {
        let reason = "prometheus not found (/usr/bin/prometheus; `apt-get install prometheus` or set NETAUTO_PROMETHEUS)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {reason}"
        );
        println!("SKIPPED Prometheus test: {reason}");
        return;
    };
    // This test binary's events feed the metrics, as the server binary's do.
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let _ = tracing_subscriber::registry()
            .with(netauto_server::Metrics::global().layer())
            .try_init();
    }

    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("netauto.db").display());
    let db = netauto_sqlx::Database::connect(&db_url).await.unwrap();
    db.migrate().await.unwrap();
    let demo = netauto_server::demo::start(db.store().as_ref(), 8)
        .await
        .unwrap();
    let app = netauto_server::App::new(netauto_server::AppParts {
        store: db.store(),
        queue: db.queue(),
        progress: db.progress(),
        client: demo.client.clone(),
        retention: netauto_core::retention::RetentionConfig::default(),
        users: common::cheap_users(),
        runner: netauto_core::runtime::RunnerConfig::default(),
        secure_cookies: false,
        exec_limits: netauto_core::ExecLimits::default(),
        devices_per_job: netauto_core::bulk::DEFAULT_DEVICE_CONCURRENCY,
    })
    .unwrap()
    .with_metrics_token(Some(TOKEN.to_owned()));
    let runner = app.runner().clone().start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(axum::serve(listener, app.router()).into_future());

    // /healthz: open, says only ok/down. /metrics: the token.
    let (status, body) = get(&addr, "/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::json!({"database": "ok", "runner": "ok"})
    );
    assert_eq!(get(&addr, "/metrics", None).await.0, 401);
    assert_eq!(get(&addr, "/metrics", Some("wrong")).await.0, 401);

    // A bulk on the 8 mixed demo devices (one rejects every login, one exits 1).
    let devices: Vec<_> = db
        .store()
        .list_devices()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| {
            ["core-sw", "leaf", "edge-rtr", "srv"]
                .iter()
                .any(|p| d.name.starts_with(p))
        })
        .map(|d| d.id)
        .collect();
    assert_eq!(devices.len(), 8);
    let bulk_ref = netauto_core::bulk::BulkService::new(db.store(), db.progress())
        .with_wake(app.runner().waker())
        .enqueue(&devices, "show version", "prometheus-test")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = db.store().bulk_state(&bulk_ref).await.unwrap();
        if state.counters.pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the bulk did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, text) = get(&addr, "/metrics", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(text.ends_with("# EOF\n"), "{text}");

    // Prometheus, scraping every second with the token.
    let prom_port = free_port();
    let prom = format!("127.0.0.1:{prom_port}");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: netauto\n    metrics_path: /metrics\n    \
             authorization:\n      credentials: {TOKEN}\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");

    // Wait until a scrape with the bulk's outcomes is in.
    let deadline = Instant::now() + Duration::from_secs(60);
    let outcomes = loop {
        if tokio::net::TcpStream::connect(&prom).await.is_ok() {
            let r = query(&prom, "sum(netauto_bulk_device_outcomes_total)").await;
            if r.first().is_some_and(|(_, v)| *v >= 8.0) {
                break r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no scrape of the bulk's outcomes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(outcomes[0].1, 8.0, "one outcome per device");
    let up = query(&prom, "up{job=\"netauto\"}").await;
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0, "the scrape succeeds with the token");
    let auth = query(
        &prom,
        "netauto_bulk_device_outcomes_total{status=\"error\"}",
    )
    .await;
    assert_eq!(auth.len(), 1, "the device that rejects logins: {auth:?}");
    assert_eq!(auth[0].1, 1.0);
    let runs = query(&prom, "sum(netauto_run_duration_seconds_count)").await;
    assert_eq!(runs[0].1, 8.0, "one run per device");
    let connects = query(
        &prom,
        "sum by (outcome) (netauto_ssh_connect_duration_seconds_count)",
    )
    .await;
    let by = |o: &str| {
        connects
            .iter()
            .find(|(m, _)| m["outcome"] == o)
            .map_or(0.0, |(_, v)| *v)
    };
    assert_eq!(by("ok"), 7.0, "{connects:?}");
    assert!(by("auth") >= 1.0, "{connects:?}");
    let jobs = query(
        &prom,
        "netauto_job_attempts_total{queue=\"bulk\",outcome=\"completed\"}",
    )
    .await;
    assert!(jobs.first().is_some_and(|(_, v)| *v >= 1.0), "{jobs:?}");
    let durations = query(&prom, "netauto_job_duration_seconds_count{queue=\"bulk\"}").await;
    assert!(
        durations.first().is_some_and(|(_, v)| *v >= 1.0),
        "{durations:?}"
    );
    let gauges = query(&prom, "netauto_jobs{queue=\"bulk\"}").await;
    assert!(
        gauges
            .iter()
            .any(|(m, v)| m["state"] == "completed" && *v >= 1.0),
        "{gauges:?}"
    );
    let stored = query(&prom, "netauto_stored_runs").await;
    assert_eq!(stored[0].1, 8.0);
    let bytes = query(&prom, "netauto_stored_bytes").await;
    let written = query(&prom, "netauto_output_bytes_total").await;
    assert!(bytes[0].1 > 0.0);
    assert_eq!(bytes[0].1, written[0].1, "every byte written is stored");
    let labelled = query(
        &prom,
        "count({__name__=~\"netauto_.+\", device!=\"\"}) or count({__name__=~\"netauto_.+\", device_id!=\"\"})",
    )
    .await;
    assert!(labelled.is_empty(), "no device label: {labelled:?}");

    child.kill().await.ok();
    server.abort();
    runner.shutdown().await;
    drop(demo);
}
