//! `flotilla dispatcher-cli`: the original dispatcher's command-line client (SPEC §6.3),
//! speaking the control protocol to a running node (`--host`, `--port`, default
//! 127.0.0.1:29438).
//!
//! One action per call:
//!
//! | flags | sends | prints |
//! |---|---|---|
//! | `--subscribe NAME [--token ADMIN_TOKEN]` | `subscribe NAME [ADMIN_TOKEN]` | `TOKEN: <token>` |
//! | `--unsubscribe NAME --token T` | `unsubscribe NAME T` | `OK` |
//! | `--insert NAME --token T --wiki W [--page P \| --pagerx RX] [--user U \| --userrx RX]` | `auth`, `insert json [...]` | `Inserted: N` |
//! | `--remove NAME --token T --wiki W …` | `auth`, `remove json [...]` | `Removed: N` |
//! | `--list NAME --token T` | `auth`, `list json` | the definitions as a JSON document |
//!
//! `--format pipe|xml|json` sets the subscription's output format as well (with
//! `--subscribe`, right after creating it), printing `Format: F`. When the server
//! answers with an error line (`E…: …`), that line is printed on stderr and the exit
//! code is 1; a server that cannot be reached is exit code 2.
//!
//! `--token T` is the original's flag, but a command line is visible to every local
//! user (`ps`); `--token-file PATH` (its first line) and the environment variable
//! [`TOKEN_ENV`] keep the token off it. The first of the three given is used. With
//! `--subscribe`, the token is the admin token, for a dispatcher where creating
//! subscriptions needs it (`dispatcher.subscribe: admin`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use flotilla_wikimedia_dispatcher::client::{ControlClient as Connection, ServerError};
use serde_json::{Map, Value};

use super::{Failure, Outcome};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["subscribe", "unsubscribe", "insert", "remove", "list"])))]
pub struct Args {
    /// The dispatcher's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The control protocol's port.
    #[arg(long, default_value_t = 29438)]
    port: u16,
    /// The subscription's token, or with --subscribe the admin token where needed
    /// (visible to other users in `ps`: prefer --token-file or FLOTILLA_TOKEN).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// A file whose first line is the subscription's token.
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Create a subscription and print its token.
    #[arg(long, value_name = "NAME")]
    subscribe: Option<String>,
    /// Delete a subscription (needs --token).
    #[arg(long, value_name = "NAME")]
    unsubscribe: Option<String>,
    /// Add a definition to a subscription (needs --token and --wiki).
    #[arg(long, value_name = "NAME")]
    insert: Option<String>,
    /// Remove a definition from a subscription (needs --token and --wiki).
    #[arg(long, value_name = "NAME")]
    remove: Option<String>,
    /// Print a subscription's definitions (needs --token).
    #[arg(long, value_name = "NAME")]
    list: Option<String>,
    /// The wiki: database name (enwiki), host (en.wikipedia.org) or en_wikipedia.
    #[arg(long, value_name = "WIKI")]
    wiki: Option<String>,
    /// An exact page title.
    #[arg(long, value_name = "PAGE", conflicts_with = "pagerx")]
    page: Option<String>,
    /// A page title regex (unanchored).
    #[arg(long, value_name = "RX")]
    pagerx: Option<String>,
    /// An exact user name.
    #[arg(long, value_name = "USER", conflicts_with = "userrx")]
    user: Option<String>,
    /// A user name regex (unanchored).
    #[arg(long, value_name = "RX")]
    userrx: Option<String>,
    /// Also set the subscription's output format: pipe, xml or json.
    #[arg(long, value_name = "F")]
    format: Option<String>,
}

fn usage(message: &str) -> Failure {
    Failure::Invalid(format!("error: {message}"))
}

/// The one-definition JSON document of `--wiki`, `--page`, … (for insert and remove).
fn definition_document(args: &Args) -> Result<String, Failure> {
    let wiki = args.wiki.as_deref().ok_or_else(|| usage("--insert and --remove need --wiki"))?;
    let mut definition = Map::new();
    definition.insert("wiki".into(), Value::from(wiki));
    for (key, value) in
        [("page", &args.page), ("page_rx", &args.pagerx), ("user", &args.user), ("user_rx", &args.userrx)]
    {
        if let Some(value) = value {
            definition.insert(key.into(), Value::from(value.as_str()));
        }
    }
    Ok(Value::Array(vec![Value::Object(definition)]).to_string())
}

/// The environment variable that may hold the subscription's token.
pub const TOKEN_ENV: &str = "FLOTILLA_TOKEN";

