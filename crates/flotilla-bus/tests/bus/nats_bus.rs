//! The NATS bus's own behaviour, on throwaway nats-servers: a `kill -9` of NATS
//! mid-stream loses nothing whose publish returned and consumers carry on; a dead
//! consumer's messages go to another consumer of the group after `ack_wait`
//! (`lease_ttl`), and a live one keeps what it works on past it; retention removes only
//! what every group acknowledged; a server without JetStream, an unreachable one and a
//! bad URL are each reported clearly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_bus::{Bus, NatsBus, NatsOptions, ReadFrom};
use flotilla_test_support::{NatsServer, free_port};

use crate::support::*;

fn lease_options(nats: &Nats, node: &str, lease_ttl: Duration) -> NatsOptions {
    NatsOptions { lease_ttl, ..nats.options(node) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_nats_mid_stream_loses_nothing_whose_publish_returned() {
    let mut nats = Nats::new();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::open(nats.options("node")).await.unwrap());
    // The consumer may see the outage as errors or as empty fetches (its pulls wait
    // for the reconnect): either way it must receive everything.
    killed_mid_stream(bus, &mut nats.server, NatsServer::kill, NatsServer::restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_with_messages_in_flight_has_them_redelivered_after_ack_wait() {
    let nats = Nats::new();
    let lease = Duration::from_millis(600);
    let alpha = NatsBus::open(lease_options(&nats, "alpha", lease)).await.unwrap();
    let beta = NatsBus::open(lease_options(&nats, "beta", lease)).await.unwrap();
    alpha.publish("q", payloads(0..10)).await.unwrap();
    let mut dying = alpha.subscribe("q", "g").await.unwrap();
    let mut survivor = beta.subscribe("q", "g").await.unwrap();
    let before_delivery = Instant::now();
    assert_eq!(texts(&dying.fetch(5, Duration::ZERO).await.unwrap()), names(0..5));
    // Node alpha dies: its consumer and its bus vanish without acknowledging or telling
    // anyone (its hand-back list dies with it).
    drop(dying);
    drop(alpha);
    let rest = survivor.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(texts(&rest), names(5..10), "what alpha held is not free before ack_wait");
    survivor.ack(&ids(&rest)).await.unwrap();

    let give_up = Instant::now() + lease + Duration::from_secs(5);
    let redelivered = loop {
        let batch = survivor.fetch(10, Duration::from_millis(100)).await.unwrap();
        if !batch.is_empty() {
            break batch;
        }
        assert!(Instant::now() < give_up, "alpha's messages were never redelivered");
    };
    let waited = before_delivery.elapsed();
    assert!(waited + Duration::from_millis(5) >= lease, "redelivered after {waited:?}, before ack_wait {lease:?}");
    let mut all = redelivered;
    while all.len() < 5 {
        let more = survivor.fetch(10, Duration::from_millis(500)).await.unwrap();
        assert!(!more.is_empty(), "only {} of alpha's 5 came back", all.len());
        all.extend(more);
    }
    assert_eq!(texts(&all), names(0..5));
    survivor.ack(&ids(&all)).await.unwrap();
    let stats = beta.stats().await.unwrap();
    assert_eq!((stats[0].groups[0].acked_seq, stats[0].groups[0].in_flight), (Some(9), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_consumer_keeps_what_it_works_on_past_ack_wait() {
    let nats = Nats::new();
    let lease = Duration::from_millis(300);
    let alpha = NatsBus::open(lease_options(&nats, "alpha", lease)).await.unwrap();
    let beta = NatsBus::open(lease_options(&nats, "beta", lease)).await.unwrap();
    alpha.publish("q", payloads(0..3)).await.unwrap();
    let mut slow = alpha.subscribe("q", "g").await.unwrap();
    let mut other = beta.subscribe("q", "g").await.unwrap();
    let held = slow.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(held.len(), 3);
    // Four leases long, the other consumer is given nothing.
    let until = Instant::now() + lease * 4;
    while Instant::now() < until {
        let batch = other.fetch(10, Duration::from_millis(50)).await.unwrap();
        assert!(batch.is_empty(), "redelivered from a live consumer: {:?}", texts(&batch));
    }
    slow.ack(&ids(&held)).await.unwrap();
    assert!(other.fetch(10, Duration::from_millis(50)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_what_every_group_acknowledged() {
    let nats = Nats::new();
    let options = NatsOptions { max_age: Some(Duration::ZERO), ..nats.options("node") };
    let bus = NatsBus::open(options).await.unwrap();
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
    let stats = bus.stats().await.unwrap();
    let slow_stats = stats[0].groups.iter().find(|g| g.group == "slow").unwrap();
    assert_eq!((slow_stats.acked_seq, slow_stats.in_flight, slow_stats.pending), (Some(9), 2, 10));
    assert_eq!(bus.apply_retention().await.unwrap(), 10);
    let stats = bus.stats().await.unwrap();
    assert_eq!((stats[0].first_seq, stats[0].next_seq), (10, 20), "{stats:?}");
    assert_eq!(bus.apply_retention().await.unwrap(), 0, "in-flight messages stay");

    // After a restart the slow group gets exactly what it had not acknowledged.
    drop(slow);
    bus.close().await.unwrap();
    let bus = NatsBus::open(nats.options("node")).await.unwrap();
    let mut slow = bus.subscribe("q", "slow").await.unwrap();
    assert_eq!(texts(&fetch_all(slow.as_mut(), 10).await), names(10..20), "nothing unacknowledged was removed");
    let mut reader = bus.read("q", ReadFrom::Start).await.unwrap();
    assert_eq!(texts(&reader.fetch(1, Duration::ZERO).await.unwrap()), names(10..11), "the oldest retained");
}

#[tokio::test]
async fn a_nats_without_jetstream_an_unreachable_one_and_a_bad_url_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let plain = NatsServer::start_without_jetstream(&dir.path().join("plain"));
    let Err(error) = NatsBus::open(NatsOptions::new(plain.url(), "node")).await else { panic!("opened") };
    let text = flotilla_core::error_chain(&error);
    assert!(text.contains("has no JetStream") && text.contains("-js"), "{text}");
    assert!(NatsBus::check(&NatsOptions::new(plain.url(), "node")).await.is_err());

    let nats = Nats::new();
    let check = NatsBus::check(&nats.options("node")).await.unwrap();
    assert!(check.jetstream.contains("JetStream enabled"), "{check:?}");
    assert!(check.warnings.iter().any(|w| w.contains("max_payload")), "8 MiB messages over 1 MiB: {check:?}");

    let url = format!("nats://127.0.0.1:{}", free_port());
    let Err(error) = NatsBus::open(NatsOptions::new(url.clone(), "node")).await else { panic!("opened") };
    let text = flotilla_core::error_chain(&error);
    assert!(text.starts_with(&format!("cannot reach NATS at {url}")), "{text}");

    let Err(error) = NatsBus::open(NatsOptions::new("redis://127.0.0.1:6379/0", "node")).await else {
        panic!("opened")
    };
    assert!(error.to_string().starts_with("bus.url: 'redis://127.0.0.1:6379/0' is not a NATS URL"), "{error}");
    let Err(error) = NatsBus::open(NatsOptions::new("nats://u:hunter2@127.0.0.1:1", "node")).await else {
        panic!("opened")
    };
    assert!(!flotilla_core::error_chain(&error).contains("hunter2"), "the password never shows: {error}");
}
