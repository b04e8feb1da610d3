//! Capturing `tracing` events in tests (feature `testing`).
//!
//! [`CaptureLayer`] is a [`tracing_subscriber::Layer`] that records every event with its
//! fields as strings (name → value) in a shared list; [`Capture`] is the handle that reads the
//! list. Every netauto event carries a stable `event` field (see [`crate::telemetry`]), which
//! [`Capture::events_named`] matches on.
//!
//! ```
//! use netauto_core::telemetry;
//! use netauto_core::testing::capture::Capture;
//!
//! let capture = Capture::install_scoped();
//! tracing::info!(event = telemetry::BULK_OK, bulk_ref = "b1", device_id = 7_i64);
//!
//! let ok = capture.events_named(telemetry::BULK_OK);
//! assert_eq!(ok.len(), 1);
//! assert_eq!(ok[0].field("device_id"), Some("7"));
//! assert_eq!(ok[0].field_as::<i64>("device_id"), Some(7));
//! assert_eq!(ok[0].field("bulk_ref"), Some("b1"));
//! ```
//!
//! # Scope
//!
//! [`Capture::install_scoped`] makes the capturing subscriber the *thread-local* default until
//! the returned guard is dropped (it uses [`tracing::subscriber::set_default`]). Tests running
//! in parallel on other threads therefore never see each other's events. What that covers:
//!
//! * synchronous code and `async` code polled on this thread;
//! * with `#[tokio::test]` (the default `current_thread` flavor), every task the test spawns
//!   too, since they all run on the test's thread;
//! * **not** tasks of a `multi_thread` runtime, which run on worker threads. There, wrap the
//!   future with [`tracing::instrument::WithSubscriber::with_subscriber`] and
//!   [`Capture::subscriber`] (covers that future wherever it is polled, but not tasks it
//!   spawns), or use a `current_thread` runtime.
//!
//! Parallel tests cannot make a capture miss events either: tracing caches per callsite, for
//! the whole process, whether anyone listens, and a callsite first hit on a thread without a
//! subscriber could otherwise be switched off for every thread. Creating a [`Capture`] keeps
//! that cache consulting each thread's subscriber.
//!
//! To combine the layer with other layers, build the subscriber yourself with
//! [`Capture::layer`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span;
use tracing::subscriber::{DefaultGuard, Interest};
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// The name of the field netauto events are identified by.
pub const EVENT_FIELD: &str = "event";

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedEvent {
    /// Its level.
    pub level: Level,
    /// Its target (usually the module path it was emitted from).
    pub target: String,
    /// Its fields, each value rendered as a string: strings and numbers as they are,
    /// `%value` with `Display`, `?value` with `Debug`. The message, if any, is `message`.
    /// Fields recorded as `None` are absent.
    pub fields: BTreeMap<String, String>,
    /// The names of the spans the event was emitted in, outermost first.
    pub spans: Vec<String>,
}

impl CapturedEvent {
    /// The value of the `event` field: the stable netauto event name.
    pub fn name(&self) -> Option<&str> {
        self.field(EVENT_FIELD)
    }

    /// A field's value as recorded.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A field's value parsed into `T` (e.g. `u64`, `bool`); `None` when absent or unparsable.
    pub fn field_as<T: FromStr>(&self, name: &str) -> Option<T> {
        self.field(name).and_then(|v| v.parse().ok())
    }

    /// Whether the event was emitted inside a span of this name.
    pub fn in_span(&self, name: &str) -> bool {
        self.spans.iter().any(|s| s == name)
    }
}

type Events = Arc<Mutex<Vec<CapturedEvent>>>;

/// A lock on the list; a test that panicked while holding it left it consistent (pushes are
/// atomic), so a poisoned lock is taken over.
fn lock(events: &Mutex<Vec<CapturedEvent>>) -> MutexGuard<'_, Vec<CapturedEvent>> {
    events.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handle on captured events. Clones share one list.
#[derive(Clone, Default)]
pub struct Capture {
    events: Events,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("events", &lock(&self.events).len())
            .finish()
    }
}

impl Capture {
    /// An empty capture, not installed anywhere.
    pub fn new() -> Self {
        keep_interest_open();
        Self::default()
    }

    /// A fresh capture installed as this thread's default subscriber until the returned guard
    /// is dropped (see the [module docs](self) for what that covers). The guard dereferences
    /// to the [`Capture`].
    pub fn install_scoped() -> CaptureGuard {
        let capture = Self::new();
        let default = capture.set_default();
        CaptureGuard {
            capture,
            _default: default,
        }
    }

    /// Installs a subscriber recording into this capture as the thread's default until the
    /// guard is dropped.
    pub fn set_default(&self) -> DefaultGuard {
        tracing::subscriber::set_default(self.subscriber())
    }

