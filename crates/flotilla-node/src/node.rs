//! Starting a node and stopping it cleanly.
//!
//! Start order: data directory (made 0700 when it is new: [`prepare_data_dir`]) and its
//! lock (the embedded bus takes it; with another backend the node takes
//! `<data_dir>/node.lock`), so two nodes never share one, bus (with a shared bus:
//! joining the fleet, refused when the name is taken), store, connectors under the
//! supervisor (in a fleet: each only while this node holds its lease), the reactor, the
//! services the configuration asks for (each applies its migrations, loads its state,
//! binds its listeners), the HTTP server (with the services' routes), the admin socket.
//!
//! Shutdown is one tree of three stages, cancelled in the order messages flow
//! ([`Stages`]): **intake** (the connectors: each gets its grace period and may still
//! emit), then **processing** (the reactor and every service drain what is on the bus
//! now, finish the batch in hand and acknowledge it), then **servers** (HTTP, the admin
//! socket; event streams end), then the bus is flushed and closed, then the store.
//! Nothing accepted is lost: what was published is durable, and what was not
//! acknowledged is delivered again next time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use flotilla_bus::embedded::io::{Filesystem, RealFs};
use flotilla_bus::fleet::{Fleet, Member};
use flotilla_bus::{Bus, BusError, EmbeddedBus, NatsBus, RedisBus, RedisFleet};
use flotilla_connector::{ConnectorState, NodeServices, StatusBoard};
use flotilla_service::{RunningService, ServiceContext};
use flotilla_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::config::{BusSettings, Config};
use crate::effects::NodeEffects;
use crate::reactor::{self, ReactorCounters};
use crate::status::StatusSource;

/// The shutdown tree: one token per stage, cancelled in this order by
/// [`RunningNode::stop`], each only after the previous stage's tasks have ended.
#[derive(Clone, Default)]
struct Stages {
    /// Connectors (each gets a child token).
    intake: CancellationToken,
    /// The reactor and the services (each service gets a child token).
    processing: CancellationToken,
    /// The HTTP server and the admin socket.
    servers: CancellationToken,
}

