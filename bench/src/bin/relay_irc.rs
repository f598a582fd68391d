//! Relay throughput between two IRC channels through a real ngIRCd (started here, no
//! penalty time): a person in `#a` sends N reports; a relay group `[irc-a, irc-b]`
//! (a real node in this process: two IRC connectors, the relay service, an open
//! censor) relays them; a person in `#b` counts them. Printed beside the peer in the
//! same run: the same N lines sent by a person straight to `#b` through the same
//! server, which bounds what any relay through it can reach.
//!
//! Twice: with the IRC connector's default flood control (a burst of 5, then 1 line/s:
//! what keeps a bot from being kicked on a public network, and then the bound), and
//! with it raised to 10,000 lines/s (what the relay and the server can do).
//!
//! `cargo run --release -p flotilla-bench --bin relay_irc [-- N]` (needs ngircd).

use std::time::Instant;

use flotilla_node::config::{LoadOptions, load_config};
use flotilla_test_support::{Ngircd, NgircdOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

struct Person {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Person {
    async fn join(port: u16, nick: &str, channels: &str) -> Person {
        let (read, writer) = TcpStream::connect(("127.0.0.1", port)).await.unwrap().into_split();
        let mut person = Person { lines: BufReader::new(read).lines(), writer };
        person.send(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {channels}\r\n")).await;
        let joins = channels.split(',').count();
        let mut seen = 0;
        while seen < joins {
            let line = person.next().await;
            if line.starts_with(&format!(":{nick}!")) && line.contains(" JOIN ") {
                seen += 1;
            }
        }
        person
    }

    async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    async fn next(&mut self) -> String {
        loop {
            let line = self.lines.next_line().await.unwrap().expect("the server closed the connection");
            if let Some(token) = line.strip_prefix("PING ") {
                self.send(&format!("PONG {token}\r\n")).await;
                continue;
            }
            return line;
        }
    }

    /// Waits for `nick` to join.
    async fn sees_join(&mut self, nick: &str) {
        while !(self.next().await.starts_with(&format!(":{nick}!"))) {}
    }

    /// Counts channel messages until `count` arrived; the time the last one came.
    async fn count(&mut self, count: usize) -> Instant {
        let mut seen = 0;
        while seen < count {
            if self.next().await.contains(" PRIVMSG ") {
                seen += 1;
            }
        }
        Instant::now()
    }
}

async fn send_reports(sender: &mut Person, channel: &str, count: usize) -> Instant {
    let start = Instant::now();
    let mut batch = String::new();
    for i in 0..count {
        batch.push_str(&format!("PRIVMSG {channel} :Kontrolle U{} report {i}\r\n", i % 100));
        if batch.len() > 16 << 10 {
            sender.send(&batch).await;
            batch.clear();
        }
    }
    sender.send(&batch).await;
    start
}

async fn relayed(server: &Ngircd, count: usize, flood: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let connector = |name: &str, nick: &str, channel: &str| {
        format!(
            "  {name}:\n    type: irc\n    server: 127.0.0.1:{}\n    nick: {nick}\n    channels: ['{channel}']\n{flood}",
            server.port
        )
    };
    let config = format!(
        "node:\n  name: bench\n  data_dir: {}/data\nhttp:\n  listen: 127.0.0.1:0\nconnectors:\n{}{}\
         groups:\n  bench:\n    connectors: [irc-a, irc-b]\n",
        dir.path().display(),
        connector("irc-a", "relaya", "#a"),
        connector("irc-b", "relayb", "#b"),
    );
    let path = dir.path().join("flotilla.yaml");
    std::fs::write(&path, config).unwrap();
    let registry = flotilla_irc::connector_types();
    let services = [flotilla_relay::SERVICE_TYPE];
    let options = LoadOptions {
        path: Some(&path),
        registry: &registry,
        services: &services,
        env: &|_| None,
        hostname: "bench".into(),
    };
    let config = load_config(&options).unwrap_or_else(|e| panic!("{e:?}"));
    let mut sender = Person::join(server.port, "sender", "#a").await;
    let mut receiver = Person::join(server.port, "receiver", "#b").await;
    let node = flotilla_node::node::start(config).await.unwrap();
    sender.sees_join("relaya").await;
    receiver.sees_join("relayb").await;
    let start = send_reports(&mut sender, "#a", count).await;
    let end = receiver.count(count).await;
    node.stop().await.unwrap();
    count as f64 / (end - start).as_secs_f64()
}

async fn direct(server: &Ngircd, count: usize) -> f64 {
    let mut sender = Person::join(server.port, "direct", "#d").await;
    let mut receiver = Person::join(server.port, "watcher", "#d").await;
    let start = send_reports(&mut sender, "#d", count).await;
    let end = receiver.count(count).await;
    count as f64 / (end - start).as_secs_f64()
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let server = Ngircd::start(NgircdOptions::default());
    let peer = direct(&server, count).await;
    let fast = relayed(&server, count, "    flood_burst: 10000\n    flood_rate: 10000\n").await;
    let paced_count = 20;
    let paced = relayed(&server, paced_count, "").await;
    println!("relay between two IRC channels through ngIRCd (MaxPenaltyTime = 0), one machine");
    println!("peer: a person straight to a channel: {peer:.0} lines/s ({count} lines)");
    println!(
        "relay, flood control raised to 10,000/s: {fast:.0} reports/s ({count} reports), ratio {:.2}",
        fast / peer
    );
    println!("relay, default flood control (burst 5, 1 line/s): {paced:.2} reports/s ({paced_count} reports)");
}
