//! A monitor instance's own rules (`react:`): checked at build time with located
//! errors, run on each message before it is queued, with real effects.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use common::{Harness, QUEUE, errors, yaml};
use flotilla_connector::ConnectorSection;
use flotilla_core::Message;
use flotilla_monitors::{CheckOutcome, Monitor, MonitorConnector, MonitorSettings};
use serde_json::{Map, Value, json};

/// Reports a fixed batch on its first check, nothing afterwards.
struct Batch {
    messages: Vec<Value>,
    checks: AtomicU32,
}

#[async_trait::async_trait]
impl Monitor for Batch {
    async fn check(&self, _cache: &mut Map<String, Value>, _now: SystemTime) -> anyhow::Result<CheckOutcome> {
        let messages = match self.checks.fetch_add(1, Ordering::SeqCst) {
            0 => self.messages.iter().map(|v| Message::from_value(v.clone()).unwrap()).collect(),
            _ => Vec::new(),
        };
        Ok(CheckOutcome { messages, next_delay: None })
    }
}

fn settings(node: &flotilla_config::Node) -> MonitorSettings {
    let section = ConnectorSection { name: "Batch-one", node, path: "connectors.Batch-one".into() };
    let (settings, ()) = MonitorSettings::from_section(&section, Duration::from_secs(3600), |_| Ok(())).unwrap();
    settings
}

