//! What the client tests share: running one command and collecting what it printed.
#![allow(dead_code)]

use bytes::BytesMut;
use futures_util::StreamExt;
use netauto_core::{Device, ExecOptions, ExitStatus, NetworkClient, NetworkError, OutputEvent};
use netauto_ssh::SshNetworkClient;

/// What a command printed.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) stdout: BytesMut,
    pub(crate) stderr: BytesMut,
    pub(crate) exit: Option<ExitStatus>,
    /// The error that ended the output, if one did.
    pub(crate) error: Option<NetworkError>,
    /// Events that came after the exit status (there should be none).
    pub(crate) events_after_exit: usize,
    /// The credential reference the login used.
    pub(crate) credential_ref: Option<String>,
    /// The output was redacted.
    pub(crate) redacted: bool,
}

/// Runs `command` on `device` and collects its output up to the end of the stream or its
/// first error; an error before the command started is returned.
pub(crate) async fn collect(
    client: &SshNetworkClient,
    device: &Device,
    command: &str,
    options: &ExecOptions,
) -> Result<Collected, NetworkError> {
    let mut events = client.execute(device, command, options).await?;
    let mut out = Collected::default();
    while let Some(event) = events.next().await {
        if out.exit.is_some() {
            out.events_after_exit += 1;
        }
        match event {
            Ok(OutputEvent::Stdout(b)) => out.stdout.extend_from_slice(&b),
            Ok(OutputEvent::Stderr(b)) => out.stderr.extend_from_slice(&b),
            Ok(OutputEvent::Exit(status)) => out.exit = Some(status),
            Ok(OutputEvent::LoggedIn { credential_ref }) => {
                out.credential_ref = Some(credential_ref)
            }
            Ok(OutputEvent::Redacted) => out.redacted = true,
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    Ok(out)
}

/// Runs `show version` on `device` until it exits; the first error is returned.
pub(crate) async fn run_to_exit(
    client: &SshNetworkClient,
    device: &Device,
) -> Result<(), NetworkError> {
    let mut events = client
        .execute(device, "show version", &ExecOptions::default())
        .await?;
    while let Some(event) = events.next().await {
        if let OutputEvent::Exit(_) = event? {
            return Ok(());
        }
    }
    Ok(())
}
