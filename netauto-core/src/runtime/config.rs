//! Runner settings: per-node queue limits (also from `NETAUTO_QUEUES`) and timings.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::ConfigError;

/// The environment variable holding per-node queue limits, e.g. `default:10,retention:5,bulk:5`.
pub const QUEUES_VAR: &str = "NETAUTO_QUEUES";
/// The name [`QUEUES_VAR`] shipped under first, still read when [`QUEUES_VAR`] is unset.
pub const LEGACY_QUEUES_VAR: &str = "NET_AUTO_QUEUES";

/// How many jobs of each queue one node runs at the same time.
///
/// The default is `default: 10, retention: 5, bulk: 5`. A node only claims from the queues
/// listed here.
///
/// ```
/// use netauto_core::runtime::QueueLimits;
///
/// let limits = QueueLimits::parse("default:4, bulk:2").unwrap();
/// assert_eq!(limits.limit("bulk"), Some(2));
/// assert_eq!(limits.limit("retention"), None);
/// assert!(QueueLimits::parse("bulk:0").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimits(BTreeMap<String, usize>);

impl Default for QueueLimits {
    fn default() -> Self {
        Self(BTreeMap::from([
            ("default".to_owned(), 10),
            ("retention".to_owned(), 5),
            ("bulk".to_owned(), 5),
        ]))
    }
}

impl QueueLimits {
    /// No queues.
    pub fn empty() -> Self {
        Self(BTreeMap::new())
    }

    /// The defaults, replaced by `NETAUTO_QUEUES` (or, when that is unset, the older name
    /// `NET_AUTO_QUEUES`) when it is set.
    pub fn from_env() -> Result<Self, ConfigError> {
        match crate::env::read_either(QUEUES_VAR, LEGACY_QUEUES_VAR)? {
            Some((var, v)) => Self::parse_var(var, &v),
            None => Ok(Self::default()),
        }
    }

    /// Parses `queue:limit` pairs separated by commas (limits 1–1000).
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        Self::parse_var(QUEUES_VAR, s)
    }

    fn parse_var(var: &'static str, s: &str) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError {
            var,
            value: s.to_owned(),
            reason,
        };
        let mut out = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, limit) = part
                .split_once(':')
                .ok_or_else(|| err(format!("{part:?} is not queue:limit")))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(err(format!("bad queue name {name:?}")));
            }
            let limit: usize = limit
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| err(format!("limit of {name} must be 1 to 1000")))?;
            if out.insert(name.to_owned(), limit).is_some() {
                return Err(err(format!("queue {name} listed twice")));
            }
        }
        if out.is_empty() {
            return Err(err("no queues given".into()));
        }
        Ok(Self(out))
    }

    /// Sets one queue's limit (0 removes the queue).
    pub fn with(mut self, queue: impl Into<String>, limit: usize) -> Self {
        let queue = queue.into();
        if limit == 0 {
            self.0.remove(&queue);
        } else {
            self.0.insert(queue, limit);
        }
        self
    }

    /// One queue's limit.
    pub fn limit(&self, queue: &str) -> Option<usize> {
        self.0.get(queue).copied()
    }

    /// The queues and limits, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, usize)> {
        self.0.iter().map(|(q, n)| (q.as_str(), *n))
    }
}

/// Timings and identity of a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// This node's name, stored as `attempted_by` on the jobs it claims.
    pub node: String,
    /// Per-queue concurrency.
    pub queues: QueueLimits,
    /// How often to look for jobs when nothing woke the runner.
    pub poll_interval: Duration,
    /// How long a claim lasts without a heartbeat. An attempt that cannot renew its lease
    /// (its heartbeats fail or hang, e.g. while the database is unreachable) stops itself
    /// `min(heartbeat_every, lease / 4)` before the lease it last secured runs out, so the
    /// node that rescues the job after the lease expired never runs it beside this one. That
    /// margin is also the clock skew between nodes the fencing tolerates.
    pub lease: Duration,
    /// How often running jobs renew their lease (at most every `lease / 2`, whatever is set
    /// here).
    pub heartbeat_every: Duration,
    /// How often to rescue jobs whose lease expired (their node died).
    pub rescue_every: Duration,
    /// How long shutdown waits for running jobs before releasing them.
    pub shutdown_grace: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".to_owned());
        let tag = getrandom::u32().unwrap_or(0);
        Self {
            node: format!("{host}-{}-{tag:08x}", std::process::id()),
            queues: QueueLimits::default(),
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            heartbeat_every: Duration::from_secs(15),
            rescue_every: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_queues() {
        let d = QueueLimits::default();
        assert_eq!(
            d.iter().collect::<Vec<_>>(),
            [("bulk", 5), ("default", 10), ("retention", 5)]
        );
    }

    #[test]
    fn bad_limits_name_the_variable() {
        for bad in [
            "",
            "bulk",
            "bulk:x",
            "bulk:0",
            "bulk:1001",
            ":3",
            "a b:1",
            "bulk:1,bulk:2",
        ] {
            let e = QueueLimits::parse(bad).unwrap_err();
            assert_eq!((e.var, e.value.as_str()), (QUEUES_VAR, bad), "{bad:?}");
        }
        assert_eq!(
            QueueLimits::parse(" default : 3 ,")
                .unwrap()
                .limit("default"),
            Some(3)
        );
    }
}
