//! The scheduler shared by every monitor: the keys every monitor takes (`delay`,
//! `rand`, `timeout`, `react`), the per-instance cache, and the loop that checks,
//! runs the instance's own rules and queues what is left.

use std::time::{Duration, SystemTime};

use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorContext, ConnectorSection, diagnostic_at};
use flotilla_core::Message;
use flotilla_reactor::RuleConfig;
use serde_json::{Map, Value};

use crate::react::{REACT_KEY, ReactRules};

/// What one check produced.
#[derive(Debug, Default)]
pub struct CheckOutcome {
    pub messages: Vec<Message>,
    /// When to check next, if the monitor knows better than `delay` (Pulse syncs to the
    /// minute).
    pub next_delay: Option<Duration>,
}

/// A monitor: looks at something and reports.
#[async_trait::async_trait]
pub trait Monitor: Send + Sync + 'static {
    /// One check at `now`. `cache` is this instance's memory; changes to it are saved
    /// after the messages are on the bus.
    async fn check(&self, cache: &mut Map<String, Value>, now: SystemTime) -> anyhow::Result<CheckOutcome>;

    /// The address the monitor watches, if it has one: a failed check's message links
    /// to it, as wubot's did.
    fn link(&self) -> Option<&str> {
        None
    }
}

/// The keys every monitor takes.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub delay: Duration,
    pub rand: Duration,
    pub timeout: Duration,
    /// The instance's own rules, run on each message before it is queued.
    pub react: Option<ReactRules>,
}

/// The keys the scheduler takes out of a monitor's section.
pub const SCHEDULE_KEYS: [&str; 4] = ["delay", "rand", "timeout", REACT_KEY];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    delay: Option<flotilla_config::Located<String>>,
    rand: Option<flotilla_config::Located<String>>,
    timeout: Option<flotilla_config::Located<String>>,
}

impl MonitorSettings {
    /// Reads `delay`, `rand`, `timeout` and `react` from a section, defaulting `delay`
    /// to `default_delay`, checks the `react` rules, and hands the other keys to
    /// `specific` (the monitor's own config). Problems from all parts are reported
    /// together.
    pub fn from_section<T>(
        section: &ConnectorSection<'_>,
        default_delay: Duration,
        specific: impl FnOnce(&ConnectorSection<'_>) -> Result<T, Vec<Diagnostic>>,
    ) -> Result<(MonitorSettings, T), Vec<Diagnostic>> {
        let (schedule, rest) = flotilla_connector::split_section(section.node, &SCHEDULE_KEYS);
        let (react, schedule) = flotilla_connector::split_section(&schedule, &[REACT_KEY]);
        let (raw, mut errors) = flotilla_config::decode_at::<RawSettings>(&schedule, &section.path);
        let mut settings = MonitorSettings {
            delay: default_delay,
            rand: Duration::ZERO,
            timeout: Duration::from_secs(30),
            react: None,
        };
        if let Some(raw) = raw {
            let mut parse = |value: &Option<flotilla_config::Located<String>>, key: &str, slot: &mut Duration| {
                if let Some(text) = value {
                    match flotilla_core::parse_duration(&text.value) {
                        Ok(d) => *slot = d,
                        Err(e) => errors.push(diagnostic_at(section, key, e.to_string())),
                    }
                }
            };
            parse(&raw.delay, "delay", &mut settings.delay);
            parse(&raw.rand, "rand", &mut settings.rand);
            parse(&raw.timeout, "timeout", &mut settings.timeout);
            if settings.timeout.is_zero() {
                errors.push(diagnostic_at(section, "timeout", "must be more than 0 seconds"));
            }
        }
        // Decoded on its own, so a mistake in the rules never hides one in the
        // schedule, and the other way round.
        if let Some(node) = react.entry(REACT_KEY).filter(|node| !node.is_null()) {
            let path = format!("{}.{REACT_KEY}", section.path);
            match flotilla_config::decode_at::<Vec<RuleConfig>>(node, &path) {
                (Some(rules), more) if more.is_empty() => match ReactRules::check(section, rules) {
                    Ok(react) => settings.react = Some(react),
                    Err(more) => errors.extend(more),
                },
                (_, more) => errors.extend(more),
            }
        }
        let rest_section = ConnectorSection { name: section.name, node: &rest, path: section.path.clone() };
        match specific(&rest_section) {
            Ok(value) if errors.is_empty() => Ok((settings, value)),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }
}

/// Runs a [`Monitor`] on its schedule as a connector.
pub struct MonitorConnector<M> {
    pub monitor: M,
    pub settings: MonitorSettings,
}

/// The message a failed or timed-out check becomes: `subject` (also in `errmsg`, as
/// wubot kept it), `status: CRITICAL`, `color: RED`.
pub fn critical(subject: String) -> Message {
    let mut message = Message::new();
    message.set("errmsg", subject.as_str());
    message.set("subject", subject);
    message.set("status", "CRITICAL");
    message.set("color", "RED");
    message
}

impl<M: Monitor> MonitorConnector<M> {
    fn failure(&self, subject: String) -> Message {
        let mut message = critical(subject);
        if let Some(link) = self.monitor.link() {
            message.set("link", link);
        }
        message
    }
}

#[async_trait::async_trait]
impl<M: Monitor> Connector for MonitorConnector<M> {
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
        // Compiled here rather than at build time so `wubot_rulelog` names this node,
        // and a changed rules file is picked up on restart.
        let rules = match &self.settings.react {
            Some(react) => Some(react.compile(ctx.node_name()).map_err(|errors| {
                let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
                anyhow::anyhow!("the react rules no longer compile: {}", listed.join("; "))
            })?),
            None => None,
        };
        let effects = flotilla_connector::BusEffects::for_connector(ctx);
        let mut cache = match ctx.load_state("cache").await? {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let mut delay = Duration::ZERO; // The first check runs at once.
        loop {
            tokio::select! {
                _ = ctx.shutdown().cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
            let before = cache.clone();
            let outcome =
                tokio::time::timeout(self.settings.timeout, self.monitor.check(&mut cache, SystemTime::now())).await;
            let (mut messages, next) = match outcome {
                Ok(Ok(outcome)) => (outcome.messages, outcome.next_delay),
                Ok(Err(error)) => {
                    tracing::warn!(connector = ctx.name(), error = %format!("{error:#}"), "A monitor check failed.");
                    (vec![self.failure(format!("CRITICAL: {error:#}"))], None)
                }
                Err(_) => {
                    let seconds = self.settings.timeout.as_secs_f64();
                    tracing::warn!(connector = ctx.name(), seconds, "A monitor check timed out.");
                    (vec![self.failure(format!("Timed out after {seconds} seconds"))], None)
                }
            };
            if let Some(rules) = &rules {
                messages = crate::react::react(rules, messages, ctx, &effects).await;
                // What the rules queued or sent was buffered: durable from here.
                effects.flush().await?;
            }
            // Effects and messages first, then the cache: a crash in between repeats
            // a report rather than losing one.
            ctx.emit_all(messages).await?;
            if cache != before {
                ctx.save_state("cache", &Value::Object(cache.clone())).await?;
            }
            let jitter = self.settings.rand.mul_f64(flotilla_core::random::fraction());
            delay = next.unwrap_or(self.settings.delay) + jitter;
        }
    }
}
