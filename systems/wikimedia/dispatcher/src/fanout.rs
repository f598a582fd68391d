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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use flotilla_bus::stage::{DRAIN_GRACE, Outputs, Stage, Work};
use flotilla_bus::{Bus, Delivery};
use tokio_util::sync::CancellationToken;

use crate::matcher::{DELIVERY_QUEUE, DeliveryEntry, subscription_queue};
use crate::state::Shared;

/// The consumer group the fan-out reads the delivery queue in.
pub const GROUP: &str = "subscriptions";
/// Most deliveries copied per batch.
const BATCH: usize = 65_536;

/// Runs the fan-out until `shutdown`; the batch in hand is finished first.
///
/// A bus stage ([`flotilla_bus::stage`]), one batch at a time: every `sub.<name>`
/// queue of a batch is appended at once (their appends share the bus's commits), then
/// the batch is acknowledged.
pub async fn run(bus: Arc<dyn Bus>, shared: Arc<Shared>, shutdown: CancellationToken) {
    let stage = Stage::new("fan-out", DELIVERY_QUEUE, GROUP, BATCH);
    let _closed = stage.run_draining(bus, |_: &[Delivery]| (), &mut FanOut { shared }, &shutdown, DRAIN_GRACE).await;
}

/// The fan-out's work on a batch: its entries, by subscription queue.
struct FanOut {
    shared: Arc<Shared>,
}

impl Work for FanOut {
    type Prepared = ();
    type Done = u64;
    type Error = std::convert::Infallible;

    async fn process(&mut self, batch: &[Delivery], _: &mut (), outputs: &mut Outputs) -> Result<u64, Self::Error> {
        outputs.append(Outputs::from(by_queue(batch)));
        Ok(outputs.len() as u64)
    }

    fn acknowledged(&mut self, copied: u64) {
        self.shared.counters.queued.fetch_add(copied, Ordering::Relaxed);
    }
}

/// Groups a batch of delivery-queue entries by their `sub.<name>` queue, in order.
/// An entry that does not decode (the queue was written by hand) is skipped with a
/// warning: there is no subscription to give it to.
pub fn by_queue(batch: &[Delivery]) -> BTreeMap<String, Vec<Bytes>> {
    let mut queues: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
    for delivery in batch {
        match serde_json::from_slice::<DeliveryEntry<'_>>(&delivery.payload) {
            Ok(entry) => {
                let payload = Bytes::copy_from_slice(entry.payload.as_bytes());
                queues.entry(subscription_queue(&entry.subscription)).or_default().push(payload);
            }
            Err(error) => {
                tracing::warn!(seq = delivery.seq, %error, queue = DELIVERY_QUEUE, "Skipped an entry that is not a delivery.");
            }
        }
    }
    queues
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(seq: u64, payload: Bytes) -> Delivery {
        Delivery { id: flotilla_bus::DeliveryId::Seq(seq), seq, timestamp_ms: 0, payload }
    }

    #[test]
    fn entries_go_to_their_subscription_queues_in_order_and_garbage_is_skipped() {
        let batch = vec![
            delivery(1, DeliveryEntry::encode("a", "one")),
            delivery(2, DeliveryEntry::encode("b", "<x>&amp;</x>")),
            delivery(3, Bytes::from_static(b"not an entry")),
            delivery(4, DeliveryEntry::encode("a", "two \"quoted\"")),
        ];
        let queues = by_queue(&batch);
        let text =
            |q: &str| -> Vec<String> { queues[q].iter().map(|p| String::from_utf8(p.to_vec()).unwrap()).collect() };
        assert_eq!(queues.len(), 2);
        assert_eq!(text("sub.a"), ["one", "two \"quoted\""]);
        assert_eq!(text("sub.b"), ["<x>&amp;</x>"]);
    }
}
