//! The control server (SPEC §6.2): TCP, one [`Session`] per connection, lines framed
//! with [`next_line`] so no line longer than the limit is ever held in memory.
//!
//! Defences, so that what one client sends never stops the server serving the others:
//!
//! - a line over 64 KiB gets `E013: Line too long` and the connection is closed, after
//!   reading at most the limit (a 10 MB line costs 64 KiB of memory);
//! - a cap on connections (`max_connections`, default 1024) and on connections from one
//!   address (`max_connections_per_ip`, default 64): a connection over a cap is told
//!   `E021: Too many connections` and closed at once, so one host cannot take every slot
//!   (nor the process's file descriptors; [`flotilla_service::slots`]);
//! - a connection that sends no complete line for `idle_timeout` (default 10 minutes) is
//!   closed, so abandoned connections give their slots back, and one that sends a byte
//!   now and then without ever ending its line does too;
//! - a client that disconnects half-way through a document changes nothing: a document
//!   is applied only when complete;
//! - non-UTF-8 and binary lines get `E006`; nothing a client sends can panic the server.
//!
//! Who may create subscriptions is the [`SubscribeAccess`] every session gets
//! (`dispatcher.subscribe`; see the protocol's docs).
//!
//! The server takes a bound listener and a cancellation token (tests bind port 0). On
//! shutdown it stops accepting and closes every connection after the line in hand.

use std::sync::Arc;
use std::time::Duration;

use flotilla_service::slots::{SlotLimits, Slots};
use flotilla_wikimedia_core::protocol::frame::{Frame, next_line};
use flotilla_wikimedia_core::{Session, SessionLimits, Step, SubscribeAccess, SubscriptionBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::Shared;

/// The reply to a connection over a cap (Flotilla's addition to the original codes).
pub const TOO_MANY_CONNECTIONS: &str = "E021: Too many connections";

/// The control server's limits.
#[derive(Debug, Clone, Copy)]
pub struct ControlLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub idle_timeout: Duration,
    pub session: SessionLimits,
}

impl Default for ControlLimits {
    fn default() -> ControlLimits {
        ControlLimits {
            max_connections: 1024,
            max_connections_per_ip: 64,
            idle_timeout: Duration::from_secs(600),
            session: SessionLimits::default(),
        }
    }
}

/// Serves the control protocol on `listener` until `shutdown`; `access` says who may
/// create subscriptions.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: ControlLimits,
    access: SubscribeAccess,
    shutdown: CancellationToken,
) {
    // Refuse rather than close an idle connection: a client may keep an authenticated
    // session open between commands.
    let slots = Slots::new(SlotLimits {
        max_connections: limits.max_connections,
        max_per_address: limits.max_connections_per_ip,
        evict_idle: false,
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
                tracing::warn!(%error, "The control server could not accept a connection.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(guard) = slots.admit(Some(peer.ip())) else {
            connections.spawn(refuse(stream));
            continue;
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        // The session counts its subscriptions against the cap per address.
        let session = Session::new(limits.session).with_access(access.clone()).from_address(peer.ip());
        connections.spawn(async move {
            let _guard = guard;
            shared.mutate(|s| (s.connection_opened(), Vec::new())).await;
            if let Err(error) = handle(stream, session, &shared, limits, &shutdown).await {
                tracing::debug!(%peer, %error, "A control connection ended with an error.");
            }
            shared.mutate(|s| (s.connection_closed(), Vec::new())).await;
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn refuse(mut stream: TcpStream) {
    let line = format!("{TOO_MANY_CONNECTIONS}\n");
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// One connection: read, frame, feed the session, persist, reply.
async fn handle(
    mut stream: TcpStream,
    mut session: Session,
    shared: &Shared,
    limits: ControlLimits,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let max_line = limits.session.max_line_bytes;
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    // Counted from the last complete line, not the last byte: a client that trickles a
    // line it never ends is as idle as a silent one.
    let mut idle_until = tokio::time::Instant::now() + limits.idle_timeout;
    loop {
        // Every complete line in the buffer first.
        loop {
            match next_line(&buffer, max_line) {
                Frame::Line { end, next } => {
                    idle_until = tokio::time::Instant::now() + limits.idle_timeout;
                    let replies = feed(&mut session, &buffer[..end], shared).await;
                    buffer.drain(..next);
                    write(&mut stream, &replies.bytes, limits.idle_timeout).await?;
                    if replies.close {
                        let _ = stream.shutdown().await;
                        return Ok(());
                    }
                }
                Frame::TooLong => {
                    let output = session.line_too_long();
                    for reply in &output.replies {
                        write(&mut stream, &reply.encode(), limits.idle_timeout).await?;
                    }
                    linger(stream).await;
                    return Ok(());
                }
                Frame::Incomplete => break,
            }
        }
        let read = tokio::select! {
            read = tokio::time::timeout_at(idle_until, stream.read(&mut chunk)) => read,
            _ = shutdown.cancelled() => return Ok(()),
        };
        match read {
            Err(_) => {
                tracing::debug!("Closing an idle control connection.");
                return Ok(());
            }
            Ok(Ok(0)) => return Ok(()), // The client left; a half document is dropped.
            Ok(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
            Ok(Err(error)) => return Err(error),
        }
    }
}

/// Closes a connection whose client may still be sending (a line too long): our side
/// is shut first and what the client sends is read and dropped for a moment, so the
/// kernel does not answer it with a reset that would destroy the `E013` line before the
/// client has read it.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + LINGER;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
        if n == 0 {
            break;
        }
    }
}

/// How long [`linger`] waits for a client to stop sending.
const LINGER: Duration = Duration::from_secs(2);

/// Writes, giving up on a client that does not read its replies for `timeout`.
async fn write(stream: &mut TcpStream, bytes: &[u8], timeout: Duration) -> std::io::Result<()> {
    match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client does not read its replies")),
    }
}

struct Replies {
    bytes: Vec<u8>,
    close: bool,
}

/// Feeds a line to the session; a document it completes is parsed (its patterns
/// compiled) off the lock before it is applied (see [`crate::state`]).
async fn feed(session: &mut Session, line: &[u8], shared: &Shared) -> Replies {
    let step = shared
        .mutate(|subscriptions| match session.step(line, subscriptions) {
            Step::Done(mut output) => {
                let mutations = std::mem::take(&mut output.mutations);
                (Step::Done(output), mutations)
            }
            document => (document, Vec::new()),
        })
        .await;
    let output = match step {
        Step::Done(output) => output,
        Step::Document(document) => {
            let (wikis, budget) = {
                let subscriptions = shared.read();
                (subscriptions.registry(), subscriptions.limits().max_pattern_memory_per_subscription)
            };
            let parsed = shared.compile(move || document.parse(wikis, budget)).await;
            shared
                .mutate(|subscriptions| {
                    let mut output = session.apply_document(parsed, subscriptions);
                    let mutations = std::mem::take(&mut output.mutations);
                    (output, mutations)
                })
                .await
        }
    };
    let mut bytes = Vec::new();
    for reply in &output.replies {
        bytes.extend_from_slice(&reply.encode());
    }
    Replies { bytes, close: output.close }
}
