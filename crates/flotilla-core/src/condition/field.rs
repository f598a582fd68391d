//! Field paths as conditions (and templates) name them, resolved fast.
//!
//! A path such as `meta.domain` first names a top-level field called exactly that,
//! and only if there is none walks nested objects and list indexes, as
//! [`Message::lookup`](crate::Message::lookup) does. The path is split once, when it is
//! parsed. Small maps are scanned instead of hashed: comparing a dozen key lengths is
//! cheaper than hashing the name with the map's SipHash, and most messages have about
//! a dozen fields.

use serde_json::{Map, Value};

/// Up to how many fields a scan beats a hash lookup.
const SCAN_LIMIT: usize = 16;

/// A parsed field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    path: Box<str>,
    parts: Option<Box<[Part]>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Part {
    key: Box<str>,
    index: Option<usize>,
}

impl FieldPath {
    /// Parses a dotted path; any text is a path (a name without dots names one field).
    pub fn new(path: &str) -> FieldPath {
        let parts = path.contains('.').then(|| {
            path.split('.')
                .map(|key| Part { key: key.into(), index: key.parse().ok() })
                .collect::<Vec<_>>()
                .into_boxed_slice()
        });
        FieldPath { path: path.into(), parts }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The value the path names in a message's fields: the top-level field named by
    /// the whole path, else the walk through nested objects and lists.
    pub fn lookup<'m>(&self, fields: &'m Map<String, Value>) -> Option<&'m Value> {
        if let Some(value) = find_field(fields, &self.path) {
            return Some(value);
        }
        let (first, rest) = self.parts.as_deref()?.split_first()?;
        let mut current = find_field(fields, &first.key)?;
        for part in rest {
            current = match current {
                Value::Object(map) => find_field(map, &part.key)?,
                Value::Array(items) => items.get(part.index?)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

/// A field of a map by name: scanned when the map is small, hashed when it is not.
pub fn find_field<'m>(fields: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    if fields.len() <= SCAN_LIMIT {
        // Lengths and first bytes rule out nearly every other key without a memcmp.
        let first = name.as_bytes().first();
        fields.iter().find_map(|(key, value)| {
            (key.len() == name.len() && key.as_bytes().first() == first && key == name).then_some(value)
        })
    } else {
        fields.get(name)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_resolve_like_message_lookup() {
        let mut big = serde_json::Map::new();
        for i in 0..40 {
            big.insert(format!("k{i}"), json!(i));
        }
        big.insert("x.y".into(), json!("flat"));
        big.insert("x".into(), json!({"y": "nested", "z": [1, {"w": true}]}));
        let small = json!({"a": {"b": [10, {"c": "deep"}]}, "x.y": 1, "n": null});
        let small = small.as_object().unwrap();
        let cases: [(&Map<String, Value>, &str, Option<Value>); 10] = [
            (small, "a.b.1.c", Some(json!("deep"))),
            (small, "a.b.0", Some(json!(10))),
            (small, "x.y", Some(json!(1))),
            (small, "n", Some(json!(null))),
            (small, "a.missing", None),
            (small, "a.b.9", None),
            (small, "a.b.c", None),
            (&big, "x.y", Some(json!("flat"))),
            (&big, "x.z.1.w", Some(json!(true))),
            (&big, "k39", Some(json!(39))),
        ];
        for (fields, path, expect) in cases {
            assert_eq!(FieldPath::new(path).lookup(fields).cloned(), expect, "{path}");
            let message = crate::Message::from_map(fields.clone()).unwrap();
            assert_eq!(message.lookup(path).cloned(), expect, "Message::lookup agrees on {path}");
        }
        assert_eq!(FieldPath::new("a.b").as_str(), "a.b");
    }
}