/// A node that is running.
pub struct RunningNode {
    pub node_name: String,
    pub data_dir: PathBuf,
    pub http_addr: std::net::SocketAddr,
    /// What the running services listen on, by what it is for (`control`, …).
    pub listeners: Vec<(&'static str, std::net::SocketAddr)>,
    pub status: StatusSource,
    /// Cancelled to ask the node to stop ([`RunningNode::run_until_signal`] returns).
    stop_requested: CancellationToken,
    stages: Stages,
    /// The connectors this node runs itself (outside a fleet).
    connectors: crate::reload::LocalConnectors,
    /// With a shared bus: the fleet loop and the connectors it places.
    fleet: Option<crate::fleet::FleetRuntime>,
    reactor: JoinHandle<anyhow::Result<()>>,
    services: Arc<[Arc<dyn RunningService>]>,
    servers: Vec<JoinHandle<()>>,
    bus: Arc<dyn Bus>,
    store: Arc<Store>,
    /// The data directory's lock when the bus does not hold it (Redis, NATS).
    _dir_lock: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Registered before the node says it is ready, so a signal sent the moment it is
    /// ready is handled rather than killing the process.
    signals: Signals,
    /// What a reload needs: the rules the reactor follows, the settings only a restart
    /// applies, the services running, how to read the configuration again.
    rules: tokio::sync::watch::Sender<reactor::ReactorRules>,
    fixed: Vec<(String, String)>,
    service_names: Vec<&'static str>,
    loader: Option<crate::reload::Loader>,
    /// Reloads asked for over the admin socket.
    reloads: tokio::sync::mpsc::Receiver<admin::ReloadRequest>,
}

struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

/// Opens the node's bus: the embedded one in its data directory, or the shared one
/// the configuration names. (NATS goes here too, once it is part of the build.)
pub async fn open_bus(config: &Config) -> Result<Arc<dyn Bus>, BusError> {
    Ok(match &config.bus {
        BusSettings::Embedded(options) => Arc::new(EmbeddedBus::open(&config.data_dir.join("bus"), options.clone())?),
        BusSettings::Redis(options) => Arc::new(RedisBus::open(options.clone()).await?),
        BusSettings::Nats(options) => Arc::new(NatsBus::open(options.clone()).await?),
    })
}

/// With a bus that does not live in the data directory, the node locks the directory
/// itself (its store and admin socket live there).
fn lock_data_dir(config: &Config) -> anyhow::Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
    if matches!(config.bus, BusSettings::Embedded(_)) {
        return Ok(None); // The embedded bus takes the directory's lock.
    }
    let path = config.data_dir.join("node.lock");
    match RealFs.lock(&path) {
        Ok(lock) => Ok(Some(lock)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another node is already running with data directory {} (pid {})",
                config.data_dir.display(),
                holder.trim()
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// How long a starting node waits for a short-lived command (`flotilla send`, `tail`,
/// `status` with no node running) to release the bus.
const COMMAND_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the bus; when another process holds it, tells a running node (its admin socket
/// answers: refused at once) from a short-lived command that wrote to the bus directly
/// (waited for, up to [`COMMAND_LOCK_WAIT`], with a message).
async fn open_bus_waiting_for_commands(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    let deadline = tokio::time::Instant::now() + COMMAND_LOCK_WAIT;
    let mut said = false;
    loop {
        match open_bus(config).await {
            Ok(bus) => return Ok(bus),
            Err(BusError::Locked { holder, .. }) => {
                let socket = admin::socket_path(&config.data_dir);
                let node_answers = tokio::net::UnixStream::connect(&socket).await.is_ok();
                if node_answers || tokio::time::Instant::now() >= deadline {
                    anyhow::bail!(
                        "another node is already running with data directory {}{holder}",
                        config.data_dir.display()
                    );
                }
                if !said {
                    tracing::info!(data_dir = %config.data_dir.display(), holder = %holder.trim(), wait = ?COMMAND_LOCK_WAIT,
                        "Another process holds the bus (a command such as `flotilla send`); waiting for it.");
                    said = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).context("cannot open the bus"),
        }
    }
}

/// The fleet this node joined, and itself as a member of it.
type Joined = (Arc<dyn Fleet>, Member);

/// Starts everything the configuration describes.
pub async fn start(config: Config) -> anyhow::Result<RunningNode> {
    let started = Instant::now();
    let open_files = raise_open_files_limit();
    // What the node's own listeners may hold, plus room for the bus, the store and the
    // services' listeners.
    let wanted = config.http_limits.max_connections + admin::MAX_CONNECTIONS + FILES_IN_RESERVE;
    if open_files < wanted as u64 {
        tracing::warn!(
            open_files,
            http_max_connections = config.http_limits.max_connections,
            "The limit on open files is below what the HTTP server and the admin socket may hold plus a reserve; \
             lower http.max_connections or raise the limit (ulimit -n, LimitNOFILE=), or connections will be refused \
             with 'Too many open files'."
        );
    }
    use tokio::signal::unix::{SignalKind, signal};
    let signals = Signals {
        interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        hangup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    prepare_data_dir(&config.data_dir)?;
    let dir_lock = lock_data_dir(&config)?;
    // A shared backend also carries the fleet (membership, leases), on the bus's
    // connection; the node joins before it starts anything.
    let (bus, fleet): (Arc<dyn Bus>, Option<Joined>) = match &config.bus {
        BusSettings::Redis(options) => {
            let bus = RedisBus::open(options.clone()).await.context("cannot open the bus")?;
            let fleet: Arc<dyn Fleet> = Arc::new(RedisFleet::new(&bus));
            let member = crate::fleet::member(&config.node_name, &config.hostname);
            crate::fleet::join(fleet.as_ref(), &member).await?;
            (Arc::new(bus), Some((fleet, member)))
        }
        // NATS has no fleet implementation yet (docs/fleet.md): a shared bus, no leases.
        BusSettings::Nats(_) => (open_bus(&config).await.context("cannot open the bus")?, None),
        BusSettings::Embedded(_) => (open_bus_waiting_for_commands(&config).await?, None),
    };
    let store = Arc::new(Store::open(&config.store_url).await.context("cannot open the store")?);
    let stages = Stages::default();
    let board = StatusBoard::default();
    let shared = NodeServices {
        hostname: config.hostname.clone(),
        node_name: config.node_name.clone(),
        bus: bus.clone(),
        store: store.clone(),
        status: board.clone(),
        data_dir: config.data_dir.clone(),
    };

    let mut connectors = crate::reload::LocalConnectors::new(shared.clone(), board.clone(), stages.intake.clone());
    let mut placed = Vec::new();
    for plan in &config.connectors {
        match fleet {
            Some(_) if plan.enabled => placed.push(placed_plan(plan)),
            Some(_) => board.register(&plan.name, &plan.kind, ConnectorState::Stopped),
            None => connectors.start(plan),
        }
    }

    let fleet_runtime = fleet.as_ref().map(|(fleet, member)| {
        crate::fleet::FleetRuntime::start(fleet.clone(), member.clone(), placed, &shared, &board, &stages.intake)
    });

    let counters = Arc::new(ReactorCounters::default());
    let effects = Arc::new(NodeEffects::new(bus.clone(), store.clone()));
    let (rules, rules_rx) = tokio::sync::watch::channel(reactor::ReactorRules {
        tree: config.rules.clone(),
        idle_warning: config.reactor.idle_warning,
    });
    let reactor = tokio::spawn(
        reactor::Reactor {
            bus: bus.clone(),
            rules: rules_rx,
            effects,
            node_name: config.node_name.clone(),
            counters: counters.clone(),
        }
        .run(stages.processing.clone()),
    );

    let service_names: Vec<&'static str> = config.services.iter().map(|plan| plan.name).collect();
    let node_view = flotilla_service::NodeViewCell::default();
    let mut services: Vec<Arc<dyn RunningService>> = Vec::with_capacity(config.services.len());
    for plan in config.services {
        let ctx = ServiceContext {
            node_name: config.node_name.clone(),
            data_dir: config.data_dir.clone(),
            bus: bus.clone(),
            store: store.clone(),
            shutdown: stages.processing.child_token(),
            node: node_view.clone(),
        };
        match plan.service.start(ctx).await {
            Ok(service) => services.push(service),
            Err(error) => {
                // Leave nothing running behind the error.
                stages.intake.cancel();
                stages.processing.cancel();
                for service in &services {
                    service.stop().await;
                }
                return Err(error.context(format!("cannot start the {} service", plan.name)));
            }
        }
    }
    let services: Arc<[Arc<dyn RunningService>]> = services.into();
    let listeners: Vec<_> = services.iter().flat_map(|s| s.listeners()).collect();

    let listener = crate::http_server::bind(config.http_listen)
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    if let Some(warning) = crate::http::exposure_warning(http_addr, config.admin_token.is_some()) {
        tracing::warn!(http = %http_addr, "{warning}");
    }
    let status = StatusSource {
        node: config.node_name.clone(),
        hostname: config.hostname.clone(),
        started,
        started_at: SystemTime::now(),
        http_listen: Some(http_addr.to_string()),
        board: board.clone(),
        bus: bus.clone(),
        reactor: counters,
        services: services.clone(),
        fleet: fleet.map(|(fleet, _)| fleet),
        rates: Arc::default(),
    };
    node_view.set(Arc::new(status.clone()));
    let mut servers = Vec::new();
    servers.push(tokio::spawn(crate::status::sample_rates_every_minute(status.clone(), stages.servers.clone())));
    let mut app = crate::http::router(crate::http::HttpState {
        status: status.clone(),
        admin_token: config.admin_token.as_ref().map(|t| Arc::from(t.0.as_str())),
        shutdown: stages.servers.clone(),
    });
    for service in services.iter() {
        if let Some(router) = service.router() {
            app = router.merge(app);
        }
    }
    let app = crate::http::loopback_only_without_token(app, config.admin_token.is_some());
    servers.push(tokio::spawn(crate::http_server::serve(listener, app, config.http_limits, stages.servers.clone())));

    let admin_listener = admin::bind(&config.data_dir).with_context(|| {
        format!("cannot create the admin socket {}", admin::socket_path(&config.data_dir).display())
    })?;
    let (reload_requests, reloads) = tokio::sync::mpsc::channel(4);
    servers.push(tokio::spawn(admin::serve(
        admin_listener,
        bus.clone(),
        status.clone(),
        reload_requests,
        stages.servers.clone(),
    )));

    let listed = listeners.iter().map(|(what, addr)| format!("{what}={addr}")).collect::<Vec<_>>().join(" ");
    tracing::info!(
        node = %config.node_name,
        http = %http_addr,
        listeners = %listed,
        services = %services.iter().map(|s| s.name()).collect::<Vec<_>>().join(","),
        data_dir = %config.data_dir.display(),
        connectors = config.connectors.len(),
        rules = config.rules.len(),
        open_files,
        startup_ms = started.elapsed().as_millis() as u64,
        "Flotilla node is ready."
    );
    Ok(RunningNode {
        node_name: config.node_name,
        data_dir: config.data_dir,
        http_addr,
        listeners,
        status,
        stop_requested: CancellationToken::new(),
        stages,
        connectors,
        fleet: fleet_runtime,
        reactor,
        services,
        servers,
        bus,
        store,
        _dir_lock: dir_lock,
        signals,
        rules,
        fixed: config.fixed,
        service_names,
        loader: None,
        reloads,
    })
}

/// A connector as the fleet places it.
fn placed_plan(plan: &crate::config::ConnectorPlan) -> crate::fleet::Placed {
    crate::fleet::Placed {
        name: plan.name.clone(),
        kind: plan.kind.clone(),
        queue: plan.queue.clone(),
        restart: plan.restart.clone(),
        connector: plan.connector.clone(),
        nodes: plan.nodes.clone(),
        fingerprint: plan.fingerprint.clone(),
    }
}

/// Open files the node needs besides its listeners' connections: bus segments, the
/// store, log files, the listeners themselves.
const FILES_IN_RESERVE: usize = 64;

/// Raises this process's soft limit on open files to its hard limit and returns the
/// limit in force. Every connection, bus segment and database file takes a descriptor,
/// and the soft limit is often a small default (1024) far below what the system allows;
/// the listeners' caps (`http.max_connections`, `dispatcher.max_connections`) are what
/// keep clients from using them all.
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into memory we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "Could not read the limit on open files.");
        return 0;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads one rlimit from memory we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
        tracing::warn!(error = %std::io::Error::last_os_error(), soft = limit.rlim_cur, hard = limit.rlim_max,
            "Could not raise the limit on open files to its hard limit.");
    }
    limit.rlim_cur
}

/// Creates the data directory for the node's user alone (0700; the bus, the store and
/// the admin socket live there and hold other people's messages and token hashes).
/// A directory that already exists keeps the mode its owner gave it, with a warning
/// when other users may look inside: changing it behind the owner's back could break
/// whatever they shared it for.
fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(flotilla_bus::embedded::io::PRIVATE_DIR)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot use the data directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(data_dir = %dir.display(), mode = format!("{:o}", mode & 0o777),
            "The data directory can be read by other users (its files are created for the node's user alone, \
             but the directory is left as it is); `chmod 700` it to keep it private.");
    }
    Ok(())
}

impl RunningNode {
    /// A token whose cancellation asks the node to stop: [`run_until_signal`](Self::run_until_signal)
    /// then shuts down as a signal would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop_requested.clone()
    }

