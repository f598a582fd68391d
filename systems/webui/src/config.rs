//! The `webui:` section. The web UI runs on every node (SPEC §12: "served by the node
//! at `http.listen`") unless `webui: {enabled: false}`.
//!
//! ```yaml
//! webui:
//!   enabled: true
//!   session_ttl: 12h              # how long a login lasts
//!   secure_cookies: false         # true when the UI is served over TLS (a proxy in front)
//!   login_attempts_per_minute: 10 # per client address
//!   notifications_queue: notifications
//! ```

use std::time::Duration;

use flotilla_config::{Diagnostic, Located};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebUi {
    enabled: Option<Located<serde_json::Value>>,
    session_ttl: Option<Located<String>>,
    secure_cookies: Option<Located<serde_json::Value>>,
    login_attempts_per_minute: Option<Located<u64>>,
    notifications_queue: Option<Located<String>>,
}

/// The web UI's settings, decoded.
#[derive(Debug, Clone)]
pub struct WebUiSettings {
    pub session_ttl: Duration,
    /// Mark cookies `Secure` (the UI is reached over TLS, through a proxy: the node itself
    /// serves plain HTTP).
    pub secure_cookies: bool,
    pub login_attempts_per_minute: usize,
    /// The queue `/notifications` shows (wubot's notifications).
    pub notifications_queue: String,
}

impl Default for WebUiSettings {
    fn default() -> Self {
        WebUiSettings {
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            login_attempts_per_minute: 10,
            notifications_queue: "notifications".into(),
        }
    }
}

/// Decodes the section: `None` when it turns the UI off; every problem reported.
pub(crate) fn decode(raw: RawWebUi, problems: &mut Vec<Diagnostic>) -> Option<WebUiSettings> {
    let mut settings = WebUiSettings::default();
    let mut enabled = true;
    if let Some(flag) = &raw.enabled {
        match flag.as_flag("webui.enabled") {
            Ok(flag) => enabled = flag,
            Err(problem) => problems.push(problem),
        }
    }
    if let Some(flag) = &raw.secure_cookies {
        match flag.as_flag("webui.secure_cookies") {
            Ok(flag) => settings.secure_cookies = flag,
            Err(problem) => problems.push(problem),
        }
    }
    if let Some(ttl) = &raw.session_ttl {
        match flotilla_core::parse_duration(&ttl.value) {
            Ok(d) if d.as_secs() >= 1 => settings.session_ttl = d,
            Ok(_) => problems.push(Diagnostic::at(&ttl.location, "webui.session_ttl: must be at least 1s")),
            Err(e) => problems.push(Diagnostic::at(&ttl.location, format!("webui.session_ttl: {e}"))),
        }
    }
    if let Some(limit) = &raw.login_attempts_per_minute {
        if limit.value == 0 {
            problems.push(Diagnostic::at(&limit.location, "webui.login_attempts_per_minute: must be at least 1"));
        } else {
            settings.login_attempts_per_minute = usize::try_from(limit.value).unwrap_or(usize::MAX);
        }
    }
    if let Some(queue) = &raw.notifications_queue {
        if flotilla_bus::valid_name(&queue.value) {
            settings.notifications_queue = queue.value.clone();
        } else {
            problems.push(Diagnostic::at(
                &queue.location,
                format!("webui.notifications_queue: '{}' is not a valid queue name", queue.value),
            ));
        }
    }
    enabled.then_some(settings)
}
