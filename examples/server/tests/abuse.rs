//! The web app under abuse, through `tower::ServiceExt::oneshot` (issue 12, item 7): login
//! throttling per user name and per client address, anonymous sessions that cannot push out
//! logged-in ones, the absolute session lifetime, the cap of event streams per session,
//! streams that end with their session, and `500`/`503` answers that carry an error id
//! instead of the internal error.
//!
//! A router driven by `oneshot` has no TCP peer: the tests that need a client address put
//! `ConnectInfo<SocketAddr>` into the request themselves, as `serve` does.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use common::*;
use futures_util::StreamExt;
use netauto_core::retention::RetentionConfig;
use netauto_core::runtime::RunnerConfig;
use netauto_core::testing::capture::Capture;
use netauto_core::{Error, MockRunStore, NewRun, RunId};
use netauto_server::{App, AppParts, WebLimits};
use serde_json::Value;

fn limits(f: impl FnOnce(&mut WebLimits)) -> WebLimits {
    let mut l = WebLimits::default();
    f(&mut l);
    l
}

/// The test app with other limits.
async fn app_with(l: WebLimits) -> (TestApp, Router) {
    let t = test_app().await;
    let app = t.app.clone().with_limits(&l);
    let router = app.router();
    (t, router)
}

/// `POST /login` from the anonymous session `anon`, from `peer` if given.
async fn attempt(
    router: &Router,
    anon: &Session,
    user: &str,
    password: &str,
    peer: Option<&str>,
) -> Response<Body> {
    let form = format!(
        "username={user}&password={}&csrf={}",
        password.replace(' ', "+"),
        anon.csrf
    );
    let mut req = anon.post_form("/login", &form);
    if let Some(ip) = peer {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 41_000)));
    }
    send(router, req).await
}

