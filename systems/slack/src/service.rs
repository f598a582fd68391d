//! The `slack` service: runs on every node whose configuration has an enabled `slack`
//! connector, and gives each such connector its gateway (a route at its `path` on the
//! node's HTTP server) and its consumers (one per Slack queue). It owns no section of
//! its own: it reads the connectors' sections ([`flotilla_service::ConfiguredConnector::section`]).

use std::sync::Arc;

use anyhow::Context;
use flotilla_config::Diagnostic;
use flotilla_connector::ConnectorSection;
use flotilla_service::{RunningService, Service, ServiceConfig, ServiceContext, ServiceType};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SlackSettings;
use crate::consumer::Consumer;
use crate::event::QUEUES;
use crate::gateway::{Gateway, GatewayCounters, Intake};
use crate::persist::{GlossaryTable, SeenEvents};
use crate::signature::Verifier;

/// The service type the binary registers.
pub const SERVICE_TYPE: ServiceType = ServiceType {
    name: "slack",
    description: "Slack's signed Events API gateway and the handlers' consumers, for every `slack` connector",
    sections: &[],
    build,
};

struct Planned {
    connector: String,
    forward_queue: String,
    settings: SlackSettings,
}

struct SlackService {
    planned: Vec<Planned>,
}

fn build(config: &ServiceConfig<'_>) -> Result<Option<Box<dyn Service>>, Vec<Diagnostic>> {
    let mut planned = Vec::new();
    let mut problems = Vec::new();
    for connector in config.connectors.iter().filter(|c| c.enabled && c.kind == crate::CONNECTOR_TYPE.name) {
        let section = ConnectorSection {
            name: &connector.name,
            node: &connector.section,
            path: format!("connectors.{}", connector.name),
        };
        match crate::config::settings_from_section(&section) {
            Ok(settings) => planned.push(Planned {
                connector: connector.name.clone(),
                forward_queue: connector.queue.clone(),
                settings,
            }),
            // The connector's own build reported these already.
            Err(errors) => problems.extend(errors),
        }
    }
    let mut paths: Vec<&str> = planned.iter().map(|p| p.settings.path.as_str()).collect();
    paths.sort_unstable();
    if let Some(pair) = paths.windows(2).find(|w| w[0] == w[1]) {
        problems
            .push(Diagnostic { location: None, message: format!("two slack connectors use the path '{}'", pair[0]) });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((!planned.is_empty()).then(|| Box::new(SlackService { planned }) as Box<dyn Service>))
}

/// The machine's short host name (the `hostname` of messages), if it can be read.
pub fn short_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let short = name.trim().split('.').next()?.to_string();
    (!short.is_empty()).then_some(short)
}

#[async_trait::async_trait]
impl Service for SlackService {
    async fn start(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<Arc<dyn RunningService>> {
        ctx.store.migrate(&crate::persist::MIGRATIONS).await.context("creating Slack's tables")?;
        let hostname = short_hostname().unwrap_or_else(|| ctx.node_name.clone());
        let mut router = axum::Router::new();
        let mut tasks = Vec::new();
        let mut gateways = Vec::new();
        for planned in self.planned {
            let name = planned.connector.clone();
            let glossary = GlossaryTable::new(ctx.store.clone(), &name);
            for (term, definition) in &planned.settings.glossary_seed {
                glossary.put(term, definition, false).await.context("seeding the Slack glossary")?;
            }
            let seen = SeenEvents::new(ctx.store.clone(), &name);
            let counters = Arc::new(GatewayCounters::default());
            let intake = Arc::new(Intake {
                connector: name.clone(),
                hostname: hostname.clone(),
                bus: ctx.bus.clone(),
                seen: seen.clone(),
                counters: counters.clone(),
            });
            // Without a signing secret the app uses Socket Mode only: no route.
            if let Some(secret) = &planned.settings.signing_secret {
                let gateway = Arc::new(Gateway {
                    verifier: Verifier::new(secret.expose()),
                    expected: planned.settings.expected.clone(),
                    max_body: planned.settings.max_body,
                    intake,
                });
                router = router.merge(gateway.router(&planned.settings.path));
            }
            gateways.push((name.clone(), planned.settings.path.clone(), counters));
            let handlers = Arc::new(planned.settings.handlers.clone());
            for queue in QUEUES {
                let consumer = Consumer::new(&name, &planned.forward_queue, handlers.clone(), glossary.clone());
                let (bus, shutdown) = (ctx.bus.clone(), ctx.shutdown.clone());
                let connector = name.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(error) = consumer.run(bus, queue, shutdown).await {
                        tracing::warn!(%connector, queue, %error, "A Slack consumer stopped.");
                    }
                }));
            }
            tasks.push(tokio::spawn(prune(seen, planned.settings.dedupe_for.as_secs() as i64, ctx.shutdown.clone())));
            tracing::info!(connector = %name, path = %planned.settings.path, "Slack gateway and handlers started.");
        }
        Ok(Arc::new(RunningSlack {
            router,
            gateways,
            shutdown: ctx.shutdown.clone(),
            tasks: std::sync::Mutex::new(tasks),
        }))
    }
}

/// Forgets old event ids every ten minutes.
async fn prune(seen: SeenEvents, keep_secs: i64, shutdown: CancellationToken) {
    loop {
        match seen.prune(keep_secs).await {
            Ok(0) => {}
            Ok(count) => tracing::debug!(count, "Forgot old Slack event ids."),
            Err(error) => tracing::warn!(error = %error.chain(), "Could not prune old Slack event ids."),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

struct RunningSlack {
    router: axum::Router,
    gateways: Vec<(String, String, Arc<GatewayCounters>)>,
    shutdown: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

#[async_trait::async_trait]
impl RunningService for RunningSlack {
    fn name(&self) -> &'static str {
        SERVICE_TYPE.name
    }

    fn router(&self) -> Option<axum::Router> {
        Some(self.router.clone())
    }

    fn status(&self) -> serde_json::Value {
        let gateways: Vec<serde_json::Value> = self
            .gateways
            .iter()
            .map(|(name, path, counters)| {
                let mut status = counters.snapshot();
                if let Some(map) = status.as_object_mut() {
                    map.insert("connector".into(), name.as_str().into());
                    map.insert("path".into(), path.as_str().into());
                }
                status
            })
            .collect();
        serde_json::json!({ "gateways": gateways })
    }

    async fn stop(&self) {
        self.shutdown.cancel();
        let tasks = self.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
    }
}
