//! [`RunFollower`]: one way to follow a run's output — what is stored from a given chunk on,
//! then the live output, then the finished run — for every viewer.
//!
//! It subscribes to the run's topic *before* reading the store. It reads stored chunks a page
//! at a time (memory stays about one page whatever the run's size), and follows the live
//! feed once it has caught up. A gap in the feed, a lag, or the feed's end sends it back to
//! the store, which has the truth; a chunk it already yielded is never yielded again.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::backend::progress::{
    FeedItem, ProgressEvent, ProgressSink, RunEvent, Subscription, run_topic,
};
use crate::backend::store::RunStore;
use crate::error::Result;
use crate::model::ids::RunId;
use crate::model::run::{OutputStream, Run};

/// Chunks read per store call by default (chunks are at most 64 KiB: about 1 MiB).
pub const DEFAULT_RUN_PAGE: usize = 16;

/// What a [`RunFollower`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunUpdate {
    /// The next chunk of output, in `seq` order without gaps.
    Chunk {
        /// Its sequence number.
        seq: u64,
        /// Which stream.
        stream: OutputStream,
        /// The bytes (not necessarily UTF-8, and possibly split mid-character in runs stored
        /// before chunks were aligned on characters).
        data: Bytes,
    },
    /// The run finished: after its last chunk. Nothing follows.
    Finished(Box<Run>),
}

/// Follows one run's output; see [`follow_run`] and the [`follow`](crate::follow) module.
pub struct RunFollower {
    sub: Subscription,
    store: Arc<dyn RunStore>,
    run_id: RunId,
    page_size: usize,
    /// The first seq not yielded yet.
    next: u64,
    /// At most one page of stored chunks, not yielded yet.
    page: VecDeque<crate::RunChunk>,
    /// The store may hold chunks from `next` on that were not read.
    catching_up: bool,
    /// The feed closed: read the store to its end, then stop.
    feed_closed: bool,
    /// The finished run, yielded after the last chunk.
    end: Option<Box<Run>>,
    done: bool,
}

impl std::fmt::Debug for RunFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFollower")
            .field("run_id", &self.run_id)
            .field("next", &self.next)
            .field("catching_up", &self.catching_up)
            .field("done", &self.done)
            .finish()
    }
}

/// Follows run `run_id` from chunk `from_seq` on: subscribes to its topic, then checks the run
/// exists (an unknown run is [`Error::NotFound`](crate::Error::NotFound)).
pub async fn follow_run(
    store: Arc<dyn RunStore>,
    progress: &dyn ProgressSink,
    run_id: RunId,
    from_seq: u64,
) -> Result<RunFollower> {
    let sub = progress.subscribe(&run_topic(run_id)).await;
    store.run(run_id).await?;
    Ok(RunFollower {
        sub,
        store,
        run_id,
        page_size: DEFAULT_RUN_PAGE,
        next: from_seq,
        page: VecDeque::new(),
        catching_up: true,
        feed_closed: false,
        end: None,
        done: false,
    })
}

impl RunFollower {
    /// Reads `chunks` chunks per store call (at least 1; default [`DEFAULT_RUN_PAGE`]).
    pub fn with_page_size(mut self, chunks: usize) -> Self {
        self.page_size = chunks.max(1);
        self
    }

    /// The run followed.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// Reads the next page of stored chunks from `next`. A short page is the end of what is
    /// stored: the follower then follows the feed again, or ends if the run finished.
    async fn read_page(&mut self) -> Result<()> {
        let page = self
            .store
            .chunks(self.run_id, self.next, self.page_size)
            .await?;
        let short = page.len() < self.page_size;
        self.page = page.into();
        if short {
            self.catching_up = false;
            let run = self.store.run(self.run_id).await?;
            if run.status.is_finished() {
                self.end = Some(Box::new(run));
                self.done = true;
            } else if self.feed_closed {
                self.done = true;
            }
        }
        Ok(())
    }

    /// The next update; `None` after [`RunUpdate::Finished`] (or when the feed closed and the
    /// store has nothing more). A store error is returned; the follower can be polled again.
    pub async fn next(&mut self) -> Option<Result<RunUpdate>> {
        loop {
            if let Some(c) = self.page.pop_front() {
                self.next = c.seq + 1;
                return Some(Ok(RunUpdate::Chunk {
                    seq: c.seq,
                    stream: c.stream,
                    data: c.data,
                }));
            }
            if let Some(run) = self.end.take() {
                return Some(Ok(RunUpdate::Finished(run)));
            }
            if self.done {
                return None;
            }
            if self.catching_up {
                if let Err(e) = self.read_page().await {
                    return Some(Err(e));
                }
                continue;
            }
            match self.sub.next().await {
                Some(FeedItem::Event(ProgressEvent::Run(RunEvent::Output {
                    seq,
                    stream,
                    data,
                    ..
                }))) if seq == self.next => {
                    self.next = seq + 1;
                    return Some(Ok(RunUpdate::Chunk { seq, stream, data }));
                }
                Some(FeedItem::Event(ProgressEvent::Run(RunEvent::Output { seq, .. })))
                    if seq < self.next => {}
                // A gap, the end, a lag: the store has the truth.
                Some(FeedItem::Event(ProgressEvent::Run(_)) | FeedItem::Lagged { .. }) => {
                    self.catching_up = true;
                }
                Some(FeedItem::Event(ProgressEvent::Bulk(_))) => {}
                None => {
                    self.feed_closed = true;
                    self.catching_up = true;
                }
            }
        }
    }
}
