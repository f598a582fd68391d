//! Reading condition text into [`Node`]s, in wubot's order (see the module docs of
//! `condition`).
//!
//! wubot evaluated parenthesised groups by rewriting the text: the innermost `( X )`
//! was replaced by `TRUE` or `FALSE` and the whole text read again. We do the same
//! rewrite once, at parse time: each group is compiled and its text is masked by a
//! placeholder of the same byte length (so every offset still points into the original
//! text), `\x1E` followed by `\x1F`s. A placeholder then stands where wubot would have
//! seen `TRUE`/`FALSE`.

use std::collections::HashMap;

use regex::RegexBuilder;

use super::ConditionError;
use super::eval::{CompareOp, Expected, Node, Operand, Pattern, perl_number};
use super::field::FieldPath;

const GROUP_START: char = '\u{1E}';
const GROUP_FILL: char = '\u{1F}';

const EXPECTED_FORMS: &str = "expected 'FIELD equals VALUE', 'FIELD matches REGEX', \
     'FIELD imatches REGEX', 'contains FIELD', 'FIELD is true', 'FIELD is false', \
     'A < B' (or <=, >, >=), 'NOT C', 'A AND B', 'A OR B', TRUE, FALSE or '( C )'";

/// Parses a whole condition.
pub(super) fn parse(source: &str) -> Result<Node, ConditionError> {
    let parser = Parser { source };
    if let Some(at) = source.find([GROUP_START, GROUP_FILL]) {
        return Err(parser.error(at, "the control characters U+001E and U+001F are not allowed in a condition".into()));
    }
    let mut masked = source.to_string();
    let mut groups = HashMap::new();
    while let Some((open, close)) = innermost_group(&masked) {
        let node = parser.expr(&masked, open + 1, close, &mut groups)?;
        groups.insert(open, node);
        let placeholder: String =
            std::iter::once(GROUP_START).chain(std::iter::repeat_n(GROUP_FILL, close - open)).collect();
        masked.replace_range(open..=close, &placeholder);
    }
    parser.expr(&masked, 0, masked.len(), &mut groups)
}

/// The leftmost `( X )` whose inside has no parentheses and starts and ends with
/// whitespace, as byte offsets of its two parentheses (wubot's `\(\s+([^()]+)\s+\)`).
fn innermost_group(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut search_from = 0;
    while let Some(found) = text[search_from..].find('(') {
        let open = search_from + found;
        search_from = open + 1;
        let len = text[open + 1..].find(['(', ')'])?;
        let close = open + 1 + len;
        if bytes[close] != b')' {
            continue;
        }
        let inside = &text[open + 1..close];
        let starts_blank = inside.chars().next().is_some_and(char::is_whitespace);
        let ends_blank = inside.chars().next_back().is_some_and(char::is_whitespace);
        if starts_blank && ends_blank && inside.chars().count() >= 3 {
            return Some((open, close));
        }
    }
    None
}

struct Parser<'s> {
    source: &'s str,
}

