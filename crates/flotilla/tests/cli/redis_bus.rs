//! A node whose bus is Redis (`bus.backend: redis`): `send` without a node writes to
//! the stream, the node's reactor consumes it through a consumer group, `status` shows
//! the queues Redis holds, a second node on the same data directory is refused; and
//! `flotilla check` connects to Redis and reports what it finds; and to NATS (bus.backend:
//! nats): unreachable, without JetStream, with a smaller max_payload.

use std::time::{Duration, Instant};

use flotilla_test_support::{NatsServer, RedisServer, free_port};

use crate::support::*;

fn redis_config(url: &str) -> String {
    format!(
        "bus:\n  backend: redis\n  url: {url}\n  lease_ttl: 2s\nrules:\n  - name: copy\n    plugin: MessageQueue\n    config: {{queue: copied}}\n"
    )
}

#[test]
fn a_node_on_redis_consumes_what_send_wrote_and_status_shows_the_streams() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let ws = Workspace::new(&redis_config(&redis.url()));
    let out = ws.run(&["send", "--queue", "reactor", "--field", "subject=before the node"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let receipt: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(receipt["seq"], 0);
    let mut connection = redis.blocking_connection();
    let length: u64 = redis::cmd("XLEN").arg("flotilla:reactor").query(&mut connection).unwrap();
    assert_eq!(length, 1, "the message is in the stream");

    let node = ws.start();
    // The reactor consumes it and copies it to `copied`; wait until it has (bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ws.run(&["status", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let queue = |name: &str| status["queues"].as_array().unwrap().iter().find(|q| q["queue"] == name).cloned();
        let reactor = queue("reactor").unwrap_or_default();
        if queue("copied").is_some_and(|q| q["next_seq"] == 1) && reactor["groups"][0]["acked_seq"] == 0 {
            assert_eq!(reactor["groups"][0]["group"], "reactor");
            break;
        }
        assert!(Instant::now() < deadline, "the reactor did not consume the message: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let consumers: redis::Value =
        redis::cmd("XINFO").arg("CONSUMERS").arg("flotilla:reactor").arg("reactor").query(&mut connection).unwrap();
    assert!(format!("{consumers:?}").contains("testnode-0"), "consumers are named <node>-<slot>: {consumers:?}");

    // A second node on the same data directory is refused, clearly.
    let second = std::process::Command::new(binary()).args(["run", "-c"]).arg(ws.config()).output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(stderr(&second).contains("another node is already running with data directory"), "{}", stderr(&second));

    let status = node.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status:?}");
    // With no node, status reads the streams from Redis.
    let status: serde_json::Value = serde_json::from_str(&stdout(&ws.run(&["status", "--json"]))).unwrap();
    assert_eq!(status["state"], "stopped");
    assert!(status["queues"].as_array().unwrap().iter().any(|q| q["queue"] == "copied"), "{status}");
}

#[test]
fn check_connects_to_redis_and_says_what_is_wrong() {
    // Unreachable: an error naming the URL and the cause, exit 2; --offline skips it.
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let ws = Workspace::new(&redis_config(&url));
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("error: bus.url: cannot reach Redis at {url}: ")), "{}", stderr(&out));
    let out = ws.run(&["check", "--offline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("bus: redis (not contacted: --offline)"), "{}", stdout(&out));
    // A node does not start without its bus, and says why.
    let out = ws.run(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("cannot open the bus: cannot reach Redis at {url}: ")), "{}", stderr(&out));

    // A Redis that does not persist: valid, with a warning.
    let dir = tempfile::tempdir().unwrap();
    let volatile = RedisServer::start_with(&dir.path().join("redis"), &["--appendonly", "no", "--save", ""]);
    let out = Workspace::new(&redis_config(&volatile.url())).run(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("(persistence: none)"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "warning: bus: Redis does not persist (appendonly no, no save points): a restart of Redis loses every queue"
        ),
        "{}",
        stderr(&out)
    );

    // Keys of the wrong backend, a missing URL, a bad one, NATS: configuration errors.
    let ws = Workspace::new("bus:\n  backend: redis\n  durability: sync\n  prefix: a:b\n  lease_ttl: 0s\n");
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let file = ws.config().display().to_string();
    for expected in [
        format!("{file}:9:12: bus.url: required with bus.backend redis"),
        format!("{file}:10:15: bus.durability: applies to the embedded bus"),
        format!("{file}:11:11: bus.prefix: use 1 to 200 characters"),
        format!("{file}:12:14: bus.lease_ttl: must be more than 0"),
    ] {
        assert!(stderr(&out).contains(&expected), "missing '{expected}' in:\n{}", stderr(&out));
    }
    for (config, expected) in [
        ("bus:\n  backend: redis\n  url: http://x/\n", "bus.url: 'http://x/' is not a Redis URL"),
        ("bus:\n  backend: nats\n", "bus.url: required with bus.backend nats"),
        ("bus:\n  backend: nats\n  url: redis://x/\n", "bus.url: 'redis://x/' is not a NATS URL"),
        (
            "bus:\n  backend: nats\n  url: nats://x:1\n  durability: sync\n",
            "bus.durability: applies to the embedded bus",
        ),
        (
            "bus:\n  backend: redis\n  url: rediss://127.0.0.1:1/0\n  tls_ca: /nonexistent/ca.pem\n",
            "11:11: bus.tls_ca: cannot read the CA certificates in /nonexistent/ca.pem",
        ),
        (
            "bus:\n  backend: redis\n  url: 'rediss://127.0.0.1:1/0#insecure'\n",
            "bus.url: 'rediss://127.0.0.1:1/0#insecure' asks for TLS without checking",
        ),
        (
            "bus:\n  lease_ttl: 5s\n",
            "bus.lease_ttl: applies to the redis and nats backends, not to bus.backend 'embedded'",
        ),
    ] {
        let out = Workspace::new(config).run(&["check"]);
        assert_eq!(out.status.code(), Some(1), "{config}");
        assert!(stderr(&out).contains(expected), "{config}: {}", stderr(&out));
    }
}

fn nats_config(url: &str) -> String {
    format!("bus:\n  backend: nats\n  url: {url}\n  lease_ttl: 5s\n")
}

#[test]
fn check_connects_to_nats_and_says_what_is_wrong() {
    // Unreachable: an error naming the URL, exit 2; --offline skips it; a node does not
    // start without its bus.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let ws = Workspace::new(&nats_config(&url));
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("error: bus.url: cannot reach NATS at {url}")), "{}", stderr(&out));
    let out = ws.run(&["check", "--offline"]);
    assert!(stdout(&out).contains("bus: nats (not contacted: --offline)"), "{}", stdout(&out));
    let out = ws.run(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("cannot open the bus: cannot reach NATS at {url}")), "{}", stderr(&out));

    // A NATS without JetStream: an error saying how to enable it.
    let dir = tempfile::tempdir().unwrap();
    let plain = NatsServer::start_without_jetstream(&dir.path().join("plain"));
    let out = Workspace::new(&nats_config(&plain.url())).run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("has no JetStream") && stderr(&out).contains("-js"), "{}", stderr(&out));

    // With JetStream: valid; NATS's 1 MiB max_payload below the bus's 8 MiB is a warning.
    let nats = NatsServer::start(&dir.path().join("js"));
    let out = Workspace::new(&nats_config(&nats.url())).run(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("bus: NATS 2."), "{}", stdout(&out));
    assert!(stderr(&out).contains("warning: bus: NATS takes messages of at most"), "{}", stderr(&out));
}
