//! The dispatcher end to end through the binary: `flotilla run` replaying recorded
//! Wikimedia events with `wikimedia-file`, `flotilla dispatcher-cli` subscribing and
//! inserting, and `redis-cli BRPOP` receiving the pipe-format lines in order.

use std::path::Path;
use std::process::Command;

use flotilla_test_support::RedisServer;

use crate::support::*;

/// `redis-cli` against the test's server (the independent client that reads what the
/// node delivered).
fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &redis.port.to_string(), "--raw"]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn compact(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json).unwrap().to_string()
}

/// The recorded events of `testdata/wikimedia/` as JSON lines, in file-name order.
fn recorded_lines() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/wikimedia");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files.iter().map(|f| compact(&std::fs::read_to_string(f).unwrap())).collect()
}

fn cli(node: &NodeProcess, args: &[&str]) -> std::process::Output {
    let port = node.control.rsplit(':').next().unwrap().to_string();
    Command::new(binary()).args(["dispatcher-cli", "--port", &port]).args(args).output().unwrap()
}

#[test]
fn replayed_changes_reach_redis_through_dispatcher_cli_subscriptions() {
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(redis_dir.path());
    // The recorded events plus generated ones on the same wiki, so the loop is long
    // enough to check order.
    let mut lines = recorded_lines();
    for n in 0..12 {
        let mut event: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        event["id"] = serde_json::json!(5_000_000 + n);
        event["title"] = serde_json::json!(format!("Q{}", 900 + n));
        event["meta"]["id"] = serde_json::json!(format!("generated-{n}"));
        lines.push(event.to_string());
    }
    let ws = Workspace::new(&format!(
        "redis:\n  url: redis://127.0.0.1:{}/0\nconnectors:\n  replay:\n    type: wikimedia-file\n    path: EVENTS\n    rate: 200\n    loop: true\n",
        redis.port
    ));
    let events = ws.dir.path().join("events.jsonl");
    std::fs::write(&events, lines.join("\n")).unwrap();
    let config = std::fs::read_to_string(ws.config()).unwrap().replace("EVENTS", &events.display().to_string());
    std::fs::write(ws.config(), config).unwrap();
    let node = ws.start();
    assert_ne!(node.control, "off");

    let out = cli(&node, &["--subscribe", "mybot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reply = stdout(&out);
    let token = reply.trim().strip_prefix("TOKEN: ").unwrap_or_else(|| panic!("{reply}")).to_string();
    assert_eq!(token.len(), 40);

    // Errors: the server's line on stderr, exit 1.
    let out = cli(&node, &["--subscribe", "mybot"]);
    assert_eq!((out.status.code(), stderr(&out).trim()), (Some(1), "E002: This subscription exist"));
    let out = cli(&node, &["--insert", "mybot", "--token", "WRONG", "--wiki", "wikidatawiki"]);
    assert_eq!((out.status.code(), stderr(&out).trim()), (Some(1), "E005: Invalid token or name"));
    let out = cli(&node, &["--insert", "mybot", "--token", &token, "--wiki", "nowhere"]);
    assert_eq!((out.status.code(), stderr(&out).trim()), (Some(1), "E014: Unknown wiki: nowhere"));
    let out = cli(&node, &["--insert", "mybot", "--token", &token, "--wiki", "enwiki", "--pagerx", "(("]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("E011: Invalid regex: \"((\""), "{}", stderr(&out));

    let out = cli(&node, &["--insert", "mybot", "--token", &token, "--wiki", "www.wikidata.org", "--pagerx", "^Q"]);
    assert_eq!((out.status.code(), stdout(&out).trim()), (Some(0), "Inserted: 1"), "{}", stderr(&out));
    let out = cli(&node, &["--insert", "mybot", "--token", &token, "--wiki", "kowiki", "--user", "Nobody here"]);
    assert_eq!(stdout(&out).trim(), "Inserted: 1");
    let out = cli(&node, &["--list", "mybot", "--token", &token]);
    assert_eq!(
        stdout(&out).trim(),
        r#"[{"wiki":"kowiki","user":"Nobody here"},{"wiki":"wikidatawiki","page_rx":"^Q"}]"#,
        "{}",
        stderr(&out)
    );
    let out = cli(&node, &["--remove", "mybot", "--token", &token, "--wiki", "kowiki", "--user", "Nobody here"]);
    assert_eq!(stdout(&out).trim(), "Removed: 1");

    // What the subscription should get, in the file's (looping) order: its wikidatawiki
    // changes with a title starting with Q, as pipe lines (SPEC §6.4).
    let expected: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["wiki"] == "wikidatawiki" && e["title"].as_str().is_some_and(|t| t.starts_with('Q')))
        .map(|e| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            let action = if e["type"] == "log" {
                format!("{}/{}", text(&e["log_type"]), text(&e["log_action"]))
            } else {
                text(&e["type"])
            };
            let size = match (e["length"]["new"].as_i64(), e["length"]["old"].as_i64().unwrap_or(0)) {
                (Some(new), old) if new - old > 0 => format!("+{}", new - old),
                (Some(new), old) => format!("{}", new - old),
                (None, _) => String::new(),
            };
            let number = |v: &serde_json::Value| v.as_u64().map(|n| n.to_string()).unwrap_or_default();
            format!(
                "wikidatawiki|{}|{}|{action}|{}|{}|{size}|{}",
                text(&e["title"]),
                text(&e["user"]),
                number(&e["revision"]["new"]),
                number(&e["id"]),
                text(&e["comment"]).replace('\n', " ")
            )
        })
        .collect();
    assert!(expected.len() >= 15, "{expected:?}");
    assert!(expected.contains(
        &"wikidatawiki|Q26212910|Timár Péter|edit|1108532044|1146589787|-94|/* wbcreateredirect:0||Q26212910|Q1216649 */"
            .to_string()
    ));

    let mut received = Vec::new();
    for _ in 0..(expected.len() + 5) {
        let out = redis_cli(&redis, &["BRPOP", "mybot", "10"]);
        let mut parts = out.lines();
        assert_eq!(parts.next(), Some("mybot"), "BRPOP timed out: {out:?}");
        received.push(parts.collect::<Vec<_>>().join("\n"));
    }
    let start = expected.iter().position(|e| *e == received[0]).unwrap_or_else(|| panic!("{:?}", received[0]));
    for (i, line) in received.iter().enumerate() {
        assert_eq!(line, &expected[(start + i) % expected.len()], "item {i} out of order");
    }

    // The same changes are on the node's bus as sub.mybot.
    let (status, body) = http_get(&node.http, "/api/v1/dispatcher");
    assert_eq!(status, 200, "{body}");
    let counters: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(counters["deliveries"].as_u64() >= Some(received.len() as u64), "{counters}");
    assert_eq!(counters["subscriptions"], 1);
    let (status, log) = node.stop(libc::SIGTERM);
    assert!(status.success(), "{log:?}");
    assert!(log.iter().any(|l| l.contains("Dispatcher stopped.")), "{log:?}");
}

