//! Flotilla's IRC fleet (SPEC §7): connector type `irc` keeps bots in many channels of
//! one network, over as many connections as `max_channels_per_connection` needs, spread
//! over the `bind` source addresses so that none carries more than
//! `max_connections_per_ip`. Every line a bot sees becomes a bus message; with
//! `log: true` lines go to `irclog` and the bots' own events to `fleetlog`.
//!
//! The bots never give up quietly: nick clashes fall back to `nick-NNN`, a kick takes
//! only that channel out of the active set until `rejoin_delay`, silence beyond
//! `max_lag` means reconnecting with exponential backoff and jitter, unknown replies
//! and unparseable lines are logged and never a reason to reconnect, and a connection
//! that fails `max_attempts` times in a row is *sunk* (logged, `COULD-NOT-RECONNECT`);
//! when all are, `ARMADA-ALL-DEAD`.
//!
//! Code map, pure cores first:
//! - [`line`]: framing bytes into lines (bounded buffer), decoding, splitting a line;
//! - [`session`]: one connection's protocol as a state machine over lines and time;
//! - [`nick`], [`plan`], [`bucket`]: nick fallback, connection planning, flood control;
//! - [`record`]: bus messages and log rows; [`config`]: the keys;
//! - shells: [`connection`] (one task per connection), [`fleet`] (the connector:
//!   emitter, outbox router, status), [`logger`] (log queue → store), [`tls`].
//!
//! Architecture Invariant: no connection task ever waits on the database; only the
//! logger talks to the store, and only through the bus.

#![forbid(unsafe_code)]

pub mod bucket;
pub mod config;
pub mod connection;
pub mod fleet;
pub mod line;
pub mod logger;
pub mod nick;
pub mod plan;
pub mod record;
pub mod session;
pub mod status;
pub mod tls;

use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType};
use flotilla_store::{Migration, Migrations};

/// The tables of the IRC log (`irclog`, `fleetlog`), for [`flotilla_store::Store::migrate`];
/// the [`logger`] applies them before its first batch. Version 1 was version 2 of the
/// old global migrator. Version 2 adds the full-text index of `irclog.message` (SQLite
/// FTS5 table `irclog_search` kept by triggers; a Postgres GIN index on
/// `to_tsvector('simple', message)`) that the web UI's log search uses.
pub static MIGRATIONS: Migrations = Migrations {
    component: "irc",
    sqlite: &[
        Migration::new(1, "irc", include_str!("../migrations/sqlite/0001_irc.sql")).legacy(2),
        Migration::new(2, "irc_search", include_str!("../migrations/sqlite/0002_irc_search.sql")),
    ],
    postgres: &[
        Migration::new(1, "irc", include_str!("../migrations/postgres/0001_irc.sql")).legacy(2),
        Migration::new(2, "irc_search", include_str!("../migrations/postgres/0002_irc_search.sql")),
    ],
};

pub use config::{IrcSettings, settings_from_section};
pub use fleet::IrcConnector;

/// The `irc` connector type.
pub const CONNECTOR_TYPE: ConnectorType = ConnectorType {
    name: "irc",
    description: "IRC bots in many channels of one network, logging to irclog/fleetlog, reconnecting on their own",
    build,
};

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    Ok(Box::new(IrcConnector::new(settings_from_section(section)?)))
}

/// The connector types this crate provides.
pub fn connector_types() -> Vec<ConnectorType> {
    vec![CONNECTOR_TYPE]
}
