//! What the gateway makes of a verified request body, pure: Events API JSON and slash
//! commands (form-encoded) → an [`Inbound`] (answer a challenge, queue a message on a
//! named queue, or ignore), or a [`ParseError`] that says what was wrong and where.
//!
//! Routing (SPEC §9, as gopherbot did it): a `message` goes to
//! `slack_message_public` when its `channel_type` is `channel` (or missing) and to
//! `slack_message_private` for `group`, `im`, `mpim` and `app_home`; `team_join` to
//! `slack_team_join`; `member_joined_channel` to `slack_channel_join`; a slash command
//! to `slack_command`. Every other event type is [`Inbound::Ignored`]: logged and
//! answered 200 so Slack does not retry it (gopherbot answered 422, and Slack retried
//! each one three times).
//!
//! A queued message carries gopherbot's stream fields (`request_id` is the caller's,
//! `gateway_ts` in ms, `event_ts`, `event_id`, `json`: the inner event as JSON text)
//! and, for rules and handlers, the inner event's common fields flattened:
//! `event_type`, `subtype`, `channel`, `channel_type`, `user`, `text`, `ts`,
//! `thread_ts`, `bot_id`, `team_id`, `api_app_id`.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub const QUEUE_PUBLIC: &str = "slack_message_public";
pub const QUEUE_PRIVATE: &str = "slack_message_private";
pub const QUEUE_TEAM_JOIN: &str = "slack_team_join";
pub const QUEUE_CHANNEL_JOIN: &str = "slack_channel_join";
pub const QUEUE_COMMAND: &str = "slack_command";

/// Every queue the gateway publishes to.
pub const QUEUES: [&str; 5] = [QUEUE_PUBLIC, QUEUE_PRIVATE, QUEUE_TEAM_JOIN, QUEUE_CHANNEL_JOIN, QUEUE_COMMAND];

/// Which app and workspace requests must come from (`None`: not checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub app_id: Option<String>,
    pub team_id: Option<String>,
}

/// What to do with a verified request.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `url_verification`: answer with this challenge.
    Challenge(String),
    /// Queue a message (after de-duplicating on `dedupe_key`).
    Queue(Queued),
    /// A type the gateway does not queue: log it, answer 200.
    Ignored { kind: String, event_id: Option<String> },
}

/// A message for a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub queue: &'static str,
    /// `event_id` for events, `trigger_id` for slash commands: what a retry repeats.
    pub dedupe_key: Option<String>,
    pub fields: Map<String, Value>,
}

/// Why a body was refused (400 or 403); the text says what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not an Events API payload: {0}")]
    Shape(String),
    #[error("the slash command is missing the field '{0}'")]
    MissingField(&'static str),
    #[error("{field} is '{given}', but this gateway serves '{expected}'")]
    WrongOrigin { field: &'static str, given: String, expected: String },
}

impl ParseError {
    /// Whether this is about who sent it (403) rather than what was sent (400).
    pub fn is_origin(&self) -> bool {
        matches!(self, ParseError::WrongOrigin { .. })
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: String,
    challenge: Option<String>,
    api_app_id: Option<String>,
    team_id: Option<String>,
    event_id: Option<String>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
}

/// Reads an Events API body. `gateway_ms` is the gateway's clock, `request_id` the id
/// the gateway gives the request.
///
/// # Errors
/// Not JSON, not an object with a string `type`, an `event_callback` without an
/// `event` object, or an app or workspace other than the expected ones.
pub fn parse_events(
    body: &[u8],
    expected: &Expected,
    gateway_ms: u64,
    request_id: &str,
) -> Result<Inbound, ParseError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| classify_json_error(&e, body))?;
    match envelope.kind.as_str() {
        "url_verification" => {
            let challenge = envelope.challenge.ok_or_else(|| shape("url_verification without a 'challenge' string"))?;
            Ok(Inbound::Challenge(challenge))
        }
        "event_callback" => {
            check_origin("api_app_id", envelope.api_app_id.as_deref(), expected.app_id.as_deref())?;
            check_origin("team_id", envelope.team_id.as_deref(), expected.team_id.as_deref())?;
            let raw = envelope.event.ok_or_else(|| shape("event_callback without an 'event'"))?;
            let event: Map<String, Value> =
                serde_json::from_str(raw.get()).map_err(|_| shape("'event' is not an object"))?;
            let kind = text(&event, "type").ok_or_else(|| shape("the event has no 'type' string"))?;
            let queue = match kind.as_str() {
                "message" => match text(&event, "channel_type").as_deref() {
                    None | Some("channel") => QUEUE_PUBLIC,
                    Some("group" | "im" | "mpim" | "app_home") => QUEUE_PRIVATE,
                    // A channel type Slack adds later: private, so it is never shown
                    // where public messages are.
                    Some(_) => QUEUE_PRIVATE,
                },
                "team_join" => QUEUE_TEAM_JOIN,
                "member_joined_channel" => QUEUE_CHANNEL_JOIN,
                _ => return Ok(Inbound::Ignored { kind, event_id: envelope.event_id }),
            };
            let mut fields = Map::new();
            fields.insert("request_id".into(), request_id.into());
            fields.insert("gateway_ts".into(), gateway_ms.into());
            fields.insert("event_ts".into(), text(&event, "event_ts").unwrap_or_default().into());
            fields.insert("event_id".into(), envelope.event_id.clone().unwrap_or_default().into());
            fields.insert("json".into(), raw.get().into());
            fields.insert("event_type".into(), kind.into());
            for key in ["subtype", "channel", "channel_type", "text", "ts", "thread_ts", "bot_id"] {
                if let Some(value) = text(&event, key) {
                    fields.insert(key.into(), value.into());
                }
            }
            // `user` is an id in messages and joins, a whole profile in team_join.
            let user = match event.get("user") {
                Some(Value::String(id)) => Some(id.clone()),
                Some(Value::Object(profile)) => text(profile, "id"),
                _ => None,
            };
            if let Some(user) = user {
                fields.insert("user".into(), user.into());
            }
            if let Some(team) = envelope.team_id {
                fields.insert("team_id".into(), team.into());
            }
            if let Some(app) = envelope.api_app_id {
                fields.insert("api_app_id".into(), app.into());
            }
            Ok(Inbound::Queue(Queued { queue, dedupe_key: envelope.event_id, fields }))
        }
        other => Ok(Inbound::Ignored { kind: other.to_string(), event_id: envelope.event_id }),
    }
}

