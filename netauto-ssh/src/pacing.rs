//! Pacing: how hard the client leans on the network, on the devices and on the AAA servers
//! behind them.
//!
//! Four rules, taken in this order before each login:
//! 1. one command at a time per **device** (by its id): a device's second command waits for
//!    its first;
//! 2. at most [`PacingConfig::sessions_per_endpoint`] sessions at once per **endpoint**
//!    `host:port` (default 4): many devices behind one address — a console server, a lab of
//!    containers, a simulator — share it, a single device is not stormed;
//! 3. a global cap on sessions open at once;
//! 4. a cap on *new* connections per second, with jitter, so a 1,000-device bulk run does not
//!    send 1,000 simultaneous logins to the TACACS+/RADIUS server.
//!
//! Every limit but the first can be `unlimited`. The knobs are read from the environment
//! with [`PacingConfig::from_env`] by the server, `netauto worker` and `netauto bulk run`
//! alike (see the table there).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netauto_core::{ConfigError, DeviceId};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// `NETAUTO_SSH_CONNECTIONS_PER_SECOND`: new SSH connections started per second over all
/// devices (a positive number, or `unlimited`/`0`). Default 50.
pub const CONNECTIONS_PER_SECOND_VAR: &str = "NETAUTO_SSH_CONNECTIONS_PER_SECOND";
/// `NETAUTO_SSH_MAX_SESSIONS`: SSH sessions open at once over all devices (1–1000000, or
/// `unlimited`). Default 200.
pub const MAX_SESSIONS_VAR: &str = "NETAUTO_SSH_MAX_SESSIONS";
/// `NETAUTO_SSH_SESSIONS_PER_ENDPOINT`: SSH sessions open at once to one `host:port`
/// (1–1000000, or `unlimited`). Default 4.
pub const SESSIONS_PER_ENDPOINT_VAR: &str = "NETAUTO_SSH_SESSIONS_PER_ENDPOINT";

/// Largest finite count accepted for the session limits.
const MAX_COUNT: usize = 1_000_000;

/// Pacing limits.
#[derive(Debug, Clone, PartialEq)]
pub struct PacingConfig {
    /// Most SSH sessions open at once, over all devices (`usize::MAX`: unlimited).
    pub max_sessions: usize,
    /// Most new connections started per second (`None`: unlimited).
    pub connections_per_second: Option<f64>,
    /// Random extra delay of each connection start, as a fraction of the interval between
    /// starts (0.0–1.0).
    pub jitter: f64,
    /// Most sessions open at once to one endpoint `host:port` (`None`: unlimited).
    pub sessions_per_endpoint: Option<usize>,
}

impl Default for PacingConfig {
    /// 200 sessions, 50 new connections per second, 50 % jitter, 4 sessions per endpoint.
    fn default() -> Self {
        Self {
            max_sessions: 200,
            connections_per_second: Some(50.0),
            jitter: 0.5,
            sessions_per_endpoint: Some(4),
        }
    }
}

impl PacingConfig {
    /// No limit but one command per device: for tests and benches on loopback.
    pub fn unlimited() -> Self {
        Self {
            max_sessions: usize::MAX,
            connections_per_second: None,
            jitter: 0.0,
            sessions_per_endpoint: None,
        }
    }

    /// The defaults, replaced by `NETAUTO_SSH_CONNECTIONS_PER_SECOND`,
    /// `NETAUTO_SSH_MAX_SESSIONS` and `NETAUTO_SSH_SESSIONS_PER_ENDPOINT` where set.
    ///
    /// | variable | default | values |
    /// |---|---|---|
    /// | `NETAUTO_SSH_CONNECTIONS_PER_SECOND` | `50` | a positive number, or `unlimited` (also `0`) |
    /// | `NETAUTO_SSH_MAX_SESSIONS` | `200` | 1–1000000, or `unlimited` |
    /// | `NETAUTO_SSH_SESSIONS_PER_ENDPOINT` | `4` | 1–1000000, or `unlimited` |
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the knobs through `lookup` (a variable name → its value, `None` when unset).
    ///
    /// ```
    /// use netauto_ssh::PacingConfig;
    ///
    /// let p = PacingConfig::from_lookup(|var| match var {
    ///     "NETAUTO_SSH_CONNECTIONS_PER_SECOND" => Some("unlimited".into()),
    ///     "NETAUTO_SSH_SESSIONS_PER_ENDPOINT" => Some("16".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(p.connections_per_second, None);
    /// assert_eq!(p.sessions_per_endpoint, Some(16));
    /// assert_eq!(p.max_sessions, 200);
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut pacing = Self::default();
        let bad = |var: &'static str, value: &str, reason: String| ConfigError {
            var,
            value: value.to_owned(),
            reason,
        };
        if let Some(v) = lookup(CONNECTIONS_PER_SECOND_VAR) {
            pacing.connections_per_second =
                parse_rate(&v).map_err(|r| bad(CONNECTIONS_PER_SECOND_VAR, &v, r))?;
        }
        if let Some(v) = lookup(MAX_SESSIONS_VAR) {
            pacing.max_sessions = parse_count(&v)
                .map_err(|r| bad(MAX_SESSIONS_VAR, &v, r))?
                .unwrap_or(usize::MAX);
        }
        if let Some(v) = lookup(SESSIONS_PER_ENDPOINT_VAR) {
            pacing.sessions_per_endpoint =
                parse_count(&v).map_err(|r| bad(SESSIONS_PER_ENDPOINT_VAR, &v, r))?;
        }
        Ok(pacing)
    }
}

