//! Flotilla's Wikimedia dispatcher, the pure core: subscriptions to the recent-changes
//! feed, the index that matches changes to them, the output formats, and the control
//! protocol that manages them (SPEC §6). Nothing here opens a socket or a file or reads a
//! clock; the only ambient input is the OS random source for new tokens.
//!
//! # Layout
//!
//! - [`wiki`]: the registry of Wikimedia wikis (embedded data), so `enwiki`,
//!   `en.wikipedia.org` and `en_wikipedia` all name the same wiki.
//! - [`event`]: one EventStreams `recentchange` JSON event to a [`Change`].
//! - [`format`](mod@format): a change as pipe, xml or json text.
//! - [`definition`]: what a subscription watches, and the XML/JSON documents that carry
//!   definitions.
//! - [`token`]: subscription tokens, drawn from the OS CSPRNG and kept only as hashes.
//! - [`index`]: the matching index: exact pages and users by hash, regexes through a
//!   shared literal prefilter, so the work per change does not depend on the number of
//!   subscriptions.
//! - [`subscription`]: subscription names and ids, [`Subscriptions`] (the in-memory state
//!   with its index) and the [`SubscriptionBackend`] trait the protocol acts on.
//! - [`protocol`]: the TCP control protocol as a per-connection state machine
//!   ([`Session`]), one file per command.
//!
//! # Seams for the integrator
//!
//! - **Control server**: frame lines with [`protocol::frame::next_line`], call
//!   [`Session::feed_line`] with the shared [`Subscriptions`] (behind an `RwLock`: the
//!   protocol and the API write, matching only reads), persist
//!   [`Output::mutations`] in order, then write each [`Reply::encode`] and close when
//!   [`Output::close`] says so. Count connections with
//!   [`Subscriptions::connection_opened`]/[`Subscriptions::connection_closed`] for `info`.
//!   A server that must not compile under its lock uses [`Session::step`] instead (a
//!   complete document comes back to be parsed elsewhere, then
//!   [`Session::apply_document`]) and tells the state to
//!   [`Subscriptions::defer_compiling`], running each [`Subscriptions::take_compilation`]
//!   off the lock and putting the result back with [`Subscriptions::install`].
//! - **Persistence**: every state change comes back as a [`Mutation`] (created, deleted,
//!   format set, definitions added/removed, each self-contained and keyed by name; token
//!   hashes via [`token::TokenHash::to_hex`], definitions via [`Definition::fields`]). At
//!   start-up, rebuild with [`Subscriptions::restore_all`] from stored rows, turning them back
//!   into definitions with [`Definition::new`].
//! - **Delivery**: for each event, [`parse_change`] then [`Subscriptions::dispatch`], which
//!   yields one [`Delivery`] (queue name and payload in the subscription's format) per
//!   matching subscription, once each; canaries yield nothing. `LPUSH` the payload to the
//!   Redis list named after the subscription and append it to bus queue `sub.<name>`,
//!   unless [`Subscriptions::incarnation`] says the subscription it was matched for has
//!   been deleted since (its name may have a new owner).
//! - **HTTP API**: call the same [`Subscriptions`] methods (the [`SubscriptionBackend`]
//!   trait) and persist the same mutations.
//!
//! Architecture Invariant: this crate knows nothing of tokio, Redis, the bus or the SQL
//! store; it depends only on parsing, regex, string-search, hashing and randomness
//! crates.

pub mod definition;
pub mod event;
pub mod format;
pub mod index;
pub mod protocol;
pub mod subscription;
pub mod token;
pub mod wiki;

pub use definition::{Definition, DefinitionFields, DocumentFormat, Flags};
pub use event::{Change, EventError, parse_change};
pub use format::{OutputFormat, render};
pub use index::{Compilation, Compiled, Index, MatchScratch};
pub use protocol::{
    CompleteDocument, ErrorReply, Output, ParsedDocument, Reply, Session, SessionLimits, Step, SubscribeAccess,
    SubscribePolicy,
};
pub use subscription::{
    Delivery, Incarnation, Limits, Mutation, PatternBudget, Restored, SubscriptionBackend, SubscriptionId,
    SubscriptionName, Subscriptions,
};
pub use token::{Token, TokenHash};
pub use wiki::{Wiki, Wikis};

/// The connector type of the live recent-changes source (EventStreams).
pub const STREAM_CONNECTOR_TYPE: &str = "wikimedia";
/// The connector type that replays recorded changes from a file.
pub const FILE_CONNECTOR_TYPE: &str = "wikimedia-file";