fn retry_after(res: &Response<Body>) -> Option<u64> {
    res.headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[tokio::test]
async fn the_sixth_wrong_login_is_429_with_retry_after() {
    let t = test_app().await;
    let anon = login_form(&t.router).await;
    for i in 1..=5 {
        let res = attempt(&t.router, &anon, USER, "wrong", None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let res = attempt(&t.router, &anon, USER, "wrong", None).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&res), Some(1));
    let html = body_text(res).await;
    assert!(html.contains("Too many failed logins"), "{html}");
    assert!(
        html.contains("name=\"csrf\""),
        "the form stays usable: {html}"
    );
}

#[tokio::test]
async fn a_throttled_correct_password_waits_for_the_backoff_and_success_resets_it() {
    let t = test_app().await;
    let anon = login_form(&t.router).await;
    for _ in 0..5 {
        attempt(&t.router, &anon, USER, "wrong", None).await;
    }
    let res = attempt(&t.router, &anon, USER, PASSWORD, None).await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "not even the right password gets through a backoff"
    );
    let wait = retry_after(&res).unwrap();
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 100)).await;
    let res = attempt(&t.router, &anon, USER, PASSWORD, None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "after the backoff");

    // The success forgot the failures: five more are answered normally.
    let anon = login_form(&t.router).await;
    for i in 1..=5 {
        let res = attempt(&t.router, &anon, USER, "wrong", None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
}

#[tokio::test]
async fn one_address_is_throttled_across_user_names() {
    let t = test_app().await;
    let anon = login_form(&t.router).await;
    let attacker = "198.51.100.7";
    for i in 0..5 {
        let res = attempt(&t.router, &anon, &format!("guess{i}"), "pw", Some(attacker)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = attempt(&t.router, &anon, USER, PASSWORD, Some(attacker)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "a sixth name");
    assert!(retry_after(&res).is_some());
    // The user is not locked out from elsewhere.
    let res = attempt(&t.router, &anon, USER, PASSWORD, Some("203.0.113.9")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn failed_logins_are_logged_with_user_and_address_but_not_the_password() {
    let capture = Capture::install_scoped();
    let t = test_app().await;
    let anon = login_form(&t.router).await;
    attempt(&t.router, &anon, USER, "hunter2-secret", Some("192.0.2.44")).await;
    let events = capture.capture().events();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.field("message") == Some("failed login"))
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert!(failed[0].field("user").unwrap().contains(USER));
    assert_eq!(failed[0].field("client"), Some("192.0.2.44"));
    assert!(
        !format!("{events:?}").contains("hunter2-secret"),
        "{events:?}"
    );
}

#[tokio::test]
async fn anonymous_sessions_never_evict_logged_in_ones() {
    // The default caps: 10,000 of each kind.
    let t = test_app().await;
    let a = login(&t.router).await;
    let b = login(&t.router).await;
    for _ in 0..10_100 {
        let res = send(
            &t.router,
            Request::get("/login").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    for s in [&a, &b] {
        assert_eq!(
            send(&t.router, s.get("/devices")).await.status(),
            StatusCode::OK,
            "a flood of login forms logged a user out"
        );
    }
    // A small anonymous cap holds too, without touching logins.
    let (_t, router) = app_with(limits(|l| {
        l.max_sessions = 2;
        l.max_anonymous_sessions = 3;
    }))
    .await;
    let a = login(&router).await;
    for _ in 0..50 {
        login_form(&router).await;
    }
    assert_eq!(
        send(&router, a.get("/devices")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime_however_active() {
    let (_t, router) = app_with(limits(|l| {
        l.session_lifetime = Duration::from_millis(1500);
    }))
    .await;
    let s = login(&router).await;
    let t0 = Instant::now();
    let mut ended = None;
    while t0.elapsed() < Duration::from_secs(5) {
        let res = send(&router, s.get("/devices")).await;
        if res.status() == StatusCode::SEE_OTHER {
            ended = Some(t0.elapsed());
            break;
        }
        assert_eq!(res.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended = ended.expect("a session in use for 5 s outlived its 1.5 s lifetime");
    assert!(ended >= Duration::from_millis(1300), "{ended:?}");
}

/// A run that stays `running`: its event stream stays open.
async fn running_run(t: &TestApp) -> RunId {
    let run = t
        .store
        .create_run(
            NewRun {
                device_id: t.devices[0],
                command: "show tech".into(),
                requested_by: USER.into(),
                bulk_ref: None,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    run.id
}

/// Reads a body until it ends; `None` if it does not within `within`.
async fn ends_within(body: Body, within: Duration) -> Option<String> {
    let mut body = body.into_data_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Some(Err(_)) | None) => return Some(text),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn a_stream_ends_at_the_session_lifetime() {
    let (t, router) = app_with(limits(|l| {
        l.session_lifetime = Duration::from_secs(1);
    }))
    .await;
    let run = running_run(&t).await;
    let s = login(&router).await;
    let res = send(&router, s.get(&format!("/runs/{run}/events"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let t0 = Instant::now();
    ends_within(res.into_body(), Duration::from_secs(4))
        .await
        .expect("the stream outlived its session");
    assert!(t0.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn event_streams_per_session_are_capped() {
    let (t, router) = app_with(limits(|l| l.streams_per_session = 3)).await;
    let run = running_run(&t).await;
    let s = login(&router).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let res = send(&router, s.get(&format!("/runs/{run}/events"))).await;
        assert_eq!(res.status(), StatusCode::OK);
        open.push(res);
    }
    let res = send(&router, s.get(&format!("/runs/{run}/events"))).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&res).is_some());
    // Another session has its own allowance.
    let other = login(&router).await;
    let res = send(&router, other.get(&format!("/runs/{run}/events"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    // A closed stream frees its place.
    drop(open.pop());
    let res = send(&router, s.get(&format!("/runs/{run}/events"))).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_ends_the_sessions_bulk_and_run_streams() {
    let t = test_app().await;
    let run = running_run(&t).await;
    let s = login(&t.router).await;
    // A bulk nobody runs (the runner is not started): its stream would stay open.
    let form = format!(
        "csrf={}&command=show+clock{}",
        s.csrf,
        ids_form(&t.devices[..1])
    );
    let res = send(&t.router, s.post_form("/bulk", &form)).await;
    let to = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let bulk = send(&t.router, s.get(&format!("{to}/events"))).await;
    assert_eq!(bulk.status(), StatusCode::OK);
    let mut bulk = bulk.into_body().into_data_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), bulk.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"event: snapshot"));
    let run = send(&t.router, s.get(&format!("/runs/{run}/events"))).await;
    assert_eq!(run.status(), StatusCode::OK);
    let other = login(&t.router).await;
    let kept = send(&t.router, other.get(&format!("{to}/events"))).await;

    let res = send(
        &t.router,
        s.post_form("/logout", &format!("csrf={}", s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (bulk, run) = tokio::join!(
        ends_within(Body::from_stream(bulk), Duration::from_secs(2)),
        ends_within(run.into_body(), Duration::from_secs(2))
    );
    bulk.expect("the bulk stream outlived the logout");
    run.expect("the run stream outlived the logout");
    assert!(
        ends_within(kept.into_body(), Duration::from_millis(300))
            .await
            .is_none(),
        "another session's stream goes on"
    );
}

#[tokio::test]
async fn a_long_run_streams_page_by_page_in_order_to_its_end() {
    let t = test_app().await;
    let run = running_run(&t).await;
    for i in 0..100 {
        t.store
            .append_chunk(
                run,
                netauto_core::OutputStream::Stdout,
                format!("line {i}\n").as_bytes(),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
    }
    t.store
        .finish_run(
            run,
            netauto_core::RunFinish::new(netauto_core::RunStatus::Ok).with_exit_status(0),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let s = login(&t.router).await;
    for from in [0u64, 7, 99, 100] {
        let res = send(&t.router, s.get(&format!("/runs/{run}/events?from={from}"))).await;
        let text = ends_within(res.into_body(), Duration::from_secs(5))
            .await
            .expect("a finished run's stream ends");
        let seqs: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["seq"].as_u64())
            .collect();
        assert_eq!(seqs, (from..100).collect::<Vec<_>>(), "from={from}");
        assert!(text.ends_with("\n\n") && text.contains("event: finished"));
        assert_eq!(text.matches("event: finished").count(), 1);
    }
}

/// An app whose store fails every `run` read with `error`.
async fn failing_app(error: fn() -> Error) -> Router {
    let db = netauto_sqlx::Database::connect("sqlite::memory:")
        .await
        .unwrap();
    let mut store = MockRunStore::new();
    store.expect_list_devices().returning(|| Ok(Vec::new()));
    store.expect_run().returning(move |_| Err(error()));
    let app = App::new(AppParts {
        store: Arc::new(store),
        queue: db.queue(),
        progress: db.progress(),
        client: Arc::new(fake_client()),
        retention: RetentionConfig::default(),
        users: cheap_users(),
        runner: RunnerConfig::default(),
        secure_cookies: false,
        exec_limits: netauto_core::ExecLimits::default(),
        devices_per_job: netauto_core::bulk::DEFAULT_DEVICE_CONCURRENCY,
    })
    .unwrap();
    app.router()
}

/// 16 lowercase hex characters after `prefix` in `text`.
fn error_id_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        + prefix.len();
    let id = &text[at..at + 16];
    assert!(
        id.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{id:?} in {text}"
    );
    id
}

#[tokio::test]
async fn internal_errors_answer_an_error_id_not_the_internal_text() {
    let capture = Capture::install_scoped();
    let secret = "no such table: runs (/var/lib/netauto/secret.db)";
    let router =
        failing_app(|| Error::backend("no such table: runs (/var/lib/netauto/secret.db)")).await;
    let s = login(&router).await;

    let res = send(&router, s.get("/runs/7")).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let html = body_text(res).await;
    assert!(
        !html.contains("secret.db") && !html.contains("no such table"),
        "{html}"
    );
    let page_id = error_id_after(&html, "Error id ").to_owned();

    let res = send(&router, s.get("/api/runs/7")).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = body_text(res).await;
    assert!(
        !body.contains("secret.db") && !body.contains("no such table"),
        "{body}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "internal");
    let api_id = v["error_id"].as_str().unwrap().to_owned();
    assert_eq!(error_id_after(&api_id, ""), api_id);
    assert_ne!(page_id, api_id, "each error has its own id");

    // The log has the id with the internal error.
    for id in [&page_id, &api_id] {
        let logged = capture
            .capture()
            .events()
            .into_iter()
            .find(|e| e.field("error_id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("no log line with error_id {id}"));
        assert!(
            logged.field("error").unwrap().contains(secret),
            "{logged:?}"
        );
    }
}

#[tokio::test]
async fn unavailable_backends_answer_503_with_an_error_id_and_retry_after() {
    let router =
        failing_app(|| Error::unavailable("pool timed out: postgres://admin@db.internal/netauto"))
            .await;
    let s = login(&router).await;
    let res = send(&router, s.get("/runs/7")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&res).is_some());
    let html = body_text(res).await;
    assert!(
        !html.contains("db.internal") && !html.contains("pool"),
        "{html}"
    );
    error_id_after(&html, "Error id ");
    let res = send(&router, s.get("/api/runs/7")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(v["error"], "unavailable");
    assert!(!v.to_string().contains("db.internal"), "{v}");
    assert_eq!(v["error_id"].as_str().unwrap().len(), 16);
}
