//! Plugins that remember across messages, through [`Effects::load_state`] and
//! [`Effects::save_state`] so the memory survives restarts: State (notify when a
//! numeric field changes) and Status (track how long a check has been failing and
//! quieten repeats).

use std::time::UNIX_EPOCH;

use flotilla_core::Message;
use flotilla_core::message::{is_truthy, value_text};
use serde_json::{Map, Value};

use super::{Flow, PluginConfig, field};
use crate::effects::Effects;

/// The state namespace of State; keys are `<message key>:<field>`.
pub const STATE_NAMESPACE: &str = "State";
/// The state namespace of Status; keys are message keys.
pub const STATUS_NAMESPACE: &str = "Status";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Change(f64),
    Increase(f64),
    Decrease(f64),
}

/// State: watches the numeric `field` of each `key`. When it moves by more than
/// `change` (default 0), by at least `increase`, or by at least `decrease`, the subject
/// becomes `"<key>: <field> changed: OLD => NEW"` (or `increased`/`decreased`, plus
/// ` (<time since the last change>)` after the first change) and `state_changed` is
/// set. `state_change` holds the difference whenever the value differs from the
/// remembered one; `state_init` marks the first message of a key. With `increase`, a
/// drop only lowers the remembered value (and with `decrease` a rise raises it), so a
/// slow climb is still noticed.
#[derive(Debug)]
pub(crate) struct State {
    field: String,
    mode: Mode,
}

impl State {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<State> {
        let field = cfg.required_string("field");
        let change = cfg.number("change");
        let increase = cfg.number("increase");
        let decrease = cfg.number("decrease");
        let reason = "wubot's stale-state notifications are not part of Flotilla's State; use a monitor";
        cfg.unsupported("notify_interval", reason);
        cfg.unsupported("mailbox", reason);
        let mode = match (change, increase, decrease) {
            (None, None, None) => Mode::Change(0.0),
            (Some(n), None, None) if n >= 0.0 => Mode::Change(n),
            (None, Some(n), None) if n > 0.0 => Mode::Increase(n),
            (None, None, Some(n)) if n > 0.0 => Mode::Decrease(n),
            (Some(_), None, None) => {
                cfg.error("change", "'change' must be at least 0".into());
                return None;
            }
            (None, Some(_), None) => {
                cfg.error("increase", "'increase' must be more than 0".into());
                return None;
            }
            (None, None, Some(_)) => {
                cfg.error("decrease", "'decrease' must be more than 0".into());
                return None;
            }
            _ => {
                cfg.error_here("use only one of 'change', 'increase' and 'decrease'".into());
                return None;
            }
        };
        Some(State { field: field?, mode })
    }

    pub(crate) async fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        let key = message_key(message)?;
        let field_name = &self.field;
        let current = match field(message, field_name) {
            None => 0.0,
            Some(value) if !is_truthy(value) => 0.0,
            Some(value) => {
                number(value).ok_or_else(|| format!("field '{field_name}' is not a number: '{}'", value_text(value)))?
            }
        };
        let state_key = format!("{key}:{field_name}");
        let mut cache = load_map(effects, STATE_NAMESPACE, &state_key).await?;
        let now = now_seconds(effects);
        let stamp = message.lastupdate().filter(|t| *t != 0.0).unwrap_or(now);

        let last = match cache.get("value") {
            Some(value) => number(value).unwrap_or(0.0),
            None => {
                cache.insert("value".into(), number_value(current));
                cache.insert("lastupdate".into(), number_value(stamp));
                message.set("state_init", 1);
                current
            }
        };
        let mut remember = false;
        let mut changed = false;
        if current != last {
            let change = current - last;
            message.set("state_change", number_value(change));
            let age = cache
                .get("lastchange")
                .and_then(number)
                .map(|at| format!(" ({})", human_duration((now - at) as i64)))
                .unwrap_or_default();
            let (notify, verb) = match self.mode {
                Mode::Increase(n) => {
                    remember = change < 0.0;
                    (change >= n, "increased")
                }
                Mode::Decrease(n) => {
                    remember = change > 0.0;
                    (change <= -n, "decreased")
                }
                Mode::Change(n) => (change.abs() > n, "changed"),
            };
            if notify {
                let subject = format!(
                    "{key}: {field_name} {verb}: {} => {}{age}",
                    perl_number_text(last),
                    perl_number_text(current)
                );
                message.set("subject", subject);
                message.set("state_changed", 1);
                remember = true;
                changed = true;
            }
        }
        if remember {
            cache.insert("value".into(), number_value(current));
        }
        if changed {
            cache.insert("lastchange".into(), number_value(stamp));
        }
        cache.insert("lastupdate".into(), number_value(stamp));
        effects
            .save_state(STATE_NAMESPACE, &state_key, &Value::Object(cache))
            .await
            .map_err(|e| format!("cannot remember state for '{state_key}': {e}"))?;
        Ok(Flow::Keep)
    }
}

