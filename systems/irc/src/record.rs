//! What a line or a fleet event becomes: a bus message (SPEC §7: `plugin: irc`,
//! `kind`, `network`, `channel`, `nick`, `text`) and, with `log: true`, a row for
//! `irclog` or `fleetlog`. Rows travel through the bus queue `irclog.<connector>` as
//! small JSON objects ([`LogRow`]) to the logger, which writes them in batches.
//!
//! `irclog` columns by line type (times are Unix milliseconds, UTC):
//!
//! | type | target | message |
//! |---|---|---|
//! | PRIVMSG, NOTICE | the channel or nick addressed | the text |
//! | JOIN | the channel | "" |
//! | PART | the channel | the reason ("" if none) |
//! | KICK | the channel | `<kicked nick>: <reason>` |
//! | QUIT | "" | the reason |
//! | NICK | the new nick | the new nick |

use std::borrow::Cow;
use std::sync::Arc;

use flotilla_core::Message;
use serde_json::Value;

use crate::line::Line;
use crate::session::{FleetEvent, FleetMessage};

/// The line types that go to `irclog`.
pub const LOGGED_TYPES: [&str; 7] = ["PRIVMSG", "NOTICE", "JOIN", "PART", "KICK", "QUIT", "NICK"];

/// One row for `irclog` or `fleetlog`, as it travels on the log queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogRow {
    Irc(IrcRow),
    Fleet(FleetRow),
}

/// An `irclog` row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IrcRow {
    pub target: String,
    pub message: String,
    pub host: Option<String>,
    pub source: String,
    pub user: Option<String>,
    pub networkname: String,
    pub irc_message_type: String,
    pub received_at: i64,
}

/// A `fleetlog` row (`detail` is our addition: why it happened).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FleetRow {
    pub channel: Option<String>,
    pub message: String,
    pub nick: Option<String>,
    pub networkname: String,
    pub detail: Option<String>,
    pub received_at: i64,
}

impl LogRow {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether two connections seeing the same line would both log it (QUIT and NICK
    /// are sent to every connection sharing a channel with the user).
    pub fn dedupe_key(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        match self {
            LogRow::Irc(row) if row.irc_message_type == "QUIT" || row.irc_message_type == "NICK" => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                (&row.irc_message_type, &row.source, &row.user, &row.host, &row.message, &row.networkname)
                    .hash(&mut hasher);
                Some(hasher.finish())
            }
            _ => None,
        }
    }
}

/// Whether a target names a channel.
pub fn is_channel(target: &str) -> bool {
    target.starts_with(['#', '&', '+', '!'])
}

/// The channel a line is about, if any: JOIN/PART/KICK/TOPIC/MODE's first parameter,
/// a PRIVMSG or NOTICE to a channel, or a numeric whose second parameter is one (NAMES,
/// TOPIC and join errors).
pub fn channel_of<'a>(line: &Line<'a>) -> Option<&'a str> {
    let first = line.param(0);
    let command = line.command;
    if line.numeric().is_some() {
        let second = line.param(1);
        let third = line.param(2);
        return if is_channel(second) {
            Some(second)
        } else if (second == "=" || second == "*" || second == "@") && is_channel(third) {
            Some(third)
        } else {
            None
        };
    }
    let takes_channel = ["JOIN", "PART", "KICK", "TOPIC", "MODE", "PRIVMSG", "NOTICE", "INVITE"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(command));
    if command.eq_ignore_ascii_case("INVITE") {
        return Some(line.param(1)).filter(|c| is_channel(c));
    }
    if takes_channel && is_channel(first) { Some(first) } else { None }
}

