//! `flotilla status`: the running node's view, or (when none runs) what the data
//! directory holds.

use anyhow::Context;
use flotilla_node::admin::{self, AdminClient};
use flotilla_node::status::{NodeStatus, QueueView, render_table};

use super::{ConfigArg, Outcome, load};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Outcome {
    let config = load(&args.config)?;
    let running = if admin::socket_path(&config.data_dir).exists() {
        AdminClient::new(&config.data_dir).status().await.ok()
    } else {
        None
    };
    let status = match running {
        Some(status) => status,
        None => offline_status(&config).await?,
    };
    if args.json {
        // Line by line: the line breaks are the layout's (JSON escapes those in strings).
        let json = serde_json::to_string_pretty(&status).context("encoding the status")?;
        for line in json.lines() {
            println!("{}", flotilla_core::escape_controls(line));
        }
    } else {
        print!("{}", render_table(&status));
    }
    Ok(())
}

/// What can be known without a node: the configured connectors (stopped) and the queues.
async fn offline_status(config: &flotilla_node::Config) -> anyhow::Result<NodeStatus> {
    // The embedded bus only if it was ever created; a shared one (Redis, NATS) always.
    let embedded = matches!(config.bus, flotilla_node::config::BusSettings::Embedded(_));
    let queues: Vec<QueueView> = if !embedded || config.data_dir.join("bus").exists() {
        let bus = flotilla_node::node::open_bus(config).await.context("opening the bus (no node is running here)")?;
        let stats = bus.stats().await?;
        bus.close().await?;
        stats.into_iter().map(QueueView::from).collect()
    } else {
        Vec::new()
    };
    // A fleet's nodes and leases are in its backend, whether or not a node runs here.
    let fleet = match &config.bus {
        flotilla_node::config::BusSettings::Redis(options) => {
            let bus = flotilla_bus::RedisBus::open(options.clone()).await.context("opening the bus")?;
            let view = flotilla_node::fleet::view(&flotilla_bus::RedisFleet::new(&bus)).await;
            flotilla_bus::Bus::close(&bus).await?;
            Some(view)
        }
        // No fleet on NATS yet (docs/fleet.md).
        flotilla_node::config::BusSettings::Embedded(_) | flotilla_node::config::BusSettings::Nats(_) => None,
    };
    Ok(NodeStatus {
        node: config.node_name.clone(),
        hostname: config.hostname.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: 0,
        state: "stopped".into(),
        started_at: 0,
        uptime_seconds: 0,
        http_listen: None,
        connectors: config
            .connectors
            .iter()
            .map(|c| flotilla_node::status::ConnectorView {
                name: c.name.clone(),
                kind: c.kind.clone(),
                state: "stopped".into(),
                since: 0,
                restarts: 0,
                last_error: None,
                emitted: 0,
                detail: serde_json::Value::Null,
            })
            .collect(),
        queues,
        rates: Default::default(),
        bus: Default::default(),
        reactor: Default::default(),
        services: Default::default(),
        private_queues: None,
        fleet,
    })
}
