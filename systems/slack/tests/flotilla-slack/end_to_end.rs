//! A signed message through the whole path in one process: gateway → queue → handlers
//! → outbox → connector → the local Web API; and on to the rules' queue.

use flotilla_connector::Connector;
use flotilla_test_support::TestNode;

use crate::support::*;

const HANDLERS: &str = "handlers:
  reactions:
    - rust: crab
  prefixes:
    - '!echo': '{user} said {rest}'
  responses:
    - ping: pong
  glossary:
    terms:
      gopher: the Go mascot
    aliases:
      golang-mascot: gopher
";

#[tokio::test]
async fn a_signed_message_is_answered_through_the_web_api() {
    let node = TestNode::new().await;
    let server = WebApiServer::start().await;
    let yaml = section(&server.url, HANDLERS);
    let gateway = Gateway::start(&node, &yaml).await;
    let parsed = parse_section(&yaml);
    let connector_section =
        flotilla_connector::ConnectorSection { name: "team", node: &parsed, path: "connectors.team".into() };
    let connector =
        flotilla_slack::SlackConnector::new(flotilla_slack::settings_from_section(&connector_section).unwrap());
    let ctx = node.context("team", "slack", "reactor");
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { connector.run(&ctx).await }
    });

    let ts = now() as f64 + 0.000_100;
    let events = [
        message_event("Ev1", "<@UBOT> define golang-mascot", ts),
        message_event("Ev2", "I like Rust", ts + 1.0),
        // Not answered: too old, the bot's own, an edit.
        message_event("Ev3", "<@UBOT> ping", ts - 120.0),
        serde_json::json!({"type": "event_callback", "api_app_id": "A1", "team_id": "T1", "event_id": "Ev4",
            "event": {"type": "message", "channel": "C1", "user": "UBOT", "text": "rust", "ts": format!("{ts:.6}")}})
        .to_string(),
        serde_json::json!({"type": "event_callback", "api_app_id": "A1", "team_id": "T1", "event_id": "Ev5",
            "event": {"type": "message", "subtype": "message_changed", "channel": "C1", "ts": format!("{ts:.6}")}})
        .to_string(),
        message_event("Ev6", "<@UBOT> ping", ts + 2.0),
    ];
    for body in &events {
        assert_eq!(post(&gateway.url(), &sign_json(body, now()), &[]).await.0, 200);
    }
    let got = server.wait_for(3).await;
    let calls: Vec<(String, serde_json::Value)> =
        got.iter().map(|r| (r.method.clone(), serde_json::from_str(&r.body).unwrap())).collect();
    let thread = |t: f64| format!("{t:.6}");
    assert_eq!(
        calls,
        [
            (
                "chat.postMessage".to_string(),
                serde_json::json!({"channel": "C1", "text": "`gopher`: the Go mascot", "thread_ts": thread(ts)})
            ),
            (
                "reactions.add".to_string(),
                serde_json::json!({"channel": "C1", "timestamp": thread(ts + 1.0), "name": "crab"})
            ),
            (
                "chat.postMessage".to_string(),
                serde_json::json!({"channel": "C1", "text": "pong", "thread_ts": thread(ts + 2.0)})
            ),
        ]
    );
    assert!(got.iter().all(|r| r.authorization == "Bearer xoxb-test-token"));
    // The rules see what the handlers saw (not the stale, own or edited ones).
    let forwarded = wait_for(&node, "reactor", 3).await;
    let ids: Vec<&str> = forwarded.iter().map(|m| m["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["Ev1", "Ev2", "Ev6"]);
    // Nothing more arrives.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(server.received().len(), 3);

    ctx.shutdown().cancel();
    run.await.unwrap().unwrap();
    gateway.stop().await;
}
