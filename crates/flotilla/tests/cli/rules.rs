//! `flotilla rules test` (a dry run of the reactor) and wubot's configuration layout
//! (`plugins/<Plugin>/<instance>.yaml` and `reactor.yaml`) read as is.

use crate::support::*;

const RULES: &str = "\
rules:
  - name: critical
    condition: status equals CRITICAL
    rules:
      - name: colour
        plugin: SetField
        config: {field: color, value: red}
      - name: stop here
        last_rule: true
    plugin: MessageQueue
    config: {queue: alerts}
  - name: never for criticals
    plugin: SetField
    config: {field: seen_by_second_rule, value: 1}
";

#[test]
fn rules_test_shows_the_trail_and_each_plugin_and_delivers_nothing() {
    let ws = Workspace::new(RULES);
    let out = ws.run(&["rules", "test", "--message", r#"{"subject":"disk full","status":"CRITICAL"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("rules fired: testnode:critical, testnode:colour, testnode:stop here"), "{text}");
    assert!(text.contains("after testnode:colour (SetField):") && text.contains("\"color\":\"red\""), "{text}");
    assert!(text.contains("would append to queue 'alerts'"), "{text}");
    assert!(!text.contains("seen_by_second_rule"), "last_rule stops later rules: {text}");
    assert!(!ws.data_dir().join("bus/alerts").exists(), "a dry run delivers nothing");

    let out = ws.run(&["rules", "test", "--json", "--message", r#"{"status":"OK"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    let message: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(message["wubot_rulelog"], serde_json::json!(["testnode:never for criticals"]));
    assert_eq!(message["seen_by_second_rule"], 1);
}

#[test]
fn rules_test_with_a_rules_file_and_bad_input() {
    let ws = Workspace::new("");
    let file = ws.dir.path().join("other.yaml");
    std::fs::write(&file, "rules:\n  - name: tag\n    plugin: SetField\n    config: {field: tagged, value: yes}\n")
        .unwrap();
    let out = ws.run(&["rules", "test", "--json", "--rules", file.to_str().unwrap(), "--message", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"tagged\""), "{}", stdout(&out));

    std::fs::write(&file, "rules:\n  - name: bad\n    condition: a equals\n").unwrap();
    let out = ws.run(&["rules", "test", "--rules", file.to_str().unwrap(), "--message", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("{}:3:16: rules[0].condition", file.display())), "{}", stderr(&out));

    let out = ws.run(&["rules", "test", "--message", "not json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--message: invalid JSON at line 1, column 2"), "{}", stderr(&out));
}

#[test]
fn wubot_layout_works_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("plugins/Pulse")).unwrap();
    std::fs::write(root.join("node.yaml"), format!("node:\n  name: w\n  data_dir: {}/data\n", root.display())).unwrap();
    std::fs::write(root.join("plugins/Pulse/myhost.yaml"), "---\nenable: 1\n").unwrap();
    std::fs::write(root.join("plugins/Pulse/elsewhere.yaml.nosuchhost"), "enable: 1\n").unwrap();
    std::fs::write(root.join("reactor.yaml"), "rules:\n  - name: console\n    plugin: Console\n").unwrap();
    let out = std::process::Command::new(binary())
        .args(["rules", "test", "--json", "-c"])
        .arg(root)
        .args(["--message", "{}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("w:console"), "reactor.yaml holds the rules: {}", stdout(&out));
    let out = std::process::Command::new(binary()).args(["status", "--json", "-c"]).arg(root).output().unwrap();
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> =
        status["connectors"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Pulse-myhost"], "a file for another host is not read");
}

#[test]
fn a_data_dir_that_cannot_be_used_is_a_clear_runtime_error() {
    let ws = Workspace::new("");
    std::fs::write(ws.data_dir(), "not a directory").unwrap();
    let out = ws.run(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot create the data directory"), "{}", stderr(&out));
}

/// wubot's own rule files write Perl's booleans (`last_rule: 1`); `check` and `rules
/// test` take them (SPEC §3), and they mean what `true` means.
#[test]
fn wubot_style_booleans_are_accepted_by_check_and_rules_test() {
    let ws = Workspace::new(&RULES.replace("last_rule: true", "last_rule: 1"));
    let out = ws.run(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ws.run(&["rules", "test", "--json", "--message", r#"{"status":"CRITICAL"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    let message: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(message.get("seen_by_second_rule").is_none(), "last_rule: 1 stops later rules: {message}");

    let ws = Workspace::new(&RULES.replace("last_rule: true", "last_rule: 0"));
    let out = ws.run(&["rules", "test", "--json", "--message", r#"{"status":"CRITICAL"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    let message: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(message["seen_by_second_rule"], 1, "last_rule: 0 does not stop: {message}");
}