/// Status: tracks each key's `status` (OK, WARNING, CRITICAL, UNKNOWN; none means OK).
/// Sets `status_count` (messages in a row with this status), `status_since` and, on a
/// change, `status_previous`; colours WARNING yellow, CRITICAL red and UNKNOWN orange.
/// A problem status repeated for the Nth time gets ` [Nx STATUS (duration)]` appended
/// to its subject when N is a Fibonacci number (2, 3, 5, 8, 13, …), and is marked
/// `quiet` and `suppress` otherwise. Messages that already carry a `status_count`
/// (processed on another host) are left alone.
#[derive(Debug)]
pub(crate) struct Status;

const STATUSES: &[&str] = &["OK", "WARNING", "CRITICAL", "UNKNOWN"];

impl Status {
    pub(crate) fn compile(_cfg: &mut PluginConfig<'_>) -> Option<Status> {
        Some(Status)
    }

    pub(crate) async fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        let has = |m: &Message, name: &str| field(m, name).is_some_and(is_truthy);
        if has(message, "status") && has(message, "status_count") {
            return Ok(Flow::Keep);
        }
        if !has(message, "status") {
            message.set("status", "OK");
        }
        let Some(status) = message.get_str("status").filter(|s| STATUSES.contains(s)).map(str::to_string) else {
            return Ok(Flow::Keep);
        };
        let key = message_key(message)?;
        let cache = load_map(effects, STATUS_NAMESPACE, &key).await?;
        let now = now_seconds(effects);
        let stamp = message.lastupdate().filter(|t| *t != 0.0).unwrap_or(now);

        let previous = cache.get("status").and_then(Value::as_str).filter(|s| !s.is_empty());
        let (count, since) = if previous == Some(status.as_str()) {
            let count = cache.get("status_count").and_then(number).unwrap_or(0.0) + 1.0;
            (count, cache.get("status_since").and_then(number).unwrap_or(stamp))
        } else {
            if let Some(previous) = previous {
                message.set("status_previous", previous);
            }
            (1.0, stamp)
        };
        message.set("status_count", number_value(count));
        message.set("status_since", number_value(since));

        if count > 1.0 && status != "OK" && has(message, "subject") {
            let count = count as u64;
            if is_fibonacci(count) {
                let subject = value_text(message.get("subject").unwrap_or(&Value::Null)).into_owned();
                let elapsed = human_duration((now - since) as i64);
                message.set("subject", format!("{subject} [{count}x {status} ({elapsed})]"));
            } else {
                message.set("quiet", 1);
                message.set("suppress", 1);
            }
        }
        let color = match status.as_str() {
            "CRITICAL" => Some("red"),
            "WARNING" => Some("yellow"),
            "UNKNOWN" => Some("orange"),
            _ => None,
        };
        if let Some(color) = color {
            message.set("color", color);
        }
        let mut remembered = Map::new();
        remembered.insert("status".into(), Value::from(status));
        remembered.insert("status_count".into(), number_value(count));
        remembered.insert("status_since".into(), number_value(since));
        effects
            .save_state(STATUS_NAMESPACE, &key, &Value::Object(remembered))
            .await
            .map_err(|e| format!("cannot remember the status of '{key}': {e}"))?;
        Ok(Flow::Keep)
    }
}

