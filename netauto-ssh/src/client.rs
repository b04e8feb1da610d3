//! [`SshNetworkClient`]: the russh implementation of [`NetworkClient`].

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use netauto_core::platform::{Platform, Transport};
use netauto_core::{
    Device, ExecOptions, ExitStatus, NetworkClient, NetworkError, OutputEvent, OutputEvents,
    TimeoutPhase,
};
use russh::client::{self, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Disconnect};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::algorithms;
use crate::config::SshClientConfig;
use crate::credentials::{Credential, PrivateKeySource, Secret};
use crate::error::{map_connect_error, map_session_error};
use crate::jump::{Hop, JumpLease, JumpPool};
use crate::known_hosts::HostKeyPolicy;
use crate::pacing::Pacer;
use crate::shell::{ShellDriver, Step};
use crate::watch::{ExecWatch, Reaction};

/// Output events buffered between the SSH task and the consumer.
const EVENT_BUFFER: usize = 32;

/// Runs commands over SSH (russh), one session per command.
///
/// See the [crate docs](crate) for the knobs; build one from an [`SshClientConfig`].
#[derive(Debug, Clone)]
pub struct SshNetworkClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: SshClientConfig,
    pacer: Pacer,
    jumps: JumpPool,
    /// Shared by every login whose host-key preference needs no reordering (see
    /// [`Inner::connect`]).
    modern: Arc<client::Config>,
    legacy: Arc<client::Config>,
}

