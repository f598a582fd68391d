//! The handlers gopherbot's consumers had, as a pure function from one queued message
//! (and the time, and the glossary) to what to do: [`Handlers::handle`] → a
//! [`Verdict`]. No I/O here: the consumer turns [`Action`]s into outbox messages.
//!
//! Before any handler runs, a message is skipped when it is the bot's own (or another
//! bot's: two bots answering each other never stop), an edit or other subtype (except
//! `thread_broadcast`, which is a real message), or older than `max_age` (30 s by
//! default: after an outage, a burst of hour-old answers helps nobody).
//!
//! Then, in this order, every handler that matches adds its actions:
//! - **reactions**: a word anywhere in the text (case-insensitive, one Aho-Corasick
//!   pass however many words) → add that reaction to the message;
//! - **prefix commands**: the text (mentions of the bot removed) starts with a prefix →
//!   reply, `{rest}` in the reply replaced by what follows the prefix and `{user}` by
//!   a mention of the sender;
//! - **exact responses**, only in a direct message or when the bot is mentioned: the
//!   text equals one (case-insensitive, trimmed) → reply;
//! - **the glossary**, only when addressed the same way: `define TERM` → the term's
//!   definition (aliases followed), or a reply that it is unknown; `define TERM =
//!   DEFINITION` from a user listed as an editor stores it ([`Action::Learn`]).
//!
//! Replies go in the message's thread when it has one (and, outside direct messages,
//! start one on the message), so a busy channel is not flooded.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::{Map, Value};

/// What to do about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `reactions.add`.
    React { channel: String, timestamp: String, name: String },
    /// `chat.postMessage`.
    Reply { channel: String, thread_ts: Option<String>, text: String },
    /// Store a glossary term (the consumer writes it to the store).
    Learn { term: String, definition: String },
}

/// Why a message was not handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Written by this bot.
    Own,
    /// Written by another bot (`bot_id` set).
    Bot,
    /// An edit, deletion, join notice, … (`subtype` other than `thread_broadcast`).
    Subtype(String),
    /// Older than `max_age`: `age` seconds.
    Stale { age: i64 },
    /// No channel or timestamp to answer to.
    Unanswerable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Handled(Vec<Action>),
    Skipped(Skip),
}

/// What a message's text says, once Slack's markup is read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// Users mentioned (`<@U123>` or `<@U123|name>`), in order.
    pub users: Vec<String>,
    /// Channels mentioned (`<#C123|name>`): (id, name).
    pub channels: Vec<(String, String)>,
    /// Broadcasts (`<!here>`, `<!channel>`, `<!everyone>`): `here`, …
    pub broadcasts: Vec<String>,
    /// The text with the mentions of `bot` taken out and whitespace collapsed.
    pub text: String,
}

/// Reads Slack's markup in `text`; mentions of `bot` are removed from [`Parsed::text`],
/// other mentions are kept as written.
pub fn parse_mentions(text: &str, bot: Option<&str>) -> Parsed {
    let mut parsed = Parsed::default();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inner = &after[..close];
        let whole = &rest[open..open + close + 2];
        if let Some(user) = inner.strip_prefix('@') {
            let id = user.split('|').next().unwrap_or_default().to_string();
            if bot != Some(id.as_str()) {
                out.push_str(whole);
            }
            parsed.users.push(id);
        } else if let Some(channel) = inner.strip_prefix('#') {
            let (id, name) = channel.split_once('|').unwrap_or((channel, ""));
            parsed.channels.push((id.to_string(), name.to_string()));
            out.push_str(whole);
        } else if let Some(special) = inner.strip_prefix('!') {
            let name = special.split('|').next().unwrap_or_default();
            parsed.broadcasts.push(name.to_string());
            out.push_str(whole);
        } else {
            out.push_str(whole);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    parsed.text = out.split_whitespace().collect::<Vec<_>>().join(" ");
    parsed
}

/// A reply to a prefix or an exact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The prefix or exact text, lower-cased.
    pub trigger: String,
    pub reply: String,
}

