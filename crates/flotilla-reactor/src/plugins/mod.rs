//! The reactor plugins: one compiled value per rule that has a `plugin`, built from the
//! rule's `config` at compile time (unknown keys, missing keys and bad values are
//! errors then) and applied to messages at run time.
//!
//! A plugin that fails at run time (a missing field, a template naming a field the
//! message lacks, a command timing out, an effect failing) returns an error text; the
//! rule tree records it in the message's `errmsg` and goes on. Where wubot quietly
//! left the message alone (CaptureData, HashLookup and HTMLStrip on a false-y field,
//! Template from an empty source field) so do we: that is their documented behaviour,
//! not a failure.

mod censor;
mod command;
mod config;
mod delivery;
mod fields;
mod flow;
mod memory;
mod shell;
mod template;
mod text;

use std::path::Path;

use flotilla_core::Message;
use serde_json::Value;

use crate::compile::{RuleError, RulesLoader};
use crate::effects::Effects;
pub(crate) use config::PluginConfig;
pub use memory::{STATE_NAMESPACE, STATUS_NAMESPACE};
pub(crate) use template::Template;

/// Every plugin name a rule may use, sorted.
pub const PLUGIN_NAMES: &[&str] = &[
    "CaptureData",
    "Censor",
    "Command",
    "Console",
    "CopyField",
    "Dedupe",
    "DeleteField",
    "Drop",
    "HTMLStrip",
    "HashLookup",
    "MessageQueue",
    "SQL",
    "SQLite",
    "Send",
    "SetField",
    "Split",
    "Stale",
    "State",
    "Status",
    "Template",
    "TransformField",
];

/// What the reactor does with the message after a plugin ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Keep,
    Drop,
}

/// What a plugin names outside the rule tree, so the node can check it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    /// A bus queue (MessageQueue).
    Queue,
    /// A connector (Send).
    Connector,
    /// A store table (SQL).
    Table,
}

/// A compiled plugin.
#[derive(Debug)]
pub(crate) enum Plugin {
    SetField(fields::SetField),
    DeleteField(fields::DeleteField),
    CopyField(fields::CopyField),
    HashLookup(fields::HashLookup),
    Split(fields::Split),
    Template(template::TemplatePlugin),
    CaptureData(text::CaptureData),
    TransformField(text::TransformField),
    HtmlStrip(text::HtmlStrip),
    MessageQueue(delivery::MessageQueue),
    Sql(delivery::Sql),
    Send(delivery::Send),
    Console(delivery::Console),
    State(memory::State),
    Status(memory::Status),
    Command(command::Command),
    Censor(censor::Censor),
    Drop,
    Dedupe(flow::Dedupe),
    Stale(flow::Stale),
}

/// Where a plugin's configuration sits, for error paths and relative file names.
pub(crate) struct PluginSite<'a> {
    /// The dotted path of the rule, e.g. `rules[2].rules[0]`.
    pub rule_path: &'a str,
    /// The rule's name (Censor names its review queue after it).
    pub rule_name: &'a str,
    /// The rules file the rule came from, if not the main configuration.
    pub file: Option<&'a Path>,
    /// The directory relative file names are resolved against.
    pub dir: &'a Path,
    pub loader: &'a dyn RulesLoader,
}

impl Plugin {
    /// Builds a plugin from its name and configuration, reporting every problem.
    pub(crate) fn compile(name: &str, config: Option<&Value>, site: &PluginSite<'_>) -> Result<Plugin, Vec<RuleError>> {
        if !PLUGIN_NAMES.contains(&name) {
            return Err(vec![unknown_plugin(name, site)]);
        }
        let mut cfg = PluginConfig::new(name, config, site);
        if !cfg.is_map() {
            // The plugin's own checks would only repeat that its keys are missing.
            return cfg.finish(None);
        }
        let plugin = match name {
            "SetField" => fields::SetField::compile(&mut cfg).map(Plugin::SetField),
            "DeleteField" => fields::DeleteField::compile(&mut cfg).map(Plugin::DeleteField),
            "CopyField" => fields::CopyField::compile(&mut cfg).map(Plugin::CopyField),
            "HashLookup" => fields::HashLookup::compile(&mut cfg).map(Plugin::HashLookup),
            "Split" => fields::Split::compile(&mut cfg).map(Plugin::Split),
            "Template" => template::TemplatePlugin::compile(&mut cfg).map(Plugin::Template),
            "CaptureData" => text::CaptureData::compile(&mut cfg).map(Plugin::CaptureData),
            "TransformField" => text::TransformField::compile(&mut cfg).map(Plugin::TransformField),
            "HTMLStrip" => text::HtmlStrip::compile(&mut cfg).map(Plugin::HtmlStrip),
            "MessageQueue" => delivery::MessageQueue::compile(&mut cfg).map(Plugin::MessageQueue),
            "SQL" | "SQLite" => delivery::Sql::compile(&mut cfg).map(Plugin::Sql),
            "Send" => delivery::Send::compile(&mut cfg).map(Plugin::Send),
            "Console" => delivery::Console::compile(&mut cfg).map(Plugin::Console),
            "State" => memory::State::compile(&mut cfg).map(Plugin::State),
            "Status" => memory::Status::compile(&mut cfg).map(Plugin::Status),
            "Command" => command::Command::compile(&mut cfg).map(Plugin::Command),
            "Censor" => censor::Censor::compile(&mut cfg, site.rule_name).map(Plugin::Censor),
            "Drop" => Some(Plugin::Drop),
            "Dedupe" => flow::Dedupe::compile(&mut cfg).map(Plugin::Dedupe),
            "Stale" => flow::Stale::compile(&mut cfg).map(Plugin::Stale),
            _ => return Err(vec![unknown_plugin(name, site)]),
        };
        cfg.finish(plugin)
    }