/// The fields of a slash command, all required by the gateway (Slack always sends them;
/// `text` may be empty).
const COMMAND_FIELDS: [&str; 6] = ["command", "text", "team_id", "channel_id", "user_id", "trigger_id"];

/// Reads a slash command (`application/x-www-form-urlencoded`).
///
/// # Errors
/// A required field is missing, or the workspace or app is not the expected one.
pub fn parse_command(
    body: &[u8],
    expected: &Expected,
    gateway_ms: u64,
    request_id: &str,
) -> Result<Inbound, ParseError> {
    let form: Map<String, Value> =
        form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect();
    command_from_fields(form, expected, gateway_ms, request_id)
}

/// A slash command from its fields (Socket Mode sends them as a JSON object).
///
/// # Errors
/// As [`parse_command`].
pub fn command_from_fields(
    mut form: Map<String, Value>,
    expected: &Expected,
    gateway_ms: u64,
    request_id: &str,
) -> Result<Inbound, ParseError> {
    // `token` is Slack's deprecated verification token: the signature replaces it,
    // and it is a secret that has no business on the bus.
    form.remove("token");
    for field in COMMAND_FIELDS {
        if !form.contains_key(field) {
            return Err(ParseError::MissingField(field));
        }
    }
    check_origin("team_id", text(&form, "team_id").as_deref(), expected.team_id.as_deref())?;
    // Older commands do not carry api_app_id; check it only when it is there.
    if let (Some(given), Some(_)) = (text(&form, "api_app_id"), &expected.app_id) {
        check_origin("api_app_id", Some(&given), expected.app_id.as_deref())?;
    }
    let dedupe_key = text(&form, "trigger_id");
    let mut fields = Map::new();
    fields.insert("request_id".into(), request_id.into());
    fields.insert("gateway_ts".into(), gateway_ms.into());
    fields.insert("event_type".into(), "slash_command".into());
    // The names handlers and the outbox use for messages, beside Slack's own.
    if let Some(channel) = text(&form, "channel_id") {
        fields.insert("channel".into(), channel.into());
    }
    if let Some(user) = text(&form, "user_id") {
        fields.insert("user".into(), user.into());
    }
    fields.extend(form);
    Ok(Inbound::Queue(Queued { queue: QUEUE_COMMAND, dedupe_key, fields }))
}

fn check_origin(field: &'static str, given: Option<&str>, expected: Option<&str>) -> Result<(), ParseError> {
    match expected {
        Some(expected) if given != Some(expected) => Err(ParseError::WrongOrigin {
            field,
            given: given.unwrap_or("(missing)").to_string(),
            expected: expected.to_string(),
        }),
        _ => Ok(()),
    }
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_string)
}

