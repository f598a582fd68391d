//! The web UI as a node service: its registry entry, `build` (the `webui:` section) and
//! `start` (the shared state and the router the node merges into its HTTP server).

use std::sync::{Arc, Mutex};

use flotilla_config::Diagnostic;
use flotilla_service::{RunningService, Service, ServiceConfig, ServiceContext, ServiceType};

use crate::config::{RawWebUi, WebUiSettings};
use crate::security::{LoginLimiter, Sessions};

/// The registry entry.
pub const SERVICE_TYPE: ServiceType = ServiceType {
    name: "webui",
    description: "the web UI: the fleet, a live tail, the IRC log, notifications, subscriptions",
    sections: &["webui"],
    build,
};

/// At most this many sessions at once; the oldest is forgotten beyond it.
const MAX_SESSIONS: usize = 1_000;

fn build(config: &ServiceConfig<'_>) -> Result<Option<Box<dyn Service>>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let raw: RawWebUi = config.decode("webui", &mut problems);
    let settings = crate::config::decode(raw, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let admin_token = config.admin_token.filter(|t| !t.is_empty()).map(str::to_string);
    Ok(settings.map(|settings| Box::new(WebUiService { settings, admin_token }) as Box<dyn Service>))
}

struct WebUiService {
    settings: WebUiSettings,
    admin_token: Option<String>,
}

/// What every page handler shares.
pub(crate) struct Shared {
    pub settings: WebUiSettings,
    pub admin_token: Option<String>,
    pub ctx: ServiceContext,
    pub sessions: Mutex<Sessions>,
    pub logins: Mutex<LoginLimiter>,
    /// For the dispatcher's HTTP API on this node's own listener.
    pub http: reqwest::Client,
}

pub(crate) type AppState = Arc<Shared>;

#[async_trait::async_trait]
impl Service for WebUiService {
    async fn start(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<Arc<dyn RunningService>> {
        let shared = Arc::new(Shared {
            sessions: Mutex::new(Sessions::new(self.settings.session_ttl.as_secs(), MAX_SESSIONS)),
            logins: Mutex::new(LoginLimiter::new(self.settings.login_attempts_per_minute, 60)),
            settings: self.settings,
            admin_token: self.admin_token,
            ctx,
            http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?,
        });
        Ok(Arc::new(RunningWebUi { shared }))
    }
}

struct RunningWebUi {
    shared: AppState,
}

#[async_trait::async_trait]
impl RunningService for RunningWebUi {
    fn name(&self) -> &'static str {
        "webui"
    }

    fn router(&self) -> Option<axum::Router> {
        Some(crate::pages::router(self.shared.clone()))
    }

    fn status(&self) -> serde_json::Value {
        let sessions = self.shared.sessions.lock().map(|s| s.len()).unwrap_or(0);
        serde_json::json!({ "sessions": sessions })
    }

    fn public_status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    async fn stop(&self) {
        self.shared.ctx.shutdown.cancel();
    }
}
