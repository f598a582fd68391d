//! Flotilla's Wikimedia dispatcher as a running service (SPEC §6): the shell around the
//! pure core in `flotilla-wikimedia-core`.
//!
//! ```text
//!  source queue (reactor)          matcher               dispatch.redis         Redis
//!  wikimedia messages ──────────▶  parse, match,  ──────▶  (one entry per ──────▶ LPUSH <name>
//!                     group         format                 delivery)  │   group
//!                     dispatcher                                      │   redis
//!                                                     group           └──────▶ sub.<name>
//!                                                     subscriptions   (bus queue per subscription: SSE, tail)
//!  control server (TCP) ─┐
//!  HTTP API ─────────────┴──▶ Subscriptions (in memory, RwLock) ──▶ store (write-behind, in order)
//! ```
//!
//! Deleting a subscription puts a purge entry on `dispatch.redis`, which both of its
//! consumers act on in order: whoever takes the name next starts empty ([`state`]).
//!
//! - [`client`]: a client of the control protocol (the CLI's and the tests').
//! - [`persist`]: subscriptions in the SQL store, loaded at start with `restore_all`.
//! - [`state`]: the shared subscriptions and the ordered write-behind of their changes.
//! - [`control`]: the TCP control server with its caps and limits.
//! - [`matcher`]: the bus consumer that matches changes and queues deliveries.
//! - [`fanout`]: copies the deliveries into each subscription's bus queue.
//! - [`redis_delivery`]: the worker that pushes deliveries into Redis, in order, losing
//!   nothing while Redis is down, and parking a key Redis refuses so it holds up no
//!   other.
//! - [`http`]: the subscription API and the per-subscription event stream.
//!
//! - [`service`]: the node service (its configuration sections, when it runs).
//!
//! [`Dispatcher::start`] wires it all. The binary registers [`SERVICE_TYPE`]; the node
//! then merges [`Dispatcher::router`] into its HTTP server and stops the dispatcher
//! after its connectors have stopped and before its bus closes.
//!
//! Architecture Invariant: the protocol, matching and formats stay in
//! `flotilla-wikimedia-core`; this crate only moves bytes between them and the bus, the store,
//! Redis and sockets.

#![forbid(unsafe_code)]

pub mod client;
pub mod control;
pub mod fanout;
pub mod http;
pub mod matcher;
pub mod persist;
pub mod redis_delivery;
pub mod service;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use flotilla_bus::Bus;
use flotilla_store::Store;
use flotilla_wikimedia_core::{Limits, SubscribeAccess, SubscribePolicy, Subscriptions, TokenHash, Wikis};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use control::ControlLimits;
pub use matcher::{DELIVERY_QUEUE, subscription_queue};
pub use service::SERVICE_TYPE;
pub use state::Shared;

/// How the dispatcher is set up.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// The queue recent changes arrive in (the `wikimedia` connectors' queue).
    pub source_queue: String,
    /// Where deliveries go (`redis.url`); `None` keeps them on the bus only.
    pub redis_url: Option<String>,
    /// The CA file to trust for a `rediss://` URL (`redis.tls_ca`); `None`: the system's.
    pub redis_tls_ca: Option<std::path::PathBuf>,
    /// Put before each subscription's name to make its Redis key (`redis.key_prefix`;
    /// empty by default: `LPUSH <name>`).
    pub redis_key_prefix: String,
    pub control: ControlLimits,
    /// Caps on subscriptions, definitions and the memory of compiled patterns.
    pub limits: Limits,
    /// `http.admin_token`, which the HTTP API accepts for any subscription, and which
    /// `subscribe NAME ADMIN_TOKEN` gives on the control protocol.
    pub admin_token: Option<String>,
    /// Who may create subscriptions (`dispatcher.subscribe`), over the control
    /// protocol and over HTTP.
    pub subscribe: SubscribePolicy,
}

impl Default for DispatcherSettings {
    fn default() -> DispatcherSettings {
        DispatcherSettings {
            source_queue: "reactor".to_string(),
            redis_url: Some("redis://127.0.0.1:6379/0".to_string()),
            redis_tls_ca: None,
            redis_key_prefix: String::new(),
            control: ControlLimits::default(),
            limits: Limits::default(),
            admin_token: None,
            subscribe: SubscribePolicy::default(),
        }
    }
}