impl Parser<'_> {
    /// An error at a byte offset of the source, reported in characters.
    fn error(&self, at: usize, message: String) -> ConditionError {
        let offset = self.source.get(..at).map_or(at, |before| before.chars().count());
        ConditionError { offset, message }
    }

    /// The original text of a span (the masked text has the same byte offsets).
    fn original(&self, start: usize, end: usize) -> &str {
        self.source.get(start..end).unwrap_or("")
    }

    /// Parses `text[start..end]` as a condition.
    fn expr(
        &self,
        text: &str,
        start: usize,
        end: usize,
        groups: &mut HashMap<usize, Node>,
    ) -> Result<Node, ConditionError> {
        let (start, end) = trim(text, start, end);
        let s = &text[start..end];
        if s.is_empty() {
            return Err(self.error(start, "expected a condition, found nothing".into()));
        }
        if let Some((left_end, right_start)) = last_keyword(s, "AND") {
            let left = self.expr(text, start, start + left_end, groups)?;
            let right = self.expr(text, start + right_start, end, groups)?;
            return Ok(Node::And(Box::new(left), Box::new(right)));
        }
        if let Some((left_end, right_start)) = last_keyword(s, "OR") {
            let left = self.expr(text, start, start + left_end, groups)?;
            let right = self.expr(text, start + right_start, end, groups)?;
            return Ok(Node::Or(Box::new(left), Box::new(right)));
        }
        match s {
            "TRUE" => return Ok(Node::Const(true)),
            "FALSE" => return Ok(Node::Const(false)),
            _ => {}
        }
        if is_placeholder(s) {
            return groups
                .remove(&start)
                .ok_or_else(|| self.error(start, "internal error: a parenthesised group was lost".into()));
        }
        if let Some(rest) = s.strip_prefix("NOT")
            && rest.starts_with(char::is_whitespace)
        {
            let inner = self.expr(text, start + 3, end, groups)?;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.atom(s, start)
    }

    /// Parses one comparison (everything but AND, OR, NOT, TRUE, FALSE and groups).
    fn atom(&self, s: &str, start: usize) -> Result<Node, ConditionError> {
        if let Some(at) = s.find(GROUP_START) {
            let group_end = s[at..].find(|c| c != GROUP_START && c != GROUP_FILL).map_or(s.len(), |n| at + n);
            return Err(self.error(
                start + at,
                format!(
                    "the parenthesised condition '{}' is used inside '{}', where a field, value or \
                     regex is expected (parentheses with spaces inside group conditions; a regex \
                     group has no space after '(' or before ')', as in (x|y))",
                    self.original(start + at, start + group_end),
                    self.original(start, start + s.len()),
                ),
            ));
        }

        let field_len = s.find(|c: char| !is_field_char(c)).unwrap_or(s.len());
        let field = &s[..field_len];
        let after_field = &s[field_len..];

        // FIELD equals|matches|imatches REST (any whitespace around the keyword).
        if !field.is_empty() && after_field.starts_with(char::is_whitespace) {
            let keyword_at = field_len + (after_field.len() - after_field.trim_start().len());
            let after_ws = &s[keyword_at..];
            for keyword in ["equals", "matches", "imatches"] {
                let Some(rest) = after_ws.strip_prefix(keyword) else {
                    continue;
                };
                if !rest.starts_with(char::is_whitespace) {
                    continue;
                }
                let value = rest.trim_start();
                let value_at = start + s.len() - value.len();
                return match keyword {
                    "equals" => Ok(Node::Equals { field: FieldPath::new(field), value: Expected::new(value) }),
                    _ => self.matches(field, value, value_at, keyword == "imatches"),
                };
            }
        }

        // contains FIELD (one space).
        if let Some(name) = s.strip_prefix("contains ")
            && is_field(name)
        {
            return Ok(Node::Contains(FieldPath::new(name)));
        }

        // FIELD is true / FIELD is false (single spaces).
        if !field.is_empty() {
            match after_field {
                " is true" => return Ok(Node::IsTrue(FieldPath::new(field))),
                " is false" => return Ok(Node::IsFalse(FieldPath::new(field))),
                _ => {}
            }
        }

        // A OP B with single spaces, each side a number or a field.
        let parts: Vec<&str> = s.split(' ').collect();
        if let [left, op, right] = parts[..]
            && is_field(left)
            && is_field(right)
        {
            let op = match op {
                "<" => Some(CompareOp::Less),
                "<=" => Some(CompareOp::LessEqual),
                ">" => Some(CompareOp::Greater),
                ">=" => Some(CompareOp::GreaterEqual),
                _ => None,
            };
            if let Some(op) = op {
                return Ok(Node::Compare { left: operand(left), op, right: operand(right) });
            }
        }

        Err(self.error(start, format!("cannot understand '{}': {EXPECTED_FORMS}{}", s, hint(s))))
    }

    fn matches(&self, field: &str, pattern: &str, at: usize, ignore_case: bool) -> Result<Node, ConditionError> {
        let regex = RegexBuilder::new(pattern)
            .case_insensitive(ignore_case)
            .build()
            .map_err(|e| self.error(at, format!("invalid regex '{pattern}': {}", regex_error_summary(&e))))?;
        // wubot tested `$value && $msg->{$field} =~ m/$value/`: the pattern "0" is false,
        // so such a condition never held. Kept for rules written against wubot.
        if pattern == "0" {
            return Ok(Node::Const(false));
        }
        Ok(Node::Matches { field: FieldPath::new(field), pattern: Pattern::new(pattern, regex, ignore_case) })
    }
}

/// A hint for the mistakes people make most often.
fn hint(s: &str) -> &'static str {
    let lower_keyword = s.split_whitespace().any(|w| w == "and" || w == "or" || w == "not");
    if lower_keyword {
        " (AND, OR and NOT must be upper case)"
    } else if s.contains(" == ") || s.contains(" != ") || s.contains(" = ") {
        " (use 'equals' for text, 'NOT ... equals' for inequality)"
    } else if s.contains('(') || s.contains(')') {
        " (parentheses that group need a space inside: '( a AND b )')"
    } else if s.contains("  ") {
        " (comparisons need exactly one space around the operator)"
    } else {
        ""
    }
}

/// The last `KEYWORD` with whitespace on both sides: (end of the left part, start of
/// the right part), both relative to `s`.
fn last_keyword(s: &str, keyword: &str) -> Option<(usize, usize)> {
    s.rmatch_indices(keyword).find_map(|(at, _)| {
        let before = s[..at].chars().next_back()?;
        let after = s[at + keyword.len()..].chars().next()?;
        (before.is_whitespace() && after.is_whitespace()).then_some((at, at + keyword.len()))
    })
}

fn trim(text: &str, start: usize, end: usize) -> (usize, usize) {
    let s = &text[start..end];
    let leading = s.len() - s.trim_start().len();
    let trailing = s.len() - s.trim_end().len();
    if leading == s.len() { (end, end) } else { (start + leading, end - trailing) }
}

fn is_placeholder(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next() == Some(GROUP_START) && chars.all(|c| c == GROUP_FILL)
}

fn is_field_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn is_field(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_field_char)
}

/// A comparison side: a number if Perl would read it as one, else a field name.
fn operand(text: &str) -> Operand {
    match perl_number(text) {
        Some(n) => Operand::Literal(n),
        None => Operand::Field(FieldPath::new(text)),
    }
}

/// The regex crate's error without its multi-line drawing: the "error: …" line.
fn regex_error_summary(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_string)
}
