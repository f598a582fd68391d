//! `Deserialize` for [`Node`]: keeping a section of the configuration raw.
//!
//! The node decodes its top-level configuration first, but each connector's section can
//! only be decoded once its `type` is known, by that connector's own struct. So the
//! top-level struct holds `BTreeMap<String, Node>` and decodes each entry in a second
//! pass. For that, this crate's deserializer hands over the subtree itself, locations
//! included.
//!
//! serde offers no channel for passing a non-serde value from a deserializer to a
//! visitor, so the handover goes through a thread-local slot: the deserializer leaves a
//! copy of the node there and presents a one-entry map with a magic token as its key;
//! the visitor, on seeing the token, takes the node out. Deserialization is synchronous
//! and the slot is taken at once, so nothing else can interleave. Other formats (JSON)
//! build a node from their data model, with unknown locations.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::de::{NODE_NAME, NODE_TOKEN};
use crate::location::Location;
use crate::node::{Node, NodeKind};

thread_local! {
    static SLOT: RefCell<Option<Node>> = const { RefCell::new(None) };
}

/// Leaves `node` for the visitor about to be called.
pub(crate) fn leave(node: Node) {
    SLOT.with(|slot| *slot.borrow_mut() = Some(node));
}

/// Empties the slot.
pub(crate) fn clear() {
    SLOT.with(|slot| slot.borrow_mut().take());
}

fn take() -> Option<Node> {
    SLOT.with(|slot| slot.borrow_mut().take())
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(NODE_NAME, NodeVisitor)
    }
}

/// Builds a node from whatever the format presents.
struct NodeVisitor;

fn at_unknown(kind: NodeKind) -> Node {
    Node::new(kind, Location::unknown())
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any configuration value")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        Ok(Node::plain(value.to_string(), Location::unknown()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        Ok(Node::plain(value.to_string(), Location::unknown()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        Ok(Node::plain(value.to_string(), Location::unknown()))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Node, E> {
        Ok(Node::plain(value.to_string(), Location::unknown()))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Node, E> {
        Ok(Node::plain(value.to_string(), Location::unknown()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        // Written so the core schema reads it back as the same float (`1.0`, not `1`).
        let text = if value.is_nan() {
            ".nan".to_string()
        } else if value.is_infinite() {
            if value > 0.0 { ".inf" } else { "-.inf" }.to_string()
        } else if value.fract() == 0.0 && value.abs() < 1e15 {
            format!("{value:.1}")
        } else {
            value.to_string()
        };
        Ok(Node::plain(text, Location::unknown()))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        Ok(Node::quoted(value, Location::unknown()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(at_unknown(NodeKind::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(at_unknown(NodeKind::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(at_unknown(NodeKind::Seq(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == NODE_TOKEN && entries.is_empty() {
                map.next_value::<()>()?;
                return take().ok_or_else(|| de::Error::custom("configuration node handed over twice"));
            }
            let value: Node = map.next_value()?;
            // Keys are unique in a node; like JSON readers, let the last one win.
            entries.retain(|(k, _)| k.as_str() != Some(key.as_str()));
            entries.push((Node::quoted(key, Location::unknown()), value));
        }
        Ok(at_unknown(NodeKind::Map(entries)))
    }
}
