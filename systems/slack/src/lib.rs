//! Flotilla's Slack system (SPEC §9), gopherbot as it should have been: a gateway on
//! the node's HTTP server that verifies Slack's signed requests and queues each event
//! by type, durably and once (Slack's retries are de-duplicated on `event_id` in the
//! store, fleet-wide when the store is shared); consumers that run handlers and answer
//! through the Web API; every part restartable without losing what was accepted.
//!
//! ```text
//!  Slack ──POST path──▶ gateway (service) ──▶ slack_message_public / _private / slack_team_join /
//!        signed         verify, parse,         slack_channel_join / slack_command  (bus queues)
//!                       dedupe, publish                 │ group slack-handlers.<connector>
//!                                                       ▼
//!                                  handlers (service): reactions, prefixes, responses, glossary
//!                                        │ replies                     │ the message, for rules
//!                                        ▼                             ▼
//!                                 outbox.<connector> ◀── Send ── reactor (connector's queue)
//!                                        │
//!                                        ▼ connector `slack`: Web API (chat.postMessage, reactions.add, …)
//! ```
//!
//! Why a service *and* a connector: the gateway and the handlers must run on every node
//! (any node behind a load balancer may receive Slack's requests, any node may consume),
//! and a service owns HTTP routes; the outbox must be drained by one poster, which is
//! what a connector is (on a fleet, the lease owner). Both read the same `slack`
//! connector section ([`config`]).
//!
//! Pure cores: [`signature`], [`event`], [`handlers`], [`outbox`] (an outbox message →
//! a Web API call) and [`webapi`]'s answer classification. Shells: [`gateway`] (axum
//! handler), [`consumer`] (the handlers' bus stage), [`connector`] (outbox → Web API),
//! [`persist`] (seen event ids, the glossary), [`service`].

#![forbid(unsafe_code)]

pub mod config;
pub mod connector;
pub mod consumer;
pub mod event;
pub mod gateway;
pub mod handlers;
pub mod outbox;
pub mod persist;
pub mod service;
pub mod signature;
pub mod socket;
pub mod tasks;
pub mod webapi;

use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType};

pub use config::{SlackSettings, settings_from_section};
pub use connector::SlackConnector;
pub use service::SERVICE_TYPE;

/// The `slack` connector type.
pub const CONNECTOR_TYPE: ConnectorType = ConnectorType {
    name: "slack",
    description: "a Slack app: a signed Events API gateway on the node's HTTP server, handlers, the Web API for answers",
    build,
};

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    Ok(Box::new(SlackConnector::new(settings_from_section(section)?)))
}

/// The connector types this crate provides.
pub fn connector_types() -> Vec<ConnectorType> {
    vec![CONNECTOR_TYPE]
}
