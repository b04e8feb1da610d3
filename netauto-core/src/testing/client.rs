//! [`ScriptedClient`]: the one test [`NetworkClient`]. Each `execute` answers a scripted
//! [`Reply`] — taken in order from a list, or made per device and command by a function — and
//! every call and every open session is counted.
//!
//! ```
//! # #[cfg(feature = "testing")] {
//! use std::time::Duration;
//! use netauto_core::testing::{Reply, ScriptedClient, exit, out};
//!
//! // Two calls: one answers at once, the other prints a line and then never ends.
//! let client = ScriptedClient::with([
//!     Reply::Events(vec![out("ok\n"), exit(0)]),
//!     Reply::silent_after("started\n"),
//! ]);
//! // Every call: a byte every 20 ms, forever.
//! let trickle = ScriptedClient::from_fn(|_device, _command| {
//!     Reply::trickle("!", Duration::from_millis(20))
//! });
//! # let _ = (client, trickle);
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::backend::network::{
    ExecOptions, ExitStatus, NetworkClient, NetworkError, OutputEvent, OutputEvents,
};
use crate::model::device::Device;
use crate::model::ids::DeviceId;

/// One item of a command's output stream.
pub type Item = Result<OutputEvent, NetworkError>;

/// `text` on standard output.
pub fn out(text: &str) -> Item {
    Ok(OutputEvent::Stdout(Bytes::copy_from_slice(text.as_bytes())))
}

/// `text` on standard error.
pub fn err(text: &str) -> Item {
    Ok(OutputEvent::Stderr(Bytes::copy_from_slice(text.as_bytes())))
}

/// The command ended with exit code `code`.
pub fn exit(code: i32) -> Item {
    Ok(OutputEvent::Exit(ExitStatus::Code(code)))
}

/// These items as an output stream, all available at once.
pub fn events(items: Vec<Item>) -> OutputEvents {
    Box::pin(futures_util::stream::iter(items))
}

/// One step of a scripted output stream ([`Reply::Steps`]).
#[derive(Debug, Clone)]
pub enum Step {
    /// Hand out this item.
    Emit(Item),
    /// Wait this long (tokio time).
    Sleep(Duration),
    /// Let other tasks run once.
    Yield,
    /// Go silent forever: the stream never ends (a command that never ends).
    Hang,
    /// These steps, again and again (an empty list hangs).
    Forever(Vec<Step>),
}

/// What one `execute` answers.
#[derive(Debug)]
pub enum Reply {
    /// Fails before the command starts.
    Refuse(NetworkError),
    /// These items, then the end of the stream.
    Events(Vec<Item>),
    /// These steps, then the end of the stream.
    Steps(Vec<Step>),
    /// Whatever the test sends, until it drops the sender.
    Live(mpsc::UnboundedReceiver<Item>),
    /// `execute` never answers (a connect that hangs).
    Hang,
    /// `execute` panics with this message (a bug in the transport).
    Panic(String),
}

impl Reply {
    /// `text` on stdout, exit 0.
    pub fn ok(text: &str) -> Self {
        Self::Events(vec![out(text), exit(0)])
    }

    /// `text` on stdout, then silence forever (a command that never ends).
    pub fn silent_after(text: &str) -> Self {
        Self::Steps(vec![Step::Emit(out(text)), Step::Hang])
    }

    /// `text` on stdout forever, as fast as it is read (`yes`).
    pub fn endless(text: &str) -> Self {
        Self::Steps(vec![Step::Forever(vec![
            Step::Yield,
            Step::Emit(out(text)),
        ])])
    }

    /// `text` on stdout every `every`, forever: never quiet for long.
    pub fn trickle(text: &str, every: Duration) -> Self {
        Self::Steps(vec![Step::Forever(vec![
            Step::Sleep(every),
            Step::Emit(out(text)),
        ])])
    }

    /// Each piece on stdout after a pause of `pause`, then exit 0.
    pub fn paced(pause: Duration, pieces: impl IntoIterator<Item = Bytes>) -> Self {
        let mut steps = Vec::new();
        for piece in pieces {
            steps.push(Step::Sleep(pause));
            steps.push(Step::Emit(Ok(OutputEvent::Stdout(piece))));
        }
        steps.push(Step::Emit(exit(0)));
        Self::Steps(steps)
    }
}

type ReplyFn = dyn Fn(&Device, &str) -> Reply + Send + Sync;

#[derive(Clone)]
enum Script {
    InOrder(Arc<Mutex<VecDeque<Reply>>>),
    PerCall(Arc<ReplyFn>),
}

/// A calls record: device, command, options.
pub type Call = (DeviceId, String, ExecOptions);

