//! The reactor's integration tests: rule order, compile errors, and every plugin
//! (including how each one fails).

mod compile_errors;
mod plugins;
mod rule_order;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_core::Message;
use flotilla_reactor::serde_json::{self, Value};
use flotilla_reactor::{CompileContext, RecordingEffects, RuleConfig, RuleError, RuleTree, RulesLoader, compile};

/// The fixed "now" of the tests: 2023-11-14 22:13:20 UTC.
pub const NOW: u64 = 1_700_000_000;

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

pub fn effects() -> RecordingEffects {
    RecordingEffects::new(now())
}

/// Rules files and template files in memory.
#[derive(Default)]
pub struct Files {
    pub rules: HashMap<PathBuf, Value>,
    pub texts: HashMap<PathBuf, String>,
}

impl RulesLoader for Files {
    fn load_rules(&self, path: &Path) -> Result<Vec<RuleConfig>, String> {
        let value = self.rules.get(path).ok_or_else(|| "no such file".to_string())?;
        serde_json::from_value(value.clone()).map_err(|e| e.to_string())
    }

    fn read_text(&self, path: &Path) -> Result<String, String> {
        self.texts.get(path).cloned().ok_or_else(|| "no such file".to_string())
    }
}

pub fn rules(value: Value) -> Vec<RuleConfig> {
    serde_json::from_value(value).expect("test rules are well-formed")
}

pub fn try_tree_with(value: Value, files: &Files) -> Result<RuleTree, Vec<RuleError>> {
    let ctx = CompileContext { host: "alpha", base_dir: Path::new("/etc/flotilla"), loader: files };
    compile(&rules(value), &ctx)
}

#[track_caller]
pub fn tree(value: Value) -> RuleTree {
    tree_with(value, &Files::default())
}

#[track_caller]
pub fn tree_with(value: Value, files: &Files) -> RuleTree {
    match try_tree_with(value, files) {
        Ok(tree) => tree,
        Err(errors) => panic!("rules did not compile: {errors:#?}"),
    }
}

pub fn message(value: Value) -> Message {
    Message::from_value(value).expect("test messages are objects")
}

/// Runs one message through a one-rule tree with the plugin and config, returning
/// the message (panicking if it was dropped).
pub async fn apply(plugin: &str, config: Value, input: Value, effects: &RecordingEffects) -> Message {
    let tree = tree(serde_json::json!([{"name": "r", "plugin": plugin, "config": config}]));
    tree.run(message(input), effects).await.message.expect("the plugin keeps the message")
}

/// The errors of compiling a one-rule tree with the plugin and config.
pub fn config_errors(plugin: &str, config: Value) -> Vec<String> {
    match try_tree_with(serde_json::json!([{"name": "r", "plugin": plugin, "config": config}]), &Files::default()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}
