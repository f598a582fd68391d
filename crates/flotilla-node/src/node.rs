//! Starting a node and stopping it cleanly.
//!
//! Start order: data directory, bus (which takes the directory's lock, so two nodes
//! never share one), store, connectors under the supervisor, the reactor, the
//! dispatcher (its subscriptions loaded from the store, its control server), the HTTP
//! server (with the dispatcher's routes), the admin socket. Shutdown reverses the flow
//! of messages: stop intake (the connectors), stop the dispatcher (the batch in hand is
//! matched and acknowledged, event streams end), let the reactor finish the batch in
//! hand and acknowledge it, stop the servers, then flush and close the bus and the store. Nothing accepted is lost: what
//! was published is durable, and what was not acknowledged is delivered again next time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use flotilla_bus::{Bus, BusError, EmbeddedBus};
use flotilla_connector::{ConnectorContext, ConnectorState, StatusBoard};
use flotilla_wikimedia_dispatcher::{ControlLimits, Dispatcher, DispatcherSettings};
use flotilla_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::config::Config;
use crate::effects::NodeEffects;
use crate::reactor::{self, ReactorCounters};
use crate::status::StatusSource;
use crate::supervisor;

/// A node that is running.
pub struct RunningNode {
    pub node_name: String,
    pub data_dir: PathBuf,
    pub http_addr: std::net::SocketAddr,
    /// Where the dispatcher's control server listens (`None`: dispatcher disabled).
    pub control_addr: Option<std::net::SocketAddr>,
    pub status: StatusSource,
    shutdown: CancellationToken,
    connectors: Vec<JoinHandle<()>>,
    reactor: JoinHandle<anyhow::Result<()>>,
    dispatcher: Option<Dispatcher>,
    servers: Vec<JoinHandle<()>>,
    bus: Arc<dyn Bus>,
    store: Arc<Store>,
    /// Registered before the node says it is ready, so a signal sent the moment it is
    /// ready is handled rather than killing the process.
    signals: Signals,
}

struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

/// Opens the node's bus in its data directory.
pub fn open_bus(config: &Config) -> Result<EmbeddedBus, BusError> {
    EmbeddedBus::open(&config.data_dir.join("bus"), config.bus.clone())
}

