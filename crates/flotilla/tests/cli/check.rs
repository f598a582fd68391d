//! `flotilla check`: valid configurations pass; a configuration with many mistakes
//! gets every one of them, each with file, line and column, and exit code 1.

use crate::support::*;

#[test]
fn a_valid_configuration_passes() {
    let ws = Workspace::new(
        "connectors:\n  Pulse-a:\n    type: pulse\n    delay: 1m\nrules:\n  - name: all\n    condition: contains date\n    plugin: Console\n",
    );
    let out = ws.run(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("configuration is valid (node testnode, 1 connector, 1 rule, services: webui)"),
        "{}",
        stdout(&out)
    );
    // A service the configuration asks for is named.
    let ws = Workspace::new("dispatcher:\n  max_definitions: 5\n");
    let out = ws.run(&["check"]);
    assert!(stdout(&out).contains("0 rules, services: dispatcher, webui)"), "{}", stdout(&out));
    // An empty section asks for it too.
    let out = Workspace::new("dispatcher:\n").run(&["check"]);
    assert!(stdout(&out).contains("0 rules, services: dispatcher, webui)"), "{}", stdout(&out));
    let out = Workspace::new("dispatcher:\n  enabled: no\n").run(&["check"]);
    assert!(stdout(&out).contains("0 rules, services: webui)"), "{}", stdout(&out));
    // The web UI runs unless switched off.
    let out = Workspace::new("webui:\n  enabled: no\n").run(&["check"]);
    assert!(stdout(&out).contains("0 rules, no services)"), "{}", stdout(&out));
}

