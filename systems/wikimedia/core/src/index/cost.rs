//! What the index's compiled patterns cost, so the dispatcher can refuse a definition
//! whose patterns would take a subscription, or the whole index, over its memory budget
//! (`max_pattern_memory_per_subscription`, `max_pattern_memory`).
//!
//! The cost is counted in *units*, each charged once however many definitions share it,
//! at the size the regex engine reports for the compiled pattern
//! ([`Pattern::compiled_size`]):
//!
//! - a pattern: compiled once for the process, whoever uses it and on whichever wiki;
//! - a pattern's copy in one wiki's regex set (`sets.rs`), for an anchor pattern without
//!   required literals: each wiki that uses such a pattern compiles it again into its set.
//!
//! The index's total charges each unit once. A subscription is charged every unit its own
//! definitions use, as if it were alone, even when another subscription shares the
//! pattern: what one subscriber may hold never depends on what others do.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Field, Part, anchor_part};
use crate::definition::{Definition, Pattern};
use crate::subscription::{PatternBudget, SubscriptionId};
use crate::wiki::Wiki;

/// One thing that costs memory once, however many definitions use it.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Unit {
    Pattern(Arc<str>),
    Set(Wiki, Field, Arc<str>),
}

/// The units a definition uses, each with its pattern (which names it in errors and
/// gives its size).
fn units(definition: &Definition) -> impl Iterator<Item = (Unit, &Pattern)> {
    let patterns = [definition.page_rx(), definition.user_rx()].into_iter().flatten();
    let set = match anchor_part(definition) {
        Part::PageRx(pattern) if pattern.required_literals().is_none() => Some((Field::Page, pattern)),
        Part::UserRx(pattern) if pattern.required_literals().is_none() => Some((Field::User, pattern)),
        _ => None,
    };
    patterns
        .map(|pattern| (Unit::Pattern(Arc::clone(pattern.source())), pattern))
        .chain(set.map(|(field, pattern)| (Unit::Set(definition.wiki(), field, Arc::clone(pattern.source())), pattern)))
}

/// Units held, with how many definitions hold each, and their bytes.
#[derive(Default)]
struct Held {
    units: HashMap<Unit, u32>,
    bytes: usize,
}

impl Held {
    fn holds(&self, unit: &Unit) -> bool {
        self.units.contains_key(unit)
    }

    fn add(&mut self, unit: Unit, bytes: usize) {
        let count = self.units.entry(unit).or_insert(0);
        if *count == 0 {
            self.bytes += bytes;
        }
        *count += 1;
    }

    fn remove(&mut self, unit: &Unit, bytes: usize) {
        if let Some(count) = self.units.get_mut(unit) {
            *count -= 1;
            if *count == 0 {
                self.units.remove(unit);
                self.bytes -= bytes;
            }
        }
    }
}

/// The index's pattern costs, in total and per subscription.
#[derive(Default)]
pub(super) struct Costs {
    all: Held,
    by_subscription: HashMap<SubscriptionId, Held>,
}

impl Costs {
    /// Counts a definition that was filed.
    pub(super) fn add(&mut self, subscription: SubscriptionId, definition: &Definition) {
        let held = self.by_subscription.entry(subscription).or_default();
        for (unit, pattern) in units(definition) {
            held.add(unit.clone(), pattern.compiled_size());
            self.all.add(unit, pattern.compiled_size());
        }
    }

    /// Uncounts a definition that was taken out.
    pub(super) fn remove(&mut self, subscription: SubscriptionId, definition: &Definition) {
        let Some(held) = self.by_subscription.get_mut(&subscription) else {
            return;
        };
        for (unit, pattern) in units(definition) {
            held.remove(&unit, pattern.compiled_size());
            self.all.remove(&unit, pattern.compiled_size());
        }
        if held.units.is_empty() {
            self.by_subscription.remove(&subscription);
        }
    }

    /// Bytes of every compiled pattern in the index.
    pub(super) fn total(&self) -> usize {
        self.all.bytes
    }

    /// Bytes of the compiled patterns a subscription uses.
    pub(super) fn of(&self, subscription: SubscriptionId) -> usize {
        self.by_subscription.get(&subscription).map_or(0, |held| held.bytes)
    }

    /// Whether adding `definitions` (new to the subscription) keeps it within
    /// `per_subscription` bytes and the index within `overall`; if not, the budget and
    /// the first pattern that would pass it.
    pub(super) fn check<'d>(
        &self,
        subscription: SubscriptionId,
        definitions: impl IntoIterator<Item = &'d Definition>,
        per_subscription: usize,
        overall: usize,
    ) -> Result<(), (PatternBudget, &'d Pattern)> {
        let held = self.by_subscription.get(&subscription);
        let (mut mine, mut all) = (held.map_or(0, |held| held.bytes), self.all.bytes);
        let mut counted = HashSet::new();
        for definition in definitions {
            for (unit, pattern) in units(definition) {
                if counted.contains(&unit) {
                    continue;
                }
                let bytes = pattern.compiled_size();
                if !held.is_some_and(|held| held.holds(&unit)) {
                    mine = mine.saturating_add(bytes);
                    if mine > per_subscription {
                        return Err((PatternBudget::Subscription, pattern));
                    }
                }
                if !self.all.holds(&unit) {
                    all = all.saturating_add(bytes);
                    if all > overall {
                        return Err((PatternBudget::Dispatcher, pattern));
                    }
                }
                counted.insert(unit);
            }
        }
        Ok(())
    }
}
