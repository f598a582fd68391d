//! The three output formats a subscription can choose for its changes (SPEC §6.4): pipe,
//! xml and json, each one change per string, with the same eight values:
//! `wiki|title|username|action|diffid|changeid|changesize|summary`.
//!
//! The values are derived here once so the formats cannot disagree: `action` is the change
//! type or `log_type/log_action` for log entries; `changesize` is `length.new - length.old`
//! with a missing old length counting as 0 and a missing new length leaving it empty;
//! the summary has its line breaks turned into spaces. Missing values are empty strings in
//! pipe and xml and `null` in json.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::event::Change;

/// How a subscription wants its changes written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutputFormat {
    /// `wiki|title|username|action|diffid|changeid|changesize|summary`.
    #[default]
    Pipe,
    /// `<rc wiki="…" …>summary</rc>`.
    Xml,
    /// One JSON object with the eight keys.
    Json,
}

impl OutputFormat {
    /// Every format, in the order the protocol lists them.
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Pipe, OutputFormat::Xml, OutputFormat::Json];

    /// The format with this name (`pipe`, `xml`, `json`; any letter case).
    pub fn parse(name: &str) -> Option<OutputFormat> {
        OutputFormat::ALL.into_iter().find(|format| format.name().eq_ignore_ascii_case(name))
    }

    /// The format's name as the protocol and the store write it.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Pipe => "pipe",
            OutputFormat::Xml => "xml",
            OutputFormat::Json => "json",
        }
    }
}

/// Writes `change` in `format`.
pub fn render(change: &Change<'_>, format: OutputFormat) -> String {
    let mut out = String::with_capacity(256);
    render_into(change, format, &mut out);
    out
}

/// Appends `change` in `format` to `out` (lets a caller reuse one buffer).
pub fn render_into(change: &Change<'_>, format: OutputFormat, out: &mut String) {
    let values = Values::of(change);
    match format {
        OutputFormat::Pipe => values.pipe(out),
        OutputFormat::Xml => values.xml(out),
        OutputFormat::Json => values.json(out),
    }
}

/// The eight values every format writes.
struct Values<'c> {
    wiki: Option<&'c str>,
    title: Option<&'c str>,
    username: Option<&'c str>,
    action: Option<Cow<'c, str>>,
    diffid: Option<u64>,
    changeid: Option<u64>,
    changesize: Option<i128>,
    summary: Option<Cow<'c, str>>,
}

impl<'c> Values<'c> {
    fn of(change: &'c Change<'_>) -> Values<'c> {
        Values {
            wiki: Some(change.wiki.as_ref()).filter(|w| !w.is_empty()),
            title: change.title.as_deref(),
            username: change.user.as_deref(),
            action: action(change),
            diffid: change.revision_new,
            changeid: change.id,
            changesize: change.length_new.map(|new| i128::from(new) - i128::from(change.length_old.unwrap_or(0))),
            summary: change.comment.as_deref().map(single_line),
        }
    }

    fn pipe(&self, out: &mut String) {
        let fields = [self.wiki, self.title, self.username, self.action.as_deref()];
        for field in fields {
            out.push_str(field.unwrap_or(""));
            out.push('|');
        }
        write_number(out, self.diffid);
        out.push('|');
        write_number(out, self.changeid);
        out.push('|');
        write_signed(out, self.changesize);
        out.push('|');
        out.push_str(self.summary.as_deref().unwrap_or(""));
    }

    fn xml(&self, out: &mut String) {
        out.push_str("<rc");
        let texts = [
            ("wiki", self.wiki),
            ("title", self.title),
            ("username", self.username),
            ("action", self.action.as_deref()),
        ];
        for (name, value) in texts {
            write_xml_attribute(out, name, value.unwrap_or(""));
        }
        let mut number = String::new();
        write_number(&mut number, self.diffid);
        write_xml_attribute(out, "diffid", &number);
        number.clear();
        write_number(&mut number, self.changeid);
        write_xml_attribute(out, "changeid", &number);
        number.clear();
        write_signed(&mut number, self.changesize);
        write_xml_attribute(out, "changesize", &number);
        out.push('>');
        escape_xml(out, self.summary.as_deref().unwrap_or(""), false);
        out.push_str("</rc>");
    }

    fn json(&self, out: &mut String) {
        out.push('{');
        let texts = [
            ("wiki", self.wiki),
            ("title", self.title),
            ("username", self.username),
            ("action", self.action.as_deref()),
        ];
        for (name, value) in texts {
            write_json_key(out, name);
            write_json_text(out, value);
            out.push(',');
        }
        write_json_key(out, "diffid");
        write_json_number(out, self.diffid.map(i128::from));
        out.push(',');
        write_json_key(out, "changeid");
        write_json_number(out, self.changeid.map(i128::from));
        out.push(',');
        write_json_key(out, "changesize");
        write_json_number(out, self.changesize);
        out.push(',');
        write_json_key(out, "summary");
        write_json_text(out, self.summary.as_deref());
        out.push('}');
    }
}