const RULES: &str = r#"
delay: 1h
react:
  - name: mark
    plugin: SetField
    config: {field: reacted, value: yes}
  - name: drop
    condition: drop is true
    plugin: Drop
  - name: stop
    condition: stop is true
    last_rule: true
  - name: copy
    condition: n equals 4
    plugin: MessageQueue
    config: {queue: copies}
  - name: row
    condition: n equals 1
    plugin: SQL
    config: {table: monitor_rows, columns: [n, subject, key]}
  - name: hand over
    condition: n equals 4
    plugin: Send
    config: {connector: irc-main}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn react_rules_run_before_queueing_and_have_real_effects() {
    let h = Harness::new().await;
    let node = yaml("plugins/Batch/one.yaml", RULES);
    let monitor = Batch {
        messages: vec![
            json!({"n": 1, "subject": "kept"}),
            json!({"n": 2, "drop": 1}),
            json!({"n": 3, "stop": 1}),
            json!({"n": 4, "subject": "kept and copied"}),
        ],
        checks: AtomicU32::new(0),
    };
    let task = h.spawn(Box::new(MonitorConnector { monitor, settings: settings(&node) }), "Batch-one", "batch");

    let queued = h.wait_for(QUEUE, 2).await;
    let copies = h.wait_for("copies", 1).await;
    let outbox = h.wait_for("outbox.irc-main", 1).await;
    h.shutdown.cancel();
    task.await.unwrap().unwrap();

    let numbers: Vec<_> = queued.iter().map(|m| m.get("n").cloned().unwrap()).collect();
    assert_eq!(numbers, [json!(1), json!(4)], "dropped and last_rule messages are not queued");
    for message in &queued {
        assert_eq!(message.get_str("reacted"), Some("yes"));
        assert_eq!(message.get_str("key"), Some("Batch-one"), "stamped before the rules ran");
        assert_eq!(message.get_str("plugin"), Some("batch"));
    }
    let rulelog = queued[1].get("wubot_rulelog").unwrap();
    assert_eq!(rulelog, &json!(["testnode:mark", "testnode:copy", "testnode:hand over"]));
    assert_eq!(copies[0].get("n"), Some(&json!(4)));
    assert_eq!(copies[0].id(), queued[1].id(), "the copy is the same message");
    assert_eq!(outbox[0].get_str("subject"), Some("kept and copied"));

    let rows: Vec<(String, String, String)> = h
        .store
        .fetch_all("SELECT CAST(n AS TEXT), subject, key FROM monitor_rows", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.text(0).unwrap().to_string(), r.text(1).unwrap().to_string(), r.text(2).unwrap().to_string()))
        .collect();
    assert_eq!(rows, [("1".to_string(), "kept".to_string(), "Batch-one".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_rules_remember_across_checks_and_a_failed_check_goes_through_react() {
    // Status remembers per key in the connector's own state; the failure message of
    // a check runs through the rules too.
    struct Failing;
    #[async_trait::async_trait]
    impl Monitor for Failing {
        async fn check(&self, _cache: &mut Map<String, Value>, _now: SystemTime) -> anyhow::Result<CheckOutcome> {
            anyhow::bail!("the sensor is unplugged")
        }
        fn link(&self) -> Option<&str> {
            Some("http://127.0.0.1:9/sensor")
        }
    }
    let h = Harness::new().await;
    let node = yaml(
        "f.yaml",
        "delay: 1s\nreact:\n  - name: status\n    plugin: Status\n  - name: tag\n    plugin: SetField\n    config: {field: seen, value: 1}\n",
    );
    let task =
        h.spawn(Box::new(MonitorConnector { monitor: Failing, settings: settings(&node) }), "Failing-x", "failing");
    let queued = h.wait_for(QUEUE, 2).await;
    h.shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(queued[0].get_str("subject"), Some("CRITICAL: the sensor is unplugged"));
    assert_eq!(queued[0].get_str("errmsg"), Some("CRITICAL: the sensor is unplugged"));
    assert_eq!(queued[0].get_str("link"), Some("http://127.0.0.1:9/sensor"));
    assert_eq!(queued[0].get_str("status"), Some("CRITICAL"));
    assert_eq!(queued[0].get("seen"), Some(&json!(1)));
    assert_eq!(queued[0].get("status_count"), Some(&json!(1)));
    assert_eq!(queued[1].get("status_count"), Some(&json!(2)), "Status remembered the first check");
    assert!(
        queued[1].get_str("subject").unwrap().starts_with("CRITICAL: the sensor is unplugged [2x CRITICAL"),
        "{:?}",
        queued[1].get_str("subject")
    );
}

#[test]
fn rule_errors_are_located_in_the_monitor_section() {
    let text = "\
delay: 5m
react:
  - name: fine
    condition: subject equals x
  - name: broken condition
    condition: subject matches (
  - plugin: NoSuchPlugin
";
    let errors = errors("pulse", &yaml("plugins/Pulse/x.yaml", text));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("plugins/Pulse/x.yaml:6:16: connectors.test.react[1].condition: "), "{errors:#?}");
    assert!(errors[1].starts_with("plugins/Pulse/x.yaml:7:5: connectors.test.react[2].name: "), "{errors:#?}");
    assert!(
        errors[2]
            .starts_with("plugins/Pulse/x.yaml:7:13: connectors.test.react[2].plugin: unknown plugin 'NoSuchPlugin'"),
        "{errors:#?}"
    );
}

#[test]
fn react_must_be_a_list_of_rules_and_other_errors_come_too() {
    let errors = errors("pulse", &yaml("p.yaml", "delay: soon\nreact:\n  - name: x\n    colour: red\n"));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors.iter().any(|e| e.starts_with("p.yaml:1:8: connectors.test.delay:")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("unknown key 'colour' in connectors.test.react[0]")), "{errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_files_are_found_beside_the_monitor_file_and_their_errors_located_there() {
    let dir = tempfile::tempdir().unwrap();
    let monitor_file = dir.path().join("plugins/Batch/one.yaml");
    std::fs::create_dir_all(monitor_file.parent().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("plugins/Batch/more.yaml"),
        "rules:\n  - name: from file\n    plugin: SetField\n    config: {field: via, value: file}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("plugins/Batch/bad.yaml"), "rules:\n  - name: bad\n    condition: x matches (\n")
        .unwrap();
    let shown = monitor_file.display().to_string();

    let good = yaml(&shown, "react:\n  - name: include\n    rulesfile: more.yaml\n");
    let h = Harness::new().await;
    let monitor = Batch { messages: vec![json!({"subject": "hi"})], checks: AtomicU32::new(0) };
    let task = h.spawn(Box::new(MonitorConnector { monitor, settings: settings(&good) }), "Batch-one", "batch");
    let queued = h.wait_for(QUEUE, 1).await;
    h.shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(queued[0].get_str("via"), Some("file"));

    let bad = yaml(&shown, "react:\n  - name: include\n    rulesfile: bad.yaml\n");
    let errors = errors("pulse", &bad);
    let bad_file = dir.path().join("plugins/Batch/bad.yaml").display().to_string();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with(&format!("{bad_file}:3:16: rules[0].condition: ")), "{errors:#?}");
}