    /// Where the running service listens for `what` (`control`, …).
    pub fn listener(&self, what: &str) -> Option<std::net::SocketAddr> {
        self.listeners.iter().find(|(name, _)| *name == what).map(|(_, addr)| *addr)
    }

    /// Lets the node reload its configuration (`SIGHUP`, `flotilla reload`) by calling
    /// `loader`, which reads it as it was read at start.
    pub fn set_loader(&mut self, loader: crate::reload::Loader) {
        self.loader = Some(loader);
    }

    /// Waits for SIGINT or SIGTERM (or the shutdown token), then shuts down cleanly;
    /// meanwhile reloads the configuration on SIGHUP or when asked over the admin socket.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        crate::systemd::notify(&format!("READY=1\nMAINPID={}", std::process::id()));
        loop {
            tokio::select! {
                _ = self.signals.interrupt.recv() => { tracing::info!("SIGINT received; shutting down."); break }
                _ = self.signals.terminate.recv() => { tracing::info!("SIGTERM received; shutting down."); break }
                _ = self.stop_requested.cancelled() => break,
                _ = self.signals.hangup.recv() => {
                    tracing::info!("SIGHUP received; reloading the configuration.");
                    let _ = self.reload_and_log().await;
                }
                Some(answer) = self.reloads.recv() => {
                    tracing::info!("Reload asked for over the admin socket.");
                    let _ = answer.send(self.reload_and_log().await);
                }
            }
        }
        crate::systemd::notify("STOPPING=1");
        self.stop().await
    }

    /// [`reload`](Self::reload), with the outcome logged; systemd hears `RELOADING=1`
    /// and `READY=1` around it.
    async fn reload_and_log(&mut self) -> Result<crate::reload::ReloadReport, String> {
        crate::systemd::notify("RELOADING=1");
        let outcome = self.reload().await;
        crate::systemd::notify("READY=1");
        match &outcome {
            Ok(report) => {
                tracing::info!(
                    started = %report.started.join(","),
                    stopped = %report.stopped.join(","),
                    restarted = %report.restarted.join(","),
                    unchanged = report.unchanged.len(),
                    rules = report.rules,
                    "The configuration was reloaded."
                );
                for change in &report.needs_restart {
                    tracing::warn!("Not applied until the node restarts: {change}.");
                }
            }
            Err(errors) => {
                tracing::error!("The new configuration was refused; the running one stays in force:\n{errors}")
            }
        }
        outcome
    }

    /// Reads the configuration again and applies what changed (see [`crate::reload`]).
    /// A configuration with errors is refused whole: the error lists every problem.
    pub async fn reload(&mut self) -> Result<crate::reload::ReloadReport, String> {
        let Some(loader) = &self.loader else {
            return Err("this node was started without a configuration to reload".to_string());
        };
        let config = loader().map_err(|diagnostics| {
            let mut lines: Vec<String> = diagnostics.iter().map(|d| format!("error: {d}")).collect();
            lines.push(format!(
                "{} error{} in the configuration",
                diagnostics.len(),
                if diagnostics.len() == 1 { "" } else { "s" }
            ));
            lines.join("\n")
        })?;
        let mut report = crate::reload::ReloadReport {
            rules: config.rules.len(),
            needs_restart: crate::reload::needs_restart(&self.fixed, &self.service_names, &config),
            ..Default::default()
        };
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        self.rules.send_replace(reactor::ReactorRules {
            tree: config.rules.clone(),
            idle_warning: config.reactor.idle_warning,
        });
        match &mut self.fleet {
            Some(fleet) => {
                let placed = config.connectors.iter().filter(|plan| plan.enabled).map(placed_plan).collect();
                fleet.apply(placed, &mut report).await;
                for plan in config.connectors.iter().filter(|plan| !plan.enabled) {
                    if self.status.board.get(&plan.name).is_none() {
                        self.status.board.register(&plan.name, &plan.kind, ConnectorState::Stopped);
                    }
                }
                for status in self.status.board.snapshot() {
                    if !config.connectors.iter().any(|plan| plan.name == status.name) {
                        self.status.board.remove(&status.name);
                    }
                }
            }
            None => self.connectors.apply(&config.connectors, &mut report).await,
        }
        Ok(report)
    }

    /// Stops the stages in order (intake, processing, servers), flushes, and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop_requested.cancel();
        // 1. Intake: connectors stop (within their grace period); what they emitted is
        //    durable on the bus.
        self.stages.intake.cancel();
        self.connectors.wait().await;
        if let Some(fleet) = self.fleet {
            fleet.stop().await; // Its connectors stop, their leases are released, it leaves.
        }
        // 2. Processing: the reactor and the services drain what is on the bus now,
        //    finish the batch in hand and acknowledge it.
        self.stages.processing.cancel();
        for service in self.services.iter() {
            service.stop().await;
        }
        match self.reactor.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = %format!("{error:#}"), "The reactor stopped with an error."),
            Err(error) => tracing::error!(%error, "The reactor task failed."),
        }
        // 3. Servers: HTTP (its event streams end) and the admin socket.
        self.stages.servers.cancel();
        for task in self.servers {
            let _ = task.await;
        }
        let _ = std::fs::remove_file(admin::socket_path(&self.data_dir));
        // 4. The bus, then the store.
        self.bus.close().await.context("flushing the bus")?;
        self.store.close().await;
        tracing::info!(node = %self.node_name, "Flotilla node stopped cleanly.");
        Ok(())
    }
}
