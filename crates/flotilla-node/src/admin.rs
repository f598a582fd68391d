//! The admin socket: a Unix socket in the data directory (`flotilla.sock`, mode 0600)
//! through which `flotilla send`, `tail` and `status` reach a running node, which holds
//! the bus. Access is the file system's: the node's user (and root) may use it, nobody
//! else ([`bind`]).
//!
//! Bounded like the node's other listeners, so that stray clients cannot take its file
//! descriptors: at most [`MAX_CONNECTIONS`] at once (a new one closes the one that has
//! waited longest without sending its request, else it is refused), and a request must
//! arrive within [`REQUEST_TIMEOUT`].
//!
//! Protocol: the client writes one JSON request line; the server answers with JSON lines.
//!
//! ```text
//! {"op":"send","queue":"reactor","message":{…}}   → {"id":"01J…","seq":42} | {"error":"…"}
//! {"op":"status"}                                  → a NodeStatus object
//! {"op":"tail","queue":"reactor","from":"end"}     → one message per line, until either side closes
//! {"op":"reload"}                                  → a ReloadReport | {"error":"…"} (every problem)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flotilla_bus::{Bus, ReadFrom};
use flotilla_core::Message;
use flotilla_service::slots::{Slot, SlotLimits, Slots};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::reload::ReloadReport;
use crate::status::{NodeStatus, StatusSource};

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "flotilla.sock";
/// The longest request line accepted (a `send` carries a whole message).
const MAX_REQUEST: usize = 16 << 20;
/// Connections at once (each `flotilla tail` holds one while it runs).
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket path for a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Binds the admin socket at [`socket_path`], replacing a stale one (the caller holds
/// the bus lock, so a socket left there belongs to a node that is gone).
///
/// The socket is bound inside a fresh 0700 directory, made 0600 there, and only then
/// renamed into place: at no moment can another user connect, even when the data
/// directory itself is open to others, and the process's umask is never touched
/// (other threads are creating files meanwhile).
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let socket = socket_path(data_dir);
    let private = data_dir.join(".flotilla.sock.new");
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let bound = (|| {
        let staged = private.join(SOCKET_NAME);
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, &socket)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Send { queue: String, message: serde_json::Value },
    Tail { queue: String, from: TailFrom },
    Status,
    Reload,
}

/// A reload asked for over the socket: the node answers on the enclosed channel.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<ReloadReport, String>>;

/// Where `tail` starts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TailFrom {
    Start,
    End,
}

impl From<TailFrom> for ReadFrom {
    fn from(from: TailFrom) -> ReadFrom {
        match from {
            TailFrom::Start => ReadFrom::Start,
            TailFrom::End => ReadFrom::End,
        }
    }
}

/// What a successful send returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub seq: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ErrorReply {
    error: String,
}

/// Stamps a message (id, lastupdate, hostname) and appends it to `queue`; returns once
/// it is durable. Shared by the admin socket and `flotilla send` without a node.
pub async fn publish_message(
    bus: &dyn Bus,
    hostname: &str,
    queue: &str,
    mut message: Message,
) -> anyhow::Result<Receipt> {
    message.stamp(hostname, SystemTime::now());
    let id = message.id().unwrap_or_default().to_string();
    let range = bus.publish(queue, vec![Bytes::from(message.to_json())]).await?;
    Ok(Receipt { id, seq: range.start })
}

/// Serves the admin socket until `shutdown` fires.
pub async fn serve(
    listener: UnixListener,
    bus: Arc<dyn Bus>,
    status: StatusSource,
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) {
    let slots =
        Slots::new(SlotLimits { max_connections: MAX_CONNECTIONS, max_per_address: usize::MAX, evict_idle: true });
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "The admin socket could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.admit(None) else {
            tokio::spawn(async move {
                let (_, mut write) = stream.into_split();
                let refused = reply_error(&mut write, "too many connections to the admin socket".to_string());
                let _ = tokio::time::timeout(Duration::from_secs(1), refused).await;
            });
            continue;
        };
        let (bus, status, reloads, shutdown) = (bus.clone(), status.clone(), reloads.clone(), shutdown.clone());
        let _ = tokio::time::timeout(crate::http_server::EVICTION_WAIT, slots.evicted_closed()).await;
        tokio::spawn(async move {
            tokio::select! {
                handled = handle(stream, &slot, bus, status, reloads, shutdown) => {
                    if let Err(error) = handled {
                        tracing::debug!(error = %format!("{error:#}"), "An admin connection ended with an error.");
                    }
                }
                // Only a connection that has not sent its request is closed to make room.
                _ = slot.evicted() => {}
            }
        });
    }
}

