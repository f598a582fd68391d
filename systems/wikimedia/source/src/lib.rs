//! Flotilla's source of Wikimedia recent changes (SPEC §6.5): connector `wikimedia`
//! reads EventStreams' server-sent events, resuming with `Last-Event-ID` after a
//! reconnect or a restart; connector `wikimedia-file` replays a file of events at a
//! chosen rate. Both emit one message per change (not per canary), shaped by
//! [`change::change_message`]: convenience fields on top, the original event under
//! `event`. The dispatcher picks them up from the bus by their `plugin` (`wikimedia`).
//!
//! - [`sse`]: the `text/event-stream` parser (pure, bounded).
//! - [`change`]: an event's JSON to a message.
//! - [`stream`]: the `wikimedia` connector.
//! - [`file`]: the `wikimedia-file` connector.
//! - [`sample`]: recorded and synthetic events for tests, demos and benchmarks.
//!
//! TLS is rustls with the aws-lc-rs provider, the only one in the build.

#![forbid(unsafe_code)]

pub mod change;
pub mod file;
pub mod sample;
pub mod sse;
pub mod stream;

use flotilla_connector::ConnectorType;

pub use change::{PLUGIN, change_message};
pub use file::FileConnector;
pub use stream::{DEFAULT_URL, StreamConnector, StreamSettings};

/// The connector types this crate provides.
pub fn connector_types() -> Vec<ConnectorType> {
    vec![stream::CONNECTOR_TYPE, file::CONNECTOR_TYPE]
}