/// The change type, or `log_type/log_action` for a log entry that names both.
fn action<'c>(change: &'c Change<'_>) -> Option<Cow<'c, str>> {
    if change.is_log()
        && let (Some(log_type), Some(log_action)) = (&change.log_type, &change.log_action)
    {
        return Some(Cow::Owned(format!("{log_type}/{log_action}")));
    }
    change.kind.as_deref().map(Cow::Borrowed)
}

/// The text with each line break (`\r\n`, `\n` or `\r`) replaced by one space.
pub fn single_line(text: &str) -> Cow<'_, str> {
    if !text.contains(['\r', '\n']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push(' ');
            }
            '\n' => out.push(' '),
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

fn write_number(out: &mut String, value: Option<u64>) {
    if let Some(value) = value {
        // Writing to a String cannot fail.
        let _ = write!(out, "{value}");
    }
}

/// `+12`, `-5`, `0`.
fn write_signed(out: &mut String, value: Option<i128>) {
    if let Some(value) = value {
        let _ = if value > 0 { write!(out, "+{value}") } else { write!(out, "{value}") };
    }
}

fn write_xml_attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_xml(out, value, true);
    out.push('"');
}

/// Escapes text for XML 1.0. In attributes, quotes are escaped and tabs and line breaks
/// become character references (a parser would otherwise normalise them to spaces).
/// Characters XML 1.0 cannot carry at all (most C0 controls, U+FFFE, U+FFFF) become
/// U+FFFD so the output stays well-formed.
pub(crate) fn escape_xml(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                out.push('\u{FFFD}');
            }
            c => out.push(c),
        }
    }
}

fn write_json_key(out: &mut String, name: &str) {
    write_json_string(out, name);
    out.push(':');
}

fn write_json_text(out: &mut String, value: Option<&str>) {
    match value {
        Some(text) => write_json_string(out, text),
        None => out.push_str("null"),
    }
}

fn write_json_number(out: &mut String, value: Option<i128>) {
    match value {
        Some(value) => {
            let _ = write!(out, "{value}");
        }
        None => out.push_str("null"),
    }
}

