//! The russh server side of one simulated device.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, Disconnect};
use tokio::sync::watch;

use super::{CannedOutput, DeviceSpec, FailureMode};

/// Counters of one device, shared by its connections.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicUsize,
    pub(crate) active: AtomicUsize,
    pub(crate) max_active: AtomicUsize,
    pub(crate) commands: AtomicUsize,
    pub(crate) auth_failures: AtomicUsize,
    pub(crate) forwards: AtomicUsize,
}

/// Tracks one open connection in [`Counters::active`].
pub(crate) struct ActiveGuard(pub(crate) Arc<Counters>);

impl ActiveGuard {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        counters.connections.fetch_add(1, Ordering::SeqCst);
        let now = counters.active.fetch_add(1, Ordering::SeqCst) + 1;
        counters.max_active.fetch_max(now, Ordering::SeqCst);
        Self(counters)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where commands wait while the farm is paused: `true` is open.
#[derive(Debug, Clone)]
pub(crate) struct Gate(pub(crate) watch::Receiver<bool>);

impl Gate {
    /// Returns once the farm is not paused (at once when it is not, or when the farm is gone).
    async fn pass(&mut self) {
        let _ = self.0.wait_for(|open| *open).await;
    }
}

/// One connection to a simulated device.
pub(crate) struct SimHandler {
    pub(crate) spec: Arc<DeviceSpec>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) gate: Gate,
    pub(crate) channels: HashMap<ChannelId, Channel<Msg>>,
    pub(crate) execs: usize,
    /// Channel opens never answered ([`FailureMode::HangChannelOpen`]).
    pub(crate) held: Vec<server::ChannelOpenHandle>,
}

impl SimHandler {
    fn check_login(&self, user: &str, password: &str) -> Auth {
        let ok = self.spec.failure != Some(FailureMode::AuthReject)
            && user == self.spec.username
            && password == self.spec.password;
        self.verdict(ok)
    }

    fn verdict(&self, ok: bool) -> Auth {
        if ok {
            Auth::Accept
        } else {
            self.counters.auth_failures.fetch_add(1, Ordering::SeqCst);
            Auth::reject()
        }
    }
}

impl server::Handler for SimHandler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        tokio::time::sleep(self.spec.auth_delay).await;
        if self.spec.keyboard_interactive_only {
            return Ok(Auth::reject());
        }
        Ok(self.check_login(user, password))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: vec![("Password: ".into(), false)].into(),
            });
        };
        tokio::time::sleep(self.spec.auth_delay).await;
        let answer = response
            .next()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Ok(self.check_login(user, &answer))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let known = self
            .spec
            .authorized_keys
            .iter()
            .any(|k| k.key_data() == offer.public_key.key_data());
        if user == self.spec.username && known && self.spec.failure != Some(FailureMode::AuthReject)
        {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let ok = self.spec.failure != Some(FailureMode::AuthReject)
            && user == self.spec.username
            && self
                .spec
                .authorized_keys
                .iter()
                .any(|k| k.key_data() == key.public_key.key_data());
        Ok(self.verdict(ok))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.spec.failure == Some(FailureMode::HangChannelOpen) {
            self.held.push(reply);
            return Ok(());
        }
        if self.spec.failure == Some(FailureMode::CloseAfterOneExec) && self.execs > 0 {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let drop_after =
            (self.spec.failure == Some(FailureMode::DropAfterForward)).then(|| session.handle());
        let target = u16::try_from(port_to_connect)
            .ok()
            .filter(|_| self.spec.forwarding);
        let Some(port) = target else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        match tokio::net::TcpStream::connect((host_to_connect, port)).await {
            Ok(mut socket) => {
                reply.accept().await;
                self.counters.forwards.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut stream = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut socket).await;
                    if let Some(handle) = drop_after {
                        disconnect(&handle, "simulated failure: dropped after a forward").await;
                    }
                });
            }
            Err(_) => {
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(chan) = self.channels.remove(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        self.execs += 1;
        self.counters.commands.fetch_add(1, Ordering::SeqCst);
        let command = String::from_utf8_lossy(data).into_owned();
        let spec = self.spec.clone();
        let handle = session.handle();
        let mut gate = self.gate.clone();
        tokio::spawn(async move {
            gate.pass().await;
            run_exec(&spec, chan, &command, &handle).await;
        });
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.spec.failure == Some(FailureMode::HangPty) {
            return Ok(());
        }
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.spec.failure == Some(FailureMode::HangPty) {
            return Ok(());
        }
        let chan = match self.channels.remove(&channel) {
            Some(chan) if self.spec.has_shell() => chan,
            _ => {
                session.channel_failure(channel)?;
                return Ok(());
            }
        };
        session.channel_success(channel)?;
        let spec = self.spec.clone();
        let counters = self.counters.clone();
        let handle = session.handle();
        let gate = self.gate.clone();
        tokio::spawn(async move {
            run_shell(&spec, &counters, gate, chan, &handle).await;
        });
        Ok(())
    }
}

