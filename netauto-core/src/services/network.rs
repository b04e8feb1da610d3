//! [`Network::execute_command`]: one command on one device, output streamed into chunks.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result, ValidationError};
use crate::ids::{BulkRef, DeviceId, RunId};
use crate::network::{
    ExecOptions, ExitStatus, NetworkClient, NetworkError, OutputEvent, TimeoutPhase,
};
use crate::progress::{ProgressEvent, ProgressSink, RunEvent};
use crate::run::{NewRun, OutputStream, Run, RunFinish, RunStatus};
use crate::store::RunStore;
use crate::validation::validate_command;

/// Largest chunk stored, in bytes: small reads are coalesced up to this, larger ones split.
pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;
/// Longest a partial chunk waits for more output before it is stored (live views see output
/// at least this often).
pub const DEFAULT_FLUSH_AFTER: Duration = Duration::from_millis(250);

/// Options of [`Network::execute_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecuteOptions {
    /// Who asked (stored on the run).
    pub requested_by: String,
    /// The bulk the run belongs to.
    pub bulk_ref: Option<BulkRef>,
    /// Deadline for the whole command; past it the run ends `timeout`.
    pub timeout: Option<Duration>,
}

impl ExecuteOptions {
    /// Options for a run requested by `requested_by`, outside any bulk, without deadline.
    pub fn new(requested_by: impl Into<String>) -> Self {
        Self {
            requested_by: requested_by.into(),
            bulk_ref: None,
            timeout: None,
        }
    }

    /// Sets the bulk.
    pub fn with_bulk_ref(mut self, bulk_ref: BulkRef) -> Self {
        self.bulk_ref = Some(bulk_ref);
        self
    }

    /// Sets the whole-command deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Runs commands on devices and records everything they print.
#[derive(Debug, Clone)]
pub struct Network {
    store: Arc<dyn RunStore>,
    client: Arc<dyn NetworkClient>,
    progress: Arc<dyn ProgressSink>,
    clock: Arc<dyn Clock>,
    chunk_bytes: usize,
    flush_after: Duration,
}

impl Network {
    /// A service writing to `store`, reaching devices through `client` and publishing live
    /// output to `progress`.
    pub fn new(
        store: Arc<dyn RunStore>,
        client: Arc<dyn NetworkClient>,
        progress: Arc<dyn ProgressSink>,
    ) -> Self {
        Self {
            store,
            client,
            progress,
            clock: Arc::new(SystemClock),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            flush_after: DEFAULT_FLUSH_AFTER,
        }
    }

    /// Reads time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the largest chunk (at least 1 byte).
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(1);
        self
    }

    /// Sets how long a partial chunk may wait for more output.
    pub fn with_flush_after(mut self, after: Duration) -> Self {
        self.flush_after = after;
        self
    }

