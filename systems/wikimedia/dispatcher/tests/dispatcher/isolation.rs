//! What one subscriber can do to the others and to whoever takes its name next: a
//! subscription named after a Redis key of another type is parked (its deliveries kept
//! on the bus) while every other subscription gets each change exactly once; and a
//! deleted subscription's queue and Redis list are purged, so a new owner of the name
//! sees nothing of the old one's, even of deliveries still waiting for Redis.

use flotilla_wikimedia_core::OutputFormat;
use flotilla_wikimedia_dispatcher::ControlLimits;
use flotilla_wikimedia_source::sample::synthetic_event;

use crate::support::{Harness, RedisServer, list, rendered};

fn on_wiki(events: &[String], wiki: &str) -> Vec<String> {
    let needle = format!(r#""wiki":"{wiki}""#);
    events.iter().filter(|e| e.contains(&needle)).map(|e| rendered(e, OutputFormat::Pipe)).collect()
}

async fn redis_command(redis: &RedisServer, args: &[&str]) {
    let mut connection = redis.connection().await;
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    let _: redis::Value = command.query_async(&mut connection).await.unwrap();
}

#[tokio::test]
async fn a_key_of_another_type_is_parked_while_every_other_subscription_gets_each_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    // Another application's hash, where subscription `taken` would push.
    redis_command(&redis, &["HSET", "taken", "owner", "someone else"]).await;
    let mut harness = Harness::start(Some(redis.url()), ControlLimits::default()).await;
    let mut c = harness.client().await;
    for name in ["first", "taken", "last"] {
        c.subscribe_and_auth(name).await;
        assert_eq!(c.ask(r#"insert json [{"wiki":"dewiki"}]"#).await, "1");
    }

    // Three rounds, each settled, so the bad key is met in batch after batch.
    let events: Vec<String> = (0..90).map(synthetic_event).collect();
    for round in events.chunks(30) {
        harness.publish_events(round).await;
        harness.settle().await;
    }
    let expected = on_wiki(&events, "dewiki");
    assert!(expected.len() > 10);
    for healthy in ["first", "last"] {
        assert_eq!(list(&redis, healthy).await, expected, "{healthy}: each change exactly once, in order");
    }
    // The bad key is parked and reported, with its deliveries waiting on the bus.
    let status = harness.dispatcher().shared().status();
    assert_eq!(status["redis_parked"], 1, "{status:#}");
    assert_eq!(status["redis_parked_keys"], serde_json::json!(["taken"]), "{status:#}");
    // Without the admin token, the count shows and the name (a subscription's) does not.
    let public = flotilla_service::RunningService::public_status(harness.dispatcher());
    assert_eq!((public["redis_parked"].clone(), public.get("redis_parked_keys")), (serde_json::json!(1), None));
    assert_eq!(status["redis_pushed"], 2 * expected.len() as u64, "{status:#}");
    let mut connection = redis.connection().await;
    let kind: String = redis::cmd("TYPE").arg("taken").query_async(&mut connection).await.unwrap();
    assert_eq!(kind, "hash", "the other application's key is left alone");

    // Parked deliveries survive a restart of the dispatcher.
    harness.restart().await;
    harness.status_until("parked again after the restart", |s| s["redis_parked"] == 1).await;

    // Once the key is free, the parked deliveries drain, in order, and the key is
    // no longer parked.
    redis_command(&redis, &["DEL", "taken"]).await;
    harness.status_until("drained", |s| s["redis_parked"] == 0).await;
    assert_eq!(list(&redis, "taken").await, expected);

    // From then on, everyone gets each new change once.
    let more: Vec<String> = (90..150).map(synthetic_event).collect();
    harness.publish_events(&more).await;
    harness.settle().await;
    let all: Vec<String> = expected.iter().cloned().chain(on_wiki(&more, "dewiki")).collect();
    for name in ["first", "taken", "last"] {
        assert_eq!(list(&redis, name).await, all, "{name}");
    }
    harness.stop().await;
}

#[tokio::test]
async fn deleting_a_parked_subscription_drops_what_waited_and_leaves_the_other_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    redis_command(&redis, &["HSET", "taken", "owner", "someone else"]).await;
    let harness = Harness::start(Some(redis.url()), ControlLimits::default()).await;
    let mut c = harness.client().await;
    c.subscribe_and_auth("taken").await;
    assert_eq!(c.ask(r#"insert json [{"wiki":"dewiki"}]"#).await, "1");
    harness.publish_events(&(0..20).map(synthetic_event).collect::<Vec<_>>()).await;
    harness.settle().await;
    assert_eq!(harness.dispatcher().shared().status()["redis_parked"], 1);

    assert_eq!(c.ask("unsubscribe").await, "OK");
    harness.settle().await;
    assert_eq!(harness.dispatcher().shared().status()["redis_parked"], 0);
    let queues: Vec<String> = harness.bus.stats().await.unwrap().into_iter().map(|q| q.queue).collect();
    assert!(!queues.iter().any(|q| q.starts_with("dispatch.parked.") || q == "sub.taken"), "{queues:?}");
    let mut connection = redis.connection().await;
    let kind: String = redis::cmd("TYPE").arg("taken").query_async(&mut connection).await.unwrap();
    assert_eq!(kind, "hash", "a purge deletes lists only: this key was never the dispatcher's");
    harness.stop().await;
}

#[tokio::test]
async fn with_a_key_prefix_lists_are_pushed_and_purged_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    redis_command(&redis, &["HSET", "plain", "owner", "someone else"]).await;
    let harness = Harness::start_adjusted(Some(redis.url()), |s| s.redis_key_prefix = "dispatch:".to_string()).await;
    let mut c = harness.client().await;
    c.subscribe_and_auth("plain").await;
    assert_eq!(c.ask(r#"insert json [{"wiki":"dewiki"}]"#).await, "1");
    let events: Vec<String> = (0..20).map(synthetic_event).collect();
    harness.publish_events(&events).await;
    harness.settle().await;
    assert_eq!(list(&redis, "dispatch:plain").await, on_wiki(&events, "dewiki"));
    assert_eq!(harness.dispatcher().shared().status()["redis_parked"], 0);

    assert_eq!(c.ask("unsubscribe").await, "OK");
    harness.settle().await;
    let mut connection = redis.connection().await;
    let exists: u64 = redis::cmd("EXISTS").arg("dispatch:plain").query_async(&mut connection).await.unwrap();
    assert_eq!(exists, 0, "purged");
    let kind: String = redis::cmd("TYPE").arg("plain").query_async(&mut connection).await.unwrap();
    assert_eq!(kind, "hash");
    harness.stop().await;
}

#[tokio::test]
async fn a_name_taken_again_sees_nothing_of_its_previous_owner() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let harness = Harness::start(Some(redis.url()), ControlLimits::default()).await;
    let mut old = harness.client().await;
    old.subscribe_and_auth("reused").await;
    assert_eq!(old.ask(r#"insert json [{"wiki":"dewiki"}]"#).await, "1");
    let before: Vec<String> = (0..40).map(synthetic_event).collect();
    harness.publish_events(&before).await;
    harness.settle().await;
    let old_data = on_wiki(&before, "dewiki");
    assert_eq!(list(&redis, "reused").await, old_data);
    assert_eq!(harness.queue("sub.reused", old_data.len()).await, old_data);
    assert_eq!(old.ask("unsubscribe").await, "OK");

    let mut new = harness.client().await;
    new.subscribe_and_auth("reused").await;
    assert_eq!(new.ask(r#"insert json [{"wiki":"enwiki"}]"#).await, "1");
    let after: Vec<String> = (40..80).map(synthetic_event).collect();
    harness.publish_events(&after).await;
    harness.settle().await;
    let new_data = on_wiki(&after, "enwiki");
    assert_eq!(list(&redis, "reused").await, new_data, "the Redis list holds only the new owner's changes");
    assert_eq!(harness.queue("sub.reused", new_data.len()).await, new_data, "so does the bus queue");
    harness.stop().await;
}

#[tokio::test]
async fn deliveries_still_waiting_for_redis_are_dropped_with_their_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(&dir.path().join("redis"));
    let url = redis.url();
    redis.kill();
    let harness = Harness::start(Some(url), ControlLimits::default()).await;
    let mut old = harness.client().await;
    old.subscribe_and_auth("reused").await;
    assert_eq!(old.ask(r#"insert json [{"wiki":"dewiki"}]"#).await, "1");
    let before: Vec<String> = (0..40).map(synthetic_event).collect();
    harness.publish_events(&before).await;
    // The bus queue has them at once; Redis, being down, has nothing yet.
    let old_data = on_wiki(&before, "dewiki");
    assert_eq!(harness.queue("sub.reused", old_data.len()).await, old_data);
    assert_eq!(old.ask("unsubscribe").await, "OK");

    let mut new = harness.client().await;
    new.subscribe_and_auth("reused").await;
    assert_eq!(new.ask(r#"insert json [{"wiki":"enwiki"}]"#).await, "1");
    let after: Vec<String> = (40..80).map(synthetic_event).collect();
    harness.publish_events(&after).await;
    redis.restart();
    harness.settle().await;
    let new_data = on_wiki(&after, "enwiki");
    assert_eq!(list(&redis, "reused").await, new_data, "none of the old owner's waiting deliveries");
    assert_eq!(harness.queue("sub.reused", new_data.len()).await, new_data);
    harness.stop().await;
}
