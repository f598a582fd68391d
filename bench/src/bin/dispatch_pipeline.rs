//! Dispatcher pipeline benchmark (issue 4), release build only:
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin dispatch_pipeline [-- --quick]
//! ```
//!
//! 1. **Whole pipeline to the bus**: recent-change messages as the `wikimedia`
//!    connector emits them wait on the `reactor` queue of a real embedded bus (fsync'd,
//!    under `/var/tmp`); the dispatcher's matcher consumes them exactly as in a node —
//!    fetch a batch, decode the envelope, parse the event, match 1,000 subscriptions
//!    (10,000 definitions: exact pages, exact users, page and user regexes, flags),
//!    render each delivery in its subscription's format, append to `dispatch.redis`
//!    (durably), acknowledge; beside it the node's fan-out copies the deliveries into
//!    the `sub.<name>` queues. The clock stops when both have caught up. Target
//!    ≥ 100,000 changes/s. The headroom factor is this rate over the live feed's 50
//!    changes/s.
//! 2. **Delivery into Redis**: the Redis worker drains `dispatch.redis` into a
//!    throwaway `redis-server` (pipelined `MULTI`/`LPUSH`/`EXEC` batches, acknowledged
//!    after Redis answered). Target ≥ 100,000 LPUSH/s, printed beside
//!    `redis-benchmark -P 64 -t lpush` against the same server in the same run.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bench::{human, rate, redis_benchmark};
use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions};
use flotilla_wikimedia_core::subscription::SubscriptionBackend;
use flotilla_wikimedia_core::{
    Definition, DefinitionFields, Limits, OutputFormat, SubscriptionName, Subscriptions, Wikis,
};
use flotilla_wikimedia_dispatcher::{DELIVERY_QUEUE, Shared};
use flotilla_wikimedia_dispatcher::{fanout, matcher};
use flotilla_wikimedia_source::sample::synthetic_event;
use tokio_util::sync::CancellationToken;

const TARGET: f64 = 100_000.0;
const LIVE_FEED: f64 = 50.0;
const SUBSCRIPTIONS: usize = 1_000;
const DEFINITIONS_PER_SUBSCRIPTION: usize = 10;

fn definition(
    wiki: &str,
    page: Option<String>,
    page_rx: Option<String>,
    user: Option<String>,
    user_rx: Option<String>,
    flags: &[&str],
) -> Definition {
    let fields = DefinitionFields {
        wiki: wiki.to_string(),
        page,
        page_rx,
        user,
        user_rx,
        flags: flags.iter().map(|f| f.to_string()).collect(),
    };
    Definition::new(Wikis::embedded(), &fields).expect("valid definition")
}

/// 1,000 subscriptions of ten definitions each, over the sample events' universe
/// (four wikis, 97 titles, 13 users, 7 bots) plus titles and users that never occur,
/// so some changes match a few subscriptions and many match none.
fn subscriptions() -> Subscriptions {
    let mut subscriptions =
        Subscriptions::new(Wikis::embedded()).with_limits(Limits { max_definitions: 1_000, ..Limits::default() });
    let wikis = ["enwiki", "dewiki", "wikidatawiki", "commonswiki"];
    for s in 0..SUBSCRIPTIONS {
        let name = SubscriptionName::parse(&format!("bot{s}")).expect("valid name");
        let subscribed = subscriptions.subscribe(name, None).expect("new subscription");
        let format = OutputFormat::ALL[s % 3];
        subscriptions.set_format(subscribed.id, format).expect("exists");
        let mut definitions = Vec::with_capacity(DEFINITIONS_PER_SUBSCRIPTION);
        for d in 0..DEFINITIONS_PER_SUBSCRIPTION {
            let k = s * DEFINITIONS_PER_SUBSCRIPTION + d;
            let wiki = wikis[k % 4];
            definitions.push(match d {
                0 => definition(wiki, Some(format!("Sample page {}", k % 3000)), None, None, None, &[]),
                1 => definition(wiki, None, None, Some(format!("Sample user {}", k % 400)), None, &[]),
                2 => definition(wiki, None, Some(format!("^Sample page {}$", k % 2000)), None, None, &[]),
                3 => definition(wiki, None, None, None, Some(format!("^SampleBot{}$", k % 300)), &["bot"]),
                4 => definition(wiki, Some(format!("Other page {k}")), None, None, None, &["nominor"]),
                5 => definition(wiki, None, None, Some(format!("Other user {k}")), None, &[]),
                6 => definition(wiki, None, Some(format!("^Draft:Item {k:06}\\b")), None, None, &[]),
                7 => definition(wiki, None, None, None, Some(format!("^Tool{k:06}$")), &[]),
                8 => definition(wiki, Some(format!("Sample page {}", k % 5000)), None, None, Some("Bot".into()), &[]),
                _ => definition(wiki, None, Some(format!("Project {k:06}$")), None, None, &["new"]),
            });
        }
        subscriptions.insert(subscribed.id, definitions).expect("within the cap");
    }
    subscriptions
}

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    // SAFETY: initialised by the call above.
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let changes: u64 = if quick { 20_000 } else { 200_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(run(changes));
}

