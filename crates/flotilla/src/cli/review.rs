//! `flotilla review`: the review queue and the censor patterns of a relay group on a
//! running node (SPEC §8), through its HTTP API (`/api/v1/groups…`) at `http.listen`
//! with `http.admin_token` (or `FLOTILLA_ADMIN_TOKEN`): the same routes the web UI uses,
//! so a decision taken here and one taken there are the same decision.

use std::net::SocketAddr;

use flotilla_relay::client::{Client, ClientError};
use serde_json::{Value, json};

use super::{ConfigArg, Failure, Outcome, load};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// A YAML file or a directory of them; default ./flotilla.yaml if present.
    #[arg(short = 'c', long = "config", value_name = "PATH", env = "FLOTILLA_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,
    /// The relay group (a key of `groups:`).
    #[arg(long, short = 'g', global = true)]
    group: Option<String>,
    /// The node's HTTP address, when not `http.listen` of the configuration.
    #[arg(long, value_name = "HOST:PORT", global = true)]
    http: Option<SocketAddr>,
    /// Print the answers as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// List the reports waiting for review (with --all, decided ones too).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Relay a report as if it had passed the censor.
    Approve { id: String },
    /// Keep a report out for good (it stays in the review queue, marked rejected).
    Reject { id: String },
    /// Show the group's censor patterns, or change them: each takes effect for the next
    /// report and is kept across restarts.
    Censor {
        #[arg(long = "add-trigger", value_name = "PATTERN")]
        add_trigger: Vec<String>,
        #[arg(long = "remove-trigger", value_name = "PATTERN")]
        remove_trigger: Vec<String>,
        #[arg(long = "add-blocklist", value_name = "PATTERN")]
        add_blocklist: Vec<String>,
        #[arg(long = "remove-blocklist", value_name = "PATTERN")]
        remove_blocklist: Vec<String>,
    },
}

pub async fn run(args: Args) -> Outcome {
    let Some(group) = args.group.clone() else {
        return Err(Failure::Invalid("error: --group G is required (a key of groups:)".into()));
    };
    let config = load(&ConfigArg { path: args.config.clone() })?;
    let mut addr = args.http.unwrap_or(config.http_listen);
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let token = std::env::var("FLOTILLA_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| config.admin_token.as_ref().map(|t| t.0.clone()));
    let client = Client { addr, token };
    let base = format!("/api/v1/groups/{}", percent(&group));
    let answer = match &args.action {
        Action::List { all } => {
            let path = if *all { format!("{base}/review?all=true") } else { format!("{base}/review") };
            let answer = call(&client, "GET", &path, None).await?;
            if !args.json {
                print_reports(&answer);
                return Ok(());
            }
            answer
        }
        Action::Approve { id } => {
            call(&client, "POST", &format!("{base}/review/{}/approve", percent(id)), None).await?
        }
        Action::Reject { id } => call(&client, "POST", &format!("{base}/review/{}/reject", percent(id)), None).await?,
        Action::Censor { add_trigger, remove_trigger, add_blocklist, remove_blocklist } => {
            let path = format!("{base}/censor");
            let mut patterns = call(&client, "GET", &path, None).await?;
            let changing = !(add_trigger.is_empty()
                && remove_trigger.is_empty()
                && add_blocklist.is_empty()
                && remove_blocklist.is_empty());
            if changing {
                edit(&mut patterns["trigger"], add_trigger, remove_trigger);
                edit(&mut patterns["blocklist"], add_blocklist, remove_blocklist);
                patterns = call(&client, "PUT", &path, Some(&patterns)).await?;
            }
            patterns
        }
    };
    if args.json {
        println!("{answer}");
    } else {
        match &args.action {
            Action::Approve { id } => println!(
                "approved {id}: relayed to {}",
                answer["relayed_to"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            ),
            Action::Reject { id } => println!("rejected {id}"),
            _ => {
                for list in ["trigger", "blocklist"] {
                    println!("{list}:");
                    for pattern in answer[list].as_array().into_iter().flatten().filter_map(Value::as_str) {
                        println!("  {}", flotilla_core::escape_controls(pattern));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn call(client: &Client, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
    match client.call(method, path, body).await {
        Ok(answer) => Ok(answer),
        // Refused: bad input (exit 1); anything else: the node is not reachable (exit 2).
        Err(e @ ClientError::Refused { .. }) => Err(Failure::Invalid(format!("error: {e}"))),
        Err(e) => Err(Failure::Runtime(anyhow::Error::new(e).context("flotilla review"))),
    }
}

/// Adds the new patterns (once) and removes the named ones.
fn edit(list: &mut Value, add: &[String], remove: &[String]) {
    let mut patterns: Vec<String> =
        list.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
    patterns.retain(|p| !remove.contains(p));
    for pattern in add {
        if !patterns.contains(pattern) {
            patterns.push(pattern.clone());
        }
    }
    *list = json!(patterns);
}

fn print_reports(answer: &Value) {
    let reports = answer["reports"].as_array().cloned().unwrap_or_default();
    if reports.is_empty() {
        println!("no reports waiting for review");
        return;
    }
    for report in reports {
        let field = |k: &str| report[k].as_str().map(flotilla_core::escape_controls).unwrap_or_default();
        let decided = report["decision"].as_str().map(|d| format!(" [{d}]")).unwrap_or_default();
        println!("{}  {}  {} <{}>{decided}", field("id"), field("reason"), field("source"), field("username"));
        if let Some(subject) = report["subject"].as_str() {
            println!("    {}", flotilla_core::escape_controls(subject));
        }
        for line in field("text").lines() {
            println!("    {line}");
        }
    }
}

/// Percent-encodes a path segment.
fn percent(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
