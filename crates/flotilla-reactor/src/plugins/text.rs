//! Plugins that work on a field's text: CaptureData, TransformField and HTMLStrip.

use flotilla_core::Message;
use flotilla_core::message::{is_truthy, value_text};
use regex::{Captures, Regex, RegexBuilder};

use super::{Flow, PluginConfig, field, required};

/// Compiles a config regex, recording an error on `key` when it is invalid.
fn config_regex(cfg: &mut PluginConfig<'_>, key: &'static str, pattern: &str, dot_all: bool) -> Option<Regex> {
    match RegexBuilder::new(pattern).dot_matches_new_line(dot_all).build() {
        Ok(regex) => Some(regex),
        Err(e) => {
            cfg.error(key, format!("invalid regex '{pattern}': {}", regex_error_summary(&e)));
            None
        }
    }
}

/// The regex crate's error without its multi-line drawing.
fn regex_error_summary(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_string)
}

#[derive(Debug)]
enum RegexSource {
    Fixed(Regex),
    FromField(String),
}

/// CaptureData: when `source_field` (or `field`) is truthy and `regexp` (or the regex
/// in `regexp_field`) matches it, sets `target_field` (default: `field`, else
/// `source_field`) to the first capture group, if that is truthy. `.` matches line
/// breaks, as wubot's `m|…|s` did.
#[derive(Debug)]
pub(crate) struct CaptureData {
    source: String,
    regex: RegexSource,
    target: String,
}

impl CaptureData {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<CaptureData> {
        let source_field = cfg.string("source_field");
        let field = cfg.string("field");
        let target_field = cfg.string("target_field");
        let pattern = cfg.string("regexp");
        let regexp_field = cfg.string("regexp_field");
        let source = source_field.clone().or_else(|| field.clone());
        if source.is_none() && !cfg.has("source_field") && !cfg.has("field") {
            cfg.error_here("CaptureData needs 'source_field' or 'field' in its config".into());
        }
        let target = target_field.or(field).or(source_field);
        let regex = match (pattern, regexp_field) {
            (Some(_), Some(_)) => {
                cfg.error_here("use either 'regexp' or 'regexp_field', not both".into());
                None
            }
            (Some(pattern), None) => {
                let regex = config_regex(cfg, "regexp", &pattern, true)?;
                if regex.captures_len() < 2 {
                    cfg.error("regexp", format!("the regex '{pattern}' has no capture group '( … )' to capture"));
                    return None;
                }
                Some(RegexSource::Fixed(regex))
            }
            (None, Some(name)) => Some(RegexSource::FromField(name)),
            (None, None) => {
                if !cfg.has("regexp") && !cfg.has("regexp_field") {
                    cfg.error_here("CaptureData needs 'regexp' or 'regexp_field' in its config".into());
                }
                None
            }
        };
        Some(CaptureData { source: source?, regex: regex?, target: target? })
    }

    pub(crate) fn apply(&self, message: &mut Message) -> Result<Flow, String> {
        let Some(value) = field(message, &self.source).filter(|v| is_truthy(v)) else {
            return Ok(Flow::Keep);
        };
        let text = value_text(value);
        let runtime_regex;
        let regex = match &self.regex {
            RegexSource::Fixed(regex) => regex,
            RegexSource::FromField(name) => {
                let pattern = value_text(required(message, name)?);
                runtime_regex = RegexBuilder::new(&pattern)
                    .dot_matches_new_line(true)
                    .build()
                    .map_err(|e| format!("invalid regex '{pattern}' in field '{name}': {}", regex_error_summary(&e)))?;
                &runtime_regex
            }
        };
        let captured = regex
            .captures(&text)
            .and_then(|caps| caps.get(1))
            .map(|m| m.as_str())
            .filter(|s| !s.is_empty() && *s != "0")
            .map(str::to_string);
        if let Some(captured) = captured {
            message.set(self.target.as_str(), captured);
        }
        Ok(Flow::Keep)
    }
}

/// One piece of a TransformField replacement.
#[derive(Debug, Clone, PartialEq)]
enum Replace {
    Text(String),
    Group(usize),
}

