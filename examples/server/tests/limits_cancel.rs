//! Issue 12 in the web app: per-bulk deadline and output cap from the modal and the API,
//! cancel of bulks and runs (buttons and API), the truncated flag everywhere, and output
//! whose characters were split across chunks rendered whole in the page, `/raw`, the API
//! and the event stream.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;
use common::{TestApp, body_text, ids_form, login, send, test_app, test_app_with, wait_bulk};
use netauto_core::testing::{Reply, ScriptedClient, Step, exit, out};
use netauto_core::{BulkRef, ExecLimits, NewRun, OutputEvent, OutputStream, RunId, RunStatus};
use serde_json::Value;

/// `r1` prints `started` then hangs; `r2` prints `y` lines forever; the others answer at
/// once. A multi-byte character is split across two reads, 300 ms apart, on `show ports`.
fn misbehaving() -> ScriptedClient {
    ScriptedClient::from_fn(|device, command| match (device.name.as_str(), command) {
        (_, "show ports") => Reply::Steps(vec![
            Step::Emit(out("1/1 ✓ up\n1/2 ")),
            Step::Emit(Ok(OutputEvent::Stdout(Bytes::from_static(&[0xE2, 0x9C])))),
            Step::Sleep(Duration::from_millis(300)),
            Step::Emit(Ok(OutputEvent::Stdout(Bytes::from_static(&[0x97])))),
            Step::Emit(out(" down\n")),
            Step::Emit(exit(0)),
        ]),
        ("r1", _) => Reply::silent_after("started\n"),
        ("r2", _) => Reply::endless(&"y\n".repeat(4096)),
        _ => Reply::ok("ok\n"),
    })
}

async fn app(limits: ExecLimits) -> TestApp {
    test_app_with(Arc::new(misbehaving()), limits).await
}

fn location(res: &axum::http::Response<Body>) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

async fn json(res: axum::http::Response<Body>) -> Value {
    serde_json::from_str(&body_text(res).await).unwrap()
}

