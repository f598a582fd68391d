//! What counts as a report, per connector type, and what a relayed copy looks like for
//! each type of target. Pure: messages in, messages out.
//!
//! A **report** is a message a member connector received from a person (SPEC §8):
//!
//! | type | a report is | its text |
//! |---|---|---|
//! | `irc` | a `PRIVMSG` to a channel (`kind: PRIVMSG`, `channel` set) from a nick other than the connection's own (`bot`); CTCP other than `ACTION` is not | `text` (an `ACTION`'s words) |
//! | `email` | a mail (`kind: mail`) that is not automatic (`auto_submitted`), not a list command, not one of the list's own posts coming back (`list_loop`) | `subject` and `body` |
//! | `xmpp` | a room or chat message (`kind: groupchat` or `chat`) not sent by the bot itself (`own: true`) | `body` |
//! | `slack` | a `message` event with no `subtype` and no `bot_id` | `text` |
//!
//! and for every type: never a message that carries `relayed_from` (a relayed copy
//! seen again, by a bot in two channels or a list that receives its own posts).
//!
//! A **relayed copy** keeps the report's `id` (so a target can de-duplicate) and
//! carries `group` and `relayed_from` (the source connector); its text is shaped for
//! the target: one line `[source] <name> text` for IRC, a subject and a body for
//! e-mail, `text`/`body` for XMPP and Slack.

use flotilla_core::Message;
use flotilla_core::message::{is_truthy, value_text};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The connector types a group can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    Irc,
    Email,
    Xmpp,
    Slack,
}

/// The longest IRC line text a relayed copy takes (a server cuts lines at 512 bytes,
/// prefix and command included).
const IRC_TEXT_MAX: usize = 400;

impl ConnectorKind {
    pub const NAMES: &'static [&'static str] = &["irc", "email", "xmpp", "slack"];

    pub fn of(kind: &str) -> Option<ConnectorKind> {
        match kind {
            "irc" => Some(ConnectorKind::Irc),
            "email" => Some(ConnectorKind::Email),
            "xmpp" => Some(ConnectorKind::Xmpp),
            "slack" => Some(ConnectorKind::Slack),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Irc => "irc",
            ConnectorKind::Email => "email",
            ConnectorKind::Xmpp => "xmpp",
            ConnectorKind::Slack => "slack",
        }
    }
}

/// A report as the censor judges it and the targets relay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Who sent it (nick, address, JID, user id).
    pub username: String,
    /// A subject, when the source has them (e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The words of the report.
    pub text: String,
}

impl Report {
    /// What the censor reads: the subject and the text.
    pub fn judged_text(&self) -> String {
        match &self.subject {
            Some(subject) if !subject.is_empty() => format!("{subject}\n{}", self.text),
            _ => self.text.clone(),
        }
    }
}

fn text(message: &Message, field: &str) -> String {
    message.get(field).map(|v| value_text(v).into_owned()).unwrap_or_default()
}

fn flag(message: &Message, field: &str) -> bool {
    message.get(field).is_some_and(is_truthy)
}

