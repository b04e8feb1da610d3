//! Issue 12 against the in-memory backend, limits: every command has a deadline and an
//! output cap, chunks never split a UTF-8 character, and a device that never goes quiet is
//! still stored as it talks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Behaviour, Fixture, REQUESTER, fake_client, published};
use netauto_core::exec::RunOptions;
use netauto_core::prelude::*;
use netauto_core::testing::{Reply, ScriptedClient};
use netauto_core::{ExecLimits, ProgressEvent, ProgressSink, RunEvent, RunStatus, run_topic};

#[tokio::test]
async fn an_endless_output_stops_at_the_cap_with_exactly_the_cap_kept() {
    let fx = Fixture::live();
    let dev = fx.devices(1).await[0];
    let client = fake_client(Behaviour::Endless);
    let cap = 300_000;
    let net = fx.network(client.clone()).with_limits(ExecLimits {
        timeout: Duration::from_secs(60),
        max_output: cap,
    });
    let run = net
        .execute_command(dev, "yes", RunOptions::new(REQUESTER))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Error);
    assert_eq!(run.error_kind.as_deref(), Some("output_cap"));
    assert!(run.truncated);
    assert_eq!(run.bytes, cap, "exactly the cap is kept");
    let chunks = fx.store.chunks(run.id, 0, usize::MAX).await.unwrap();
    assert_eq!(chunks.iter().map(|c| c.data.len() as u64).sum::<u64>(), cap);
    assert_eq!(client.open(), 0, "the session was closed at the cap");

    // A per-run cap wins over the service's.
    let run = net
        .execute_command(dev, "yes", RunOptions::new(REQUESTER).with_max_output(1000))
        .await
        .unwrap();
    assert_eq!((run.bytes, run.truncated), (1000, true));
}

#[tokio::test]
async fn output_exactly_at_the_cap_is_not_truncated() {
    let fx = Fixture::live();
    let dev = fx.devices(1).await[0];
    let net = fx.network(fake_client(Behaviour::Ok));
    let run = net
        .execute_command(dev, "x", RunOptions::new(REQUESTER).with_max_output(3))
        .await
        .unwrap();
    assert_eq!(
        (run.status, run.bytes, run.truncated),
        (RunStatus::Ok, 3, false)
    );
}

#[tokio::test]
async fn every_command_has_a_deadline_by_default() {
    let fx = Fixture::live();
    let dev = fx.devices(1).await[0];
    let client = fake_client(Behaviour::Silent);
    let net = fx.network(client.clone()).with_limits(ExecLimits {
        timeout: Duration::from_millis(300),
        max_output: 1 << 20,
    });
    let started = Instant::now();
    let run = net
        .execute_command(dev, "show tech", RunOptions::new(REQUESTER))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(run.status, RunStatus::Timeout);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let chunks = fx.store.chunks(run.id, 0, usize::MAX).await.unwrap();
    assert_eq!(chunks.len(), 1, "the output before the deadline is kept");
    assert_eq!(client.open(), 0, "the session was closed at the deadline");
    assert_eq!(ExecLimits::default().timeout, Duration::from_secs(300));
    assert_eq!(ExecLimits::default().max_output, 16 << 20);
}

#[tokio::test]
async fn a_utf8_character_split_across_reads_is_never_split_across_chunks() {
    let fx = Fixture::live();
    let dev = fx.devices(1).await[0];
    let text = "Ports: 1/1 ✓ — 1/2 ✗ 😀 état\n";
    let bytes = text.as_bytes();
    // Split inside "✓" (3 bytes), inside "😀" (4 bytes), and inside "é".
    let cut = |c: &str, at: usize| text.find(c).unwrap() + at;
    let cuts = [cut("✓", 1), cut("😀", 2), cut("😀", 3), cut("é", 1)];
    let mut pieces = Vec::new();
    let mut from = 0;
    for c in cuts {
        pieces.push(Bytes::copy_from_slice(&bytes[from..c]));
        from = c;
    }
    pieces.push(Bytes::copy_from_slice(&bytes[from..]));
    let client = ScriptedClient::with([Reply::paced(Duration::from_millis(60), pieces)]);
    let net = fx
        .network(client)
        .with_flush_after(Duration::from_millis(10))
        .with_chunk_bytes(8);
    let mut live = fx.hub.subscribe("run:1").await;
    let run = net
        .execute_command(dev, "show ports", RunOptions::new(REQUESTER))
        .await
        .unwrap();
    assert_eq!(run_topic(run.id), "run:1");
    let chunks = fx.store.chunks(run.id, 0, usize::MAX).await.unwrap();
    assert!(chunks.len() > 4, "flushed while quiet: {}", chunks.len());
    let mut all = Vec::new();
    for c in &chunks {
        assert!(
            std::str::from_utf8(&c.data).is_ok(),
            "chunk {} is not valid UTF-8 on its own: {:?}",
            c.seq,
            c.data
        );
        all.extend_from_slice(&c.data);
    }
    assert_eq!(all, bytes);
    for e in published(&mut live) {
        if let ProgressEvent::Run(RunEvent::Output { data, .. }) = e {
            assert!(std::str::from_utf8(&data).is_ok(), "live event {data:?}");
        }
    }
}

#[tokio::test]
async fn a_trickling_device_is_stored_at_least_every_flush_interval() {
    let fx = Fixture::live();
    let dev = fx.devices(1).await[0];
    let net = fx
        .network(ScriptedClient::with([Reply::trickle(
            "!",
            Duration::from_millis(20),
        )]))
        .with_flush_after(Duration::from_millis(100));
    let task = tokio::spawn(async move {
        net.execute_command(
            dev,
            "copy tftp: flash:",
            RunOptions::new(REQUESTER).with_timeout(Duration::from_secs(2)),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let run = fx.store.device_runs(dev, 1).await.unwrap().remove(0);
    assert_eq!(run.status, RunStatus::Running);
    assert!(
        run.chunks >= 3,
        "a partial chunk waited for a quiet spell that never came: {} chunks after 700 ms",
        run.chunks
    );
    assert_eq!(task.await.unwrap().unwrap().status, RunStatus::Timeout);
}
