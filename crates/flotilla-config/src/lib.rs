//! Flotilla's configuration layer: YAML in, typed config structs or a complete list of
//! located errors out.
//!
//! The pipeline, one module per step:
//!
//! 1. **Text → [`Node`]** ([`parse_str`], module `parse`). `saphyr-parser` events are
//!    folded into a tree that keeps every value's [`Location`] (file, line, column),
//!    expands anchors/aliases (and `<<` merge keys), substitutes `${VAR}` /
//!    `${VAR:-default}` / `$$` in values, and rejects what a configuration must not hold:
//!    a key twice in one map, several documents in one file, a top level that is not a
//!    map. An empty file is an empty map. Plain scalars stay text; they are typed (YAML 1.2
//!    core schema) only when decoded, so `port: ${PORT}` can still be a number.
//! 2. **Files → one tree** ([`load()`], [`merge()`]). A directory is read recursively;
//!    `X.yaml` on every host, `X.yaml.<shorthost>` on that host only; wubot's
//!    `plugins/<Plugin>/<instance>.yaml` becomes connector `<Plugin>-<instance>`. Maps
//!    merge; any other key defined twice is an error naming both places. `load` is the
//!    only function here that touches the file system; everything else is pure.
//! 3. **Tree → structs** ([`decode`], [`decode_at`]). A serde deserializer over the tree
//!    that does not stop at the first error: every unknown key (with the keys that were
//!    expected), every type mismatch, every missing key, every bad value is reported with
//!    its dotted path (`connectors.pulse1.delay`, `rules[2].condition`) and location.
//!    [`Located<T>`] fields keep a value's location for checks made later (compiling a
//!    rule's condition), and [`Node`] fields keep a subtree raw for a second pass.
//! 4. **Diagnostics.** Every step reports [`Diagnostic`]s, displayed as
//!    `file:line:column: message`, so `flotilla check` prints them all, in file order.
//!
//! # Decoding the node's configuration
//!
//! Each connector's section can only be decoded once its `type` is known, so the
//! top-level struct keeps connectors as raw [`Node`]s and decodes them in a second pass
//! with the connector's own struct, passing the path so messages stay precise:
//!
//! ```
//! use std::collections::BTreeMap;
//! use flotilla_config::{Located, Node, decode, decode_at, parse_str};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct NodeConfig {
//!     node: NodeSection,
//!     #[serde(default)]
//!     connectors: BTreeMap<String, Node>,
//! }
//! #[derive(Deserialize)]
//! struct NodeSection { name: String }
//! #[derive(Deserialize)]
//! struct PulseConfig { r#type: String, delay: Located<String>, #[serde(default)] rand: u32 }
//!
//! let text = "node: {name: alpha}\nconnectors:\n  pulse1: {type: pulse, delay: 5s, rnad: 3}\n";
//! let tree = parse_str("flotilla.yaml", text, &|_| None).expect("valid YAML");
//! let (config, errors) = decode::<NodeConfig>(&tree);
//! let config = config.expect("the top level is valid");
//! assert!(errors.is_empty());
//! for (name, section) in &config.connectors {
//!     // A real node would pick the struct by `section.get("type")`.
//!     let (pulse, errors) = decode_at::<PulseConfig>(section, &format!("connectors.{name}"));
//!     assert!(pulse.is_none());
//!     assert_eq!(
//!         errors[0].to_string(),
//!         "flotilla.yaml:3:36: unknown key 'rnad' in connectors.pulse1 \
//!          (expected one of: type, delay, rand); did you mean 'rand'?"
//!     );
//! }
//! ```
//!
//! Config structs must not use `#[serde(flatten)]`, `#[serde(tag = "…")]` or
//! `#[serde(untagged)]`: serde implements them by buffering the input and asking for
//! "any map", so the deserializer never learns the struct's field list (unknown keys go
//! unreported) and locations are lost. Share fields by nesting a struct under a key, and
//! dispatch on a `type` key with a [`Node`] field and [`decode_at`], as above.

#![forbid(unsafe_code)]

mod capture;
mod de;
mod env;
mod load;
mod located;
mod location;
mod merge;
mod node;
mod parse;
mod scalar;

pub use de::{MAX_PASSES, decode, decode_at, unknown_key_message};
pub use env::{SubstError, substitute};
pub use load::load;
pub use located::Located;
pub use location::{Diagnostic, Location, sort_diagnostics};
pub use merge::merge;
pub use node::{Node, NodeKind};
pub use parse::{MAX_DEPTH, MAX_NODES, parse_str};
