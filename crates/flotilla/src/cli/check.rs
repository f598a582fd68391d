//! `flotilla check`: validate the configuration and print every error, and on stderr
//! every warning (valid but risky, such as a password sent in clear text). With a shared
//! bus (`bus.backend: redis` or `nats`) it also connects to it, unless `--offline`: an
//! unreachable or too old Redis, an unreachable NATS or one without JetStream is an
//! error (exit 2); a Redis that does not persist (or hides how), a NATS that takes
//! smaller messages than the bus allows, a warning.

use flotilla_bus::{NatsBus, RedisBus};
use flotilla_node::config::BusSettings;

use super::{ConfigArg, Failure, Outcome, load};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Check the files only; do not connect to the bus's backend (Redis, NATS).
    #[arg(long)]
    offline: bool,
}

pub async fn run(args: Args) -> Outcome {
    let config = load(&args.config)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    let source = config.source.as_ref().map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let services: Vec<&str> = config.services.iter().map(|s| s.name).collect();
    let services =
        if services.is_empty() { "no services".to_string() } else { format!("services: {}", services.join(", ")) };
    println!(
        "{source}: configuration is valid (node {}, {} connector{}, {} rule{}, {services})",
        config.node_name,
        config.connectors.len(),
        if config.connectors.len() == 1 { "" } else { "s" },
        config.rules.len(),
        if config.rules.len() == 1 { "" } else { "s" },
    );
    for plan in &config.services {
        for note in plan.service.notes() {
            println!("  {}: {note}", plan.name);
        }
    }
    match &config.bus {
        BusSettings::Embedded(_) => {}
        BusSettings::Redis(_) if args.offline => println!("bus: redis (not contacted: --offline)"),
        BusSettings::Redis(options) => {
            let check = RedisBus::check(options)
                .await
                .map_err(|e| Failure::Runtime(anyhow::Error::new(e).context("bus.url")))?;
            println!("bus: Redis {} (persistence: {})", check.version, check.persistence);
            for warning in &check.warnings {
                eprintln!("warning: bus: {warning}");
            }
        }
        BusSettings::Nats(_) if args.offline => println!("bus: nats (not contacted: --offline)"),
        BusSettings::Nats(options) => {
            let check = NatsBus::check(options)
                .await
                .map_err(|e| Failure::Runtime(anyhow::Error::new(e).context("bus.url")))?;
            println!("bus: NATS {} ({})", check.version, check.jetstream);
            for warning in &check.warnings {
                eprintln!("warning: bus: {warning}");
            }
        }
    }
    Ok(())
}
