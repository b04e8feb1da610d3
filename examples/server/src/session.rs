//! [`Sessions`]: the in-memory session table, and [`StreamLease`], an open event stream's hold
//! on its session.
//!
//! Anonymous sessions (the login form's) and logged-in ones live in two tables with their own
//! caps, so however many login forms are fetched, no logged-in user is pushed out. A session
//! ends when it has been idle (no request and no open event stream) for
//! [`session_idle`](crate::WebLimits::session_idle), when it reaches its absolute
//! [`session_lifetime`](crate::WebLimits::session_lifetime), at logout, or when a full table
//! evicts it (least recently used first). Its event streams end with it: each holds a
//! [`StreamLease`] that resolves [`StreamLease::ended`] when the session is removed (the
//! session's `watch` sender is dropped), when the lifetime runs out, or when the server shuts
//! down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::app::lock;
use crate::config::WebLimits;

/// One session.
#[derive(Debug)]
struct Session {
    user: Option<String>,
    csrf: String,
    flash: Option<String>,
    created: Instant,
    seen: Instant,
    /// Event streams open now.
    streams: usize,
    /// Dropped with the session: every stream's receiver then sees the end.
    ended: watch::Sender<()>,
}

impl Session {
    fn live(&self, now: Instant, limits: &SessionLimits) -> bool {
        now.saturating_duration_since(self.created) < limits.lifetime
            && (self.streams > 0 || now.saturating_duration_since(self.seen) < limits.idle)
    }
}

/// What a handler learns of a live session.
#[derive(Debug, Clone)]
pub(crate) struct SessionView {
    /// The logged-in user (`None`: the login form's session).
    pub(crate) user: Option<String>,
    /// The session's CSRF token.
    pub(crate) csrf: String,
}

/// The part of [`WebLimits`] about sessions.
#[derive(Debug, Clone, Copy)]
struct SessionLimits {
    idle: Duration,
    lifetime: Duration,
    max_users: usize,
    max_anonymous: usize,
    streams: usize,
}

#[derive(Debug, Default)]
struct Tables {
    users: HashMap<String, Session>,
    anonymous: HashMap<String, Session>,
}

impl Tables {
    fn find(&mut self, token: &str) -> Option<(&mut HashMap<String, Session>, bool)> {
        if self.users.contains_key(token) {
            Some((&mut self.users, true))
        } else if self.anonymous.contains_key(token) {
            Some((&mut self.anonymous, false))
        } else {
            None
        }
    }
}

/// The in-memory session table (see the module docs).
#[derive(Debug)]
pub(crate) struct Sessions {
    limits: SessionLimits,
    tables: Mutex<Tables>,
    /// `true` once the server shuts down: every stream ends.
    shutdown: watch::Sender<bool>,
}

/// Why an event stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamRefused {
    /// The session is gone (logged out, expired).
    NoSession,
    /// The session has this many streams open already.
    TooMany(usize),
}

impl Sessions {
    pub(crate) fn new(limits: &WebLimits) -> Self {
        Self {
            limits: SessionLimits {
                idle: limits.session_idle,
                lifetime: limits.session_lifetime,
                max_users: limits.max_sessions,
                max_anonymous: limits.max_anonymous_sessions,
                streams: limits.streams_per_session,
            },
            tables: Mutex::new(Tables::default()),
            shutdown: watch::channel(false).0,
        }
    }

    /// A new session; answers its token. A full table first drops its expired sessions,
    /// then its least recently used one — of the same kind only.
    pub(crate) fn create(&self, user: Option<String>) -> String {
        let token = random_token();
        let now = Instant::now();
        let limits = self.limits;
        let mut tables = lock(&self.tables);
        let (table, cap) = if user.is_some() {
            (&mut tables.users, limits.max_users)
        } else {
            (&mut tables.anonymous, limits.max_anonymous)
        };
        if table.len() >= cap {
            table.retain(|_, s| s.live(now, &limits));
        }
        while table.len() >= cap {
            let Some(oldest) = table
                .iter()
                .min_by_key(|(_, s)| (s.streams > 0, s.seen))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            table.remove(&oldest);
        }
        table.insert(
            token.clone(),
            Session {
                user,
                csrf: random_token(),
                flash: None,
                created: now,
                seen: now,
                streams: 0,
                ended: watch::channel(()).0,
            },
        );
        token
    }

    /// The live session of `token`, refreshed; an expired one is removed (ending its streams).
    pub(crate) fn get(&self, token: &str) -> Option<SessionView> {
        let now = Instant::now();
        let limits = self.limits;
        let mut tables = lock(&self.tables);
        let (table, _) = tables.find(token)?;
        let live = table.get(token).is_some_and(|s| s.live(now, &limits));
        if !live {
            table.remove(token);
            return None;
        }
        let s = table.get_mut(token)?;
        s.seen = now;
        Some(SessionView {
            user: s.user.clone(),
            csrf: s.csrf.clone(),
        })
    }

    /// Ends a session (and its event streams).
    pub(crate) fn remove(&self, token: &str) {
        let mut tables = lock(&self.tables);
        if let Some((table, _)) = tables.find(token) {
            table.remove(token);
        }
    }

    /// Sets the one-shot message shown on the next page.
    pub(crate) fn set_flash(&self, token: &str, message: String) {
        let mut tables = lock(&self.tables);
        if let Some(s) = tables.find(token).and_then(|(t, _)| t.get_mut(token)) {
            s.flash = Some(message);
        }
    }

    /// Takes the one-shot message.
    pub(crate) fn take_flash(&self, token: &str) -> Option<String> {
        let mut tables = lock(&self.tables);
        tables
            .find(token)
            .and_then(|(t, _)| t.get_mut(token))
            .and_then(|s| s.flash.take())
    }

