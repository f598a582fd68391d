//! The harness: the Slack service started as the node starts it (its routes served on
//! a loopback port), requests signed as Slack signs them, a local Web API.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_bus::ReadFrom;
use flotilla_service::{ConfiguredConnector, RunningService, ServiceConfig, ServiceContext};
use flotilla_slack::signature::Verifier;
use flotilla_test_support::TestNode;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The `slack` connector's section (below `type:`), with `extra` keys appended.
pub fn section(api_url: &str, extra: &str) -> String {
    format!(
        "signing_secret: {SECRET}\nbot_token: xoxb-test-token\napp_id: A1\nteam_id: T1\nbot_user_id: UBOT\napi_url: {api_url}\n{extra}"
    )
}

pub fn parse_section(yaml: &str) -> flotilla_config::Node {
    flotilla_config::parse_str("slack.yaml", yaml, &|_| None).unwrap_or_else(|e| panic!("{e:?}"))
}

/// A running Slack service on a test node.
pub struct Gateway {
    pub addr: SocketAddr,
    pub running: Arc<dyn RunningService>,
    server: tokio::task::JoinHandle<()>,
    stop_server: CancellationToken,
}

impl Gateway {
    pub async fn start(node: &TestNode, yaml: &str) -> Gateway {
        let connectors = vec![ConfiguredConnector {
            name: "team".into(),
            kind: "slack".into(),
            queue: "reactor".into(),
            enabled: true,
            section: parse_section(yaml),
        }];
        let config = ServiceConfig { sections: Vec::new(), connectors: &connectors, admin_token: None };
        let service =
            (flotilla_slack::SERVICE_TYPE.build)(&config).unwrap_or_else(|e| panic!("{e:?}")).expect("configured");
        let ctx = ServiceContext {
            node_name: "testnode".into(),
            node: Default::default(),
            data_dir: node.dir.path().to_path_buf(),
            bus: node.bus.clone(),
            store: node.store.clone(),
            shutdown: node.shutdown.child_token(),
        };
        let running = service.start(ctx).await.unwrap();
        let router = running.router().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop_server = CancellationToken::new();
        let stop = stop_server.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await.unwrap();
        });
        Gateway { addr, running, server, stop_server }
    }

    pub async fn stop(self) {
        self.stop_server.cancel();
        let _ = self.server.await;
        self.running.stop().await;
    }

    pub fn url(&self) -> String {
        format!("http://{}/slack/events", self.addr)
    }
}

/// A request as Slack would send it.
pub struct Signed {
    pub body: Vec<u8>,
    pub timestamp: String,
    pub signature: String,
    pub content_type: &'static str,
}

pub fn sign_json(body: &str, timestamp: i64) -> Signed {
    let timestamp = timestamp.to_string();
    let signature = Verifier::new(SECRET).sign(&timestamp, body.as_bytes());
    Signed { body: body.as_bytes().to_vec(), timestamp, signature, content_type: "application/json" }
}

pub fn sign_form(body: &str, timestamp: i64) -> Signed {
    Signed { content_type: "application/x-www-form-urlencoded", ..sign_json(body, timestamp) }
}

/// Posts a request; answers (status, body).
pub async fn post(url: &str, request: &Signed, extra: &[(&str, &str)]) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut builder = client
        .post(url)
        .header("content-type", request.content_type)
        .header("x-slack-request-timestamp", &request.timestamp)
        .header("x-slack-signature", &request.signature)
        .body(request.body.clone());
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let response = builder.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A Slack message event.
pub fn message_event(event_id: &str, text: &str, ts: f64) -> String {
    serde_json::json!({
        "type": "event_callback", "api_app_id": "A1", "team_id": "T1", "event_id": event_id,
        "event": {"type": "message", "channel_type": "channel", "channel": "C1", "user": "U1",
                  "text": text, "ts": format!("{ts:.6}"), "event_ts": format!("{ts:.6}")},
    })
    .to_string()
}

/// Every message on `queue` (read from its start, without consuming).
pub async fn queued(node: &TestNode, queue: &str) -> Vec<serde_json::Value> {
    let mut reader = node.bus.read(queue, ReadFrom::Start).await.unwrap();
    let mut all = Vec::new();
    loop {
        let batch = reader.fetch(1000, Duration::from_millis(100)).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch.iter().map(|d| serde_json::from_slice(&d.payload).unwrap()));
    }
}

/// Waits (bounded) until `queue` holds `count` messages; returns them.
pub async fn wait_for(node: &TestNode, queue: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = queued(node, queue).await;
        if all.len() >= count || tokio::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One call the local Web API received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub authorization: String,
    pub content_type: String,
    pub body: String,
}

/// How the local Web API answers: by default `{"ok":true}`; a script of answers per
/// method, taken in order, first.
#[derive(Default)]
pub struct Script {
    pub answers: Vec<(String, u16, Option<String>, String)>,
}

/// A local server speaking the Web API's request/response shapes.
pub struct WebApiServer {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub script: Arc<Mutex<Script>>,
}

impl WebApiServer {
    pub async fn start() -> WebApiServer {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        type Shared = (Arc<Mutex<Vec<Received>>>, Arc<Mutex<Script>>);
        async fn answer(
            State((received, script)): State<Shared>,
            Path(method): Path<String>,
            headers: HeaderMap,
            body: String,
        ) -> axum::response::Response {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            received.lock().unwrap().push(Received {
                method: method.clone(),
                authorization: header("authorization"),
                content_type: header("content-type"),
                body,
            });
            let scripted = {
                let mut script = script.lock().unwrap();
                let index = script.answers.iter().position(|(m, ..)| *m == method);
                index.map(|i| script.answers.remove(i))
            };
            match scripted {
                Some((_, status, retry_after, body)) => {
                    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                    if let Some(retry_after) = retry_after {
                        response.headers_mut().insert("retry-after", retry_after.parse().unwrap());
                    }
                    response
                }
                None => (StatusCode::OK, r#"{"ok":true,"ts":"1700000000.000200"}"#).into_response(),
            }
        }
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Script::default()));
        let router = axum::Router::new()
            .route("/api/{method}", axum::routing::post(answer))
            .with_state((received.clone(), script.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        WebApiServer { url, received, script }
    }

    pub fn answer(&self, method: &str, status: u16, retry_after: Option<&str>, body: &str) {
        self.script.lock().unwrap().answers.push((method.into(), status, retry_after.map(String::from), body.into()));
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until `count` calls arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if got.len() >= count || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
