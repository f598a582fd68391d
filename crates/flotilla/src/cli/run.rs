//! `flotilla run`: start a node and run it until SIGINT or SIGTERM; SIGHUP (or
//! `flotilla reload`) makes it read the same configuration path again.

use super::{ConfigArg, Outcome, load, load_diagnosed};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub async fn run(args: Args) -> Outcome {
    let config = load(&args.config)?;
    let mut node = flotilla_node::start(config).await?;
    let path = args.config.clone();
    node.set_loader(Box::new(move || load_diagnosed(&path)));
    node.run_until_signal().await?;
    Ok(())
}
