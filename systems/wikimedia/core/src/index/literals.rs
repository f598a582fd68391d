//! Patterns with required literals (`^Talk:Topic/` needs `Talk:Topic/`, `^Bot\d+$` needs
//! `Bot`, `^(?:Script|Tool)5$` needs `Script5` or `Tool5`), shared by all wikis. This is what keeps regexes cheap at scale: one
//! Aho-Corasick pass over a title finds the literals it contains, and only patterns whose
//! literal occurs *and* that some definition on the change's wiki uses are run. The
//! automaton is shared by every change, so it stays in the CPU caches, where a separate
//! regex set per wiki would be cold for most changes once there are many wikis with many
//! patterns.
//!
//! Patterns are deduplicated by source across wikis, literals by bytes across patterns.
//! Literals are compiled into automata of at most [`LITERAL_CHUNK`] literals, so adding
//! or removing one rebuilds one chunk; until a deferred rebuild is put in, the chunk
//! looks for each of its literals on its own.

use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::AhoCorasick;

use super::Entry;
use super::bloom::{KeyFilter, mix};
use super::slab::{Chunks, Deferred, Place, Slab};
use super::table::EntryTable;
use crate::definition::Pattern;

/// Literals per automaton.
pub(super) const LITERAL_CHUNK: usize = 4096;

pub(super) struct LiteralPatterns {
    patterns: Slab<Shared>,
    by_source: HashMap<Arc<str>, u32>,
    literals: Slab<Literal>,
    by_bytes: HashMap<Arc<[u8]>, u32>,
    chunks: Chunks<LiteralMatcher>,
    /// The entries filed under a pattern on one wiki, by [`filter_key`] and
    /// [`posting_key`].
    postings: EntryTable,
}

/// The postings key of pattern `slot` on wiki number `wiki`.
fn posting_key(slot: u32, wiki: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(wiki)
}

/// The key under which a wiki's [`KeyFilter`] records that it uses pattern `slot`.
pub(super) fn filter_key(slot: u32, wiki: u32) -> u64 {
    mix(posting_key(slot, wiki))
}

impl Default for LiteralPatterns {
    fn default() -> LiteralPatterns {
        LiteralPatterns {
            patterns: Slab::default(),
            by_source: HashMap::new(),
            literals: Slab::default(),
            by_bytes: HashMap::new(),
            chunks: Chunks::new(LITERAL_CHUNK),
            postings: EntryTable::default(),
        }
    }
}

struct Shared {
    pattern: Pattern,
    literals: Vec<u32>,
    /// How many wikis have entries under this pattern.
    wikis: u32,
}

struct Literal {
    bytes: Arc<[u8]>,
    /// The patterns that require this literal (or another of theirs).
    patterns: Patterns,
    place: Place,
}

/// Pattern slots, the first kept inline: most literals belong to one pattern, and a
/// separate allocation would cost a cache miss on every hit.
#[derive(Default)]
struct Patterns {
    first: Option<u32>,
    rest: Vec<u32>,
}

impl Patterns {
    fn push(&mut self, slot: u32) {
        match self.first {
            None => self.first = Some(slot),
            Some(_) => self.rest.push(slot),
        }
    }

    fn remove(&mut self, slot: u32) {
        self.rest.retain(|&p| p != slot);
        if self.first == Some(slot) {
            self.first = self.rest.pop();
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.first.into_iter().chain(self.rest.iter().copied())
    }
}

#[derive(Default)]
pub(super) enum LiteralMatcher {
    #[default]
    Empty,
    Automaton(AhoCorasick),
    /// Each literal on its own: while the automaton is being built elsewhere, or if it
    /// could not be built (it cannot fail at this size).
    Scan,
}

/// A chunk's automaton to build off the index's lock.
pub(super) struct LiteralJob {
    deferred: Deferred,
    literals: Vec<Arc<[u8]>>,
}

impl LiteralJob {
    /// Builds the automaton.
    pub(super) fn compile(self) -> (Deferred, LiteralMatcher) {
        let matcher = compile(self.literals.iter().map(|bytes| &bytes[..]));
        (self.deferred, matcher)
    }
}

/// A chunk's literals, in member order, as one automaton.
fn compile<'l>(literals: impl Iterator<Item = &'l [u8]>) -> LiteralMatcher {
    let mut literals = literals.peekable();
    if literals.peek().is_none() {
        return LiteralMatcher::Empty;
    }
    match AhoCorasick::new(literals) {
        Ok(automaton) => LiteralMatcher::Automaton(automaton),
        Err(_) => LiteralMatcher::Scan,
    }
}

