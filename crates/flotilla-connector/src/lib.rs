//! The contract between the node and its connectors.
//!
//! A connector is something that talks to the outside (an IRC network, a feed, a
//! local monitor). It implements [`Connector`]: one `run` that returns when the node
//! shuts down or fails with an error. Everything it needs comes in a
//! [`ConnectorContext`]: [`ConnectorContext::emit`] to put messages on the bus
//! (durably: `emit` returns once the bus has them), the store for state that must
//! survive restarts, the shutdown signal, and a place to report details for
//! `flotilla status`.
//!
//! Connectors know nothing about rules, queues or other connectors. The node's
//! supervisor runs each one in its own task, restarts it with backoff when it fails,
//! and keeps its [`ConnectorStatus`].
//!
//! A connector type registers a [`ConnectorType`]: its name and a `build` function
//! that decodes its configuration section (reporting every error with its location)
//! into a ready-to-run connector.
//!
//! [`BusEffects`] is the one real `Effects` of the rules engine, shared by the node's
//! reactor and connectors that run rules of their own (a monitor's `react:`).
//!
//! Architecture Invariant: connectors depend on this crate, never on the node.

#![forbid(unsafe_code)]

mod context;
mod effects;
mod rules_files;
mod status;

pub use context::{ConnectorContext, EmitError, NodeServices, outbox_queue};
pub use effects::BusEffects;
/// The workspace's one backoff (it lives in `flotilla-core` so the bus stages share it).
pub use flotilla_core::Backoff;
pub use rules_files::{FileRulesLoader, RulesFile};
pub use status::{ConnectorState, ConnectorStatus, StatusBoard};

use flotilla_config::{Diagnostic, Node};

/// A running link to the outside world.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Runs until `ctx.shutdown()` fires (then returns `Ok`) or something fails (then
    /// returns the error; the supervisor logs it and restarts the connector after a
    /// backoff). Must not block the thread: blocking work goes to `spawn_blocking`.
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()>;

    /// What its configuration allows but puts at risk (a password sent in clear text),
    /// with the place to change it: `flotilla check` prints these, a node logs them once
    /// when it starts.
    fn warnings(&self) -> Vec<Diagnostic> {
        Vec::new()
    }
}

/// One connector's configuration section, as the node hands it to a `build` function:
/// the common keys (`type`, `enabled`, `queue`, `restart`) already taken out.
pub struct ConnectorSection<'a> {
    /// The connector's name (the key under `connectors:`, or `<Plugin>-<instance>`).
    pub name: &'a str,
    /// The section, minus the common keys.
    pub node: &'a Node,
    /// The dotted path of the section, for error messages (`connectors.<name>`).
    pub path: String,
}

/// Builds a connector from its section, or reports every problem with it.
pub type BuildFn = fn(&ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>>;

/// A connector type the node knows how to build.
#[derive(Clone, Copy)]
pub struct ConnectorType {
    /// The `type:` value (lower case).
    pub name: &'static str,
    /// One line for `--help` and error messages.
    pub description: &'static str,
    pub build: BuildFn,
}

/// Decodes a connector's config struct from its section, reporting every error.
pub fn decode_section<T: serde::de::DeserializeOwned>(section: &ConnectorSection<'_>) -> Result<T, Vec<Diagnostic>> {
    match flotilla_config::decode_at::<T>(section.node, &section.path) {
        (Some(config), errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(errors),
    }
}

/// A diagnostic at a place in a connector's section (`key` is a dotted path inside it).
pub fn diagnostic_at(section: &ConnectorSection<'_>, key: &str, message: impl Into<String>) -> Diagnostic {
    let location = section.node.get(key).map(|n| n.location.clone()).or_else(|| Some(section.node.location.clone()));
    Diagnostic { location, message: format!("{}.{key}: {}", section.path, message.into()) }
}

/// Splits a map section in two: the entries whose keys are in `keys`, and the rest.
/// Lets a shared part (a scheduler, the node's common keys) decode its keys while the
/// specific part still rejects unknown ones.
pub fn split_section(node: &Node, keys: &[&str]) -> (Node, Node) {
    use flotilla_config::NodeKind;
    match &node.kind {
        NodeKind::Map(entries) => {
            let (taken, rest): (Vec<_>, Vec<_>) =
                entries.iter().cloned().partition(|(key, _)| key.as_str().is_some_and(|k| keys.contains(&k)));
            (
                Node { kind: NodeKind::Map(taken), location: node.location.clone() },
                Node { kind: NodeKind::Map(rest), location: node.location.clone() },
            )
        }
        // Not a map: leave it whole for the specific part to complain about.
        _ => (Node { kind: NodeKind::Map(Vec::new()), location: node.location.clone() }, node.clone()),
    }
}