/// TransformField: replaces every match of `regexp_search` in `source_field` by
/// `regexp_replace` (default empty; `$1`, `${1}` or `\1` insert a capture group) and
/// stores the result in `target_field` (default: the source field).
#[derive(Debug)]
pub(crate) struct TransformField {
    source: String,
    target: String,
    search: Regex,
    replace: Vec<Replace>,
}

impl TransformField {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<TransformField> {
        let source = cfg.required_string("source_field");
        let target = cfg.string("target_field");
        let pattern = cfg.required_string("regexp_search");
        let replacement = cfg.string("regexp_replace").unwrap_or_default();
        let search = config_regex(cfg, "regexp_search", &pattern?, false)?;
        let replace = parse_replacement(&replacement);
        if let Some(group) = replace.iter().find_map(|r| match r {
            Replace::Group(n) if *n >= search.captures_len() => Some(*n),
            _ => None,
        }) {
            cfg.error(
                "regexp_replace",
                format!("refers to group {group}, but the search regex has {} group(s)", search.captures_len() - 1),
            );
            return None;
        }
        let source = source?;
        Some(TransformField { target: target.unwrap_or_else(|| source.clone()), source, search, replace })
    }

    pub(crate) fn apply(&self, message: &mut Message) -> Result<Flow, String> {
        let text = value_text(required(message, &self.source)?);
        let replaced = self
            .search
            .replace_all(&text, |caps: &Captures<'_>| {
                let mut out = String::new();
                for piece in &self.replace {
                    match piece {
                        Replace::Text(t) => out.push_str(t),
                        Replace::Group(n) => out.push_str(caps.get(*n).map_or("", |m| m.as_str())),
                    }
                }
                out
            })
            .into_owned();
        message.set(self.target.as_str(), replaced);
        Ok(Flow::Keep)
    }
}

/// Splits a replacement into text and group references (`$N`, `${N}`, `\N`).
fn parse_replacement(text: &str) -> Vec<Replace> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        let rest = &text[i + c.len_utf8()..];
        let group = match c {
            '$' if rest.starts_with('{') => rest[1..].find('}').and_then(|close| {
                let digits = &rest[1..1 + close];
                digits.parse::<usize>().ok().map(|n| (n, close + 2))
            }),
            '$' | '\\' => {
                let len = rest.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(rest.len());
                rest[..len].parse::<usize>().ok().map(|n| (n, len))
            }
            _ => None,
        };
        match group {
            Some((n, skip)) => {
                if !literal.is_empty() {
                    pieces.push(Replace::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Replace::Group(n));
                for _ in 0..rest[..skip].chars().count() {
                    chars.next();
                }
            }
            None => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Replace::Text(literal));
    }
    pieces
}

/// HTMLStrip: when `field` is truthy, stores its text without HTML in `target_field`
/// (or wubot's `newfield`, default `<field>_text`).
#[derive(Debug)]
pub(crate) struct HtmlStrip {
    field: String,
    target: String,
}

impl HtmlStrip {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<HtmlStrip> {
        let field = cfg.required_string("field");
        let target = cfg.string("target_field");
        let newfield = cfg.string("newfield");
        let field = field?;
        let target = target.or(newfield).unwrap_or_else(|| format!("{field}_text"));
        Some(HtmlStrip { field, target })
    }

    pub(crate) fn apply(&self, message: &mut Message) -> Result<Flow, String> {
        if let Some(value) = field(message, &self.field).filter(|v| is_truthy(v)) {
            let stripped = strip_html(&value_text(value));
            message.set(self.target.as_str(), stripped);
        }
        Ok(Flow::Keep)
    }
}

