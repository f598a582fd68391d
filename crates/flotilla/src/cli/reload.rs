//! `flotilla reload`: asks the running node to re-read its configuration (what SIGHUP
//! does) and prints what changed. The configuration is checked here first, so a
//! broken file is reported with every error and never reaches the node.

use flotilla_node::admin::{self, AdminClient};

use super::{ConfigArg, Failure, Outcome, load_diagnosed, render_diagnostics};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub async fn run(args: Args) -> Outcome {
    let config = load_diagnosed(&args.config).map_err(|diagnostics| {
        Failure::Invalid(format!(
            "{}\nnothing was reloaded: the running node keeps its configuration",
            render_diagnostics(&diagnostics)
        ))
    })?;
    let socket = admin::socket_path(&config.data_dir);
    if !socket.exists() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "no node is running with data directory {} (no {})",
            config.data_dir.display(),
            socket.display()
        )));
    }
    match AdminClient::new(&config.data_dir).reload().await {
        Ok(report) => {
            println!("{report}");
            Ok(())
        }
        Err(error) => {
            Err(Failure::Invalid(format!("{error:#}\nnothing was reloaded: the running node keeps its configuration")))
        }
    }
}
