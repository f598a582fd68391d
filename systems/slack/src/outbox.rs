//! What an outbox message asks the Web API to do, pure. The handlers write these, and
//! so does the reactor's `Send` plugin with whatever message a rule hands it:
//!
//! - `reaction` set → `reactions.add` (`channel`, `timestamp` or `ts`, `name`);
//! - `ephemeral_user` set → `chat.postEphemeral` to that user;
//! - otherwise → `chat.postMessage` with `text` (or `subject`, or `body`).
//!
//! A message is posted in the thread of `thread_ts`, or else of `ts`: a rule that
//! rewrites an incoming Slack message's `text` and `Send`s it answers in its thread.

use serde_json::{Map, Value, json};

/// One Web API call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: &'static str,
    pub arguments: Value,
}

/// Reads an outbox message.
///
/// # Errors
/// What the message lacks, in words.
pub fn call_for(message: &Map<String, Value>) -> Result<Call, String> {
    let text_of = |key: &str| {
        message.get(key).map(|v| flotilla_core::message::value_text(v).into_owned()).filter(|t| !t.trim().is_empty())
    };
    let channel = text_of("channel").ok_or("the message has no channel to post to")?;
    let thread = text_of("thread_ts").or_else(|| text_of("ts"));
    if let Some(reaction) = text_of("reaction") {
        let timestamp = text_of("timestamp").or_else(|| text_of("ts")).ok_or("a reaction needs the message's ts")?;
        let name = reaction.trim_matches(':').to_string();
        return Ok(Call {
            method: "reactions.add",
            arguments: json!({"channel": channel, "timestamp": timestamp, "name": name}),
        });
    }
    let text = text_of("text")
        .or_else(|| text_of("subject"))
        .or_else(|| text_of("body"))
        .ok_or("the message has no text, subject or body to post")?;
    let mut arguments = json!({"channel": channel, "text": text});
    if let (Some(thread), Some(map)) = (thread, arguments.as_object_mut()) {
        map.insert("thread_ts".into(), thread.into());
    }
    match text_of("ephemeral_user") {
        Some(user) => {
            if let Some(map) = arguments.as_object_mut() {
                map.insert("user".into(), user.into());
            }
            Ok(Call { method: "chat.postEphemeral", arguments })
        }
        None => Ok(Call { method: "chat.postMessage", arguments }),
    }
}

/// The outbox message for a handler's action (`None` for [`crate::handlers::Action::Learn`]).
pub fn message_for(action: &crate::handlers::Action) -> Option<Map<String, Value>> {
    use crate::handlers::Action;
    let value = match action {
        Action::React { channel, timestamp, name } => {
            json!({"channel": channel, "timestamp": timestamp, "reaction": name})
        }
        Action::Reply { channel, thread_ts: Some(thread), text } => {
            json!({"channel": channel, "thread_ts": thread, "text": text})
        }
        Action::Reply { channel, thread_ts: None, text } => json!({"channel": channel, "text": text}),
        Action::Learn { .. } => return None,
    };
    value.as_object().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_messages_become_calls() {
        let table: Vec<(Value, Result<Call, &str>)> = vec![
            (
                json!({"channel": "C1", "text": "hi"}),
                Ok(Call { method: "chat.postMessage", arguments: json!({"channel": "C1", "text": "hi"}) }),
            ),
            (
                json!({"channel": "C1", "text": "answer", "ts": "1.5", "user": "U1", "event_type": "message"}),
                Ok(Call {
                    method: "chat.postMessage",
                    arguments: json!({"channel": "C1", "text": "answer", "thread_ts": "1.5"}),
                }),
            ),
            (
                json!({"channel": "C1", "subject": "s", "thread_ts": "1.1", "ts": "1.5"}),
                Ok(Call {
                    method: "chat.postMessage",
                    arguments: json!({"channel": "C1", "text": "s", "thread_ts": "1.1"}),
                }),
            ),
            (
                json!({"channel": "C1", "body": "b", "ephemeral_user": "U2"}),
                Ok(Call {
                    method: "chat.postEphemeral",
                    arguments: json!({"channel": "C1", "text": "b", "user": "U2"}),
                }),
            ),
            (
                json!({"channel": "C1", "reaction": ":gopher:", "ts": "1.5"}),
                Ok(Call {
                    method: "reactions.add",
                    arguments: json!({"channel": "C1", "timestamp": "1.5", "name": "gopher"}),
                }),
            ),
            (json!({"text": "hi"}), Err("the message has no channel to post to")),
            (json!({"channel": "C1", "text": "  "}), Err("the message has no text, subject or body to post")),
            (json!({"channel": "C1", "reaction": "x"}), Err("a reaction needs the message's ts")),
        ];
        for (message, expect) in table {
            let message = message.as_object().cloned().unwrap();
            assert_eq!(call_for(&message), expect.map_err(str::to_string), "{message:?}");
        }
    }
}
