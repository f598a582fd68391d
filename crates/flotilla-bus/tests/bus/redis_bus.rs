//! The Redis bus's own behaviour, on throwaway redis-servers: a `kill -9` of Redis
//! mid-stream loses nothing whose publish returned and consumers carry on; a dead
//! consumer's entries go to another consumer of the group after the lease, and a live
//! one keeps what it works on past it; a fetch dropped mid-read strands nothing; retention trims only what every group
//! acknowledged; a Redis that does not persist, that refuses CONFIG, that cannot be
//! reached, and a bad URL are each reported clearly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_bus::redis::RedisBus;
use flotilla_bus::{Bus, ReadFrom, RedisOptions};
use flotilla_test_support::{RedisServer, free_port};

use crate::support::*;

fn lease_options(redis: &Redis, node: &str, lease_ttl: Duration) -> RedisOptions {
    RedisOptions { lease_ttl, ..redis.options(node) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_redis_mid_stream_loses_nothing_whose_publish_returned() {
    let mut redis = Redis::new();
    let bus: Arc<dyn Bus> = Arc::new(RedisBus::open(redis.options("node")).await.unwrap());
    let consumer_errors = killed_mid_stream(bus, &mut redis.server, RedisServer::kill, RedisServer::restart).await;
    assert!(consumer_errors > 0, "the consumer saw the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_with_messages_in_flight_has_them_claimed_after_the_lease() {
    let redis = Redis::new();
    let lease = Duration::from_millis(600);
    let alpha = RedisBus::open(lease_options(&redis, "alpha", lease)).await.unwrap();
    let beta = RedisBus::open(lease_options(&redis, "beta", lease)).await.unwrap();
    alpha.publish("q", payloads(0..10)).await.unwrap();
    let mut dying = alpha.subscribe("q", "g").await.unwrap();
    let mut survivor = beta.subscribe("q", "g").await.unwrap();
    let before_delivery = Instant::now();
    assert_eq!(texts(&dying.fetch(5, Duration::ZERO).await.unwrap()), names(0..5));
    // Node alpha dies: its consumer and its bus vanish without acknowledging or telling
    // anyone.
    drop(dying);
    drop(alpha);
    let rest = survivor.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(texts(&rest), names(5..10), "what alpha held is not free before the lease");
    survivor.ack(&ids(&rest)).await.unwrap();

    let give_up = Instant::now() + lease + Duration::from_secs(5);
    let claimed = loop {
        let batch = survivor.fetch(10, Duration::from_millis(100)).await.unwrap();
        if !batch.is_empty() {
            break batch;
        }
        assert!(Instant::now() < give_up, "alpha's messages were never claimed");
    };
    let waited = before_delivery.elapsed();
    assert!(waited + Duration::from_millis(5) >= lease, "claimed after {waited:?}, before the lease of {lease:?}");
    assert_eq!(texts(&claimed), names(0..5));
    survivor.ack(&ids(&claimed)).await.unwrap();
    let stats = beta.stats().await.unwrap();
    assert_eq!((stats[0].groups[0].acked_seq, stats[0].groups[0].in_flight), (Some(9), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_consumer_keeps_what_it_works_on_past_the_lease() {
    let redis = Redis::new();
    let lease = Duration::from_millis(300);
    let alpha = RedisBus::open(lease_options(&redis, "alpha", lease)).await.unwrap();
    let beta = RedisBus::open(lease_options(&redis, "beta", lease)).await.unwrap();
    alpha.publish("q", payloads(0..3)).await.unwrap();
    let mut slow = alpha.subscribe("q", "g").await.unwrap();
    let mut other = beta.subscribe("q", "g").await.unwrap();
    let held = slow.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(held.len(), 3);
    // Four leases long, the other consumer looks for entries to claim and finds none.
    let until = Instant::now() + lease * 4;
    while Instant::now() < until {
        let batch = other.fetch(10, Duration::from_millis(50)).await.unwrap();
        assert!(batch.is_empty(), "claimed from a live consumer: {:?}", texts(&batch));
    }
    slow.ack(&ids(&held)).await.unwrap();
    assert!(other.fetch(10, Duration::from_millis(50)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_dropped_while_its_read_was_taking_entries_strands_none() {
    let redis = Redis::new();
    let bus = RedisBus::open(redis.options("node")).await.unwrap();
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    assert!(consumer.fetch(10, Duration::ZERO).await.unwrap().is_empty());
    // A fetch waiting for new entries is dropped (a stage told to stop); its blocking
    // read stays with Redis and takes what is published next, but its answer is lost.
    let dropped = tokio::time::timeout(Duration::from_millis(100), consumer.fetch(10, Duration::from_secs(30))).await;
    assert!(dropped.is_err(), "the fetch was still waiting");
    bus.publish("q", payloads(0..4)).await.unwrap();
    let mut connection = redis.server.connection().await;
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let pending: ::redis::Value =
            ::redis::cmd("XPENDING").arg("flotilla:q").arg("g").query_async(&mut connection).await.unwrap();
        if matches!(&pending, ::redis::Value::Array(summary) if summary.first() == Some(&::redis::Value::Int(4))) {
            break; // The abandoned read took all four.
        }
        assert!(Instant::now() < give_up, "the abandoned read took nothing: {pending:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The next fetch reads the consumer's own pending entries first, at once (not
    // after the lease).
    assert_eq!(texts(&consumer.fetch(10, Duration::ZERO).await.unwrap()), names(0..4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_only_what_every_group_acknowledged() {
    let redis = Redis::new();
    let options = RedisOptions { max_age: Some(Duration::ZERO), ..redis.options("node") };
    let bus = RedisBus::open(options).await.unwrap();
    let mut slow = bus.subscribe("q", "slow").await.unwrap();
    let mut fast = bus.subscribe("q", "fast").await.unwrap();
    for i in 0..20 {
        bus.publish("q", payloads(i..i + 1)).await.unwrap();
    }
    let got = fetch_all(fast.as_mut(), 20).await;
    fast.ack(&ids(&got)).await.unwrap();
    assert_eq!(bus.apply_retention().await.unwrap(), 0, "the slow group still needs everything");

    let got = fetch_all(slow.as_mut(), 12).await;
    slow.ack(&ids(&got[..10])).await.unwrap(); // 10 and 11 stay in flight.
    assert_eq!(bus.apply_retention().await.unwrap(), 10);
    let stats = bus.stats().await.unwrap();
    assert_eq!((stats[0].first_seq, stats[0].next_seq), (10, 20), "{stats:?}");
    let slow_stats = stats[0].groups.iter().find(|g| g.group == "slow").unwrap();
    // Unknown while entries are in flight: Redis numbers no entries.
    assert_eq!((slow_stats.acked_seq, slow_stats.in_flight, slow_stats.pending), (None, 2, 10));
    assert_eq!(bus.apply_retention().await.unwrap(), 0, "in-flight entries stay");

    // After a restart the slow group gets exactly what it had not acknowledged.
    drop(slow);
    bus.close().await.unwrap();
    let bus = RedisBus::open(redis.options("node")).await.unwrap();
    let mut slow = bus.subscribe("q", "slow").await.unwrap();
    assert_eq!(texts(&fetch_all(slow.as_mut(), 10).await), names(10..20), "nothing unacknowledged was removed");
    let mut reader = bus.read("q", ReadFrom::Start).await.unwrap();
    assert_eq!(texts(&reader.fetch(1, Duration::ZERO).await.unwrap()), names(10..11), "the oldest retained");
}

#[tokio::test]
async fn a_redis_that_does_not_persist_or_hides_its_settings_is_warned_about() {
    let redis = Redis::new();
    let check = RedisBus::check(&redis.options("node")).await.unwrap();
    assert!(check.warnings.is_empty(), "{:?}", check.warnings);
    assert!(check.persistence.contains("synced on every write"), "{}", check.persistence);

    let dir = tempfile::tempdir().unwrap();
    let volatile = RedisServer::start_with(&dir.path().join("volatile"), &["--appendonly", "no", "--save", ""]);
    let check = RedisBus::check(&RedisOptions::new(volatile.url(), "node")).await.unwrap();
    assert_eq!(check.persistence, "none");
    assert!(
        check.warnings.iter().any(|w| w.contains("does not persist") && w.contains("loses every queue")),
        "{:?}",
        check.warnings
    );
    // The bus opens all the same (the warning is logged).
    RedisBus::open(RedisOptions::new(volatile.url(), "node")).await.unwrap();

    let hidden = RedisServer::start_with(&dir.path().join("hidden"), &["--rename-command", "CONFIG", ""]);
    let check = RedisBus::check(&RedisOptions::new(hidden.url(), "node")).await.unwrap();
    assert!(check.warnings.iter().any(|w| w.contains("CONFIG GET was refused")), "{:?}", check.warnings);
}

#[tokio::test]
async fn an_unreachable_redis_and_a_bad_url_are_clear_errors() {
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let Err(error) = RedisBus::open(RedisOptions::new(url.clone(), "node")).await else { panic!("opened") };
    let text = flotilla_core::error_chain(&error);
    assert!(text.starts_with(&format!("cannot reach Redis at {url}")), "{text}");
    assert!(text.contains("refused"), "the cause is kept: {text}");

    let Err(error) = RedisBus::open(RedisOptions::new("http://127.0.0.1/", "node")).await else { panic!("opened") };
    assert!(error.to_string().starts_with("bus.url: 'http://127.0.0.1/' is not a Redis URL"), "{error}");
    let Err(error) = RedisBus::open(RedisOptions::new("redis://:hunter2@127.0.0.1:1/0", "node")).await else {
        panic!("opened")
    };
    assert!(!flotilla_core::error_chain(&error).contains("hunter2"), "the password never shows: {error}");
}

#[tokio::test]
async fn a_bus_over_tls_trusts_its_ca_and_refuses_a_certificate_another_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = flotilla_test_support::TestCa::new(dir.path(), "bus");
    let other = flotilla_test_support::TestCa::new(dir.path(), "other");
    let redis = RedisServer::start_tls(&dir.path().join("redis"), &ca);
    let options = RedisOptions { tls_ca: Some(ca.cert.clone()), ..RedisOptions::new(redis.url(), "node") };
    let bus = RedisBus::open(options).await.unwrap();
    bus.publish("q", vec![bytes::Bytes::from_static(b"over tls")]).await.unwrap();
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    let got = consumer.fetch(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.iter().map(|d| d.payload.as_ref()).collect::<Vec<_>>(), vec![b"over tls".as_slice()]);
    drop(consumer);
    bus.close().await.unwrap();

    let options = RedisOptions { tls_ca: Some(other.cert.clone()), ..RedisOptions::new(redis.url(), "node") };
    let Err(error) = RedisBus::open(options).await else { panic!("opened with a CA that signed nothing here") };
    let text = flotilla_core::error_chain(&error);
    assert!(text.contains(&redis.url()) && text.contains("invalid peer certificate"), "{text}");
}
