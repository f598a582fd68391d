//! Decoding a [`Node`] into serde structs while reporting every error, not just the first.
//!
//! serde's model stops at the first error: once a visitor returns `Err`, every enclosing
//! visitor returns it too. `flotilla check` must instead list every mistake, so this
//! deserializer is lenient in two ways:
//!
//! 1. **It keeps going where it can.** It filters unknown keys itself (in
//!    `deserialize_struct` it knows the struct's field list), reporting each with the keys
//!    that were expected; on a type mismatch for a primitive (a `u16` asked for, `"abc"` or
//!    `70000` found) it records the error and hands the visitor a placeholder value, so the
//!    derived code never sees an error at all.
//! 2. **Where it cannot, it decodes again without the broken part.** Errors raised by
//!    visitors and `Deserialize` impls (a missing required key, an unknown enum variant, a
//!    value that fails a type's own parsing such as a socket address) do abort the
//!    decode. The error is recorded at the node where it surfaced, and [`decode`] runs
//!    another pass in which that node is hidden from its parent, as if it had not been
//!    written. Errors that only happen *because* of hiding (the parent now misses a
//!    required key) are recognised as consequences and not reported; the parent is then
//!    hidden in turn. Each pass gets further through the document, so in the end every
//!    part has been visited once without a fault before it, and all errors are known.
//!    A missing required key is handled better still: the next pass hands the struct a
//!    stand-in value for it (the emptiest value of the type asked for), so the struct
//!    goes on to report its other missing keys instead of being hidden.
//!
//! Messages name the dotted path (`connectors.pulse1.delay`, `rules[2].condition`) and
//! say what was expected; locations are those of the offending value (or key, for unknown
//! keys, or the enclosing map, for missing keys).
//!
//! Two magic names let types see through the deserializer, as `toml`'s `Spanned` does:
//! [`crate::Located`] receives the location of its value, and [`Node`] receives a copy of
//! the raw subtree (so a struct can keep a section, such as each connector's, to decode
//! later with that section's own type).

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::rc::Rc;

use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use crate::location::{Diagnostic, sort_diagnostics};
use crate::node::{Node, NodeKind, push_index, push_key};
use crate::scalar::{Resolved, parse_bool, parse_bool_word, parse_float, parse_int, resolve};

/// How many passes [`decode`] makes at most. Every pass hides one more broken node or
/// stands in for one more missing key, so this bounds the work on a configuration with
/// hundreds of errors in one go.
pub const MAX_PASSES: usize = 500;

/// The struct name [`crate::Located`] asks for; the deserializer answers with a map of
/// its location and its value.
pub(crate) const LOCATED_NAME: &str = "$flotilla_config::Located";
pub(crate) const LOCATED_LOCATION_KEY: &str = "$flotilla_config::Located::location";
pub(crate) const LOCATED_VALUE_KEY: &str = "$flotilla_config::Located::value";

/// The newtype name [`Node`]'s `Deserialize` asks for; the deserializer answers with a
/// one-entry map whose key is [`NODE_TOKEN`], after leaving a copy of the node in
/// [`crate::capture`]'s slot.
pub(crate) const NODE_NAME: &str = "$flotilla_config::Node";
pub(crate) const NODE_TOKEN: &str = "$flotilla_config::Node::token";

/// Decodes `node` (usually a whole configuration) into `T`. Returns `Some` only when
/// there were no errors; otherwise every error found, in file order.
///
/// Config structs must not use `#[serde(flatten)]`, internally tagged
/// (`#[serde(tag = "…")]`) or untagged enums: serde implements those by buffering the
/// input and calling `deserialize_map`/`deserialize_any`, which hides the struct's field
/// list from this deserializer (so unknown keys could not be reported) and loses
/// locations. Use a [`Node`] field and a second [`decode_at`] instead.
pub fn decode<T: DeserializeOwned>(node: &Node) -> (Option<T>, Vec<Diagnostic>) {
    decode_at(node, "")
}

