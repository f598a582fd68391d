//! Templates with wubot's `{$field}` placeholders (Template, and Command's command
//! line), and the Template plugin.
//!
//! wubot filled templates with Text::Template, which runs any `{ … }` as Perl. We keep
//! only what wubot's rules used: `{$name}` (blanks allowed inside the braces) is
//! replaced by the field's text; `name` may be a dotted path into nested values. Any
//! other brace is literal text. A placeholder naming a field the message does not
//! have is an error (wubot silently wrote nothing).
//!
//! A command line ([`Template::parse_command`]) quotes each placeholder's text for the
//! shell (see [`super::shell`]); there, and only there, `{$!name}` is the raw form.

use std::fmt::Write as _;

use flotilla_core::Message;
use flotilla_core::condition::FieldPath;
use flotilla_core::message::{is_truthy, value_text};
use serde_json::Value;

use super::shell::{Quoting, ShellLexer};
use super::{Flow, PluginConfig, field};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
    literal_len: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field(FieldPath, Quoting),
}

impl Template {
    /// Parses a template; the error names the offending placeholder and its character
    /// offset.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        Template::parse_as(text, None)
    }

    /// Parses a command line for `sh -c`: each placeholder's text is quoted for the
    /// place it stands in, and `{$!name}` puts the text in as it is. A placeholder
    /// where no quoting is safe is an error that says why.
    pub(crate) fn parse_command(text: &str) -> Result<Template, String> {
        Template::parse_as(text, Some(ShellLexer::default()))
    }

    fn parse_as(text: &str, mut shell: Option<ShellLexer>) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut consumed = 0;
        // How much of `text` the shell lexer has read.
        let mut lexed = 0;
        while let Some(open) = rest.find('{') {
            let after = rest[open + 1..].trim_start();
            if !after.starts_with('$') {
                literal.push_str(&rest[..=open]);
                consumed += open + 1;
                rest = &rest[open + 1..];
                continue;
            }
            let raw = shell.is_some() && after[1..].starts_with('!');
            let name_start = &after[1 + usize::from(raw)..];
            let name_len =
                name_start.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')).unwrap_or(name_start.len());
            let name = &name_start[..name_len];
            let tail = name_start[name_len..].trim_start();
            let at = || text[..consumed + open].chars().count();
            let shown = || rest[open..].chars().take(24).collect::<String>();
            if name.is_empty() || !tail.starts_with('}') {
                return Err(format!(
                    "invalid placeholder '{}' at character {}: expected {{$field}} (Perl code in braces is not supported)",
                    shown(),
                    at()
                ));
            }
            literal.push_str(&rest[..open]);
            let quoting = match &mut shell {
                None => Quoting::Raw,
                Some(lexer) => {
                    lexer.feed(&text[lexed..consumed + open]);
                    let quoting = lexer.quoting();
                    lexer.placeholder();
                    match quoting {
                        _ if raw => Quoting::Raw,
                        Ok(quoting) => quoting,
                        Err(why) => {
                            return Err(format!(
                                "the placeholder '{}' at character {} cannot be quoted for the shell: {why}; \
                                 move it, or write {{$!{name}}} to put the text in unquoted (only for trusted fields)",
                                shown(),
                                at()
                            ));
                        }
                    }
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Field(FieldPath::new(name), quoting));
            let end = rest.len() - tail.len() + 1;
            consumed += end;
            lexed = consumed;
            rest = &rest[end..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        let literal_len = pieces.iter().map(|p| if let Piece::Text(t) = p { t.len() } else { 0 }).sum();
        Ok(Template { pieces, literal_len })
    }

    /// Fills the template from the message.
    pub(crate) fn render(&self, message: &Message) -> Result<String, String> {
        let mut out = String::with_capacity(self.literal_len + 32);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field(path, quoting) => match path.lookup(message.fields()) {
                    Some(Value::String(text)) => quoting.push(text, &mut out),
                    Some(Value::Number(n)) if *quoting == Quoting::Raw => {
                        let _ = write!(out, "{n}");
                    }
                    Some(value) => quoting.push(&value_text(value), &mut out),
                    None => {
                        return Err(format!("{{${}}} names a field the message does not have", path.as_str()));
                    }
                },
            }
        }
        Ok(out)
    }
}

