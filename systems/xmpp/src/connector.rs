//! The `xmpp` connector: the shell that ties the connection ([`crate::connection`]) to
//! the bus. Three parts run beside the connection task:
//!
//! - the **inbound handler** ([`XmppInbound`]): chat and room messages become bus
//!   messages on the connector's queue; forwarded messages from peers are reassembled,
//!   checked ([`crate::forward::accept`]), de-duplicated against a window of ids kept on
//!   disk, and appended to `deliver_queue`; only then does the server get its `<a h/>`;
//! - the **forwarder**: a bus [`Stage`] on `forward_queue` whose work sends a batch to
//!   every peer and returns once the server has acknowledged it, so the batch is
//!   acknowledged on the bus only then;
//! - the **outbox**: what rules hand this connector (`Send`) goes to a person's JID
//!   (`to`) or a room (`room`), acknowledged on the bus once the server has it.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flotilla_bus::Delivery;
use flotilla_bus::stage::{Outputs, Stage, Work};
use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorContext};
use flotilla_core::Message;
use tokio_util::sync::CancellationToken;

use crate::config::XmppSettings;
use crate::connection::{self, Inbound, Link, LinkStats};
use crate::forward::{self, Assembled, Reassembly, Refusal, SeenWindow, Skip};
use crate::xml::Element;

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_DELAY: &str = "urn:xmpp:delay";

/// The `xmpp` connector.
pub struct XmppConnector {
    settings: Arc<XmppSettings>,
}

impl XmppConnector {
    pub fn new(settings: XmppSettings) -> XmppConnector {
        XmppConnector { settings: Arc::new(settings) }
    }
}

/// Counters the status shows besides the link's.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct ForwardStats {
    forwarded: u64,
    delivered: u64,
    duplicates: u64,
    refused: u64,
    skipped: u64,
    chat_in: u64,
    chat_out: u64,
}

#[async_trait::async_trait]
impl Connector for XmppConnector {
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
        let settings = self.settings.clone();
        let link_slot: Arc<OnceLock<Link>> = Arc::new(OnceLock::new());
        let counters = Arc::new(Mutex::new(ForwardStats::default()));
        let inbound = XmppInbound::open(ctx, settings.clone(), link_slot.clone(), counters.clone()).await?;
        let stats = Arc::new(Mutex::new(LinkStats::default()));
        let stop = ctx.shutdown().child_token();
        let (link, connection) = connection::spawn(
            settings.clone(),
            inbound,
            stop.clone(),
            stats.clone(),
            Some(ctx.data_dir().join("stream-resumption")),
        );
        let _ = link_slot.set(link.clone());

        let mut tasks = Vec::new();
        if let Some(queue) = &settings.forward_queue {
            let mut work = ForwardWork {
                link: link.clone(),
                node: ctx.node_name().to_string(),
                peers: settings.peers.clone(),
                max_part: settings.max_part,
                shutdown: ctx.shutdown().clone(),
                counters: counters.clone(),
                connector: ctx.name().to_string(),
            };
            let stage = Stage::new("xmpp-forward", queue, &format!("xmpp.{}", ctx.name()), settings.batch)
                .idle_wait(Duration::from_millis(500));
            let bus = ctx.bus().clone();
            let shutdown = ctx.shutdown().clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = stage.run(bus, |_: &[Delivery]| (), &mut work, &shutdown).await {
                    tracing::error!(error = %e, "The XMPP forwarder stopped: the bus is closed.");
                }
            }));
        }
        tasks.push(tokio::spawn(outbox(ctx.clone(), link.clone(), counters.clone())));
        let status = {
            let ctx = ctx.clone();
            let stats = stats.clone();
            let counters = counters.clone();
            let settings = settings.clone();
            tokio::spawn(async move {
                loop {
                    let link = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let forward = counters.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    ctx.set_detail(serde_json::json!({
                        "jid": settings.jid.bare(),
                        "server": format!("{}:{}", settings.host, settings.port),
                        "link": link,
                        "forwarding": forward,
                    }));
                    tokio::select! {
                        _ = ctx.shutdown().cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            })
        };
        // If this future is dropped (the supervisor gave up waiting), the tasks go too.
        let mut guard = AbortOnDrop(tasks);
        guard.0.push(status);
        guard.0.push(connection);
        ctx.shutdown().cancelled().await;
        let status = guard.0.pop();
        let connection = guard.0.pop();
        for task in std::mem::take(&mut guard.0) {
            let _ = task.await;
        }
        stop.cancel();
        for task in [connection, status].into_iter().flatten() {
            let _ = task.await;
        }
        Ok(())
    }

    fn warnings(&self) -> Vec<Diagnostic> {
        self.settings.warnings.clone()
    }
}

