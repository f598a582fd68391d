//! The compiled rule tree and the walk that runs a message through it.
//!
//! Rules live in one vector, in the order they were written (depth first), each with
//! the index of its first child, next sibling and parent. The walk needs no stack and
//! allocates nothing of its own beyond the outcome's list of fired rules: going
//! "into" a rule moves to its first child, and the end of a list moves back to the
//! owner to run its plugin (which is how wubot ran children first, then the plugin).

use std::path::PathBuf;

use flotilla_core::Message;
use flotilla_core::condition::Condition;
use flotilla_core::message::{LAST_RULE, is_truthy};
use serde_json::Value;

use crate::effects::Effects;
use crate::plugins::{Flow, Plugin, ReferenceKind};

/// The field plugin errors are written to.
pub const ERRMSG: &str = "errmsg";

/// A rule tree ready to run messages through. Cheap to share: run it from many tasks
/// (through an `Arc`), but run the messages of one stream one after another, so
/// State and Status see them in order.
#[derive(Debug)]
pub struct RuleTree {
    rules: Vec<CompiledRule>,
    first: Option<u32>,
    references: Vec<Reference>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) name: String,
    /// `host:name`, as pushed onto `wubot_rulelog`.
    pub(crate) log_entry: String,
    pub(crate) condition: Option<Condition>,
    pub(crate) plugin: Option<Plugin>,
    pub(crate) last_rule: bool,
    pub(crate) first_child: Option<u32>,
    pub(crate) next_sibling: Option<u32>,
    pub(crate) parent: Option<u32>,
}

/// A queue, connector or table a rule delivers to, for the node to check it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// What kind of thing is named.
    pub kind: ReferenceKind,
    /// Its name.
    pub name: String,
    /// The rules file of the rule, `None` for the main rules.
    pub file: Option<PathBuf>,
    /// The dotted path of the config value that names it.
    pub path: String,
}

/// What running one message through the tree gave.
#[derive(Debug, Default)]
pub struct RunOutcome<'t> {
    /// The message after every rule, or `None` when a plugin dropped it.
    pub message: Option<Message>,
    /// The `host:rule` entry of the rule whose plugin dropped the message.
    pub dropped_by: Option<&'t str>,
    /// The `host:rule` entries of the rules that fired, in order (also appended to the
    /// message's `wubot_rulelog`).
    pub fired: Vec<&'t str>,
    /// The plugins that failed (each failure is also in the message's `errmsg`).
    pub failures: Vec<PluginFailure<'t>>,
    /// With [`RuleTree::run_traced`]: one step per plugin run, in order.
    pub trace: Vec<TraceStep<'t>>,
}

/// A plugin that failed on a message.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginFailure<'t> {
    /// The rule's `host:rule` entry.
    pub rule: &'t str,
    /// The plugin's name.
    pub plugin: &'static str,
    /// What went wrong.
    pub error: String,
}

/// The message right after one plugin ran (for `flotilla rules test`).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceStep<'t> {
    /// The rule's `host:rule` entry.
    pub rule: &'t str,
    /// The plugin's name.
    pub plugin: &'static str,
    /// The message after the plugin, `None` if it dropped the message.
    pub message: Option<Message>,
    /// The plugin's error, if it failed.
    pub error: Option<String>,
}

impl RuleTree {
    pub(crate) fn new(rules: Vec<CompiledRule>, first: Option<u32>, references: Vec<Reference>) -> RuleTree {
        RuleTree { rules, first, references }
    }

    /// A tree with no rules: messages pass unchanged.
    pub fn empty() -> RuleTree {
        RuleTree { rules: Vec::new(), first: None, references: Vec::new() }
    }

    /// How many rules the tree has, at every level, included files counted.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the tree has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The queues, connectors and tables the rules deliver to.
    pub fn references(&self) -> &[Reference] {
        &self.references
    }

