//! Issue 12 through real SSH sessions to simulated devices: the deadline covers every phase
//! (connect, auth, channel open, PTY, output) and frees the device's session slot, the output
//! cap closes a `yes` session with exactly the cap kept, a cancel closes a running session,
//! and a channel closed without an exit status is not `ok`.

#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use netauto_core::LocalProgressHub;
use netauto_core::exec::{Executor, RunOptions};
use netauto_core::prelude::*;
use netauto_core::{DeviceId, ExecLimits, RunStatus};
use netauto_memory::InMemoryRunStore;
use netauto_ssh::sim::{DeviceFarm, DeviceSpec, FailureMode};
use netauto_ssh::{PacingConfig, SshNetworkClient, Timeouts};

struct Setup {
    farm: DeviceFarm,
    store: InMemoryRunStore,
    client: SshNetworkClient,
    network: Executor,
    ids: Vec<DeviceId>,
}

/// One device per spec, a client whose own phase limits are long (so the command deadline is
/// what stops a hung phase), and a network service with `limits`.
async fn setup(specs: Vec<DeviceSpec>, limits: ExecLimits) -> Setup {
    let farm = DeviceFarm::start(specs).await.expect("farm");
    let (_queue, store) = netauto_memory::backend();
    let mut ids = Vec::new();
    for d in farm.new_devices() {
        ids.push(store.create_device(d).await.unwrap().id);
    }
    let mut config = farm.client_config().with_timeouts(Timeouts {
        connect: Duration::from_secs(60),
        auth: Duration::from_secs(60),
        command: None,
        idle: Duration::from_secs(60),
    });
    config.pacing = PacingConfig {
        max_sessions: 100,
        connections_per_second: None,
        jitter: 0.0,
        sessions_per_endpoint: None,
    };
    let client = SshNetworkClient::new(config);
    let network = Executor::new(
        Arc::new(store.clone()),
        Arc::new(client.clone()),
        Arc::new(LocalProgressHub::new()),
    )
    .with_limits(limits)
    .with_cancel_poll(Duration::from_millis(100));
    Setup {
        farm,
        store,
        client,
        network,
        ids,
    }
}

