//! The device simulator (feature `sim`): many SSH "devices" on loopback, for tests, the demo
//! mode and benchmarks.
//!
//! Each device is a russh server on its own `127.0.0.1` port with its own host key and
//! credentials. It answers every command with canned or generated output of a set size, after
//! a set latency, at a set throughput, with a set exit code and stderr, and can misbehave on
//! purpose ([`FailureMode`]). Devices whose platform is a shell platform (`cisco_ios`…) also
//! offer an IOS-like interactive shell that pages output with `--More--` until
//! `terminal length 0`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use netauto_ssh::sim::{DeviceFarm, demo_specs};
//! use netauto_ssh::SshNetworkClient;
//!
//! let farm = DeviceFarm::start(demo_specs(25)).await?;
//! for device in farm.devices() {
//!     println!("{} {}:{} {}", device.name, device.host, device.port, device.platform);
//! }
//! // A client that trusts exactly the farm's host keys and knows its passwords.
//! let client = SshNetworkClient::new(farm.client_config());
//! # let _ = client; Ok(()) }
//! ```

mod farm;
mod server;
pub mod suite;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use netauto_core::platform::{Platform, Platforms, Transport};
use russh::keys::{Algorithm, PublicKey};

pub use farm::{DeviceFarm, SimDevice, SimStats};

/// How a simulated device misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Every login is rejected.
    AuthReject,
    /// Commands are accepted but never print, exit or close.
    Hang,
    /// The connection is dropped after half of the output.
    CloseMidOutput,
    /// The first command on a connection runs; then the connection is closed and further
    /// channels are refused (like devices that allow one exec per login).
    CloseAfterOneExec,
    /// The TCP connection is accepted but the SSH banner never comes (a hung SSH daemon, a
    /// middlebox): the connect phase hangs.
    NoBanner,
    /// Logins succeed but a session channel is never answered.
    HangChannelOpen,
    /// The PTY and shell requests are never answered and no prompt ever comes (shell
    /// platforms).
    HangPty,
    /// Every command prints `y` lines forever, as fast as the client reads (`yes`).
    Endless,
    /// Commands print their output, then the channel closes without an exit status.
    NoExitStatus,
    /// As a jump host: when a forwarded channel ends, the whole connection is dropped (a
    /// bastion restarting, a firewall forgetting the session).
    DropAfterForward,
}

/// A canned answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannedOutput {
    /// Standard output.
    pub stdout: Bytes,
    /// Standard error.
    pub stderr: Bytes,
    /// Exit code.
    pub exit_code: u32,
}

impl CannedOutput {
    /// Output with exit code 0 and no stderr.
    pub fn stdout(stdout: impl Into<Bytes>) -> Self {
        Self {
            stdout: stdout.into(),
            stderr: Bytes::new(),
            exit_code: 0,
        }
    }
}

/// One simulated device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Name (also the shell prompt: `name#`).
    pub name: String,
    /// Platform; shell platforms (`cisco_ios`, `cisco_iosxe`, `cisco_asa`) also get an
    /// interactive shell.
    pub platform: String,
    /// Login user.
    pub username: String,
    /// Login password (password and keyboard-interactive).
    pub password: String,
    /// Public keys accepted for the user.
    pub authorized_keys: Vec<PublicKey>,
    /// Answers to specific commands (exact match after trimming).
    pub commands: BTreeMap<String, CannedOutput>,
    /// Size of the generated output of any other command, in bytes.
    pub output_bytes: usize,
    /// Written to stderr by every generated answer.
    pub stderr: Bytes,
    /// Exit code of every generated answer.
    pub exit_code: u32,
    /// Delay before the first byte of every answer.
    pub latency: Duration,
    /// Output rate in bytes per second (`None`: as fast as the connection goes).
    pub throughput: Option<u64>,
    /// Lines per page of the interactive shell before the platform's pager prompt (until
    /// one of its paging-off commands); 0 never pages.
    pub page_lines: usize,
    /// Commands the device rejects with its platform's error text.
    pub rejected: BTreeSet<String>,
    /// Forwards `direct-tcpip` channels (acts as a jump host, like sshd's
    /// `AllowTcpForwarding yes`); refused when `false`.
    pub forwarding: bool,
    /// The secret its privilege escalation (`enable`) asks for.
    pub enable_secret: String,
    /// The platform definition the device plays (default: the shipped definition of
    /// `platform`, `generic` when unknown).
    pub definition: Arc<Platform>,
    /// Deliberate misbehaviour.
    pub failure: Option<FailureMode>,
    /// Offer only legacy algorithms (diffie-hellman-group14-sha1, ssh-rsa host key,
    /// aes-cbc, hmac-sha1), like an old device.
    pub legacy_only: bool,
    /// Refuse the `password` method, so logins must use keyboard-interactive (like devices
    /// behind some AAA setups).
    pub keyboard_interactive_only: bool,
    /// Delay before answering each login attempt (a slow AAA server).
    pub auth_delay: Duration,
    /// Types of the host keys the device has, one key each (any `Algorithm::Rsa { .. }`
    /// means one RSA key, offered with every RSA signature algorithm). The first is the
    /// device's main key: the one [`SimDevice::host_key_fingerprint`] names and
    /// [`DeviceFarm::known_hosts`] records. Empty: one Ed25519 key. Ignored on a
    /// legacy-only device, which has one RSA key and offers it as `ssh-rsa` only.
    pub host_key_algorithms: Vec<Algorithm>,
}