/// A JSON string (RFC 8259): quotes, backslashes and control characters escaped; all other
/// characters, non-ASCII included, written as they are.
pub(crate) fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_change;

    /// Renders one event (JSON text) in all three formats.
    #[track_caller]
    fn check(event: &str, pipe: &str, xml: &str, json: &str) {
        let change = parse_change(event.as_bytes()).expect("test event parses");
        assert_eq!(render(&change, OutputFormat::Pipe), pipe, "pipe");
        assert_eq!(render(&change, OutputFormat::Xml), xml, "xml");
        assert_eq!(render(&change, OutputFormat::Json), json, "json");
        // Whatever we write must read back as the same values.
        let value: serde_json::Value =
            serde_json::from_str(&render(&change, OutputFormat::Json)).expect("json output parses");
        assert_eq!(value["title"].as_str(), change.title.as_deref());
    }

    #[test]
    fn log_event_action_is_type_slash_action() {
        check(
            r#"{"wiki":"enwiki","type":"log","log_type":"block","log_action":"reblock","title":"User:X","user":"Admin","comment":"spam","id":9}"#,
            "enwiki|User:X|Admin|block/reblock||9||spam",
            r#"<rc wiki="enwiki" title="User:X" username="Admin" action="block/reblock" diffid="" changeid="9" changesize="">spam</rc>"#,
            r#"{"wiki":"enwiki","title":"User:X","username":"Admin","action":"block/reblock","diffid":null,"changeid":9,"changesize":null,"summary":"spam"}"#,
        );
    }

    #[test]
    fn new_page_counts_missing_old_length_as_zero() {
        check(
            r#"{"wiki":"dewiki","type":"new","title":"Neu","user":"A","comment":"c","id":1,"length":{"new":120},"revision":{"new":77}}"#,
            "dewiki|Neu|A|new|77|1|+120|c",
            r#"<rc wiki="dewiki" title="Neu" username="A" action="new" diffid="77" changeid="1" changesize="+120">c</rc>"#,
            r#"{"wiki":"dewiki","title":"Neu","username":"A","action":"new","diffid":77,"changeid":1,"changesize":120,"summary":"c"}"#,
        );
    }

    #[test]
    fn sizes_are_signed_and_zero_has_no_sign() {
        check(
            r#"{"wiki":"frwiki","type":"edit","title":"T","user":"U","comment":"","length":{"old":10,"new":5}}"#,
            "frwiki|T|U|edit|||-5|",
            r#"<rc wiki="frwiki" title="T" username="U" action="edit" diffid="" changeid="" changesize="-5"></rc>"#,
            r#"{"wiki":"frwiki","title":"T","username":"U","action":"edit","diffid":null,"changeid":null,"changesize":-5,"summary":""}"#,
        );
        check(
            r#"{"wiki":"frwiki","type":"edit","title":"T","user":"U","length":{"old":10,"new":10}}"#,
            "frwiki|T|U|edit|||0|",
            r#"<rc wiki="frwiki" title="T" username="U" action="edit" diffid="" changeid="" changesize="0"></rc>"#,
            r#"{"wiki":"frwiki","title":"T","username":"U","action":"edit","diffid":null,"changeid":null,"changesize":0,"summary":null}"#,
        );
    }

    #[test]
    fn missing_new_length_leaves_size_empty() {
        check(
            r#"{"wiki":"frwiki","type":"edit","title":"T","user":"U","length":{"old":10,"new":null},"revision":null}"#,
            "frwiki|T|U|edit||||",
            r#"<rc wiki="frwiki" title="T" username="U" action="edit" diffid="" changeid="" changesize=""></rc>"#,
            r#"{"wiki":"frwiki","title":"T","username":"U","action":"edit","diffid":null,"changeid":null,"changesize":null,"summary":null}"#,
        );
    }

    #[test]
    fn special_characters_are_escaped_per_format() {
        check(
            r#"{"wiki":"enwiki","type":"edit","title":"A<b> & \"c\" 'd'","user":"Ünïcödé 日本","comment":"x|y <z> & \"q\"\r\nnext\nthird\rfourth","id":5,"revision":{"new":6},"length":{"old":1,"new":2}}"#,
            "enwiki|A<b> & \"c\" 'd'|Ünïcödé 日本|edit|6|5|+1|x|y <z> & \"q\" next third fourth",
            r#"<rc wiki="enwiki" title="A&lt;b&gt; &amp; &quot;c&quot; 'd'" username="Ünïcödé 日本" action="edit" diffid="6" changeid="5" changesize="+1">x|y &lt;z&gt; &amp; "q" next third fourth</rc>"#,
            r#"{"wiki":"enwiki","title":"A<b> & \"c\" 'd'","username":"Ünïcödé 日本","action":"edit","diffid":6,"changeid":5,"changesize":1,"summary":"x|y <z> & \"q\" next third fourth"}"#,
        );
    }

    #[test]
    fn control_characters_cannot_break_xml_or_json() {
        check(
            r#"{"wiki":"enwiki","title":"a\tb","user":"u\u0001v","comment":"back\\slash\u0007"}"#,
            "enwiki|a\tb|u\u{1}v|||||back\\slash\u{7}",
            "<rc wiki=\"enwiki\" title=\"a&#9;b\" username=\"u\u{FFFD}v\" action=\"\" diffid=\"\" changeid=\"\" changesize=\"\">back\\slash\u{FFFD}</rc>",
            r#"{"wiki":"enwiki","title":"a\tb","username":"u\u0001v","action":null,"diffid":null,"changeid":null,"changesize":null,"summary":"back\\slash\u0007"}"#,
        );
    }

    #[test]
    fn an_empty_event_has_every_value_missing() {
        check(
            "{}",
            "|||||||",
            r#"<rc wiki="" title="" username="" action="" diffid="" changeid="" changesize=""></rc>"#,
            r#"{"wiki":null,"title":null,"username":null,"action":null,"diffid":null,"changeid":null,"changesize":null,"summary":null}"#,
        );
    }

    #[test]
    fn log_event_without_log_fields_falls_back_to_its_type() {
        check(
            r#"{"wiki":"enwiki","type":"log","log_type":"move"}"#,
            "enwiki|||log||||",
            r#"<rc wiki="enwiki" title="" username="" action="log" diffid="" changeid="" changesize=""></rc>"#,
            r#"{"wiki":"enwiki","title":null,"username":null,"action":"log","diffid":null,"changeid":null,"changesize":null,"summary":null}"#,
        );
    }

    #[test]
    fn format_names() {
        assert_eq!(OutputFormat::parse("XML"), Some(OutputFormat::Xml));
        assert_eq!(OutputFormat::parse("pipe"), Some(OutputFormat::Pipe));
        assert_eq!(OutputFormat::parse("yaml"), None);
        assert_eq!(OutputFormat::default(), OutputFormat::Pipe);
    }
}
