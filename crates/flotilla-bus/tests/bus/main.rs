//! The bus's behaviour through the public `Bus` trait. The conformance tests run on
//! every backend (embedded, Redis and NATS, see `support::conformance!`); the rest are the
//! embedded engine's own (segment files, its lock, its retention) and its named crash
//! scenarios on the simulated disk (`crash.rs`). The proptest model lives in
//! `model.rs`, the bus stage's tests in `stage.rs`, NATS's own in `nats_bus.rs`, Redis's
//! own (kill -9 of Redis, claims after the lease, retention, server checks) in
//! `redis_bus.rs`, the fleet's membership and fenced leases on Redis in `fleet.rs`.

mod crash;
mod fleet;
mod model;
mod nats_bus;
mod redis_bus;
mod stage;
mod support;

use std::time::Duration;

use flotilla_bus::{Bus, BusError, EmbeddedBus, EmbeddedOptions, ReadFrom};
use support::*;

conformance!(
    publish_then_consume_in_order,
    acknowledged_messages_are_not_delivered_again_after_reopening,
    a_new_group_starts_at_the_oldest_message_and_groups_are_independent,
    consumers_of_one_group_share_work_and_a_departed_consumers_messages_come_back_first,
    fetch_waits_for_new_messages_and_times_out_empty,
    readers_follow_without_consuming,
    bad_names_and_oversized_messages_are_refused_with_a_reason,
    many_concurrent_publishers_keep_each_publishers_order,
    a_commit_touching_many_queues_keeps_each_in_order,
    a_deleted_queue_comes_back_empty_and_leaves_the_others_alone,
);

