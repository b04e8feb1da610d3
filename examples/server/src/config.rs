//! [`WebLimits`] and [`ServeConfig`]: the web app's defences against abuse, read from
//! `NETAUTO_…` variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `NETAUTO_LOGIN_FREE_FAILURES` | `5` | failed logins per user name and per client address before backoff |
//! | `NETAUTO_LOGIN_BACKOFF_MAX` | `15m` | longest backoff (1 s after the last free failure, doubling) |
//! | `NETAUTO_LOGIN_THROTTLE_ENTRIES` | `10000` | user names and addresses the throttle remembers |
//! | `NETAUTO_LOGIN_CONCURRENCY` | `2` | password verifications at once |
//! | `NETAUTO_LOGIN_QUEUE_WAIT` | `5s` | longest wait for a verification slot, then `503` |
//! | `NETAUTO_SESSION_IDLE` | `2h` | a session without requests (and no open stream) ends |
//! | `NETAUTO_SESSION_LIFETIME` | `12h` | every session ends this long after it began |
//! | `NETAUTO_MAX_SESSIONS` | `10000` | logged-in sessions kept |
//! | `NETAUTO_MAX_ANON_SESSIONS` | `10000` | anonymous (login form) sessions kept |
//! | `NETAUTO_STREAMS_PER_SESSION` | `16` | open event streams per session, then `429` |
//! | `NETAUTO_HEADER_TIMEOUT` | `10s` | time to send a request's headers |
//! | `NETAUTO_MAX_CONNECTIONS` | `1024` | connections served at once; more wait |
//! | `NETAUTO_SHUTDOWN_GRACE` | `10s` | how long a shutdown waits for open requests |
//!
//! Durations are seconds, or a number with a unit: `500ms`, `90s`, `15m`, `2h`. A value that
//! does not parse or is out of range is an error naming the variable, never a silent default.

use std::time::Duration;

use netauto_core::ConfigError;

/// `NETAUTO_LOGIN_FREE_FAILURES`
pub const LOGIN_FREE_FAILURES_VAR: &str = "NETAUTO_LOGIN_FREE_FAILURES";
/// `NETAUTO_LOGIN_BACKOFF_MAX`
pub const LOGIN_BACKOFF_MAX_VAR: &str = "NETAUTO_LOGIN_BACKOFF_MAX";
/// `NETAUTO_LOGIN_THROTTLE_ENTRIES`
pub const LOGIN_THROTTLE_ENTRIES_VAR: &str = "NETAUTO_LOGIN_THROTTLE_ENTRIES";
/// `NETAUTO_LOGIN_CONCURRENCY`
pub const LOGIN_CONCURRENCY_VAR: &str = "NETAUTO_LOGIN_CONCURRENCY";
/// `NETAUTO_LOGIN_QUEUE_WAIT`
pub const LOGIN_QUEUE_WAIT_VAR: &str = "NETAUTO_LOGIN_QUEUE_WAIT";
/// `NETAUTO_SESSION_IDLE`
pub const SESSION_IDLE_VAR: &str = "NETAUTO_SESSION_IDLE";
/// `NETAUTO_SESSION_LIFETIME`
pub const SESSION_LIFETIME_VAR: &str = "NETAUTO_SESSION_LIFETIME";
/// `NETAUTO_MAX_SESSIONS`
pub const MAX_SESSIONS_VAR: &str = "NETAUTO_MAX_SESSIONS";
/// `NETAUTO_MAX_ANON_SESSIONS`
pub const MAX_ANON_SESSIONS_VAR: &str = "NETAUTO_MAX_ANON_SESSIONS";
/// `NETAUTO_STREAMS_PER_SESSION`
pub const STREAMS_PER_SESSION_VAR: &str = "NETAUTO_STREAMS_PER_SESSION";
/// `NETAUTO_HEADER_TIMEOUT`
pub const HEADER_TIMEOUT_VAR: &str = "NETAUTO_HEADER_TIMEOUT";
/// `NETAUTO_MAX_CONNECTIONS`
pub const MAX_CONNECTIONS_VAR: &str = "NETAUTO_MAX_CONNECTIONS";
/// `NETAUTO_SHUTDOWN_GRACE`
pub const SHUTDOWN_GRACE_VAR: &str = "NETAUTO_SHUTDOWN_GRACE";

