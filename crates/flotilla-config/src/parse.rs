//! YAML text to a [`Node`] tree, with locations and environment substitution.
//!
//! `saphyr-parser` produces a stream of events with positions; this module folds them
//! into a tree with an explicit stack (no recursion, so deeply nested input cannot
//! overflow the stack), expands aliases by cloning the anchored node, applies `<<` merge
//! keys, substitutes `${VAR}` in values, and enforces what Flotilla's configuration
//! needs: one document per file, a map at the top, text keys, no key twice in one map.
//! Limits on nesting depth and on the size after alias expansion keep hostile input
//! from exhausting memory or the stack; [`parse_str`] never panics.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use crate::env::substitute;
use crate::location::{Diagnostic, Location};
use crate::node::{Node, NodeKind, quote_text};
use crate::scalar::is_null;

/// Deepest nesting accepted. Real configurations stay under ten levels; the limit exists
/// so that later recursive passes (merge, decode, drop) have bounded depth.
pub const MAX_DEPTH: usize = 128;

/// Most nodes one file may expand to, counting each alias as a copy of its anchor. Stops
/// "billion laughs" documents that double in size with every alias level.
pub const MAX_NODES: usize = 200_000;

/// Parses one configuration file's text. `file` names it in locations. Substitutes
/// environment variables in values (not keys) using `env`. Returns every error found
/// (a YAML syntax error ends parsing, so it is the last one).
///
/// An empty file (or one holding only comments, or an empty document) is an empty map.
pub fn parse_str(file: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Node, Vec<Diagnostic>> {
    let file: Arc<str> = Arc::from(file);
    let mut builder = Builder {
        file: file.clone(),
        env,
        diagnostics: Vec::new(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        documents: 0,
        nodes: 0,
    };
    for event in Parser::new_from_str(text) {
        match event {
            Ok((event, span)) => {
                if let Err(stop) = builder.event(event, span) {
                    builder.diagnostics.push(stop);
                    break;
                }
            }
            Err(error) => {
                let marker = error.marker();
                let location = Location::new(file.clone(), marker.line(), marker.col() + 1);
                builder.diagnostics.push(Diagnostic::at(&location, format!("invalid YAML: {}", error.info())));
                break;
            }
        }
    }
    let root = builder.finish();
    if builder.diagnostics.is_empty() { Ok(root) } else { Err(builder.diagnostics) }
}

/// A built node with the measurements the limits need.
struct Built {
    node: Node,
    /// Levels of nesting, 1 for a scalar.
    height: usize,
    /// Number of nodes including itself.
    size: usize,
}

/// What to do with a map's next value, decided when its key arrived.
enum PendingKey {
    /// The key was accepted; the value belongs to it.
    Key(Node),
    /// `<<`: the value is merged into this map.
    Merge,
    /// The key was rejected (already reported); drop the value.
    Drop,
}

enum Frame {
    Seq {
        location: Location,
        anchor: usize,
        items: Vec<Node>,
        height: usize,
        size: usize,
    },
    Map {
        location: Location,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending: Option<PendingKey>,
        /// Keys written explicitly in this map, with where, to reject repeats.
        seen: HashMap<String, Location>,
        merges: Vec<Node>,
        height: usize,
        size: usize,
    },
}

struct Builder<'e> {
    file: Arc<str>,
    env: &'e dyn Fn(&str) -> Option<String>,
    diagnostics: Vec<Diagnostic>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Built>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
}

impl Builder<'_> {
    fn location(&self, span: Span) -> Location {
        Location::new(self.file.clone(), span.start.line(), span.start.col() + 1)
    }

    /// Handles one event. `Err` stops parsing with that diagnostic.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Diagnostic> {
        let location = self.location(span);
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::at(
                        &location,
                        "a second YAML document ('---') starts here; a configuration file holds exactly one",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let node = self.scalar(&text, style, tag.as_deref(), location)?;
                self.add(Built { node, height: 1, size: 1 }, anchor, 1)?;
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), &location);
                self.open(Frame::Seq { location, anchor, items: Vec::new(), height: 0, size: 0 })?;
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), &location);
                self.open(Frame::Map {
                    location,
                    anchor,
                    entries: Vec::new(),
                    pending: None,
                    seen: HashMap::new(),
                    merges: Vec::new(),
                    height: 0,
                    size: 0,
                })?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    // The parser balances start and end events; an unbalanced end would be
                    // a parser bug, reported rather than trusted.
                    return Err(Diagnostic::at(&location, "invalid YAML: unbalanced end of a collection"));
                };
                let (built, anchor) = self.close(frame);
                // The children were counted as they were added.
                self.add(built, anchor, 1)?;
            }
            Event::Alias(id) => {
                let Some(anchored) = self.anchors.get(&id) else {
                    return Err(Diagnostic::at(&location, "invalid YAML: alias to an unknown anchor"));
                };
                if self.stack.len() + anchored.height > MAX_DEPTH {
                    return Err(Diagnostic::at(
                        &location,
                        format!("this alias nests the configuration deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let mut node = anchored.node.clone();
                let (height, size) = (anchored.height, anchored.size);
                // Entries keep the anchored node's locations (so errors point at what was
                // written), but the alias itself is placed where it is used.
                node.location = location;
                self.add(Built { node, height, size }, 0, size)?;
            }
        }
        Ok(())
    }

    fn in_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { pending: None, .. }))
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        location: Location,
    ) -> Result<Node, Diagnostic> {
        let mut plain = style == ScalarStyle::Plain;
        if let Some(tag) = tag {
            if is_string_tag(tag) {
                plain = false;
            } else if !tag.is_yaml_core_schema() {
                self.diagnostics.push(unsupported_tag(tag, &location));
            }
        }
        if self.in_key_position() {
            // Keys are names, never substituted: `${X}: 1` would make the set of keys
            // depend on the environment, which `flotilla check` could not validate.
            return Ok(Node::new(NodeKind::Scalar { text: text.to_string(), plain }, location));
        }
        if plain && is_null(text) {
            return Ok(Node::new(NodeKind::Null, location));
        }
        let text = match substitute(text, self.env) {
            Ok(value) => value.into_owned(),
            Err(errors) => {
                for error in errors {
                    self.diagnostics.push(Diagnostic::at(&location, error.to_string()));
                }
                text.to_string()
            }
        };
        Ok(Node::new(NodeKind::Scalar { text, plain }, location))
    }

    fn check_collection_tag(&mut self, tag: Option<&Tag>, location: &Location) {
        if let Some(tag) = tag
            && !tag.is_yaml_core_schema()
        {
            self.diagnostics.push(unsupported_tag(tag, location));
        }
    }

    fn open(&mut self, frame: Frame) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            let location = match &frame {
                Frame::Seq { location, .. } | Frame::Map { location, .. } => location.clone(),
            };
            return Err(Diagnostic::at(
                &location,
                format!("the configuration is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self, frame: Frame) -> (Built, usize) {
        match frame {
            Frame::Seq { location, anchor, items, height, size } => {
                (Built { node: Node::new(NodeKind::Seq(items), location), height: height + 1, size: size + 1 }, anchor)
            }
            Frame::Map { location, anchor, mut entries, pending, seen, merges, height, size } => {
                if let Some(PendingKey::Key(key)) = pending {
                    // The parser always pairs keys with values (an empty value is an empty
                    // scalar); keep the key with a null rather than lose it.
                    let value_location = key.location.clone();
                    entries.push((key, Node::new(NodeKind::Null, value_location)));
                }
                self.apply_merges(&mut entries, &seen, merges);
                (
                    Built { node: Node::new(NodeKind::Map(entries), location), height: height + 1, size: size + 1 },
                    anchor,
                )
            }
        }
    }

    /// YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`): entries of the merged maps are
    /// added unless the map itself defines the key; earlier merged maps win over later
    /// ones, as in YAML 1.1 where the feature comes from.
    fn apply_merges(&mut self, entries: &mut Vec<(Node, Node)>, seen: &HashMap<String, Location>, merges: Vec<Node>) {
        let mut merged: HashMap<String, ()> = HashMap::new();
        for merge in merges {
            let sources = match merge.kind {
                NodeKind::Map(_) => vec![merge],
                NodeKind::Seq(items) if items.iter().all(|item| item.as_map().is_some()) => items,
                _ => {
                    self.diagnostics.push(Diagnostic::at(
                        &merge.location,
                        format!("the merge key '<<' takes a map or a list of maps, found {}", merge.describe()),
                    ));
                    continue;
                }
            };
            for source in sources {
                let NodeKind::Map(source_entries) = source.kind else {
                    continue;
                };
                for (key, value) in source_entries {
                    let name = key.as_str().unwrap_or_default().to_string();
                    if seen.contains_key(&name) || merged.contains_key(&name) {
                        continue;
                    }
                    merged.insert(name, ());
                    entries.push((key, value));
                }
            }
        }
    }

    /// Places a finished node: as the document root, a sequence item, a map key or a map
    /// value. `created` is how many nodes this adds to the document (all of an alias's copy, one
    /// for anything else).
    fn add(&mut self, built: Built, anchor: usize, created: usize) -> Result<(), Diagnostic> {
        self.nodes += created;
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::at(
                &built.node.location,
                format!("the configuration expands to more than {MAX_NODES} values (too many aliases?)"),
            ));
        }
        if anchor != 0 {
            let copy = Built { node: built.node.clone(), height: built.height, size: built.size };
            self.anchors.insert(anchor, copy);
        }
        let Built { node, height: child_height, size: child_size } = built;
        let mut problem = None;
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                return Ok(());
            }
            Some(Frame::Seq { items, height, size, .. }) => {
                *height = (*height).max(child_height);
                *size += child_size;
                items.push(node);
            }
            Some(Frame::Map { entries, pending, seen, merges, height, size, .. }) => {
                *height = (*height).max(child_height);
                *size += child_size;
                match pending.take() {
                    None => {
                        let (next, error) = accept_key(node, seen);
                        *pending = Some(next);
                        problem = error;
                    }
                    Some(PendingKey::Key(key)) => entries.push((key, node)),
                    Some(PendingKey::Merge) => merges.push(node),
                    Some(PendingKey::Drop) => {}
                }
            }
        }
        if let Some(problem) = problem {
            self.diagnostics.push(problem);
        }
        Ok(())
    }

    fn finish(&mut self) -> Node {
        let file_start = Location::new(self.file.clone(), 1, 1);
        match self.root.take() {
            None => Node::empty_map(file_start),
            Some(root) => match root.kind {
                NodeKind::Map(_) => root,
                NodeKind::Null => Node::empty_map(root.location),
                _ => {
                    if self.diagnostics.is_empty() {
                        self.diagnostics.push(Diagnostic::at(
                            &root.location,
                            format!(
                                "the top level of a configuration file must be a map of 'key: value' lines, found {}",
                                root.describe()
                            ),
                        ));
                    }
                    Node::empty_map(root.location)
                }
            },
        }
    }
}

