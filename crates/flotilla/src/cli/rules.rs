//! `flotilla rules test`: run one message through the rules without delivering
//! anything, and show which rules fired and what each plugin made of the message
//! (control characters escaped).

use std::path::PathBuf;
use std::time::SystemTime;

use flotilla_core::{Message, escape_controls};
use flotilla_node::config::compile_rules_file;
use flotilla_reactor::{Effect, RecordingEffects, RuleTree};

use super::{ConfigArg, Failure, Outcome, load, render_diagnostics};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Dry-run the reactor on one message: which rules fire (host:rule) and the
    /// message after each plugin. Nothing is delivered.
    Test(TestArgs),
}

#[derive(clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// A file shaped like reactor.yaml (a top-level `rules:` list) to use instead of
    /// the configured rules.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// The message, a JSON object.
    #[arg(long, value_name = "JSON")]
    message: String,
    /// Print only the final message as one JSON object (`null` if a rule dropped it).
    #[arg(long)]
    json: bool,
}

pub async fn run(command: Command) -> Outcome {
    let Command::Test(args) = command;
    let message =
        Message::from_json(args.message.as_bytes()).map_err(|e| Failure::Invalid(format!("error: --message: {e}")))?;
    let config = load(&args.config)?;
    let owned;
    let tree: &RuleTree = match &args.rules {
        Some(path) => {
            let env = |name: &str| std::env::var(name).ok();
            owned = compile_rules_file(path, &config.node_name, &env)
                .map_err(|d| Failure::Invalid(render_diagnostics(&d)))?;
            &owned
        }
        None => &config.rules,
    };
    let effects = RecordingEffects::new(SystemTime::now()).with_utc_offset(local_offset());
    let outcome = tree.run_traced(message, &effects).await;
    if args.json {
        let text = outcome.message.map_or("null".to_string(), |m| json_line(&m));
        println!("{text}");
        return Ok(());
    }
    if outcome.fired.is_empty() {
        println!("rules fired: none");
    } else {
        println!("rules fired: {}", outcome.fired.join(", "));
    }
    for step in &outcome.trace {
        let after = step.message.as_ref().map_or("(dropped)".to_string(), json_line);
        match &step.error {
            Some(error) => {
                println!("after {} ({}): error: {}\n  {after}", step.rule, step.plugin, escape_controls(error))
            }
            None => println!("after {} ({}):\n  {after}", step.rule, step.plugin),
        }
    }
    for effect in effects.effects() {
        println!("would {}", escape_controls(&describe(&effect)));
    }
    match (&outcome.message, outcome.dropped_by) {
        (Some(message), _) => println!("final message:\n  {}", json_line(message)),
        (None, Some(rule)) => println!("final message: dropped by {rule}"),
        (None, None) => println!("final message: dropped"),
    }
    Ok(())
}

/// A message as one JSON line, safe to print ([`escape_controls`]).
fn json_line(message: &Message) -> String {
    escape_controls(&String::from_utf8_lossy(&message.to_json())).into_owned()
}

fn describe(effect: &Effect) -> String {
    match effect {
        Effect::Enqueue { queue, .. } => format!("append to queue '{queue}'"),
        Effect::SqlInsert { table, row } => {
            format!("insert into table '{table}': {}", serde_json::Value::Object(row.clone()))
        }
        Effect::Send { connector, .. } => format!("send to connector '{connector}'"),
        Effect::Console(line) => format!("print: {}", line.text),
        Effect::Command { command, timeout } => {
            format!("run command '{command}' (timeout {timeout:?}; not run in a dry run)")
        }
        Effect::SaveState { namespace, key, value } => format!("remember {namespace}/{key} = {value}"),
    }
}

/// The local UTC offset, for Console lines in the dry run.
fn local_offset() -> chrono::FixedOffset {
    use chrono::{Local, Offset};
    Local::now().offset().fix()
}
