//! The NATS JetStream bus (`bus.backend: nats`, SPEC §5.1): each queue is a JetStream
//! stream, so every node of a fleet that shares one NATS (and one `prefix`) shares the
//! queues. It needs a `nats-server` with JetStream enabled (`-js`), 2.9 or newer.
//!
//! # Layout
//!
//! - Queue `q` is the stream `<prefix>_<q>` holding the one subject `<prefix>.<q>`, file
//!   storage, one replica (more when the NATS cluster is configured for it is NATS's
//!   business). Stream and consumer names may not hold `.`, so in them `.` is written
//!   `_2E` and `_` is written `_5F` ([`escape`]): reversible, so `stats` finds each
//!   queue's name again from its stream's. A queue name with an empty subject token
//!   (`a..b`, a leading or trailing `.`) is refused: NATS subjects cannot hold one.
//! - A consumer group is a durable pull consumer named after the group (escaped the
//!   same way), explicit acknowledgements, `ack_wait` = `lease_ttl`, delivering from
//!   the first message (a new group starts at the oldest retained message), no limit
//!   on redeliveries. Every consumer of the group, on every node, pulls from it.
//! - A [`Delivery`](crate::Delivery)'s id is [`DeliveryId::Text`](crate::DeliveryId)
//!   holding the message's ack subject; its `seq` is the stream sequence less one (the
//!   bus counts from 0, JetStream from 1), its `timestamp_ms` when JetStream stored it.
//!
//! # Publishing
//!
//! A batch is sent message by message on the bus's one connection without waiting,
//! then every acknowledgement (`PubAck`) is awaited; `publish` returns once JetStream
//! has acknowledged each one, i.e. stored it. Order within a batch: a per-queue lock is
//! held while the batch is handed to the connection, and the connection writes in
//! order, so a batch lands in order and contiguous among this process's publishes
//! (another node's publishes to the same queue may interleave with it; the returned
//! range then spans theirs too). A batch whose acknowledgements do not all arrive (NATS
//! went away) fails; what of it was stored stays, so a retry may store some messages
//! twice (at-least-once).
//!
//! # Consumers
//!
//! A fetch first pulls what is there without waiting (`no_wait`); when nothing is, it
//! waits (up to `wait`) for one message, then takes whatever else is there at once, so
//! a fetch returns as soon as there is something. Acknowledgement is `+ACK` on each
//! message's ack subject, followed by a round trip to NATS (which handles a
//! connection's messages in order, so the acknowledgements were applied before
//! `ack` returns).
//!
//! - **A consumer of this process that goes away** (dropped) leaves what it held to
//!   the next consumer of the group in this process that fetches: that one sends `-NAK`
//!   for each before pulling, and JetStream hands redeliveries out before new messages.
//!   Closing the bus gives back what its dropped consumers held the same way (a node
//!   that stops cleanly leaves nothing waiting for `ack_wait`).
//! - **A consumer that died with its process** (or whose fetch was dropped mid-way)
//!   holds its messages until `ack_wait` (= `lease_ttl`) passes without an
//!   acknowledgement; then JetStream redelivers them to any consumer of the group.
//! - **Order of redeliveries**: JetStream hands out redeliveries before new messages,
//!   in the order they were given back or their `ack_wait` ran out, not in queue
//!   order: after two hand-backs of overlapping sets a group may see `m1` before `m0`
//!   (the Redis and embedded buses re-read in queue order). New messages always come
//!   in queue order.
//! - **A live consumer working long on a batch** keeps it: every `lease_ttl`/3 it sends
//!   `+WPI` (work in progress) for what it still holds, which restarts `ack_wait`.
//!
//! # Readers
//!
//! A reader fetches by sequence (`$JS.API.STREAM.MSG.GET`, the first message of the
//! subject at or after its cursor), one request per message; it creates nothing on the
//! server. It waits for new messages on a plain subscription to the queue's subject,
//! looking again at least every 100 ms (a subscriber may hear of a message before the
//! stream has stored it).
//!
//! # Retention
//!
//! Streams use `Limits` retention with no limits, so JetStream itself never removes a
//! message. (`Interest` retention would drop messages published while a queue has no
//! group, and `max_age` would drop what a stuck group has not acknowledged.) The bus
//! trims instead, every `retention_check`: below the lowest acknowledgement floor of
//! the stream's consumers (every message at or below a consumer's ack floor is
//! acknowledged by it), and only messages older than `retention.max_age` (default 1 h,
//! so readers see recent history), deleting them one by one from the front (at most
//! 10 000 per stream and round). Not with a purge: NATS 2.9 drops a consumer's
//! in-flight messages above the purge point from its pending set, so they would never
//! be redelivered (found by `retention_removes_only_what_every_group_acknowledged`). A queue without
//! groups is trimmed by age alone, as the Redis bus does. `max_age` off: nothing is
//! ever removed.
//!
//! # Statistics
//!
//! `next_seq` is the last stream sequence, `first_seq` the first retained one less one;
//! `bytes` JetStream's count. A group's `in_flight` is its consumer's `num_ack_pending`,
//! `pending` that plus `num_pending` (not yet delivered), `acked_seq` its ack floor
//! less one; `consumers` is the number of pull requests waiting on it (consumers idle
//! at that moment; JetStream does not know the others). `counters().syncs` stays 0.
//!
//! # Durability
//!
//! JetStream writes each message to its file store before acknowledging it, so a
//! `kill -9` of NATS loses nothing whose publish returned. It syncs its files to disk
//! every `sync_interval` (2 min by default; `sync_interval: always` from NATS 2.10):
//! power loss of NATS's machine may lose what came since. Acknowledgements are kept
//! in the consumer's state file, written shortly after; a `kill -9` of NATS may
//! forget the last ones, which are then delivered again (at-least-once).

