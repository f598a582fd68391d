//! Issue 11 (security), as an outsider would try it against the binary: control
//! characters in what is printed, modes of the data directory, secrets in output and
//! on the command line, and the admin token's length.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// A subject that tries to recolour the terminal (ESC [), clear it with the
/// one-character C1 CSI (U+009B), and carries a DEL.
const HOSTILE_SUBJECT: &str = "\u{1b}[31mred\u{9b}2J\u{7f}";

#[track_caller]
fn assert_no_raw_controls(line: &[u8]) {
    let text = std::str::from_utf8(line).unwrap();
    assert!(
        !text.chars().any(|c| c != '\t' && (c.is_control())),
        "a raw control character reached the terminal: {text:?}"
    );
}

#[test]
fn tail_prints_control_characters_escaped() {
    let ws = Workspace::new("");
    let json = serde_json::json!({ "subject": HOSTILE_SUBJECT }).to_string();
    let out = ws.run(&["send", "--queue", "inbox", "--json", &json]);
    assert!(out.status.success(), "{}", stderr(&out));
    let child = Command::new(binary())
        .args(["tail", "--queue", "inbox", "--from", "start", "-c"])
        .arg(ws.config())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = first_stdout_lines(child, 1, Duration::from_secs(20)).remove(0);
    assert_no_raw_controls(&line);
    let text = String::from_utf8(line).unwrap();
    assert!(text.contains(r#""subject":"\u001b[31mred\u009b2J\u007f""#), "{text}");
    // Still JSON, with the same value.
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["subject"], HOSTILE_SUBJECT);
}

#[test]
fn the_console_plugin_prints_control_characters_escaped() {
    let ws = Workspace::new("rules:\n  - name: show\n    plugin: Console\n");
    let json = serde_json::json!({ "key": "k\u{1b}]0;title\u{7}", "subject": HOSTILE_SUBJECT }).to_string();
    // Queued before the node starts (straight to the bus); the node's reactor prints it.
    let out = ws.run(&["send", "--queue", "reactor", "--json", &json]);
    assert!(out.status.success(), "{}", stderr(&out));
    let node = Command::new(binary())
        .args(["run", "-c"])
        .arg(ws.config())
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_stdout_lines(node, 1, Duration::from_secs(30)).remove(0);
    assert_no_raw_controls(&line);
    let text = String::from_utf8(line).unwrap();
    assert!(text.ends_with(r"> [k\u001b]0;title\u0007] \u001b[31mred\u009b2J\u007f"), "{text}");
}
