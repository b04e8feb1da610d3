//! The platform conformance suite: one set of checks run for every platform definition
//! against a simulated device playing that definition's persona, through the real
//! [`SshNetworkClient`].
//!
//! For each definition: login (with privilege escalation when the persona starts
//! unprivileged), a long output read whole with the definition's paging-off commands and
//! again with none (so every pager prompt is answered), a rejected command detected as
//! failed, a confirm question answered only when allowed (otherwise the command ends at once
//! with `prompt_unanswered`), and a wrong escalation secret reported as an authentication
//! failure.
//!
//! ```no_run
//! # async fn demo() {
//! use netauto_core::platform::Platforms;
//! use netauto_ssh::sim::suite;
//!
//! for platform in Platforms::builtin().iter() {
//!     for check in suite::check_platform(platform.clone()).await {
//!         assert!(check.passed, "{}: {}: {}", platform.name, check.name, check.detail);
//!     }
//! }
//! # }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use netauto_core::platform::{Platform, Platforms, Transport};
use netauto_core::{
    Device, DeviceId, ExecOptions, ExitStatus, NetworkClient, NetworkError, OutputEvent,
    RejectionKind,
};

use super::{DeviceFarm, DeviceSpec, generate};
use crate::{Credential, SshNetworkClient, StaticCredentials};

pub use super::REJECTED_COMMAND;
/// Output size of the long-output check: 64 KiB, thousands of lines, dozens of pages.
const LONG_OUTPUT: usize = 64 * 1024;
/// Deadline of each command in [`check_platform`]; an unanswered question must end the
/// command well before it (in a third of it).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// One check on one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`login`, `long output, paged`, …).
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// How one command ended, as the client reported it.
#[derive(Debug)]
struct Outcome {
    output: Vec<u8>,
    exit: Option<ExitStatus>,
    error: Option<NetworkError>,
    took: Duration,
}

/// Runs every check for `platform` against a fresh simulated device; answers one [`Check`]
/// per check that applies to it.
pub async fn check_platform(platform: Arc<Platform>) -> Vec<Check> {
    check_platform_within(platform, DEADLINE).await
}