/// The bus message for one line seen on `network` by connection `connection` (whose
/// nick is `bot`).
pub fn line_message(line: &Line<'_>, network: &str, bot: &str, connection: usize, legacy_encoding: bool) -> Message {
    let mut message = Message::new();
    let kind = line.command.to_ascii_uppercase();
    message.set("plugin", "irc");
    message.set("network", network);
    message.set("channel", channel_of(line).map_or(Value::Null, Value::from));
    message.set("nick", line.nick());
    message.set("user", line.source.and_then(|s| s.user).map_or(Value::Null, Value::from));
    message.set("host", line.source.and_then(|s| s.host).map_or(Value::Null, Value::from));
    message.set("text", line.trailing());
    message.set("params", Value::Array(line.params.iter().map(|p| Value::from(*p)).collect()));
    message.set("bot", bot);
    message.set("connection", connection + 1);
    if legacy_encoding {
        message.set("encoding", "windows-1252");
    }
    message.set("kind", kind);
    message
}

/// The `irclog` row for a line, if its type is logged.
pub fn line_row(line: &Line<'_>, network: &str, received_at: i64) -> Option<LogRow> {
    let kind = line.command.to_ascii_uppercase();
    let (target, message): (Cow<'_, str>, Cow<'_, str>) = match kind.as_str() {
        "PRIVMSG" | "NOTICE" => (line.param(0).into(), line.trailing().into()),
        "JOIN" => (line.param(0).into(), "".into()),
        "PART" => (line.param(0).into(), line.param(1).into()),
        "KICK" => (line.param(0).into(), format!("{}: {}", line.param(1), line.param(2)).into()),
        "QUIT" => ("".into(), line.param(0).into()),
        "NICK" => (line.param(0).into(), line.param(0).into()),
        _ => return None,
    };
    let source = line.source.unwrap_or_default();
    Some(LogRow::Irc(IrcRow {
        target: target.into_owned(),
        message: message.into_owned(),
        host: source.host.map(str::to_string),
        source: source.nick.to_string(),
        user: source.user.map(str::to_string),
        networkname: network.to_string(),
        irc_message_type: kind,
        received_at,
    }))
}

/// The `irclog` row for a line the bot itself sent (the server does not echo it).
pub fn own_row(kind: &str, target: &str, text: &str, bot: &str, network: &str, sent_at: i64) -> LogRow {
    LogRow::Irc(IrcRow {
        target: target.to_string(),
        message: text.to_string(),
        host: None,
        source: bot.to_string(),
        user: None,
        networkname: network.to_string(),
        irc_message_type: kind.to_string(),
        received_at: sent_at,
    })
}

/// The `fleetlog` row for an event.
pub fn fleet_row(event: &FleetEvent, network: &str, at: i64) -> LogRow {
    LogRow::Fleet(FleetRow {
        channel: event.channel.clone(),
        message: event.message.as_str().to_string(),
        nick: (!event.nick.is_empty()).then(|| event.nick.clone()),
        networkname: network.to_string(),
        detail: event.detail.clone(),
        received_at: at,
    })
}

