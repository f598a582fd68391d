//! One recent-change event as a Flotilla message.
//!
//! The message keeps the original event object whole under `event` (so the dispatcher
//! and rules see every field EventStreams sent) and adds convenience fields at the top
//! level for rules, `tail` and people:
//!
//! | field | value |
//! |---|---|
//! | `subject` | `<wiki>: <action> [[<title>]] by <user>` and `: <summary>` when there is one |
//! | `wiki` | the database name (`enwiki`) |
//! | `title`, `user`, `username` | the page and the user (`username` is wubot's name for it) |
//! | `type` | `edit`, `new`, `log`, `categorize`, `external` |
//! | `action` | the type, or `log_type/log_action` for log entries (as the output formats) |
//! | `comment` | the summary, line breaks turned into spaces |
//! | `link` | the diff (`notify_url`), else the page (`title_url`), else built from `server_url` |
//! | `bot`, `minor`, `namespace`, `server_name` | as in the event |
//! | `changeid`, `diffid`, `changesize` | the recent-change id, `revision.new`, `length.new - length.old` |
//! | `lastupdate` | the event's `timestamp` (when the change happened) |
//!
//! The event's own `id` is the recent-change id; it stays inside `event` (and is
//! copied to `changeid`), because the message's top-level `id` is the envelope's ULID.
//! EventStreams canaries (`meta.domain` = `canary`) are monitoring probes, not changes:
//! they never become messages.

use flotilla_core::Message;
use flotilla_wikimedia_core::{Change, parse_change};
use serde_json::{Map, Value};

/// Why an event could not become a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The data is not a recent-change object.
    #[error(transparent)]
    Invalid(#[from] flotilla_wikimedia_core::EventError),
}

/// The plugin name the dispatcher recognises changes by (both connector types use it).
pub const PLUGIN: &str = "wikimedia";

/// Turns one event's JSON into a message; `Ok(None)` for a canary.
///
/// # Errors
/// [`ChangeError`] when the bytes are not a recent-change object.
pub fn change_message(data: &[u8]) -> Result<Option<Message>, ChangeError> {
    let change = parse_change(data)?;
    if change.is_canary() {
        return Ok(None);
    }
    // `parse_change` has checked that this is an object with well-typed fields.
    let event: Map<String, Value> = match serde_json::from_slice(data) {
        Ok(Value::Object(map)) => map,
        _ => return Ok(None),
    };
    let mut message = Message::new();
    let wiki = change.wiki.as_ref();
    let title = change.title.as_deref().unwrap_or("");
    let user = change.user.as_deref().unwrap_or("");
    let action = action(&change);
    let comment = change.comment.as_deref().map(single_line);
    let mut subject = format!("{wiki}: {action} [[{title}]] by {user}");
    if let Some(comment) = comment.as_deref().filter(|c| !c.is_empty()) {
        subject.push_str(": ");
        subject.push_str(comment);
    }
    message.set("subject", subject);
    message.set("wiki", wiki);
    message.set("title", title);
    message.set("user", user);
    message.set("username", user);
    if let Some(kind) = change.kind.as_deref() {
        message.set("type", kind);
    }
    message.set("action", action);
    if let Some(comment) = comment {
        message.set("comment", comment);
    }
    if let Some(link) = link(&event, title) {
        message.set("link", link);
    }
    message.set("bot", change.bot);
    message.set("minor", change.minor);
    for key in ["namespace", "server_name"] {
        if let Some(value) = event.get(key) {
            message.set(key, value.clone());
        }
    }
    message.set("changeid", change.id.map_or(Value::Null, Value::from));
    message.set("diffid", change.revision_new.map_or(Value::Null, Value::from));
    message.set("changesize", changesize(&change).map_or(Value::Null, Value::from));
    if let Some(timestamp) = event.get("timestamp").and_then(Value::as_f64) {
        message.set(flotilla_core::message::LASTUPDATE, timestamp);
    }
    message.set(flotilla_core::message::PLUGIN, PLUGIN);
    message.set("event", Value::Object(event));
    Ok(Some(message))
}

/// The change type, or `log_type/log_action` for a log entry.
fn action(change: &Change<'_>) -> String {
    if change.is_log() {
        format!("{}/{}", change.log_type.as_deref().unwrap_or(""), change.log_action.as_deref().unwrap_or(""))
    } else {
        change.kind.as_deref().unwrap_or("").to_string()
    }
}

