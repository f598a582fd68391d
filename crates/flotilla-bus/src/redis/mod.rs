//! The Redis bus (`bus.backend: redis`, SPEC §5.1): each queue is a Redis Stream, so
//! every node of a fleet that shares one Redis (and one `prefix`) shares the queues.
//! It needs Redis 7.0 or newer.
//!
//! # Layout
//!
//! - Queue `q` is the stream at key `<prefix>:q`. Each entry has one field, `m`: the
//!   payload, bytes as published.
//! - A consumer group of the bus is a consumer group of the stream, created with
//!   `MKSTREAM` at `0` (a new group starts at the oldest retained entry).
//! - A [`Delivery`](crate::Delivery)'s id is [`DeliveryId::Text`](crate::DeliveryId)
//!   holding the entry id; its `timestamp_ms` is the id's milliseconds part (when Redis
//!   accepted it). Its `seq` is 0: Redis does not number entries, and numbering them
//!   (a Lua script per batch reading the stream's counter) costs about three times the
//!   server time of plain `XADD`s (measured: 306 µs against 104 µs per 100 entries).
//!
//! # Publishing
//!
//! A batch is one transaction, `MULTI`, an `XADD` per payload, `XINFO STREAM`, `EXEC`,
//! sent as one pipeline: one round trip. The transaction makes the batch atomic: no
//! other publisher's entries land inside it (it keeps its order), and a batch is there
//! whole or not at all, so a retry never leaves half of one behind; `XINFO STREAM`'s
//! `entries-added` at its end gives the batch's place in the queue (the returned
//! range). Concurrent publishes share the bus's one multiplexed connection and are
//! pipelined on it. `publish` returns once Redis has answered `EXEC`, which it does only
//! after appending the batch to its append-only file (and, with `appendfsync always`,
//! syncing it). If the connection breaks before the answer, the batch is sent once more
//! on a new connection (it may then be there twice: at-least-once).
//!
//! # Consumers: names, claims, hand-backs
//!
//! A consumer is named `<node>-<slot>`, the slot being the lowest free for that queue
//! and group in this process. Names are thus stable across restarts of a node: a node
//! that comes back first re-reads its own pending entries (`XREADGROUP … 0`), then new
//! ones (`>`). `node.name` must therefore be unique in a fleet.
//!
//! - **A consumer of this process that goes away** (dropped: a stage re-subscribing,
//!   a node stopping) leaves its slot and its unacknowledged entries behind; the next
//!   consumer of the group in this process that subscribes takes the slot over (and
//!   reads its pending entries first), or the next one that fetches takes its entries
//!   over with `XCLAIM`, before anything new.
//! - **A consumer that died with its process** keeps its entries until they have been
//!   idle for `lease_ttl` (default 15 s); then any consumer of the group takes them with
//!   `XAUTOCLAIM` (each consumer looks every `lease_ttl`/4, at most every second).
//! - **A live consumer working long on a batch** keeps it: every `lease_ttl`/3 it
//!   resets the idle time of what it holds (`scripts::REFRESH`, an `XCLAIM … JUSTID` to
//!   itself of the entries it still owns), so nothing it holds is claimed from it.
//!
//! Each consumer and reader has its own connection for its blocking reads (a blocking
//! `XREADGROUP`/`XREAD` holds its connection); everything else goes over the bus's
//! shared connection. Blocking reads wait at most `lease_ttl`/4 (at most 1 s) at a
//! time, so claims are looked at in between.
//!
//! # Lost connections
//!
//! Every connection reconnects on its next use after it broke. A read whose answer was
//! lost (or a fetch dropped mid-way) may have moved entries into the consumer's pending
//! list; the consumer then re-reads its pending list before anything new (skipping what
//! the caller already holds), so nothing is stranded. Acknowledgements are `XACK`,
//! answered once Redis has logged them: an acknowledgement lost with a connection is
//! redelivered (at-least-once), an acknowledged entry never is.
//!
//! # Retention
//!
//! Entries every group has acknowledged stay for `retention.max_age` (default 1 h:
//! Redis keeps them in memory) so readers (`flotilla tail --from start`) see recent
//! history; then they are trimmed with `XTRIM MINID` below the oldest entry any group
//! still needs (for each group, its oldest pending entry, or the one after the last
//! delivered to it), computed and applied in one script (`scripts::TRIM`), so nothing
//! a group has not acknowledged is ever removed. A stuck group makes its stream grow
//! (visible in `flotilla status`). `max_age` off: nothing is ever trimmed.
//!
//! # Statistics
//!
//! `next_seq` is the stream's `entries-added`, `first_seq` that minus its length (the
//! bus only ever trims from the front); `bytes` is Redis's `MEMORY USAGE` estimate. A
//! group's `pending` is its pending entries plus its `lag` (entries not yet delivered);
//! its `acked_seq` is known only while nothing is in flight (then it is one before the
//! group's `entries-read`), and `None` otherwise (an entry's place in the queue is not
//! known without counting); `consumers` counts the names the group knows (with slot
//! reuse, at most as many per node as ran at once). `counters().syncs` stays 0: Redis
//! syncs on its own.
//!
//! # Durability
//!
//! Redis's own persistence decides (checked at start, see [`ServerCheck`]): with
//! `appendonly yes` and `appendfsync always` nothing whose publish returned is lost,
//! even by power loss; with `everysec` a `kill -9` of Redis loses nothing (the file
//! was written) but power loss may lose the last second or two; without the
//! append-only file a restart of Redis loses the queues (back to the last snapshot).

