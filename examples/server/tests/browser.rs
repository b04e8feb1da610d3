//! End-to-end in a real browser: headless Chromium driven over the DevTools protocol logs in,
//! selects three simulated devices, submits a command in the modal, lands on the bulk page,
//! sees all three finish without reloading, opens a run and sees its output — with a
//! `<script>` in it shown as text. Then, with devices that never answer, a bulk with the
//! modal's own 1 s deadline ends in three timeouts, and another is stopped with the *Cancel
//! bulk* button. A screenshot of the bulk page is saved under the target directory
//! (`target/tmp/bulk-page.png`). A second test runs bulks on the demo's one device per
//! platform (23 platforms) and checks each device's outcome in the page: ok, `command_rejected`
//! by the platform's failure patterns, and a confirm question failing `prompt_unanswered`
//! unless the modal's *Answer device questions* box is ticked.
//!
//! Skips (printing why) when Chromium is absent, unless `CI=true`, where that fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETAUTO_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal DevTools client: one page session, commands answered in order.
struct Cdp {
    ws: Ws,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("devtools connection open")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    async fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.eval(expr).await == json!(true) {
                return;
            }
            if start.elapsed() > timeout {
                let url = self.eval("location.href").await;
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!("timed out waiting for {what} at {url}:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            "page load",
            "document.readyState === 'complete'",
            Duration::from_secs(15),
        )
        .await;
    }
}