/// The literals of a chunk's `members`, in order.
fn bytes_of<'s>(literals: &'s Slab<Literal>, members: &'s [u32]) -> impl Iterator<Item = &'s Arc<[u8]>> {
    members.iter().filter_map(|&l| literals.get(l)).map(|literal| &literal.bytes)
}

impl LiteralPatterns {
    /// Files `entry` under `pattern` (one of whose `literals` every match contains) on
    /// wiki number `wiki`; returns the pattern's slot.
    pub(super) fn add(&mut self, pattern: &Pattern, literals: &[Box<[u8]>], wiki: u32, entry: Entry) -> u32 {
        let slot = match self.by_source.get(&**pattern.source()) {
            Some(&slot) => slot,
            None => {
                let slot = self.patterns.insert(Shared { pattern: pattern.clone(), literals: Vec::new(), wikis: 0 });
                let literals: Vec<u32> = literals.iter().map(|bytes| self.literal_slot(bytes)).collect();
                for &literal in &literals {
                    if let Some(literal) = self.literals.get_mut(literal) {
                        literal.patterns.push(slot);
                    }
                }
                if let Some(shared) = self.patterns.get_mut(slot) {
                    shared.literals = literals;
                }
                self.by_source.insert(Arc::clone(pattern.source()), slot);
                slot
            }
        };
        let (key, check) = (filter_key(slot, wiki), posting_key(slot, wiki));
        if !self.postings.contains(key, check)
            && let Some(shared) = self.patterns.get_mut(slot)
        {
            shared.wikis += 1;
        }
        self.postings.insert(key, check, entry);
        slot
    }

    fn literal_slot(&mut self, bytes: &[u8]) -> u32 {
        if let Some(&literal) = self.by_bytes.get(bytes) {
            return literal;
        }
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let placeholder = Place { chunk: 0, position: 0 };
        let literal = self.literals.insert(Literal {
            bytes: Arc::clone(&bytes),
            patterns: Patterns::default(),
            place: placeholder,
        });
        let place = self.chunks.add(literal);
        if let Some(added) = self.literals.get_mut(literal) {
            added.place = place;
        }
        self.by_bytes.insert(bytes, literal);
        literal
    }

    /// Takes definition `id` off pattern `slot` on wiki number `wiki`, dropping the
    /// pattern and its literal when nothing uses them any more.
    pub(super) fn remove(&mut self, slot: u32, wiki: u32, id: u32) {
        let (key, check) = (filter_key(slot, wiki), posting_key(slot, wiki));
        if !self.postings.remove(key, check, |e| e.id == id) || self.postings.contains(key, check) {
            return;
        }
        let Some(shared) = self.patterns.get_mut(slot) else {
            return;
        };
        shared.wikis -= 1;
        if shared.wikis > 0 {
            return;
        }
        let Some(gone) = self.patterns.remove(slot) else {
            return;
        };
        self.by_source.remove(&**gone.pattern.source());
        for literal in gone.literals {
            self.release_literal(literal, slot);
        }
    }

