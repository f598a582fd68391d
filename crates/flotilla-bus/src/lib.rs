//! Flotilla's message bus: named, durable, ordered queues with consumer groups.
//!
//! The [`Bus`] trait is what every component talks to. Its contract (SPEC §5):
//!
//! - [`Bus::publish`] appends a batch to one queue, in order, and returns only when the
//!   whole batch is durable under the backend's policy. Once it has returned, the
//!   messages are never lost.
//! - A [`Consumer`] belongs to a named group. Each group has its own acknowledged
//!   position per queue; delivery is at-least-once and in queue order, and whatever a
//!   group has not acknowledged is delivered again after a restart or when the
//!   consumer that held it goes away.
//! - A [`Reader`] follows a queue without consuming (what `flotilla tail` uses).
//!
//! [`stage::Stage`] is the one consume → work → publish durably → acknowledge loop the
//! consumers that turn batches into results share, written against [`Bus`] alone.
//! [`redis_client::client`] is the one way to open a Redis client (plain or TLS) for
//! whatever talks to Redis.
//!
//! Payloads are opaque bytes (Flotilla puts JSON messages in them); the bus never looks
//! inside. Backends, each behind the same trait and run through the same conformance
//! tests (`tests/bus/`):
//!
//! - [`embedded`] (the default): a segment log on local disk; needs nothing but the
//!   binary; one node.
//! - [`redis`] (`bus.backend: redis`): a Redis Stream per queue, consumer groups,
//!   `XACK`, `XAUTOCLAIM` after `lease_ttl`; many nodes share it. Its delivery ids are
//!   stream entry ids, hence [`DeliveryId::Text`]; it does not number deliveries
//!   (`seq` 0).
//! - [`nats`] (`bus.backend: nats`): a JetStream stream per queue, a durable pull
//!   consumer per group, explicit acks, redelivery after `ack_wait` = `lease_ttl`;
//!   many nodes share it. Its delivery ids are ack subjects ([`DeliveryId::Text`]);
//!   `seq` is the stream sequence (less one: the bus counts from 0). Redelivered
//!   messages (a departed consumer's, handed back with a nak) come again in the order
//!   the naks land, which may be after newer messages: at-least-once holds, queue
//!   order on redelivery does not.
//!
//! # What a `kill -9` can lose
//!
//! | | `kill -9` of the node | `kill -9` of Redis / NATS |
//! |---|---|---|
//! | embedded, `durability: sync` | nothing whose publish returned; a group repeats what it acknowledged in the last second | — |
//! | embedded, `interval`/`buffered` | nothing whose publish returned (the data reached the kernel); power loss loses up to the interval (or what the kernel had not written) | — |
//! | redis, `appendfsync always` | nothing; what the node held unacknowledged goes to another node after `lease_ttl` (to itself at once when it restarts first) | nothing whose publish or acknowledgement was answered; a publish in flight may be lost or kept (it was never confirmed), or kept twice if its answer was lost |
//! | redis, `appendfsync everysec` | as above | as above (Redis had written its file); power loss of Redis's machine loses up to about a second |
//! | redis, no append-only file | as above | every queue (or back to the last snapshot): the bus warns at start and `flotilla check` says so |
//! | nats (file storage) | nothing; what the node held unacknowledged is delivered again, to any node of the group (itself included), after `lease_ttl` (`ack_wait`) | nothing whose publish returned (JetStream wrote it to its store before acknowledging); the last acknowledgements may be forgotten (delivered again); a publish in flight may be lost or kept, or kept twice if retried; power loss of NATS's machine may lose what came since its last sync (`sync_interval`, 2 min by default) |
//!
//! Delivery is at-least-once everywhere: a consumer may see a message again after any
//! crash, never miss one. Fleet membership and connector ownership by lease (SPEC §5.1)
//! build on a shared backend beside the bus, in [`fleet`] (the trait) and
//! [`redis::RedisFleet`]; the bus only moves messages, and `lease_ttl` here bounds how
//! long a dead consumer's entries wait.

pub mod embedded;
pub mod fleet;
pub mod nats;
pub mod redis;
pub mod redis_client;
pub mod stage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

pub use embedded::{Durability, EmbeddedBus, EmbeddedOptions};
pub use nats::{NatsBus, NatsOptions};
pub use redis::{RedisBus, RedisFleet, RedisOptions};

/// Identifies one delivered message to its backend for acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeliveryId {
    /// A sequence number within the queue (embedded bus).
    Seq(u64),
    /// A backend-specific id (a Redis stream entry id, a JetStream ack subject).
    Text(Arc<str>),
}

/// One message handed to a consumer or reader.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// What to pass to [`Consumer::ack`].
    pub id: DeliveryId,
    /// Sequence number within the queue when the backend numbers messages (the
    /// embedded bus, NATS); 0 otherwise (Redis).
    pub seq: u64,
    /// When the bus accepted the message, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The message bytes exactly as published.
    pub payload: Bytes,
}

