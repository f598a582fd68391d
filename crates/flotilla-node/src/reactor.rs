//! The reactor process: the consumer of queue `reactor` (group `reactor`), where
//! connectors' messages land unless configured otherwise, as a bus stage
//! ([`flotilla_bus::stage`]). It runs each message through the rule tree, makes the
//! batch's effects durable (the deliveries the effects buffered are the stage's
//! outputs), and only then acknowledges the batch. A plugin error is recorded on the message (`errmsg`) and never stops the
//! reactor; a payload that is not a message is set aside in queue `reactor.rejected`
//! (nothing is lost) and acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bus::stage::{DRAIN_GRACE, Outputs, Stage, Work};
use flotilla_bus::{Bus, Delivery};
use flotilla_core::{Message, MessageError};
use flotilla_reactor::RuleTree;
use tokio::sync::watch;
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

/// What a reload may change in the reactor: it takes the latest for each batch.
#[derive(Clone)]
pub struct ReactorRules {
    pub tree: Arc<RuleTree>,
    /// Warn when no message arrived for this long.
    pub idle_warning: Option<Duration>,
}

/// The reactor: what it needs to run.
pub struct Reactor {
    pub bus: Arc<dyn Bus>,
    /// The rules in force; a reload sends new ones, which apply from the next batch on
    /// (a batch is never run half under old rules and half under new ones).
    pub rules: watch::Receiver<ReactorRules>,
    pub effects: Arc<NodeEffects>,
    pub node_name: String,
    pub counters: Arc<ReactorCounters>,
}

impl Reactor {
    /// Runs until `shutdown` fires; the batches in hand are finished and acknowledged.
    ///
    /// The reactor is a bus stage ([`flotilla_bus::stage`]) with both overlaps, so three
    /// batches are in the air at once and the steps use both cores: batch N+1 is
    /// decoded on another task while the rules run on batch N, while batch N-1's
    /// publishes are being made durable. Publishes stay in order (a batch's start only
    /// after the previous batch's are durable) and a batch is acknowledged only after
    /// its publishes are durable.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stage = Stage::new("reactor", REACTOR_QUEUE, GROUP, BATCH).prepare_ahead().publish_behind();
        let now = Instant::now();
        let mut work = RunRules { reactor: &self, last_message: now, last_warning: now };
        let decode = |batch: &[Delivery]| batch.iter().map(|d| Message::from_json(&d.payload)).collect::<Vec<_>>();
        stage.run_draining(self.bus.clone(), decode, &mut work, &shutdown, DRAIN_GRACE).await?;
        Ok(())
    }
}

/// The reactor's work on a decoded batch: the rules on each message; the batch's
/// outputs are what the rules delivered (buffered in the effects) and the payloads
/// that are not messages.
struct RunRules<'a> {
    reactor: &'a Reactor,
    last_message: Instant,
    last_warning: Instant,
}

impl Work for RunRules<'_> {
    type Prepared = Vec<Result<Message, MessageError>>;
    type Done = ();
    type Error = std::convert::Infallible;

    async fn process(
        &mut self,
        batch: &[Delivery],
        messages: &mut Self::Prepared,
        outputs: &mut Outputs,
    ) -> Result<(), Self::Error> {
        self.last_message = Instant::now();
        let reactor = self.reactor;
        let rules = reactor.rules.borrow().tree.clone();
        let counters = &reactor.counters;
        let mut rejected: Vec<Bytes> = Vec::new();
        for (delivery, message) in batch.iter().zip(messages.drain(..)) {
            match message {
                Ok(message) => {
                    let outcome = rules.run(message, reactor.effects.as_ref()).await;
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
        counters.messages.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        counters.last_message_at.store(now, Ordering::Relaxed);
        outputs.append(reactor.effects.take());
        outputs.add(REJECTED_QUEUE, rejected);
        Ok(())
    }

    fn idle(&mut self) {
        let idle_warning = self.reactor.rules.borrow().idle_warning;
        if let Some(limit) = idle_warning
            && self.last_message.elapsed() >= limit
            && self.last_warning.elapsed() >= limit
        {
            self.last_warning = Instant::now();
            tracing::warn!(
                "reactor on {} has not received a message in {}",
                self.reactor.node_name,
                human(self.last_message.elapsed())
            );
        }
    }
}

fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..=119 => format!("{seconds} seconds"),
        120..=7199 => format!("{} minutes", seconds / 60),
        _ => format!("{} hours", seconds / 3600),
    }
}
