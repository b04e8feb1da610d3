//! [`LoginThrottle`]: failed logins counted per user name and per client address, with
//! exponential backoff once the free failures are used up.
//!
//! Every attempt first asks [`LoginThrottle::begin`]; a blocked key answers how long to wait
//! (the `Retry-After` of a `429`) and the password is not checked at all. The user name and
//! the address each count failures: after [`free`](ThrottlePolicy::free) failures the key is
//! blocked for 1 s, then 2 s, 4 s… up to [`max`](ThrottlePolicy::max) per further failure.
//! Once the free failures are used up only one attempt per key runs at a time, so a burst of
//! parallel guesses cannot slip through before the first failure is counted. A success
//! forgets the user name's failures (not the address's: one account must not whitewash an
//! address that guesses others). A key quiet for [`FORGET_AFTER`] (or its backoff, if longer)
//! starts afresh.
//!
//! The table holds at most [`ThrottlePolicy::entries`] keys. Beyond it the least telling entry
//! goes: one with no attempt in flight, the fewest failures, the oldest. An attacker cycling
//! user names or addresses thus pushes out its own one-failure entries, not the heavily
//! failed name it is after. IPv6 addresses count per /64 (one host usually has the whole
//! prefix).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::app::lock;

/// First backoff once the free failures are used up; it doubles with each further failure.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// A key with no failure for this long (or its backoff, if longer) starts afresh.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Longest user name kept as a key (bytes); longer names share the prefix's entry.
const MAX_NAME_KEY: usize = 128;

/// How many failures are free, how long the backoff may grow, how many keys are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThrottlePolicy {
    /// Failures answered normally before the backoff starts.
    pub(crate) free: u32,
    /// Longest backoff.
    pub(crate) max: Duration,
    /// Most keys kept.
    pub(crate) entries: usize,
}

impl ThrottlePolicy {
    /// How long a key with `failures` failures is blocked after the last one, if at all.
    pub(crate) fn backoff(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.free)?;
        let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
        Some(BACKOFF_BASE.saturating_mul(factor).min(self.max))
    }
}

/// A user name or a client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

impl Key {
    fn user(name: &str) -> Self {
        let mut end = name.len().min(MAX_NAME_KEY);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        Self::User(name[..end].to_owned())
    }

    fn addr(ip: IpAddr) -> Self {
        Self::Addr(match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut o = v6.octets();
                    o[8..].fill(0);
                    IpAddr::from(o)
                }
            },
            v4 => v4,
        })
    }
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    in_flight: u32,
    blocked_until: Option<Instant>,
    last: Instant,
    /// A refusal during the current block was logged.
    reported: bool,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            in_flight: 0,
            blocked_until: None,
            last: now,
            reported: false,
        }
    }

    fn forgotten(&self, now: Instant) -> bool {
        let quiet_since = self.blocked_until.map_or(self.last, |b| b.max(self.last));
        self.in_flight == 0 && now.saturating_duration_since(quiet_since) >= FORGET_AFTER
    }
}

/// Why an attempt may not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throttled {
    /// Backing off: answer `429` with this `Retry-After` (whole seconds, at least 1).
    Blocked {
        /// How long to wait.
        retry_after: Duration,
        /// Whether this is the first refusal of the current block (worth a log line).
        first: bool,
    },
    /// Attempts for the same name or address are in flight that could use up the free
    /// failures: try again when they are resolved (a moment later).
    Busy,
}

impl Throttled {
    /// The stronger of two refusals: blocked beats busy, the longer wait beats the shorter.
    fn worse(self, other: Self) -> Self {
        match (self, other) {
            (
                Self::Blocked {
                    retry_after: a,
                    first: fa,
                },
                Self::Blocked {
                    retry_after: b,
                    first: fb,
                },
            ) => Self::Blocked {
                retry_after: a.max(b),
                first: fa || fb,
            },
            (b @ Self::Blocked { .. }, Self::Busy) | (Self::Busy, b @ Self::Blocked { .. }) => b,
            (Self::Busy, Self::Busy) => Self::Busy,
        }
    }

    /// The `Retry-After` of a blocked key.
    #[cfg(test)]
    fn retry_after(self) -> Option<Duration> {
        match self {
            Self::Blocked { retry_after, .. } => Some(retry_after),
            Self::Busy => None,
        }
    }
}

/// The throttle table (see the module docs).
#[derive(Debug)]
pub(crate) struct LoginThrottle {
    policy: ThrottlePolicy,
    table: Mutex<HashMap<Key, Entry>>,
}

