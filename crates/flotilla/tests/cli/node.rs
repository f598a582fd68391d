//! A running node: its HTTP endpoints, `send` and `status` through the admin socket,
//! one node per data directory, and a clean shutdown on SIGTERM and SIGINT.

use std::time::Duration;

use crate::support::*;

const PULSE: &str = "connectors:\n  Pulse-a:\n    type: pulse\nrules:\n  - name: copy\n    plugin: MessageQueue\n    config: {queue: copied}\n";

#[test]
fn http_endpoints_answer() {
    let ws = Workspace::new(PULSE);
    let node = ws.start();
    assert_eq!(http_get(&node.http, "/healthz"), (200, "ok".to_string()));

    let (status, metrics) = http_get(&node.http, "/metrics");
    assert_eq!(status, 200);
    for expected in [
        "# TYPE flotilla_bus_published_total counter",
        "flotilla_connector_state{connector=\"Pulse-a\",type=\"pulse\",state=\"running\"} 1",
        "flotilla_connector_state{connector=\"Pulse-a\",type=\"pulse\",state=\"sunk\"} 0",
        "flotilla_queue_depth{queue=\"reactor\"}",
        "# TYPE flotilla_bus_publish_seconds histogram",
        "flotilla_bus_publish_seconds_bucket{le=\"+Inf\"}",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_cpu_seconds_total counter",
        "process_open_fds ",
    ] {
        assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
    }

    let (status, body) = http_get(&node.http, "/api/v1/status");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["node"], "testnode");
    assert_eq!(json["connectors"][0]["name"], "Pulse-a");
    assert_eq!(json["connectors"][0]["state"], "running");

    let (status, body) = http_get(&node.http, "/no/such/thing");
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"], "no such endpoint");
    let (status, log) = node.stop(libc::SIGTERM);
    assert!(status.success());
    assert!(
        log.iter().any(|l| l.contains("SIGTERM received")) && log.iter().any(|l| l.contains("stopped cleanly")),
        "{log:?}"
    );
}

#[test]
fn send_and_status_reach_the_running_node_and_the_reactor_processes() {
    let ws = Workspace::new(PULSE);
    let node = ws.start();
    let out = ws.run(&["send", "--queue", "reactor", "--field", "subject=via the socket"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let receipt: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();

    // The reactor copies it to `copied`; wait until it has (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = ws.run(&["status", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(status["state"], "running");
        let copied = status["queues"].as_array().unwrap().iter().find(|q| q["queue"] == "copied");
        if copied.is_some_and(|q| q["next_seq"].as_u64() >= Some(2)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the reactor did not copy the message: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let table = stdout(&ws.run(&["status"]));
    assert!(table.contains("Pulse-a") && table.contains("running") && table.contains("copied"), "{table}");

    // A second node on the same data directory is refused, clearly.
    let second = std::process::Command::new(binary()).args(["run", "-c"]).arg(ws.config()).output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = stderr(&second);
    assert!(
        err.contains("another node is already running with data directory")
            && err.contains(&format!("pid {}", node.pid())),
        "{err}"
    );

    assert!(node.signal_and_wait(libc::SIGINT).success(), "SIGINT stops the node cleanly");
    // Nothing was lost: the copy is in the bus.
    let mut tail = std::process::Command::new(binary())
        .args(["tail", "-q", "copied", "--from", "start", "--where", "subject equals via the socket", "-c"])
        .arg(ws.config())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = std::io::BufRead::lines(std::io::BufReader::new(tail.stdout.take().unwrap())).next().unwrap().unwrap();
    tail.kill().unwrap();
    tail.wait().unwrap();
    let copied: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(copied["id"], receipt["id"]);
    assert_eq!(copied["wubot_rulelog"], serde_json::json!(["testnode:copy"]));
}

#[test]
fn status_without_a_node_shows_the_data_directory() {
    let ws = Workspace::new(PULSE);
    assert!(ws.run(&["send", "-q", "reactor", "--field", "a=1"]).status.success());
    let out = ws.run(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["state"], "stopped");
    assert_eq!(status["connectors"][0]["state"], "stopped");
    assert_eq!(status["queues"][0]["queue"], "reactor");
    assert_eq!(status["queues"][0]["depth"], 1);
}

/// Opens `GET path` and returns the connection, for streaming responses.
fn open_stream(addr: &str, path: &str, token: Option<&str>) -> std::io::BufReader<std::net::TcpStream> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n").unwrap();
    std::io::BufReader::new(stream)
}

/// Reads lines until one contains `needle`; returns every line read.
fn read_until(reader: &mut std::io::BufReader<std::net::TcpStream>, needle: &str) -> Vec<String> {
    use std::io::BufRead;
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("the stream ended before '{needle}': {lines:?}");
        }
        let found = line.contains(needle);
        lines.push(line);
        if found {
            return lines;
        }
    }
}

