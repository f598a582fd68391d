//! Connector type `wikimedia`: reads Wikimedia EventStreams (server-sent events) and
//! emits each recent change as a message (see [`crate::change`]).
//!
//! Keys:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | `https://stream.wikimedia.org/v2/stream/recentchange` | anything that speaks EventStreams' protocol |
//! | `user_agent` | required for Wikimedia's own servers; elsewhere `Flotilla/<version> (Wikimedia dispatcher; +<repository>)` | Wikimedia's User-Agent policy asks every client for a way to contact whoever runs it |
//! | `since` | none | on the very first start (no saved position), replay from this ISO 8601 time (`?since=`) |
//! | `min_backoff`, `max_backoff` | `1s`, `60s` | reconnect delays: doubling, with jitter (half to all of each step) |
//! | `idle_timeout` | `60s` | a connection silent this long (no event, no keep-alive comment) is dropped and reopened |
//! | `max_event_size` | `4MiB` | a larger event ends the connection (the stream is broken or hostile) |
//!
//! # Resuming without gaps or duplicates
//!
//! Every EventStreams event has an `id` (a JSON array of Kafka positions). The
//! connector emits the changes of what it has read as one durable batch, and only
//! *after* the bus has them saves the id of the last event of the batch (with the URL it
//! belongs to) in the store. After a reconnect it sends the id it holds as
//! `Last-Event-ID`; after a restart, the saved one. So an event is never skipped (its
//! id is saved only once it is on the bus), and a clean restart or a reconnect never
//! repeats one (the server resumes *after* the id). A crash in the instant between the
//! bus write and the state write would repeat that one batch; the bus is at-least-once
//! anyway. Events a server repeats anyway (same `meta.id` as one of the last few
//! thousand) are dropped. Canaries are not changes and are not emitted, but their ids
//! still move the position.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use flotilla_config::{Diagnostic, Located};
use flotilla_connector::{Backoff, Connector, ConnectorContext, ConnectorSection, ConnectorType, diagnostic_at};
use flotilla_core::Message;
use serde_json::{Value, json};

use crate::change::change_message;
use crate::sse::{SseEvent, SseParser};

pub(crate) const CONNECTOR_TYPE: ConnectorType = ConnectorType {
    name: flotilla_wikimedia_core::STREAM_CONNECTOR_TYPE,
    description: "Wikimedia recent changes from EventStreams (server-sent events), resumed with Last-Event-ID",
    build,
};

/// Wikimedia's public recent-changes stream.
pub const DEFAULT_URL: &str = "https://stream.wikimedia.org/v2/stream/recentchange";

/// The state key under which the position is saved.
pub const POSITION_KEY: &str = "last_event_id";

/// How many recent `meta.id`s are remembered to drop repeats.
const RECENT_IDS: usize = 4096;

/// Most changes emitted as one batch.
const MAX_BATCH: usize = 1024;

/// Whether `url` is one of Wikimedia's own servers (where `user_agent` is required).
fn is_wikimedia(url: &str) -> bool {
    reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)).is_some_and(|host| {
        host == "wikimedia.org" || host.ends_with(".wikimedia.org") || host.ends_with(".wikipedia.org")
    })
}

/// The default User-Agent for servers other than Wikimedia's: who is asking, with a
/// way to find out more.
pub fn default_user_agent() -> String {
    format!("Flotilla/{} (Wikimedia dispatcher; +{})", env!("CARGO_PKG_VERSION"), env!("CARGO_PKG_REPOSITORY"))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    url: Option<Located<String>>,
    user_agent: Option<String>,
    since: Option<String>,
    min_backoff: Option<Located<String>>,
    max_backoff: Option<Located<String>>,
    idle_timeout: Option<Located<String>>,
    max_event_size: Option<Located<String>>,
}

/// The `wikimedia` connector's settings.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub url: String,
    pub user_agent: String,
    pub since: Option<String>,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub idle_timeout: Duration,
    pub max_event_bytes: usize,
}

