//! The compiled rule tree and the walk that runs a message through it.
//!
//! Rules live in one vector, in the order they were written (depth first), each with
//! the index of its first child, next sibling and parent. The walk needs no stack and
//! allocates nothing of its own beyond the outcome's list of fired rules: going
//! "into" a rule moves to its first child, and the end of a list moves back to the
//! owner to run its plugin (which is how wubot ran children first, then the plugin).

use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;

use flotilla_core::Message;
use flotilla_core::condition::{Condition, find_field};
use flotilla_core::message::{LAST_RULE, RULELOG, is_truthy};
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
    pub fired: Trail<'t>,
    /// The plugins that failed (each failure is also in the message's `errmsg`).
    pub failures: Vec<PluginFailure<'t>>,
    /// With [`RuleTree::run_traced`]: one step per plugin run, in order.
    pub trace: Vec<TraceStep<'t>>,
}

/// The `host:rule` entries of the rules that fired, in order; a slice of them. The
/// first few are kept inline, so a run allocates nothing for them.
#[derive(Clone, Default)]
pub struct Trail<'t> {
    inline: [&'t str; TRAIL_INLINE],
    len: usize,
    spilled: Vec<&'t str>,
}

const TRAIL_INLINE: usize = 16;

impl<'t> Trail<'t> {
    fn push(&mut self, entry: &'t str) {
        if self.spilled.is_empty() && self.len < TRAIL_INLINE {
            self.inline[self.len] = entry;
            self.len += 1;
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend_from_slice(&self.inline[..self.len]);
            }
            self.spilled.push(entry);
        }
    }
}

impl<'t> Deref for Trail<'t> {
    type Target = [&'t str];

    fn deref(&self) -> &[&'t str] {
        if self.spilled.is_empty() { &self.inline[..self.len] } else { &self.spilled }
    }
}

impl fmt::Debug for Trail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<const N: usize> PartialEq<[&str; N]> for Trail<'_> {
    fn eq(&self, other: &[&str; N]) -> bool {
        **self == other[..]
    }
}

impl PartialEq<[&str]> for Trail<'_> {
    fn eq(&self, other: &[&str]) -> bool {
        **self == *other
    }
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
        // wubot checked `last_rule` before every rule, at every level. Only a plugin or
        // a rule's own `last_rule` can change it, so it is read again only after those.
        let mut stopped = last_rule_set(&message);
        loop {
            match next.filter(|_| !stopped) {
                Some(index) => {
                    let rule = &self.rules[index as usize];
                    next = rule.next_sibling;
                    if rule.condition.as_ref().is_some_and(|c| !c.eval(&message)) {
                        continue;
                    }
                    push_rulelog(&mut message, &rule.log_entry);
                    outcome.fired.push(&rule.log_entry);
                    if let Some(child) = rule.first_child {
                        owner = Some(index);
                        next = Some(child);
                        continue;
                    }
                    match self.finish(rule, &mut message, effects, &mut outcome, trace).await {
                        Finished::Dropped => return outcome,
                        Finished::Changed => stopped = last_rule_set(&message),
                        Finished::Unchanged => {}
                    }
                }
                None => {
                    // The end of a list (or last_rule is set): the rule that owns the
                    // list has run its children, so now its plugin runs.
                    let Some(index) = owner else { break };
                    let rule = &self.rules[index as usize];
                    match self.finish(rule, &mut message, effects, &mut outcome, trace).await {
                        Finished::Dropped => return outcome,
                        Finished::Changed => stopped = last_rule_set(&message),
                        Finished::Unchanged => {}
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
    ) -> Finished {
        if rule.plugin.is_none() && !rule.last_rule {
            return Finished::Unchanged;
        }
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
                    return Finished::Dropped;
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
        Finished::Changed
    }
}

/// What finishing a fired rule did to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    /// Nothing ran: the message is as it was.
    Unchanged,
    /// A plugin ran or `last_rule` was set: the message may have changed.
    Changed,
    /// A plugin dropped the message.
    Dropped,
}

/// Whether the message's `last_rule` is set (truthy).
fn last_rule_set(message: &Message) -> bool {
    find_field(message.fields(), LAST_RULE).is_some_and(is_truthy)
}

/// Appends `host:rule` to `wubot_rulelog` (as [`Message::push_rulelog`], with room for
/// a few more entries so later rules do not grow it one by one).
fn push_rulelog(message: &mut Message, entry: &str) {
    let fields = message.fields_mut();
    let existing = if fields.len() <= SMALL_MAP {
        fields.iter_mut().find_map(|(key, value)| (key.len() == RULELOG.len() && key == RULELOG).then_some(value))
    } else {
        fields.get_mut(RULELOG)
    };
    match existing {
        Some(Value::Array(items)) => items.push(Value::from(entry)),
        _ => {
            let mut items = Vec::with_capacity(8);
            items.push(Value::from(entry));
            fields.insert(RULELOG.into(), Value::Array(items));
        }
    }
}

/// Up to how many fields a scan is faster than a hash lookup (as in `find_field`).
const SMALL_MAP: usize = 16;

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
