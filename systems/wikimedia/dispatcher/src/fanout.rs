//! The subscription queues: a second consumer of the delivery queue `dispatch.redis`
//! (group `subscriptions`, beside the Redis worker's group `redis`) copies each
//! delivery's payload into bus queue `sub.<name>`, where the HTTP event stream and
//! `flotilla tail` read it.
//!
//! Why a stage of its own: a batch of changes reaches hundreds of subscriptions, and
//! every queue a batch appends to costs the bus a write and an fsync. Done by the
//! matcher, that was up to one fsync per subscription per 1,024 changes on the hot
//! path. Here the batches are as large as the backlog (up to [`BATCH`] deliveries), so
//! under load each `sub.<name>` is synced once per many changes, and the matcher's
//! pace does not depend on how many subscriptions a change reaches.
//!
//! Guarantees: at-least-once and in order per subscription. A batch's appends are
//! durable before its entries are acknowledged; a crash in between repeats them.
//!
//! A purge entry (a subscription was deleted) deletes its `sub.<name>` queue before
//! the batch's appends are made, and deliveries for a subscription deleted since they
//! were matched are dropped: whoever takes the name next finds the queue empty.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use flotilla_bus::stage::{DRAIN_GRACE, Outputs, Stage, Work};
use flotilla_bus::{Bus, BusError, Delivery};
use flotilla_wikimedia_core::Subscriptions;
use tokio_util::sync::CancellationToken;

use crate::matcher::{DELIVERY_QUEUE, DeliveryEntry, subscription_queue};
use crate::state::Shared;

/// The consumer group the fan-out reads the delivery queue in.
pub const GROUP: &str = "subscriptions";
/// Most deliveries copied per batch.
const BATCH: usize = 65_536;

/// Runs the fan-out until `shutdown`; the batch in hand is finished first.
///
/// A bus stage ([`flotilla_bus::stage`]), one batch at a time: the batch's purges are
/// done, then every `sub.<name>` queue of the batch is appended at once (their appends
/// share the bus's commits), then the batch is acknowledged.
pub async fn run(bus: Arc<dyn Bus>, shared: Arc<Shared>, shutdown: CancellationToken) {
    let stage = Stage::new("fan-out", DELIVERY_QUEUE, GROUP, BATCH);
    let mut work = FanOut { shared, bus: bus.clone() };
    let _closed = stage.run_draining(bus, |_: &[Delivery]| (), &mut work, &shutdown, DRAIN_GRACE).await;
}

/// The fan-out's work on a batch: its entries, by subscription queue.
struct FanOut {
    shared: Arc<Shared>,
    bus: Arc<dyn Bus>,
}

impl Work for FanOut {
    type Prepared = ();
    type Done = u64;
    type Error = BusError;

    async fn process(&mut self, batch: &[Delivery], _: &mut (), outputs: &mut Outputs) -> Result<u64, BusError> {
        let sorted = by_queue(batch, &self.shared.read());
        if sorted.stale > 0 {
            self.shared.counters.stale_dropped.fetch_add(sorted.stale, Ordering::Relaxed);
        }
        // Every delivery of the batch for a purged name is the new owner's (the old
        // one's are stale), so the purges go first. Done again on a retry: deleting a
        // deleted queue is a no-op.
        for queue in &sorted.purges {
            self.bus.delete_queue(queue).await?;
            tracing::info!(%queue, "Deleted the queue of a deleted subscription.");
        }
        outputs.append(Outputs::from(sorted.queues));
        Ok(outputs.len() as u64)
    }

    fn acknowledged(&mut self, copied: u64) {
        self.shared.counters.queued.fetch_add(copied, Ordering::Relaxed);
    }
}

/// A batch of delivery-queue entries, sorted.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Payloads by `sub.<name>` queue, in order.
    pub queues: BTreeMap<String, Vec<Bytes>>,
    /// The `sub.<name>` queues of deleted subscriptions.
    pub purges: Vec<String>,
    /// Deliveries dropped because their subscription has been deleted since.
    pub stale: u64,
}

/// Sorts a batch of delivery-queue entries by their `sub.<name>` queue, in order,
/// keeping only deliveries whose subscription still exists. An entry that does not
/// decode (the queue was written by hand) is skipped with a warning: there is no
/// subscription to give it to.
pub fn by_queue(batch: &[Delivery], subscriptions: &Subscriptions) -> Sorted {
    let mut sorted = Sorted::default();
    for delivery in batch {
        match serde_json::from_slice::<DeliveryEntry<'_>>(&delivery.payload) {
            Ok(entry) if entry.purge => sorted.purges.push(subscription_queue(&entry.subscription)),
            Ok(entry) if !entry.is_current(subscriptions) => sorted.stale += 1,
            Ok(entry) => {
                let payload = Bytes::copy_from_slice(entry.payload.as_bytes());
                sorted.queues.entry(subscription_queue(&entry.subscription)).or_default().push(payload);
            }
            Err(error) => {
                tracing::warn!(seq = delivery.seq, %error, queue = DELIVERY_QUEUE, "Skipped an entry that is not a delivery.");
            }
        }
    }
    sorted
}

#[cfg(test)]
mod tests {
    use flotilla_wikimedia_core::{Incarnation, SubscriptionBackend, SubscriptionName};

    use super::*;

    fn delivery(seq: u64, payload: Bytes) -> Delivery {
        Delivery { id: flotilla_bus::DeliveryId::Seq(seq), seq, timestamp_ms: 0, payload }
    }

    #[test]
    fn entries_go_to_their_subscription_queues_in_order_and_garbage_and_stale_ones_are_skipped() {
        let mut subscriptions = Subscriptions::new(flotilla_wikimedia_core::Wikis::embedded());
        let incarnation = |subscriptions: &mut Subscriptions, name: &str| {
            subscriptions.subscribe(SubscriptionName::parse(name).unwrap(), None).unwrap();
            subscriptions.incarnation(name).unwrap()
        };
        let (a, b) = (incarnation(&mut subscriptions, "a"), incarnation(&mut subscriptions, "b"));
        let gone = Incarnation(a.0.wrapping_add(1));
        let batch = vec![
            delivery(1, DeliveryEntry::encode("a", a, "one")),
            delivery(2, DeliveryEntry::encode("b", b, "<x>&amp;</x>")),
            delivery(3, Bytes::from_static(b"not an entry")),
            delivery(4, DeliveryEntry::encode("a", gone, "the previous owner's")),
            delivery(5, DeliveryEntry::encode_purge("c")),
            delivery(6, DeliveryEntry::encode("a", a, "two \"quoted\"")),
        ];
        let sorted = by_queue(&batch, &subscriptions);
        let text = |q: &str| -> Vec<String> {
            sorted.queues[q].iter().map(|p| String::from_utf8(p.to_vec()).unwrap()).collect()
        };
        assert_eq!(sorted.queues.len(), 2);
        assert_eq!(text("sub.a"), ["one", "two \"quoted\""]);
        assert_eq!(text("sub.b"), ["<x>&amp;</x>"]);
        assert_eq!((sorted.purges, sorted.stale), (vec!["sub.c".to_string()], 1));
    }
}
