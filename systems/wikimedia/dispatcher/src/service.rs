//! The dispatcher as a node service: its configuration sections (`dispatcher:`,
//! `control:`, `redis:`; SPEC §3 and §6), when it runs, and how the node starts and
//! stops it.
//!
//! The dispatcher runs when the configuration asks for it: a `dispatcher:` section (and
//! not `enabled: false`), or an enabled Wikimedia source connector (`wikimedia`,
//! `wikimedia-file`) with no `dispatcher: {enabled: false}`. Otherwise it binds no
//! port and creates no queue or consumer group. `control:` and `redis:` are its
//! settings; they are checked whenever present, so `flotilla check` reports their
//! mistakes even while the dispatcher is off.
//!
//! `dispatcher.subscribe` (who may create subscriptions) defaults to `open` only while
//! `control.listen` is a loopback address, and to `admin` otherwise; `flotilla check`
//! says which applies and why ([`Service::notes`]).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use flotilla_config::{Diagnostic, Located};
use flotilla_service::{RunningService, Service, ServiceConfig, ServiceContext, ServiceType};
use flotilla_wikimedia_core::{FILE_CONNECTOR_TYPE, STREAM_CONNECTOR_TYPE, SubscribePolicy};
use serde::Deserialize;

use crate::{Dispatcher, DispatcherSettings};

/// The registry entry for the binary.
pub const SERVICE_TYPE: ServiceType = ServiceType {
    name: "dispatcher",
    description: "Wikimedia dispatcher: subscriptions to recent changes, the control protocol, delivery into Redis",
    sections: &["dispatcher", "control", "redis"],
    build,
};

/// Where the control protocol listens unless `control.listen` says otherwise.
pub const DEFAULT_CONTROL_LISTEN: &str = "127.0.0.1:29438";
/// Where deliveries go unless `redis.url` says otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDispatcher {
    enabled: Option<Located<serde_json::Value>>,
    source_queue: Option<Located<String>>,
    max_connections: Option<Located<u64>>,
    max_connections_per_ip: Option<Located<u64>>,
    max_definitions: Option<Located<u64>>,
    max_subscriptions: Option<Located<u64>>,
    max_subscriptions_per_ip: Option<Located<u64>>,
    max_pattern_memory: Option<Located<String>>,
    max_pattern_memory_per_subscription: Option<Located<String>>,
    idle_timeout: Option<Located<String>>,
    subscribe: Option<Located<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    listen: Option<Located<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Option<Located<String>>,
    tls_ca: Option<Located<String>>,
    key_prefix: Option<Located<String>>,
}

/// The dispatcher, configured and ready to start.
struct DispatcherService {
    settings: DispatcherSettings,
    control_listen: SocketAddr,
    /// Whether `dispatcher.subscribe` was written (or is the default).
    subscribe_given: bool,
}

