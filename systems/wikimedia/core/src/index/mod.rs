//! The matching index: which subscriptions want a change, at a cost per change that does
//! not grow with the number of subscriptions.
//!
//! Each definition is filed under one *anchor*, the most selective part it has, and a
//! change looks only under the anchors it can satisfy:
//!
//! | the definition has | filed under | found by |
//! |---|---|---|
//! | an exact page | the exact table, key (page, wiki, title) | one lookup of the change's title |
//! | else an exact user | the exact table, key (user, wiki, name) | one lookup of the change's user |
//! | else a page regex | its pattern (see below) | the title's literals, or a regex-set pass |
//! | else a user regex | its pattern (see below) | the user's literals, or a regex-set pass |
//! | none of these | its wiki's `everything` | it matches every change on the wiki |
//!
//! The anchor finds candidates; a candidate then passes the cheap flag filter and, if it
//! has parts beyond a regex anchor (or an exact anchor, see below), a check of the whole
//! definition. So the work per change is a few lookups and literal and regex passes plus
//! work proportional to the definitions that actually match.
//!
//! The exact table is one flat table for all wikis (`table.rs`) keyed by a 128-bit
//! SipHash-1-3 of (field, wiki, text) under a random key: one half places the entry, the
//! other must match too. Two different texts share both only with probability 2^-128,
//! far below the rate of memory errors, so an entry found under its anchor's key counts
//! as that text without loading the definition; only definitions with parts beyond the
//! anchor are checked against the change. A lookup that finds nothing (most of them) is
//! one slot. Wikis are found the same way, by the hash of their name.
//!
//! With a million definitions most of the index is outside the CPU caches, and a
//! change's lookups are a chain of trips to memory. [`Index::matching_each`] therefore
//! matches a batch in stages, each of which asks for (prefetches) the memory the next
//! reads, with consecutive changes one stage apart; the big tables ask the kernel for
//! huge pages so those trips skip the page-table walk.
//!
//! Regex anchors come in two kinds. A pattern with required literals (most real ones:
//! `^Wikipedia:Articles for creation/`, `Bot$`, `(?i)draft`) goes into the shared literal
//! index (`literals.rs`): one Aho-Corasick pass over the text finds the literals present,
//! and only those patterns run, and only if the change's wiki uses them. A pattern
//! without any (`^\d+$`, `.`) goes into its wiki's regex sets (`sets.rs`). Patterns are
//! deduplicated, and both structures are chunked, so adding or removing a pattern
//! rebuilds one automaton or one regex set, never the whole index. All other updates
//! (exact pages and users, flags, patterns already present) are plain map edits.
//!
//! A change is reported once per subscription however many of its definitions match.
//! EventStreams canaries match nothing.
//!
//! Compiling regex sets and automata is the slow part of a change to the index (a set of
//! 128 large patterns takes seconds). An index told to [`Index::defer_compiling`] does
//! not compile while it is being changed: a chunk whose members changed matches them one
//! by one at once (correct, slower), and its compilation is handed out with
//! [`Index::take_compilation`] to be run elsewhere, off the lock that guards the index,
//! and put in with [`Index::install`]. So neither matching nor any other reader waits
//! for a compiler. What the compiled patterns cost is counted (`cost.rs`) so a
//! subscription's definitions can be refused before they pass a memory budget.

mod bloom;
mod cost;
mod literals;
mod sets;
mod slab;
mod table;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

use crate::definition::{Definition, Flags, Pattern};
use crate::event::Change;
use crate::subscription::{PatternBudget, SubscriptionId};

use self::bloom::KeyFilter;
use self::cost::Costs;
use self::literals::{LiteralJob, LiteralMatcher, LiteralPatterns};
use self::sets::{PatternSets, SetJob, SetMatcher};
use self::slab::{Deferred, Slab};
use self::table::EntryTable;