#[tokio::test]
async fn the_modal_and_the_api_set_a_bulks_deadline_and_cap() {
    let t = app(ExecLimits::default()).await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let page = body_text(send(&t.router, s.get("/devices")).await).await;
    assert!(
        page.contains("name=\"timeout\"") && page.contains("5 min 0 s (default)"),
        "the modal shows the default deadline"
    );

    // r1 hangs: the bulk's 1 s deadline ends it.
    let form = format!(
        "csrf={}&command=show+clock&timeout=1s&max_output=&{}",
        s.csrf,
        ids_form(&t.devices[..1])
    );
    let res = send(&t.router, s.post_form("/bulk", &form)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = location(&res);
    let bulk_ref = BulkRef::parse(to.strip_prefix("/bulk/").unwrap()).unwrap();
    let bulk = tokio::time::timeout(Duration::from_secs(10), wait_bulk(&t.store, &bulk_ref))
        .await
        .expect("the deadline ends the hanging device");
    assert_eq!(bulk.outcomes[&t.devices[0]].status, RunStatus::Timeout);
    let html = body_text(send(&t.router, s.get(&to)).await).await;
    assert!(html.contains("Deadline"), "{html}");

    // A bad value comes back in the open modal, nothing enqueued.
    let form = format!(
        "csrf={}&command=show+clock&timeout=soon{}",
        s.csrf,
        ids_form(&t.devices[..1])
    );
    let res = send(&t.router, s.post_form("/bulk", &form)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = body_text(res).await;
    assert!(html.contains("Deadline &quot;soon&quot;"), "{html}");

    // The API: r2 prints forever, its 64 KiB cap stops it; the bulk says so.
    let body = format!(
        "{{\"device_ids\": [{}], \"command\": \"yes\", \"max_output\": 65536, \"timeout_secs\": 30}}",
        t.devices[1]
    );
    let res = send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created = json(res).await;
    let bulk_ref = BulkRef::parse(created["bulk_ref"].as_str().unwrap()).unwrap();
    let bulk = wait_bulk(&t.store, &bulk_ref).await;
    let outcome = &bulk.outcomes[&t.devices[1]];
    assert!(outcome.truncated);
    let api = json(send(&t.router, s.get(&format!("/api/bulk/{bulk_ref}"))).await).await;
    assert_eq!(api["max_output"], 65536);
    assert_eq!(api["timeout_secs"], 30.0);
    assert_eq!(api["devices"][0]["truncated"], true);
    let run_id = outcome.run_id.unwrap();
    let run = json(send(&t.router, s.get(&format!("/api/runs/{run_id}"))).await).await;
    assert_eq!(run["run"]["truncated"], true);
    assert_eq!(run["run"]["bytes"], 65536);
    assert_eq!(run["run"]["error_kind"], "output_cap");
    let html = body_text(send(&t.router, s.get(&format!("/runs/{run_id}"))).await).await;
    assert!(
        html.contains("run-truncated") && html.contains("output cap"),
        "run page says truncated"
    );
    let html = body_text(send(&t.router, s.get(&format!("/bulk/{bulk_ref}"))).await).await;
    assert!(
        html.contains("badge truncated"),
        "bulk table says truncated"
    );

    let res = send(
        &t.router,
        s.post_json(
            "/api/bulk",
            &format!(
                "{{\"device_ids\": [{}], \"command\": \"x\", \"timeout_secs\": 0.001}}",
                t.devices[0]
            ),
            Some(&s.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(res).await["field"], "timeout");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_bulk_is_cancelled_from_its_page_and_the_api() {
    let t = app(ExecLimits::default()).await;
    let s = login(&t.router).await;

    // No runner yet: the cancel records every device at once; the live stream ends.
    let form = format!("csrf={}&command=show+clock{}", s.csrf, ids_form(&t.devices));
    let to = location(&send(&t.router, s.post_form("/bulk", &form)).await);
    let html = body_text(send(&t.router, s.get(&to)).await).await;
    assert!(
        html.contains("Cancel bulk"),
        "a running bulk has a cancel button"
    );
    let events = send(&t.router, s.get(&format!("{to}/events"))).await;
    // Without the CSRF token: refused.
    let res = send(&t.router, s.post_form(&format!("{to}/cancel"), "csrf=nope")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = send(
        &t.router,
        s.post_form(&format!("{to}/cancel"), &format!("csrf={}", s.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = body_text(send(&t.router, s.get(&to)).await).await;
    assert!(
        html.contains("Cancelled: 4 devices that had not started."),
        "{html}"
    );
    assert!(!html.contains("Cancel bulk"), "no button once cancelled");
    assert!(html.contains("4 cancelled"), "{html}");
    let events = tokio::time::timeout(Duration::from_secs(10), body_text(events))
        .await
        .expect("the stream ends with the summary");
    // The cancel re-sends the snapshot: every device cancelled, the bulk finished.
    assert!(events.contains("\"cancelled\":4"), "{events}");
    assert!(events.contains("\"finished\":true"), "{events}");

    // Through the API while r1 hangs: it is stopped, the others finished.
    let handle = t.app.runner().clone().start();
    let body = format!(
        "{{\"device_ids\": [{}, {}], \"command\": \"show clock\"}}",
        t.devices[0], t.devices[2]
    );
    let created = json(send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await).await;
    let bulk_ref = BulkRef::parse(created["bulk_ref"].as_str().unwrap()).unwrap();
    for _ in 0..400 {
        let b = t.store.bulk(&bulk_ref).await.unwrap();
        let running = t.store.bulk_runs(&bulk_ref, &[t.devices[0]]).await.unwrap();
        if b.counters.ok == 1 && running.first().is_some_and(|r| r.chunks > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let uri = format!("/api/bulk/{bulk_ref}/cancel");
    let res = send(&t.router, s.post_json(&uri, "", None)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "CSRF header needed");
    let started = std::time::Instant::now();
    let res = send(&t.router, s.post_json(&uri, "", Some(&s.csrf))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let c = json(res).await;
    assert_eq!(
        (c["cancelled"].as_bool(), c["devices_cancelled"].as_u64()),
        (Some(true), Some(0))
    );
    let bulk = wait_bulk(&t.store, &bulk_ref).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((bulk.counters.ok, bulk.counters.cancelled), (1, 1));
    let stopped = &bulk.outcomes[&t.devices[0]];
    let run = t.store.run(stopped.run_id.unwrap()).await.unwrap();
    assert_eq!(
        (run.status, run.bytes),
        (RunStatus::Cancelled, 8),
        "output so far kept"
    );
    let again = json(send(&t.router, s.post_json(&uri, "", Some(&s.csrf))).await).await;
    assert_eq!(again["cancelled"], false);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_run_is_cancelled_from_its_page_and_the_api() {
    let t = app(ExecLimits::default()).await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    for round in 0..2 {
        let body = format!(
            "{{\"device_ids\": [{}], \"command\": \"monitor\"}}",
            t.devices[0]
        );
        let created =
            json(send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await).await;
        let bulk_ref = BulkRef::parse(created["bulk_ref"].as_str().unwrap()).unwrap();
        let run_id = loop {
            if let Some(r) = t
                .store
                .bulk_runs(&bulk_ref, &t.devices[..1])
                .await
                .unwrap()
                .first()
                && r.chunks > 0
            {
                break r.id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if round == 0 {
            let html = body_text(send(&t.router, s.get(&format!("/runs/{run_id}"))).await).await;
            assert!(html.contains("Cancel run"), "{html}");
            let res = send(
                &t.router,
                s.post_form(
                    &format!("/runs/{run_id}/cancel"),
                    &format!("csrf={}", s.csrf),
                ),
            )
            .await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
        } else {
            let res = send(
                &t.router,
                s.post_json(&format!("/api/runs/{run_id}/cancel"), "", Some(&s.csrf)),
            )
            .await;
            assert_eq!(res.status(), StatusCode::ACCEPTED);
        }
        let bulk = wait_bulk(&t.store, &bulk_ref).await;
        assert_eq!(bulk.counters.cancelled, 1, "round {round}");
        let res = send(
            &t.router,
            s.post_json(&format!("/api/runs/{run_id}/cancel"), "", Some(&s.csrf)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::CONFLICT, "a finished run");
    }
    handle.shutdown().await;
}

/// One run with `r1`'s character split across its two reads, through the whole service.
#[tokio::test]
async fn a_character_split_across_reads_renders_whole_everywhere() {
    let t = app(ExecLimits::default()).await;
    let handle = t.app.runner().clone().start();
    let s = login(&t.router).await;
    let body = format!(
        "{{\"device_ids\": [{}], \"command\": \"show ports\"}}",
        t.devices[0]
    );
    let created = json(send(&t.router, s.post_json("/api/bulk", &body, Some(&s.csrf))).await).await;
    let bulk_ref = BulkRef::parse(created["bulk_ref"].as_str().unwrap()).unwrap();
    let bulk = wait_bulk(&t.store, &bulk_ref).await;
    let run_id = bulk.outcomes[&t.devices[0]].run_id.unwrap();
    let run = t.store.run(run_id).await.unwrap();
    assert!(run.chunks >= 2, "stored in two chunks: {}", run.chunks);
    assert_renders(&t, &s, run_id, "1/1 ✓ up\n1/2 ✗ down\n").await;
    handle.shutdown().await;
}

/// Output stored split mid-character (as older runs were) still renders whole.
#[tokio::test]
async fn output_stored_split_mid_character_renders_whole() {
    let t = test_app().await;
    let s = login(&t.router).await;
    let run = t
        .store
        .create_run(
            NewRun {
                device_id: t.devices[0],
                command: "show interfaces description".into(),
                requested_by: "ann".into(),
                bulk_ref: None,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let text = "Gi0/1 → core-sw 😀 état\n";
    let bytes = text.as_bytes();
    let cuts = [text.find('→').unwrap() + 1, text.find('😀').unwrap() + 3];
    for piece in [
        &bytes[..cuts[0]],
        &bytes[cuts[0]..cuts[1]],
        &bytes[cuts[1]..],
    ] {
        t.store
            .append_chunk(run.id, OutputStream::Stdout, piece, chrono::Utc::now())
            .await
            .unwrap();
    }
    t.store
        .finish_run(
            run.id,
            netauto_core::RunFinish::new(RunStatus::Ok).with_exit_status(0),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert_renders(&t, &s, run.id, text).await;
}

async fn assert_renders(t: &TestApp, s: &common::Session, run_id: RunId, text: &str) {
    let escaped = text.replace('&', "&amp;");
    let html = body_text(send(&t.router, s.get(&format!("/runs/{run_id}"))).await).await;
    assert!(html.contains(&escaped), "run page: {html}");
    assert!(
        !html.contains('\u{FFFD}'),
        "run page has a replacement character"
    );
    let raw = body_text(send(&t.router, s.get(&format!("/runs/{run_id}/raw"))).await).await;
    assert_eq!(raw, text, "/raw");
    let api = json(send(&t.router, s.get(&format!("/api/runs/{run_id}"))).await).await;
    let joined: String = api["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, text, "API");
    let events =
        body_text(send(&t.router, s.get(&format!("/runs/{run_id}/events?from=0"))).await).await;
    let mut streamed = String::new();
    for line in events.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).unwrap();
            if let Some(t) = v["text"].as_str() {
                streamed.push_str(t);
            }
            if let Some(t) = v["tail"].as_str() {
                streamed.push_str(t);
            }
        }
    }
    assert_eq!(streamed, text, "event stream: {events}");
}
