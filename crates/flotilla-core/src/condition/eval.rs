//! The compiled form of a condition and its evaluation.
//!
//! Everything that can be decided once is decided at parse time: field paths are split,
//! regexes compiled, number literals parsed, and the text of an `equals` value is also
//! kept as the integer or float it spells, so numeric fields are compared without
//! formatting them.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::io;

use regex::Regex;
use serde_json::{Map, Number, Value};

use super::field::FieldPath;
use crate::message::is_truthy;

/// One node of a compiled condition.
#[derive(Clone, Debug)]
pub(super) enum Node {
    Const(bool),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Equals { field: FieldPath, value: Expected },
    Matches { field: FieldPath, pattern: Pattern },
    Contains(FieldPath),
    IsTrue(FieldPath),
    IsFalse(FieldPath),
    Compare { left: Operand, op: CompareOp, right: Operand },
}

/// The right-hand side of `equals`: the text, plus the number it spells when a number
/// field's text would be exactly this text.
#[derive(Clone, Debug)]
pub(super) struct Expected {
    text: Box<str>,
    integer: Option<i128>,
    float_bits: Option<u64>,
}

/// A `matches` pattern. Case-sensitive patterns that are plain text, optionally
/// anchored with `^` and/or `$`, are matched as text: a regex search costs several
/// times more than a substring test on the short fields conditions look at.
#[derive(Clone, Debug)]
pub(super) enum Pattern {
    Regex(Regex),
    Contains(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Whole(Box<str>),
}

impl Pattern {
    /// The fastest matcher that behaves exactly like the compiled regex.
    pub(super) fn new(source: &str, regex: Regex, ignore_case: bool) -> Pattern {
        if ignore_case {
            return Pattern::Regex(regex);
        }
        let start = source.strip_prefix('^');
        let body = start.unwrap_or(source);
        // A trailing `$` anchors unless escaped; `\$` ends in an escaped backslash,
        // which a plain literal cannot contain anyway.
        let end = body.strip_suffix('$');
        let literal = end.unwrap_or(body);
        // Outside a character class only these characters are special (`-`, `&`, `~`
        // and `#` matter inside classes or in verbose mode, which need these to start).
        const SPECIAL: [char; 14] = ['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$'];
        if literal.is_empty() || literal.contains(SPECIAL) {
            return Pattern::Regex(regex);
        }
        let literal: Box<str> = literal.into();
        match (start.is_some(), end.is_some()) {
            (false, false) => Pattern::Contains(literal),
            (true, false) => Pattern::StartsWith(literal),
            (false, true) => Pattern::EndsWith(literal),
            (true, true) => Pattern::Whole(literal),
        }
    }

    fn is_match(&self, text: &str) -> bool {
        match self {
            Pattern::Regex(regex) => regex.is_match(text),
            Pattern::Contains(literal) => text.contains(&**literal),
            Pattern::StartsWith(literal) => text.starts_with(&**literal),
            // Like the regex `$` (not multi-line): the very end of the text only.
            Pattern::EndsWith(literal) => text.ends_with(&**literal),
            Pattern::Whole(literal) => text == &**literal,
        }
    }
}

/// One side of a numeric comparison.
#[derive(Clone, Debug)]
pub(super) enum Operand {
    Literal(Num),
    Field(FieldPath),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CompareOp {
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
}

/// A number as Perl would compare it: integers exactly, anything else as a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Num {
    Integer(i128),
    Float(f64),
}

impl Node {
    pub(super) fn eval(&self, fields: &Map<String, Value>) -> bool {
        match self {
            Node::Const(value) => *value,
            Node::Not(inner) => !inner.eval(fields),
            Node::And(left, right) => left.eval(fields) && right.eval(fields),
            Node::Or(left, right) => left.eval(fields) || right.eval(fields),
            Node::Equals { field, value } => match field.lookup(fields) {
                Some(found) if is_truthy(found) => value.matches(found),
                _ => false,
            },
            Node::Matches { field, pattern } => match field.lookup(fields) {
                Some(found) if is_truthy(found) => with_text(found, |text| pattern.is_match(text)),
                _ => false,
            },
            Node::Contains(field) => field.lookup(fields).is_some(),
            Node::IsTrue(field) => field.lookup(fields).is_some_and(is_true),
            Node::IsFalse(field) => !field.lookup(fields).is_some_and(is_true),
            Node::Compare { left, op, right } => {
                let (Some(left), Some(right)) = (left.value(fields), right.value(fields)) else {
                    return false;
                };
                match left.compare(right) {
                    Some(ordering) => op.holds(ordering),
                    None => false,
                }
            }
        }
    }
}

/// wubot's `is true`: Perl-true and not the string "false".
fn is_true(value: &Value) -> bool {
    is_truthy(value) && value.as_str() != Some("false")
}

impl Expected {
    pub(super) fn new(text: &str) -> Expected {
        // A number field equals the text only if the number's own text is exactly it,
        // so keep the number only when the text is that number's canonical form.
        let integer = text.parse::<i128>().ok().filter(|n| n.to_string() == text);
        let float_bits = text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .filter(|n| n.to_string() == text)
            .and_then(|n| n.as_f64())
            .map(f64::to_bits);
        Expected { text: text.into(), integer, float_bits }
    }

