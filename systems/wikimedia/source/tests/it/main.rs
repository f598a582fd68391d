//! The Wikimedia connectors against a real local SSE server and a real bus and store:
//! resuming after dropped connections and restarts without gaps or duplicates, backoff
//! after server errors, the User-Agent, canaries, and the file replay.

mod file;
mod server;
mod stream;

use flotilla_test_support::TestNode;
use std::time::{Duration, Instant};

use flotilla_bus::ReadFrom;
use flotilla_connector::{Connector, ConnectorContext, ConnectorState};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

flotilla_test_support::harness!(
    /// A bus and a store in a temporary directory, as a node would give a connector.
    pub Harness
);

impl Harness {
    pub async fn new() -> Harness {
        Harness(TestNode::new().await)
    }

    pub fn context(&self, name: &str, kind: &str, shutdown: CancellationToken) -> ConnectorContext {
        let ctx = self.0.context_with_shutdown(name, kind, "reactor", shutdown);
        self.board.register(name, kind, ConnectorState::Running);
        ctx
    }

    /// Runs a connector in the background; cancel the token to stop it.
    pub fn spawn(
        &self,
        connector: impl Connector,
        name: &str,
        kind: &str,
    ) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
        let shutdown = CancellationToken::new();
        let ctx = self.context(name, kind, shutdown.clone());
        let task = tokio::spawn(async move { connector.run(&ctx).await });
        (shutdown, task)
    }

    /// Every message on `reactor` once at least `count` are there (bounded wait).
    pub async fn messages(&self, count: usize) -> Vec<Value> {
        let mut reader = self.bus.read("reactor", ReadFrom::Start).await.unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while out.len() < count {
            assert!(Instant::now() < deadline, "only {} of {count} messages arrived", out.len());
            for delivery in reader.fetch(1024, Duration::from_millis(200)).await.unwrap() {
                out.push(serde_json::from_slice(&delivery.payload).unwrap());
            }
        }
        // Anything more that is already there (a duplicate would show up here).
        for delivery in reader.fetch(1024, Duration::from_millis(300)).await.unwrap() {
            out.push(serde_json::from_slice(&delivery.payload).unwrap());
        }
        out
    }
}

/// The recent-change ids (`event.meta.id`, else `event.id`) of messages, in order.
pub fn change_keys(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match m["event"]["meta"]["id"].as_str() {
            Some(id) => id.to_string(),
            None => m["event"]["id"].to_string(),
        })
        .collect()
}

/// The same keys for event lines.
pub fn event_keys(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            let v: Value = serde_json::from_str(e).ok()?;
            if v["meta"]["domain"] == "canary" {
                return None;
            }
            Some(match v["meta"]["id"].as_str() {
                Some(id) => id.to_string(),
                None => v["id"].to_string(),
            })
        })
        .collect()
}