/// Which subscriptions have which definitions, indexed for matching.
#[derive(Default)]
pub struct Index {
    /// Every watched wiki's index, by the wiki's number here; tables shared by all wikis
    /// key entries by that number. A number is reused only once its wiki has no entries.
    wikis: Slab<WikiIndex>,
    /// Wiki numbers by the 128-bit hash of the wiki's name ([`ExactKeys::wiki`]): a
    /// change's wiki is found without comparing strings the CPU may not have cached,
    /// and its slot can be asked for ahead of time.
    wiki_numbers: EntryTable<u32>,
    /// The key of the 128-bit hash of exact texts and wiki names; random per index, so
    /// clients cannot aim texts at one slot, nor make two texts share a hash.
    keys: ExactKeys,
    /// Exact-page and exact-user anchors of every wiki, by [`ExactKeys::of`].
    exact: EntryTable,
    page_literals: LiteralPatterns,
    user_literals: LiteralPatterns,
    /// Every definition, by a dense id the entries point at.
    stored: Slab<Stored>,
    by_subscription: HashMap<SubscriptionId, HashMap<Definition, u32>>,
    costs: Costs,
    /// Compile later, elsewhere ([`Index::defer_compiling`]).
    deferring: bool,
    /// What waits to be compiled, for [`Index::take_compilation`].
    jobs: Vec<Job>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("wikis", &self.wikis.len()).field("definitions", &self.len()).finish()
    }
}

/// Reusable memory for [`Index::matching`], one per thread that matches.
#[derive(Debug, Default)]
pub struct MatchScratch {
    found: Vec<SubscriptionId>,
    /// The changes in the matching stages, by position modulo [`RING`].
    in_flight: [InFlight; RING],
}

/// Stages of matching a change (see [`Index::matching_each`]).
const STAGES: usize = 5;

/// Changes in flight, at least [`STAGES`]; a power of two, so the ring position is a
/// mask rather than a division.
const RING: usize = 8;

/// What the stages found out about a change so far.
#[derive(Debug, Default)]
struct InFlight {
    /// Nothing can match: a canary, or a wiki nobody watches.
    skip: bool,
    /// Key and check of the wiki's name.
    wiki: (u64, u64),
    number: u32,
    /// Key and check of the title and of the user in the exact table.
    exact: [(u64, u64); 2],
    hits: LiteralHits,
}

/// The literals found in a change's title and user.
#[derive(Debug, Default)]
struct LiteralHits {
    page: Vec<u32>,
    user: Vec<u32>,
}

struct Stored {
    definition: Definition,
    anchor: Anchor,
}

/// Where a definition is filed.
#[derive(Clone, Copy)]
enum Anchor {
    Page,
    User,
    PageRx(Filed),
    UserRx(Filed),
    Everything,
}

/// Where a regex anchor's pattern is.
#[derive(Clone, Copy)]
enum Filed {
    /// In the shared literal index, by pattern slot.
    Literal(u32),
    /// In the wiki's regex sets, by slot.
    Set(u32),
}

/// Which field an exact key is for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Page,
    User,
}

/// The part of a definition it is filed under (see the table in the module docs).
enum Part<'d> {
    Page(&'d str),
    User(&'d str),
    PageRx(&'d Pattern),
    UserRx(&'d Pattern),
    Everything,
}

/// Where a definition is filed: its most selective part.
fn anchor_part(definition: &Definition) -> Part<'_> {
    if let Some(page) = definition.page() {
        Part::Page(page)
    } else if let Some(user) = definition.user() {
        Part::User(user)
    } else if let Some(pattern) = definition.page_rx() {
        Part::PageRx(pattern)
    } else if let Some(pattern) = definition.user_rx() {
        Part::UserRx(pattern)
    } else {
        Part::Everything
    }
}

/// A compilation waiting to run: a regex set of one wiki, or a literal automaton.
enum Job {
    Set { wiki: u32, field: Field, job: SetJob },
    Literals { field: Field, job: LiteralJob },
}

/// A compilation's result, for [`Index::install`].
enum Done {
    Set { wiki: u32, field: Field, deferred: Deferred, matcher: SetMatcher },
    Literals { field: Field, deferred: Deferred, matcher: LiteralMatcher },
}

/// What an index that defers compiling has left to compile ([`Index::take_compilation`]).
/// It owns what it needs, so it runs anywhere, with no lock held.
#[must_use = "an index matches slowly until its compilation is run and installed"]
pub struct Compilation(Vec<Job>);

impl Compilation {
    /// Whether there is nothing to compile.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compiles everything: the slow part, to run where waiting harms no one (a blocking
    /// thread). The result goes to [`Index::install`].
    pub fn run(self) -> Compiled {
        Compiled(
            self.0
                .into_iter()
                .map(|job| match job {
                    Job::Set { wiki, field, job } => {
                        let (deferred, matcher) = job.compile();
                        Done::Set { wiki, field, deferred, matcher }
                    }
                    Job::Literals { field, job } => {
                        let (deferred, matcher) = job.compile();
                        Done::Literals { field, deferred, matcher }
                    }
                })
                .collect(),
        )
    }
}

impl std::fmt::Debug for Compilation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compilation({} chunks)", self.0.len())
    }
}