/// Parses a connection rate: a positive number per second, or `unlimited`/`0` (`None`).
pub fn parse_rate(value: &str) -> Result<Option<f64>, String> {
    match value.trim() {
        "unlimited" | "0" => Ok(None),
        s => match s.parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(Some(rate)),
            _ => Err("not a positive number of connections per second, nor `unlimited`".into()),
        },
    }
}

/// Parses a session count: 1–1000000, or `unlimited` (`None`).
pub fn parse_count(value: &str) -> Result<Option<usize>, String> {
    match value.trim() {
        "unlimited" => Ok(None),
        s => match s.parse::<usize>() {
            Ok(n @ 1..=MAX_COUNT) => Ok(Some(n)),
            _ => Err(format!(
                "not a number of sessions from 1 to {MAX_COUNT}, nor `unlimited`"
            )),
        },
    }
}

/// Holds a device's session slot; dropping it lets the next session in.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    _device: OwnedMutexGuard<()>,
    _endpoint: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
}

/// Enforces a [`PacingConfig`].
#[derive(Debug)]
pub(crate) struct Pacer {
    config: PacingConfig,
    sessions: Arc<Semaphore>,
    /// The global cap, as given to the semaphore.
    capacity: usize,
    devices: Keyed<DeviceId, AsyncMutex<()>>,
    endpoints: Keyed<String, Semaphore>,
    next_start: AsyncMutex<Option<Instant>>,
}

/// Per-key locks or semaphores, created on first use and forgotten once unused.
#[derive(Debug)]
struct Keyed<K, V>(Mutex<HashMap<K, Arc<V>>>);

impl<K: Hash + Eq + Clone, V> Keyed<K, V> {
    fn new() -> Self {
        Self(Mutex::default())
    }

    fn get(&self, key: &K, make: impl FnOnce() -> V) -> Arc<V> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Forget keys nobody is using, so the map does not grow forever.
        if map.len() > 4096 {
            map.retain(|_, v| Arc::strong_count(v) > 1);
        }
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }
}

impl Pacer {
    pub(crate) fn new(config: PacingConfig) -> Self {
        let capacity = config.max_sessions.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            sessions: Arc::new(Semaphore::new(capacity)),
            capacity,
            config,
            devices: Keyed::new(),
            endpoints: Keyed::new(),
            next_start: AsyncMutex::new(None),
        }
    }

    /// Waits for the device's slot, then its endpoint's, then a global one, then its turn to
    /// connect.
    pub(crate) async fn acquire(&self, device: DeviceId, endpoint: &str) -> SessionSlot {
        let lock = self.devices.get(&device, AsyncMutex::default);
        let device = lock.lock_owned().await;
        let endpoint = match self.config.sessions_per_endpoint {
            None => None,
            Some(n) => {
                let sem = self
                    .endpoints
                    .get(&endpoint.to_owned(), || Semaphore::new(n.max(1)));
                Some(acquire(sem).await)
            }
        };
        let global = acquire(self.sessions.clone()).await;
        self.wait_turn().await;
        SessionSlot {
            _device: device,
            _endpoint: endpoint,
            _global: global,
        }
    }

    /// Sessions open right now.
    pub(crate) fn active_sessions(&self) -> usize {
        self.capacity - self.sessions.available_permits()
    }

    async fn wait_turn(&self) {
        let Some(rate) = self.config.connections_per_second.filter(|r| *r > 0.0) else {
            return;
        };
        let interval = Duration::from_secs_f64(1.0 / rate);
        let jitter = interval.mul_f64(self.config.jitter.clamp(0.0, 1.0) * random_unit());
        let start = {
            let mut next = self.next_start.lock().await;
            let now = Instant::now();
            let start = match *next {
                Some(at) if at > now => at,
                _ => now,
            };
            *next = Some(start + interval);
            start
        };
        tokio::time::sleep_until(start + jitter).await;
    }
}