#[test]
fn the_events_stream_filters_with_a_condition_and_needs_the_admin_token() {
    let ws = Workspace::new("");
    // Workspace::new wrote an `http:` section; give it the admin token.
    let config = std::fs::read_to_string(ws.config()).unwrap();
    std::fs::write(ws.config(), config.replace("http:\n", "http:\n  admin_token: s3cret-admin-token\n")).unwrap();
    let node = ws.start();

    let (status, body) = http_get(&node.http, "/api/v1/events");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("admin token"), "{body}");

    let mut bad = open_stream(&node.http, "/api/v1/events?where=status%20equalz%20x", Some("s3cret-admin-token"));
    let lines = read_until(&mut bad, "error");
    assert!(lines[0].contains("400"), "{lines:?}");

    let mut events = open_stream(
        &node.http,
        "/api/v1/events?where=status%20equals%20CRITICAL&queue=alerts",
        Some("s3cret-admin-token"),
    );
    read_until(&mut events, "text/event-stream");
    for status in ["OK", "CRITICAL"] {
        assert!(
            ws.run(&["send", "-q", "alerts", "--field", &format!("status={status}"), "--field", "n=1"])
                .status
                .success()
        );
    }
    let lines = read_until(&mut events, "CRITICAL");
    assert!(!lines.iter().any(|l| l.contains("\"OK\"")), "filtered out: {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("id: 1")), "the event id is the sequence number: {lines:?}");
}

/// Services start only when configured: with a pulse monitor alone the dispatcher binds
/// no control port and creates no queue or consumer group; a `dispatcher:` section
/// starts it (its queue, group and status appear).
#[test]
fn a_service_that_is_not_configured_does_not_start() {
    let ws = Workspace::new(PULSE);
    let node = ws.start();
    assert_eq!(node.control, "off");
    assert!(ws.run(&["send", "-q", "reactor", "--field", "a=1"]).status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status: serde_json::Value = serde_json::from_str(&stdout(&ws.run(&["status", "--json"]))).unwrap();
        let copied = status["queues"].as_array().unwrap().iter().any(|q| q["queue"] == "copied");
        if copied {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the reactor did not copy the message: {status}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = status.to_string();
    assert!(!text.contains("dispatch.redis") && !text.contains("\"dispatcher\""), "{status:#}");
    // Only the web UI, which every node serves unless `webui: {enabled: false}`.
    let services: Vec<&String> = status["services"].as_object().map(|s| s.keys().collect()).unwrap_or_default();
    assert_eq!(services, ["webui"], "{status:#}");
    let (exit, _) = node.stop(libc::SIGTERM);
    assert!(exit.success());

    let ws =
        Workspace::new(&format!("{PULSE}dispatcher:\n  max_definitions: 10\nredis:\n  url: redis://127.0.0.1:1/0\n"));
    let node = ws.start();
    assert_ne!(node.control, "off");
    let (status, body) = http_get(&node.http, "/api/v1/status");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["services"]["dispatcher"]["subscriptions"], 0, "{json:#}");
    let groups = json["queues"].to_string();
    assert!(groups.contains("dispatcher"), "the matcher's group on the source queue: {json:#}");
    let table = stdout(&ws.run(&["status"]));
    assert!(table.lines().any(|l| l.starts_with("dispatcher: ") && l.contains("subscriptions 0")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("dispatcher: ") && l.contains("redis_parked 0")), "{table}");
    let (_, metrics) = http_get(&node.http, "/metrics");
    for expected in ["flotilla_dispatcher_subscriptions 0\n", "flotilla_dispatcher_redis_parked 0\n"] {
        assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
    }
    let (exit, _) = node.stop(libc::SIGTERM);
    assert!(exit.success());
}

/// A node started while a short-lived command holds the bus (as `flotilla send` does
/// when no node runs) waits for it, saying so, instead of failing; a second node is
/// still refused at once (see above).
#[test]
fn a_node_waits_for_a_command_that_holds_the_bus() {
    let ws = Workspace::new(PULSE);
    assert!(ws.run(&["send", "-q", "reactor", "--field", "a=1"]).status.success());
    // Hold the bus from this process for a second, as a command would.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let bus = flotilla_bus::EmbeddedBus::open(&ws.data_dir().join("bus"), Default::default()).unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        runtime.block_on(async move { flotilla_bus::Bus::close(&bus).await.unwrap() });
    });
    let node = ws.start();
    holder.join().unwrap();
    assert!(
        node.startup_log.iter().any(|l| l.contains("Another process holds the bus")),
        "the node said why it waited: {:?}",
        node.startup_log
    );
    let (status, _) = node.stop(libc::SIGTERM);
    assert!(status.success());
}