mod consumer;
mod fleet;
mod link;
mod reply;
mod scripts;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::{Client, Value, cmd};
use bytes::Bytes;
use tokio::task::JoinHandle;

use self::link::Link;
use self::reply::{field, int, text};
use crate::redis_client::RedisSetupError;
use crate::{
    Bus, BusCounters, BusError, Consumer, Counters, GroupStats, QueueStats, ReadFrom, Reader, SeqRange, valid_name,
};

pub use self::consumer::{RedisConsumer, RedisReader};
pub use self::fleet::RedisFleet;

/// The key prefix when none is configured.
pub const DEFAULT_PREFIX: &str = "flotilla";
/// How long a dead consumer keeps its entries, by default (SPEC §5.1).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// How long acknowledged entries stay, by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// How long the shared connection waits for an answer (a large batch on a busy Redis
/// takes a while; redis-rs's default of 500 ms would fail it).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a Redis bus.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port/db`, `rediss://…` (TLS) or `unix:///path`.
    pub url: String,
    /// With `rediss://`: the CA file to trust instead of the system's roots (`bus.tls_ca`).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Streams are `<prefix>:<queue>`.
    pub prefix: String,
    /// This node's name: its consumers are `<node>-<slot>`.
    pub node: String,
    /// How long entries a dead consumer held wait before others claim them.
    pub lease_ttl: Duration,
    /// Larger messages are refused with [`BusError::TooLarge`].
    pub max_message_bytes: usize,
    /// How long acknowledged entries stay (`None`: forever).
    pub max_age: Option<Duration>,
    /// How often retention trims.
    pub retention_check: Duration,
}

impl RedisOptions {
    /// Defaults for a bus at `url` used by node `node`.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> RedisOptions {
        RedisOptions {
            url: url.into(),
            tls_ca: None,
            prefix: DEFAULT_PREFIX.to_string(),
            node: node.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            max_message_bytes: 8 << 20,
            max_age: Some(DEFAULT_MAX_AGE),
            retention_check: Duration::from_secs(30),
        }
    }
}

/// Checks a bus URL and CA file without connecting ([`crate::redis_client::client`]).
///
/// # Errors
/// What is wrong with them ([`RedisSetupError::is_about_ca`] says which).
pub fn check_url(url: &str, tls_ca: Option<&std::path::Path>) -> Result<(), RedisSetupError> {
    crate::redis_client::client(url, tls_ca).map(drop)
}

/// What [`RedisBus::check`] found out about a Redis.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    /// `redis_version` from `INFO server`.
    pub version: String,
    /// How it persists, in a sentence.
    pub persistence: String,
    /// What puts queues at risk (no persistence, eviction, CONFIG refused); each is
    /// logged as a warning when the bus opens, and printed by `flotilla check`.
    pub warnings: Vec<String>,
}

