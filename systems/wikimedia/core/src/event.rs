//! Recent-change events: one EventStreams `mediawiki/recentchange` JSON object (or the
//! older RCFeed shape, which has the same fields without `meta`) becomes a [`Change`]
//! holding only what matching and the output formats need.
//!
//! Parsing is on the hot path (the live stream is 30–50 events per second, a replay can be
//! far faster), so strings are borrowed from the input when they contain no escapes and
//! every field we do not use (`parsedcomment`, `log_params`, …) is skipped without being
//! built.

use std::borrow::Cow;

use serde::Deserialize;

/// The value of `meta.domain` on EventStreams' monitoring probes.
pub const CANARY_DOMAIN: &str = "canary";

/// One recent change, borrowed from the event's bytes where possible.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change<'a> {
    /// The wiki's database name (`wiki`), e.g. `enwiki`; empty if the event has none.
    pub wiki: Cow<'a, str>,
    /// `server_name`, e.g. `en.wikipedia.org`.
    pub server_name: Option<Cow<'a, str>>,
    /// `meta.domain`; `canary` marks a monitoring probe.
    pub domain: Option<Cow<'a, str>>,
    /// `type`: `edit`, `new`, `log`, `categorize`, `external`.
    pub kind: Option<Cow<'a, str>>,
    /// `title`, with namespace prefix.
    pub title: Option<Cow<'a, str>>,
    /// `user`.
    pub user: Option<Cow<'a, str>>,
    /// `comment`: the edit summary or log reason.
    pub comment: Option<Cow<'a, str>>,
    /// `bot` (absent counts as false).
    pub bot: bool,
    /// `minor` (absent, as on log events, counts as false).
    pub minor: bool,
    /// `log_type`, on log events.
    pub log_type: Option<Cow<'a, str>>,
    /// `log_action`, on log events.
    pub log_action: Option<Cow<'a, str>>,
    /// `id`: the recent-change id.
    pub id: Option<u64>,
    /// `revision.new`: the new revision (the diff id).
    pub revision_new: Option<u64>,
    /// `length.old`: page size before, in bytes.
    pub length_old: Option<u64>,
    /// `length.new`: page size after, in bytes.
    pub length_new: Option<u64>,
}

impl Change<'_> {
    /// Whether this is an EventStreams canary (a monitoring probe, not a change).
    pub fn is_canary(&self) -> bool {
        self.domain.as_deref() == Some(CANARY_DOMAIN)
    }

    /// Whether the change created a page (`type` is `new`).
    pub fn is_new(&self) -> bool {
        self.kind.as_deref() == Some("new")
    }

    /// Whether the change is a log entry (`type` is `log`).
    pub fn is_log(&self) -> bool {
        self.kind.as_deref() == Some("log")
    }

    /// A copy that owns all its text, to keep beyond the input's lifetime.
    pub fn into_owned(self) -> Change<'static> {
        fn own(text: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            text.map(|t| Cow::Owned(t.into_owned()))
        }
        Change {
            wiki: Cow::Owned(self.wiki.into_owned()),
            server_name: own(self.server_name),
            domain: own(self.domain),
            kind: own(self.kind),
            title: own(self.title),
            user: own(self.user),
            comment: own(self.comment),
            bot: self.bot,
            minor: self.minor,
            log_type: own(self.log_type),
            log_action: own(self.log_action),
            id: self.id,
            revision_new: self.revision_new,
            length_old: self.length_old,
            length_new: self.length_new,
        }
    }
}

/// Why bytes are not a recent-change event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid recent-change event at line {line}, column {column}: {detail}")]
pub struct EventError {
    /// 1-based line of the problem in the input.
    pub line: usize,
    /// 1-based column of the problem in the input.
    pub column: usize,
    /// What was wrong.
    pub detail: String,
}

/// Parses one recent-change event.
///
/// # Errors
/// [`EventError`] with the position when the bytes are not JSON, not an object, or a
/// field we use has the wrong type (a string where a number belongs, …).
pub fn parse_change(bytes: &[u8]) -> Result<Change<'_>, EventError> {
    // serde's derived struct reader also accepts an array of positional values; an event
    // is always an object, so say so rather than complain about the array's first item.
    if let Some(start) = bytes.iter().position(|b| !b.is_ascii_whitespace())
        && bytes[start] != b'{'
    {
        let line = 1 + bytes[..start].iter().filter(|&&b| b == b'\n').count();
        let column = start - bytes[..start].iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1) + 1;
        return Err(EventError { line, column, detail: "expected a JSON object".to_string() });
    }
    let raw: RawChange<'_> = serde_json::from_slice(bytes).map_err(|e| EventError {
        line: e.line(),
        column: e.column(),
        detail: without_position(&e),
    })?;
    Ok(raw.into_change())
}

