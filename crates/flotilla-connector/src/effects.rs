//! The one real [`Effects`]: what rules do outside the message, carried out on the
//! node's bus and store. The node's reactor and a monitor's own `react:` rules both use
//! it; they differ only in where rule state lives and whose messages are queued
//! ([`BusEffects::new`] for the reactor, [`BusEffects::for_connector`] for a
//! connector's rules).
//!
//! Durability, truthfully:
//!
//! - **Deliveries are buffered.** `enqueue` (MessageQueue) and `send` (Send) only add
//!   the message to a buffer and return; nothing is on the bus yet. The buffer becomes
//!   durable when it is published: by [`BusEffects::flush`], or by whoever
//!   [takes](BusEffects::take) it (the reactor hands it to its bus stage, which
//!   publishes it with the batch's other outputs). One durable append per queue then
//!   serves a whole batch of messages. A caller acknowledges its input only after that
//!   publish returned, so "effects are durable before the message is acknowledged"
//!   holds; a crash before it loses the buffer and the input is delivered again.
//! - **Rows and state are written at once.** `sql_insert`, `save_state` return once
//!   the store has them (each its own statement, not part of the buffer).
//! - Console lines are printed at once; commands run at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flotilla_bus::stage::Outputs;
use flotilla_bus::{Bus, BusError};
use flotilla_core::Message;
use flotilla_reactor::{CommandOutput, ConsoleLine, EffectError, Effects};
use flotilla_store::Store;
use serde_json::{Map, Value};

use crate::context::{ConnectorContext, outbox_queue};

/// Effects against the node's bus and store; see the module docs.
pub struct BusEffects {
    bus: Arc<dyn Bus>,
    store: Arc<Store>,
    origin: Origin,
    /// Deliveries not yet on the bus, by queue, in order.
    buffered: Mutex<Outputs>,
}

/// Whose rules these effects serve.
enum Origin {
    /// The node's reactor: messages were stamped when they were emitted; rule state
    /// lives in the store under namespace `reactor:<namespace>`.
    Reactor,
    /// A connector's own rules (a monitor's `react:`): what they queue is stamped and
    /// counted as the connector's emits; rule state lives in the connector's state
    /// under `react:<namespace>:<key>`.
    Connector(ConnectorContext),
}

/// An error with its causes, `: `-separated (a store error's own message says only what
/// failed; the database's reason is its source).
fn failed(e: impl std::error::Error) -> EffectError {
    EffectError::Failed(flotilla_core::error_chain(&e))
}

impl BusEffects {
    /// The node reactor's effects.
    pub fn new(bus: Arc<dyn Bus>, store: Arc<Store>) -> BusEffects {
        BusEffects { bus, store, origin: Origin::Reactor, buffered: Mutex::default() }
    }

    /// Effects of a connector's own rules, carried out through its context.
    pub fn for_connector(ctx: &ConnectorContext) -> BusEffects {
        BusEffects {
            bus: ctx.bus().clone(),
            store: ctx.store().clone(),
            origin: Origin::Connector(ctx.clone()),
            buffered: Mutex::default(),
        }
    }

    fn buffer(&self, queue: &str, message: &Message) {
        let payload = match &self.origin {
            Origin::Reactor => Bytes::from(message.to_json()),
            Origin::Connector(ctx) => {
                let mut message = message.clone();
                ctx.stamp(&mut message);
                Bytes::from(message.to_json())
            }
        };
        self.buffered.lock().unwrap_or_else(|p| p.into_inner()).push(queue, payload);
    }

    /// Takes the deliveries buffered so far, for the caller to publish durably (the
    /// reactor's stage publishes them with its batch, before it acknowledges).
    pub fn take(&self) -> Outputs {
        self.buffered.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Publishes every delivery buffered so far, durably (one append per queue), and
    /// returns once they are on the bus. On an error the buffer is gone: the caller
    /// must not acknowledge what produced it.
    pub async fn flush(&self) -> Result<(), BusError> {
        let outputs = self.take();
        let count = outputs.len() as u64;
        outputs.publish(self.bus.as_ref()).await?;
        if let Origin::Connector(ctx) = &self.origin {
            ctx.count_emitted(count);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Effects for BusEffects {
    /// Buffered: durable once flushed (see the module docs).
    async fn enqueue(&self, queue: &str, message: &Message) -> Result<(), EffectError> {
        if !flotilla_bus::valid_name(queue) {
            return Err(EffectError::Failed(format!("'{queue}' is not a valid queue name")));
        }
        self.buffer(queue, message);
        Ok(())
    }

    async fn sql_insert(&self, table: &str, row: &Map<String, Value>) -> Result<(), EffectError> {
        self.store.insert_row(table, row).await.map_err(failed)
    }

    /// Buffered like [`Effects::enqueue`], into the connector's outbox queue.
    async fn send(&self, connector: &str, message: &Message) -> Result<(), EffectError> {
        self.buffer(&outbox_queue(connector), message);
        Ok(())
    }

    fn console(&self, line: &ConsoleLine) {
        println!("{}", line.text);
    }

    async fn run_command(
        &self,
        command: &str,
        input: &Message,
        timeout: Duration,
    ) -> Result<CommandOutput, EffectError> {
        flotilla_reactor::run_shell_command(command, &input.to_json(), timeout).await
    }

    /// The reactor's state lives in the store under `reactor:<namespace>`; a connector's
    /// beside its own, under `react:<namespace>:<key>`.
    async fn load_state(&self, namespace: &str, key: &str) -> Result<Option<Value>, EffectError> {
        match &self.origin {
            Origin::Reactor => self.store.get_state(&format!("reactor:{namespace}"), key).await.map_err(failed),
            Origin::Connector(ctx) => ctx.load_state(&format!("react:{namespace}:{key}")).await.map_err(failed),
        }
    }

    async fn save_state(&self, namespace: &str, key: &str, value: &Value) -> Result<(), EffectError> {
        match &self.origin {
            Origin::Reactor => self.store.put_state(&format!("reactor:{namespace}"), key, value).await.map_err(failed),
            Origin::Connector(ctx) => ctx.save_state(&format!("react:{namespace}:{key}"), value).await.map_err(failed),
        }
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