    /// The layer recording into this capture, to stack with other layers.
    pub fn layer(&self) -> CaptureLayer {
        CaptureLayer {
            events: Arc::clone(&self.events),
        }
    }

    /// A subscriber (a registry with [`Self::layer`]) recording into this capture, for
    /// [`tracing::subscriber::set_default`], [`tracing::subscriber::with_default`] or
    /// [`tracing::instrument::WithSubscriber::with_subscriber`].
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync + 'static {
        tracing_subscriber::registry().with(self.layer())
    }

    /// Every event recorded so far, in emission order.
    pub fn events(&self) -> Vec<CapturedEvent> {
        lock(&self.events).clone()
    }

    /// The events whose `event` field is `name`, in emission order.
    pub fn events_named(&self, name: &str) -> Vec<CapturedEvent> {
        lock(&self.events)
            .iter()
            .filter(|e| e.name() == Some(name))
            .cloned()
            .collect()
    }

    /// How many events have `event` = `name`.
    pub fn count(&self, name: &str) -> usize {
        lock(&self.events)
            .iter()
            .filter(|e| e.name() == Some(name))
            .count()
    }

    /// The one event named `name`; panics (listing what was captured) unless there is
    /// exactly one.
    pub fn single(&self, name: &str) -> CapturedEvent {
        let mut found = self.events_named(name);
        match found.len() {
            1 => found.remove(0),
            n => panic!(
                "expected exactly one {name:?} event, captured {n}; all events: {:#?}",
                self.events()
            ),
        }
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        lock(&self.events).clear();
    }
}

/// [`Capture::install_scoped`]'s guard: the capture, installed until this is dropped.
pub struct CaptureGuard {
    capture: Capture,
    _default: DefaultGuard,
}

impl CaptureGuard {
    /// The capture (also reachable through `Deref`).
    pub fn capture(&self) -> &Capture {
        &self.capture
    }
}

impl Deref for CaptureGuard {
    type Target = Capture;

    fn deref(&self) -> &Capture {
        &self.capture
    }
}

impl fmt::Debug for CaptureGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CaptureGuard").field(&self.capture).finish()
    }
}

/// The layer behind [`Capture`]: records every event it sees. Build it with
/// [`Capture::layer`].
#[derive(Clone)]
pub struct CaptureLayer {
    events: Events,
}

/// Keeps tracing-core's callsite cache from answering "never" on behalf of a capture.
///
/// tracing-core caches each callsite's interest for the whole process. While at most one
/// dispatcher is registered, a callsite first hit on a thread *without* a subscriber (another
/// test, say) gets its interest from that thread's default, "never", and every thread then
/// skips it: a capture on another thread would silently miss that event. A second dispatcher,
/// registered once and kept forever, that is nobody's default and answers "sometimes", makes
/// the cache consult every live dispatcher instead.
fn keep_interest_open() {
    static INERT: OnceLock<Dispatch> = OnceLock::new();
    INERT.get_or_init(|| Dispatch::new(Inert));
}

/// A subscriber that is interested in every callsite and records nothing.
struct Inert;

impl Subscriber for Inert {
    fn register_callsite(&self, _metadata: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, _metadata: &Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn event(&self, _event: &Event<'_>) {}

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}
}

impl fmt::Debug for CaptureLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureLayer")
            .field("events", &lock(&self.events).len())
            .finish()
    }
}

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// Callsite interest is cached process-wide, across every thread's default subscriber;
    /// "sometimes" makes each event ask the subscriber current on its thread, so a test's
    /// capture neither misses events nor depends on what other threads installed first.
    fn register_callsite(&self, _metadata: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = FieldsVisitor::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|s| s.name().to_owned()).collect())
            .unwrap_or_default();
        let meta = event.metadata();
        lock(&self.events).push(CapturedEvent {
            level: *meta.level(),
            target: meta.target().to_owned(),
            fields: fields.0,
            spans,
        });
    }
}

#[derive(Default)]
struct FieldsVisitor(BTreeMap<String, String>);