/// A [`NetworkClient`] answering scripted [`Reply`]s. Clones share the script, the record of
/// calls and the count of open sessions. A session is open from `execute` until the stream it
/// answered is dropped (that is how the executor closes a session), or until a hanging
/// `execute` is dropped.
#[derive(Clone)]
pub struct ScriptedClient {
    script: Script,
    calls: Arc<Mutex<Vec<Call>>>,
    open: Arc<AtomicUsize>,
}

impl fmt::Debug for ScriptedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedClient")
            .field("calls", &self.started())
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

impl Default for ScriptedClient {
    /// A client with an empty script: any call panics.
    fn default() -> Self {
        Self::with([])
    }
}

impl ScriptedClient {
    /// Answers its calls with `replies`, in order; one call too many panics.
    pub fn with(replies: impl IntoIterator<Item = Reply>) -> Self {
        Self::new(Script::InOrder(Arc::new(Mutex::new(
            replies.into_iter().collect(),
        ))))
    }

    /// Answers every call with what `reply` makes of its device and command.
    pub fn from_fn(reply: impl Fn(&Device, &str) -> Reply + Send + Sync + 'static) -> Self {
        Self::new(Script::PerCall(Arc::new(reply)))
    }

    fn new(script: Script) -> Self {
        Self {
            script,
            calls: Arc::default(),
            open: Arc::default(),
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// How many times `execute` was called.
    pub fn started(&self) -> usize {
        lock(&self.calls).len()
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn next_reply(&self, device: &Device, command: &str) -> Reply {
        match &self.script {
            Script::InOrder(replies) => lock(replies)
                .pop_front()
                .expect("execute called more often than scripted"),
            Script::PerCall(reply) => reply(device, command),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An open session: counted while alive.
struct Session(Arc<AtomicUsize>);

impl Session {
    fn open(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Plays `steps` as a stream that keeps `session` open until it is dropped.
fn play(steps: Vec<Step>, session: Session) -> OutputEvents {
    futures_util::stream::unfold(
        (VecDeque::from(steps), session),
        |(mut steps, session)| async move {
            loop {
                match steps.pop_front()? {
                    Step::Emit(item) => return Some((item, (steps, session))),
                    Step::Sleep(d) => tokio::time::sleep(d).await,
                    Step::Yield => tokio::task::yield_now().await,
                    Step::Forever(body) if body.is_empty() => {
                        std::future::pending::<()>().await;
                    }
                    Step::Hang => std::future::pending::<()>().await,
                    Step::Forever(body) => {
                        steps.push_front(Step::Forever(body.clone()));
                        for step in body.into_iter().rev() {
                            steps.push_front(step);
                        }
                    }
                }
            }
        },
    )
    .boxed()
}

#[async_trait]
impl NetworkClient for ScriptedClient {
    async fn execute(
        &self,
        device: &Device,
        command: &str,
        options: &ExecOptions,
    ) -> Result<OutputEvents, NetworkError> {
        lock(&self.calls).push((device.id, command.to_owned(), options.clone()));
        let reply = self.next_reply(device, command);
        let session = Session::open(&self.open);
        match reply {
            Reply::Refuse(e) => Err(e),
            Reply::Events(items) => Ok(play(items.into_iter().map(Step::Emit).collect(), session)),
            Reply::Steps(steps) => Ok(play(steps, session)),
            Reply::Live(rx) => Ok(
                futures_util::stream::unfold((rx, session), |(mut rx, session)| async move {
                    rx.recv().await.map(|item| (item, (rx, session)))
                })
                .boxed(),
            ),
            Reply::Hang => {
                let _session = session;
                std::future::pending().await
            }
            Reply::Panic(message) => panic!("{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::device::NewDevice;

    fn device() -> Device {
        NewDevice::new("sw-1", "10.0.0.1", "cisco_ios", "netops").into_device(DeviceId(1))
    }

    #[tokio::test]
    async fn steps_play_in_order_and_sessions_close_with_their_stream() {
        let client = ScriptedClient::with([
            Reply::paced(Duration::from_millis(60), [Bytes::from_static(b"a")]),
            Reply::endless("y"),
        ]);
        let d = device();
        let paced: Vec<Item> = client
            .execute(&d, "one", &ExecOptions::default())
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(paced, [out("a"), exit(0)]);
        assert_eq!(client.open(), 0);
        let mut endless = client
            .execute(&d, "two", &ExecOptions::default())
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(endless.next().await, Some(out("y")));
        }
        assert_eq!((client.open(), client.started()), (1, 2));
        drop(endless);
        assert_eq!(client.open(), 0);
    }
}
