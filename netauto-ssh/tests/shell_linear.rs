//! Shell mode stays linear (issue 12, item 6): a shell device printing megabytes without a
//! newline (Cisco `copy` progress `!!!!`, a hostile device) is streamed to the caller piece by
//! piece, every byte once, instead of being held until the line ends.
//!
//! The size is `NETAUTO_SHELL_FLOOD_MB` megabytes (default 12: more than a thousand times the
//! driver's bound, and under the 16 MiB default output cap of a run).
#![cfg(feature = "sim")]
#![allow(missing_docs)]

use futures_util::StreamExt;
use netauto_core::{DeviceId, ExecOptions, NetworkClient, OutputEvent};
use netauto_ssh::SshNetworkClient;
use netauto_ssh::sim::{CannedOutput, DeviceFarm, DeviceSpec};

const COMMAND: &str = "copy tftp: flash:";

/// The largest piece of output accepted: a driver holding the line hands it over whole.
const LARGEST_PIECE: usize = 1 << 20;

fn flood_bytes() -> usize {
    let mb: usize = std::env::var("NETAUTO_SHELL_FLOOD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    mb << 20
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_without_a_newline_stream_out_of_a_shell() {
    let flood = flood_bytes();
    let mut answer = vec![b'!'; flood];
    answer.push(b'\n');
    let spec =
        DeviceSpec::new("sw-copy", "cisco_ios").with_command(COMMAND, CannedOutput::stdout(answer));
    let farm = DeviceFarm::start(vec![spec]).await.expect("farm starts");
    let client = SshNetworkClient::new(farm.client_config());
    let device = farm
        .device("sw-copy")
        .expect("device in farm")
        .to_new_device()
        .into_device(DeviceId(1));

    let mut events = client
        .execute(&device, COMMAND, &ExecOptions::default())
        .await
        .expect("command starts");
    let (mut bangs, mut newlines, mut pieces, mut largest) = (0, 0, 0, 0);
    let mut exited = false;
    while let Some(event) = events.next().await {
        assert!(!exited, "nothing after the prompt came back");
        let bytes = match event.expect("the command completes") {
            OutputEvent::Stdout(bytes) => bytes,
            // The prompt came back: the shell's exit status 0.
            OutputEvent::Exit(netauto_core::ExitStatus::Code(0)) => {
                exited = true;
                continue;
            }
            OutputEvent::LoggedIn { .. } => continue,
            other => panic!("a shell prints stdout only, got {other:?}"),
        };
        assert_eq!(newlines, 0, "nothing after the line's end");
        pieces += 1;
        largest = bytes.len().max(largest);
        for b in bytes.iter() {
            match b {
                b'!' => bangs += 1,
                b'\n' => newlines += 1,
                other => panic!("unexpected byte {other:#04x}"),
            }
        }
    }
    assert_eq!(bangs, flood, "every `!` arrives once");
    assert_eq!(newlines, 1, "then the line's end");
    assert!(exited, "the prompt came back");
    assert!(
        largest <= LARGEST_PIECE,
        "the line was held: a piece of {largest} bytes ({pieces} pieces)"
    );
    assert_eq!(farm.stats("sw-copy").expect("stats").commands, 1);
}
