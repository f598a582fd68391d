//! Connector `wikimedia` against the local EventStreams stand-in.

use std::time::{Duration, Instant};

use flotilla_wikimedia_source::sample::{canary_event, recorded_events, synthetic_event};
use flotilla_wikimedia_source::{StreamConnector, StreamSettings};

use crate::server::{Behaviour, SseServer, event_id};
use crate::{Harness, change_keys, event_keys};

/// Recorded events, then synthetic ones, with a canary every 25.
fn feed(count: u64) -> Vec<String> {
    let mut events = recorded_events();
    for n in 0..count {
        events.push(if n % 25 == 24 { canary_event(n) } else { synthetic_event(n) });
    }
    events
}

fn settings(url: &str) -> StreamSettings {
    let mut settings = StreamSettings::new(url);
    settings.min_backoff = Duration::from_millis(20);
    settings.max_backoff = Duration::from_millis(200);
    settings
}

#[tokio::test]
async fn dropped_connections_resume_with_last_event_id_without_gap_or_duplicate() {
    let events = feed(300);
    let expected = event_keys(&events);
    let server = SseServer::start(
        events.clone(),
        vec![Behaviour::DropAfter(50), Behaviour::Unavailable, Behaviour::DropAfter(100), Behaviour::Serve],
    )
    .await;
    let harness = Harness::new().await;
    let (shutdown, task) = harness.spawn(StreamConnector::new(settings(&server.url)), "wm", "wikimedia");
    let messages = harness.messages(expected.len()).await;
    assert_eq!(change_keys(&messages), expected, "every change once, in order");
    assert!(messages.iter().all(|m| m["plugin"] == "wikimedia" && m["key"] == "wm"));

    let requests = server.requests();
    assert!(requests.len() >= 4, "{requests:?}");
    assert_eq!(requests[0].last_event_id, None);
    // The first connection delivered events 0..50 and half of event 50.
    assert_eq!(requests[1].last_event_id.as_deref(), Some(event_id(49).as_str()));
    assert_eq!(requests[2].last_event_id.as_deref(), Some(event_id(49).as_str()), "a 503 moves nothing");
    assert_eq!(requests[3].last_event_id.as_deref(), Some(event_id(149).as_str()));
    let agent = requests[0].user_agent.clone().unwrap_or_default();
    assert!(agent.starts_with("Flotilla/") && agent.contains("Wikimedia dispatcher"), "{agent}");

    let status = harness.board.get("wm").unwrap();
    assert_eq!(status.detail["reconnects"], 3, "{:?}", status.detail);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_restart_resumes_from_the_saved_position() {
    let events = feed(120);
    let expected = event_keys(&events);
    // The stream has 60 events while the first run is connected, the rest later.
    let server = SseServer::start(events[..60].to_vec(), vec![]).await;
    let harness = Harness::new().await;
    let (shutdown, task) = harness.spawn(StreamConnector::new(settings(&server.url)), "wm", "wikimedia");
    let first = harness.messages(event_keys(&events[..60]).len()).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(change_keys(&first), event_keys(&events[..60]));

    // A new connector over the same store resumes after event 59.
    server.set_events(events.clone());
    let (shutdown, task) = harness.spawn(StreamConnector::new(settings(&server.url)), "wm", "wikimedia");
    let all = harness.messages(expected.len()).await;
    assert_eq!(change_keys(&all), expected, "no gap and no duplicate across the restart");
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].last_event_id.as_deref(), Some(event_id(59).as_str()));
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_saved_position_for_another_url_is_not_used_and_since_is_sent_once() {
    let events = feed(10);
    let server = SseServer::start(events.clone(), vec![]).await;
    let harness = Harness::new().await;
    let ctx = harness.context("wm", "wikimedia", tokio_util::sync::CancellationToken::new());
    ctx.save_state("last_event_id", &serde_json::json!({"url": "http://elsewhere.invalid/", "id": event_id(5)}))
        .await
        .unwrap();
    let mut settings = settings(&server.url);
    settings.since = Some("2024-04-26T00:00:00Z".to_string());
    let (shutdown, task) = harness.spawn(StreamConnector::new(settings), "wm", "wikimedia");
    let messages = harness.messages(event_keys(&events).len()).await;
    assert_eq!(change_keys(&messages), event_keys(&events));
    let first = &server.requests()[0];
    assert_eq!(first.last_event_id, None);
    assert!(first.path.ends_with("?since=2024-04-26T00%3A00%3A00Z"), "{}", first.path);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_retried_with_backoff_until_shutdown() {
    // A port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let harness = Harness::new().await;
    let url = format!("http://127.0.0.1:{port}/stream");
    let (shutdown, task) = harness.spawn(StreamConnector::new(settings(&url)), "wm", "wikimedia");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let detail = harness.board.get("wm").unwrap().detail;
        if detail["reconnects"].as_u64() >= Some(3) {
            assert!(detail["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{detail}");
            break;
        }
        assert!(Instant::now() < deadline, "no retries: {detail}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops promptly").unwrap().unwrap();
}

/// Wikimedia's User-Agent policy: the live feed needs a `user_agent` with a contact, and
/// the error says so and where; a server of one's own does not.
#[test]
fn the_live_feed_needs_a_user_agent() {
    let build = |text: &str| {
        let node = flotilla_config::parse_str("c.yaml", text, &|_| None).unwrap();
        let section = flotilla_connector::ConnectorSection { name: "rc", node: &node, path: "connectors.rc".into() };
        let types = flotilla_wikimedia_source::connector_types();
        let live = types.iter().find(|t| t.name == "wikimedia").unwrap();
        (live.build)(&section).map(|_| ())
    };
    let errors = build("since: 2024-01-01T00:00:00Z\n").unwrap_err();
    let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(text.contains("connectors.rc.user_agent: required for Wikimedia's own servers"), "{text}");
    assert!(build("url: https://stream.wikimedia.org/v2/stream/recentchange\n").is_err());
    assert!(build("user_agent: 'MyBot/1.0 (https://example.org/mybot; me@example.org)'\n").is_ok());
    assert!(build("url: http://127.0.0.1:9/v2/stream/recentchange\n").is_ok(), "a local server needs none");
}
