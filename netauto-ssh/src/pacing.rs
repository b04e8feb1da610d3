//! Pacing: how hard the client leans on the network and on the AAA servers behind it.
//!
//! Three limits, taken in this order before each login:
//! 1. one session per device at a time (a device's second command waits for its first);
//! 2. a global cap on concurrent sessions;
//! 3. a cap on *new* connections per second, with jitter, so a 1,000-device bulk run does not
//!    send 1,000 simultaneous logins to the TACACS+/RADIUS server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Pacing limits.
#[derive(Debug, Clone, PartialEq)]
pub struct PacingConfig {
    /// Most SSH sessions open at once, over all devices.
    pub max_sessions: usize,
    /// Most new connections started per second (`None`: unlimited).
    pub connections_per_second: Option<f64>,
    /// Random extra delay of each connection start, as a fraction of the interval between
    /// starts (0.0–1.0).
    pub jitter: f64,
}

impl Default for PacingConfig {
    /// 200 sessions, 50 new connections per second, 50 % jitter.
    fn default() -> Self {
        Self {
            max_sessions: 200,
            connections_per_second: Some(50.0),
            jitter: 0.5,
        }
    }
}

/// Holds a device's session slot; dropping it lets the next session in.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    _device: OwnedMutexGuard<()>,
    _global: OwnedSemaphorePermit,
}

/// Enforces a [`PacingConfig`].
#[derive(Debug)]
pub(crate) struct Pacer {
    config: PacingConfig,
    sessions: Arc<Semaphore>,
    devices: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    next_start: AsyncMutex<Option<Instant>>,
}

impl Pacer {
    pub(crate) fn new(config: PacingConfig) -> Self {
        Self {
            sessions: Arc::new(Semaphore::new(config.max_sessions.max(1))),
            config,
            devices: Mutex::default(),
            next_start: AsyncMutex::new(None),
        }
    }

    /// Waits for the device's slot, then a global slot, then its turn to connect.
    pub(crate) async fn acquire(&self, device_key: &str) -> SessionSlot {
        let lock = {
            let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
            // Forget devices nobody is using, so the map does not grow forever.
            if devices.len() > 4096 {
                devices.retain(|_, m| Arc::strong_count(m) > 1);
            }
            devices.entry(device_key.to_owned()).or_default().clone()
        };
        let device = lock.lock_owned().await;
        let global = match self.sessions.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the session semaphore is never closed"),
        };
        self.wait_turn().await;
        SessionSlot {
            _device: device,
            _global: global,
        }
    }

    /// Sessions open right now.
    pub(crate) fn active_sessions(&self) -> usize {
        self.config.max_sessions.max(1) - self.sessions.available_permits()
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

    #[tokio::test(start_paused = true)]
    async fn new_connections_are_spaced_by_the_rate() {
        let pacer = Arc::new(Pacer::new(PacingConfig {
            max_sessions: 100,
            connections_per_second: Some(10.0),
            jitter: 0.0,
        }));
        let start = Instant::now();
        let mut slots = Vec::new();
        for i in 0..5 {
            slots.push(pacer.acquire(&format!("d{i}")).await);
        }
        // 5 starts at 10/s: the fifth starts 400 ms after the first.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        assert_eq!(pacer.active_sessions(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn one_session_per_device_and_a_global_cap() {
        let pacer = Arc::new(Pacer::new(PacingConfig {
            max_sessions: 2,
            connections_per_second: None,
            jitter: 0.0,
        }));
        let a = pacer.acquire("a").await;
        let same = tokio::time::timeout(Duration::from_secs(1), pacer.acquire("a")).await;
        assert!(same.is_err(), "a second session on device a must wait");
        let b = pacer.acquire("b").await;
        let third = tokio::time::timeout(Duration::from_secs(1), pacer.acquire("c")).await;
        assert!(third.is_err(), "the global cap of 2 must hold");
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), pacer.acquire("c"))
            .await
            .expect("a slot freed");
        drop(b);
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..100 {
            let x = random_unit();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