/// Aborts the tasks it holds when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The forwarder's work: a batch of `forward_queue` to every peer, done once the
/// server has acknowledged all of it.
struct ForwardWork {
    link: Link,
    node: String,
    peers: Vec<String>,
    max_part: usize,
    shutdown: CancellationToken,
    counters: Arc<Mutex<ForwardStats>>,
    connector: String,
}

impl Work for ForwardWork {
    type Prepared = ();
    type Done = ();
    type Error = String;

    async fn process(&mut self, batch: &[Delivery], _: &mut (), _: &mut Outputs) -> Result<(), String> {
        let mut stanzas = Vec::new();
        let mut skipped = 0u64;
        let mut forwarded = 0u64;
        for delivery in batch {
            match forward::prepare_outgoing(&delivery.payload, &self.node) {
                Ok(message) => {
                    forwarded += 1;
                    for peer in &self.peers {
                        stanzas.extend(forward::encode(&message, peer, self.max_part));
                    }
                }
                Err(Skip::NotAMessage(detail)) => {
                    skipped += 1;
                    tracing::warn!(connector = %self.connector, seq = delivery.seq, %detail,
                        "Not forwarding an entry of the forward queue: it is not a Flotilla message.");
                }
                Err(skip) => {
                    skipped += 1;
                    tracing::debug!(connector = %self.connector, seq = delivery.seq, reason = %skip, "Not forwarding a message.");
                }
            }
        }
        if !stanzas.is_empty() {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Err("stopping before the server acknowledged the batch".into()),
                sent = self.link.send_acknowledged(stanzas) => {
                    sent.ok_or_else(|| "the XMPP connection task has ended".to_string())?;
                }
            }
        }
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.forwarded += forwarded;
        c.skipped += skipped;
        Ok(())
    }
}

/// Posts what rules handed this connector: `to` (a JID) or `room`, and `body`
/// (or `text`, or `subject`).
async fn outbox(ctx: ConnectorContext, link: Link, counters: Arc<Mutex<ForwardStats>>) {
    let mut consumer = match ctx.outbox().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(connector = %ctx.name(), error = %e, "The XMPP outbox cannot be read.");
            return;
        }
    };
    loop {
        let batch = tokio::select! {
            _ = ctx.shutdown().cancelled() => return,
            batch = consumer.fetch(50, Duration::from_millis(500)) => batch,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(connector = %ctx.name(), error = %e, "Reading the XMPP outbox failed; trying again.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        let mut stanzas = Vec::new();
        for delivery in &batch {
            match outbox_stanza(&delivery.payload) {
                Ok(stanza) => stanzas.push(stanza),
                Err(reason) => tracing::warn!(connector = %ctx.name(), seq = delivery.seq, %reason,
                    "Dropped an outbox message that cannot be posted over XMPP."),
            }
        }
        let count = stanzas.len() as u64;
        if !stanzas.is_empty() {
            tokio::select! {
                _ = ctx.shutdown().cancelled() => return,
                sent = link.send_acknowledged(stanzas) => if sent.is_none() { return },
            }
        }
        counters.lock().unwrap_or_else(|e| e.into_inner()).chat_out += count;
        let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
        if let Err(e) = consumer.ack(&ids).await {
            tracing::warn!(connector = %ctx.name(), error = %e, "Acknowledging the XMPP outbox failed; those messages may be posted again.");
        }
    }
}

/// The stanza for one outbox message.
pub fn outbox_stanza(payload: &[u8]) -> Result<Element, String> {
    let message = Message::from_json(payload).map_err(|e| e.to_string())?;
    let text = ["body", "text", "subject"]
        .iter()
        .find_map(|f| message.get(f).map(|v| flotilla_core::message::value_text(v).into_owned()))
        .filter(|t| !t.is_empty())
        .ok_or("it has no body, text or subject")?;
    let (to, kind) = match (message.get_str("to"), message.get_str("room")) {
        (Some(to), _) => (to, "chat"),
        (None, Some(room)) => (room, "groupchat"),
        (None, None) => return Err("it names no recipient (to: a JID, or room: a room's JID)".into()),
    };
    crate::config::Jid::parse(to).map_err(|e| format!("its recipient {e}"))?;
    // XML 1.0 cannot carry most control characters; a notification does not need them.
    let clean: String = text.chars().filter(|c| !c.is_control() || matches!(c, '\n' | '\t')).collect();
    Ok(Element::new("message").attr("to", to).attr("type", kind).child(Element::new("body").text(clean)))
}

/// Ids of delivered forwarded messages, in memory and appended to a file so the
/// window survives a restart.
struct SeenFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    lines: usize,
}

