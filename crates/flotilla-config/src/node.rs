//! The configuration tree: YAML values that remember where they were written.
//!
//! A [`Node`] is what a file parses into and what files merge into. It keeps scalars as
//! text (typing happens when decoding, so a `port` can be written `8080` or
//! `${PORT}`), keeps map entries in the order written, and carries a [`Location`] on
//! every node and every key so that any later error can point at the right place.

use std::fmt;

use serde_json::Value;

use crate::location::Location;
use crate::scalar::{Resolved, resolve};

/// One value in the configuration tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the value is.
    pub kind: NodeKind,
    /// Where it starts (for a block map, its first key).
    pub location: Location,
}

/// The shape of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// An explicit or empty null written in the file (`key:`, `key: ~`, `key: null`).
    Null,
    /// Text. `plain` is true for unquoted scalars, which are typed by the YAML core schema
    /// when asked (`8080` is a number, `true` a boolean); quoted and block scalars are
    /// always strings. A plain scalar stays plain after environment substitution, so
    /// `port: ${PORT}` can be a number.
    Scalar {
        /// The text after escapes and environment substitution.
        text: String,
        /// Whether it was written unquoted.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in the order written. Keys are always [`NodeKind::Scalar`] nodes and
    /// unique (the parser rejects anything else).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A node of the given kind.
    pub fn new(kind: NodeKind, location: Location) -> Node {
        Node { kind, location }
    }

    /// An empty map (what an empty file is).
    pub fn empty_map(location: Location) -> Node {
        Node::new(NodeKind::Map(Vec::new()), location)
    }

    /// A plain scalar.
    pub fn plain(text: impl Into<String>, location: Location) -> Node {
        Node::new(NodeKind::Scalar { text: text.into(), plain: true }, location)
    }

    /// A quoted scalar (always a string).
    pub fn quoted(text: impl Into<String>, location: Location) -> Node {
        Node::new(NodeKind::Scalar { text: text.into(), plain: false }, location)
    }

    /// The text of a scalar, `None` for anything else.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The entries of a map, `None` for anything else.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The items of a sequence, `None` for anything else.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// True for [`NodeKind::Null`] and for plain scalars the core schema reads as null
    /// (such as an empty `${VAR:-}`).
    pub fn is_null(&self) -> bool {
        match &self.kind {
            NodeKind::Null => true,
            NodeKind::Scalar { text, plain } => *plain && resolve(text) == Resolved::Null,
            _ => false,
        }
    }

    /// The value of `key` in this map. `None` when this is not a map or has no such key.
    pub fn entry(&self, key: &str) -> Option<&Node> {
        self.entry_with_key(key).map(|(_, value)| value)
    }

    /// The key node and value of `key` in this map (the key node knows where the key was
    /// written).
    pub fn entry_with_key(&self, key: &str) -> Option<(&Node, &Node)> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, v)| (k, v))
    }

    /// Follows a path such as `connectors.pulse1.delay`, `rules[2].condition` or
    /// `connectors["my.bot"].type` (quotes for keys that contain `.`, `[` or `]`), the
    /// same notation diagnostics use. An empty path is this node.
    pub fn get(&self, dotted_path: &str) -> Option<&Node> {
        let mut node = self;
        for segment in parse_path(dotted_path)? {
            node = match segment {
                Segment::Key(key) => node.entry(&key)?,
                Segment::Index(index) => node.as_seq()?.get(index)?,
            };
        }
        Some(node)
    }

    /// The value as JSON, typing plain scalars by the YAML core schema (quoted scalars are
    /// strings). Non-finite floats (`.inf`, `.nan`), which JSON cannot hold, stay text.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Scalar { text, plain: false } => Value::String(text.clone()),
            NodeKind::Scalar { text, plain: true } => match resolve(text) {
                Resolved::Null => Value::Null,
                Resolved::Bool(b) => Value::Bool(b),
                Resolved::Int(i) => int_to_json(i, text),
                Resolved::Float(f) => float_to_json(f, text),
                Resolved::Str => Value::String(text.clone()),
            },
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries.iter().map(|(key, value)| (key.as_str().unwrap_or("").to_string(), value.to_json())).collect(),
            ),
        }
    }

    /// A short description for messages: `"abc"`, `nothing`, `a map`, `a list`.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Null => "nothing".to_string(),
            NodeKind::Scalar { text, .. } => quote_text(text),
            NodeKind::Seq(_) => "a list".to_string(),
            NodeKind::Map(_) => "a map".to_string(),
        }
    }
}

