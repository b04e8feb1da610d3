//! [`Executor::execute_command`]: one command on one device, output streamed into chunks.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;

use crate::backend::network::{
    ExecOptions, ExitStatus, NetworkClient, NetworkError, OutputEvent, OutputEvents, TimeoutPhase,
};
use crate::backend::progress::{ProgressEvent, ProgressSink, RunEvent};
use crate::backend::store::RunStore;
use crate::bulk::{is_template, render_command, validate_command};
use crate::error::{Conflict, Error, Result, ValidationError};
use crate::exec::{CancelReason, CancelWatch, Cancellations};
use crate::exec::{ExecLimits, LimitOverrides};
use crate::model::ids::{BulkRef, DeviceId, RunId};
use crate::model::run::{NewRun, OutputStream, Run, RunFinish, RunStatus};
use crate::runtime::{Clock, SystemClock};

/// Largest chunk stored, in bytes: small reads are coalesced up to this, larger ones split.
pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;
/// Longest a partial chunk waits for more output before it is stored (live views see output
/// at least this often).
pub const DEFAULT_FLUSH_AFTER: Duration = Duration::from_millis(250);

/// `error_kind` of a run whose output reached the cap.
pub const OUTPUT_CAP: &str = "output_cap";
/// `error_kind` of a run whose session closed without an exit status.
pub const CLOSED: &str = "closed";
/// `error_kind` of a cancelled run.
pub const CANCELLED: &str = "cancelled";

/// Options of [`Executor::execute_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Who asked (stored on the run).
    pub requested_by: String,
    /// The bulk the run belongs to.
    pub bulk_ref: Option<BulkRef>,
    /// Replacements of the service's [`ExecLimits`] for this run.
    pub limits: LimitOverrides,
}

impl RunOptions {
    /// Options for a run requested by `requested_by`, outside any bulk, with the service's
    /// limits.
    pub fn new(requested_by: impl Into<String>) -> Self {
        Self {
            requested_by: requested_by.into(),
            bulk_ref: None,
            limits: LimitOverrides::none(),
        }
    }

    /// Sets the bulk.
    pub fn with_bulk_ref(mut self, bulk_ref: BulkRef) -> Self {
        self.bulk_ref = Some(bulk_ref);
        self
    }

    /// Sets the whole-command deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.limits = self.limits.with_timeout(timeout);
        self
    }

    /// Sets the output cap.
    pub fn with_max_output(mut self, bytes: u64) -> Self {
        self.limits = self.limits.with_max_output(bytes);
        self
    }

    /// Sets both limits.
    pub fn with_limits(mut self, limits: LimitOverrides) -> Self {
        self.limits = limits;
        self
    }
}

/// Runs commands on devices and records everything they print.
///
/// Every command runs under [`ExecLimits`] (a deadline and an output cap, 300 s and 16 MiB
/// unless set with [`with_limits`](Self::with_limits) or per run) and can be cancelled
/// through [`Cancellations`].
#[derive(Debug, Clone)]
pub struct Executor {
    store: Arc<dyn RunStore>,
    client: Arc<dyn NetworkClient>,
    progress: Arc<dyn ProgressSink>,
    clock: Arc<dyn Clock>,
    limits: ExecLimits,
    cancellations: Cancellations,
    chunk_bytes: usize,
    flush_after: Duration,
}

impl Executor {
    /// A service writing to `store`, reaching devices through `client` and publishing live
    /// output to `progress`, with the default [`ExecLimits`].
    pub fn new(
        store: Arc<dyn RunStore>,
        client: Arc<dyn NetworkClient>,
        progress: Arc<dyn ProgressSink>,
    ) -> Self {
        Self {
            cancellations: Cancellations::new(store.clone()),
            store,
            client,
            progress,
            clock: Arc::new(SystemClock),
            limits: ExecLimits::default(),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            flush_after: DEFAULT_FLUSH_AFTER,
        }
    }