async fn run(changes: u64) {
    let dir =
        tempfile::Builder::new().prefix("flotilla-wikimedia-core-bench").tempdir_in("/var/tmp").expect("temp dir");
    let bus: Arc<dyn Bus> =
        Arc::new(EmbeddedBus::open(&dir.path().join("bus"), EmbeddedOptions::default()).expect("bus opens"));
    let loading = Instant::now();
    let shared = Arc::new(Shared::new(subscriptions(), None));
    println!(
        "{} subscriptions, {} definitions, loaded in {:.2} s",
        SUBSCRIPTIONS,
        shared.read().index().len(),
        loading.elapsed().as_secs_f64()
    );

    // The source queue, filled as the connector would (not timed).
    let mut batch = Vec::with_capacity(4096);
    let mut bytes = 0usize;
    for n in 0..changes {
        let mut message = flotilla_wikimedia_source::change_message(synthetic_event(n).as_bytes())
            .expect("valid event")
            .expect("not a canary");
        message.set("key", "wikimedia");
        message.stamp("benchhost", std::time::SystemTime::now());
        let json = message.to_json();
        bytes += json.len();
        batch.push(Bytes::from(json));
        if batch.len() == 4096 {
            bus.publish("reactor", std::mem::take(&mut batch)).await.expect("publish");
        }
    }
    bus.publish("reactor", batch).await.expect("publish");
    println!(
        "{} changes on the source queue, {} bytes each on average",
        human(changes as f64),
        bytes / changes as usize
    );

    // 1. The whole pipeline, as a node runs it: the matcher and the fan-out into the
    //    subscription queues, each its own task; done when both have caught up.
    let cpu = cpu_seconds();
    let started = Instant::now();
    let stop = CancellationToken::new();
    let tasks = [
        tokio::spawn(matcher::run(bus.clone(), "reactor".into(), shared.clone(), stop.clone())),
        tokio::spawn(fanout::run(bus.clone(), shared.clone(), stop.clone())),
    ];
    let counters = &shared.counters;
    let mut matched_at = None;
    loop {
        let seen = counters.changes.load(Ordering::Relaxed) + counters.skipped.load(Ordering::Relaxed);
        if seen >= changes && matched_at.is_none() {
            matched_at = Some(started.elapsed());
        }
        if seen >= changes && counters.queued.load(Ordering::Relaxed) >= counters.deliveries.load(Ordering::Relaxed) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the pipeline stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu;
    stop.cancel();
    for task in tasks {
        task.await.expect("pipeline task");
    }
    let seen = counters.changes.load(Ordering::Relaxed);
    let deliveries = counters.deliveries.load(Ordering::Relaxed);
    let pipeline = rate(seen, elapsed);
    println!(
        "\n## Whole pipeline: event JSON → match → format → durable publish to {DELIVERY_QUEUE} → ack; fan-out into sub.<name>"
    );
    println!(
        "{} changes in {:.2} s: {} changes/s (target {}: {}), {} deliveries ({:.2} per change), {:.2} CPU-seconds ({} changes per CPU-second)",
        human(seen as f64),
        elapsed.as_secs_f64(),
        human(pipeline),
        human(TARGET),
        if pipeline >= TARGET { "met" } else { "NOT met" },
        human(deliveries as f64),
        deliveries as f64 / seen as f64,
        cpu,
        human(seen as f64 / cpu),
    );
    let matched_at = matched_at.unwrap_or(elapsed);
    println!(
        "the matcher alone caught up after {:.2} s ({} changes/s); the sub.<name> queues {:.2} s later",
        matched_at.as_secs_f64(),
        human(rate(seen, matched_at)),
        (elapsed - matched_at).as_secs_f64()
    );
    println!("headroom over the live feed ({LIVE_FEED} changes/s): {:.0}×", pipeline / LIVE_FEED);

    // 2. Delivery into Redis.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let mut redis = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/peers ensure redis)");
    let up = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(up.elapsed() < Duration::from_secs(10), "redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let shutdown = CancellationToken::new();
    let redis_url = format!("redis://127.0.0.1:{port}/0");
    let target = flotilla_wikimedia_dispatcher::redis_delivery::Redis::open(&redis_url, None).await.expect("Redis");
    let worker = tokio::spawn(flotilla_wikimedia_dispatcher::redis_delivery::run(
        bus.clone(),
        target,
        String::new(),
        shared.clone(),
        shutdown.clone(),
    ));
    let started = Instant::now();
    while shared.counters.redis_pushed.load(Ordering::Relaxed) < deliveries {
        assert!(started.elapsed() < Duration::from_secs(600), "the Redis worker stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    let _ = worker.await;
    let ours = rate(deliveries, elapsed);
    let n = if changes < 100_000 { "200000" } else { "1000000" };
    let peer = redis_benchmark(port, &["-P", "64", "-n", n, "-t", "lpush"]);
    println!("\n## Delivery into Redis: {DELIVERY_QUEUE} → pipelined MULTI/LPUSH/EXEC → ack");
    println!(
        "{} LPUSH in {:.2} s: {} LPUSH/s (target {}: {})",
        human(deliveries as f64),
        elapsed.as_secs_f64(),
        human(ours),
        human(TARGET),
        if ours >= TARGET { "met" } else { "NOT met" }
    );
    match peer {
        Ok(peer) => println!(
            "redis-benchmark -P 64 -t lpush, same server, same run: {} LPUSH/s; ratio ours/redis-benchmark {:.2}",
            human(peer),
            ours / peer
        ),
        Err(error) => println!("redis-benchmark: {error}"),
    }
    let _ = redis.kill();
    let _ = redis.wait();
    bus.close().await.expect("close");
}
