//! Connector `wikimedia-file`: replay, rate, loop, bad lines, restart.

use std::time::{Duration, Instant};

use flotilla_wikimedia_source::FileConnector;
use flotilla_wikimedia_source::sample::{canary_event, recorded_events, synthetic_event};

use crate::{Harness, change_keys, event_keys};

fn write_file(harness: &Harness, lines: &[String]) -> std::path::PathBuf {
    let path = harness.dir.path().join("events.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[tokio::test]
async fn replays_recorded_events_skipping_blank_bad_and_canary_lines() {
    let harness = Harness::new().await;
    let mut lines = recorded_events();
    lines.insert(2, String::new());
    lines.insert(4, "not json".to_string());
    lines.insert(5, canary_event(1));
    lines.push("{\"id\": \"not a number\"}".to_string());
    let path = write_file(&harness, &lines);
    let (shutdown, task) = harness.spawn(FileConnector { path, rate: 0.0, repeat: false }, "replay", "wikimedia-file");
    let messages = harness.messages(7).await;
    assert_eq!(change_keys(&messages), event_keys(&recorded_events()));
    assert_eq!(messages[0]["wiki"], "wikidatawiki");
    assert_eq!(messages[4]["action"], "delete/delete");
    let deadline = Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let detail = harness.board.get("replay").unwrap().detail;
        if detail["finished"] == true {
            break detail;
        }
        assert!(Instant::now() < deadline, "{detail}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((detail["emitted"].as_u64(), detail["skipped"].as_u64()), (Some(7), Some(2)), "{detail}");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn loops_in_order_at_the_given_rate() {
    let harness = Harness::new().await;
    let lines: Vec<String> = (0..10).map(synthetic_event).collect();
    let path = write_file(&harness, &lines);
    let started = Instant::now();
    let (shutdown, task) = harness.spawn(FileConnector { path, rate: 100.0, repeat: true }, "replay", "wikimedia-file");
    let messages = harness.messages(25).await;
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    // 25 events at 100/s take about a quarter of a second; the first batch (5) is due
    // at 50 ms, so at least 0.2 s must pass.
    assert!(elapsed >= Duration::from_millis(200), "too fast for 100/s: {elapsed:?}");
    let keys = change_keys(&messages);
    let one_pass = event_keys(&lines);
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key, &one_pass[i % one_pass.len()], "message {i} is out of order");
    }
}

#[tokio::test]
async fn a_restart_continues_where_the_replay_was() {
    let harness = Harness::new().await;
    let lines: Vec<String> = (0..40).map(synthetic_event).collect();
    let path = write_file(&harness, &lines);
    let (shutdown, task) =
        harness.spawn(FileConnector { path: path.clone(), rate: 20.0, repeat: false }, "replay", "wikimedia-file");
    let first = harness.messages(10).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(first.len() < 40, "the first run should stop part-way (it sent {})", first.len());
    let (shutdown, task) = harness.spawn(FileConnector { path, rate: 0.0, repeat: false }, "replay", "wikimedia-file");
    let all = harness.messages(40).await;
    assert_eq!(change_keys(&all), event_keys(&lines), "each line once, in order");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
