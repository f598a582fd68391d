//! The Web API client and the connector's outbox against a local server that answers as
//! Slack's Web API does.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_connector::Connector;
use flotilla_slack::config::Secret;
use flotilla_slack::webapi::{ApiError, WebApi};
use flotilla_test_support::TestNode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn calls_carry_the_token_only_in_the_header_and_surface_slacks_answers() {
    let server = WebApiServer::start().await;
    let api = WebApi::new(&server.url, Secret::new("xoxb-test-token")).unwrap();
    let answer = api.call("chat.postMessage", &json!({"channel": "C1", "text": "hi"})).await.unwrap();
    assert_eq!(answer["ts"], "1700000000.000200");
    let got = server.received();
    assert_eq!(got[0].method, "chat.postMessage");
    assert_eq!(got[0].authorization, "Bearer xoxb-test-token");
    assert_eq!(got[0].content_type, "application/json; charset=utf-8");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&got[0].body).unwrap(),
        json!({"channel": "C1", "text": "hi"})
    );
    assert!(!got[0].body.contains("xoxb"));

    // Read methods take form fields.
    api.call("users.info", &json!({"user": "U1"})).await.unwrap();
    api.call("conversations.list", &json!({"limit": 200, "types": "public_channel"})).await.unwrap();
    let got = server.received();
    assert_eq!((got[1].method.as_str(), got[1].body.as_str()), ("users.info", "user=U1"));
    assert_eq!(got[1].content_type, "application/x-www-form-urlencoded");
    assert_eq!(got[2].body, "limit=200&types=public_channel");

    server.answer("chat.postMessage", 200, None, r#"{"ok":false,"error":"channel_not_found"}"#);
    let error = api.call("chat.postMessage", &json!({"channel": "CX", "text": "x"})).await.unwrap_err();
    assert_eq!(error, ApiError::Slack { method: "chat.postMessage".into(), error: "channel_not_found".into() });

    server.answer("reactions.add", 200, None, "<html>oops</html>");
    let error =
        api.call("reactions.add", &json!({"channel": "C1", "timestamp": "1.0", "name": "x"})).await.unwrap_err();
    assert!(error.is_transient());
    assert!(error.to_string().contains("not JSON"), "{error}");
}

#[tokio::test]
async fn a_429_holds_back_its_tier_for_retry_after_and_not_the_others() {
    let server = WebApiServer::start().await;
    let api = std::sync::Arc::new(WebApi::new(&server.url, Secret::new("xoxb-test-token")).unwrap());
    server.answer("chat.postMessage", 429, Some("1"), r#"{"ok":false,"error":"ratelimited"}"#);
    let started = Instant::now();
    let posting = {
        let api = api.clone();
        tokio::spawn(async move { api.call("chat.postMessage", &json!({"channel": "C1", "text": "later"})).await })
    };
    // Wait for the 429 to have been answered, then call a method of another tier.
    server.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.call("users.info", &json!({"user": "U1"})).await.unwrap();
    posting.await.unwrap().unwrap();
    let got: Vec<String> = server.received().into_iter().map(|r| r.method).collect();
    assert_eq!(got, ["chat.postMessage", "users.info", "chat.postMessage"], "the other tier went first");
    assert!(started.elapsed() >= Duration::from_millis(950), "the retry waited for Retry-After");
}

#[tokio::test]
async fn the_connector_posts_its_outbox_keeps_refusals_and_retries_failures() {
    let node = TestNode::new().await;
    let server = WebApiServer::start().await;
    let section = parse_section(&section(&server.url, ""));
    let connector_section =
        flotilla_connector::ConnectorSection { name: "team", node: &section, path: "connectors.team".into() };
    let connector =
        flotilla_slack::SlackConnector::new(flotilla_slack::settings_from_section(&connector_section).unwrap());
    let ctx = node.context("team", "slack", "reactor");
    server.answer("chat.postMessage", 200, None, r#"{"ok":false,"error":"channel_not_found"}"#);
    server.answer("chat.postMessage", 502, None, "Bad Gateway");
    let outbox = [
        json!({"channel": "CBAD", "text": "nowhere"}),
        json!({"text": "no channel"}),
        json!({"channel": "C1", "text": "after a 502", "ts": "1700000000.000100"}),
        json!({"channel": "C1", "reaction": "gopher", "ts": "1700000000.000100"}),
    ];
    let payloads = outbox.iter().map(|m| Bytes::from(m.to_string())).collect();
    node.bus.publish("outbox.team", payloads).await.unwrap();
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { connector.run(&ctx).await }
    });
    let got = server.wait_for(4).await;
    let calls: Vec<(String, serde_json::Value)> =
        got.iter().map(|r| (r.method.clone(), serde_json::from_str(&r.body).unwrap())).collect();
    assert_eq!(
        calls,
        [
            ("chat.postMessage".to_string(), json!({"channel": "CBAD", "text": "nowhere"})),
            (
                "chat.postMessage".to_string(),
                json!({"channel": "C1", "text": "after a 502", "thread_ts": "1700000000.000100"})
            ),
            (
                "chat.postMessage".to_string(),
                json!({"channel": "C1", "text": "after a 502", "thread_ts": "1700000000.000100"})
            ),
            ("reactions.add".to_string(), json!({"channel": "C1", "timestamp": "1700000000.000100", "name": "gopher"})),
        ]
    );
    let failed = wait_for(&node, "slack_failed", 2).await;
    assert_eq!(failed[0]["errmsg"], "chat.postMessage: Slack answered ok:false with error 'channel_not_found'");
    assert_eq!(failed[0]["channel"], "CBAD");
    assert_eq!(failed[1]["errmsg"], "the message has no channel to post to");
    ctx.shutdown().cancel();
    run.await.unwrap().unwrap();
    let detail = node.board.snapshot().into_iter().find(|c| c.name == "team").unwrap().detail;
    assert_eq!(
        (detail["posted"].as_u64(), detail["failed"].as_u64(), detail["retries"].as_u64()),
        (Some(2), Some(2), Some(1))
    );
}

