//! Flotilla's own plugins that decide whether a message goes on: Dedupe and Stale
//! (Drop needs no code of its own).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_core::Message;
use flotilla_core::message::value_text;

use super::{Flow, PluginConfig, required};
use crate::effects::Effects;

/// How many values Dedupe remembers when the rule does not say.
pub const DEFAULT_DEDUPE_ENTRIES: u64 = 100_000;

/// Dedupe: drops a message when another with the same `field` (default `id`) passed
/// less than `window` ago. The window is kept in memory (at most `max_entries` values,
/// default 100 000, oldest forgotten first), so it starts empty when the node
/// restarts. A message without the field passes, with an `errmsg`.
#[derive(Debug)]
pub(crate) struct Dedupe {
    field: String,
    window: Duration,
    seen: Mutex<SeenWindow>,
}

#[derive(Debug)]
struct SeenWindow {
    /// When each value last passed.
    passed: HashMap<String, SystemTime>,
    /// The same, oldest first, for expiry and eviction.
    order: VecDeque<(String, SystemTime)>,
    capacity: usize,
}

impl Dedupe {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<Dedupe> {
        let field = cfg.string("field").unwrap_or_else(|| "id".into());
        let window = cfg.duration("window");
        let capacity = cfg.positive_integer("max_entries").unwrap_or(DEFAULT_DEDUPE_ENTRIES);
        if window.is_none() && !cfg.has("window") {
            cfg.missing("window");
        }
        let window = window?;
        if window.is_zero() {
            cfg.error("window", "'window' must be more than 0".into());
            return None;
        }
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Some(Dedupe {
            field,
            window,
            seen: Mutex::new(SeenWindow { passed: HashMap::new(), order: VecDeque::new(), capacity }),
        })
    }

    pub(crate) fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        let value = value_text(required(message, &self.field)?);
        let now = effects.now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(if seen.admit(&value, now, self.window) { Flow::Keep } else { Flow::Drop })
    }
}

impl SeenWindow {
    /// Whether `value` may pass at `now`; remembers it if so.
    fn admit(&mut self, value: &str, now: SystemTime, window: Duration) -> bool {
        while let Some((oldest, at)) = self.order.front() {
            if now.duration_since(*at).is_ok_and(|age| age >= window) {
                if self.passed.get(oldest) == Some(at) {
                    self.passed.remove(oldest);
                }
                self.order.pop_front();
            } else {
                break;
            }
        }
        if let Some(at) = self.passed.get(value) {
            // A clock that went backwards counts as "just now".
            if now.duration_since(*at).map_or(true, |age| age < window) {
                return false;
            }
        }
        self.passed.insert(value.to_string(), now);
        self.order.push_back((value.to_string(), now));
        while self.order.len() > self.capacity {
            if let Some((oldest, at)) = self.order.pop_front()
                && self.passed.get(&oldest) == Some(&at)
            {
                self.passed.remove(&oldest);
            }
        }
        true
    }
}

/// Stale: drops a message whose `lastupdate` is more than `max_age` ago (gopherbot
/// answers nothing older than 30 s). A message without `lastupdate` passes, with an
/// `errmsg`.
#[derive(Debug)]
pub(crate) struct Stale {
    max_age: Duration,
}

impl Stale {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<Stale> {
        let max_age = cfg.duration("max_age");
        if max_age.is_none() && !cfg.has("max_age") {
            cfg.missing("max_age");
        }
        Some(Stale { max_age: max_age? })
    }

    pub(crate) fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        let Some(generated) = message.lastupdate() else {
            required(message, flotilla_core::message::LASTUPDATE)?;
            return Err("'lastupdate' is not a number of seconds".into());
        };
        let now = effects.now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Ok(if now - generated > self.max_age.as_secs_f64() { Flow::Drop } else { Flow::Keep })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_expires_and_is_bounded() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let window = Duration::from_secs(10);
        let mut seen = SeenWindow { passed: HashMap::new(), order: VecDeque::new(), capacity: 2 };
        assert!(seen.admit("a", t0, window));
        assert!(!seen.admit("a", t0 + Duration::from_secs(9), window), "inside the window");
        assert!(seen.admit("a", t0 + Duration::from_secs(10), window), "the window is measured from the pass");
        assert!(seen.admit("b", t0 + Duration::from_secs(11), window));
        assert!(seen.admit("c", t0 + Duration::from_secs(12), window));
        assert_eq!(seen.order.len(), 2);
        assert_eq!(seen.passed.len(), 2);
        assert!(seen.admit("a", t0 + Duration::from_secs(13), window), "evicted by capacity");
        assert!(!seen.admit("c", t0 + Duration::from_secs(5), window), "a clock going back counts as now");
    }
}
