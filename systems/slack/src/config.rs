//! The `slack` connector's keys (SPEC §9 plus our own), checked without I/O and
//! reported all at once with their locations. The connector (outbox → Web API) and the
//! service (gateway, handlers) read the same section through [`settings_from_section`].
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `signing_secret` | required without `app_token` | the app's signing secret (Basic Information → App Credentials): the HTTP gateway |
//! | `app_token` | none | an app-level token (`xapp-…`, scope `connections:write`): Socket Mode |
//! | `bot_token` | required | `xoxb-…`, sent only in the `Authorization` header |
//! | `app_id`, `team_id` | not checked | requests for another app or workspace are refused (403) |
//! | `bot_user_id` | none | the bot's user id: its own messages are ignored, mentions of it address it |
//! | `path` | `/slack/events` | where the node's HTTP server takes events and slash commands |
//! | `api_url` | `https://slack.com/api` | the Web API's base URL |
//! | `max_body` | `1MiB` | larger requests are refused (413) before they are verified |
//! | `dedupe_for` | `2h` | how long an `event_id` is remembered (at least `1h`) |
//! | `max_age` | `30s` | messages older than this are not answered |
//! | `tasks` | none | background tasks: `name`, `kind` (`channel_cache`), `every`, `singleton` (true: the only kind) |
//! | `handlers` | none | `reactions`, `prefixes`, `responses`, `glossary` (see docs/slack.md) |

use std::collections::HashMap;
use std::time::Duration;

use flotilla_config::{Diagnostic, Located};
use flotilla_connector::{ConnectorSection, diagnostic_at};

use crate::event::Expected;
use crate::handlers::{HandlerConfig, Handlers, Reply};

/// A secret: shown as `***` by `Debug`, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (a MAC key, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    signing_secret: Option<Located<String>>,
    bot_token: Located<String>,
    app_token: Option<Located<String>>,
    app_id: Option<String>,
    team_id: Option<String>,
    bot_user_id: Option<String>,
    path: Option<Located<String>>,
    api_url: Option<Located<String>>,
    max_body: Option<Located<String>>,
    dedupe_for: Option<Located<String>>,
    max_age: Option<Located<String>>,
    handlers: Option<RawHandlers>,
    tasks: Option<Vec<RawTask>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Located<String>,
    /// What it does: `channel_cache`.
    kind: Located<String>,
    every: Located<String>,
    singleton: Option<Located<bool>>,
}

/// A background task (`tasks:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSettings {
    pub name: String,
    pub kind: TaskKind,
    pub every: Duration,
}

/// What a background task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// `conversations.list`, every page, kept in the store (state `channels`).
    ChannelCache,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHandlers {
    /// word → reaction name (without colons).
    #[serde(default)]
    reactions: Vec<HashMap<String, String>>,
    /// prefix → reply.
    #[serde(default)]
    prefixes: Vec<HashMap<String, String>>,
    /// exact text → reply.
    #[serde(default)]
    responses: Vec<HashMap<String, String>>,
    glossary: Option<RawGlossary>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlossary {
    /// term → definition, written to the store at start when the term is not there yet.
    #[serde(default)]
    terms: HashMap<String, String>,
    /// alias → term.
    #[serde(default)]
    aliases: HashMap<String, String>,
    /// User ids who may `define TERM = DEFINITION`.
    #[serde(default)]
    editors: Vec<String>,
}

/// Everything a `slack` connector and its gateway need, checked.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// `None`: Socket Mode only, no HTTP route.
    pub signing_secret: Option<Secret>,
    pub bot_token: Secret,
    /// Socket Mode's app-level token (`xapp-…`).
    pub app_token: Option<Secret>,
    pub expected: Expected,
    pub path: String,
    pub api_url: String,
    pub max_body: usize,
    pub dedupe_for: Duration,
    pub handlers: Handlers,
    /// Glossary terms from the configuration (lower-cased), seeded into the store.
    pub glossary_seed: HashMap<String, String>,
    pub tasks: Vec<TaskSettings>,
}

