//! The flat table behind the index's anchors (and its wiki numbers): values filed under
//! a 128-bit key (a 64-bit `key` that places them and a 64-bit `check` that must match
//! too), in one open-addressed array.
//!
//! Why not a `HashMap<u64, Vec<Entry>>`: with a million definitions the table is far
//! larger than the CPU caches, and every lookup of a map of vectors is a chain of
//! dependent trips to memory (control bytes, bucket, the vector's heap block). Here a
//! key's first entry sits in its slot, so a lookup is one trip, and [`EntryTable::prefetch`]
//! can start that trip early, while the matcher does other work on the change. Keys with
//! more than one entry (a page many subscriptions watch) keep the rest in an overflow
//! list, so a popular key never makes a long run of slots for other keys to step over.
//!
//! Linear probing with the table at most half full; removal shifts later slots back
//! rather than leaving tombstones, so lookups never slow down with churn.

use super::slab::Slab;
use super::{Entry, prefetch};

/// Slots in a new table.
const MIN_SLOTS: usize = 16;

pub(super) struct EntryTable<V = Entry> {
    slots: Vec<Option<Slot<V>>>,
    /// Occupied slots (distinct keys).
    keys: usize,
    /// Values beyond each key's first, for keys that have several.
    overflow: Slab<Vec<V>>,
}

impl<V> Default for EntryTable<V> {
    fn default() -> EntryTable<V> {
        EntryTable { slots: Vec::new(), keys: 0, overflow: Slab::default() }
    }
}

#[derive(Clone, Copy)]
struct Slot<V> {
    key: u64,
    check: u64,
    first: V,
    /// The overflow list with this key's further entries.
    more: Option<u32>,
}

impl<V: Copy> EntryTable<V> {
    /// Asks the CPU to start loading where `key`'s entries would be: its home slot and
    /// the next cache line, which a probe often reaches (slots are 40 bytes).
    pub(super) fn prefetch(&self, key: u64) {
        let home = self.home(key);
        if let Some(slot) = self.slots.get(home) {
            prefetch(slot);
        }
        if let Some(next) = self.slots.get(home + 2) {
            prefetch(next);
        }
    }

    /// The first value filed under (`key`, `check`).
    pub(super) fn first(&self, key: u64, check: u64) -> Option<V> {
        self.find(key, check).and_then(|at| self.slots[at].as_ref()).map(|slot| slot.first)
    }

    /// Calls `found` with every value filed under (`key`, `check`).
    pub(super) fn for_each(&self, key: u64, check: u64, mut found: impl FnMut(&V)) {
        let Some(slot) = self.find(key, check).and_then(|at| self.slots[at].as_ref()) else {
            return;
        };
        found(&slot.first);
        if let Some(more) = slot.more.and_then(|list| self.overflow.get(list)) {
            more.iter().for_each(found);
        }
    }

    /// Whether any entry is filed under (`key`, `check`).
    pub(super) fn contains(&self, key: u64, check: u64) -> bool {
        self.find(key, check).is_some()
    }