impl SshNetworkClient {
    /// A client with `config`.
    pub fn new(config: SshClientConfig) -> Self {
        if matches!(config.host_keys, HostKeyPolicy::AcceptAny) {
            tracing::warn!(
                event = "netauto.ssh.host_key_unchecked",
                "SSH client built with accept-any host keys: connections are open to \
                 man-in-the-middle attacks (labs only)"
            );
        }
        Self {
            inner: Arc::new(Inner {
                pacer: Pacer::new(config.pacing.clone()),
                jumps: JumpPool::default(),
                modern: Arc::new(russh_config(&config, algorithms::modern())),
                legacy: Arc::new(russh_config(&config, algorithms::legacy())),
                config,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SshClientConfig {
        &self.inner.config
    }

    /// Jump-host connections opened so far (one per jump host and route, plus
    /// reconnections after a loss).
    pub fn jump_connections_opened(&self) -> usize {
        self.inner.jumps.opened()
    }

    /// Channels opened through jump hosts to devices so far.
    pub fn jump_channels_opened(&self) -> usize {
        self.inner.jumps.channels()
    }

    /// SSH sessions open right now (pacing slots held).
    pub fn active_sessions(&self) -> usize {
        self.inner.pacer.active_sessions()
    }
}

#[async_trait]
impl NetworkClient for SshNetworkClient {
    async fn execute(
        &self,
        device: &Device,
        command: &str,
        options: &ExecOptions,
    ) -> Result<OutputEvents, NetworkError> {
        let inner = &self.inner;
        let started = Instant::now();
        let deadline = options
            .timeout
            .or(inner.config.timeouts.command)
            .map(|t| Deadline {
                at: started + t,
                length: t,
            });
        let references = inner.credential_refs(device)?;
        let slot = within(
            deadline,
            inner.pacer.acquire(device.id, &device_addr(device)),
        )
        .await?;
        let span = tracing::debug_span!("netauto.ssh.execute", device = %device.name);
        // The device's credential references in order; the next one only after an
        // authentication failure.
        let mut login = None;
        for (i, reference) in references.iter().enumerate() {
            let credential = inner.credential(device, reference).await?;
            let connecting = std::time::Instant::now();
            let connected = inner.connect(device, &credential, deadline).await;
            tracing::debug!(
                event = "netauto.ssh.connect",
                outcome = match &connected {
                    Ok(_) => "ok",
                    Err(e) => e.kind(),
                },
                duration_ms = connecting.elapsed().as_secs_f64() * 1000.0,
            );
            match connected {
                Ok((handle, lease)) => {
                    login = Some((handle, lease, credential, reference.clone()));
                    break;
                }
                Err(e @ NetworkError::Auth { .. }) if i + 1 < references.len() => {
                    tracing::info!(
                        event = "netauto.ssh.credential_fallback",
                        device = %device.name,
                        rejected = %reference,
                        next = %references[i + 1],
                        error = %e,
                        "login rejected; trying the device's next credential reference"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let Some((handle, lease, credential, reference)) = login else {
            unreachable!("the loop returns or logs in: references are never empty")
        };
        let platform = inner.config.platforms.resolve(&device.platform);
        let secret = match platform.escalation {
            Some(_) => credential.escalation_secret().cloned(),
            None => None,
        };
        drop(credential);
        let channel = within(deadline, handle.channel_open_session())
            .await?
            .map_err(|e| map_session_error(device_addr(device), e))?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let answer_prompts = options.answer_prompts;
        let redact = inner.config.redact_secrets;
        let idle = inner.config.timeouts.idle;
        let command = command.to_owned();
        let addr = device_addr(device);
        let task = async move {
            let logged_in = OutputEvent::LoggedIn {
                credential_ref: reference,
            };
            if tx.send(Ok(logged_in)).await.is_err() {
                let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
                return;
            }
            let pump = Pump {
                tx,
                idle,
                deadline,
                addr,
            };
            match platform.transport {
                Transport::Exec => {
                    let watch = ExecWatch::new(platform, answer_prompts, redact);
                    pump.exec(channel, &command, watch).await;
                }
                Transport::Shell => {
                    let driver = ShellDriver::new(platform.clone(), &command, answer_prompts)
                        .redacting(redact);
                    pump.shell(channel, &platform, driver, secret).await;
                }
            }
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            drop(lease);
            drop(slot);
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed())
    }
}

impl Inner {
    /// The device's credential references (comma-separated in `credential_ref`, tried in
    /// order), or the default one.
    fn credential_refs(&self, device: &Device) -> Result<Vec<String>, NetworkError> {
        let refs: Vec<String> = device
            .credential_ref
            .as_deref()
            .or(self.config.default_credential_ref.as_deref())
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        if refs.is_empty() {
            return Err(NetworkError::Unsupported(format!(
                "device {} has no credential reference and no default is configured",
                device.name
            )));
        }
        Ok(refs)
    }

    async fn credential(
        &self,
        device: &Device,
        reference: &str,
    ) -> Result<Credential, NetworkError> {
        self.config
            .credentials
            .credential(reference)
            .await
            .map_err(|e| NetworkError::Unsupported(format!("device {}: {e}", device.name)))
    }

    /// TCP connect (directly or through the device's jump hosts), handshake, host-key check
    /// and login, each under its deadline. The lease keeps the jump route open.
    async fn connect(
        &self,
        device: &Device,
        credential: &Credential,
        deadline: Option<Deadline>,
    ) -> Result<(Handle<ClientHandler>, Option<JumpLease>), NetworkError> {
        let addr = device_addr(device);
        let legacy = self.config.allows_legacy(device);
        let route = self.config.jump_hosts.route(device).map_err(|e| {
            NetworkError::Unsupported(format!("device {}: jump host: {e}", device.name))
        })?;
        let timeouts = self.config.timeouts;
        let connect = async {
            if route.is_empty() {
                let socket = self.tcp(&device.host, device.port).await?;
                let handle = self
                    .handshake(socket, &device.host, device.port, legacy)
                    .await?;
                Ok::<_, NetworkError>((handle, None))
            } else {
                // A jump connection that dies under the handshake (the bastion dropped it) is
                // opened again, once.
                let mut retried = false;
                loop {
                    let (stream, lease) = self
                        .jumps
                        .open(self, &route, &device.host, device.port)
                        .await?;
                    match self
                        .handshake(stream, &device.host, device.port, legacy)
                        .await
                    {
                        Ok(handle) => break Ok((handle, Some(lease))),
                        Err(e) if !retried && lease.is_lost() => {
                            tracing::info!(
                                event = "netauto.ssh.jump_lost",
                                device = %device.name,
                                error = %e,
                                "jump-host connection lost during the handshake; opening it again"
                            );
                            retried = true;
                            self.jumps.forget_lease(&route, &lease).await;
                        }
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        let (mut handle, lease) =
            phase(TimeoutPhase::Connect, timeouts.connect, deadline, connect).await??;
        phase(
            TimeoutPhase::Auth,
            timeouts.auth,
            deadline,
            authenticate(&mut handle, &addr, &device.username, credential),
        )
        .await??;
        Ok((handle, lease))
    }

    /// A TCP connection to `host:port`.
    pub(crate) async fn tcp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, NetworkError> {
        let socket = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| NetworkError::Connect {
                host: format!("{host}:{port}"),
                message: e.to_string(),
            })?;
        if self.config.nodelay {
            let _ = socket.set_nodelay(true);
        }
        Ok(socket)
    }

    /// The SSH handshake with `host:port` over `stream`, its host key checked.
    async fn handshake<S>(
        &self,
        stream: S,
        host: &str,
        port: u16,
        legacy: bool,
    ) -> Result<Handle<ClientHandler>, NetworkError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let addr = format!("{host}:{port}");
        let shared = if legacy { &self.legacy } else { &self.modern };
        // Ask first for the host-key types known_hosts records for the host, as OpenSSH
        // does: a device offering several types would otherwise present the one we prefer,
        // and a host known by another type is refused. The check itself is unchanged.
        let recorded = self.config.host_keys.recorded_algorithms(host, port);
        let config = match algorithms::order_host_keys(&shared.preferred.key, &recorded) {
            // A configuration for this login only: one small list and one `Arc` (russh's
            // `client::Config` is not `Clone`; its other fields are borrowed or plain values).
            Some(keys) => Arc::new(russh_config(
                &self.config,
                russh::Preferred {
                    key: Cow::Owned(keys),
                    ..shared.preferred.clone()
                },
            )),
            None => Arc::clone(shared),
        };
        let rejection = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            host: host.to_owned(),
            port,
            policy: self.config.host_keys.clone(),
            rejection: rejection.clone(),
        };
        client::connect_stream(config, stream, handler)
            .await
            .map_err(|e| {
                let rejected = rejection.lock().ok().and_then(|mut r| r.take());
                rejected.unwrap_or_else(|| map_connect_error(&addr, e, legacy))
            })
    }

    /// Handshake and login to one jump host, with its own credential reference.
    pub(crate) async fn login_hop<S>(
        &self,
        hop: &Hop,
        stream: S,
    ) -> Result<Handle<ClientHandler>, NetworkError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut handle = self.handshake(stream, &hop.host, hop.port, false).await?;
        let label = format!("jump host {}", hop.label());
        let reference = hop
            .credential_ref
            .as_deref()
            .or(self.config.default_credential_ref.as_deref())
            .ok_or_else(|| {
                NetworkError::Unsupported(format!(
                    "{label} has no credential reference and no default is configured"
                ))
            })?;
        let credential = self
            .config
            .credentials
            .credential(reference)
            .await
            .map_err(|e| NetworkError::Unsupported(format!("{label}: {e}")))?;
        authenticate(&mut handle, &label, &hop.user, &credential).await?;
        Ok(handle)
    }
}

/// The russh configuration of a login: `preferred` algorithms and the client's keepalive and
/// `TCP_NODELAY` settings.
fn russh_config(config: &SshClientConfig, preferred: russh::Preferred) -> client::Config {
    client::Config {
        preferred,
        keepalive_interval: config.keepalive_interval,
        keepalive_max: config.keepalive_max,
        nodelay: config.nodelay,
        ..client::Config::default()
    }
}

/// A command's deadline: when, and how long it was.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    length: Duration,
}

/// Runs `fut` until the command deadline.
async fn within<F: Future>(deadline: Option<Deadline>, fut: F) -> Result<F::Output, NetworkError> {
    match deadline {
        None => Ok(fut.await),
        Some(d) => tokio::time::timeout_at(d.at, fut)
            .await
            .map_err(|_| NetworkError::Timeout {
                phase: TimeoutPhase::Command,
                after: d.length,
            }),
    }
}

/// Runs `fut` for at most `limit`, or until the command deadline if that comes first; the
/// error names the deadline that passed.
async fn phase<F: Future>(
    phase: TimeoutPhase,
    limit: Duration,
    deadline: Option<Deadline>,
    fut: F,
) -> Result<F::Output, NetworkError> {
    let phase_end = Instant::now() + limit;
    match deadline {
        Some(d) if d.at <= phase_end => within(Some(d), fut).await,
        _ => tokio::time::timeout_at(phase_end, fut)
            .await
            .map_err(|_| NetworkError::Timeout {
                phase,
                after: limit,
            }),
    }
}

fn device_addr(device: &Device) -> String {
    format!("{}:{}", device.host, device.port)
}

/// Logs in: private key, then password, then keyboard-interactive answering password
/// prompts.
async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    addr: &str,
    user: &str,
    credential: &Credential,
) -> Result<(), NetworkError> {
    let err = |e: russh::Error| map_session_error(addr.to_owned(), e);
    let mut tried = Vec::new();
    if let Some(source) = &credential.private_key {
        let passphrase = credential.passphrase.as_ref().map(|p| p.expose());
        let key = match source {
            PrivateKeySource::File(path) => russh::keys::load_secret_key(path, passphrase),
            PrivateKeySource::Memory(pem) => {
                russh::keys::decode_secret_key(pem.expose(), passphrase)
            }
        }
        .map_err(|e| NetworkError::Unsupported(format!("cannot load private key: {e}")))?;
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(err)?
                .flatten()
        } else {
            None
        };
        let result = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(err)?;
        if result.success() {
            return Ok(());
        }
        tried.push("publickey");
    }
    if let Some(password) = &credential.password {
        let result = handle
            .authenticate_password(user, password.expose())
            .await
            .map_err(err)?;
        if result.success() {
            return Ok(());
        }
        tried.push("password");
        let mut reply = handle
            .authenticate_keyboard_interactive_start(user, None)
            .await
            .map_err(err)?;
        for _ in 0..5 {
            match reply {
                KeyboardInteractiveAuthResponse::Success => return Ok(()),
                KeyboardInteractiveAuthResponse::Failure { .. } => break,
                KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                    let answers = prompts
                        .iter()
                        .map(|p| {
                            if !p.echo || p.prompt.to_ascii_lowercase().contains("password") {
                                password.expose().to_owned()
                            } else {
                                String::new()
                            }
                        })
                        .collect();
                    reply = handle
                        .authenticate_keyboard_interactive_respond(answers)
                        .await
                        .map_err(err)?;
                }
            }
        }
        tried.push("keyboard-interactive");
    }
    Err(NetworkError::Auth {
        host: addr.to_owned(),
        message: if tried.is_empty() {
            format!("no password or key for user {user:?}")
        } else {
            format!("user {user:?} rejected (tried {})", tried.join(", "))
        },
    })
}

/// The russh client callbacks: only the host-key check matters.
pub(crate) struct ClientHandler {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    rejection: Arc<Mutex<Option<NetworkError>>>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.policy.verify(&self.host, self.port, key)
            }
            PublicKeyOrCertificate::Certificate(_) => Err(NetworkError::Unsupported(format!(
                "{}:{} presented a host certificate; only plain host keys are supported",
                self.host, self.port
            ))),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(e) => {
                if let Ok(mut slot) = self.rejection.lock() {
                    *slot = Some(e);
                }
                Ok(false)
            }
        }
    }
}

/// Moves a channel's output into the event stream.
struct Pump {
    tx: mpsc::Sender<Result<OutputEvent, NetworkError>>,
    idle: Duration,
    deadline: Option<Deadline>,
    addr: String,
}

/// How waiting for the next channel message ended.
enum Wait {
    Msg(ChannelMsg),
    Ended,
    Failed(NetworkError),
    /// The consumer dropped the stream (deadline, cancel, output cap): close the session.
    Gone,
}

impl Pump {
    async fn next(&self, channel: &mut Channel<client::Msg>) -> Wait {
        tokio::select! {
            biased;
            () = self.tx.closed() => Wait::Gone,
            r = phase(TimeoutPhase::Idle, self.idle, self.deadline, channel.wait()) => match r {
                Ok(Some(msg)) => Wait::Msg(msg),
                Ok(None) => Wait::Ended,
                Err(e) => Wait::Failed(e),
            },
        }
    }