    /// Whether a (truthy) value's text is the expected text.
    fn matches(&self, value: &Value) -> bool {
        match value {
            Value::String(text) => **text == *self.text,
            Value::Number(number) => {
                if let Some(n) = number.as_i64() {
                    self.integer == Some(i128::from(n))
                } else if let Some(n) = number.as_u64() {
                    self.integer == Some(i128::from(n))
                } else {
                    number.as_f64().map(f64::to_bits).is_some_and(|bits| self.float_bits == Some(bits))
                }
            }
            Value::Bool(b) => *b && &*self.text == "1",
            Value::Null => false,
            Value::Array(_) | Value::Object(_) => {
                let mut compare = CompareWriter { rest: self.text.as_bytes(), same: true };
                serde_json::to_writer(&mut compare, value).is_ok() && compare.same && compare.rest.is_empty()
            }
        }
    }
}

/// Compares JSON text as it is written, without building it.
struct CompareWriter<'a> {
    rest: &'a [u8],
    same: bool,
}

impl io::Write for CompareWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.same && self.rest.starts_with(buf) {
            self.rest = &self.rest[buf.len()..];
        } else {
            self.same = false;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Calls `f` with the value's text; numbers are formatted on the stack.
fn with_text<R>(value: &Value, f: impl FnOnce(&str) -> R) -> R {
    match value {
        Value::String(text) => f(text),
        Value::Null => f(""),
        Value::Bool(true) => f("1"),
        Value::Bool(false) => f(""),
        Value::Number(number) => {
            let mut buffer = StackText::default();
            if write!(buffer, "{number}").is_ok() { f(buffer.as_str()) } else { f(&number.to_string()) }
        }
        other => f(&other.to_string()),
    }
}

/// A small text buffer on the stack, long enough for any JSON number serde_json writes.
struct StackText {
    bytes: [u8; 48],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText { bytes: [0; 48], len: 0 }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Operand {
    fn value(&self, fields: &Map<String, Value>) -> Option<Num> {
        match self {
            Operand::Literal(n) => Some(*n),
            Operand::Field(field) => match field.lookup(fields)? {
                Value::Number(number) => Some(Num::from_json(number)),
                Value::String(text) => perl_number(text),
                _ => None,
            },
        }
    }
}

impl CompareOp {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Less => ordering == Ordering::Less,
            CompareOp::LessEqual => ordering != Ordering::Greater,
            CompareOp::Greater => ordering == Ordering::Greater,
            CompareOp::GreaterEqual => ordering != Ordering::Less,
        }
    }
}

impl Num {
    fn from_json(number: &Number) -> Num {
        if let Some(n) = number.as_i64() {
            Num::Integer(i128::from(n))
        } else if let Some(n) = number.as_u64() {
            Num::Integer(i128::from(n))
        } else {
            Num::Float(number.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Integer(n) => n as f64,
            Num::Float(f) => f,
        }
    }

    /// Integers compare exactly; anything involving a float compares as floats (NaN
    /// compares with nothing).
    fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Integer(a), Num::Integer(b)) => Some(a.cmp(&b)),
            _ => self.as_f64().partial_cmp(&other.as_f64()),
        }
    }
}

/// The number a string spells, if Perl's `looks_like_number` would accept it:
/// optional surrounding whitespace, an optional sign, decimal digits with an optional
/// fraction and exponent, or `Inf`/`Infinity`/`NaN` in any case.
pub(super) fn perl_number(text: &str) -> Option<Num> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = trimmed.parse::<i128>()
    {
        return Some(Num::Integer(n));
    }
    // Rust's float syntax is Perl's number syntax (digits, '.', exponent, inf, nan),
    // minus the whitespace trimmed above.
    trimmed.parse::<f64>().ok().map(Num::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text fast paths must agree with the regex they stand for.
    #[test]
    fn literal_patterns_agree_with_their_regex() {
        let patterns =
            ["RSS-", "^RSS-", "RSS-$", "^RSS-$", "a b", "^", "$", "^$", "x.y", "a\\$", "^^a", "née", "^née$", "#&~-"];
        let texts =
            ["RSS-perl", "xRSS-", "RSS-", "a b c", "", "x.y", "xzy", "a$", "^a", "une née", "née", "#&~-", "RSS-\n"];
        for pattern in patterns {
            let regex = Regex::new(pattern).unwrap();
            let fast = Pattern::new(pattern, regex.clone(), false);
            for text in texts {
                assert_eq!(fast.is_match(text), regex.is_match(text), "{pattern:?} on {text:?} ({fast:?})");
            }
        }
        assert!(matches!(Pattern::new("^RSS-", Regex::new("^RSS-").unwrap(), false), Pattern::StartsWith(_)));
        assert!(matches!(Pattern::new("x.y", Regex::new("x.y").unwrap(), false), Pattern::Regex(_)));
        assert!(matches!(Pattern::new("abc", Regex::new("(?i)abc").unwrap(), true), Pattern::Regex(_)));
    }
}
