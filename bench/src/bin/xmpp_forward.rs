//! XMPP forwarding through a real Prosody on this machine (started here with its own
//! configuration; `mod_limits` is not loaded, so no c2s rate limit bounds the figures):
//!
//! - `forward N`: node alpha forwards N messages to node beta (two `xmpp` connectors
//!   in this process, each with its own embedded bus). Timed from the first publish on
//!   alpha's `forward_queue` until beta's `deliver_queue` holds all N: each acknowledged
//!   by the server (XEP-0198) before it left alpha's queue, each durable on beta before
//!   beta acknowledged it. Beside it, in the same run, the peer: `slixmpp` (PyPI) sends
//!   the same N bodies between two other accounts of the same server, timed from the
//!   first send until the receiver has them all (no acknowledgements, nothing durable).
//!   Prints both rates and their ratio.
//! - `idle N`: N connectors logged in and idle in one process; prints the resident
//!   memory they added, per connection.
//!
//! Run:
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin xmpp_forward -- forward 20000
//! cargo run --release -p flotilla-bench --bin xmpp_forward -- idle 200
//! ```
//!
//! Needs `prosody` (scripts/peers ensure prosody) and, for the peer, `slixmpp`
//! (scripts/peers ensure python-slixmpp).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions, ReadFrom};
use flotilla_connector::{Connector, ConnectorSection, ConnectorState, NodeServices, StatusBoard};
use flotilla_core::Message;
use flotilla_store::Store;
use flotilla_test_support::{Prosody, XmppServer};
use tokio_util::sync::CancellationToken;

struct BenchNode {
    _dir: tempfile::TempDir,
    bus: Arc<dyn Bus>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts an `xmpp` connector for `user` in a node of its own, named `node`.
async fn node(server: &Prosody, node: &str, user: &str, extra: &str, stop: &CancellationToken) -> BenchNode {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&dir.path().join("bus"), EmbeddedOptions::default()).unwrap());
    let store = Arc::new(Store::open(&format!("sqlite://{}/store.db", dir.path().display())).await.unwrap());
    let board = StatusBoard::default();
    board.register("xmpp", "xmpp", ConnectorState::Starting);
    let services = NodeServices {
        hostname: node.to_string(),
        node_name: node.to_string(),
        bus: bus.clone(),
        store,
        status: board,
        data_dir: dir.path().to_path_buf(),
    };
    let ctx = services.connector("xmpp", "xmpp", "reactor", stop.child_token());
    let yaml = format!(
        "jid: {user}@localhost\npassword: {user}-pass\nhost: 127.0.0.1\nport: {}\ntls: none\nbatch: 500\n{extra}",
        server.port()
    );
    let env = |_: &str| None;
    let parsed = flotilla_config::parse_str("bench.yaml", &yaml, &env).unwrap();
    let section = ConnectorSection { name: "xmpp", node: &parsed, path: "connectors.xmpp".into() };
    let settings = flotilla_xmpp::settings_from_section(&section).unwrap_or_else(|_| panic!("bad settings"));
    let connector = flotilla_xmpp::XmppConnector::new(settings);
    let task = tokio::spawn(async move { connector.run(&ctx).await });
    BenchNode { _dir: dir, bus, task }
}

fn body(i: usize) -> Message {
    let mut m = Message::new();
    m.set("subject", format!("load average on host{} is {}", i % 50, i % 7));
    m.set("n", i as u64);
    m.stamp("alpha", std::time::SystemTime::now());
    m
}

