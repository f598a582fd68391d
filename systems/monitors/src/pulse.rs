//! Pulse: a message at every tick of the clock (every `delay`, default one minute,
//! aligned to the clock), as wubot's Pulse did. No tick is skipped: after a restart or
//! a stall, the ticks missed since the last one are sent at once, oldest first, with
//! `age` saying how many minutes late each is (0 = on time).
//!
//! Message fields: `date` (YYYY-MM-DD), `time` (HH:MM), `day` (weekday, lower case),
//! `age` (minutes late), `coalesce` (the connector's key), `subject`
//! (`Pulse: <date> <time>`). Local time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local};
use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType, decode_section};
use flotilla_core::Message;
use serde_json::{Map, Value};

use crate::monitor::{CheckOutcome, Monitor, MonitorConnector, MonitorSettings};

pub(crate) const CONNECTOR_TYPE: ConnectorType =
    ConnectorType { name: "pulse", description: "a message at every tick of the clock (wubot's Pulse)", build };

/// At most this many missed ticks are sent after a long outage; older ones are
/// summarised in a log line instead of flooding the bus.
const MAX_CATCH_UP: u64 = 10_000;

/// Pulse has no keys of its own.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PulseConfig {}

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let (settings, _) = MonitorSettings::from_section(section, Duration::from_secs(60), |rest| {
        let _: PulseConfig = decode_section(rest)?;
        Ok(())
    })?;
    if settings.delay < Duration::from_secs(1) {
        return Err(vec![flotilla_connector::diagnostic_at(section, "delay", "a pulse needs a delay of at least 1s")]);
    }
    let pulse = Pulse { period: settings.delay.as_secs(), key: section.name.to_string() };
    Ok(Box::new(MonitorConnector { monitor: pulse, settings }))
}

/// The Pulse monitor.
pub struct Pulse {
    /// Seconds between ticks.
    pub period: u64,
    /// The connector's key, copied to `coalesce`.
    pub key: String,
}

impl Pulse {
    fn message(&self, tick: u64, now: u64) -> Message {
        let local: DateTime<Local> = DateTime::from(UNIX_EPOCH + Duration::from_secs(tick));
        let date = local.format("%Y-%m-%d").to_string();
        let time = local.format("%H:%M").to_string();
        let mut message = Message::new();
        message.set("date", date.as_str());
        message.set("time", time.as_str());
        message.set("day", local.format("%A").to_string().to_lowercase());
        message.set("age", (now.saturating_sub(tick)) / 60);
        message.set("coalesce", self.key.as_str());
        message.set("subject", format!("Pulse: {date} {time}"));
        message.set("lastupdate", tick);
        message
    }
}

#[async_trait::async_trait]
impl Monitor for Pulse {
    async fn check(&self, cache: &mut Map<String, Value>, now: SystemTime) -> anyhow::Result<CheckOutcome> {
        let now = now.duration_since(UNIX_EPOCH)?.as_secs();
        let period = self.period.max(1);
        let current_tick = now - now % period;
        let last_tick = cache.get("lastupdate").and_then(Value::as_u64);
        let ticks: Vec<u64> = match last_tick {
            None => vec![current_tick],
            Some(last) if last >= current_tick => Vec::new(), // Already sent this one.
            Some(last) => {
                let missed = (current_tick - last) / period;
                let first = if missed > MAX_CATCH_UP {
                    tracing::warn!(key = %self.key, missed, sent = MAX_CATCH_UP, "Pulse missed many ticks; sending only the newest.");
                    current_tick - (MAX_CATCH_UP - 1) * period
                } else {
                    last + period
                };
                (0..).map(|i| first + i * period).take_while(|t| *t <= current_tick).collect()
            }
        };
        cache.insert("lastupdate".into(), Value::from(current_tick));
        Ok(CheckOutcome {
            messages: ticks.into_iter().map(|tick| self.message(tick, now)).collect(),
            next_delay: Some(Duration::from_secs(current_tick + period - now)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulse() -> Pulse {
        Pulse { period: 60, key: "Pulse-test".into() }
    }

    async fn check(cache: &mut Map<String, Value>, unix: u64) -> CheckOutcome {
        pulse().check(cache, UNIX_EPOCH + Duration::from_secs(unix)).await.unwrap()
    }

    #[tokio::test]
    async fn first_pulse_then_one_per_minute_synced_to_the_clock() {
        let mut cache = Map::new();
        let first = check(&mut cache, 1_699_999_990).await; // 10 s into a minute.
        assert_eq!(first.messages.len(), 1);
        assert_eq!(first.messages[0].get("age"), Some(&Value::from(0)));
        assert_eq!(first.next_delay, Some(Duration::from_secs(50)));
        assert_eq!(first.messages[0].get("coalesce"), Some(&Value::from("Pulse-test")));
        let subject = first.messages[0].get_str("subject").unwrap();
        let date = first.messages[0].get_str("date").unwrap();
        let time = first.messages[0].get_str("time").unwrap();
        assert_eq!(subject, format!("Pulse: {date} {time}"));
        assert!(date.len() == 10 && time.len() == 5 && time.as_bytes()[2] == b':');
        let day = first.messages[0].get_str("day").unwrap();
        assert!(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"].contains(&day));

        assert!(check(&mut cache, 1_700_000_030).await.messages.is_empty(), "same minute: nothing");
        let next = check(&mut cache, 1_700_000_061).await;
        assert_eq!(next.messages.len(), 1);
        assert_eq!(next.messages[0].lastupdate(), Some(1_700_000_040.0), "stamped with its tick");
    }

    #[tokio::test]
    async fn missed_minutes_are_sent_oldest_first_with_their_age() {
        let mut cache = Map::new();
        check(&mut cache, 1_700_000_000).await;
        // Five minutes and a bit later: the four missed ticks and the current one.
        let late = check(&mut cache, 1_700_000_000 + 5 * 60 + 7).await;
        let ages: Vec<u64> = late.messages.iter().map(|m| m.get("age").unwrap().as_u64().unwrap()).collect();
        assert_eq!(ages, vec![4, 3, 2, 1, 0]);
        let times: Vec<f64> = late.messages.iter().map(|m| m.lastupdate().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[1] - w[0] == 60.0));
    }

    #[tokio::test]
    async fn a_very_long_outage_sends_a_bounded_catch_up() {
        let mut cache = Map::new();
        check(&mut cache, 1_000_000_020).await;
        let late = check(&mut cache, 1_000_000_020 + 30 * 86_400).await;
        assert_eq!(late.messages.len() as u64, MAX_CATCH_UP);
        assert_eq!(late.messages.last().unwrap().get("age"), Some(&Value::from(0)));
    }
}