impl StreamSettings {
    /// The defaults for `url`.
    pub fn new(url: &str) -> StreamSettings {
        StreamSettings {
            url: url.to_string(),
            user_agent: default_user_agent(),
            since: None,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_event_bytes: 4 << 20,
        }
    }
}

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let raw: RawStream = flotilla_connector::decode_section(section)?;
    let mut errors = Vec::new();
    let mut settings = StreamSettings::new(DEFAULT_URL);
    if let Some(url) = &raw.url {
        match reqwest::Url::parse(&url.value) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => settings.url = url.value.clone(),
            Ok(parsed) => errors.push(diagnostic_at(
                section,
                "url",
                format!("'{}' is a {} URL; expected http:// or https://", url.value, parsed.scheme()),
            )),
            Err(e) => errors.push(diagnostic_at(section, "url", format!("'{}' is not a URL: {e}", url.value))),
        }
    }
    match raw.user_agent {
        Some(agent) => {
            if agent.trim().is_empty() || reqwest::header::HeaderValue::from_str(&agent).is_err() {
                errors.push(diagnostic_at(section, "user_agent", "must be non-empty printable text"));
            }
            settings.user_agent = agent;
        }
        // Wikimedia's User-Agent policy wants a way to reach whoever runs the client;
        // a server of one's own speaking the same protocol (tests, mirrors) does not.
        None if is_wikimedia(&settings.url) => errors.push(diagnostic_at(
            section,
            "user_agent",
            "required for Wikimedia's own servers: their User-Agent policy asks for a way to contact \
             you, e.g. user_agent: 'MyBot/1.0 (https://example.org/mybot; me@example.org)'",
        )),
        None => {}
    }
    settings.since = raw.since;
    let mut duration = |value: &Option<Located<String>>, key: &str, target: &mut Duration| {
        if let Some(value) = value {
            match flotilla_core::parse_duration(&value.value) {
                Ok(d) if !d.is_zero() => *target = d,
                Ok(_) => errors.push(diagnostic_at(section, key, "must be more than 0")),
                Err(e) => errors.push(diagnostic_at(section, key, e.to_string())),
            }
        }
    };
    duration(&raw.min_backoff, "min_backoff", &mut settings.min_backoff);
    duration(&raw.max_backoff, "max_backoff", &mut settings.max_backoff);
    duration(&raw.idle_timeout, "idle_timeout", &mut settings.idle_timeout);
    if let Some(size) = &raw.max_event_size {
        match flotilla_core::parse_size(&size.value) {
            Ok(bytes) if bytes >= 1024 => settings.max_event_bytes = bytes as usize,
            Ok(_) => errors.push(diagnostic_at(section, "max_event_size", "must be at least 1KiB")),
            Err(e) => errors.push(diagnostic_at(section, "max_event_size", e.to_string())),
        }
    }
    if errors.is_empty() { Ok(Box::new(StreamConnector::new(settings))) } else { Err(errors) }
}

/// The `wikimedia` connector.
pub struct StreamConnector {
    settings: StreamSettings,
}

impl StreamConnector {
    pub fn new(settings: StreamSettings) -> StreamConnector {
        StreamConnector { settings }
    }
}

/// How one connection ended.
enum Ended {
    Shutdown,
    /// The connection dropped or failed; `events` counts what it delivered.
    Dropped {
        error: String,
        events: u64,
    },
}

/// What the connector knows across connections.
struct Progress {
    last_id: Option<String>,
    recent: VecDeque<String>,
    recent_set: HashSet<String>,
    emitted: u64,
    reconnects: u64,
    last_error: Option<String>,
}

impl Progress {
    /// Whether a `meta.id` was seen lately; remembers it if not.
    fn repeated(&mut self, meta_id: &str) -> bool {
        if self.recent_set.contains(meta_id) {
            return true;
        }
        if self.recent.len() == RECENT_IDS
            && let Some(old) = self.recent.pop_front()
        {
            self.recent_set.remove(&old);
        }
        self.recent.push_back(meta_id.to_string());
        self.recent_set.insert(meta_id.to_string());
        false
    }
}

#[async_trait::async_trait]
impl Connector for StreamConnector {
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
        let settings = &self.settings;
        let client = reqwest::Client::builder()
            .user_agent(settings.user_agent.as_str())
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(settings.idle_timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        let saved = ctx.load_state(POSITION_KEY).await?;
        let last_id = saved
            .as_ref()
            .filter(|s| s.get("url").and_then(Value::as_str) == Some(settings.url.as_str()))
            .and_then(|s| s.get("id").and_then(Value::as_str))
            .map(str::to_string);
        if let Some(id) = &last_id {
            tracing::info!(connector = ctx.name(), last_event_id = %id, "Resuming the recent-changes stream.");
        }
        let mut progress = Progress {
            last_id,
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            emitted: 0,
            reconnects: 0,
            last_error: None,
        };
        let mut backoff = Backoff::new(settings.min_backoff, settings.max_backoff);
        loop {
            report(ctx, settings, &progress, true);
            match self.connection(ctx, &client, &mut progress).await? {
                Ended::Shutdown => return Ok(()),
                Ended::Dropped { error, events } => {
                    if events > 0 {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(connector = ctx.name(), %error, retry_in = ?delay,
                        "The recent-changes stream dropped; reconnecting after a backoff.");
                    progress.last_error = Some(error);
                    progress.reconnects += 1;
                    report(ctx, settings, &progress, false);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = ctx.shutdown().cancelled() => return Ok(()),
                    }
                }
            }
        }
    }
}

