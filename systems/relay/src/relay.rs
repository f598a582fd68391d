//! The relay stage: a consumer (group `relay`) of each queue member connectors emit
//! into. For each report of a member (`report::detect`), each group of that member
//! judges it with its current censor: a report that passes becomes one relayed copy in
//! the outbox of every *other* member (`outbox.<connector>`, which that connector alone
//! drains, in order, posting when its server is reachable: so a slow or dead target
//! holds up no other); a rejected one goes to `review.<group>` with its reason. Both
//! are published durably before the batch is acknowledged (a bus stage).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use flotilla_bus::stage::{DRAIN_GRACE, Outputs, Stage, Work};
use flotilla_bus::{Bus, BusError, Delivery};
use flotilla_core::Message;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::groups::{Group, Groups, review_queue};
use crate::report::{Report, detect, relayed_copy};

/// The consumer group the relay reads member queues in.
pub const GROUP: &str = "relay";
const BATCH: usize = 256;

/// Runs the stage on `queue` until `shutdown`, then drains it.
pub async fn run(bus: Arc<dyn Bus>, queue: String, groups: Arc<Groups>, shutdown: CancellationToken) {
    let stage = Stage::new("relay", &queue, GROUP, BATCH);
    let mut work = Relay { groups };
    if let Err(e) = stage.run_draining(bus, |_: &[Delivery]| (), &mut work, &shutdown, DRAIN_GRACE).await {
        tracing::warn!(%queue, error = %e, "The relay stopped reading its queue.");
    }
}

struct Relay {
    groups: Arc<Groups>,
}

impl Work for Relay {
    type Prepared = ();
    type Done = ();
    type Error = BusError;

    async fn process(&mut self, batch: &[Delivery], _: &mut (), outputs: &mut Outputs) -> Result<(), BusError> {
        for delivery in batch {
            let Ok(message) = Message::from_json(&delivery.payload) else { continue };
            let Some(source) = message.get("key").and_then(Value::as_str) else { continue };
            for group in self.groups.of_connector(source) {
                route(group, source, &message, outputs);
            }
        }
        Ok(())
    }
}

/// What one group does with one message of member `source`.
fn route(group: &Group, source: &str, message: &Message, outputs: &mut Outputs) {
    let Some(member) = group.members.iter().find(|m| m.connector == source) else { return };
    let Some(report) = detect(member.kind, message) else { return };
    group.counters.reports.fetch_add(1, Ordering::Relaxed);
    let censor = group.censor();
    match censor.judge(&report.judged_text()).reason() {
        None => {
            relay(group, source, message, &report, outputs);
            group.counters.relayed.fetch_add(1, Ordering::Relaxed);
        }
        Some(reason) => {
            let mut held = message.clone();
            held.set("group", group.name.as_str());
            held.set("review_reason", reason.as_str());
            held.set("review_source", source);
            held.set("report", serde_json::to_value(&report).unwrap_or(Value::Null));
            outputs.push(&review_queue(&group.name), Bytes::from(held.to_json()));
            group.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(group = %group.name, %source, %reason, "A report went to review.");
        }
    }
}

/// Adds a copy of `report` for every member of `group` but `source`.
pub fn relay(group: &Group, source: &str, original: &Message, report: &Report, outputs: &mut Outputs) {
    let id = original.get("id").and_then(Value::as_str);
    for target in group.members.iter().filter(|m| m.connector != source) {
        let copy = relayed_copy(id, original.get("lastupdate"), report, &group.name, source, target.kind);
        outputs.push(&flotilla_outbox(&target.connector), Bytes::from(copy.to_json()));
    }
}

/// `outbox.<connector>` (flotilla-connector's name for it; services do not depend on
/// that crate).
pub fn flotilla_outbox(connector: &str) -> String {
    format!("outbox.{connector}")
}
