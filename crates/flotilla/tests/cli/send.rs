//! `flotilla send` and `flotilla tail` without a running node (straight to the bus in
//! the data directory), and their handling of bad input.

use crate::support::*;

#[test]
fn send_then_tail_from_start_without_a_node() {
    let ws = Workspace::new("");
    let out = ws.run(&["send", "--queue", "inbox", "--field", "subject=hello", "--field", "n=3", "--field", "ok=true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let receipt: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(receipt["seq"], 0);
    let out = ws.run(&["send", "--queue", "inbox", "--json", r#"{"subject":"second","status":"CRITICAL"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));

    // tail follows forever; read its first lines and stop it.
    let mut child = std::process::Command::new(binary())
        .args(["tail", "--queue", "inbox", "--from", "start", "-c"])
        .arg(ws.config())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        (first["subject"].as_str(), first["n"].as_i64(), first["ok"].as_bool()),
        (Some("hello"), Some(3), Some(true))
    );
    assert_eq!(first["id"], receipt["id"]);
    assert!(first["lastupdate"].is_number() && first["hostname"].is_string());
    assert_eq!(second["subject"], "second");
}

#[test]
fn tail_where_filters_with_the_condition_language() {
    let ws = Workspace::new("");
    for status in ["OK", "CRITICAL", "WARNING", "CRITICAL"] {
        assert!(ws.run(&["send", "-q", "q", "--field", &format!("status={status}")]).status.success());
    }
    let mut child = std::process::Command::new(binary())
        .args(["tail", "-q", "q", "--from", "start", "--where", "status equals CRITICAL", "-c"])
        .arg(ws.config())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    for _ in 0..2 {
        let line: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(line["status"], "CRITICAL");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = ws.run(&["tail", "--where", "status equalz x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--where"), "{}", stderr(&out));
}

#[test]
fn bad_input_to_send_gets_a_clear_error_and_nothing_is_written() {
    let ws = Workspace::new("");
    for (args, expected) in [
        (vec!["send", "-q", "q", "--json", "{\"a\": }"], "--json: invalid JSON at line 1, column 7"),
        (vec!["send", "-q", "q", "--json", "[1, 2]"], "a message must be a JSON object, not a list"),
        (vec!["send", "-q", "q", "--field", "novalue"], "expected KEY=VALUE"),
        (vec!["send", "-q", "q", "--json", "{\"id\": \"x\"}"], "field 'id' must be a ULID"),
        (vec!["send", "-q", "../etc", "--field", "a=1"], "invalid queue name '../etc'"),
    ] {
        let out = ws.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
    assert!(!ws.data_dir().join("bus/q").exists(), "nothing was written");
}