/// `dispatcher.subscribe` defaults to `open` only while the control port is on
/// loopback; `check` says which applies and why, and refuses what cannot work.
#[test]
fn check_says_who_may_create_subscriptions() {
    let with_admin_token = |ws: Workspace| {
        let config = std::fs::read_to_string(ws.config()).unwrap();
        let token = "http:\n  admin_token: a-long-enough-admin-token-for-the-check-test\n";
        std::fs::write(ws.config(), config.replace("http:\n", token)).unwrap();
        ws
    };
    let cases = [
        (
            "dispatcher:\n",
            false,
            "dispatcher.subscribe: open (the default while control.listen 127.0.0.1:0 is on loopback)",
        ),
        (
            "dispatcher:\ncontrol:\n  listen: 0.0.0.0:0\n",
            false,
            "dispatcher.subscribe: admin (the default, as control.listen 0.0.0.0:0 is not on loopback): creating a \
             subscription needs http.admin_token, and none is set: no one can",
        ),
        (
            "dispatcher:\ncontrol:\n  listen: 0.0.0.0:0\n",
            true,
            "dispatcher.subscribe: admin (the default, as control.listen 0.0.0.0:0 is not on loopback): creating a \
             subscription needs http.admin_token (`subscribe NAME ADMIN_TOKEN`",
        ),
        ("dispatcher:\n  subscribe: closed\n", false, "dispatcher.subscribe: closed: no new subscriptions"),
    ];
    for (config, admin_token, expected) in cases {
        let ws = if admin_token { with_admin_token(Workspace::new(config)) } else { Workspace::new(config) };
        let out = ws.run(&["check"]);
        assert!(out.status.success(), "{config}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("  dispatcher: {expected}")), "{config}: {}", stdout(&out));
    }
    for (config, expected) in [
        ("dispatcher:\n  subscribe: admin\n", "dispatcher.subscribe: admin needs http.admin_token"),
        (
            "dispatcher:\n  subscribe: sometimes\n",
            "dispatcher.subscribe: expected open, admin or closed, found 'sometimes'",
        ),
        ("redis:\n  key_prefix: \"a b\"\n", "redis.key_prefix: no spaces or control characters"),
    ] {
        let out = Workspace::new(config).run(&["check"]);
        assert_eq!(out.status.code(), Some(1), "{config}: {}", stdout(&out));
        assert!(stderr(&out).contains(expected), "{config}: {}", stderr(&out));
    }
}

#[test]
fn every_mistake_is_reported_with_its_place() {
    let ws = Workspace::new(
        "\
htp:
  listen: 1
control:
  listen: not-an-address
connectors:
  Pulse-a:
    type: pulse
    delay: soon
    colour: red
  other:
    type: telepathy
rules:
  - name: broken
    condition: subject matches (unclosed
  - condition: TRUE
    plugin: NoSuchPlugin
",
    );
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let file = ws.config().display().to_string();
    for expected in [
        format!("{file}:6:1: unknown key 'htp'"),
        format!("{file}:9:11: control.listen: 'not-an-address' is not an address:port"),
        "connectors.Pulse-a.delay: invalid duration 'soon'".to_string(),
        "unknown key 'colour' in connectors.Pulse-a".to_string(),
        "connectors.other.type: unknown connector type 'telepathy' (known: ".to_string(),
        "rules[0].condition".to_string(),
        "rules[1].name".to_string(),
        "rules[1].plugin".to_string(),
    ] {
        assert!(err.contains(&expected), "missing '{expected}' in:\n{err}");
    }
    // Every error line carries file:line:column.
    for line in err.lines().filter(|l| l.starts_with("error: ")) {
        let rest = line.trim_start_matches("error: ");
        let place: Vec<&str> = rest.splitn(4, ':').collect();
        assert!(
            place.len() == 4 && place[1].parse::<u32>().is_ok() && place[2].parse::<u32>().is_ok(),
            "no location: {line}"
        );
    }
    assert!(err.trim_end().ends_with("errors in the configuration"), "{err}");
}

#[test]
fn a_directory_is_merged_and_a_key_defined_twice_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("plugins/Pulse")).unwrap();
    std::fs::write(root.join("node.yaml"), format!("node:\n  name: a\n  data_dir: {}/data\n", root.display())).unwrap();
    std::fs::write(root.join("other.yaml"), "node:\n  name: b\n").unwrap();
    std::fs::write(root.join("plugins/Pulse/here.yaml"), "enable: 1\n").unwrap();
    let out = std::process::Command::new(binary()).args(["check", "-c"]).arg(root).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("node.yaml:2:3") && err.contains("other.yaml:2:3") && err.contains("node.name"), "{err}");

    std::fs::remove_file(root.join("other.yaml")).unwrap();
    let out = std::process::Command::new(binary()).args(["check", "-c"]).arg(root).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 connector"), "wubot's plugins/Pulse/here.yaml is connector Pulse-here");
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let out = std::process::Command::new(binary()).args(["send"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--queue"), "{}", stderr(&out));
    for command in
        [&["--help"][..], &["run", "--help"], &["tail", "--help"], &["rules", "test", "--help"], &["status", "--help"]]
    {
        let out = std::process::Command::new(binary()).args(command).output().unwrap();
        assert!(out.status.success(), "{command:?}");
        assert!(stdout(&out).contains("Usage:"), "{command:?}");
    }
    let out =
        std::process::Command::new(binary()).args(["check", "-c", "/nonexistent/flotilla.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/flotilla.yaml: no such file or directory"), "{}", stderr(&out));
}

#[test]
fn a_store_url_whose_sslrootcert_cannot_be_read_is_located_with_its_password_hidden() {
    let ws = Workspace::new(
        "store:\n  url: 'postgres://bot:hunter2pw@db.example/flotilla?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem'\n",
    );
    let out = ws.run(&["check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let file = ws.config().display().to_string();
    let expected = format!(
        "{file}:9:8: store.url: invalid store URL 'postgres://bot:***@db.example/flotilla?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem': cannot read the CA certificates in sslrootcert /nonexistent/ca.pem"
    );
    assert!(err.contains(&expected), "missing '{expected}' in:\n{err}");
    assert!(!err.contains("hunter2pw"), "{err}");
}

#[test]
fn http_limits_are_checked() {
    let ws = Workspace::new("");
    let config = std::fs::read_to_string(ws.config()).unwrap().replace(
        "http:\n  listen: 127.0.0.1:0\n",
        "http:\n  listen: 127.0.0.1:0\n  max_connections: 0\n  header_timeout: 0s\n  idle_timeout: 10s\n",
    );
    std::fs::write(ws.config(), config).unwrap();
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let file = ws.config().display().to_string();
    for expected in [
        format!("{file}:6:20: http.max_connections: must be at least 1"),
        format!("{file}:7:19: http.header_timeout: must be more than 0"),
        format!("{file}:8:17: http.idle_timeout: must be longer than 15s, the event streams' keep-alive interval"),
    ] {
        assert!(err.contains(&expected), "missing '{expected}' in:\n{err}");
    }
}