/// Like [`decode`], for a subtree that lives at `path` in the whole configuration
/// (`"connectors.pulse1"`), so that messages name the full path.
pub fn decode_at<T: DeserializeOwned>(node: &Node, path: &str) -> (Option<T>, Vec<Diagnostic>) {
    let mut hidden: HashSet<String> = HashSet::new();
    let mut placeholders: HashSet<String> = HashSet::new();
    let mut found: Vec<Diagnostic> = Vec::new();
    let mut known: HashSet<Diagnostic> = HashSet::new();
    let mut exhausted = true;
    for _ in 0..MAX_PASSES {
        let pass = Pass { hidden: &hidden, placeholders: &placeholders, diagnostics: RefCell::new(Vec::new()) };
        let root = NodeDe { node, pass: &pass, path: Rc::from(path), hide: None, is_key: false };
        let result = root.settle(T::deserialize(root.clone()));
        for diagnostic in pass.diagnostics.take() {
            if known.insert(diagnostic.clone()) {
                found.push(diagnostic);
            }
        }
        match result {
            Ok(value) => {
                if found.is_empty() && hidden.is_empty() && placeholders.is_empty() {
                    return (Some(value), Vec::new());
                }
                exhausted = false;
                break;
            }
            Err(DecodeError::Reported { hide, missing }) => {
                // Prefer standing in for a missing key (the struct can then report its
                // other missing keys) over hiding the whole struct.
                let progress = missing.is_some_and(|missing| placeholders.insert(missing.to_string()))
                    || hide.is_some_and(|hide| hidden.insert(hide.to_string()));
                if !progress {
                    exhausted = false;
                    break;
                }
            }
            Err(DecodeError::Fresh(_)) => {
                // `settle` at the root turns every fresh error into `Reported`.
                exhausted = false;
                break;
            }
        }
    }
    if exhausted {
        found.push(Diagnostic::at(
            &node.location,
            format!("stopped looking for more errors after {MAX_PASSES} passes; fix these and check again"),
        ));
    }
    if found.is_empty() {
        // Every abort is recorded or is the consequence of a recorded one, so this is
        // unreachable in practice; still, never answer "failed" without saying why.
        found.push(Diagnostic::at(&node.location, "the configuration could not be decoded"));
    }
    sort_diagnostics(&mut found);
    (None, found)
}

/// State shared by all deserializers of one pass.
struct Pass<'h> {
    /// Paths of nodes to treat as absent (they failed in an earlier pass).
    hidden: &'h HashSet<String>,
    /// Paths of required keys that are missing (or hidden): a struct is handed a
    /// stand-in value for them, so that it goes on to report its other missing keys.
    placeholders: &'h HashSet<String>,
    diagnostics: RefCell<Vec<Diagnostic>>,
}

impl Pass<'_> {
    fn record(&self, diagnostic: Diagnostic) {
        self.diagnostics.borrow_mut().push(diagnostic);
    }

    /// Whether `error`, raised at `path`, can be explained by something hidden or stood
    /// in for below it (a type checking its fields would reject a stand-in's empty
    /// value, for instance).
    fn is_consequence(&self, error: &Fresh, path: &str) -> bool {
        if let Fresh::MissingField(field) = error {
            return self.hidden.contains(&push_key(path, field));
        }
        self.hidden.iter().chain(self.placeholders.iter()).any(|changed| is_strict_descendant(changed, path))
    }
}

fn is_strict_descendant(candidate: &str, path: &str) -> bool {
    if path.is_empty() {
        return !candidate.is_empty();
    }
    candidate.len() > path.len()
        && candidate.starts_with(path)
        && matches!(candidate.as_bytes()[path.len()], b'.' | b'[')
}

/// The deserializer's error. Never shown to users directly: fresh errors are turned into
/// [`Diagnostic`]s (with path and location) at the node where they surface.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Recorded already (or a consequence of something recorded). `hide` is the node to
    /// leave out in the next pass; `None` when it is the root and nothing can be hidden.
    #[error("error already reported")]
    Reported {
        /// Path of the node to hide.
        hide: Option<Rc<str>>,
        /// Path of the missing required key that caused this, if that was the cause.
        missing: Option<Rc<str>>,
    },
    /// Raised by a visitor or a `Deserialize` impl, not yet attributed to a node.
    #[error("{0}")]
    Fresh(Fresh),
}

