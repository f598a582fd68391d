//! The command line (SPEC §1): one module per command, each with its arguments and
//! its `run`.

mod check;
mod dispatcher_cli;
mod manual;
mod reload;
mod review;
mod rules;
mod run;
mod send;
mod status;
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use flotilla_config::Diagnostic;
use flotilla_connector::ConnectorType;
use flotilla_node::config::{Config, LoadOptions, load_config, short_hostname};
use flotilla_service::ServiceType;

/// Runs a fleet of bots: connectors feed a durable bus, the reactor's rules decide
/// where messages go, users subscribe to what they care about.
#[derive(Parser)]
#[command(name = "flotilla", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: every configured connector, the reactor and the servers.
    Run(run::Args),
    /// Validate the configuration without starting anything; print every error.
    Check(check::Args),
    /// Append one message to a queue of the node's bus.
    Send(send::Args),
    /// Print a queue's messages as JSON lines and keep following (reading does not consume).
    Tail(tail::Args),
    /// Show connectors, queues and consumer positions.
    Status(status::Args),
    /// Make the running node re-read its configuration (as SIGHUP does) and say what changed.
    Reload(reload::Args),
    /// Work with the reactor's rules.
    #[command(subcommand)]
    Rules(rules::Command),
    /// The Wikimedia dispatcher's client: subscribe, add and remove definitions, list.
    #[command(name = "dispatcher-cli")]
    DispatcherCli(Box<dispatcher_cli::Args>),
    /// A relay group's review queue and censor patterns: list, approve, reject, censor.
    Review(review::Args),
    /// Print a shell completion script: `flotilla completions bash > /etc/bash_completion.d/flotilla`.
    Completions(manual::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory.
    Man(manual::ManArgs),
}

/// The `-c PATH` every command takes.
#[derive(clap::Args, Clone)]
pub struct ConfigArg {
    /// A YAML file or a directory of them; default ./flotilla.yaml if present, else
    /// built-in defaults.
    #[arg(short = 'c', long = "config", value_name = "PATH", env = "FLOTILLA_CONFIG")]
    pub path: Option<PathBuf>,
}

/// How a command ended.
pub enum Failure {
    /// Bad usage or invalid configuration: exit 1.
    Invalid(String),
    /// Something went wrong while running: exit 2.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Runtime(error)
    }
}

pub type Outcome = Result<(), Failure>;

/// Every service type this binary knows. A service runs only when the configuration
/// asks for it (see each service's `build`).
pub fn services() -> Vec<ServiceType> {
    vec![
        flotilla_wikimedia_dispatcher::SERVICE_TYPE,
        flotilla_slack::SERVICE_TYPE,
        flotilla_relay::SERVICE_TYPE,
        flotilla_webui::SERVICE_TYPE,
    ]
}

/// Every connector type this binary knows.
pub fn registry() -> Vec<ConnectorType> {
    let mut types = flotilla_monitors::connector_types();
    types.extend(flotilla_wikimedia_source::connector_types());
    types.extend(flotilla_irc::connector_types());
    types.extend(flotilla_slack::connector_types());
    types.extend(flotilla_xmpp::connector_types());
    types
}

/// Loads the configuration or reports every problem as an `Invalid` failure.
pub fn load(arg: &ConfigArg) -> Result<Config, Failure> {
    load_diagnosed(arg).map_err(|diagnostics| Failure::Invalid(render_diagnostics(&diagnostics)))
}

/// Loads the configuration, or returns every problem.
pub fn load_diagnosed(arg: &ConfigArg) -> Result<Config, Vec<Diagnostic>> {
    let registry = registry();
    let services = services();
    let env = |name: &str| std::env::var(name).ok();
    let options = LoadOptions {
        path: arg.path.as_deref(),
        registry: &registry,
        services: &services,
        env: &env,
        hostname: short_hostname(),
    };
    load_config(&options)
}

pub fn render_diagnostics(diagnostics: &[Diagnostic]) -> String {
    let mut text: Vec<String> = diagnostics.iter().map(|d| format!("error: {d}")).collect();
    text.push(format!(
        "{} error{} in the configuration",
        diagnostics.len(),
        if diagnostics.len() == 1 { "" } else { "s" }
    ));
    text.join("\n")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("FLOTILLA_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (IRC, HTTP fetches, Postgres):
    // aws-lc-rs. rustls panics at runtime if two are linked and none is chosen.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Send(args) => send::run(args).await,
            Command::Tail(args) => tail::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Reload(args) => reload::run(args).await,
            Command::Review(args) => review::run(args).await,
            Command::Rules(command) => rules::run(command).await,
            Command::DispatcherCli(args) => dispatcher_cli::run(*args).await,
            Command::Completions(args) => manual::completions(args, Cli::command()),
            Command::Man(args) => manual::man(args, Cli::command()),
        }
    });
    // Do not wait for stray blocking tasks (a tail's stdin reader) at exit.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(message)) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
        Err(Failure::Runtime(error)) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS; // `flotilla tail | head` is not a failure.
            }
            // Each cause once (a bus error names its cause and also keeps it as source).
            eprintln!("error: {}", flotilla_core::error_chain(error.as_ref()));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