/// A setting the bus cannot use, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(String);

/// Redis is older than the bus needs.
#[derive(Debug, thiserror::Error)]
#[error("Redis {0} is too old for the bus: it needs 7.0 or newer (stream entry counters, XAUTOCLAIM)")]
struct TooOld(String);

/// The Redis bus; clones share it.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    options: RedisOptions,
    client: Client,
    /// The shared connection: publishes, acknowledgements, claims, stats, retention.
    link: Arc<Link>,
    counters: Counters,
    /// Consumer slots per (queue, group) in this process.
    slots: Mutex<HashMap<(String, String), Slots>>,
    closed: AtomicBool,
    retention: Mutex<Option<JoinHandle<()>>>,
}

/// The consumer names of one queue and group that this process uses.
#[derive(Default)]
struct Slots {
    /// In use by a consumer, or left by one that went away (`departed`).
    taken: BTreeSet<u32>,
    /// Left by consumers that went away, perhaps still owning entries.
    departed: BTreeSet<u32>,
}

impl RedisBus {
    /// Connects, checks the server (version, persistence: warnings are logged) and
    /// starts retention.
    ///
    /// # Errors
    /// A bad URL or prefix, an unreachable Redis, a Redis older than 7.0.
    pub async fn open(options: RedisOptions) -> Result<RedisBus, BusError> {
        let (client, link) = connect(&options)?;
        let check = server_check(&link).await?;
        tracing::debug!(url = %link.url(), version = %check.version, persistence = %check.persistence, prefix = %options.prefix,
            "The bus is on Redis.");
        for warning in &check.warnings {
            tracing::warn!(url = %link.url(), "{warning}");
        }
        let inner = Arc::new(Inner {
            options,
            client,
            link: Arc::new(link),
            counters: Counters::default(),
            slots: Mutex::default(),
            closed: AtomicBool::new(false),
            retention: Mutex::new(None),
        });
        if inner.options.max_age.is_some() {
            let task = crate::spawn_retention(&inner, inner.options.retention_check, async |inner| {
                inner.apply_retention().await
            });
            *inner.retention.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Ok(RedisBus { inner })
    }

    /// Connects and reports what Redis is and how it persists, without opening a bus
    /// (`flotilla check`).
    ///
    /// # Errors
    /// As [`RedisBus::open`].
    pub async fn check(options: &RedisOptions) -> Result<ServerCheck, BusError> {
        let (_, link) = connect(options)?;
        server_check(&link).await
    }

    /// Trims every stream of the bus now instead of waiting for the next check (tests,
    /// tools); see the module docs. Returns how many entries were removed.
    ///
    /// # Errors
    /// Redis failed or could not be reached.
    pub async fn apply_retention(&self) -> Result<u64, BusError> {
        self.inner.apply_retention().await
    }

    fn key(&self, queue: &str) -> Result<String, BusError> {
        if !valid_name(queue) {
            return Err(BusError::InvalidQueueName(queue.to_string()));
        }
        Ok(format!("{}:{queue}", self.inner.options.prefix))
    }
}

/// A client and the shared link for `options`, checked but not yet connected.
fn connect(options: &RedisOptions) -> Result<(Client, Link), BusError> {
    if !valid_name(&options.prefix) {
        let why = format!("'{}' is not a valid prefix: use 1 to 200 characters from A-Z a-z 0-9 _ . -", options.prefix);
        return Err(BusError::backend("bus.prefix", Invalid(why)));
    }
    let client = crate::redis_client::client(&options.url, options.tls_ca.as_deref())
        .map_err(|e| BusError::backend("bus.url", Invalid(e.to_string())))?;
    let link = Link::new(client.clone(), &options.url, Some(RESPONSE_TIMEOUT));
    Ok((client, link))
}

/// The server's version (7.0 or newer, or an error) and persistence.
async fn server_check(link: &Link) -> Result<ServerCheck, BusError> {
    let info: String = link.query("asking for the server's version", cmd("INFO").arg("server")).await?;
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    if major < 7 {
        return Err(BusError::backend(format!("Redis at {}", link.url()), TooOld(version)));
    }
    let mut warnings = Vec::new();
    let mut get = cmd("CONFIG");
    get.arg("GET").arg("appendonly").arg("appendfsync").arg("save").arg("maxmemory-policy");
    let persistence = match link.query::<Value>("reading the persistence settings", &get).await {
        Ok(value) => {
            let settings = reply::fields(value).unwrap_or_default();
            let setting = |name: &str| field(&settings, name).and_then(text).unwrap_or_default();
            let (aof, fsync, save, policy) =
                (setting("appendonly"), setting("appendfsync"), setting("save"), setting("maxmemory-policy"));
            if policy.starts_with("allkeys-") {
                warnings.push(format!(
                    "Redis may evict the bus's streams when it runs out of memory (maxmemory-policy {policy}): set it to noeviction (or a volatile-* policy)."
                ));
            }
            if aof == "yes" {
                match fsync.as_str() {
                    "always" => "append-only file, synced on every write: nothing acknowledged is lost".to_string(),
                    "everysec" => "append-only file, synced every second: a kill -9 of Redis loses nothing, power loss may lose the last second or two".to_string(),
                    _ => {
                        warnings.push(format!(
                            "Redis writes its append-only file but leaves syncing to the system (appendfsync {fsync}): power loss may lose up to about 30 s of queues. Set appendfsync always (or everysec)."
                        ));
                        format!("append-only file, appendfsync {fsync}")
                    }
                }
            } else if save.trim().is_empty() {
                warnings.push(
                    "Redis does not persist (appendonly no, no save points): a restart of Redis loses every queue. Set appendonly yes and appendfsync always."
                        .to_string(),
                );
                "none".to_string()
            } else {
                warnings.push(format!(
                    "Redis persists only by snapshots (appendonly no, save {save}): a restart of Redis loses what was published since the last one. Set appendonly yes and appendfsync always."
                ));
                format!("snapshots only (save {save})")
            }
        }
        Err(error) => {
            warnings.push(format!(
                "Cannot tell how Redis persists: CONFIG GET was refused ({}). Without appendonly yes (and appendfsync always) a restart of Redis loses queues.",
                flotilla_core::error_chain(&error)
            ));
            "unknown (CONFIG refused)".to_string()
        }
    };
    Ok(ServerCheck { version, persistence, warnings })
}

impl Inner {
    fn check_open(&self) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) { Err(BusError::Closed) } else { Ok(()) }
    }

    fn consumer_name(&self, slot: u32) -> String {
        format!("{}-{slot}", self.options.node)
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Slots>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new consumer: one a departed consumer left (its entries come with
    /// it), else the lowest free.
    fn take_slot(&self, queue: &str, group: &str) -> u32 {
        let mut slots = self.lock_slots();
        let slots = slots.entry((queue.to_string(), group.to_string())).or_default();
        if let Some(slot) = slots.departed.pop_first() {
            return slot;
        }
        let slot = (0..).find(|n| !slots.taken.contains(n)).unwrap_or(u32::MAX);
        slots.taken.insert(slot);
        slot
    }

    /// A departed consumer's slot whose entries another consumer may take over.
    fn take_departed(&self, queue: &str, group: &str) -> Option<u32> {
        self.lock_slots().get_mut(&(queue.to_string(), group.to_string()))?.departed.pop_first()
    }

    fn depart(&self, queue: &str, group: &str, slot: u32) {
        let mut slots = self.lock_slots();
        let slots = slots.entry((queue.to_string(), group.to_string())).or_default();
        slots.taken.insert(slot);
        slots.departed.insert(slot);
    }

    fn release(&self, queue: &str, group: &str, slot: u32) {
        if let Some(slots) = self.lock_slots().get_mut(&(queue.to_string(), group.to_string())) {
            slots.taken.remove(&slot);
        }
    }

    /// Every stream under the prefix.
    async fn stream_keys(&self) -> Result<Vec<String>, BusError> {
        let pattern = format!("{}:*", self.options.prefix);
        let mut keys = Vec::new();
        let mut cursor = "0".to_string();
        loop {
            let mut scan = cmd("SCAN");
            scan.arg(&cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).arg("TYPE").arg("stream");
            let (next, found): (String, Vec<String>) = self.link.query("listing the bus's streams", &scan).await?;
            keys.extend(found);
            if next == "0" {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn apply_retention(&self) -> Result<u64, BusError> {
        let Some(max_age) = self.options.max_age else { return Ok(0) };
        let mut removed = 0;
        for key in self.stream_keys().await? {
            let mut trim = cmd("EVAL");
            trim.arg(scripts::TRIM).arg(1).arg(&key).arg(max_age.as_millis() as u64);
            removed += self.link.query::<u64>(&format!("trimming stream {key}"), &trim).await?;
        }
        Ok(removed)
    }

    async fn queue_stats(&self, key: &str) -> Result<QueueStats, BusError> {
        let queue = key.strip_prefix(&format!("{}:", self.options.prefix)).unwrap_or(key).to_string();
        let what = format!("reading the figures of queue '{queue}'");
        let unexpected = |e: reply::UnexpectedReply| BusError::backend(what.clone(), e);
        let stream =
            reply::fields(self.link.query(&what, cmd("XINFO").arg("STREAM").arg(key)).await?).map_err(unexpected)?;
        let count = |fields: &[(String, Value)], name: &str| {
            field(fields, name).and_then(int).and_then(|n| u64::try_from(n).ok())
        };
        let length = count(&stream, "length").unwrap_or(0);
        let next_seq = count(&stream, "entries-added").unwrap_or(length);
        let first_seq = next_seq.saturating_sub(length);
        let bytes: Option<u64> = self.link.query(&what, cmd("MEMORY").arg("USAGE").arg(key)).await.unwrap_or(None);

        let mut groups = Vec::new();
        let listed =
            reply::list(self.link.query(&what, cmd("XINFO").arg("GROUPS").arg(key)).await?).map_err(unexpected)?;
        for group in listed {
            let group = reply::fields(group).map_err(unexpected)?;
            let name = field(&group, "name").and_then(text).unwrap_or_default();
            let in_flight = count(&group, "pending").unwrap_or(0);
            // Delivered to the group so far (Redis may have lost track: `nil`).
            let read = count(&group, "entries-read").map(|read| read.max(first_seq));
            let lag = count(&group, "lag").or_else(|| read.map(|read| next_seq.saturating_sub(read)));
            groups.push(GroupStats {
                group: name,
                acked_seq: read.filter(|_| in_flight == 0).and_then(|read| read.checked_sub(1)),
                in_flight,
                pending: in_flight + lag.unwrap_or(length),
                consumers: count(&group, "consumers").unwrap_or(0),
            });
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        let depth = groups.iter().map(|g| g.pending).max().unwrap_or(length);
        Ok(QueueStats { queue, first_seq, next_seq, bytes: bytes.unwrap_or(0), depth, groups })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.retention.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

#[async_trait::async_trait]
impl Bus for RedisBus {
    async fn publish(&self, queue: &str, payloads: Vec<Bytes>) -> Result<SeqRange, BusError> {
        let inner = &self.inner;
        inner.check_open()?;
        let key = self.key(queue)?;
        let limit = inner.options.max_message_bytes;
        if let Some(big) = payloads.iter().find(|p| p.len() > limit) {
            return Err(BusError::TooLarge { size: big.len(), limit });
        }
        if payloads.is_empty() {
            return Ok(0..0);
        }
        let started = std::time::Instant::now();
        let mut publish = ::redis::pipe();
        publish.atomic();
        for payload in &payloads {
            publish.cmd("XADD").arg(&key).arg("*").arg(reply::PAYLOAD_FIELD).arg(&payload[..]).ignore();
        }
        publish.cmd("XINFO").arg("STREAM").arg(&key);
        let count = payloads.len() as u64;
        drop(payloads);
        let what = format!("publishing to queue '{queue}'");
        let answer = inner.link.query::<(Value,)>(&what, &publish).await.and_then(|(info,)| {
            let info = reply::fields(info).map_err(|e| BusError::backend(what.clone(), e))?;
            Ok(field(&info, "entries-added").and_then(int).and_then(|n| u64::try_from(n).ok()).unwrap_or(count))
        });
        match answer {
            Ok(added) => {
                inner.counters.published.fetch_add(count, Ordering::Relaxed);
                inner.counters.publish_batches.fetch_add(1, Ordering::Relaxed);
                inner.counters.publish_seconds.observe(started.elapsed());
                Ok(added.saturating_sub(count)..added)
            }
            Err(error) => {
                inner.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    async fn subscribe(&self, queue: &str, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        self.inner.check_open()?;
        let key = self.key(queue)?;
        if !valid_name(group) {
            return Err(BusError::InvalidGroupName(group.to_string()));
        }
        let mut create = cmd("XGROUP");
        create.arg("CREATE").arg(&key).arg(group).arg("0").arg("MKSTREAM");
        let what = format!("creating group '{group}' of queue '{queue}'");
        match self.inner.link.query::<Value>(&what, &create).await {
            Ok(_) => {}
            Err(BusError::Backend { source, .. })
                if source.downcast_ref::<::redis::RedisError>().and_then(|e| e.code()) == Some("BUSYGROUP") => {}
            Err(error) => return Err(error),
        }
        let inner = &self.inner;
        let slot = inner.take_slot(queue, group);
        let name = inner.consumer_name(slot);
        let held = Arc::default();
        let refresher = RedisConsumer::spawn_refresher(inner, &key, group, &name, &held);
        Ok(Box::new(RedisConsumer {
            bus: inner.clone(),
            queue: queue.to_string(),
            reads: Link::new(inner.client.clone(), &inner.options.url, None),
            key,
            group: group.to_string(),
            slot,
            name,
            rescan: true,
            own_cursor: "0".to_string(),
            claim_cursor: "0-0".to_string(),
            next_claim: Instant::now(),
            held,
            refresher,
        }))
    }

    async fn read(&self, queue: &str, from: ReadFrom) -> Result<Box<dyn Reader>, BusError> {
        self.inner.check_open()?;
        let key = self.key(queue)?;
        let cursor = match from {
            ReadFrom::Start => "0-0".to_string(),
            ReadFrom::End => {
                let what = format!("finding the end of queue '{queue}'");
                let last: Value = self
                    .inner
                    .link
                    .query(&what, cmd("XREVRANGE").arg(&key).arg("+").arg("-").arg("COUNT").arg(1))
                    .await?;
                let entries = reply::entries(last).map_err(|e| BusError::backend(what, e))?;
                entries.first().map_or_else(|| "0-0".to_string(), |e| e.id.to_string())
            }
        };
        Ok(Box::new(RedisReader {
            bus: self.inner.clone(),
            queue: queue.to_string(),
            key,
            cursor,
            reads: Link::new(self.inner.client.clone(), &self.inner.options.url, None),
        }))
    }

    /// `DEL` of the stream: its entries and its consumer groups go in one command, and
    /// Redis answers once it has written that to its append-only file. Consumers of the
    /// old stream then fail (`NOGROUP`); readers are not told (see the trait's docs).
    async fn delete_queue(&self, queue: &str) -> Result<(), BusError> {
        self.inner.check_open()?;
        let key = self.key(queue)?;
        let what = format!("deleting queue '{queue}'");
        self.inner.link.query::<Value>(&what, cmd("DEL").arg(&key)).await?;
        Ok(())
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, BusError> {
        let mut stats = Vec::new();
        let prefix = format!("{}:", self.inner.options.prefix);
        for key in self.inner.stream_keys().await? {
            // Only streams named like queues (not another program's keys).
            if key.strip_prefix(&prefix).is_some_and(valid_name) {
                stats.push(self.inner.queue_stats(&key).await?);
            }
        }
        Ok(stats)
    }

    fn counters(&self) -> BusCounters {
        self.inner.counters.snapshot()
    }

    async fn close(&self) -> Result<(), BusError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(task) = self.inner.retention.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        // Every publish that returned was answered by Redis: nothing to flush.
        Ok(())
    }
}
