//! The [`ProgressSink`] contract: what every live feed (the in-process hub, PostgreSQL's
//! LISTEN/NOTIFY) must do for followers to be correct.
//!
//! Topics are fresh bulk references, so checks against a feed shared by parallel tests (one
//! PostgreSQL database) never see each other's events. Every read waits at most
//! [`READ_TIMEOUT`].

use std::time::Duration;

use futures_util::StreamExt;

use crate::{BulkEvent, BulkRef, DeviceId, FeedItem, ProgressEvent, ProgressSink, RunStatus};

/// How long a check waits for one event of a cross-process feed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The progress event `done` of bulk `bulk_ref`.
fn progress(bulk_ref: &BulkRef, done: u64) -> ProgressEvent {
    ProgressEvent::Bulk(BulkEvent::Progress {
        bulk_ref: bulk_ref.clone(),
        device_id: DeviceId(i64::try_from(done).unwrap_or(i64::MAX)),
        run_id: None,
        status: RunStatus::Ok,
        error_kind: None,
        truncated: false,
        done,
        total: u64::MAX,
    })
}

fn done_of(item: &FeedItem) -> Option<u64> {
    match item {
        FeedItem::Event(ProgressEvent::Bulk(BulkEvent::Progress { done, .. })) => Some(*done),
        _ => None,
    }
}

async fn next(sub: &mut crate::Subscription, what: &str) -> FeedItem {
    match tokio::time::timeout(READ_TIMEOUT, sub.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: nothing arrived within {READ_TIMEOUT:?}"),
    }
}

/// An event published after `subscribe` returned reaches the subscriber: followers subscribe
/// before they read the store, so a subscription must be live when `subscribe` returns.
pub async fn subscribe_then_publish_is_delivered(sink: &dyn ProgressSink) {
    let r = BulkRef::generate();
    let mut sub = sink.subscribe(&r.topic()).await;
    sink.publish(progress(&r, 1)).await;
    let item = next(&mut sub, "an event published right after subscribe").await;
    assert_eq!(done_of(&item), Some(1), "got {item:?}");
}

/// Each subscriber gets every event of its own topic, in publish order, and none of another
/// topic.
pub async fn subscribers_get_their_topic_in_order(sink: &dyn ProgressSink) {
    let (a, b) = (BulkRef::generate(), BulkRef::generate());
    let mut a1 = sink.subscribe(&a.topic()).await;
    let mut a2 = sink.subscribe(&a.topic()).await;
    let mut b1 = sink.subscribe(&b.topic()).await;
    for n in 1..=20 {
        sink.publish(progress(&a, n)).await;
        if n % 5 == 0 {
            sink.publish(progress(&b, 100 + n)).await;
        }
    }
    for (name, sub) in [("first", &mut a1), ("second", &mut a2)] {
        for n in 1..=20 {
            let item = next(sub, &format!("{name} subscriber of topic a, event {n}")).await;
            assert_eq!(done_of(&item), Some(n), "{name} subscriber: got {item:?}");
        }
    }
    for n in [105, 110, 115, 120] {
        let item = next(&mut b1, "subscriber of topic b").await;
        assert_eq!(done_of(&item), Some(n), "topic b: got {item:?}");
    }
}

/// A subscriber that does not read while many events are published loses none silently:
/// what it reads is in order, and every gap is announced by a [`FeedItem::Lagged`] counting
/// exactly the events it missed.
pub async fn a_slow_subscriber_is_told_what_it_missed(sink: &dyn ProgressSink) {
    const EVENTS: u64 = 3000;
    let r = BulkRef::generate();
    let mut sub = sink.subscribe(&r.topic()).await;
    for n in 1..=EVENTS {
        sink.publish(progress(&r, n)).await;
    }
    let mut expected = 1;
    while expected <= EVENTS {
        match next(&mut sub, &format!("reading event {expected} of {EVENTS}")).await {
            FeedItem::Lagged { missed } => {
                assert!(missed > 0, "a lag of 0 events");
                expected += missed;
            }
            item => {
                assert_eq!(
                    done_of(&item),
                    Some(expected),
                    "events out of order or lost without a Lagged"
                );
                expected += 1;
            }
        }
    }
    assert_eq!(
        expected,
        EVENTS + 1,
        "more events missed than were published"
    );
}

/// Publishing to a topic nobody follows succeeds, and a later subscriber does not get it.
pub async fn publishing_without_subscribers_is_harmless(sink: &dyn ProgressSink) {
    let r = BulkRef::generate();
    sink.publish(progress(&r, 1)).await;
    let mut sub = sink.subscribe(&r.topic()).await;
    sink.publish(progress(&r, 2)).await;
    let item = next(&mut sub, "the event after subscribe").await;
    assert_eq!(
        done_of(&item),
        Some(2),
        "an event from before subscribe arrived: {item:?}"
    );
}

/// Expands to one `#[tokio::test]` per [`ProgressSink`] check against the feed built by
/// `$ctor`, an `async fn() -> Option<Arc<dyn ProgressSink>>` (`None`: skipped, after
/// printing why).
#[macro_export]
macro_rules! progress_conformance_tests {
    ($ctor:path $(,)?) => {
        $crate::__netauto_progress_check!(
            $ctor,
            subscribe_then_publish_is_delivered,
            subscribers_get_their_topic_in_order,
            a_slow_subscriber_is_told_what_it_missed,
            publishing_without_subscribers_is_harmless
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __netauto_progress_check {
    ($ctor:path, $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(sink) = $ctor().await else {
                    return;
                };
                $crate::conformance::run_check(
                    concat!("progress::", stringify!($check)),
                    $crate::conformance::progress::$check(sink.as_ref()),
                )
                .await;
            }
        )*
    };
}
