//! The reactor process: the consumer of queue `reactor` (group `reactor`), where
//! connectors' messages land unless configured otherwise. It runs each message through
//! the rule tree, makes the batch's effects durable, and only then acknowledges the
//! batch. A plugin error is recorded on the message (`errmsg`) and never stops the
//! reactor; a payload that is not a message is set aside in queue `reactor.rejected`
//! (nothing is lost) and acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bus::Bus;
use flotilla_core::Message;
use flotilla_reactor::RuleTree;
use tokio_util::sync::CancellationToken;

use crate::effects::NodeEffects;

/// The queue the reactor consumes.
pub const REACTOR_QUEUE: &str = "reactor";
/// Where payloads that are not messages are kept for inspection.
pub const REJECTED_QUEUE: &str = "reactor.rejected";
const GROUP: &str = "reactor";
const BATCH: usize = 4096;

/// The reactor's counters, for status and metrics.
#[derive(Debug, Default)]
pub struct ReactorCounters {
    pub messages: AtomicU64,
    pub rules_fired: AtomicU64,
    pub plugin_errors: AtomicU64,
    pub dropped: AtomicU64,
    pub rejected: AtomicU64,
    /// Unix seconds of the last message, 0 before the first.
    pub last_message_at: AtomicU64,
}

/// Runs the reactor until `shutdown` fires; the batch in hand is finished first.
pub async fn run(
    bus: Arc<dyn Bus>,
    rules: Arc<RuleTree>,
    effects: Arc<NodeEffects>,
    node_name: String,
    idle_warning: Option<Duration>,
    counters: Arc<ReactorCounters>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut consumer = bus.subscribe(REACTOR_QUEUE, GROUP).await?;
    let mut last_message = Instant::now();
    let mut last_warning = Instant::now();
    // The previous batch's publishes, being made durable while this batch runs, and
    // the deliveries to acknowledge once they are.
    let mut in_flight: Option<InFlight> = None;
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = consumer.fetch(BATCH, Duration::from_secs(1)) => batch?,
        };
        if batch.is_empty() {
            finish(in_flight.take(), consumer.as_mut()).await?;
            if let Some(limit) = idle_warning
                && last_message.elapsed() >= limit
                && last_warning.elapsed() >= limit
            {
                last_warning = Instant::now();
                tracing::warn!(
                    "reactor on {node_name} has not received a message in {}",
                    human(last_message.elapsed())
                );
            }
            continue;
        }
        last_message = Instant::now();
        let mut rejected: Vec<Bytes> = Vec::new();
        for delivery in &batch {
            match Message::from_json(&delivery.payload) {
                Ok(message) => {
                    let outcome = rules.run(message, effects.as_ref()).await;
                    counters.rules_fired.fetch_add(outcome.fired.len() as u64, Ordering::Relaxed);
                    counters.plugin_errors.fetch_add(outcome.failures.len() as u64, Ordering::Relaxed);
                    for failure in &outcome.failures {
                        tracing::info!(seq = delivery.seq, rule = failure.rule, plugin = failure.plugin, error = %failure.error, "A reactor plugin failed; recorded in errmsg.");
                    }
                    if outcome.message.is_none() {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    tracing::warn!(seq = delivery.seq, %error, "A payload in the reactor queue is not a message; kept in {REJECTED_QUEUE}.");
                    rejected.push(delivery.payload.clone());
                }
            }
        }
        counters.rejected.fetch_add(rejected.len() as u64, Ordering::Relaxed);
        let mut pending = effects.take_pending();
        if !rejected.is_empty() {
            pending.add(REJECTED_QUEUE, rejected);
        }
        // Publishes stay in order: this batch's start only after the previous batch's
        // are durable (and that batch is acknowledged).
        finish(in_flight.take(), consumer.as_mut()).await?;
        let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
        let bus = bus.clone();
        in_flight = Some(InFlight { publish: tokio::spawn(async move { pending.publish(bus.as_ref()).await }), ids });
        counters.messages.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        counters.last_message_at.store(now, Ordering::Relaxed);
    }
    // Shutting down: the batch in hand is finished and acknowledged.
    finish(in_flight.take(), consumer.as_mut()).await
}

/// A processed batch whose effects are being made durable.
struct InFlight {
    publish: tokio::task::JoinHandle<Result<(), flotilla_bus::BusError>>,
    ids: Vec<flotilla_bus::DeliveryId>,
}

/// Waits until a batch's effects are durable, then acknowledges the batch. If they
/// could not be made durable the batch is not acknowledged: it is delivered again.
async fn finish(in_flight: Option<InFlight>, consumer: &mut dyn flotilla_bus::Consumer) -> anyhow::Result<()> {
    let Some(InFlight { publish, ids }) = in_flight else { return Ok(()) };
    publish.await.map_err(|e| anyhow::anyhow!("the reactor's publishing task failed: {e}"))??;
    consumer.ack(&ids).await?;
    Ok(())
}

fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..=119 => format!("{seconds} seconds"),
        120..=7199 => format!("{} minutes", seconds / 60),
        _ => format!("{} hours", seconds / 3600),
    }
}