mod consumer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::task::JoinHandle;

use crate::{
    Bus, BusCounters, BusError, Consumer, Counters, GroupStats, QueueStats, ReadFrom, Reader, SeqRange, redact,
    valid_name,
};

pub use self::consumer::{NatsConsumer, NatsReader};

/// The name prefix when none is configured.
pub const DEFAULT_PREFIX: &str = "flotilla";
/// How long a dead consumer keeps its messages, by default (SPEC §5.1).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// How long acknowledged messages stay, by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// How long connecting may take before NATS counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request to JetStream (a publish acknowledgement, an API call) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many messages are removed from one stream per retention round (one
/// request each), so a round stays short; the next round goes on.
const MAX_TRIM_PER_ROUND: u64 = 10_000;

/// Settings of a NATS bus.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// `nats://[user:password@]host:port`.
    pub url: String,
    /// Subjects are `<prefix>.<queue>`, streams `<prefix>_<queue>` (escaped).
    pub prefix: String,
    /// This node's name (the connection's name in NATS's monitoring).
    pub node: String,
    /// How long messages a dead consumer held wait before JetStream redelivers them
    /// (the consumers' `ack_wait`).
    pub lease_ttl: Duration,
    /// Larger messages are refused with [`BusError::TooLarge`].
    pub max_message_bytes: usize,
    /// How long acknowledged messages stay (`None`: forever).
    pub max_age: Option<Duration>,
    /// How often retention trims.
    pub retention_check: Duration,
}

impl NatsOptions {
    /// Defaults for a bus at `url` used by node `node`.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> NatsOptions {
        NatsOptions {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_string(),
            node: node.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            max_message_bytes: 8 << 20,
            max_age: Some(DEFAULT_MAX_AGE),
            retention_check: Duration::from_secs(30),
        }
    }
}

