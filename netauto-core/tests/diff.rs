//! [`diff_runs`] against the in-memory backend: two runs' stored output compared, the
//! platform's volatile lines ignored on request, the previous run found, the byte cap said.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fixture, REQUESTER};
use netauto_core::diff::{DiffOptions, diff_runs, previous_run};
use netauto_core::exec::RunOptions;
use netauto_core::platform::Platforms;
use netauto_core::prelude::*;
use netauto_core::testing::{Reply, ScriptedClient, exit, out};

#[tokio::test]
async fn two_runs_diff_with_volatile_lines_ignored_on_request() {
    let fx = Fixture::new();
    let dev = fx
        .store
        .create_device(netauto_core::NewDevice::new("r1", "h", "cisco_ios", "u"))
        .await
        .unwrap()
        .id;
    let v1 = "Cisco IOS\nr1 uptime is 1 day\ninterface Gi0/1 up\n";
    let v2 = "Cisco IOS\nr1 uptime is 2 days\ninterface Gi0/1 down\n";
    let client = ScriptedClient::with([
        Reply::Events(vec![out(v1), exit(0)]),
        Reply::Events(vec![out(v2), exit(0)]),
        Reply::Events(vec![out(v2), exit(0)]),
    ]);
    let net = fx.network(client);
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(
            net.execute_command(dev, "show version", RunOptions::new(REQUESTER))
                .await
                .unwrap(),
        );
    }
    let platforms = Platforms::builtin();
    let all = diff_runs(
        &fx.store,
        &platforms,
        runs[0].id,
        runs[1].id,
        DiffOptions::default(),
    )
    .await
    .unwrap();
    let unified = all.lines.unified("a", "b");
    assert!(unified.contains("-r1 uptime is 1 day\n"), "{unified}");
    assert!(unified.contains("+interface Gi0/1 down\n"), "{unified}");
    let stable = diff_runs(
        &fx.store,
        &platforms,
        runs[0].id,
        runs[1].id,
        DiffOptions {
            ignore_volatile: true,
            ..DiffOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(stable.ignored_volatile, 2);
    let unified = stable.lines.unified("a", "b");
    assert!(!unified.contains("uptime"), "{unified}");
    assert!(
        unified.contains("-interface Gi0/1 up\n+interface Gi0/1 down\n"),
        "{unified}"
    );

    let same = diff_runs(
        &fx.store,
        &platforms,
        runs[1].id,
        runs[2].id,
        DiffOptions::default(),
    )
    .await
    .unwrap();
    assert!(same.lines.identical());
    assert_eq!(
        previous_run(&fx.store, &runs[2])
            .await
            .unwrap()
            .map(|r| r.id),
        Some(runs[1].id)
    );
    assert_eq!(previous_run(&fx.store, &runs[0]).await.unwrap(), None);

    let capped = diff_runs(
        &fx.store,
        &platforms,
        runs[0].id,
        runs[1].id,
        DiffOptions {
            max_bytes: 10,
            ..DiffOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(capped.truncated);
    assert!(capped.lines.identical(), "the first 10 bytes are the same");
}

/// The fleet view of a bulk: devices grouped by identical output once volatile lines are
/// removed, largest group first; devices without a run are left out.
#[tokio::test]
async fn fleet_groups_put_identical_outputs_together_largest_first() {
    use netauto_core::diff::fleet_groups;
    let fx = Fixture::new();
    let ids = fx.devices(5).await; // cisco_ios
    let bulk_ref = fx
        .bulk()
        .enqueue(&ids, "show version", REQUESTER)
        .await
        .unwrap();
    let outputs = [
        "IOS 15.2\nsw uptime is 1 day\n",
        "IOS 15.2\nsw uptime is 9 weeks\n",
        "IOS 15.9\nsw uptime is 1 day\n",
        "IOS 15.2\nsw uptime is 3 days\n",
    ];
    let client = ScriptedClient::with(outputs.map(|o| Reply::Events(vec![out(o), exit(0)])));
    let net = fx.network(client);
    for (id, _) in ids.iter().zip(outputs) {
        let run = net
            .execute_command(
                *id,
                "show version",
                RunOptions::new(REQUESTER).with_bulk_ref(bulk_ref.clone()),
            )
            .await
            .unwrap();
        fx.store
            .record_outcome(
                &bulk_ref,
                netauto_core::DeviceOutcome {
                    device_id: *id,
                    run_id: Some(run.id),
                    status: run.status,
                    error_kind: None,
                    recorded_at: common::t0(),
                    truncated: false,
                },
            )
            .await
            .unwrap();
    }
    // ids[4] has no run.
    let bulk = fx.store.bulk(&bulk_ref).await.unwrap();
    let groups = fleet_groups(&fx.store, &Platforms::builtin(), &bulk, 1 << 20)
        .await
        .unwrap();
    let sizes: Vec<Vec<_>> = groups
        .iter()
        .map(|g| g.members.iter().map(|(d, _)| *d).collect())
        .collect();
    assert_eq!(sizes, vec![vec![ids[0], ids[1], ids[3]], vec![ids[2]]]);
    assert_eq!(groups[0].text, "IOS 15.2\n");
}
