//! Flotilla's reactor: wubot's rule trees, compiled once and run on every message.
//!
//! # Rules
//!
//! A rule ([`RuleConfig`]) has a `name` (required), and optionally a `condition` (the
//! language of [`flotilla_core::condition`]), a `plugin` with its `config`, child
//! `rules`, a `rulesfile` (more child rules, from a YAML file with a top-level
//! `rules:` list) and `last_rule`. [`compile`] checks all of it at once and reports
//! every problem with its path ([`RuleError`]); a condition wubot would have logged as
//! unparseable is an error here, not a rule that never fires.
//!
//! # How a message runs (wubot's `App::Wubot::Reactor::react`, exactly)
//!
//! Rules run in the order written. For each rule of a list:
//!
//! 1. If the message's `last_rule` field is truthy, the list stops here (checked before
//!    every rule, at every level).
//! 2. If the rule has a condition and it does not hold, go on with the next rule. A
//!    rule without a condition always fires.
//! 3. The rule fires: `host:name` is appended to the message's `wubot_rulelog`.
//! 4. Its child `rules` run (the same procedure, on the same message), then the rules
//!    of its `rulesfile`.
//! 5. Its plugin runs, and may change the message or drop it (a dropped message goes
//!    no further: nothing else runs).
//! 6. If the rule has `last_rule: true`, the message's `last_rule` is set to 1.
//!
//! So a child setting `last_rule` stops its later siblings and every later rule at
//! every level, but the plugins of the rules it sits in (already entered, step 5 still
//! to come) still run, as in wubot. A message that arrives with `last_rule` already
//! set fires nothing.
//!
//! A plugin that fails at run time (a missing field, a template naming a field the
//! message lacks, a command timing out, an effect failing) appends
//! `"<Plugin> in rule '<name>': <what>"` to the message's `errmsg` (after `"; "` if it
//! already holds text) and the run goes on; [`RunOutcome::failures`] lists them too.
//!
//! # Plugins
//!
//! wubot's names and behaviour: SetField, DeleteField, CopyField, Template,
//! CaptureData, TransformField, HashLookup, Split, HTMLStrip, MessageQueue, SQL (alias
//! SQLite), Console, State, Status, Command; and Flotilla's own: Send, Drop, Dedupe,
//! Stale. Each documents its keys on its type in `plugins/`; [`PLUGIN_NAMES`] lists
//! them. Every plugin checks its `config` when the rules are compiled: unknown keys,
//! missing keys, wrong types, invalid regexes and templates are [`RuleError`]s.
//!
//! # Effects
//!
//! Plugins that reach outside the message do it through [`Effects`], which the node
//! implements (bus, store, connectors, console, [`run_shell_command`], state that
//! survives restarts, the clock). [`RecordingEffects`] delivers nothing and records
//! everything: tests and `flotilla rules test` use it.
//!
//! # Example
//!
//! ```
//! use std::path::Path;
//! use std::time::UNIX_EPOCH;
//! use flotilla_core::Message;
//! use flotilla_reactor::{CompileContext, NoFiles, RecordingEffects, RuleConfig, compile};
//! use flotilla_reactor::serde_json::json;
//!
//! let rules: Vec<RuleConfig> = flotilla_reactor::serde_json::from_value(json!([
//!     {"name": "alerts", "condition": "status equals CRITICAL", "rules": [
//!         {"name": "colour", "plugin": "SetField", "config": {"field": "color", "value": "red"}},
//!         {"name": "stop", "last_rule": true},
//!     ]},
//!     {"name": "never reached for alerts", "plugin": "Drop"},
//! ]))
//! .unwrap();
//! let ctx = CompileContext { host: "alpha", base_dir: Path::new("."), loader: &NoFiles };
//! let tree = compile(&rules, &ctx).unwrap();
//!
//! let effects = RecordingEffects::new(UNIX_EPOCH);
//! let message = Message::from_value(json!({"status": "CRITICAL"})).unwrap();
//! let outcome = futures_lite_block_on(tree.run(message, &effects));
//! let message = outcome.message.unwrap();
//! assert_eq!(message.get("color"), Some(&json!("red")));
//! assert_eq!(outcome.fired, ["alpha:alerts", "alpha:colour", "alpha:stop"]);
//! # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod command;
mod compile;
mod config;
mod effects;
mod plugins;
mod recording;
mod tree;

pub use command::{OUTPUT_LIMIT, run_shell_command};
pub use compile::{CompileContext, NoFiles, RuleError, RulesLoader, compile};
pub use config::RuleConfig;
pub use effects::{CommandOutput, ConsoleLine, EffectError, Effects};
pub use plugins::{PLUGIN_NAMES, ReferenceKind};
pub use recording::{Effect, RecordingEffects};
pub use tree::{ERRMSG, PluginFailure, Reference, RuleTree, RunOutcome, TraceStep, Trail};

/// The JSON crate the rule configuration ([`RuleConfig::config`]) is written in.
pub use serde_json;

/// The state namespaces State and Status remember under (see [`Effects::load_state`]).
pub mod state_namespaces {
    pub use crate::plugins::{STATE_NAMESPACE, STATUS_NAMESPACE};
}
