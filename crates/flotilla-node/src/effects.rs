//! The reactor's side effects on a real node: queues on the bus, rows in the store,
//! messages handed to connectors' outboxes, console lines, shell commands, and state
//! that survives restarts.
//!
//! Publishes are collected per batch ([`NodeEffects::flush`]) so one durable append per
//! queue serves a whole batch of messages; the reactor flushes before it acknowledges
//! the batch, so "effects are durable before the message is acknowledged" holds while
//! the bus sees a few large appends instead of many single ones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flotilla_bus::{Bus, BusError};
use flotilla_connector::outbox_queue;
use flotilla_core::Message;
use flotilla_reactor::{CommandOutput, ConsoleLine, EffectError, Effects};
use flotilla_store::Store;
use serde_json::{Map, Value};

/// Effects against the node's bus and store.
pub struct NodeEffects {
    bus: Arc<dyn Bus>,
    store: Arc<Store>,
    /// Publishes waiting for [`NodeEffects::flush`], by queue, in order.
    pending: Mutex<BTreeMap<String, Vec<Bytes>>>,
}

impl NodeEffects {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<Store>) -> NodeEffects {
        NodeEffects { bus, store, pending: Mutex::default() }
    }

    fn hold(&self, queue: String, message: &Message) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.entry(queue).or_default().push(Bytes::from(message.to_json()));
    }

    /// Takes the publishes collected so far, to be made durable with
    /// [`Pending::publish`] (possibly while the next batch is being processed).
    pub fn take_pending(&self) -> Pending {
        Pending(std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner())))
    }

    /// Makes every publish collected since the last flush durable, one append per queue.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.take_pending().publish(self.bus.as_ref()).await
    }
}

/// Publishes the rules asked for, by queue, not yet on the bus.
#[derive(Default)]
pub struct Pending(BTreeMap<String, Vec<Bytes>>);

impl Pending {
    /// Adds payloads for a queue after those already held.
    pub fn add(&mut self, queue: &str, payloads: Vec<Bytes>) {
        self.0.entry(queue.to_string()).or_default().extend(payloads);
    }

    /// Appends them, one durable append per queue.
    pub async fn publish(self, bus: &dyn Bus) -> Result<(), BusError> {
        for (queue, payloads) in self.0 {
            bus.publish(&queue, payloads).await?;
        }
        Ok(())
    }
}

/// A store error with its causes (its message says only what failed), `: `-separated.
fn failed(e: impl std::error::Error) -> EffectError {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    EffectError::Failed(text)
}

#[async_trait::async_trait]
impl Effects for NodeEffects {
    async fn enqueue(&self, queue: &str, message: &Message) -> Result<(), EffectError> {
        if !flotilla_bus::valid_name(queue) {
            return Err(EffectError::Failed(format!("'{queue}' is not a valid queue name")));
        }
        self.hold(queue.to_string(), message);
        Ok(())
    }

    async fn sql_insert(&self, table: &str, row: &Map<String, Value>) -> Result<(), EffectError> {
        self.store.insert_row(table, row).await.map_err(failed)
    }

    async fn send(&self, connector: &str, message: &Message) -> Result<(), EffectError> {
        self.hold(outbox_queue(connector), message);
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

    async fn load_state(&self, namespace: &str, key: &str) -> Result<Option<Value>, EffectError> {
        self.store.get_state(&format!("reactor:{namespace}"), key).await.map_err(failed)
    }

    async fn save_state(&self, namespace: &str, key: &str, value: &Value) -> Result<(), EffectError> {
        self.store.put_state(&format!("reactor:{namespace}"), key, value).await.map_err(failed)
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