fn shape(what: &str) -> ParseError {
    ParseError::Shape(what.to_string())
}

/// Tells "not JSON at all" from "JSON of the wrong shape", with serde's line and column.
fn classify_json_error(error: &serde_json::Error, body: &[u8]) -> ParseError {
    use serde_json::error::Category;
    match error.classify() {
        // serde reads an array into a struct field by field: say what was expected.
        Category::Data if body.trim_ascii_start().first() != Some(&b'{') => {
            ParseError::Shape("expected a JSON object at the top level".into())
        }
        Category::Data => ParseError::Shape(error.to_string()),
        Category::Syntax | Category::Eof | Category::Io => ParseError::NotJson(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected { app_id: Some("A1".into()), team_id: Some("T1".into()) }
    }

    fn event(inner: &str) -> String {
        format!(r#"{{"type":"event_callback","api_app_id":"A1","team_id":"T1","event_id":"Ev1","event":{inner}}}"#)
    }

    /// (name, body, the queue or what else it becomes)
    #[test]
    fn events_are_routed_by_type() {
        let table: Vec<(&str, String, Result<&str, &str>)> = vec![
            (
                "channel message",
                event(
                    r#"{"type":"message","channel_type":"channel","text":"hi","channel":"C1","user":"U1","ts":"1.2"}"#,
                ),
                Ok(QUEUE_PUBLIC),
            ),
            ("message without channel_type", event(r#"{"type":"message","text":"hi"}"#), Ok(QUEUE_PUBLIC)),
            ("direct message", event(r#"{"type":"message","channel_type":"im","text":"hi"}"#), Ok(QUEUE_PRIVATE)),
            ("private channel", event(r#"{"type":"message","channel_type":"group"}"#), Ok(QUEUE_PRIVATE)),
            ("group DM", event(r#"{"type":"message","channel_type":"mpim"}"#), Ok(QUEUE_PRIVATE)),
            ("app home", event(r#"{"type":"message","channel_type":"app_home"}"#), Ok(QUEUE_PRIVATE)),
            ("new channel type", event(r#"{"type":"message","channel_type":"huddle"}"#), Ok(QUEUE_PRIVATE)),
            ("team join", event(r#"{"type":"team_join","user":{"id":"U9","name":"new"}}"#), Ok(QUEUE_TEAM_JOIN)),
            (
                "channel join",
                event(r#"{"type":"member_joined_channel","user":"U9","channel":"C1"}"#),
                Ok(QUEUE_CHANNEL_JOIN),
            ),
            ("reaction", event(r#"{"type":"reaction_added"}"#), Err("ignored reaction_added")),
            (
                "app_rate_limited",
                r#"{"type":"app_rate_limited","api_app_id":"A1"}"#.into(),
                Err("ignored app_rate_limited"),
            ),
            ("challenge", r#"{"type":"url_verification","challenge":"abc","token":"x"}"#.into(), Err("challenge abc")),
            ("not JSON", "token=x&a=b".into(), Err("error: the body is not JSON: expected ident at line 1 column 2")),
            ("binary", "\u{1}\u{2}".into(), Err("error: the body is not JSON: expected value at line 1 column 1")),
            (
                "truncated",
                r#"{"type":"event_callback""#.into(),
                Err("error: the body is not JSON: EOF while parsing an object at line 1 column 24"),
            ),
            (
                "array",
                "[1,2]".into(),
                Err("error: the body is not an Events API payload: expected a JSON object at the top level"),
            ),
            (
                "no type",
                r#"{"event":{}}"#.into(),
                Err("error: the body is not an Events API payload: missing field `type` at line 1 column 12"),
            ),
            (
                "challenge missing",
                r#"{"type":"url_verification"}"#.into(),
                Err("error: the body is not an Events API payload: url_verification without a 'challenge' string"),
            ),
            (
                "no event",
                r#"{"type":"event_callback","api_app_id":"A1","team_id":"T1"}"#.into(),
                Err("error: the body is not an Events API payload: event_callback without an 'event'"),
            ),
            (
                "event not object",
                event("[]"),
                Err("error: the body is not an Events API payload: 'event' is not an object"),
            ),
            (
                "event without type",
                event(r#"{"text":"x"}"#),
                Err("error: the body is not an Events API payload: the event has no 'type' string"),
            ),
            (
                "other app",
                r#"{"type":"event_callback","api_app_id":"A2","team_id":"T1","event":{"type":"message"}}"#.into(),
                Err("error: api_app_id is 'A2', but this gateway serves 'A1'"),
            ),
            (
                "other team",
                r#"{"type":"event_callback","api_app_id":"A1","team_id":"T2","event":{"type":"message"}}"#.into(),
                Err("error: team_id is 'T2', but this gateway serves 'T1'"),
            ),
            (
                "no team",
                r#"{"type":"event_callback","api_app_id":"A1","event":{"type":"message"}}"#.into(),
                Err("error: team_id is '(missing)', but this gateway serves 'T1'"),
            ),
        ];
        for (name, body, expect) in table {
            let got = match parse_events(body.as_bytes(), &expected(), 5, "r1") {
                Ok(Inbound::Queue(q)) => Ok(q.queue),
                Ok(Inbound::Challenge(c)) => Err(format!("challenge {c}")),
                Ok(Inbound::Ignored { kind, .. }) => Err(format!("ignored {kind}")),
                Err(e) => Err(format!("error: {e}")),
            };
            assert_eq!(got, expect.map_err(str::to_string), "{name}");
        }
    }

    #[test]
    fn a_queued_message_carries_the_stream_fields_and_the_flattened_event() {
        let inner = r#"{"type":"message","channel_type":"channel","text":"hello <@U2>","channel":"C1","user":"U1","ts":"1700000000.000100","thread_ts":"1700000000.000001","event_ts":"1700000000.000100"}"#;
        let Ok(Inbound::Queue(queued)) = parse_events(event(inner).as_bytes(), &expected(), 1234, "req-1") else {
            panic!("not queued")
        };
        assert_eq!(queued.dedupe_key.as_deref(), Some("Ev1"));
        let expect = serde_json::json!({
            "request_id": "req-1", "gateway_ts": 1234, "event_ts": "1700000000.000100", "event_id": "Ev1",
            "json": inner, "event_type": "message", "channel": "C1", "channel_type": "channel",
            "text": "hello <@U2>", "ts": "1700000000.000100", "thread_ts": "1700000000.000001",
            "user": "U1", "team_id": "T1", "api_app_id": "A1",
        });
        assert_eq!(Value::Object(queued.fields), expect);
    }

    #[test]
    fn checks_are_skipped_when_not_configured() {
        let body = r#"{"type":"event_callback","api_app_id":"A9","team_id":"T9","event":{"type":"message"}}"#;
        assert!(matches!(parse_events(body.as_bytes(), &Expected::default(), 0, "r"), Ok(Inbound::Queue(_))));
    }

    #[test]
    fn slash_commands() {
        let full = "token=secret&team_id=T1&channel_id=C1&user_id=U1&command=%2Fdefine&text=gopher&response_url=https%3A%2F%2Fhooks&trigger_id=tr1&api_app_id=A1";
        let Ok(Inbound::Queue(queued)) = parse_command(full.as_bytes(), &expected(), 7, "r") else {
            panic!("not queued")
        };
        assert_eq!(queued.queue, QUEUE_COMMAND);
        assert_eq!(queued.dedupe_key.as_deref(), Some("tr1"));
        assert_eq!(queued.fields["command"], "/define");
        assert_eq!(queued.fields["text"], "gopher");
        assert_eq!(queued.fields["channel"], "C1");
        assert_eq!(queued.fields["user"], "U1");
        assert!(!queued.fields.contains_key("token"), "the verification token never reaches the bus");

        let table: Vec<(&str, &str, &str)> = vec![
            (
                "no command",
                "team_id=T1&channel_id=C1&user_id=U1&text=&trigger_id=t",
                "the slash command is missing the field 'command'",
            ),
            (
                "no text",
                "command=%2Fx&team_id=T1&channel_id=C1&user_id=U1&trigger_id=t",
                "the slash command is missing the field 'text'",
            ),
            (
                "no user",
                "command=%2Fx&text=&team_id=T1&channel_id=C1&trigger_id=t",
                "the slash command is missing the field 'user_id'",
            ),
            ("empty body", "", "the slash command is missing the field 'command'"),
            (
                "other team",
                "command=%2Fx&text=&team_id=T2&channel_id=C1&user_id=U1&trigger_id=t",
                "team_id is 'T2', but this gateway serves 'T1'",
            ),
            (
                "other app",
                "command=%2Fx&text=&team_id=T1&channel_id=C1&user_id=U1&trigger_id=t&api_app_id=A7",
                "api_app_id is 'A7', but this gateway serves 'A1'",
            ),
        ];
        for (name, body, expect) in table {
            let got = parse_command(body.as_bytes(), &expected(), 7, "r").map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(got, Err(expect.to_string()), "{name}");
        }
    }
}
