//! Webhooks against a local HTTP receiver: an admin adds one on /webhooks; a bulk with a
//! failing device sends `bulk.finished` and `bulk.failed`, each signed with the secret shown
//! once; the receiver refuses the first attempt of each event and the job queue delivers it
//! again with backoff (same delivery id), once; the delivery log shows both attempts; a purge
//! sends `retention.purge`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use common::*;
use serde_json::Value;

#[derive(Debug, Clone)]
struct Received {
    event: String,
    delivery: String,
    timestamp: i64,
    signature: String,
    body: String,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// Answers 500 to the first delivery of each event, 204 after.
async fn receive(State(log): State<Log>, headers: HeaderMap, body: String) -> StatusCode {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let got = Received {
        event: h("x-netauto-event"),
        delivery: h("x-netauto-delivery"),
        timestamp: h("x-netauto-timestamp").parse().unwrap_or(0),
        signature: h("x-netauto-signature"),
        body,
    };
    let mut log = log.lock().unwrap();
    let first = !log.iter().any(|r| r.event == got.event);
    log.push(got);
    if first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn wait_for(log: &Log, what: &str, done: impl Fn(&[Received]) -> bool) {
    for _ in 0..200 {
        if done(&log.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {:#?}", log.lock().unwrap());
}

fn secret_of(html: &str) -> String {
    let at = html
        .find("<pre id=\"webhook-secret\">")
        .expect("the secret is shown")
        + 25;
    html[at..at + html[at..].find('<').unwrap()].to_owned()
}

#[tokio::test]
async fn deliveries_are_signed_retried_with_backoff_and_logged() {
    // /metrics counts the attempts (this test's runtime runs every task on this thread).
    use tracing_subscriber::layer::SubscriberExt as _;
    let _metrics = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(netauto_server::Metrics::global().layer()),
    );
    let log: Log = Arc::default();
    let receiver = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, receiver).into_future());

    let t = test_app().await;
    let _ = t
        .app
        .clone()
        .with_webhook_backoff(Duration::from_millis(100));
    let handle = t.app.runner().clone().start();
    let admin = login(&t.router).await;

    // Bad input is refused with the reason, nothing stored.
    for (form, why) in [
        ("url=ftp%3A%2F%2Fx&events=bulk.finished", "not an http"),
        (
            &*format!("url={url}&events=bulk.exploded"),
            "unknown events",
        ),
        (&*format!("url={url}"), "at least one event"),
        (
            &*format!("url={url}&events=bulk.failed&failed_threshold=0%25"),
            "percentage",
        ),
    ] {
        let res = send(
            &t.router,
            admin.post_form("/webhooks", &format!("csrf={}&{form}", admin.csrf)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{form}");
        assert!(body_text(res).await.contains(why), "{form}: {why}");
    }
    assert!(t.store.webhooks().await.unwrap().is_empty());

    let res = send(
        &t.router,
        admin.post_form(
            "/webhooks",
            &format!(
                "csrf={}&url={url}&events=bulk.finished&events=bulk.failed&events=retention.purge&failed_threshold=1",
                admin.csrf
            ),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let secret = secret_of(&body_text(res).await);
    assert!(
        secret.starts_with("whsec_") && secret.len() == 6 + 64,
        "{secret}"
    );
    let page = body_text(send(&t.router, admin.get("/webhooks")).await).await;
    assert!(!page.contains(&secret), "the secret is shown once");

    // r1 answers, down-1 refuses the connection: finished, and failed at threshold 1.
    let res = send(
        &t.router,
        admin.post_form(
            "/bulk",
            &format!(
                "csrf={}&command=show+clock{}",
                admin.csrf,
                ids_form(&[t.devices[0], t.devices[3]])
            ),
        ),
    )
    .await;
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let bulk_ref = location.trim_start_matches("/bulk/").to_owned();
    wait_for(&log, "two attempts of each bulk event", |got| {
        ["bulk.finished", "bulk.failed"]
            .iter()
            .all(|e| got.iter().filter(|r| r.event == *e).count() == 2)
    })
    .await;
    // Nothing more comes: one delivery per event, whatever saw the bulk end.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "{got:#?}");
    for event in ["bulk.finished", "bulk.failed"] {
        let attempts: Vec<&Received> = got.iter().filter(|r| r.event == event).collect();
        assert_eq!(
            attempts[0].delivery, attempts[1].delivery,
            "same delivery id"
        );
        for r in attempts {
            assert_eq!(
                r.signature,
                netauto_server::webhooks::signature(&secret, r.timestamp, r.body.as_bytes()),
                "signed with the secret"
            );
            assert_ne!(
                r.signature,
                netauto_server::webhooks::signature("whsec_other", r.timestamp, r.body.as_bytes())
            );
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["event"], event);
            assert_eq!(body["data"]["bulk_ref"], bulk_ref);
            assert_eq!(body["data"]["counters"]["failed"], 1);
            assert_eq!(body["data"]["counters"]["ok"], 1);
            assert!(!r.body.contains(&secret));
        }
    }

    // The delivery log: a 500 then a 204 for each event.
    let res = send(&t.router, admin.get("/api/webhooks")).await;
    let json: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert!(!json.to_string().contains(&secret), "no secret in the API");
    let mut seen: Vec<(String, u64, u64)> = json["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["event"].as_str().unwrap().to_owned(),
                d["attempt"].as_u64().unwrap(),
                d["status_code"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("bulk.failed".to_owned(), 1, 500),
            ("bulk.failed".to_owned(), 2, 204),
            ("bulk.finished".to_owned(), 1, 500),
            ("bulk.finished".to_owned(), 2, 204),
        ]
    );

    let metrics = body_text(send(&t.router, admin.get("/metrics")).await).await;
    for outcome in ["failed", "delivered"] {
        assert!(
            metrics.contains(&format!(
                "netauto_webhook_deliveries_total{{event=\"bulk.failed\",outcome=\"{outcome}\"}} 1"
            )),
            "{metrics}"
        );
    }

    // An admin's purge: retention.purge.
    let res = send(
        &t.router,
        admin.post_form("/retention/run", &format!("csrf={}", admin.csrf)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    wait_for(&log, "the purge event delivered", |got| {
        got.iter().filter(|r| r.event == "retention.purge").count() == 2
    })
    .await;
    let purge = log
        .lock()
        .unwrap()
        .iter()
        .rfind(|r| r.event == "retention.purge")
        .cloned()
        .unwrap();
    let body: Value = serde_json::from_str(&purge.body).unwrap();
    assert!(body["data"]["deleted_by_age"]["runs"].is_u64(), "{body}");
    handle.shutdown().await;

    // The audit log has the webhook's creation and the purge.
    let audit = t
        .store
        .audit_events(&netauto_core::AuditQuery::default())
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "webhook.create",
        "retention.run",
        "retention.purge",
        "bulk.start",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}
