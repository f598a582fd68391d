//! Connector type `wikimedia-file`: replays a file of recent-change events (one JSON
//! object per line, as EventStreams' `data:` lines) at a chosen rate, for demos, tests
//! and benchmarks. Each event becomes the same message the `wikimedia` connector makes.
//!
//! Keys:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `path` | required | the file; relative paths are taken from the working directory |
//! | `rate` | `50` | events per second (the live feed runs at 30–50); `0` means as fast as the bus takes them |
//! | `loop` | `false` | start over at the end of the file, forever |
//!
//! Blank lines are skipped; a line that is not a recent-change object is logged with
//! its number and skipped. Canaries are not emitted. The position (line number) is saved
//! after each batch is on the bus, so a restart continues where the replay was rather
//! than sending the file again; without `loop`, the connector idles at the end of the
//! file until the node stops.

use std::path::PathBuf;
use std::time::Duration;

use flotilla_config::{Diagnostic, Located};
use flotilla_connector::{Connector, ConnectorContext, ConnectorSection, ConnectorType, diagnostic_at};
use flotilla_core::Message;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::change::change_message;

pub(crate) const CONNECTOR_TYPE: ConnectorType = ConnectorType {
    name: flotilla_wikimedia_core::FILE_CONNECTOR_TYPE,
    description: "replays a file of Wikimedia recent-change events (JSON lines) at a chosen rate",
    build,
};

/// The state key under which the position is saved.
pub const POSITION_KEY: &str = "position";

/// Most events emitted as one batch.
const MAX_BATCH: usize = 512;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Located<String>,
    rate: Option<Located<f64>>,
    r#loop: Option<bool>,
}

/// The `wikimedia-file` connector.
pub struct FileConnector {
    pub path: PathBuf,
    /// Events per second; 0 = unlimited.
    pub rate: f64,
    pub repeat: bool,
}

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let raw: RawFile = flotilla_connector::decode_section(section)?;
    let mut errors = Vec::new();
    if raw.path.value.trim().is_empty() {
        errors.push(diagnostic_at(section, "path", "must name a file"));
    }
    let rate = match &raw.rate {
        Some(rate) if !rate.value.is_finite() || rate.value < 0.0 => {
            errors.push(diagnostic_at(
                section,
                "rate",
                "must be 0 (unlimited) or a positive number of events per second",
            ));
            0.0
        }
        Some(rate) => rate.value,
        None => 50.0,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(FileConnector { path: PathBuf::from(raw.path.value), rate, repeat: raw.r#loop.unwrap_or(false) }))
}

#[async_trait::async_trait]
impl Connector for FileConnector {
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
        let text = tokio::fs::read(&self.path)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", self.path.display()))?;
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        let shown = self.path.display().to_string();
        let saved = ctx.load_state(POSITION_KEY).await?;
        let mut next = saved
            .as_ref()
            .filter(|s| s.get("path").and_then(Value::as_str) == Some(shown.as_str()))
            .and_then(|s| s.get("line").and_then(Value::as_u64))
            .map_or(0, |line| line as usize)
            .min(lines.len());
        let mut emitted = 0u64;
        let mut skipped = 0u64;
        let started = Instant::now();
        let mut sent_since_start = 0u64;
        loop {
            if next >= lines.len() {
                if self.repeat && lines.iter().any(|l| !l.trim_ascii().is_empty()) {
                    next = 0;
                } else {
                    ctx.set_detail(
                        json!({"path": shown, "line": next, "emitted": emitted, "skipped": skipped, "finished": true}),
                    );
                    ctx.shutdown().cancelled().await;
                    return Ok(());
                }
            }
            // How many events are due now at the configured rate.
            let due = if self.rate > 0.0 {
                // Events go out in batches of about a twentieth of a second's worth, so
                // a fast replay does not cost a bus and a store write per event.
                let min_batch = ((self.rate / 20.0) as u64).clamp(1, MAX_BATCH as u64);
                let owed = (started.elapsed().as_secs_f64() * self.rate) as u64;
                if owed < sent_since_start + min_batch {
                    let wake = started + Duration::from_secs_f64((sent_since_start + min_batch) as f64 / self.rate);
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake) => {}
                        _ = ctx.shutdown().cancelled() => return Ok(()),
                    }
                    continue;
                }
                ((owed - sent_since_start) as usize).min(MAX_BATCH)
            } else {
                MAX_BATCH
            };
            let mut batch: Vec<Message> = Vec::with_capacity(due);
            let mut taken = 0;
            while taken < due && next < lines.len() {
                let line = lines[next].trim_ascii();
                next += 1;
                if line.is_empty() {
                    continue;
                }
                taken += 1;
                match change_message(line) {
                    Ok(Some(message)) => batch.push(message),
                    Ok(None) => {}
                    Err(error) => {
                        skipped += 1;
                        tracing::warn!(connector = ctx.name(), file = %shown, line = next, %error, "Skipped a line that is not a recent change.");
                    }
                }
            }
            sent_since_start += taken as u64;
            emitted += batch.len() as u64;
            ctx.emit_all(batch).await?;
            ctx.save_state(POSITION_KEY, &json!({"path": shown, "line": next})).await?;
            ctx.set_detail(json!({"path": shown, "line": next, "emitted": emitted, "skipped": skipped}));
            if ctx.shutdown().is_cancelled() {
                return Ok(());
            }
            if self.rate == 0.0 {
                tokio::task::yield_now().await;
            }
        }
    }
}
