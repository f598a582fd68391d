//! Merging configuration files into one tree.
//!
//! A directory of files is one configuration: maps merge key by key, recursively, and
//! anything else defined in two files (a scalar, a list, or a map in one file against a
//! scalar in another) is a conflict reported with both places. Nothing is overridden
//! silently, because in a fleet of host-specific files a silent override is exactly the
//! kind of mistake that is hard to find later.

use crate::location::Diagnostic;
use crate::node::{Node, NodeKind, push_key};

/// Merges `other` into `into`. Returns one diagnostic per conflicting key (the conflicting
/// value in `other` is dropped, the first definition kept). Both nodes are expected to be
/// maps, as file roots always are; two non-maps conflict as a whole.
pub fn merge(into: &mut Node, other: Node) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    merge_at(into, other, "", None, &mut diagnostics);
    diagnostics
}

/// `keys` are the key nodes under which the existing and the incoming value were written
/// (a conflict points at keys, where `name: alpha` is "defined"); `None` at the root.
fn merge_at(into: &mut Node, other: Node, path: &str, keys: Option<(&Node, &Node)>, diagnostics: &mut Vec<Diagnostic>) {
    match (&mut into.kind, other.kind) {
        (NodeKind::Map(entries), NodeKind::Map(other_entries)) => {
            for (key, value) in other_entries {
                let name = key.as_str().unwrap_or_default();
                let child_path = push_key(path, name);
                match entries.iter_mut().find(|(k, _)| k.as_str() == Some(name)) {
                    Some((existing_key, existing_value)) => {
                        let existing_key = existing_key.clone();
                        merge_at(existing_value, value, &child_path, Some((&existing_key, &key)), diagnostics);
                    }
                    None => entries.push((key, value)),
                }
            }
        }
        (_, kind) => {
            let other = Node::new(kind, other.location);
            let (first, second) = match keys {
                Some((first_key, second_key)) => (&first_key.location, &second_key.location),
                None => (&into.location, &other.location),
            };
            let what = if path.is_empty() { "the configuration".to_string() } else { format!("key '{path}'") };
            diagnostics.push(Diagnostic::at(second, format!("{what} is defined in both {first} and {second}")));
        }
    }
}