/// An error as serde describes it, before it is placed.
#[derive(Debug, thiserror::Error)]
pub enum Fresh {
    /// A required field is absent.
    #[error("missing field '{0}'")]
    MissingField(&'static str),
    /// A variant name that the enum does not have.
    #[error("unknown variant '{variant}'")]
    UnknownVariant {
        /// What was written.
        variant: String,
        /// The variants there are.
        expected: &'static [&'static str],
    },
    /// A field name the struct does not have (raised by `deny_unknown_fields` visitors).
    #[error("unknown field '{field}'")]
    UnknownField {
        /// What was written.
        field: String,
        /// The fields there are.
        expected: &'static [&'static str],
    },
    /// The value has the wrong type.
    #[error("expected {expected}, found {found}")]
    InvalidType {
        /// serde's description of what was found.
        found: String,
        /// What the type wanted.
        expected: String,
    },
    /// The value has the right type but is not acceptable.
    #[error("invalid value {found}, expected {expected}")]
    InvalidValue {
        /// serde's description of what was found.
        found: String,
        /// What the type wanted.
        expected: String,
    },
    /// A sequence of the wrong length.
    #[error("{len} items, expected {expected}")]
    InvalidLength {
        /// How many there were.
        len: usize,
        /// What the type wanted.
        expected: String,
    },
    /// A field given twice (through aliases).
    #[error("duplicate field '{0}'")]
    DuplicateField(&'static str),
    /// Any other message (`Error::custom`), typically from a type's own parsing.
    #[error("{0}")]
    Custom(String),
}

impl Fresh {
    /// The user-facing message for this error raised at `path`.
    fn message(&self, path: &str) -> String {
        let subject = subject(path);
        match self {
            Fresh::MissingField(field) => format!("missing required key '{field}' {}", place(path)),
            Fresh::UnknownVariant { variant, expected } => {
                format!("unknown value '{variant}' for {subject} (expected {})", alternatives(expected))
            }
            Fresh::UnknownField { field, expected } => unknown_key_message(field, path, expected),
            Fresh::InvalidType { found, expected } => {
                format!("expected {expected} for {subject}, found {found}")
            }
            Fresh::InvalidValue { found, expected } => {
                format!("invalid value for {subject}: expected {expected}, found {found}")
            }
            Fresh::InvalidLength { len, expected } => {
                format!("expected {expected} for {subject}, found {}", count_items(*len))
            }
            Fresh::DuplicateField(field) => {
                format!("key '{field}' is given twice {} (under two of its names)", place(path))
            }
            Fresh::Custom(message) => format!("invalid value for {subject}: {message}"),
        }
    }
}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError::Fresh(Fresh::Custom(msg.to_string()))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DecodeError::Fresh(Fresh::InvalidType { found: unexp.to_string(), expected: exp.to_string() })
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DecodeError::Fresh(Fresh::InvalidValue { found: unexp.to_string(), expected: exp.to_string() })
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DecodeError::Fresh(Fresh::InvalidLength { len, expected: exp.to_string() })
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DecodeError::Fresh(Fresh::UnknownVariant { variant: variant.to_string(), expected })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DecodeError::Fresh(Fresh::UnknownField { field: field.to_string(), expected })
    }

    fn missing_field(field: &'static str) -> Self {
        DecodeError::Fresh(Fresh::MissingField(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DecodeError::Fresh(Fresh::DuplicateField(field))
    }
}

type Result<T> = std::result::Result<T, DecodeError>;

/// `'path'`, or "the top level" for the root.
fn subject(path: &str) -> String {
    if path.is_empty() { "the top level".to_string() } else { format!("'{path}'") }
}

/// "in path", or "at the top level".
fn place(path: &str) -> String {
    if path.is_empty() { "at the top level".to_string() } else { format!("in {path}") }
}

/// "1 item", "3 items".
fn count_items(count: usize) -> String {
    if count == 1 { "1 item".to_string() } else { format!("{count} items") }
}

/// `'a', 'b' or 'c'`.
fn alternatives(names: &[&str]) -> String {
    match names {
        [] => "nothing (this has no values)".to_string(),
        [only] => format!("'{only}'"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|name| format!("'{name}'")).collect();
            format!("{} or '{last}'", init.join(", "))
        }
    }
}

/// The message for an unknown key at `path` (empty: the top level), with the keys
/// expected there and a suggestion when the key looks like a typo of one.
pub fn unknown_key_message(key: &str, path: &str, expected: &[&str]) -> String {
    let mut message = if expected.is_empty() {
        format!("unknown key '{key}' {} (it takes no keys)", place(path))
    } else {
        format!("unknown key '{key}' {} (expected one of: {})", place(path), expected.join(", "))
    };
    if let Some(suggestion) = closest(key, expected) {
        message.push_str(&format!("; did you mean '{suggestion}'?"));
    }
    message
}

