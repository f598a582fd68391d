//! Embedded bus benchmarks (issue 2), release build only:
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin bus [-- --quick]
//! ```
//!
//! 1. batched durable publish of 100-byte payloads (fsync per commit);
//! 2. 64 concurrent publishers each awaiting durability of single messages (group
//!    commit), with latency percentiles;
//! 3. consume (fetch + ack) through a consumer group;
//! 4. `redis-benchmark -P 64 XADD` against the local Redis in the same run, printed
//!    beside ours as a ratio (Redis keeps the stream in memory; we fsync);
//! 5. recovery: opening a bus whose queue holds 1 GiB of log after a crash.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bench::{human, percentile, rate, redis_benchmark, redis_del};
use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions};

const PAYLOAD: usize = 100;

fn payload(i: u64) -> Bytes {
    let mut p = format!("{{\"n\":{i},\"subject\":\"benchmark message\",\"pad\":\"").into_bytes();
    p.resize(PAYLOAD - 2, b'x');
    p.extend_from_slice(b"\"}");
    Bytes::from(p)
}

fn options() -> EmbeddedOptions {
    let mut options = EmbeddedOptions::default();
    options.retention.max_age = None;
    options.retention.max_bytes = None;
    options
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = tempfile::Builder::new().prefix("flotilla-bench-bus").tempdir_in(bench_dir()).expect("temp dir");
    println!("# embedded bus, data in {} ({} cores)", dir.path().display(), num_cpus());

    // 1. Batched publish.
    let bus = EmbeddedBus::open(&dir.path().join("batched"), options()).unwrap();
    let total: u64 = 2_000_000 / scale;
    let batch = 1000u64;
    let publishers = 4u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = p * total / publishers;
            let end = (p + 1) * total / publishers;
            while i < end {
                let n = batch.min(end - i);
                let payloads: Vec<Bytes> = (i..i + n).map(payload).collect();
                bus.publish("bench", payloads).await.unwrap();
                i += n;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let batched = rate(total, start.elapsed());
    let counters = bus.counters();
    println!(
        "batched publish   {:>10} msg/s  ({total} x {PAYLOAD} B, batches of {batch}, {publishers} publishers, {} fsyncs)",
        human(batched),
        counters.syncs
    );

    // 3. Consume what we just wrote.
    let mut consumer = bus.subscribe("bench", "bench-consumer").await.unwrap();
    let start = Instant::now();
    let mut consumed = 0u64;
    while consumed < total {
        let got = consumer.fetch(4096, Duration::from_secs(5)).await.unwrap();
        assert!(!got.is_empty(), "consumer stalled at {consumed}");
        consumed += got.len() as u64;
        let ids: Vec<_> = got.into_iter().map(|d| d.id).collect();
        consumer.ack(&ids).await.unwrap();
    }
    let consume = rate(consumed, start.elapsed());
    println!("consume + ack     {:>10} msg/s  (fetch 4096, ack per batch)", human(consume));
    drop(consumer);
    bus.close().await.unwrap();

    // 2. 64 publishers, one message each, awaiting durability.
    let bus = EmbeddedBus::open(&dir.path().join("single"), options()).unwrap();
    let per_publisher: u64 = 4000 / scale;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..64u64 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_publisher as usize);
            for i in 0..per_publisher {
                let t = Instant::now();
                bus.publish("single", vec![payload(p * 1_000_000 + i)]).await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    let single = rate(64 * per_publisher, elapsed);
    let counters = bus.counters();
    println!(
        "64 publishers     {:>10} msg/s  (each awaits its own fsync'd publish; {:.1} msgs per fsync) p50 {:?} p99 {:?} max {:?}",
        human(single),
        counters.published as f64 / counters.syncs.max(1) as f64,
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0),
        percentile(&mut latencies, 100.0),
    );
    bus.close().await.unwrap();

    // 4. Redis XADD in the same run.
    let key = format!("flotilla-bench-{}", std::process::id());
    let body = "x".repeat(PAYLOAD);
    let n = (1_000_000 / scale).to_string();
    match redis_benchmark(6379, &["-P", "64", "-n", &n, "-c", "50", "XADD", &key, "*", "payload", &body]) {
        Ok(xadd) => {
            println!("redis XADD -P 64  {:>10} op/s  (in memory, no fsync)", human(xadd));
            println!("ratio batched publish / redis XADD = {:.2}", batched / xadd);
            println!("ratio 64-publisher publish / redis XADD = {:.2}", single / xadd);
        }
        Err(why) => println!("redis XADD        skipped: {why}"),
    }
    redis_del(6379, &key);

    // 5. Recovery with a 1 GiB log after a crash (no clean close).
    let gib: u64 = (1 << 30) / scale;
    let path = dir.path().join("recovery");
    {
        let bus = EmbeddedBus::open(&path, options()).unwrap();
        let big = Bytes::from(vec![b'r'; 64 * 1024]);
        let mut written = 0u64;
        while written < gib {
            bus.publish("big", vec![big.clone(); 16]).await.unwrap();
            written += 16 * big.len() as u64;
        }
        bus.close().await.unwrap();
    }
    // Leave a torn tail in the newest segment, as a crash mid-write would.
    let newest = std::fs::read_dir(path.join("big")).unwrap().filter_map(|e| e.ok()).map(|e| e.path());
    let newest = newest.filter(|p| p.extension().is_some_and(|x| x == "seg")).max().unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(&newest).unwrap();
    std::io::Write::write_all(&mut file, &[7u8; 1000]).unwrap();
    drop(file);
    let start = Instant::now();
    let bus = EmbeddedBus::open(&path, options()).unwrap();
    let recovered = start.elapsed();
    let stats = bus.stats().await.unwrap();
    println!(
        "recovery          {:>10?}  (open after a crash: {} MiB of log, {} messages, torn tail cut)",
        recovered,
        stats[0].bytes >> 20,
        stats[0].next_seq
    );
}

fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("FLOTILLA_BENCH_DIR").map(Into::into).unwrap_or_else(|| "/var/tmp".into())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
