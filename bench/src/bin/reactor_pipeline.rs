//! End-to-end reactor benchmark (issue 3), release build only:
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin reactor_pipeline [-- --quick]
//! ```
//!
//! publish → queue `reactor` → the node's reactor (rules: a condition, SetField,
//! MessageQueue) → queue `out` → a consumer that acknowledges. All on the embedded bus
//! with fsync'd publishes, in one process, the same code `flotilla run` uses. Target:
//! ≥ 300,000 messages/s through the whole path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bench::{cpu_time, human, rate};
use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions};
use flotilla_node::effects::NodeEffects;
use flotilla_node::reactor::{self, ReactorCounters};
use flotilla_reactor::serde_json::json;
use flotilla_reactor::{CompileContext, NoFiles, RuleConfig, compile};
use flotilla_store::Store;
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total: u64 = if quick { 100_000 } else { 1_000_000 };
    let dir = tempfile::Builder::new().prefix("flotilla-bench-reactor").tempdir_in("/var/tmp").unwrap();
    let mut options = EmbeddedOptions::default();
    options.retention.max_age = None;
    options.retention.max_bytes = None;
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&dir.path().join("bus"), options).unwrap());
    let store = Arc::new(Store::open(&format!("sqlite://{}/store.db", dir.path().display())).await.unwrap());

    let rules: Vec<RuleConfig> = flotilla_reactor::serde_json::from_value(json!([
        {"name": "tag", "condition": "status equals CRITICAL OR load01 > 4", "plugin": "SetField",
         "config": {"field": "urgent", "value": 1}},
        {"name": "route", "condition": "contains subject", "plugin": "MessageQueue", "config": {"queue": "out"}},
    ]))
    .unwrap();
    let tree =
        compile(&rules, &CompileContext { host: "bench", base_dir: std::path::Path::new("."), loader: &NoFiles })
            .unwrap();
    let counters = Arc::new(ReactorCounters::default());
    let shutdown = CancellationToken::new();
    let reactor = tokio::spawn(
        reactor::Reactor {
            bus: bus.clone(),
            // The sender is dropped: the rules never change (a reload's path, unused here).
            rules: tokio::sync::watch::channel(reactor::ReactorRules { tree: Arc::new(tree), idle_warning: None }).1,
            effects: Arc::new(NodeEffects::new(bus.clone(), store.clone())),
            node_name: "bench".into(),
            counters: counters.clone(),
        }
        .run(shutdown.clone()),
    );

    // The messages are made before the clock starts: the benchmark measures the
    // pipeline, not how fast it can format JSON.
    let distinct: Vec<Bytes> = (0..1000u64)
        .map(|k| {
            let status = if k % 10 == 0 { "CRITICAL" } else { "OK" };
            Bytes::from(format!(
                r#"{{"id":"01J{k:023}","key":"Uptime-bench","plugin":"uptime","lastupdate":1700000000,"hostname":"bench","subject":"load is fine","status":"{status}","load01":{}}}"#,
                k % 7
            ))
        })
        .collect();
    let start = Instant::now();
    let cpu_start = cpu_time();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while i < total {
                let n = 1000.min(total - i);
                bus.publish("reactor", distinct[..n as usize].to_vec()).await.unwrap();
                i += n;
            }
        })
    };
    let mut consumer = bus.subscribe("out", "bench").await.unwrap();
    let mut received = 0u64;
    while received < total {
        let got = consumer.fetch(4096, Duration::from_secs(10)).await.unwrap();
        assert!(!got.is_empty(), "the pipeline stalled at {received}");
        received += got.len() as u64;
        let ids: Vec<_> = got.into_iter().map(|d| d.id).collect();
        consumer.ack(&ids).await.unwrap();
    }
    let elapsed = start.elapsed();
    let cpu = cpu_time() - cpu_start;
    publisher.await.unwrap();
    let throughput = rate(total, elapsed);
    println!(
        "publish → reactor → MessageQueue → consumer: {:>10} msg/s  ({total} messages in {:.2?}; target 300 k)",
        human(throughput),
        elapsed
    );
    println!(
        "  CPU {:.2} µs per message over all threads ({:.0} % of one core busy; at this cost two idle cores carry {} msg/s)",
        cpu.as_secs_f64() * 1e6 / total as f64,
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64(),
        human(2.0 * total as f64 / cpu.as_secs_f64())
    );
    println!("  RSS at the end: {} MiB", flotilla_bench::rss_kib(std::process::id()).unwrap_or(0) / 1024);
    println!(
        "  bus fsyncs: {}, reactor rules fired: {}",
        bus.counters().syncs,
        counters.rules_fired.load(std::sync::atomic::Ordering::Relaxed)
    );
    shutdown.cancel();
    reactor.await.unwrap().unwrap();
    bus.close().await.unwrap();
}
