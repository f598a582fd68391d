//! The matching consumer: reads the queue the recent-change source writes to (default
//! `reactor`, in its own group `dispatcher`, so the reactor and the dispatcher each see
//! every message), matches each change against the subscriptions, and for every
//! delivery appends an entry (subscription, its incarnation, payload) to the delivery queue
//! `dispatch.redis`; only then does it acknowledge the batch. The delivery queue is
//! the one queue on the hot path, so a batch costs one durable append however many
//! subscriptions it reaches; [`crate::fanout`] and [`crate::redis_delivery`] take the
//! entries from there to `sub.<name>` and to Redis.
//!
//! Only what matching needs is decoded: the message's `plugin` (changes are the
//! messages with `plugin: wikimedia`; everything else on the queue is skipped) and its
//! `event`, borrowed as raw JSON and read by [`parse_change`] without building a tree.
//!
//! The loop is a bus stage ([`flotilla_bus::stage`]) that publishes behind: batch N's
//! deliveries are made durable while batch N+1 is matched.
//!
//! Guarantees: at-least-once and in order. A delivery is durable on the bus before the
//! change is acknowledged; a crash in between repeats the batch's deliveries (each
//! subscription still gets a change once per time it is matched).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use flotilla_bus::stage::{DRAIN_GRACE, Outputs, Stage, Work};
use flotilla_bus::{Bus, Delivery};
use flotilla_wikimedia_core::{Incarnation, MatchScratch, Subscriptions, parse_change};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::state::Shared;

/// The consumer group the matcher reads its source queue in.
pub const GROUP: &str = "dispatcher";
/// The queue of deliveries waiting for Redis.
pub const DELIVERY_QUEUE: &str = "dispatch.redis";
/// The `plugin` of messages that carry a recent change.
pub const CHANGE_PLUGIN: &str = "wikimedia";
/// Most messages matched per batch.
const BATCH: usize = 4096;

/// The prefix of the bus queues subscriptions' changes go to.
const SUBSCRIPTION_QUEUE_PREFIX: &str = "sub.";

/// The bus queue a subscription's changes go to: `sub.<name>`.
pub fn subscription_queue(name: &str) -> String {
    format!("{SUBSCRIPTION_QUEUE_PREFIX}{name}")
}

/// Whether a bus queue is a subscription's ([`subscription_queue`]).
pub fn is_subscription_queue(queue: &str) -> bool {
    queue.starts_with(SUBSCRIPTION_QUEUE_PREFIX)
}

/// What the matcher reads of a message.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    plugin: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
}

/// One entry of the delivery queue: a delivery (which subscription, which incarnation
/// of it, what to push), or the purge of a deleted subscription ([`Shared::mutate`]
/// records one). Both consumers of the queue take the entries in order, so a purge
/// comes after every delivery matched before the deletion, and before every delivery
/// for a subscription that takes the name next.
///
/// [`Shared::mutate`]: crate::state::Shared::mutate
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct DeliveryEntry<'a> {
    #[serde(borrow)]
    pub subscription: std::borrow::Cow<'a, str>,
    /// The [`Incarnation`](flotilla_wikimedia_core::Incarnation) the delivery was
    /// matched for; absent in entries written before it existed (those are delivered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    #[serde(borrow, default)]
    pub payload: std::borrow::Cow<'a, str>,
    /// A purge: delete the subscription's `sub.<name>` queue and Redis list.
    #[serde(default, skip_serializing_if = "is_false")]
    pub purge: bool,
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

impl DeliveryEntry<'_> {
    /// A delivery as the delivery queue holds it (a JSON object, so `flotilla tail`
    /// shows it readably).
    pub fn encode(subscription: &str, incarnation: Incarnation, payload: &str) -> Bytes {
        let entry = DeliveryEntry {
            subscription: subscription.into(),
            incarnation: Some(incarnation.0),
            payload: payload.into(),
            purge: false,
        };
        // Serializing strings and a number into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(&entry).unwrap_or_default())
    }

    /// The purge of deleted subscription `subscription`.
    pub fn encode_purge(subscription: &str) -> Bytes {
        let entry =
            DeliveryEntry { subscription: subscription.into(), incarnation: None, payload: "".into(), purge: true };
        Bytes::from(serde_json::to_vec(&entry).unwrap_or_default())
    }

    /// Whether the subscription this delivery was matched for still exists: a
    /// delivery for a deleted subscription is dropped, whoever has its name now.
    pub fn is_current(&self, subscriptions: &Subscriptions) -> bool {
        match self.incarnation {
            Some(incarnation) => subscriptions.incarnation(&self.subscription) == Some(Incarnation(incarnation)),
            None => true,
        }
    }
}

/// What matching one batch produced.
#[derive(Debug, Default)]
pub struct Matched {
    /// Delivery-queue entries, in change order.
    pub entries: Vec<Bytes>,
    /// Changes looked at.
    pub changes: u64,
    /// Messages that were not changes (or not readable ones).
    pub skipped: u64,
}

