//! The scheduler shared by every monitor.

use std::time::{Duration, SystemTime};

use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorContext, ConnectorSection, diagnostic_at};
use flotilla_core::Message;
use serde_json::{Map, Value};

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
}

/// The scheduling keys every monitor takes.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub delay: Duration,
    pub rand: Duration,
    pub timeout: Duration,
}

/// The keys the scheduler takes out of a monitor's section.
pub const SCHEDULE_KEYS: [&str; 3] = ["delay", "rand", "timeout"];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    delay: Option<flotilla_config::Located<String>>,
    rand: Option<flotilla_config::Located<String>>,
    timeout: Option<flotilla_config::Located<String>>,
}

impl MonitorSettings {
    /// Reads `delay`, `rand` and `timeout` from a section, defaulting `delay` to
    /// `default_delay`, and hands the other keys to `specific` (the monitor's own
    /// config). Problems from both parts are reported together.
    pub fn from_section<T>(
        section: &ConnectorSection<'_>,
        default_delay: Duration,
        specific: impl FnOnce(&ConnectorSection<'_>) -> Result<T, Vec<Diagnostic>>,
    ) -> Result<(MonitorSettings, T), Vec<Diagnostic>> {
        let (schedule, rest) = flotilla_connector::split_section(section.node, &SCHEDULE_KEYS);
        let (raw, mut errors) = flotilla_config::decode_at::<RawSettings>(&schedule, &section.path);
        let mut settings =
            MonitorSettings { delay: default_delay, rand: Duration::ZERO, timeout: Duration::from_secs(30) };
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

/// The message a failed or timed-out check becomes.
pub fn critical(subject: String) -> Message {
    let mut message = Message::new();
    message.set("subject", subject);
    message.set("status", "CRITICAL");
    message.set("color", "RED");
    message
}

#[async_trait::async_trait]
impl<M: Monitor> Connector for MonitorConnector<M> {
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
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
            let (messages, next) = match outcome {
                Ok(Ok(outcome)) => (outcome.messages, outcome.next_delay),
                Ok(Err(error)) => {
                    tracing::warn!(connector = ctx.name(), error = %format!("{error:#}"), "A monitor check failed.");
                    (vec![critical(format!("CRITICAL: {error:#}"))], None)
                }
                Err(_) => {
                    let seconds = self.settings.timeout.as_secs_f64();
                    tracing::warn!(connector = ctx.name(), seconds, "A monitor check timed out.");
                    (vec![critical(format!("Timed out after {seconds} seconds"))], None)
                }
            };
            // Messages first, then the cache: a crash in between repeats a report
            // rather than losing one.
            ctx.emit_all(messages).await?;
            if cache != before {
                ctx.save_state("cache", &Value::Object(cache.clone())).await?;
            }
            let jitter = self.settings.rand.mul_f64(flotilla_core::random::fraction());
            delay = next.unwrap_or(self.settings.delay) + jitter;
        }
    }
}