/// Sends `data` honouring the device's throughput; `false` when the channel is gone.
async fn send_paced(spec: &DeviceSpec, channel: &Channel<Msg>, data: &Bytes, ext: bool) -> bool {
    let chunk = match spec.throughput {
        Some(rate) => ((rate / 20).max(1) as usize).min(32 * 1024),
        None => 32 * 1024,
    };
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + chunk).min(data.len());
        let piece = data.slice(offset..end);
        let sent = if ext {
            channel.extended_data_bytes(1, piece).await
        } else {
            channel.data_bytes(piece).await
        };
        if sent.is_err() {
            return false;
        }
        if let Some(rate) = spec.throughput.filter(|r| *r > 0) {
            tokio::time::sleep(Duration::from_secs_f64((end - offset) as f64 / rate as f64)).await;
        }
        offset = end;
    }
    true
}

async fn disconnect(handle: &server::Handle, why: &str) {
    let _ = handle
        .disconnect(Disconnect::ByApplication, why.to_owned(), "en".to_owned())
        .await;
}

async fn run_exec(
    spec: &DeviceSpec,
    channel: Channel<Msg>,
    command: &str,
    handle: &server::Handle,
) {
    if spec.failure == Some(FailureMode::Hang) {
        // Keep the channel open and silent until the client gives up.
        let mut channel = channel;
        while channel.wait().await.is_some() {}
        return;
    }
    tokio::time::sleep(spec.latency).await;
    if spec.failure == Some(FailureMode::Endless) {
        endless(&channel).await;
        return;
    }
    let persona = &spec.definition.persona;
    let command = command.trim();
    if spec.rejected.contains(command) {
        let text = Bytes::from(spec.rejection_text(command));
        send_paced(spec, &channel, &text, persona.rejected_on_stderr).await;
        let _ = channel.exit_status(persona.rejected_exit).await;
        let _ = channel.eof().await;
        let _ = channel.close().await;
        return;
    }
    if persona.confirm_command.as_deref() == Some(command) {
        confirm_on_stdin(
            channel,
            persona.confirm_prompt.as_deref().unwrap_or_default(),
        )
        .await;
        return;
    }
    let CannedOutput {
        stdout,
        stderr,
        exit_code,
    } = spec.answer(command);
    if spec.failure == Some(FailureMode::CloseMidOutput) {
        let half = stdout.slice(..stdout.len() / 2);
        send_paced(spec, &channel, &half, false).await;
        // Let the half reach the client before the connection drops.
        tokio::time::sleep(Duration::from_millis(20)).await;
        disconnect(handle, "simulated failure: closed mid-output").await;
        return;
    }
    if !send_paced(spec, &channel, &stdout, false).await
        || !send_paced(spec, &channel, &stderr, true).await
    {
        return;
    }
    if spec.failure != Some(FailureMode::NoExitStatus) {
        let _ = channel.exit_status(exit_code).await;
    }
    let _ = channel.eof().await;
    let _ = channel.close().await;
    if spec.failure == Some(FailureMode::CloseAfterOneExec) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        disconnect(handle, "one command per connection").await;
    }
}

