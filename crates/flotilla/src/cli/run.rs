//! `flotilla run`: start a node and run it until SIGINT or SIGTERM.

use super::{ConfigArg, Outcome, load};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub async fn run(args: Args) -> Outcome {
    let config = load(&args.config)?;
    let node = flotilla_node::start(config).await?;
    node.run_until_signal().await?;
    Ok(())
}