impl SeenFile {
    fn open(dir: PathBuf, window: &mut SeenWindow) -> std::io::Result<SeenFile> {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("forwarded-ids");
        let mut lines = 0;
        if let Ok(text) = std::fs::read_to_string(&path) {
            for id in text.lines().filter(|l| !l.is_empty()) {
                window.insert(id);
                lines += 1;
            }
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(SeenFile { path, file: Some(file), lines })
    }

    /// Appends ids durably; with `compact`, then rewrites the file with only those
    /// (the window), so it does not grow without end.
    fn append(&mut self, ids: &[String], compact: Option<&[String]>) -> std::io::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let lines = |ids: &[String]| {
            let mut text = String::with_capacity(ids.len() * 27);
            for id in ids {
                text.push_str(id);
                text.push('\n');
            }
            text
        };
        if let Some(file) = &mut self.file {
            file.write_all(lines(ids).as_bytes())?;
            file.sync_data()?;
        }
        self.lines += ids.len();
        if let Some(window) = compact {
            let tmp = self.path.with_extension("tmp");
            let mut out = std::fs::File::create(&tmp)?;
            out.write_all(lines(window).as_bytes())?;
            out.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            self.file = Some(std::fs::OpenOptions::new().append(true).open(&self.path)?);
            self.lines = window.len();
        }
        Ok(())
    }

    /// Whether appending `more` ids should compact the file to a window of `window`.
    fn needs_compaction(&self, more: usize, window: usize) -> bool {
        self.lines + more > 2 * window.max(1000)
    }
}

/// A room this connector is in (or joining).
#[derive(Debug, Clone)]
struct Room {
    nick: String,
    attempts: u32,
}

/// What arrives: chat, rooms, forwarded messages.
pub struct XmppInbound {
    ctx: ConnectorContext,
    settings: Arc<XmppSettings>,
    link: Arc<OnceLock<Link>>,
    node: String,
    deliver_queue: String,
    seen: SeenWindow,
    seen_file: SeenFile,
    /// Per peer: the message being reassembled and the number of its first stanza.
    reassembly: HashMap<String, (Reassembly, Option<u32>)>,
    rooms: HashMap<String, Room>,
    counters: Arc<Mutex<ForwardStats>>,
}

