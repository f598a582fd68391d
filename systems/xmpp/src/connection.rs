//! The XMPP connection: the I/O shell around the pure parts ([`crate::xml`],
//! [`crate::scram`], [`crate::sm`]). One task owns the socket for the connector's
//! life, reconnecting with backoff and jitter; everything else talks to it through a
//! [`Link`]: stanzas to send, each batch answered once the server acknowledged it
//! (XEP-0198 `<a h='…'/>`).
//!
//! A session goes: TCP (or direct TLS) → stream header → STARTTLS → SASL (SCRAM-SHA-256,
//! SCRAM-SHA-1, PLAIN only inside TLS) → stream restart → stream resumption (XEP-0198
//! `<resume/>`, when the previous session allowed it) or resource binding and
//! `<enable resume='true'/>`.
//!
//! What was sent and not acknowledged is kept across connections: after a resumption
//! the server says how much it took and only the rest is sent again; on a fresh
//! session all of it is. So a batch's answer means "the server has it", and a lost
//! link only delays it. Inbound stanzas go to the [`Inbound`] handler in the order
//! read, a read's worth at a time; the `h` we acknowledge to the server counts only
//! what the handler has settled (made durable), so the server keeps, and after a
//! failure stores offline, whatever we had not.
//!
//! Dead links are found by XEP-0199 pings: every `ping_interval` of silence an
//! `<iq type='get'><ping/></iq>`, and no data within `ping_timeout` ends the session.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use flotilla_connector::Backoff;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{TlsMode, XmppSettings};
use crate::scram::{ScramClient, ScramHash, fresh_nonce};
use crate::sm::{self, Inbound as InboundCount, Outbound};
use crate::xml::{Element, StreamEvent, StreamParser};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
const NS_PING: &str = "urn:xmpp:ping";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// How long any step of logging in may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a session ended or could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server does not offer STARTTLS, and tls is starttls (set tls: none only for a local server)")]
    NoStartTls,
    #[error("login refused: {0}")]
    Auth(String),
    #[error("no usable SASL mechanism (offered: {0}); PLAIN is used only inside TLS")]
    NoMechanism(String),
    #[error("the server sent malformed XML: {0}")]
    Xml(#[from] crate::xml::XmlError),
    #[error("the server closed the stream{0}")]
    Closed(String),
    #[error("stream error from the server: {0}")]
    StreamError(String),
    #[error("no answer from the server for {0:?} (ping timeout)")]
    Timeout(Duration),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("handling what arrived failed: {0}")]
    Inbound(String),
}

/// The handler of what arrives (the connector's inbound side).
#[async_trait::async_trait]
pub trait Inbound: Send {
    /// A session is up (`resumed`: the previous one continues, rooms and presence
    /// included). Returns stanzas to send first (initial presence, room joins).
    async fn online(&mut self, jid: &str, resumed: bool) -> Vec<Element>;

    /// Stanzas read, in order, numbered (the stream management count of each).
    /// Returns stanzas to send in answer, and the number of the oldest stanza not yet
    /// settled (a part of a message still being reassembled), if any: `h` stays
    /// below it. An error ends the session; nothing of the batch is acknowledged.
    async fn stanzas(&mut self, batch: Vec<(u32, Element)>) -> Result<(Vec<Element>, Option<u32>), String>;

    /// The session is gone.
    fn offline(&mut self, reason: &str);
}

/// Stanzas to send, answered once the server acknowledged the last of them.
struct Outgoing {
    stanzas: Vec<String>,
    done: Option<oneshot::Sender<()>>,
}

/// The handle through which the connector sends.
#[derive(Clone)]
pub struct Link {
    commands: mpsc::Sender<Outgoing>,
    online: watch::Receiver<bool>,
}

impl Link {
    /// Sends stanzas; returns once the server has acknowledged them (which may be
    /// after reconnects), or `None` if the connection task has ended.
    pub async fn send_acknowledged(&self, stanzas: Vec<Element>) -> Option<()> {
        let (done, answer) = oneshot::channel();
        let stanzas = stanzas.iter().map(Element::to_xml).collect();
        self.commands.send(Outgoing { stanzas, done: Some(done) }).await.ok()?;
        answer.await.ok()
    }