/// Decides what a node in key position becomes.
fn accept_key(key: Node, seen: &mut HashMap<String, Location>) -> (PendingKey, Option<Diagnostic>) {
    let (text, plain) = match &key.kind {
        NodeKind::Scalar { text, plain } => (text.clone(), *plain),
        // An alias to a null used as a key; YAML allows it, and the empty text is its name.
        NodeKind::Null => (String::new(), true),
        NodeKind::Seq(_) | NodeKind::Map(_) => {
            let message = format!("a map key must be text, found {}", key.describe());
            return (PendingKey::Drop, Some(Diagnostic::at(&key.location, message)));
        }
    };
    if let Some(first) = seen.get(&text) {
        let message = format!("key {} is repeated in this map (first written at {first})", quote_key(&text));
        return (PendingKey::Drop, Some(Diagnostic::at(&key.location, message)));
    }
    seen.insert(text.clone(), key.location.clone());
    if plain && text == "<<" {
        return (PendingKey::Merge, None);
    }
    let key = Node::new(NodeKind::Scalar { text, plain }, key.location);
    (PendingKey::Key(key), None)
}

fn quote_key(text: &str) -> String {
    if text.chars().all(|c| c.is_alphanumeric() || "_-.".contains(c)) && !text.is_empty() {
        format!("'{text}'")
    } else {
        quote_text(text)
    }
}

/// `!!str` and the non-specific `!` both mean "this is text".
fn is_string_tag(tag: &Tag) -> bool {
    // The parser reports the non-specific tag as an empty handle with suffix `!`.
    (tag.is_yaml_core_schema() && tag.suffix == "str") || (tag.handle.is_empty() && tag.suffix == "!")
}

fn unsupported_tag(tag: &Tag, location: &Location) -> Diagnostic {
    let shown =
        if tag.is_yaml_core_schema() { format!("!!{}", tag.suffix) } else { format!("{}{}", tag.handle, tag.suffix) };
    Diagnostic::at(location, format!("YAML tags such as '{shown}' are not supported in Flotilla configuration"))
}
