//! Relay groups against real IRC servers: throwaway ngIRCd processes (one per network,
//! so one can be stopped while the others run), a real node in this process (the IRC
//! connectors, the relay service, the HTTP API), and people on IRC played by plain TCP
//! clients speaking the protocol.

use std::path::Path;
use std::time::Duration;

use flotilla_node::config::{LoadOptions, load_config};
use flotilla_relay::client::Client;
use flotilla_test_support::{Ngircd, NgircdOptions};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const TOKEN: &str = "relay-test-admin-token";
const WAIT: Duration = Duration::from_secs(30);

/// A person on IRC.
struct Person {
    nick: String,
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Person {
    async fn join(port: u16, nick: &str, channel: &str) -> Person {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (read, writer) = stream.into_split();
        let mut person = Person { nick: nick.into(), lines: BufReader::new(read).lines(), writer };
        person.send(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")).await;
        person.wait_for(|l| l.split(' ').nth(1) == Some("001")).await;
        person.send(&format!("JOIN {channel}\r\n")).await;
        person.wait_for(|l| l.starts_with(&format!(":{nick}!")) && l.contains(" JOIN ")).await;
        person
    }

    async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    async fn say(&mut self, channel: &str, text: &str) {
        self.send(&format!("PRIVMSG {channel} :{text}\r\n")).await;
    }

    /// Reads lines (answering PINGs) until one satisfies `done`; returns the channel
    /// messages seen on the way, the last one included when it is one.
    async fn wait_for(&mut self, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut said = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("{}: nothing awaited arrived; saw {said:?}", self.nick))
                .unwrap()
                .unwrap_or_else(|| panic!("{}: the server closed the connection", self.nick));
            if let Some(token) = line.strip_prefix("PING ") {
                self.send(&format!("PONG {token}\r\n")).await;
                continue;
            }
            if line.contains(" PRIVMSG ") {
                said.push(line.split_once(" :").map_or("", |(_, text)| text).to_string());
            }
            if done(&line) {
                return said;
            }
        }
    }

    /// Waits for a channel message containing `text`; returns every channel message
    /// seen until then, that one last.
    async fn hear(&mut self, text: &str) -> Vec<String> {
        self.wait_for(|l| l.contains(" PRIVMSG ") && l.contains(text)).await
    }

    /// Waits until `nick` joined (the bot).
    async fn sees_join(&mut self, nick: &str) {
        self.wait_for(|l| l.starts_with(&format!(":{nick}!")) && l.contains(" JOIN ")).await;
    }
}

fn irc_connector(name: &str, server: &Ngircd, nick: &str, channel: &str) -> String {
    format!(
        "  {name}:\n    type: irc\n    server: 127.0.0.1:{port}\n    nick: {nick}\n    channels: ['{channel}']\n    \
         min_backoff: 1s\n    max_backoff: 2s\n    max_attempts: 0\n",
        port = server.port
    )
}

async fn start_node(dir: &Path, config: &str) -> flotilla_node::node::RunningNode {
    let path = dir.join("flotilla.yaml");
    std::fs::write(&path, config).unwrap();
    let registry = flotilla_irc::connector_types();
    let services = [flotilla_relay::SERVICE_TYPE];
    let options = LoadOptions {
        path: Some(&path),
        registry: &registry,
        services: &services,
        env: &|_| None,
        hostname: "relayhost".into(),
    };
    let config = load_config(&options).unwrap_or_else(|e| panic!("{e:?}"));
    flotilla_node::node::start(config).await.unwrap()
}

