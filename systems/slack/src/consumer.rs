//! The consumers: one bus stage per Slack queue and connector, in consumer group
//! `slack.<connector>`, so that on a shared bus each event is handled once however many
//! nodes consume. For each message of its connector (`key`), a message event runs the
//! [`Handlers`]; their answers go to the connector's outbox and glossary edits to the
//! store; and every message that was not skipped (not the bot's own, not stale, …)
//! is passed on to the connector's queue (`reactor` by default), so that rules can
//! answer too (`Send` to the connector). Joins and slash commands are passed on as they
//! are. Outputs are durable before the batch is acknowledged ([`flotilla_bus::stage`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flotilla_bus::stage::{Outputs, Stage, Work};
use flotilla_bus::{Bus, BusError, Delivery};
use flotilla_core::Message;
use tokio_util::sync::CancellationToken;

use crate::handlers::{Action, Glossary, Handlers, Verdict};
use crate::persist::GlossaryTable;

/// How often the glossary is read again from the store (edits made on other nodes).
const GLOSSARY_RELOAD: Duration = Duration::from_secs(30);

/// The consumer group of a connector's consumers.
pub fn group(connector: &str) -> String {
    format!("slack.{connector}")
}

/// One connector's consumer of one queue.
pub struct Consumer {
    pub connector: String,
    /// The connector's queue (where messages are passed on for the rules).
    pub forward_queue: String,
    pub outbox_queue: String,
    pub handlers: Arc<Handlers>,
    pub glossary: GlossaryTable,
    glossary_cache: Glossary,
    loaded_at: Option<Instant>,
}

impl Consumer {
    pub fn new(connector: &str, forward_queue: &str, handlers: Arc<Handlers>, glossary: GlossaryTable) -> Consumer {
        Consumer {
            connector: connector.to_string(),
            forward_queue: forward_queue.to_string(),
            outbox_queue: flotilla_connector::outbox_queue(connector),
            handlers,
            glossary,
            glossary_cache: Glossary::new(),
            loaded_at: None,
        }
    }

    /// Runs on `queue` until `shutdown` (then drains what is there, briefly).
    ///
    /// # Errors
    /// The bus was closed.
    pub async fn run(mut self, bus: Arc<dyn Bus>, queue: &str, shutdown: CancellationToken) -> Result<(), BusError> {
        let stage = Stage::new("Slack handlers", queue, &group(&self.connector), 256)
            .idle_wait(Duration::from_millis(500))
            .retry(Duration::from_millis(200), Duration::from_secs(30));
        stage.run_draining(bus, decode, &mut self, &shutdown, flotilla_bus::stage::DRAIN_GRACE).await
    }
}

fn decode(batch: &[Delivery]) -> Vec<Option<Message>> {
    batch
        .iter()
        .map(|d| match Message::from_json(&d.payload) {
            Ok(message) => Some(message),
            Err(error) => {
                tracing::warn!(%error, "A message on a Slack queue is not a JSON object; skipped.");
                None
            }
        })
        .collect()
}

impl Work for Consumer {
    type Prepared = Vec<Option<Message>>;
    type Done = ();
    type Error = String;

    async fn process(
        &mut self,
        _batch: &[Delivery],
        messages: &mut Vec<Option<Message>>,
        outputs: &mut Outputs,
    ) -> Result<(), String> {
        if self.handlers.glossary && self.loaded_at.is_none_or(|at| at.elapsed() >= GLOSSARY_RELOAD) {
            self.glossary_cache =
                self.glossary.load().await.map_err(|e| format!("reading the glossary: {}", e.chain()))?;
            self.loaded_at = Some(Instant::now());
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        for message in messages.iter().flatten() {
            if message.get_str(flotilla_core::message::KEY) != Some(self.connector.as_str()) {
                continue; // another slack connector's
            }
            let is_message = message.get_str("event_type") == Some("message");
            if is_message {
                match self.handlers.handle(message.fields(), now, &self.glossary_cache) {
                    Verdict::Skipped(reason) => {
                        tracing::debug!(connector = %self.connector, ?reason, "A Slack message was not handled.");
                        continue;
                    }
                    Verdict::Handled(actions) => {
                        for action in &actions {
                            if let Action::Learn { term, definition } = action {
                                self.glossary
                                    .put(term, definition, true)
                                    .await
                                    .map_err(|e| format!("saving a glossary term: {}", e.chain()))?;
                                self.glossary_cache.insert(term.clone(), definition.clone());
                            }
                            if let Some(out) = crate::outbox::message_for(action) {
                                outputs
                                    .push(&self.outbox_queue, Bytes::from(serde_json::Value::Object(out).to_string()));
                            }
                        }
                    }
                }
            }
            outputs.push(&self.forward_queue, Bytes::from(message.to_json()));
        }
        Ok(())
    }
}
