//! Redis bus benchmarks (issue 13), release build only:
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin bus_redis [-- --quick]
//! ```
//!
//! On a throwaway redis-server of its own (append-only, `appendfsync always`, a free
//! port, its own directory), each figure beside `redis-benchmark` doing the same work
//! in the same run, with the ratio (goal: ≥ 0.8):
//!
//! 1. batched publish of 100-byte payloads (batches of 1000, 4 publishers) beside
//!    `redis-benchmark -P 64 XADD <key> * m <100 B>`;
//! 2. consume + acknowledge (4 consumers of one group, fetch 4096, one `XACK` per
//!    batch) beside `redis-benchmark -P 64` reading 100 entries per
//!    `XREADGROUP … COUNT 100` and acknowledging 100 ids per `XACK` (ids drawn at
//!    random from what was read, so some are already acknowledged: a little cheaper
//!    than real acknowledgements). Redis runs commands one at a time, so its
//!    consume + ack rate is the two combined: 1 / (1/read + 1/ack).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bench::{human, rate, redis_benchmark};
use flotilla_bus::{Bus, RedisBus, RedisOptions};
use flotilla_test_support::RedisServer;

const PAYLOAD: usize = 100;

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
    let dir = tempfile::Builder::new().prefix("flotilla-bench-redis").tempdir_in(bench_dir()).expect("temp dir");
    let server = RedisServer::start(&dir.path().join("redis"));
    let port = server.port;
    println!(
        "# redis bus, throwaway redis-server on port {port} (appendonly yes, appendfsync always), data in {}",
        dir.path().display()
    );

    let mut options = RedisOptions::new(server.url(), "bench");
    options.max_age = None;
    let bus = Arc::new(RedisBus::open(options).await.expect("open the Redis bus"));

    // 1. Batched publish.
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
        "batched publish   {:>10} msg/s  ({total} x {PAYLOAD} B, batches of {batch}, {publishers} publishers)",
        human(published)
    );
    let body = "x".repeat(PAYLOAD);
    let n = total.to_string();
    match redis_benchmark(port, &["-P", "64", "-n", &n, "-c", "50", "XADD", "raw", "*", "m", &body]) {
        Ok(xadd) => {
            println!("redis XADD -P 64  {:>10} op/s", human(xadd));
            println!("ratio batched publish / redis XADD = {:.2}", published / xadd);
        }
        Err(why) => println!("redis XADD        skipped: {why}"),
    }

    // 2. Consume + acknowledge what was published.
    let consumers = 4;
    let start = Instant::now();
    let mut tasks = Vec::new();
    let consumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..consumers {
        let (bus, consumed) = (bus.clone(), consumed.clone());
        tasks.push(tokio::spawn(async move {
            let mut consumer = bus.subscribe("bench", "bench-consumer").await.unwrap();
            while consumed.load(std::sync::atomic::Ordering::Relaxed) < total {
                let got = consumer.fetch(4096, Duration::from_millis(100)).await.unwrap();
                let ids: Vec<_> = got.into_iter().map(|d| d.id).collect();
                consumer.ack(&ids).await.unwrap();
                consumed.fetch_add(ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let consume = rate(total, start.elapsed());
    println!("consume + ack     {:>10} msg/s  ({consumers} consumers, fetch 4096, one XACK per batch)", human(consume));
    match raw_consume_and_ack(&server, total).await {
        Ok((read, ack)) => {
            let combined = 1.0 / (1.0 / read + 1.0 / ack);
            println!(
                "redis XREADGROUP  {:>10} entries/s, XACK {} ids/s: consume + ack {} msg/s",
                human(read),
                human(ack),
                human(combined)
            );
            println!("ratio consume + ack / redis = {:.2}", consume / combined);
        }
        Err(why) => println!("redis XREADGROUP  skipped: {why}"),
    }
    bus.close().await.unwrap();
}

/// Fills stream `raw-ids` with `total` entries whose ids are `1-1` … `1-total` (so
/// `redis-benchmark` can name them), then runs `XREADGROUP … COUNT 100` and
/// `XACK` of 100 random ids of them; returns (entries read/s, ids acknowledged/s).
async fn raw_consume_and_ack(server: &RedisServer, total: u64) -> Result<(f64, f64), String> {
    let mut connection = server.connection().await;
    let body = "x".repeat(PAYLOAD);
    for chunk in (1..=total).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("XADD").arg("raw-ids").arg(format!("1-{i}")).arg("m").arg(&body).ignore();
        }
        pipe.query_async::<()>(&mut connection).await.map_err(|e| e.to_string())?;
    }
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("raw-ids")
        .arg("g")
        .arg("0")
        .query_async::<()>(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
    // Fewer reads than the stream holds, so every read returns a full 100.
    let reads = (total / 100 * 9 / 10).max(1).to_string();
    let read = redis_benchmark(
        server.port,
        &[
            "-P",
            "64",
            "-n",
            &reads,
            "-c",
            "50",
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "100",
            "STREAMS",
            "raw-ids",
            ">",
        ],
    )?;
    let keyspace = (total * 9 / 10).to_string();
    let mut ack = vec!["-P", "64", "-n", &reads, "-c", "50", "-r", &keyspace, "XACK", "raw-ids", "g"];
    ack.extend(std::iter::repeat_n("1-__rand_int__", 100));
    let acked = redis_benchmark(server.port, &ack)?;
    Ok((read * 100.0, acked * 100.0))
}

fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("FLOTILLA_BENCH_DIR").map(Into::into).unwrap_or_else(|| "/var/tmp".into())
}
