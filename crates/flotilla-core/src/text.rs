//! Text from strangers made safe to print on a terminal.
//!
//! Chat lines, feed titles and edit summaries may carry control characters: an escape
//! sequence (`ESC [`, or the one-character C1 `CSI`, U+009B) can recolour, retitle or
//! rewrite a terminal, and a line break can forge a line of output. Whatever prints
//! such text (`flotilla tail`, the Console plugin, `rules test`, `status`) writes it
//! through [`escape_controls`]: every C0 control but tab, DEL and every C1 control
//! becomes a JSON-style escape (`\n`, `\r`, `\u001b`, `\u007f`, `\u009b`). Tab only
//! moves the cursor, so it stays. The escapes are JSON's, so a JSON line stays valid
//! JSON with the same value.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether printing `c` could do more than show a character.
fn is_control(c: char) -> bool {
    c != '\t' && (c.is_ascii_control() || ('\u{80}'..='\u{9f}').contains(&c))
}

/// `text` with its control characters (C0 but tab, DEL, C1) escaped as JSON does.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_control(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_c0_del_and_c1_but_not_tab() {
        let cases = [
            ("plain ünï 日本", "plain ünï 日本"),
            ("tab\tstays", "tab\tstays"),
            ("\u{1b}[31mred\u{1b}[0m", "\\u001b[31mred\\u001b[0m"),
            ("two\nlines\r", "two\\nlines\\r"),
            ("\0bell\u{7}del\u{7f}", "\\u0000bell\\u0007del\\u007f"),
            ("csi\u{9b}2J nel\u{85} \u{80}\u{9f} \u{a0}", "csi\\u009b2J nel\\u0085 \\u0080\\u009f \u{a0}"),
        ];
        for (text, want) in cases {
            assert_eq!(escape_controls(text), want, "{text:?}");
        }
        assert!(matches!(escape_controls("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_json_line_stays_the_same_json() {
        let value = serde_json::json!({"subject": "x\u{9b}y\u{7f}z", "n": 1});
        let line = serde_json::to_string(&value).unwrap();
        assert!(line.contains('\u{9b}'), "serde_json leaves C1 as it is");
        let escaped = escape_controls(&line);
        assert!(!escaped.contains('\u{9b}') && !escaped.contains('\u{7f}'));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&escaped).unwrap(), value);
    }
}