/// Where the Template plugin's template comes from.
#[derive(Debug)]
enum Source {
    Fixed(Template),
    FromField(String),
}

/// Template: fills `template` (or the template in `source_field`, or in
/// `template_file`) from the message into `target_field`.
#[derive(Debug)]
pub(crate) struct TemplatePlugin {
    source: Source,
    target: String,
}

impl TemplatePlugin {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<TemplatePlugin> {
        let template = cfg.string("template");
        let source_field = cfg.string("source_field");
        let file = cfg.string("template_file");
        let target = cfg.required_string("target_field");
        let given = [template.is_some(), source_field.is_some(), file.is_some()].iter().filter(|b| **b).count();
        if given > 1 {
            cfg.error_here("use only one of 'template', 'source_field' and 'template_file'".into());
            return None;
        }
        let (key, text) = match (template, source_field, file) {
            (Some(text), _, _) => ("template", text),
            (_, Some(name), _) => return Some(TemplatePlugin { source: Source::FromField(name), target: target? }),
            (_, _, Some(name)) => ("template_file", cfg.read_file("template_file", &name)?),
            _ => {
                if !cfg.has("template") && !cfg.has("source_field") && !cfg.has("template_file") {
                    cfg.error_here("Template needs 'template', 'source_field' or 'template_file' in its config".into());
                }
                return None;
            }
        };
        let parsed = match Template::parse(&text) {
            Ok(parsed) => parsed,
            Err(e) => {
                cfg.error(key, e);
                return None;
            }
        };
        Some(TemplatePlugin { source: Source::Fixed(parsed), target: target? })
    }

    pub(crate) fn apply(&self, message: &mut Message) -> Result<Flow, String> {
        let text = match &self.source {
            Source::Fixed(template) => template.render(message)?,
            Source::FromField(name) => {
                // wubot left the message alone when the template field was empty.
                let Some(value) = field(message, name).filter(|v| is_truthy(v)) else {
                    return Ok(Flow::Keep);
                };
                Template::parse(&value_text(value))?.render(message)?
            }
        };
        message.set(self.target.as_str(), text);
        Ok(Flow::Keep)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(template: &str, message: serde_json::Value, expect: Result<&str, &str>) {
        let message = Message::from_value(message).unwrap();
        let got = Template::parse(template).and_then(|t| t.render(&message));
        match (got, expect) {
            (Ok(text), Ok(want)) => assert_eq!(text, want, "{template}"),
            (Err(e), Err(want)) => assert!(e.contains(want), "{template}: error '{e}' lacks '{want}'"),
            (got, want) => panic!("{template}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn fills_placeholders() {
        let m =
            || json!({"key": "RSS-perl", "n": 3, "f": 2.5, "t": true, "nil": null, "a": {"b": "deep"}, "x.y": "flat"});
        let cases = [
            ("{$key}: {$n}", m(), Ok("RSS-perl: 3")),
            ("plain text", m(), Ok("plain text")),
            ("", m(), Ok("")),
            ("{ $key }", m(), Ok("RSS-perl")),
            ("{$f}/{$t}/{$nil}|", m(), Ok("2.5/1/|")),
            ("{$a.b} {$x.y}", m(), Ok("deep flat")),
            ("{literal} {} {{$n}}", m(), Ok("{literal} {} {3}")),
            ("{$key}{$key}", m(), Ok("RSS-perlRSS-perl")),
            ("ünï {$key} ✓", m(), Ok("ünï RSS-perl ✓")),
            ("{$missing}", m(), Err("{$missing} names a field the message does not have")),
            ("ab {$ key + 1}", m(), Err("invalid placeholder '{$ key + 1}' at character 3")),
            ("é{$}", m(), Err("at character 1")),
            ("{$key", m(), Err("invalid placeholder")),
        ];
        for (template, message, expect) in cases {
            check(template, message, expect);
        }
    }
}