impl XmppInbound {
    async fn open(
        ctx: &ConnectorContext,
        settings: Arc<XmppSettings>,
        link: Arc<OnceLock<Link>>,
        counters: Arc<Mutex<ForwardStats>>,
    ) -> anyhow::Result<XmppInbound> {
        let mut seen = SeenWindow::new(settings.dedup_window);
        let dir = ctx.data_dir();
        let seen_file = {
            let (file, window) = tokio::task::spawn_blocking(move || {
                let file = SeenFile::open(dir, &mut seen);
                (file, seen)
            })
            .await?;
            seen = window;
            file.map_err(|e| anyhow::anyhow!("cannot open the XMPP connector's list of delivered ids: {e}"))?
        };
        // The ids recorded on disk cover everything but a batch that became durable just
        // before a crash: those are still on the deliver queue, so take its ids too.
        let deliver_queue = settings.deliver_queue.clone().unwrap_or_else(|| ctx.queue().to_string());
        if !settings.accepted.is_empty() {
            let mut reader = ctx.bus().read(&deliver_queue, flotilla_bus::ReadFrom::Start).await?;
            loop {
                let batch = reader.fetch(10_000, Duration::ZERO).await?;
                if batch.is_empty() {
                    break;
                }
                for delivery in &batch {
                    if let Ok(message) = Message::from_json(&delivery.payload)
                        && let Some(id) = message.id()
                        && message.noforward()
                    {
                        seen.insert(id);
                    }
                }
            }
        }
        let rooms =
            settings.rooms.iter().map(|r| (r.clone(), Room { nick: settings.nick.clone(), attempts: 0 })).collect();
        Ok(XmppInbound {
            ctx: ctx.clone(),
            node: ctx.node_name().to_string(),
            deliver_queue,
            settings,
            link,
            seen,
            seen_file,
            reassembly: HashMap::new(),
            rooms,
            counters,
        })
    }

    fn join(room: &str, nick: &str) -> Element {
        Element::new("presence")
            .attr("to", format!("{room}/{nick}"))
            .child(Element::new("x").attr("xmlns", NS_MUC).child(Element::new("history").attr("maxstanzas", "0")))
    }

    /// A chat or room message as a bus message.
    fn chat_message(&self, stanza: &Element, kind: &str, from: &str) -> Option<Message> {
        let body = stanza.find("body", None).map(Element::text_content)?;
        let mut message = Message::new();
        let bare = from.split('/').next().unwrap_or(from);
        message.set("kind", kind);
        message.set("from", from);
        message.set("body", body.as_str());
        message.set("text", body.as_str());
        if kind == "groupchat" {
            let nick = from.split_once('/').map_or("", |(_, n)| n);
            message.set("room", bare);
            message.set("nick", nick);
            message.set("username", nick);
        } else {
            message.set("username", bare);
        }
        if let Some(subject) = stanza.find("subject", None) {
            message.set("subject", subject.text_content());
        }
        if let Some(delay) = stanza.find("delay", Some(NS_DELAY)).and_then(|d| d.get_attr("stamp")) {
            message.set("delayed", delay);
        }
        message.set("account", self.settings.jid.bare());
        Some(message)
    }

    /// A forwarded stanza from a peer: reassembled, checked and, when complete,
    /// added to `deliver`.
    fn forwarded(&mut self, number: u32, from_bare: &str, part: forward::Part, deliver: &mut Vec<Message>) {
        let max = self.settings.max_stanza.saturating_mul(1024);
        let (reassembly, first) = self.reassembly.entry(from_bare.to_string()).or_default();
        if part.part == 0 {
            *first = Some(number);
        }
        let assembled = reassembly.push(part, max);
        let mut complete = Vec::new();
        match assembled {
            Assembled::Incomplete => return,
            Assembled::Complete { id, data } => complete.push((id, data)),
            Assembled::Broken(reason) => {
                self.counters.lock().unwrap_or_else(|e| e.into_inner()).refused += 1;
                tracing::warn!(connector = %self.ctx.name(), peer = %from_bare, %reason,
                    "Dropped a forwarded message whose parts did not arrive whole and in order.");
                if let Some(single) = reassembly.take_single() {
                    complete.push(single);
                }
            }
        }
        if !reassembly.pending() {
            *first = None;
        } else if first.is_none() {
            *first = Some(number);
        }
        for (id, data) in complete {
            match forward::accept(&id, &data, &self.node, &self.seen) {
                Ok(message) => {
                    self.seen.insert(&id);
                    deliver.push(message);
                }
                Err(Refusal::Duplicate(id)) => {
                    self.counters.lock().unwrap_or_else(|e| e.into_inner()).duplicates += 1;
                    tracing::debug!(connector = %self.ctx.name(), peer = %from_bare, %id, "Dropped a duplicate forwarded message.");
                }
                Err(Refusal::Loop) => {
                    self.counters.lock().unwrap_or_else(|e| e.into_inner()).refused += 1;
                    tracing::info!(connector = %self.ctx.name(), peer = %from_bare, %id,
                        "Dropped a forwarded message that has already passed through this node (a loop).");
                }
                Err(refusal) => {
                    self.counters.lock().unwrap_or_else(|e| e.into_inner()).refused += 1;
                    tracing::warn!(connector = %self.ctx.name(), peer = %from_bare, %id, reason = %refusal,
                        "Refused a forwarded message.");
                }
            }
        }
    }