/// The expected name closest to a misspelt one, if it is close enough to be a typo.
fn closest<'a>(key: &str, expected: &[&'a str]) -> Option<&'a str> {
    let key_lower = key.to_lowercase();
    expected
        .iter()
        .map(|candidate| (edit_distance(&key_lower, &candidate.to_lowercase()), *candidate))
        .filter(|(distance, candidate)| {
            // A typo changes a few letters, not the whole name (`y` is not a typo of `x`).
            let length = candidate.chars().count();
            *distance <= (length / 3).max(1) && *distance < length
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance with adjacent transpositions counted as one edit (`delya` is one
/// edit from `delay`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows for i-2, i-1 and i.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// A deserializer over one node of the tree.
#[derive(Clone)]
struct NodeDe<'n, 'p> {
    node: &'n Node,
    pass: &'p Pass<'p>,
    /// Rendered path of this node, for messages.
    path: Rc<str>,
    /// What to hide in the next pass if decoding this node aborts.
    hide: Option<Rc<str>>,
    /// Map keys are names: typed as text when asked "what is this?".
    is_key: bool,
}

impl<'n, 'p> NodeDe<'n, 'p> {
    fn child(&self, node: &'n Node, path: String) -> NodeDe<'n, 'p> {
        let path: Rc<str> = Rc::from(path);
        NodeDe { node, pass: self.pass, path: path.clone(), hide: Some(path), is_key: false }
    }

    fn is_hidden(&self) -> bool {
        self.pass.hidden.contains(&*self.path)
    }

    fn record(&self, message: String) {
        self.pass.record(Diagnostic::at(&self.node.location, message));
    }

    fn reported(&self) -> DecodeError {
        DecodeError::Reported { hide: self.hide.clone(), missing: None }
    }

    /// Places a fresh error at this node (recording it unless hiding explains it) and
    /// turns it into an abort that hides this node next time (or, for a missing key,
    /// stands in for the key next time).
    fn settle<T>(&self, result: Result<T>) -> Result<T> {
        match result {
            Err(DecodeError::Fresh(error)) => {
                if !self.pass.is_consequence(&error, &self.path) {
                    self.record(error.message(&self.path));
                }
                let missing = match error {
                    Fresh::MissingField(field) => Some(Rc::from(push_key(&self.path, field))),
                    _ => None,
                };
                Err(DecodeError::Reported { hide: self.hide.clone(), missing })
            }
            other => other,
        }
    }

    /// For a visitor fed a placeholder after a recorded mismatch: whatever it complains
    /// about is a consequence of the mismatch.
    fn silence<T>(&self, result: Result<T>) -> Result<T> {
        match result {
            Err(DecodeError::Fresh(_)) => Err(self.reported()),
            other => other,
        }
    }

    fn mismatch(&self, expected: &str) {
        self.record(format!("expected {expected} for {}, found {}", subject(&self.path), self.node.describe()));
    }

    /// The text of a scalar, any quoting.
    fn text(&self) -> Option<&'n str> {
        match &self.node.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Settles what the visitor made of a value: its own complaints are errors, unless
    /// the value was a placeholder after a recorded mismatch (`written` false), when they
    /// are consequences (a `NonZeroU16` rejecting the placeholder 0, say).
    fn finish<T>(&self, written: bool, result: Result<T>) -> Result<T> {
        if written { self.settle(result) } else { self.silence(result) }
    }

    /// A boolean, or `None` after recording a mismatch. Besides YAML's `true`/`false`,
    /// a key typed as a boolean takes `1`/`0` (wubot's Perl files write those) and
    /// `yes`/`no` (SPEC §3).
    fn boolean(&self) -> Option<bool> {
        let value = self.text().and_then(|text| parse_bool(text).or_else(|| parse_bool_word(text)));
        if value.is_none() {
            self.mismatch("true or false (or 1/0, yes/no)");
        }
        value
    }

    /// An integer within `min..=max`, or `None` after recording a mismatch.
    fn integer(&self, min: i128, max: i128) -> Option<i128> {
        let value = self.text().and_then(|text| parse_int(text.trim())).filter(|value| (min..=max).contains(value));
        if value.is_none() {
            self.record(format!(
                "expected a number for {}, found {} (a whole number from {min} to {max})",
                subject(&self.path),
                self.node.describe()
            ));
        }
        value
    }

    /// A number, or `None` after recording a mismatch.
    fn float(&self) -> Option<f64> {
        let text = self.text().map(str::trim);
        let value = text.and_then(|t| parse_float(t).or_else(|| parse_int(t).map(|i| i as f64)));
        if value.is_none() {
            self.mismatch("a number");
        }
        value
    }

    fn empty_seq<V: Visitor<'n>>(&self, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Items { de: self.clone(), items: [].iter().enumerate() })
    }

    fn empty_map<V: Visitor<'n>>(&self, visitor: V, fields: Option<&'static [&'static str]>) -> Result<V::Value> {
        visitor.visit_map(Entries::new(self, &[], fields))
    }
}

macro_rules! integer_methods {
    ($($method:ident $visit:ident $ty:ty;)*) => {$(
        fn $method<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
            let value = self.integer(i128::from(<$ty>::MIN), i128::from(<$ty>::MAX));
            // The range check in `integer` makes the conversion exact.
            let result = visitor.$visit(value.and_then(|v| <$ty>::try_from(v).ok()).unwrap_or_default());
            self.finish(value.is_some(), result)
        }
    )*};
}

impl<'n> Deserializer<'n> for NodeDe<'n, '_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Scalar { text, plain } if self.is_key || !plain => visitor.visit_borrowed_str(text),
            NodeKind::Scalar { text, .. } => match resolve(text) {
                Resolved::Null => visitor.visit_unit(),
                Resolved::Bool(value) => visitor.visit_bool(value),
                Resolved::Int(value) => {
                    if let Ok(small) = i64::try_from(value) {
                        visitor.visit_i64(small)
                    } else if let Ok(unsigned) = u64::try_from(value) {
                        visitor.visit_u64(unsigned)
                    } else {
                        visitor.visit_f64(value as f64)
                    }
                }
                Resolved::Float(value) => visitor.visit_f64(value),
                Resolved::Str => visitor.visit_borrowed_str(text),
            },
            NodeKind::Seq(items) => visitor.visit_seq(Items { de: self.clone(), items: items.iter().enumerate() }),
            NodeKind::Map(entries) => visitor.visit_map(Entries::new(&self, entries, None)),
        };
        self.settle(result)
    }

    fn deserialize_bool<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let value = self.boolean();
        let result = visitor.visit_bool(value.unwrap_or_default());
        self.finish(value.is_some(), result)
    }

    integer_methods! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
    }

    fn deserialize_i128<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let value = self.integer(i128::MIN, i128::MAX);
        let result = visitor.visit_i128(value.unwrap_or_default());
        self.finish(value.is_some(), result)
    }

    fn deserialize_u128<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        // Texts are read as i128, so the largest u128 values are out of reach; nothing in
        // a configuration needs them.
        let value = self.integer(0, i128::MAX);
        let result = visitor.visit_u128(value.and_then(|v| u128::try_from(v).ok()).unwrap_or_default());
        self.finish(value.is_some(), result)
    }

    fn deserialize_f32<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let value = self.float();
        let result = visitor.visit_f32(value.unwrap_or_default() as f32);
        self.finish(value.is_some(), result)
    }

    fn deserialize_f64<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let value = self.float();
        let result = visitor.visit_f64(value.unwrap_or_default());
        self.finish(value.is_some(), result)
    }

    fn deserialize_char<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let mut chars = self.text().unwrap_or_default().chars();
        let value = match (chars.next(), chars.next()) {
            (Some(c), None) => Some(c),
            _ => {
                self.mismatch("a single character");
                None
            }
        };
        let result = visitor.visit_char(value.unwrap_or(' '));
        self.finish(value.is_some(), result)
    }

    fn deserialize_str<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let result = match self.text() {
            Some(text) => visitor.visit_borrowed_str(text),
            None => {
                self.mismatch("a string");
                self.silence(visitor.visit_borrowed_str(""))
            }
        };
        self.settle(result)
    }

    fn deserialize_string<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let result = match self.text() {
            Some(text) => visitor.visit_borrowed_bytes(text.as_bytes()),
            None => {
                self.mismatch("a string");
                self.silence(visitor.visit_borrowed_bytes(&[]))
            }
        };
        self.settle(result)
    }

    fn deserialize_byte_buf<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let result = if self.node.is_null() { visitor.visit_none() } else { visitor.visit_some(self.clone()) };
        self.settle(result)
    }

    fn deserialize_unit<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let written = self.node.is_null();
        if !written {
            self.mismatch("nothing (an empty value)");
        }
        let result = visitor.visit_unit();
        self.finish(written, result)
    }

    fn deserialize_unit_struct<V: Visitor<'n>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'n>>(self, name: &'static str, visitor: V) -> Result<V::Value> {
        let result = match name {
            LOCATED_NAME => visitor.visit_map(LocatedAccess { de: self.clone(), step: 0 }),
            NODE_NAME => {
                crate::capture::leave(self.node.clone());
                let result = visitor.visit_map(TokenAccess { step: 0 });
                // Normally taken by the visitor; never leave a stale copy behind.
                crate::capture::clear();
                result
            }
            _ => visitor.visit_newtype_struct(self.clone()),
        };
        self.settle(result)
    }

    fn deserialize_seq<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(Items { de: self.clone(), items: items.iter().enumerate() }),
            NodeKind::Null => self.empty_seq(visitor),
            _ => {
                self.mismatch("a list");
                self.silence(self.empty_seq(visitor))
            }
        };
        self.settle(result)
    }

    fn deserialize_tuple<V: Visitor<'n>>(self, len: usize, visitor: V) -> Result<V::Value> {
        // A tuple visitor stops after `len` items without looking further, so extra items
        // would pass unnoticed; too few it reports itself.
        if let NodeKind::Seq(items) = &self.node.kind
            && items.len() > len
        {
            self.record(format!(
                "expected a list of {} for {}, found {}",
                count_items(len),
                subject(&self.path),
                count_items(items.len())
            ));
        }
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'n>>(self, _name: &'static str, len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(Entries::new(&self, entries, None)),
            NodeKind::Null => self.empty_map(visitor, None),
            _ => {
                self.mismatch("a map");
                self.silence(self.empty_map(visitor, None))
            }
        };
        self.settle(result)
    }

    fn deserialize_struct<V: Visitor<'n>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(Entries::new(&self, entries, Some(fields))),
            // An empty section (`http:` with everything commented out) is an empty map.
            NodeKind::Null => self.empty_map(visitor, Some(fields)),
            _ => {
                self.mismatch("a map");
                self.silence(self.empty_map(visitor, None))
            }
        };
        self.settle(result)
    }

    fn deserialize_enum<V: Visitor<'n>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let result = match &self.node.kind {
            NodeKind::Scalar { text, .. } => {
                visitor.visit_enum(Variant { de: self.clone(), name: text, name_de: self.clone(), content: None })
            }
            NodeKind::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                let name = key.as_str().unwrap_or_default();
                let mut name_de = self.clone();
                name_de.node = key;
                let content = NodeDe { hide: self.hide.clone(), ..self.child(value, push_key(&self.path, name)) };
                visitor.visit_enum(Variant { de: self.clone(), name, name_de, content: Some(content) })
            }
            _ => {
                self.record(format!(
                    "expected {} for {}, found {}",
                    alternatives(variants),
                    subject(&self.path),
                    self.node.describe()
                ));
                return Err(self.reported());
            }
        };
        self.settle(result)
    }

    fn deserialize_identifier<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

