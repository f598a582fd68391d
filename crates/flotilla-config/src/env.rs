//! Environment substitution in configuration values.
//!
//! `${NAME}` is replaced by the variable's value, `${NAME:-default}` falls back to
//! `default` (which may be empty) when the variable is unset, and `$$` is a literal `$`.
//! Any other `$` is kept as written, so regular expressions such as `^foo$` need no
//! escaping. The default is taken literally up to the first `}`; it is not itself
//! substituted. The environment is a function so that tests (and `flotilla check` on
//! another machine's configuration) can supply their own.
//!
//! Substitution happens after YAML parsing, on the text of each value, so YAML syntax
//! still applies around a reference: inside a flow collection (`[…]`, `{…}`) braces are
//! syntax, so write `["${A}"]` rather than `[${A}]`. A substituted plain value keeps its
//! YAML typing (`port: ${PORT}` is a number when `PORT=8080`); quote it to force text.

use std::borrow::Cow;

/// What can go wrong substituting one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstError {
    /// `${NAME}` names a variable that is not set and no default was given.
    #[error("environment variable {0} is not set (write ${{{0}:-default}} to give a default)")]
    Unset(String),
    /// `${` without its closing `}`.
    #[error("unterminated '${{' in a value (write '$$' for a literal '$')")]
    Unterminated,
    /// `${…}` whose name is not letters, digits and underscores (not starting with a digit).
    #[error(
        "invalid environment variable reference '{0}' (expected ${{NAME}} or ${{NAME:-default}}, NAME made of letters, digits and '_')"
    )]
    BadReference(String),
}

/// Replaces every reference in `text`. Returns every error found in the value, not just
/// the first, so one `flotilla check` run shows them all.
pub fn substitute<'t>(text: &'t str, env: &dyn Fn(&str) -> Option<String>) -> Result<Cow<'t, str>, Vec<SubstError>> {
    if !text.contains('$') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let Some(close) = body_and_tail.find('}') else {
                errors.push(SubstError::Unterminated);
                rest = "";
                break;
            };
            let body = &body_and_tail[..close];
            rest = &body_and_tail[close + 1..];
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (body, None),
            };
            if !is_variable_name(name) {
                errors.push(SubstError::BadReference(format!("${{{body}}}")));
                continue;
            }
            match (env(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => errors.push(SubstError::Unset(name.to_string())),
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if errors.is_empty() { Ok(Cow::Owned(out)) } else { Err(errors) }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/fleet".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("${HOME}".into()),
            _ => None,
        }
    }

    #[track_caller]
    fn check(text: &str, expect: &str) {
        let got = match substitute(text, &env) {
            Ok(value) => value.into_owned(),
            Err(errors) => {
                let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
                format!("ERR {}", messages.join(" | "))
            }
        };
        assert_eq!(got, expect, "substituting {text:?}");
    }

    #[test]
    fn substitution() {
        check("plain", "plain");
        check("${HOME}/data", "/home/fleet/data");
        check("a${HOME}b${HOME}c", "a/home/fleetb/home/fleetc");
        check("${EMPTY}", "");
        check("${EMPTY:-x}", "");
        check("${UNSET:-fallback}", "fallback");
        check("${UNSET:-}", "");
        check("${UNSET:-a:-b}", "a:-b");
        check("${DOLLAR}", "${HOME}");
        check("$$HOME", "$HOME");
        check("$${HOME}", "${HOME}");
        check("$$$$", "$$");
        check("^foo$", "^foo$");
        check("cost: 5$ or $5", "cost: 5$ or $5");
        check("$", "$");
        check("${UNSET}", "ERR environment variable UNSET is not set (write ${UNSET:-default} to give a default)");
        check(
            "${A} and ${B}",
            "ERR environment variable A is not set (write ${A:-default} to give a default) \
             | environment variable B is not set (write ${B:-default} to give a default)",
        );
        check("x${HOME", "ERR unterminated '${' in a value (write '$$' for a literal '$')");
        check(
            "${}",
            "ERR invalid environment variable reference '${}' (expected ${NAME} or ${NAME:-default}, NAME made of letters, digits and '_')",
        );
        check(
            "${1A}",
            "ERR invalid environment variable reference '${1A}' (expected ${NAME} or ${NAME:-default}, NAME made of letters, digits and '_')",
        );
        check(
            "${A-b}",
            "ERR invalid environment variable reference '${A-b}' (expected ${NAME} or ${NAME:-default}, NAME made of letters, digits and '_')",
        );
        check("${_x9}", "ERR environment variable _x9 is not set (write ${_x9:-default} to give a default)");
        check("€${UNSET:-ü}€", "€ü€");
    }
}
