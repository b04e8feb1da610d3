//! [`LocalProgressHub`]: an in-process [`ProgressSink`] on a tokio broadcast channel per topic (memory and SQLite backends share it).

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};

use crate::{FeedItem, ProgressEvent, ProgressSink, Subscription};
use async_trait::async_trait;
use futures_core::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// Events a subscriber may fall behind by before it is told it
/// [lagged](FeedItem::Lagged).
pub const DEFAULT_HUB_CAPACITY: usize = 1024;

type Topics = HashMap<String, broadcast::Sender<ProgressEvent>>;

/// An in-process [`ProgressSink`] with a subscribe side.
///
/// Each topic with at least one subscriber has a broadcast channel of
/// [`capacity`](Self::with_capacity) events. Publishing to a topic nobody follows costs a map
/// lookup and nothing else; the channel is removed when its last subscription is dropped.
/// Publishing never waits: a subscriber that falls more than `capacity` events behind gets a
/// [`FeedItem::Lagged`] with the number it missed, then continues with the newest events.
/// Clones share one hub.
#[derive(Clone)]
pub struct LocalProgressHub {
    topics: Arc<Mutex<Topics>>,
    capacity: usize,
}

impl LocalProgressHub {
    /// A hub whose topics buffer [`DEFAULT_HUB_CAPACITY`] events per subscriber.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_HUB_CAPACITY)
    }

    /// A hub whose topics buffer `capacity` events (at least 1) per subscriber.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            topics: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// The per-topic buffer size.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many topics currently have subscribers.
    pub fn topic_count(&self) -> usize {
        lock(&self.topics).len()
    }
}

impl Default for LocalProgressHub {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LocalProgressHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProgressHub")
            .field("capacity", &self.capacity)
            .field("topics", &self.topic_count())
            .finish()
    }
}

/// The topic map only holds senders, which are valid whatever a panicking thread was doing,
/// so a poisoned lock is simply taken over.
fn lock(topics: &Mutex<Topics>) -> MutexGuard<'_, Topics> {
    topics.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl ProgressSink for LocalProgressHub {
    async fn publish(&self, event: ProgressEvent) {
        let topic = event.topic();
        let mut topics = lock(&self.topics);
        if let Some(sender) = topics.get(&topic)
            && sender.send(event).is_err()
        {
            topics.remove(&topic);
        }
    }

    async fn subscribe(&self, topic: &str) -> Subscription {
        let receiver = lock(&self.topics)
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        Box::pin(TopicStream {
            inner: Some(BroadcastStream::new(receiver)),
            topic: topic.to_owned(),
            topics: Arc::downgrade(&self.topics),
        })
    }
}

/// A subscription that removes its topic's channel when it was the last one.
struct TopicStream {
    inner: Option<BroadcastStream<ProgressEvent>>,
    topic: String,
    topics: Weak<Mutex<Topics>>,
}

impl Stream for TopicStream {
    type Item = FeedItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FeedItem>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        Pin::new(inner).poll_next(cx).map(|item| {
            item.map(|res| match res {
                Ok(event) => FeedItem::Event(event),
                Err(BroadcastStreamRecvError::Lagged(missed)) => FeedItem::Lagged { missed },
            })
        })
    }
}

impl Drop for TopicStream {
    fn drop(&mut self) {
        drop(self.inner.take());
        if let Some(topics) = self.topics.upgrade() {
            let mut topics = lock(&topics);
            if topics
                .get(&self.topic)
                .is_some_and(|sender| sender.receiver_count() == 0)
            {
                topics.remove(&self.topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use crate::{RunEvent, RunId, RunStatus, run_topic};
    use tokio_stream::StreamExt;

    use super::*;

    fn finished(run: i64) -> ProgressEvent {
        ProgressEvent::Run(RunEvent::Finished {
            run_id: RunId(run),
            status: RunStatus::Ok,
        })
    }

    #[tokio::test]
    async fn subscribers_get_their_topic_in_order() {
        let hub = LocalProgressHub::new();
        let mut one = hub.subscribe(&run_topic(RunId(1))).await;
        let mut also_one = hub.subscribe(&run_topic(RunId(1))).await;
        let mut two = hub.subscribe(&run_topic(RunId(2))).await;
        hub.publish(finished(1)).await;
        hub.publish(finished(2)).await;
        hub.publish(finished(1)).await;
        for sub in [&mut one, &mut also_one] {
            assert_eq!(sub.next().await, Some(FeedItem::Event(finished(1))));
            assert_eq!(sub.next().await, Some(FeedItem::Event(finished(1))));
        }
        assert_eq!(two.next().await, Some(FeedItem::Event(finished(2))));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_much_it_missed() {
        let hub = LocalProgressHub::with_capacity(2);
        let mut sub = hub.subscribe(&run_topic(RunId(7))).await;
        for _ in 0..5 {
            hub.publish(finished(7)).await;
        }
        assert_eq!(sub.next().await, Some(FeedItem::Lagged { missed: 3 }));
        assert_eq!(sub.next().await, Some(FeedItem::Event(finished(7))));
        assert_eq!(sub.next().await, Some(FeedItem::Event(finished(7))));
        hub.publish(finished(7)).await;
        assert_eq!(sub.next().await, Some(FeedItem::Event(finished(7))));
    }

    #[tokio::test]
    async fn topics_without_subscribers_hold_nothing() {
        let hub = LocalProgressHub::new();
        hub.publish(finished(1)).await;
        assert_eq!(hub.topic_count(), 0, "publishing must not create a topic");
        let first = hub.subscribe(&run_topic(RunId(1))).await;
        let second = hub.subscribe(&run_topic(RunId(1))).await;
        assert_eq!(hub.topic_count(), 1);
        drop(first);
        assert_eq!(hub.topic_count(), 1, "one subscriber is still there");
        drop(second);
        assert_eq!(
            hub.topic_count(),
            0,
            "the last subscriber removes the topic"
        );
        let mut late = hub.subscribe(&run_topic(RunId(1))).await;
        hub.publish(finished(1)).await;
        assert_eq!(late.next().await, Some(FeedItem::Event(finished(1))));
    }
}
