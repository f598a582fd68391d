//! `flotilla tail`: print a queue's messages as JSON lines and keep following. Reading
//! does not consume. With `--where`, only messages for which the condition holds.
//! Control characters are printed escaped ([`escape_controls`]).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use flotilla_bus::ReadFrom;
use flotilla_core::Message;
use flotilla_core::condition::Condition;
use flotilla_core::escape_controls;
use flotilla_node::admin::{self, AdminClient, TailFrom};
use tokio::io::AsyncBufReadExt;

use super::{ConfigArg, Failure, Outcome, load};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue to follow.
    #[arg(long, short = 'q', default_value = "reactor")]
    queue: String,
    /// Start at the oldest retained message, or only show new ones.
    #[arg(long, value_enum, default_value = "end")]
    from: From,
    /// Only messages for which this condition holds (the reactor's condition language,
    /// e.g. 'status equals CRITICAL AND subject matches disk').
    #[arg(long = "where", value_name = "CONDITION")]
    condition: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum From {
    Start,
    End,
}

/// Prints a payload if it passes the filter, its control characters escaped (JSON
/// escapes, so the line is still the same JSON).
fn emit(out: &mut impl Write, payload: &[u8], filter: Option<&Condition>) -> std::io::Result<()> {
    if let Some(condition) = filter {
        match Message::from_json(payload) {
            Ok(message) if condition.eval(&message) => {}
            _ => return Ok(()),
        }
    }
    out.write_all(escape_controls(&String::from_utf8_lossy(payload)).as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

pub async fn run(args: Args) -> Outcome {
    let filter = match &args.condition {
        Some(text) => Some(Condition::parse(text).map_err(|e| Failure::Invalid(format!("error: --where: {e}")))?),
        None => None,
    };
    if !flotilla_bus::valid_name(&args.queue) {
        return Err(Failure::Invalid(format!(
            "error: {}",
            flotilla_bus::BusError::InvalidQueueName(args.queue.clone())
        )));
    }
    let config = load(&args.config)?;
    let from = match args.from {
        From::Start => TailFrom::Start,
        From::End => TailFrom::End,
    };
    let mut stdout = std::io::stdout().lock();
    if admin::socket_path(&config.data_dir).exists()
        && let Ok(mut lines) = AdminClient::new(&config.data_dir).tail(&args.queue, from).await
    {
        let mut line = Vec::new();
        let mut first = true;
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line).await.context("reading from the node")? == 0 {
                return Ok(()); // The node shut down.
            }
            let payload = line.strip_suffix(b"\n").unwrap_or(&line);
            if first {
                first = false;
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(payload)
                    && map.len() == 1
                    && let Some(error) = map.get("error").and_then(|e| e.as_str())
                {
                    return Err(Failure::Runtime(anyhow::anyhow!("{error}")));
                }
            }
            emit(&mut stdout, payload, filter.as_ref()).context("writing to standard output")?;
        }
    }
    // No node here: read the bus itself (the data directory's, or the shared one).
    let bus = flotilla_node::node::open_bus(&config).await.context("opening the bus (no node is running here)")?;
    let mut reader = bus
        .read(&args.queue, if from == TailFrom::Start { ReadFrom::Start } else { ReadFrom::End })
        .await
        .map_err(anyhow::Error::from)?;
    loop {
        for delivery in reader.fetch(1024, Duration::from_secs(1)).await.map_err(anyhow::Error::from)? {
            emit(&mut stdout, &delivery.payload, filter.as_ref()).context("writing to standard output")?;
        }
    }
}