/// Compiled regex sets and automata, for [`Index::install`].
pub struct Compiled(Vec<Done>);

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compiled({} chunks)", self.0.len())
    }
}

/// What the anchors hold: enough to decide most candidates without touching the stored
/// definition.
#[derive(Clone, Copy, Debug)]
struct Entry {
    subscription: SubscriptionId,
    id: u32,
    flags: Flags,
    /// Check the whole definition against the change before it counts.
    verify: bool,
}

/// What the index keeps per wiki: small, because a change reads it for every lookup.
struct WikiIndex {
    number: u32,
    /// The hash of the wiki's name, its key in `Index::wiki_numbers`.
    key: (u64, u64),
    /// The keys of this wiki's entries in the shared exact and literal tables.
    filter: KeyFilter,
    definitions: usize,
    everything: Vec<Entry>,
    page_sets: Option<Box<PatternSets>>,
    user_sets: Option<Box<PatternSets>>,
}

/// Hashes our own dense `u64` keys (already a keyed hash, or internal numbers) with one
/// multiplication; they are not text a client chooses, and these lookups run for every
/// change.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        // FxHash's odd constant spreads the key over the high bits hashbrown uses for its
        // control bytes.
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds definitions to a subscription; a definition it already has is skipped.
    /// Returns the ones newly added, in the order given.
    pub fn insert(
        &mut self,
        subscription: SubscriptionId,
        definitions: impl IntoIterator<Item = Definition>,
    ) -> Vec<Definition> {
        let mut added = Vec::new();
        let mut touched = Vec::new();
        for definition in definitions {
            if self.insert_one(subscription, &definition, &mut touched) {
                added.push(definition);
            }
        }
        self.rebuild(touched);
        added
    }

    /// Adds many subscriptions' definitions at once, compiling regex sets and automata
    /// once at the end rather than after every subscription: for loading the stored
    /// state at start-up. Returns how many were newly added.
    pub fn insert_all(&mut self, definitions: impl IntoIterator<Item = (SubscriptionId, Definition)>) -> usize {
        let mut touched = Vec::new();
        let mut added = 0;
        for (subscription, definition) in definitions {
            added += usize::from(self.insert_one(subscription, &definition, &mut touched));
        }
        self.rebuild(touched);
        added
    }

    /// Files one definition (regex sets and automata are rebuilt later); false if it is
    /// a duplicate.
    fn insert_one(&mut self, subscription: SubscriptionId, definition: &Definition, touched: &mut Vec<u32>) -> bool {
        let known = self.by_subscription.entry(subscription).or_default();
        if known.contains_key(definition) {
            return false;
        }
        let wiki_key = self.keys.wiki(definition.wiki().dbname());
        let number = match self.wiki_numbers.first(wiki_key.0, wiki_key.1) {
            Some(number) => number,
            None => {
                let number = self.wikis.insert(WikiIndex {
                    number: 0,
                    key: wiki_key,
                    filter: KeyFilter::default(),
                    definitions: 0,
                    everything: Vec::new(),
                    page_sets: None,
                    user_sets: None,
                });
                self.wiki_numbers.insert(wiki_key.0, wiki_key.1, number);
                number
            }
        };
        let Some(index) = self.wikis.get_mut(number) else {
            return false;
        };
        index.number = number;
        index.definitions += 1;
        // The id is known before the anchor: entries point at it.
        let id = self.stored.insert(Stored { definition: definition.clone(), anchor: Anchor::Everything });
        let parts = [
            definition.page().is_some(),
            definition.user().is_some(),
            definition.page_rx().is_some(),
            definition.user_rx().is_some(),
        ];
        let entry =
            Entry { subscription, id, flags: definition.flags(), verify: parts.iter().filter(|&&p| p).count() > 1 };
        let anchor = match anchor_part(definition) {
            Part::Page(page) => {
                let (key, check) = self.keys.of(Field::Page, number, page);
                self.exact.insert(key, check, entry);
                index.filter.add(key);
                Anchor::Page
            }
            Part::User(user) => {
                let (key, check) = self.keys.of(Field::User, number, user);
                self.exact.insert(key, check, entry);
                index.filter.add(key);
                Anchor::User
            }
            Part::PageRx(pattern) => {
                Anchor::PageRx(file_pattern(pattern, entry, index, &mut self.page_literals, Field::Page))
            }
            Part::UserRx(pattern) => {
                Anchor::UserRx(file_pattern(pattern, entry, index, &mut self.user_literals, Field::User))
            }
            Part::Everything => {
                index.everything.push(entry);
                Anchor::Everything
            }
        };
        if let Some(stored) = self.stored.get_mut(id) {
            stored.anchor = anchor;
        }
        known.insert(definition.clone(), id);
        self.costs.add(subscription, definition);
        touched.push(number);
        true
    }

    /// Removes definitions from a subscription; one it does not have is skipped. Returns
    /// the ones removed, in the order given.
    pub fn remove<'d>(
        &mut self,
        subscription: SubscriptionId,
        definitions: impl IntoIterator<Item = &'d Definition>,
    ) -> Vec<Definition> {
        let mut removed = Vec::new();
        let mut touched = Vec::new();
        let Some(known) = self.by_subscription.get_mut(&subscription) else {
            return removed;
        };
        for definition in definitions {
            let Some(id) = known.remove(definition) else {
                continue;
            };
            let Some(stored) = self.stored.remove(id) else {
                continue;
            };
            let (key, check) = self.keys.wiki(stored.definition.wiki().dbname());
            let Some(number) = self.wiki_numbers.first(key, check) else {
                continue;
            };
            let Some(index) = self.wikis.get_mut(number) else {
                continue;
            };
            let definition = &stored.definition;
            match stored.anchor {
                Anchor::Page => {
                    let (key, check) = self.keys.of(Field::Page, number, definition.page().map_or("", |p| p));
                    self.exact.remove(key, check, |e| e.id == id);
                    index.filter.remove(key);
                }
                Anchor::User => {
                    let (key, check) = self.keys.of(Field::User, number, definition.user().map_or("", |u| u));
                    self.exact.remove(key, check, |e| e.id == id);
                    index.filter.remove(key);
                }
                Anchor::PageRx(Filed::Literal(slot)) => {
                    self.page_literals.remove(slot, number, id);
                    index.filter.remove(literals::filter_key(slot, number));
                }
                Anchor::UserRx(Filed::Literal(slot)) => {
                    self.user_literals.remove(slot, number, id);
                    index.filter.remove(literals::filter_key(slot, number));
                }
                Anchor::PageRx(Filed::Set(slot)) => {
                    if let Some(sets) = index.page_sets.as_mut() {
                        sets.remove(slot, id);
                    }
                }
                Anchor::UserRx(Filed::Set(slot)) => {
                    if let Some(sets) = index.user_sets.as_mut() {
                        sets.remove(slot, id);
                    }
                }
                Anchor::Everything => remove_entry(&mut index.everything, id),
            }
            index.definitions -= 1;
            touched.push(number);
            self.costs.remove(subscription, &stored.definition);
            removed.push(stored.definition);
        }
        if known.is_empty() {
            self.by_subscription.remove(&subscription);
        }
        self.rebuild(touched);
        removed
    }

    /// Removes every definition of a subscription and returns them, sorted.
    pub fn remove_subscription(&mut self, subscription: SubscriptionId) -> Vec<Definition> {
        let definitions = self.definitions_of(subscription);
        self.remove(subscription, &definitions);
        definitions
    }

    /// A subscription's definitions, sorted (wiki, page, page regex, user, user regex,
    /// flags) so listings are stable.
    pub fn definitions_of(&self, subscription: SubscriptionId) -> Vec<Definition> {
        let mut definitions: Vec<Definition> =
            self.by_subscription.get(&subscription).map(|known| known.keys().cloned().collect()).unwrap_or_default();
        definitions.sort();
        definitions
    }

    /// How many definitions a subscription has.
    pub fn count_of(&self, subscription: SubscriptionId) -> usize {
        self.by_subscription.get(&subscription).map_or(0, HashMap::len)
    }

    /// Whether a subscription has this definition.
    pub fn contains(&self, subscription: SubscriptionId, definition: &Definition) -> bool {
        self.by_subscription.get(&subscription).is_some_and(|known| known.contains_key(definition))
    }

    /// How many definitions there are in all.
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    /// Whether there are no definitions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many wikis at least one definition watches.
    pub fn watched_wikis(&self) -> usize {
        self.wikis.len()
    }

    /// Bytes of every compiled pattern the index uses, each counted once (see `cost.rs`).
    pub fn pattern_memory(&self) -> usize {
        self.costs.total()
    }

    /// Bytes of the compiled patterns a subscription's definitions use, counted as if
    /// it were alone.
    pub fn pattern_memory_of(&self, subscription: SubscriptionId) -> usize {
        self.costs.of(subscription)
    }

    /// Whether adding `definitions` (ones the subscription does not have yet) keeps its
    /// compiled patterns within `per_subscription` bytes and the index's within
    /// `overall`; if not, which budget the first pattern past it would pass, and that
    /// pattern.
    ///
    /// # Errors
    /// The budget and the pattern.
    pub fn check_pattern_memory<'d>(
        &self,
        subscription: SubscriptionId,
        definitions: impl IntoIterator<Item = &'d Definition>,
        per_subscription: usize,
        overall: usize,
    ) -> Result<(), (PatternBudget, &'d Pattern)> {
        self.costs.check(subscription, definitions, per_subscription, overall)
    }

    /// From now on, changes do not compile regex sets and automata: see the module docs,
    /// [`Index::take_compilation`] and [`Index::install`]. Without this (tests,
    /// benchmarks, loading at start) every change compiles before it returns.
    pub fn defer_compiling(&mut self) {
        self.deferring = true;
    }

    /// What the changes since the last call left to compile. Run it
    /// ([`Compilation::run`]) where waiting harms no one, then [`Index::install`] it;
    /// meanwhile the chunks concerned match one pattern or literal at a time.
    pub fn take_compilation(&mut self) -> Compilation {
        Compilation(std::mem::take(&mut self.jobs))
    }

    /// Puts compiled regex sets and automata in, each unless its chunk changed since it
    /// was handed out (that change's own compilation is then on its way).
    pub fn install(&mut self, compiled: Compiled) {
        for done in compiled.0 {
            match done {
                Done::Set { wiki, field, deferred, matcher } => {
                    let Some(index) = self.wikis.get_mut(wiki) else { continue };
                    let sets = match field {
                        Field::Page => &mut index.page_sets,
                        Field::User => &mut index.user_sets,
                    };
                    if let Some(sets) = sets {
                        sets.install(&deferred, matcher);
                    }
                }
                Done::Literals { field, deferred, matcher } => match field {
                    Field::Page => self.page_literals.install(&deferred, matcher),
                    Field::User => self.user_literals.install(&deferred, matcher),
                },
            }
        }
    }

    /// The subscriptions that want `change`, each once, sorted. Canaries match nothing.
    pub fn matching<'s>(&self, change: &Change<'_>, scratch: &'s mut MatchScratch) -> &'s [SubscriptionId] {
        let MatchScratch { found, in_flight } = scratch;
        let state = &mut in_flight[0];
        self.find_wiki(change, state);
        self.hash_texts(change, state);
        self.scan_texts(change, state);
        self.find_patterns(state);
        self.finish(change, state, found);
        found
    }

    /// [`Index::matching`] for each of `changes` in turn: calls `each` with the change's
    /// position and the subscriptions that want it.
    ///
    /// The same answers as one call per change, faster on a big index. Matching a
    /// change is five stages, each of which asks the CPU for the memory the next one
    /// reads (the wiki's slot; its index and the exact table's slots; the filter words
    /// and literal records; the postings and pattern records), and the changes move
    /// through them like a pipeline: while one change finishes, the next four are one
    /// to four stages behind. So the trips to memory, which with a million definitions
    /// are most of the cost of a change, overlap work instead of stalling it.
    pub fn matching_each(
        &self,
        changes: &[Change<'_>],
        scratch: &mut MatchScratch,
        mut each: impl FnMut(usize, &[SubscriptionId]),
    ) {
        let MatchScratch { found, in_flight } = scratch;
        for step in 0..changes.len() + STAGES - 1 {
            // Stage s works on the change that entered s steps ago.
            let at = |stage: usize| step.checked_sub(stage).filter(|&position| position < changes.len());
            if let Some(position) = at(4) {
                self.finish(&changes[position], &in_flight[position % RING], found);
                each(position, found);
            }
            if let Some(position) = at(3) {
                self.find_patterns(&in_flight[position % RING]);
            }
            if let Some(position) = at(2) {
                self.scan_texts(&changes[position], &mut in_flight[position % RING]);
            }
            if let Some(position) = at(1) {
                self.hash_texts(&changes[position], &mut in_flight[position % RING]);
            }
            if let Some(position) = at(0) {
                self.find_wiki(&changes[position], &mut in_flight[position % RING]);
            }
            // The texts of the change entering next load meanwhile (a batch of parsed
            // changes need not be in the cache either).
            if let Some(next) = changes.get(step + 1) {
                for text in [Some(&next.wiki), next.title.as_ref(), next.user.as_ref()].into_iter().flatten() {
                    if let Some(first) = text.as_bytes().first() {
                        prefetch(first);
                    }
                }
            }
        }
    }

    /// Stage 1: hash the change's wiki name and ask for its slot.
    fn find_wiki(&self, change: &Change<'_>, state: &mut InFlight) {
        state.skip = change.is_canary();
        if !state.skip {
            state.wiki = self.keys.wiki(&change.wiki);
            self.wiki_numbers.prefetch(state.wiki.0);
        }
    }

    /// Stage 2: the wiki's number (nobody watches it: skip), ask for its index; hash
    /// the title and user and ask for their slots in the exact table.
    fn hash_texts(&self, change: &Change<'_>, state: &mut InFlight) {
        if state.skip {
            return;
        }
        let Some(number) = self.wiki_numbers.first(state.wiki.0, state.wiki.1) else {
            state.skip = true;
            return;
        };
        state.number = number;
        self.wikis.prefetch(number);
        let title = change.title.as_deref().unwrap_or("");
        let user = change.user.as_deref().unwrap_or("");
        state.exact = [self.keys.of(Field::Page, number, title), self.keys.of(Field::User, number, user)];
        for (key, _) in state.exact {
            self.exact.prefetch(key);
        }
    }

    /// Stage 3: ask for the filter words of the exact keys; run the literal passes
    /// and ask for the records of the literals found.
    fn scan_texts(&self, change: &Change<'_>, state: &mut InFlight) {
        state.hits.page.clear();
        state.hits.user.clear();
        if state.skip {
            return;
        }
        let Some(index) = self.wikis.get(state.number) else {
            state.skip = true;
            return;
        };
        for (key, _) in state.exact {
            index.filter.prefetch(key);
        }
        self.page_literals.find(change.title.as_deref().unwrap_or(""), &mut state.hits.page);
        self.user_literals.find(change.user.as_deref().unwrap_or(""), &mut state.hits.user);
    }

    /// Stage 4: ask for what the literals found point at: whether the wiki uses their
    /// patterns, the postings, the patterns.
    fn find_patterns(&self, state: &InFlight) {
        if let Some(index) = self.wikis.get(state.number).filter(|_| !state.skip) {
            self.page_literals.prefetch(index.number, &index.filter, &state.hits.page);
            self.user_literals.prefetch(index.number, &index.filter, &state.hits.user);
        }
    }

    /// Stage 5: everything the earlier stages pointed at, into `found` (sorted, each
    /// subscription once).
    fn finish(&self, change: &Change<'_>, state: &InFlight, found: &mut Vec<SubscriptionId>) {
        found.clear();
        let Some(index) = self.wikis.get(state.number).filter(|_| !state.skip) else {
            return;
        };
        let flags = Flags::of_change(change);
        let title = change.title.as_deref().unwrap_or("");
        let user = change.user.as_deref().unwrap_or("");
        let mut consider = |entry: &Entry| {
            if entry.flags.satisfied_by(flags) && (!entry.verify || self.verify(entry.id, title, user)) {
                found.push(entry.subscription);
            }
        };
        let hits = &state.hits;
        for (key, check) in state.exact {
            if index.filter.may_contain(key) {
                self.exact.for_each(key, check, &mut consider);
            }
        }
        self.page_literals.for_each_match(index.number, &index.filter, &hits.page, title, &mut consider);
        self.user_literals.for_each_match(index.number, &index.filter, &hits.user, user, &mut consider);
        if let Some(sets) = &index.page_sets {
            sets.for_each_match(title, |slot| slot.anchored.iter().for_each(&mut consider));
        }
        if let Some(sets) = &index.user_sets {
            sets.for_each_match(user, |slot| slot.anchored.iter().for_each(&mut consider));
        }
        index.everything.iter().for_each(&mut consider);
        found.sort_unstable();
        found.dedup();
    }

    /// Whether a definition matches the change in every part its anchor did not already
    /// establish (a regex anchor establishes its regex; an exact anchor is compared
    /// again, which costs little next to the other parts).
    fn verify(&self, id: u32, title: &str, user: &str) -> bool {
        let Some(stored) = self.stored.get(id) else {
            return false;
        };
        let definition = &stored.definition;
        let page_rx_found = matches!(stored.anchor, Anchor::PageRx(_));
        let user_rx_found = matches!(stored.anchor, Anchor::UserRx(_));
        definition.page().is_none_or(|page| **page == *title)
            && definition.user().is_none_or(|wanted| **wanted == *user)
            && (page_rx_found || definition.page_rx().is_none_or(|rx| rx.is_match(title)))
            && (user_rx_found || definition.user_rx().is_none_or(|rx| rx.is_match(user)))
    }

    fn rebuild(&mut self, mut wikis: Vec<u32>) {
        wikis.sort_unstable();
        wikis.dedup();
        for number in wikis {
            let Some(index) = self.wikis.get_mut(number) else {
                continue;
            };
            if index.definitions == 0 {
                self.wiki_numbers.remove(index.key.0, index.key.1, |_| true);
                self.wikis.remove(number);
                continue;
            }
            for (field, sets) in [(Field::Page, &mut index.page_sets), (Field::User, &mut index.user_sets)] {
                let emptied = sets.as_mut().is_some_and(|present| {
                    if self.deferring {
                        self.jobs.extend(present.defer().into_iter().map(|job| Job::Set { wiki: number, field, job }));
                    } else {
                        present.rebuild();
                    }
                    present.is_empty()
                });
                if emptied {
                    *sets = None;
                }
            }
        }
        if self.deferring {
            for (field, literals) in [(Field::Page, &mut self.page_literals), (Field::User, &mut self.user_literals)] {
                self.jobs.extend(literals.defer().into_iter().map(|job| Job::Literals { field, job }));
            }
        } else {
            self.page_literals.rebuild();
            self.user_literals.rebuild();
        }
    }
}