/// Asks `question` on stdout and waits for a line on stdin; then exits 0.
async fn confirm_on_stdin(mut channel: Channel<Msg>, question: &str) {
    if channel
        .data_bytes(Bytes::copy_from_slice(question.as_bytes()))
        .await
        .is_err()
    {
        return;
    }
    let mut typed = Vec::new();
    while !typed.contains(&b'\n') && !typed.contains(&b'\r') {
        match channel.wait().await {
            Some(ChannelMsg::Data { data }) => typed.extend_from_slice(&data),
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return,
            Some(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&typed).trim().to_owned();
    let done = format!("\nconfirmed with {answer:?} (simulated, nothing done)\n");
    let _ = channel.data_bytes(Bytes::from(done)).await;
    let _ = channel.exit_status(0).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

/// `yes`: 32 KiB of `y` lines at a time until the client goes away.
async fn endless(channel: &Channel<Msg>) {
    let block = Bytes::from(b"y\n".repeat(16 * 1024));
    while channel.data_bytes(block.clone()).await.is_ok() {}
}

/// Converts `\n` line endings to the `\r\n` a terminal prints.
fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    for &b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// What the next typed line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// A command.
    Command,
    /// The escalation secret (not echoed).
    Secret,
    /// The answer to the confirm question.
    Confirm,
}

/// An interactive shell playing the device's platform persona: banner, prompt per privilege
/// level, escalation with the enable secret, echo, paging with the persona's pager prompt
/// until a paging-off command, the persona's error text for rejected commands and its confirm
/// question.
async fn run_shell(
    spec: &DeviceSpec,
    counters: &Counters,
    mut gate: Gate,
    mut channel: Channel<Msg>,
    handle: &server::Handle,
) {
    let platform = spec.definition.clone();
    let persona = &platform.persona;
    let mut privileged = persona.user_prompt.is_none();
    let banner = format!(
        "\r\n{} (netauto simulator, {})\r\n\r\n{}",
        spec.name,
        platform.name,
        spec.prompt(privileged)
    );
    if channel.data_bytes(Bytes::from(banner)).await.is_err() {
        return;
    }
    let mut paging = spec.page_lines > 0 && persona.pager.is_some();
    let mut awaiting = Awaiting::Command;
    let mut line = Vec::new();
    loop {
        let Some(msg) = channel.wait().await else {
            return;
        };
        let ChannelMsg::Data { data } = msg else {
            if matches!(msg, ChannelMsg::Eof | ChannelMsg::Close) {
                return;
            }
            continue;
        };
        for &b in data.iter() {
            if b != b'\r' && b != b'\n' {
                line.push(b);
                continue;
            }
            let typed = String::from_utf8_lossy(&line).trim().to_owned();
            line.clear();
            // Echo what was typed, like a terminal does (not a secret).
            let mut echo = match awaiting {
                Awaiting::Secret => Vec::new(),
                _ => typed.clone().into_bytes(),
            };
            echo.extend_from_slice(b"\r\n");
            if channel.data_bytes(Bytes::from(echo)).await.is_err() {
                return;
            }
            let mut text = String::new();
            match std::mem::replace(&mut awaiting, Awaiting::Command) {
                Awaiting::Secret => {
                    if typed == spec.enable_secret {
                        privileged = true;
                    } else {
                        text = "% Access denied\n".to_owned();
                    }
                }
                Awaiting::Confirm => {
                    text = format!("confirmed with {typed:?} (simulated, nothing done)\n");
                }
                Awaiting::Command => match typed.as_str() {
                    "" => {}
                    "exit" | "logout" | "quit" => {
                        let _ = channel.eof().await;
                        let _ = channel.close().await;
                        return;
                    }
                    t if platform.exit_command.as_deref() == Some(t) => {
                        let _ = channel.eof().await;
                        let _ = channel.close().await;
                        return;
                    }
                    t if persona.paging_off.iter().any(|c| c == t) => paging = false,
                    t if platform.after_login.iter().any(|c| c == t) => {}
                    t if platform.escalation.as_ref().is_some_and(|e| e.command == t) => {
                        if !privileged {
                            let ask = persona.password_prompt.clone().unwrap_or_default();
                            if channel.data_bytes(Bytes::from(ask)).await.is_err() {
                                return;
                            }
                            awaiting = Awaiting::Secret;
                            continue;
                        }
                    }
                    t if !privileged => {
                        text = spec.rejection_text(t);
                    }
                    t if spec.rejected.contains(t) => {
                        counters.commands.fetch_add(1, Ordering::SeqCst);
                        text = spec.rejection_text(t);
                    }
                    t if persona.confirm_command.as_deref() == Some(t) => {
                        counters.commands.fetch_add(1, Ordering::SeqCst);
                        let ask = persona.confirm_prompt.clone().unwrap_or_default();
                        if channel.data_bytes(Bytes::from(ask)).await.is_err() {
                            return;
                        }
                        awaiting = Awaiting::Confirm;
                        continue;
                    }
                    command => {
                        counters.commands.fetch_add(1, Ordering::SeqCst);
                        if spec.failure == Some(FailureMode::Hang) {
                            while channel.wait().await.is_some() {}
                            return;
                        }
                        gate.pass().await;
                        tokio::time::sleep(spec.latency).await;
                        if spec.failure == Some(FailureMode::Endless) {
                            endless(&channel).await;
                            return;
                        }
                        let answer = spec.answer(command);
                        let mut text = answer.stdout.to_vec();
                        text.extend_from_slice(&answer.stderr);
                        if spec.failure == Some(FailureMode::CloseMidOutput) {
                            let half = Bytes::from(crlf(&text[..text.len() / 2]));
                            send_paced(spec, &channel, &half, false).await;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            disconnect(handle, "simulated failure: closed mid-output").await;
                            return;
                        }
                        let pager = persona.pager.as_deref().filter(|_| paging);
                        if !send_pages(spec, &mut channel, &text, pager).await {
                            return;
                        }
                    }
                },
            }
            if !text.is_empty() && !send_pages(spec, &mut channel, text.as_bytes(), None).await {
                return;
            }
            let prompt = spec.prompt(privileged);
            if channel.data_bytes(Bytes::from(prompt)).await.is_err() {
                return;
            }
        }
    }
}

/// Sends `text` a page at a time, waiting for a key at each `--More--`; `false` when the
/// channel is gone.
async fn send_pages(
    spec: &DeviceSpec,
    channel: &mut Channel<Msg>,
    text: &[u8],
    pager: Option<&str>,
) -> bool {
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let per_page = match pager {
        Some(_) => spec.page_lines.saturating_sub(1).max(1),
        None => usize::MAX,
    };
    let more = pager.unwrap_or_default().as_bytes();
    for (i, page) in lines.chunks(per_page).enumerate() {
        if i > 0 {
            if channel
                .data_bytes(Bytes::copy_from_slice(more))
                .await
                .is_err()
            {
                return false;
            }
            // Wait for a key: space or anything else continues, `q` stops.
            let key = loop {
                match channel.wait().await {
                    Some(ChannelMsg::Data { data }) if !data.is_empty() => break data[0],
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return false,
                    Some(_) => continue,
                }
            };
            let mut erase = vec![0x08u8; more.len()];
            erase.extend(std::iter::repeat_n(b' ', more.len()));
            erase.extend(std::iter::repeat_n(0x08u8, more.len()));
            if channel.data_bytes(Bytes::from(erase)).await.is_err() {
                return false;
            }
            if key == b'q' {
                return true;
            }
        }
        let chunk: Vec<u8> = page.iter().flat_map(|l| crlf(l)).collect();
        if !send_paced(spec, channel, &Bytes::from(chunk), false).await {
            return false;
        }
    }
    true
}
