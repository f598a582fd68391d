//! `flotilla check`: validate the configuration and print every error, and on stderr
//! every warning (valid but risky, such as a password sent in clear text).

use super::{ConfigArg, Outcome, load};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub fn run(args: Args) -> Outcome {
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
    Ok(())
}
