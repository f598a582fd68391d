//! Shared test harness: a real connector context (embedded bus and SQLite store in a
//! temporary directory), connector sections parsed from YAML text, and bounded waits.
#![allow(dead_code)] // Each test file uses a different part.

use flotilla_test_support::TestNode;
use std::time::{Duration, Instant};

use flotilla_bus::ReadFrom;
use flotilla_config::{Diagnostic, Node};
use flotilla_connector::{Connector, ConnectorContext, ConnectorSection};
use flotilla_core::Message;

/// The queue the harness's connectors emit to.
pub const QUEUE: &str = "reactor";

flotilla_test_support::harness!(
    /// A [`TestNode`] with the monitors' helpers.
    pub Harness
);

impl Harness {
    pub async fn new() -> Harness {
        Harness(TestNode::new().await)
    }

    pub fn context(&self, name: &str, kind: &str) -> ConnectorContext {
        self.0.context(name, kind, QUEUE)
    }

    /// Runs a connector in the background until the harness shuts down.
    pub fn spawn(
        &self,
        connector: Box<dyn Connector>,
        name: &str,
        kind: &str,
    ) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let ctx = self.context(name, kind);
        tokio::spawn(async move { connector.run(&ctx).await })
    }

    /// Waits (at most 20 s) until `queue` holds at least `count` messages, and returns
    /// all it holds.
    pub async fn wait_for(&self, queue: &str, count: usize) -> Vec<Message> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let messages = self.read_all(queue).await;
            if messages.len() >= count {
                return messages;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {count} messages in {queue}; have {messages:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every message in `queue`, oldest first, without consuming.
    pub async fn read_all(&self, queue: &str) -> Vec<Message> {
        let mut reader = self.bus.read(queue, ReadFrom::Start).await.unwrap();
        let deliveries = reader.fetch(100_000, Duration::from_millis(10)).await.unwrap();
        deliveries.iter().map(|d| Message::from_json(&d.payload).unwrap()).collect()
    }
}

/// Parses YAML text as the file `file` (locations point into it).
pub fn yaml(file: &str, text: &str) -> Node {
    flotilla_config::parse_str(file, text, &|_| None).unwrap()
}

/// Builds a connector of type `kind` from a section written in YAML.
pub fn build(kind: &str, name: &str, node: &Node) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let types = flotilla_monitors::connector_types();
    let connector_type = types.iter().find(|t| t.name == kind).unwrap_or_else(|| panic!("no connector type {kind}"));
    let section = ConnectorSection { name, node, path: format!("connectors.{name}") };
    (connector_type.build)(&section)
}

/// The diagnostics of a section that must not build, as `file:line:column: message`.
pub fn errors(kind: &str, node: &Node) -> Vec<String> {
    match build(kind, "test", node) {
        Ok(_) => panic!("the section built, expected errors"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}
