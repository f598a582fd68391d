//! One connection's task: the I/O shell around a [`Session`]. It connects (from its
//! source address, through TLS when configured), reads lines into a small buffer,
//! feeds them to the session, writes what the session says (paced lines through the
//! flood bucket), hands every line to the connector's emitter as an [`Event`], and
//! reconnects with exponential backoff and jitter until `max_attempts` consecutive
//! failures sink it.
//!
//! Nothing here waits on the database: events go into a channel that the emitter turns
//! into bus messages. A connection's trouble stays in its task; the only thing tasks
//! share is the connect pacer, which spreads a crowd of (re)connects over time.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use flotilla_connector::Backoff;
use flotilla_core::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bucket::{Pacer, TokenBucket};
use crate::config::IrcSettings;
use crate::line::{Framed, LineBuffer, decode, parse_line};
use crate::plan::ConnectionPlan;
use crate::record::{LogRow, line_message, line_row, now_ms, own_row};
use crate::session::{Action, FleetEvent, FleetMessage, Session};
use crate::status::{ConnectionState, StatusTable};

/// What connections hand the emitter.
#[derive(Debug)]
pub enum Event {
    /// A line seen: its bus message and, with logging on, its `irclog` row.
    Line { message: Message, row: Option<LogRow> },
    /// A line the bot sent (logged, not a bus message: it was not seen).
    Sent(LogRow),
    /// A fleet event of connection `connection` (None: the connector's own).
    Fleet { event: FleetEvent, connection: Option<usize>, at: i64 },
}

/// Something to post, from the outbox.
#[derive(Debug)]
pub struct OutboxItem {
    pub target: String,
    pub text: String,
    pub notice: bool,
    /// A raw IRC line instead of a message.
    pub raw: Option<String>,
    /// Answered once the lines are written (Ok) or refused for good (Err); dropped
    /// unanswered when the connection is lost first (then it is tried again).
    pub done: oneshot::Sender<Result<(), String>>,
}

/// What every connection of a connector shares.
pub struct Shared {
    pub settings: Arc<IrcSettings>,
    pub events: mpsc::Sender<Event>,
    pub status: Arc<StatusTable>,
    pub pacer: Mutex<Pacer>,
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub stop: CancellationToken,
    pub connector: String,
}

/// How a connection task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stopped,
    /// Gave up; the last reason.
    Sunk(String),
}

/// A plain or TLS stream.
enum IrcStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for IrcStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            IrcStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            IrcStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for IrcStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            IrcStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            IrcStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            IrcStream::Plain(s) => Pin::new(s).poll_flush(cx),
            IrcStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            IrcStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            IrcStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens a connection from `bind` to the server, with TLS when configured. Errors are