/// Decodes standard base64 (the screenshot).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| u32::from(val(*c))).collect();
        let n = v
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, x)| acc | x << (18 - 6 * i));
        let len = chunk.len() - 1;
        for i in 0..len {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// The app on SQLite with the device simulator (one device per platform and `mixed` others),
/// its runner, and headless Chromium logged in on the devices page.
struct Session {
    cdp: Cdp,
    child: tokio::process::Child,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    runner: netauto_core::runtime::RunnerHandle,
    demo: netauto_server::demo::Demo,
    base: String,
    dir: PathBuf,
}

impl Session {
    /// `None` (after printing why) when Chromium is absent outside CI.
    async fn start(name: &str, mixed: usize) -> Option<Self> {
        let Some(chromium) = chromium() else {
            let reason = "chromium not found (/usr/bin/chromium; set NETAUTO_CHROMIUM or `apt-get install chromium`)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: {reason}"
            );
            println!("SKIPPED browser test: {reason}");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("netauto-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db_url = format!("sqlite://{}", dir.join("netauto.db").display());
        let db = netauto_sqlx::Database::connect(&db_url).await.unwrap();
        db.migrate().await.unwrap();
        let demo = netauto_server::demo::start(db.store().as_ref(), mixed)
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
        .unwrap();
        let runner = app.runner().clone().start();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // With the peer address, as the server binary has it (the audit log shows it).
        let server = tokio::spawn(
            axum::serve(
                listener,
                app.router()
                    .into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .into_future(),
        );

        // Chromium with a fresh profile, DevTools on a free port.
        let profile = dir.join("profile");
        let mut child = tokio::process::Command::new(&chromium)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--remote-debugging-port=0")
            .arg("--window-size=1280,900")
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let ws_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools endpoint");
        })
        .await
        .expect("chromium prints its DevTools endpoint");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .unwrap();
        let mut cdp = Cdp {
            ws,
            next_id: 0,
            session: None,
        };
        let target = cdp
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = cdp
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        cdp.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        cdp.call("Page.enable", json!({})).await;
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;

        // Log in.
        cdp.goto(&format!("{base}/devices")).await;
        cdp.wait_for(
            "the login page",
            "location.pathname === '/login'",
            Duration::from_secs(10),
        )
        .await;
        cdp.eval(&format!(
            "document.getElementById('username').value = {user}; \
             document.getElementById('password').value = {pw}; \
             document.querySelector('form.login-card button').click(); true",
            user = json!(common::USER),
            pw = json!(common::PASSWORD),
        ))
        .await;
        cdp.wait_for(
            "the devices index",
            "location.pathname === '/devices' && document.readyState === 'complete' && !!document.getElementById('devices')",
            Duration::from_secs(15),
        )
        .await;
        Some(Self {
            cdp,
            child,
            server,
            runner,
            demo,
            base,
            dir,
        })
    }

    async fn close(mut self) {
        self.child.kill().await.ok();
        self.server.abort();
        self.runner.shutdown().await;
        drop(self.demo);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_runs_a_command_on_three_devices_in_a_real_browser() {
    // The app with the simulator (8 mixed demo devices, leaf-02 failing, and one per platform).
    let Some(mut session) = Session::start("browser", 8).await else {
        return;
    };
    let Session {
        ref mut cdp,
        ref base,
        ref demo,
        ..
    } = session;

    // Select three devices by clicking their checkboxes, open the modal, submit a command.
    let picked = cdp
        .eval(
            "(() => { const want = ['core-sw-01', 'leaf-01', 'srv-01']; let n = 0; \
             for (const row of document.querySelectorAll('#devices tbody tr')) { \
               if (want.includes(row.querySelector('td.name').textContent)) { row.querySelector('input.pick').click(); n++; } } \
             return n; })()",
        )
        .await;
    assert_eq!(picked, json!(3));
    assert_eq!(
        cdp.eval("document.getElementById('selected-count').textContent")
            .await,
        json!("3")
    );
    cdp.eval("document.getElementById('open-bulk').click(); true")
        .await;
    cdp.wait_for(
        "the modal",
        "document.getElementById('bulk-dialog').open",
        Duration::from_secs(5),
    )
    .await;
    cdp.eval(
        "document.getElementById('command').value = 'show <script>alert(1)</script> version'; \
         document.getElementById('submit-bulk').click(); true",
    )
    .await;
    cdp.wait_for(
        "the bulk page",
        "location.pathname.startsWith('/bulk/') && document.readyState === 'complete' && !!document.getElementById('bulk')",
        Duration::from_secs(15),
    )
    .await;
    cdp.eval("window.__sameDocument = true; true").await;
    let flash = cdp
        .eval("document.querySelector('.flash').textContent")
        .await;
    assert_eq!(flash, json!("Bulk started on 3 devices"));

    // All three finish live: counters, rows and the summary banner update in this document.
    cdp.wait_for(
        "all three devices to finish",
        "!document.getElementById('summary').hidden && document.getElementById('c-ok').textContent === '3'",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        cdp.eval("window.__sameDocument === true").await,
        json!(true),
        "no reload"
    );
    assert_eq!(
        cdp.eval("document.getElementById('c-pending').textContent")
            .await,
        json!("0")
    );
    assert_eq!(
        cdp.eval("document.querySelectorAll('#bulk-devices .status-ok').length")
            .await,
        json!(3)
    );
    let banner = cdp
        .eval("document.getElementById('summary').textContent")
        .await;
    assert!(
        banner
            .as_str()
            .unwrap()
            .starts_with("Finished: 3 ok, 0 failed of 3"),
        "{banner}"
    );

    let shot = cdp
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"));
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bulk-page.png");
    std::fs::write(&path, png).unwrap();
    println!("screenshot of the bulk page: {}", path.display());

    // Open one run: its output is there, the <script> in it is text.
    cdp.eval("document.querySelector('#bulk-devices td.run a').click(); true")
        .await;
    cdp.wait_for(
        "the run page",
        "location.pathname.startsWith('/runs/') && document.readyState === 'complete' && !!document.getElementById('output')",
        Duration::from_secs(15),
    )
    .await;
    cdp.wait_for(
        "the run's output",
        "document.getElementById('output').textContent.includes(\"output of 'show <script>alert(1)</script> version'\")",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        cdp.eval("document.querySelectorAll('#output script, #output *:not(span)').length")
            .await,
        json!(0)
    );
    let status = cdp
        .eval("document.querySelector('#run-status .badge').textContent")
        .await;
    assert_eq!(status, json!("ok"));

    // Devices that never answer (the simulator holds every command): a bulk with the modal's
    // own 1 s deadline ends with three timeouts, live.
    demo.farm.pause();
    let select_three_and_run = |deadline: &str| {
        format!(
            "(() => {{ const want = ['core-sw-01', 'leaf-01', 'srv-01'];              for (const row of document.querySelectorAll('#devices tbody tr')) {{                if (want.includes(row.querySelector('td.name').textContent)) row.querySelector('input.pick').click(); }}              document.getElementById('open-bulk').click();              document.getElementById('command').value = 'monitor';              document.getElementById('timeout').value = {deadline};              document.getElementById('submit-bulk').click(); return true; }})()",
            deadline = json!(deadline)
        )
    };
    for (deadline, what) in [("1s", "timeout"), ("", "cancel")] {
        cdp.goto(&format!("{base}/devices")).await;
        cdp.wait_for(
            "the devices index",
            "document.readyState === 'complete' && !!document.getElementById('devices')",
            Duration::from_secs(15),
        )
        .await;
        cdp.eval(&select_three_and_run(deadline)).await;
        cdp.wait_for(
            "the bulk page",
            "location.pathname.startsWith('/bulk/') && document.readyState === 'complete' && !!document.getElementById('bulk')",
            Duration::from_secs(15),
        )
        .await;
        if what == "timeout" {
            cdp.wait_for(
                "three timeouts at the bulk's 1 s deadline",
                "!document.getElementById('summary').hidden && document.querySelectorAll('#bulk-devices .status-timeout').length === 3",
                Duration::from_secs(20),
            )
            .await;
            continue;
        }
        // Let the sessions open, then press Cancel bulk: the page comes back cancelling and
        // follows the stopped devices to the summary.
        tokio::time::sleep(Duration::from_millis(500)).await;
        cdp.eval("document.getElementById('cancel-bulk-run').click(); true")
            .await;
        cdp.wait_for(
            "the cancelled bulk to end",
            "!!document.getElementById('c-cancelled') && document.getElementById('c-cancelled').textContent === '3' \
             && !document.getElementById('summary').hidden",
            Duration::from_secs(20),
        )
        .await;
        let banner = cdp
            .eval("document.getElementById('summary').textContent")
            .await;
        assert!(banner.as_str().unwrap().contains("3 cancelled"), "{banner}");
        assert_eq!(
            cdp.eval("!!document.getElementById('cancel-bulk-run')")
                .await,
            json!(false),
            "no cancel button once cancelled"
        );
    }
    demo.farm.resume();
    session.close().await;
}

/// Runs `command` on every device shown after picking `platform` in the devices page's
/// platform filter ("" for all), answering questions when `answer`; waits for the summary.
async fn bulk_on_shown(cdp: &mut Cdp, base: &str, platform: &str, command: &str, answer: bool) {
    cdp.goto(&format!("{base}/devices")).await;
    cdp.wait_for(
        "the devices index",
        "document.readyState === 'complete' && !!document.getElementById('devices')",
        Duration::from_secs(15),
    )
    .await;
    cdp.eval(&format!(
        "(() => {{ const f = document.getElementById('platform-filter'); f.value = {platform}; \
         f.dispatchEvent(new Event('change')); \
         document.getElementById('select-all').click(); \
         document.getElementById('open-bulk').click(); \
         document.getElementById('command').value = {command}; \
         document.getElementById('answer_prompts').checked = {answer}; \
         document.getElementById('submit-bulk').click(); return true; }})()",
        platform = json!(platform),
        command = json!(command),
    ))
    .await;
    cdp.wait_for(
        "the bulk page",
        "location.pathname.startsWith('/bulk/') && document.readyState === 'complete' && !!document.getElementById('bulk')",
        Duration::from_secs(15),
    )
    .await;
    cdp.wait_for(
        "the bulk to finish",
        "!document.getElementById('summary').hidden",
        Duration::from_secs(90),
    )
    .await;
}

/// `{device name: [status, error kind]}` of the bulk page's rows.
async fn rows(cdp: &mut Cdp) -> Value {
    cdp.eval(
        "(() => { const out = {}; for (const tr of document.querySelectorAll('#bulk-devices tbody tr')) { \
           const kind = tr.querySelector('td.run .kind, td.run span.muted'); \
           out[tr.querySelector('td.name').textContent] = [tr.querySelector('td.status .badge').textContent, \
             kind ? kind.textContent : '']; } return out; })()",
    )
    .await
}

/// One simulated device per shipped platform (the demo's), each playing its platform's
/// prompts, escalation, paging, error text and confirm question: a bulk of `show version` on
/// all of them is ok everywhere; a bulk of a command every device rejects ends failed
/// everywhere, as `command_rejected` where the platform's failure patterns see the error text
/// (the others, `generic`, by their exit status: `exit_status`); the platform filter picks one platform, whose confirm
/// question ends the run at once unless the bulk allows answering it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_per_platform_ends_as_its_platform_says_in_a_real_browser() {
    let Some(mut session) = Session::start("platforms", 0).await else {
        return;
    };
    let platforms = netauto_core::platform::Platforms::builtin();
    let n = platforms.len();
    assert!(n >= 20, "{n} platforms");
    let Session {
        ref mut cdp,
        ref base,
        ..
    } = session;

    bulk_on_shown(cdp, base, "", "show version", false).await;
    let banner = cdp
        .eval("document.getElementById('summary').textContent")
        .await;
    assert!(
        banner
            .as_str()
            .unwrap()
            .starts_with(&format!("Finished: {n} ok, 0 failed of {n}")),
        "{banner}\n{}",
        rows(cdp).await
    );

    bulk_on_shown(cdp, base, "", netauto_ssh::sim::REJECTED_COMMAND, false).await;
    let mut expected = serde_json::Map::new();
    for p in platforms.iter() {
        let text = p
            .persona
            .rejected
            .replace("{command}", netauto_ssh::sim::REJECTED_COMMAND);
        let kind = if text.lines().any(|l| p.failure_in(l).is_some()) {
            "command_rejected"
        } else {
            "exit_status"
        };
        expected.insert(
            format!("{}-01", p.name.replace('_', "-")),
            json!(["failed", kind]),
        );
    }
    assert_eq!(rows(cdp).await, Value::Object(expected));
    let rejected_by_pattern = platforms
        .iter()
        .filter(|p| {
            p.persona
                .rejected
                .lines()
                .any(|l| p.failure_in(l).is_some())
        })
        .count();
    assert!(rejected_by_pattern >= 18, "{rejected_by_pattern}");

    // The platform filter shows one device; its `reload` asks "[confirm]".
    bulk_on_shown(cdp, base, "cisco_ios", "reload", false).await;
    assert_eq!(
        rows(cdp).await,
        json!({"cisco-ios-01": ["failed", "prompt_unanswered"]})
    );
    bulk_on_shown(cdp, base, "cisco_ios", "reload", true).await;
    assert_eq!(rows(cdp).await, json!({"cisco-ios-01": ["ok", ""]}));
    assert_eq!(
        cdp.eval("document.getElementById('answers-prompts').textContent")
            .await,
        json!("answered with the platform's replies")
    );
    session.close().await;
}

/// Clicks the first element matching `selector` and waits for a page whose path starts with
/// `path` and that has an element `#ready`.
async fn click_to(cdp: &mut Cdp, selector: &str, path: &str, ready: &str) {
    cdp.eval(&format!(
        "document.querySelector({}).click(); true",
        json!(selector)
    ))
    .await;
    cdp.wait_for(
        &format!("{path} after clicking {selector}"),
        &format!(
            "location.pathname.startsWith({}) && document.readyState === 'complete' && !!document.getElementById({})",
            json!(path),
            json!(ready)
        ),
        Duration::from_secs(20),
    )
    .await;
}

/// Working with results, by clicks: a bulk with a failing device; the history lists it; run
/// again on the failed device (linked to its parent); run again on all, then diff a run with
/// the previous one; search the stored output; export the bulk as CSV and tar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_history_rerun_diff_search_and_export_in_a_real_browser() {
    let Some(mut session) = Session::start("results", 8).await else {
        return;
    };
    let Session {
        ref mut cdp,
        ref base,
        ..
    } = session;
    let cdp: &mut Cdp = cdp;

    // core-sw-01 and leaf-01 answer; leaf-02 rejects every login.
    cdp.eval(
        "(() => { const want = ['core-sw-01', 'leaf-01', 'leaf-02']; \
         for (const row of document.querySelectorAll('#devices tbody tr')) { \
           if (want.includes(row.querySelector('td.name').textContent)) row.querySelector('input.pick').click(); } \
         document.getElementById('open-bulk').click(); \
         document.getElementById('command').value = 'show inventory'; \
         document.getElementById('submit-bulk').click(); return true; })()",
    )
    .await;
    cdp.wait_for(
        "the first bulk to finish",
        "location.pathname.startsWith('/bulk/') && !!document.getElementById('summary') && !document.getElementById('summary').hidden",
        Duration::from_secs(60),
    )
    .await;
    let first = cdp.eval("location.pathname").await;
    assert_eq!(
        cdp.eval("document.getElementById('c-ok').textContent")
            .await,
        json!("2")
    );

    // History: the navigation's Bulks, the newest row is that bulk.
    click_to(cdp, "nav a[href='/bulks']", "/bulks", "bulks").await;
    click_to(cdp, "#bulks tbody tr a", "/bulk/", "bulk").await;
    assert_eq!(cdp.eval("location.pathname").await, first);

    // Run again on the failed device: a new bulk of one device, linked to the first.
    click_to(cdp, "#rerun-failed", "/bulk/", "parent").await;
    assert_ne!(cdp.eval("location.pathname").await, first);
    cdp.wait_for(
        "the re-run to finish",
        "!document.getElementById('summary').hidden",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        cdp.eval("document.querySelectorAll('#bulk-devices tbody tr').length")
            .await,
        json!(1),
        "only the failed device"
    );
    assert_eq!(
        cdp.eval("document.querySelector('#parent a').getAttribute('href')")
            .await,
        first
    );

    // Back to the parent, run again on all; in the new bulk, diff a run with the previous one.
    click_to(cdp, "#parent a", "/bulk/", "rerun-all").await;
    click_to(cdp, "#rerun-all", "/bulk/", "parent").await;
    cdp.wait_for(
        "the second re-run to finish",
        "!document.getElementById('summary').hidden && document.getElementById('c-ok').textContent === '2'",
        Duration::from_secs(60),
    )
    .await;
    cdp.eval(
        "(() => { for (const row of document.querySelectorAll('#bulk-devices tbody tr')) { \
           if (row.textContent.includes('core-sw-01')) { row.querySelector('td.run a').click(); return true; } } \
         return false; })()",
    )
    .await;
    cdp.wait_for(
        "the run page",
        "location.pathname.startsWith('/runs/') && document.readyState === 'complete' && !!document.getElementById('output')",
        Duration::from_secs(15),
    )
    .await;
    let run = cdp.eval("location.pathname").await;
    // The simulator answers the same twice: the diff says identical.
    click_to(cdp, "a[href$='/diff']", "/runs/", "identical").await;
    assert_eq!(
        cdp.eval("location.pathname").await,
        json!(format!("{}/diff", run.as_str().unwrap()))
    );

    // Search the stored output from the navigation: both core-sw-01 runs are found, newest
    // first, the matching line highlighted.
    click_to(cdp, "nav a[href='/search']", "/search", "search-form").await;
    cdp.eval(
        "document.querySelector('#search-form input[name=q]').value = \"CORE-SW-01: output of 'show inventory'\"; \
         document.querySelector('#search-form button').click(); true",
    )
    .await;
    cdp.wait_for(
        "search results",
        "document.readyState === 'complete' && !!document.getElementById('hits')",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        cdp.eval("document.querySelectorAll('#hits section.hit').length")
            .await,
        json!(2)
    );
    assert_eq!(
        cdp.eval("document.querySelector('#hits section.hit h3 a').getAttribute('href')")
            .await,
        run,
        "newest first"
    );
    assert_eq!(
        cdp.eval("document.querySelector('#hits mark').textContent")
            .await,
        json!("core-sw-01: output of 'show inventory'")
    );

    // Export the first bulk: the page's links download CSV (one row per device) and a tar.
    cdp.goto(&format!("{base}{}", first.as_str().unwrap()))
        .await;
    let csv = cdp
        .eval("fetch(document.getElementById('export-csv').href).then(r => r.text())")
        .await;
    let csv = csv.as_str().unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with("leaf-02,") && l.contains(",error,")),
        "{csv}"
    );
    let tar = cdp
        .eval(
            "fetch(document.getElementById('export-tar').href).then(r => r.arrayBuffer()).then(b => { \
               const text = new TextDecoder('latin1').decode(b); \
               return [b.byteLength % 512, text.includes('/core-sw-01.txt'), text.includes('/results.csv')]; })",
        )
        .await;
    assert_eq!(tar, json!([0, true, true]));
    session.close().await;
}

