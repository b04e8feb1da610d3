//! The server README's `curl` example, with the real `curl`: a bearer token creates a bulk
//! over HTTP. Skips (printing why) when `curl` is absent, unless `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use netauto_core::{BulkRef, NewApiToken};
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_a_bearer_token_creates_a_bulk() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: curl not found"
        );
        println!("SKIPPED curl test: curl not found");
        return;
    }
    let t = test_app().await;
    let handle = t.app.runner().clone().start();
    let secret = "netauto_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";
    let hash: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    t.store
        .create_token(
            NewApiToken {
                user: USER.to_owned(),
                name: "ci".to_owned(),
                hash,
                expires_at: None,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, t.router.clone()).into_future());
    let body = format!(
        r#"{{"device_ids": [{}], "command": "show version"}}"#,
        t.devices[0]
    );
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("Authorization: Bearer {secret}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
        ])
        .arg(format!("{base}/api/bulk"))
        .output()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let bulk_ref = BulkRef::parse(v["bulk_ref"].as_str().expect("a bulk_ref")).unwrap();
    let bulk = wait_bulk(&t.store, &bulk_ref).await;
    assert_eq!(bulk.requested_by, USER);
    assert_eq!(bulk.counters.ok, 1);
    server.abort();
    handle.shutdown().await;
}