/// The configured handlers, compiled.
#[derive(Debug, Clone)]
pub struct Handlers {
    /// The bot's user id: its own messages are skipped, mentions of it address it.
    pub bot_user_id: Option<String>,
    /// Messages older than this (seconds) are skipped.
    pub max_age_secs: i64,
    reaction_words: Option<AhoCorasick>,
    /// Reaction name per word, by pattern index.
    reaction_names: Vec<String>,
    pub prefixes: Vec<Reply>,
    /// Exact texts, lower-cased → reply.
    pub exact: HashMap<String, String>,
    /// Whether `define` is answered.
    pub glossary: bool,
    /// Alias (lower case) → term (lower case).
    pub aliases: HashMap<String, String>,
    /// Users who may `define TERM = …`.
    pub editors: Vec<String>,
}

/// The handlers as configured, before compiling.
#[derive(Debug, Clone, Default)]
pub struct HandlerConfig {
    pub bot_user_id: Option<String>,
    pub max_age_secs: i64,
    /// (word, reaction name) pairs; words lower-cased.
    pub reactions: Vec<(String, String)>,
    pub prefixes: Vec<Reply>,
    /// Exact texts, lower-cased → reply.
    pub exact: HashMap<String, String>,
    pub glossary: bool,
    pub aliases: HashMap<String, String>,
    pub editors: Vec<String>,
}

/// The glossary as the handlers see it: term (lower case) → definition.
pub type Glossary = HashMap<String, String>;

impl Handlers {
    /// Compiles the handlers.
    ///
    /// # Errors
    /// The reaction words could not be compiled (too many to fit the automaton).
    pub fn new(config: HandlerConfig) -> Result<Handlers, String> {
        let reaction_words = if config.reactions.is_empty() {
            None
        } else {
            let words: Vec<&str> = config.reactions.iter().map(|(w, _)| w.as_str()).collect();
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&words)
                    .map_err(|e| format!("the reaction words cannot be compiled: {e}"))?,
            )
        };
        Ok(Handlers {
            bot_user_id: config.bot_user_id,
            max_age_secs: config.max_age_secs,
            reaction_words,
            reaction_names: config.reactions.into_iter().map(|(_, r)| r).collect(),
            prefixes: config.prefixes,
            exact: config.exact,
            glossary: config.glossary,
            aliases: config.aliases,
            editors: config.editors,
        })
    }

    /// Decides what to do about `message` (a queued message's fields) at `now_secs`.
    pub fn handle(&self, message: &Map<String, Value>, now_secs: f64, glossary: &Glossary) -> Verdict {
        let field = |key: &str| message.get(key).and_then(Value::as_str);
        let user = field("user");
        if user.is_some() && user == self.bot_user_id.as_deref() {
            return Verdict::Skipped(Skip::Own);
        }
        if field("bot_id").is_some_and(|b| !b.is_empty()) {
            return Verdict::Skipped(Skip::Bot);
        }
        if let Some(subtype) = field("subtype").filter(|s| *s != "thread_broadcast") {
            return Verdict::Skipped(Skip::Subtype(subtype.to_string()));
        }
        let (Some(channel), Some(ts)) = (field("channel"), field("ts")) else {
            return Verdict::Skipped(Skip::Unanswerable);
        };
        // A ts Slack did not write (not seconds.micros) counts as now: answer it.
        if let Ok(sent) = ts.parse::<f64>() {
            let age = (now_secs - sent).floor() as i64;
            if age > self.max_age_secs {
                return Verdict::Skipped(Skip::Stale { age });
            }
        }
        let text = field("text").unwrap_or_default();
        let direct = field("channel_type") == Some("im");
        let thread_ts = field("thread_ts").map(str::to_string).or_else(|| (!direct).then(|| ts.to_string()));
        let parsed = parse_mentions(text, self.bot_user_id.as_deref());
        let addressed = direct || self.bot_user_id.as_ref().is_some_and(|bot| parsed.users.iter().any(|u| u == bot));
        let mut actions = Vec::new();
        let reply = |text: String| Action::Reply { channel: channel.to_string(), thread_ts: thread_ts.clone(), text };

        if let Some(words) = &self.reaction_words {
            let mut seen = Vec::new();
            for found in words.find_overlapping_iter(text) {
                let name = &self.reaction_names[found.pattern().as_usize()];
                if !seen.contains(&name) {
                    seen.push(name);
                    actions.push(Action::React {
                        channel: channel.to_string(),
                        timestamp: ts.to_string(),
                        name: name.clone(),
                    });
                }
            }
        }
        let lower = parsed.text.to_lowercase();
        for prefix in &self.prefixes {
            if lower.starts_with(&prefix.trigger) {
                // Lower-casing can change byte lengths (rarely): cut by characters.
                let skip = prefix.trigger.chars().count();
                let rest: String = parsed.text.chars().skip(skip).collect();
                let mention = user.map(|u| format!("<@{u}>")).unwrap_or_default();
                actions.push(reply(prefix.reply.replace("{rest}", rest.trim()).replace("{user}", &mention)));
                break;
            }
        }
        if addressed {
            if let Some(answer) = self.exact.get(lower.trim()) {
                actions.push(reply(answer.clone()));
            }
            if self.glossary
                && let Some(request) = strip_prefix_ignore_case(&parsed.text, "define ")
            {
                actions.extend(self.define(request, user, glossary).into_iter().map(|a| match a {
                    Answer::Reply(text) => reply(text),
                    Answer::Learn(action) => action,
                }));
            }
        }
        Verdict::Handled(actions)
    }

    fn define(&self, request: &str, user: Option<&str>, glossary: &Glossary) -> Vec<Answer> {
        if let Some((term, definition)) = request.split_once('=') {
            let term = term.trim().to_lowercase();
            let definition = definition.trim().to_string();
            if !user.is_some_and(|u| self.editors.iter().any(|e| e == u)) {
                return vec![Answer::Reply("Only the glossary's editors can change it.".into())];
            }
            if term.is_empty() || definition.is_empty() {
                return vec![Answer::Reply("Write `define TERM = DEFINITION`.".into())];
            }
            let reply = format!("Noted: `{term}` is {definition}");
            return vec![Answer::Learn(Action::Learn { term, definition }), Answer::Reply(reply)];
        }
        let asked = request.trim().trim_matches('`').to_lowercase();
        let term = self.aliases.get(&asked).unwrap_or(&asked);
        match glossary.get(term) {
            Some(definition) => vec![Answer::Reply(format!("`{term}`: {definition}"))],
            None if asked.is_empty() => vec![Answer::Reply("Define what? Write `define TERM`.".into())],
            None => vec![Answer::Reply(format!("I don't know `{asked}` yet."))],
        }
    }
}