#[tokio::test]
async fn the_channel_cache_task_pages_through_conversations_list_into_the_store() {
    let node = TestNode::new().await;
    let server = WebApiServer::start().await;
    server.answer(
        "conversations.list",
        200,
        None,
        r#"{"ok":true,"channels":[{"id":"C2","name":"random"}],"response_metadata":{"next_cursor":"dGVhbTpDMDYxRkE1UEI="}}"#,
    );
    server.answer(
        "conversations.list",
        200,
        None,
        r#"{"ok":true,"channels":[{"id":"C1","name":"general"}],"response_metadata":{"next_cursor":""}}"#,
    );
    let yaml = section(
        &server.url,
        "tasks:\n  - name: channels\n    kind: channel_cache\n    every: 1h\n    singleton: true\n",
    );
    let parsed = parse_section(&yaml);
    let section = flotilla_connector::ConnectorSection { name: "team", node: &parsed, path: "connectors.team".into() };
    let connector = flotilla_slack::SlackConnector::new(flotilla_slack::settings_from_section(&section).unwrap());
    let ctx = node.context("team", "slack", "reactor");
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { connector.run(&ctx).await }
    });
    let got = server.wait_for(2).await;
    assert_eq!(got[0].body, "limit=200&exclude_archived=true&types=public_channel%2Cprivate_channel");
    assert!(got[1].body.ends_with("&cursor=dGVhbTpDMDYxRkE1UEI%3D"), "{}", got[1].body);
    let deadline = Instant::now() + Duration::from_secs(20);
    let cached = loop {
        if let Some(value) = node.store.get_state("connector:team", "channels").await.unwrap() {
            break value;
        }
        assert!(Instant::now() < deadline, "the cache was not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cached, json!([{"id": "C1", "name": "general"}, {"id": "C2", "name": "random"}]));
    ctx.shutdown().cancel();
    run.await.unwrap().unwrap();
}

#[test]
fn task_and_token_settings_are_checked() {
    let check = |yaml: &str| {
        let parsed = parse_section(yaml);
        let section =
            flotilla_connector::ConnectorSection { name: "team", node: &parsed, path: "connectors.team".into() };
        match flotilla_slack::settings_from_section(&section) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|d| d.message).collect::<Vec<_>>(),
        }
    };
    assert_eq!(
        check("bot_token: x\n"),
        [
            "connectors.team.signing_secret: give signing_secret (the Events API over HTTP) or app_token (Socket Mode), or both"
        ]
    );
    assert_eq!(
        check("bot_token: x\napp_token: xoxb-wrong\n"),
        ["connectors.team.app_token: an app-level token starts with xapp- (Basic Information → App-Level Tokens)"]
    );
    assert_eq!(
        check(
            "bot_token: x\nsigning_secret: s\ntasks:\n  - {name: a, kind: poll, every: 5m}\n  - {name: b, kind: channel_cache, every: 0s, singleton: false}\n"
        ),
        [
            "connectors.team.tasks.0.kind: unknown task kind 'poll' (known: channel_cache)",
            "connectors.team.tasks.1.singleton: only singleton tasks exist (they run where the connector runs, one node of the fleet)",
            "connectors.team.tasks.1.every: must be at least 1s",
        ]
    );
    assert_eq!(check("bot_token: x\nsigning_secret: s\nmax_body: 1B\ndedupe_for: 10m\n").len(), 2);
}
