//! The contract between the node and its services.
//!
//! A **service** is a long-lived part of a node that is not a link to the outside world
//! (that is a connector): the Wikimedia dispatcher today; Slack's gateway, forwarding,
//! relay groups and the web UI next. Like a connector type, a service type is one entry
//! in the binary's registry ([`ServiceType`]); the node names no service.
//!
//! A service type declares:
//! - the top-level configuration **sections** it owns (`dispatcher:`, `control:`, …):
//!   the node accepts those keys and hands them, still raw, to the service's `build`,
//!   which decodes them and reports every problem with its location;
//! - whether it runs at all: `build` returns `Ok(None)` when the configuration does not
//!   ask for it, and then it binds no port and creates no queue or consumer group;
//! - at [`Service::start`], everything else: its migrations (applied to the node's
//!   store), its bus consumers, its listeners, and the running half
//!   ([`RunningService`]) with its HTTP routes (merged into the node's server), its
//!   status (shown under `services` in `/api/v1/status`) and its `stop`.
//!
//! Shutdown: the node stops intake (connectors) first, then stops the reactor and every
//! service (each finishes the batch in hand and acknowledges it), then its servers,
//! then closes the bus. A service's tasks therefore end when [`ServiceContext::shutdown`]
//! is cancelled, and [`RunningService::stop`] returns once they have.
//!
//! Architecture Invariant: services depend on this crate, never on the node and never
//! on each other.

#![forbid(unsafe_code)]

pub mod http;
pub mod slots;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use flotilla_bus::Bus;
use flotilla_config::{Diagnostic, Node};
use flotilla_store::Store;
use tokio_util::sync::CancellationToken;

/// A service type the binary knows how to build.
#[derive(Clone, Copy)]
pub struct ServiceType {
    /// The service's name (in logs, `/api/v1/status`); by convention also its main
    /// configuration section.
    pub name: &'static str,
    /// One line for `--help` and error messages.
    pub description: &'static str,
    /// The top-level configuration keys this service owns.
    pub sections: &'static [&'static str],
    pub build: BuildServiceFn,
}

/// Decodes a service's sections: `Ok(None)` when the configuration does not ask for the
/// service, `Err` with every problem found.
pub type BuildServiceFn = fn(&ServiceConfig<'_>) -> Result<Option<Box<dyn Service>>, Vec<Diagnostic>>;

/// What a service's `build` sees of the configuration.
pub struct ServiceConfig<'a> {
    /// The sections this service owns that are present, by key.
    pub sections: Vec<(&'a str, &'a Node)>,
    /// Every configured connector (enabled or not), so a service can start when a
    /// connector it serves is configured.
    pub connectors: &'a [ConfiguredConnector],
    /// `http.admin_token`, when set.
    pub admin_token: Option<&'a str>,
}

impl ServiceConfig<'_> {
    /// The section `key`, if present (an empty `key:` counts as present).
    pub fn section(&self, key: &str) -> Option<&Node> {
        self.sections.iter().find(|(k, _)| *k == key).map(|(_, node)| *node)
    }

    /// Decodes the section `key` into `T`, adding every problem to `problems`; an
    /// absent or empty section, or one with mistakes, gives `T::default()`.
    pub fn decode<T: serde::de::DeserializeOwned + Default>(&self, key: &str, problems: &mut Vec<Diagnostic>) -> T {
        let Some(node) = self.section(key).filter(|node| !node.is_null()) else { return T::default() };
        let (value, errors) = flotilla_config::decode_at::<T>(node, key);
        problems.extend(errors);
        value.unwrap_or_default()
    }

    /// Whether an enabled connector of one of these types is configured.
    pub fn has_connector_of_type(&self, kinds: &[&str]) -> bool {
        self.connectors.iter().any(|c| c.enabled && kinds.contains(&c.kind.as_str()))
    }
}

/// A configured connector, as services see it.
#[derive(Debug, Clone)]
pub struct ConfiguredConnector {
    pub name: String,
    /// The connector type (`irc`, `wikimedia`, …).
    pub kind: String,
    /// The queue it emits into.
    pub queue: String,
    pub enabled: bool,
    /// Its configuration section without the node's common keys (`type`, `enabled`,
    /// `queue`, …): a service that serves a connector type (Slack's gateway beside the
    /// `slack` connector) decodes the same keys the connector does.
    pub section: Node,
}

/// A service, built from its configuration and ready to start.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// What `flotilla check` should tell about how the service is configured beyond
    /// its mistakes (a default that depends on another setting, say), one line each.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Applies the service's migrations, binds its listeners, loads its state and spawns
    /// its tasks. A failure here stops the node from starting (with the error).
    async fn start(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<Arc<dyn RunningService>>;
}

/// What a service gets from the node when it starts.
#[derive(Clone)]
pub struct ServiceContext {
    pub node_name: String,
    pub data_dir: PathBuf,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<Store>,
    /// Cancelled when the service must stop: after the node's connectors have stopped,
    /// so what they emitted last is still on the bus for the service's consumers.
    pub shutdown: CancellationToken,
    /// The node's own status, filled in once every service has started (the status
    /// shows the services, so it exists only after them).
    pub node: NodeViewCell,
}

/// The node as a service may see it (the web UI shows it): what `/api/v1/status`
/// answers, as JSON, so that no service needs the node's types.
#[async_trait::async_trait]
pub trait NodeView: Send + Sync {
    /// The node's status: the admin's view, or (`admin` false) the public one that
    /// sums up the services' private queues.
    async fn status(&self, admin: bool) -> serde_json::Value;
}

/// Where the node puts its [`NodeView`] once it exists; empty until then (and in
/// tests that start a service without a node).
#[derive(Clone, Default)]
pub struct NodeViewCell(Arc<OnceLock<Arc<dyn NodeView>>>);

impl NodeViewCell {
    /// Fills the cell (a second call is ignored: there is one node).
    pub fn set(&self, view: Arc<dyn NodeView>) {
        let _ = self.0.set(view);
    }

    pub fn get(&self) -> Option<&Arc<dyn NodeView>> {
        self.0.get()
    }
}

/// A service that is running.
#[async_trait::async_trait]
pub trait RunningService: Send + Sync {
    /// The service type's name.
    fn name(&self) -> &'static str;

    /// Routes to merge into the node's HTTP server.
    fn router(&self) -> Option<axum::Router> {
        None
    }

    /// The addresses it listens on, by what they are for (`control`, …), for the
    /// node's "ready" line.
    fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        Vec::new()
    }

    /// Its counters and state for `/api/v1/status` and `flotilla status` (`null`:
    /// nothing to show), as the admin sees them.
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Its status as anyone who may read `/api/v1/status` without the admin token sees
    /// it (see `docs/security.md`): nothing that names a subscriber or leads to its
    /// data. By default the whole [`RunningService::status`].
    fn public_status(&self) -> serde_json::Value {
        self.status()
    }

    /// Whether bus queue `queue` is one of the service's private queues, named after
    /// its users (a subscription's `sub.<name>`): without the admin token, status and
    /// metrics show such queues only summed up, never by name.
    fn private_queue(&self, _queue: &str) -> bool {
        false
    }

    /// Cancels [`ServiceContext::shutdown`] (if the node has not already) and returns
    /// once every task of the service has ended: the tasks finish the batch in hand,
    /// acknowledge it and save what is unsaved. Called once.
    async fn stop(&self);
}
