//! The Slack system in the real binary: a YAML config with a `slack` connector,
//! handlers and a rule, a signed message posted to the node's HTTP server, and the
//! answers arriving at a local server that speaks the Web API's shapes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;

const SECRET: &str = "e2e-signing-secret-0123456789abcdef";
const TOKEN: &str = "xoxb-e2e-bot-token";

/// One Web API call: (method, Authorization header, JSON body).
type Call = (String, String, serde_json::Value);

/// A local Web API: answers every call `{"ok":true}` and reports it.
fn web_api() -> (String, mpsc::Receiver<Call>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let method = line.split(' ').nth(1).unwrap_or("").trim_start_matches("/api/").to_string();
                    let (mut length, mut authorization) = (0, String::new());
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "authorization" => authorization = value.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let answer = r#"{"ok":true,"ts":"1.0"}"#;
                    let stream = reader.get_mut();
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    )
                    .unwrap();
                    let _ = tx.send((method, authorization, serde_json::from_slice(&body).unwrap_or_default()));
                }
            });
        }
    });
    (url, rx)
}

/// POSTs `body` to the node, signed (or not); returns (status, body).
fn post(addr: &str, body: &str, content_type: &str, signed: bool) -> (u16, String) {
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let signature = flotilla_slack::signature::Verifier::new(SECRET).sign(&ts, body.as_bytes());
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = if signed {
        format!("X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {signature}\r\n")
    } else {
        String::new()
    };
    write!(
        stream,
        "POST /slack/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn message(event_id: &str, text: &str) -> String {
    let ts = format!("{:.6}", SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
    serde_json::json!({"type": "event_callback", "api_app_id": "A1", "team_id": "T1", "event_id": event_id,
        "event": {"type": "message", "channel_type": "channel", "channel": "C1", "user": "U1", "text": text, "ts": ts}})
    .to_string()
}

#[test]
fn a_signed_message_is_answered_by_a_handler_and_by_a_rule() {
    let (api_url, calls) = web_api();
    let ws = Workspace::new(&format!(
        "connectors:
  team:
    type: slack
    signing_secret: {SECRET}
    bot_token: ${{SLACK_BOT_TOKEN}}
    app_id: A1
    team_id: T1
    bot_user_id: UBOT
    api_url: {api_url}
    handlers:
      responses:
        - ping: pong
rules:
  - name: rewrite
    condition: text matches ^!rule
    plugin: SetField
    config: {{field: text, value: answered by a rule}}
  - name: answer
    condition: text equals answered by a rule
    plugin: Send
    config: {{connector: team}}
"
    ));
    let check = {
        let mut command = std::process::Command::new(binary());
        command.args(["check", "-c"]).arg(ws.config()).env("SLACK_BOT_TOKEN", TOKEN);
        command.output().unwrap()
    };
    assert!(check.status.success(), "{}", stderr(&check));
    let node = ws.start_with(|command| {
        command.env("SLACK_BOT_TOKEN", TOKEN);
    });

    assert_eq!(post(&node.http, &message("Ev1", "<@UBOT> ping"), "application/json", true), (200, String::new()));
    assert_eq!(post(&node.http, &message("Ev2", "!rule please"), "application/json", true), (200, String::new()));
    // Bad input on the way: refused, and the node keeps serving.
    assert_eq!(post(&node.http, &message("Ev3", "unsigned"), "application/json", false).0, 401);
    let (status, body) = post(&node.http, "{oops", "application/json", true);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not JSON"), "{body}");
    assert_eq!(post(&node.http, &message("Ev1", "<@UBOT> ping"), "application/json", true).0, 200, "a retry");

    let mut got: Vec<Call> =
        (0..2).map(|_| calls.recv_timeout(Duration::from_secs(30)).expect("a Web API call")).collect();
    got.sort_by(|a, b| a.2["text"].as_str().cmp(&b.2["text"].as_str()));
    for (method, authorization, _) in &got {
        assert_eq!((method.as_str(), authorization.as_str()), ("chat.postMessage", "Bearer xoxb-e2e-bot-token"));
    }
    assert_eq!(got[0].2["text"], "answered by a rule");
    assert_eq!(got[0].2["channel"], "C1");
    assert!(got[0].2["thread_ts"].is_string(), "a rule's Send answers in the thread: {:?}", got[0].2);
    assert_eq!(got[1].2["text"], "pong");
    assert!(calls.recv_timeout(Duration::from_millis(1500)).is_err(), "the retry was not answered again");

    let startup = node.startup_log.join("\n");
    let (status, log) = node.stop(libc::SIGTERM);
    assert!(status.success());
    let all_log = startup + &log.join("\n");
    assert!(!all_log.contains(SECRET) && !all_log.contains(TOKEN), "a secret reached the log");
}