async fn handle(
    stream: UnixStream,
    slot: &Slot,
    bus: Arc<dyn Bus>,
    status: StatusSource,
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let mut limited = (&mut reader).take(MAX_REQUEST as u64 + 1);
    let Ok(read) = tokio::time::timeout(REQUEST_TIMEOUT, limited.read_until(b'\n', &mut line)).await else {
        return reply_error(&mut write, format!("no request within {REQUEST_TIMEOUT:?}")).await;
    };
    let read = read?;
    let _busy = slot.busy();
    if read > MAX_REQUEST {
        return reply_error(&mut write, format!("request longer than {MAX_REQUEST} bytes")).await;
    }
    let request: Request = match serde_json::from_slice(&line) {
        Ok(request) => request,
        Err(e) => return reply_error(&mut write, format!("invalid request: {e}")).await,
    };
    match request {
        Request::Send { queue, message } => {
            let message = match Message::from_value(message) {
                Ok(message) => message,
                Err(e) => return reply_error(&mut write, format!("invalid message: {e}")).await,
            };
            match publish_message(bus.as_ref(), &status.hostname, &queue, message).await {
                Ok(receipt) => reply(&mut write, &receipt).await,
                Err(e) => reply_error(&mut write, format!("{e:#}")).await,
            }
        }
        Request::Status => reply(&mut write, &status.snapshot().await).await,
        Request::Reload => {
            let (answer, answered) = tokio::sync::oneshot::channel();
            if reloads.send(answer).await.is_err() {
                return reply_error(&mut write, "the node is shutting down".to_string()).await;
            }
            match answered.await {
                Ok(Ok(report)) => reply(&mut write, &report).await,
                Ok(Err(errors)) => reply_error(&mut write, errors).await,
                Err(_) => reply_error(&mut write, "the node is shutting down".to_string()).await,
            }
        }
        Request::Tail { queue, from } => {
            let mut tail = match bus.read(&queue, from.into()).await {
                Ok(tail) => tail,
                Err(e) => return reply_error(&mut write, e.to_string()).await,
            };
            let mut probe = [0u8; 1];
            loop {
                let batch = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    // The client closing its end ends the tail.
                    _ = reader.read(&mut probe) => return Ok(()),
                    batch = tail.fetch(1024, Duration::from_secs(1)) => batch?,
                };
                let mut out = Vec::new();
                for delivery in batch {
                    out.extend_from_slice(&delivery.payload);
                    out.push(b'\n');
                }
                write.write_all(&out).await?;
            }
        }
    }
}

use tokio::io::AsyncReadExt;

async fn reply(write: &mut (impl AsyncWriteExt + Unpin), value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec(value)?;
    text.push(b'\n');
    write.write_all(&text).await?;
    Ok(())
}

async fn reply_error(write: &mut (impl AsyncWriteExt + Unpin), error: String) -> anyhow::Result<()> {
    reply(write, &ErrorReply { error }).await
}

/// A client of a running node's admin socket.
pub struct AdminClient {
    path: PathBuf,
}

impl AdminClient {
    pub fn new(data_dir: &Path) -> AdminClient {
        AdminClient { path: socket_path(data_dir) }
    }

    async fn request(&self, request: &Request) -> anyhow::Result<BufReader<UnixStream>> {
        let mut stream = UnixStream::connect(&self.path)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the running node at {}: {e}", self.path.display()))?;
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        Ok(BufReader::new(stream))
    }

    async fn answer<T: for<'de> Deserialize<'de>>(&self, request: &Request) -> anyhow::Result<T> {
        let mut reader = self.request(request).await?;
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        if let Ok(error) = serde_json::from_str::<ErrorReply>(&line) {
            anyhow::bail!("{}", error.error);
        }
        serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("unexpected answer from the node: {e}"))
    }

    pub async fn send(&self, queue: &str, message: Message) -> anyhow::Result<Receipt> {
        self.answer(&Request::Send { queue: queue.to_string(), message: message.into_value() }).await
    }

    pub async fn status(&self) -> anyhow::Result<NodeStatus> {
        self.answer(&Request::Status).await
    }

    /// Asks the node to reload its configuration; the error holds every problem.
    pub async fn reload(&self) -> anyhow::Result<ReloadReport> {
        self.answer(&Request::Reload).await
    }

    /// Follows a queue: returns a reader of message lines.
    pub async fn tail(&self, queue: &str, from: TailFrom) -> anyhow::Result<BufReader<UnixStream>> {
        self.request(&Request::Tail { queue: queue.to_string(), from }).await
    }
}
