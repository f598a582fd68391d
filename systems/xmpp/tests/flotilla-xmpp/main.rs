//! The `xmpp` connector against real servers: a throwaway Prosody (and ejabberd), each
//! started by the test with its own configuration on free loopback ports, users
//! created by the test. Every scenario is written once, generic over
//! [`XmppServer`], and run on each server.
//!
//! Nodes are connectors in-process (each with its own embedded bus, store and node
//! name, as `flotilla run` wires them); a "crash" aborts the connector's task without
//! any goodbye to the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bus::{Bus, ReadFrom};
use flotilla_connector::{Connector, ConnectorContext, ConnectorSection, ConnectorState};
use flotilla_core::Message;
use flotilla_test_support::{Ejabberd, Prosody, TestNode, XmppServer};
use flotilla_xmpp::XmppConnector;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One node: a bus and store of its own, its node name, and its connector's task.
struct Node {
    name: String,
    test: TestNode,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    stop: CancellationToken,
    yaml: String,
}

impl Node {
    async fn new(name: &str, yaml: String) -> Node {
        Node { name: name.to_string(), test: TestNode::new().await, task: None, stop: CancellationToken::new(), yaml }
    }

    fn context(&self) -> ConnectorContext {
        let mut services = self.test.services();
        services.node_name = self.name.clone();
        self.test.board.register("xmpp", "xmpp", ConnectorState::Starting);
        services.connector("xmpp", "xmpp", "reactor", self.stop.clone())
    }

    fn start(&mut self) {
        let env = |_: &str| None;
        let node = flotilla_config::parse_str("xmpp.yaml", &self.yaml, &env).expect("yaml");
        let section = ConnectorSection { name: "xmpp", node: &node, path: "connectors.xmpp".into() };
        let settings = flotilla_xmpp::settings_from_section(&section)
            .unwrap_or_else(|e| panic!("{}", e.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")));
        let connector = XmppConnector::new(settings);
        self.stop = CancellationToken::new();
        let ctx = self.context();
        self.task = Some(tokio::spawn(async move { connector.run(&ctx).await }));
    }

    /// Stops cleanly.
    async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task).await.expect("stopped in time").unwrap().unwrap();
        }
    }

    /// Aborts the connector's task: no goodbye, no flush, as a crash would.
    async fn crash(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    fn bus(&self) -> &Arc<dyn Bus> {
        &self.test.bus
    }

    /// Publishes `count` fresh messages to `queue`, numbered from `from`.
    async fn originate(&self, queue: &str, from: usize, count: usize, extra: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut payloads = Vec::new();
        for i in from..from + count {
            let mut m = Message::new();
            m.set("subject", format!("{} message {i}", self.name));
            m.set("n", i as u64);
            m.set("origin", self.name.as_str());
            if !extra.is_empty() {
                m.set("extra", extra);
            }
            m.set("lastupdate", 1_700_000_000.25 + i as f64);
            m.stamp(&self.name, std::time::SystemTime::now());
            ids.push(m.id().unwrap().to_string());
            payloads.push(Bytes::from(m.to_json()));
            if payloads.len() == 1000 {
                self.bus().publish(queue, std::mem::take(&mut payloads)).await.unwrap();
            }
        }
        if !payloads.is_empty() {
            self.bus().publish(queue, payloads).await.unwrap();
        }
        ids
    }

    /// Every message in `queue` once it holds at least `count` (then a moment more,
    /// so anything extra would show).
    async fn collect(&self, queue: &str, count: usize, within: Duration) -> Vec<Message> {
        let mut reader = self.bus().read(queue, ReadFrom::Start).await.unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + within;
        let mut settled = None;
        loop {
            let batch = reader.fetch(5000, Duration::from_millis(200)).await.unwrap();
            for d in &batch {
                out.push(Message::from_json(&d.payload).unwrap());
            }
            if out.len() >= count {
                let since = *settled.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(1500) {
                    return out;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: {queue} holds {} of {count} after {within:?}; status: {}",
                self.name,
                out.len(),
                self.status()
            );
        }
    }

    fn status(&self) -> String {
        serde_json::to_string(&self.test.board.snapshot()).unwrap_or_default()
    }
}

fn yaml(server: &dyn XmppServer, user: &str, tls: &str, extra: &str) -> String {
    let port = if tls == "direct" { server.tls_port() } else { server.port() };
    format!(
        "jid: {user}@{domain}\npassword: {user}-pass\nhost: 127.0.0.1\nport: {port}\ntls: {tls}\ntls_ca: {ca}\n\
         min_backoff: 1s\nmax_backoff: 2s\nping_interval: 5s\nping_timeout: 5s\n{extra}",
        domain = server.domain(),
        ca = server.ca_file().display(),
    )
}

fn forwarding(server: &dyn XmppServer, user: &str, peers: &[&str], tls: &str) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p}@{}", server.domain())).collect();
    yaml(server, user, tls, &format!("peers: [{}]\nforward_queue: forward\ndeliver_queue: deliver\n", peers.join(", ")))
}

