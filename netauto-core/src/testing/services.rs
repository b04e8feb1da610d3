//! The services a test may need (a PostgreSQL server): where to find them, and what to do
//! when they are absent — skip with a printed reason, except under `CI=true`, where an absent
//! service is a failure.

/// The environment variable naming the PostgreSQL server tests use, e.g.
/// `postgres://postgres@127.0.0.1:5432/netauto_test`.
pub const POSTGRES_URL_VAR: &str = "NETAUTO_TEST_POSTGRES_URL";

/// The PostgreSQL test server's URL, or `None` after printing why the test is skipped.
///
/// # Panics
///
/// Under `CI=true` when [`POSTGRES_URL_VAR`] is not set: the PostgreSQL tests must run in CI.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{POSTGRES_URL_VAR} is not set, but CI=true: the PostgreSQL tests must run in CI"
            )
        }
        _ => {
            eprintln!(
                "skipped: {POSTGRES_URL_VAR} is not set (e.g. postgres://postgres@127.0.0.1:5432/netauto_test)"
            );
            None
        }
    }
}