/// Logs in through the login form as `user` and waits for the devices index.
async fn log_in(cdp: &mut Cdp, base: &str, user: &str, password: &str) {
    cdp.goto(&format!("{base}/login")).await;
    cdp.eval(&format!(
        "document.getElementById('username').value = {user}; \
         document.getElementById('password').value = {pw}; \
         document.querySelector('form.login-card button').click(); true",
        user = json!(user),
        pw = json!(password),
    ))
    .await;
    cdp.wait_for(
        "the devices index after login",
        "location.pathname === '/devices' && document.readyState === 'complete' && !!document.getElementById('devices')",
        Duration::from_secs(15),
    )
    .await;
}

/// Logs out with the header's button and waits for the login page.
async fn log_out(cdp: &mut Cdp) {
    cdp.eval("document.querySelector('form[action=\"/logout\"] button').click(); true")
        .await;
    cdp.wait_for(
        "the login page after logout",
        "location.pathname === '/login' && document.readyState === 'complete'",
        Duration::from_secs(15),
    )
    .await;
}

/// A team, by clicks: the admin adds a device on the devices page (saved, it lands on its
/// page) and an operator on /users; the operator logs in, sees no admin links, runs a bulk
/// on the new device, and is refused /audit; the admin's /audit shows all of it, with the
/// operator's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_adds_a_device_and_an_operator_who_runs_a_bulk_in_a_real_browser() {
    let Some(mut session) = Session::start("add-device", 2).await else {
        return;
    };
    let Session {
        ref mut cdp,
        ref base,
        ref demo,
        ..
    } = session;
    let cdp: &mut Cdp = cdp;
    // The new device is reachable: the address and credential of a simulated one.
    let sim = demo
        .devices
        .iter()
        .find(|d| d.platform == "cisco_ios")
        .expect("a simulated cisco_ios device");
    click_to(cdp, "#add-device", "/devices/new", "device-form").await;
    cdp.eval(&format!(
        "(() => {{ const f = document.getElementById('device-form'); \
           f.querySelector('[name=name]').value = 'lab-rtr-9'; \
           f.querySelector('[name=host]').value = {host}; \
           f.querySelector('[name=port]').value = {port}; \
           f.querySelector('[name=platform]').value = 'cisco_ios'; \
           f.querySelector('[name=username]').value = {username}; \
           f.querySelector('[name=credential_ref]').value = {cred}; \
           f.querySelector('[name=tags]').value = 'lab, edge'; \
           document.getElementById('save-device').click(); return true; }})()",
        host = json!(sim.host),
        port = json!(sim.port.to_string()),
        username = json!(sim.username),
        cred = json!(sim.credential_ref.clone().unwrap_or_default()),
    ))
    .await;
    cdp.wait_for(
        "the new device's page",
        "location.pathname.startsWith('/devices/') && location.pathname !== '/devices/new' && !!document.getElementById('device-details')",
        Duration::from_secs(15),
    )
    .await;
    let details = cdp
        .eval("document.getElementById('device-details').textContent")
        .await;
    let details = details.as_str().unwrap();
    assert!(
        details.contains(&format!("{}:{}", sim.host, sim.port))
            && details.contains("cisco_ios")
            && details.contains("lab, edge"),
        "{details}"
    );
    assert_eq!(
        cdp.eval("document.querySelector('.flash').textContent")
            .await,
        json!("Device lab-rtr-9 added.")
    );

    // The operator, added on /users.
    click_to(cdp, "header nav a[href='/users']", "/users", "user-form").await;
    cdp.eval(
        "(() => { const f = document.getElementById('user-form'); \
           f.querySelector('[name=name]').value = 'olga'; \
           f.querySelector('[name=password]').value = 'olga-secret-pw'; \
           f.querySelector('[name=role]').value = 'operator'; \
           document.getElementById('add-user').click(); return true; })()",
    )
    .await;
    cdp.wait_for(
        "olga in the users table",
        "location.pathname === '/users' && !!document.querySelector('#users tr[data-user=olga]')",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        cdp.eval("document.querySelector('#users tr[data-user=olga] select').value")
            .await,
        json!("operator")
    );
    log_out(cdp).await;

    // The operator runs a bulk on the new device.
    log_in(cdp, base, "olga", "olga-secret-pw").await;
    assert_eq!(
        cdp.eval("[!!document.querySelector('header nav a[href=\"/audit\"]'), document.querySelector('header .role').textContent]")
            .await,
        json!([false, "operator"])
    );
    let picked = cdp
        .eval(
            "(() => { let n = 0; for (const row of document.querySelectorAll('#devices tbody tr')) { \
               if (row.querySelector('td.name').textContent === 'lab-rtr-9') { row.querySelector('input.pick').click(); n++; } } \
             document.getElementById('open-bulk').click(); \
             document.getElementById('command').value = 'show version'; \
             document.getElementById('submit-bulk').click(); return n; })()",
        )
        .await;
    assert_eq!(picked, json!(1));
    cdp.wait_for(
        "the operator's bulk to finish ok",
        "location.pathname.startsWith('/bulk/') && !!document.getElementById('summary') \
         && !document.getElementById('summary').hidden && document.getElementById('c-ok').textContent === '1'",
        Duration::from_secs(60),
    )
    .await;
    cdp.goto(&format!("{base}/audit")).await;
    let refused = cdp
        .eval("[document.title, document.body.innerText.includes('needs the admin role')]")
        .await;
    assert_eq!(refused[1], json!(true), "{refused}");
    assert!(
        !cdp.eval("!!document.getElementById('audit')")
            .await
            .as_bool()
            .unwrap()
    );
    cdp.goto(&format!("{base}/devices")).await;
    log_out(cdp).await;

    // The admin reads who did what.
    log_in(cdp, base, common::USER, common::PASSWORD).await;
    click_to(cdp, "header nav a[href='/audit']", "/audit", "audit").await;
    let rows = cdp
        .eval(
            "[...document.querySelectorAll('#audit tbody tr')].map(r => \
               [...r.querySelectorAll('td')].slice(1, 4).map(td => td.textContent).concat([r.lastElementChild.textContent]).join(' | '))",
        )
        .await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    let has = |needle: &str| rows.iter().any(|r| r.starts_with(needle));
    for needle in [
        "ann | device.create | lab-rtr-9",
        "ann | user.add | olga",
        "olga | login |",
        "olga | bulk.start |",
        "olga | logout |",
    ] {
        assert!(has(needle), "{needle} in {rows:#?}");
    }
    assert!(
        rows.iter()
            .filter(|r| r.starts_with("olga | bulk.start"))
            .all(|r| r.ends_with("127.0.0.1")),
        "{rows:#?}"
    );
    assert!(!rows.iter().any(|r| r.contains("olga-secret-pw")));
    session.close().await;
}
