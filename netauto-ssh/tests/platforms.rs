//! The platform conformance suite for every shipped definition, against the simulator.

#![cfg(feature = "sim")]

use futures_util::future::join_all;
use netauto_core::platform::Platforms;
use netauto_ssh::sim::suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_platform_passes_the_platform_suite() {
    let platforms = Platforms::builtin();
    assert!(platforms.len() >= 2);
    let results = join_all(platforms.iter().map(|p| {
        let p = p.clone();
        async move { (p.name.clone(), suite::check_platform(p).await) }
    }))
    .await;
    let mut failed = Vec::new();
    for (name, checks) in &results {
        assert!(checks.len() >= 2, "{name}: {checks:?}");
        for check in checks {
            let mark = if check.passed { "ok  " } else { "FAIL" };
            println!("{mark} {name:<20} {}", check.name);
            if !check.passed {
                failed.push(format!("{name}: {}: {}", check.name, check.detail));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// The suite catches a definition that does not fit its device: without failure patterns a
/// rejected command passes for `ok`, without pager patterns the paged output hangs, without
/// answers a question is never noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_that_does_not_fit_fails_the_suite() {
    let mut broken = (**Platforms::builtin().get("cisco_ios").unwrap()).clone();
    broken.failures.clear();
    broken.paging.clear();
    broken.answers.clear();
    broken.prompt_timeout_secs = 2;
    let checks = suite::check_platform_within(
        std::sync::Arc::new(broken),
        std::time::Duration::from_secs(3),
    )
    .await;
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        failed,
        [
            "long output, every page answered",
            "rejected command fails",
            "question not answered unless allowed",
            "question answered when allowed",
        ],
        "{checks:#?}"
    );
}