    /// The store runs are written to.
    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.store
    }

    /// The progress sink.
    pub fn progress(&self) -> &Arc<dyn ProgressSink> {
        &self.progress
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs `command` on the device and answers the finished run.
    ///
    /// The run is created first (status `running`), output is stored as it arrives in chunks
    /// of at most [`DEFAULT_CHUNK_BYTES`] (never the whole output in memory), and the run ends
    /// `ok` (exit 0 or no exit status), `failed` (non-zero exit or a signal), `error` (the
    /// transport failed; `error_kind` says how) or `timeout`. Device failures are recorded on
    /// the run, not returned as errors; errors are for bad input (validation, unknown device),
    /// the store failing, and [`Error::RunGone`] when retention deleted the run mid-stream
    /// (writing then stops cleanly).
    pub async fn execute_command(
        &self,
        device_id: DeviceId,
        command: &str,
        opts: ExecuteOptions,
    ) -> Result<Run> {
        let command = validate_command(command).map_err(ValidationError::from)?;
        let requested_by = opts.requested_by.trim();
        if requested_by.is_empty() {
            return Err(ValidationError::EmptyRequestedBy.into());
        }
        let device = self.store.device(device_id).await?;
        let run = self
            .store
            .create_run(
                NewRun {
                    device_id,
                    command: command.to_owned(),
                    requested_by: requested_by.to_owned(),
                    bulk_ref: opts.bulk_ref.clone(),
                },
                self.clock.now(),
            )
            .await?;
        let deadline = opts.timeout.map(|t| (Instant::now() + t, t));
        let exec = ExecOptions {
            timeout: opts.timeout,
        };
        let finish =
            match with_deadline(deadline, self.client.execute(&device, command, &exec)).await {
                Err(after) => timeout_finish(after),
                Ok(Err(e)) => error_finish(&e),
                Ok(Ok(events)) => self.stream_output(run.id, events, deadline).await?,
            };
        let run = self
            .store
            .finish_run(run.id, finish, self.clock.now())
            .await?;
        self.progress
            .publish(ProgressEvent::Run(RunEvent::Finished {
                run_id: run.id,
                status: run.status,
            }))
            .await;
        Ok(run)
    }

    /// Stores the output stream and decides how the run finished.
    async fn stream_output(
        &self,
        run_id: RunId,
        mut events: crate::network::OutputEvents,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<RunFinish> {
        let mut out = ChunkWriter {
            network: self,
            run_id,
            buf: BytesMut::new(),
            stream: OutputStream::Stdout,
        };
        let mut exit: Option<ExitStatus> = None;
        loop {
            let wait = if out.buf.is_empty() {
                None
            } else {
                Some(self.flush_after)
            };
            let next = with_deadline(deadline, next_within(&mut events, wait)).await;
            let event = match next {
                Err(after) => {
                    out.flush().await?;
                    return Ok(timeout_finish(after));
                }
                Ok(Next::Idle) => {
                    out.flush().await?;
                    continue;
                }
                Ok(Next::End) => break,
                Ok(Next::Item(event)) => event,
            };
            match event {
                Ok(OutputEvent::Stdout(data)) => out.write(OutputStream::Stdout, data).await?,
                Ok(OutputEvent::Stderr(data)) => out.write(OutputStream::Stderr, data).await?,
                Ok(OutputEvent::Exit(status)) => exit = Some(status),
                Err(e) => {
                    out.flush().await?;
                    return Ok(error_finish(&e));
                }
            }
        }
        out.flush().await?;
        Ok(match exit {
            None | Some(ExitStatus::Code(0)) => {
                let finish = RunFinish::new(RunStatus::Ok);
                match exit {
                    Some(ExitStatus::Code(code)) => finish.with_exit_status(code),
                    _ => finish,
                }
            }
            Some(ExitStatus::Code(code)) => {
                RunFinish::new(RunStatus::Failed).with_exit_status(code)
            }
            Some(ExitStatus::Signal(signal)) => RunFinish::new(RunStatus::Failed)
                .with_error("signal", format!("killed by signal {signal}")),
        })
    }
}

/// Coalesces output into chunks of at most `chunk_bytes`, one stream at a time.
struct ChunkWriter<'a> {
    network: &'a Network,
    run_id: RunId,
    buf: BytesMut,
    stream: OutputStream,
}

impl ChunkWriter<'_> {
    async fn write(&mut self, stream: OutputStream, mut data: Bytes) -> Result<()> {
        if stream != self.stream {
            self.flush().await?;
            self.stream = stream;
        }
        let max = self.network.chunk_bytes;
        while !data.is_empty() {
            let room = max - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data.split_to(take));
            if self.buf.len() >= max {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = self.buf.split().freeze();
        let net = self.network;
        let appended = net
            .store
            .append_chunk(self.run_id, self.stream, &data, net.clock.now())
            .await?;
        net.progress
            .publish(ProgressEvent::Run(RunEvent::Output {
                run_id: self.run_id,
                seq: appended.seq,
                stream: self.stream,
                data,
            }))
            .await;
        Ok(())
    }
}

enum Next<T> {
    Item(T),
    End,
    Idle,
}

/// The next stream item, or `Idle` when `wait` passes first.
async fn next_within<S: futures_util::Stream + Unpin>(
    events: &mut S,
    wait: Option<Duration>,
) -> Next<S::Item> {
    let next = async {
        match events.next().await {
            Some(item) => Next::Item(item),
            None => Next::End,
        }
    };
    match wait {
        None => next.await,
        Some(wait) => tokio::time::timeout(wait, next).await.unwrap_or(Next::Idle),
    }
}

/// Runs `fut` until the deadline; `Err(length)` when it passed.
async fn with_deadline<F: std::future::Future>(
    deadline: Option<(Instant, Duration)>,
    fut: F,
) -> std::result::Result<F::Output, Duration> {
    match deadline {
        None => Ok(fut.await),
        Some((at, length)) => tokio::time::timeout_at(at, fut).await.map_err(|_| length),
    }
}

fn timeout_finish(after: Duration) -> RunFinish {
    RunFinish::new(RunStatus::Timeout).with_error(
        "timeout",
        NetworkError::Timeout {
            phase: TimeoutPhase::Command,
            after,
        }
        .to_string(),
    )
}

fn error_finish(e: &NetworkError) -> RunFinish {
    let status = if matches!(e, NetworkError::Timeout { .. }) {
        RunStatus::Timeout
    } else {
        RunStatus::Error
    };
    RunFinish::new(status).with_error(e.kind(), e.to_string())
}

impl From<crate::error::CommandError> for Error {
    fn from(e: crate::error::CommandError) -> Self {
        Error::Validation(ValidationError::Command(e))
    }
}