/// The items of a sequence, skipping hidden ones.
struct Items<'n, 'p> {
    de: NodeDe<'n, 'p>,
    items: std::iter::Enumerate<std::slice::Iter<'n, Node>>,
}

impl<'n> SeqAccess<'n> for Items<'n, '_> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'n>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        for (index, item) in self.items.by_ref() {
            let child = self.de.child(item, push_index(&self.de.path, index));
            if child.is_hidden() {
                continue;
            }
            return child.settle(seed.deserialize(child.clone())).map(Some);
        }
        Ok(None)
    }
}

/// The entries of a map. For a struct (`fields` known), unknown keys are reported and
/// skipped here so the visitor never sees them; hidden entries are skipped silently.
struct Entries<'n, 'p> {
    de: NodeDe<'n, 'p>,
    entries: std::slice::Iter<'n, (Node, Node)>,
    fields: Option<&'static [&'static str]>,
    /// Fields handed to the visitor so far.
    given: Vec<&'n str>,
    /// How far through `fields` the stand-ins for missing keys have got.
    next_field: usize,
    value: Option<Pending<'n, 'p>>,
}

/// The value the visitor will ask for next.
enum Pending<'n, 'p> {
    Written(NodeDe<'n, 'p>),
    /// A stand-in for a missing required key.
    StandIn,
}