/// sentences naming what failed.
async fn connect(shared: &Shared, bind: Option<IpAddr>) -> Result<IrcStream, String> {
    let settings = &shared.settings;
    let server = settings.server();
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((settings.host.as_str(), settings.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", settings.host))?
        .filter(|a| bind.is_none_or(|b| b.is_ipv4() == a.is_ipv4()))
        .collect();
    if addresses.is_empty() {
        return Err(format!("{} has no address of the same family as the source address", settings.host));
    }
    let mut last_error = String::new();
    let mut tcp = None;
    for address in addresses {
        let socket = if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|e| format!("cannot open a socket: {e}"))?;
        if let Some(ip) = bind {
            socket.bind(SocketAddr::new(ip, 0)).map_err(|e| format!("cannot bind source address {ip}: {e}"))?;
        }
        match tokio::time::timeout(settings.session.max_lag, socket.connect(address)).await {
            Ok(Ok(stream)) => {
                tcp = Some(stream);
                break;
            }
            Ok(Err(e)) => last_error = format!("cannot connect to {address}: {e}"),
            Err(_) => last_error = format!("connecting to {address} timed out"),
        }
    }
    let tcp = tcp.ok_or(last_error)?;
    let _ = tcp.set_nodelay(true);
    match &shared.tls {
        None => Ok(IrcStream::Plain(tcp)),
        Some(connector) => {
            let name = crate::tls::server_name(&settings.host)?;
            let handshake = Box::pin(connector.connect(name, tcp));
            match tokio::time::timeout(settings.session.max_lag, handshake).await {
                Ok(Ok(stream)) => Ok(IrcStream::Tls(Box::new(stream))),
                Ok(Err(e)) => Err(format!("TLS handshake with {server} failed: {e}")),
                Err(_) => Err(format!("TLS handshake with {server} timed out")),
            }
        }
    }
}

/// Runs connection `plan.index` until the connector stops or the connection sinks.
pub async fn run(plan: ConnectionPlan, shared: Arc<Shared>, mut outbox: mpsc::Receiver<Box<OutboxItem>>) -> Outcome {
    let index = plan.index;
    let settings = shared.settings.clone();
    let mut session = Session::new(Arc::new(settings.session_for(index)), &plan.channels);
    let mut backoff = Backoff::new(settings.min_backoff, settings.max_backoff);
    let mut failures: u32 = 0;
    let mut attempts: u64 = 0;
    loop {
        shared.status.update(index, |e| e.state = ConnectionState::Connecting);
        let slot = shared.pacer.lock().unwrap_or_else(|p| p.into_inner()).reserve(Instant::now());
        tokio::select! {
            _ = shared.stop.cancelled() => return stopped(&shared, index),
            _ = tokio::time::sleep_until(slot) => {}
        }
        if attempts > 0 {
            shared.status.update(index, |e| e.reconnects += 1);
        }
        attempts += 1;
        let connected = tokio::select! {
            _ = shared.stop.cancelled() => return stopped(&shared, index),
            result = Box::pin(connect(&shared, plan.bind)) => result,
        };
        let reason = match connected {
            Err(reason) => reason,
            Ok(stream) => {
                let mut io = SessionIo::new(&shared, index, stream);
                let end = Box::pin(io.run(&mut session, &mut outbox)).await;
                let reason = match end {
                    End::Stopped => return stopped(&shared, index),
                    End::Lost(reason) => reason,
                };
                let mut events = Vec::new();
                for action in session.disconnected(&reason) {
                    if let Action::Fleet(event) = action {
                        events.push(Event::Fleet { event, connection: Some(index), at: now_ms() });
                    }
                }
                send_events(&shared, events).await;
                if session.succeeded() {
                    failures = 0;
                    backoff.reset();
                }
                reason
            }
        };
        failures += 1;
        shared.status.update(index, |e| {
            e.state = ConnectionState::Reconnecting;
            e.last_error = Some(reason.clone());
            e.channels.clear();
            e.lag_ms = None;
        });
        if settings.max_attempts > 0 && failures >= settings.max_attempts {
            let reason = format!("gave up after {failures} failed attempts in a row; last: {reason}");
            tracing::error!(connector = %shared.connector, connection = index + 1, %reason, "An IRC connection is sunk.");
            let events = session
                .sunk(&reason)
                .into_iter()
                .filter_map(|a| match a {
                    Action::Fleet(event) => Some(Event::Fleet { event, connection: Some(index), at: now_ms() }),
                    _ => None,
                })
                .collect();
            send_events(&shared, events).await;
            shared.status.update(index, |e| e.state = ConnectionState::Sunk);
            return Outcome::Sunk(reason);
        }
        let delay = backoff.next_delay();
        tracing::warn!(connector = %shared.connector, connection = index + 1, %reason, retry_in = ?delay,
            "An IRC connection failed; reconnecting after a backoff.");
        tokio::select! {
            _ = shared.stop.cancelled() => return stopped(&shared, index),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn stopped(shared: &Shared, index: usize) -> Outcome {
    shared.status.update(index, |e| {
        e.state = ConnectionState::Stopped;
        e.channels.clear();
    });
    Outcome::Stopped
}

async fn send_events(shared: &Shared, events: Vec<Event>) {
    for event in events {
        if shared.events.send(event).await.is_err() {
            // The emitter is gone: the connector is tearing down.
            return;
        }
    }
}

/// How a connected session ended.
enum End {
    Stopped,
    Lost(String),
}

/// A paced line waiting for the flood bucket.
struct PacedLine {
    line: String,
    row: Option<LogRow>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// After this many warnings about bad lines on one connection, further ones go to the
/// debug log only (the fleetlog still gets every one).
const LOUD_WARNINGS: u32 = 5;

/// The state of one connected session's I/O.
struct SessionIo<'a> {
    shared: &'a Shared,
    index: usize,
    stream: IrcStream,
    reader: LineBuffer,
    out: Vec<u8>,
    paced: VecDeque<PacedLine>,
    bucket: TokenBucket,
    events: Vec<Event>,
    /// Answered once `out` is written.
    written: Vec<oneshot::Sender<Result<(), String>>>,
    disconnect: Option<String>,
    status_dirty: bool,
    warnings: u32,
}

impl<'a> SessionIo<'a> {
    fn new(shared: &'a Shared, index: usize, stream: IrcStream) -> SessionIo<'a> {
        let settings = &shared.settings;
        SessionIo {
            shared,
            index,
            stream,
            reader: LineBuffer::new(),
            out: Vec::new(),
            paced: VecDeque::new(),
            bucket: TokenBucket::new(settings.flood_burst, settings.flood_rate, Instant::now()),
            events: Vec::new(),
            written: Vec::new(),
            disconnect: None,
            status_dirty: true,
            warnings: 0,
        }
    }

    fn apply(&mut self, session: &Session, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(line) => {
                    self.out.extend_from_slice(line.as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                }
                Action::Paced(line) => self.paced.push_back(PacedLine { line, row: None, done: None }),
                Action::Fleet(event) => {
                    self.status_dirty = true;
                    self.events.push(Event::Fleet { event, connection: Some(self.index), at: now_ms() });
                }
                Action::Note(note) => {
                    tracing::info!(connector = %self.shared.connector, connection = self.index + 1, nick = session.nick(), "{note}");
                }
                Action::Disconnect(reason) => {
                    if self.disconnect.is_none() {
                        self.disconnect = Some(reason);
                    }
                }
            }
        }
    }

    fn warn(&mut self, what: &str) {
        self.warnings += 1;
        if self.warnings <= LOUD_WARNINGS {
            tracing::warn!(connector = %self.shared.connector, connection = self.index + 1, "{what}");
        } else {
            tracing::debug!(connector = %self.shared.connector, connection = self.index + 1, "{what}");
        }
    }

    fn unknown(&mut self, session: &Session, detail: String) {
        self.warn(&detail);
        self.events.push(Event::Fleet {
            event: FleetEvent {
                message: FleetMessage::UnknownReply,
                channel: None,
                nick: session.nick().to_string(),
                detail: Some(detail),
            },
            connection: Some(self.index),
            at: now_ms(),
        });
    }

    /// Handles every complete line in the read buffer.
    fn read_lines(&mut self, session: &mut Session) {
        let now = Instant::now();
        let received = now_ms();
        let network = self.shared.settings.network.clone();
        let log = self.shared.settings.log;
        let mut reader = std::mem::take(&mut self.reader);
        reader.drain(|framed| {
            if self.disconnect.is_some() {
                return;
            }
            let bytes = match framed {
                Framed::TooLong { length } => {
                    self.unknown(
                        session,
                        format!("a line of {length} bytes from the server, over IRC's 512-byte limit; skipped"),
                    );
                    return;
                }
                Framed::Line(bytes) => bytes,
            };
            let (text, legacy) = decode(bytes);
            if legacy {
                self.warn("a line from the server is not UTF-8; read it as Windows-1252");
            }
            match parse_line(&text) {
                Err(e) => {
                    let shown: String = text.chars().take(200).collect();
                    self.unknown(session, format!("unparseable line from the server ({e}): {shown:?}"));
                }
                Ok(line) => {
                    let actions = session.handle(&line, now);
                    if line.command.eq_ignore_ascii_case("PONG") || line.numeric() == Some(1) {
                        self.status_dirty = true;
                    }
                    let message = line_message(&line, &network, session.nick(), self.index, legacy);
                    let row = if log { line_row(&line, &network, received) } else { None };
                    self.events.push(Event::Line { message, row });
                    self.apply(session, actions);
                }
            }
        });
        self.reader = reader;
    }

    /// Takes as many paced lines as the bucket allows.
    fn release_paced(&mut self, session: &Session) {
        let now = Instant::now();
        while !self.paced.is_empty() && self.bucket.try_take(now).is_ok() {
            let Some(paced) = self.paced.pop_front() else { break };
            self.out.extend_from_slice(paced.line.as_bytes());
            self.out.extend_from_slice(b"\r\n");
            if let Some(row) = paced.row {
                self.events.push(Event::Sent(row));
            }
            if let Some(done) = paced.done {
                self.written.push(done);
            }
        }
        let _ = session;
    }

    fn accept(&mut self, session: &Session, item: OutboxItem) {
        let result = match &item.raw {
            Some(raw) => session.raw(raw).map(|a| vec![a]),
            None => session.say(&item.target, &item.text, item.notice),
        };
        match result {
            Err(e) => {
                let _ = item.done.send(Err(e.to_string()));
            }
            Ok(actions) => {
                let count = actions.len();
                let log = self.shared.settings.log;
                let kind = if item.notice { "NOTICE" } else { "PRIVMSG" };
                let mut done = Some(item.done);
                for (i, action) in actions.into_iter().enumerate() {
                    let Action::Paced(line) = action else { continue };
                    let row = (log && item.raw.is_none()).then(|| {
                        // The text of this piece: what follows the target.
                        let text = line.split_once(' ').and_then(|(_, r)| r.split_once(' ')).map_or("", |(_, t)| t);
                        let text = text.strip_prefix(':').unwrap_or(text);
                        own_row(kind, &item.target, text, session.nick(), &self.shared.settings.network, now_ms())
                    });
                    let done = if i + 1 == count { done.take() } else { None };
                    self.paced.push_back(PacedLine { line, row, done });
                }
            }
        }
    }

    fn update_status(&mut self, session: &Session, state: ConnectionState) {
        if !self.status_dirty {
            return;
        }
        self.status_dirty = false;
        let lag = session.lag(Instant::now()).map(|d| d.as_millis() as u64);
        let nick = session.nick().to_string();
        let channels: Vec<String> = session.joined().map(str::to_string).collect();
        self.shared.status.update(self.index, |e| {
            e.state = state;
            e.nick = nick;
            e.channels = channels;
            e.lag_ms = lag;
            if state == ConnectionState::Connected {
                e.last_error = None;
            }
        });
    }

    async fn write_out(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let limit = self.shared.settings.session.max_lag;
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("writing to the server failed: {e}")),
            Err(_) => return Err(format!("the server took no data for {}s", limit.as_secs_f64())),
        }
        self.out.clear();
        if self.out.capacity() > 4096 {
            self.out.shrink_to(512);
        }
        for done in self.written.drain(..) {
            let _ = done.send(Ok(()));
        }
        Ok(())
    }

    async fn flush_events(&mut self) {
        if self.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.events);
        send_events(self.shared, events).await;
    }

    async fn run(&mut self, session: &mut Session, outbox: &mut mpsc::Receiver<Box<OutboxItem>>) -> End {
        let actions = session.start(Instant::now());
        self.apply(session, actions);
        let mut outbox_open = true;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            if let Err(reason) = self.write_out().await {
                self.flush_events().await;
                return End::Lost(reason);
            }
            self.flush_events().await;
            if let Some(reason) = self.disconnect.take() {
                return End::Lost(reason);
            }
            let state = if session.is_registered() { ConnectionState::Connected } else { ConnectionState::Registering };
            self.update_status(session, state);
            let now = Instant::now();
            let deadline = session.next_deadline();
            let paced_at = (!self.paced.is_empty()).then(|| now + self.bucket.wait(now));
            let take_outbox = outbox_open && session.is_registered() && self.paced.len() < 16;
            tokio::select! {
                biased;
                _ = self.shared.stop.cancelled() => {
                    self.out.clear();
                    self.out.extend_from_slice(session.quit("Flotilla is shutting down").as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.write_out()).await;
                    return End::Stopped;
                }
                read = self.stream.read_buf(self.reader.buffer()) => match read {
                    Ok(0) => return End::Lost("the server closed the connection".into()),
                    Err(e) => return End::Lost(format!("reading from the server failed: {e}")),
                    Ok(_) => self.read_lines(session),
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    let actions = session.tick(Instant::now());
                    self.status_dirty = true;
                    self.apply(session, actions);
                }
                _ = tokio::time::sleep_until(paced_at.unwrap_or(far)), if paced_at.is_some() => {
                    self.release_paced(session);
                }
                item = outbox.recv(), if take_outbox => match item {
                    Some(item) => {
                        self.accept(session, *item);
                        self.release_paced(session);
                    }
                    None => outbox_open = false,
                },
            }
        }
    }
}