/// The report in `message`, if a connector of type `kind` saw a person send one.
pub fn detect(kind: ConnectorKind, message: &Message) -> Option<Report> {
    if message.get("relayed_from").is_some_and(|v| !v.is_null()) {
        return None;
    }
    let report = match kind {
        ConnectorKind::Irc => {
            let channel = text(message, "channel");
            let nick = text(message, "nick");
            if text(message, "kind") != "PRIVMSG" || channel.is_empty() || nick.is_empty() {
                return None;
            }
            if nick.eq_ignore_ascii_case(&text(message, "bot")) {
                return None;
            }
            let words = text(message, "text");
            let words = match words.strip_prefix('\u{1}') {
                None => words,
                Some(ctcp) => ctcp.strip_prefix("ACTION ")?.trim_end_matches('\u{1}').to_string(),
            };
            Report { username: nick, subject: None, text: words }
        }
        ConnectorKind::Email => {
            if text(message, "kind") != "mail"
                || flag(message, "auto_submitted")
                || flag(message, "list_command")
                || flag(message, "list_loop")
            {
                return None;
            }
            let subject = text(message, "subject");
            Report {
                username: text(message, "username"),
                subject: (!subject.is_empty()).then_some(subject),
                text: text(message, "body"),
            }
        }
        ConnectorKind::Xmpp => {
            let kind = text(message, "kind");
            if !(kind == "groupchat" || kind == "chat") || flag(message, "own") {
                return None;
            }
            Report { username: text(message, "username"), subject: None, text: text(message, "body") }
        }
        ConnectorKind::Slack => {
            if text(message, "kind") != "message" || message.get("subtype").is_some_and(|v| !v.is_null()) {
                return None;
            }
            if message.get("bot_id").is_some_and(|v| !v.is_null()) {
                return None;
            }
            Report { username: text(message, "username"), subject: None, text: text(message, "text") }
        }
    };
    (!report.text.trim().is_empty() || report.subject.as_deref().is_some_and(|s| !s.trim().is_empty()))
        .then_some(report)
}

/// The copy of a report that a target of type `target` posts.
pub fn relayed_copy(
    id: Option<&str>,
    lastupdate: Option<&Value>,
    report: &Report,
    group: &str,
    source: &str,
    target: ConnectorKind,
) -> Message {
    let mut copy = Message::new();
    if let Some(id) = id {
        copy.set("id", id);
    }
    if let Some(lastupdate) = lastupdate {
        copy.set("lastupdate", lastupdate.clone());
    }
    copy.set("key", format!("relay.{group}"));
    copy.set("plugin", "relay");
    copy.set("group", group);
    copy.set("relayed_from", source);
    copy.set("username", report.username.as_str());
    let whole = match &report.subject {
        Some(subject) if !report.text.trim().is_empty() => format!("{subject}: {}", report.text),
        Some(subject) => subject.clone(),
        None => report.text.clone(),
    };
    match target {
        ConnectorKind::Irc => {
            let line = one_line(&whole);
            copy.set("text", cut(&format!("[{source}] <{}> {line}", report.username), IRC_TEXT_MAX));
        }
        ConnectorKind::Email => {
            let subject = report.subject.clone().unwrap_or_else(|| cut(&one_line(&report.text), 60));
            copy.set("subject", format!("[{group}] {subject}"));
            copy.set("body", format!("{}\n\n-- \n{} via {source}\n", report.text.trim_end(), report.username));
            copy.set("text", whole);
        }
        ConnectorKind::Xmpp => {
            copy.set("body", format!("[{source}] {}: {whole}", report.username));
            copy.set("text", whole);
        }
        ConnectorKind::Slack => {
            copy.set("text", format!("[{source}] {}: {whole}", report.username));
        }
    }
    copy
}

/// Lines joined with " / " (an IRC message is one line).
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" / ")
}