    /// Sends stanzas without waiting for the server.
    pub async fn send(&self, stanzas: Vec<Element>) -> bool {
        let stanzas = stanzas.iter().map(Element::to_xml).collect();
        self.commands.send(Outgoing { stanzas, done: None }).await.is_ok()
    }

    /// Whether a session is up now.
    pub fn is_online(&self) -> bool {
        *self.online.borrow()
    }

    /// A watch of [`Link::is_online`].
    pub fn online(&self) -> watch::Receiver<bool> {
        self.online.clone()
    }
}

/// Figures for `flotilla status`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LinkStats {
    pub state: String,
    pub connects: u64,
    pub resumed: u64,
    pub last_error: Option<String>,
    pub sent: u64,
    pub acknowledged: u64,
    pub received: u64,
    pub skipped_oversized: u64,
    pub unacknowledged: usize,
}

/// A stanza sent (or to send) and not yet acknowledged.
struct Unacked {
    xml: String,
    /// Its stream management number on the current stream (0: not sent on it yet).
    number: u32,
    done: Option<oneshot::Sender<()>>,
}

/// Stream management state that outlives one connection.
#[derive(Default)]
struct Resumption {
    /// The server's id for resuming, when the last session allowed it.
    id: Option<String>,
    /// What we had settled of the server's stanzas (the `h` we resume with).
    inbound: InboundCount,
    /// Our counter on the last stream (the server's `h` on resuming refers to it).
    outbound: Outbound,
    /// Where `id` and the inbound `h` are kept, so a node that crashed resumes its
    /// session and the server replays what it had not acknowledged (rather than
    /// bouncing it, as Prosody does for a session replaced while hibernating).
    file: Option<std::path::PathBuf>,
}

impl Resumption {
    fn load(file: Option<std::path::PathBuf>) -> Resumption {
        let mut resumption = Resumption { file, ..Resumption::default() };
        let text = resumption.file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
        if let Some((id, h)) = text.trim().split_once(' ')
            && let Ok(h) = h.parse::<u32>()
            && !id.is_empty()
        {
            resumption.id = Some(id.to_string());
            resumption.inbound.handled(h);
        }
        resumption
    }

    /// Writes the state (no fsync: it must survive the process, not the machine; a
    /// stale one only makes resumption fail, and the server then stores offline).
    fn save(file: &Option<std::path::PathBuf>, id: &Option<String>, inbound: InboundCount) {
        let Some(file) = file else { return };
        let result = match id {
            Some(id) => std::fs::write(file, format!("{id} {}\n", inbound.h())),
            None => std::fs::remove_file(file)
                .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }),
        };
        if let Err(e) = result {
            tracing::warn!(file = %file.display(), error = %e, "Cannot record the XMPP stream resumption state.");
        }
    }
}

/// Starts the connection task; it runs until `stop` fires.
pub fn spawn<H: Inbound + 'static>(
    settings: Arc<XmppSettings>,
    handler: H,
    stop: CancellationToken,
    stats: Arc<std::sync::Mutex<LinkStats>>,
    state_file: Option<std::path::PathBuf>,
) -> (Link, tokio::task::JoinHandle<()>) {
    let (commands, receiver) = mpsc::channel(64);
    let (online_tx, online) = watch::channel(false);
    let task = tokio::spawn(run(settings, handler, receiver, online_tx, stop, stats, state_file));
    (Link { commands, online }, task)
}

