//! What a running connector gets from the node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use flotilla_bus::{Bus, BusError};
use flotilla_core::Message;
use flotilla_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::status::StatusBoard;

/// Why [`ConnectorContext::emit`] failed; the messages are not on the bus.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("could not put the message on the bus: {0}")]
    Bus(#[from] BusError),
}

/// The queue a connector's outbox lives in: `outbox.<connector>`.
pub fn outbox_queue(connector: &str) -> String {
    format!("outbox.{connector}")
}

/// The node's services, as one connector sees them.
#[derive(Clone)]
pub struct ConnectorContext {
    name: String,
    kind: String,
    hostname: String,
    node_name: String,
    queue: String,
    bus: Arc<dyn Bus>,
    store: Arc<Store>,
    status: StatusBoard,
    shutdown: CancellationToken,
    data_dir: PathBuf,
}

/// What every connector of one node shares: names, the bus, the store, the status
/// board and the data directory. The node builds one and asks it for each
/// connector's [`ConnectorContext`]; tests do the same with their throwaway bus and
/// store.
#[derive(Clone)]
pub struct NodeServices {
    /// Short host name of this machine.
    pub hostname: String,
    /// `node.name`.
    pub node_name: String,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<Store>,
    pub status: StatusBoard,
    /// `node.data_dir`; each connector gets `connectors/<name>` in it.
    pub data_dir: PathBuf,
}

impl NodeServices {
    /// The context of connector `name` of type `kind`, emitting into `queue`, stopped
    /// by `shutdown`.
    pub fn connector(&self, name: &str, kind: &str, queue: &str, shutdown: CancellationToken) -> ConnectorContext {
        ConnectorContext {
            name: name.to_string(),
            kind: kind.to_string(),
            hostname: self.hostname.clone(),
            node_name: self.node_name.clone(),
            queue: queue.to_string(),
            bus: self.bus.clone(),
            store: self.store.clone(),
            status: self.status.clone(),
            shutdown,
            data_dir: self.data_dir.clone(),
        }
    }
}

impl ConnectorContext {
    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connector's type (`irc`, `pulse`, …).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Short host name of this machine.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The node's name (`node.name`).
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The queue `emit` publishes to (`reactor` unless the section says `queue:`).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Fires when the node shuts down: stop taking input, finish, return.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// A directory the connector may keep files in (created on demand).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.join("connectors").join(&self.name)
    }

    /// Gives a message its envelope (`key`, `plugin`, `id`, `lastupdate`, `hostname`,
    /// keeping any already set) without publishing it.
    pub fn stamp(&self, message: &mut Message) {
        if message.get(flotilla_core::message::KEY).is_none() {
            message.set(flotilla_core::message::KEY, self.name.as_str());
        }
        if message.get(flotilla_core::message::PLUGIN).is_none() {
            message.set(flotilla_core::message::PLUGIN, self.kind.as_str());
        }
        message.stamp(&self.hostname, SystemTime::now());
    }

    /// Puts one message on the connector's queue; returns once it is durable.
    pub async fn emit(&self, message: Message) -> Result<(), EmitError> {
        self.emit_all(vec![message]).await
    }

    /// Puts messages on the connector's queue, in order, as one durable batch.
    pub async fn emit_all(&self, messages: Vec<Message>) -> Result<(), EmitError> {
        self.emit_to(&self.queue, messages).await
    }

    /// Puts messages on another queue (a connector that routes by itself, e.g. the
    /// dispatcher's `sub.<name>` queues).
    pub async fn emit_to(&self, queue: &str, mut messages: Vec<Message>) -> Result<(), EmitError> {
        if messages.is_empty() {
            return Ok(());
        }
        let payloads: Vec<Bytes> = messages
            .iter_mut()
            .map(|m| {
                self.stamp(m);
                Bytes::from(m.to_json())
            })
            .collect();
        let count = payloads.len() as u64;
        self.bus.publish(queue, payloads).await.map_err(EmitError::Bus)?;
        self.status.add_emitted(&self.name, count);
        Ok(())
    }

    /// Counts messages published for this connector by other means than `emit` (its
    /// rules' buffered deliveries, [`crate::BusEffects::flush`]).
    pub(crate) fn count_emitted(&self, count: u64) {
        self.status.add_emitted(&self.name, count);
    }

    /// The queue holding what rules handed this connector to post (the reactor's
    /// `Send` plugin appends there).
    pub fn outbox_queue(&self) -> String {
        outbox_queue(&self.name)
    }

    /// Consumes this connector's outbox (group `outbox`): post each message, then
    /// acknowledge it; what is not acknowledged is delivered again after a restart.
    pub async fn outbox(&self) -> Result<Box<dyn flotilla_bus::Consumer>, BusError> {
        self.bus.subscribe(&self.outbox_queue(), "outbox").await
    }

    /// Connector-specific details for `flotilla status` (replaces the previous ones).
    pub fn set_detail(&self, detail: serde_json::Value) {
        self.status.set_detail(&self.name, detail);
    }

    /// This connector's remembered value under `key` (survives restarts).
    pub async fn load_state(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.store.get_state(&format!("connector:{}", self.name), key).await
    }

    /// Remembers a value under `key` for this connector.
    pub async fn save_state(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.store.put_state(&format!("connector:{}", self.name), key, value).await
    }
}