/// Asks the kernel to back a big table's memory with huge pages, before anything is
/// written to it.
///
/// Why: a lookup in a table of tens of megabytes lands on a random 4 KiB page, and with
/// a million definitions the CPU's address-translation cache covers a small part of
/// them, so most lookups pay a page-table walk on top of the trip to memory (and a
/// prefetch must wait for that walk). With 2 MiB pages a few hundred entries cover
/// everything. It is advice (`MADV_HUGEPAGE`, which transparent huge pages honour in
/// their default `madvise` mode): where the kernel has none to give, nothing changes.
fn huge_pages<T>(table: &Vec<T>) {
    const HUGE_PAGE: usize = 2 << 20;
    let bytes = table.capacity() * std::mem::size_of::<T>();
    if bytes < 2 * HUGE_PAGE {
        return;
    }
    // Only whole huge pages inside the allocation.
    let start = (table.as_ptr() as usize).next_multiple_of(HUGE_PAGE);
    let end = (table.as_ptr() as usize + bytes) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        #[cfg(target_os = "linux")]
        // SAFETY: the range lies inside memory this Vec owns; the advice changes how the
        // kernel backs it, never its contents, and a failure (no THP) is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

/// Asks the CPU to start loading `value`'s cache line (a hint: it never faults and has no
/// effect on the result).
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it reads nothing and cannot fault, and
    // SSE, which provides it, is part of every x86_64 target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(value).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The random key of the exact table's 128-bit hash.
struct ExactKeys(u64, u64);

impl Default for ExactKeys {
    /// A fresh random key: `RandomState` is seeded from the operating system's random
    /// source, and its keyed hash of a constant is as unpredictable as its key.
    fn default() -> ExactKeys {
        ExactKeys(RandomState::new().hash_one(0u8), RandomState::new().hash_one(1u8))
    }
}

impl ExactKeys {
    /// The key and check of a wiki's name in `Index::wiki_numbers`.
    fn wiki(&self, name: &str) -> (u64, u64) {
        // Tag 2 is neither a page (0) nor a user (1) of any wiki.
        self.hash(2, name)
    }

    /// The exact table's key and check for `text` in `field` on wiki number `wiki`: the
    /// two halves of one 128-bit SipHash (one pass over the text for both).
    fn of(&self, field: Field, wiki: u32, text: &str) -> (u64, u64) {
        self.hash(u64::from(wiki) << 2 | field as u64, text)
    }

    /// The two halves of the 128-bit hash of (`tag`, `text`).
    fn hash(&self, tag: u64, text: &str) -> (u64, u64) {
        use siphasher::sip128::Hasher128;
        let mut hasher = siphasher::sip128::SipHasher13::new_with_keys(self.0, self.1);
        hasher.write_u64(tag);
        hasher.write(text.as_bytes());
        hasher.finish128().as_u64()
    }
}

/// Files a regex anchor of `field`: in the shared literal index if the pattern has
/// required literals, else in the wiki's regex sets (made on first use).
fn file_pattern(
    pattern: &Pattern,
    entry: Entry,
    index: &mut WikiIndex,
    literals: &mut LiteralPatterns,
    field: Field,
) -> Filed {
    match pattern.required_literals() {
        Some(required) => {
            let slot = literals.add(pattern, required, index.number, entry);
            index.filter.add(literals::filter_key(slot, index.number));
            Filed::Literal(slot)
        }
        None => {
            let sets = match field {
                Field::Page => &mut index.page_sets,
                Field::User => &mut index.user_sets,
            };
            Filed::Set(sets.get_or_insert_default().add(pattern, entry))
        }
    }
}

fn remove_entry(entries: &mut Vec<Entry>, id: u32) {
    if let Some(position) = entries.iter().position(|e| e.id == id) {
        entries.swap_remove(position);
    }
}
