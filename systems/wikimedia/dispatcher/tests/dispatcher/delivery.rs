//! From the bus to subscribers: each matching change once per subscription, in its
//! format, in order, into `sub.<name>` and into Redis; other messages ignored; and
//! nothing lost or reordered while Redis is killed and restarted mid-delivery.

use std::time::Duration;

use flotilla_wikimedia_core::OutputFormat;
use flotilla_wikimedia_dispatcher::{ControlLimits, DispatcherSettings};
use flotilla_wikimedia_source::sample::{canary_event, recorded_events, synthetic_event};

use crate::support::{Harness, RedisServer, TestCa, rendered};

#[tokio::test]
async fn matching_changes_reach_redis_and_the_bus_once_each_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let harness = Harness::start(Some(redis.url()), ControlLimits::default()).await;
    let mut c = harness.client().await;
    // `wide` matches every wikidatawiki change twice over (a whole-wiki definition and
    // a title regex): it must still get each change once.
    c.subscribe_and_auth("wide").await;
    assert_eq!(
        c.ask(r#"insert json [{"wiki":"www.wikidata.org"},{"wiki":"wikidatawiki","page_rx":"^Q"},{"wiki":"kowiki","user":"廢后"}]"#)
            .await,
        "3"
    );
    let mut j = harness.client().await;
    j.subscribe_and_auth("bots-json").await;
    assert_eq!(j.ask(r#"insert json [{"wiki":"enwiki","flags":["bot"]},{"wiki":"commons_wikimedia"}]"#).await, "2");
    assert_eq!(j.ask("format json").await, "OK");

    let mut events = recorded_events();
    events.extend((0..200).map(synthetic_event));
    events.push(canary_event(1));
    harness.publish_events(&events).await;
    // A message from something else on the same queue is skipped.
    harness
        .bus
        .publish("reactor", vec![bytes::Bytes::from_static(br#"{"plugin":"pulse","subject":"tick"}"#)])
        .await
        .unwrap();

    let wide_expected: Vec<String> = events
        .iter()
        .filter(|e| e.contains(r#""wiki":"wikidatawiki""#) || e.contains(r#""user":"廢后""#))
        .map(|e| rendered(e, OutputFormat::Pipe))
        .collect();
    let json_expected: Vec<String> = events
        .iter()
        .filter(|e| {
            let v: serde_json::Value = serde_json::from_str(e).unwrap();
            v["meta"]["domain"] != "canary"
                && ((v["wiki"] == "enwiki" && v["bot"] == true) || v["wiki"] == "commonswiki")
        })
        .map(|e| rendered(e, OutputFormat::Json))
        .collect();
    assert!(wide_expected.len() > 50 && json_expected.len() > 10);

    assert_eq!(redis.drain("wide", wide_expected.len()).await, wide_expected);
    assert_eq!(redis.drain("bots-json", json_expected.len()).await, json_expected);
    assert_eq!(harness.queue("sub.wide", wide_expected.len()).await, wide_expected);
    assert_eq!(harness.queue("sub.bots-json", json_expected.len()).await, json_expected);
    // The recorded 4th event (kowiki) in pipe form, exactly as SPEC §6.4 writes it.
    assert!(wide_expected.contains(&"kowiki|사용자:廢后|廢后|edit|30281462|57282722|0|".to_string()));

    let counters = harness.dispatcher().shared().counters.snapshot();
    assert_eq!(counters["changes"], events.len() as u64 - 1, "{counters}"); // Not the canary…
    assert_eq!(counters["skipped"], 1, "{counters}"); // …and the pulse message skipped.
    harness.stop().await;
}

#[tokio::test]
async fn redis_killed_and_restarted_mid_delivery_loses_nothing_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(&dir.path().join("redis"));
    let harness = Harness::start(Some(redis.url()), ControlLimits::default()).await;
    let mut c = harness.client().await;
    c.subscribe_and_auth("all").await;
    let everything =
        r#"insert json [{"wiki":"enwiki"},{"wiki":"dewiki"},{"wiki":"wikidatawiki"},{"wiki":"commonswiki"}]"#;
    assert_eq!(c.ask(everything).await, "4");

    let events: Vec<String> = (0..3000).map(synthetic_event).collect();
    let expected: Vec<String> = events.iter().map(|e| rendered(e, OutputFormat::Pipe)).collect();
    // Changes keep arriving in small batches while Redis is killed (SIGKILL) and,
    // later, started again on the same port and data.
    let feeder = {
        let bus = harness.bus.clone();
        let events = events.clone();
        tokio::spawn(async move {
            for chunk in events.chunks(30) {
                let payloads = chunk
                    .iter()
                    .filter_map(|e| flotilla_wikimedia_source::change_message(e.as_bytes()).unwrap())
                    .map(|mut m| {
                        m.stamp("testhost", std::time::SystemTime::now());
                        bytes::Bytes::from(m.to_json())
                    })
                    .collect();
                bus.publish("reactor", payloads).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let failures = harness.dispatcher().shared().counters.snapshot()["redis_failures"].as_u64().unwrap();
    assert!(failures > 0, "the worker noticed Redis was gone");
    redis.restart();
    feeder.await.unwrap();

    let received = redis.drain("all", expected.len()).await;
    // Every change arrived, in order. A batch whose answer was lost when Redis died
    // may arrive twice (at-least-once); nothing else may.
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<&String> = received.iter().filter(|r| seen.insert(r.as_str())).collect();
    assert_eq!(firsts.len(), expected.len(), "nothing lost");
    assert!(firsts.iter().zip(&expected).all(|(a, b)| *a == b), "order kept");
    assert!(received.len() - expected.len() <= 4096, "at most one batch repeated");
    harness.stop().await;
}

#[tokio::test]
async fn deliveries_made_while_redis_is_down_wait_on_the_bus_until_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(&dir.path().join("redis"));
    let url = redis.url();
    redis.kill();
    let mut harness = Harness::start(Some(url), ControlLimits::default()).await;
    let mut c = harness.client().await;
    c.subscribe_and_auth("later").await;
    assert_eq!(c.ask(r#"insert json [{"wiki":"dewiki"}]"#).await, "1");
    let events: Vec<String> = (0..40).map(synthetic_event).collect();
    harness.publish_events(&events).await;
    let expected: Vec<String> =
        events.iter().filter(|e| e.contains(r#""wiki":"dewiki""#)).map(|e| rendered(e, OutputFormat::Pipe)).collect();
    // The bus queue has them at once; Redis cannot.
    assert_eq!(harness.queue("sub.later", expected.len()).await, expected);
    drop(c);
    // The node stops and starts again; only then is Redis back.
    harness.restart().await;
    redis.restart();
    assert_eq!(redis.drain("later", expected.len()).await, expected);
    harness.stop().await;
}

#[tokio::test]
async fn deliveries_reach_a_redis_over_tls_trusting_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "redis");
    let redis = RedisServer::start_tls(&dir.path().join("redis"), &ca);
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    let harness = Harness::start_adjusted(Some(redis.url()), |s| s.redis_tls_ca = Some(ca.cert.clone())).await;
    let mut c = harness.client().await;
    c.subscribe_and_auth("secure").await;
    assert_eq!(c.ask(r#"insert json [{"wiki":"dewiki"}]"#).await, "1");
    let events: Vec<String> = (0..40).map(synthetic_event).collect();
    harness.publish_events(&events).await;
    let expected: Vec<String> =
        events.iter().filter(|e| e.contains(r#""wiki":"dewiki""#)).map(|e| rendered(e, OutputFormat::Pipe)).collect();
    assert!(!expected.is_empty());
    assert_eq!(redis.drain("secure", expected.len()).await, expected);
    harness.stop().await;
}

#[tokio::test]
async fn a_redis_certificate_the_ca_did_not_sign_refuses_the_start_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "redis");
    let other = TestCa::new(dir.path(), "other");
    let redis = RedisServer::start_tls(&dir.path().join("redis"), &ca);
    let url = redis.url().replace("rediss://", "rediss://:hunter2@");
    // With the wrong CA, and with none (the system's roots never signed it).
    for ca in [Some(other.cert.clone()), None] {
        let store = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}/store.db", store.path().display());
        let mut harness = Harness::prepare(
            store,
            &store_url,
            DispatcherSettings { redis_url: Some(url.clone()), redis_tls_ca: ca.clone(), ..Default::default() },
        )
        .await;
        let error = format!("{:#}", harness.try_launch().await.unwrap_err());
        let shown = format!("rediss://:***@127.0.0.1:{}/0", redis.port);
        assert!(error.contains(&format!("Redis at {shown}: a TLS certificate problem")), "{ca:?}: {error}");
        assert!(error.contains("UnknownIssuer") && error.contains("redis.tls_ca"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
