//! Relay groups through the binary: `flotilla check` reports every mistake of a
//! `groups:` section with its place, and `flotilla review` works a running node's
//! review queue and censor patterns (the relaying itself is tested against real IRC
//! servers in `systems/relay/tests/relay`).

use crate::support::*;

const TOKEN: &str = "a-long-enough-admin-token-for-the-relay-test";

fn irc(name: &str, port: u16) -> String {
    format!("  {name}:\n    type: irc\n    server: 127.0.0.1:{port}\n    nick: {name}\n    channels: ['#c']\n")
}

fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn check_reports_every_mistake_of_a_group_with_its_place() {
    let config = format!(
        "connectors:\n{}  beat:\n    type: pulse\n    delay: 1m\ngroups:\n  'two words':\n    connectors: [irc-a]\n  \
         nbg:\n    connectors: [irc-a, nope, beat, irc-a]\n    censor:\n      trigger: [ok, '(x']\n      blocklist: ['a*']\n",
        irc("irc-a", 1)
    );
    let out = Workspace::new(&config).run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    for expected in [
        "groups.two words: a group's name must be letters",
        "groups.nbg.connectors: 'nope' is not a configured connector",
        "groups.nbg.connectors: 'beat' is a pulse connector; groups relay between irc, email, xmpp, slack connectors",
        "groups.nbg.connectors: 'irc-a' is listed twice",
        "groups.nbg.censor.trigger[1] '(x': unclosed group",
        "groups.nbg.censor.blocklist[0] 'a*': it matches the empty text",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    // Each with its line and column.
    assert!(err.lines().any(|l| l.contains(":23:") && l.contains("'(x'")), "{err}");
}

#[test]
fn review_works_the_queue_and_the_patterns_of_a_running_node() {
    let port = unused_port();
    let config = format!(
        "connectors:\n{}{}groups:\n  nbg:\n    connectors: [irc-a, irc-b]\n    censor:\n      trigger: [kontrolle]\n",
        irc("irc-a", port),
        irc("irc-b", port)
    );
    let ws = Workspace::new(&config);
    let text = std::fs::read_to_string(ws.config()).unwrap();
    std::fs::write(ws.config(), text.replace("http:\n", &format!("http:\n  admin_token: {TOKEN}\n"))).unwrap();
    let node = ws.start();
    let review = |args: &[&str]| {
        let mut all = vec!["review", "--group", "nbg", "--http", &node.http];
        all.extend_from_slice(args);
        ws.run(&all)
    };

    let out = review(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "no reports waiting for review\n");

    let out = review(&["censor", "--add-trigger", r"u\d", "--add-blocklist", "nazi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "trigger:\n  kontrolle\n  u\\d\nblocklist:\n  nazi\n");

    // A bad pattern is refused, naming it and why; the patterns stay as they were.
    let out = review(&["censor", "--add-blocklist", "(offen"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("blocklist[1] '(offen': unclosed group (HTTP 422)"), "{}", stderr(&out));
    let out = review(&["censor", "--json"]);
    assert_eq!(stdout(&out).trim(), r#"{"trigger":["kontrolle","u\\d"],"blocklist":["nazi"]}"#);

    let out = review(&["approve", "01NOSUCHREPORT"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no report 01NOSUCHREPORT in review.nbg (HTTP 404)"), "{}", stderr(&out));
    let out = ws.run(&["review", "--group", "elsewhere", "--http", &node.http, "list"]);
    assert!(stderr(&out).contains("no group named 'elsewhere'"), "{}", stderr(&out));
    drop(node);

    // No node: a runtime failure that says where it looked.
    let nowhere = format!("127.0.0.1:{}", unused_port());
    let out = ws.run(&["review", "--group", "nbg", "--http", &nowhere, "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&format!("cannot reach the node's HTTP server at {nowhere}")), "{}", stderr(&out));
}
