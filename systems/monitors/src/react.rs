//! A monitor's own rules (`react:`), as in wubot: every message a check produces runs
//! through the instance's rule tree *before* it is queued, and a message that comes out
//! dropped, or with `last_rule` set, is not queued at all. This is how one monitor
//! instance filters or enriches its own output without touching the node's reactor.
//!
//! The rules are checked when the configuration is built (every problem becomes a
//! [`Diagnostic`] at `connectors.<name>.react[...]`, or in the rules file it sits in),
//! and compiled again when the monitor starts, with the node's name as the host of the
//! `wubot_rulelog` entries (the name the node's reactor uses too).
//!
//! Plugins that reach outside the message act through the node's one real `Effects`,
//! [`flotilla_connector::BusEffects::for_connector`]: rows and state in the store (the
//! state in the connector's own), console lines on standard output, commands through
//! [`flotilla_reactor::run_shell_command`]. What the rules queue or send is buffered;
//! the monitor flushes it durably after the rules ran and before it queues the
//! messages and saves its cache.

use std::path::{Path, PathBuf};

use flotilla_config::{Diagnostic, Location};
use flotilla_connector::{ConnectorContext, ConnectorSection, FileRulesLoader};
use flotilla_core::Message;
use flotilla_core::message::{LAST_RULE, is_truthy};
use flotilla_reactor::{CompileContext, Effects, RuleConfig, RuleError, RuleTree};

/// The key the rules sit under in a monitor's section.
pub const REACT_KEY: &str = "react";

/// A monitor instance's `react:` rules, checked, ready to compile for a host.
#[derive(Debug, Clone)]
pub struct ReactRules {
    /// The rules as written.
    pub rules: Vec<RuleConfig>,
    /// Where relative `rulesfile` and `template_file` names are looked up: the
    /// directory of the file the monitor's section is in.
    pub base_dir: PathBuf,
}

impl ReactRules {
    /// Checks `rules` (from the section's `react:` key) and reports every problem at
    /// its place: `connectors.<name>.react[1].condition`, with the file, line and
    /// column of the offending value (or of the rules file that holds it).
    pub fn check(section: &ConnectorSection<'_>, rules: Vec<RuleConfig>) -> Result<ReactRules, Vec<Diagnostic>> {
        let base_dir = base_dir_of(&section.node.location);
        let react = ReactRules { rules, base_dir };
        let loader = FileRulesLoader::default();
        // The host only labels rule log entries; any name checks the same.
        match react.compile_with("check", &loader) {
            Ok(_) => Ok(react),
            Err(errors) => Err(errors.iter().map(|e| locate_error(section, &loader, e)).collect()),
        }
    }

    /// Compiles the rules; `host` is written into `wubot_rulelog` entries.
    pub fn compile(&self, host: &str) -> Result<RuleTree, Vec<RuleError>> {
        self.compile_with(host, &FileRulesLoader::default())
    }

    fn compile_with(&self, host: &str, loader: &FileRulesLoader) -> Result<RuleTree, Vec<RuleError>> {
        let ctx = CompileContext { host, base_dir: &self.base_dir, loader };
        flotilla_reactor::compile(&self.rules, &ctx)
    }
}

/// The directory of the configuration file a section was read from (`.` when it did
/// not come from a file).
fn base_dir_of(location: &Location) -> PathBuf {
    if !location.is_known() {
        return PathBuf::from(".");
    }
    Path::new(&*location.file).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Turns a rule compile error into a diagnostic pointing at the value it concerns.
fn locate_error(section: &ConnectorSection<'_>, loader: &FileRulesLoader, error: &RuleError) -> Diagnostic {
    // Compile errors are relative to the rules list: `rules[2].condition`.
    let inner = error.path.strip_prefix("rules").unwrap_or(&error.path);
    match &error.file {
        None => {
            let location = section
                .node
                .get(REACT_KEY)
                .and_then(|react| loader.locate(None, react, inner))
                .unwrap_or_else(|| section.node.location.clone());
            Diagnostic {
                location: Some(location),
                message: format!("{}.{REACT_KEY}{inner}: {}", section.path, error.message),
            }
        }
        Some(file) => {
            let location = loader.locate(Some(file), section.node, &error.path);
            let message = match location {
                Some(_) => format!("{}: {}", error.path, error.message),
                None => format!("{}: {}: {}", file.display(), error.path, error.message),
            };
            Diagnostic { location, message }
        }
    }
}

/// Runs each message through `tree` and returns those to queue, in order: not dropped,
/// and without `last_rule`. Each message is stamped first (`key`, `plugin`, `id`,
/// `lastupdate`, `hostname`), so conditions can test them as wubot's could.
pub async fn react(
    tree: &RuleTree,
    messages: Vec<Message>,
    ctx: &ConnectorContext,
    effects: &dyn Effects,
) -> Vec<Message> {
    let mut queued = Vec::with_capacity(messages.len());
    for mut message in messages {
        ctx.stamp(&mut message);
        let outcome = tree.run(message, effects).await;
        for failure in &outcome.failures {
            tracing::info!(
                connector = ctx.name(),
                rule = failure.rule,
                plugin = failure.plugin,
                error = %failure.error,
                "A react plugin failed; recorded in errmsg."
            );
        }
        match outcome.message {
            Some(message) if message.get(LAST_RULE).is_some_and(is_truthy) => {
                tracing::debug!(connector = ctx.name(), "A react rule set last_rule; the message is not queued.");
            }
            Some(message) => queued.push(message),
            None => {
                tracing::debug!(connector = ctx.name(), rule = ?outcome.dropped_by, "A react rule dropped the message.")
            }
        }
    }
    queued
}
