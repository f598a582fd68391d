//! The rule configuration as written in YAML (`rules:` in `reactor.yaml`, a monitor's
//! `react:`, or a `rulesfile`). Plain data; [`compile`](crate::compile) checks it.

use serde::Deserialize;
use serde_json::Value;

/// One rule, exactly wubot's keys.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Required; shows in `wubot_rulelog` as `host:name`. (Defaulted here so a missing
    /// name is reported by `compile` together with every other error.)
    #[serde(default)]
    pub name: String,
    /// The rule fires only when this holds; no condition means always.
    pub condition: Option<String>,
    /// The plugin to run when the rule fires, after its children.
    pub plugin: Option<String>,
    /// The plugin's configuration.
    pub config: Option<Value>,
    /// Child rules, run (in order) before this rule's plugin when it fires.
    pub rules: Option<Vec<RuleConfig>>,
    /// When the rule fires, mark the message so no further rule fires.
    pub last_rule: Option<bool>,
    /// A YAML file with a top-level `rules:` list, run after `rules` when the rule
    /// fires. A relative path is relative to the directory of the including file.
    pub rulesfile: Option<String>,
}