/// Checks a bus URL without connecting.
///
/// # Errors
/// What is wrong with it, in a sentence.
pub fn check_url(url: &str) -> Result<(), String> {
    let shown = redact(url);
    let Some(rest) = url.strip_prefix("nats://") else {
        return Err(format!("'{shown}' is not a NATS URL: use nats://host:port"));
    };
    url.parse::<async_nats::ServerAddr>().map_err(|e| format!("'{shown}' is not a NATS URL: {e}"))?;
    let authority = rest.rsplit('@').next().unwrap_or(rest);
    if authority.is_empty() || authority.starts_with(':') {
        return Err(format!("'{shown}' is not a NATS URL: it names no host"));
    }
    Ok(())
}

/// What [`NatsBus::check`] found out about a NATS server.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    /// The server's version.
    pub version: String,
    /// Its JetStream, in a sentence.
    pub jetstream: String,
    /// What puts queues at risk; logged when the bus opens, printed by `flotilla check`.
    pub warnings: Vec<String>,
}

/// A setting the bus cannot use, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(String);

/// The server runs without JetStream.
#[derive(Debug, thiserror::Error)]
#[error(
    "NATS {0} has no JetStream, which the bus needs: start nats-server with -js (and -sd <store dir>), or add `jetstream {{}}` to its configuration"
)]
struct NoJetStream(String);

/// A queue and one of its groups.
type QueueGroup = (String, String);

/// The NATS bus; clones share it.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    options: NatsOptions,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The URL with any password hidden, for messages.
    url: String,
    counters: Counters,
    /// Queues whose stream this bus has made sure of (cleared by `delete_queue`, and
    /// for a queue whose publish failed: another node may have deleted it).
    known: Mutex<HashSet<String>>,
    /// Held while a batch is handed to the connection, per queue: keeps it contiguous.
    order: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Ack subjects of messages that dropped consumers held, per (queue, group): the
    /// next consumer of the group here that fetches gives them back (`-NAK`).
    departed: Mutex<HashMap<QueueGroup, Vec<Arc<str>>>>,
    closed: AtomicBool,
    retention: Mutex<Option<JoinHandle<()>>>,
}

/// Writes `name` so it can be part of a stream or consumer name (which may not hold
/// `.`): `.` becomes `_2E`, `_` becomes `_5F`; [`unescape`] reverses it.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '.' => out.push_str("_2E"),
            '_' => out.push_str("_5F"),
            c => out.push(c),
        }
    }
    out
}

