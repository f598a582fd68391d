//! The message: a JSON object whose reserved *envelope* fields (SPEC §2) say where it
//! came from and where it has been, and whose other fields are the body.
//!
//! A message is plain data. It is given its `id`, `lastupdate` and `hostname` once, when
//! it first enters a bus ([`Message::stamp`]), and keeps them across hosts.

use serde_json::{Map, Value};

use crate::ulid::Ulid;

/// Envelope field: unique id (ULID text).
pub const ID: &str = "id";
/// Envelope field: what produced the message (`<connector>` or `<Plugin>-<instance>`).
pub const KEY: &str = "key";
/// Envelope field: the connector type that produced the message.
pub const PLUGIN: &str = "plugin";
/// Envelope field: when the message was generated, Unix seconds.
pub const LASTUPDATE: &str = "lastupdate";
/// Envelope field: short host name of the node where the message was generated.
pub const HOSTNAME: &str = "hostname";
/// Envelope field: when true, forwarders never send the message to another host.
pub const NOFORWARD: &str = "noforward";
/// Envelope field: node names the message has passed through, oldest first.
pub const PATH: &str = "path";
/// Envelope field: set by a rule with `last_rule: true`.
pub const LAST_RULE: &str = "last_rule";
/// Envelope field: `host:rule` trail of the rules that fired.
pub const RULELOG: &str = "wubot_rulelog";

/// A message: one JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    fields: Map<String, Value>,
}

/// Why bytes or a value could not become a message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("invalid JSON at line {line}, column {column}: {detail}")]
    Json { line: usize, column: usize, detail: String },
    #[error("a message must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("field '{field}' {problem}")]
    Envelope { field: &'static str, problem: String },
}

impl Message {
    /// An empty message.
    pub fn new() -> Message {
        Message::default()
    }

    /// A message with these fields, checking the envelope fields' types.
    pub fn from_map(fields: Map<String, Value>) -> Result<Message, MessageError> {
        let message = Message { fields };
        message.check_envelope()?;
        Ok(message)
    }

    /// Parses one JSON object.
    pub fn from_json(bytes: &[u8]) -> Result<Message, MessageError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| MessageError::Json {
            line: e.line(),
            column: e.column(),
            detail: json_error_detail(&e),
        })?;
        Message::from_value(value)
    }

    /// Takes a JSON value that must be an object.
    pub fn from_value(value: Value) -> Result<Message, MessageError> {
        match value {
            Value::Object(fields) => Message::from_map(fields),
            other => Err(MessageError::NotAnObject(json_kind(&other))),
        }
    }

    /// The message as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fields).expect("a JSON map always serializes")
    }

    /// The message as a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.fields)
    }

    /// All fields, envelope included.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// All fields, for editing.
    pub fn fields_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.fields
    }

    /// A top-level field.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// A field by dotted path (`a.b.c` walks nested objects and array indexes). A
    /// top-level field whose own name contains dots wins over the nested walk.
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        if let Some(value) = self.fields.get(path) {
            return Some(value);
        }
        let mut parts = path.split('.');
        let mut current = self.fields.get(parts.next()?)?;
        for part in parts {
            current = match current {
                Value::Object(map) => map.get(part)?,
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// A top-level field as text, if it is a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// Sets a top-level field.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.fields.insert(name.into(), value.into());
    }

    /// Removes a top-level field.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.fields.shift_remove(name)
    }

    /// The message id, once stamped.
    pub fn id(&self) -> Option<&str> {
        self.get_str(ID)
    }

    /// When the message was generated, Unix seconds.
    pub fn lastupdate(&self) -> Option<f64> {
        self.fields.get(LASTUPDATE).and_then(Value::as_f64)
    }

    /// Whether forwarders must keep this message on its host.
    pub fn noforward(&self) -> bool {
        self.fields.get(NOFORWARD).is_some_and(is_truthy)
    }

    /// Node names the message has passed through, oldest first.
    pub fn path(&self) -> Vec<&str> {
        match self.fields.get(PATH) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Appends a node name to `path`.
    pub fn push_path(&mut self, node: &str) {
        match self.fields.get_mut(PATH) {
            Some(Value::Array(items)) => items.push(Value::from(node)),
            _ => {
                self.fields.insert(PATH.into(), Value::Array(vec![Value::from(node)]));
            }
        }
    }

    /// Appends `host:rule` to `wubot_rulelog`.
    pub fn push_rulelog(&mut self, entry: String) {
        match self.fields.get_mut(RULELOG) {
            Some(Value::Array(items)) => items.push(Value::from(entry)),
            _ => {
                self.fields.insert(RULELOG.into(), Value::Array(vec![Value::from(entry)]));
            }
        }
    }

    /// Gives the message the envelope fields a bus needs, keeping any already there:
    /// a fresh `id`, `lastupdate` = now, and `hostname`.
    pub fn stamp(&mut self, hostname: &str, now: std::time::SystemTime) {
        let since_epoch = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        if !matches!(self.fields.get(ID), Some(Value::String(_))) {
            let id = Ulid::generate(since_epoch.as_millis() as u64);
            self.fields.insert(ID.into(), Value::from(id.to_text()));
        }
        if self.lastupdate().is_none() {
            let seconds = since_epoch.as_secs_f64();
            // Whole seconds read better and are what wubot wrote; keep millisecond
            // precision only when it carries information.
            let value = if since_epoch.subsec_millis() == 0 {
                Value::from(since_epoch.as_secs())
            } else {
                serde_json::Number::from_f64((seconds * 1000.0).round() / 1000.0)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::from(since_epoch.as_secs()))
            };
            self.fields.insert(LASTUPDATE.into(), value);
        }
        if !self.fields.contains_key(HOSTNAME) {
            self.fields.insert(HOSTNAME.into(), Value::from(hostname));
        }
    }

    fn check_envelope(&self) -> Result<(), MessageError> {
        let problem = |field, problem: &str| Err(MessageError::Envelope { field, problem: problem.to_string() });
        if let Some(id) = self.fields.get(ID) {
            match id {
                Value::String(text) if text.parse::<Ulid>().is_ok() => {}
                Value::String(text) => {
                    return problem(ID, &format!("must be a ULID (26 characters), got '{text}'"));
                }
                _ => return problem(ID, "must be a ULID string"),
            }
        }
        if let Some(value) = self.fields.get(LASTUPDATE)
            && !value.is_number()
        {
            return problem(LASTUPDATE, "must be a number of Unix seconds");
        }
        if let Some(value) = self.fields.get(PATH) {
            let ok = matches!(value, Value::Array(items) if items.iter().all(Value::is_string));
            if !ok {
                return problem(PATH, "must be a list of node names");
            }
        }
        if let Some(value) = self.fields.get(HOSTNAME)
            && !value.is_string()
        {
            return problem(HOSTNAME, "must be a string");
        }
        Ok(())
    }
}

