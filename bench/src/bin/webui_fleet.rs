//! The web UI's fleet page (`/`) rendered for a node with 1,000 connectors and 1,000
//! queues (each with an hour of per-minute counts, so the graph has 1,000 lines of 60
//! points): server time per page, beside the time to serialize the same status as the
//! JSON of `/api/v1/status` (the peer: what the API does with the same data). Goal
//! (issue 17): ≤ 20 ms per page.
//!
//! `cargo run --release -p flotilla-bench --bin webui_fleet [-- CONNECTORS QUEUES]`

use std::time::{Duration, Instant};

use flotilla_bench::percentile;
use serde_json::json;

fn status(connectors: usize, queues: usize) -> serde_json::Value {
    let per_minute = |seed: usize| (0..60).map(|m| ((seed * 7919 + m * 31) % 600) as u64).collect::<Vec<_>>();
    json!({
        "node": "bench", "hostname": "bench", "version": "0", "pid": 1, "state": "running",
        "started_at": 0, "uptime_seconds": 86_400, "http_listen": "127.0.0.1:8080",
        "connectors": (0..connectors).map(|i| json!({
            "name": format!("irc-network-{i:04}"), "type": "irc", "state": if i % 10 == 0 { "backoff" } else { "running" },
            "since": 0, "restarts": i % 7, "last_error": if i % 10 == 0 { Some(format!("connection <refused> #{i}")) } else { None },
            "emitted": i * 1000, "detail": {"connections": [{"lag_ms": i % 300}, {"lag_ms": 12}]},
        })).collect::<Vec<_>>(),
        "queues": (0..queues).map(|i| json!({
            "queue": format!("queue.{i:04}"), "first_seq": 0, "next_seq": i * 500, "bytes": i * 100_000, "depth": i % 100,
            "groups": [{"group": "reactor", "acked_seq": i * 500, "pending": i % 100, "in_flight": 0, "consumers": 1}],
        })).collect::<Vec<_>>(),
        "bus": {"published": 1, "publish_batches": 1, "syncs": 1, "delivered": 1, "acked": 1, "corrupt_records_skipped": 0, "publish_errors": 0},
        "reactor": {"messages": 5, "rules_fired": 5, "plugin_errors": 0, "dropped": 0, "rejected": 0},
        "services": {"dispatcher": {"subscriptions": 3}},
        "rates": {
            "since": 0,
            "connectors": (0..connectors).map(|i| json!({"name": format!("irc-network-{i:04}"), "per_minute": per_minute(i)})).collect::<Vec<_>>(),
            "queues": (0..queues).map(|i| json!({"name": format!("queue.{i:04}"), "per_minute": per_minute(i + 1)})).collect::<Vec<_>>(),
        },
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let connectors: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let queues: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let status = status(connectors, queues);
    let rounds = 50;
    let (mut page_times, mut json_times) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..rounds {
        let input = status.clone();
        let start = Instant::now();
        let page = flotilla_webui::render_fleet_page(input, 86_400 * 365).expect("the page renders");
        page_times.push(start.elapsed());
        bytes = page.len();
        let start = Instant::now();
        let text = serde_json::to_string(&status).expect("JSON");
        json_times.push(start.elapsed());
        std::hint::black_box(text);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p99) = (percentile(&mut page_times, 50.0), percentile(&mut page_times, 99.0));
    let json50 = percentile(&mut json_times, 50.0);
    println!("fleet page, {connectors} connectors, {queues} queues, {rounds} renders, {} KiB of HTML", bytes / 1024);
    println!("  page render: p50 {:.2} ms, p99 {:.2} ms (goal ≤ 20 ms)", ms(p50), ms(p99));
    println!("  peer, the same status as /api/v1/status JSON: p50 {:.2} ms", ms(json50));
    println!("  ratio page / JSON: {:.1}", p50.as_secs_f64() / json50.as_secs_f64().max(1e-9));
}
