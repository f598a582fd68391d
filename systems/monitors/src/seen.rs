//! Remembering what a monitor has already reported, as wubot's cache role did: under
//! the cache's `seen` key, each item's id maps to the Unix second it was last seen.
//! An item still present is touched on every check, so only items gone from the source
//! for [`EXPIRE_AFTER`] are forgotten (and would be reported again if they came back).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// How long an item no longer seen is remembered: wubot's seven days.
pub const EXPIRE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

const SEEN: &str = "seen";

/// The `seen` map of a monitor's cache, keyed by item id, with the check's time.
pub struct Seen<'c> {
    items: &'c mut Map<String, Value>,
    now: u64,
}

impl<'c> Seen<'c> {
    /// Opens the `seen` map in `cache` (creating it, or replacing a value that is not a
    /// map, which only a hand-edited cache could hold).
    pub fn new(cache: &'c mut Map<String, Value>, now: SystemTime) -> Seen<'c> {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let entry = cache.entry(SEEN).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(items) = entry else { unreachable!("made an object just above") };
        Seen { items, now }
    }

    /// Marks `id` as seen now; true when it had not been seen before (report it).
    pub fn first_sighting(&mut self, id: &str) -> bool {
        self.items.insert(id.to_string(), Value::from(self.now)).is_none()
    }

    /// Forgets items not seen for [`EXPIRE_AFTER`].
    pub fn expire(&mut self) {
        let cutoff = self.now.saturating_sub(EXPIRE_AFTER.as_secs());
        self.items.retain(|_, last| last.as_u64().is_some_and(|t| t >= cutoff));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn new_items_once_and_expiry_after_a_week_unseen() {
        let mut cache = Map::new();
        let day = 86_400;
        let mut seen = Seen::new(&mut cache, at(10 * day));
        assert!(seen.first_sighting("a"));
        assert!(seen.first_sighting("b"));
        assert!(!seen.first_sighting("a"), "same check, same id");

        // Six days later "a" is still in the source (touched), "b" is gone.
        let mut seen = Seen::new(&mut cache, at(16 * day));
        assert!(!seen.first_sighting("a"));
        seen.expire();
        // Two more days: "b" was last seen 8 days ago and is forgotten; "a" 2 days ago.
        let mut seen = Seen::new(&mut cache, at(18 * day));
        seen.expire();
        assert!(!seen.first_sighting("a"));
        assert!(seen.first_sighting("b"), "forgotten after 7 days, so reported again");
    }

    #[test]
    fn a_broken_seen_value_is_replaced() {
        let mut cache = Map::new();
        cache.insert(SEEN.into(), Value::from("garbage"));
        let mut seen = Seen::new(&mut cache, at(5));
        assert!(seen.first_sighting("x"));
        assert_eq!(cache[SEEN]["x"], Value::from(5));
    }
}