/// Every variable read by [`WebLimits::from_env`] and [`ServeConfig::from_env`], for usage
/// texts.
pub const VARS: [&str; 13] = [
    LOGIN_FREE_FAILURES_VAR,
    LOGIN_BACKOFF_MAX_VAR,
    LOGIN_THROTTLE_ENTRIES_VAR,
    LOGIN_CONCURRENCY_VAR,
    LOGIN_QUEUE_WAIT_VAR,
    SESSION_IDLE_VAR,
    SESSION_LIFETIME_VAR,
    MAX_SESSIONS_VAR,
    MAX_ANON_SESSIONS_VAR,
    STREAMS_PER_SESSION_VAR,
    HEADER_TIMEOUT_VAR,
    MAX_CONNECTIONS_VAR,
    SHUTDOWN_GRACE_VAR,
];

/// What the app allows one client: login attempts, password checks, sessions, event streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebLimits {
    /// Failed logins per user name and per client address before backoff starts.
    pub login_free_failures: u32,
    /// Longest backoff: 1 s after the last free failure, doubling with each further one.
    pub login_backoff_max: Duration,
    /// Most user names and client addresses the throttle remembers; beyond it the least
    /// telling entry (fewest failures, then oldest) is forgotten.
    pub login_throttle_entries: usize,
    /// Password verifications (argon2: CPU and memory heavy) running at once.
    pub login_concurrency: usize,
    /// Longest wait for a verification slot before the login is answered `503`.
    pub login_queue_wait: Duration,
    /// A session with no request and no open event stream for this long ends.
    pub session_idle: Duration,
    /// Every session ends this long after it began, however active.
    pub session_lifetime: Duration,
    /// Most logged-in sessions; a new login beyond it ends the least recently used one.
    pub max_sessions: usize,
    /// Most anonymous (login form) sessions; beyond it the least recently used anonymous one
    /// ends. Anonymous sessions never evict logged-in ones.
    pub max_anonymous_sessions: usize,
    /// Most event streams one session holds open; more are answered `429`.
    pub streams_per_session: usize,
}

impl Default for WebLimits {
    fn default() -> Self {
        Self {
            login_free_failures: 5,
            login_backoff_max: Duration::from_secs(15 * 60),
            login_throttle_entries: 10_000,
            login_concurrency: 2,
            login_queue_wait: Duration::from_secs(5),
            session_idle: Duration::from_secs(2 * 3600),
            session_lifetime: Duration::from_secs(12 * 3600),
            max_sessions: 10_000,
            max_anonymous_sessions: 10_000,
            streams_per_session: 16,
        }
    }
}

impl WebLimits {
    /// The defaults, overridden by the `NETAUTO_…` variables that are set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`WebLimits::from_env`] reading variables through `env`.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let count = |var, default, max| read(&env, var, default, |v| parse_count(v, 1, max));
        let span =
            |var, default, min, max| read(&env, var, default, |v| parse_duration(v, min, max));
        Ok(Self {
            login_free_failures: read(&env, LOGIN_FREE_FAILURES_VAR, d.login_free_failures, |v| {
                parse_count(v, 1, 1000).map(|n| n as u32)
            })?,
            login_backoff_max: span(
                LOGIN_BACKOFF_MAX_VAR,
                d.login_backoff_max,
                Duration::from_secs(1),
                Duration::from_secs(86_400),
            )?,
            login_throttle_entries: count(
                LOGIN_THROTTLE_ENTRIES_VAR,
                d.login_throttle_entries,
                10_000_000,
            )?,
            login_concurrency: count(LOGIN_CONCURRENCY_VAR, d.login_concurrency, 1024)?,
            login_queue_wait: span(
                LOGIN_QUEUE_WAIT_VAR,
                d.login_queue_wait,
                Duration::ZERO,
                Duration::from_secs(300),
            )?,
            session_idle: span(
                SESSION_IDLE_VAR,
                d.session_idle,
                Duration::from_secs(1),
                Duration::from_secs(30 * 86_400),
            )?,
            session_lifetime: span(
                SESSION_LIFETIME_VAR,
                d.session_lifetime,
                Duration::from_secs(1),
                Duration::from_secs(30 * 86_400),
            )?,
            max_sessions: count(MAX_SESSIONS_VAR, d.max_sessions, 10_000_000)?,
            max_anonymous_sessions: count(
                MAX_ANON_SESSIONS_VAR,
                d.max_anonymous_sessions,
                10_000_000,
            )?,
            streams_per_session: count(STREAMS_PER_SESSION_VAR, d.streams_per_session, 10_000)?,
        })
    }
}