/// A ring member: sends to `next`, accepts from `previous`.
fn ring_member(server: &dyn XmppServer, user: &str, next: &str, previous: &str) -> String {
    let d = server.domain();
    yaml(
        server,
        user,
        "starttls",
        &format!(
            "peers: [{next}@{d}]\naccept_from: [{previous}@{d}]\nforward_queue: forward\ndeliver_queue: deliver\n"
        ),
    )
}

/// Copies what a node delivered into its forward queue, as a reactor rule with
/// `MessageQueue` would; with `relay`, it first clears `noforward` (wubot's advice for
/// a node that should pass messages on).
fn pump(node: &Node, relay: bool, stop: CancellationToken) -> JoinHandle<()> {
    let bus = node.bus().clone();
    tokio::spawn(async move {
        let mut consumer = bus.subscribe("deliver", "pump").await.unwrap();
        loop {
            let batch = tokio::select! {
                _ = stop.cancelled() => return,
                b = consumer.fetch(1000, Duration::from_millis(200)) => b.unwrap(),
            };
            if batch.is_empty() {
                continue;
            }
            let payloads = batch
                .iter()
                .map(|d| {
                    let mut m = Message::from_json(&d.payload).unwrap();
                    if relay {
                        m.remove("noforward");
                    }
                    Bytes::from(m.to_json())
                })
                .collect();
            bus.publish("forward", payloads).await.unwrap();
            let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
            consumer.ack(&ids).await.unwrap();
        }
    })
}

/// Checks that `got` is exactly the messages `ids`, once each and in order, each
/// with `path` and `noforward` set as a receiver sets them.
fn assert_delivered_in_order(got: &[Message], ids: &[String], path: &[&str], what: &str) {
    let got_ids: Vec<&str> = got.iter().map(|m| m.id().unwrap()).collect();
    assert_eq!(got_ids.len(), ids.len(), "{what}: count");
    let mut unique = got_ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), got_ids.len(), "{what}: duplicates delivered");
    assert!(got_ids.iter().zip(ids).all(|(a, b)| *a == b), "{what}: not the messages sent, in order");
    for m in got {
        assert_eq!(m.path(), path, "{what}: path of {}", m.id().unwrap());
        assert!(m.noforward(), "{what}: noforward");
        let n = m.get("n").and_then(serde_json::Value::as_u64).unwrap();
        assert_eq!(m.lastupdate(), Some(1_700_000_000.25 + n as f64), "{what}: lastupdate kept");
    }
}

fn register(server: &dyn XmppServer, users: &[&str]) {
    for user in users {
        server.register(user, &format!("{user}-pass"));
    }
}

// ---------------------------------------------------------------------------------
// Scenarios, each generic over the server.