impl DeviceSpec {
    /// A well-behaved device answering 1 KiB of generated output at once.
    pub fn new(name: impl Into<String>, platform: impl Into<String>) -> Self {
        let name = name.into();
        let platform = platform.into();
        Self {
            password: format!("sim-{name}-pw"),
            enable_secret: format!("sim-{name}-enable"),
            rejected: BTreeSet::new(),
            forwarding: false,
            definition: Platforms::builtin().resolve(&platform),
            name,
            platform,
            username: "netauto".to_owned(),
            authorized_keys: Vec::new(),
            commands: BTreeMap::new(),
            output_bytes: 1024,
            stderr: Bytes::new(),
            exit_code: 0,
            latency: Duration::ZERO,
            throughput: None,
            page_lines: 24,
            failure: None,
            legacy_only: false,
            keyboard_interactive_only: false,
            auth_delay: Duration::ZERO,
            host_key_algorithms: Vec::new(),
        }
    }

    /// Sets the generated output size.
    pub fn with_output_bytes(mut self, bytes: usize) -> Self {
        self.output_bytes = bytes;
        self
    }

    /// Sets the latency before the first byte.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the output rate.
    pub fn with_throughput(mut self, bytes_per_second: u64) -> Self {
        self.throughput = Some(bytes_per_second);
        self
    }

    /// Sets the exit code of generated answers.
    pub fn with_exit_code(mut self, code: u32) -> Self {
        self.exit_code = code;
        self
    }

    /// Sets the stderr of generated answers.
    pub fn with_stderr(mut self, stderr: impl Into<Bytes>) -> Self {
        self.stderr = stderr.into();
        self
    }

    /// Adds a canned answer.
    pub fn with_command(mut self, command: impl Into<String>, output: CannedOutput) -> Self {
        self.commands.insert(command.into(), output);
        self
    }

    /// Sets the failure mode.
    pub fn with_failure(mut self, failure: FailureMode) -> Self {
        self.failure = Some(failure);
        self
    }

    /// Sets the login.
    pub fn with_login(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = username.into();
        self.password = password.into();
        self
    }

    /// Accepts `key` for public-key login.
    pub fn with_authorized_key(mut self, key: PublicKey) -> Self {
        self.authorized_keys.push(key);
        self
    }

    /// Offers only legacy algorithms.
    pub fn legacy_only(mut self) -> Self {
        self.legacy_only = true;
        self
    }

    /// Accepts the password only through keyboard-interactive.
    pub fn keyboard_interactive_only(mut self) -> Self {
        self.keyboard_interactive_only = true;
        self
    }

    /// Delays every login answer.
    pub fn with_auth_delay(mut self, delay: Duration) -> Self {
        self.auth_delay = delay;
        self
    }

    /// Gives the device one host key of each type in `algorithms` (like gear that offers
    /// RSA, ECDSA and Ed25519 keys), instead of its single default key.
    pub fn with_host_key_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.host_key_algorithms = algorithms.to_vec();
        self
    }

    /// Whether the device offers an interactive shell (its platform's transport is
    /// `shell`).
    pub fn has_shell(&self) -> bool {
        self.definition.transport == Transport::Shell
    }

    /// Rejects `command` with the platform's error text.
    pub fn with_rejected(mut self, command: impl Into<String>) -> Self {
        self.rejected.insert(command.into());
        self
    }

    /// Forwards `direct-tcpip` channels: the device can be a jump host.
    pub fn with_forwarding(mut self) -> Self {
        self.forwarding = true;
        self
    }

    /// Sets the escalation secret.
    pub fn with_enable_secret(mut self, secret: impl Into<String>) -> Self {
        self.enable_secret = secret.into();
        self
    }

    /// Plays `definition` instead of the shipped definition of its platform.
    pub fn with_definition(mut self, definition: Arc<Platform>) -> Self {
        self.definition = definition;
        self
    }

    /// The prompt at privileged (`true`) or user level.
    pub fn prompt(&self, privileged: bool) -> String {
        let persona = &self.definition.persona;
        let template = match (&persona.user_prompt, privileged) {
            (Some(user), false) => user,
            _ => &persona.privileged_prompt,
        };
        template.replace("{name}", &self.name)
    }

    /// What the device prints when it rejects `command`.
    pub fn rejection_text(&self, command: &str) -> String {
        let mut text = self
            .definition
            .persona
            .rejected
            .replace("{command}", command);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// The answer to `command`: canned if there is one, else generated.
    pub fn answer(&self, command: &str) -> CannedOutput {
        let command = command.trim();
        if let Some(canned) = self.commands.get(command) {
            return canned.clone();
        }
        CannedOutput {
            stdout: generate(&self.name, command, self.output_bytes),
            stderr: self.stderr.clone(),
            exit_code: self.exit_code,
        }
    }
}

