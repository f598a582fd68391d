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

/// The reactor: what it needs to run.
pub struct Reactor {
    pub bus: Arc<dyn Bus>,
    pub rules: Arc<RuleTree>,
    pub effects: Arc<NodeEffects>,
    pub node_name: String,
    /// Warn when no message arrived for this long.
    pub idle_warning: Option<Duration>,
    pub counters: Arc<ReactorCounters>,
}

/// A fetched batch and its messages, being decoded on another task.
struct Decoding {
    deliveries: Vec<flotilla_bus::Delivery>,
    messages: tokio::task::JoinHandle<Vec<Result<Message, flotilla_core::MessageError>>>,
}

impl Decoding {
    fn start(deliveries: Vec<flotilla_bus::Delivery>) -> Decoding {
        let payloads: Vec<Bytes> = deliveries.iter().map(|d| d.payload.clone()).collect();
        let messages = tokio::spawn(async move { payloads.iter().map(|p| Message::from_json(p)).collect() });
        Decoding { deliveries, messages }
    }
}

impl Reactor {
    /// Runs until `shutdown` fires; the batches in hand are finished and acknowledged.
    ///
    /// Three batches are in the air at once, so the stages use both cores: batch N+1
    /// is decoded on another task while the rules run on batch N, while batch N-1's
    /// publishes are being made durable. Publishes stay in order (a batch's start only
    /// after the previous batch's are durable) and a batch is acknowledged only after
    /// its publishes are durable.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut consumer = self.bus.subscribe(REACTOR_QUEUE, GROUP).await?;
        let mut last_message = Instant::now();
        let mut last_warning = Instant::now();
        let mut decoding: Option<Decoding> = None;
        let mut in_flight: Option<InFlight> = None;
        loop {
            // With a batch already decoding, take only what is there now.
            let wait = if decoding.is_some() { Duration::ZERO } else { Duration::from_secs(1) };
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = consumer.fetch(BATCH, wait) => batch?,
            };
            let next = (!batch.is_empty()).then(|| Decoding::start(batch));
            match decoding.take() {
                Some(current) => {
                    last_message = Instant::now();
                    let mut processed = self.process(current).await?;
                    finish(in_flight.take(), consumer.as_mut()).await?;
                    processed.start_publishing();
                    in_flight = Some(processed);
                }
                None if next.is_none() => {
                    finish(in_flight.take(), consumer.as_mut()).await?;
                    self.warn_if_idle(last_message, &mut last_warning);
                }
                None => {}
            }
            decoding = next;
        }
        // Shutting down: finish what was fetched, then acknowledge it.
        if let Some(current) = decoding.take() {
            let processed = self.process(current).await?;
            finish(in_flight.take(), consumer.as_mut()).await?;
            in_flight = Some(processed);
        }
        finish(in_flight.take(), consumer.as_mut()).await
    }

    /// Runs the rules on a decoded batch and starts making its publishes durable.
    async fn process(&self, decoding: Decoding) -> anyhow::Result<InFlight> {
        let messages = decoding.messages.await.map_err(|e| anyhow::anyhow!("decoding a batch failed: {e}"))?;
        let counters = &self.counters;
        let mut rejected: Vec<Bytes> = Vec::new();
        for (delivery, message) in decoding.deliveries.iter().zip(messages) {
            match message {
                Ok(message) => {
                    let outcome = self.rules.run(message, self.effects.as_ref()).await;
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
        counters.messages.fetch_add(decoding.deliveries.len() as u64, Ordering::Relaxed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        counters.last_message_at.store(now, Ordering::Relaxed);
        let mut pending = self.effects.take_pending();
        if !rejected.is_empty() {
            pending.add(REJECTED_QUEUE, rejected);
        }
        let ids = decoding.deliveries.iter().map(|d| d.id.clone()).collect();
        Ok(InFlight { pending: Some(pending), publish: None, ids, bus: self.bus.clone() })
    }

    fn warn_if_idle(&self, last_message: Instant, last_warning: &mut Instant) {
        if let Some(limit) = self.idle_warning
            && last_message.elapsed() >= limit
            && last_warning.elapsed() >= limit
        {
            *last_warning = Instant::now();
            tracing::warn!(
                "reactor on {} has not received a message in {}",
                self.node_name,
                human(last_message.elapsed())
            );
        }
    }
}

/// A processed batch whose publishes are (about to be) made durable, and the
/// deliveries to acknowledge once they are.
struct InFlight {
    /// Publishes not yet started (they start once the previous batch's are done).
    pending: Option<crate::effects::Pending>,
    publish: Option<tokio::task::JoinHandle<Result<(), flotilla_bus::BusError>>>,
    ids: Vec<flotilla_bus::DeliveryId>,
    bus: Arc<dyn Bus>,
}

impl InFlight {
    /// Starts making the publishes durable in the background.
    fn start_publishing(&mut self) {
        if let Some(pending) = self.pending.take() {
            let bus = self.bus.clone();
            self.publish = Some(tokio::spawn(async move { pending.publish(bus.as_ref()).await }));
        }
    }
}

/// Waits until a batch's effects are durable, then acknowledges the batch. If they
/// could not be made durable the batch is not acknowledged: it is delivered again.
async fn finish(in_flight: Option<InFlight>, consumer: &mut dyn flotilla_bus::Consumer) -> anyhow::Result<()> {
    let Some(mut batch) = in_flight else { return Ok(()) };
    batch.start_publishing();
    if let Some(publish) = batch.publish.take() {
        publish.await.map_err(|e| anyhow::anyhow!("the reactor's publishing task failed: {e}"))??;
    }
    consumer.ack(&batch.ids).await?;
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