impl LoginThrottle {
    pub(crate) fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Keys remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.table).len()
    }

    /// Starts an attempt for `user` from `addr` (unknown without a peer address), or says how
    /// long to wait. The attempt counts as in flight until it is resolved or dropped.
    pub(crate) fn begin(
        self: &Arc<Self>,
        user: &str,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, Throttled> {
        let keys: Vec<Key> = std::iter::once(Key::user(user))
            .chain(addr.map(Key::addr))
            .collect();
        let mut table = lock(&self.table);
        let mut refused: Option<Throttled> = None;
        for key in &keys {
            let Some(e) = table.get_mut(key) else {
                continue;
            };
            if e.forgotten(now) {
                *e = Entry::new(now);
                continue;
            }
            let this = match e.blocked_until {
                Some(until) if until > now => {
                    let first = !e.reported;
                    e.reported = true;
                    Throttled::Blocked {
                        retry_after: round_up_secs(until - now),
                        first,
                    }
                }
                // The attempts in flight could use up the free failures: one at a time.
                _ if e.in_flight > 0 && e.failures + e.in_flight >= self.policy.free => {
                    Throttled::Busy
                }
                _ => continue,
            };
            refused = Some(match refused {
                None => this,
                Some(before) => before.worse(this),
            });
        }
        if let Some(r) = refused {
            return Err(r);
        }
        for key in &keys {
            if !table.contains_key(key) && table.len() >= self.policy.entries {
                evict(&mut table, now);
            }
            let e = table.entry(key.clone()).or_insert_with(|| Entry::new(now));
            e.in_flight += 1;
        }
        Ok(Attempt {
            throttle: self.clone(),
            keys,
            resolved: false,
        })
    }

    fn resolve(&self, keys: &[Key], ok: bool, now: Instant) -> u32 {
        let mut table = lock(&self.table);
        let mut most = 0;
        for key in keys {
            let Some(e) = table.get_mut(key) else {
                continue;
            };
            e.in_flight = e.in_flight.saturating_sub(1);
            if ok && matches!(key, Key::User(_)) {
                if e.in_flight == 0 {
                    table.remove(key);
                } else {
                    e.failures = 0;
                    e.blocked_until = None;
                }
                continue;
            }
            if ok {
                continue;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            if let Some(b) = self.policy.backoff(e.failures) {
                e.blocked_until = Some(now + b);
                e.reported = false;
            }
            most = most.max(e.failures);
        }
        most
    }

    fn abandon(&self, keys: &[Key]) {
        let mut table = lock(&self.table);
        for key in keys {
            if let Some(e) = table.get_mut(key) {
                e.in_flight = e.in_flight.saturating_sub(1);
            }
        }
    }
}

/// Drops forgotten keys, then, if none was, the least telling one.
fn evict(table: &mut HashMap<Key, Entry>, now: Instant) {
    let before = table.len();
    table.retain(|_, e| !e.forgotten(now));
    if table.len() < before {
        return;
    }
    if let Some(key) = table
        .iter()
        .min_by_key(|(_, e)| (e.in_flight > 0, e.failures, e.last))
        .map(|(k, _)| k.clone())
    {
        table.remove(&key);
    }
}

/// Whole seconds, rounded up, at least 1.
fn round_up_secs(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

/// One login attempt let through; resolve it with [`Attempt::succeeded`] or
/// [`Attempt::failed`]. Dropped unresolved (the client went away), it counts as nothing.
#[derive(Debug)]
pub(crate) struct Attempt {
    throttle: Arc<LoginThrottle>,
    keys: Vec<Key>,
    resolved: bool,
}

impl Attempt {
    /// The password was right: the user name's failures are forgotten.
    pub(crate) fn succeeded(mut self, now: Instant) {
        self.resolved = true;
        self.throttle.resolve(&self.keys, true, now);
    }

    /// The password was wrong: one more failure for the name and the address. Answers the
    /// larger failure count of the two.
    pub(crate) fn failed(mut self, now: Instant) -> u32 {
        self.resolved = true;
        self.throttle.resolve(&self.keys, false, now)
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.resolved {
            self.throttle.abandon(&self.keys);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn throttle(entries: usize) -> Arc<LoginThrottle> {
        Arc::new(LoginThrottle::new(ThrottlePolicy {
            free: 5,
            max: Duration::from_secs(900),
            entries,
        }))
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let p = ThrottlePolicy {
            free: 5,
            max: Duration::from_secs(900),
            entries: 10,
        };
        let secs: Vec<_> = (0..20).map(|f| p.backoff(f).map(|d| d.as_secs())).collect();
        assert_eq!(&secs[..5], &[None; 5]);
        assert_eq!(secs[5], Some(1));
        assert_eq!(secs[6], Some(2));
        assert_eq!(secs[14], Some(512));
        assert_eq!(secs[15], Some(900));
        assert_eq!(p.backoff(u32::MAX), Some(Duration::from_secs(900)));
    }

    #[test]
    fn five_failures_then_backoff_and_success_resets_the_name() {
        let t = throttle(100);
        let mut now = Instant::now();
        for _ in 0..5 {
            t.begin("ann", A, now).unwrap().failed(now);
        }
        let r = t.begin("ann", A, now).unwrap_err();
        assert_eq!(
            r,
            Throttled::Blocked {
                retry_after: Duration::from_secs(1),
                first: true
            }
        );
        assert_eq!(
            t.begin("ann", A, now).unwrap_err(),
            Throttled::Blocked {
                retry_after: Duration::from_secs(1),
                first: false
            },
            "logged once"
        );
        now += Duration::from_secs(1);
        t.begin("ann", A, now).unwrap().failed(now);
        assert_eq!(
            t.begin("ann", None, now).unwrap_err().retry_after(),
            Some(Duration::from_secs(2))
        );
        now += Duration::from_secs(2);
        // From another address the name is free again after its backoff…
        t.begin("ann", None, now).unwrap().succeeded(now);
        t.begin("ann", None, now).unwrap().failed(now);
        // …but the address that guessed stays blocked for other names.
        assert!(t.begin("bob", A, now).is_ok());
    }

    #[test]
    fn one_address_is_throttled_across_names() {
        let t = throttle(100);
        let now = Instant::now();
        for i in 0..5 {
            t.begin(&format!("user{i}"), A, now).unwrap().failed(now);
        }
        assert!(t.begin("someone-else", A, now).is_err());
        assert!(t.begin("someone-else", None, now).is_ok());
    }

    #[test]
    fn parallel_attempts_past_the_free_ones_run_one_at_a_time() {
        let t = throttle(100);
        let now = Instant::now();
        let first: Vec<_> = (0..5).map(|_| t.begin("ann", None, now).unwrap()).collect();
        assert_eq!(
            t.begin("ann", None, now).unwrap_err(),
            Throttled::Busy,
            "5 in flight could use them up"
        );
        drop(first);
        t.begin("ann", None, now).unwrap().failed(now);
        let four: Vec<_> = (0..4).map(|_| t.begin("ann", None, now).unwrap()).collect();
        assert_eq!(
            t.begin("ann", None, now).unwrap_err(),
            Throttled::Busy,
            "1 failure + 4 in flight"
        );
        drop(four);
        t.begin("ann", None, now).unwrap().succeeded(now);
        let many: Vec<_> = (0..50).map(|_| t.begin("ann", None, now)).collect();
        assert!(
            many[..5].iter().all(Result::is_ok),
            "a clean record allows the free ones"
        );
    }

    #[test]
    fn ipv6_counts_per_prefix() {
        let t = throttle(100);
        let now = Instant::now();
        for i in 0..5u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            t.begin(&format!("u{i}"), Some(ip), now)
                .unwrap()
                .failed(now);
        }
        let other: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(t.begin("x", Some(other), now).is_err());
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(t.begin("x", Some(elsewhere), now).is_ok());
    }

    #[test]
    fn the_table_is_bounded_and_keeps_the_attacked_name() {
        let t = throttle(50);
        let mut now = Instant::now();
        for _ in 0..5 {
            t.begin("admin", None, now).unwrap().failed(now);
        }
        for i in 0..10_000 {
            now += Duration::from_millis(1);
            if let Ok(a) = t.begin(&format!("spray{i}"), None, now) {
                a.failed(now);
            }
            assert!(t.len() <= 50);
        }
        // The attacked name kept its count: the next failure is its sixth.
        assert_eq!(t.begin("admin", None, now).unwrap().failed(now), 6);
    }

    #[test]
    fn quiet_keys_are_forgotten() {
        let t = throttle(100);
        let mut now = Instant::now();
        for _ in 0..5 {
            t.begin("ann", A, now).unwrap().failed(now);
        }
        now += FORGET_AFTER + Duration::from_secs(2);
        for _ in 0..5 {
            t.begin("ann", A, now).unwrap().failed(now);
        }
        assert!(t.begin("ann", A, now).is_err());
    }

    #[test]
    fn long_names_share_a_bounded_key() {
        let long = "é".repeat(10_000);
        match Key::user(&long) {
            Key::User(k) => assert!(k.len() <= MAX_NAME_KEY),
            Key::Addr(_) => unreachable!(),
        }
    }
}