fn client(node: &flotilla_node::node::RunningNode, token: Option<&str>) -> Client {
    Client { addr: node.http_addr, token: token.map(str::to_string) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_two_channels_relays_through_the_censor_and_the_review_queue() {
    let (net_a, net_b) = (Ngircd::start(NgircdOptions::default()), Ngircd::start(NgircdOptions::default()));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "node:\n  name: relaynode\n  data_dir: {d}/data\nhttp:\n  listen: 127.0.0.1:0\n  admin_token: {TOKEN}\n\
         connectors:\n{a}{b}groups:\n  nbg:\n    connectors: [irc-a, irc-b]\n    censor:\n      \
         trigger: ['kontroll?e', 'u\\d\\d?']\n      blocklist: ['nazi']\n",
        d = dir.path().display(),
        a = irc_connector("irc-a", &net_a, "relaya", "#nbg"),
        b = irc_connector("irc-b", &net_b, "relayb", "#fue"),
    );
    let mut anna = Person::join(net_a.port, "anna", "#nbg").await;
    let mut bert = Person::join(net_b.port, "bert", "#fue").await;
    let node = start_node(dir.path(), &config).await;
    anna.sees_join("relaya").await;
    bert.sees_join("relayb").await;

    // A report crosses to the other channel, and not back.
    anna.say("#nbg", "Kontrolle in der U1 am Plärrer").await;
    bert.hear("[irc-a] <anna> Kontrolle in der U1 am Plärrer").await;
    bert.say("#fue", "kontrolle Fürth Hbf").await;
    let anna_heard = anna.hear("[irc-b] <bert> kontrolle Fürth Hbf").await;
    assert_eq!(anna_heard, vec!["[irc-b] <bert> kontrolle Fürth Hbf"], "anna never gets her own report back");

    // One without a trigger and one blocked land in review with their reasons.
    anna.say("#nbg", "schönes Wetter heute").await;
    anna.say("#nbg", "Kontrolle, lauter Nazis und ein Nazi").await;
    let api = client(&node, Some(TOKEN));
    let reports = loop {
        let answer = api.call("GET", "/api/v1/groups/nbg/review", None).await.unwrap();
        let reports = answer["reports"].as_array().cloned().unwrap();
        if reports.len() == 2 {
            break reports;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let shown: Vec<(&str, &str, &str)> = reports
        .iter()
        .map(|r| (r["reason"].as_str().unwrap(), r["text"].as_str().unwrap(), r["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("no trigger matched", "schönes Wetter heute", "irc-a"),
            ("blocked: nazi", "Kontrolle, lauter Nazis und ein Nazi", "irc-a")
        ]
    );
    let (weather, blocked) =
        (reports[0]["id"].as_str().unwrap().to_string(), reports[1]["id"].as_str().unwrap().to_string());

    // Reading needs the token; deciding needs it too.
    let anonymous = client(&node, None);
    let refused = anonymous.call("GET", "/api/v1/groups/nbg/review", None).await.unwrap_err().to_string();
    assert!(refused.contains("401"), "{refused}");
    let refused =
        anonymous.call("POST", &format!("/api/v1/groups/nbg/review/{weather}/approve"), None).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");

    // Approving relays it as if it had passed; rejecting keeps it out, but kept.
    let approved = api.call("POST", &format!("/api/v1/groups/nbg/review/{weather}/approve"), None).await.unwrap();
    assert_eq!(approved["relayed_to"], json!(["irc-b"]));
    api.call("POST", &format!("/api/v1/groups/nbg/review/{blocked}/reject"), None).await.unwrap();
    let again = api.call("POST", &format!("/api/v1/groups/nbg/review/{weather}/approve"), None).await.unwrap_err();
    assert!(again.to_string().contains("already approved (HTTP 409)"), "{again}");
    anna.say("#nbg", "U2 Kontrolle Opernhaus").await;
    let bert_heard = bert.hear("U2 Kontrolle Opernhaus").await;
    assert_eq!(
        bert_heard,
        vec!["[irc-a] <anna> schönes Wetter heute", "[irc-a] <anna> U2 Kontrolle Opernhaus"],
        "the approved one came, the rejected one did not"
    );
    let pending = api.call("GET", "/api/v1/groups/nbg/review", None).await.unwrap();
    assert_eq!(pending["reports"], json!([]));
    let all = api.call("GET", "/api/v1/groups/nbg/review?all=true", None).await.unwrap();
    let decisions: Vec<&str> =
        all["reports"].as_array().unwrap().iter().map(|r| r["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, vec!["approved", "rejected"], "nothing rejected is lost");

    // Patterns: a bad one is refused with the pattern and why; a good change applies to
    // the next report.
    let bad = json!({"trigger": ["wetter", "(offen"], "blocklist": []});
    let refused = api.call("PUT", "/api/v1/groups/nbg/censor", Some(&bad)).await.unwrap_err().to_string();
    assert!(refused.contains("trigger[1] '(offen': unclosed group") && refused.contains("422"), "{refused}");
    let new = json!({"trigger": ["wetter"], "blocklist": ["nazi"]});
    api.call("PUT", "/api/v1/groups/nbg/censor", Some(&new)).await.unwrap();
    anna.say("#nbg", "Wetter: Regen").await;
    bert.hear("[irc-a] <anna> Wetter: Regen").await;

    // Kept across a restart.
    drop(anna);
    drop(bert);
    node.stop().await.unwrap();
    let node = start_node(dir.path(), &config).await;
    let censor = client(&node, Some(TOKEN)).call("GET", "/api/v1/groups/nbg/censor", None).await.unwrap();
    assert_eq!(censor, new);
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_target_holds_up_no_other_and_gets_its_reports_in_order_when_back() {
    let (net_a, net_b, mut net_c) = (
        Ngircd::start(NgircdOptions::default()),
        Ngircd::start(NgircdOptions::default()),
        Ngircd::start(NgircdOptions::default()),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "node:\n  name: relaynode\n  data_dir: {d}/data\nhttp:\n  listen: 127.0.0.1:0\n\
         connectors:\n{a}{b}{c}groups:\n  city:\n    connectors: [irc-a, irc-b, irc-c]\n",
        d = dir.path().display(),
        a = irc_connector("irc-a", &net_a, "relaya", "#a"),
        b = irc_connector("irc-b", &net_b, "relayb", "#b"),
        c = irc_connector("irc-c", &net_c, "relayc", "#c"),
    );
    let mut anna = Person::join(net_a.port, "anna", "#a").await;
    let mut bert = Person::join(net_b.port, "bert", "#b").await;
    let node = start_node(dir.path(), &config).await;
    anna.sees_join("relaya").await;
    bert.sees_join("relayb").await;

    net_c.kill();
    let reports: Vec<String> = (1..=5).map(|i| format!("report {i}")).collect();
    for report in &reports {
        anna.say("#a", report).await;
    }
    // The live target gets all of them, in order, while the other is down.
    let heard = bert.hear("report 5").await;
    assert_eq!(heard, reports.iter().map(|r| format!("[irc-a] <anna> {r}")).collect::<Vec<_>>());

    // Back: the stopped one posts them, in order, once it is in its channel again.
    net_c.restart();
    let mut carl = Person::join(net_c.port, "carl", "#c").await;
    let heard = carl.hear("report 5").await;
    assert_eq!(heard, reports.iter().map(|r| format!("[irc-a] <anna> {r}")).collect::<Vec<_>>());
    node.stop().await.unwrap();
}
