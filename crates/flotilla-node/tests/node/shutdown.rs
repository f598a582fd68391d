//! A whole node (configuration, connectors, reactor, servers, bus) stopping in its
//! stages: what a connector emits during its grace period is still processed by the
//! reactor, and nothing is left unacknowledged.

use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions, ReadFrom};
use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorContext, ConnectorSection, ConnectorType};
use flotilla_core::Message;
use flotilla_node::config::{LoadOptions, load_config};

/// Emits `hello` when it starts and, once told to stop, `goodbye` (during its grace
/// period) before it returns.
struct Farewell;

#[async_trait::async_trait]
impl Connector for Farewell {
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
        let mut hello = Message::new();
        hello.set("subject", "hello");
        ctx.emit(hello).await?;
        ctx.shutdown().cancelled().await;
        // Still emitting after shutdown was signalled: the node must process it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut goodbye = Message::new();
        goodbye.set("subject", "goodbye");
        ctx.emit(goodbye).await?;
        Ok(())
    }
}

fn build(_: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    Ok(Box::new(Farewell))
}

const FAREWELL: ConnectorType = ConnectorType { name: "farewell", description: "says goodbye while stopping", build };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_emitted_during_the_grace_period_is_processed_and_nothing_is_left_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!(
        "node:\n  name: n\n  data_dir: {}\nhttp:\n  listen: 127.0.0.1:0\nconnectors:\n  bye:\n    type: farewell\n\
         rules:\n  - name: copy\n    plugin: MessageQueue\n    config: {{queue: out}}\n",
        data.display()
    );
    let path = dir.path().join("flotilla.yaml");
    std::fs::write(&path, config).unwrap();
    let registry = [FAREWELL];
    let options =
        LoadOptions { path: Some(&path), registry: &registry, services: &[], env: &|_| None, hostname: "h".into() };
    let config = load_config(&options).unwrap_or_else(|e| panic!("{e:?}"));
    let node = flotilla_node::node::start(config).await.unwrap();
    // Wait until `hello` went through the reactor, so the node is fully up.
    let mut out = node.status.bus.read("out", ReadFrom::Start).await.unwrap();
    let first = out.fetch(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.len(), 1, "hello reached `out`");
    drop(out);
    node.stop().await.unwrap();

    let bus = EmbeddedBus::open(&data.join("bus"), EmbeddedOptions::default()).unwrap();
    let mut reader = bus.read("out", ReadFrom::Start).await.unwrap();
    let copied = reader.fetch(100, Duration::from_millis(100)).await.unwrap();
    let subjects: Vec<String> = copied
        .iter()
        .map(|d| Message::from_json(&d.payload).unwrap().get("subject").unwrap().as_str().unwrap().to_string())
        .collect();
    assert_eq!(subjects, ["hello", "goodbye"], "the goodbye emitted while stopping was processed");
    let stats = bus.stats().await.unwrap();
    let reactor = stats.iter().find(|q| q.queue == "reactor").unwrap();
    let group = reactor.groups.iter().find(|g| g.group == "reactor").unwrap();
    assert_eq!((group.pending, reactor.depth), (0, 0), "everything the reactor took was acknowledged: {stats:?}");
    drop(reader);
    Arc::new(bus).close().await.unwrap();
}