fn report(ctx: &ConnectorContext, settings: &StreamSettings, progress: &Progress, connected: bool) {
    ctx.set_detail(json!({
        "url": settings.url,
        "connected": connected,
        "last_event_id": progress.last_id,
        "emitted": progress.emitted,
        "reconnects": progress.reconnects,
        "last_error": progress.last_error,
    }));
}

impl StreamConnector {
    /// One connection: open, read until it ends, emit as we go. `Err` only for what
    /// a reconnect cannot fix (the bus or the store failed).
    async fn connection(
        &self,
        ctx: &ConnectorContext,
        client: &reqwest::Client,
        progress: &mut Progress,
    ) -> anyhow::Result<Ended> {
        let settings = &self.settings;
        let mut url = reqwest::Url::parse(&settings.url)?;
        if let (None, Some(since)) = (&progress.last_id, &settings.since) {
            url.query_pairs_mut().append_pair("since", since);
        }
        let mut request = client.get(url).header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = &progress.last_id {
            request = request.header("Last-Event-ID", id.as_str());
        }
        let response = tokio::select! {
            response = request.send() => response,
            _ = ctx.shutdown().cancelled() => return Ok(Ended::Shutdown),
        };
        let mut response = match response {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                return Ok(Ended::Dropped { error: format!("the server answered {}", response.status()), events: 0 });
            }
            Err(e) => return Ok(Ended::Dropped { error: flotilla_core::error_chain(&e), events: 0 }),
        };
        tracing::info!(connector = ctx.name(), url = %settings.url, "Connected to the recent-changes stream.");
        let mut parser = SseParser::new(settings.max_event_bytes);
        let mut events: Vec<SseEvent> = Vec::new();
        let mut delivered = 0u64;
        loop {
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk,
                _ = ctx.shutdown().cancelled() => return Ok(Ended::Shutdown),
            };
            let chunk = match chunk {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    return Ok(Ended::Dropped { error: "the server closed the stream".into(), events: delivered });
                }
                Err(e) => return Ok(Ended::Dropped { error: flotilla_core::error_chain(&e), events: delivered }),
            };
            if let Err(e) = parser.feed(&chunk, &mut events) {
                return Ok(Ended::Dropped { error: e.to_string(), events: delivered });
            }
            if events.is_empty() {
                continue;
            }
            // Everything complete in hand goes out as one batch (capped), so a fast
            // replay costs one bus write and one state write per batch, not per event.
            for batch in events.chunks(MAX_BATCH) {
                delivered += self.deliver(ctx, batch, progress).await?;
            }
            events.clear();
        }
    }

    /// Emits a batch of events' changes, then saves the position. Returns how many
    /// events it handled.
    async fn deliver(
        &self,
        ctx: &ConnectorContext,
        batch: &[SseEvent],
        progress: &mut Progress,
    ) -> anyhow::Result<u64> {
        let mut messages: Vec<Message> = Vec::with_capacity(batch.len());
        let mut last_id = None;
        for event in batch {
            // An id that cannot be sent back as a header is no use as a position.
            if let Some(id) = event.id.as_ref().filter(|id| reqwest::header::HeaderValue::from_str(id).is_ok()) {
                last_id = Some(id.clone());
            }
            if event.event != "message" {
                continue;
            }
            match change_message(event.data.as_bytes()) {
                Ok(Some(message)) => {
                    let meta_id = message
                        .get("event")
                        .and_then(|e| e.get("meta"))
                        .and_then(|m| m.get("id"))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if let Some(meta_id) = meta_id
                        && progress.repeated(&meta_id)
                    {
                        tracing::debug!(connector = ctx.name(), %meta_id, "Dropped an event the server sent again.");
                        continue;
                    }
                    messages.push(message);
                }
                Ok(None) => {} // A canary.
                Err(error) => {
                    tracing::warn!(connector = ctx.name(), %error, id = ?event.id, "Skipped an event that is not a recent change.");
                }
            }
        }
        let count = messages.len() as u64;
        ctx.emit_all(messages).await?;
        progress.emitted += count;
        if let Some(id) = last_id {
            // After the bus has the changes: a crash before this line repeats them
            // rather than losing them.
            ctx.save_state(POSITION_KEY, &json!({"url": self.settings.url, "id": id})).await?;
            progress.last_id = Some(id);
        }
        Ok(batch.len() as u64)
    }
}
