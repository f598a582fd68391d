//! Plugins that edit fields: SetField, DeleteField, CopyField, HashLookup and Split.
//! Field names are top-level names, as in wubot (a name with dots is one field).

use flotilla_core::Message;
use flotilla_core::message::{is_truthy, value_text};
use regex::Regex;
use serde_json::{Map, Value};

use super::{Flow, PluginConfig, field, required};

/// SetField: `field` + `value`, or `set: {field: value, …}`; with `no_override`, a
/// field that is already truthy is left alone.
#[derive(Debug)]
pub(crate) struct SetField {
    assignments: Vec<(String, Value)>,
    no_override: bool,
}

impl SetField {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<SetField> {
        let field = cfg.string("field");
        let value = cfg.value("value");
        let set = cfg.object("set");
        let no_override = cfg.flag("no_override");
        let assignments = match (field, set) {
            (Some(_), Some(_)) => {
                cfg.error_here("SetField takes either 'field' and 'value' or 'set', not both".into());
                return None;
            }
            (Some(field), None) => match value {
                Some(value) => vec![(field, value.clone())],
                None => {
                    cfg.missing("value");
                    return None;
                }
            },
            (None, Some(set)) => {
                if value.is_some() {
                    cfg.error("value", "'value' goes with 'field', not with 'set'".into());
                }
                set.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            (None, None) => {
                if !cfg.has("field") && !cfg.has("set") {
                    cfg.error_here("SetField needs 'field' and 'value', or 'set' in its config".into());
                }
                return None;
            }
        };
        Some(SetField { assignments, no_override })
    }

    pub(crate) fn apply(&self, message: &mut Message) -> Result<Flow, String> {
        for (name, value) in &self.assignments {
            if self.no_override && field(message, name).is_some_and(is_truthy) {
                continue;
            }
            message.set(name.as_str(), value.clone());
        }
        Ok(Flow::Keep)
    }
}

/// DeleteField: removes `field`.
#[derive(Debug)]
pub(crate) struct DeleteField {
    field: String,
}

impl DeleteField {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<DeleteField> {
        cfg.required_string("field").map(|field| DeleteField { field })
    }

    pub(crate) fn apply(&self, message: &mut Message) -> Result<Flow, String> {
        message.remove(&self.field);
        Ok(Flow::Keep)
    }
}

/// A field named in the config, or named by the text of another field.
#[derive(Debug)]
enum FieldName {
    Fixed(String),
    FromField(String),
}

impl FieldName {
    fn resolve<'m>(&'m self, message: &'m Message) -> Result<std::borrow::Cow<'m, str>, String> {
        match self {
            FieldName::Fixed(name) => Ok(name.as_str().into()),
            FieldName::FromField(holder) => match field(message, holder) {
                Some(value) if is_truthy(value) => Ok(value_text(value)),
                _ => Err(format!("the message has no field '{holder}' to take a field name from")),
            },
        }
    }
}

/// CopyField: copies `source_field` (or the field named by `source_field_name`) to
/// `target_field` (or the field named by `target_field_name`).
#[derive(Debug)]
pub(crate) struct CopyField {
    source: FieldName,
    target: FieldName,
}

impl CopyField {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<CopyField> {
        let source = one_of(cfg, "source_field", "source_field_name");
        let target = one_of(cfg, "target_field", "target_field_name");
        Some(CopyField { source: source?, target: target? })
    }

    pub(crate) fn apply(&self, message: &mut Message) -> Result<Flow, String> {
        let source = self.source.resolve(message)?;
        let value = required(message, &source)?.clone();
        let target = self.target.resolve(message)?.into_owned();
        message.set(target, value);
        Ok(Flow::Keep)
    }
}

/// Exactly one of a fixed field name and a field holding the name.
fn one_of(cfg: &mut PluginConfig<'_>, fixed: &'static str, indirect: &'static str) -> Option<FieldName> {
    let a = cfg.string(fixed);
    let b = cfg.string(indirect);
    match (a, b) {
        (Some(name), None) => Some(FieldName::Fixed(name)),
        (None, Some(holder)) => Some(FieldName::FromField(holder)),
        (Some(_), Some(_)) => {
            cfg.error_here(format!("use either '{fixed}' or '{indirect}', not both"));
            None
        }
        (None, None) => {
            if !cfg.has(fixed) && !cfg.has(indirect) {
                cfg.error_here(format!("CopyField needs '{fixed}' or '{indirect}' in its config"));
            }
            None
        }
    }
}

/// HashLookup: when `source_field` is truthy and its text is a key of `lookup`, sets
/// `target_field` to that key's value.
#[derive(Debug)]
pub(crate) struct HashLookup {
    source: String,
    target: String,
    lookup: Map<String, Value>,
}

impl HashLookup {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<HashLookup> {
        let source = cfg.required_string("source_field");
        let target = cfg.required_string("target_field");
        let lookup = cfg.object("lookup").cloned();
        if lookup.is_none() && !cfg.has("lookup") {
            cfg.missing("lookup");
        }
        Some(HashLookup { source: source?, target: target?, lookup: lookup? })
    }

    pub(crate) fn apply(&self, message: &mut Message) -> Result<Flow, String> {
        let Some(key) = field(message, &self.source).filter(|v| is_truthy(v)) else {
            return Ok(Flow::Keep);
        };
        if let Some(value) = self.lookup.get(value_text(key).as_ref()) {
            message.set(self.target.as_str(), value.clone());
        }
        Ok(Flow::Keep)
    }
}

/// Split: splits `source_field` at commas (and the blanks around them) into
/// `target_fields`, filled from the end as wubot did: with more parts than fields the
/// first parts are dropped, with fewer the first fields become null.
#[derive(Debug)]
pub(crate) struct Split {
    source: String,
    targets: Vec<String>,
    separator: Regex,
}

impl Split {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<Split> {
        let source = cfg.required_string("source_field");
        let targets = cfg.string_list("target_fields");
        if targets.is_none() && !cfg.has("target_fields") {
            cfg.missing("target_fields");
        }
        let separator = Regex::new(r"\s*,\s*").expect("a constant, valid regex");
        Some(Split { source: source?, targets: targets?, separator })
    }

    pub(crate) fn apply(&self, message: &mut Message) -> Result<Flow, String> {
        let text = value_text(required(message, &self.source)?).into_owned();
        let mut parts: Vec<&str> = self.separator.split(&text).collect();
        // Perl's split drops trailing empty fields.
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        for target in self.targets.iter().rev() {
            let value = parts.pop().map_or(Value::Null, Value::from);
            message.set(target.as_str(), value);
        }
        Ok(Flow::Keep)
    }
}
