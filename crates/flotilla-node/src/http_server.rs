//! The node's HTTP listener: accepts connections and serves the router ([`crate::http`])
//! on each with HTTP/1.1, bounded so that clients cannot take what the rest of the node
//! needs (file descriptors above all: the bus, the store, the control port and the
//! admin socket share them).
//!
//! - **A cap** on open connections (`http.max_connections`) and on connections from one
//!   address (`http.max_connections_per_ip`). At a cap, a new connection closes the
//!   connection (from its address, or any) that has waited longest for its next
//!   request ([`flotilla_service::slots`]): idle connections cost a descriptor and
//!   nothing else, and HTTP lets a server close them. Only when every connection is in
//!   the middle of a request or a response (an event stream) is the new one answered
//!   `503` and closed.
//! - **A header timeout** (`http.header_timeout`): a request's head must arrive whole
//!   within it, on a new connection and between requests on a kept-alive one.
//! - **An idle timeout** (`http.idle_timeout`): a connection that moves no byte in
//!   either direction for that long is closed, whatever it is doing (a request body
//!   that stalls, a client that stops reading). Event streams send a keep-alive comment
//!   every 15 s, so the timeout must be longer.
//!
//! Each request carries its peer's address as axum's `ConnectInfo<SocketAddr>`. On
//! shutdown the listener stops accepting, kept-alive connections close, and the ones in
//! the middle of a response finish it (event streams end by themselves).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use flotilla_service::slots::{Busy, Slot, SlotLimits, Slots};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The listener's limits (`http.*`, see `docs/configuration.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 1024,
            max_connections_per_ip: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// How long accepting waits for connections closed to make room to let go of their
/// sockets.
pub(crate) const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// The answer to a connection over the cap when none can be closed to make room.
const FULL: &str = "{\"error\":\"too many connections: try again later\"}";

/// Binds the listener with a listen queue of 1024 connections (the default is 128), so
/// that a burst waits in the kernel while the server makes room instead of being
/// dropped.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `app` on `listener` until `shutdown`, then lets the connections finish.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, shutdown: CancellationToken) {
    let slots = Slots::new(SlotLimits {
        max_connections: limits.max_connections,
        max_per_address: limits.max_connections_per_ip,
        evict_idle: true,
    });
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(%error, "The HTTP server could not accept a connection.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.admit(Some(peer.ip())) {
            Some(slot) => {
                connections.spawn(connection(stream, peer, slot, app.clone(), limits, shutdown.clone()));
            }
            None => {
                connections.spawn(refuse(stream));
            }
        }
        // A connection closed to make room holds its descriptor until its task runs:
        // let it, before taking another (bounded, should that task be slow to run).
        let _ = tokio::time::timeout(EVICTION_WAIT, slots.evicted_closed()).await;
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Answers `503` and closes.
async fn refuse(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{FULL}",
        FULL.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(response.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// One connection, until it closes, times out, is closed to make room, or the node
/// stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { stream, activity: activity.clone() });
    let slot = Arc::new(slot);
    let service = {
        let slot = slot.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // Busy from the request until its response's last byte (or the client
            // leaving): a connection in the middle of a response is never closed to make
            // room.
            let busy = slot.busy();
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(Body::new)).await?;
                Ok::<_, Infallible>(response.map(|body| Guarded { body, _busy: busy }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let idle_check = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle_check);
    let mut closing = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "An HTTP connection ended with an error.");
                }
                return;
            }
            // Only a connection waiting for its next request is ever closed to make room.
            _ = slot.evicted() => {
                tracing::debug!(%peer, "Closed an idle HTTP connection to make room for a new one.");
                return;
            }
            _ = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = &mut idle_check => {
                let quiet = activity.quiet_for();
                if quiet >= limits.idle_timeout {
                    tracing::debug!(%peer, ?quiet, "Closed an HTTP connection that moved no byte for the idle timeout.");
                    return;
                }
                idle_check.as_mut().reset(Instant::now() + (limits.idle_timeout - quiet));
            }
        }
    }
}

/// When a connection last moved a byte.
struct Activity {
    since: Instant,
    /// Milliseconds after `since`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { since: Instant::now(), last: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        self.since.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// A connection's stream, noting each byte read or written in its [`Activity`].
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that keeps its connection busy until it is done or dropped.
struct Guarded {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