impl<'n, 'p> Entries<'n, 'p> {
    fn new(
        de: &NodeDe<'n, 'p>,
        entries: &'n [(Node, Node)],
        fields: Option<&'static [&'static str]>,
    ) -> Entries<'n, 'p> {
        Entries { de: de.clone(), entries: entries.iter(), fields, given: Vec::new(), next_field: 0, value: None }
    }
}

impl<'n, 'p> MapAccess<'n> for Entries<'n, 'p> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'n>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        for (key, value) in self.entries.by_ref() {
            let name = key.as_str().unwrap_or_default();
            let child = self.de.child(value, push_key(&self.de.path, name));
            if child.is_hidden() {
                continue;
            }
            let key_de = NodeDe { node: key, is_key: true, ..child.clone() };
            let decoded = match self.fields {
                Some(fields) => {
                    if !fields.contains(&name) {
                        key_de.record(unknown_key_message(name, &self.de.path, fields));
                        continue;
                    }
                    self.given.push(name);
                    seed.deserialize(BorrowedStrDeserializer::new(name))
                }
                None => seed.deserialize(key_de.clone()),
            };
            let decoded = key_de.settle(decoded)?;
            self.value = Some(Pending::Written(child));
            return Ok(Some(decoded));
        }
        let Some(fields) = self.fields else {
            return Ok(None);
        };
        while let Some(&field) = fields.get(self.next_field) {
            self.next_field += 1;
            if self.given.contains(&field) || !self.de.pass.placeholders.contains(&push_key(&self.de.path, field)) {
                continue;
            }
            let decoded = self.de.silence(seed.deserialize(BorrowedStrDeserializer::new(field)))?;
            self.value = Some(Pending::StandIn);
            return Ok(Some(decoded));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'n>>(&mut self, seed: V) -> Result<V::Value> {
        match self.value.take() {
            Some(Pending::Written(child)) => child.settle(seed.deserialize(child.clone())),
            // A stand-in that the type cannot accept (a struct with required keys, a type
            // that validates its text) fails; then the whole map is hidden instead.
            Some(Pending::StandIn) => seed.deserialize(StandIn).map_err(|_| self.de.reported()),
            None => Err(de::Error::custom("a map value was asked for before its key")),
        }
    }
}

