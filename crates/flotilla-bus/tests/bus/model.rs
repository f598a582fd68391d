//! A proptest model of the bus: random sequences of publishes, fetches,
//! acknowledgements, crashes and clean restarts, checked against a plain in-memory
//! model, on every backend:
//!
//! - embedded: on the simulated disk with tiny segments; a crash keeps or loses the
//!   torn unsynced writes;
//! - Redis: on a throwaway redis-server per case (append-only, fsync always); a crash
//!   is the node's and Redis's at once (`kill -9` of redis-server, then a restart on
//!   the same directory and port).
//! - NATS: on a throwaway `nats-server -js` per case, publishes, fetches and
//!   acknowledgements only, without crashes or restarts: JetStream keeps no member's
//!   deliveries apart from another's, so what a crashed node held comes back only
//!   after `ack_wait`; messages given back at a restart come back in the order they
//!   were given back, which after two restarts is not queue order (the model demands
//!   queue order); and a nats-server killed and started again at once left the
//!   client's requests timing out long enough to make cases take minutes. The crashes
//!   are `nats_bus.rs`'s: `kill -9` of NATS mid-stream, a dead consumer's messages
//!   after `ack_wait`.
//!
//! The model:
//!
//! - every acknowledged publish is readable, exactly once, in order, after anything;
//! - a group never skips a message it has not acknowledged, and receives its queue in
//!   order;
//! - after a clean restart a group resumes exactly after its acknowledgements; after a
//!   crash it may repeat some acknowledged messages but never skips one.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::embedded::sim::{SimFs, Torn};
use flotilla_bus::{
    Bus, Consumer, DeliveryId, EmbeddedBus, EmbeddedOptions, NatsBus, NatsOptions, ReadFrom, RedisBus, RedisOptions,
};
use flotilla_test_support::{NatsServer, RedisServer};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Publish { queue: usize, count: usize },
    Fetch { queue: usize, group: usize, max: usize },
    Ack { queue: usize, group: usize, count: usize },
    Crash { keep_torn: bool },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 1..6usize).prop_map(|(queue, count)| Op::Publish { queue, count }),
        4 => (0..2usize, 0..2usize, 1..8usize).prop_map(|(queue, group, max)| Op::Fetch { queue, group, max }),
        3 => (0..2usize, 0..2usize, 1..8usize).prop_map(|(queue, group, count)| Op::Ack { queue, group, count }),
        1 => any::<bool>().prop_map(|keep_torn| Op::Crash { keep_torn }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct GroupModel {
    /// Messages 0..acked are acknowledged.
    acked: usize,
    /// Index of the next message the group must receive.
    next: usize,
    /// Delivered, not yet acknowledged, oldest first.
    outstanding: VecDeque<(usize, DeliveryId)>,
    /// After a crash the resume point is only known to be at most `acked`.
    resume_unknown: bool,
}

/// Where the bus keeps its queues, and what a crash does to them.
enum Storage {
    Sim { fs: SimFs, options: EmbeddedOptions },
    Redis { server: RedisServer, _dir: tempfile::TempDir },
    Nats { server: NatsServer, _dir: tempfile::TempDir },
}

impl Storage {
    fn sim() -> Storage {
        let options = EmbeddedOptions {
            segment_bytes: 150,
            retention: flotilla_bus::embedded::Retention { max_age: None, max_bytes: None },
            ..EmbeddedOptions::default()
        };
        Storage::Sim { fs: SimFs::new(), options }
    }

    fn redis() -> Storage {
        let dir = tempfile::tempdir().unwrap();
        Storage::Redis { server: RedisServer::start(&dir.path().join("redis")), _dir: dir }
    }

    fn nats() -> Storage {
        let dir = tempfile::tempdir().unwrap();
        Storage::Nats { server: NatsServer::start(&dir.path().join("nats")), _dir: dir }
    }

    async fn open(&self) -> Arc<dyn Bus> {
        match self {
            Storage::Sim { fs, options } => {
                Arc::new(EmbeddedBus::open_with(Arc::new(fs.clone()), Path::new("/d/bus"), options.clone()).unwrap())
            }
            Storage::Redis { server, .. } => {
                Arc::new(RedisBus::open(RedisOptions::new(server.url(), "model")).await.unwrap())
            }
            Storage::Nats { server, .. } => {
                Arc::new(NatsBus::open(NatsOptions::new(server.url(), "model")).await.unwrap())
            }
        }
    }

    /// The process dies; the embedded bus's disk keeps or loses its torn writes, Redis
    /// is killed (`kill -9`) and started again.
    async fn crash(&mut self, keep_torn: bool) {
        match self {
            Storage::Sim { fs, .. } => {
                // Let the writer persist what it has been told, as time would.
                tokio::time::sleep(Duration::from_millis(if keep_torn { 5 } else { 0 })).await;
                *fs = fs.crash(if keep_torn { Torn::Keep(usize::MAX / 2) } else { Torn::LoseAll });
            }
            Storage::Redis { server, .. } => server.restart(),
            Storage::Nats { server, .. } => server.restart(),
        }
    }
}

struct World {
    storage: Storage,
    bus: Arc<dyn Bus>,
    consumers: HashMap<(usize, usize), Box<dyn Consumer>>,
    published: [usize; 2],
    groups: HashMap<(usize, usize), GroupModel>,
}

fn queue_name(queue: usize) -> String {
    format!("q{queue}")
}

impl World {
    async fn new(storage: Storage) -> World {
        let bus = storage.open().await;
        World { storage, bus, consumers: HashMap::new(), published: [0, 0], groups: HashMap::new() }
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Publish { queue, count } => {
                let start = self.published[queue];
                let payloads = (start..start + count).map(|i| bytes::Bytes::from(format!("{queue}:{i}"))).collect();
                let range = self.bus.publish(&queue_name(queue), payloads).await.unwrap();
                prop_assert_eq!(range, start as u64..(start + count) as u64);
                self.published[queue] += count;
            }
            Op::Fetch { queue, group, max } => {
                if !self.consumers.contains_key(&(queue, group)) {
                    let consumer = self.bus.subscribe(&queue_name(queue), &format!("g{group}")).await.unwrap();
                    self.consumers.insert((queue, group), consumer);
                }
                let consumer = self.consumers.get_mut(&(queue, group)).unwrap();
                let got = consumer.fetch(max, Duration::ZERO).await.unwrap();
                let model = self.groups.entry((queue, group)).or_default();
                let available = self.published[queue];
                if model.resume_unknown {
                    let first = match got.first() {
                        Some(d) => index_of(&d.payload, queue),
                        None => available,
                    };
                    prop_assert!(first <= model.acked, "resumed at {} after acknowledging {}", first, model.acked);
                    model.acked = first;
                    model.next = first;
                    model.resume_unknown = false;
                }
                for delivery in &got {
                    prop_assert_eq!(index_of(&delivery.payload, queue), model.next, "in order, nothing skipped");
                    model.outstanding.push_back((model.next, delivery.id.clone()));
                    model.next += 1;
                }
                prop_assert!(got.len() == max || model.next == available, "fetch returned less than was there");
            }
            Op::Ack { queue, group, count } => {
                let (Some(model), Some(consumer)) =
                    (self.groups.get_mut(&(queue, group)), self.consumers.get_mut(&(queue, group)))
                else {
                    return Ok(());
                };
                let take = count.min(model.outstanding.len());
                let acking: Vec<(usize, DeliveryId)> = model.outstanding.drain(..take).collect();
                let ids: Vec<DeliveryId> = acking.iter().map(|(_, id)| id.clone()).collect();
                consumer.ack(&ids).await.unwrap();
                if let Some((last, _)) = acking.last() {
                    model.acked = last + 1;
                }
            }
            Op::Crash { keep_torn } => {
                self.storage.crash(keep_torn).await;
                self.consumers.clear();
                self.bus = self.storage.open().await;
                for model in self.groups.values_mut() {
                    model.outstanding.clear();
                    model.resume_unknown = true;
                }
            }
            Op::Restart => {
                self.consumers.clear();
                self.bus.close().await.unwrap(); // Releases the directory lock.
                self.bus = self.storage.open().await;
                for model in self.groups.values_mut() {
                    model.outstanding.clear();
                    if !model.resume_unknown {
                        model.next = model.acked;
                    }
                }
            }
        }
        self.check_everything_is_there().await
    }

    async fn check_everything_is_there(&self) -> Result<(), TestCaseError> {
        for queue in 0..2 {
            if self.published[queue] == 0 {
                continue;
            }
            let mut reader = self.bus.read(&queue_name(queue), ReadFrom::Start).await.unwrap();
            let all = reader.fetch(usize::MAX / 2, Duration::ZERO).await.unwrap();
            let indexes: Vec<usize> = all.iter().map(|d| index_of(&d.payload, queue)).collect();
            prop_assert_eq!(indexes, (0..self.published[queue]).collect::<Vec<_>>());
        }
        Ok(())
    }
}

fn index_of(payload: &[u8], queue: usize) -> usize {
    let text = std::str::from_utf8(payload).unwrap();
    let (q, i) = text.split_once(':').unwrap();
    assert_eq!(q, queue.to_string(), "message from the wrong queue");
    i.parse().unwrap()
}

fn run(storage: impl FnOnce() -> Storage, ops: &[Op]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut world = World::new(storage()).await;
        for op in ops {
            world.apply(op).await?;
        }
        Ok::<(), TestCaseError>(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn embedded_bus_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(Storage::sim, &ops)?;
    }
}

proptest! {
    // Each case starts a redis-server, and each crash restarts it.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn redis_bus_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(Storage::redis, &ops)?;
    }
}

proptest! {
    // Each case starts a nats-server.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn nats_bus_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        // No crashes or restarts: see the module docs.
        let ops: Vec<Op> = ops.into_iter().filter(|op| !matches!(op, Op::Crash { .. } | Op::Restart)).collect();
        run(Storage::nats, &ops)?;
    }
}