/// `length.new - length.old`, a missing old length counting as 0 (a new page).
fn changesize(change: &Change<'_>) -> Option<i64> {
    let new = i64::try_from(change.length_new?).ok()?;
    let old = i64::try_from(change.length_old.unwrap_or(0)).ok()?;
    Some(new - old)
}

fn single_line(text: &str) -> String {
    text.replace("\r\n", " ").replace(['\n', '\r'], " ")
}

/// The most useful address for the change: its diff, else its page.
fn link(event: &Map<String, Value>, title: &str) -> Option<String> {
    for key in ["notify_url", "title_url"] {
        if let Some(url) = event.get(key).and_then(Value::as_str).filter(|u| !u.is_empty()) {
            return Some(url.to_string());
        }
    }
    let server = event.get("server_url").and_then(Value::as_str).filter(|s| !s.is_empty())?;
    if title.is_empty() {
        return Some(server.to_string());
    }
    Some(format!("{server}/wiki/{}", encode_title(title)))
}

/// A title as MediaWiki writes it in a URL: spaces as underscores, and bytes that may
/// not appear in a path percent-encoded.
fn encode_title(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    for byte in title.replace(' ', "_").bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:/!$()*,;@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(event: &str, expect: &[(&str, Value)]) {
        let message = change_message(event.as_bytes()).expect("valid").expect("not a canary");
        for (key, value) in expect {
            assert_eq!(message.get(key), Some(value), "field {key} of {}", String::from_utf8_lossy(&message.to_json()));
        }
    }

    #[test]
    fn fields() {
        check(
            r#"{"wiki":"enwiki","type":"edit","title":"A B","user":"U","comment":"one\ntwo","id":7,
                "revision":{"new":9},"length":{"old":10,"new":4},"server_url":"https://en.wikipedia.org",
                "timestamp":1700000000,"bot":true,"namespace":0}"#,
            &[
                ("subject", Value::from("enwiki: edit [[A B]] by U: one two")),
                ("action", Value::from("edit")),
                ("changeid", Value::from(7)),
                ("diffid", Value::from(9)),
                ("changesize", Value::from(-6)),
                ("link", Value::from("https://en.wikipedia.org/wiki/A_B")),
                ("lastupdate", Value::from(1_700_000_000.0)),
                ("bot", Value::from(true)),
                ("minor", Value::from(false)),
                ("plugin", Value::from("wikimedia")),
                ("namespace", Value::from(0)),
            ],
        );
        check(
            r#"{"wiki":"enwiki","type":"log","log_type":"delete","log_action":"delete","title":"T","user":"U",
                "notify_url":"https://x/diff","comment":""}"#,
            &[
                ("subject", Value::from("enwiki: delete/delete [[T]] by U")),
                ("action", Value::from("delete/delete")),
                ("changeid", Value::Null),
                ("changesize", Value::Null),
                ("link", Value::from("https://x/diff")),
            ],
        );
        check(
            r#"{"wiki":"kowiki","type":"new","title":"사용자:廢后","length":{"new":5},"server_url":"https://ko.wikipedia.org"}"#,
            &[
                ("changesize", Value::from(5)),
                ("link", Value::from("https://ko.wikipedia.org/wiki/%EC%82%AC%EC%9A%A9%EC%9E%90:%E5%BB%A2%E5%90%8E")),
            ],
        );
    }

    #[test]
    fn the_event_is_kept_whole_and_its_id_does_not_touch_the_envelope() {
        let event = r#"{"wiki":"enwiki","id":42,"meta":{"domain":"en.wikipedia.org","id":"abc"},"extra":[1,2]}"#;
        let message = change_message(event.as_bytes()).unwrap().unwrap();
        assert_eq!(message.id(), None, "the envelope id is set by the bus, not from the event");
        assert_eq!(message.get("event"), Some(&serde_json::from_str::<Value>(event).unwrap()));
    }

    #[test]
    fn canaries_and_bad_events() {
        assert_eq!(change_message(br#"{"wiki":"enwiki","meta":{"domain":"canary"}}"#), Ok(None));
        assert!(change_message(b"[1]").is_err());
        assert!(change_message(br#"{"id":"seven"}"#).is_err());
    }
}