    /// The plugin's name as rules write it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Plugin::SetField(_) => "SetField",
            Plugin::DeleteField(_) => "DeleteField",
            Plugin::CopyField(_) => "CopyField",
            Plugin::HashLookup(_) => "HashLookup",
            Plugin::Split(_) => "Split",
            Plugin::Template(_) => "Template",
            Plugin::CaptureData(_) => "CaptureData",
            Plugin::TransformField(_) => "TransformField",
            Plugin::HtmlStrip(_) => "HTMLStrip",
            Plugin::MessageQueue(_) => "MessageQueue",
            Plugin::Sql(_) => "SQL",
            Plugin::Send(_) => "Send",
            Plugin::Console(_) => "Console",
            Plugin::State(_) => "State",
            Plugin::Status(_) => "Status",
            Plugin::Command(_) => "Command",
            Plugin::Censor(_) => "Censor",
            Plugin::Drop => "Drop",
            Plugin::Dedupe(_) => "Dedupe",
            Plugin::Stale(_) => "Stale",
        }
    }

    /// The queue, connector or table the plugin delivers to, with its config key.
    pub(crate) fn reference(&self) -> Option<(ReferenceKind, &str, &'static str)> {
        match self {
            Plugin::MessageQueue(p) => Some((ReferenceKind::Queue, p.queue(), p.key())),
            Plugin::Censor(p) => Some((ReferenceKind::Queue, p.review_queue(), "review_queue")),
            Plugin::Send(p) => Some((ReferenceKind::Connector, p.connector(), "connector")),
            Plugin::Sql(p) => Some((ReferenceKind::Table, p.table(), p.key())),
            _ => None,
        }
    }

    /// Applies the plugin to the message.
    pub(crate) async fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        match self {
            Plugin::SetField(p) => p.apply(message),
            Plugin::DeleteField(p) => p.apply(message),
            Plugin::CopyField(p) => p.apply(message),
            Plugin::HashLookup(p) => p.apply(message),
            Plugin::Split(p) => p.apply(message),
            Plugin::Template(p) => p.apply(message),
            Plugin::CaptureData(p) => p.apply(message),
            Plugin::TransformField(p) => p.apply(message),
            Plugin::HtmlStrip(p) => p.apply(message),
            Plugin::MessageQueue(p) => p.apply(message, effects).await,
            Plugin::Sql(p) => p.apply(message, effects).await,
            Plugin::Send(p) => p.apply(message, effects).await,
            Plugin::Console(p) => p.apply(message, effects),
            Plugin::State(p) => p.apply(message, effects).await,
            Plugin::Status(p) => p.apply(message, effects).await,
            Plugin::Command(p) => p.apply(message, effects).await,
            Plugin::Censor(p) => p.apply(message, effects).await,
            Plugin::Drop => Ok(Flow::Drop),
            Plugin::Dedupe(p) => p.apply(message, effects),
            Plugin::Stale(p) => p.apply(message, effects),
        }
    }
}

fn unknown_plugin(name: &str, site: &PluginSite<'_>) -> RuleError {
    let suggestion = PLUGIN_NAMES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .map(|known| format!(" (did you mean '{known}'?)"))
        .unwrap_or_default();
    RuleError {
        file: site.file.map(Path::to_path_buf),
        path: format!("{}.plugin", site.rule_path),
        message: format!("unknown plugin '{name}'{suggestion}; known plugins: {}", PLUGIN_NAMES.join(", ")),
    }
}

/// A top-level field's value, if the message has it.
fn field<'m>(message: &'m Message, name: &str) -> Option<&'m Value> {
    message.get(name)
}

/// A field that must be there, or the error text saying it is not.
fn required<'m>(message: &'m Message, name: &str) -> Result<&'m Value, String> {
    message.get(name).ok_or_else(|| format!("the message has no field '{name}'"))
}