    /// Files `entry` under (`key`, `check`).
    pub(super) fn insert(&mut self, key: u64, check: u64, entry: V) {
        if let Some(slot) = self.find(key, check).and_then(|at| self.slots[at].as_mut()) {
            match slot.more.and_then(|list| self.overflow.get_mut(list)) {
                Some(more) => more.push(entry),
                None => slot.more = Some(self.overflow.insert(vec![entry])),
            }
            return;
        }
        if (self.keys + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        while self.slots[at].is_some() {
            at = (at + 1) & mask;
        }
        self.slots[at] = Some(Slot { key, check, first: entry, more: None });
        self.keys += 1;
    }

    /// Takes one value that is `wanted` off (`key`, `check`); false if there was none.
    pub(super) fn remove(&mut self, key: u64, check: u64, wanted: impl Fn(&V) -> bool) -> bool {
        let Some(at) = self.find(key, check) else {
            return false;
        };
        let Some(slot) = self.slots[at].as_mut() else {
            return false;
        };
        let list = slot.more;
        let more = list.and_then(|list| self.overflow.get_mut(list));
        if wanted(&slot.first) {
            match more.and_then(Vec::pop) {
                Some(next) => slot.first = next,
                None => {
                    self.vacate(at);
                    return true;
                }
            }
        } else {
            let Some(more) = more else {
                return false;
            };
            let Some(position) = more.iter().position(wanted) else {
                return false;
            };
            more.swap_remove(position);
        }
        if let Some(list) = list
            && self.overflow.get(list).is_some_and(Vec::is_empty)
        {
            self.overflow.remove(list);
            if let Some(slot) = self.slots[at].as_mut() {
                slot.more = None;
            }
        }
        true
    }

    /// Keys with at least one entry.
    #[cfg(test)]
    pub(super) fn keys(&self) -> usize {
        self.keys
    }

    fn home(&self, key: u64) -> usize {
        // The low bits of a key also pick bits in the wikis' filters; the slot comes
        // from other bits so the two stay independent.
        (key.rotate_left(23) as usize) & self.slots.len().wrapping_sub(1)
    }

    fn find(&self, key: u64, check: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        while let Some(slot) = &self.slots[at] {
            if slot.key == key && slot.check == check {
                return Some(at);
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Empties slot `hole` and shifts back the slots after it that probed past it.
    fn vacate(&mut self, mut hole: usize) {
        let mask = self.slots.len() - 1;
        self.slots[hole] = None;
        self.keys -= 1;
        let mut at = (hole + 1) & mask;
        while let Some(slot) = &self.slots[at] {
            // The slot may move into the hole if its home is not after the hole (in
            // probe order), i.e. it is at least as far from home as the hole is.
            let home = self.home(slot.key);
            if at.wrapping_sub(home) & mask >= at.wrapping_sub(hole) & mask {
                self.slots[hole] = self.slots[at].take();
                hole = at;
            }
            at = (at + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let mut slots = Vec::with_capacity(size);
        super::huge_pages(&slots);
        slots.resize(size, None);
        let old = std::mem::replace(&mut self.slots, slots);
        let mask = size - 1;
        for slot in old.into_iter().flatten() {
            let mut at = self.home(slot.key);
            while self.slots[at].is_some() {
                at = (at + 1) & mask;
            }
            self.slots[at] = Some(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::Flags;
    use crate::subscription::SubscriptionId;

    fn entry(id: u32) -> Entry {
        Entry { subscription: SubscriptionId::from_raw(u64::from(id)), id, flags: Flags::default(), verify: false }
    }

    fn ids(table: &EntryTable, key: u64, check: u64) -> Vec<u32> {
        let mut ids = Vec::new();
        table.for_each(key, check, |e| ids.push(e.id));
        ids.sort_unstable();
        ids
    }

    /// Against a plain map, with keys that collide on their home slot on purpose, so
    /// probing, overflow lists and back-shifting removal all run.
    #[test]
    fn behaves_like_a_map_of_lists_through_inserts_and_removals() {
        let mut table: EntryTable = EntryTable::default();
        let mut model: std::collections::BTreeMap<(u64, u64), Vec<u32>> = Default::default();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..20_000u32 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Few distinct homes (the rotation puts bits 41.. into the slot index), and
            // the same key with two checks.
            let key = (rng % 64) << 41 | (rng % 3);
            let check = rng % 2;
            let present = model.get(&(key, check)).cloned().unwrap_or_default();
            if rng % 5 < 2 && !present.is_empty() {
                let id = present[(rng as usize / 7) % present.len()];
                assert!(table.remove(key, check, |e| e.id == id));
                let list = model.get_mut(&(key, check)).expect("present");
                list.retain(|&i| i != id);
                if list.is_empty() {
                    model.remove(&(key, check));
                }
            } else {
                table.insert(key, check, entry(step));
                model.entry((key, check)).or_default().push(step);
            }
            assert!(!table.remove(key, check, |e| e.id == u32::MAX));
        }
        assert_eq!(table.keys(), model.len());
        for key in 0..64u64 {
            for low in 0..3 {
                for check in 0..2 {
                    let key = key << 41 | low;
                    let mut want = model.get(&(key, check)).cloned().unwrap_or_default();
                    want.sort_unstable();
                    assert_eq!(ids(&table, key, check), want, "key {key:#x} check {check}");
                }
            }
        }
    }

    #[test]
    fn a_key_with_another_check_is_another_key() {
        let mut table: EntryTable = EntryTable::default();
        table.insert(7, 1, entry(1));
        assert_eq!(ids(&table, 7, 1), [1]);
        assert!(ids(&table, 7, 2).is_empty());
        assert!(!table.remove(7, 2, |e| e.id == 1));
        assert!(table.remove(7, 1, |e| e.id == 1));
        assert!(ids(&table, 7, 1).is_empty());
        assert_eq!(table.keys(), 0);
    }
}