    /// Room presence: joined, nick clash, kicked.
    fn room_presence(&mut self, stanza: &Element, room: &str, answers: &mut Vec<Element>, events: &mut Vec<Message>) {
        let Some(state) = self.rooms.get_mut(room) else { return };
        let from = stanza.get_attr("from").unwrap_or("");
        let nick = from.split_once('/').map_or("", |(_, n)| n);
        let kind = stanza.get_attr("type").unwrap_or("available");
        let codes: Vec<&str> = stanza
            .find("x", Some(NS_MUC_USER))
            .map(|x| x.elements().filter(|e| e.local_name() == "status").filter_map(|s| s.get_attr("code")).collect())
            .unwrap_or_default();
        let own = codes.contains(&"110") || nick == state.nick;
        let event = |what: &str, detail: &str| {
            let mut m = Message::new();
            m.set("kind", what);
            m.set("room", room);
            m.set("nick", nick);
            m.set("text", detail);
            m
        };
        match kind {
            "error" => {
                let conflict = stanza.find("error", None).and_then(|e| e.find("conflict", None)).is_some();
                if conflict && state.attempts < 5 {
                    state.attempts += 1;
                    let mut digits = [0u8; 2];
                    let _ = getrandom::fill(&mut digits);
                    state.nick = format!("{}-{:03}", self.settings.nick, u16::from_le_bytes(digits) % 1000);
                    tracing::info!(connector = %self.ctx.name(), %room, nick = %state.nick, "Nick in use in the room; trying another.");
                    answers.push(Self::join(room, &state.nick));
                } else {
                    let condition = stanza
                        .find("error", None)
                        .and_then(|e| e.elements().next())
                        .map_or("unknown".to_string(), |c| c.local_name().to_string());
                    tracing::warn!(connector = %self.ctx.name(), %room, %condition, "Could not join the room.");
                    events.push(event("join_failed", &condition));
                }
            }
            "unavailable" if own => {
                let kicked = codes.contains(&"307");
                let what = if kicked { "kicked" } else { "left" };
                tracing::info!(connector = %self.ctx.name(), %room, what, delay = ?self.settings.rejoin_delay, "Out of the room; rejoining after a pause.");
                events.push(event(what, ""));
                let join = Self::join(room, &self.settings.nick);
                state.nick = self.settings.nick.clone();
                state.attempts = 0;
                if let Some(link) = self.link.get().cloned() {
                    let delay = self.settings.rejoin_delay;
                    let stop = self.ctx.shutdown().clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(delay) => { link.send(vec![join]).await; }
                        }
                    });
                }
            }
            "available" if own && codes.contains(&"110") => {
                tracing::info!(connector = %self.ctx.name(), %room, nick = %state.nick, "Joined the room.");
                events.push(event("joined", ""));
            }
            _ => {}
        }
    }
}

#[async_trait::async_trait]
impl Inbound for XmppInbound {
    async fn online(&mut self, jid: &str, resumed: bool) -> Vec<Element> {
        self.reassembly.clear();
        if resumed {
            return Vec::new();
        }
        let _ = jid;
        let mut out = vec![Element::new("presence")];
        for (room, state) in &mut self.rooms {
            state.nick = self.settings.nick.clone();
            state.attempts = 0;
            out.push(Self::join(room, &state.nick));
        }
        out
    }

