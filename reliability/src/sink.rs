//! [`PrintingSink`]: prints every bulk event on stdout, one line each, so a test can count the
//! events of a worker process (even one it killed: the lines written before the kill are in
//! the pipe).

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use netauto_core::{BulkEvent, ProgressEvent, ProgressSink, Subscription};

/// Prefix of a Progress line: `EV progress <bulk_ref> <device_id> <done> <total>`.
pub const PROGRESS: &str = "EV progress ";
/// Prefix of a Summary line: `EV summary <bulk_ref> <ok> <failed> <total>`.
pub const SUMMARY: &str = "EV summary ";

/// A [`ProgressSink`] that prints bulk events, then forwards everything to `inner`.
#[derive(Debug, Clone)]
pub struct PrintingSink {
    inner: Arc<dyn ProgressSink>,
}

impl PrintingSink {
    /// Prints, then publishes on `inner`.
    pub fn new(inner: Arc<dyn ProgressSink>) -> Self {
        Self { inner }
    }
}

/// The line printed for an event, if it is a bulk event.
pub fn event_line(event: &ProgressEvent) -> Option<String> {
    match event {
        ProgressEvent::Bulk(BulkEvent::Progress {
            bulk_ref,
            device_id,
            done,
            total,
            ..
        }) => Some(format!("{PROGRESS}{bulk_ref} {device_id} {done} {total}")),
        ProgressEvent::Bulk(BulkEvent::Summary {
            bulk_ref,
            ok,
            failed,
            total,
            ..
        }) => Some(format!("{SUMMARY}{bulk_ref} {ok} {failed} {total}")),
        ProgressEvent::Bulk(BulkEvent::Cancelled { .. }) | ProgressEvent::Run(_) => None,
    }
}

#[async_trait]
impl ProgressSink for PrintingSink {
    async fn publish(&self, event: ProgressEvent) {
        if let Some(line) = event_line(&event) {
            let mut out = std::io::stdout().lock();
            // Publishing never fails a job; a closed stdout only loses the line.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
        self.inner.publish(event).await;
    }

    async fn subscribe(&self, topic: &str) -> Subscription {
        self.inner.subscribe(topic).await
    }
}