/// Matches a batch of bus messages (pure apart from the read lock).
pub fn match_batch(shared: &Shared, batch: &[Delivery], scratch: &mut MatchScratch) -> Matched {
    let mut matched = Matched::default();
    let subscriptions = shared.read();
    let mut changes = Vec::with_capacity(batch.len());
    for delivery in batch {
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(&delivery.payload) else {
            matched.skipped += 1;
            continue;
        };
        let (Some(plugin), Some(event)) = (envelope.plugin, envelope.event) else {
            matched.skipped += 1;
            continue;
        };
        if plugin != CHANGE_PLUGIN {
            matched.skipped += 1;
            continue;
        }
        let change = match parse_change(event.get().as_bytes()) {
            Ok(change) => change,
            Err(error) => {
                tracing::warn!(seq = delivery.seq, %error, "A wikimedia message's event is not a recent change; skipped.");
                matched.skipped += 1;
                continue;
            }
        };
        changes.push(change);
    }
    matched.changes = changes.len() as u64;
    // The whole batch at once: the index pipelines its lookups across changes.
    subscriptions.dispatch_each(&changes, scratch, |_, deliveries| {
        for found in deliveries {
            matched.entries.push(DeliveryEntry::encode(found.subscription.as_str(), found.incarnation, &found.payload));
        }
    });
    matched
}

/// Below this many messages a batch is matched on one task.
const SPLIT_AT: usize = 256;

/// Matches a batch with both cores: the second half on another task, the first here,
/// the entries joined in order. Each half has its own scratch memory.
pub async fn match_on_two_tasks(shared: &Arc<Shared>, batch: &[Delivery], scratch: &mut [MatchScratch; 2]) -> Matched {
    if batch.len() < SPLIT_AT {
        return match_batch(shared, batch, &mut scratch[0]);
    }
    let (first, second) = batch.split_at(batch.len() / 2);
    let second = second.to_vec();
    let mut second_scratch = std::mem::take(&mut scratch[1]);
    let other = shared.clone();
    let task = tokio::spawn(async move {
        let matched = match_batch(&other, &second, &mut second_scratch);
        (matched, second_scratch)
    });
    let mut matched = match_batch(shared, first, &mut scratch[0]);
    // The task only matches; it cannot fail unless matching panicked, and then so do we.
    let (rest, second_scratch) = task.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    scratch[1] = second_scratch;
    matched.entries.extend(rest.entries);
    matched.changes += rest.changes;
    matched.skipped += rest.skipped;
    matched
}

/// Runs the matcher on `source` until `shutdown`; the batch in hand is finished first.
///
/// A bus stage ([`flotilla_bus::stage`]) publishing behind: matching batch N+1
/// overlaps making batch N's deliveries durable; deliveries stay in order because
/// batch N+1's publishes start only once batch N's are durable (and batch N is
/// acknowledged). Bus errors are retried after a pause (the bus may be briefly unable
/// to write: a full disk); a closed bus ends it.
pub async fn run(bus: Arc<dyn Bus>, source: String, shared: Arc<Shared>, shutdown: CancellationToken) {
    let stage = Stage::new("matcher", &source, GROUP, BATCH).publish_behind();
    let mut work = Match { shared, scratch: Default::default() };
    let _closed = stage.run_draining(bus, |_: &[Delivery]| (), &mut work, &shutdown, DRAIN_GRACE).await;
}

/// The matcher's work on a batch: match it on two tasks; the entries go to the
/// delivery queue.
struct Match {
    shared: Arc<Shared>,
    scratch: [MatchScratch; 2],
}

/// A batch's figures, counted once it is acknowledged.
struct Counts {
    changes: u64,
    skipped: u64,
    deliveries: u64,
}

impl Work for Match {
    type Prepared = ();
    type Done = Counts;
    type Error = std::convert::Infallible;

    async fn process(&mut self, batch: &[Delivery], _: &mut (), outputs: &mut Outputs) -> Result<Counts, Self::Error> {
        let matched = match_on_two_tasks(&self.shared, batch, &mut self.scratch).await;
        let counts =
            Counts { changes: matched.changes, skipped: matched.skipped, deliveries: matched.entries.len() as u64 };
        outputs.add(DELIVERY_QUEUE, matched.entries);
        Ok(counts)
    }

    fn acknowledged(&mut self, counts: Counts) {
        let counters = &self.shared.counters;
        counters.changes.fetch_add(counts.changes, Ordering::Relaxed);
        counters.skipped.fetch_add(counts.skipped, Ordering::Relaxed);
        counters.deliveries.fetch_add(counts.deliveries, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_entries_round_trip() {
        for (name, payload) in [("bot", "enwiki|A|U|edit|1|2|+3|x"), ("b.2", "<rc title=\"&quot;\">\"</rc>"), ("x", "")]
        {
            let bytes = DeliveryEntry::encode(name, Incarnation(u64::MAX), payload);
            let entry: DeliveryEntry<'_> = serde_json::from_slice(&bytes).unwrap();
            assert_eq!((entry.subscription.as_ref(), entry.payload.as_ref()), (name, payload));
            assert_eq!((entry.incarnation, entry.purge), (Some(u64::MAX), false));
        }
        let purge = DeliveryEntry::encode_purge("gone");
        let purge: DeliveryEntry<'_> = serde_json::from_slice(&purge).unwrap();
        assert_eq!((purge.subscription.as_ref(), purge.purge), ("gone", true));
        // Entries written before incarnations existed still read, as current.
        let old: DeliveryEntry<'_> = serde_json::from_slice(br#"{"subscription":"a","payload":"p"}"#).unwrap();
        assert_eq!((old.incarnation, old.purge), (None, false));
        assert!(old.is_current(&Subscriptions::new(flotilla_wikimedia_core::Wikis::embedded())));
    }
}