    async fn stanzas(&mut self, batch: Vec<(u32, Element)>) -> Result<(Vec<Element>, Option<u32>), String> {
        let mut deliver = Vec::new();
        let mut chat = Vec::new();
        let mut answers = Vec::new();
        for (number, stanza) in batch {
            let from = stanza.get_attr("from").unwrap_or("").to_string();
            let bare = from.split('/').next().unwrap_or("").to_lowercase();
            match stanza.name.as_str() {
                "message" => {
                    let kind = stanza.get_attr("type").unwrap_or("normal");
                    if kind == "error" {
                        let condition = stanza
                            .find("error", None)
                            .and_then(|e| e.elements().next())
                            .map_or("unknown".to_string(), |c| c.local_name().to_string());
                        tracing::warn!(connector = %self.ctx.name(), %from, %condition, "The server returned a message as undeliverable.");
                        continue;
                    }
                    if let Some(part) = forward::read_part(&stanza) {
                        if self.settings.accepted.contains(&bare) {
                            match part {
                                Ok(part) => self.forwarded(number, &bare, part, &mut deliver),
                                Err(detail) => {
                                    self.counters.lock().unwrap_or_else(|e| e.into_inner()).refused += 1;
                                    tracing::warn!(connector = %self.ctx.name(), peer = %bare, %detail,
                                        "Refused a forwarded message with a malformed marker.");
                                }
                            }
                            continue;
                        }
                        tracing::warn!(connector = %self.ctx.name(), %from,
                            "A forwarded message from a sender that is not among the peers; taken as chat, not delivered.");
                    }
                    if kind == "groupchat" {
                        let room_nick = self.rooms.get(&bare).map(|r| r.nick.clone());
                        let Some(own_nick) = room_nick else { continue };
                        // Room history (delayed) and our own echo are not new messages.
                        if stanza.find("delay", Some(NS_DELAY)).is_some() {
                            continue;
                        }
                        if from.split_once('/').is_some_and(|(_, n)| n == own_nick) {
                            continue;
                        }
                    }
                    if let Some(message) = self.chat_message(&stanza, kind, &from) {
                        chat.push(message);
                    }
                }
                "presence" if self.rooms.contains_key(&bare) => {
                    self.room_presence(&stanza, &bare, &mut answers, &mut chat);
                }
                _ => {}
            }
        }
        if !deliver.is_empty() {
            let ids: Vec<String> = deliver.iter().filter_map(|m| m.id().map(str::to_string)).collect();
            let count = deliver.len() as u64;
            self.ctx
                .emit_to(&self.deliver_queue, deliver)
                .await
                .map_err(|e| format!("cannot append to {}: {e}", self.deliver_queue))?;
            // After the messages are durable: a crash in between delivers them
            // again (the server re-sends what we had not acknowledged), never loses them.
            let mut file =
                std::mem::replace(&mut self.seen_file, SeenFile { path: PathBuf::new(), file: None, lines: 0 });
            let compact: Option<Vec<String>> = file
                .needs_compaction(ids.len(), self.seen.len())
                .then(|| self.seen.ids().map(str::to_string).collect());
            let (file, result) = tokio::task::spawn_blocking(move || {
                let result = file.append(&ids, compact.as_deref());
                (file, result)
            })
            .await
            .map_err(|e| e.to_string())?;
            self.seen_file = file;
            result.map_err(|e| format!("cannot record delivered ids: {e}"))?;
            self.counters.lock().unwrap_or_else(|e| e.into_inner()).delivered += count;
        }
        if !chat.is_empty() {
            let count = chat.len() as u64;
            self.ctx.emit_all(chat).await.map_err(|e| e.to_string())?;
            self.counters.lock().unwrap_or_else(|e| e.into_inner()).chat_in += count;
        }
        let oldest = self.reassembly.values().filter_map(|(_, first)| *first).min();
        Ok((answers, oldest))
    }

    fn offline(&mut self, reason: &str) {
        tracing::debug!(connector = %self.ctx.name(), %reason, "XMPP session down.");
    }
}
