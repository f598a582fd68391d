//! Relay groups (SPEC §8, Ticketfrei's cities): reports a member connector receives are
//! relayed to every other member of its group, through the group's censor; rejected
//! reports wait in `review.<group>` for a person to approve or reject them.
//!
//! - `config.rs`: the `groups:` section, checked against the configured connectors;
//! - `report.rs` (pure): what counts as a report per connector type, and the relayed
//!   copy shaped per target type;
//! - `groups.rs`: the running groups, their current censor, review decisions, and
//!   what is persisted in the store;
//! - `relay.rs`: the bus stage that routes each report into the targets' outboxes or
//!   the review queue;
//! - `http.rs`: `/api/v1/groups…` (patterns, review); `client.rs`: the client the
//!   `flotilla review` command uses.
//!
//! The censor itself is `flotilla_core::censor`, shared with the reactor's `Censor`
//! plugin.

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod groups;
pub mod http;
pub mod relay;
pub mod report;
mod service;

pub use service::SERVICE_TYPE;