/// Starts everything the configuration describes.
pub async fn start(config: Config) -> anyhow::Result<RunningNode> {
    let started = Instant::now();
    use tokio::signal::unix::{SignalKind, signal};
    let signals = Signals {
        interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    let bus: Arc<dyn Bus> = match open_bus(&config) {
        Ok(bus) => Arc::new(bus),
        Err(BusError::Locked { holder, .. }) => {
            anyhow::bail!("another node is already running with data directory {}{holder}", config.data_dir.display())
        }
        Err(e) => return Err(e).context("cannot open the bus"),
    };
    let store = Arc::new(Store::open(&config.store_url).await.context("cannot open the store")?);
    let shutdown = CancellationToken::new();
    let board = StatusBoard::default();

    let mut connectors = Vec::new();
    for plan in &config.connectors {
        if !plan.enabled {
            board.register(&plan.name, &plan.kind, ConnectorState::Stopped);
            continue;
        }
        board.register(&plan.name, &plan.kind, ConnectorState::Starting);
        let ctx = ConnectorContext::new(
            &plan.name,
            &plan.kind,
            &config.hostname,
            &config.node_name,
            &plan.queue,
            bus.clone(),
            store.clone(),
            board.clone(),
            shutdown.child_token(),
            config.data_dir.clone(),
        );
        connectors.push(tokio::spawn(supervisor::supervise(
            plan.connector.clone(),
            ctx,
            plan.restart.clone(),
            board.clone(),
        )));
    }

    let counters = Arc::new(ReactorCounters::default());
    let effects = Arc::new(NodeEffects::new(bus.clone(), store.clone()));
    let reactor_shutdown = CancellationToken::new();
    let reactor = tokio::spawn(
        reactor::Reactor {
            bus: bus.clone(),
            rules: config.rules.clone(),
            effects,
            node_name: config.node_name.clone(),
            idle_warning: config.reactor.idle_warning,
            counters: counters.clone(),
        }
        .run(reactor_shutdown.clone()),
    );
    // The reactor stops after the connectors, so their last messages are processed.
    let stop_reactor = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            reactor_shutdown.cancel();
        })
    };

    let dispatcher = if config.dispatcher.enabled {
        let control = tokio::net::TcpListener::bind(config.control_listen).await.with_context(|| {
            format!("cannot listen for the dispatcher's control protocol on {}", config.control_listen)
        })?;
        let settings = DispatcherSettings {
            source_queue: config.dispatcher.source_queue.clone(),
            redis_url: config.redis_url.clone(),
            control: ControlLimits {
                max_connections: config.dispatcher.max_connections,
                max_connections_per_ip: config.dispatcher.max_connections_per_ip,
                idle_timeout: config.dispatcher.idle_timeout,
                ..ControlLimits::default()
            },
            max_definitions: config.dispatcher.max_definitions,
            admin_token: config.admin_token.as_ref().map(|t| t.0.clone()),
        };
        Some(Dispatcher::start(settings, bus.clone(), Some(store.clone()), control).await?)
    } else {
        None
    };
    let control_addr = dispatcher.as_ref().map(Dispatcher::control_addr);

    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    let status = StatusSource {
        node: config.node_name.clone(),
        hostname: config.hostname.clone(),
        started,
        started_at: SystemTime::now(),
        http_listen: Some(http_addr.to_string()),
        board: board.clone(),
        bus: bus.clone(),
        reactor: counters,
    };
    let mut servers = vec![stop_reactor];
    let mut app = crate::http::router(crate::http::HttpState {
        status: status.clone(),
        admin_token: config.admin_token.as_ref().map(|t| Arc::from(t.0.as_str())),
        shutdown: shutdown.clone(),
    });
    if let Some(dispatcher) = &dispatcher {
        app = dispatcher.router().merge(app);
    }
    let http_shutdown = shutdown.clone();
    servers.push(tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move { http_shutdown.cancelled().await });
        if let Err(error) = serve.await {
            tracing::error!(%error, "The HTTP server stopped with an error.");
        }
    }));

    let socket = admin::socket_path(&config.data_dir);
    // We hold the bus lock, so a socket file left here belongs to a node that is gone.
    let _ = std::fs::remove_file(&socket);
    let admin_listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("cannot create the admin socket {}", socket.display()))?;
    restrict_to_owner(&socket);
    servers.push(tokio::spawn(admin::serve(admin_listener, bus.clone(), status.clone(), shutdown.clone())));

    tracing::info!(
        node = %config.node_name,
        http = %http_addr,
        control = %control_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        data_dir = %config.data_dir.display(),
        connectors = config.connectors.len(),
        rules = config.rules.len(),
        startup_ms = started.elapsed().as_millis() as u64,
        "Flotilla node is ready."
    );
    Ok(RunningNode {
        node_name: config.node_name,
        data_dir: config.data_dir,
        http_addr,
        control_addr,
        status,
        shutdown,
        connectors,
        reactor,
        dispatcher,
        servers,
        bus,
        store,
        signals,
    })
}

fn restrict_to_owner(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(%error, path = %path.display(), "Could not restrict the admin socket to its owner.");
    }
}

impl RunningNode {
    /// The token whose cancellation stops the node.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for SIGINT or SIGTERM (or the shutdown token), then shuts down cleanly.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = self.signals.interrupt.recv() => tracing::info!("SIGINT received; shutting down."),
            _ = self.signals.terminate.recv() => tracing::info!("SIGTERM received; shutting down."),
            _ = self.shutdown.cancelled() => {}
        }
        self.stop().await
    }

    /// Stops intake, finishes in-flight work, flushes, and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for task in self.connectors {
            let _ = task.await;
        }
        // After the connectors (their last changes are on the bus) and before the
        // servers (its event streams must end for the HTTP server to finish) and the bus.
        if let Some(dispatcher) = self.dispatcher {
            dispatcher.stop().await;
        }
        match self.reactor.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = %format!("{error:#}"), "The reactor stopped with an error."),
            Err(error) => tracing::error!(%error, "The reactor task failed."),
        }
        for task in self.servers {
            let _ = task.await;
        }
        let _ = std::fs::remove_file(admin::socket_path(&self.data_dir));
        self.bus.close().await.context("flushing the bus")?;
        self.store.close().await;
        tracing::info!(node = %self.node_name, "Flotilla node stopped cleanly.");
        Ok(())
    }
}