fn build(config: &ServiceConfig<'_>) -> Result<Option<Box<dyn Service>>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let dispatcher_section = config.section("dispatcher");
    let raw: RawDispatcher = config.decode("dispatcher", &mut problems);
    let control: RawControl = config.decode("control", &mut problems);
    let redis: RawRedis = config.decode("redis", &mut problems);

    let mut enabled =
        dispatcher_section.is_some() || config.has_connector_of_type(&[STREAM_CONNECTOR_TYPE, FILE_CONNECTOR_TYPE]);
    if let Some(flag) = &raw.enabled {
        match flag.as_flag("dispatcher.enabled") {
            Ok(flag) => enabled = flag,
            Err(problem) => problems.push(problem),
        }
    }

    let mut settings = DispatcherSettings { admin_token: config.admin_token.map(str::to_string), ..Default::default() };
    if let Some(queue) = &raw.source_queue {
        if flotilla_bus::valid_name(&queue.value) {
            settings.source_queue = queue.value.clone();
        } else {
            problems.push(Diagnostic::at(
                &queue.location,
                format!("dispatcher.source_queue: '{}' is not a valid queue name", queue.value),
            ));
        }
    }
    let mut count = |value: &Option<Located<u64>>, key: &str, target: &mut usize| {
        if let Some(value) = value {
            if value.value == 0 {
                problems.push(Diagnostic::at(&value.location, format!("dispatcher.{key}: must be at least 1")));
            } else {
                *target = usize::try_from(value.value).unwrap_or(usize::MAX);
            }
        }
    };
    count(&raw.max_connections, "max_connections", &mut settings.control.max_connections);
    count(&raw.max_connections_per_ip, "max_connections_per_ip", &mut settings.control.max_connections_per_ip);
    count(&raw.max_definitions, "max_definitions", &mut settings.limits.max_definitions);
    count(&raw.max_subscriptions, "max_subscriptions", &mut settings.limits.max_subscriptions);
    count(
        &raw.max_subscriptions_per_ip,
        "max_subscriptions_per_ip",
        &mut settings.limits.max_subscriptions_per_address,
    );
    let mut size = |value: &Option<Located<String>>, key: &str, target: &mut usize| {
        if let Some(value) = value {
            match flotilla_core::parse_size(&value.value) {
                Ok(0) => {
                    problems.push(Diagnostic::at(&value.location, format!("dispatcher.{key}: must be more than 0")))
                }
                Ok(bytes) => *target = usize::try_from(bytes).unwrap_or(usize::MAX),
                Err(e) => problems.push(Diagnostic::at(&value.location, format!("dispatcher.{key}: {e}"))),
            }
        }
    };
    size(&raw.max_pattern_memory, "max_pattern_memory", &mut settings.limits.max_pattern_memory);
    size(
        &raw.max_pattern_memory_per_subscription,
        "max_pattern_memory_per_subscription",
        &mut settings.limits.max_pattern_memory_per_subscription,
    );
    if let Some(timeout) = &raw.idle_timeout {
        match flotilla_core::parse_duration(&timeout.value) {
            Ok(timeout) => settings.control.idle_timeout = timeout,
            Err(e) => problems.push(Diagnostic::at(&timeout.location, format!("dispatcher.idle_timeout: {e}"))),
        }
    }

    let mut control_listen: SocketAddr = DEFAULT_CONTROL_LISTEN.parse().expect("the default is an address");
    if let Some(listen) = &control.listen {
        match listen.value.parse() {
            Ok(addr) => control_listen = addr,
            Err(_) => problems.push(Diagnostic::at(
                &listen.location,
                format!("control.listen: '{}' is not an address:port such as {DEFAULT_CONTROL_LISTEN}", listen.value),
            )),
        }
    }

    settings.subscribe = match &raw.subscribe {
        Some(given) => {
            let policy = SubscribePolicy::parse(&given.value);
            if policy.is_none() {
                let message = format!("dispatcher.subscribe: expected open, admin or closed, found '{}'", given.value);
                problems.push(Diagnostic::at(&given.location, message));
            }
            if policy == Some(SubscribePolicy::Admin) && config.admin_token.is_none() {
                problems.push(Diagnostic::at(
                    &given.location,
                    "dispatcher.subscribe: admin needs http.admin_token (the token clients give as `subscribe NAME ADMIN_TOKEN`)",
                ));
            }
            policy.unwrap_or(SubscribePolicy::Closed)
        }
        None => default_subscribe(control_listen),
    };

    let redis_url = redis.url.as_ref().map_or(DEFAULT_REDIS_URL, |url| url.value.as_str());
    let redis_tls_ca = redis.tls_ca.as_ref().map(|ca| std::path::PathBuf::from(&ca.value));
    if let Err(problem) = crate::redis_delivery::check_url(redis_url, redis_tls_ca.as_deref()) {
        // A problem of the CA file is told at its line, the URL's at the URL's.
        let (key, at) = if problem.is_about_ca() { ("tls_ca", &redis.tls_ca) } else { ("url", &redis.url) };
        let location = at.as_ref().map(|value| value.location.clone());
        problems.push(Diagnostic { location, message: format!("redis.{key}: {problem}") });
    }
    settings.redis_url = Some(redis_url.to_string());
    settings.redis_tls_ca = redis_tls_ca;
    if let Some(prefix) = &redis.key_prefix {
        match crate::redis_delivery::check_key_prefix(&prefix.value) {
            Ok(()) => settings.redis_key_prefix = prefix.value.clone(),
            Err(problem) => problems.push(Diagnostic::at(&prefix.location, format!("redis.key_prefix: {problem}"))),
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    if !enabled {
        return Ok(None);
    }
    let subscribe_given = raw.subscribe.is_some();
    Ok(Some(Box::new(DispatcherService { settings, control_listen, subscribe_given })))
}

/// `dispatcher.subscribe` when not given: `open` only while the control port listens
/// on loopback (then only local users reach it), `admin` otherwise.
pub fn default_subscribe(control_listen: SocketAddr) -> SubscribePolicy {
    if control_listen.ip().is_loopback() { SubscribePolicy::Open } else { SubscribePolicy::Admin }
}

/// Who may create subscriptions, and why, for `flotilla check`.
fn subscribe_note(policy: SubscribePolicy, given: bool, listen: SocketAddr, admin_token: bool) -> String {
    let why = match (given, listen.ip().is_loopback()) {
        (true, _) => String::new(),
        (false, true) => format!(" (the default while control.listen {listen} is on loopback)"),
        (false, false) => format!(" (the default, as control.listen {listen} is not on loopback)"),
    };
    let what = match policy {
        SubscribePolicy::Open if listen.ip().is_loopback() => {
            "anyone who can reach the control port, every local user, can create subscriptions".to_string()
        }
        SubscribePolicy::Open => format!("anyone who can reach {listen} can create subscriptions"),
        SubscribePolicy::Admin if admin_token => {
            "creating a subscription needs http.admin_token (`subscribe NAME ADMIN_TOKEN`, or the HTTP API)".to_string()
        }
        SubscribePolicy::Admin => "creating a subscription needs http.admin_token, and none is set: no one can; \
             set http.admin_token, or dispatcher.subscribe: open to let anyone who can reach the port"
            .to_string(),
        SubscribePolicy::Closed => "no new subscriptions, over the control protocol or HTTP".to_string(),
    };
    format!("dispatcher.subscribe: {}{why}: {what}", policy.name())
}

#[async_trait::async_trait]
impl Service for DispatcherService {
    fn notes(&self) -> Vec<String> {
        let admin_token = self.settings.admin_token.is_some();
        vec![subscribe_note(self.settings.subscribe, self.subscribe_given, self.control_listen, admin_token)]
    }

    async fn start(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<Arc<dyn RunningService>> {
        let control = tokio::net::TcpListener::bind(self.control_listen).await.with_context(|| {
            format!("cannot listen for the dispatcher's control protocol on {}", self.control_listen)
        })?;
        let dispatcher = Dispatcher::start(self.settings, ctx.bus, Some(ctx.store), control, ctx.shutdown).await?;
        Ok(Arc::new(dispatcher))
    }
}

#[async_trait::async_trait]
impl RunningService for Dispatcher {
    fn name(&self) -> &'static str {
        SERVICE_TYPE.name
    }

    fn router(&self) -> Option<axum::Router> {
        Some(Dispatcher::router(self))
    }

    fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        vec![("control", self.control_addr())]
    }

    fn status(&self) -> serde_json::Value {
        self.shared().status()
    }

    /// The status without the names of parked Redis keys: a key is a subscription's
    /// name (behind `redis.key_prefix`). Their number stays.
    fn public_status(&self) -> serde_json::Value {
        let mut status = self.shared().status();
        if let Some(fields) = status.as_object_mut() {
            fields.remove("redis_parked_keys");
        }
        status
    }

    fn private_queue(&self, queue: &str) -> bool {
        crate::matcher::is_subscription_queue(queue)
    }

    async fn stop(&self) {
        Dispatcher::stop(self).await;
    }
}