#[test]
fn the_example_is_valid_and_dispatcher_mistakes_are_located() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out =
        Command::new(binary()).current_dir(&root).args(["check", "-c", "examples/wikimedia.yaml"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let ws = Workspace::new(
        "redis:\n  url: rediss://example.invalid/0\n  tls_ca: /nonexistent/ca.pem\ndispatcher:\n  max_connections: 0\n  idle_timeout: soon\n  source_queue: a/b\n",
    );
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let file = ws.config().display().to_string();
    for expected in [
        format!("{file}:10:11: redis.tls_ca: cannot read the CA certificates in /nonexistent/ca.pem"),
        format!("{file}:12:20: dispatcher.max_connections: must be at least 1"),
        format!("{file}:13:17: dispatcher.idle_timeout: invalid duration 'soon'"),
        format!("{file}:14:17: dispatcher.source_queue: 'a/b' is not a valid queue name"),
    ] {
        assert!(err.contains(&expected), "missing '{expected}' in:\n{err}");
    }
    let out = Workspace::new("dispatcher:\n  colour: red\n").run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown key 'colour' in dispatcher (expected one of: enabled, source_queue"));
}

/// With `dispatcher.subscribe: admin`, `--subscribe` needs the admin token, given with
/// `--token`; nothing else changes for the subscription's owner.
#[test]
fn dispatcher_cli_gives_the_admin_token_where_subscribing_needs_it() {
    const ADMIN: &str = "a-long-enough-admin-token-for-the-cli-test";
    let ws = Workspace::new("dispatcher:\n  subscribe: admin\nredis:\n  url: redis://127.0.0.1:1/0\n");
    let config = std::fs::read_to_string(ws.config()).unwrap();
    std::fs::write(ws.config(), config.replace("http:\n", &format!("http:\n  admin_token: {ADMIN}\n"))).unwrap();
    let node = ws.start();
    let out = cli(&node, &["--subscribe", "mybot"]);
    assert_eq!(
        (out.status.code(), stderr(&out).trim()),
        (Some(1), "E022: Subscribing needs the admin token: subscribe NAME ADMIN_TOKEN")
    );
    let out = cli(&node, &["--subscribe", "mybot", "--token", "not-the-admin-token"]);
    assert_eq!((out.status.code(), stderr(&out).trim()), (Some(1), "E005: Invalid token or name"));
    let out = cli(&node, &["--subscribe", "mybot", "--token", ADMIN]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().strip_prefix("TOKEN: ").map(str::to_string).unwrap_or_default();
    let out = cli(&node, &["--insert", "mybot", "--token", &token, "--wiki", "enwiki"]);
    assert_eq!((out.status.code(), stdout(&out).trim()), (Some(0), "Inserted: 1"), "{}", stderr(&out));
    let (exit, _) = node.stop(libc::SIGTERM);
    assert!(exit.success());
}
