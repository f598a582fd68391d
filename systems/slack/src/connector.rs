//! The `slack` connector: drains its outbox (`outbox.<name>`: the handlers' answers and
//! whatever rules `Send` it) into the Web API, in order, one call at a time.
//!
//! Each outbox message is acknowledged only once Slack has answered it: `ok: true`, or
//! `ok: false` (permanent: the message is copied to [`FAILED_QUEUE`] with Slack's error
//! in `errmsg`, counted, shown in status, and acknowledged so it does not block the
//! ones behind it). A transient failure (no connection, 5xx, an answer that is not
//! JSON, rate limits that outlast the client's retries) leaves the message unacknowledged
//! and is retried with backoff: nothing handed to the outbox is lost while Slack is
//! unreachable. A message that cannot become a call (no channel) is dropped with a
//! warning, its reason in `errmsg` on [`FAILED_QUEUE`].
//!
//! With `app_token`, the connector also keeps a Socket Mode connection ([`crate::socket`]):
//! on a fleet it runs on one node at a time, as Socket Mode wants one client per app.
//!
//! The gateway and the handlers are not here but in the service ([`crate::service`]):
//! they must run on every node, while one poster per connector drains the outbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flotilla_bus::Delivery;
use flotilla_connector::{Backoff, Connector, ConnectorContext};
use flotilla_core::Message;

use crate::config::SlackSettings;
use crate::gateway::Intake;
use crate::persist::SeenEvents;
use crate::socket::SocketMode;
use crate::webapi::{ApiError, WebApi};

/// Where outbox messages Slack refused go, with `errmsg` (never read by the reactor, so
/// a rule that keeps sending a bad message cannot loop on its own failure).
pub const FAILED_QUEUE: &str = "slack_failed";

/// The `slack` connector.
pub struct SlackConnector {
    settings: SlackSettings,
}

impl SlackConnector {
    pub fn new(settings: SlackSettings) -> SlackConnector {
        SlackConnector { settings }
    }
}

#[derive(Default)]
struct Counters {
    /// Socket Mode connections made.
    socket_connections: AtomicU64,
    posted: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn report(&self, ctx: &ConnectorContext) {
        let last_error = self.last_error.lock().map(|e| e.clone()).unwrap_or_default();
        ctx.set_detail(serde_json::json!({
            "posted": self.posted.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "retries": self.retries.load(Ordering::Relaxed),
            "socket_connections": self.socket_connections.load(Ordering::Relaxed),
            "last_error": last_error,
        }));
    }

    fn error(&self, text: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(text);
        }
    }
}

#[async_trait::async_trait]
impl Connector for SlackConnector {
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
        let api = Arc::new(WebApi::new(&self.settings.api_url, self.settings.bot_token.clone())?);
        let counters = Arc::new(Counters::default());
        counters.report(ctx);
        let outbox = async {
            let tasks = self.settings.tasks.iter().map(|task| crate::tasks::run(ctx, &api, task));
            tokio::try_join!(drain_outbox(ctx, &api, &counters), futures_util::future::try_join_all(tasks)).map(drop)
        };
        tracing::info!(connector = %ctx.name(), api = %self.settings.api_url, socket_mode = self.settings.app_token.is_some(),
            "Slack connector started; posting its outbox.");
        let Some(app_token) = &self.settings.app_token else { return outbox.await };
        ctx.store().migrate(&crate::persist::MIGRATIONS).await?;
        let mode = SocketMode {
            api: WebApi::new(&self.settings.api_url, app_token.clone())?,
            expected: self.settings.expected.clone(),
            intake: Arc::new(Intake {
                connector: ctx.name().to_string(),
                hostname: ctx.hostname().to_string(),
                bus: ctx.bus().clone(),
                seen: SeenEvents::new(ctx.store().clone(), ctx.name()),
                counters: Arc::default(),
            }),
            tls: tls_config()?,
        };
        let report = {
            let (ctx, counters) = (ctx.clone(), counters.clone());
            move |connections: u64| {
                counters.socket_connections.store(connections, Ordering::Relaxed);
                counters.report(&ctx);
            }
        };
        let socket = crate::socket::run(mode, ctx.shutdown().clone(), report);
        tokio::try_join!(outbox, socket).map(drop)
    }
}

/// TLS for Socket Mode's `wss://`: aws-lc-rs (the binary's one provider), the system's roots.
fn tls_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A malformed system certificate is skipped; the others still count.
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Posts the outbox until shutdown.
async fn drain_outbox(ctx: &ConnectorContext, api: &WebApi, counters: &Counters) -> anyhow::Result<()> {
    let mut outbox = ctx.outbox().await?;
    loop {
        let fetched = tokio::select! {
            fetched = outbox.fetch(64, Duration::from_secs(1)) => fetched?,
            () = ctx.shutdown().cancelled() => return Ok(()),
        };
        for delivery in fetched {
            if !post_one(ctx, api, counters, &delivery).await {
                return Ok(()); // shut down while retrying: the message stays on the bus
            }
            outbox.ack(std::slice::from_ref(&delivery.id)).await?;
            counters.report(ctx);
        }
    }
}

/// Posts one outbox message, retrying transient failures until it is answered or the
/// node shuts down (then `false`).
async fn post_one(ctx: &ConnectorContext, api: &WebApi, counters: &Counters, delivery: &Delivery) -> bool {
    let message = match Message::from_json(&delivery.payload) {
        Ok(message) => message,
        Err(error) => {
            fail(ctx, counters, None, format!("the outbox message is not a JSON object: {error}")).await;
            return true;
        }
    };
    let call = match crate::outbox::call_for(message.fields()) {
        Ok(call) => call,
        Err(reason) => {
            fail(ctx, counters, Some(message), reason).await;
            return true;
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    loop {
        match api.call(call.method, &call.arguments).await {
            Ok(_) => {
                counters.posted.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Err(error @ ApiError::Slack { .. }) => {
                fail(ctx, counters, Some(message), error.to_string()).await;
                return true;
            }
            Err(error) => {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                counters.error(error.to_string());
                counters.report(ctx);
                let wait = backoff.next_delay();
                tracing::warn!(connector = %ctx.name(), %error, ?wait, "A Slack Web API call failed; retrying the same message.");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = ctx.shutdown().cancelled() => return false,
                }
            }
        }
    }
}

/// Records a message Slack (or the outbox's reader) refused: `errmsg` on
/// [`FAILED_QUEUE`], the status's `last_error`.
async fn fail(ctx: &ConnectorContext, counters: &Counters, message: Option<Message>, errmsg: String) {
    tracing::warn!(connector = %ctx.name(), %errmsg, "An outbox message could not be posted to Slack; it is kept in slack_failed.");
    counters.failed.fetch_add(1, Ordering::Relaxed);
    counters.error(errmsg.clone());
    let mut message = message.unwrap_or_default();
    message.set("errmsg", errmsg);
    message.set("status", "CRITICAL");
    if let Err(error) = ctx.bus().publish(FAILED_QUEUE, vec![Bytes::from(message.to_json())]).await {
        tracing::error!(connector = %ctx.name(), %error, "Could not keep a refused Slack message in slack_failed.");
    }
}
