//! The `irc` connector against real servers (ngIRCd and InspIRCd) with a real
//! independent client (the Python `irc` package) as the humans. Each test starts its own
//! server(s) on free ports and stops them by PID.

mod support;

use std::time::Duration;

use bytes::Bytes;
use flotilla_core::Message;
use serde_json::{Value, json};
use support::{Harness, Human, Inspircd, Ngircd, NgircdOptions, Postgres};

/// The bus messages of `kind` (and `text`, when given) the connector emitted.
async fn bus_lines(h: &Harness, kind: &str) -> Vec<Message> {
    h.read_all(support::QUEUE).await.into_iter().filter(|m| m.get_str("kind") == Some(kind)).collect()
}

/// Queues a message in a connector's outbox, as the reactor's `Send` does.
async fn send(h: &Harness, connector: &str, message: Value) {
    h.bus.publish(&format!("outbox.{connector}"), vec![Bytes::from(message.to_string())]).await.unwrap();
}

fn count(log: &[String], row: &str) -> usize {
    log.iter().filter(|r| *r == row).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_logs_posts_and_reports_status_on_ngircd() {
    let server = Ngircd::start(NgircdOptions::default());
    let h = Harness::new().await;
    let mut alice = Human::connect(server.port, "alice");
    alice.ok("join #a");
    let run = h.spawn(
        "net1",
        &format!(
            "server: 127.0.0.1:{}\nnick: flot\nchannels: ['#a', '#b']\nlog: true\nping_interval: 1s\n",
            server.port
        ),
    );
    h.wait_fleet(&["JOINED #a", "JOINED #b"], 20).await;
    alice.ok("wait_join #a flot 10");
    alice.ok("say #a hello fleet");
    alice.ok("notice #a a notice");
    alice.ok("say flot a private word");
    alice.ok("part #a");
    let log = h
        .until("the lines in irclog", 20, || async {
            let log = h.irclog().await;
            log.iter().any(|l| l.starts_with("PART #a alice")).then_some(log)
        })
        .await;
    for row in [
        "JOIN #a flot: ",
        "JOIN #b flot: ",
        "PRIVMSG #a alice: hello fleet",
        "NOTICE #a alice: a notice",
        "PRIVMSG flot alice: a private word",
        "PART #a alice: ",
    ] {
        assert!(log.iter().any(|l| l == row), "missing {row:?} in {log:#?}");
    }

    // Every line is also a bus message.
    let privmsgs = bus_lines(&h, "PRIVMSG").await;
    let hello = privmsgs.iter().find(|m| m.get_str("text") == Some("hello fleet")).expect("PRIVMSG on the bus");
    assert_eq!(hello.get_str("plugin"), Some("irc"));
    assert_eq!(hello.get_str("network"), Some("net1"));
    assert_eq!(hello.get_str("channel"), Some("#a"));
    assert_eq!(hello.get_str("nick"), Some("alice"));
    assert_eq!(hello.get_str("key"), Some("net1"));
    assert!(hello.get("id").is_some() && hello.get("lastupdate").is_some(), "the envelope is stamped");
    assert!(!bus_lines(&h, "001").await.is_empty(), "numerics are bus messages too");

    // Rules hand the connector messages to post (the outbox); it posts them paced.
    alice.ok("join #a");
    send(&h, "net1", json!({"channel": "#a", "text": "hello humans"})).await;
    send(&h, "net1", json!({"target": "alice", "subject": "just for you"})).await;
    let got = alice.ok("wait_text hello humans 10");
    assert!(got.contains("flot #a hello humans"), "{got}");
    alice.ok("wait_text just for you 10");
    h.until("the bot's own line in irclog", 10, || async {
        h.irclog().await.iter().any(|l| l == "PRIVMSG #a flot: hello humans").then_some(())
    })
    .await;

    // Status: per connection server, nick, channels, lag, reconnects, state.
    let detail = h
        .until("a measured lag in the status", 10, || async {
            let d = h.detail("net1");
            d["connections"][0]["lag_ms"].is_u64().then_some(d)
        })
        .await;
    let connection = &detail["connections"][0];
    assert_eq!(connection["server"], format!("127.0.0.1:{}", server.port));
    assert_eq!(connection["nick"], "flot");
    assert_eq!(connection["channels"], json!(["#a", "#b"]));
    assert_eq!(connection["state"], "connected");
    assert_eq!(connection["reconnects"], 0);
    assert_eq!(detail["network"], "net1");

    h.stop(run).await.unwrap();
    let fleet = h.fleetlog().await;
    assert_eq!(fleet.last().map(String::as_str), Some("PROCESS-TERMINATED -"), "{fleet:?}");
    alice.ok("quit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_removes_only_that_channel_and_it_is_rejoined() {
    let server = Ngircd::start(NgircdOptions::default());
    let h = Harness::new().await;
    let mut op = Human::connect(server.port, "op");
    op.ok("join #a");
    op.ok("join #b");
    let run = h.spawn(
        "net",
        &format!(
            "server: 127.0.0.1:{}\nnick: flot\nchannels: ['#a', '#b']\nlog: true\nrejoin_delay: 2s\n",
            server.port
        ),
    );
    h.wait_fleet(&["JOINED #a", "JOINED #b"], 20).await;
    op.ok("wait_join #a flot 10");
    op.ok("kick #a flot behave");
    h.wait_fleet(&["KICKED #a"], 10).await;
    // Still in #b meanwhile: its lines are logged.
    op.ok("say #b are you still here");
    h.until("the #b line after the kick", 10, || async {
        h.irclog().await.iter().any(|l| l == "PRIVMSG #b op: are you still here").then_some(())
    })
    .await;
    h.until("#b alone in the status", 10, || async {
        (h.detail("net")["connections"][0]["channels"] == json!(["#b"])).then_some(())
    })
    .await;
    // After rejoin_delay it is back in #a, and nothing else was rejoined.
    let fleet = h.wait_fleet(&["JOINED #a", "JOINED #a", "JOINED #b"], 15).await;
    assert_eq!(count(&fleet, "JOINED #b"), 1, "{fleet:?}");
    assert_eq!(count(&fleet, "DISCONNECTED #b"), 0, "a kick is not a reconnect: {fleet:?}");
    let detailed = h.fleetlog_detailed().await;
    assert!(detailed.iter().any(|r| r == "KICKED #a flot: kicked by op: behave"), "{detailed:?}");
    assert!(h.irclog().await.iter().any(|l| l == "KICK #a op: flot: behave"));
    h.stop(run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_nick_falls_back_and_is_tried_again_on_reconnect() {
    let server = Inspircd::start();
    let h = Harness::new().await;
    let mut holder = Human::connect(server.port, "flot");
    let run = h.spawn(
        "insp",
        &format!(
            "server: 127.0.0.1:{}\nnick: flot\nchannels: ['#a']\nlog: true\nmin_backoff: 0.3s\nmax_backoff: 1s\n",
            server.port
        ),
    );
    h.wait_fleet(&["NICK-CHANGED -", "JOINED #a"], 20).await;
    let detail = h.detail_when("insp", "the fallback nick", |d| d["connections"][0]["state"] == "connected").await;
    let nick = detail["connections"][0]["nick"].as_str().unwrap_or_default().to_string();
    assert!(nick.len() == 8 && nick.starts_with("flot-") && nick[5..].bytes().all(|b| b.is_ascii_digit()), "{nick}");
    // The holder lets go of the nick and has the bot killed: it comes back as `flot`.
    holder.ok("nick alice");
    holder.ok("oper admin adminpass");
    holder.ok(&format!("kill {nick} test kill"));
    h.wait_fleet(&["DISCONNECTED #a", "RECONNECTED -", "JOINED #a", "JOINED #a"], 20).await;
    let detail = h
        .until("the configured nick again", 10, || async {
            let d = h.detail("insp");
            (d["connections"][0]["nick"] == "flot").then_some(d)
        })
        .await;
    assert_eq!(detail["connections"][0]["reconnects"], 1);
    h.stop(run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_taken_nick_is_shortened_to_the_server_limit() {
    let server = Inspircd::start();
    let h = Harness::new().await;
    let long = "abcdefghijklmnopqrstuvwxyz1234"; // 30: InspIRCd's NICKLEN here
    let _holder = Human::connect(server.port, long);
    let run =
        h.spawn("insp", &format!("server: 127.0.0.1:{}\nnick: {long}\nchannels: ['#a']\nlog: true\n", server.port));
    h.wait_fleet(&["NICK-CHANGED -", "JOINED #a"], 20).await;
    let detail = h.detail_when("insp", "the fallback nick", |d| d["connections"][0]["state"] == "connected").await;
    let nick = detail["connections"][0]["nick"].as_str().unwrap_or_default().to_string();
    assert!(nick.len() <= 30, "{nick}");
    let (base, digits) = nick.split_at(nick.len() - 4);
    assert!(long.starts_with(base) && digits.starts_with('-'), "{nick}");
    h.stop(run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_pings_is_left_and_reconnected() {
    let server = Ngircd::start(NgircdOptions::default());
    let h = Harness::new().await;
    let run = h.spawn(
        "net",
        &format!(
            "server: 127.0.0.1:{}\nnick: flot\nchannels: ['#a']\nlog: true\nping_interval: 0.5s\nmax_lag: 2s\n\
             min_backoff: 0.3s\nmax_backoff: 1s\nmax_attempts: 0\n",
            server.port
        ),
    );
    h.wait_fleet(&["JOINED #a"], 20).await;
    server.freeze();
    h.wait_fleet(&["DISCONNECTED #a"], 15).await;
    let detailed = h.fleetlog_detailed().await;
    assert!(
        detailed.iter().any(|r| r.starts_with("DISCONNECTED #a flot: no PONG within max_lag (2s)")),
        "{detailed:?}"
    );
    h.detail_when("net", "the lost connection in the status", |d| d["connections"][0]["state"] != "connected").await;
    server.thaw();
    h.wait_fleet(&["RECONNECTED -", "JOINED #a", "JOINED #a"], 30).await;
    h.stop(run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_only_active_channels_are_rejoined() {
    let mut server = Ngircd::start(NgircdOptions::default());
    let h = Harness::new().await;
    let mut op = Human::connect(server.port, "op");
    op.ok("join #a");
    op.ok("join #b");
    let run = h.spawn(
        "net",
        &format!(
            "server: 127.0.0.1:{}\nnick: flot\nchannels: ['#a', '#b']\nlog: true\nrejoin_delay: 120s\n\
             min_backoff: 0.3s\nmax_backoff: 1s\n",
            server.port
        ),
    );
    h.wait_fleet(&["JOINED #a", "JOINED #b"], 20).await;
    op.ok("wait_join #b flot 10");
    op.ok("kick #b flot out");
    h.wait_fleet(&["KICKED #b"], 10).await;
    drop(op);
    server.restart();
    let fleet = h.wait_fleet(&["DISCONNECTED #a", "RECONNECTED -", "JOINED #a", "JOINED #a"], 30).await;
    assert_eq!(count(&fleet, "DISCONNECTED #b"), 0, "#b was not active: {fleet:?}");
    // Give a wrong rejoin time to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fleet = h.fleetlog().await;
    assert_eq!(count(&fleet, "JOINED #b"), 1, "#b waits for its rejoin_delay: {fleet:?}");
    let detail =
        h.detail_when("net", "#a alone after the restart", |d| d["connections"][0]["channels"] == json!(["#a"])).await;
    assert_eq!(detail["connections"][0]["reconnects"], 1);
    h.stop(run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_spread_so_no_address_exceeds_the_per_ip_limit() {
    let server = Ngircd::start(NgircdOptions { max_connections_ip: 3, ..NgircdOptions::default() });
    let h = Harness::new().await;
    let channels: Vec<String> = (1..=7).map(|i| format!("'#c{i}'")).collect();
    let run = h.spawn(
        "net",
        &format!(
            "server: 127.0.0.1:{}\nnick: flot\nchannels: [{}]\nlog: true\nbind: [127.0.0.2, 127.0.0.3, 127.0.0.4]\n\
             max_connections_per_ip: 3\nmax_channels_per_connection: 1\n",
            server.port,
            channels.join(", ")
        ),
    );
    let wanted: Vec<String> = (1..=7).map(|i| format!("JOINED #c{i}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    h.wait_fleet(&wanted, 30).await;
    let detail = h
        .detail_when("net", "all seven connected", |d| {
            d["connections"].as_array().is_some_and(|c| c.iter().all(|c| c["state"] == "connected"))
        })
        .await;
    let connections = detail["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 7);
    let mut per_address = std::collections::HashMap::new();
    for c in connections {
        assert_eq!(c["state"], "connected", "{c}");
        assert_eq!(c["reconnects"], 0, "no refused connection had to be retried: {c}");
        *per_address.entry(c["bind"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    assert_eq!(per_address.len(), 3);
    assert!(per_address.values().all(|&n| n <= 3), "{per_address:?}");
    let nicks: Vec<&str> = connections.iter().map(|c| c["nick"].as_str().unwrap()).collect();
    assert_eq!(nicks, ["flot", "flot2", "flot3", "flot4", "flot5", "flot6", "flot7"]);
    // The server really does count per address: 127.0.0.2 is full.
    let refused = std::panic::catch_unwind(|| Human::connect_from(server.port, "late", Some("127.0.0.2")));
    assert!(refused.is_err(), "a fourth connection from 127.0.0.2 must be refused");
    h.stop(run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_numerics_are_logged_and_never_a_reason_to_reconnect() {
    let server = Inspircd::start();
    let h = Harness::new().await;
    let mut alice = Human::connect(server.port, "alice");
    alice.ok("join #a");
    let run = h.spawn("insp", &format!("server: 127.0.0.1:{}\nnick: flot\nchannels: ['#a']\nlog: true\n", server.port));
    h.wait_fleet(&["JOINED #a"], 20).await;
    // InspIRCd answers MODULES with numeric 702, which the bot does not know.
    send(&h, "insp", json!({"raw": "MODULES"})).await;
    let detailed = h
        .until("UNKNOWN-REPLY rows", 15, || async {
            let rows = h.fleetlog_detailed().await;
            rows.iter().any(|r| r.starts_with("UNKNOWN-REPLY - flot: unknown reply 702")).then_some(rows)
        })
        .await;
    assert!(!detailed.iter().any(|r| r.starts_with("DISCONNECTED")), "{detailed:?}");
    alice.ok("say #a still connected");
    h.until("a line after the unknown replies", 10, || async {
        h.irclog().await.iter().any(|l| l == "PRIVMSG #a alice: still connected").then_some(())
    })
    .await;
    let detail = h.detail_when("insp", "the status", |d| d["connections"][0]["state"] == "connected").await;
    assert_eq!(detail["connections"][0]["reconnects"], 0);
    h.stop(run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate_and_refused_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, other_ca, cert, key) = support::make_certificates(certs.path());
    let tls_port = support::free_port();
    let server = Ngircd::start(NgircdOptions { tls: Some((tls_port, cert, key)), ..NgircdOptions::default() });
    let h = Harness::new().await;
    let mut alice = Human::connect(server.port, "alice");
    alice.ok("join #a");
    let good = h.spawn(
        "secure",
        &format!(
            "server: localhost:{tls_port}\ntls: true\ntls_ca: {}\nnick: flot\nchannels: ['#a']\nlog: true\n",
            ca.display()
        ),
    );
    // TLS to a plain port, and TLS with a certificate nobody vouches for.
    let plain = h.spawn(
        "plain",
        &format!(
            "server: 127.0.0.1:{}\ntls: true\ntls_insecure: true\nnick: flotp\nmax_lag: 2s\nmin_backoff: 0.2s\nmax_backoff: 0.5s\nmax_attempts: 2\nlog: true\n",
            server.port
        ),
    );
    let untrusted = h.spawn(
        "untrusted",
        &format!(
            "server: 127.0.0.1:{tls_port}\ntls: true\ntls_ca: {}\nnick: flotu\nmin_backoff: 0.2s\nmax_attempts: 0\n",
            other_ca.display()
        ),
    );
    h.wait_fleet(&["JOINED #a"], 20).await;
    alice.ok("say #a over tls");
    h.until("the line through TLS", 10, || async {
        h.irclog().await.iter().any(|l| l == "PRIVMSG #a alice: over tls").then_some(())
    })
    .await;
    let plain_error = h
        .until("the refused TLS reason", 15, || async {
            h.detail("plain")["connections"][0]["last_error"].as_str().map(str::to_string)
        })
        .await;
    assert!(plain_error.contains("TLS handshake with 127.0.0.1"), "{plain_error}");
    let untrusted_error = h
        .until("the untrusted certificate reason", 15, || async {
            h.detail("untrusted")["connections"][0]["last_error"].as_str().map(str::to_string)
        })
        .await;
    assert!(untrusted_error.contains("TLS handshake") && untrusted_error.contains("certificate"), "{untrusted_error}");
    // Two failed attempts sink the plain connector's only connection: the armada is dead.
    let result = tokio::time::timeout(Duration::from_secs(20), plain).await.unwrap().unwrap();
    assert!(result.unwrap_err().to_string().contains("ARMADA-ALL-DEAD"));
    let rows = h.fleetlog().await;
    for row in ["COULD-NOT-RECONNECT -", "ARMADA-ALL-DEAD -"] {
        assert!(rows.iter().any(|r| r == row), "missing {row} in {rows:?}");
    }
    h.detail_when("secure", "the others carry on", |d| d["connections"][0]["state"] == "connected").await;
    h.stop(good).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(15), untrusted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_postgres_is_down() {
    let mut pg = Postgres::start();
    let h = Harness::with_store(tempfile::tempdir().unwrap(), &pg.url()).await;
    let server = Ngircd::start(NgircdOptions::default());
    let mut alice = Human::connect(server.port, "alice");
    alice.ok("join #a");
    let run = h.spawn("net", &format!("server: 127.0.0.1:{}\nnick: flot\nchannels: ['#a']\nlog: true\n", server.port));
    h.wait_fleet(&["JOINED #a"], 20).await;
    alice.ok("wait_join #a flot 10");
    for i in 0..20 {
        alice.ok(&format!("say #a before {i}"));
    }
    h.until("the first lines in Postgres", 15, || async {
        (h.irclog().await.iter().filter(|l| l.starts_with("PRIVMSG")).count() == 20).then_some(())
    })
    .await;
    pg.stop();
    for i in 0..30 {
        alice.ok(&format!("say #a during {i}"));
    }
    // The lines are on the bus (the connection never waited for the database).
    h.until("the lines on the bus", 15, || async {
        let n = bus_lines(&h, "PRIVMSG")
            .await
            .iter()
            .filter(|m| m.get_str("text").is_some_and(|t| t.starts_with("during")))
            .count();
        (n == 30).then_some(())
    })
    .await;
    let detail = h
        .until("the logger to notice", 15, || async {
            let d = h.detail("net");
            (d["logger"]["retrying"] == true).then_some(d)
        })
        .await;
    assert!(detail["logger"]["last_error"].is_string(), "{detail}");
    assert_eq!(detail["connections"][0]["state"], "connected", "reading went on: {detail}");
    pg.start_again();
    let log = h
        .until("every line in Postgres", 60, || async {
            let log = h.irclog().await;
            (log.iter().filter(|l| l.starts_with("PRIVMSG")).count() >= 50).then_some(log)
        })
        .await;
    let privmsgs: Vec<&String> = log.iter().filter(|l| l.starts_with("PRIVMSG")).collect();
    assert_eq!(privmsgs.len(), 50, "each line once: {privmsgs:#?}");
    for i in 0..30 {
        let row = format!("PRIVMSG #a alice: during {i}");
        assert!(privmsgs.iter().any(|l| **l == row), "missing {row}");
    }
    h.stop(run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_logged_with_a_reason_and_the_rest_of_the_fleet_carries_on() {
    let server = Ngircd::start(NgircdOptions::default());
    let h = Harness::new().await;
    // Not an IRC server: garbage, over-long lines, bytes that are not UTF-8, then silence.
    let garbage_port = support::free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/garbage.py");
    let mut garbage = std::process::Command::new("python3")
        .arg(script)
        .arg(garbage_port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(garbage.stdout.take().unwrap()), &mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    // A server that accepts and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();

    let mut alice = Human::connect(server.port, "alice");
    alice.ok("join #a");
    let common = "log: true\nmax_lag: 2s\nmin_backoff: 0.5s\nmax_backoff: 1s\nmax_attempts: 0\n";
    let good = h.spawn("good", &format!("server: 127.0.0.1:{}\nnick: flot\nchannels: ['#a']\n{common}", server.port));
    let bad = h.spawn("garbage", &format!("server: 127.0.0.1:{garbage_port}\nnick: flotg\nchannels: ['#a']\n{common}"));
    let quiet = h.spawn("silent", &format!("server: 127.0.0.1:{silent_port}\nnick: flots\n{common}"));
    let nowhere = h.spawn("nowhere", &format!("server: no-such-host.invalid:6667\nnick: flotn\n{common}"));
    h.wait_fleet(&["JOINED #a"], 20).await;
    alice.ok("wait_join #a flot 10");

    // Bytes that are not UTF-8 (Latin-1) and a flood of JOINs through the real server.
    alice.ok("rawhex 505249564d5347202361203a636166e9206175206c6169740d0a"); // PRIVMSG #a :caf\xe9 au lait
    let mut joiners: Vec<Human> = (0..8).map(|i| Human::connect(server.port, &format!("joiner{i}"))).collect();
    for (i, joiner) in joiners.iter_mut().enumerate() {
        for _ in 0..5 {
            joiner.ok("join #a");
            joiner.ok("part #a");
        }
        joiner.ok(&format!("say #a joiner {i} done"));
    }
    alice.ok("say #a the end");
    let log = h
        .until("the good connector's lines", 20, || async {
            let log = h.irclog().await;
            log.iter().any(|l| l == "PRIVMSG #a alice: the end").then_some(log)
        })
        .await;
    assert!(log.iter().any(|l| l == "PRIVMSG #a alice: café au lait"), "Latin-1 read as such: {log:#?}");
    assert_eq!(log.iter().filter(|l| l.starts_with("JOIN #a joiner")).count(), 40, "every JOIN logged");
    let latin = bus_lines(&h, "PRIVMSG").await.into_iter().find(|m| m.get_str("text") == Some("café au lait")).unwrap();
    assert_eq!(latin.get_str("encoding"), Some("windows-1252"));

    let garbage_rows = h
        .until("the garbage server's rows", 20, || async {
            let rows: Vec<String> =
                h.fleetlog_detailed().await.into_iter().filter(|r| r.contains(" flotg: ")).collect();
            (rows.iter().filter(|r| r.starts_with("UNKNOWN-REPLY")).count() >= 5
                && rows.iter().any(|r| r.starts_with("DISCONNECTED")))
            .then_some(rows)
        })
        .await;
    for needle in [
        "over IRC's 512-byte limit; skipped",
        "unparseable line from the server (a source prefix but no command)",
        "unparseable line from the server (the line contains a NUL byte",
        "unparseable line from the server (command '123456'",
        "unknown reply 999",
        "DISCONNECTED - flotg: the server did not complete registration within 2s",
    ] {
        assert!(garbage_rows.iter().any(|r| r.contains(needle)), "missing {needle:?} in {garbage_rows:#?}");
    }
    let silent_error = h
        .until("the silent server's reason", 15, || async {
            h.detail("silent")["connections"][0]["last_error"].as_str().map(str::to_string)
        })
        .await;
    assert!(silent_error.contains("did not complete registration"), "{silent_error}");
    let nowhere_error = h
        .until("the bad host's reason", 15, || async {
            h.detail("nowhere")["connections"][0]["last_error"].as_str().map(str::to_string)
        })
        .await;
    assert!(nowhere_error.contains("cannot resolve no-such-host.invalid"), "{nowhere_error}");
    let detail = h.detail_when("good", "the good one connected", |d| d["connections"][0]["state"] == "connected").await;
    assert_eq!(detail["connections"][0]["reconnects"], 0, "the good connector never noticed");

    h.shutdown.cancel();
    for run in [good, bad, quiet, nowhere] {
        tokio::time::timeout(Duration::from_secs(15), run).await.unwrap().unwrap().unwrap();
    }
    let _ = garbage.kill();
    let _ = garbage.wait();
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shows_each_connection_in_status_and_the_http_api() {
    use flotilla_node::config::{LoadOptions, load_config};
    let server = Ngircd::start(NgircdOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "node:\n  name: testnode\n  data_dir: {d}/data\nhttp:\n  listen: 127.0.0.1:0\n\
         connectors:\n  ircnet:\n    type: irc\n    server: 127.0.0.1:{port}\n    nick: flot\n    channels: ['#a', '#b']\n    \
         max_channels_per_connection: 1\n    bind: [127.0.0.5, 127.0.0.6]\n    ping_interval: 1s\n",
        d = dir.path().display(),
        port = server.port
    );
    let path = dir.path().join("flotilla.yaml");
    std::fs::write(&path, config).unwrap();
    let registry = flotilla_irc::connector_types();
    let options = LoadOptions {
        path: Some(&path),
        registry: &registry,
        services: &[],
        env: &|_| None,
        hostname: "testhost".into(),
    };
    let config = load_config(&options).unwrap_or_else(|e| panic!("{e:?}"));
    let data_dir = config.data_dir.clone();
    let node = flotilla_node::node::start(config).await.unwrap();
    let http = node.http_addr;

    let status = loop {
        let status = flotilla_node::admin::AdminClient::new(&data_dir).status().await.unwrap();
        let irc = status.connectors.iter().find(|c| c.name == "ircnet").unwrap().clone();
        let connections = irc.detail["connections"].as_array().cloned().unwrap_or_default();
        if connections.len() == 2 && connections.iter().all(|c| c["state"] == "connected" && c["lag_ms"].is_u64()) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // What `flotilla status` prints.
    let table = flotilla_node::status::render_table(&status);
    let lines: Vec<&str> = table.lines().collect();
    let row = lines.iter().position(|l| l.starts_with("ircnet")).unwrap();
    assert!(lines[row].contains("irc") && lines[row].contains("running"), "{table}");
    // Each connection is a row of a table under the connector, not a line of JSON.
    assert!(!table.contains('{'), "{table}");
    let header = lines.iter().position(|l| l.trim_start().starts_with("CONNECTION  SERVER")).expect(&table);
    assert!(header > row, "{table}");
    for (line, (nick, channel, bind)) in
        lines[header + 1..].iter().zip([("flot", "#a", "127.0.0.5"), ("flot2", "#b", "127.0.0.6")])
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        for needle in [nick, channel, bind, "connected", &format!("127.0.0.1:{}", server.port)] {
            assert!(cells.contains(&needle), "{needle} in {line}\n{table}");
        }
    }
    assert!(lines.iter().any(|l| l.trim_start().starts_with("logger: written ")), "{table}");
    // What `/api/v1/status` answers.
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(http).unwrap();
        write!(stream, "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    let json_start = body.find('{').unwrap();
    let api: Value = serde_json::from_str(body[json_start..].trim_end_matches(|c| c != '}')).unwrap();
    let irc = api["connectors"].as_array().unwrap().iter().find(|c| c["name"] == "ircnet").unwrap();
    let connections = irc["detail"]["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 2);
    for (c, (channel, bind)) in connections.iter().zip([("#a", "127.0.0.5"), ("#b", "127.0.0.6")]) {
        assert_eq!(c["server"], format!("127.0.0.1:{}", server.port));
        assert_eq!(c["channels"], json!([channel]));
        assert_eq!(c["bind"], bind);
        assert_eq!(c["reconnects"], 0);
        assert_eq!(c["state"], "connected");
        assert!(c["lag_ms"].is_u64());
    }
    node.stop().await.unwrap();
}

#[test]
fn the_example_configuration_is_valid() {
    use flotilla_node::config::{LoadOptions, load_config};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/irc.yaml");
    let registry = flotilla_irc::connector_types();
    let options = LoadOptions {
        path: Some(&path),
        registry: &registry,
        services: &[],
        env: &|_| None,
        hostname: "testhost".into(),
    };
    let config = load_config(&options).unwrap_or_else(|e| panic!("examples/irc.yaml: {e:?}"));
    assert_eq!(config.connectors.len(), 1);
    assert_eq!(config.connectors[0].kind, "irc");
}

/// The logger creates its own tables before its first batch: on a fresh store (and on
/// Postgres) rows from the log queue land in `irclog`/`fleetlog` with nothing else
/// having migrated them, and starting again is no work.
#[tokio::test]
async fn the_logger_creates_its_tables_in_a_fresh_store() {
    use flotilla_irc::logger::{self, LoggerControl, log_queue};
    use flotilla_irc::record::{FleetRow, IrcRow, LogRow};
    use flotilla_irc::status::StatusTable;

    async fn check(h: Harness) {
        let rows = [
            LogRow::Irc(IrcRow {
                target: "#a".into(),
                message: "hello tables".into(),
                host: None,
                source: "alice".into(),
                user: None,
                networkname: "net".into(),
                irc_message_type: "PRIVMSG".into(),
                received_at: 1,
            }),
            LogRow::Fleet(FleetRow {
                channel: Some("#a".into()),
                message: "JOINED".into(),
                nick: Some("flot".into()),
                networkname: "net".into(),
                detail: None,
                received_at: 2,
            }),
        ];
        for round in 0..2 {
            let payloads = rows.iter().map(|r| Bytes::from(r.to_json())).collect();
            h.bus.publish(&log_queue("fresh"), payloads).await.unwrap();
            let status = std::sync::Arc::new(StatusTable::new("s".into(), "net".into(), Vec::new()));
            let control = LoggerControl::default();
            control.drain.cancel();
            logger::run(h.bus.clone(), h.store.clone(), "fresh".into(), status, control).await.unwrap();
            assert_eq!(h.irclog().await.len(), round + 1);
            assert_eq!(h.fleetlog().await.len(), round + 1);
        }
        assert_eq!(h.irclog().await[0], "PRIVMSG #a alice: hello tables");
        assert_eq!(h.fleetlog().await[0], "JOINED #a");
    }
    check(Harness::new().await).await;
    let pg = Postgres::start();
    check(Harness::with_store(tempfile::tempdir().unwrap(), &pg.url()).await).await;
}
