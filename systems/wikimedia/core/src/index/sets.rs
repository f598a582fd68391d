//! One wiki's patterns that have no required literal to prefilter on (`^\d+$`,
//! `(?i)talk`, `.`): compiled into regex sets of at most [`SET_CHUNK`] patterns, so one
//! pass over a title finds all that match. Adding or removing a pattern recompiles only
//! its chunk; until a deferred recompilation is put in, the chunk matches its patterns
//! one by one.

use std::collections::HashMap;
use std::sync::Arc;

use regex::{RegexSet, RegexSetBuilder};

use super::Entry;
use super::slab::{Chunks, Deferred, Place, Slab};
use crate::definition::{PATTERN_SIZE_LIMIT, Pattern};

/// Patterns per compiled regex set.
pub(super) const SET_CHUNK: usize = 128;

pub(super) struct PatternSets {
    slots: Slab<Slot>,
    by_source: HashMap<Arc<str>, u32>,
    chunks: Chunks<SetMatcher>,
}

impl Default for PatternSets {
    fn default() -> PatternSets {
        PatternSets { slots: Slab::default(), by_source: HashMap::new(), chunks: Chunks::new(SET_CHUNK) }
    }
}

pub(super) struct Slot {
    pattern: Pattern,
    pub(super) anchored: Vec<Entry>,
    place: Place,
}

#[derive(Default)]
pub(super) enum SetMatcher {
    #[default]
    Empty,
    Set(RegexSet),
    /// Each pattern on its own: while the set is being compiled elsewhere, or if it
    /// would not compile within its limit (cannot happen with patterns within
    /// [`PATTERN_SIZE_LIMIT`]).
    OneByOne,
}

/// A chunk's regex set to compile off the index's lock.
pub(super) struct SetJob {
    deferred: Deferred,
    patterns: Vec<Pattern>,
}

impl SetJob {
    /// Compiles the set (the slow part: up to [`SET_CHUNK`] patterns into one program).
    pub(super) fn compile(self) -> (Deferred, SetMatcher) {
        let matcher = compile(self.patterns.iter());
        (self.deferred, matcher)
    }
}

/// The patterns of a chunk's `members`, in order.
fn patterns<'s>(slots: &'s Slab<Slot>, members: &'s [u32]) -> impl Iterator<Item = &'s Pattern> {
    members.iter().filter_map(|&s| slots.get(s)).map(|slot| &slot.pattern)
}

/// A chunk's patterns, in member order, as one regex set.
fn compile<'p>(patterns: impl Iterator<Item = &'p Pattern>) -> SetMatcher {
    let mut sources = patterns.map(Pattern::as_str).peekable();
    if sources.peek().is_none() {
        return SetMatcher::Empty;
    }
    match RegexSetBuilder::new(sources).size_limit(SET_CHUNK * PATTERN_SIZE_LIMIT).build() {
        Ok(set) => SetMatcher::Set(set),
        Err(_) => SetMatcher::OneByOne,
    }
}

impl PatternSets {
    /// Files `entry` under `pattern`, adding the pattern if new; returns its slot.
    pub(super) fn add(&mut self, pattern: &Pattern, entry: Entry) -> u32 {
        let slot = match self.by_source.get(&**pattern.source()) {
            Some(&slot) => slot,
            None => {
                let place = Place { chunk: 0, position: 0 };
                let slot = self.slots.insert(Slot { pattern: pattern.clone(), anchored: Vec::new(), place });
                let place = self.chunks.add(slot);
                if let Some(added) = self.slots.get_mut(slot) {
                    added.place = place;
                }
                self.by_source.insert(Arc::clone(pattern.source()), slot);
                slot
            }
        };
        if let Some(slot) = self.slots.get_mut(slot) {
            slot.anchored.push(entry);
        }
        slot
    }

    /// Takes definition `id` off the pattern in `slot`, dropping the pattern when nothing
    /// uses it any more.
    pub(super) fn remove(&mut self, slot: u32, id: u32) {
        let Some(filed) = self.slots.get_mut(slot) else {
            return;
        };
        super::remove_entry(&mut filed.anchored, id);
        if !filed.anchored.is_empty() {
            return;
        }
        let place = filed.place;
        if let Some(gone) = self.slots.remove(slot) {
            self.by_source.remove(&**gone.pattern.source());
        }
        if let Some(moved) = self.chunks.remove(place)
            && let Some(moved) = self.slots.get_mut(moved)
        {
            moved.place = place;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.len() == 0
    }

    /// Recompiles the chunks whose patterns changed.
    pub(super) fn rebuild(&mut self) {
        let slots = &self.slots;
        self.chunks.recompile(|members| compile(patterns(slots, members)));
    }

    /// Lets the chunks whose patterns changed match one by one, and returns their sets
    /// to compile elsewhere ([`PatternSets::install`]).
    pub(super) fn defer(&mut self) -> Vec<SetJob> {
        let deferred =
            self.chunks.defer(|members| if members.is_empty() { SetMatcher::Empty } else { SetMatcher::OneByOne });
        deferred
            .into_iter()
            .map(|deferred| SetJob { patterns: patterns(&self.slots, &deferred.members).cloned().collect(), deferred })
            .collect()
    }

    /// Puts in a set compiled for [`PatternSets::defer`].
    pub(super) fn install(&mut self, deferred: &Deferred, matcher: SetMatcher) {
        self.chunks.install(deferred.chunk, deferred.generation, matcher);
    }

    /// Calls `found` for every pattern that matches `text`.
    pub(super) fn for_each_match(&self, text: &str, mut found: impl FnMut(&Slot)) {
        for chunk in self.chunks.iter() {
            let slot = |position: usize| self.slots.get(*chunk.members.get(position)?);
            match &chunk.matcher {
                SetMatcher::Empty => {}
                // Most texts match no pattern: the cheap yes/no pass spares building the
                // list of matching patterns for them.
                SetMatcher::Set(set) => {
                    if set.is_match(text) {
                        set.matches(text).iter().filter_map(slot).for_each(&mut found);
                    }
                }
                SetMatcher::OneByOne => {
                    (0..chunk.members.len()).filter_map(slot).filter(|s| s.pattern.is_match(text)).for_each(&mut found)
                }
            }
        }
    }
}