/// Perl's notion of truth, which wubot's conditions inherit: null, `false`, `0`, `""`
/// and `"0"` are false; everything else (including `"0.0"`, lists and maps) is true.
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !(s.is_empty() || s == "0"),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A value as the text wubot would see: strings as they are, numbers and booleans in
/// their JSON form, null as nothing, lists and maps as compact JSON.
pub fn value_text(value: &Value) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    match value {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Null => Cow::Borrowed(""),
        Value::Bool(true) => Cow::Borrowed("1"),
        Value::Bool(false) => Cow::Borrowed(""),
        Value::Number(n) => Cow::Owned(n.to_string()),
        other => Cow::Owned(other.to_string()),
    }
}

/// The name of a JSON value's kind, for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn json_error_detail(error: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; we report the position separately.
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamp_fills_only_missing_envelope_fields() {
        let mut m = Message::from_value(json!({"subject": "hi", "hostname": "elsewhere"})).unwrap();
        m.stamp("here", std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250));
        assert_eq!(m.get_str("hostname"), Some("elsewhere"));
        assert_eq!(m.lastupdate(), Some(1_700_000_000.25));
        let id: Ulid = m.id().unwrap().parse().unwrap();
        assert_eq!(id.timestamp_ms(), 1_700_000_000_250);
        let before = m.clone();
        m.stamp("here", std::time::SystemTime::now());
        assert_eq!(m, before, "stamping twice changes nothing");
    }

    #[test]
    fn lookup_walks_dotted_paths() {
        let m = Message::from_value(json!({"a": {"b": [10, {"c": "deep"}]}, "x.y": 1})).unwrap();
        assert_eq!(m.lookup("a.b.1.c"), Some(&json!("deep")));
        assert_eq!(m.lookup("a.b.0"), Some(&json!(10)));
        assert_eq!(m.lookup("x.y"), Some(&json!(1)));
        assert_eq!(m.lookup("a.missing"), None);
        assert_eq!(m.lookup("a.b.9"), None);
    }

    #[test]
    fn rejects_bad_json_and_bad_envelopes_with_a_reason() {
        let err = Message::from_json(b"{\"a\": }").unwrap_err().to_string();
        assert!(err.contains("line 1, column 7"), "{err}");
        assert_eq!(Message::from_json(b"[1]").unwrap_err().to_string(), "a message must be a JSON object, not a list");
        let err = Message::from_json(br#"{"id": "nope"}"#).unwrap_err().to_string();
        assert!(err.contains("field 'id' must be a ULID"), "{err}");
        let err = Message::from_json(br#"{"path": "a"}"#).unwrap_err().to_string();
        assert!(err.contains("'path'"), "{err}");
    }

    #[test]
    fn numbers_survive_a_round_trip_exactly() {
        // Found by the message_json fuzz target: without exact float parsing,
        // 1e-66 came back as 1.0000000000000001e-66.
        for text in [&br#"{"x":1e-66}"#[..], br#"{"x":0.1,"y":1.7976931348623157e308,"z":-0.0}"#] {
            let message = Message::from_json(text).unwrap();
            assert_eq!(Message::from_json(&message.to_json()).unwrap(), message);
        }
    }

    #[test]
    fn truthiness_follows_perl() {
        for falsy in [json!(null), json!(false), json!(0), json!(0.0), json!(""), json!("0")] {
            assert!(!is_truthy(&falsy), "{falsy}");
        }
        for truthy in [json!(true), json!(1), json!("0.0"), json!("false"), json!([]), json!({})] {
            assert!(is_truthy(&truthy), "{truthy}");
        }
    }

    #[test]
    fn path_and_rulelog_append() {
        let mut m = Message::new();
        m.push_path("alpha");
        m.push_path("beta");
        assert_eq!(m.path(), vec!["alpha", "beta"]);
        m.push_rulelog("alpha:first".into());
        assert_eq!(m.get(RULELOG), Some(&json!(["alpha:first"])));
        assert!(!m.noforward());
        m.set(NOFORWARD, 1);
        assert!(m.noforward());
    }
}