async fn run<H: Inbound>(
    settings: Arc<XmppSettings>,
    mut handler: H,
    mut commands: mpsc::Receiver<Outgoing>,
    online: watch::Sender<bool>,
    stop: CancellationToken,
    stats: Arc<std::sync::Mutex<LinkStats>>,
    state_file: Option<std::path::PathBuf>,
) {
    let mut backoff = Backoff::new(settings.min_backoff, settings.max_backoff);
    let mut unacked: VecDeque<Unacked> = VecDeque::new();
    let mut resumption = Resumption::load(state_file);
    let tls = match settings.tls {
        TlsMode::None => None,
        _ => match crate::tls::client_config(settings.tls_ca.as_deref()) {
            Ok(config) => Some(tokio_rustls::TlsConnector::from(config)),
            Err(e) => {
                tracing::error!(jid = %settings.jid.bare(), error = %e, "XMPP cannot start: TLS is misconfigured.");
                set_state(&stats, "failed", Some(e.to_string()));
                stop.cancelled().await;
                return;
            }
        },
    };
    loop {
        if stop.is_cancelled() {
            break;
        }
        set_state(&stats, "connecting", None);
        let started = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            result = tokio::time::timeout(STEP_TIMEOUT * 3, open(&settings, tls.as_ref(), &mut resumption)) => {
                result.unwrap_or_else(|_| Err(LinkError::Timeout(STEP_TIMEOUT * 3)))
            }
        };
        let reason = match started {
            Ok(mut session) => {
                backoff.reset();
                {
                    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                    s.connects += 1;
                    if session.resumed.is_some() {
                        s.resumed += 1;
                    }
                }
                set_state(&stats, "online", None);
                tracing::info!(jid = %session.jid, resumed = session.resumed.is_some(), server = %format!("{}:{}", settings.host, settings.port),
                    "XMPP session up.");
                let _ = online.send(true);
                let result = session
                    .serve(&settings, &mut handler, &mut commands, &mut unacked, &mut resumption, &stop, &stats)
                    .await;
                let _ = online.send(false);
                match result {
                    Ok(()) => {
                        handler.offline("stopped");
                        break;
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let text = reason.to_string();
        handler.offline(&text);
        let delay = backoff.next_delay();
        tracing::warn!(jid = %settings.jid.bare(), error = %text, ?delay, unacknowledged = unacked.len(),
            "XMPP session lost or refused; reconnecting after a pause.");
        set_state(&stats, "reconnecting", Some(text));
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    set_state(&stats, "stopped", None);
}

fn set_state(stats: &std::sync::Mutex<LinkStats>, state: &str, error: Option<String>) {
    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
    s.state = state.to_string();
    if error.is_some() {
        s.last_error = error;
    }
}

/// A byte stream: TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A negotiated session.
struct Session {
    io: Box<dyn Io>,
    parser: StreamParser,
    buf: Vec<u8>,
    jid: String,
    /// Stream management: the counter of this stream, when enabled.
    sm: Option<Outbound>,
    /// `Some(h)` when this session resumed the previous one (`h`: what the server
    /// had taken of ours).
    resumed: Option<u32>,
    max_stanza: usize,
}

/// Connects and logs in.
async fn open(
    settings: &XmppSettings,
    tls: Option<&tokio_rustls::TlsConnector>,
    resumption: &mut Resumption,
) -> Result<Session, LinkError> {
    let address = format!("{}:{}", settings.host, settings.port);
    let tcp = TcpStream::connect(&address)
        .await
        .map_err(|e| LinkError::Connect { address: address.clone(), detail: e.to_string() })?;
    let _ = tcp.set_nodelay(true);
    let domain = settings.jid.domain.clone();
    let handshake = |tcp: Box<dyn Io>| async {
        let connector = tls.ok_or_else(|| LinkError::Tls("no TLS configuration".into()))?;
        let name = crate::tls::server_name(&domain).map_err(|e| LinkError::Tls(e.to_string()))?;
        let stream = connector.connect(name, tcp).await.map_err(|e| LinkError::Tls(e.to_string()))?;
        Ok::<Box<dyn Io>, LinkError>(Box::new(stream))
    };
    let mut encrypted = settings.tls == TlsMode::Direct;
    let io: Box<dyn Io> = if encrypted { handshake(Box::new(tcp)).await? } else { Box::new(tcp) };
    let mut session = Session {
        io,
        parser: StreamParser::new(settings.max_stanza),
        buf: vec![0; 16 * 1024],
        jid: String::new(),
        sm: None,
        resumed: None,
        max_stanza: settings.max_stanza,
    };
    let mut features = session.restart(&domain).await?;
    if !encrypted {
        if features.find("starttls", Some(NS_TLS)).is_some() && settings.tls == TlsMode::StartTls {
            session.write(&Element::new("starttls").attr("xmlns", NS_TLS).to_xml()).await?;
            let answer = session.read_element().await?;
            if answer.local_name() != "proceed" {
                return Err(LinkError::Tls(format!("the server answered STARTTLS with <{}>", answer.name)));
            }
            let io = std::mem::replace(&mut session.io, Box::new(tokio::io::empty()));
            session.io = handshake(io).await?;
            encrypted = true;
            features = session.restart(&domain).await?;
        } else if settings.tls == TlsMode::StartTls {
            return Err(LinkError::NoStartTls);
        }
    }
    session.authenticate(settings, &features, encrypted).await?;
    features = session.restart(&domain).await?;

    let sm_offered = features.find("sm", Some(sm::NS)).is_some();
    if sm_offered && let Some(previd) = resumption.id.clone() {
        let resume = Element::new("resume")
            .attr("xmlns", sm::NS)
            .attr("previd", previd)
            .attr("h", resumption.inbound.h().to_string());
        session.write(&resume.to_xml()).await?;
        let answer = session.read_element().await?;
        match answer.local_name() {
            "resumed" => {
                let h = answer.get_attr("h").and_then(|h| h.parse::<u32>().ok()).unwrap_or(0);
                session.resumed = Some(h);
                session.jid = settings.jid.bare();
                return Ok(session);
            }
            other => {
                tracing::info!(jid = %settings.jid.bare(), answer = other,
                    "XMPP stream resumption refused; starting a fresh session (what was unacknowledged is sent again).");
                resumption.id = None;
                resumption.inbound = InboundCount::default();
                Resumption::save(&resumption.file, &None, resumption.inbound);
            }
        }
    }
    // Bind a resource.
    let bind = Element::new("iq").attr("type", "set").attr("id", "bind-1").child(
        Element::new("bind").attr("xmlns", NS_BIND).child(Element::new("resource").text(settings.resource.clone())),
    );
    session.write(&bind.to_xml()).await?;
    let answer = session.read_element().await?;
    if answer.get_attr("type") != Some("result") {
        return Err(LinkError::Protocol(format!("resource binding refused: {}", answer.to_xml())));
    }
    session.jid = answer
        .find("bind", Some(NS_BIND))
        .and_then(|b| b.find("jid", None))
        .map(Element::text_content)
        .unwrap_or_else(|| settings.jid.bare());
    // RFC 3921 sessions, for servers that still require them.
    if let Some(s) = features.find("session", Some(NS_SESSION))
        && s.find("optional", None).is_none()
    {
        let iq = Element::new("iq")
            .attr("type", "set")
            .attr("id", "session-1")
            .child(Element::new("session").attr("xmlns", NS_SESSION));
        session.write(&iq.to_xml()).await?;
        let _ = session.read_element().await?;
    }
    resumption.id = None;
    resumption.inbound = InboundCount::default();
    Resumption::save(&resumption.file, &None, resumption.inbound);
    if sm_offered {
        session.write(&Element::new("enable").attr("xmlns", sm::NS).attr("resume", "true").to_xml()).await?;
        // The answer may come after other stanzas; it is read in `serve`, but the
        // counter starts now (XEP-0198 §4: counting starts at <enable/>).
        session.sm = Some(Outbound::default());
    } else {
        tracing::warn!(jid = %session.jid,
            "The XMPP server does not offer stream management (XEP-0198): sent stanzas are taken as delivered once a ping round trip after them returns.");
    }
    Ok(session)
}

impl Session {
    async fn write(&mut self, text: &str) -> Result<(), LinkError> {
        self.io.write_all(text.as_bytes()).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Opens a new stream and returns its features.
    async fn restart(&mut self, domain: &str) -> Result<Element, LinkError> {
        self.parser = StreamParser::new(self.max_stanza);
        let header = format!(
            "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            crate::xml::escape(domain)
        );
        self.write(&header).await?;
        loop {
            match self.read_event().await? {
                StreamEvent::Open(_) => continue,
                StreamEvent::Element(e) if e.local_name() == "features" => return Ok(e),
                StreamEvent::Element(e) if e.local_name() == "error" => {
                    return Err(LinkError::StreamError(stream_error_text(&e)));
                }
                StreamEvent::Element(e) => {
                    return Err(LinkError::Protocol(format!("expected stream features, got <{}>", e.name)));
                }
                StreamEvent::Skipped { name, .. } => {
                    return Err(LinkError::Protocol(format!("expected stream features, got an oversized <{name}>")));
                }
                StreamEvent::Close => return Err(LinkError::Closed(" while logging in".into())),
            }
        }
    }

    async fn read_event(&mut self) -> Result<StreamEvent, LinkError> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(event);
            }
            let n = tokio::time::timeout(STEP_TIMEOUT, self.io.read(&mut self.buf))
                .await
                .map_err(|_| LinkError::Timeout(STEP_TIMEOUT))??;
            if n == 0 {
                return Err(LinkError::Closed(" (connection closed)".into()));
            }
            self.parser.feed(&self.buf[..n]);
        }
    }

    /// The next top-level element while logging in.
    async fn read_element(&mut self) -> Result<Element, LinkError> {
        match self.read_event().await? {
            StreamEvent::Element(e) if e.local_name() == "error" && e.name.starts_with("stream") => {
                Err(LinkError::StreamError(stream_error_text(&e)))
            }
            StreamEvent::Element(e) => Ok(e),
            StreamEvent::Open(_) => Err(LinkError::Protocol("a second stream header".into())),
            StreamEvent::Skipped { name, .. } => {
                Err(LinkError::Protocol(format!("an oversized <{name}> while logging in")))
            }
            StreamEvent::Close => Err(LinkError::Closed(" while logging in".into())),
        }
    }

    async fn authenticate(
        &mut self,
        settings: &XmppSettings,
        features: &Element,
        encrypted: bool,
    ) -> Result<(), LinkError> {
        let offered: Vec<String> = features
            .find("mechanisms", Some(NS_SASL))
            .map(|m| m.elements().filter(|e| e.local_name() == "mechanism").map(Element::text_content).collect())
            .unwrap_or_default();
        let has = |name: &str| offered.iter().any(|m| m == name);
        let user = settings.jid.local.clone();
        let password = settings.password.reveal();
        let hash = if has("SCRAM-SHA-256") {
            Some(ScramHash::Sha256)
        } else if has("SCRAM-SHA-1") {
            Some(ScramHash::Sha1)
        } else {
            None
        };
        let auth = |mechanism: &str, initial: &str| {
            Element::new("auth").attr("xmlns", NS_SASL).attr("mechanism", mechanism).text(B64.encode(initial))
        };
        match hash {
            Some(hash) => {
                let mut scram = ScramClient::new(hash, &user, password, &fresh_nonce());
                self.write(&auth(hash.mechanism(), &scram.client_first()).to_xml()).await?;
                let challenge = self.sasl_step().await?;
                let Some(server_first) = challenge.challenge else {
                    return Err(LinkError::Auth("the server skipped the SCRAM challenge".into()));
                };
                let response = scram.client_final(&server_first).map_err(|e| LinkError::Auth(e.to_string()))?;
                self.write(&Element::new("response").attr("xmlns", NS_SASL).text(B64.encode(response)).to_xml())
                    .await?;
                let outcome = self.sasl_step().await?;
                let Some(server_final) = outcome.success else {
                    return Err(LinkError::Auth("the server sent another challenge after the proof".into()));
                };
                scram.verify_server_final(&server_final).map_err(|e| LinkError::Auth(e.to_string()))?;
            }
            None if has("PLAIN") && encrypted => {
                self.write(&auth("PLAIN", &format!("\0{user}\0{password}")).to_xml()).await?;
                let outcome = self.sasl_step().await?;
                if outcome.success.is_none() {
                    return Err(LinkError::Auth("the server sent a challenge to PLAIN".into()));
                }
            }
            None => return Err(LinkError::NoMechanism(offered.join(", "))),
        }
        tracing::debug!(jid = %settings.jid.bare(), "XMPP login accepted.");
        Ok(())
    }

    /// Reads a SASL `<challenge/>`, `<success/>` or `<failure/>`.
    async fn sasl_step(&mut self) -> Result<SaslStep, LinkError> {
        let e = self.read_element().await?;
        let decode = |e: &Element| -> Result<String, LinkError> {
            let text = e.text_content();
            let bytes =
                B64.decode(text.trim()).map_err(|_| LinkError::Auth("the server's SASL data is not base64".into()))?;
            String::from_utf8(bytes).map_err(|_| LinkError::Auth("the server's SASL data is not UTF-8".into()))
        };
        match e.local_name() {
            "challenge" => Ok(SaslStep { challenge: Some(decode(&e)?), success: None }),
            "success" => Ok(SaslStep { challenge: None, success: Some(decode(&e)?) }),
            "failure" => {
                let condition = e.elements().find(|c| c.local_name() != "text").map_or("unknown", |c| c.local_name());
                let text = e.find("text", None).map(Element::text_content).unwrap_or_default();
                Err(LinkError::Auth(format!("{condition} {text}").trim().to_string()))
            }
            other => Err(LinkError::Protocol(format!("unexpected <{other}> during SASL"))),
        }
    }

    /// Runs the session until it fails, or `stop` fires (then `Ok`).
    #[allow(clippy::too_many_arguments)]
    async fn serve<H: Inbound>(
        &mut self,
        settings: &XmppSettings,
        handler: &mut H,
        commands: &mut mpsc::Receiver<Outgoing>,
        unacked: &mut VecDeque<Unacked>,
        resumption: &mut Resumption,
        stop: &CancellationToken,
        stats: &std::sync::Mutex<LinkStats>,
    ) -> Result<(), LinkError> {
        let resumed = self.resumed.is_some();
        let Resumption { id: resumption_id, inbound: saved_inbound, outbound, file: state_file } = resumption;
        // What is still unacknowledged: after a resumption, drop what the server
        // says it took and send the rest again; on a fresh session, all of it.
        match self.resumed {
            Some(h) => {
                match outbound.ack(h) {
                    Ok(newly) => settle(unacked, outbound, stats, newly),
                    // Nothing of ours in hand (a restarted process): nothing to fit.
                    Err(_) if unacked.is_empty() => {}
                    Err(e) => tracing::warn!(jid = %self.jid, error = %e,
                        "The resumed XMPP stream's count does not fit ours; sending everything unacknowledged again."),
                }
                *outbound = Outbound::starting_at(h);
            }
            None => *outbound = Outbound::default(),
        }
        let sm_enabled = self.sm.is_some() || resumed;
        let mut inbound = if resumed { *saved_inbound } else { InboundCount::default() };
        let mut out = String::new();
        for stanza in handler.online(&self.jid, resumed).await {
            stanza.write_xml(&mut out);
            if sm_enabled {
                outbound.sent_one();
            }
        }
        for u in unacked.iter_mut() {
            out.push_str(&u.xml);
            u.number = if sm_enabled { outbound.sent_one() } else { 0 };
        }
        if !unacked.is_empty() && sm_enabled {
            out.push_str("<r xmlns='urn:xmpp:sm:3'/>");
        }
        if !out.is_empty() {
            self.write(&out).await?;
        }
        // Without stream management, a ping's answer stands for "everything before it
        // arrived": the numbers of stanzas sent before each ping.
        let mut pings_in_flight: VecDeque<(String, usize)> = VecDeque::new();
        let mut ping_counter = 0u64;
        let mut last_heard = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let mut oldest_unsettled: Option<u32> = None;
        loop {
            let ping_at = match ping_sent {
                Some(at) => at + settings.ping_timeout,
                None => last_heard + settings.ping_interval,
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    // Say goodbye; what is unacknowledged stays for the next start.
                    let _ = self.write("<presence type='unavailable'/></stream:stream>").await;
                    return Ok(());
                }
                read = self.io.read(&mut self.buf) => {
                    let n = read?;
                    if n == 0 {
                        return Err(LinkError::Closed(" (connection closed)".into()));
                    }
                    last_heard = Instant::now();
                    ping_sent = None;
                    self.parser.feed(&self.buf[..n]);
                    let mut batch: Vec<(u32, Element)> = Vec::new();
                    let mut replies = String::new();
                    loop {
                        let event = match self.parser.next_event() {
                            Ok(Some(event)) => event,
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(jid = %self.jid, error = %e, "Malformed XML from the XMPP server; closing the stream.");
                                return Err(e.into());
                            }
                        };
                        match event {
                            StreamEvent::Element(e) if is_stanza(&e) => {
                                inbound.handled(1);
                                let number = inbound.h();
                                if e.local_name() == "iq" {
                                    if let Some(reply) = self.answer_iq(&e, &mut pings_in_flight, unacked, sm_enabled) {
                                        reply.write_xml(&mut replies);
                                    }
                                } else {
                                    batch.push((number, e));
                                }
                            }
                            StreamEvent::Skipped { name, bytes } => {
                                inbound.handled(1);
                                stats.lock().unwrap_or_else(|e| e.into_inner()).skipped_oversized += 1;
                                tracing::warn!(jid = %self.jid, stanza = %name, bytes, limit = settings.max_stanza,
                                    "Skipped a stanza larger than max_stanza; the connection stays up.");
                            }
                            StreamEvent::Element(e) if e.ns() == Some(sm::NS) => match e.local_name() {
                                "r" => {
                                    // Settle what came before the request first.
                                    self.flush_inbound(handler, &mut batch, &mut replies, &mut oldest_unsettled, stats).await?;
                                    let h = settled_h(inbound.h(), oldest_unsettled);
                                    if saved_inbound.h() != h {
                                        *saved_inbound = InboundCount::default();
                                        saved_inbound.handled(h);
                                        Resumption::save(state_file, resumption_id, *saved_inbound);
                                    }
                                    replies.push_str(&format!("<a xmlns='urn:xmpp:sm:3' h='{h}'/>"));
                                }
                                "a" => {
                                    let h = e.get_attr("h").and_then(|h| h.parse::<u32>().ok())
                                        .ok_or_else(|| LinkError::Protocol(format!("an acknowledgement without a number: {}", e.to_xml())))?;
                                    let newly = outbound.ack(h).map_err(|e| LinkError::Protocol(e.to_string()))?;
                                    settle(unacked, outbound, stats, newly);
                                }
                                "enabled" => {
                                    if e.get_attr("resume").is_some_and(|r| r == "true" || r == "1") {
                                        *resumption_id = e.get_attr("id").map(str::to_string);
                                        Resumption::save(state_file, resumption_id, *saved_inbound);
                                    }
                                }
                                "failed" => {
                                    tracing::warn!(jid = %self.jid, answer = %e.to_xml(), "The XMPP server refused stream management.");
                                    return Err(LinkError::Protocol("stream management failed".into()));
                                }
                                other => tracing::debug!(jid = %self.jid, element = other, "Ignored a stream management element."),
                            },
                            StreamEvent::Element(e) if e.local_name() == "error" && e.name.starts_with("stream") => {
                                return Err(LinkError::StreamError(stream_error_text(&e)));
                            }
                            StreamEvent::Element(e) => {
                                tracing::warn!(jid = %self.jid, element = %e.name, "Ignored an unexpected top-level element from the XMPP server.");
                            }
                            StreamEvent::Open(_) => return Err(LinkError::Protocol("a second stream header".into())),
                            StreamEvent::Close => return Err(LinkError::Closed(String::new())),
                        }
                    }
                    self.flush_inbound(handler, &mut batch, &mut replies, &mut oldest_unsettled, stats).await?;
                    let h = settled_h(inbound.h(), oldest_unsettled);
                    if saved_inbound.h() != h {
                                        *saved_inbound = InboundCount::default();
                                        saved_inbound.handled(h);
                                        Resumption::save(state_file, resumption_id, *saved_inbound);
                                    }
                    if !replies.is_empty() {
                        self.write(&replies).await?;
                    }
                    stats.lock().unwrap_or_else(|e| e.into_inner()).received = u64::from(inbound.h());
                }
                command = commands.recv() => {
                    let Some(first) = command else { return Ok(()) };
                    let mut out = String::new();
                    let mut next = Some(first);
                    // Take whatever else is queued: one write, one request for all.
                    while let Some(Outgoing { stanzas, mut done }) = next {
                        let count = stanzas.len();
                        for (i, xml) in stanzas.into_iter().enumerate() {
                            out.push_str(&xml);
                            let number = if sm_enabled { outbound.sent_one() } else { 0 };
                            let done = if i + 1 == count { done.take() } else { None };
                            unacked.push_back(Unacked { xml, number, done });
                        }
                        if let Some(done) = done {
                            // Nothing to send: nothing to wait for.
                            let _ = done.send(());
                        }
                        if out.len() > 256 * 1024 {
                            break;
                        }
                        next = commands.try_recv().ok();
                    }
                    if sm_enabled {
                        out.push_str("<r xmlns='urn:xmpp:sm:3'/>");
                    } else {
                        ping_counter += 1;
                        let id = format!("ack-{ping_counter}");
                        out.push_str(&ping(&id).to_xml());
                        pings_in_flight.push_back((id, unacked.len()));
                    }
                    self.write(&out).await?;
                    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                    s.sent = u64::from(outbound.sent());
                    s.unacknowledged = unacked.len();
                }
                _ = tokio::time::sleep_until(ping_at) => {
                    if ping_sent.is_some() {
                        return Err(LinkError::Timeout(settings.ping_timeout));
                    }
                    ping_counter += 1;
                    self.write(&ping(&format!("ping-{ping_counter}")).to_xml()).await?;
                    ping_sent = Some(Instant::now());
                }
            }
        }
    }

    /// Hands the stanzas read to the handler and queues its answers.
    async fn flush_inbound<H: Inbound>(
        &mut self,
        handler: &mut H,
        batch: &mut Vec<(u32, Element)>,
        replies: &mut String,
        oldest_unsettled: &mut Option<u32>,
        _stats: &std::sync::Mutex<LinkStats>,
    ) -> Result<(), LinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (answers, unsettled) = handler.stanzas(std::mem::take(batch)).await.map_err(LinkError::Inbound)?;
        *oldest_unsettled = unsettled;
        for answer in answers {
            answer.write_xml(replies);
        }
        Ok(())
    }

    /// Answers the server's iq requests; takes ping results as acknowledgements when
    /// stream management is off.
    fn answer_iq(
        &mut self,
        iq: &Element,
        pings: &mut VecDeque<(String, usize)>,
        unacked: &mut VecDeque<Unacked>,
        sm_enabled: bool,
    ) -> Option<Element> {
        let kind = iq.get_attr("type").unwrap_or("");
        let id = iq.get_attr("id").unwrap_or("").to_string();
        match kind {
            "get" | "set" => {
                let mut reply = Element::new("iq").attr("id", id);
                if let Some(from) = iq.get_attr("from") {
                    reply = reply.attr("to", from);
                }
                if kind == "get" && iq.find("ping", Some(NS_PING)).is_some() {
                    Some(reply.attr("type", "result"))
                } else {
                    Some(
                        reply.attr("type", "error").child(
                            Element::new("error")
                                .attr("type", "cancel")
                                .child(Element::new("service-unavailable").attr("xmlns", NS_STANZAS)),
                        ),
                    )
                }
            }
            "result" | "error" if !sm_enabled => {
                if let Some(position) = pings.iter().position(|(p, _)| *p == id) {
                    let (_, count) = pings.remove(position).unwrap_or_default();
                    // Everything sent before that ping arrived.
                    for _ in 0..count.min(unacked.len()) {
                        if let Some(done) = unacked.pop_front().and_then(|u| u.done) {
                            let _ = done.send(());
                        }
                    }
                    for (_, later) in pings.iter_mut() {
                        *later = later.saturating_sub(count);
                    }
                }
                None
            }
            _ => None,
        }
    }
}