/// Where a [`Reader`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The oldest retained message.
    Start,
    /// Only messages published after the reader was opened.
    End,
}

/// The places in the queue a publish took (for Redis, counted by the stream's
/// `entries-added`).
pub type SeqRange = std::ops::Range<u64>;

/// A queue's figures for `flotilla status` and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// Sequence number of the oldest retained message.
    pub first_seq: u64,
    /// Sequence number the next published message will get.
    pub next_seq: u64,
    /// Bytes on disk (Redis: its estimate of the stream's memory).
    pub bytes: u64,
    /// Messages not yet acknowledged by the slowest group (all retained messages when
    /// the queue has no groups).
    pub depth: u64,
    pub groups: Vec<GroupStats>,
}

/// One consumer group's position in a queue.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GroupStats {
    pub group: String,
    /// Every message up to and including this sequence number is acknowledged (Redis:
    /// known only while nothing is in flight).
    pub acked_seq: Option<u64>,
    /// Messages delivered and not yet acknowledged.
    pub in_flight: u64,
    /// Messages not yet acknowledged.
    pub pending: u64,
    /// Consumers currently attached.
    pub consumers: u64,
}

/// Counters since the bus was opened.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct BusCounters {
    pub published: u64,
    pub publish_batches: u64,
    pub syncs: u64,
    pub delivered: u64,
    pub acked: u64,
    pub corrupt_records_skipped: u64,
    pub publish_errors: u64,
    /// How long a successful publish took, from the call until it was durable.
    #[serde(default)]
    pub publish_seconds: HistogramSnapshot,
    /// How long each sync of the embedded bus's files took (empty on Redis and NATS,
    /// whose servers sync).
    #[serde(default)]
    pub sync_seconds: HistogramSnapshot,
}

/// The upper bounds (seconds) of [`LatencyHistogram`]'s buckets: 50 µs to 2.5 s, the
/// range between a batched in-memory append and a disk that stalls.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5];