    /// Runs a request on the channel unless the consumer goes away first (`None`).
    async fn unless_gone<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.tx.closed() => None,
            out = fut => Some(out),
        }
    }

    /// Sends an event; `false` when the consumer is gone.
    async fn send(&self, item: Result<OutputEvent, NetworkError>) -> bool {
        self.tx.send(item).await.is_ok()
    }

    fn closed(&self, what: &str) -> NetworkError {
        NetworkError::Closed(format!("{} closed the connection {what}", self.addr))
    }

    /// Passes on what the watch holds back (the last, unterminated lines while redacting)
    /// and says whether it redacted; `false` when the consumer is gone.
    async fn flush_watch(&self, watch: &mut ExecWatch) -> bool {
        for stderr in [false, true] {
            if let Some(rest) = watch.flush(stderr) {
                let event = if stderr {
                    OutputEvent::Stderr(rest)
                } else {
                    OutputEvent::Stdout(rest)
                };
                if !self.send(Ok(event)).await {
                    return false;
                }
            }
        }
        !watch.redacted() || self.send(Ok(OutputEvent::Redacted)).await
    }

    async fn exec(self, mut channel: Channel<client::Msg>, command: &str, mut watch: ExecWatch) {
        match self.unless_gone(channel.exec(true, command)).await {
            None => return,
            Some(Err(e)) => {
                self.send(Err(map_session_error(self.addr.clone(), e)))
                    .await;
                return;
            }
            Some(Ok(())) => {}
        }
        let mut exited = false;
        loop {
            let (event, reaction) = match self.next(&mut channel).await {
                Wait::Msg(ChannelMsg::Data { data }) => {
                    let (data, reaction) = watch.feed(false, data);
                    (OutputEvent::Stdout(data), reaction)
                }
                Wait::Msg(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    let (data, reaction) = watch.feed(true, data);
                    (OutputEvent::Stderr(data), reaction)
                }
                Wait::Msg(ChannelMsg::ExitStatus { exit_status }) => {
                    exited = true;
                    if !self.flush_watch(&mut watch).await {
                        let _ = channel.close().await;
                        return;
                    }
                    let status = match watch.rejection() {
                        Some(rejection) => ExitStatus::Rejected(rejection),
                        None => ExitStatus::Code(exit_status as i32),
                    };
                    (OutputEvent::Exit(status), Reaction::Read)
                }
                Wait::Msg(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    exited = true;
                    let status = ExitStatus::Signal(format!("{signal_name:?}"));
                    (OutputEvent::Exit(status), Reaction::Read)
                }
                Wait::Msg(ChannelMsg::Failure) => {
                    self.send(Err(NetworkError::Protocol(format!(
                        "{} refused to run the command",
                        self.addr
                    ))))
                    .await;
                    return;
                }
                // Closed without an exit status: the stream ends without one, which the
                // service records as `closed`, not `ok`.
                Wait::Msg(ChannelMsg::Close) => {
                    self.flush_watch(&mut watch).await;
                    return;
                }
                Wait::Msg(_) => continue,
                Wait::Ended if exited => return,
                Wait::Ended => {
                    self.send(Err(self.closed("before the command finished")))
                        .await;
                    return;
                }
                Wait::Failed(e) => {
                    let _ = channel.close().await;
                    self.send(Err(e)).await;
                    return;
                }
                Wait::Gone => {
                    let _ = channel.close().await;
                    return;
                }
            };
            if !self.send(Ok(event)).await {
                let _ = channel.close().await;
                return;
            }
            match reaction {
                Reaction::Read => {}
                Reaction::Reply(reply) => {
                    if let Err(e) = channel.data_bytes(Bytes::from(reply)).await {
                        self.send(Err(map_session_error(self.addr.clone(), e)))
                            .await;
                        return;
                    }
                }
                Reaction::Refuse(rejection) => {
                    let _ = channel.close().await;
                    self.send(Ok(OutputEvent::Exit(ExitStatus::Rejected(rejection))))
                        .await;
                    return;
                }
            }
        }
    }

    async fn shell(
        self,
        mut channel: Channel<client::Msg>,
        platform: &Platform,
        mut driver: ShellDriver,
        secret: Option<Secret>,
    ) {
        let terminal = &platform.terminal;
        let setup = async {
            channel
                .request_pty(
                    true,
                    &terminal.term,
                    terminal.width,
                    terminal.height,
                    0,
                    0,
                    &[],
                )
                .await?;
            channel.request_shell(true).await
        };
        match self.unless_gone(setup).await {
            None => return,
            Some(Err(e)) => {
                self.send(Err(map_session_error(self.addr.clone(), e)))
                    .await;
                return;
            }
            Some(Ok(())) => {}
        }
        let prompt_timeout = Duration::from_secs(platform.prompt_timeout_secs);
        let login_until = Instant::now() + prompt_timeout;
        loop {
            let wait = if driver.is_running() {
                self.next(&mut channel).await
            } else {
                match tokio::time::timeout_at(login_until, self.next(&mut channel)).await {
                    Ok(wait) => wait,
                    Err(_) => Wait::Failed(NetworkError::Protocol(format!(
                        "{} showed no prompt matching platform {} within {:?}",
                        self.addr, platform.name, prompt_timeout
                    ))),
                }
            };
            let data: Bytes = match wait {
                Wait::Msg(ChannelMsg::Data { data }) => data,
                Wait::Msg(ChannelMsg::ExtendedData { data, .. }) => data,
                Wait::Msg(ChannelMsg::Close) | Wait::Ended => {
                    if let Some(rest) = driver.take_rest() {
                        self.send(Ok(OutputEvent::Stdout(rest))).await;
                    }
                    self.send(Err(self.closed("before the prompt came back")))
                        .await;
                    return;
                }
                Wait::Msg(_) => continue,
                Wait::Failed(e) => {
                    let _ = channel.close().await;
                    self.send(Err(e)).await;
                    return;
                }
                Wait::Gone => {
                    let _ = channel.close().await;
                    return;
                }
            };
            for step in driver.feed(&data) {
                let typed = match step {
                    Step::Send(text) => Bytes::from(text),
                    Step::SendSecret => match &secret {
                        Some(secret) => driver.secret_line(secret),
                        None => {
                            let _ = channel.close().await;
                            self.send(Err(NetworkError::Auth {
                                host: self.addr.clone(),
                                message: format!(
                                    "platform {} asks for an escalation secret and the credential has neither enable_secret nor password",
                                    platform.name
                                ),
                            }))
                            .await;
                            return;
                        }
                    },
                    Step::Output(out) => {
                        if !self.send(Ok(OutputEvent::Stdout(out))).await {
                            let _ = channel.close().await;
                            return;
                        }
                        continue;
                    }
                    Step::Done(rejection) => {
                        if driver.redacted() && !self.send(Ok(OutputEvent::Redacted)).await {
                            let _ = channel.close().await;
                            return;
                        }
                        // The prompt came back: the shell's way of saying the command
                        // finished.
                        let status = match rejection {
                            Some(rejection) => ExitStatus::Rejected(rejection),
                            None => ExitStatus::Code(0),
                        };
                        if self.send(Ok(OutputEvent::Exit(status))).await
                            && let Some(exit) = &platform.exit_command
                        {
                            let line = format!("{exit}{}", platform.line_ending);
                            let _ = channel.data_bytes(Bytes::from(line)).await;
                        }
                        let _ = channel.close().await;
                        return;
                    }
                    Step::Refused(rejection) => {
                        let _ = channel.close().await;
                        self.send(Ok(OutputEvent::Exit(ExitStatus::Rejected(rejection))))
                            .await;
                        return;
                    }
                    Step::EscalationFailed(message) => {
                        let _ = channel.close().await;
                        self.send(Err(NetworkError::Auth {
                            host: self.addr.clone(),
                            message: format!("privilege escalation failed: {message}"),
                        }))
                        .await;
                        return;
                    }
                };
                if let Err(e) = channel.data_bytes(typed).await {
                    self.send(Err(map_session_error(self.addr.clone(), e)))
                        .await;
                    return;
                }
            }
        }
    }
}
