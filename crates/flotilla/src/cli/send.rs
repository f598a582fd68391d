//! `flotilla send`: append one message to a queue, through the running node when there
//! is one, else straight to the bus in the data directory.

use anyhow::Context;
use flotilla_core::Message;
use flotilla_node::admin::{self, AdminClient};
use serde_json::Value;

use super::{ConfigArg, Failure, Outcome, load};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue to append to.
    #[arg(long, short = 'q')]
    queue: String,
    /// A field to set, `key=value`; numbers, true, false and null are typed, anything
    /// else is text. Repeatable; applied after --json.
    #[arg(long = "field", short = 'f', value_name = "KEY=VALUE")]
    fields: Vec<String>,
    /// The message as a JSON object.
    #[arg(long, value_name = "JSON")]
    json: Option<String>,
}

/// Builds the message from `--json` and `--field`s.
fn message(args: &Args) -> Result<Message, Failure> {
    let mut message = match &args.json {
        Some(text) => {
            Message::from_json(text.as_bytes()).map_err(|e| Failure::Invalid(format!("error: --json: {e}")))?
        }
        None => Message::new(),
    };
    for field in &args.fields {
        let Some((key, value)) = field.split_once('=') else {
            return Err(Failure::Invalid(format!("error: --field '{field}': expected KEY=VALUE")));
        };
        if key.is_empty() {
            return Err(Failure::Invalid(format!("error: --field '{field}': the key is empty")));
        }
        let typed = match serde_json::from_str::<Value>(value) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
            _ => Value::from(value),
        };
        message.set(key, typed);
    }
    // Envelope fields given by hand must still be valid.
    Message::from_value(message.into_value()).map_err(|e| Failure::Invalid(format!("error: {e}")))
}

pub async fn run(args: Args) -> Outcome {
    let message = message(&args)?;
    if !flotilla_bus::valid_name(&args.queue) {
        return Err(Failure::Invalid(format!(
            "error: {}",
            flotilla_bus::BusError::InvalidQueueName(args.queue.clone())
        )));
    }
    let config = load(&args.config)?;
    let client = AdminClient::new(&config.data_dir);
    let receipt = if admin::socket_path(&config.data_dir).exists() {
        match client.send(&args.queue, message.clone()).await {
            Ok(receipt) => receipt,
            Err(error) if error.to_string().starts_with("cannot reach") => {
                send_direct(&config, &args.queue, message).await?
            }
            Err(error) => return Err(Failure::Runtime(error)),
        }
    } else {
        send_direct(&config, &args.queue, message).await?
    };
    println!("{}", serde_json::json!({"queue": args.queue, "id": receipt.id, "seq": receipt.seq}));
    Ok(())
}

async fn send_direct(config: &flotilla_node::Config, queue: &str, message: Message) -> anyhow::Result<admin::Receipt> {
    let bus = flotilla_node::node::open_bus(config).await.context("opening the bus (no node is running here)")?;
    let receipt = admin::publish_message(bus.as_ref(), &config.hostname, queue, message).await?;
    bus.close().await?;
    Ok(receipt)
}
