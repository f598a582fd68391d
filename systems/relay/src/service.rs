//! The relay as a node service: it runs when a `groups:` section names at least one
//! group. At start it loads each group's saved patterns and decisions, creates a
//! consumer group on every `review.<group>` (so the bus's retention never trims a
//! report waiting for review: nothing rejected is lost), and starts one relay stage
//! per queue its members emit into.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use flotilla_config::Diagnostic;
use flotilla_service::{RunningService, Service, ServiceConfig, ServiceContext, ServiceType};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, GroupSettings};
use crate::groups::{Group, Groups, review_queue};

/// The registry entry for the binary.
pub const SERVICE_TYPE: ServiceType = ServiceType {
    name: "relay",
    description: "Relay groups: reports relayed between connectors through a censor, with a review queue",
    sections: &["groups"],
    build,
};

/// The consumer group that holds every review queue's reports (it never acknowledges).
const KEEP_GROUP: &str = "review-keep";

struct RelayService {
    groups: Vec<GroupSettings>,
    admin_token: Option<Arc<str>>,
}

fn build(config: &ServiceConfig<'_>) -> Result<Option<Box<dyn Service>>, Vec<Diagnostic>> {
    let groups = config::decode(config)?;
    if groups.is_empty() {
        return Ok(None);
    }
    Ok(Some(Box::new(RelayService { groups, admin_token: config.admin_token.map(Arc::from) })))
}

#[async_trait::async_trait]
impl Service for RelayService {
    async fn start(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<Arc<dyn RunningService>> {
        let mut loaded = Vec::new();
        let mut queues = BTreeSet::new();
        for settings in self.groups {
            queues.extend(settings.members.iter().map(|m| m.queue.clone()));
            // Created now, never read: its position keeps every report retained.
            drop(ctx.bus.subscribe(&review_queue(&settings.name), KEEP_GROUP).await?);
            loaded.push(Group::load(settings, &ctx.store).await?);
        }
        let groups = Arc::new(Groups::new(loaded));
        let mut tasks = JoinSet::new();
        for queue in queues {
            tasks.spawn(crate::relay::run(ctx.bus.clone(), queue, groups.clone(), ctx.shutdown.clone()));
        }
        tracing::info!(groups = groups.groups.len(), "Relay groups started.");
        let router = crate::http::router(crate::http::ApiState {
            groups: groups.clone(),
            bus: ctx.bus.clone(),
            store: ctx.store.clone(),
            admin_token: self.admin_token,
        });
        Ok(Arc::new(RunningRelay { groups, router, tasks: Mutex::new(Some(tasks)), shutdown: ctx.shutdown }))
    }
}

struct RunningRelay {
    groups: Arc<Groups>,
    router: axum::Router,
    tasks: Mutex<Option<JoinSet<()>>>,
    shutdown: CancellationToken,
}

#[async_trait::async_trait]
impl RunningService for RunningRelay {
    fn name(&self) -> &'static str {
        "relay"
    }

    fn router(&self) -> Option<axum::Router> {
        Some(self.router.clone())
    }

    fn status(&self) -> serde_json::Value {
        json!({"groups": self.groups.groups.iter().map(|g| g.summary()).collect::<Vec<_>>()})
    }

    fn public_status(&self) -> serde_json::Value {
        // Names and counters; the patterns are the admin's.
        let groups: Vec<serde_json::Value> = self
            .groups
            .groups
            .iter()
            .map(|g| {
                let mut summary = g.summary();
                summary.as_object_mut().map(|o| o.remove("censor"));
                summary
            })
            .collect();
        json!({"groups": groups})
    }

    async fn stop(&self) {
        self.shutdown.cancel();
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut tasks) = tasks {
            while tasks.join_next().await.is_some() {}
        }
    }
}
