//! Batched completions: attempts that finish together are completed in one queue call.
//!
//! Completing is the one write every successful job makes; under load, many finish while the
//! previous completion is in flight, and one `complete_many` for all of them saves a round
//! trip (and a transaction) per job.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::backend::queue::JobQueue;
use crate::error::{Error, Result};
use crate::model::ids::JobId;
use crate::runtime::Clock;

/// Most attempts completed in one call.
const MAX_BATCH: usize = 500;

type Request = (JobId, u32, oneshot::Sender<Result<bool>>);

/// Sends completions to a background task that batches them.
#[derive(Debug, Clone)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Request>,
}

impl Completer {
    /// Starts the batching task (on the current tokio runtime). It ends when every
    /// `Completer` clone is dropped.
    pub(crate) fn start(queue: Arc<dyn JobQueue>, clock: Arc<dyn Clock>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let attempts: Vec<(JobId, u32)> =
                    batch.iter().map(|(id, a, _)| (*id, *a)).collect();
                match queue.complete_many(&attempts, clock.now()).await {
                    Ok(done) => {
                        for (id, _, reply) in batch {
                            let _ = reply.send(Ok(done.contains(&id)));
                        }
                    }
                    // The batch failed as a whole: complete one by one, so that each attempt
                    // gets its own answer.
                    Err(_) => {
                        for (id, attempt, reply) in batch {
                            let one = match queue.complete(id, attempt, clock.now()).await {
                                Ok(()) => Ok(true),
                                Err(Error::Conflict(_)) => Ok(false),
                                Err(e) => Err(e),
                            };
                            let _ = reply.send(one);
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Completes one attempt; answers whether it was still executing (false: fenced out).
    pub(crate) async fn complete(&self, id: JobId, attempt: u32) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((id, attempt, reply))
            .map_err(|_| Error::unavailable("the runner's completer has stopped"))?;
        answer
            .await
            .map_err(|_| Error::unavailable("the runner's completer has stopped"))?
    }
}