enum Answer {
    Reply(String),
    Learn(Action),
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_read() {
        let table: Vec<(&str, Option<&str>, Parsed)> = vec![
            ("plain", None, Parsed { text: "plain".into(), ..Parsed::default() }),
            (
                "<@UBOT> define  gopher",
                Some("UBOT"),
                Parsed { users: vec!["UBOT".into()], text: "define gopher".into(), ..Parsed::default() },
            ),
            (
                "hi <@U1|alice> in <#C9|general> <!here|@here>",
                Some("UBOT"),
                Parsed {
                    users: vec!["U1".into()],
                    channels: vec![("C9".into(), "general".into())],
                    broadcasts: vec!["here".into()],
                    text: "hi <@U1|alice> in <#C9|general> <!here|@here>".into(),
                },
            ),
            ("a < b and no close", None, Parsed { text: "a < b and no close".into(), ..Parsed::default() }),
            ("<https://x.test|link>", None, Parsed { text: "<https://x.test|link>".into(), ..Parsed::default() }),
            (
                "<#C1>",
                None,
                Parsed { channels: vec![("C1".into(), String::new())], text: "<#C1>".into(), ..Parsed::default() },
            ),
        ];
        for (text, bot, expect) in table {
            assert_eq!(parse_mentions(text, bot), expect, "{text}");
        }
    }

    fn handlers() -> Handlers {
        Handlers::new(HandlerConfig {
            bot_user_id: Some("UBOT".into()),
            max_age_secs: 30,
            reactions: vec![
                ("gopher".into(), "gopher".into()),
                ("rust".into(), "crab".into()),
                ("go".into(), "go".into()),
            ],
            prefixes: vec![Reply { trigger: "!echo".into(), reply: "{user} said {rest}".into() }],
            exact: HashMap::from([("ping".to_string(), "pong".to_string())]),
            glossary: true,
            aliases: HashMap::from([("golang".to_string(), "go".to_string())]),
            editors: vec!["UEDIT".into()],
        })
        .unwrap()
    }