fn message_key(message: &Message) -> Result<String, String> {
    match field(message, "key") {
        Some(key) if is_truthy(key) => Ok(value_text(key).into_owned()),
        _ => Err("the message has no 'key' to remember its state under".into()),
    }
}

async fn load_map(effects: &dyn Effects, namespace: &str, key: &str) -> Result<Map<String, Value>, String> {
    match effects.load_state(namespace, key).await {
        Ok(Some(Value::Object(map))) => Ok(map),
        Ok(_) => Ok(Map::new()),
        Err(e) => Err(format!("cannot read the remembered state of '{key}': {e}")),
    }
}

fn now_seconds(effects: &dyn Effects) -> f64 {
    effects.now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A value as a number, as Perl would use it: numbers, and strings that spell one.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// A number as JSON, whole numbers as integers.
fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// A number as Perl prints it: whole numbers without a fraction.
fn perl_number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1.0e15 { format!("{}", n as i64) } else { format!("{n}") }
}

/// Whether `n` is a Fibonacci number (1, 2, 3, 5, 8, 13, …).
fn is_fibonacci(n: u64) -> bool {
    let (mut a, mut b) = (1u64, 2u64);
    while a < n {
        (a, b) = (b, a.saturating_add(b));
    }
    a == n
}

/// wubot's human-readable duration: `1h30m`, `1d12h`, `1M1w`, `-1m`, `0s`. The
/// smaller units are dropped as the duration grows (no seconds past an hour, no
/// minutes past a day, no hours past a week, no days past a month, no weeks past a
/// year).
pub(crate) fn human_duration(seconds: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    const WEEK: i64 = 7 * DAY;
    const MONTH: i64 = 30 * DAY;
    const YEAR: i64 = 365 * DAY;
    if seconds == 0 {
        return "0s".into();
    }
    let magnitude = seconds.unsigned_abs() as i64;
    let units = [
        ("y", YEAR, false),
        ("M", MONTH, false),
        ("w", WEEK, magnitude > YEAR),
        ("d", DAY, magnitude > MONTH),
        ("h", HOUR, magnitude > WEEK),
        ("m", MINUTE, magnitude > DAY),
        ("s", 1, magnitude > HOUR),
    ];
    let mut out = String::new();
    if seconds < 0 {
        out.push('-');
    }
    let mut rest = magnitude;
    for (name, size, skip) in units {
        if skip {
            continue;
        }
        if rest >= size {
            out.push_str(&format!("{}{name}", rest / size));
            rest %= size;
        }
        if rest == 0 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_wubot() {
        const D: i64 = 86_400;
        let cases = [
            (60, "1m"),
            (90, "1m30s"),
            (3600, "1h"),
            (5400, "1h30m"),
            (D, "1d"),
            (D * 3 / 2, "1d12h"),
            (0, "0s"),
            (-60, "-1m"),
            (D * 8, "1w1d"),
            (D * 31, "1M"),
            (D * 38, "1M1w"),
            (D * 39, "1M1w"),
            (D * 366, "1y"),
            (D * 396, "1y1M"),
            (D * 365 * 20 + D * 7, "20y"),
            (D * 365 * 20 + D * 30, "20y1M"),
            (D * 3 / 2 + 70, "1d12h"),
            (3600 * 12 + 70, "12h1m"),
            (-(D * 3 / 2 + 70), "-1d12h"),
            (-(3600 * 12 + 70), "-12h1m"),
            (59, "59s"),
        ];
        for (seconds, text) in cases {
            assert_eq!(human_duration(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn fibonacci_numbers() {
        let fib: Vec<u64> = (1..=60).filter(|n| is_fibonacci(*n)).collect();
        assert_eq!(fib, vec![1, 2, 3, 5, 8, 13, 21, 34, 55]);
    }

    #[test]
    fn perl_number_texts() {
        assert_eq!(perl_number_text(5.0), "5");
        assert_eq!(perl_number_text(-2.0), "-2");
        assert_eq!(perl_number_text(2.5), "2.5");
        assert_eq!(number_value(3.0), Value::from(3));
        assert_eq!(number_value(0.5), serde_json::json!(0.5));
    }
}