/// Durations counted into fixed buckets without a lock (an atomic add per
/// observation), for the metrics' histograms.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations at or below each bound of [`LATENCY_BUCKETS`] (not cumulative),
    /// then those above the last.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, duration: std::time::Duration) {
        let seconds = duration.as_secs_f64();
        let slot = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The cumulative counts Prometheus expects.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, count) in self.buckets.iter().enumerate() {
            total += count.load(Ordering::Relaxed);
            buckets.push((LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        HistogramSnapshot { buckets, count: total, sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9 }
    }
}

/// A histogram at one moment: cumulative counts per upper bound (the last is +Inf),
/// the number of observations and their sum in seconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistogramSnapshot {
    #[serde(with = "bucket_bounds")]
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

/// JSON has no infinity: the last bound is written as the string `+Inf`.
mod bucket_bounds {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Bound {
        Finite(f64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(buckets: &[(f64, u64)], serializer: S) -> Result<S::Ok, S::Error> {
        let bounds: Vec<(Bound, u64)> = buckets
            .iter()
            .map(|(le, n)| (if le.is_finite() { Bound::Finite(*le) } else { Bound::Text("+Inf".into()) }, *n))
            .collect();
        bounds.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(f64, u64)>, D::Error> {
        let bounds: Vec<(Bound, u64)> = Vec::deserialize(deserializer)?;
        Ok(bounds
            .into_iter()
            .map(|(le, n)| match le {
                Bound::Finite(le) => (le, n),
                Bound::Text(_) => (f64::INFINITY, n),
            })
            .collect())
    }
}

/// The live counters behind [`BusCounters`], shared by a bus's parts.
#[derive(Default)]
pub(crate) struct Counters {
    pub published: AtomicU64,
    pub publish_batches: AtomicU64,
    pub syncs: AtomicU64,
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
    pub corrupt_records_skipped: AtomicU64,
    pub publish_errors: AtomicU64,
    pub publish_seconds: LatencyHistogram,
    pub sync_seconds: LatencyHistogram,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> BusCounters {
        BusCounters {
            published: self.published.load(Ordering::Relaxed),
            publish_batches: self.publish_batches.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            corrupt_records_skipped: self.corrupt_records_skipped.load(Ordering::Relaxed),
            publish_errors: self.publish_errors.load(Ordering::Relaxed),
            publish_seconds: self.publish_seconds.snapshot(),
            sync_seconds: self.sync_seconds.snapshot(),
        }
    }
}

/// Why a bus operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("invalid queue name '{0}': use 1 to 200 characters from A-Z a-z 0-9 _ . -")]
    InvalidQueueName(String),
    #[error("invalid group name '{0}': use 1 to 200 characters from A-Z a-z 0-9 _ . -")]
    InvalidGroupName(String),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// A file or socket operation failed. The message repeats the cause's text so a log
    /// line that prints only the message still says what happened; `source` keeps it.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("the bus at {path} is in use by another process{holder}")]
    Locked { path: String, holder: String },
    #[error("the bus is closed")]
    Closed,
    /// The queue was deleted ([`Bus::delete_queue`]) while this consumer or reader used it.
    #[error("queue '{0}' was deleted")]
    Deleted(String),
    /// A backend's own failure (Redis refused or could not be reached, a task of the
    /// bus failed); `source` is the cause, kept whole.
    #[error("{context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

// Causes sit behind `Arc` because one failure can answer many waiters: a failed group
// commit fails every publish that was waiting for it, hence `Clone`.
impl BusError {
    pub(crate) fn io(context: impl Into<String>, error: std::io::Error) -> BusError {
        BusError::Io { context: context.into(), source: Arc::new(error) }
    }

    /// A backend failure with its cause kept.
    pub fn backend(context: impl Into<String>, error: impl std::error::Error + Send + Sync + 'static) -> BusError {
        BusError::Backend { context: context.into(), source: Arc::new(error) }
    }
}

/// A durable bus of named queues.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Appends `payloads` to `queue` in order and returns once all of them are durable.
    async fn publish(&self, queue: &str, payloads: Vec<Bytes>) -> Result<SeqRange, BusError>;

    /// Attaches a consumer of `queue` in `group`. A group seen for the first time starts
    /// at the oldest retained message.
    async fn subscribe(&self, queue: &str, group: &str) -> Result<Box<dyn Consumer>, BusError>;

    /// Follows `queue` without consuming.
    async fn read(&self, queue: &str, from: ReadFrom) -> Result<Box<dyn Reader>, BusError>;

    /// Deletes `queue`: every message in it and every consumer group's position, as if
    /// nothing had ever been published to it. Returns once that is durable. Deleting a
    /// queue that does not exist is not an error.
    ///
    /// A publish that starts after this returns creates the queue afresh: empty, with
    /// no groups, its sequence numbers possibly starting over. A publish running at the
    /// same time is either deleted with the queue or fails (publishing again then
    /// creates the new queue). Consumers and readers attached before the delete belong to the old queue:
    /// callers drop them, and must not count on what they return afterwards (the
    /// embedded bus fails their fetches).
    ///
    /// For data that must not outlive its owner: the dispatcher purges a deleted
    /// subscription's `sub.<name>` with it, so whoever takes the name next starts empty.
    async fn delete_queue(&self, queue: &str) -> Result<(), BusError>;

    /// Figures for every queue.
    async fn stats(&self) -> Result<Vec<QueueStats>, BusError>;

    /// Counters since the bus was opened.
    fn counters(&self) -> BusCounters;

    /// Flushes everything and stops; later calls fail with [`BusError::Closed`].
    async fn close(&self) -> Result<(), BusError>;
}

/// A member of a consumer group.
#[async_trait::async_trait]
pub trait Consumer: Send {
    /// Up to `max` messages, in order. Waits up to `wait` for the first one; an empty
    /// batch means nothing arrived in time.
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;

    /// Acknowledges deliveries: they will not be delivered to this group again.
    async fn ack(&mut self, ids: &[DeliveryId]) -> Result<(), BusError>;
}

/// Follows a queue without consuming it.
#[async_trait::async_trait]
pub trait Reader: Send {
    /// Up to `max` messages, in order, waiting up to `wait` for the first one.
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;
}

/// `url` with the password (if any) replaced by `***`, for messages (Redis and NATS
/// URLs alike: `scheme://user:password@host…`).
/// The shared backends' retention task: every `every`, `trim` the bus that `owner` is
/// the state of, until the bus is dropped (the task holds it only weakly). A failed trim
/// is logged and tried again next time.
pub(crate) fn spawn_retention<T, F, Fut>(owner: &Arc<T>, every: Duration, trim: F) -> tokio::task::JoinHandle<()>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, BusError>> + Send,
{
    let weak = Arc::downgrade(owner);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(owner) = weak.upgrade() else { return };
            if let Err(error) = trim(owner).await {
                tracing::warn!(error = %flotilla_core::error_chain(&error), "Could not trim the bus's streams; trying again later.");
            }
        }
    })
}

pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_string() };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Checks a queue or group name: 1–200 characters from `A-Z a-z 0-9 _ . -`, not `.`
/// or `..` (names become directory names).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_cause_and_say_it_once() {
        let error = BusError::io("writing to queue 'q'", std::io::Error::other("No space left on device"));
        let cause = std::error::Error::source(&error).expect("the I/O error is kept");
        assert_eq!(cause.to_string(), "No space left on device");
        assert_eq!(flotilla_core::error_chain(&error), "writing to queue 'q': No space left on device");

        let task = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async { tokio::spawn(async { panic!("boom") }).await.unwrap_err() });
        let error = BusError::backend("the reactor stage's publishing task failed", task);
        assert!(std::error::Error::source(&error).is_some());
        let line = flotilla_core::error_chain(&error);
        assert!(line.starts_with("the reactor stage's publishing task failed: task "), "{line}");
        assert!(line.ends_with(" panicked with message \"boom\""), "{line}");
    }
}