    fn message(text: &str, extra: Value) -> Map<String, Value> {
        let mut m = serde_json::json!({"channel": "C1", "user": "U1", "ts": "1000.000100", "text": text, "channel_type": "channel"});
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
            m.extend(extra);
        }
        m.as_object().cloned().unwrap()
    }

    fn reply(text: &str) -> Action {
        Action::Reply { channel: "C1".into(), thread_ts: Some("1000.000100".into()), text: text.into() }
    }

    fn react(name: &str) -> Action {
        Action::React { channel: "C1".into(), timestamp: "1000.000100".into(), name: name.into() }
    }

    #[test]
    fn handlers_answer_as_configured() {
        let glossary = Glossary::from([("go".to_string(), "a language with gophers".to_string())]);
        let none = serde_json::json!({});
        let table: Vec<(&str, Map<String, Value>, Verdict)> = vec![
            ("nothing to do", message("hello there", none.clone()), Verdict::Handled(vec![])),
            (
                "reaction, any case",
                message("I like GOPHERs", none.clone()),
                Verdict::Handled(vec![react("go"), react("gopher")]),
            ),
            ("each reaction once", message("rust rust RUST", none.clone()), Verdict::Handled(vec![react("crab")])),
            (
                "prefix",
                message("!echo hello  world", none.clone()),
                Verdict::Handled(vec![reply("<@U1> said hello world")]),
            ),
            ("exact needs addressing", message("ping", none.clone()), Verdict::Handled(vec![])),
            ("exact when mentioned", message("<@UBOT> PING ", none.clone()), Verdict::Handled(vec![reply("pong")])),
            (
                "exact in a DM, no thread",
                message("ping", serde_json::json!({"channel_type": "im"})),
                Verdict::Handled(vec![Action::Reply { channel: "C1".into(), thread_ts: None, text: "pong".into() }]),
            ),
            (
                "in a thread: answered there",
                message("<@UBOT> ping", serde_json::json!({"thread_ts": "999.1"})),
                Verdict::Handled(vec![Action::Reply {
                    channel: "C1".into(),
                    thread_ts: Some("999.1".into()),
                    text: "pong".into(),
                }]),
            ),
            (
                "define",
                message("<@UBOT> define Go", none.clone()),
                Verdict::Handled(vec![react("go"), reply("`go`: a language with gophers")]),
            ),
            (
                "define an alias",
                message("<@UBOT> define golang", none.clone()),
                Verdict::Handled(vec![react("go"), reply("`go`: a language with gophers")]),
            ),
            (
                "define unknown",
                message("<@UBOT> define zig", none.clone()),
                Verdict::Handled(vec![reply("I don't know `zig` yet.")]),
            ),
            ("define not addressed", message("define zig", none.clone()), Verdict::Handled(vec![])),
            (
                "an editor teaches",
                message("<@UBOT> define Zig = a language", serde_json::json!({"user": "UEDIT"})),
                Verdict::Handled(vec![
                    Action::Learn { term: "zig".into(), definition: "a language".into() },
                    reply("Noted: `zig` is a language"),
                ]),
            ),
            (
                "others may not",
                message("<@UBOT> define zig = x", none.clone()),
                Verdict::Handled(vec![reply("Only the glossary's editors can change it.")]),
            ),
            ("own message", message("gopher", serde_json::json!({"user": "UBOT"})), Verdict::Skipped(Skip::Own)),
            ("another bot", message("gopher", serde_json::json!({"bot_id": "B1"})), Verdict::Skipped(Skip::Bot)),
            (
                "an edit",
                message("gopher", serde_json::json!({"subtype": "message_changed"})),
                Verdict::Skipped(Skip::Subtype("message_changed".into())),
            ),
            (
                "thread broadcast",
                message("rust", serde_json::json!({"subtype": "thread_broadcast"})),
                Verdict::Handled(vec![react("crab")]),
            ),
            (
                "31 s old",
                message("gopher", serde_json::json!({"ts": "969.000100"})),
                Verdict::Skipped(Skip::Stale { age: 31 }),
            ),
            (
                "no channel",
                {
                    let mut m = message("x", none.clone());
                    m.remove("channel");
                    m
                },
                Verdict::Skipped(Skip::Unanswerable),
            ),
        ];
        let h = handlers();
        for (name, message, expect) in table {
            assert_eq!(h.handle(&message, 1000.5, &glossary), expect, "{name}");
        }
    }
}
