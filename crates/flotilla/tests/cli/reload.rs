//! Reloading a running node (`flotilla reload`, SIGHUP): changed rules and connectors
//! take effect, an unchanged connector keeps running untouched, what only a restart
//! applies is named, and a broken configuration is refused with every error while the
//! old one keeps serving.

use std::time::{Duration, Instant};

use crate::support::*;

/// The node section `Workspace` writes, then `rest`.
fn write_config(ws: &Workspace, http_extra: &str, rest: &str) {
    let text = format!(
        "node:\n  name: testnode\n  data_dir: {}\nhttp:\n  listen: 127.0.0.1:0\n{http_extra}{rest}",
        ws.data_dir().display()
    );
    std::fs::write(ws.config(), text).unwrap();
}

const BEFORE: &str = "\
connectors:
  steady:
    type: pulse
    delay: 1h
  doomed:
    type: pulse
    delay: 1h
  tuned:
    type: pulse
    delay: 1h
rules:
  - name: copy
    plugin: MessageQueue
    config: {queue: first}
";

const AFTER: &str = "\
connectors:
  steady:
    type: pulse
    delay: 1h
  tuned:
    type: pulse
    delay: 2h
  newcomer:
    type: pulse
    delay: 1h
rules:
  - name: copy
    plugin: MessageQueue
    config: {queue: second}
";

fn status(ws: &Workspace) -> serde_json::Value {
    let out = ws.run(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn connector<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["connectors"].as_array().unwrap().iter().find(|c| c["name"] == name)
}

/// Sends a message to the reactor and waits (bounded) until `queue` holds `count` messages.
fn send_and_expect(ws: &Workspace, subject: &str, queue: &str, count: u64) {
    let out = ws.run(&["send", "--queue", "reactor", "--field", &format!("subject={subject}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = status(ws);
        let queued = status["queues"].as_array().unwrap().iter().find(|q| q["queue"] == queue);
        if queued.is_some_and(|q| q["next_seq"].as_u64() > Some(count)) {
            return;
        }
        assert!(Instant::now() < deadline, "{queue} did not get {subject}: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_reload_applies_rules_and_connectors_and_leaves_the_unchanged_alone() {
    let ws = Workspace::new("");
    write_config(&ws, "", BEFORE);
    let node = ws.start();
    send_and_expect(&ws, "before", "first", 1);
    let before = status(&ws);
    let steady_since = connector(&before, "steady").unwrap()["since"].clone();
    // `since` counts seconds: a restart after this would show.
    std::thread::sleep(Duration::from_millis(1100));

    write_config(&ws, "  max_connections: 100\n", AFTER);
    let out = ws.run(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    for line in [
        "configuration reloaded; 1 rules in force",
        "connectors started: newcomer",
        "connectors stopped: doomed",
        "connectors restarted: tuned",
        "connectors unchanged: steady",
        "not applied until a restart: the http section changed",
    ] {
        assert!(report.contains(line), "missing {line:?} in\n{report}");
    }

    let after = status(&ws);
    assert!(connector(&after, "doomed").is_none(), "{after}");
    assert_eq!(connector(&after, "newcomer").unwrap()["state"], "running", "{after}");
    assert_eq!(connector(&after, "tuned").unwrap()["state"], "running", "{after}");
    let steady = connector(&after, "steady").unwrap();
    assert_eq!(steady["state"], "running");
    assert_eq!(steady["since"], steady_since, "the unchanged connector was restarted: {after}");
    assert_eq!(steady["restarts"], 0);

    // The new rule is in force for the next message.
    send_and_expect(&ws, "after", "second", 1);
    let (exit, _) = node.stop(libc::SIGTERM);
    assert!(exit.success());
}

#[test]
fn a_broken_configuration_is_refused_with_every_error_and_the_old_one_keeps_running() {
    let ws = Workspace::new("");
    write_config(&ws, "", BEFORE);
    let node = ws.start();
    let broken = "connectors:\n  steady:\n    type: pulse\n    delay: soon\n  other:\n    type: no-such-type\nrules:\n  - name: copy\n    plugin: MessageQueue\n    config: {queue: second}\n";
    write_config(&ws, "", broken);

    // `flotilla reload` reports every error and asks nothing of the node.
    let out = ws.run(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("connectors.steady.delay") && err.contains("no-such-type"), "{err}");
    assert!(err.contains("2 errors in the configuration"), "{err}");
    assert!(err.contains("nothing was reloaded"), "{err}");

    // SIGHUP: the node reads it itself, refuses it, says why, and keeps serving the
    // old configuration (rules and connectors).
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(node.pid(), libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        if let Ok(line) = node.log.recv_timeout(Duration::from_millis(200))
            && line.contains("The new configuration was refused")
        {
            break line;
        }
        assert!(Instant::now() < deadline, "the node did not report the refused configuration");
    };
    assert!(refused.contains("no-such-type") && refused.contains("delay"), "{refused}");
    // (The commands read the configuration too, so they use the good one, kept aside.)
    let broken_text = std::fs::read_to_string(ws.config()).unwrap();
    write_config(&ws, "", BEFORE);
    send_and_expect(&ws, "still the old rules", "first", 1);
    let running = status(&ws);
    for name in ["steady", "doomed", "tuned"] {
        assert_eq!(connector(&running, name).unwrap()["state"], "running", "{running}");
    }

    assert!(broken_text.contains("no-such-type"));

    // Fixed, SIGHUP applies it.
    write_config(&ws, "", AFTER);
    // SAFETY: as above.
    unsafe { libc::kill(node.pid(), libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(line) = node.log.recv_timeout(Duration::from_millis(200))
            && line.contains("The configuration was reloaded.")
        {
            assert!(line.contains("doomed") && line.contains("newcomer"), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
    }
    send_and_expect(&ws, "new rules", "second", 1);
    let (exit, _) = node.stop(libc::SIGTERM);
    assert!(exit.success());
}

#[test]
fn reload_without_a_running_node_says_so() {
    let ws = Workspace::new("");
    write_config(&ws, "", BEFORE);
    let out = ws.run(&["reload"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no node is running with data directory"), "{}", stderr(&out));
}