/// A running dispatcher.
pub struct Dispatcher {
    shared: Arc<Shared>,
    control_addr: SocketAddr,
    api: http::ApiState,
    shutdown: CancellationToken,
    /// Taken by [`Dispatcher::stop`].
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Dispatcher {
    /// Loads the stored subscriptions (`store`; `None` keeps them in memory only) and
    /// starts the control server on `control`, the matcher and the Redis worker. Its
    /// tasks end when `shutdown` is cancelled (then [`Dispatcher::stop`] waits for them).
    ///
    /// # Errors
    /// The store could not be read, or Redis's URL, CA file or TLS certificate is wrong
    /// ([`redis_delivery::Redis::open`]; a Redis that is down is no error).
    pub async fn start(
        settings: DispatcherSettings,
        bus: Arc<dyn Bus>,
        store: Option<Arc<Store>>,
        control: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Dispatcher> {
        // First: a wrong certificate refuses the start before any listener is bound.
        let redis = match &settings.redis_url {
            Some(url) => Some(redis_delivery::Redis::open(url, settings.redis_tls_ca.as_deref()).await?),
            None => None,
        };
        let wikis = Wikis::embedded();
        let mut subscriptions = Subscriptions::new(wikis).with_limits(settings.limits);
        let persisted = store.map(persist::SubscriptionStore::new);
        if let Some(persisted) = &persisted {
            persisted.migrate().await.context("creating the dispatcher's tables")?;
            let loaded = persisted.load_all(wikis).await.context("loading the dispatcher's subscriptions")?;
            for problem in &loaded.skipped {
                tracing::warn!(problem = %problem, "Skipped a stored subscription row.");
            }
            let count = loaded.subscriptions.len();
            subscriptions.restore_all(loaded.subscriptions).context("restoring the dispatcher's subscriptions")?;
            tracing::info!(
                subscriptions = count,
                definitions = subscriptions.index().len(),
                "Dispatcher subscriptions loaded."
            );
        }
        let shared = Arc::new(Shared::new(subscriptions, persisted).with_bus(bus.clone()));
        let control_addr = control.local_addr().context("reading the control server's address")?;
        let access = SubscribeAccess {
            policy: settings.subscribe,
            admin_token: settings.admin_token.as_deref().map(TokenHash::of),
        };
        let mut tasks = vec![
            tokio::spawn(control::serve(control, shared.clone(), settings.control, access, shutdown.clone())),
            tokio::spawn(matcher::run(bus.clone(), settings.source_queue.clone(), shared.clone(), shutdown.clone())),
            tokio::spawn(fanout::run(bus.clone(), shared.clone(), shutdown.clone())),
            {
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { shared.keep_saving(shutdown).await })
            },
        ];
        if let Some(redis) = redis {
            let prefix = settings.redis_key_prefix.clone();
            tasks.push(tokio::spawn(redis_delivery::run(bus.clone(), redis, prefix, shared.clone(), shutdown.clone())));
        }
        let api = http::ApiState {
            shared: shared.clone(),
            bus,
            wikis,
            admin_token: settings.admin_token.as_deref().map(Arc::from),
            subscribe: settings.subscribe,
            shutdown: shutdown.clone(),
        };
        if settings.subscribe == SubscribePolicy::Admin && settings.admin_token.is_none() {
            tracing::warn!(control = %control_addr,
                "dispatcher.subscribe is admin (the default when the control port is not on loopback) but http.admin_token is not set: no one can create subscriptions.");
        }
        tracing::info!(control = %control_addr, source = %settings.source_queue, subscribe = settings.subscribe.name(),
            redis = settings.redis_url.as_deref().map(redact).as_deref().unwrap_or("off"), "Dispatcher started.");
        Ok(Dispatcher { shared, control_addr, api, shutdown, tasks: std::sync::Mutex::new(tasks) })
    }

    /// Where the control server listens.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The shared state (tests, status).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The HTTP routes, to merge into the node's router.
    pub fn router(&self) -> axum::Router {
        http::router(self.api.clone())
    }

    /// Stops accepting, finishes the batches in hand, saves what is unsaved, ends event
    /// streams, and returns when every task has ended.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "A dispatcher task failed.");
            }
        }
        tracing::info!("Dispatcher stopped.");
    }
}

/// A Redis URL with its password hidden, for logs and errors.
fn redact(url: &str) -> String {
    flotilla_core::redact::redact_url(url)
}