    /// Counts an event stream of the logged-in session `token` while the lease lives.
    pub(crate) fn open_stream(self: &Arc<Self>, token: &str) -> Result<StreamLease, StreamRefused> {
        let now = Instant::now();
        let limits = self.limits;
        let mut tables = lock(&self.tables);
        let s = tables
            .users
            .get_mut(token)
            .filter(|s| s.live(now, &limits))
            .ok_or(StreamRefused::NoSession)?;
        if s.streams >= limits.streams {
            return Err(StreamRefused::TooMany(s.streams));
        }
        s.streams += 1;
        s.seen = now;
        Ok(StreamLease {
            sessions: self.clone(),
            token: token.to_owned(),
            ended: s.ended.subscribe(),
            deadline: s.created + limits.lifetime,
            shutdown: self.shutdown.subscribe(),
        })
    }

    /// Ends every event stream, now and from now on (server shutdown).
    pub(crate) fn end_streams(&self) {
        self.shutdown.send_replace(true);
    }

    fn close_stream(&self, token: &str) {
        let mut tables = lock(&self.tables);
        if let Some(s) = tables.users.get_mut(token) {
            s.streams = s.streams.saturating_sub(1);
            s.seen = Instant::now();
        }
    }

    /// Sessions kept now: (logged in, anonymous).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let t = lock(&self.tables);
        (t.users.len(), t.anonymous.len())
    }
}

/// An open event stream's hold on its session: counted against the per-session cap while it
/// lives; [`StreamLease::ended`] resolves when the stream must end.
#[derive(Debug)]
pub(crate) struct StreamLease {
    sessions: Arc<Sessions>,
    token: String,
    ended: watch::Receiver<()>,
    deadline: Instant,
    shutdown: watch::Receiver<bool>,
}

impl StreamLease {
    /// Resolves when the session ends (logout, eviction, expiry of its lifetime) or the
    /// server shuts down.
    pub(crate) async fn ended(&mut self) {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        tokio::select! {
            // Never sent to: it resolves with an error when the session is dropped.
            _ = async { while self.ended.changed().await.is_ok() {} } => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = self.shutdown.wait_for(|down| *down) => {}
        }
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.sessions.close_stream(&self.token);
    }
}

/// 32 random bytes as 64 hex characters.
pub(crate) fn random_token() -> String {
    random_hex::<32>()
}

/// `N` random bytes as hex. Without the OS RNG the answer is empty, which fails closed (every
/// token check then fails); it is never reached on a working system.
pub(crate) fn random_hex<const N: usize>() -> String {
    let mut raw = [0u8; N];
    if getrandom::fill(&mut raw).is_err() {
        return String::new();
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(f: impl FnOnce(&mut WebLimits)) -> Arc<Sessions> {
        let mut l = WebLimits::default();
        f(&mut l);
        Arc::new(Sessions::new(&l))
    }

    #[test]
    fn anonymous_sessions_never_evict_logged_in_ones() {
        let s = sessions(|l| {
            l.max_sessions = 3;
            l.max_anonymous_sessions = 5;
        });
        let users: Vec<_> = (0..3).map(|i| s.create(Some(format!("u{i}")))).collect();
        for _ in 0..100 {
            s.create(None);
        }
        assert_eq!(s.counts(), (3, 5));
        assert!(users.iter().all(|t| s.get(t).is_some()));
        // A fourth login pushes out the least recently used login.
        s.get(&users[0]);
        s.create(Some("u3".into()));
        assert!(s.get(&users[1]).is_none());
        assert!(s.get(&users[0]).is_some());
    }

    #[tokio::test]
    async fn streams_are_capped_and_end_with_the_session() {
        let s = sessions(|l| l.streams_per_session = 2);
        let t = s.create(Some("ann".into()));
        let mut a = s.open_stream(&t).unwrap();
        let _b = s.open_stream(&t).unwrap();
        assert_eq!(s.open_stream(&t).unwrap_err(), StreamRefused::TooMany(2));
        drop(_b);
        let _c = s.open_stream(&t).unwrap();
        let anon = s.create(None);
        assert_eq!(s.open_stream(&anon).unwrap_err(), StreamRefused::NoSession);
        s.remove(&t);
        tokio::time::timeout(Duration::from_secs(1), a.ended())
            .await
            .expect("the stream ends with its session");
    }

    #[tokio::test]
    async fn streams_end_at_the_lifetime_and_at_shutdown() {
        let s = sessions(|l| l.session_lifetime = Duration::from_millis(200));
        let t = s.create(Some("ann".into()));
        let mut a = s.open_stream(&t).unwrap();
        tokio::time::timeout(Duration::from_secs(2), a.ended())
            .await
            .expect("the stream ends at the session's lifetime");
        assert!(s.get(&t).is_none());

        let s = sessions(|_| {});
        let t = s.create(Some("ann".into()));
        let mut a = s.open_stream(&t).unwrap();
        s.end_streams();
        tokio::time::timeout(Duration::from_secs(1), a.ended())
            .await
            .expect("the stream ends at shutdown");
    }

    #[test]
    fn an_open_stream_keeps_its_session_from_idling_out() {
        let s = sessions(|l| l.session_idle = Duration::from_millis(1));
        let t = s.create(Some("ann".into()));
        let lease = s.open_stream(&t).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get(&t).is_some());
        drop(lease);
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get(&t).is_none());
    }

    #[test]
    fn tokens_are_random() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(random_hex::<8>().len(), 16);
    }
}