struct SaslStep {
    challenge: Option<String>,
    success: Option<String>,
}

/// The `h` to acknowledge: everything handled, or only what came before the oldest
/// stanza not settled yet.
fn settled_h(handled: u32, oldest_unsettled: Option<u32>) -> u32 {
    match oldest_unsettled {
        Some(number) => number.wrapping_sub(1),
        None => handled,
    }
}

/// Answers the batches the server's acknowledgement covers.
fn settle(unacked: &mut VecDeque<Unacked>, outbound: &Outbound, stats: &std::sync::Mutex<LinkStats>, newly: u32) {
    while unacked.front().is_some_and(|u| u.number != 0 && outbound.covers(u.number)) {
        if let Some(done) = unacked.pop_front().and_then(|u| u.done) {
            let _ = done.send(());
        }
    }
    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
    s.acknowledged += u64::from(newly);
    s.unacknowledged = unacked.len();
}

fn is_stanza(e: &Element) -> bool {
    matches!(e.name.as_str(), "message" | "presence" | "iq") && e.ns().is_none_or(|ns| ns == "jabber:client")
}

fn ping(id: &str) -> Element {
    Element::new("iq").attr("type", "get").attr("id", id).child(Element::new("ping").attr("xmlns", NS_PING))
}

/// `<stream:error>`'s condition and text, for logs.
fn stream_error_text(e: &Element) -> String {
    let condition = e.elements().find(|c| c.local_name() != "text").map_or("unknown", |c| c.local_name());
    match e.find("text", None).map(Element::text_content) {
        Some(text) if !text.is_empty() => format!("{condition}: {text}"),
        _ => condition.to_string(),
    }
}