/// The bus message for a fleet event: `kind: FLEET`, `event`: the fleetlog message.
pub fn fleet_message(event: &FleetEvent, network: &Arc<str>, connection: Option<usize>) -> Message {
    let mut message = Message::new();
    message.set("plugin", "irc");
    message.set("kind", "FLEET");
    message.set("event", event.message.as_str());
    message.set("network", &**network);
    message.set("channel", event.channel.as_deref().map_or(Value::Null, Value::from));
    message.set("nick", event.nick.as_str());
    message.set("text", event.detail.as_deref().unwrap_or(""));
    if let Some(connection) = connection {
        message.set("connection", connection + 1);
    }
    if matches!(event.message, FleetMessage::ArmadaAllDead | FleetMessage::CouldNotReconnect) {
        message.set("status", "CRITICAL");
    }
    message
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::parse_line;

    fn row(line: &str) -> Option<(String, String, String, String)> {
        line_row(&parse_line(line).unwrap(), "net", 7).map(|r| match r {
            LogRow::Irc(r) => (r.irc_message_type, r.target, r.message, r.source),
            LogRow::Fleet(_) => unreachable!(),
        })
    }

    #[test]
    fn irclog_rows() {
        type Row<'a> = (&'a str, &'a str, &'a str, &'a str);
        let cases: &[(&str, Option<Row>)] = &[
            (":a!u@h PRIVMSG #c :hello there", Some(("PRIVMSG", "#c", "hello there", "a"))),
            (":a!u@h NOTICE bot :psst", Some(("NOTICE", "bot", "psst", "a"))),
            (":a!u@h JOIN :#c", Some(("JOIN", "#c", "", "a"))),
            (":a!u@h PART #c :bye", Some(("PART", "#c", "bye", "a"))),
            (":a!u@h PART #c", Some(("PART", "#c", "", "a"))),
            (":op!u@h KICK #c victim :spam", Some(("KICK", "#c", "victim: spam", "op"))),
            (":a!u@h QUIT :Quit: gone", Some(("QUIT", "", "Quit: gone", "a"))),
            (":a!u@h NICK :b", Some(("NICK", "b", "b", "a"))),
            (":srv 001 bot :Welcome", None),
            (":a!u@h MODE #c +o b", None),
            ("PING :x", None),
        ];
        for (line, expect) in cases {
            let expect = expect.map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()));
            assert_eq!(row(line), expect, "{line}");
        }
    }

    #[test]
    fn channels_of_lines() {
        let cases = [
            (":a PRIVMSG #c :x", Some("#c")),
            (":a PRIVMSG bot :x", None),
            (":a JOIN #c", Some("#c")),
            (":a KICK #c b :x", Some("#c")),
            (":a INVITE bot #c", Some("#c")),
            (":s 353 bot = #c :a b", Some("#c")),
            (":s 366 bot #c :End", Some("#c")),
            (":s 474 bot #c :banned", Some("#c")),
            (":s 001 bot :Welcome", None),
            (":a QUIT :x", None),
        ];
        for (line, expect) in cases {
            assert_eq!(channel_of(&parse_line(line).unwrap()), expect, "{line}");
        }
    }

    #[test]
    fn bus_messages() {
        let line = parse_line(":al!u@h PRIVMSG #c :hi").unwrap();
        let m = line_message(&line, "net", "bot", 0, false);
        assert_eq!(m.get_str("plugin"), Some("irc"));
        assert_eq!(m.get_str("kind"), Some("PRIVMSG"));
        assert_eq!(m.get_str("network"), Some("net"));
        assert_eq!(m.get_str("channel"), Some("#c"));
        assert_eq!(m.get_str("nick"), Some("al"));
        assert_eq!(m.get_str("text"), Some("hi"));
        assert_eq!(m.get("connection"), Some(&Value::from(1)));
        assert_eq!(m.get("encoding"), None);
        let m = line_message(&parse_line("PING :x").unwrap(), "net", "bot", 2, true);
        assert_eq!(m.get("channel"), Some(&Value::Null));
        assert_eq!(m.get_str("encoding"), Some("windows-1252"));
    }

    #[test]
    fn rows_survive_the_queue() {
        let event = FleetEvent {
            message: FleetMessage::Kicked,
            channel: Some("#c".into()),
            nick: "bot".into(),
            detail: Some("kicked by op: x".into()),
        };
        let row = fleet_row(&event, "net", 42);
        let back: LogRow = serde_json::from_slice(&row.to_json()).unwrap();
        assert_eq!(back, row);
        let irc = line_row(&parse_line(":a!u@h QUIT :bye").unwrap(), "net", 1).unwrap();
        let again = line_row(&parse_line(":a!u@h QUIT :bye").unwrap(), "net", 2).unwrap();
        assert_eq!(irc.dedupe_key(), again.dedupe_key());
        assert!(irc.dedupe_key().is_some());
        assert_eq!(row.dedupe_key(), None);
        let m = fleet_message(&event, &Arc::from("net"), Some(0));
        assert_eq!(m.get_str("kind"), Some("FLEET"));
        assert_eq!(m.get_str("event"), Some("KICKED"));
    }
}