/// Deterministic text of exactly `bytes` bytes, in lines of at most 72 bytes: a header naming
/// the device and command, then numbered lines.
pub fn generate(device: &str, command: &str, bytes: usize) -> Bytes {
    let mut out = format!("{device}: output of '{command}'\n").into_bytes();
    let mut n = 1u64;
    while out.len() < bytes {
        let line = format!(
            "{n:06} interface Ethernet{n} is up, line protocol is up ({device})\n",
            n = n
        );
        out.extend_from_slice(line.as_bytes());
        n += 1;
    }
    out.truncate(bytes);
    if let Some(last) = out.last_mut()
        && bytes > 1
    {
        *last = b'\n';
    }
    Bytes::from(out)
}

/// The command every device of [`platform_specs`] (and of the platform suite) rejects with its
/// platform's error text.
pub const REJECTED_COMMAND: &str = "show nonexistent-command";

/// One device per platform of `platforms`, named after it (`cisco-ios-01`), playing its
/// persona: it escalates, pages, rejects [`REJECTED_COMMAND`] with the platform's error
/// text and asks its confirm question, like the platform suite's device.
pub fn platform_specs(platforms: &Platforms) -> Vec<DeviceSpec> {
    platforms
        .iter()
        .enumerate()
        .map(|(i, p)| {
            DeviceSpec::new(format!("{}-01", p.name.replace('_', "-")), p.name.clone())
                .with_definition(p.clone())
                .with_rejected(REJECTED_COMMAND)
                .with_output_bytes(2048 << (i % 3))
                .with_latency(Duration::from_millis(10 + (i as u64 * 29) % 200))
        })
        .collect()
}

/// About `n` mixed-platform devices for the demo: Cisco IOS (shell, paging), Arista EOS,
/// Junos and Linux (exec), with varied output sizes (1–64 KiB) and latencies (20–400 ms),
/// one device failing (`AuthReject`) and one answering with exit code 1 and stderr.
pub fn demo_specs(n: usize) -> Vec<DeviceSpec> {
    const PLATFORMS: [(&str, &str); 4] = [
        ("cisco_ios", "core-sw"),
        ("arista_eos", "leaf"),
        ("junos", "edge-rtr"),
        ("linux", "srv"),
    ];
    (0..n)
        .map(|i| {
            let (platform, prefix) = PLATFORMS[i % PLATFORMS.len()];
            let name = format!("{prefix}-{:02}", i / PLATFORMS.len() + 1);
            let mut spec = DeviceSpec::new(name, platform)
                .with_output_bytes(1024 << (i % 7))
                .with_latency(Duration::from_millis(20 + (i as u64 * 37) % 380));
            if i == 5 {
                spec = spec.with_failure(FailureMode::AuthReject);
            }
            if i == 7 {
                spec = spec
                    .with_exit_code(1)
                    .with_stderr("error: interface counters unavailable\n");
            }
            spec
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_output_has_the_exact_size() {
        for size in [0, 1, 50, 1024, 20 * 1024 + 3] {
            assert_eq!(generate("d", "show version", size).len(), size);
        }
        let text = generate("r1", "show version", 500);
        assert!(text.starts_with(b"r1: output of 'show version'\n"));
        assert!(text.ends_with(b"\n"));
    }

    #[test]
    fn demo_specs_are_mixed_and_one_fails() {
        let specs = demo_specs(25);
        assert_eq!(specs.len(), 25);
        let failing = specs.iter().filter(|s| s.failure.is_some()).count();
        assert_eq!(failing, 1);
        assert!(specs.iter().any(|s| s.has_shell()));
        assert!(specs.iter().any(|s| s.platform == "linux"));
        let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 25, "names are unique");
    }
}