/// Login over STARTTLS and over direct TLS (SCRAM), direct messages both ways, a
/// notification from the outbox to a person's JID, and a wrong password refused.
async fn chat_and_login<S: XmppServer>(server: S) {
    register(&server, &["alice", "bob"]);
    let mut alice = Node::new("alpha", yaml(&server, "alice", "starttls", "")).await;
    let mut bob = Node::new("beta", yaml(&server, "bob", "direct", "")).await;
    alice.start();
    bob.start();
    // bob's rules hand his outbox a notification for alice.
    let note = format!(r#"{{"to":"alice@{}","body":"disk full on beta <&>"}}"#, server.domain());
    bob.bus().publish("outbox.xmpp", vec![Bytes::from(note)]).await.unwrap();
    let got = alice.collect("reactor", 1, Duration::from_secs(30)).await;
    let chat: Vec<&Message> = got.iter().filter(|m| m.get_str("kind") == Some("chat")).collect();
    assert_eq!(chat.len(), 1, "{got:?}");
    assert_eq!(chat[0].get_str("body"), Some("disk full on beta <&>"));
    assert_eq!(chat[0].get_str("username"), Some(format!("bob@{}", server.domain()).as_str()));
    assert_eq!(chat[0].get_str("plugin"), Some("xmpp"));
    // An outbox message without a recipient is dropped (logged), not posted.
    bob.bus().publish("outbox.xmpp", vec![Bytes::from(r#"{"body":"to nobody"}"#)]).await.unwrap();
    let reply = format!(r#"{{"to":"bob@{}","body":"ack"}}"#, server.domain());
    alice.bus().publish("outbox.xmpp", vec![Bytes::from(reply)]).await.unwrap();
    let got = bob.collect("reactor", 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].get_str("body"), Some("ack"));

    // A wrong password: refused, the node keeps running and says why.
    let mut mallory = Node::new("gamma", yaml(&server, "alice", "starttls", "").replace("alice-pass", "wrong")).await;
    mallory.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = mallory.status();
        if status.contains("login refused") {
            break;
        }
        assert!(Instant::now() < deadline, "no login error shown: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!mallory.status().contains("wrong"), "the password shows in the status");
    mallory.stop().await;
    alice.stop().await;
    bob.stop().await;
}

/// Two nodes forwarding both ways, each relaying what it receives back into its
/// forward queue (a "forward everything" rule): every message arrives once, in
/// order, with path and noforward set, and nothing comes back.
async fn two_nodes<S: XmppServer>(server: S, count: usize) {
    register(&server, &["a", "b"]);
    let mut a = Node::new("alpha", forwarding(&server, "a", &["b"], "starttls")).await;
    let mut b = Node::new("beta", forwarding(&server, "b", &["a"], "direct")).await;
    a.start();
    b.start();
    let stop = CancellationToken::new();
    let pumps = [pump(&a, false, stop.clone()), pump(&b, false, stop.clone())];
    let (from_a, from_b) = tokio::join!(a.originate("forward", 0, count, ""), b.originate("forward", 0, count, ""));
    let at_b = b.collect("deliver", count, Duration::from_secs(300)).await;
    let at_a = a.collect("deliver", count, Duration::from_secs(300)).await;
    assert_delivered_in_order(&at_b, &from_a, &["alpha", "beta"], "alpha → beta");
    assert_delivered_in_order(&at_a, &from_b, &["beta", "alpha"], "beta → alpha");
    // What was pumped back (noforward set) never left: the forward queues hold the
    // originals and the pumped copies, and no more arrived anywhere.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.collect("deliver", count, Duration::from_secs(5)).await.len(), count);
    assert_eq!(a.collect("deliver", count, Duration::from_secs(5)).await.len(), count);
    stop.cancel();
    for p in pumps {
        p.await.unwrap();
    }
    a.stop().await;
    b.stop().await;
}

/// A ring A→B→C→A whose nodes relay (clear noforward): every message reaches every
/// other node once, and stops where it started.
async fn ring<S: XmppServer>(server: S, count: usize) {
    register(&server, &["ra", "rb", "rc"]);
    let mut a = Node::new("alpha", ring_member(&server, "ra", "rb", "rc")).await;
    let mut b = Node::new("beta", ring_member(&server, "rb", "rc", "ra")).await;
    let mut c = Node::new("gamma", ring_member(&server, "rc", "ra", "rb")).await;
    for n in [&mut a, &mut b, &mut c] {
        n.start();
    }
    let stop = CancellationToken::new();
    let pumps = [pump(&a, true, stop.clone()), pump(&b, true, stop.clone()), pump(&c, true, stop.clone())];
    let ids_a = a.originate("forward", 0, count, "").await;
    let ids_b = b.originate("forward", 0, count, "").await;
    let ids_c = c.originate("forward", 0, count, "").await;
    // Each node gets the others' messages: its predecessor's directly, the one before
    // through the predecessor.
    for (node, first, second) in [(&b, &ids_a, &ids_c), (&c, &ids_b, &ids_a), (&a, &ids_c, &ids_b)] {
        let got = node.collect("deliver", 2 * count, Duration::from_secs(120)).await;
        let ids: Vec<&str> = got.iter().map(|m| m.id().unwrap()).collect();
        assert_eq!(ids.len(), 2 * count, "{}: {} delivered", node.name, ids.len());
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{}: duplicates", node.name);
        for id in first.iter().chain(second) {
            assert!(ids.contains(&id.as_str()), "{}: {id} missing", node.name);
        }
        for m in &got {
            assert_eq!(m.path().last(), Some(&node.name.as_str()));
            assert!(m.path().len() <= 3, "{:?}", m.path());
        }
    }
    stop.cancel();
    for p in pumps {
        p.await.unwrap();
    }
    for n in [&mut a, &mut b, &mut c] {
        n.stop().await;
    }
}

/// The receiver offline while messages are sent: the server stores them; when it
/// comes back, all arrive in order.
async fn receiver_offline<S: XmppServer>(server: S, count: usize) {
    register(&server, &["oa", "ob"]);
    let mut a = Node::new("alpha", forwarding(&server, "oa", &["ob"], "starttls")).await;
    let mut b = Node::new("beta", forwarding(&server, "ob", &["oa"], "starttls")).await;
    // b has never logged in: everything goes to offline storage.
    a.start();
    let ids = a.originate("forward", 0, count, "").await;
    // The forwarder acknowledges only what the server took: wait for all of it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !a.status().contains(&format!("\"forwarded\":{count}")) {
        assert!(Instant::now() < deadline, "not all forwarded: {}", a.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.start();
    let got = b.collect("deliver", count, Duration::from_secs(120)).await;
    assert_delivered_in_order(&got, &ids, &["alpha", "beta"], "offline → beta");
    // Then b goes away again (cleanly) and comes back: nothing new, nothing twice.
    b.stop().await;
    let more = a.originate("forward", count, 100, "").await;
    b.start();
    let got = b.collect("deliver", count + 100, Duration::from_secs(60)).await;
    let all: Vec<String> = ids.into_iter().chain(more).collect();
    assert_delivered_in_order(&got, &all, &["alpha", "beta"], "offline twice → beta");
    a.stop().await;
    b.stop().await;
}

/// The server stopped and restarted mid-stream, the sender crashed mid-batch and
/// restarted, the receiver crashed and restarted: nothing lost, duplicates removed.
///
/// The server is stopped as its init script would (SIGTERM): a server killed with
/// SIGKILL loses what it had acknowledged and not yet delivered or stored, which
/// is past the hand-off SPEC §10 defines ("after the XMPP server has taken it").
async fn restarts<S: XmppServer>(mut server: S, count: usize) {
    register(&server, &["ka", "kb"]);
    let mut a = Node::new("alpha", forwarding(&server, "ka", &["kb"], "starttls")).await;
    let mut b = Node::new("beta", forwarding(&server, "kb", &["ka"], "starttls")).await;
    a.start();
    b.start();
    let ids = a.originate("forward", 0, count, "").await;
    let wait_some = |node: &Node, at_least: usize| {
        let bus = node.bus().clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let stats = bus.stats().await.unwrap();
                let n = stats.iter().find(|q| q.queue == "deliver").map_or(0, |q| q.depth as usize);
                if n >= at_least {
                    return;
                }
                assert!(Instant::now() < deadline, "only {n} of {at_least} delivered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_some(&b, count / 5).await;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    wait_some(&b, count * 2 / 5).await;
    a.crash().await;
    a.start();
    wait_some(&b, count * 3 / 5).await;
    b.crash().await;
    b.start();
    let got = b.collect("deliver", count, Duration::from_secs(180)).await;
    // In order, and each once: duplicates of what was in flight are removed by id.
    assert_delivered_in_order(&got, &ids, &["alpha", "beta"], "through restarts");
    a.stop().await;
    b.stop().await;
}

/// Large and binary-unfriendly messages arrive whole; a forged or bad forwarded
/// message, and one from a sender that is not a peer, are refused with the node up.
async fn large_and_bad_input<S: XmppServer>(server: S) {
    register(&server, &["la", "lb", "lm"]);
    let mut a = Node::new("alpha", forwarding(&server, "la", &["lb"], "starttls")).await;
    let mut b = Node::new("beta", forwarding(&server, "lb", &["la"], "starttls")).await;
    // mallory is a plain chat client of the same server, not a peer of b.
    let mut m = Node::new("mallory", yaml(&server, "lm", "starttls", "")).await;
    a.start();
    b.start();
    m.start();
    let big = "x\u{0}\u{7}\r\n<&>]]>\u{FFFE}漢".repeat(60_000); // ~1 MB of JSON
    let mut ids = a.originate("forward", 0, 2, &big).await;
    // From a non-peer, with a forwarding marker: chat on b's reactor, never delivered.
    let forged = format!(
        "<message to='lb@{d}' type='chat'><body>eyJpZCI6IjAxSjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwQSJ9</body>\
         <forward xmlns='urn:flotilla:forward:1' id='01J0000000000000000000000A' part='0' parts='1'/></message>",
        d = server.domain()
    );
    let _ = forged; // The outbox escapes markup, so a forged marker cannot be sent that way:
    let text = format!(r#"{{"to":"lb@{}","body":"<forward xmlns='urn:flotilla:forward:1'/>"}}"#, server.domain());
    m.bus().publish("outbox.xmpp", vec![Bytes::from(text)]).await.unwrap();
    // A message whose path already holds beta (a forged or looping path): refused.
    let mut looped = Message::new();
    looped.set("subject", "looped");
    looped.set("path", serde_json::json!(["beta"]));
    looped.set("n", 99u64);
    looped.set("lastupdate", 1_700_000_000.25 + 99.0);
    looped.stamp("alpha", std::time::SystemTime::now());
    a.bus().publish("forward", vec![Bytes::from(looped.to_json())]).await.unwrap();
    // A queue entry that is not a message at all: skipped with a log line.
    a.bus().publish("forward", vec![Bytes::from_static(b"\xff not json")]).await.unwrap();
    ids.extend(a.originate("forward", 2, 3, "").await);
    let got = b.collect("deliver", 5, Duration::from_secs(60)).await;
    assert_delivered_in_order(&got, &ids, &["alpha", "beta"], "large messages");
    assert_eq!(got[0].get_str("extra"), Some(big.as_str()));
    let chat = b.collect("reactor", 1, Duration::from_secs(30)).await;
    assert_eq!(chat.len(), 1);
    assert_eq!(chat[0].get_str("kind"), Some("chat"));
    a.stop().await;
    b.stop().await;
    m.stop().await;
}

/// Rooms: join, another member's message arrives, history is not replayed as new,
/// a nick clash is resolved, and after a kick the bot rejoins.
async fn rooms<S: XmppServer>(server: S) {
    register(&server, &["ma", "mb"]);
    let room = format!("ops@{}", server.muc_domain());
    let extra = |nick: &str| format!("rooms: [{room}]\nnick: {nick}\nrejoin_delay: 1s\n");
    let mut a = Node::new("alpha", yaml(&server, "ma", "starttls", &extra("bot"))).await;
    a.start();
    a.collect("reactor", 1, Duration::from_secs(30)).await; // joined
    let say = format!(r#"{{"room":"{room}","body":"before b joined"}}"#);
    a.bus().publish("outbox.xmpp", vec![Bytes::from(say)]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Same nick: b falls back to bot-NNN.
    let mut b = Node::new("beta", yaml(&server, "mb", "starttls", &extra("bot"))).await;
    b.start();
    let joined = b.collect("reactor", 1, Duration::from_secs(30)).await;
    assert_eq!(joined[0].get_str("kind"), Some("joined"), "{joined:?}");
    let say = format!(r#"{{"room":"{room}","body":"after b joined"}}"#);
    a.bus().publish("outbox.xmpp", vec![Bytes::from(say)]).await.unwrap();
    let got = b.collect("reactor", 2, Duration::from_secs(30)).await;
    let bodies: Vec<&str> = got.iter().filter_map(|m| m.get_str("body")).collect();
    assert_eq!(bodies, ["after b joined"], "history replayed as new, or the message missing: {got:?}");
    assert_eq!(got[1].get_str("nick"), Some("bot"));
    a.stop().await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------
// The scenarios on Prosody.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_chat_and_login() {
    chat_and_login(Prosody::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_two_nodes_10000_each_way() {
    two_nodes(Prosody::start(), 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_ring_of_three() {
    ring(Prosody::start(), 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_receiver_offline_5000() {
    receiver_offline(Prosody::start(), 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_restarts_lose_nothing() {
    restarts(Prosody::start(), 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_large_and_bad_input() {
    large_and_bad_input(Prosody::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_rooms() {
    rooms(Prosody::start()).await;
}

// ---------------------------------------------------------------------------------
// The same scenarios on ejabberd.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_chat_and_login() {
    chat_and_login(Ejabberd::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_two_nodes_10000_each_way() {
    two_nodes(Ejabberd::start(), 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_ring_of_three() {
    ring(Ejabberd::start(), 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_receiver_offline_5000() {
    receiver_offline(Ejabberd::start(), 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_restarts_lose_nothing() {
    restarts(Ejabberd::start(), 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_large_and_bad_input() {
    large_and_bad_input(Ejabberd::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_rooms() {
    rooms(Ejabberd::start()).await;
}

/// A room owner (an independent client: slixmpp) kicks the bot; the bot says so and
/// rejoins after `rejoin_delay`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_kicked_from_a_room_rejoins() {
    let server = Prosody::start();
    register(&server, &["ka", "boss"]);
    let room = format!("kicks@{}", server.muc_domain());
    let mut a =
        Node::new("alpha", yaml(&server, "ka", "starttls", &format!("rooms: [{room}]\nnick: bot\nrejoin_delay: 1s\n")))
            .await;
    let mut owner = std::process::Command::new("python3")
        .args(["-c", KICKER, &server.port().to_string(), &room])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with slixmpp (scripts/peers ensure python-slixmpp)");
    // The owner created the room; give it a moment, then the bot joins and is kicked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.start();
    let got = a.collect("reactor", 3, Duration::from_secs(40)).await;
    let kinds: Vec<&str> = got.iter().filter_map(|m| m.get_str("kind")).collect();
    assert_eq!(kinds, ["joined", "kicked", "joined"], "{got:?}");
    let _ = owner.kill();
    let _ = owner.wait();
    a.stop().await;
}

/// Joins as the room's owner, kicks `bot` once it is there, stays a while.
const KICKER: &str = r#"
import asyncio, sys, slixmpp
port, room = int(sys.argv[1]), sys.argv[2]
class Boss(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__('boss@localhost', 'boss-pass', plugin_config={'feature_mechanisms': {'unencrypted_scram': True}})
        self.register_plugin('xep_0045')
        self.kicked = False
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('muc::%s::got_online' % room, self.online)
    async def start(self, event):
        self.send_presence()
        self.plugin['xep_0045'].join_muc(room, 'boss')
    async def online(self, presence):
        if presence['muc']['nick'] == 'bot' and not self.kicked:
            self.kicked = True
            await asyncio.sleep(0.5)
            await self.plugin['xep_0045'].set_role(room, 'bot', 'none')
async def main():
    b = Boss()
    b.enable_starttls = False
    b.enable_direct_tls = False
    b.enable_plaintext = True
    b.connect('127.0.0.1', port)
    await asyncio.sleep(60)
asyncio.run(main())
"#;
