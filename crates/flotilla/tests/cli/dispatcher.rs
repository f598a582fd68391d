//! The dispatcher end to end through the binary: `flotilla run` replaying recorded
//! Wikimedia events with `wikimedia-file`, `flotilla dispatcher-cli` subscribing and
//! inserting, and `redis-cli BRPOP` receiving the pipe-format lines in order; and a large
//! insert compiling while `/healthz` and matching carry on.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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
        "redis:\n  url: rediss://example.invalid/0\n  tls_ca: /nonexistent/ca.pem\ndispatcher:\n  max_connections: 0\n  idle_timeout: soon\n  source_queue: a/b\n  max_pattern_memory: lots\n  max_subscriptions: 0\n",
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
        format!("{file}:15:23: dispatcher.max_pattern_memory: invalid size 'lots'"),
        format!("{file}:16:22: dispatcher.max_subscriptions: must be at least 1"),
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

/// A control-protocol conversation over a plain socket: a line out, a line back.
struct Control(BufReader<TcpStream>);

impl Control {
    fn connect(node: &NodeProcess) -> Control {
        let stream = TcpStream::connect(&node.control).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Control(BufReader::new(stream))
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.0.get_mut(), "{line}").unwrap();
        let mut reply = String::new();
        self.0.read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    }
}

/// A node replaying changes into the dispatcher (200 a second), with `dispatcher` and
/// more `http` settings, started by `prepare`d command.
fn replaying_node(dispatcher: &str, http: &str, prepare: impl FnOnce(&mut Command)) -> (Workspace, NodeProcess) {
    let ws = Workspace::new(&format!(
        "redis:\n  url: redis://127.0.0.1:1/0\ndispatcher:\n{dispatcher}connectors:\n  replay:\n    type: wikimedia-file\n    path: EVENTS\n    rate: 200\n    loop: true\n"
    ));
    let events = ws.dir.path().join("events.jsonl");
    std::fs::write(&events, recorded_lines().join("\n")).unwrap();
    let config = std::fs::read_to_string(ws.config())
        .unwrap()
        .replace("EVENTS", &events.display().to_string())
        .replace("http:\n  listen: 127.0.0.1:0\n", &format!("http:\n  listen: 127.0.0.1:0\n{http}"));
    std::fs::write(ws.config(), config).unwrap();
    let node = ws.start_with(prepare);
    (ws, node)
}

/// The matcher's count of changes looked at.
fn changes_matched(node: &NodeProcess) -> u64 {
    let (status, body) = http_get(&node.http, "/api/v1/dispatcher");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["changes"].as_u64().unwrap()
}

/// Compiling a large insert (its patterns, then the wiki's regex set) takes seconds in
/// a debug build; it happens on a blocking thread with the index unlocked. With one
/// async worker, so that anything blocking a worker blocks every request, `/healthz` is
/// answered within 50 ms all the while, and the matcher keeps matching.
#[test]
fn healthz_answers_within_50_ms_while_a_large_insert_compiles() {
    let (_ws, node) = replaying_node("  max_pattern_memory_per_subscription: 1GiB\n", "", |command| {
        command.env("TOKIO_WORKER_THREADS", "1");
    });
    let mut control = Control::connect(&node);
    let token = control.ask("subscribe big").strip_prefix("TOKEN: ").expect("a token").to_string();
    assert_eq!(control.ask(&format!("auth big {token}")), "OK");
    // Unicode classes repeated: each pattern compiles to about 400 KB, and most have no
    // literal to prefilter on, so they also go into enwiki's regex sets.
    let document: Vec<String> = (0..128).map(|n| format!(r#"{{"wiki":"enwiki","page_rx":"\\w{{7}}{n}"}}"#)).collect();
    let insert = format!("insert json [{}]", document.join(","));
    let deadline = Instant::now() + Duration::from_secs(30);
    while changes_matched(&node) == 0 {
        assert!(Instant::now() < deadline, "the matcher never matched a change");
        std::thread::sleep(Duration::from_millis(10));
    }
    let matched_before = changes_matched(&node);
    let inserting = std::thread::spawn(move || {
        let started = Instant::now();
        let reply = control.ask(&insert);
        (reply, started.elapsed())
    });
    // A probe not answered within 50 ms is a miss. One miss alone can be the machine's
    // scheduler (tests run beside other builds); a server that stalls misses every
    // probe until it is done, so two misses in a row fail the test.
    let (mut probes, mut misses, mut in_a_row, mut matched_during) = (0, 0, 0, matched_before);
    while !inserting.is_finished() && probes < 5_000 {
        probes += 1;
        if healthz_within(&node.http, Duration::from_millis(50)) {
            in_a_row = 0;
        } else {
            misses += 1;
            in_a_row += 1;
            assert!(in_a_row < 2, "/healthz missed 50 ms twice in a row while the insert compiled (probe {probes})");
        }
        if probes % 50 == 0 && !inserting.is_finished() {
            matched_during = changes_matched(&node);
        }
    }
    let (reply, took) = inserting.join().unwrap();
    assert_eq!(reply, "128");
    assert!(took >= Duration::from_millis(500), "the insert took {took:?}: too short for the probe to prove anything");
    assert!(misses * 100 <= probes, "{misses} of {probes} probes missed 50 ms");
    assert!(matched_during > matched_before, "the matcher stood still while the insert compiled");
}

/// Whether `GET /healthz` is answered `ok` within `limit` (connecting included).
fn healthz_within(addr: &str, limit: Duration) -> bool {
    use std::io::Read;
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr.parse().unwrap(), limit) else { return false };
    let left = limit.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).unwrap();
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).is_ok()
        && started.elapsed() <= limit
        && response.starts_with("HTTP/1.1 200")
        && response.ends_with("ok")
}

