//! Node start-up and footprint (issue 2), release build only:
//!
//! ```text
//! cargo build --release -p flotilla -p flotilla-bench && target/release/node
//! ```
//!
//! Starts `flotilla run` (the release binary next to this one) ten times with a pulse
//! connector and a rule, and reports the time from spawn to the "ready" log line; then
//! lets one node sit idle and reports its resident memory.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_bench::{percentile, rss_kib};

fn main() {
    let exe = std::env::current_exe().expect("own path");
    let flotilla = exe.with_file_name("flotilla");
    assert!(flotilla.exists(), "build the binary first: cargo build --release -p flotilla -p flotilla-bench");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(
        &config,
        format!(
            "node:\n  data_dir: {}/data\nhttp:\n  listen: 127.0.0.1:0\nconnectors:\n  Pulse-bench:\n    type: pulse\nrules:\n  - name: store\n    condition: contains date\n    plugin: SQL\n    config: {{table: pulses}}\n",
            dir.path().display()
        ),
    )
    .unwrap();

    let mut startups = Vec::new();
    let mut idle_rss = None;
    for run in 0..10 {
        let started = Instant::now();
        let mut child = Command::new(&flotilla)
            .args(["run", "-c"])
            .arg(&config)
            .env("FLOTILLA_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flotilla");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = lines.by_ref().map_while(Result::ok).any(|l| l.contains("Flotilla node is ready."));
        assert!(ready, "the node did not start");
        startups.push(started.elapsed());
        // Keep draining stderr so the node never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        if run == 9 {
            std::thread::sleep(Duration::from_secs(5));
            idle_rss = rss_kib(child.id());
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "the node did not stop cleanly: {status}");
    }
    let p50 = percentile(&mut startups, 50.0);
    let max = percentile(&mut startups, 100.0);
    println!("flotilla run → ready   p50 {p50:?}  max {max:?}  (10 starts, pulse + SQL rule, SQLite store)");
    match idle_rss {
        Some(kib) => println!("idle node RSS          {:.1} MiB  (after 5 s idle)", kib as f64 / 1024.0),
        None => println!("idle node RSS          unavailable"),
    }
}
