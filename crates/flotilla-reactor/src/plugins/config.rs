//! Reading a plugin's `config` map: typed getters that record every problem with its
//! dotted path, and a final check that reports each key no getter asked for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_core::message::json_kind;
use flotilla_core::parse_duration;
use serde_json::{Map, Value};

use super::PluginSite;
use crate::compile::RuleError;

/// A plugin's configuration being read.
pub(crate) struct PluginConfig<'a> {
    plugin: &'a str,
    map: Option<&'a Map<String, Value>>,
    path: String,
    file: Option<&'a Path>,
    dir: &'a Path,
    site: &'a PluginSite<'a>,
    accepted: Vec<&'static str>,
    unsupported: Vec<(&'static str, &'static str)>,
    errors: Vec<RuleError>,
}

impl<'a> PluginConfig<'a> {
    pub(crate) fn new(plugin: &'a str, config: Option<&'a Value>, site: &'a PluginSite<'a>) -> PluginConfig<'a> {
        let mut reader = PluginConfig {
            plugin,
            map: None,
            path: format!("{}.config", site.rule_path),
            file: site.file,
            dir: site.dir,
            site,
            accepted: Vec::new(),
            unsupported: Vec::new(),
            errors: Vec::new(),
        };
        match config {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => reader.map = Some(map),
            Some(other) => {
                let message = format!("the config of {plugin} must be a map of keys, not {}", json_kind(other));
                reader.error_here(message);
            }
        }
        reader
    }

    /// Whether the config is a map (or absent, which counts as an empty map).
    pub(crate) fn is_map(&self) -> bool {
        self.errors.is_empty()
    }

    /// The raw value of a key (null included), marking the key as known.
    pub(crate) fn value(&mut self, key: &'static str) -> Option<&'a Value> {
        self.accepted.push(key);
        self.map.and_then(|map| map.get(key))
    }

    /// Whether the config has a key at all.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.is_some_and(|map| map.contains_key(key))
    }

    /// A text value. Numbers are taken as their text (YAML types `2024` as a number).
    pub(crate) fn string(&mut self, key: &'static str) -> Option<String> {
        match self.value(key)? {
            Value::String(text) => Some(text.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.wrong_type(key, "text", other);
                None
            }
        }
    }

    /// A text value that must be there and must not be empty.
    pub(crate) fn required_string(&mut self, key: &'static str) -> Option<String> {
        let value = self.string(key);
        match &value {
            None if !self.has(key) => self.missing(key),
            Some(text) if text.is_empty() => {
                self.error(key, format!("'{key}' must not be empty"));
                return None;
            }
            _ => {}
        }
        value
    }

    /// A yes/no value: `true`/`false`, wubot's `1`/`0`, or `yes`/`no` (SPEC §3).
    pub(crate) fn flag(&mut self, key: &'static str) -> bool {
        match self.value(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) if n.as_u64() == Some(0) => false,
            Some(Value::Number(n)) if n.as_u64() == Some(1) => true,
            Some(Value::String(s)) if matches!(s.as_str(), "yes" | "Yes" | "YES") => true,
            Some(Value::String(s)) if matches!(s.as_str(), "no" | "No" | "NO") => false,
            Some(other) => {
                self.wrong_type(key, "true or false (or 1/0, yes/no)", other);
                false
            }
        }
    }

    /// A duration: a number of seconds, or text such as `30s`, `15m`, `1h30m`.
    pub(crate) fn duration(&mut self, key: &'static str) -> Option<Duration> {
        match self.value(key)? {
            Value::Number(n) => match n.as_f64() {
                Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Some(Duration::from_secs_f64(seconds)),
                _ => {
                    self.error(key, format!("'{key}' must be a number of seconds of at least 0, not {n}"));
                    None
                }
            },
            Value::String(text) => match parse_duration(text) {
                Ok(duration) => Some(duration),
                Err(e) => {
                    self.error(key, e.to_string());
                    None
                }
            },
            other => {
                self.wrong_type(key, "a duration (seconds, or text such as 30s, 15m, 1h)", other);
                None
            }
        }
    }

    /// A number.
    pub(crate) fn number(&mut self, key: &'static str) -> Option<f64> {
        match self.value(key)? {
            Value::Number(n) => n.as_f64(),
            other => {
                self.wrong_type(key, "a number", other);
                None
            }
        }
    }

    /// A whole number of at least 1.
    pub(crate) fn positive_integer(&mut self, key: &'static str) -> Option<u64> {
        match self.value(key)? {
            Value::Number(n) if n.as_u64().is_some_and(|n| n >= 1) => n.as_u64(),
            other => {
                self.wrong_type(key, "a whole number of at least 1", other);
                None
            }
        }
    }

    /// A list of texts.
    pub(crate) fn string_list(&mut self, key: &'static str) -> Option<Vec<String>> {
        match self.value(key)? {
            Value::Array(items) => {
                let mut texts = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(text) => texts.push(text.clone()),
                        Value::Number(n) => texts.push(n.to_string()),
                        other => {
                            let message = format!("expected text, found {}", json_kind(other));
                            self.errors.push(self.rule_error(format!("{}.{key}[{i}]", self.path), message));
                        }
                    }
                }
                Some(texts)
            }
            other => {
                self.wrong_type(key, "a list of texts", other);
                None
            }
        }
    }

    /// A map.
    pub(crate) fn object(&mut self, key: &'static str) -> Option<&'a Map<String, Value>> {
        match self.value(key)? {
            Value::Object(map) => Some(map),
            other => {
                self.wrong_type(key, "a map", other);
                None
            }
        }
    }

    /// A key wubot knew that Flotilla does not support, with the reason to show.
    pub(crate) fn unsupported(&mut self, key: &'static str, reason: &'static str) {
        self.unsupported.push((key, reason));
    }

    /// Reads a file named in the config, relative to the rules' directory.
    pub(crate) fn read_file(&mut self, key: &'static str, name: &str) -> Option<String> {
        let path = self.resolve(name);
        match self.site.loader.read_text(&path) {
            Ok(text) => Some(text),
            Err(e) => {
                self.error(key, format!("cannot read '{}': {e}", path.display()));
                None
            }
        }
    }

    fn resolve(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// An error about one key.
    pub(crate) fn error(&mut self, key: &str, message: String) {
        let path = format!("{}.{key}", self.path);
        self.errors.push(self.rule_error(path, message));
    }

    /// An error about the config as a whole.
    pub(crate) fn error_here(&mut self, message: String) {
        self.errors.push(self.rule_error(self.path.clone(), message));
    }

    /// A required key is absent.
    pub(crate) fn missing(&mut self, key: &str) {
        let message = format!("{} needs '{key}' in its config", self.plugin);
        self.error_here(message);
    }

    fn wrong_type(&mut self, key: &str, expected: &str, found: &Value) {
        self.error(key, format!("'{key}' must be {expected}, not {}", json_kind(found)));
    }

    fn rule_error(&self, path: String, message: String) -> RuleError {
        RuleError { file: self.file.map(Path::to_path_buf), path, message }
    }

    /// Reports unknown keys and returns the plugin if nothing was wrong.
    pub(crate) fn finish<T>(mut self, plugin: Option<T>) -> Result<T, Vec<RuleError>> {
        if let Some(map) = self.map {
            for key in map.keys() {
                if self.accepted.contains(&key.as_str()) {
                    continue;
                }
                let message = match self.unsupported.iter().find(|(k, _)| k == key) {
                    Some((_, reason)) => format!("'{key}' is not supported by {}: {reason}", self.plugin),
                    None if self.accepted.is_empty() => {
                        format!("unknown key '{key}': {} takes no config", self.plugin)
                    }
                    None => format!(
                        "unknown key '{key}' for {} (expected one of: {})",
                        self.plugin,
                        self.accepted.join(", ")
                    ),
                };
                self.error(key, message);
            }
        }
        match plugin {
            Some(plugin) if self.errors.is_empty() => Ok(plugin),
            _ if !self.errors.is_empty() => Err(self.errors),
            _ => Err(vec![self.rule_error(self.path.clone(), format!("invalid config for {}", self.plugin))]),
        }
    }
}
