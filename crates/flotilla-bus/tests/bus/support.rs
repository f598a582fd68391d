//! Helpers shared by the bus tests, and the backends the conformance tests run on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_bus::{Bus, Consumer, Delivery, DeliveryId, EmbeddedBus, EmbeddedOptions, RedisBus, RedisOptions};
use flotilla_test_support::RedisServer;

/// Runs each named conformance test (an `async fn(&dyn Backend)` in the calling module)
/// once per backend, as `<module>::embedded::<test>` and `<module>::redis::<test>`.
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