/// An enum written as `variant` or `variant: content`.
struct Variant<'n, 'p> {
    /// The whole enum node.
    de: NodeDe<'n, 'p>,
    name: &'n str,
    /// Where the name was written (the scalar, or the key of the one-entry map).
    name_de: NodeDe<'n, 'p>,
    content: Option<NodeDe<'n, 'p>>,
}

impl<'n, 'p> EnumAccess<'n> for Variant<'n, 'p> {
    type Error = DecodeError;
    type Variant = Variant<'n, 'p>;

    fn variant_seed<T: DeserializeSeed<'n>>(self, seed: T) -> Result<(T::Value, Self::Variant)> {
        let chosen = self.name_de.settle(seed.deserialize(BorrowedStrDeserializer::new(self.name)))?;
        Ok((chosen, self))
    }
}

impl<'n> VariantAccess<'n> for Variant<'n, '_> {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<()> {
        if let Some(content) = &self.content
            && !content.node.is_null()
        {
            content.record(format!(
                "'{}' takes no value: write just '{}' for {}",
                self.name,
                self.name,
                subject(&self.de.path)
            ));
        }
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'n>>(self, seed: T) -> Result<T::Value> {
        let content = self.content_or_report()?;
        content.settle(seed.deserialize(content.clone()))
    }

    fn tuple_variant<V: Visitor<'n>>(self, len: usize, visitor: V) -> Result<V::Value> {
        let content = self.content_or_report()?;
        content.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'n>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        let content = self.content_or_report()?;
        content.deserialize_struct("", fields, visitor)
    }
}

impl<'n, 'p> Variant<'n, 'p> {
    fn content_or_report(self) -> Result<NodeDe<'n, 'p>> {
        match self.content {
            Some(content) => Ok(content),
            None => {
                self.de.record(format!(
                    "'{}' needs settings for {}: write '{}:' followed by them",
                    self.name,
                    subject(&self.de.path),
                    self.name
                ));
                Err(self.de.reported())
            }
        }
    }
}

/// What [`crate::Located`]'s visitor sees: its location, then its value.
struct LocatedAccess<'n, 'p> {
    de: NodeDe<'n, 'p>,
    step: u8,
}

impl<'n> MapAccess<'n> for LocatedAccess<'n, '_> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'n>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let key = match self.step {
            0 => LOCATED_LOCATION_KEY,
            1 => LOCATED_VALUE_KEY,
            _ => return Ok(None),
        };
        seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'n>>(&mut self, seed: V) -> Result<V::Value> {
        self.step += 1;
        match self.step {
            1 => {
                let encoded = crate::located::encode_location(&self.de.node.location);
                seed.deserialize(StringDeserializer::new(encoded))
            }
            _ => seed.deserialize(self.de.clone()),
        }
    }
}

/// What [`Node`]'s visitor sees: the token that says "take the node from the slot".
struct TokenAccess {
    step: u8,
}

