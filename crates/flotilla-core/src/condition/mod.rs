//! wubot's condition language (SPEC §4), parsed once into a [`Condition`] and then
//! evaluated against many messages.
//!
//! The language is wubot's `App::Wubot::Conditions`, kept bug-for-bug where a rule
//! written for wubot could notice, and stricter only where wubot gave up: a condition
//! wubot logged as "could not be parsed" (and then evaluated as false) is a
//! [`ConditionError`] here, with the character offset of the part that did not parse.
//!
//! How a condition is read (the order matters, it is what gives the language its
//! precedence):
//!
//! 1. Leading and trailing whitespace is ignored.
//! 2. Parentheses group only when there is whitespace inside them: `( C )`. The
//!    innermost groups are read first; each becomes one operand of what surrounds it.
//!    `foo matches (x|y)` has no space inside, so it stays a regex.
//! 3. `A AND B` splits at the **last** ` AND ` (whitespace both sides, upper case), and
//!    is tried before OR, so AND binds loosest: `a AND b OR c` is `a AND (b OR c)` and
//!    `a OR b AND c` is `(a OR b) AND c`.
//! 4. `A OR B` splits at the last ` OR `.
//! 5. `TRUE` and `FALSE`.
//! 6. `NOT C` negates everything after it on its side of the AND/OR, so
//!    `NOT a AND b` is `(NOT a) AND b`.
//! 7. `F equals V`: field `F` (letters, digits, `_` and `.`) as text equals `V` (the rest
//!    of the condition, spaces included). Never true when the field is false-y, so
//!    `n equals 0` never holds.
//! 8. `F matches RE` / `F imatches RE`: the field's text matches the regex anywhere
//!    (`imatches` ignores case). Never true when the field is false-y. A pattern of just
//!    `0` never matches, because wubot tested the pattern's own truth first.
//! 9. `contains F`: the field exists, even when it is null.
//! 10. `F is true`: the field is truthy and not the string `"false"`.
//!     `F is false`: the opposite.
//! 11. `A < B`, `A <= B`, `A > B`, `A >= B` (single spaces): each side is a number or a
//!     field; false when a field is missing or does not hold a number (JSON numbers
//!     and strings that look like Perl numbers count; booleans do not).
//!
//! Fields are dotted paths: a top-level field whose name is the whole path wins, else
//! the path walks nested objects and list indexes (as [`Message::lookup`] does).
//! Truth is Perl's ([`is_truthy`]). Non-string fields are compared as the text wubot
//! would have seen ([`crate::message::value_text`]): numbers in their JSON form, `true`
//! as `1`.
//!
//! Deliberate differences from wubot, all at parse time: anything wubot could not parse
//! is an error; a regex the `regex` crate rejects (Perl-only syntax such as look-around
//! or back-references) is an error; a parenthesised group used where a value or regex
//! is expected (`foo equals ( x )`, which wubot compared against the literal text
//! `TRUE`/`FALSE`) is an error; the control characters U+001E and U+001F are not
//! allowed (the parser uses them internally). Line breaks count as whitespace
//! everywhere.
//!
//! Evaluation allocates nothing except when a list or object field is matched against
//! a regex (it is rendered as JSON text first).

mod eval;
mod field;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

pub use field::{FieldPath, find_field};

use crate::message::Message;
#[cfg(doc)]
use crate::message::is_truthy;

/// A parsed condition, ready to evaluate against any number of messages.
#[derive(Clone)]
pub struct Condition {
    source: Box<str>,
    root: eval::Node,
}

/// Why a condition text is not a condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at character {offset}")]
pub struct ConditionError {
    /// Where the problem starts, in characters from the start of the condition text
    /// (counting from 0).
    pub offset: usize,
    /// What is wrong, without the position.
    pub message: String,
}

impl Condition {
    /// Parses a condition, compiling its regexes.
    ///
    /// # Errors
    ///
    /// A [`ConditionError`] naming the first part that is not wubot's language, or the
    /// regex that does not compile, and where it starts.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let root = parse::parse(text)?;
        Ok(Condition { source: text.into(), root })
    }

    /// Whether the message satisfies the condition.
    pub fn eval(&self, message: &Message) -> bool {
        self.root.eval(message.fields())
    }

    /// Whether a message given as its field map satisfies the condition.
    pub fn eval_fields(&self, fields: &Map<String, Value>) -> bool {
        self.root.eval(fields)
    }

    /// The text the condition was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl FromStr for Condition {
    type Err = ConditionError;

    fn from_str(text: &str) -> Result<Condition, ConditionError> {
        Condition::parse(text)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").field("source", &self.source).field("parsed", &self.root).finish()
    }
}