/// The status line of `GET path` (with the Bearer `token`), without waiting for the
/// body (an event stream has no end).
fn status_of(addr: &str, path: &str, token: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{line:?}"))
}

/// `GET path` with the Bearer `token`: (status, body).
fn get_with(addr: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

/// With `http.admin_token` set, a request without it reads no queue and learns no
/// subscription's name: `/api/v1/events` answers 401, and `/api/v1/status` and
/// `/metrics` sum the `sub.<name>` queues up instead of listing them.
#[test]
fn without_the_admin_token_no_queue_is_read_and_no_subscription_named() {
    const ADMIN: &str = "test-admin-token-0123456789-abcdefghijklmnop";
    let (_ws, node) = replaying_node("  enabled: true\n", &format!("  admin_token: {ADMIN}\n"), |_| {});
    let mut control = Control::connect(&node);
    let token = control.ask("subscribe watcher").strip_prefix("TOKEN: ").expect("a token").to_string();
    assert_eq!(control.ask(&format!("auth watcher {token}")), "OK");
    assert_eq!(control.ask(r#"insert json [{"wiki":"wikidatawiki"}]"#), "1");
    // The subscription's queue fills as the replay goes on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get_with(&node.http, "/api/v1/status", ADMIN).1.contains("\"queue\":\"sub.watcher\"") {
        assert!(Instant::now() < deadline, "sub.watcher never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (status, body) = http_get(&node.http, "/api/v1/status");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("watcher"), "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["private_queues"]["queues"], 1, "{body}");
    assert!(view["queues"].as_array().unwrap().iter().any(|q| q["queue"] == "reactor"), "{body}");
    let (status, metrics) = http_get(&node.http, "/metrics");
    assert_eq!(status, 200);
    assert!(!metrics.contains("watcher"), "{metrics}");
    assert!(metrics.contains("\nflotilla_private_queues 1\n"), "{metrics}");
    assert_eq!(status_of(&node.http, "/api/v1/events?queue=sub.watcher", None), 401);
    assert_eq!(status_of(&node.http, "/api/v1/events?queue=sub.watcher", Some("not-the-token")), 401);

    // The admin sees them by name, and reads them.
    let (_, metrics) = get_with(&node.http, "/metrics", ADMIN);
    assert!(metrics.contains("flotilla_queue_depth{queue=\"sub.watcher\"}"), "{metrics}");
    assert_eq!(status_of(&node.http, "/api/v1/events?queue=sub.watcher", Some(ADMIN)), 200);
    // So does the subscription, with its own token, through its own stream.
    assert_eq!(status_of(&node.http, "/api/v1/subscriptions/watcher/events", Some(&token)), 200);
}