    /// Reads time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the default deadline and output cap (see [`ExecLimits::from_env`]).
    pub fn with_limits(mut self, limits: ExecLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Polls the store for cancel requests every `every` (default 500 ms).
    pub fn with_cancel_poll(mut self, every: Duration) -> Self {
        self.cancellations = Cancellations::with_poll(self.store.clone(), every);
        self
    }

    /// Sets the largest chunk (at least 4 bytes, so a UTF-8 character always fits).
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(4);
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

    /// The default limits.
    pub fn limits(&self) -> ExecLimits {
        self.limits
    }

    /// The cancel watches of the runs this service runs.
    pub fn cancellations(&self) -> &Cancellations {
        &self.cancellations
    }

    /// Asks for a running run to be stopped: recorded in the store, so the node running it —
    /// this process or another — closes its session within about one cancel poll and
    /// finishes it `cancelled`, keeping the output received so far. Answers the run as it
    /// was; a finished run is [`Conflict::RunFinished`].
    pub async fn cancel_run(&self, run_id: RunId) -> Result<Run> {
        let run = self
            .store
            .request_run_cancel(run_id, self.clock.now())
            .await?;
        self.cancellations.cancel_run_locally(run_id);
        Ok(run)
    }

    /// Runs `command` on the device and answers the finished run.
    ///
    /// The run is created first (status `running`), output is stored as it arrives in chunks
    /// of at most [`DEFAULT_CHUNK_BYTES`] that never split a UTF-8 character (never the whole
    /// output in memory), and the run ends:
    ///
    /// * `ok`: exit status 0 (exec), or the prompt came back (shell);
    /// * `failed`: a non-zero exit status or a signal, or the platform says the command failed
    ///   (`command_rejected`: a failure pattern matched; `prompt_unanswered`: the device asked
    ///   a question the bulk does not allow answering);
    /// * `error`: the transport failed (`error_kind` says how), the session closed without an
    ///   exit status (`closed`), or the output reached the cap (`output_cap`; exactly the cap's
    ///   bytes are kept, the session is closed and the run is `truncated`);
    /// * `timeout`: the deadline passed, in whatever phase (connect, login, channel, output);
    ///   the output received so far is kept;
    /// * `cancelled`: the run or its bulk was cancelled; the output so far is kept.
    ///
    /// Device failures are recorded on the run, not returned as errors; errors are for bad
    /// input (validation, unknown device), a cancelled bulk ([`Conflict::BulkCancelled`]:
    /// no run is created), the store failing, and [`Error::RunGone`] when retention deleted
    /// the run mid-stream (writing then stops cleanly).
    pub async fn execute_command(
        &self,
        device_id: DeviceId,
        command: &str,
        opts: RunOptions,
    ) -> Result<Run> {
        let command = validate_command(command).map_err(ValidationError::from)?;
        let requested_by = opts.requested_by.trim();
        if requested_by.is_empty() {
            return Err(ValidationError::EmptyRequestedBy.into());
        }
        opts.limits.validate()?;
        let limits = self.limits.with_overrides(&opts.limits);
        let device = self.store.device(device_id).await?;
        // A template is rendered for this device; the run stores what was sent.
        let rendered;
        let command = if is_template(command) {
            rendered = render_command(command, &device).map_err(|e| ValidationError::Template {
                problems: vec![format!("{}: {e}", device.name)],
            })?;
            rendered.as_str()
        } else {
            command
        };
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
        let mut cancel = self.cancellations.watch_run(run.id, opts.bulk_ref.as_ref());
        let began = Instant::now();
        let deadline = began + limits.timeout;
        let exec = ExecOptions {
            timeout: Some(limits.timeout),
            answer_prompts: opts.limits.answer_prompts,
        };
        // Connect, log in, open the channel and start the command: under the deadline, and
        // stopped by a cancel.
        let started = tokio::select! {
            biased;
            reason = cancel.cancelled() => Err(cancelled_finish(reason)),
            r = tokio::time::timeout_at(deadline, self.client.execute(&device, command, &exec)) => match r {
                Err(_) => Err(timeout_finish(limits.timeout)),
                Ok(Err(e)) => Err(error_finish(&e)),
                Ok(Ok(events)) => Ok(events),
            },
        };
        let finish = match started {
            Err(finish) => finish,
            Ok(events) => {
                self.stream_output(run.id, events, deadline, limits, &mut cancel)
                    .await?
            }
        };
        drop(cancel);
        let run = self
            .store
            .finish_run(run.id, finish, self.clock.now())
            .await?;
        tracing::debug!(
            event = crate::telemetry::RUN_FINISH,
            status = run.status.as_str(),
            error_kind = run.error_kind.as_deref().unwrap_or(""),
            duration_ms = began.elapsed().as_secs_f64() * 1000.0,
            bytes = run.bytes,
        );
        self.progress
            .publish(ProgressEvent::Run(RunEvent::Finished {
                run_id: run.id,
                status: run.status,
            }))
            .await;
        Ok(run)
    }

    /// Stores the output stream and decides how the run finished. Dropping `events` (on
    /// return) closes the session.
    async fn stream_output(
        &self,
        run_id: RunId,
        mut events: OutputEvents,
        deadline: Instant,
        limits: ExecLimits,
        cancel: &mut CancelWatch,
    ) -> Result<RunFinish> {
        let mut out = ChunkWriter {
            network: self,
            run_id,
            buf: BytesMut::new(),
            stream: OutputStream::Stdout,
            accepted: 0,
            cap: limits.max_output,
            capped: false,
            since: None,
        };
        let mut seen = Seen::default();
        let ended = loop {
            // A partial chunk is stored once it is `flush_after` old, however the device
            // trickles: live views see output at least that often.
            let wait = out
                .since
                .map(|t| self.flush_after.saturating_sub(t.elapsed()));
            let next = tokio::select! {
                biased;
                reason = cancel.cancelled() => Ended::Cancelled(reason),
                r = tokio::time::timeout_at(deadline, next_within(&mut events, wait)) => match r {
                    Err(_) => Ended::Deadline,
                    Ok(Next::Idle) => {
                        out.flush(false).await?;
                        continue;
                    }
                    Ok(Next::End) => Ended::Closed,
                    Ok(Next::Item(item)) => match out.event(item, &mut seen).await? {
                        Some(ended) => ended,
                        None => continue,
                    },
                },
            };
            break next;
        };
        // What the device sent before the deadline or the cancel and is already here is
        // output too (up to the cap).
        if matches!(ended, Ended::Deadline | Ended::Cancelled(_)) {
            while let Some(Some(item)) = events.next().now_or_never() {
                if out.event(item, &mut seen).await?.is_some() {
                    break;
                }
            }
        }
        drop(events);
        out.flush(true).await?;
        let truncated = out.capped;
        let Seen {
            exit,
            credential_ref,
            redacted,
        } = seen;
        Ok(match ended {
            Ended::Deadline => timeout_finish(limits.timeout),
            Ended::Cancelled(reason) => cancelled_finish(reason),
            Ended::Failed(e) => error_finish(&e),
            Ended::Capped => RunFinish::new(RunStatus::Error)
                .with_error(
                    OUTPUT_CAP,
                    format!(
                        "the output reached the cap of {} bytes: the session was closed and the first {} bytes kept",
                        limits.max_output, limits.max_output
                    ),
                )
                .with_truncated(true),
            Ended::Closed => match exit {
                Some(ExitStatus::Code(0)) => RunFinish::new(RunStatus::Ok).with_exit_status(0),
                Some(ExitStatus::Code(code)) => {
                    RunFinish::new(RunStatus::Failed).with_exit_status(code)
                }
                Some(ExitStatus::Signal(signal)) => RunFinish::new(RunStatus::Failed)
                    .with_error("signal", format!("killed by signal {signal}")),
                Some(ExitStatus::Rejected(rejection)) => RunFinish::new(RunStatus::Failed)
                    .with_error(rejection.kind.as_str(), rejection.detail),
                None => RunFinish::new(RunStatus::Error).with_error(
                    CLOSED,
                    "the session closed without an exit status: the command may not have finished",
                ),
            },
        }
        .with_truncated(truncated)
        .with_credential_ref(credential_ref)
        .with_redacted(redacted))
    }
}

/// What the transport reported besides output.
#[derive(Default)]
struct Seen {
    exit: Option<ExitStatus>,
    credential_ref: Option<String>,
    redacted: bool,
}

/// Why reading a command's output stopped.
enum Ended {
    /// The stream ended.
    Closed,
    /// The transport failed.
    Failed(NetworkError),
    /// The deadline passed.
    Deadline,
    /// The output reached the cap.
    Capped,
    /// The run or its bulk was cancelled.
    Cancelled(CancelReason),
}

/// Coalesces output into chunks of at most `chunk_bytes`, one stream at a time, and keeps at
/// most `cap` bytes.
struct ChunkWriter<'a> {
    network: &'a Executor,
    run_id: RunId,
    buf: BytesMut,
    stream: OutputStream,
    /// Bytes accepted so far (stored or buffered).
    accepted: u64,
    cap: u64,
    /// Output was refused at the cap.
    capped: bool,
    /// When the oldest byte in `buf` arrived.
    since: Option<Instant>,
}

