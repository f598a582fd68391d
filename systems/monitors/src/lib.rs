//! wubot's monitors: things that look at the world on a schedule and report what they
//! see as messages. Each monitor implements [`Monitor`] (one `check`); the
//! [`MonitorConnector`] around it does what every wubot monitor shared:
//!
//! - `delay` between checks (default per monitor; `5s`, `15m`, `1h` …), `rand`: up to
//!   this much extra random delay, `timeout` for one check (default 30 s);
//! - `react`: the instance's own rules, run on each message before it is queued; a
//!   message they drop or mark `last_rule` is not queued ([`react`]);
//! - a per-instance cache (a JSON object) that survives restarts, kept in the store;
//! - a check that fails or times out becomes a message
//!   `{subject: "CRITICAL: <error>" | "Timed out after N seconds", status: CRITICAL, color: RED}`
//!   (with `errmsg`, and `link` for monitors that watch a URL) instead of silence.
//!
//! The monitors: `pulse`, `uptime`, `command`, `rss`, `webfetch`, `webmatches`,
//! `diskspace`, `filetail` (each module documents its keys and fields;
//! `docs/monitors.md` has them all with examples).
//!
//! In wubot's layout, `plugins/Pulse/myhost.yaml` defines connector `Pulse-myhost`
//! of type `pulse`; its messages get `key: Pulse-myhost`.
//!
//! The web monitors use reqwest with rustls on the aws-lc-rs provider (the only one in
//! the build); the binary installs it as the process default at start.

mod command;
mod diskspace;
mod filetail;
mod http;
mod monitor;
mod pulse;
pub mod react;
mod rss;
mod seen;
mod uptime;
mod web;

pub use command::CommandMonitor;
pub use diskspace::{DiskSpace, Usage};
pub use filetail::FileTail;
pub use http::{FetchError, Fetcher, Page};
pub use monitor::{CheckOutcome, Monitor, MonitorConnector, MonitorSettings, SCHEDULE_KEYS, critical};
pub use pulse::Pulse;
pub use rss::{Rss, parse_feed};
pub use uptime::{LoadSource, Loads, Uptime};
pub use web::{WebFetch, WebMatches, all_matches};

use flotilla_connector::ConnectorType;

/// The connector types this crate provides.
pub fn connector_types() -> Vec<ConnectorType> {
    vec![
        pulse::CONNECTOR_TYPE,
        uptime::CONNECTOR_TYPE,
        command::CONNECTOR_TYPE,
        rss::CONNECTOR_TYPE,
        web::WEBFETCH,
        web::WEBMATCHES,
        diskspace::CONNECTOR_TYPE,
        filetail::CONNECTOR_TYPE,
    ]
}
