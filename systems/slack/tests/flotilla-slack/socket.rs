//! Socket Mode against a local WebSocket server speaking Slack's envelope format:
//! acknowledgements only after the event is on the bus, retries queued once, reconnects
//! on `disconnect` and on a dropped connection.

use std::time::Duration;

use flotilla_connector::Connector;
use flotilla_slack::event::{QUEUE_COMMAND, QUEUE_PUBLIC};
use flotilla_test_support::TestNode;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::*;

type Server = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn accept(listener: &tokio::net::TcpListener) -> Server {
    let (tcp, _) =
        tokio::time::timeout(Duration::from_secs(20), listener.accept()).await.expect("the client connects").unwrap();
    tokio_tungstenite::accept_async(tcp).await.unwrap()
}

async fn send(socket: &mut Server, value: serde_json::Value) {
    socket.send(Frame::text(value.to_string())).await.unwrap();
}

/// The next acknowledgement's envelope id.
async fn next_ack(socket: &mut Server) -> String {
    loop {
        let frame =
            tokio::time::timeout(Duration::from_secs(20), socket.next()).await.expect("an ack").unwrap().unwrap();
        if let Frame::Text(text) = frame {
            let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            return value["envelope_id"].as_str().unwrap().to_string();
        }
    }
}

fn events_envelope(envelope_id: &str, event_id: &str, text: &str, retry_attempt: u64) -> serde_json::Value {
    let payload: serde_json::Value = serde_json::from_str(&message_event(event_id, text, now() as f64)).unwrap();
    serde_json::json!({"envelope_id": envelope_id, "type": "events_api", "payload": payload,
        "accepts_response_payload": false, "retry_attempt": retry_attempt, "retry_reason": if retry_attempt > 0 { "timeout" } else { "" }})
}

#[tokio::test]
async fn socket_mode_acknowledges_after_queueing_and_reconnects() {
    let node = TestNode::new().await;
    let server = WebApiServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_url = format!("ws://{}/link/?ticket=abc", listener.local_addr().unwrap());
    for _ in 0..3 {
        server.answer("apps.connections.open", 200, None, &serde_json::json!({"ok": true, "url": ws_url}).to_string());
    }
    let yaml = format!(
        "app_token: xapp-1-test\nbot_token: xoxb-test-token\napp_id: A1\nteam_id: T1\napi_url: {}\n",
        server.url
    );
    let parsed = parse_section(&yaml);
    let section = flotilla_connector::ConnectorSection { name: "team", node: &parsed, path: "connectors.team".into() };
    let connector = flotilla_slack::SlackConnector::new(flotilla_slack::settings_from_section(&section).unwrap());
    let ctx = node.context("team", "slack", "reactor");
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { connector.run(&ctx).await }
    });

    // Connection 1: an event, its retry, a slash command, then Slack asks to reconnect.
    let mut socket = accept(&listener).await;
    send(&mut socket, serde_json::json!({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}))
        .await;
    send(&mut socket, events_envelope("env-1", "Ev1", "over the socket", 0)).await;
    assert_eq!(next_ack(&mut socket).await, "env-1");
    assert_eq!(queued(&node, QUEUE_PUBLIC).await.len(), 1, "durable before the ack");
    send(&mut socket, events_envelope("env-2", "Ev1", "over the socket", 1)).await;
    assert_eq!(next_ack(&mut socket).await, "env-2");
    let command = serde_json::json!({"envelope_id": "env-3", "type": "slash_commands", "accepts_response_payload": true,
        "payload": {"token": "t", "team_id": "T1", "channel_id": "C1", "user_id": "U1", "command": "/define",
                    "text": "gopher", "trigger_id": "tr-1", "api_app_id": "A1", "response_url": "https://hooks"}});
    send(&mut socket, command).await;
    assert_eq!(next_ack(&mut socket).await, "env-3");
    send(&mut socket, serde_json::json!({"type": "disconnect", "reason": "refresh_requested"})).await;

    // Connection 2: one more event, then the connection drops without a word.
    let mut socket = accept(&listener).await;
    send(&mut socket, serde_json::json!({"type": "hello"})).await;
    send(&mut socket, serde_json::json!({"type": "garbage"})).await;
    send(&mut socket, events_envelope("env-4", "Ev2", "after a refresh", 0)).await;
    assert_eq!(next_ack(&mut socket).await, "env-4");
    drop(socket);

    // Connection 3: the client came back by itself.
    let mut socket = accept(&listener).await;
    send(&mut socket, serde_json::json!({"type": "hello"})).await;
    send(&mut socket, events_envelope("env-5", "Ev3", "third", 0)).await;
    assert_eq!(next_ack(&mut socket).await, "env-5");

    let public = queued(&node, QUEUE_PUBLIC).await;
    let ids: Vec<&str> = public.iter().map(|m| m["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["Ev1", "Ev2", "Ev3"], "the retry was queued once");
    let commands = queued(&node, QUEUE_COMMAND).await;
    assert_eq!((commands.len(), commands[0]["text"].as_str()), (1, Some("gopher")));
    assert!(commands[0].get("token").is_none());
    let opens: Vec<Received> = server.received().into_iter().filter(|r| r.method == "apps.connections.open").collect();
    assert_eq!(opens.len(), 3);
    assert!(opens.iter().all(|r| r.authorization == "Bearer xapp-1-test"));

    ctx.shutdown().cancel();
    run.await.unwrap().unwrap();
    let detail = node.board.get("team").unwrap().detail;
    assert_eq!(detail["socket_connections"], 3);
}