/// [`check_platform`] with another deadline per command.
pub async fn check_platform_within(platform: Arc<Platform>, deadline: Duration) -> Vec<Check> {
    let spec = DeviceSpec::new("sw-01.lab", platform.name.clone())
        .with_definition(platform.clone())
        .with_output_bytes(LONG_OUTPUT)
        .with_rejected(REJECTED_COMMAND);
    let farm = match DeviceFarm::start(vec![spec]).await {
        Ok(farm) => farm,
        Err(e) => {
            return vec![Check {
                name: "simulator",
                passed: false,
                detail: format!("cannot start: {e}"),
            }];
        }
    };
    let device = farm_device(&farm);
    let mut registry = Platforms::empty();
    let _ = registry.insert((*platform).clone(), "suite");
    let client = SshNetworkClient::new(farm.client_config().with_platforms(registry.clone()));
    let mut checks = Vec::new();

    let command = "show running-config";
    let want = generate(&device.name, command, LONG_OUTPUT);
    let run = execute(&client, &device, command, false, deadline).await;
    checks.push(Check {
        name: "login and long output",
        passed: run.exit == Some(ExitStatus::Code(0)) && run.output == want[..],
        detail: run.describe(want.len()),
    });

    if platform.transport == Transport::Shell && platform.persona.pager.is_some() {
        let mut paged = (*platform).clone();
        paged.after_login.clear();
        let mut registry = Platforms::empty();
        let _ = registry.insert(paged, "suite");
        let paging = SshNetworkClient::new(farm.client_config().with_platforms(registry));
        let run = execute(&paging, &device, command, false, deadline).await;
        checks.push(Check {
            name: "long output, every page answered",
            passed: run.exit == Some(ExitStatus::Code(0)) && run.output == want[..],
            detail: run.describe(want.len()),
        });
    }

    let run = execute(&client, &device, REJECTED_COMMAND, false, deadline).await;
    let rejected = match run.exit.clone() {
        Some(ExitStatus::Rejected(r)) => r.kind == RejectionKind::CommandRejected,
        Some(ExitStatus::Code(code)) => code != 0,
        _ => false,
    };
    checks.push(Check {
        name: "rejected command fails",
        passed: rejected,
        detail: run.describe(0),
    });

    if let Some(confirm) = platform.persona.confirm_command.as_deref() {
        let run = execute(&client, &device, confirm, false, deadline).await;
        let unanswered = matches!(
            &run.exit,
            Some(ExitStatus::Rejected(r)) if r.kind == RejectionKind::PromptUnanswered
        );
        checks.push(Check {
            name: "question not answered unless allowed",
            passed: unanswered && run.took < deadline / 3,
            detail: run.describe(0),
        });
        let run = execute(&client, &device, confirm, true, deadline).await;
        let answered = run.exit == Some(ExitStatus::Code(0))
            && String::from_utf8_lossy(&run.output).contains("confirmed with");
        checks.push(Check {
            name: "question answered when allowed",
            passed: answered,
            detail: run.describe(0),
        });
    }

    if platform.escalation.is_some() && platform.persona.user_prompt.is_some() {
        let spec =
            DeviceSpec::new("sw-02.lab", platform.name.clone()).with_definition(platform.clone());
        let password = spec.password.clone();
        let detail = match DeviceFarm::start(vec![spec]).await {
            Ok(farm2) => {
                // The right password, a wrong enable secret.
                let device = farm_device(&farm2);
                let mut credentials = StaticCredentials::new();
                credentials.insert(
                    device.credential_ref.clone().unwrap_or_default(),
                    Credential::password(password).with_enable_secret("not-the-enable-secret"),
                );
                let config = farm2
                    .client_config()
                    .with_credentials(credentials)
                    .with_platforms(registry.clone());
                let client = SshNetworkClient::new(config);
                let run = execute(&client, &device, command, false, deadline).await;
                let passed = matches!(run.error, Some(NetworkError::Auth { .. }));
                Check {
                    name: "wrong escalation secret is an auth failure",
                    passed,
                    detail: run.describe(0),
                }
            }
            Err(e) => Check {
                name: "wrong escalation secret is an auth failure",
                passed: false,
                detail: format!("cannot start: {e}"),
            },
        };
        checks.push(detail);
    }
    checks
}

fn farm_device(farm: &DeviceFarm) -> Device {
    farm.devices()[0].to_new_device().into_device(DeviceId(1))
}

async fn execute(
    client: &SshNetworkClient,
    device: &Device,
    command: &str,
    answer: bool,
    deadline: Duration,
) -> Outcome {
    let started = Instant::now();
    let options = ExecOptions::default()
        .with_timeout(deadline)
        .with_answer_prompts(answer);
    let mut outcome = Outcome {
        output: Vec::new(),
        exit: None,
        error: None,
        took: Duration::ZERO,
    };
    match client.execute(device, command, &options).await {
        Err(e) => outcome.error = Some(e),
        Ok(mut events) => {
            let read = async {
                while let Some(event) = events.next().await {
                    match event {
                        Ok(OutputEvent::Stdout(b) | OutputEvent::Stderr(b)) => {
                            outcome.output.extend_from_slice(&b)
                        }
                        Ok(OutputEvent::Exit(status)) => outcome.exit = Some(status),
                        Ok(OutputEvent::LoggedIn { .. } | OutputEvent::Redacted) => {}
                        Err(e) => outcome.error = Some(e),
                    }
                }
            };
            if tokio::time::timeout(deadline, read).await.is_err() {
                outcome.error = Some(NetworkError::Timeout {
                    phase: netauto_core::TimeoutPhase::Command,
                    after: deadline,
                });
            }
        }
    }
    outcome.took = started.elapsed();
    outcome
}

impl Outcome {
    fn describe(&self, expected_bytes: usize) -> String {
        let text = String::from_utf8_lossy(&self.output);
        let start: String = text.chars().take(160).collect();
        format!(
            "exit {:?}, error {:?}, {} bytes (expected {expected_bytes}) in {:?}, output starts {start:?}",
            self.exit,
            self.error.as_ref().map(ToString::to_string),
            self.output.len(),
            self.took
        )
    }
}
