//! Flotilla's XMPP system (SPEC §10): connector type `xmpp`, a chat bot (direct
//! messages, multi-user chat rooms, presence, replies and notifications to a person's
//! JID through the outbox) and, on the same connection, wubot's store-and-forward
//! between nodes: `forward_queue` → `peers`, each batch leaving the queue only once
//! the server has acknowledged it (XEP-0198), and what peers forward appended to
//! `deliver_queue`, de-duplicated by `id`, with `noforward` and `path` keeping
//! messages from looping.
//!
//! Code map, pure cores first:
//! - [`xml`]: the stream's XML, bytes to elements, bounded (oversized stanzas skipped);
//! - [`scram`]: SASL SCRAM-SHA-256/-1 on aws-lc-rs;
//! - [`sm`]: stream management counters;
//! - [`forward`]: what leaves, what is delivered, encoding, parts, the seen window;
//! - [`config`]: the keys (wubot's included);
//! - shells: [`connection`] (the one reconnecting session: TLS, login, resumption,
//!   acknowledgements, pings), [`connector`] (the inbound handler, the forwarder
//!   stage, the outbox), [`tls`].
//!
//! Architecture Invariant: a forwarded message leaves `forward_queue` only after the
//! server acknowledged every stanza that carries it, and the server gets our own
//! acknowledgement of a forwarded message only after it is durable in
//! `deliver_queue` (and its id recorded).

#![forbid(unsafe_code)]

pub mod config;
pub mod connection;
pub mod connector;
pub mod forward;
pub mod scram;
pub mod sm;
pub mod tls;
pub mod xml;

use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType};

pub use config::{XmppSettings, settings_from_section};
pub use connector::XmppConnector;

/// The `xmpp` connector type.
pub const CONNECTOR_TYPE: ConnectorType = ConnectorType {
    name: "xmpp",
    description: "an XMPP chat bot (direct messages, rooms) and store-and-forward between nodes",
    build,
};

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    Ok(Box::new(XmppConnector::new(settings_from_section(section)?)))
}

/// The connector types this crate provides.
pub fn connector_types() -> Vec<ConnectorType> {
    vec![CONNECTOR_TYPE]
}