impl FieldsVisitor {
    fn put(&mut self, field: &Field, value: String) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for FieldsVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.to_string());
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, value.to_string());
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.to_string());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn records_fields_as_strings() {
        let capture = Capture::install_scoped();
        let missing: Option<i64> = None;
        tracing::warn!(
            event = "netauto.test.one",
            text = "hello",
            signed = -3_i64,
            unsigned = 42_u64,
            flag = true,
            shown = %"display me",
            debugged = ?Some("x"),
            present = Some(5_i64),
            absent = missing,
            "a message {}",
            7
        );
        let e = capture.single("netauto.test.one");
        assert_eq!(e.level, Level::WARN);
        assert_eq!(e.name(), Some("netauto.test.one"));
        assert_eq!(e.field("text"), Some("hello"));
        assert_eq!(e.field_as::<i64>("signed"), Some(-3));
        assert_eq!(e.field_as::<u64>("unsigned"), Some(42));
        assert_eq!(e.field_as::<bool>("flag"), Some(true));
        assert_eq!(e.field("shown"), Some("display me"));
        assert_eq!(e.field("debugged"), Some("Some(\"x\")"));
        assert_eq!(e.field("present"), Some("5"));
        assert_eq!(e.field("absent"), None);
        assert_eq!(e.field("message"), Some("a message 7"));
        assert_eq!(e.field_as::<u64>("text"), None, "unparsable is None");
        assert!(
            e.target.ends_with("testing::capture::tests"),
            "{}",
            e.target
        );
    }

    #[test]
    fn filters_by_name_counts_and_clears() {
        let capture = Capture::install_scoped();
        tracing::info!(event = "a", n = 1_u64);
        tracing::info!(event = "b");
        tracing::info!("no event field");
        tracing::info!(event = "a", n = 2_u64);
        assert_eq!(capture.events().len(), 4);
        let a: Vec<u64> = capture
            .events_named("a")
            .iter()
            .map(|e| e.field_as("n").unwrap())
            .collect();
        assert_eq!(a, [1, 2]);
        assert_eq!(capture.count("b"), 1);
        assert_eq!(capture.count("c"), 0);
        capture.clear();
        assert!(capture.events().is_empty());
    }

    #[test]
    fn records_enclosing_spans_outermost_first() {
        let capture = Capture::install_scoped();
        let outer = tracing::info_span!("netauto.job", job_id = 1_i64);
        let _outer = outer.enter();
        let inner = tracing::info_span!("device");
        inner.in_scope(|| tracing::info!(event = "inside"));
        let e = capture.single("inside");
        assert_eq!(e.spans, ["netauto.job", "device"]);
        assert!(e.in_span("device"));
        assert!(!e.in_span("other"));
    }

    #[test]
    fn only_this_thread_and_only_while_installed() {
        let capture = Capture::install_scoped();
        std::thread::spawn(|| tracing::info!(event = "elsewhere"))
            .join()
            .unwrap();
        tracing::info!(event = "here");
        let kept = capture.capture().clone();
        drop(capture);
        tracing::info!(event = "after");
        let names: Vec<_> = kept
            .events()
            .iter()
            .map(|e| e.name().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(names, ["here"]);
    }

    #[test]
    fn a_callsite_first_hit_on_a_thread_without_subscriber_is_still_captured() {
        fn emit() {
            tracing::info!(event = "first.elsewhere");
        }
        let capture = Capture::install_scoped();
        std::thread::spawn(emit).join().unwrap();
        emit();
        assert_eq!(capture.count("first.elsewhere"), 1);
    }

    #[test]
    fn two_captures_on_two_threads_stay_apart() {
        let run = |name: &'static str| {
            std::thread::spawn(move || {
                let capture = Capture::install_scoped();
                for _ in 0..50 {
                    tracing::info!(event = "shared.callsite", who = name);
                }
                capture.events()
            })
        };
        let (a, b) = (run("a"), run("b"));
        for (handle, who) in [(a, "a"), (b, "b")] {
            let events = handle.join().unwrap();
            assert_eq!(events.len(), 50);
            assert!(events.iter().all(|e| e.field("who") == Some(who)));
        }
    }

    #[test]
    fn a_layer_stacks_and_with_default_scopes() {
        let capture = Capture::new();
        let subscriber = tracing_subscriber::registry().with(capture.layer());
        tracing::subscriber::with_default(subscriber, || tracing::info!(event = "stacked"));
        tracing::info!(event = "outside");
        assert_eq!(capture.count("stacked"), 1);
        assert_eq!(capture.count("outside"), 0);
        assert!(format!("{capture:?}").contains("events: 1"));
    }

    #[tokio::test]
    async fn covers_tasks_spawned_on_a_current_thread_runtime() {
        let capture = Capture::install_scoped();
        tokio::spawn(async {
            tokio::task::yield_now().await;
            tracing::info!(event = "spawned");
        })
        .await
        .unwrap();
        assert_eq!(capture.count("spawned"), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_subscriber_follows_a_future_across_threads() {
        use tracing::instrument::WithSubscriber;

        let capture = Capture::new();
        let fut = async {
            tokio::task::yield_now().await;
            tracing::info!(event = "followed");
        };
        tokio::spawn(fut.with_subscriber(capture.subscriber()))
            .await
            .unwrap();
        assert_eq!(capture.count("followed"), 1);
    }
}
