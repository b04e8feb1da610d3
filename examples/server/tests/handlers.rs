//! Handler tests of every route through `tower::ServiceExt::oneshot`: authentication, CSRF,
//! validation (422), escaping, live streams and the JSON API.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use netauto_core::{BulkRef, JobFilter};
use serde_json::Value;

fn location(res: &axum::http::Response<Body>) -> String {
    res.headers()[header::LOCATION].to_str().unwrap().to_owned()
}

async fn job_count(t: &TestApp) -> usize {
    t.queue.list(&JobFilter::all()).await.unwrap().len()
}

#[tokio::test]
async fn every_page_and_api_route_requires_login() {
    let t = test_app().await;
    let bulk = BulkRef::generate();
    for uri in [
        "/devices".to_owned(),
        format!("/bulk/{bulk}"),
        format!("/bulk/{bulk}/events"),
        "/runs/1".to_owned(),
        "/runs/1/events".to_owned(),
        "/runs/1/raw".to_owned(),
        "/retention".to_owned(),
        "/bulks".to_owned(),
        "/search?q=abc".to_owned(),
        "/queues".to_owned(),
        "/tokens".to_owned(),
        "/devices/new".to_owned(),
        "/devices/import".to_owned(),
        format!("/devices/{}", t.devices[0]),
    ] {
        let res = send(&t.router, Request::get(&uri).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(location(&res), "/login", "{uri}");
    }
    for uri in [
        "/api/devices".to_owned(),
        "/api/bulks".to_owned(),
        "/api/search?q=abc".to_owned(),
        "/api/queues".to_owned(),
        "/api/tokens".to_owned(),
        format!("/api/bulk/{bulk}"),
        "/api/runs/1".to_owned(),
    ] {
        let res = send(&t.router, Request::get(&uri).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{uri}");
        let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
        assert_eq!(v["error"], "unauthenticated");
    }
    let res = send(
        &t.router,
        Request::post("/bulk")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "command=show+version&device_id={}",
                t.devices[0]
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = send(
        &t.router,
        Request::post("/api/bulk")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"device_ids":[1],"command":"show version"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(job_count(&t).await, 0);
    // A forged cookie is no session.
    let forged = Session {
        cookie: "netauto_session=00ff".into(),
        csrf: String::new(),
    };
    let res = send(&t.router, forged.get("/devices")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn login_checks_password_and_csrf_and_logout_ends_the_session() {
    let t = test_app().await;
    let anon = login_form(&t.router).await;
    let wrong = format!("username={USER}&password=nope&csrf={}", anon.csrf);
    let res = send(&t.router, anon.post_form("/login", &wrong)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        body_text(res)
            .await
            .contains("Wrong user name or password.")
    );

    let no_csrf = format!("username={USER}&password={}", PASSWORD.replace(' ', "+"));
    let res = send(&t.router, anon.post_form("/login", &no_csrf)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let s = login(&t.router).await;
    let res = send(&t.router, s.get("/")).await;
    assert_eq!(location(&res), "/devices");
    let res = send(&t.router, s.get("/login")).await;
    assert_eq!(
        location(&res),
        "/devices",
        "logged in users skip the login page"
    );

    let res = send(&t.router, s.post_form("/logout", "csrf=wrong")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        send(&t.router, s.get("/devices")).await.status(),
        StatusCode::OK
    );
    let res = send(
        &t.router,
        s.post_form("/logout", &format!("csrf={}", s.csrf)),
    )
    .await;
    assert_eq!(location(&res), "/login");
    let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert_eq!(
        send(&t.router, s.get("/devices")).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn session_cookie_is_http_only_and_same_site() {
    let t = test_app().await;
    let res = send(
        &t.router,
        Request::get("/login").body(Body::empty()).unwrap(),
    )
    .await;
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
}

#[tokio::test]
async fn devices_index_lists_devices_escaped_with_the_modal() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let res = send(&t.router, s.get("/devices")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body_text(res).await;
    assert!(
        html.contains("&lt;b&gt;bold&lt;/b&gt;"),
        "names are escaped"
    );
    assert!(!html.contains("<b>bold</b>"));
    assert!(html.contains("Run command on selected devices"));
    assert!(html.contains("id=\"select-all\""));
    assert!(html.contains("id=\"filter\""));
    assert_eq!(html.matches("name=\"device_id\"").count(), 4);
    assert!(html.contains(&format!("value=\"{}\"", t.devices[0])));
}

#[tokio::test]
async fn bulk_form_without_csrf_is_rejected_and_enqueues_nothing() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let form = format!("command=show+version{}", ids_form(&t.devices[..2]));
    let res = send(&t.router, s.post_form("/bulk", &form)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = send(&t.router, s.post_form("/bulk", &format!("csrf=bad&{form}"))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(job_count(&t).await, 0);
}

#[tokio::test]
async fn bulk_form_validation_errors_come_back_in_the_open_modal() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let ids = ids_form(&t.devices[..2]);
    for (form, message) in [
        (
            format!("csrf={}&command=+{ids}", s.csrf),
            "command is empty",
        ),
        (
            format!("csrf={}&command=show+version", s.csrf),
            "no devices given",
        ),
        (
            format!(
                "csrf={}&command=show+version{ids}&device_id=9999&device_id=8888",
                s.csrf
            ),
            "unknown device ids: 9999, 8888",
        ),
        (
            format!("csrf={}&command=show%0Areload{ids}", s.csrf),
            "line break",
        ),
        (
            format!("csrf={}&command=show+version&device_id=abc", s.csrf),
            "not device ids: abc",
        ),
    ] {
        let res = send(&t.router, s.post_form("/bulk", &form)).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{form}");
        let html = body_text(res).await;
        assert!(html.contains("data-open=\"true\""), "the modal reopens");
        assert!(html.contains("id=\"bulk-error\""), "{form}");
        assert!(html.contains(message), "{message}: {html}");
    }
    // The command and the selection survive the round trip (escaped).
    let form = format!("csrf={}&command=%3Cscript%3Ex{ids}&device_id=777", s.csrf);
    let html = body_text(send(&t.router, s.post_form("/bulk", &form)).await).await;
    assert!(html.contains("value=\"&lt;script&gt;x\""), "{html}");
    assert_eq!(html.matches("checked").count(), 2);
    assert_eq!(job_count(&t).await, 0, "nothing enqueued");
}

#[tokio::test]
async fn bulk_form_enqueues_flashes_and_redirects_to_the_bulk_page() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let form = format!(
        "csrf={}&command=show+version{}",
        s.csrf,
        ids_form(&t.devices[..3])
    );
    let res = send(&t.router, s.post_form("/bulk", &form)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = location(&res);
    let bulk_ref = BulkRef::parse(to.strip_prefix("/bulk/").unwrap()).unwrap();
    let bulk = t.store.bulk(&bulk_ref).await.unwrap();
    assert_eq!(
        bulk.requested_by, USER,
        "requested_by is the logged-in user"
    );
    assert_eq!(bulk.counters.total, 3);
    assert!(job_count(&t).await >= 1);

    let html = body_text(send(&t.router, s.get(&to)).await).await;
    assert!(html.contains("Bulk started on 3 devices"));
    assert!(html.contains("show version"));
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"));
    assert_eq!(html.matches("status-pending").count(), 3);
    let again = body_text(send(&t.router, s.get(&to)).await).await;
    assert!(!again.contains("Bulk started"), "the flash shows once");
}

#[tokio::test]
async fn unknown_or_malformed_bulks_and_runs_are_404() {
    let t = test_app().await;
    let s = login(&t.router).await;
    for uri in [
        format!("/bulk/{}", BulkRef::generate()),
        "/bulk/not-a-ref".to_owned(),
        "/runs/424242".to_owned(),
        "/runs/abc".to_owned(),
        "/nowhere".to_owned(),
    ] {
        assert_eq!(
            send(&t.router, s.get(&uri)).await.status(),
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
    for uri in [
        format!("/api/bulk/{}", BulkRef::generate()),
        "/api/runs/424242".to_owned(),
    ] {
        let res = send(&t.router, s.get(&uri)).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{uri}");
        let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
        assert_eq!(v["error"], "not_found");
    }
}

#[tokio::test]
async fn a_finished_bulk_streams_its_snapshot_and_runs_show_escaped_output() {
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let form = format!(
        "csrf={}&command=echo+%3Cscript%3Ealert(1)%3C%2Fscript%3E{}",
        s.csrf,
        ids_form(&t.devices)
    );
    let res = send(&t.router, s.post_form("/bulk", &form)).await;
    let to = location(&res);
    let bulk_ref = BulkRef::parse(to.strip_prefix("/bulk/").unwrap()).unwrap();
    let bulk = wait_bulk(&t.store, &bulk_ref).await;
    assert_eq!((bulk.counters.ok, bulk.counters.failed), (3, 1));

    let html = body_text(send(&t.router, s.get(&to)).await).await;
    assert!(
        html.contains("Finished: 3 ok, 1 failed of 4"),
        "summary banner"
    );
    assert!(
        html.contains("status-error"),
        "the failed device shows its status"
    );

    let events = body_text(send(&t.router, s.get(&format!("{to}/events"))).await).await;
    assert!(events.starts_with("event: snapshot\n"), "{events}");
    assert!(events.contains("\"finished\":true"));
    assert_eq!(
        events.matches("event:").count(),
        1,
        "a finished bulk ends after the snapshot"
    );

    let run_id = bulk.outcomes[&t.devices[0]].run_id.unwrap();
    let html = body_text(send(&t.router, s.get(&format!("/runs/{run_id}"))).await).await;
    assert!(
        html.contains("r1: echo &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("History of r1"));
    assert!(html.contains("data-live=\"false\""));

    let events =
        body_text(send(&t.router, s.get(&format!("/runs/{run_id}/events?from=0"))).await).await;
    assert!(events.starts_with("event: chunk\n"), "{events}");
    assert!(events.contains("event: finished"));
    let events =
        body_text(send(&t.router, s.get(&format!("/runs/{run_id}/events?from=1"))).await).await;
    assert!(
        !events.contains("event: chunk"),
        "from skips what the page has: {events}"
    );

    let res = send(&t.router, s.get(&format!("/runs/{run_id}/raw"))).await;
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        body_text(res).await,
        "r1: echo <script>alert(1)</script>\nline two\n"
    );

    let html = body_text(send(&t.router, s.get("/devices")).await).await;
    assert_eq!(html.matches("status-ok").count(), 3, "last run per device");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_live_bulk_stream_follows_progress_to_the_summary() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let form = format!(
        "csrf={}&command=show+clock{}",
        s.csrf,
        ids_form(&t.devices[..2])
    );
    let to = location(&send(&t.router, s.post_form("/bulk", &form)).await);
    // Subscribe before anything runs, then start the runner.
    let res = send(&t.router, s.get(&format!("{to}/events"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let handle = t.app.runner().clone().start();
    let events = tokio::time::timeout(std::time::Duration::from_secs(20), body_text(res))
        .await
        .expect("the stream ends after the summary");
    assert!(events.starts_with("event: snapshot\n"));
    assert_eq!(events.matches("event: progress").count(), 2, "{events}");
    assert!(events.contains("event: summary\ndata: {\"cancelled\":0,\"duration_ms\""));
    assert!(events.contains("\"ok\":2"));
    handle.shutdown().await;
}

#[tokio::test]
async fn api_lists_devices_and_reads_bulks_and_runs() {
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let v: Value =
        serde_json::from_str(&body_text(send(&t.router, s.get("/api/devices")).await).await)
            .unwrap();
    assert_eq!(v["devices"].as_array().unwrap().len(), 4);
    assert_eq!(v["devices"][2]["name"], "<b>bold</b>");

    let body = format!(
        r#"{{"device_ids":[{},{}],"command":"show version"}}"#,
        t.devices[0], t.devices[1]
    );
    let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(v["devices"], 2);
    let bulk_ref = BulkRef::parse(v["bulk_ref"].as_str().unwrap()).unwrap();
    assert_eq!(v["url"], format!("/bulk/{bulk_ref}"));
    wait_bulk(&t.store, &bulk_ref).await;

    let v: Value = serde_json::from_str(
        &body_text(send(&t.router, s.get(&format!("/api/bulk/{bulk_ref}"))).await).await,
    )
    .unwrap();
    assert_eq!(v["requested_by"], USER);
    assert_eq!(v["counters"]["ok"], 2);
    let run_id = v["devices"][0]["run_id"].as_i64().unwrap();
    let v: Value = serde_json::from_str(
        &body_text(send(&t.router, s.get(&format!("/api/runs/{run_id}"))).await).await,
    )
    .unwrap();
    assert_eq!(v["run"]["status"], "ok");
    assert_eq!(v["output"][0]["text"], "r1: show version\nline two\n");
    assert_eq!(
        (v["next_seq"].as_u64(), v["more"].as_bool()),
        (Some(1), Some(false))
    );
    let v: Value = serde_json::from_str(
        &body_text(send(&t.router, s.get(&format!("/api/runs/{run_id}?from_seq=1"))).await).await,
    )
    .unwrap();
    assert_eq!(v["output"].as_array().unwrap().len(), 0);
    handle.shutdown().await;
}

#[tokio::test]
async fn api_bulk_rejects_missing_csrf_and_answers_422_naming_the_problem() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let good = format!(
        r#"{{"device_ids":[{}],"command":"show version"}}"#,
        t.devices[0]
    );
    let res = send(&t.router, s.post_json("/api/bulk", &good, None)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = send(&t.router, s.post_json("/api/bulk", &good, Some("nope"))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let unknown = format!(
        r#"{{"device_ids":[{},9999,8888],"command":"show version"}}"#,
        t.devices[0]
    );
    let res = send(&t.router, s.post_json("/api/bulk", &unknown, Some(&s.csrf))).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(v["kind"], "unknown_devices");
    assert_eq!(v["unknown_device_ids"], serde_json::json!([9999, 8888]));
    assert_eq!(v["message"], "unknown device ids: 9999, 8888");

    for (body, kind) in [
        (
            format!(r#"{{"device_ids":[{}],"command":"  "}}"#, t.devices[0]),
            "invalid_command",
        ),
        (
            r#"{"device_ids":[],"command":"show version"}"#.to_owned(),
            "no_devices",
        ),
    ] {
        let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
        assert_eq!(v["kind"], kind);
    }
    let res = send(
        &t.router,
        s.post_json("/api/bulk", r#"{"device_ids":"x"}"#, Some(&s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = send(
        &t.router,
        s.post_json("/api/bulk", "{not json", Some(&s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(job_count(&t).await, 0);
}

#[tokio::test]
async fn retention_page_shows_policy_next_slot_and_preview() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let res = send(&t.router, s.get("/retention")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body_text(res).await;
    assert!(html.contains("30 days"));
    assert!(html.contains("1.0 GiB"));
    assert!(html.contains("@daily"));
    assert!(html.contains("00:00:00 UTC"), "next slot of @daily");
    assert!(html.contains("No purge has run in this process"));
    assert!(html.contains("Nothing to delete."));
}

#[tokio::test]
async fn assets_are_served_by_the_app() {
    let t = test_app().await;
    for (uri, ty) in [
        ("/assets/app.css", "text/css"),
        ("/assets/app.js", "text/javascript"),
    ] {
        let res = send(&t.router, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(ty)
        );
    }
}

#[tokio::test]
async fn a_thousand_devices_index_and_bulk_page_stay_fast() {
    let t = test_app().await;
    let mut ids = Vec::new();
    for i in 0..1000 {
        let d = t
            .store
            .create_device(netauto_core::NewDevice::new(
                format!("sw-{i:04}"),
                "10.0.0.1",
                "arista_eos",
                "admin",
            ))
            .await
            .unwrap();
        ids.push(d.id);
    }
    let s = login(&t.router).await;
    let started = std::time::Instant::now();
    let res = send(&t.router, s.get("/devices")).await;
    let html = body_text(res).await;
    let index = started.elapsed();
    assert_eq!(html.matches("name=\"device_id\"").count(), 1004);

    let form = format!("csrf={}&command=show+version{}", s.csrf, ids_form(&ids));
    let to = location(&send(&t.router, s.post_form("/bulk", &form)).await);
    let started = std::time::Instant::now();
    let html = body_text(send(&t.router, s.get(&to)).await).await;
    let bulk = started.elapsed();
    assert!(html.contains("Bulk started on 1000 devices"));
    assert_eq!(html.matches("status-pending").count(), 1000);
    println!("1000 devices: index {index:?}, bulk page {bulk:?}");
    assert!(
        index < std::time::Duration::from_secs(3),
        "index took {index:?}"
    );
    assert!(
        bulk < std::time::Duration::from_secs(3),
        "bulk page took {bulk:?}"
    );
}

#[tokio::test]
async fn a_quiet_bulk_stream_resyncs_events_nobody_published() {
    let t = test_app().await;
    let app = t
        .app
        .clone()
        .with_live_resync(std::time::Duration::from_millis(200));
    let router = app.router();
    let s = login(&router).await;
    let form = format!(
        "csrf={}&command=show+clock{}",
        s.csrf,
        ids_form(&t.devices[..2])
    );
    let to = location(&send(&router, s.post_form("/bulk", &form)).await);
    let bulk_ref = BulkRef::parse(to.strip_prefix("/bulk/").unwrap()).unwrap();
    let res = send(&router, s.get(&format!("{to}/events"))).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Both outcomes are stored but never published (as when the worker recording them is
    // killed before it publishes): no runner runs, nothing reaches the progress feed.
    for &device_id in &t.devices[..2] {
        t.store
            .record_outcome(
                &bulk_ref,
                netauto_core::DeviceOutcome {
                    device_id,
                    run_id: None,
                    status: netauto_core::RunStatus::Error,
                    error_kind: Some("auth".to_owned()),
                    recorded_at: chrono::Utc::now(),
                    truncated: false,
                },
            )
            .await
            .unwrap();
    }

    let events = tokio::time::timeout(std::time::Duration::from_secs(10), body_text(res))
        .await
        .expect("a quiet stream re-reads the bulk, finds it finished and ends");
    assert_eq!(events.matches("event: snapshot").count(), 2, "{events}");
    assert_eq!(events.matches("event: progress").count(), 0, "{events}");
    let last = events.rsplit("event: snapshot\n").next().unwrap();
    assert!(last.contains("\"finished\":true"), "{events}");
    assert!(last.contains("\"failed\":2"), "{events}");
}

/// Bulk history: `/api/bulks` newest first with filters and a `next` cursor that pages
/// through the rest; a bad filter is a 400 naming it; `/bulks` shows the same with a link to
/// older bulks that keeps the filters (escaped).
#[tokio::test]
async fn bulk_history_lists_filters_and_pages_newest_first() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let mut refs = Vec::new();
    for i in 0..5 {
        let command = if i % 2 == 0 {
            format!("show version {i}")
        } else {
            format!("show <clock> {i}")
        };
        let body = format!(
            r#"{{"device_ids":[{}],"command":"{command}"}}"#,
            t.devices[0]
        );
        let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
        refs.push(v["bulk_ref"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let get = |uri: String| {
        let router = t.router.clone();
        let req = s.get(&uri);
        async move { send(&router, req).await }
    };
    let v: Value = serde_json::from_str(&body_text(get("/api/bulks".into()).await).await).unwrap();
    let listed: Vec<&str> = v["bulks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bulk_ref"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = refs.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert_eq!(v["bulks"][0]["status"], "running");
    assert_eq!(v["bulks"][0]["requested_by"], USER);
    assert_eq!(v["next"], Value::Null);

    // Pages of two.
    let mut paged = Vec::new();
    let mut uri = "/api/bulks?limit=2&command=VERSION".to_owned();
    loop {
        let v: Value = serde_json::from_str(&body_text(get(uri.clone()).await).await).unwrap();
        for b in v["bulks"].as_array().unwrap() {
            paged.push(b["bulk_ref"].as_str().unwrap().to_owned());
        }
        match v["next"].as_str() {
            Some(next) => uri = format!("/api/bulks?limit=2&command=VERSION&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged, [refs[4].clone(), refs[2].clone(), refs[0].clone()]);

    for (query, field) in [
        ("status=done", "status"),
        ("since=yesterday", "since"),
        ("after=x", "after"),
    ] {
        let res = get(format!("/api/bulks?{query}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(body_text(res).await.contains(field), "{query}");
    }

    let html = body_text(get("/bulks?command=%3Cclock%3E&limit=1".into()).await).await;
    assert!(html.contains("show &lt;clock&gt; 3"), "{html}");
    assert!(!html.contains("show version"), "filtered");
    assert!(
        html.contains("id=\"older\" href=\"/bulks?command=%3Cclock%3E&amp;after="),
        "{html}"
    );
}

/// "Run again": the API and the bulk page's buttons make a new bulk linked to the first; both
/// pages show the link; with no failed device the API answers 422 and the page says why.
#[tokio::test]
async fn a_bulk_runs_again_from_the_api_and_the_page_linked_to_its_parent() {
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let body = format!(
        r#"{{"device_ids":[{},{}],"command":"show version"}}"#,
        t.devices[0], t.devices[1]
    );
    let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    let parent = BulkRef::parse(v["bulk_ref"].as_str().unwrap()).unwrap();
    wait_bulk(&t.store, &parent).await;

    let uri = format!("/api/bulk/{parent}/rerun");
    let res = send(
        &t.router,
        s.post_json(&uri, r#"{"devices":"failed"}"#, Some(&s.csrf)),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "all ok: nothing failed"
    );
    let res = send(&t.router, s.post_json(&uri, r#"{"devices":"all"}"#, None)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "CSRF header required");
    let res = send(
        &t.router,
        s.post_json(&uri, r#"{"devices":"all"}"#, Some(&s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(v["devices"], 2);
    assert_eq!(v["parent"], parent.as_str());
    let child = BulkRef::parse(v["bulk_ref"].as_str().unwrap()).unwrap();
    let v: Value = serde_json::from_str(
        &body_text(send(&t.router, s.get(&format!("/api/bulk/{child}"))).await).await,
    )
    .unwrap();
    assert_eq!(v["parent"], parent.as_str());

    // The page's button: a form POST, redirected to the new bulk.
    let res = send(
        &t.router,
        s.post_form(
            &format!("/bulk/{parent}/rerun"),
            &format!("csrf={}&devices=all", s.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let second = location(&res);
    assert!(
        second.starts_with("/bulk/") && second != format!("/bulk/{child}"),
        "{second}"
    );
    let html = body_text(send(&t.router, s.get(&format!("/bulk/{parent}"))).await).await;
    assert!(html.contains("id=\"reruns\""), "{html}");
    assert!(
        html.contains(&format!("/bulk/{child}")),
        "the parent links its re-runs"
    );
    assert!(html.contains("id=\"rerun-failed\""));
    let html = body_text(send(&t.router, s.get(&format!("/bulk/{child}"))).await).await;
    assert!(html.contains("id=\"parent\""), "{html}");
    assert!(
        html.contains(&format!("/bulk/{parent}")),
        "the re-run links its parent"
    );
    wait_bulk(&t.store, &child).await;
    handle.shutdown().await;
}

/// Diff: the run page links the diff with the previous run; API and page compare two runs'
/// output; a run with no previous one says so (404 in the API).
#[tokio::test]
async fn runs_diff_against_the_previous_run_in_the_api_and_the_page() {
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let mut runs = Vec::new();
    for command in ["show version", "show version", "show clock"] {
        let body = format!(
            r#"{{"device_ids":[{}],"command":"{command}"}}"#,
            t.devices[0]
        );
        let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
        let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
        let bulk_ref = BulkRef::parse(v["bulk_ref"].as_str().unwrap()).unwrap();
        let bulk = wait_bulk(&t.store, &bulk_ref).await;
        runs.push(bulk.outcomes.values().next().unwrap().run_id.unwrap());
    }
    let v: Value = serde_json::from_str(
        &body_text(send(&t.router, s.get(&format!("/api/runs/{}/diff", runs[1]))).await).await,
    )
    .unwrap();
    assert_eq!(v["left"], runs[0].get());
    assert_eq!(v["right"], runs[1].get());
    assert_eq!(
        v["identical"], true,
        "the fake device answers the same twice: {v}"
    );
    let v: Value = serde_json::from_str(
        &body_text(
            send(
                &t.router,
                s.get(&format!("/api/runs/{}/diff/{}", runs[0], runs[2])),
            )
            .await,
        )
        .await,
    )
    .unwrap();
    assert_eq!(v["identical"], false);
    assert!(
        v["unified"].as_str().unwrap().contains("-r1: show version"),
        "{v}"
    );
    assert!(
        v["unified"].as_str().unwrap().contains("+r1: show clock"),
        "{v}"
    );
    let res = send(&t.router, s.get(&format!("/api/runs/{}/diff", runs[0]))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let html = body_text(send(&t.router, s.get(&format!("/runs/{}", runs[1]))).await).await;
    assert!(
        html.contains(&format!("href=\"/runs/{}/diff\"", runs[1])),
        "{html}"
    );
    let html = body_text(
        send(
            &t.router,
            s.get(&format!("/runs/{}/diff/{}", runs[0], runs[2])),
        )
        .await,
    )
    .await;
    assert!(html.contains("id=\"side-by-side\""), "{html}");
    assert!(html.contains("r1: show clock"), "{html}");
    let html = body_text(send(&t.router, s.get(&format!("/runs/{}/diff", runs[0]))).await).await;
    assert!(html.contains("id=\"no-previous\""), "{html}");
    handle.shutdown().await;
}

/// The fleet view: linked from the bulk page; the page and the API group the bulk's devices by
/// identical output.
#[tokio::test]
async fn the_fleet_view_groups_a_bulks_devices_by_identical_output() {
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let body = format!(
        r#"{{"device_ids":[{},{}],"command":"show version"}}"#,
        t.devices[0], t.devices[1]
    );
    let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    let bulk_ref = BulkRef::parse(v["bulk_ref"].as_str().unwrap()).unwrap();
    wait_bulk(&t.store, &bulk_ref).await;
    let html = body_text(send(&t.router, s.get(&format!("/bulk/{bulk_ref}"))).await).await;
    assert!(
        html.contains(&format!("href=\"/bulk/{bulk_ref}/fleet\"")),
        "{html}"
    );
    let v: Value = serde_json::from_str(
        &body_text(send(&t.router, s.get(&format!("/api/bulk/{bulk_ref}/fleet"))).await).await,
    )
    .unwrap();
    // The fake device prints its own name: two groups of one.
    assert_eq!(v["groups"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        v["summary"],
        "1 device identical, 1 device differs (1 other group)."
    );
    assert_eq!(v["groups"][0]["diff_against_largest"], "");
    assert!(
        v["groups"][1]["diff_against_largest"]
            .as_str()
            .unwrap()
            .contains("@@")
    );
    let html = body_text(send(&t.router, s.get(&format!("/bulk/{bulk_ref}/fleet"))).await).await;
    assert!(html.contains("id=\"fleet-summary\""), "{html}");
    assert!(html.contains("id=\"group-2\""), "{html}");
    let res = send(&t.router, s.get("/api/bulk/0123/fleet")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    handle.shutdown().await;
}

/// Search: the API and the page find stored output by a case-insensitive substring, show the
/// matching line escaped and highlighted, and refuse a short text or an unknown device.
#[tokio::test]
async fn search_finds_stored_output_escaped_in_the_api_and_the_page() {
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let body = format!(
        r#"{{"device_ids":[{}],"command":"show <b>Uplink</b> status"}}"#,
        t.devices[0]
    );
    let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    let bulk_ref = BulkRef::parse(v["bulk_ref"].as_str().unwrap()).unwrap();
    let bulk = wait_bulk(&t.store, &bulk_ref).await;
    let run = bulk.outcomes.values().next().unwrap().run_id.unwrap();

    let v: Value = serde_json::from_str(
        &body_text(send(&t.router, s.get("/api/search?q=%3Cb%3EUPLINK")).await).await,
    )
    .unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{v}");
    assert_eq!(runs[0]["run_id"], run.get());
    assert_eq!(runs[0]["device"], "r1");
    let line = &runs[0]["excerpts"][0]["lines"][0];
    assert_eq!(line["matched"], true, "{v}");
    assert!(
        line["text"].as_str().unwrap().contains("<b>Uplink</b>"),
        "{v}"
    );
    assert_eq!(v["next"], Value::Null);

    let res = send(&t.router, s.get("/api/search?q=ab")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(res).await.contains("at least 3 characters"));
    let res = send(&t.router, s.get("/api/search?q=uplink&device=nope")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_str(
        &body_text(send(&t.router, s.get("/api/search?q=uplink&device=r2")).await).await,
    )
    .unwrap();
    assert_eq!(
        v["runs"].as_array().unwrap().len(),
        0,
        "another device's runs: {v}"
    );

    let html = body_text(send(&t.router, s.get("/search?q=uplink")).await).await;
    assert!(html.contains("id=\"hits\""), "{html}");
    assert!(html.contains("<mark>Uplink</mark>"), "{html}");
    assert!(html.contains("&lt;b&gt;"), "output is escaped: {html}");
    assert!(!html.contains("<b>Uplink"), "{html}");
    assert!(html.contains(&format!("href=\"/runs/{run}\"")), "{html}");
    let html = body_text(send(&t.router, s.get("/search?q=no-such-text-anywhere")).await).await;
    assert!(html.contains("id=\"no-hits\""), "{html}");
    handle.shutdown().await;
}

/// Export: the bulk page links CSV, JSON and tar; the API streams them with a download
/// name; a bad format is 400, an unknown bulk 404.
#[tokio::test]
async fn a_bulk_exports_as_csv_json_and_tar() {
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let body = format!(
        r#"{{"device_ids":[{},{}],"command":"show version"}}"#,
        t.devices[0], t.devices[1]
    );
    let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    let bulk_ref = BulkRef::parse(v["bulk_ref"].as_str().unwrap()).unwrap();
    wait_bulk(&t.store, &bulk_ref).await;

    let html = body_text(send(&t.router, s.get(&format!("/bulk/{bulk_ref}"))).await).await;
    assert!(
        html.contains(&format!("href=\"/bulk/{bulk_ref}/export?format=tar\"")),
        "{html}"
    );
    let res = send(
        &t.router,
        s.get(&format!("/api/bulk/{bulk_ref}/export?format=csv")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        res.headers()[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"bulk-{bulk_ref}.csv\"").as_str()
    );
    let csv = body_text(res).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with("r1,"), "{csv}");
    assert!(lines[2].starts_with("r2,"), "{csv}");

    let res = send(
        &t.router,
        s.get(&format!("/bulk/{bulk_ref}/export?format=json")),
    )
    .await;
    let rows: Vec<Value> = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["status"], "ok");

    let res = send(
        &t.router,
        s.get(&format!("/api/bulk/{bulk_ref}/export?format=tar")),
    )
    .await;
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/x-tar");
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(bytes.len() % 512, 0);
    assert_eq!(
        &bytes[..bytes_name(&bulk_ref, "r1.txt").len()],
        bytes_name(&bulk_ref, "r1.txt").as_bytes()
    );
    assert!(
        bytes.windows(16).any(|w| w == b"r1: show version"),
        "the device output is in the archive"
    );

    let res = send(
        &t.router,
        s.get(&format!("/api/bulk/{bulk_ref}/export?format=zip")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = send(
        &t.router,
        s.get(&format!("/api/bulk/{}/export", BulkRef::generate())),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    handle.shutdown().await;
}

fn bytes_name(bulk_ref: &BulkRef, file: &str) -> String {
    format!("{bulk_ref}/{file}")
}

/// `/healthz` and `/metrics` need no session: health says only ok/down per part; metrics are
/// the Prometheus text format with the scrape-time job gauges.
#[tokio::test]
async fn healthz_and_metrics_answer_without_a_session() {
    let t = test_app().await;
    let res = send(
        &t.router,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"database": "ok", "runner": "not_started"})
    );
    let res = send(
        &t.router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = body_text(res).await;
    assert!(text.contains("# TYPE netauto_jobs gauge"), "{text}");
    assert!(text.contains("netauto_stored_bytes 0"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// Queues: counts per queue; a paused queue starts no job on this node's runner until
/// resumed; a failed job shows with its error and can be retried or discarded; the page
/// needs CSRF on its forms.
#[tokio::test]
async fn queues_pause_resume_and_job_actions() {
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let v: Value =
        serde_json::from_str(&body_text(send(&t.router, s.get("/api/queues")).await).await)
            .unwrap();
    let names: Vec<&str> = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bulk", "default", "retention"], "{v}");

    let res = send(
        &t.router,
        s.post_json("/api/queues/bulk/pause", "", Some(&s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = send(&t.router, s.post_json("/api/queues/bulk/pause", "", None)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "CSRF");
    let body = format!(
        r#"{{"device_ids":[{}],"command":"show version"}}"#,
        t.devices[0]
    );
    let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    let bulk_ref = BulkRef::parse(v["bulk_ref"].as_str().unwrap()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        t.store
            .bulk_state(&bulk_ref)
            .await
            .unwrap()
            .counters
            .pending,
        1,
        "a paused queue starts nothing"
    );
    let v: Value =
        serde_json::from_str(&body_text(send(&t.router, s.get("/api/queues")).await).await)
            .unwrap();
    assert!(v["queues"][0]["paused_at"].is_string(), "{v}");
    assert_eq!(v["queues"][0]["counts"]["available"], 1, "{v}");
    let html = body_text(send(&t.router, s.get("/queues")).await).await;
    assert!(html.contains(">paused</span>"), "{html}");
    let res = send(
        &t.router,
        s.post_json("/api/queues/bulk/resume", "", Some(&s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    wait_bulk(&t.store, &bulk_ref).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v: Value =
            serde_json::from_str(&body_text(send(&t.router, s.get("/api/queues")).await).await)
                .unwrap();
        if v["queues"][0]["completed_last_5m"] == 1 {
            assert_eq!(v["queues"][0]["completed_last_hour"], 1, "{v}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bulk job's completion is not counted: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A job of a worker nobody runs is discarded with its error, then retried or discarded.
    let job = match t
        .queue
        .enqueue(
            netauto_core::NewJob::new("default", "no-such-worker", serde_json::json!({})),
            chrono::Utc::now(),
        )
        .await
        .unwrap()
    {
        netauto_core::Enqueued::Inserted(j) => j,
        other => panic!("{other:?}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v: Value =
            serde_json::from_str(&body_text(send(&t.router, s.get("/api/queues")).await).await)
                .unwrap();
        if v["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == job.id.get())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure listed: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let html = body_text(send(&t.router, s.get("/queues")).await).await;
    assert!(html.contains("no-such-worker"), "{html}");
    let res = send(
        &t.router,
        s.post_form(&format!("/jobs/{}/retry", job.id), "csrf=wrong"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = send(
        &t.router,
        s.post_json(&format!("/api/jobs/{}/discard", job.id), "", Some(&s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "already discarded");
    let res = send(
        &t.router,
        s.post_json(&format!("/api/jobs/{}/retry", job.id), "", Some(&s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = send(
        &t.router,
        s.post_json(&format!("/api/jobs/{}/pause", job.id), "", Some(&s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "not a job action");
    handle.shutdown().await;
}

fn multipart(s: &Session, uri: &str, parts: &[(&str, Option<&str>, &str)]) -> Request<Body> {
    let boundary = "netauto-test-boundary-7d1f";
    let mut body = String::new();
    for (name, file, value) in parts {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(f) = file {
            body.push_str(&format!("; filename=\"{f}\"\r\nContent-Type: text/plain"));
        }
        body.push_str(&format!("\r\n\r\n{value}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    Request::post(uri)
        .header(header::COOKIE, &s.cookie)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap()
}

/// Devices in the UI: add (checked as the CLI checks), a device's page with its runs, edit
/// (a taken name refused), delete with confirmation; import a CSV file all or nothing with
/// the bad row's line shown. Every form needs CSRF.
#[tokio::test]
async fn devices_are_added_edited_deleted_and_imported_in_the_ui() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let form = |csrf: &str, name: &str, port: &str| {
        format!(
            "csrf={csrf}&name={name}&host=10.1.1.1&port={port}&platform=cisco_ios&username=ops&tags=core%2C+dc1"
        )
    };
    let res = send(
        &t.router,
        s.post_form("/devices/new", &form("wrong", "sw-9", "22")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = send(
        &t.router,
        s.post_form("/devices/new", &form(&s.csrf, "sw-9", "70000")),
    )
    .await;
    let html = body_text(res).await;
    assert!(
        html.contains("id=\"device-error\"") && html.contains("70000"),
        "{html}"
    );
    let res = send(
        &t.router,
        s.post_form("/devices/new", &form(&s.csrf, "r1", "22")),
    )
    .await;
    assert!(body_text(res).await.contains("already exists"));
    let res = send(
        &t.router,
        s.post_form("/devices/new", &form(&s.csrf, "sw-9", "2222")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = location(&res);
    let device = t
        .store
        .list_devices()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.name == "sw-9")
        .expect("added");
    assert_eq!(page, format!("/devices/{}", device.id));
    assert_eq!(
        (device.port, device.tags.clone()),
        (2222, vec!["core".to_owned(), "dc1".to_owned()])
    );
    let html = body_text(send(&t.router, s.get(&page)).await).await;
    assert!(
        html.contains("id=\"device-details\"") && html.contains("id=\"no-runs\""),
        "{html}"
    );

    let res = send(
        &t.router,
        s.post_form(&format!("{page}/edit"), &form(&s.csrf, "r2", "22")),
    )
    .await;
    assert!(
        body_text(res).await.contains("Not saved: a device named"),
        "a taken name"
    );
    let res = send(
        &t.router,
        s.post_form(&format!("{page}/edit"), &form(&s.csrf, "sw-10", "22")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(t.store.device(device.id).await.unwrap().name, "sw-10");

    let res = send(
        &t.router,
        s.post_form(&format!("{page}/delete"), &format!("csrf={}", s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(t.store.device(device.id).await.is_ok(), "not confirmed");
    let res = send(
        &t.router,
        s.post_form(
            &format!("{page}/delete"),
            &format!("csrf={}&confirm=yes", s.csrf),
        ),
    )
    .await;
    assert_eq!(location(&res), "/devices");
    assert!(t.store.device(device.id).await.is_err(), "deleted");

    // Import: one unknown platform imports nothing and names line 3; then a good file.
    let before = t.store.list_devices().await.unwrap().len();
    let bad =
        "name,host,platform,username\nimp-1,10.2.0.1,cisco_ios,ops\nimp-2,10.2.0.2,nope,ops\n";
    let res = send(
        &t.router,
        multipart(
            &s,
            "/devices/import",
            &[("csrf", None, &s.csrf), ("file", Some("inv.csv"), bad)],
        ),
    )
    .await;
    let html = body_text(res).await;
    assert!(
        html.contains("id=\"import-problems\"") && html.contains("line 3"),
        "{html}"
    );
    assert_eq!(
        t.store.list_devices().await.unwrap().len(),
        before,
        "nothing imported"
    );
    let res = send(
        &t.router,
        multipart(
            &s,
            "/devices/import",
            &[("csrf", None, "wrong"), ("file", Some("inv.csv"), bad)],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let good = "- {name: imp-1, host: 10.2.0.1, platform: cisco_ios, username: ops}\n- {name: imp-2, host: 10.2.0.2, platform: junos, username: ops}\n";
    let res = send(
        &t.router,
        multipart(
            &s,
            "/devices/import",
            &[
                ("csrf", None, &s.csrf),
                ("format", None, ""),
                ("file", Some("inv.yaml"), good),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(t.store.list_devices().await.unwrap().len(), before + 2);
    let html = body_text(send(&t.router, s.get("/devices")).await).await;
    assert!(html.contains("Imported 2 devices from inv.yaml"), "{html}");
}

/// API tokens: created on /tokens (the secret shown once, only its hash stored), a script's
/// `Authorization: Bearer` creates a bulk through `/api/bulk` without a session or CSRF;
/// pages do not take tokens; a revoked or unknown token is 401.
#[tokio::test]
async fn a_bearer_token_creates_a_bulk_until_it_is_revoked() {
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let res = send(&t.router, s.post_form("/tokens", "csrf=wrong&name=ci")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = send(
        &t.router,
        s.post_form("/tokens", &format!("csrf={}&name=ci&days=0", s.csrf)),
    )
    .await;
    assert!(
        body_text(res).await.contains("id=\"token-error\""),
        "0 days refused"
    );
    let res = send(
        &t.router,
        s.post_form(
            "/tokens",
            &format!("csrf={}&name=ci-pipeline&days=30", s.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let html = body_text(res).await;
    let at = html
        .find("<pre id=\"token-secret\">")
        .expect("the secret is shown")
        + 23;
    let secret = html[at..at + html[at..].find('<').unwrap()].to_owned();
    assert!(
        secret.starts_with("netauto_") && secret.len() == 8 + 64,
        "{secret}"
    );
    let html = body_text(send(&t.router, s.get("/tokens")).await).await;
    assert!(
        html.contains("ci-pipeline") && !html.contains(&secret),
        "shown once: {html}"
    );

    let bearer = |uri: &str, body: Option<&str>, token: &str| {
        let b = match body {
            Some(_) => Request::post(uri).header(header::CONTENT_TYPE, "application/json"),
            None => Request::get(uri),
        };
        b.header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(body.unwrap_or_default().to_owned()))
            .unwrap()
    };
    let body = format!(
        r#"{{"device_ids":[{}],"command":"show version"}}"#,
        t.devices[0]
    );
    let res = send(&t.router, bearer("/api/bulk", Some(&body), &secret)).await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "no CSRF needed with a token"
    );
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    let bulk_ref = BulkRef::parse(v["bulk_ref"].as_str().unwrap()).unwrap();
    let bulk = wait_bulk(&t.store, &bulk_ref).await;
    assert_eq!(
        bulk.requested_by,
        common::USER,
        "the token acts as its user"
    );
    let v: Value = serde_json::from_str(
        &body_text(send(&t.router, bearer("/api/tokens", None, &secret)).await).await,
    )
    .unwrap();
    assert_eq!(v["tokens"][0]["status"], "active");
    assert!(v["tokens"][0]["last_used_at"].is_string(), "{v}");
    let res = send(&t.router, bearer("/devices", None, &secret)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "pages need a session");
    let res = send(&t.router, bearer("/api/devices", None, "netauto_0000")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let id = v["tokens"][0]["id"].as_i64().unwrap();
    let res = send(
        &t.router,
        s.post_form(&format!("/tokens/{id}/revoke"), &format!("csrf={}", s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = send(&t.router, bearer("/api/devices", None, &secret)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "revoked");
    handle.shutdown().await;
}