    /// Takes pattern `slot` off a literal, dropping the literal when no pattern needs it.
    fn release_literal(&mut self, literal: u32, slot: u32) {
        let Some(used) = self.literals.get_mut(literal) else {
            return;
        };
        used.patterns.remove(slot);
        if !used.patterns.is_empty() {
            return;
        }
        let place = used.place;
        if let Some(gone) = self.literals.remove(literal) {
            self.by_bytes.remove(&gone.bytes);
        }
        if let Some(moved) = self.chunks.remove(place)
            && let Some(moved) = self.literals.get_mut(moved)
        {
            moved.place = place;
        }
    }

    /// Rebuilds the automata whose literals changed.
    pub(super) fn rebuild(&mut self) {
        let literals = &self.literals;
        self.chunks.recompile(|members| compile(bytes_of(literals, members).map(|bytes| &bytes[..])));
    }

    /// Lets the chunks whose literals changed scan for each literal, and returns their
    /// automata to build elsewhere ([`LiteralPatterns::install`]).
    pub(super) fn defer(&mut self) -> Vec<LiteralJob> {
        let deferred =
            self.chunks.defer(|members| if members.is_empty() { LiteralMatcher::Empty } else { LiteralMatcher::Scan });
        deferred
            .into_iter()
            .map(|deferred| LiteralJob {
                literals: bytes_of(&self.literals, &deferred.members).cloned().collect(),
                deferred,
            })
            .collect()
    }

    /// Puts in an automaton built for [`LiteralPatterns::defer`].
    pub(super) fn install(&mut self, deferred: &Deferred, matcher: LiteralMatcher) {
        self.chunks.install(deferred.chunk, deferred.generation, matcher);
    }

    /// Finds the literals that occur in `text` (each once) into `hits`, and asks the CPU
    /// to start loading their records (see [`super::Index::matching_each`]).
    pub(super) fn find(&self, text: &str, hits: &mut Vec<u32>) {
        hits.clear();
        for chunk in self.chunks.iter() {
            match &chunk.matcher {
                LiteralMatcher::Empty => {}
                LiteralMatcher::Automaton(automaton) => {
                    for hit in automaton.find_overlapping_iter(text) {
                        if let Some(&literal) = chunk.members.get(hit.pattern().as_usize()) {
                            hits.push(literal);
                        }
                    }
                }
                LiteralMatcher::Scan => hits.extend(chunk.members.iter().copied().filter(|&literal| {
                    self.literals
                        .get(literal)
                        .is_some_and(|l| text.as_bytes().windows(l.bytes.len()).any(|w| w == &l.bytes[..]))
                })),
            }
        }
        // A literal can occur several times in one text; its patterns run once.
        hits.sort_unstable();
        hits.dedup();
        hits.iter().for_each(|&literal| self.literals.prefetch(literal));
    }

    /// Asks the CPU to start loading what [`LiteralPatterns::for_each_match`] will read
    /// for these literal `hits` on wiki number `wiki`.
    pub(super) fn prefetch(&self, wiki: u32, filter: &KeyFilter, hits: &[u32]) {
        for slot in hits.iter().filter_map(|&l| self.literals.get(l)).flat_map(|l| l.patterns.iter()) {
            let key = filter_key(slot, wiki);
            filter.prefetch(key);
            self.postings.prefetch(key);
            self.patterns.prefetch(slot);
        }
    }

    /// Calls `found` with the entries of every pattern that needs one of the literals
    /// `hits` found in `text` ([`LiteralPatterns::find`]), matches `text`, and has
    /// entries on wiki number `wiki`, whose filter is `filter`.
    pub(super) fn for_each_match(
        &self,
        wiki: u32,
        filter: &KeyFilter,
        hits: &[u32],
        text: &str,
        mut found: impl FnMut(&Entry),
    ) {
        for slot in hits.iter().filter_map(|&l| self.literals.get(l)).flat_map(|l| l.patterns.iter()) {
            let (key, check) = (filter_key(slot, wiki), posting_key(slot, wiki));
            if filter.may_contain(key)
                && self.postings.contains(key, check)
                && let Some(shared) = self.patterns.get(slot)
                && shared.pattern.is_match(text)
            {
                self.postings.for_each(key, check, &mut found);
            }
        }
    }
}
