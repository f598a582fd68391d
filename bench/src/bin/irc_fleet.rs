//! The IRC fleet against a real ngIRCd on this machine (started here, limits raised,
//! stopped by PID):
//!
//! - `connections N`: one connector holds N bot connections (one channel each, spread
//!   over loopback source addresses); prints the RSS the connections added, per
//!   connection, beside ngIRCd's own RSS.
//! - `reconnect N`: N bots connected, the server killed and started again; prints when
//!   the bots came back (the spread), once with the connector's connect pacing and once
//!   with backoff jitter alone.
//!
//! Run:
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin irc_fleet -- connections 10000
//! cargo run --release -p flotilla-bench --bin irc_fleet -- reconnect 1000
//! ```
//!
//! Needs `ngircd` (scripts/peers ensure ngircd) and root (ngIRCd drops to user irc).

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions, ReadFrom};
use flotilla_connector::{Connector, ConnectorState, NodeServices, StatusBoard};
use flotilla_core::Message;
use flotilla_irc::config::IrcSettings;
use flotilla_irc::plan::{ChannelSpec, plan};
use flotilla_irc::session::SessionConfig;
use flotilla_store::Store;
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Raises the open-files limit to its hard limit (ngIRCd, a child, inherits it).
fn raise_nofile() -> u64 {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        limit.rlim_cur
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Ngircd {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Ngircd {
    fn start(max_connections: usize) -> Ngircd {
        let dir = tempfile::Builder::new().prefix("ngircd-bench").tempdir().unwrap();
        let port = free_port();
        let conf = format!(
            "[Global]\n\tName = irc.bench.local\n\tInfo = bench\n\tAdminInfo1 = b\n\tAdminInfo2 = b\n\tAdminEMail = b@b\n\
             \tListen = 127.0.0.1\n\tPorts = {port}\n\tMotdPhrase = bench\n\tServerUID = irc\n\tServerGID = irc\n\
             [Limits]\n\tMaxConnections = {max_connections}\n\tMaxConnectionsIP = 0\n\tMaxJoins = 10\n\
             \tMaxNickLength = 30\n\tPingTimeout = 600\n\tPongTimeout = 60\n\tMaxPenaltyTime = 0\n\
             [Options]\n\tPAM = no\n\tDNS = no\n\tIdent = no\n"
        );
        std::fs::write(dir.path().join("ngircd.conf"), conf).unwrap();
        let mut server = Ngircd { port, dir, child: None };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new("ngircd")
            .args(["-n", "-f"])
            .arg(self.dir.path().join("ngircd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ngircd (scripts/peers ensure ngircd)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "ngircd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    fn pid(&self) -> String {
        self.child.as_ref().map_or(0, Child::id).to_string()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

impl Drop for Ngircd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Settings for `bots` connections, one channel each, `per_ip` per loopback address.
fn settings(port: u16, bots: usize, per_ip: usize, connect_rate: f64) -> IrcSettings {
    let channels: Vec<ChannelSpec> = (0..bots).map(|i| ChannelSpec { name: format!("#c{i}"), key: None }).collect();
    // 127.0.1.1, 127.0.1.2, …: any 127.x.y.z is a local source address.
    let addresses: Vec<IpAddr> = (0..bots.div_ceil(per_ip))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8)))
        .collect();
    IrcSettings {
        network: Arc::from("benchnet"),
        host: "127.0.0.1".into(),
        port,
        tls: None,
        session: SessionConfig {
            nick: "b".into(),
            user: "bench".into(),
            realname: "Flotilla bench".into(),
            password: None,
            services_host: None,
            ping_interval: Duration::from_secs(30),
            max_lag: Duration::from_secs(60),
            rejoin_delay: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        },
        plans: plan(&channels, 1, &addresses, per_ip, 0).unwrap(),
        log: false,
        min_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(300),
        max_attempts: 0,
        flood_burst: 5,
        flood_rate: 1.0,
        connect_rate,
        warnings: Vec::new(),
    }
}

struct Node {
    _dir: tempfile::TempDir,
    bus: Arc<dyn Bus>,
    store: Arc<Store>,
    board: StatusBoard,
}

impl Node {
    async fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let bus: Arc<dyn Bus> =
            Arc::new(EmbeddedBus::open(&dir.path().join("bus"), EmbeddedOptions::default()).unwrap());
        let store = Arc::new(Store::open(&format!("sqlite://{}/store.db", dir.path().display())).await.unwrap());
        Node { _dir: dir, bus, store, board: StatusBoard::default() }
    }

    fn run(&self, name: &str, settings: IrcSettings, shutdown: &CancellationToken) -> tokio::task::JoinHandle<()> {
        self.board.register(name, "irc", ConnectorState::Starting);
        let services = NodeServices {
            hostname: "bench".into(),
            node_name: "bench".into(),
            bus: self.bus.clone(),
            store: self.store.clone(),
            status: self.board.clone(),
            data_dir: std::env::temp_dir(),
        };
        let ctx = services.connector(name, "irc", "reactor", shutdown.clone());
        let connector = flotilla_irc::IrcConnector::new(settings);
        tokio::spawn(async move {
            if let Err(e) = connector.run(&ctx).await {
                eprintln!("connector ended: {e:#}");
            }
        })
    }

    /// Waits until `count` connections of `name` are connected; returns how long it took.
    async fn wait_connected(&self, name: &str, count: usize, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let detail = self.board.get(name).map(|s| s.detail).unwrap_or_default();
            let connected = detail["states"]["connected"].as_u64().unwrap_or(0) as usize;
            if connected >= count {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "only {connected} of {count} connected after {limit:?}: {}",
                detail["states"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn connections(bots: usize) {
    let nofile = raise_nofile();
    assert!(nofile as usize > bots + 200, "open-files limit {nofile} is too low for {bots} connections");
    let server = Ngircd::start(bots + 100);
    let node = Node::new().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, _) = memory_kib("self");
    let shutdown = CancellationToken::new();
    let run = node.run("fleet", settings(server.port, bots, 1000, 1000.0), &shutdown);
    let took = node.wait_connected("fleet", bots, Duration::from_secs(600)).await;
    // Let the registration burst (MOTD, JOIN replies: bus messages) settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (after, peak) = memory_kib("self");
    let (server_rss, _) = memory_kib(&server.pid());
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / bots as f64;
    println!(
        "irc_fleet connections: {bots} bot connections (one channel each, {} source addresses) connected in {:.1}s",
        bots.div_ceil(1000),
        took.as_secs_f64()
    );
    println!(
        "  Flotilla RSS {} KiB before, {} KiB with all connected (peak {} KiB): {:.1} KiB per connection",
        before,
        after,
        peak,
        per / 1024.0
    );
    println!(
        "  ngIRCd (the server) RSS for the same connections: {} KiB ({:.1} KiB per connection); TheFleet: ~100 MB per process",
        server_rss,
        server_rss as f64 / bots as f64
    );
    shutdown.cancel();
    let _ = run.await;
}

/// Seconds after `since` at which each connection of the connector logged RECONNECTED.
async fn reconnect_times(node: &Node, name: &str, since: f64) -> Vec<f64> {
    let mut reader = node.bus.read("reactor", ReadFrom::Start).await.unwrap();
    let mut times = Vec::new();
    loop {
        let batch = reader.fetch(50_000, Duration::from_millis(10)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for delivery in batch {
            let Ok(m) = Message::from_json(&delivery.payload) else { continue };
            if m.get_str("key") == Some(name) && m.get_str("event") == Some("RECONNECTED") {
                times.push(m.lastupdate().unwrap_or(0.0) - since);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    times
}

fn spread(label: &str, times: &[f64], bots: usize) {
    let at = |p: f64| times.get(((times.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(f64::NAN);
    let mut buckets = std::collections::HashMap::new();
    for t in times {
        *buckets.entry((t * 10.0).floor() as i64).or_insert(0) += 1;
    }
    let peak = buckets.values().max().copied().unwrap_or(0);
    println!(
        "  {label:<40} {}/{bots} back; after the restart: first {:.2}s, p10 {:.2}s, p50 {:.2}s, p90 {:.2}s, last {:.2}s; busiest 100 ms: {peak} reconnects",
        times.len(),
        at(0.0),
        at(0.1),
        at(0.5),
        at(0.9),
        at(1.0),
    );
}

async fn reconnect(bots: usize) {
    raise_nofile();
    let mut server = Ngircd::start(bots * 2 + 100);
    println!(
        "irc_fleet reconnect: {bots} bots, ngIRCd killed and started again (min_backoff 2s, jitter: half to all of each step)"
    );
    for (label, rate) in [("with connect_rate 100/s (pacing)", 100.0), ("backoff jitter alone (no pacing)", 1e9)] {
        let node = Node::new().await;
        let shutdown = CancellationToken::new();
        let run = node.run("fleet", settings(server.port, bots, 500, rate), &shutdown);
        node.wait_connected("fleet", bots, Duration::from_secs(300)).await;
        server.kill();
        server.launch();
        let restarted = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(120);
        let times = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let times = reconnect_times(&node, "fleet", restarted).await;
            if times.len() >= bots || Instant::now() > deadline {
                break times;
            }
        };
        spread(label, &times, bots);
        shutdown.cancel();
        let _ = run.await;
        server.kill();
        server.launch();
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("connections");
    let bots: usize =
        args.get(2).and_then(|a| a.parse().ok()).unwrap_or(if mode == "reconnect" { 1000 } else { 10_000 });
    match mode {
        "connections" => connections(bots).await,
        "reconnect" => reconnect(bots).await,
        other => eprintln!("unknown mode {other}: use connections N or reconnect N"),
    }
}
