//! Helpers shared by the bus tests, and the backends the conformance tests run on.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bus::{
    Bus, Consumer, Delivery, DeliveryId, EmbeddedBus, EmbeddedOptions, NatsBus, NatsOptions, ReadFrom, RedisBus,
    RedisOptions,
};
use flotilla_test_support::{NatsServer, RedisServer};

/// Runs each named conformance test (an `async fn(&dyn Backend)` in the calling module)
/// once per backend, as `<module>::embedded::<test>`, `<module>::redis::<test>` and
/// `<module>::nats::<test>`.
/// Another backend is one more `mod` here and a [`Backend`] for it.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&crate::support::Embedded::new()).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&crate::support::Redis::new()).await
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&crate::support::Nats::new()).await
                }
            )*
        }
    };
}
pub(crate) use conformance;

/// Settings a conformance test may change.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub max_message_bytes: Option<usize>,
}

/// Storage for buses, fresh per test: every bus it opens sees the same queues.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Opens a bus on this storage (close the previous one first: the embedded bus
    /// takes a lock).
    async fn open_with(&self, settings: &Settings) -> Arc<dyn Bus>;

    async fn open(&self) -> Arc<dyn Bus> {
        self.open_with(&Settings::default()).await
    }

    /// The bus counts its syncs in `counters().syncs` (the embedded bus syncs itself).
    fn counts_syncs(&self) -> bool {
        false
    }

    /// Deliveries carry their sequence number, and a group's `acked_seq` is known while
    /// messages are in flight (the embedded bus; Redis numbers no entries).
    fn numbers_deliveries(&self) -> bool {
        false
    }

    /// What a departed consumer held comes back before anything newer. JetStream
    /// redelivers a handed-back message whenever its nak lands, which may be after
    /// newer messages were handed out (documented in the bus's module docs).
    fn returns_departed_first(&self) -> bool {
        true
    }
}

/// The embedded bus in a temporary directory.
pub struct Embedded {
    dir: tempfile::TempDir,
}

impl Embedded {
    pub fn new() -> Embedded {
        Embedded { dir: tempfile::tempdir().unwrap() }
    }
}

#[async_trait::async_trait]
impl Backend for Embedded {
    async fn open_with(&self, settings: &Settings) -> Arc<dyn Bus> {
        let mut options = EmbeddedOptions::default();
        if let Some(limit) = settings.max_message_bytes {
            options.max_message_bytes = limit;
        }
        Arc::new(EmbeddedBus::open(self.dir.path(), options).unwrap())
    }

    fn counts_syncs(&self) -> bool {
        true
    }

    fn numbers_deliveries(&self) -> bool {
        true
    }
}

/// A throwaway redis-server (append-only, fsync always) of its own.
pub struct Redis {
    pub server: RedisServer,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn new() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        Redis { server: RedisServer::start(&dir.path().join("redis")), _dir: dir }
    }

    /// Options of a node named `node` on this server.
    pub fn options(&self, node: &str) -> RedisOptions {
        RedisOptions::new(self.server.url(), node)
    }
}

#[async_trait::async_trait]
impl Backend for Redis {
    async fn open_with(&self, settings: &Settings) -> Arc<dyn Bus> {
        let mut options = self.options("test");
        if let Some(limit) = settings.max_message_bytes {
            options.max_message_bytes = limit;
        }
        Arc::new(RedisBus::open(options).await.unwrap())
    }
}

/// A throwaway nats-server with JetStream and a store directory of its own.
pub struct Nats {
    pub server: NatsServer,
    _dir: tempfile::TempDir,
}

impl Nats {
    pub fn new() -> Nats {
        let dir = tempfile::tempdir().unwrap();
        Nats { server: NatsServer::start(&dir.path().join("nats")), _dir: dir }
    }

    /// Options of a node named `node` on this server.
    pub fn options(&self, node: &str) -> NatsOptions {
        NatsOptions::new(self.server.url(), node)
    }
}

#[async_trait::async_trait]
impl Backend for Nats {
    async fn open_with(&self, settings: &Settings) -> Arc<dyn Bus> {
        let mut options = self.options("test");
        if let Some(limit) = settings.max_message_bytes {
            options.max_message_bytes = limit;
        }
        Arc::new(NatsBus::open(options).await.unwrap())
    }