/// serde_json's message ends with " at line L column C", which [`EventError`] already
/// reports in its own words.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// A string field that borrows from the input when it can. serde borrows only for a
/// field whose type is exactly `Cow<str>`, so optional fields wrap it in this newtype.
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn text(value: Option<Text<'_>>) -> Option<Cow<'_, str>> {
    value.map(|t| t.0)
}

#[derive(Deserialize)]
#[serde(expecting = "a recent-change object")]
struct RawChange<'a> {
    #[serde(borrow)]
    wiki: Option<Text<'a>>,
    #[serde(borrow)]
    server_name: Option<Text<'a>>,
    #[serde(borrow)]
    meta: Option<RawMeta<'a>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    title: Option<Text<'a>>,
    #[serde(borrow)]
    user: Option<Text<'a>>,
    #[serde(borrow)]
    comment: Option<Text<'a>>,
    bot: Option<bool>,
    minor: Option<bool>,
    #[serde(borrow)]
    log_type: Option<Text<'a>>,
    #[serde(borrow)]
    log_action: Option<Text<'a>>,
    id: Option<u64>,
    revision: Option<OldNew>,
    length: Option<OldNew>,
}

#[derive(Deserialize)]
struct RawMeta<'a> {
    #[serde(borrow)]
    domain: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct OldNew {
    old: Option<u64>,
    new: Option<u64>,
}

impl<'a> RawChange<'a> {
    fn into_change(self) -> Change<'a> {
        let (revision_new, (length_old, length_new)) =
            (self.revision.and_then(|r| r.new), self.length.map_or((None, None), |l| (l.old, l.new)));
        Change {
            wiki: text(self.wiki).unwrap_or_default(),
            server_name: text(self.server_name),
            domain: self.meta.and_then(|m| text(m.domain)),
            kind: text(self.kind),
            title: text(self.title),
            user: text(self.user),
            comment: text(self.comment),
            bot: self.bot.unwrap_or(false),
            minor: self.minor.unwrap_or(false),
            log_type: text(self.log_type),
            log_action: text(self.log_action),
            id: self.id,
            revision_new,
            length_old,
            length_new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_error(input: &str, expect: &str) {
        let err = parse_change(input.as_bytes()).expect_err("should fail");
        assert_eq!(err.to_string(), expect);
    }

    #[test]
    fn minimal_and_full_events() {
        let change = parse_change(br#"{"wiki":"enwiki","title":"A\"B","bot":true,"length":{"new":5},"revision":null,"meta":{"domain":"canary"}}"#)
            .expect("parses");
        assert_eq!(change.wiki, "enwiki");
        assert_eq!(change.title.as_deref(), Some("A\"B"));
        assert!(change.bot && !change.minor);
        assert_eq!((change.length_old, change.length_new), (None, Some(5)));
        assert_eq!(change.revision_new, None);
        assert!(change.is_canary());

        let empty = parse_change(b"{}").expect("an empty object is a change with no fields");
        assert_eq!(empty, Change::default());
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let change = parse_change(br#"{"wiki":"enwiki","title":"Plain","user":"Esc\u0041ped"}"#).expect("parses");
        assert!(matches!(change.wiki, Cow::Borrowed(_)));
        assert!(matches!(change.title, Some(Cow::Borrowed(_))));
        assert!(matches!(change.user, Some(Cow::Owned(_))));
        assert_eq!(change.user.as_deref(), Some("EscAped"));
    }

    #[test]
    fn bad_input_reports_position() {
        check_error(
            "{\"wiki\": \"enwiki\",\n \"id\": \"12\"}",
            "invalid recent-change event at line 2, column 11: invalid type: string \"12\", expected u64",
        );
        check_error("{\"wiki\": ", "invalid recent-change event at line 1, column 9: EOF while parsing a value");
        check_error("[1]", "invalid recent-change event at line 1, column 1: expected a JSON object");
        check_error("\n  \"text\"", "invalid recent-change event at line 2, column 3: expected a JSON object");
        check_error("", "invalid recent-change event at line 1, column 0: EOF while parsing a value");
        check_error(
            "{\"length\": {\"old\": -1}}",
            "invalid recent-change event at line 1, column 21: invalid value: integer `-1`, expected u64",
        );
    }
}