async fn acquire(sem: Arc<Semaphore>) -> OwnedSemaphorePermit {
    match sem.acquire_owned().await {
        Ok(permit) => permit,
        Err(_) => unreachable!("pacing semaphores are never closed"),
    }
}

/// A random number in [0, 1).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_sessions: usize, per_endpoint: Option<usize>) -> PacingConfig {
        PacingConfig {
            max_sessions,
            connections_per_second: None,
            jitter: 0.0,
            sessions_per_endpoint: per_endpoint,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn new_connections_are_spaced_by_the_rate() {
        let pacer = Arc::new(Pacer::new(PacingConfig {
            connections_per_second: Some(10.0),
            ..config(100, None)
        }));
        let start = Instant::now();
        let mut slots = Vec::new();
        for i in 0..5 {
            slots.push(pacer.acquire(DeviceId(i), &format!("h{i}:22")).await);
        }
        // 5 starts at 10/s: the fifth starts 400 ms after the first.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        assert_eq!(pacer.active_sessions(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn one_session_per_device_and_a_global_cap() {
        let pacer = Arc::new(Pacer::new(config(2, None)));
        let a = pacer.acquire(DeviceId(1), "a:22").await;
        let same =
            tokio::time::timeout(Duration::from_secs(1), pacer.acquire(DeviceId(1), "a:22")).await;
        assert!(same.is_err(), "a second session on device 1 must wait");
        let b = pacer.acquire(DeviceId(2), "b:22").await;
        let third =
            tokio::time::timeout(Duration::from_secs(1), pacer.acquire(DeviceId(3), "c:22")).await;
        assert!(third.is_err(), "the global cap of 2 must hold");
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), pacer.acquire(DeviceId(3), "c:22"))
            .await
            .expect("a slot freed");
        drop(b);
    }

    #[tokio::test(start_paused = true)]
    async fn devices_behind_one_endpoint_share_its_cap_but_not_a_lock() {
        let pacer = Arc::new(Pacer::new(config(1000, Some(3))));
        // Three devices on one address run at once (they used to be serialized as one).
        let mut held = Vec::new();
        for i in 0..3 {
            held.push(
                tokio::time::timeout(
                    Duration::from_secs(1),
                    pacer.acquire(DeviceId(i), "lab:2201"),
                )
                .await
                .expect("under the endpoint cap"),
            );
        }
        let fourth = tokio::time::timeout(
            Duration::from_secs(1),
            pacer.acquire(DeviceId(9), "lab:2201"),
        )
        .await;
        assert!(fourth.is_err(), "the endpoint cap of 3 must hold");
        let other = tokio::time::timeout(
            Duration::from_secs(1),
            pacer.acquire(DeviceId(9), "lab:2202"),
        )
        .await;
        assert!(other.is_ok(), "another endpoint is not limited by this one");
        drop(held.pop());
        drop(other);
        tokio::time::timeout(
            Duration::from_secs(1),
            pacer.acquire(DeviceId(9), "lab:2201"),
        )
        .await
        .expect("a slot of the endpoint freed");
        // Unlimited per endpoint: 100 devices behind one address at once.
        let open = Arc::new(Pacer::new(config(1000, None)));
        let mut many = Vec::new();
        for i in 0..100 {
            many.push(open.acquire(DeviceId(i), "lab:2201").await);
        }
        assert_eq!(open.active_sessions(), 100);
    }

    #[test]
    fn knobs_are_read_with_clear_errors() {
        let read = |vars: &[(&str, &str)]| {
            PacingConfig::from_lookup(|var| {
                vars.iter()
                    .find(|(k, _)| *k == var)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        assert_eq!(read(&[]).unwrap(), PacingConfig::default());
        let p = read(&[
            (CONNECTIONS_PER_SECOND_VAR, " 400 "),
            (MAX_SESSIONS_VAR, "unlimited"),
            (SESSIONS_PER_ENDPOINT_VAR, "unlimited"),
        ])
        .unwrap();
        assert_eq!(
            (
                p.connections_per_second,
                p.max_sessions,
                p.sessions_per_endpoint
            ),
            (Some(400.0), usize::MAX, None)
        );
        for (var, value) in [
            (CONNECTIONS_PER_SECOND_VAR, "-1"),
            (CONNECTIONS_PER_SECOND_VAR, "fast"),
            (CONNECTIONS_PER_SECOND_VAR, "NaN"),
            (MAX_SESSIONS_VAR, "0"),
            (MAX_SESSIONS_VAR, "many"),
            (SESSIONS_PER_ENDPOINT_VAR, "0"),
            (SESSIONS_PER_ENDPOINT_VAR, "2000000"),
        ] {
            let e = read(&[(var, value)]).unwrap_err();
            assert_eq!((e.var, e.value.as_str()), (var, value));
        }
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..100 {
            let x = random_unit();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