pub const DEFAULT_PATH: &str = "/slack/events";
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Reads and checks a section; every problem is reported.
pub fn settings_from_section(section: &ConnectorSection<'_>) -> Result<SlackSettings, Vec<Diagnostic>> {
    let raw: RawSlack = flotilla_connector::decode_section(section)?;
    let mut errors = Vec::new();
    for (key, value) in [
        ("signing_secret", raw.signing_secret.as_ref()),
        ("bot_token", Some(&raw.bot_token)),
        ("app_token", raw.app_token.as_ref()),
    ] {
        if value.is_some_and(|v| v.value.trim().is_empty()) {
            errors.push(diagnostic_at(section, key, "must not be empty"));
        }
    }
    if raw.signing_secret.is_none() && raw.app_token.is_none() {
        errors.push(diagnostic_at(
            section,
            "signing_secret",
            "give signing_secret (the Events API over HTTP) or app_token (Socket Mode), or both",
        ));
    }
    if raw.app_token.as_ref().is_some_and(|t| !t.value.starts_with("xapp-")) {
        errors.push(diagnostic_at(
            section,
            "app_token",
            "an app-level token starts with xapp- (Basic Information → App-Level Tokens)",
        ));
    }
    let path = raw.path.as_ref().map_or(DEFAULT_PATH.to_string(), |p| p.value.clone());
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.contains("{") {
        errors.push(diagnostic_at(section, "path", format!("'{path}' is not an absolute URL path (/slack/events)")));
    }
    let api_url =
        raw.api_url.as_ref().map_or(DEFAULT_API_URL.to_string(), |u| u.value.trim_end_matches('/').to_string());
    if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
        errors.push(diagnostic_at(section, "api_url", format!("'{api_url}' is not an http(s) URL")));
    }
    let max_body = match &raw.max_body {
        None => 1 << 20,
        Some(text) => match flotilla_core::parse_size(&text.value) {
            Ok(n) if (1024..=64 << 20).contains(&n) => n as usize,
            Ok(_) => {
                errors.push(diagnostic_at(section, "max_body", "must be between 1KiB and 64MiB"));
                0
            }
            Err(e) => {
                errors.push(diagnostic_at(section, "max_body", e.to_string()));
                0
            }
        },
    };
    let mut duration = |key: &str, value: &Option<Located<String>>, default: Duration, min: Duration| match value {
        None => default,
        Some(text) => match flotilla_core::parse_duration(&text.value) {
            Ok(d) if d >= min => d,
            Ok(_) => {
                errors.push(diagnostic_at(section, key, format!("must be at least {min:?}")));
                default
            }
            Err(e) => {
                errors.push(diagnostic_at(section, key, e.to_string()));
                default
            }
        },
    };
    let dedupe_for = duration("dedupe_for", &raw.dedupe_for, Duration::from_secs(7200), Duration::from_secs(3600));
    let max_age = duration("max_age", &raw.max_age, Duration::from_secs(30), Duration::from_secs(1));

    let mut tasks = Vec::new();
    for (i, task) in raw.tasks.unwrap_or_default().into_iter().enumerate() {
        let at = |key: &str| format!("tasks.{i}.{key}");
        let kind = match task.kind.value.as_str() {
            "channel_cache" => Some(TaskKind::ChannelCache),
            other => {
                errors.push(diagnostic_at(
                    section,
                    &at("kind"),
                    format!("unknown task kind '{other}' (known: channel_cache)"),
                ));
                None
            }
        };
        // Tasks run inside the connector, which a fleet runs on one node at a time
        // under its lease: every task is a singleton. A task on every node is not built.
        if task.singleton.as_ref().is_some_and(|s| !s.value) {
            errors.push(diagnostic_at(
                section,
                &at("singleton"),
                "only singleton tasks exist (they run where the connector runs, one node of the fleet)",
            ));
        }
        let every = match flotilla_core::parse_duration(&task.every.value) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                errors.push(diagnostic_at(section, &at("every"), "must be at least 1s"));
                Duration::from_secs(1)
            }
            Err(e) => {
                errors.push(diagnostic_at(section, &at("every"), e.to_string()));
                Duration::from_secs(1)
            }
        };
        if let Some(kind) = kind {
            tasks.push(TaskSettings { name: task.name.value, kind, every });
        }
    }
    let handlers_raw = raw.handlers.unwrap_or_default();
    let pairs = |list: Vec<HashMap<String, String>>| -> Vec<(String, String)> {
        list.into_iter().flat_map(|m| m.into_iter()).collect()
    };
    let reactions: Vec<(String, String)> = pairs(handlers_raw.reactions)
        .into_iter()
        .map(|(word, reaction)| (word.to_lowercase(), reaction.trim_matches(':').to_string()))
        .collect();
    for (word, reaction) in &reactions {
        if word.trim().is_empty() || reaction.is_empty() {
            errors.push(diagnostic_at(section, "handlers.reactions", "each entry is `word: reaction`, neither empty"));
        }
    }
    let prefixes: Vec<Reply> = pairs(handlers_raw.prefixes)
        .into_iter()
        .map(|(trigger, reply)| Reply { trigger: trigger.to_lowercase(), reply })
        .collect();
    if prefixes.iter().any(|p| p.trigger.is_empty()) {
        errors.push(diagnostic_at(section, "handlers.prefixes", "a prefix must not be empty"));
    }
    let exact: HashMap<String, String> =
        pairs(handlers_raw.responses).into_iter().map(|(text, reply)| (text.trim().to_lowercase(), reply)).collect();
    let glossary = handlers_raw.glossary;
    let glossary_on = glossary.is_some();
    let glossary = glossary.unwrap_or_default();
    let aliases = glossary.aliases.into_iter().map(|(a, t)| (a.to_lowercase(), t.to_lowercase())).collect();
    let glossary_seed = glossary.terms.into_iter().map(|(t, d)| (t.to_lowercase(), d)).collect();
    let handlers = match Handlers::new(HandlerConfig {
        bot_user_id: raw.bot_user_id,
        max_age_secs: max_age.as_secs() as i64,
        reactions,
        prefixes,
        exact,
        glossary: glossary_on,
        aliases,
        editors: glossary.editors,
    }) {
        Ok(handlers) => Some(handlers),
        Err(e) => {
            errors.push(diagnostic_at(section, "handlers.reactions", e));
            None
        }
    };
    match handlers {
        Some(handlers) if errors.is_empty() => Ok(SlackSettings {
            signing_secret: raw.signing_secret.map(|s| Secret::new(s.value)),
            bot_token: Secret::new(raw.bot_token.value),
            app_token: raw.app_token.map(|s| Secret::new(s.value)),
            expected: Expected { app_id: raw.app_id, team_id: raw.team_id },
            path,
            api_url,
            max_body,
            dedupe_for,
            handlers,
            glossary_seed,
            tasks,
        }),
        _ => Err(errors),
    }
}