async fn publish_then_consume_in_order(backend: &dyn Backend) {
    let bus = backend.open().await;
    let range = bus.publish("reactor", payloads(0..3)).await.unwrap();
    assert_eq!(range, 0..3);
    assert_eq!(bus.publish("reactor", payloads(3..5)).await.unwrap(), 3..5);
    let mut consumer = bus.subscribe("reactor", "g").await.unwrap();
    let got = fetch_all(consumer.as_mut(), 5).await;
    assert_eq!(texts(&got), names(0..5));
    if backend.numbers_deliveries() {
        assert_eq!(got.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    }
    bus.close().await.unwrap();
}

async fn acknowledged_messages_are_not_delivered_again_after_reopening(backend: &dyn Backend) {
    {
        let bus = backend.open().await;
        bus.publish("q", payloads(0..10)).await.unwrap();
        let mut consumer = bus.subscribe("q", "g").await.unwrap();
        let got = fetch_all(consumer.as_mut(), 6).await;
        // Acknowledge 0..4 and 5, but not 4: the group must resume at 4.
        let ids: Vec<_> = got.iter().filter(|d| &d.payload[..] != b"m4").map(|d| d.id.clone()).collect();
        consumer.ack(&ids).await.unwrap();
        drop(consumer);
        bus.close().await.unwrap();
    }
    let bus = backend.open().await;
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    let got = fetch_all(consumer.as_mut(), 6).await;
    // It resumes at the first unacknowledged message. The embedded bus keeps one
    // position per group and delivers m5 again (at-least-once); Redis tracks each entry.
    let again: Vec<String> = texts(&got).into_iter().filter(|t| t != "m5").collect();
    assert_eq!(again, ["m4", "m6", "m7", "m8", "m9"], "resumes at the first unacknowledged message");
    let stats = bus.stats().await.unwrap();
    // Known only where deliveries are numbered (m4 onwards are in flight again).
    assert_eq!(stats[0].groups[0].acked_seq, backend.numbers_deliveries().then_some(3));
    assert_eq!(stats[0].next_seq, 10);
}

async fn a_new_group_starts_at_the_oldest_message_and_groups_are_independent(backend: &dyn Backend) {
    let bus = backend.open().await;
    bus.publish("q", payloads(0..3)).await.unwrap();
    let mut a = bus.subscribe("q", "a").await.unwrap();
    let got = fetch_all(a.as_mut(), 3).await;
    a.ack(&ids(&got)).await.unwrap();
    let mut b = bus.subscribe("q", "b").await.unwrap();
    assert_eq!(texts(&fetch_all(b.as_mut(), 3).await), names(0..3));
}

async fn consumers_of_one_group_share_work_and_a_departed_consumers_messages_come_back_first(backend: &dyn Backend) {
    let bus = backend.open().await;
    bus.publish("q", payloads(0..6)).await.unwrap();
    let mut first = bus.subscribe("q", "g").await.unwrap();
    let mut second = bus.subscribe("q", "g").await.unwrap();
    let a = first.fetch(2, Duration::from_secs(1)).await.unwrap();
    let b = second.fetch(2, Duration::from_secs(1)).await.unwrap();
    assert_eq!(texts(&a), names(0..2));
    assert_eq!(texts(&b), names(2..4));
    second.ack(&ids(&b)).await.unwrap();
    drop(first); // Never acknowledged 0 and 1.
    let again = fetch_all(second.as_mut(), 4).await;
    let mut got = texts(&again);
    if !backend.returns_departed_first() {
        got.sort(); // Every one of them, once; not necessarily the departed ones first.
    }
    assert_eq!(got, ["m0", "m1", "m4", "m5"]);
}

async fn fetch_waits_for_new_messages_and_times_out_empty(backend: &dyn Backend) {
    let bus = backend.open().await;
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    assert!(consumer.fetch(10, Duration::from_millis(20)).await.unwrap().is_empty());
    let publisher = bus.clone();
    let waiter = tokio::spawn(async move { consumer.fetch(10, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    publisher.publish("q", payloads(0..1)).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(texts(&got), names(0..1));
}

async fn readers_follow_without_consuming(backend: &dyn Backend) {
    let bus = backend.open().await;
    bus.publish("q", payloads(0..2)).await.unwrap();
    let mut from_start = bus.read("q", ReadFrom::Start).await.unwrap();
    let mut from_end = bus.read("q", ReadFrom::End).await.unwrap();
    bus.publish("q", payloads(2..3)).await.unwrap();
    assert_eq!(texts(&from_start.fetch(10, Duration::from_secs(1)).await.unwrap()), names(0..3));
    assert_eq!(texts(&from_end.fetch(10, Duration::from_secs(1)).await.unwrap()), names(2..3));
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    assert_eq!(texts(&fetch_all(consumer.as_mut(), 3).await), names(0..3), "reading consumed nothing");
}

#[tokio::test]
async fn segments_roll_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { segment_bytes: 200, ..EmbeddedOptions::default() };
    let bus = EmbeddedBus::open(dir.path(), options.clone()).unwrap();
    for i in 0..20 {
        bus.publish("q", payloads(i..i + 1)).await.unwrap();
    }
    let segments = std::fs::read_dir(dir.path().join("q"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"));
    assert!(segments.count() >= 3, "small segments roll");
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    assert_eq!(texts(&fetch_all(consumer.as_mut(), 20).await), names(0..20));
    drop(consumer);
    bus.close().await.unwrap();
    drop(bus);
    let bus = EmbeddedBus::open(dir.path(), options).unwrap();
    let mut reader = bus.read("q", ReadFrom::Start).await.unwrap();
    assert_eq!(texts(&reader.fetch(100, Duration::from_secs(1)).await.unwrap()), names(0..20));
    assert_eq!(bus.publish("q", payloads(20..21)).await.unwrap(), 20..21);
}

#[tokio::test]
async fn retention_removes_only_what_every_group_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = EmbeddedOptions { segment_bytes: 200, ..EmbeddedOptions::default() };
    options.retention.max_bytes = Some(1);
    let bus = EmbeddedBus::open(dir.path(), options).unwrap();
    let mut slow = bus.subscribe("q", "slow").await.unwrap();
    let mut fast = bus.subscribe("q", "fast").await.unwrap();
    for i in 0..20 {
        bus.publish("q", payloads(i..i + 1)).await.unwrap();
    }
    let got = fetch_all(fast.as_mut(), 20).await;
    fast.ack(&ids(&got)).await.unwrap();
    bus.apply_retention().unwrap();
    assert_eq!(bus.stats().await.unwrap()[0].first_seq, 0, "the slow group still needs everything");

    let got = fetch_all(slow.as_mut(), 10).await;
    slow.ack(&ids(&got)).await.unwrap();
    bus.apply_retention().unwrap();
    let stats = bus.stats().await.unwrap();
    assert!(stats[0].first_seq > 0 && stats[0].first_seq <= 10, "removed acknowledged segments: {stats:?}");
    assert_eq!(texts(&fetch_all(slow.as_mut(), 10).await), names(10..20), "nothing unacknowledged was removed");
    let mut reader = bus.read("q", ReadFrom::Start).await.unwrap();
    let first = reader.fetch(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(first[0].seq, stats[0].first_seq);
}

/// What every backend owes `delete_queue`; the embedded bus's own test below also
/// checks its files, its old readers and a reopen.
async fn a_deleted_queue_comes_back_empty_and_leaves_the_others_alone(backend: &dyn Backend) {
    let bus = backend.open().await;
    bus.publish("q", payloads(0..5)).await.unwrap();
    bus.publish("other", payloads(0..2)).await.unwrap();
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    let got = fetch_all(consumer.as_mut(), 3).await;
    consumer.ack(&ids(&got)).await.unwrap();
    drop(consumer);
    bus.delete_queue("q").await.unwrap();
    bus.delete_queue("q").await.unwrap();
    bus.delete_queue("never-was").await.unwrap();
    assert!(matches!(bus.delete_queue("../etc").await, Err(BusError::InvalidQueueName(_))));
    let queues: Vec<String> = bus.stats().await.unwrap().into_iter().map(|q| q.queue).collect();
    assert_eq!(queues, ["other"]);
    bus.publish("q", payloads(10..12)).await.unwrap();
    let mut fresh = bus.subscribe("q", "g").await.unwrap();
    assert_eq!(texts(&fetch_all(fresh.as_mut(), 2).await), names(10..12), "a group of the old name starts afresh");
    let mut other = bus.read("other", ReadFrom::Start).await.unwrap();
    assert_eq!(texts(&other.fetch(100, Duration::from_secs(1)).await.unwrap()), names(0..2), "others untouched");
}

#[tokio::test]
async fn a_deleted_queue_goes_with_its_groups_and_comes_back_empty() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(dir.path(), EmbeddedOptions::default()).unwrap();
    bus.publish("q", payloads(0..5)).await.unwrap();
    bus.publish("other", payloads(0..2)).await.unwrap();
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    let got = fetch_all(consumer.as_mut(), 3).await;
    consumer.ack(&ids(&got)).await.unwrap();
    let mut reader = bus.read("q", ReadFrom::Start).await.unwrap();
    let mut waiting = bus.read("q", ReadFrom::End).await.unwrap();
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        (waiting.fetch(10, Duration::from_secs(30)).await, started.elapsed())
    });

    bus.delete_queue("q").await.unwrap();
    assert!(!dir.path().join("q").exists(), "its directory is gone");
    let (woken, after) = waiter.await.unwrap();
    let error = woken.unwrap_err().to_string();
    assert!(error.contains("queue 'q' was deleted") && after < Duration::from_secs(20), "{error} after {after:?}");
    assert!(reader.fetch(10, Duration::ZERO).await.is_err(), "readers of the old queue fail");
    assert!(consumer.fetch(10, Duration::ZERO).await.is_err(), "so do its consumers");
    let stats = bus.stats().await.unwrap();
    assert_eq!(stats.iter().map(|q| q.queue.as_str()).collect::<Vec<_>>(), ["other"]);
    bus.delete_queue("q").await.unwrap();
    bus.delete_queue("never-was").await.unwrap();
    assert!(matches!(bus.delete_queue("../etc").await, Err(BusError::InvalidQueueName(_))));

    // Published to again, it is a new queue: only the new messages, and a group of the
    // old name starts at its beginning.
    bus.publish("q", payloads(10..12)).await.unwrap();
    let mut fresh = bus.subscribe("q", "g").await.unwrap();
    assert_eq!(texts(&fetch_all(fresh.as_mut(), 2).await), names(10..12));
    drop((fresh, consumer, reader));
    bus.close().await.unwrap();
    drop(bus);
    let bus = EmbeddedBus::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let mut q = bus.read("q", ReadFrom::Start).await.unwrap();
    assert_eq!(texts(&q.fetch(100, Duration::from_secs(1)).await.unwrap()), names(10..12), "after reopening too");
    let mut other = bus.read("other", ReadFrom::Start).await.unwrap();
    assert_eq!(texts(&other.fetch(100, Duration::from_secs(1)).await.unwrap()), names(0..2), "others untouched");
}

#[tokio::test]
async fn a_deletion_a_crash_interrupted_is_finished_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path(), EmbeddedOptions::default()).unwrap();
        bus.publish("q", payloads(0..3)).await.unwrap();
        bus.close().await.unwrap();
    }
    // What a crash right after the deletion was decided leaves: the marker beside the
    // queue's files.
    std::fs::write(dir.path().join("q").join("DELETED"), b"").unwrap();
    let bus = EmbeddedBus::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert!(bus.stats().await.unwrap().is_empty(), "no part of it comes back");
    assert!(!dir.path().join("q").exists());
    assert_eq!(bus.publish("q", payloads(5..6)).await.unwrap(), 0..1, "the name starts afresh");
}

