//! The web UI (SPEC §12): a node service that serves server-rendered pages at
//! `http.listen` beside the API: `/` the fleet at a glance with an SVG graph of
//! messages per second per connector, `/tail` a queue's messages live through a
//! condition (server-sent events), `/logs` the IRC log by network and channel with
//! full-text search, `/notifications` wubot's notification view, `/subscriptions` the
//! dispatcher's subscriptions.
//!
//! Pages are askama templates, compiled into the binary and HTML-escaped by default:
//! every value shown, a message's text above all, is escaped. Each page is complete
//! without JavaScript; one small embedded script adds live updates. Stylesheet and
//! script are embedded and served under content-hashed URLs ([`assets`]).
//!
//! Who may do what ([`security`], docs/webui.md): with `http.admin_token` set, logging
//! in with it opens a session (cookie `HttpOnly`, `SameSite=Strict`, `Secure` when
//! `webui.secure_cookies` says the UI is served over TLS); a session may read every
//! page and change things, each form carrying the session's CSRF token; without a
//! session only the fleet page's public view is shown. With no admin token configured
//! the UI is read-only, and reads beyond the public view answer loopback only, as the
//! API does. Every page is sent with a Content-Security-Policy that allows no inline
//! script or style.
//!
//! The UI reaches other parts only through what they expose: the node's status through
//! [`flotilla_service::NodeView`], the bus and store from its service context (the IRC
//! log tables are SPEC §7's), the dispatcher through its HTTP API. It depends on no
//! other service's crate.

#![forbid(unsafe_code)]

pub mod assets;
pub mod chart;
mod config;
mod fleet;
pub mod logs;
mod notifications;
mod pages;
pub mod paging;
pub mod security;
mod service;
mod subscriptions;
mod tail;
pub mod text;

pub use config::WebUiSettings;

/// The fleet page as rendered for `status` (the node's status JSON) at Unix time `now`,
/// logged in: what `/` answers, without the HTTP around it (the benchmark's entry).
pub fn render_fleet_page(status: serde_json::Value, now: u64) -> Result<String, String> {
    use askama::Template;
    let status: fleet::StatusJson = serde_json::from_value(status).map_err(|e| e.to_string())?;
    let chrome = pages::Chrome::for_benchmark();
    fleet::build_page(chrome, status, now).render().map_err(|e| e.to_string())
}
pub use service::SERVICE_TYPE;