/// The name [`escape`] wrote, or `None` if `escaped` is not one it writes.
pub fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('_') {
        out.push_str(&rest[..at]);
        match rest.get(at + 1..at + 3) {
            Some("2E") => out.push('.'),
            Some("5F") => out.push('_'),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A name usable as NATS subject tokens: valid, and no empty token.
fn valid_subject_name(name: &str) -> bool {
    valid_name(name) && name.split('.').all(|token| !token.is_empty())
}

impl NatsBus {
    /// Connects and checks that the server has JetStream, then starts retention.
    ///
    /// # Errors
    /// A bad URL or prefix, an unreachable NATS, a NATS without JetStream.
    pub async fn open(options: NatsOptions) -> Result<NatsBus, BusError> {
        let (client, js, url) = connect(&options).await?;
        let check = server_check(&client, &js, &url, options.max_message_bytes).await?;
        tracing::debug!(%url, version = %check.version, jetstream = %check.jetstream, prefix = %options.prefix,
            "The bus is on NATS JetStream.");
        for warning in &check.warnings {
            tracing::warn!(%url, "{warning}");
        }
        let inner = Arc::new(Inner {
            options,
            client,
            js,
            url,
            counters: Counters::default(),
            known: Mutex::default(),
            order: Mutex::default(),
            departed: Mutex::default(),
            closed: AtomicBool::new(false),
            retention: Mutex::new(None),
        });
        if inner.options.max_age.is_some() {
            let task = crate::spawn_retention(&inner, inner.options.retention_check, async |inner| {
                inner.apply_retention().await
            });
            *lock(&inner.retention) = Some(task);
        }
        Ok(NatsBus { inner })
    }

    /// Connects and reports what the server is, without opening a bus (`flotilla
    /// check`).
    ///
    /// # Errors
    /// As [`NatsBus::open`].
    pub async fn check(options: &NatsOptions) -> Result<ServerCheck, BusError> {
        let (client, js, url) = connect(options).await?;
        let check = server_check(&client, &js, &url, options.max_message_bytes).await;
        drop(client);
        check
    }

    /// Trims every stream of the bus now instead of waiting for the next check (tests,
    /// tools); see the module docs. Returns how many messages were removed.
    ///
    /// # Errors
    /// NATS failed or could not be reached.
    pub async fn apply_retention(&self) -> Result<u64, BusError> {
        self.inner.apply_retention().await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connected client and its JetStream context.
async fn connect(options: &NatsOptions) -> Result<(async_nats::Client, jetstream::Context, String), BusError> {
    if !valid_subject_name(&options.prefix) {
        let why = format!(
            "'{}' is not a valid prefix: use 1 to 200 characters from A-Z a-z 0-9 _ . - (no empty part between dots)",
            options.prefix
        );
        return Err(BusError::backend("bus.prefix", Invalid(why)));
    }
    check_url(&options.url).map_err(|why| BusError::backend("bus.url", Invalid(why)))?;
    let url = redact(&options.url);
    let client = async_nats::ConnectOptions::new()
        .name(format!("flotilla {}", options.node))
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connect(options.url.as_str())
        .await
        .map_err(|e| BusError::backend(format!("cannot reach NATS at {url}"), e))?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(REQUEST_TIMEOUT);
    Ok((client, js, url))
}

/// The server's version, and an error if it has no JetStream.
async fn server_check(
    client: &async_nats::Client,
    js: &jetstream::Context,
    url: &str,
    max_message_bytes: usize,
) -> Result<ServerCheck, BusError> {
    let info = client.server_info();
    let at = format!("{} at {url}", info.version);
    if !info.jetstream {
        return Err(BusError::backend(format!("NATS at {url}"), NoJetStream(at)));
    }
    // The stream list asks the JetStream API (the account query's answer differs
    // between server versions); it fails when the account has no JetStream.
    let streams: Vec<String> = js
        .stream_names()
        .try_collect()
        .await
        .map_err(|e| BusError::backend(format!("asking NATS at {url} for its JetStream streams"), e))?;
    let jetstream = format!("JetStream enabled, {} streams", streams.len());
    let mut warnings = Vec::new();
    if info.max_payload < max_message_bytes {
        warnings.push(format!(
            "NATS takes messages of at most {} bytes (max_payload) but bus.max_message_size allows {max_message_bytes}: larger messages fail to publish. Raise max_payload in nats-server's configuration, or lower bus.max_message_size.",
            info.max_payload
        ));
    }
    Ok(ServerCheck { version: info.version, jetstream, warnings })
}

/// The stream is not there (getting or deleting it).
fn stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(error.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

impl Inner {
    fn check_open(&self) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) { Err(BusError::Closed) } else { Ok(()) }
    }

    fn stream_prefix(&self) -> String {
        format!("{}_", escape(&self.options.prefix))
    }

    fn stream_name(&self, queue: &str) -> Result<String, BusError> {
        if !valid_subject_name(queue) {
            return Err(BusError::InvalidQueueName(queue.to_string()));
        }
        Ok(format!("{}{}", self.stream_prefix(), escape(queue)))
    }

    fn subject(&self, queue: &str) -> String {
        format!("{}.{queue}", self.options.prefix)
    }

    /// The queue a stream of this bus holds, or `None` for another program's stream.
    fn queue_of(&self, stream: &str) -> Option<String> {
        stream.strip_prefix(&self.stream_prefix()).and_then(unescape).filter(|q| valid_subject_name(q))
    }

    /// The queue's stream, created if it does not exist.
    async fn ensure_stream(&self, queue: &str) -> Result<stream::Stream, BusError> {
        let name = self.stream_name(queue)?;
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![self.subject(queue)],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_message_size: i32::try_from(self.options.max_message_bytes + 1024).unwrap_or(i32::MAX),
            ..stream::Config::default()
        };
        let stream = self.js.get_or_create_stream(config).await.map_err(|e| {
            BusError::backend(format!("creating the stream of queue '{queue}' (NATS at {})", self.url), e)
        })?;
        lock(&self.known).insert(queue.to_string());
        Ok(stream)
    }

    async fn ensure_known(&self, queue: &str) -> Result<(), BusError> {
        if !lock(&self.known).contains(queue) {
            self.ensure_stream(queue).await?;
        }
        Ok(())
    }

    async fn stream_names(&self) -> Result<Vec<String>, BusError> {
        let names: Vec<String> = self
            .js
            .stream_names()
            .try_collect()
            .await
            .map_err(|e| BusError::backend(format!("listing the bus's streams (NATS at {})", self.url), e))?;
        Ok(names.into_iter().filter(|name| self.queue_of(name).is_some()).collect())
    }

    async fn apply_retention(&self) -> Result<u64, BusError> {
        let Some(max_age) = self.options.max_age else { return Ok(0) };
        let mut removed = 0;
        for name in self.stream_names().await? {
            removed += self.trim(&name, max_age).await?;
        }
        Ok(removed)
    }

    /// Purges the messages of stream `name` older than `max_age` that every consumer
    /// acknowledged.
    async fn trim(&self, name: &str, max_age: Duration) -> Result<u64, BusError> {
        let what = format!("trimming stream {name} (NATS at {})", self.url);
        let failed = |e: &dyn std::fmt::Display| BusError::backend(what.clone(), Invalid(e.to_string()));
        let mut stream = match self.js.get_stream(name).await {
            Ok(stream) => stream,
            Err(e) if stream_not_found(&e) => return Ok(0),
            Err(e) => return Err(BusError::backend(what, e)),
        };
        let state = stream.info().await.map_err(|e| BusError::backend(what.clone(), e))?.state.clone();
        if state.messages == 0 {
            return Ok(0);
        }
        // Below this every consumer has acknowledged everything.
        let mut below = state.last_sequence + 1;
        let consumers: Vec<_> = stream.consumers().try_collect().await.map_err(|e| failed(&e))?;
        for consumer in &consumers {
            below = below.min(consumer.ack_floor.stream_sequence + 1);
        }
        // Below this every message is older than max_age (stream order is time order):
        // the first sequence stored at or after the cut, found by bisection.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let cut = now.saturating_sub(max_age).as_nanos() as i128;
        let (mut low, mut high) = (state.first_sequence, below.min(state.last_sequence + 1));
        while low < high {
            let middle = low + (high - low) / 2;
            match stream.get_raw_message(middle).await {
                Ok(message) if message.time.unix_timestamp_nanos() < cut => low = middle + 1,
                Ok(_) => high = middle,
                // A gap (deleted message): stop at what is known to be old.
                Err(_) => high = middle,
            }
        }
        if low <= state.first_sequence {
            return Ok(0);
        }
        // Message by message from the front, not a purge: NATS 2.9 drops a consumer's
        // in-flight messages above a purge point from its pending set (they would never
        // be redelivered), while deleting a message leaves consumers alone.
        let mut removed = 0;
        for seq in state.first_sequence..low.min(state.first_sequence + MAX_TRIM_PER_ROUND) {
            if stream.delete_message(seq).await.map_err(|e| BusError::backend(what.clone(), e))? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn queue_stats(&self, name: &str) -> Result<Option<QueueStats>, BusError> {
        let Some(queue) = self.queue_of(name) else { return Ok(None) };
        let what = format!("reading the figures of queue '{queue}' (NATS at {})", self.url);
        let mut stream = match self.js.get_stream(name).await {
            Ok(stream) => stream,
            Err(e) if stream_not_found(&e) => return Ok(None),
            Err(e) => return Err(BusError::backend(what, e)),
        };
        let state = stream.info().await.map_err(|e| BusError::backend(what.clone(), e))?.state.clone();
        let consumers: Vec<_> =
            stream.consumers().try_collect().await.map_err(|e| BusError::backend(what.clone(), e))?;
        let mut groups: Vec<GroupStats> = consumers
            .into_iter()
            .filter_map(|c| {
                let group = unescape(&c.name)?;
                let in_flight = c.num_ack_pending as u64;
                Some(GroupStats {
                    group,
                    acked_seq: c.ack_floor.stream_sequence.checked_sub(1),
                    in_flight,
                    pending: in_flight + c.num_pending,
                    consumers: c.num_waiting as u64,
                })
            })
            .collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        let depth = groups.iter().map(|g| g.pending).max().unwrap_or(state.messages);
        Ok(Some(QueueStats {
            queue,
            first_seq: state.first_sequence.saturating_sub(1).min(state.last_sequence),
            next_seq: state.last_sequence,
            bytes: state.bytes,
            depth,
            groups,
        }))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.retention).take() {
            task.abort();
        }
    }
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    async fn publish(&self, queue: &str, payloads: Vec<Bytes>) -> Result<SeqRange, BusError> {
        let inner = &self.inner;
        inner.check_open()?;
        inner.stream_name(queue)?;
        let limit = inner.options.max_message_bytes;
        if let Some(big) = payloads.iter().find(|p| p.len() > limit) {
            return Err(BusError::TooLarge { size: big.len(), limit });
        }
        if payloads.is_empty() {
            return Ok(0..0);
        }
        let count = payloads.len() as u64;
        let started = std::time::Instant::now();
        let result = self.publish_batch(queue, payloads).await;
        match &result {
            Ok(_) => {
                inner.counters.published.fetch_add(count, Ordering::Relaxed);
                inner.counters.publish_batches.fetch_add(1, Ordering::Relaxed);
                inner.counters.publish_seconds.observe(started.elapsed());
            }
            Err(_) => {
                inner.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                // The stream may have gone (deleted by another node): look again next time.
                lock(&inner.known).remove(queue);
            }
        }
        result
    }

    async fn subscribe(&self, queue: &str, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        self.inner.check_open()?;
        if !valid_name(group) {
            return Err(BusError::InvalidGroupName(group.to_string()));
        }
        let stream = self.inner.ensure_stream(queue).await?;
        let name = escape(group);
        let config = pull::Config {
            durable_name: Some(name.clone()),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.inner.options.lease_ttl,
            max_deliver: -1,
            max_ack_pending: 100_000,
            ..pull::Config::default()
        };
        let consumer = stream.get_or_create_consumer(&name, config).await.map_err(|e| {
            BusError::backend(format!("creating group '{group}' of queue '{queue}' (NATS at {})", self.inner.url), e)
        })?;
        Ok(Box::new(NatsConsumer::new(self.inner.clone(), queue, group, consumer)))
    }

    async fn read(&self, queue: &str, from: ReadFrom) -> Result<Box<dyn Reader>, BusError> {
        self.inner.check_open()?;
        let mut stream = self.inner.ensure_stream(queue).await?;
        let what = format!("following queue '{queue}' (NATS at {})", self.inner.url);
        let wake = self
            .inner
            .client
            .subscribe(self.inner.subject(queue))
            .await
            .map_err(|e| BusError::backend(what.clone(), e))?;
        let next = match from {
            ReadFrom::Start => 1,
            ReadFrom::End => stream.info().await.map_err(|e| BusError::backend(what, e))?.state.last_sequence + 1,
        };
        Ok(Box::new(NatsReader::new(self.inner.clone(), queue, stream, next, wake)))
    }

    /// Deletes the stream: its messages and its consumers go at once. Consumers of the
    /// old stream then fail; readers are not told (see the trait's docs).
    async fn delete_queue(&self, queue: &str) -> Result<(), BusError> {
        self.inner.check_open()?;
        let name = self.inner.stream_name(queue)?;
        lock(&self.inner.known).remove(queue);
        match self.inner.js.delete_stream(&name).await {
            Ok(_) => Ok(()),
            Err(e) if stream_not_found(&e) => Ok(()),
            Err(e) => Err(BusError::backend(format!("deleting queue '{queue}' (NATS at {})", self.inner.url), e)),
        }
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, BusError> {
        let mut stats = Vec::new();
        for name in self.inner.stream_names().await? {
            stats.extend(self.inner.queue_stats(&name).await?);
        }
        stats.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(stats)
    }

    fn counters(&self) -> BusCounters {
        self.inner.counters.snapshot()
    }

    async fn close(&self) -> Result<(), BusError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(task) = lock(&self.inner.retention).take() {
            task.abort();
        }
        // What dropped consumers held goes back now (`-NAK`), so whoever consumes the
        // group next, here after a reopen or on another node, gets it at once.
        let departed: Vec<Arc<str>> = lock(&self.inner.departed).drain().flat_map(|(_, held)| held).collect();
        for subject in departed {
            let _ = self.inner.client.publish(subject.to_string(), Bytes::from_static(b"-NAK")).await;
        }
        // Every publish that returned was acknowledged by JetStream; this sends what
        // acknowledgements and hand-backs may still be buffered.
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| BusError::backend(format!("closing the bus (NATS at {})", self.inner.url), e))
    }
}

impl NatsBus {
    async fn publish_batch(&self, queue: &str, payloads: Vec<Bytes>) -> Result<SeqRange, BusError> {
        let inner = &self.inner;
        inner.ensure_known(queue).await?;
        let subject = inner.subject(queue);
        let what = format!("publishing to queue '{queue}' (NATS at {})", inner.url);
        let order = lock(&inner.order).entry(queue.to_string()).or_default().clone();
        let mut acks = Vec::with_capacity(payloads.len());
        {
            let _in_order = order.lock().await;
            for payload in payloads {
                let ack =
                    inner.js.publish(subject.clone(), payload).await.map_err(|e| BusError::backend(what.clone(), e))?;
                acks.push(ack);
            }
        }
        let (mut first, mut last) = (u64::MAX, 0);
        for ack in acks {
            let ack = ack.await.map_err(|e| BusError::backend(what.clone(), e))?;
            first = first.min(ack.sequence);
            last = last.max(ack.sequence);
        }
        Ok(first.saturating_sub(1)..last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_reversibly() {
        for name in ["q", "sub.alice", "a_b", "a_2E", "_._", "x-y.z_"] {
            let escaped = escape(name);
            assert!(!escaped.contains('.'), "{escaped}");
            assert_eq!(unescape(&escaped).as_deref(), Some(name));
        }
        assert_eq!(escape("sub.a_b"), "sub_2Ea_5Fb");
        assert_eq!(unescape("a_b"), None, "not written by escape");
    }

    #[test]
    fn urls_are_checked_and_passwords_never_show() {
        assert!(check_url("nats://127.0.0.1:4222").is_ok());
        assert!(check_url("nats://user:pw@host:4222").is_ok());
        let error = check_url("redis://user:secret@127.0.0.1:6379").unwrap_err();
        assert!(error.contains("not a NATS URL") && !error.contains("secret"), "{error}");
        assert!(check_url("nats://").is_err());
        assert_eq!(redact("nats://user:secret@host:4222"), "nats://user:***@host:4222");
    }

    #[test]
    fn subject_names_have_no_empty_tokens() {
        assert!(valid_subject_name("fan.1"));
        assert!(!valid_subject_name("a..b"));
        assert!(!valid_subject_name(".a"));
    }
}