async fn bad_names_and_oversized_messages_are_refused_with_a_reason(backend: &dyn Backend) {
    let bus = backend.open_with(&Settings { max_message_bytes: Some(10) }).await;
    let err = bus.publish("../etc", payloads(0..1)).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidQueueName(_)), "{err}");
    let err = bus.publish("q", vec![bytes::Bytes::from(vec![0u8; 11])]).await.unwrap_err();
    assert_eq!(err.to_string(), "message of 11 bytes exceeds the limit of 10 bytes");
    assert!(bus.subscribe("q", "").await.is_err());
    assert_eq!(bus.publish("q", payloads(0..1)).await.unwrap(), 0..1, "the queue still works");
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_bus() {
    let dir = tempfile::tempdir().unwrap();
    let _bus = EmbeddedBus::open(dir.path(), EmbeddedOptions::default()).unwrap();
    // flock locks are per open file description, so a second open in this process
    // conflicts exactly as another process would.
    let Err(err) = EmbeddedBus::open(dir.path(), EmbeddedOptions::default()) else { panic!("opened twice") };
    let text = err.to_string();
    assert!(
        text.contains("in use by another process") && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
}

async fn many_concurrent_publishers_keep_each_publishers_order(backend: &dyn Backend) {
    let bus = backend.open().await;
    let mut tasks = Vec::new();
    for p in 0..16 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                bus.publish("q", vec![format!("p{p}-{i}").into()]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counters = bus.counters();
    assert_eq!(counters.published, 800);
    // Publishers waiting at once share syncs.
    assert!(counters.syncs <= counters.publish_batches, "{counters:?}");
    // Per publisher, order is kept.
    let mut reader = bus.read("q", ReadFrom::Start).await.unwrap();
    let all = texts(&reader.fetch(1000, Duration::from_secs(1)).await.unwrap());
    for p in 0..16 {
        let mine: Vec<_> = all.iter().filter(|t| t.starts_with(&format!("p{p}-"))).cloned().collect();
        assert_eq!(mine, (0..50).map(|i| format!("p{p}-{i}")).collect::<Vec<_>>());
    }
}

/// On the embedded bus, a commit touching many queues syncs them all.
async fn a_commit_touching_many_queues_keeps_each_in_order(backend: &dyn Backend) {
    let bus = backend.open().await;
    // Three rounds of appends to 40 queues at once: each round lands in a few commits
    // that sync many files together.
    for round in 0..3 {
        let appends = (0..40).map(|q| {
            let bus = bus.clone();
            async move { bus.publish(&format!("fan.{q}"), payloads(round * 2..round * 2 + 2)).await }
        });
        for result in futures_join_all(appends).await {
            result.unwrap();
        }
    }
    assert!(bus.counters().syncs >= 40 || !backend.counts_syncs());
    bus.close().await.unwrap();
    drop(bus);
    let bus = backend.open().await;
    for q in 0..40 {
        let mut reader = bus.read(&format!("fan.{q}"), ReadFrom::Start).await.unwrap();
        assert_eq!(texts(&reader.fetch(100, Duration::from_secs(1)).await.unwrap()), names(0..6), "queue {q}");
    }
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}
