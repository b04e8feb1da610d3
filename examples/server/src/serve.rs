//! [`serve`]: the HTTP/1.1 accept loop, with what `axum::serve` lacks — a header-read
//! timeout, a cap on connections and a graceful shutdown bounded in time.
//!
//! * **Header-read timeout.** A connection must send a whole request head within
//!   [`header_timeout`](ServeConfig::header_timeout) of opening (or of its previous response,
//!   on keep-alive): a client trickling a header byte by byte (slowloris), or holding a
//!   connection idle, is disconnected.
//! * **Connection cap.** At most [`max_connections`](ServeConfig::max_connections) are served
//!   at once. At the cap the loop stops accepting: new connections wait in the kernel's
//!   listen backlog (their TCP handshake completes, no request is read) until one closes.
//! * **Shutdown.** When `shutdown` resolves the listener closes, every connection is asked to
//!   finish its request in flight and close, and the loop waits up to
//!   [`shutdown_grace`](ServeConfig::shutdown_grace) for them; whatever is still open then is
//!   cut. Event streams do not hold this up: [`App::end_streams`](crate::App::end_streams) ends
//!   them (the binary calls it on SIGINT/SIGTERM).
//!
//! Each request carries the peer address as `ConnectInfo<SocketAddr>` (login throttling per
//! client address uses it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::Service;

use crate::config::ServeConfig;

/// Pause after a failed `accept` (out of file descriptors, usually) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What [`serve`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeReport {
    /// Connections accepted in all.
    pub connections: u64,
    /// Connections open when the shutdown began.
    pub open_at_shutdown: usize,
    /// Connections still open at the end of the grace period, closed without finishing.
    pub cut: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    config: &ServeConfig,
    shutdown: F,
) -> ServeReport
where
    F: Future<Output = ()> + Send,
{
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut report = ServeReport {
        connections: 0,
        open_at_shutdown: 0,
        cut: 0,
    };
    // Logged once each time the cap is reached, not once per waiting connection.
    let mut at_cap = false;
    loop {
        while conns.try_join_next().is_some() {}
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => {
                at_cap = false;
                p
            }
            Err(_) => {
                if !at_cap {
                    at_cap = true;
                    tracing::warn!(
                        max = config.max_connections,
                        "connection cap reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        report.connections += 1;
        conns.spawn(connection(
            stream,
            peer,
            router.clone(),
            config.header_timeout,
            stop_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    stop_tx.send_replace(true);
    while conns.try_join_next().is_some() {}
    report.open_at_shutdown = conns.len();
    tracing::info!(
        open = report.open_at_shutdown,
        grace_s = config.shutdown_grace.as_secs_f64(),
        "no longer accepting connections; finishing open requests"
    );
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(config.shutdown_grace, drain)
        .await
        .is_err()
    {
        report.cut = conns.len();
        tracing::warn!(
            cut = report.cut,
            "grace period over: closing connections with requests still open"
        );
        conns.shutdown().await;
    }
    report
}

/// One connection: HTTP/1.1 with the header-read timeout; on stop, a graceful close.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        // The router is always ready: no `poll_ready` needed.
        let mut router = router.clone();
        async move { router.call(req).await }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let stopping = async move {
        // The sender lives until every connection is done; an error is a stop as well.
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
}