impl<'n> MapAccess<'n> for TokenAccess {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'n>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.step > 0 {
            return Ok(None);
        }
        seed.deserialize(BorrowedStrDeserializer::new(NODE_TOKEN)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'n>>(&mut self, seed: V) -> Result<V::Value> {
        self.step += 1;
        seed.deserialize(().into_deserializer())
    }
}

/// The value handed to a struct for a missing required key, so that it goes on to report
/// its other missing keys: the emptiest value of whatever type is asked for. Whatever it
/// produces is never returned to the caller, since a decode with errors returns `None`.
struct StandIn;

impl<'n> Deserializer<'n> for StandIn {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_bool<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_bool(false)
    }

    fn deserialize_i8<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i8(0)
    }

    fn deserialize_i16<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i16(0)
    }

    fn deserialize_i32<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i32(0)
    }

    fn deserialize_i64<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i64(0)
    }

    fn deserialize_i128<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i128(0)
    }

    fn deserialize_u8<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(0)
    }

    fn deserialize_u16<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u16(0)
    }

    fn deserialize_u32<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u32(0)
    }

    fn deserialize_u64<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u64(0)
    }

    fn deserialize_u128<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u128(0)
    }

    fn deserialize_f32<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f32(0.0)
    }

    fn deserialize_f64<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(0.0)
    }

    fn deserialize_char<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_char(' ')
    }

    fn deserialize_str<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str("")
    }

    fn deserialize_string<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str("")
    }

    fn deserialize_bytes<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(&[])
    }

    fn deserialize_byte_buf<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(&[])
    }

    fn deserialize_option<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'n>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'n>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        // `Located` and `Node` accept a plain newtype (location unknown, node null).
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<()>()))
    }

    fn deserialize_tuple<V: Visitor<'n>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'n>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<((), ())>()))
    }

    fn deserialize_struct<V: Visitor<'n>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        // Every field stood in for, so that nested required keys are satisfied too.
        visitor.visit_map(de::value::MapDeserializer::new(fields.iter().map(|field| (*field, StandIn))))
    }

    fn deserialize_enum<V: Visitor<'n>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match variants.first() {
            Some(first) => visitor.visit_enum(StandInVariant(first)),
            None => Err(de::Error::custom("no stand-in for an enum without variants")),
        }
    }

    fn deserialize_identifier<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str("")
    }

    fn deserialize_ignored_any<V: Visitor<'n>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

impl<'n> IntoDeserializer<'n, DecodeError> for StandIn {
    type Deserializer = StandIn;

    fn into_deserializer(self) -> StandIn {
        self
    }
}

/// An enum's first variant, with stand-in content.
struct StandInVariant(&'static str);

impl<'n> EnumAccess<'n> for StandInVariant {
    type Error = DecodeError;
    type Variant = StandIn;

    fn variant_seed<T: DeserializeSeed<'n>>(self, seed: T) -> Result<(T::Value, StandIn)> {
        seed.deserialize(BorrowedStrDeserializer::new(self.0)).map(|chosen| (chosen, StandIn))
    }
}

impl<'n> VariantAccess<'n> for StandIn {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'n>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(StandIn)
    }

    fn tuple_variant<V: Visitor<'n>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'n>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        self.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        for (a, b, expect) in [
            ("delya", "delay", 1),
            ("delay", "delay", 0),
            ("", "abc", 3),
            ("timout", "timeout", 1),
            ("kitten", "sitting", 3),
            ("rnad", "rand", 1),
        ] {
            assert_eq!(edit_distance(a, b), expect, "{a} → {b}");
        }
    }

    #[test]
    fn suggestions() {
        let fields = ["delay", "rand", "timeout", "react"];
        assert_eq!(closest("delya", &fields), Some("delay"));
        assert_eq!(closest("Timeout", &fields), Some("timeout"));
        assert_eq!(closest("zzz", &fields), None);
        assert_eq!(closest("x", &[]), None);
        assert_eq!(closest("y", &["x"]), None);
        assert_eq!(closest("ab", &["ac"]), Some("ac"));
        assert_eq!(closest("abd", &["abc"]), Some("abc"));
    }

    #[test]
    fn descendants() {
        assert!(is_strict_descendant("a.b", "a"));
        assert!(is_strict_descendant("a[0]", "a"));
        assert!(is_strict_descendant("a", ""));
        assert!(!is_strict_descendant("ab", "a"));
        assert!(!is_strict_descendant("a", "a"));
        assert!(!is_strict_descendant("", ""));
    }
}
