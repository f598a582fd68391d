//! The Slack gateway's throughput and acknowledgement latency (issue 14): signed
//! `message` events POSTed over loopback HTTP/1.1 keep-alive connections to the Slack
//! service's route (signature check, parse, `event_id` claimed in SQLite, durable
//! publish on the embedded bus, 200), and the same signed requests to a `slack_bolt`
//! app (its own HTTP server) in the same run, printed side by side with their ratio.
//!
//!     cargo run --release -p flotilla-bench --bin slack_gateway -- [EVENTS] [CONNECTIONS]
//!
//! Needs `python3` with `slack_bolt` for the peer (skipped, and said so, without it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flotilla_bench::{human, percentile, rate};
use flotilla_service::{ConfiguredConnector, ServiceConfig, ServiceContext};
use flotilla_slack::signature::Verifier;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let requests = signed_requests(events);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = runtime.block_on(start_gateway(dir.path()));
    let (ours, mut latencies) = drive(addr, &requests, connections);
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    println!(
        "flotilla gateway: {events} events over {connections} keep-alive connections: {}/s, ack latency p50 {p50:?} p99 {p99:?}",
        human(ours)
    );

    match bolt_peer() {
        Ok((child, peer_addr)) => {
            let peer = Peer(child);
            let peer_events = (events / 10).max(1000).min(events);
            let (theirs, mut peer_latencies) = drive(peer_addr, &requests[..peer_events], connections);
            drop(peer);
            println!(
                "slack_bolt app:   {peer_events} events over {connections} connections: {}/s, p50 {:?} p99 {:?}",
                human(theirs),
                percentile(&mut peer_latencies, 50.0),
                percentile(&mut peer_latencies, 99.0)
            );
            println!("ratio flotilla / slack_bolt: {:.1}x", ours / theirs);
        }
        Err(why) => println!("slack_bolt peer not run: {why}"),
    }
}

/// Distinct signed events, timestamped now (valid for 300 s).
fn signed_requests(count: usize) -> Vec<Vec<u8>> {
    let verifier = Verifier::new(SECRET);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    (0..count)
        .map(|i| {
            let body = serde_json::json!({
                "type": "event_callback", "api_app_id": "A1", "team_id": "T1", "event_id": format!("Ev{i:09}"),
                "event": {"type": "message", "channel_type": "channel", "channel": "C1", "user": "U1",
                          "text": format!("message number {i} with some words in it"), "ts": format!("{now}.{i:06}")},
            })
            .to_string();
            let ts = now.to_string();
            let signature = verifier.sign(&ts, body.as_bytes());
            format!(
                "POST /slack/events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {signature}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

async fn start_gateway(dir: &std::path::Path) -> SocketAddr {
    let bus: std::sync::Arc<dyn flotilla_bus::Bus> = std::sync::Arc::new(
        flotilla_bus::embedded::EmbeddedBus::open(&dir.join("bus"), flotilla_bus::embedded::EmbeddedOptions::default())
            .unwrap(),
    );
    let store = std::sync::Arc::new(
        flotilla_store::Store::open(&format!("sqlite://{}/store.db", dir.display())).await.unwrap(),
    );
    let yaml = format!("signing_secret: {SECRET}\nbot_token: xoxb-bench\napp_id: A1\nteam_id: T1\n");
    let section = flotilla_config::parse_str("bench.yaml", &yaml, &|_| None).unwrap();
    let connectors = vec![ConfiguredConnector {
        name: "team".into(),
        kind: "slack".into(),
        queue: "reactor".into(),
        enabled: true,
        section,
    }];
    let config = ServiceConfig { sections: Vec::new(), connectors: &connectors, admin_token: None };
    let service = (flotilla_slack::SERVICE_TYPE.build)(&config).ok().flatten().unwrap();
    let ctx = ServiceContext {
        node_name: "bench".into(),
        node: Default::default(),
        data_dir: dir.to_path_buf(),
        bus,
        store,
        shutdown: tokio_util::sync::CancellationToken::new(),
    };
    let running = service.start(ctx).await.unwrap();
    let router = running.router().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    std::mem::forget(running); // keeps its consumers for the rest of the run
    addr
}

/// Sends every request, spread over `connections` threads each with one keep-alive
/// connection (reconnecting when the server closes it); every answer must be 200.
/// Returns requests per second and each request's latency.
fn drive(addr: SocketAddr, requests: &[Vec<u8>], connections: usize) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let chunks: Vec<&[Vec<u8>]> = requests.chunks(requests.len().div_ceil(connections)).collect();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    let mut latencies = Vec::with_capacity(chunk.len());
                    let mut connection: Option<BufReader<TcpStream>> = None;
                    for request in chunk {
                        let reader = connection.get_or_insert_with(|| {
                            let stream = TcpStream::connect(addr).unwrap();
                            stream.set_nodelay(true).unwrap();
                            BufReader::new(stream)
                        });
                        let sent = Instant::now();
                        reader.get_mut().write_all(request).unwrap();
                        let (status, keep) = read_response(reader);
                        latencies.push(sent.elapsed());
                        assert_eq!(status, 200, "the server refused a signed event");
                        if !keep {
                            connection = None;
                        }
                    }
                    latencies
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    (rate(requests.len() as u64, started.elapsed()), latencies)
}

/// Reads one response: (status, whether the connection stays open).
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, bool) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut keep = line.starts_with("HTTP/1.1");
    let mut length = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("content-length:") {
            length = value.trim().parse::<usize>().ok();
        }
        if header.starts_with("connection:") {
            keep = header.contains("keep-alive");
        }
    }
    match length {
        Some(length) => {
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            keep = false;
        }
    }
    (status, keep)
}

/// The peer's process, stopped however the run ends (a refused request panics).
struct Peer(std::process::Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the slack_bolt app on a free port.
fn bolt_peer() -> Result<(std::process::Child, SocketAddr), String> {
    let port = flotilla_test_support::free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/slack_bolt_peer.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    let mut ready = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut ready).map_err(|e| e.to_string())?;
    if ready.trim() != "ready" {
        let _ = child.kill();
        return Err("slack_bolt did not start (pip install slack_bolt)".into());
    }
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("slack_bolt's server did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, addr))
}
