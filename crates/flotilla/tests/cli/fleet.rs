//! A fleet of real `flotilla run` processes on one throwaway redis-server (SPEC §5.1),
//! with `lease_ttl: 2s`: each connector runs on exactly one node, spread evenly; a
//! `kill -9` of an owner moves its connector to another node within `lease_ttl` + 5 s;
//! a node frozen with SIGSTOP past its lease stops its connectors when resumed; a
//! second live node with the same name is refused; `nodes:` lists hold; a joining node
//! takes only the excess; without Redis every connector stops before its lease could
//! lapse, and all are placed again when Redis is back. Every wait polls the nodes'
//! own `/api/v1/status` with a bound.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flotilla_test_support::RedisServer;

use crate::support::*;

const LEASE_TTL: Duration = Duration::from_secs(2);

fn fleet_config(url: &str, connectors: usize) -> String {
    let mut config = format!("bus:\n  backend: redis\n  url: {url}\n  lease_ttl: 2s\nconnectors:\n");
    for i in 0..connectors {
        config.push_str(&format!("  Pulse-{i}:\n    type: pulse\n    delay: 1s\n"));
    }
    config
}

fn status(node: &NodeProcess) -> serde_json::Value {
    let (code, body) = http_get(&node.http, "/api/v1/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The connectors a node's own status shows running.
fn running(status: &serde_json::Value) -> BTreeSet<String> {
    status["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "running")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Connector → owning node, from the fleet section of a status.
fn owners(status: &serde_json::Value) -> BTreeMap<String, String> {
    status["fleet"]["leases"]
        .as_array()
        .unwrap_or_else(|| panic!("no fleet section: {status}"))
        .iter()
        .map(|l| {
            let connector = l["resource"].as_str().unwrap().strip_prefix("connector:").unwrap().to_string();
            (connector, l["node"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Polls `nodes` (name, process) until every one of `connectors` runs on exactly one
/// of them and the leases say the same, each node owning at most `most`; returns the
/// owners. Fails after `limit`.
fn until_placed(
    nodes: &[(&str, &NodeProcess)],
    connectors: usize,
    most: usize,
    limit: Duration,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + limit;
    loop {
        let statuses: Vec<_> = nodes.iter().map(|(name, node)| (*name, status(node))).collect();
        let mut runs: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, status) in &statuses {
            for connector in running(status) {
                runs.entry(connector).or_default().push(name);
            }
        }
        let leases = owners(&statuses[0].1);
        let once = runs.len() == connectors && runs.values().all(|on| on.len() == 1);
        let agree = once && runs.iter().all(|(c, on)| leases.get(c).map(String::as_str) == Some(on[0]));
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for node in leases.values() {
            *counts.entry(node).or_default() += 1;
        }
        if agree && leases.len() == connectors && counts.values().all(|&n| n <= most) {
            return leases;
        }
        assert!(Instant::now() < deadline, "not placed within {limit:?}: running {runs:?}, leases {leases:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_nodes_spread_the_connectors_and_a_killed_owners_connector_moves_within_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let n = 5;
    let config = fleet_config(&redis.url(), n);
    let spaces: Vec<_> =
        ["alpha", "beta", "gamma"].iter().map(|name| (*name, Workspace::named(name, &config))).collect();
    let mut nodes: Vec<(&str, NodeProcess)> = spaces.iter().map(|(name, ws)| (*name, ws.start())).collect();

    // ⌈5/3⌉ + 1 = 3 at most per node.
    let view: Vec<_> = nodes.iter().map(|(name, node)| (*name, node)).collect();
    let owners = until_placed(&view, n, n.div_ceil(3) + 1, Duration::from_secs(20));

    // Status on any node shows the whole fleet, as JSON and as a table.
    let fleet = &status(&nodes[2].1)["fleet"];
    let names: Vec<_> =
        fleet["nodes"].as_array().unwrap().iter().map(|m| (m["name"].clone(), m["alive"].clone())).collect();
    assert_eq!(names.len(), 3, "{fleet}");
    assert!(names.iter().all(|(_, alive)| alive == true), "{fleet}");
    assert!(fleet["nodes"][0]["version"].is_string() && fleet["nodes"][0]["last_heartbeat_ms"].as_u64() > Some(0));
    let table = stdout(&spaces[1].1.run(&["status"]));
    assert!(table.contains("fleet: 3 nodes, 3 alive, 5 leases"), "{table}");
    let owner = &owners["Pulse-0"];
    assert!(table.lines().any(|l| l.starts_with(owner.as_str()) && l.contains("Pulse-0 (#")), "{table}");

    // kill -9 the owner of Pulse-0: another node runs it within lease_ttl + 5 s.
    let index = nodes.iter().position(|(name, _)| name == owner).unwrap();
    let (_, mut victim) = nodes.remove(index);
    victim.child.kill().unwrap();
    let killed = Instant::now();
    victim.child.wait().unwrap();
    let limit = LEASE_TTL + Duration::from_secs(5);
    loop {
        if let Some((name, _)) = nodes.iter().find(|(_, node)| running(&status(node)).contains("Pulse-0")) {
            assert_ne!(name, owner);
            break;
        }
        assert!(killed.elapsed() < limit, "Pulse-0 did not move within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = killed.elapsed();
    // Everything the dead node had is taken over, once each; ⌈5/2⌉ + 1 = 4 at most.
    let view: Vec<_> = nodes.iter().map(|(name, node)| (*name, node)).collect();
    let after = until_placed(&view, n, n.div_ceil(2) + 1, Duration::from_secs(10));
    assert!(after.values().all(|node| node != owner), "{after:?}");
    let fleet = &status(&nodes[0].1)["fleet"];
    let dead = fleet["nodes"].as_array().unwrap().iter().find(|m| m["name"] == owner.as_str()).unwrap();
    assert_eq!(dead["alive"], false, "{fleet}");
    eprintln!("failover of Pulse-0 after kill -9: {took:?}");
    // The connectors' emits went through the fenced publish into the shared stream.
    let mut connection = redis.blocking_connection();
    let length: u64 = redis::cmd("XLEN").arg("flotilla:reactor").query(&mut connection).unwrap();
    assert!(length > 0, "no pulse reached the reactor queue");
}

#[test]
fn a_node_frozen_past_its_lease_stops_its_connectors_when_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let config = fleet_config(&redis.url(), 2);
    let (alpha_ws, beta_ws) = (Workspace::named("alpha", &config), Workspace::named("beta", &config));
    let alpha = alpha_ws.start();
    let beta = beta_ws.start();
    // Two connectors over two nodes: one each.
    let owners = until_placed(&[("alpha", &alpha), ("beta", &beta)], 2, 1, Duration::from_secs(20));
    let mine: Vec<_> = owners.iter().filter(|(_, node)| *node == "alpha").map(|(c, _)| c.clone()).collect();
    assert_eq!(mine.len(), 1);
    let _ = alpha.log.try_iter().count(); // What it said so far.

    // SIGSTOP alpha: beta takes its connector once the lease lapses.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(alpha.pid(), libc::SIGSTOP) };
    let frozen = Instant::now();
    loop {
        if running(&status(&beta)).contains(&mine[0]) {
            break;
        }
        assert!(frozen.elapsed() < LEASE_TTL + Duration::from_secs(5), "beta did not take {} over", mine[0]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(frozen.elapsed() >= LEASE_TTL / 2, "taken over before the lease could lapse: {:?}", frozen.elapsed());

    // Resumed, alpha finds the lease gone and stops the connector.
    // SAFETY: as above.
    unsafe { libc::kill(alpha.pid(), libc::SIGCONT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let stopped = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = alpha.log.recv_timeout(left).expect("alpha did not say it stopped its connector");
        if line.contains("Stopped the connector") && line.contains(mine[0].as_str()) {
            break line;
        }
    };
    assert!(
        stopped.contains("the lease was not renewed in time") || stopped.contains("the lease was handed over or lost"),
        "{stopped}"
    );
    // And the fleet settles again: each connector on exactly one node.
    until_placed(&[("alpha", &alpha), ("beta", &beta)], 2, 2, Duration::from_secs(15));
}

#[test]
fn a_second_live_node_with_the_same_name_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let config = fleet_config(&redis.url(), 1);
    let first = Workspace::named("alpha", &config);
    let node = first.start();
    let second = Workspace::named("alpha", &config);
    let out = std::process::Command::new(binary()).args(["run", "-c"]).arg(second.config()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("node.name 'alpha' is already used by a live node of this fleet (pid "),
        "{}",
        stderr(&out)
    );
    // Once the first stops cleanly (it leaves the fleet), the name is free at once.
    assert!(node.signal_and_wait(libc::SIGTERM).success());
    let again = second.start();
    assert!(again.signal_and_wait(libc::SIGTERM).success());
}

#[test]
fn a_nodes_list_restricts_where_a_connector_runs() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let config = format!(
        "bus:\n  backend: redis\n  url: {}\n  lease_ttl: 2s\nconnectors:\n  \
         Pulse-0:\n    type: pulse\n    delay: 1s\n    nodes: [beta]\n  \
         Pulse-1:\n    type: pulse\n    delay: 1s\n    nodes: [beta]\n  \
         Pulse-2:\n    type: pulse\n    delay: 1s\n",
        redis.url()
    );
    // Beta first: it may take all three, then hands over the only one alpha may run.
    let beta = Workspace::named("beta", &config).start();
    let alpha = Workspace::named("alpha", &config).start();
    let owners = until_placed(&[("alpha", &alpha), ("beta", &beta)], 3, 2, Duration::from_secs(20));
    assert_eq!(owners["Pulse-0"], "beta");
    assert_eq!(owners["Pulse-1"], "beta");
    assert_eq!(owners["Pulse-2"], "alpha");

    // An empty list is a mistake, reported with its place.
    let ws = Workspace::new("connectors:\n  Pulse-0:\n    type: pulse\n    nodes: []\n");
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("connectors.Pulse-0.nodes: list at least one node name (or leave the key out: any node)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_node_that_joins_takes_only_the_excess() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let config = fleet_config(&redis.url(), 6);
    let spaces: Vec<_> =
        ["alpha", "beta", "gamma"].iter().map(|name| (*name, Workspace::named(name, &config))).collect();
    let alpha = spaces[0].1.start();
    let beta = spaces[1].1.start();
    // Six over two: three each.
    let before = until_placed(&[("alpha", &alpha), ("beta", &beta)], 6, 3, Duration::from_secs(20));
    // Gamma joins: two each now, and only the two it took have moved.
    let gamma = spaces[2].1.start();
    let after = until_placed(&[("alpha", &alpha), ("beta", &beta), ("gamma", &gamma)], 6, 2, Duration::from_secs(20));
    let moved: Vec<_> = after.iter().filter(|(c, node)| before[*c] != **node).collect();
    assert_eq!(moved.len(), 2, "before {before:?}, after {after:?}");
    assert!(moved.iter().all(|(_, node)| *node == "gamma"), "{moved:?}");

    // Gamma stops cleanly (its leases released at once): three each again.
    let (exit, lines) = gamma.stop(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}");
    assert_eq!(lines.iter().filter(|l| l.contains("Stopped the connector: the node stops")).count(), 2, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("panicked") || l.contains("failed")), "{lines:#?}");
    until_placed(&[("alpha", &alpha), ("beta", &beta)], 6, 3, Duration::from_secs(20));
}

#[test]
fn four_over_three_nodes_end_two_one_one_with_one_move() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let config = fleet_config(&redis.url(), 4);
    let spaces: Vec<_> =
        ["alpha", "beta", "gamma"].iter().map(|name| (*name, Workspace::named(name, &config))).collect();
    let alpha = spaces[0].1.start();
    let beta = spaces[1].1.start();
    let before = until_placed(&[("alpha", &alpha), ("beta", &beta)], 4, 2, Duration::from_secs(20));
    let gamma = spaces[2].1.start();
    // Each at its share of ⌈4/3⌉ = 2 already: gamma still gets one (⌊4/3⌋ = 1 each).
    let nodes = [("alpha", &alpha), ("beta", &beta), ("gamma", &gamma)];
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let after = until_placed(&nodes, 4, 2, Duration::from_secs(20));
        if after.values().any(|node| node == "gamma") {
            break after;
        }
        assert!(Instant::now() < deadline, "gamma got nothing: {after:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let moved: Vec<_> = after.iter().filter(|(c, node)| before[*c] != **node).collect();
    assert_eq!(moved.len(), 1, "before {before:?}, after {after:?}");
}

#[test]
fn without_redis_every_connector_stops_before_its_lease_could_lapse_and_comes_back_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(&dir.path().join("redis"));
    let config = fleet_config(&redis.url(), 3);
    let alpha = Workspace::named("alpha", &config).start();
    let beta = Workspace::named("beta", &config).start();
    let nodes = [("alpha", &alpha), ("beta", &beta)];
    until_placed(&nodes, 3, 2, Duration::from_secs(20));
    let fences = |node: &NodeProcess| -> BTreeMap<String, u64> {
        let status = status(node);
        let leases = status["fleet"]["leases"].as_array().unwrap().clone();
        leases.iter().map(|l| (l["resource"].as_str().unwrap().to_string(), l["fence"].as_u64().unwrap())).collect()
    };
    let before = fences(&beta);

    // Redis gone: no renewal succeeds, so each node stops what it runs by 5/6 of the
    // lease after its last renewal (itself at most a third of a lease before the kill).
    redis.kill();
    let killed = Instant::now();
    loop {
        let still: Vec<_> = nodes.iter().flat_map(|(_, node)| running(&status(node))).collect();
        if still.is_empty() {
            break;
        }
        assert!(killed.elapsed() < LEASE_TTL, "still running {:?} after the leases could lapse", still);
        std::thread::sleep(Duration::from_millis(20));
    }
    let fleet = &status(&alpha)["fleet"];
    assert!(fleet["error"].as_str().is_some_and(|e| e.contains("Redis")), "{fleet}");

    // Redis back (its append-only file kept the leases and counters): placed again. A
    // lease that outlived the outage is renewed by its holder under the same fencing
    // number (nobody else held it meanwhile); any other is taken with a larger one.
    redis.restart();
    until_placed(&nodes, 3, 2, Duration::from_secs(15));
    let after = fences(&beta);
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|(resource, fence)| *fence >= before[resource]), "before {before:?}, after {after:?}");
}

/// An IRC client of the test's own on ngIRCd, counting the other users there.
struct Watcher {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Watcher {
    fn connect(port: u16) -> Watcher {
        let writer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        writer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let reader = std::io::BufReader::new(writer.try_clone().unwrap());
        let mut watcher = Watcher { reader, writer };
        watcher.send("NICK watcher\r\nUSER watcher 0 * :watcher\r\n");
        watcher.until(" 001 ");
        watcher
    }

    fn send(&mut self, text: &str) {
        use std::io::Write;
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until a line containing `marker` (answering PINGs), and returns it.
    fn until(&mut self, marker: &str) -> String {
        use std::io::BufRead;
        for _ in 0..1000 {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "ngIRCd closed the watcher's connection");
            if let Some(token) = line.strip_prefix("PING ") {
                self.send(&format!("PONG {token}"));
            } else if line.contains(marker) {
                return line;
            }
        }
        panic!("no '{marker}' from ngIRCd");
    }

    /// Registered users other than the watcher (`LUSERS`: "There are N users …").
    fn others(&mut self) -> u64 {
        self.send("LUSERS\r\n");
        let line = self.until(" 251 ");
        let count = line.split("There are ").nth(1).and_then(|rest| rest.split(' ').next());
        count.and_then(|n| n.parse::<u64>().ok()).unwrap_or_else(|| panic!("unexpected LUSERS answer: {line}")) - 1
    }
}

#[test]
fn an_irc_connector_moves_after_a_kill_9_and_the_server_never_sees_two_bots() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let irc = flotilla_test_support::Ngircd::start(flotilla_test_support::NgircdOptions::default());
    let config = format!(
        "bus:\n  backend: redis\n  url: {}\n  lease_ttl: 2s\nconnectors:\n  Bot:\n    type: irc\n    \
         server: 127.0.0.1:{}\n    nick: fbot\n    channels: ['#fleet']\n    min_backoff: 0.3s\n    max_backoff: 1s\n",
        redis.url(),
        irc.port
    );
    let spaces = [("alpha", Workspace::named("alpha", &config)), ("beta", Workspace::named("beta", &config))];
    let mut nodes: Vec<(&str, NodeProcess)> = spaces.iter().map(|(name, ws)| (*name, ws.start())).collect();
    let mut watcher = Watcher::connect(irc.port);
    let view: Vec<_> = nodes.iter().map(|(name, node)| (*name, node)).collect();
    let owner = until_placed(&view, 1, 1, Duration::from_secs(20))["Bot"].clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let others = watcher.others();
        assert!(others <= 1, "{others} bots of one connector on the server");
        if others == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the bot never connected");
        std::thread::sleep(Duration::from_millis(20));
    }

    // kill -9 the owner: its connection closes with it; the other node's bot connects
    // once the lease has lapsed, and the server never has two at once.
    let index = nodes.iter().position(|(name, _)| *name == owner).unwrap();
    let (_, mut victim) = nodes.remove(index);
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let killed = Instant::now();
    let (survivor, node) = (nodes[0].0, &nodes[0].1);
    let mut saw_none = false;
    loop {
        let others = watcher.others();
        assert!(others <= 1, "{others} bots of one connector on the server");
        saw_none |= others == 0;
        if saw_none && others == 1 && running(&status(node)).contains("Bot") {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(15), "{survivor} never connected the bot");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("the bot was back on IRC {:?} after the kill -9 of {owner}", killed.elapsed());
}
