//! Jump hosts against the simulator: simulated devices with forwarding on are the bastions.

#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::collect;
use futures_util::future::join_all;
use netauto_core::{Device, DeviceId, ExecOptions, ExitStatus, NetworkError};
use netauto_ssh::sim::{DeviceFarm, DeviceSpec};
use netauto_ssh::{JumpHost, JumpHosts, SshNetworkClient};

fn device(farm: &DeviceFarm, name: &str, id: i64) -> Device {
    farm.device(name)
        .unwrap()
        .to_new_device()
        .into_device(DeviceId(id))
}

fn jump(farm: &DeviceFarm, name: &str, via: Option<&str>) -> JumpHost {
    let d = farm.device(name).unwrap();
    JumpHost {
        address: format!("{}@{}:{}", d.username, d.host, d.port),
        credential_ref: Some(d.credential_ref.clone()),
        via: via.map(str::to_owned),
    }
}

async fn run(client: &SshNetworkClient, device: &Device) -> Result<ExitStatus, NetworkError> {
    let options = ExecOptions::default().with_timeout(Duration::from_secs(20));
    let out = collect(client, device, "show version", &options).await?;
    match (out.error, out.exit) {
        (Some(e), _) => Err(e),
        (None, Some(exit)) => Ok(exit),
        (None, None) => panic!("no exit status"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_share_one_connection_per_jump_host_over_one_or_two_hops() {
    let mut specs = vec![
        DeviceSpec::new("bastion-a", "linux").with_forwarding(),
        DeviceSpec::new("bastion-b", "linux").with_forwarding(),
        DeviceSpec::new("no-forward", "linux"),
    ];
    for i in 0..12 {
        let platform = if i % 2 == 0 {
            "cisco_ios"
        } else {
            "arista_eos"
        };
        specs.push(DeviceSpec::new(format!("r{i}"), platform));
    }
    let farm = DeviceFarm::start(specs).await.unwrap();
    let jumps = JumpHosts::new()
        .with("a", jump(&farm, "bastion-a", None))
        .with("b", jump(&farm, "bastion-b", Some("a")))
        .with("closed", jump(&farm, "no-forward", None))
        .with_site("east", "b");
    let client = SshNetworkClient::new(farm.client_config().with_jump_hosts(jumps));

    // Six devices through a, at once.
    let through_a: Vec<Device> = (0..6)
        .map(|i| {
            let mut d = device(&farm, &format!("r{i}"), i + 1);
            d.jump_host = Some("a".into());
            d
        })
        .collect();
    for r in join_all(through_a.iter().map(|d| run(&client, d))).await {
        assert_eq!(r.unwrap(), ExitStatus::Code(0));
    }
    assert_eq!(client.jump_connections_opened(), 1);
    assert_eq!(farm.stats("bastion-a").unwrap().connections, 1);
    assert_eq!(farm.stats("bastion-a").unwrap().forwards, 6);

    // Six more by their site's default: a then b; a's connection is reused.
    let through_b: Vec<Device> = (6..12)
        .map(|i| {
            let mut d = device(&farm, &format!("r{i}"), i + 1);
            d.site = Some("east".into());
            d
        })
        .collect();
    for r in join_all(through_b.iter().map(|d| run(&client, d))).await {
        assert_eq!(r.unwrap(), ExitStatus::Code(0));
    }
    assert_eq!(client.jump_connections_opened(), 2);
    assert_eq!(farm.stats("bastion-a").unwrap().connections, 1);
    assert_eq!(farm.stats("bastion-b").unwrap().connections, 1);
    assert_eq!(farm.stats("bastion-b").unwrap().forwards, 6);
    for i in 0..12 {
        assert_eq!(farm.stats(&format!("r{i}")).unwrap().commands, 1, "r{i}");
    }

    // `direct` overrides the site; a jump host that does not forward names itself.
    let mut direct = through_b[0].clone();
    direct.jump_host = Some("direct".into());
    assert_eq!(run(&client, &direct).await.unwrap(), ExitStatus::Code(0));
    assert_eq!(farm.stats("bastion-b").unwrap().forwards, 6);
    let mut refused = through_a[0].clone();
    refused.jump_host = Some("closed".into());
    let err = run(&client, &refused).await.unwrap_err();
    assert!(
        matches!(&err, NetworkError::Connect { message, .. } if message.contains("did not open a channel")),
        "{err:?}"
    );
    let mut unknown = through_a[0].clone();
    unknown.jump_host = Some("nowhere:99999".into());
    let err = run(&client, &unknown).await.unwrap_err();
    assert!(
        matches!(&err, NetworkError::Unsupported(m) if m.contains("jump host")),
        "{err:?}"
    );
}

/// A jump-host connection that is lost (the bastion drops it after each forward) is opened
/// again by the next device that needs it — whether the loss is noticed before the channel is
/// asked for, when it is refused, or under the device's handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_jump_connection_is_opened_again() {
    let farm = DeviceFarm::start(vec![
        DeviceSpec::new("flaky-bastion", "linux")
            .with_forwarding()
            .with_failure(netauto_ssh::sim::FailureMode::DropAfterForward),
        DeviceSpec::new("r1", "arista_eos"),
    ])
    .await
    .unwrap();
    let jumps = JumpHosts::new().with("flaky", jump(&farm, "flaky-bastion", None));
    let client = SshNetworkClient::new(farm.client_config().with_jump_hosts(jumps));
    let mut d = device(&farm, "r1", 1);
    d.jump_host = Some("flaky".into());
    for round in 1..=4 {
        assert_eq!(
            run(&client, &d).await.unwrap(),
            ExitStatus::Code(0),
            "round {round}"
        );
        // The bastion drops the connection once the forward ended: wait until it has (a
        // drop landing on the next round's session would fail that session, as a real one
        // would). The client may notice the loss at its next channel request or during the
        // handshake over it: both reopen.
        let since = std::time::Instant::now();
        while farm.stats("flaky-bastion").unwrap().active > 0 {
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "the bastion drops the connection"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(farm.stats("r1").unwrap().commands, 4);
    let opened = client.jump_connections_opened();
    assert!(opened >= 4, "reopened after each loss: {opened}");
    assert_eq!(farm.stats("flaky-bastion").unwrap().connections, opened);
}