/// The token: `--token`, else the first line of `--token-file`, else [`TOKEN_ENV`].
/// The token from `--token`, `--token-file` or the environment, if any was given.
fn token(args: &Args) -> Result<Option<String>, Failure> {
    if let Some(token) = &args.token {
        return Ok(Some(token.clone()));
    }
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(&format!("--token-file: cannot read {}: {e}", path.display())))?;
        let token = text.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            return Err(usage(&format!("--token-file: {} holds no token on its first line", path.display())));
        }
        return Ok(Some(token.to_string()));
    }
    Ok(std::env::var(TOKEN_ENV).ok().filter(|token| !token.is_empty()))
}

/// Authenticates; the error line if the server refused.
async fn auth(connection: &mut Connection, name: &str, token: &str) -> anyhow::Result<Result<(), ServerError>> {
    Ok(connection.ask(&format!("auth {name} {token}")).await?.map(|_| ()))
}

pub async fn run(args: Args) -> Outcome {
    if let Some(format) = &args.format
        && !["pipe", "xml", "json"].contains(&format.to_ascii_lowercase().as_str())
    {
        return Err(usage(&format!("--format: expected pipe, xml or json, found '{format}'")));
    }
    // Check the arguments before connecting.
    let document =
        if args.insert.is_some() || args.remove.is_some() { Some(definition_document(&args)?) } else { None };
    // For --subscribe the token is the admin token, needed only where subscribing needs it.
    let token = match token(&args)? {
        Some(token) => token,
        None if args.subscribe.is_some() => String::new(),
        None => return Err(usage(&format!("this action needs --token, --token-file or {TOKEN_ENV}"))),
    };
    let mut connection =
        Connection::connect(&args.host, args.port, Duration::from_secs(10)).await.map_err(Failure::Runtime)?;
    match perform(&args, &token, document, &mut connection).await.map_err(Failure::Runtime)? {
        Ok(lines) => {
            for line in lines {
                // The server's words: no control character reaches the terminal.
                println!("{}", flotilla_core::escape_controls(&line));
            }
            let _ = connection.ask("quit").await;
            Ok(())
        }
        Err(ServerError(line)) => Err(Failure::Invalid(flotilla_core::escape_controls(&line).into_owned())),
    }
}

/// Does the action (for `--subscribe`, `token` is the admin token or empty); the lines
/// to print, or the server's error line.
async fn perform(
    args: &Args,
    token: &str,
    document: Option<String>,
    connection: &mut Connection,
) -> anyhow::Result<Result<Vec<String>, ServerError>> {
    let mut lines = Vec::new();
    if let Some(name) = &args.subscribe {
        let line = if token.is_empty() { format!("subscribe {name}") } else { format!("subscribe {name} {token}") };
        let reply = match connection.ask(&line).await? {
            Ok(reply) => reply,
            Err(error) => return Ok(Err(error)),
        };
        if args.format.is_some() {
            let token = reply.strip_prefix("TOKEN: ").unwrap_or_default().to_string();
            if let Err(error) = auth(connection, name, &token).await? {
                return Ok(Err(error));
            }
        }
        lines.push(reply);
    } else if let Some(name) = &args.unsubscribe {
        match connection.ask(&format!("unsubscribe {name} {token}")).await? {
            Ok(reply) => lines.push(reply),
            Err(error) => return Ok(Err(error)),
        }
        return Ok(Ok(lines)); // Nothing left to set a format on.
    } else {
        let name = args.insert.as_ref().or(args.remove.as_ref()).or(args.list.as_ref()).context("no action given")?;
        if let Err(error) = auth(connection, name, token).await? {
            return Ok(Err(error));
        }
        let (command, label) = if args.insert.is_some() { ("insert", "Inserted") } else { ("remove", "Removed") };
        if let Some(document) = &document {
            match connection.ask(&format!("{command} json {document}")).await? {
                Ok(count) => lines.push(format!("{label}: {count}")),
                Err(error) => return Ok(Err(error)),
            }
        }
    }
    if let Some(format) = &args.format {
        if let Err(error) = connection.ask(&format!("format {format}")).await? {
            return Ok(Err(error));
        }
        lines.push(format!("Format: {}", format.to_ascii_lowercase()));
    }
    if args.list.is_some() {
        match connection.ask("list json").await? {
            Ok(document) => lines.push(document),
            Err(error) => return Ok(Err(error)),
        }
    }
    Ok(Ok(lines))
}
