//! Flotilla's node runtime: everything `flotilla run` starts and the commands that
//! talk to a running node.
//!
//! - [`config`]: loading, validating and building the configuration (SPEC §3), every
//!   error with its file, line and column.
//! - [`supervisor`]: runs each connector in its own task, restarts it with backoff and
//!   jitter when it fails or panics, tracks its state.
//! - [`reactor`]: the bus consumer of queue `reactor` that runs the rule tree.
//! - [`admin`]: a Unix socket in the data directory through which `flotilla send`,
//!   `tail` and `status` reach a running node (the node holds the bus).
//! - [`http`]: `/healthz`, `/metrics`, `/api/v1/status` (the dispatcher's
//!   `/api/v1/subscriptions…` routes are merged in from `flotilla-wikimedia-dispatcher`).
//! - [`http_server`]: the listener that serves them, with a connection cap, a header
//!   timeout and an idle timeout.
//! - [`fleet`]: with a shared bus (Redis), membership in the fleet and running each
//!   connector only while this node holds its lease (fenced publishes, placement).
//! - [`node`]: starting all of it and shutting it down cleanly.
//! - [`systemd`]: `READY=1` / `STOPPING=1` for `Type=notify` units.
//!
//! Architecture Invariant: the node knows connector *types* only through the registry
//! the binary hands it; it never names a connector crate.

pub mod admin;
pub mod config;
pub mod effects;
pub mod fleet;
pub mod http;
pub mod http_server;
pub mod metrics;
pub mod node;
pub mod reactor;
pub mod reload;
pub mod status;
pub mod supervisor;
pub mod systemd;

pub use config::{Config, load_config};
pub use node::{RunningNode, start};
