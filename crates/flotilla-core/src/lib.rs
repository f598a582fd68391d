//! Flotilla's pure core: the [`Message`] every component passes around, message ids
//! ([`Ulid`]), human durations, retry waits ([`Backoff`]), text made safe to show
//! ([`escape_controls`] for a terminal, [`redact::redact_url`] for URLs with
//! passwords), and (with the reactor) the condition language.
//!
//! Architecture Invariant: nothing in this crate touches a socket, a file or a clock it
//! was not handed. Callers pass "now" in; the only ambient input is the random seed of
//! the id generator.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod censor;
pub mod condition;
pub mod duration;
pub mod error;
pub mod message;
pub mod random;
pub mod redact;
pub mod size;
pub mod text;
pub mod ulid;

pub use backoff::Backoff;
pub use duration::{DurationError, parse_duration};
pub use error::error_chain;
pub use message::{Message, MessageError};
pub use size::{SizeError, parse_size};
pub use text::escape_controls;
pub use ulid::Ulid;
