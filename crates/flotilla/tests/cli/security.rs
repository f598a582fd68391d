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
        !text.chars().any(|c| c != '\t' && c.is_control()),
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

/// Every directory, file and socket under `dir`, with its permission bits.
fn modes_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        found.push((path.clone(), meta.permissions().mode() & 0o7777, meta.is_dir()));
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

#[test]
fn a_fresh_data_directory_is_private_to_the_node_s_user() {
    let ws = Workspace::new("rules:\n  - name: copy\n    plugin: MessageQueue\n    config: {queue: copied}\n");
    // Whatever the umask says, the node's files are its own.
    let node = NodeProcess::start_with_umask(&ws.config(), 0o002);
    let out = ws.run(&["send", "--queue", "reactor", "--field", "subject=hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let found = modes_under(&ws.data_dir());
    let names: Vec<String> = found.iter().map(|(p, _, _)| p.display().to_string()).collect();
    for wanted in ["bus", "flotilla.db", "flotilla.sock", "bus/reactor"] {
        assert!(names.iter().any(|n| n.ends_with(wanted)), "{wanted} is not among {names:?}");
    }
    for (path, mode, is_dir) in &found {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} has mode {mode:o}, not {want:o}", path.display());
    }
    let (status, log) = node.stop(libc::SIGTERM);
    assert!(status.success());
    assert!(!log.iter().any(|l| l.contains("can be read by other users")), "{log:?}");
}

#[test]
fn an_open_data_directory_is_left_alone_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new("");
    std::fs::create_dir(ws.data_dir()).unwrap();
    std::fs::set_permissions(ws.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = ws.start();
    let warning = node.startup_log.iter().find(|l| l.contains("can be read by other users")).cloned();
    drop(node);
    let warning = warning.expect("a warning about the open data directory");
    assert!(warning.contains(&ws.data_dir().display().to_string()) && warning.contains("755"), "{warning}");
    let mode = std::fs::metadata(ws.data_dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "the user's directory keeps the mode the user gave it");
}

/// Gives the `http:` section [`Workspace::new`] wrote an admin token.
fn with_admin_token(ws: &Workspace, token: &str) {
    let config = std::fs::read_to_string(ws.config()).unwrap();
    std::fs::write(ws.config(), config.replace("http:\n", &format!("http:\n  admin_token: '{token}'\n"))).unwrap();
}

#[test]
fn a_short_admin_token_is_refused_by_check_and_run() {
    let ws = Workspace::new("");
    with_admin_token(&ws, "hunter2-hunter2");
    for command in ["check", "run"] {
        let out = ws.run(&[command]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{command}: {err}");
        assert!(
            err.contains(":5:16: http.admin_token: too short (15 characters); use at least 16"),
            "{command}: {err}"
        );
        assert!(!err.contains("hunter2"), "{command} printed the token: {err}");
    }
    assert!(!ws.data_dir().exists(), "run started nothing");
    // Sixteen characters are enough; an empty token is no token.
    for token in ["hunter2-hunter2!", ""] {
        let ws = Workspace::new("");
        with_admin_token(&ws, token);
        let out = ws.run(&["check"]);
        assert!(out.status.success(), "{token:?}: {}", stderr(&out));
    }
}

#[test]
fn check_never_prints_a_password_from_a_url() {
    let ws = Workspace::new(
        "redis:\n  url: 'redis://bot:hunter2pw@127.0.0.1:notaport/0'\ndispatcher:\n  enabled: true\n\
         store:\n  url: 'postgres://127.0.0.1:1/db?user=bot&password=hunter2pw'\n",
    );
    let out = ws.run(&["check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("redis.url: 'redis://bot:***@127.0.0.1:notaport/0' is not a Redis URL"), "{err}");
    assert!(!err.contains("hunter2pw"), "{err}");
    // The store's URL reaches `run`'s error (nothing listens on port 1).
    let ws = Workspace::new("store:\n  url: 'postgres://127.0.0.1:1/db?user=bot&password=hunter2pw'\n");
    let out = ws.run(&["run"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("postgres://127.0.0.1:1/db?user=bot&password=***"), "{err}");
    assert!(!err.contains("hunter2pw"), "{err}");
}

#[test]
fn dispatcher_cli_takes_the_token_from_a_file_or_the_environment() {
    // No Redis is needed to manage subscriptions; deliveries would wait on the bus.
    let ws = Workspace::new("redis:\n  url: redis://127.0.0.1:1/0\ndispatcher:\n  enabled: true\n");
    let node = ws.start();
    let port = node.control.rsplit(':').next().unwrap().to_string();
    let cli = |args: &[&str], env: Option<&str>| {
        let mut command = Command::new(binary());
        command.args(["dispatcher-cli", "--port", &port]).args(args).env_remove("FLOTILLA_TOKEN");
        if let Some(token) = env {
            command.env("FLOTILLA_TOKEN", token);
        }
        command.output().unwrap()
    };
    let out = cli(&["--subscribe", "mybot"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().strip_prefix("TOKEN: ").unwrap().to_string();
    let file = ws.dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let file = file.display().to_string();
    let insert = ["--insert", "mybot", "--wiki", "enwiki", "--page", "Main Page"];

    let out = cli(&[&insert[..], &["--token-file", &file]].concat(), None);
    assert_eq!((stdout(&out).trim(), out.status.code()), ("Inserted: 1", Some(0)), "{}", stderr(&out));
    let out = cli(&["--list", "mybot"], Some(&token));
    assert!(out.status.success() && stdout(&out).contains("Main Page"), "{}", stderr(&out));
    // The command line wins over the environment, and a wrong token is still refused.
    let out = cli(&["--list", "mybot", "--token", "WRONG"], Some(&token));
    assert_eq!((stderr(&out).trim(), out.status.code()), ("E005: Invalid token or name", Some(1)));

    let out = cli(&["--list", "mybot"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs --token, --token-file or FLOTILLA_TOKEN"), "{}", stderr(&out));
    let out = cli(&["--list", "mybot", "--token-file", "/nonexistent/token"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--token-file: cannot read /nonexistent/token"), "{}", stderr(&out));
    let out = cli(&["--list", "mybot", "--token", &token, "--token-file", &file], None);
    assert_eq!(out.status.code(), Some(1), "one or the other");
    assert!(!stderr(&out).contains(&token), "{}", stderr(&out));
}

#[test]
fn an_irc_password_without_tls_is_warned_about_in_check_and_at_start() {
    // Nothing listens on port 1: the connector only retries; the warning is what counts.
    let irc = |tls: &str| {
        Workspace::new(&format!(
            "connectors:\n  libera:\n    type: irc\n    server: 127.0.0.1:1\n    nick: flot\n    password: hunter2pw\n{tls}"
        ))
    };
    let warning = "connectors.libera.password: sent in clear text";
    let ws = irc("");
    let out = ws.run(&["check"]);
    let err = stderr(&out);
    assert!(out.status.success(), "a warning, not an error: {err}");
    assert!(err.contains(&format!("warning: {}:13:15: {warning}", ws.config().display())), "{err}");
    assert!(!err.contains("hunter2pw"), "{err}");
    let node = ws.start();
    assert!(node.startup_log.iter().any(|l| l.contains(warning)), "{:?}", node.startup_log);
    drop(node);

    let out = irc("    tls: true\n").run(&["check"]);
    assert!(out.status.success() && !stderr(&out).contains("warning"), "{}", stderr(&out));
}