/// Under a `Type=notify` systemd unit: `READY=1` (with the node's pid) once it serves,
/// `STOPPING=1` when SIGTERM begins the shutdown; the node listens to `$NOTIFY_SOCKET`
/// as systemd sets it.
#[test]
fn systemd_is_told_when_the_node_is_ready_and_when_it_stops() {
    use std::os::unix::net::UnixDatagram;
    let ws = Workspace::new(PULSE);
    let socket = ws.dir.path().join("notify");
    let systemd = UnixDatagram::bind(&socket).unwrap();
    systemd.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let node = NodeProcess::start_with_env(&ws.config(), &[("NOTIFY_SOCKET", socket.as_os_str())]);
    let mut buffer = [0u8; 256];
    let n = systemd.recv(&mut buffer).expect("READY=1 within 30 s");
    assert_eq!(String::from_utf8_lossy(&buffer[..n]), format!("READY=1\nMAINPID={}", node.pid()));
    // Ready means serving.
    assert_eq!(http_get(&node.http, "/healthz").0, 200);
    let (status, _) = node.stop(libc::SIGTERM);
    assert!(status.success());
    let n = systemd.recv(&mut buffer).expect("STOPPING=1");
    assert_eq!(&buffer[..n], b"STOPPING=1");
}

#[test]
fn a_node_reaches_its_store_and_redis_over_tls_and_refuses_an_untrusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = flotilla_test_support::TestCa::new(dir.path(), "good");
    let other = flotilla_test_support::TestCa::new(dir.path(), "other");
    let postgres = flotilla_test_support::PgTlsServer::start(&ca);
    let redis = flotilla_test_support::RedisServer::start_tls(&dir.path().join("redis"), &ca);
    let config = |store_ca: &std::path::Path, redis_ca: &std::path::Path| {
        let store = postgres.url(&format!("sslmode=verify-full&sslrootcert={}", store_ca.display()));
        format!(
            "store:\n  url: '{store}'\nredis:\n  url: {}\n  tls_ca: {}\ndispatcher:\n  enabled: true\n",
            redis.url(),
            redis_ca.display()
        )
    };

    // The binary's crypto provider serves both: the node starts and stops cleanly.
    let node = Workspace::new(&config(&ca.cert, &ca.cert)).start();
    let (status, log) = node.stop(libc::SIGTERM);
    assert!(status.success(), "{log:?}");

    let out = Workspace::new(&config(&other.cert, &ca.cert)).run(&["run"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let store = format!("cannot open the store at postgres://postgres@127.0.0.1:{}/postgres?", postgres.port);
    assert!(err.contains(&store) && err.contains("a TLS certificate problem"), "{err}");

    let out = Workspace::new(&config(&ca.cert, &other.cert)).run(&["run"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let redis = format!("Redis at rediss://127.0.0.1:{}/0: a TLS certificate problem", redis.port);
    assert!(err.contains(&redis) && err.contains("UnknownIssuer"), "{err}");
}

/// A loopback listener without a token trusts every local user, which is the documented
/// default; one beyond loopback without a token is warned about at start.
#[test]
fn a_listener_beyond_loopback_without_an_admin_token_is_warned_about() {
    let warning = "HTTP listens beyond loopback without http.admin_token";
    let ws = Workspace::new("");
    let node = ws.start();
    assert!(!node.startup_log.iter().any(|line| line.contains(warning)), "{:?}", node.startup_log);
    drop(node);
    let config = std::fs::read_to_string(ws.config())
        .unwrap()
        .replace("http:\n  listen: 127.0.0.1:0", "http:\n  listen: 0.0.0.0:0");
    std::fs::write(ws.config(), config).unwrap();
    let node = ws.start();
    assert!(node.startup_log.iter().any(|line| line.contains(warning)), "{:?}", node.startup_log);
}