impl ChunkWriter<'_> {
    /// Handles one item of the stream; answers how the stream ended if it did.
    async fn event(
        &mut self,
        item: std::result::Result<OutputEvent, NetworkError>,
        seen: &mut Seen,
    ) -> Result<Option<Ended>> {
        let (stream, data) = match item {
            Ok(OutputEvent::Stdout(data)) => (OutputStream::Stdout, data),
            Ok(OutputEvent::Stderr(data)) => (OutputStream::Stderr, data),
            Ok(OutputEvent::Exit(status)) => {
                seen.exit = Some(status);
                return Ok(None);
            }
            Ok(OutputEvent::LoggedIn { credential_ref }) => {
                seen.credential_ref = Some(credential_ref);
                return Ok(None);
            }
            Ok(OutputEvent::Redacted) => {
                seen.redacted = true;
                return Ok(None);
            }
            Err(e) => return Ok(Some(Ended::Failed(e))),
        };
        let room = self.cap - self.accepted;
        if data.len() as u64 > room {
            let keep = usize::try_from(room).unwrap_or(usize::MAX);
            self.write(stream, data.slice(..keep)).await?;
            self.capped = true;
            return Ok(Some(Ended::Capped));
        }
        self.write(stream, data).await?;
        Ok(None)
    }

    async fn write(&mut self, stream: OutputStream, mut data: Bytes) -> Result<()> {
        if stream != self.stream {
            self.flush(true).await?;
            self.stream = stream;
        }
        self.accepted += data.len() as u64;
        if self.since.is_none() && !data.is_empty() {
            self.since = Some(Instant::now());
        }
        let max = self.network.chunk_bytes;
        while !data.is_empty() {
            let room = max.saturating_sub(self.buf.len()).max(1);
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data.split_to(take));
            if self.buf.len() >= max {
                self.flush(false).await?;
            }
        }
        Ok(())
    }

    /// Stores the buffer as one chunk. Unless `all`, a UTF-8 character left incomplete at
    /// its end is kept for the next chunk, so that every chunk renders on its own.
    async fn flush(&mut self, all: bool) -> Result<()> {
        let keep = if all {
            0
        } else {
            incomplete_utf8_tail(&self.buf)
        };
        if self.buf.len() <= keep {
            return Ok(());
        }
        let data = self.buf.split_to(self.buf.len() - keep).freeze();
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

/// How many bytes at the end of `buf` start a UTF-8 character that is not complete yet
/// (0 to 3). Bytes that cannot start a valid character count as complete: they are not
/// UTF-8 and are stored as they came. Renderers use it to decode output across chunks that
/// were stored before chunks were aligned on characters.
pub fn incomplete_utf8_tail(buf: &[u8]) -> usize {
    for back in 1..=buf.len().min(3) {
        let b = buf[buf.len() - back];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let len = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        return if len > back { back } else { 0 };
    }
    0
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

fn cancelled_finish(reason: CancelReason) -> RunFinish {
    let what = match reason {
        CancelReason::Run => "the run was cancelled",
        CancelReason::Bulk => "its bulk was cancelled",
    };
    RunFinish::new(RunStatus::Cancelled).with_error(CANCELLED, what)
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

/// Whether `e` says the run was refused because its bulk was cancelled.
pub(crate) fn is_bulk_cancelled(e: &Error) -> bool {
    matches!(e, Error::Conflict(Conflict::BulkCancelled(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_utf8_tails_are_found() {
        let euro = "€".as_bytes(); // 3 bytes
        let smile = "😀".as_bytes(); // 4 bytes
        assert_eq!(incomplete_utf8_tail(b""), 0);
        assert_eq!(incomplete_utf8_tail(b"abc"), 0);
        assert_eq!(incomplete_utf8_tail(euro), 0);
        assert_eq!(incomplete_utf8_tail(&euro[..1]), 1);
        assert_eq!(incomplete_utf8_tail(&euro[..2]), 2);
        assert_eq!(
            incomplete_utf8_tail(&[b'a', smile[0], smile[1], smile[2]]),
            3
        );
        assert_eq!(incomplete_utf8_tail(smile), 0);
        // Not UTF-8: stored as it came.
        assert_eq!(incomplete_utf8_tail(&[0xFF]), 0);
        assert_eq!(incomplete_utf8_tail(&[0x80, 0x80, 0x80]), 0);
    }
}
