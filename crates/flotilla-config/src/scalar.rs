//! YAML 1.2 core-schema typing of plain scalars.
//!
//! The tree keeps every scalar as text; only when something asks "what is this?"
//! (decoding into `serde_json::Value`, [`crate::Node::to_json`]) is a plain scalar typed,
//! following the core schema: `null`/`~`/empty are null, `true`/`false` booleans, then
//! decimal, `0o` octal and `0x` hex integers, then floats including `.inf` and `.nan`.
//! Quoted scalars are always strings. YAML 1.1's `yes`/`no`/`on`/`off` are strings.

/// What a plain scalar means under the core schema.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Resolved {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str,
}

/// Types a plain scalar.
pub(crate) fn resolve(text: &str) -> Resolved {
    if is_null(text) {
        return Resolved::Null;
    }
    if let Some(value) = parse_bool(text) {
        return Resolved::Bool(value);
    }
    if let Some(value) = parse_int(text) {
        return Resolved::Int(value);
    }
    if let Some(value) = parse_float(text) {
        return Resolved::Float(value);
    }
    Resolved::Str
}

pub(crate) fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// The other spellings a key typed as a boolean accepts (SPEC §3): wubot's `1`/`0` and
/// `yes`/`no`. Only where a boolean is expected: elsewhere `1` stays a number and `yes`
/// a string.
pub(crate) fn parse_bool_word(text: &str) -> Option<bool> {
    match text {
        "1" | "yes" | "Yes" | "YES" => Some(true),
        "0" | "no" | "No" | "NO" => Some(false),
        _ => None,
    }
}

/// Core-schema integers: `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`. `None` when the
/// text is not an integer or does not fit an `i128` (such text is then tried as a float).
pub(crate) fn parse_int(text: &str) -> Option<i128> {
    if let Some(octal) = text.strip_prefix("0o") {
        return digits_in_radix(octal, 8);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return digits_in_radix(hex, 16);
    }
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = digits_in_radix(digits, 10)?;
    Some(if negative { -magnitude } else { magnitude })
}

fn digits_in_radix(digits: &str, radix: u32) -> Option<i128> {
    // `from_str_radix` alone would also accept a sign, which the schema does not allow here.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    i128::from_str_radix(digits, radix).ok()
}

/// Core-schema floats: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`,
/// `[-+]?.inf` and `.nan` in their three spellings.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'-') => (-1.0, &text[1..]),
        Some(b'+') => (1.0, &text[1..]),
        _ => (1.0, text),
    };
    if matches!(rest, ".inf" | ".Inf" | ".INF") {
        return Some(sign * f64::INFINITY);
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    if !is_decimal_float(rest) {
        return None;
    }
    // The shape check above rules out what Rust's parser would accept beyond the schema
    // (`inf`, `nan`, `infinity`), so any text reaching here parses.
    text.parse::<f64>().ok()
}

fn is_decimal_float(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    let leading = count_digits(&bytes[at..]);
    at += leading;
    let mut fraction = 0;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        fraction = count_digits(&bytes[at..]);
        at += fraction;
    }
    // `.5` and `5.` and `5` are numbers; a lone `.` is not.
    if leading == 0 && fraction == 0 {
        return false;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'-' | b'+')) {
            at += 1;
        }
        let exponent = count_digits(&bytes[at..]);
        if exponent == 0 {
            return false;
        }
        at += exponent;
    }
    at == bytes.len()
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expect: &str) {
        let got = match resolve(text) {
            Resolved::Null => "null".to_string(),
            Resolved::Bool(b) => format!("bool {b}"),
            Resolved::Int(i) => format!("int {i}"),
            Resolved::Float(f) => format!("float {f}"),
            Resolved::Str => "str".to_string(),
        };
        assert_eq!(got, expect, "resolving {text:?}");
    }

    #[test]
    fn core_schema() {
        check("", "null");
        check("~", "null");
        check("null", "null");
        check("NULL", "null");
        check("nULL", "str");
        check("true", "bool true");
        check("False", "bool false");
        check("yes", "str");
        check("off", "str");
        check("0", "int 0");
        check("-17", "int -17");
        check("+17", "int 17");
        check("0o17", "int 15");
        check("0x1F", "int 31");
        check("0x", "str");
        check("0o8", "str");
        check("0x-1", "str");
        check("1_000", "str");
        check("1.5", "float 1.5");
        check("-.5", "float -0.5");
        check("5.", "float 5");
        check("1e3", "float 1000");
        check("1.5E-2", "float 0.015");
        check("1e", "str");
        check(".", "str");
        check("-", "str");
        check(".inf", "float inf");
        check("-.Inf", "float -inf");
        check(".NaN", "float NaN");
        check("inf", "str");
        check("nan", "str");
        check("infinity", "str");
        check("127.0.0.1", "str");
        check("5s", "str");
        check("99999999999999999999999999999999999999999", "float 100000000000000000000000000000000000000000");
    }
}