/// How the server takes connections (used by [`serve`](crate::serve::serve)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// A connection that has not sent a whole request head this long after it opened, or
    /// after its previous response, is closed (slow or idle clients).
    pub header_timeout: Duration,
    /// Connections served at once. Beyond it the server stops accepting: new connections wait
    /// in the listen backlog until one closes.
    pub max_connections: usize,
    /// At shutdown, how long open requests may take to finish before their connections are
    /// closed anyway. Event streams end at once.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServeConfig {
    /// The defaults, overridden by the `NETAUTO_…` variables that are set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`ServeConfig::from_env`] reading variables through `env`.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            header_timeout: read(&env, HEADER_TIMEOUT_VAR, d.header_timeout, |v| {
                parse_duration(v, Duration::from_millis(100), Duration::from_secs(3600))
            })?,
            max_connections: read(&env, MAX_CONNECTIONS_VAR, d.max_connections, |v| {
                parse_count(v, 1, 1_000_000)
            })?,
            shutdown_grace: read(&env, SHUTDOWN_GRACE_VAR, d.shutdown_grace, |v| {
                parse_duration(v, Duration::ZERO, Duration::from_secs(3600))
            })?,
        })
    }
}

fn read<T>(
    env: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match env(var) {
        None => Ok(default),
        Some(value) => parse(value.trim()).map_err(|reason| ConfigError { var, value, reason }),
    }
}

/// A whole number in `min..=max`.
fn parse_count(value: &str, min: usize, max: usize) -> Result<usize, String> {
    let n: usize = value
        .parse()
        .map_err(|_| format!("not a whole number (expected {min} to {max})"))?;
    if !(min..=max).contains(&n) {
        return Err(format!("out of range (expected {min} to {max})"));
    }
    Ok(n)
}

/// Seconds, or a number with a unit `ms`, `s`, `m`, `h`, in `min..=max`.
pub(crate) fn parse_duration(
    value: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "not a duration (seconds, or with a unit: 500ms, 90s, 15m, 2h)".to_owned())?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    if d < min || d > max {
        return Err(format!("out of range (expected {min:?} to {max:?})"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_variables() {
        assert_eq!(
            WebLimits::from_lookup(|_| None).unwrap(),
            WebLimits::default()
        );
        assert_eq!(
            ServeConfig::from_lookup(|_| None).unwrap(),
            ServeConfig::default()
        );
    }

    #[test]
    fn durations_take_units() {
        let p = |v| parse_duration(v, Duration::ZERO, Duration::from_secs(86_400));
        assert_eq!(p("10"), Ok(Duration::from_secs(10)));
        assert_eq!(p("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(p("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(p("2h"), Ok(Duration::from_secs(7200)));
        assert!(p("2d").is_err());
        assert!(p("").is_err());
        assert!(p("25h").is_err());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = WebLimits::from_lookup(|k| (k == STREAMS_PER_SESSION_VAR).then(|| "lots".into()))
            .unwrap_err();
        assert!(e.to_string().contains("NETAUTO_STREAMS_PER_SESSION"), "{e}");
        assert!(e.to_string().contains("lots"), "{e}");
        let e = ServeConfig::from_lookup(|k| (k == MAX_CONNECTIONS_VAR).then(|| "0".into()))
            .unwrap_err();
        assert!(e.to_string().contains("NETAUTO_MAX_CONNECTIONS"), "{e}");
        let limits =
            WebLimits::from_lookup(|k| (k == SESSION_LIFETIME_VAR).then(|| "90m".into())).unwrap();
        assert_eq!(limits.session_lifetime, Duration::from_secs(5400));
    }
}
