//! NATS bus benchmarks (issue 13), release build only:
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin bus_nats [-- --quick]
//! ```
//!
//! On a throwaway `nats-server -js` of its own (a free port, its own store directory),
//! each figure beside a plain async-nats JetStream client doing the same work in the
//! same run, with the ratio (goal: ≥ 0.8):
//!
//! 1. batched publish of 100-byte payloads (batches of 1000, 4 publishers, each
//!    batch's acknowledgements awaited together) beside the plain client publishing
//!    the same (async publishes, acknowledgements awaited per 1000) to a stream of its
//!    own;
//! 2. consume + acknowledge (4 consumers of one group, fetch 4096, `+ACK` per message
//!    and one flush per batch) beside the plain client pulling batches of 4096 from a
//!    durable consumer of its stream and acknowledging each message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use flotilla_bench::{human, rate};
use flotilla_bus::{Bus, NatsBus, NatsOptions};
use flotilla_test_support::NatsServer;
use futures_util::StreamExt;

const PAYLOAD: usize = 100;
const BATCH: u64 = 1000;
const PUBLISHERS: u64 = 4;
const CONSUMERS: usize = 4;

fn payload(i: u64) -> Bytes {
    let mut p = format!("{{\"n\":{i},\"subject\":\"benchmark message\",\"pad\":\"").into_bytes();
    p.resize(PAYLOAD - 2, b'x');
    p.extend_from_slice(b"\"}");
    Bytes::from(p)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total: u64 = if quick { 20_000 } else { 1_000_000 };
    let dir = tempfile::Builder::new().prefix("flotilla-bench-nats").tempdir_in(bench_dir()).expect("temp dir");
    let server = NatsServer::start(&dir.path().join("nats"));
    println!("# nats bus, throwaway nats-server -js on port {}, store in {}", server.port, dir.path().display());

    let mut options = NatsOptions::new(server.url(), "bench");
    options.max_age = None;
    let bus = Arc::new(NatsBus::open(options).await.expect("open the NATS bus"));
    let client = async_nats::connect(server.url()).await.expect("connect the plain client");
    let js = jetstream::new(client.clone());
    let raw = js
        .get_or_create_stream(stream::Config {
            name: "raw".to_string(),
            subjects: vec!["raw".to_string()],
            storage: stream::StorageType::File,
            ..stream::Config::default()
        })
        .await
        .expect("the plain client's stream");

    // 1. Batched publish.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let (mut i, end) = (p * total / PUBLISHERS, (p + 1) * total / PUBLISHERS);
            while i < end {
                let n = BATCH.min(end - i);
                bus.publish("bench", (i..i + n).map(payload).collect()).await.unwrap();
                i += n;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let published = rate(total, start.elapsed());
    println!(
        "batched publish   {:>10} msg/s  ({total} x {PAYLOAD} B, batches of {BATCH}, {PUBLISHERS} publishers)",
        human(published)
    );

    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let js = js.clone();
        tasks.push(tokio::spawn(async move {
            let (mut i, end) = (p * total / PUBLISHERS, (p + 1) * total / PUBLISHERS);
            while i < end {
                let n = BATCH.min(end - i);
                let mut acks = Vec::with_capacity(n as usize);
                for j in i..i + n {
                    acks.push(js.publish("raw", payload(j)).await.unwrap());
                }
                for ack in acks {
                    ack.await.unwrap();
                }
                i += n;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let plain = rate(total, start.elapsed());
    println!("plain JetStream   {:>10} msg/s", human(plain));
    println!("ratio batched publish / plain JetStream = {:.2}", published / plain);

    // 2. Consume + acknowledge what was published.
    let start = Instant::now();
    let consumed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONSUMERS {
        let (bus, consumed) = (bus.clone(), consumed.clone());
        tasks.push(tokio::spawn(async move {
            let mut consumer = bus.subscribe("bench", "bench-consumer").await.unwrap();
            while consumed.load(Ordering::Relaxed) < total {
                let got = consumer.fetch(4096, Duration::from_millis(100)).await.unwrap();
                let ids: Vec<_> = got.into_iter().map(|d| d.id).collect();
                consumer.ack(&ids).await.unwrap();
                consumed.fetch_add(ids.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let consume = rate(total, start.elapsed());
    println!("consume + ack     {:>10} msg/s  ({CONSUMERS} consumers, fetch 4096)", human(consume));

    let durable = pull::Config { durable_name: Some("g".to_string()), ..pull::Config::default() };
    let consumer = raw.get_or_create_consumer("g", durable).await.expect("the plain client's consumer");
    let start = Instant::now();
    let consumed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONSUMERS {
        let (consumer, client, consumed) = (consumer.clone(), client.clone(), consumed.clone());
        tasks.push(tokio::spawn(async move {
            while consumed.load(Ordering::Relaxed) < total {
                let mut batch =
                    consumer.batch().max_messages(4096).expires(Duration::from_millis(100)).messages().await.unwrap();
                let mut n = 0;
                while let Some(message) = batch.next().await {
                    message.unwrap().ack().await.unwrap();
                    n += 1;
                }
                client.flush().await.unwrap();
                consumed.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let plain = rate(total, start.elapsed());
    println!("plain JetStream   {:>10} msg/s  (pull 4096, ack each)", human(plain));
    println!("ratio consume + ack / plain JetStream = {:.2}", consume / plain);
    bus.close().await.unwrap();
}

fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("FLOTILLA_BENCH_DIR").map(Into::into).unwrap_or_else(|| "/var/tmp".into())
}