/// Removes HTML: tags and comments go, the contents of `script` and `style` go, common
/// entities are decoded, and a removed tag between two words leaves one space (as
/// HTML::Strip does). Non-breaking spaces become plain spaces.
pub(crate) fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut pending_space = false;
    let mut rest = html;
    let emit = |out: &mut String, pending: &mut bool, text: &str| {
        for c in text.chars() {
            let c = if c == '\u{A0}' { ' ' } else { c };
            // Like HTML::Strip, a removed tag separates words, but not a word from the
            // punctuation after it.
            if *pending && c.is_alphanumeric() && !out.is_empty() && !out.ends_with(char::is_whitespace) {
                out.push(' ');
            }
            if !c.is_whitespace() {
                *pending = false;
            }
            out.push(c);
        }
    };
    while !rest.is_empty() {
        let Some(at) = rest.find(['<', '&']) else {
            emit(&mut out, &mut pending_space, rest);
            break;
        };
        emit(&mut out, &mut pending_space, &rest[..at]);
        rest = &rest[at..];
        if rest.starts_with('&') {
            match decode_entity(rest) {
                Some((decoded, len)) => {
                    let mut buf = [0u8; 4];
                    emit(&mut out, &mut pending_space, decoded.encode_utf8(&mut buf));
                    rest = &rest[len..];
                }
                None => {
                    emit(&mut out, &mut pending_space, "&");
                    rest = &rest[1..];
                }
            }
            continue;
        }
        // A '<' that does not start a tag ("a < b") is text.
        let starts_tag = rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?');
        if !starts_tag {
            emit(&mut out, &mut pending_space, "<");
            rest = &rest[1..];
            continue;
        }
        if let Some(comment) = rest.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            pending_space = true;
            continue;
        }
        let Some(close) = rest.find('>') else {
            // An unterminated tag runs to the end of the text.
            break;
        };
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        pending_space = true;
        let name: String =
            tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        if name == "script" || name == "style" {
            let closing = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = match lower.find(&closing) {
                Some(end) => rest[end..].find('>').map_or("", |gt| &rest[end + gt + 1..]),
                None => "",
            };
        }
    }
    out
}

/// Decodes the entity at the start of `text` (which starts with '&'): the character
/// and the entity's length.
fn decode_entity(text: &str) -> Option<(char, usize)> {
    let end = text[1..].find(';')? + 1;
    if end > 12 {
        return None;
    }
    let name = &text[1..end];
    let c = if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        char::from_u32(code)?
    } else {
        match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "nbsp" => '\u{A0}',
            "copy" => '©',
            "reg" => '®',
            "hellip" => '…',
            "mdash" => '—',
            "ndash" => '–',
            "lsquo" => '‘',
            "rsquo" => '’',
            "ldquo" => '“',
            "rdquo" => '”',
            "laquo" => '«',
            "raquo" => '»',
            _ => return None,
        }
    };
    Some((c, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_html() {
        let cases = [
            ("<p>Hello</p>", "Hello"),
            ("a<br>b", "a b"),
            ("a <b>bold</b> move", "a bold move"),
            ("x&amp;y &lt;tag&gt; &quot;q&quot; &#65;&#x42; &nbsp;z", "x&y <tag> \"q\" AB  z"),
            ("&unknown; & alone", "&unknown; & alone"),
            ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
            ("<script>var a = '<p>';</script>after", "after"),
            ("<STYLE type=x>p {}</STYLE >text", "text"),
            ("before<!-- <p>hidden</p> -->after", "before after"),
            ("<a href=\"x\">link</a>, next", "link, next"),
            ("unterminated <b", "unterminated "),
            ("caf\u{e9} <i>\u{fc}ber</i>", "café über"),
            ("", ""),
        ];
        for (html, text) in cases {
            assert_eq!(strip_html(html), text, "{html}");
        }
    }

    #[test]
    fn parses_replacements() {
        use Replace::{Group, Text};
        let cases = [
            ("", vec![]),
            ("plain", vec![Text("plain".into())]),
            ("$1-\\2 ${3}x", vec![Group(1), Text("-".into()), Group(2), Text(" ".into()), Group(3), Text("x".into())]),
            ("$ and \\ and ${x}", vec![Text("$ and \\ and ${x}".into())]),
            ("é$10é", vec![Text("é".into()), Group(10), Text("é".into())]),
        ];
        for (text, pieces) in cases {
            assert_eq!(parse_replacement(text), pieces, "{text}");
        }
    }
}
