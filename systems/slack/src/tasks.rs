//! Background tasks (`tasks:` in the connector's section), run by the connector beside
//! its outbox. gopherbot's background process could not be run twice ("cannot be
//! safely scaled horizontally"); here a task runs inside the `slack` connector, which
//! the node's supervisor runs once per node and a fleet runs on one node at a time
//! under the connector's lease (crates/flotilla-node/src/fleet.rs): every task is a
//! singleton by construction, on the embedded bus trivially.
//!
//! `channel_cache`: every `every`, `conversations.list` page by page (cursor), kept in
//! the store as the connector's state `channels` (`[{id, name}]`, sorted by id);
//! written only when it changed, and the change logged.

use std::time::Duration;

use flotilla_connector::ConnectorContext;
use serde_json::{Value, json};

use crate::config::{TaskKind, TaskSettings};
use crate::webapi::WebApi;

/// Runs one task until shutdown; a failed round is logged and tried again next time.
pub async fn run(ctx: &ConnectorContext, api: &WebApi, task: &TaskSettings) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(task.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = ctx.shutdown().cancelled() => return Ok(()),
        }
        let round = match task.kind {
            TaskKind::ChannelCache => cache_channels(ctx, api).await,
        };
        if let Err(error) = round {
            tracing::warn!(connector = %ctx.name(), task = %task.name, error = %format!("{error:#}"), "A Slack task failed; it runs again next time.");
        }
    }
}

/// The page size asked of `conversations.list` (Slack's maximum is 1000; it suggests 200).
const PAGE: u64 = 200;

async fn cache_channels(ctx: &ConnectorContext, api: &WebApi) -> anyhow::Result<()> {
    let mut channels: Vec<(String, String)> = Vec::new();
    let mut cursor = String::new();
    for _ in 0..1000 {
        let mut arguments = json!({"limit": PAGE, "exclude_archived": true, "types": "public_channel,private_channel"});
        if !cursor.is_empty() {
            arguments["cursor"] = cursor.clone().into();
        }
        let answer = api.call("conversations.list", &arguments).await?;
        let page = answer
            .get("channels")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow::anyhow!("conversations.list answered without 'channels'"))?;
        for channel in page {
            let field = |k: &str| channel.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            channels.push((field("id"), field("name")));
        }
        cursor =
            answer.pointer("/response_metadata/next_cursor").and_then(Value::as_str).unwrap_or_default().to_string();
        if cursor.is_empty() {
            break;
        }
        // Tier 2: about 20 calls a minute.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    channels.sort();
    let value = Value::Array(channels.iter().map(|(id, name)| json!({"id": id, "name": name})).collect());
    let previous = ctx.load_state("channels").await?;
    if previous.as_ref() != Some(&value) {
        ctx.save_state("channels", &value).await?;
        tracing::info!(connector = %ctx.name(), channels = channels.len(), "Slack channel cache updated.");
    }
    Ok(())
}