async fn wait_sessions_closed(client: &SshNetworkClient) -> Duration {
    let started = Instant::now();
    while client.active_sessions() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} sessions still open",
            client.active_sessions()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_covers_every_phase_and_frees_the_device() {
    let deadline = Duration::from_millis(800);
    let specs = vec![
        DeviceSpec::new("no-banner", "linux").with_failure(FailureMode::NoBanner),
        DeviceSpec::new("slow-aaa", "linux").with_auth_delay(Duration::from_secs(3600)),
        DeviceSpec::new("no-channel", "linux").with_failure(FailureMode::HangChannelOpen),
        DeviceSpec::new("no-pty", "cisco_ios").with_failure(FailureMode::HangPty),
        DeviceSpec::new("silent", "linux").with_failure(FailureMode::Hang),
        DeviceSpec::new("trickle", "linux")
            .with_output_bytes(1 << 20)
            .with_throughput(2048),
    ];
    let s = setup(
        specs,
        ExecLimits {
            timeout: deadline,
            ..ExecLimits::default()
        },
    )
    .await;
    for (i, name) in [
        "no-banner",
        "slow-aaa",
        "no-channel",
        "no-pty",
        "silent",
        "trickle",
    ]
    .into_iter()
    .enumerate()
    {
        let started = Instant::now();
        let run = s
            .network
            .execute_command(s.ids[i], "show version", RunOptions::new("ops"))
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(run.status, RunStatus::Timeout, "{name}: {run:?}");
        assert!(
            took >= deadline && took < deadline + Duration::from_secs(2),
            "{name}: ended after {took:?}"
        );
        if name == "trickle" {
            assert!(run.bytes > 0, "trickle: the output so far is kept");
        }
        // The session is closed and the device's slot free: the next command on it starts
        // (and times out the same way) instead of waiting for the first forever.
        wait_sessions_closed(&s.client).await;
        let again = s
            .network
            .execute_command(s.ids[i], "show version", RunOptions::new("ops"))
            .await
            .unwrap();
        assert_eq!(again.status, RunStatus::Timeout, "{name} again");
    }
    drop(s.farm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yes_device_stops_at_the_cap_with_exactly_the_cap_kept() {
    let cap = 2 << 20;
    let s = setup(
        vec![
            DeviceSpec::new("yes", "linux").with_failure(FailureMode::Endless),
            DeviceSpec::new("yes-ios", "cisco_ios").with_failure(FailureMode::Endless),
        ],
        ExecLimits {
            timeout: Duration::from_secs(60),
            max_output: cap,
        },
    )
    .await;
    for i in 0..2 {
        let run = s
            .network
            .execute_command(s.ids[i], "yes", RunOptions::new("ops"))
            .await
            .unwrap();
        assert_eq!(
            (run.status, run.error_kind.as_deref(), run.truncated),
            (RunStatus::Error, Some("output_cap"), true),
            "device {i}"
        );
        assert_eq!(run.bytes, cap, "device {i}: exactly the cap is stored");
        let stored: u64 = s
            .store
            .chunks(run.id, 0, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|c| c.data.len() as u64)
            .sum();
        assert_eq!(stored, cap);
        wait_sessions_closed(&s.client).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_closes_its_session_within_two_seconds() {
    let s = setup(
        vec![
            DeviceSpec::new("busy", "linux")
                .with_output_bytes(1 << 20)
                .with_throughput(1024),
        ],
        ExecLimits::default(),
    )
    .await;
    let (network, id) = (s.network.clone(), s.ids[0]);
    let task = tokio::spawn(async move {
        network
            .execute_command(id, "show tech", RunOptions::new("ops"))
            .await
    });
    let run_id = loop {
        if let Some(r) = s.store.device_runs(id, 1).await.unwrap().first()
            && r.chunks > 0
        {
            break r.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Another node (its own service over the same store) takes the cancel: the node running
    // the command learns of it from the store.
    let other_node = Executor::new(
        Arc::new(s.store.clone()),
        Arc::new(s.client.clone()),
        Arc::new(LocalProgressHub::new()),
    );
    let asked = Instant::now();
    other_node.cancel_run(run_id).await.unwrap();
    let run = task.await.unwrap().unwrap();
    wait_sessions_closed(&s.client).await;
    let closed = asked.elapsed();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(run.bytes > 0, "output so far kept");
    assert!(
        closed < Duration::from_secs(2),
        "closed {closed:?} after the cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_closed_without_an_exit_status_is_not_ok() {
    let s = setup(
        vec![DeviceSpec::new("mute", "linux").with_failure(FailureMode::NoExitStatus)],
        ExecLimits::default(),
    )
    .await;
    let run = s
        .network
        .execute_command(s.ids[0], "show version", RunOptions::new("ops"))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Error, "{run:?}");
    assert_eq!(run.error_kind.as_deref(), Some("closed"));
    assert_eq!(run.bytes, 1024, "its output is kept");
}

/// The figures on simulated devices: a 100-device bulk with one runaway device ends
/// at about the deadline (not never), and cancelling a bulk with 20 sessions running closes
/// them all well within 2 s. Prints a `FIGURES` line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_device_holds_its_bulk_only_until_the_deadline_and_a_cancel_closes_all() {
    use futures_util::StreamExt;
    use netauto_core::bulk::{BulkJob, BulkService};
    use netauto_core::runtime::WorkerRegistry;
    use netauto_core::runtime::{QueueLimits, Runner, RunnerConfig};
    use netauto_core::{BulkEvent, FeedItem, LimitOverrides, ProgressEvent, ProgressSink};

    async fn summary(feed: &mut netauto_core::Subscription) -> (u64, u64, u64) {
        loop {
            match feed.next().await {
                Some(FeedItem::Event(ProgressEvent::Bulk(BulkEvent::Summary {
                    ok,
                    failed,
                    cancelled,
                    ..
                }))) => return (ok, failed, cancelled),
                Some(_) => {}
                None => panic!("feed ended"),
            }
        }
    }

    let deadline = Duration::from_secs(3);
    let mut specs: Vec<DeviceSpec> = (0..99)
        .map(|i| {
            DeviceSpec::new(format!("d{i:03}"), "linux").with_latency(Duration::from_millis(50))
        })
        .collect();
    specs.push(DeviceSpec::new("runaway", "linux").with_failure(FailureMode::Hang));
    specs.extend(
        (0..20)
            .map(|i| DeviceSpec::new(format!("h{i:02}"), "linux").with_failure(FailureMode::Hang)),
    );
    let limits = ExecLimits {
        timeout: deadline,
        ..ExecLimits::default()
    };
    let s = setup(specs, limits).await;
    let hub = LocalProgressHub::new();
    let network = Executor::new(
        Arc::new(s.store.clone()),
        Arc::new(s.client.clone()),
        Arc::new(hub.clone()),
    )
    .with_limits(limits);
    let registry = WorkerRegistry::new().with(BulkJob::new(network).with_concurrency(10));
    let runner =
        Runner::new(Arc::new(s.store.queue().clone()), registry).with_config(RunnerConfig {
            queues: QueueLimits::empty().with("bulk", 2),
            poll_interval: Duration::from_millis(20),
            ..RunnerConfig::default()
        });
    let bulk = BulkService::new(Arc::new(s.store.clone()), Arc::new(hub.clone()))
        .with_wake(runner.waker())
        .with_chunk_size(std::num::NonZeroUsize::new(10).expect("10"));
    let handle = runner.start();

    // 99 well-behaved devices and one that never answers.
    let started = Instant::now();
    let r = bulk
        .enqueue(&s.ids[..100], "show version", "ops")
        .await
        .unwrap();
    let mut feed = hub.subscribe(&r.topic()).await;
    let counts = tokio::time::timeout(deadline * 10, summary(&mut feed))
        .await
        .expect("the bulk ends");
    let to_summary = started.elapsed();
    assert_eq!(counts, (99, 1, 0));
    assert!(
        to_summary < deadline + Duration::from_secs(5),
        "{to_summary:?}"
    );
    wait_sessions_closed(&s.client).await;

    // 20 sessions that never end (2 jobs x 10 devices); a cancel closes them all.
    let r = bulk
        .enqueue_with_limits(
            &s.ids[100..],
            "monitor",
            "ops",
            LimitOverrides::none().with_timeout(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let mut feed = hub.subscribe(&r.topic()).await;
    let waiting = Instant::now();
    while s.client.active_sessions() < 20 {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "20 sessions never opened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let c = bulk.cancel(&r).await.unwrap();
    assert_eq!(c.counters.pending, 20, "all 20 were running");
    let closed = asked.elapsed() + wait_sessions_closed(&s.client).await;
    let counts = tokio::time::timeout(Duration::from_secs(10), summary(&mut feed))
        .await
        .expect("the cancelled bulk ends");
    let to_summary_after_cancel = asked.elapsed();
    assert_eq!(counts, (0, 0, 20));
    assert!(closed < Duration::from_secs(2), "{closed:?}");
    eprintln!(
        "FIGURES 100-device bulk with one runaway device, deadline {deadline:?}: summary after {to_summary:?}; \
         cancel of a bulk with 20 running sessions: all closed after {closed:?}, summary after {to_summary_after_cancel:?}"
    );
    handle.shutdown().await;
}
