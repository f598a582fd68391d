//! The HTTP API over real HTTP: create, definitions, format, delete, bearer tokens, JSON
//! errors with the right status, and the server-sent event stream with resume.

use std::time::Duration;

use flotilla_wikimedia_core::OutputFormat;
use flotilla_wikimedia_dispatcher::ControlLimits;
use flotilla_wikimedia_source::sample::synthetic_event;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Api, Harness, rendered};

#[tokio::test]
async fn the_subscription_api_with_bearer_tokens_and_json_errors() {
    let harness = Harness::start(None, ControlLimits::default()).await;
    let api = Api::start(&harness).await;

    let (status, body) = api.call("POST", "/api/v1/subscriptions", None, Some(r#"{"name":"web"}"#)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("creating a subscription needs the admin token"))
    );
    let (status, body) =
        api.call("POST", "/api/v1/subscriptions", Some("admin-secret"), Some(r#"{"name":"web"}"#)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((body["name"].as_str(), body["format"].as_str()), (Some("web"), Some("pipe")));
    let token = body["token"].as_str().unwrap().to_string();
    let (status, body) =
        api.call("POST", "/api/v1/subscriptions", Some("admin-secret"), Some(r#"{"name":"web"}"#)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("E002: This subscription exist")));
    let (status, body) =
        api.call("POST", "/api/v1/subscriptions", Some("admin-secret"), Some(r#"{"name":"a b"}"#)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("E001: Invalid name")));

    let t = Some(token.as_str());
    let defs = "/api/v1/subscriptions/web/definitions";
    let (status, body) =
        api.call("POST", defs, t, Some(r#"[{"wiki":"dewiki"},{"wiki":"en_wikipedia","page":"Main Page"}]"#)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"inserted": 2})));
    let (status, body) = api.call("POST", defs, t, Some(r#"<items><item user_rx="Bot$">kowiki</item></items>"#)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"inserted": 1})));
    let (status, body) = api.call("POST", defs, t, Some(r#"[{"wiki":"nowhere"}]"#)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("E014: Unknown wiki: nowhere")));
    let (status, body) = api.call("POST", defs, t, Some(r#"[{"wiki":"enwiki","user_rx":"(("}]"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().starts_with("E011: Invalid regex: \"((\""), "{body}");
    let (status, body) = api.call("DELETE", defs, t, Some(r#"[{"wiki":"dewiki"}]"#)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"removed": 1})));
    let (status, body) = api.call("GET", defs, t, None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!([{"wiki":"enwiki","page":"Main Page"},{"wiki":"kowiki","user_rx":"Bot$"}]))
    );
    let (status, body) = api.call("PUT", "/api/v1/subscriptions/web/format", t, Some(r#"{"format":"yaml"}"#)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("E012: Invalid format")));
    let (status, body) = api.call("PUT", "/api/v1/subscriptions/web/format", t, Some(r#"{"format":"XML"}"#)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"format": "xml"})));
    let (status, body) = api.call("GET", "/api/v1/subscriptions/web", t, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["format"].as_str(), body["definitions"].as_array().map(Vec::len)), (Some("xml"), Some(2)));

    // Wrong token, unknown name and missing token: 401, and the same 401 for the first two.
    let (status, wrong) = api.call("GET", "/api/v1/subscriptions/web", Some("NOPE"), None).await;
    let (status2, unknown) = api.call("GET", "/api/v1/subscriptions/nobody", t, None).await;
    assert_eq!((status, status2), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(wrong, unknown);
    let (status, _) = api.call("GET", "/api/v1/subscriptions/web", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The admin token works for any subscription and lists them all.
    let (status, body) = api.call("GET", "/api/v1/subscriptions", Some("admin-secret"), None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"subscriptions": [{"name":"web","format":"xml","definitions":2}]}))
    );
    let (status, _) = api.call("GET", "/api/v1/subscriptions", t, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api.call("GET", "/api/v1/subscriptions/nobody", Some("admin-secret"), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("no subscription named 'nobody'")));

    // The control protocol sees what the API did, and the other way round.
    let mut c = harness.client().await;
    assert_eq!(c.ask(&format!("auth web {token}")).await, "OK");
    assert_eq!(c.ask("list").await, r#"[{"wiki":"enwiki","page":"Main Page"},{"wiki":"kowiki","user_rx":"Bot$"}]"#);

    let (status, body) = api.call("DELETE", "/api/v1/subscriptions/web", t, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(c.ask("list").await, "E007: No such feed");
    let (status, _) = api.call("GET", "/api/v1/subscriptions/web", t, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    harness.stop().await;
}

/// Reads server-sent events from a response until `count` `data:` lines arrived;
/// returns (id, data) pairs.
async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<(u64, String)> {
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await.expect("events in time").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id: ")).and_then(|i| i.parse().ok());
            let data = block.lines().find_map(|l| l.strip_prefix("data: ")).map(str::to_string);
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, data));
            }
        }
    }
    events
}

#[tokio::test]
async fn the_event_stream_follows_a_subscription_and_resumes_after_last_event_id() {
    let harness = Harness::start(None, ControlLimits::default()).await;
    let api = Api::start(&harness).await;
    let mut c = harness.client().await;
    let token = c.subscribe_and_auth("stream").await;
    assert_eq!(c.ask(r#"insert json [{"wiki":"enwiki"}]"#).await, "1");
    let events: Vec<String> = (0..40).map(synthetic_event).collect();
    let expected: Vec<String> =
        events.iter().filter(|e| e.contains(r#""wiki":"enwiki""#)).map(|e| rendered(e, OutputFormat::Pipe)).collect();

    let url = format!("{}/api/v1/subscriptions/stream/events", api.base);
    let mut live = api.client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert!(live.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    harness.publish_events(&events).await;
    let got = read_events(&mut live, expected.len()).await;
    assert_eq!(got.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(), expected);

    // A client that saw the first three resumes after the third with Last-Event-ID.
    let mut resumed =
        api.client.get(&url).bearer_auth(&token).header("Last-Event-ID", got[2].0.to_string()).send().await.unwrap();
    let rest = read_events(&mut resumed, expected.len() - 3).await;
    assert_eq!(rest.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(), expected[3..].to_vec());
    // From the start, with the admin token.
    let mut all = api.client.get(format!("{url}?from=start")).bearer_auth("admin-secret").send().await.unwrap();
    assert_eq!(read_events(&mut all, expected.len()).await, got);

    let wrong = api.client.get(&url).bearer_auth("WRONG").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    drop((live, resumed, all));
    harness.stop().await;
}

/// SPEC §11: with no `http.admin_token` the API is read-only: creating a subscription
/// over HTTP is refused (the control protocol still creates them), while a
/// subscription's own token still reads it.
#[tokio::test]
async fn without_an_admin_token_the_api_creates_nothing() {
    let mut harness = Harness::start(None, ControlLimits::default()).await;
    harness.settings.admin_token = None;
    harness.restart().await;
    let api = Api::start(&harness).await;
    let (status, body) = api.call("POST", "/api/v1/subscriptions", None, Some(r#"{"name": "mybot"}"#)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("needs http.admin_token"), "{body}");
    let (status, _) = api.call("POST", "/api/v1/subscriptions", Some("anything"), Some(r#"{"name": "mybot"}"#)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut client = harness.client().await;
    let token = client.subscribe_and_auth("mybot").await;
    let (status, body) = api.call("GET", "/api/v1/subscriptions/mybot", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "mybot");
    drop(api);
    harness.stop().await;
}

/// The caps answer 422 with the control protocol's line.
#[tokio::test]
async fn caps_on_subscriptions_and_pattern_memory_answer_422() {
    let mut harness = Harness::start(None, ControlLimits::default()).await;
    harness.settings.limits.max_subscriptions = 1;
    harness.settings.limits.max_pattern_memory = 100 << 10;
    harness.restart().await;
    let api = Api::start(&harness).await;
    let admin = Some("admin-secret");
    let (status, body) = api.call("POST", "/api/v1/subscriptions", admin, Some(r#"{"name":"first"}"#)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.call("POST", "/api/v1/subscriptions", admin, Some(r#"{"name":"second"}"#)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("E024: Too many subscriptions (at most 1)"))
    );

    let defs = "/api/v1/subscriptions/first/definitions";
    let (status, body) = api.call("POST", defs, admin, Some(r#"[{"wiki":"enwiki","user_rx":"\\w{7}x"}]"#)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(
                r#"E025: Patterns too large: "\\w{7}x" would take the dispatcher's compiled patterns over 102400 bytes"#
            )
        )
    );
    let (status, body) = api.call("GET", defs, admin, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    drop(api);
    harness.stop().await;
}