async fn forward(count: usize) {
    let server = Prosody::start();
    for user in ["fa", "fb", "pa", "pb"] {
        server.register(user, &format!("{user}-pass"));
    }
    let stop = CancellationToken::new();
    let a = node(&server, "alpha", "fa", "peers: [fb@localhost]\nforward_queue: forward\n", &stop).await;
    let b = node(&server, "beta", "fb", "accept_from: [fa@localhost]\ndeliver_queue: deliver\n", &stop).await;
    let mut reader = b.bus.read("deliver", ReadFrom::Start).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // both logged in
    let messages: Vec<Message> = (0..count).map(body).collect();
    let started = Instant::now();
    for chunk in messages.chunks(1000) {
        a.bus.publish("forward", chunk.iter().map(|m| Bytes::from(m.to_json())).collect()).await.unwrap();
    }
    let mut got = 0;
    while got < count {
        got += reader.fetch(10_000, Duration::from_millis(100)).await.unwrap().len();
        assert!(started.elapsed() < Duration::from_secs(600), "only {got} of {count} arrived");
    }
    let ours = flotilla_bench::rate(count as u64, started.elapsed());
    stop.cancel();
    let _ = a.task.await;
    let _ = b.task.await;

    // The peer: slixmpp, the same bodies (base64 JSON, as forwarded), same server.
    let bodies = tempfile::NamedTempFile::new().unwrap();
    let text: String = messages
        .iter()
        .map(|m| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(m.to_json()) + "\n"
        })
        .collect();
    std::fs::write(bodies.path(), text).unwrap();
    let out = Command::new("python3")
        .args(["-c", SLIXMPP_PEER, &count.to_string(), &server.port().to_string()])
        .arg(bodies.path())
        .output()
        .expect("python3 with slixmpp (scripts/peers ensure python-slixmpp)");
    let peer: Option<f64> = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    println!("xmpp forward, {count} messages through Prosody (acknowledged by the server, durable on the receiver):");
    println!("  flotilla  {:>10} msg/s", flotilla_bench::human(ours));
    match peer {
        Some(peer) => {
            println!(
                "  slixmpp   {:>10} msg/s (plain chat messages, no acknowledgement, nothing durable)",
                flotilla_bench::human(peer)
            );
            println!("  ratio     {:>10.2}", ours / peer);
        }
        None => println!("  slixmpp   did not run: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

async fn idle(count: usize) {
    let server = Prosody::start();
    for i in 0..count {
        server.register(&format!("idle{i}"), &format!("idle{i}-pass"));
    }
    let stop = CancellationToken::new();
    let before = flotilla_bench::rss_kib(std::process::id()).unwrap_or(0);
    let mut nodes = Vec::new();
    for i in 0..count {
        nodes.push(node(&server, &format!("n{i}"), &format!("idle{i}"), "", &stop).await);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = flotilla_bench::rss_kib(std::process::id()).unwrap_or(0);
    println!(
        "xmpp idle: {count} connections (each with its own embedded bus) added {} KiB, {:.1} KiB per connection",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / count as f64
    );
    stop.cancel();
    for n in nodes {
        let _ = n.task.await;
    }
}

/// The peer: two slixmpp clients; prints messages per second.
const SLIXMPP_PEER: &str = r#"
import asyncio, sys, time, slixmpp
n, port, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bodies = open(path).read().split("\n")[:n]
cfg = {'feature_mechanisms': {'unencrypted_scram': True}}
class Receiver(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__('pb@localhost', 'pb-pass', plugin_config=cfg)
        self.got = 0
        self.done = asyncio.get_event_loop().create_future()
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('message', self.message)
    async def start(self, event):
        self.send_presence()
        self.ready.set_result(True)
    def message(self, msg):
        self.got += 1
        if self.got >= n and not self.done.done():
            self.done.set_result(time.monotonic())
class Sender(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__('pa@localhost', 'pa-pass', plugin_config=cfg)
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self.start)
    async def start(self, event):
        self.send_presence()
        self.ready.set_result(True)
async def main():
    r, s = Receiver(), Sender()
    for c in (r, s):
        c.enable_starttls = False
        c.enable_direct_tls = False
        c.enable_plaintext = True
        c.connect('127.0.0.1', port)
    await r.ready
    await s.ready
    started = time.monotonic()
    for body in bodies:
        s.send_message(mto='pb@localhost', mbody=body, mtype='chat')
    finished = await r.done
    print(n / (finished - started))
    r.disconnect(); s.disconnect()
asyncio.run(main())
"#;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = |default: usize| args.get(2).and_then(|n| n.parse().ok()).unwrap_or(default);
    match args.get(1).map(String::as_str) {
        Some("forward") => forward(count(20_000)).await,
        Some("idle") => idle(count(200)).await,
        _ => {
            eprintln!("usage: xmpp_forward forward N | idle N");
            std::process::exit(1);
        }
    }
}