fn int_to_json(value: i128, text: &str) -> Value {
    if let Ok(small) = i64::try_from(value) {
        Value::from(small)
    } else if let Ok(unsigned) = u64::try_from(value) {
        Value::from(unsigned)
    } else {
        // Precision is lost past 64 bits, as with any JSON number of that size.
        float_to_json(value as f64, text)
    }
}

fn float_to_json(value: f64, text: &str) -> Value {
    serde_json::Number::from_f64(value).map_or_else(|| Value::String(text.to_string()), Value::Number)
}

/// Quotes text for a message, shortening long values so one bad value cannot flood the
/// output.
pub(crate) fn quote_text(text: &str) -> String {
    const LIMIT: usize = 60;
    if text.chars().count() > LIMIT {
        let short: String = text.chars().take(LIMIT).collect();
        format!("{:?}…", short)
    } else {
        format!("{text:?}")
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// Appends a key to a rendered path, quoting keys that would be ambiguous.
pub(crate) fn push_key(path: &str, key: &str) -> String {
    let needs_quotes = key.is_empty() || key.contains(['.', '[', ']', '"']);
    match (path.is_empty(), needs_quotes) {
        (_, true) => format!("{path}[{key:?}]"),
        (true, false) => key.to_string(),
        (false, false) => format!("{path}.{key}"),
    }
}

/// Appends an index to a rendered path.
pub(crate) fn push_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Reads the notation written by [`push_key`] and [`push_index`]. `None` when malformed.
pub(crate) fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut rest = path;
    let mut first = true;
    while !rest.is_empty() {
        if let Some(bracketed) = rest.strip_prefix('[') {
            if let Some(quoted) = bracketed.strip_prefix('"') {
                let (key, after) = read_quoted(quoted)?;
                rest = after.strip_prefix(']')?;
                segments.push(Segment::Key(key));
            } else {
                let close = bracketed.find(']')?;
                segments.push(Segment::Index(bracketed[..close].parse().ok()?));
                rest = &bracketed[close + 1..];
            }
        } else {
            let body = if first { rest } else { rest.strip_prefix('.')? };
            let end = body.find(['.', '[']).unwrap_or(body.len());
            if end == 0 {
                return None;
            }
            segments.push(Segment::Key(body[..end].to_string()));
            rest = &body[end..];
        }
        first = false;
    }
    Some(segments)
}

/// Reads a Rust-style quoted string body (after the opening quote) as produced by `{:?}`
/// for the characters that need it in keys. Returns the text and what follows the quote.
fn read_quoted(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[at + 1..])),
            '\\' => {
                let (_, escaped) = chars.next()?;
                out.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'u' => {
                        // `{:?}` writes other control characters as `\u{1b}`.
                        let body = chars.as_str().strip_prefix('{')?;
                        let close = body.find('}')?;
                        let code = u32::from_str_radix(&body[..close], 16).ok()?;
                        for _ in 0..close + 2 {
                            chars.next();
                        }
                        char::from_u32(code)?
                    }
                    other => other,
                });
            }
            other => out.push(other),
        }
    }
    None
}

impl fmt::Display for Node {
    /// The value as compact JSON (core-schema typed), for messages and debugging.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_path(path: &str, expect: &str) {
        let got = match parse_path(path) {
            None => "malformed".to_string(),
            Some(segments) => segments
                .iter()
                .map(|s| match s {
                    Segment::Key(k) => format!("k:{k}"),
                    Segment::Index(i) => format!("i:{i}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
        };
        assert_eq!(got, expect, "path {path:?}");
    }

    #[test]
    fn paths() {
        check_path("", "");
        check_path("a", "k:a");
        check_path("a.b.c", "k:a k:b k:c");
        check_path("rules[2].condition", "k:rules i:2 k:condition");
        check_path("[0][1]", "i:0 i:1");
        check_path(r#"connectors["my.bot"].type"#, "k:connectors k:my.bot k:type");
        check_path(r#"["a\"b"]"#, "k:a\"b");
        check_path("a..b", "malformed");
        check_path("a.", "malformed");
        check_path(".a", "malformed");
        check_path("a[x]", "malformed");
        check_path("a[1", "malformed");
        check_path(r#"a["x"#, "malformed");
    }

    #[test]
    fn rendered_paths_read_back() {
        let keys = ["plain", "with.dot", "with[bracket", "", "quote\"d", "new\nline", "bell.\u{7}"];
        for key in keys {
            let path = push_index(&push_key(&push_key("", "top"), key), 3);
            assert_eq!(
                parse_path(&path),
                Some(vec![Segment::Key("top".into()), Segment::Key(key.into()), Segment::Index(3)]),
                "{path}"
            );
        }
    }
}