    /// JetStream numbers its messages.
    fn numbers_deliveries(&self) -> bool {
        true
    }

    fn returns_departed_first(&self) -> bool {
        false
    }
}

pub fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

pub fn payloads(range: std::ops::Range<usize>) -> Vec<Bytes> {
    names(range).into_iter().map(Bytes::from).collect()
}

pub fn texts(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| String::from_utf8(d.payload.to_vec()).unwrap()).collect()
}

pub fn ids(deliveries: &[Delivery]) -> Vec<DeliveryId> {
    deliveries.iter().map(|d| d.id.clone()).collect()
}

/// Fetches until `count` messages arrived (or a second passes without any).
pub async fn fetch_all(consumer: &mut dyn Consumer, count: usize) -> Vec<Delivery> {
    let mut all = Vec::new();
    while all.len() < count {
        let batch = consumer.fetch(count - all.len(), Duration::from_secs(1)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    all
}

/// Waits (bounded) until `done` holds, checking every few milliseconds.
async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A backend killed (`kill -9`) and restarted while a publisher and a consumer run on
/// `bus`: publishing carries on after the restart, the consumer reconnects by itself,
/// and nothing whose publish returned is lost. Returns how many of the consumer's calls
/// failed meanwhile.
pub async fn killed_mid_stream<S>(bus: Arc<dyn Bus>, server: &mut S, kill: fn(&mut S), restart: fn(&mut S)) -> usize {
    let confirmed = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(Mutex::new(0usize));
    let received = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let stop = tokio_util::sync::CancellationToken::new();

    // A publisher of batches of five: what returned Ok is confirmed; a failed batch is
    // tried again (at-least-once) after a short pause.
    let publisher = {
        let (bus, confirmed, failures, stop) = (bus.clone(), confirmed.clone(), failures.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next = 0;
            while !stop.is_cancelled() {
                let batch: Vec<String> = (next..next + 5).map(|i| format!("p{i}")).collect();
                match bus.publish("q", batch.iter().cloned().map(bytes::Bytes::from).collect()).await {
                    Ok(_) => {
                        confirmed.lock().unwrap().extend(batch);
                        next += 5;
                    }
                    Err(_) => {
                        *failures.lock().unwrap() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        })
    };
    // One consumer, kept across the outage: it must reconnect by itself.
    let consumer = {
        let (bus, received, stop) = (bus.clone(), received.clone(), stop.clone());
        tokio::spawn(async move {
            let mut consumer = bus.subscribe("q", "g").await.unwrap();
            let mut errors = 0;
            while !stop.is_cancelled() {
                match consumer.fetch(100, Duration::from_millis(100)).await {
                    Ok(batch) => {
                        let acked = consumer.ack(&ids(&batch)).await;
                        received.lock().unwrap().extend(texts(&batch));
                        errors += usize::from(acked.is_err());
                    }
                    Err(_) => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            errors
        })
    };

    until("200 messages were published", Duration::from_secs(30), || confirmed.lock().unwrap().len() >= 200).await;
    kill(server);
    until("a publish failed", Duration::from_secs(30), || *failures.lock().unwrap() > 0).await;
    let before_restart = confirmed.lock().unwrap().len();
    restart(server);
    until("publishing carried on after the restart", Duration::from_secs(30), || {
        confirmed.lock().unwrap().len() >= before_restart + 200
    })
    .await;
    let all: BTreeSet<String> = confirmed.lock().unwrap().iter().cloned().collect();
    until("the consumer received everything confirmed", Duration::from_secs(30), || {
        received.lock().unwrap().is_superset(&all)
    })
    .await;
    stop.cancel();
    publisher.await.unwrap();
    let consumer_errors = consumer.await.unwrap();

    let mut reader = bus.read("q", ReadFrom::Start).await.unwrap();
    let mut stored = BTreeSet::new();
    loop {
        let batch = reader.fetch(10_000, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        stored.extend(texts(&batch));
    }
    let lost: Vec<&String> = all.difference(&stored).collect();
    assert!(lost.is_empty(), "{} confirmed messages lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    consumer_errors
}
