//! `kill -9` under load, then an audit: every publish the node acknowledged is in the
//! bus exactly once and in each sender's order, and the reactor (which copies every
//! message to another queue) delivers each of them at least once after the restart.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions, ReadFrom};

use crate::support::*;

const SENDERS: usize = 8;

/// Sends messages one by one over the admin socket until told to stop or the node
/// dies; returns the ids the node acknowledged, in order.
fn sender(socket: PathBuf, sender: usize, stop: Arc<AtomicBool>, acked: Arc<AtomicUsize>) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut stream) = UnixStream::connect(&socket) else { break };
        let request = serde_json::json!({"op": "send", "queue": "reactor", "message": {"sender": sender, "n": n}});
        if writeln!(stream, "{request}").is_err() {
            break;
        }
        let mut reply = String::new();
        if BufReader::new(&stream).read_line(&mut reply).is_err() {
            break;
        }
        match serde_json::from_str::<serde_json::Value>(&reply) {
            Ok(value) if value["id"].is_string() => {
                ids.push(value["id"].as_str().unwrap().to_string());
                acked.fetch_add(1, Ordering::Relaxed);
            }
            _ => break, // The node died mid-request: not acknowledged.
        }
    }
    ids
}

async fn read_all(bus: &EmbeddedBus, queue: &str) -> Vec<serde_json::Value> {
    let mut reader = bus.read(queue, ReadFrom::Start).await.unwrap();
    let mut all = Vec::new();
    loop {
        let batch = reader.fetch(100_000, Duration::from_millis(200)).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch.iter().map(|d| serde_json::from_slice(&d.payload).unwrap()));
    }
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_message() {
    let ws = Workspace::new("rules:\n  - name: copy\n    plugin: MessageQueue\n    config: {queue: audit.out}\n");
    let node = ws.start();
    let socket = ws.data_dir().join("flotilla.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..SENDERS)
        .map(|k| {
            let (socket, stop, acked) = (socket.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || sender(socket, k, stop, acked))
        })
        .collect();
    // Let the load build up, then kill the node in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::Relaxed) < 2000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = node.signal_and_wait(libc::SIGKILL);
    assert!(!status.success());
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<Vec<String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let total: usize = sent.iter().map(Vec::len).sum();
    assert!(total >= 500, "the load was too light to mean anything: {total}");

    // Restart: the reactor catches up on what it had not acknowledged.
    let node = ws.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = ws.run(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let reactor = status["queues"].as_array().unwrap().iter().find(|q| q["queue"] == "reactor").cloned();
        if reactor.is_some_and(|q| q["depth"] == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the reactor did not catch up: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(node.signal_and_wait(libc::SIGTERM).success());

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let bus = EmbeddedBus::open(&ws.data_dir().join("bus"), EmbeddedOptions::default()).unwrap();
        let published = read_all(&bus, "reactor").await;
        let copied = read_all(&bus, "audit.out").await;

        // Every acknowledged publish is in `reactor` exactly once, in its sender's order.
        let mut count: HashMap<String, usize> = HashMap::new();
        for m in &published {
            *count.entry(m["id"].as_str().unwrap().to_string()).or_default() += 1;
        }
        for (k, ids) in sent.iter().enumerate() {
            let order: Vec<&str> = published
                .iter()
                .filter(|m| m["sender"] == k)
                .map(|m| m["id"].as_str().unwrap())
                .filter(|id| ids.iter().any(|x| x == id))
                .collect();
            assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>(), "sender {k}: order or loss");
            for id in ids {
                assert_eq!(count.get(id), Some(&1), "acknowledged {id} must be stored exactly once");
            }
        }
        // The reactor delivered every one of them (at least once) after the crash.
        let copied_ids: HashSet<&str> = copied.iter().map(|m| m["id"].as_str().unwrap()).collect();
        let missing: Vec<&String> = sent.iter().flatten().filter(|id| !copied_ids.contains(id.as_str())).collect();
        assert!(missing.is_empty(), "{} acknowledged messages never reached the reactor's output", missing.len());
        eprintln!(
            "audit: {total} acknowledged, {} stored, {} copied by the reactor ({} replays)",
            published.len(),
            copied.len(),
            copied.len() - copied_ids.len()
        );
        bus.close().await.unwrap();
    });
}