/// At most `max` bytes, cut at a character boundary, with "…" when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(value: Value) -> Message {
        Message::from_value(value).unwrap()
    }

    #[test]
    fn what_counts_as_a_report() {
        use ConnectorKind::*;
        let irc = |extra: Value| {
            let mut base =
                json!({"kind": "PRIVMSG", "channel": "#nbg", "nick": "anna", "bot": "flot", "text": "Kontrolle U1"});
            for (k, v) in extra.as_object().unwrap() {
                base[k] = v.clone();
            }
            base
        };
        /// (username, subject, text) of the report expected.
        type Expected<'a> = Option<(&'a str, Option<&'a str>, &'a str)>;
        let cases: &[(ConnectorKind, Value, Expected)] = &[
            (Irc, irc(json!({})), Some(("anna", None, "Kontrolle U1"))),
            (Irc, irc(json!({"nick": "FLOT"})), None),
            (Irc, irc(json!({"kind": "NOTICE"})), None),
            (Irc, irc(json!({"channel": null})), None),
            (Irc, irc(json!({"text": "\u{1}ACTION sieht Kontis\u{1}"})), Some(("anna", None, "sieht Kontis"))),
            (Irc, irc(json!({"text": "\u{1}VERSION\u{1}"})), None),
            (Irc, irc(json!({"text": "   "})), None),
            (Irc, irc(json!({"relayed_from": "mail"})), None),
            (
                Email,
                json!({"kind": "mail", "username": "a@b", "subject": "U1", "body": "Kontis"}),
                Some(("a@b", Some("U1"), "Kontis")),
            ),
            (Email, json!({"kind": "mail", "username": "a@b", "subject": "x", "body": "y", "list_loop": true}), None),
            (Email, json!({"kind": "mail", "username": "a@b", "body": "y", "auto_submitted": true}), None),
            (Email, json!({"kind": "mail", "username": "a@b", "body": "subscribe", "list_command": true}), None),
            (Email, json!({"kind": "bounce", "username": "a@b", "body": "y"}), None),
            (Xmpp, json!({"kind": "groupchat", "username": "anna", "body": "S2"}), Some(("anna", None, "S2"))),
            (Xmpp, json!({"kind": "groupchat", "username": "flot", "body": "S2", "own": true}), None),
            (Xmpp, json!({"kind": "presence", "username": "anna"}), None),
            (Slack, json!({"kind": "message", "username": "U1", "text": "u2"}), Some(("U1", None, "u2"))),
            (Slack, json!({"kind": "message", "username": "U1", "text": "u2", "bot_id": "B1"}), None),
            (Slack, json!({"kind": "message", "username": "U1", "text": "u2", "subtype": "message_changed"}), None),
        ];
        for (kind, fields, expected) in cases {
            let got = detect(*kind, &message(fields.clone()));
            let expected =
                expected.map(|(u, s, t)| Report { username: u.into(), subject: s.map(str::to_string), text: t.into() });
            assert_eq!(got, expected, "{kind:?} {fields}");
        }
    }

    #[test]
    fn copies_are_shaped_for_their_target() {
        let report = Report { username: "anna".into(), subject: None, text: "Kontrolle\nU1 Plärrer".into() };
        let at = json!(1700000000.5);
        let irc = relayed_copy(Some("01ID"), Some(&at), &report, "nbg", "irc-a", ConnectorKind::Irc);
        assert_eq!(irc.get("text"), Some(&json!("[irc-a] <anna> Kontrolle / U1 Plärrer")));
        assert_eq!(irc.get("id"), Some(&json!("01ID")));
        assert_eq!(irc.get("relayed_from"), Some(&json!("irc-a")));
        assert_eq!(irc.get("group"), Some(&json!("nbg")));
        assert_eq!(irc.get("lastupdate"), Some(&at));
        assert!(irc.get("channel").is_none(), "IRC posts it to every channel it is in");
        let mail = relayed_copy(Some("01ID"), None, &report, "nbg", "irc-a", ConnectorKind::Email);
        assert_eq!(mail.get("subject"), Some(&json!("[nbg] Kontrolle / U1 Plärrer")));
        assert_eq!(mail.get("body"), Some(&json!("Kontrolle\nU1 Plärrer\n\n-- \nanna via irc-a\n")));
        let long = Report { username: "b".into(), subject: Some("S".into()), text: "ä".repeat(500) };
        let cut = relayed_copy(None, None, &long, "g", "m", ConnectorKind::Irc);
        let text = cut.get("text").unwrap().as_str().unwrap();
        assert!(text.len() <= IRC_TEXT_MAX && text.ends_with('…') && text.starts_with("[m] <b> S: ää"), "{text}");
        // A copy is never itself a report.
        assert_eq!(detect(ConnectorKind::Irc, &irc), None);
    }
}