    /// Whether any rule uses the plugin (e.g. to decide whether Command needs a shell).
    pub fn uses_plugin(&self, name: &str) -> bool {
        self.rules.iter().any(|r| r.plugin.as_ref().is_some_and(|p| p.name() == name))
    }

    /// Runs the message through the rules.
    pub async fn run(&self, message: Message, effects: &dyn Effects) -> RunOutcome<'_> {
        self.walk(message, effects, false).await
    }

    /// Runs the message through the rules, keeping a copy of the message after each
    /// plugin in [`RunOutcome::trace`].
    pub async fn run_traced(&self, message: Message, effects: &dyn Effects) -> RunOutcome<'_> {
        self.walk(message, effects, true).await
    }

    async fn walk(&self, mut message: Message, effects: &dyn Effects, trace: bool) -> RunOutcome<'_> {
        let mut outcome = RunOutcome::default();
        let mut next = self.first;
        // The rule whose children are being walked (None: the top-level list).
        let mut owner: Option<u32> = None;
        loop {
            // wubot checked `last_rule` before every rule, at every level.
            let stopped = message.get(LAST_RULE).is_some_and(is_truthy);
            match next.filter(|_| !stopped) {
                Some(index) => {
                    let rule = &self.rules[index as usize];
                    next = rule.next_sibling;
                    if rule.condition.as_ref().is_some_and(|c| !c.eval(&message)) {
                        continue;
                    }
                    message.push_rulelog(rule.log_entry.clone());
                    outcome.fired.push(&rule.log_entry);
                    if let Some(child) = rule.first_child {
                        owner = Some(index);
                        next = Some(child);
                        continue;
                    }
                    if self.finish(rule, &mut message, effects, &mut outcome, trace).await == Flow::Drop {
                        return outcome;
                    }
                }
                None => {
                    // The end of a list (or last_rule is set): the rule that owns the
                    // list has run its children, so now its plugin runs.
                    let Some(index) = owner else { break };
                    let rule = &self.rules[index as usize];
                    if self.finish(rule, &mut message, effects, &mut outcome, trace).await == Flow::Drop {
                        return outcome;
                    }
                    next = rule.next_sibling;
                    owner = rule.parent;
                }
            }
        }
        outcome.message = Some(message);
        outcome
    }

    /// Runs a fired rule's plugin, then applies its `last_rule`.
    async fn finish<'t>(
        &'t self,
        rule: &'t CompiledRule,
        message: &mut Message,
        effects: &dyn Effects,
        outcome: &mut RunOutcome<'t>,
        trace: bool,
    ) -> Flow {
        if let Some(plugin) = &rule.plugin {
            let result = plugin.apply(message, effects).await;
            let error = match result {
                Ok(Flow::Drop) => {
                    outcome.dropped_by = Some(&rule.log_entry);
                    if trace {
                        outcome.trace.push(TraceStep {
                            rule: &rule.log_entry,
                            plugin: plugin.name(),
                            message: None,
                            error: None,
                        });
                    }
                    return Flow::Drop;
                }
                Ok(Flow::Keep) => None,
                Err(error) => {
                    record_error(message, &format!("{} in rule '{}': {error}", plugin.name(), rule.name));
                    outcome.failures.push(PluginFailure {
                        rule: &rule.log_entry,
                        plugin: plugin.name(),
                        error: error.clone(),
                    });
                    Some(error)
                }
            };
            if trace {
                outcome.trace.push(TraceStep {
                    rule: &rule.log_entry,
                    plugin: plugin.name(),
                    message: Some(message.clone()),
                    error,
                });
            }
        }
        if rule.last_rule {
            message.set(LAST_RULE, 1);
        }
        Flow::Keep
    }
}

/// Adds an error to the message's `errmsg`, after any error already there.
fn record_error(message: &mut Message, text: &str) {
    match message.fields_mut().get_mut(ERRMSG) {
        Some(Value::String(existing)) if !existing.is_empty() => {
            existing.push_str("; ");
            existing.push_str(text);
        }
        _ => message.set(ERRMSG, text),
    }
}
