//! The matching index: which subscriptions want a change, at a cost per change that does
//! not grow with the number of subscriptions.
//!
//! Definitions are grouped by wiki, so a change only ever looks at its own wiki. Within a
//! wiki each definition is filed under one *anchor*, the most selective part it has:
//!
//! | the definition has | filed under | found by |
//! |---|---|---|
//! | an exact page | `pages[page]` | one hash lookup of the change's title |
//! | else an exact user | `users[user]` | one hash lookup of the change's user |
//! | else a page regex | its pattern in the page regex sets | one `RegexSet` pass over the title |
//! | else a user regex | its pattern in the user regex sets | one `RegexSet` pass over the user |
//! | none of these | `everything` | it matches every change on the wiki |
//!
//! The anchor finds candidates; a candidate then passes the cheap flag filter and, only if
//! it has more parts than its anchor (say an exact page *and* a user regex), a check of
//! those parts. So the work per change is a few hash lookups and regex passes plus work
//! proportional to the definitions that actually match.
//!
//! Regex patterns are shared: a pattern used by many definitions is compiled into the
//! sets once. The sets are split into chunks of [`CHUNK`] patterns: a chunk's compiled
//! size stays bounded (every pattern is within [`PATTERN_SIZE_LIMIT`]), and adding or
//! removing a pattern rebuilds only its chunk of its wiki, never the whole index. All
//! other updates (exact pages and users, flags, patterns already present) are plain map
//! edits. A change is reported once per subscription however many of its definitions
//! match. EventStreams canaries match nothing.

use std::collections::HashMap;
use std::sync::Arc;

use regex::{RegexSet, RegexSetBuilder};

use crate::definition::{Definition, Flags, PATTERN_SIZE_LIMIT, Pattern};
use crate::event::Change;
use crate::subscription::SubscriptionId;

/// Patterns per compiled regex set.
pub const CHUNK: usize = 128;

/// Which subscriptions have which definitions, indexed for matching.
#[derive(Default)]
pub struct Index {
    wikis: HashMap<&'static str, WikiIndex>,
    /// Every definition, by a dense id the entries point at; `None` marks a free id.
    stored: Vec<Option<Stored>>,
    free: Vec<u32>,
    by_subscription: HashMap<SubscriptionId, HashMap<Definition, u32>>,
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
}

struct Stored {
    definition: Definition,
    anchor: Anchor,
}

/// Where a definition is filed in its wiki.
#[derive(Clone, Copy)]
enum Anchor {
    Page,
    User,
    PageRx(u32),
    UserRx(u32),
    Everything,
}

/// What the anchor's lists hold: enough to decide most candidates without touching the
/// stored definition.
#[derive(Clone, Copy)]
struct Entry {
    subscription: SubscriptionId,
    id: u32,
    flags: Flags,
    /// The definition has parts beyond its anchor that must be checked.
    check_rest: bool,
}

#[derive(Default)]
struct WikiIndex {
    pages: HashMap<Arc<str>, Vec<Entry>>,
    users: HashMap<Arc<str>, Vec<Entry>>,
    page_patterns: PatternGroup,
    user_patterns: PatternGroup,
    everything: Vec<Entry>,
    definitions: usize,
}

/// Distinct patterns of one wiki and one field, compiled into chunked regex sets.
#[derive(Default)]
struct PatternGroup {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_source: HashMap<Arc<str>, u32>,
    chunks: Vec<Chunk>,
}

struct Slot {
    pattern: Pattern,
    anchored: Vec<Entry>,
    chunk: usize,
    position: usize,
}

#[derive(Default)]
struct Chunk {
    /// Slot ids, in the order of the set's patterns.
    slots: Vec<u32>,
    matcher: ChunkMatcher,
    dirty: bool,
}

#[derive(Default)]
enum ChunkMatcher {
    #[default]
    Empty,
    Set(RegexSet),
    /// The set would not compile within its limit (cannot happen with patterns within
    /// [`PATTERN_SIZE_LIMIT`]); match each pattern on its own rather than fail.
    OneByOne,
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

    /// Adds many subscriptions' definitions at once, compiling each touched wiki's regex
    /// sets once at the end rather than after every subscription: for loading the
    /// stored state at start-up. Returns how many were newly added.
    pub fn insert_all(&mut self, definitions: impl IntoIterator<Item = (SubscriptionId, Definition)>) -> usize {
        let mut touched = Vec::new();
        let mut added = 0;
        for (subscription, definition) in definitions {
            added += usize::from(self.insert_one(subscription, &definition, &mut touched));
        }
        self.rebuild(touched);
        added
    }

    /// Files one definition (its regex sets are rebuilt later); false if it is a
    /// duplicate.
    fn insert_one(
        &mut self,
        subscription: SubscriptionId,
        definition: &Definition,
        touched: &mut Vec<&'static str>,
    ) -> bool {
        let known = self.by_subscription.entry(subscription).or_default();
        if known.contains_key(definition) {
            return false;
        }
        let wiki = definition.wiki().dbname();
        let index = self.wikis.entry(wiki).or_default();
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.stored.push(None);
                u32::try_from(self.stored.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let anchor = index.file(subscription, id, definition);
        self.stored[id as usize] = Some(Stored { definition: definition.clone(), anchor });
        known.insert(definition.clone(), id);
        touched.push(wiki);
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
            let Some(stored) = self.stored.get_mut(id as usize).and_then(Option::take) else {
                continue;
            };
            self.free.push(id);
            let wiki = stored.definition.wiki().dbname();
            if let Some(index) = self.wikis.get_mut(wiki) {
                index.unfile(id, &stored);
                touched.push(wiki);
            }
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
        self.stored.len() - self.free.len()
    }

    /// Whether there are no definitions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many wikis at least one definition watches.
    pub fn watched_wikis(&self) -> usize {
        self.wikis.len()
    }

    /// The subscriptions that want `change`, each once, sorted. Canaries match nothing.
    pub fn matching<'s>(&self, change: &Change<'_>, scratch: &'s mut MatchScratch) -> &'s [SubscriptionId] {
        let found = &mut scratch.found;
        found.clear();
        if change.is_canary() {
            return found;
        }
        let Some(index) = self.wikis.get(change.wiki.as_ref()) else {
            return found;
        };
        let flags = Flags::of_change(change);
        let title = change.title.as_deref().unwrap_or("");
        let user = change.user.as_deref().unwrap_or("");
        let mut consider = |entry: &Entry| {
            if entry.flags.satisfied_by(flags) && (!entry.check_rest || self.rest_matches(entry.id, title, user)) {
                found.push(entry.subscription);
            }
        };
        if let Some(entries) = index.pages.get(title) {
            entries.iter().for_each(&mut consider);
        }
        if let Some(entries) = index.users.get(user) {
            entries.iter().for_each(&mut consider);
        }
        index.page_patterns.for_each_match(title, |slot| slot.anchored.iter().for_each(&mut consider));
        index.user_patterns.for_each_match(user, |slot| slot.anchored.iter().for_each(&mut consider));
        index.everything.iter().for_each(&mut consider);
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Whether the parts of a definition other than its anchor match.
    fn rest_matches(&self, id: u32, title: &str, user: &str) -> bool {
        let Some(Some(stored)) = self.stored.get(id as usize) else {
            return false;
        };
        let definition = &stored.definition;
        let anchor = stored.anchor;
        let page_ok = matches!(anchor, Anchor::Page) || definition.page().is_none_or(|page| **page == *title);
        let user_ok = matches!(anchor, Anchor::User) || definition.user().is_none_or(|wanted| **wanted == *user);
        let page_rx_ok =
            matches!(anchor, Anchor::PageRx(_)) || definition.page_rx().is_none_or(|rx| rx.is_match(title));
        let user_rx_ok = matches!(anchor, Anchor::UserRx(_)) || definition.user_rx().is_none_or(|rx| rx.is_match(user));
        page_ok && user_ok && page_rx_ok && user_rx_ok
    }

    fn rebuild(&mut self, mut wikis: Vec<&'static str>) {
        wikis.sort_unstable();
        wikis.dedup();
        for wiki in wikis {
            let Some(index) = self.wikis.get_mut(wiki) else {
                continue;
            };
            if index.definitions == 0 {
                self.wikis.remove(wiki);
                continue;
            }
            index.page_patterns.rebuild();
            index.user_patterns.rebuild();
        }
    }
}

impl WikiIndex {
    /// Files a new definition under its anchor and returns the anchor.
    fn file(&mut self, subscription: SubscriptionId, id: u32, definition: &Definition) -> Anchor {
        let anchor = if definition.page().is_some() {
            Anchor::Page
        } else if definition.user().is_some() {
            Anchor::User
        } else if let Some(pattern) = definition.page_rx() {
            Anchor::PageRx(self.page_patterns.acquire(pattern))
        } else if let Some(pattern) = definition.user_rx() {
            Anchor::UserRx(self.user_patterns.acquire(pattern))
        } else {
            Anchor::Everything
        };
        let parts = [
            definition.page().is_some(),
            definition.user().is_some(),
            definition.page_rx().is_some(),
            definition.user_rx().is_some(),
        ];
        let entry =
            Entry { subscription, id, flags: definition.flags(), check_rest: parts.iter().filter(|&&p| p).count() > 1 };
        match anchor {
            Anchor::Page => push_keyed(&mut self.pages, definition.page(), entry),
            Anchor::User => push_keyed(&mut self.users, definition.user(), entry),
            Anchor::PageRx(slot) => self.page_patterns.anchor(slot, entry),
            Anchor::UserRx(slot) => self.user_patterns.anchor(slot, entry),
            Anchor::Everything => self.everything.push(entry),
        }
        self.definitions += 1;
        anchor
    }

    /// Takes a definition out of its anchor's list.
    fn unfile(&mut self, id: u32, stored: &Stored) {
        let definition = &stored.definition;
        match stored.anchor {
            Anchor::Page => remove_keyed(&mut self.pages, definition.page(), id),
            Anchor::User => remove_keyed(&mut self.users, definition.user(), id),
            Anchor::PageRx(slot) => self.page_patterns.release(slot, id),
            Anchor::UserRx(slot) => self.user_patterns.release(slot, id),
            Anchor::Everything => remove_entry(&mut self.everything, id),
        }
        self.definitions -= 1;
    }
}

fn push_keyed(map: &mut HashMap<Arc<str>, Vec<Entry>>, key: Option<&Arc<str>>, entry: Entry) {
    if let Some(key) = key {
        map.entry(Arc::clone(key)).or_default().push(entry);
    }
}

fn remove_keyed(map: &mut HashMap<Arc<str>, Vec<Entry>>, key: Option<&Arc<str>>, id: u32) {
    let Some(key) = key else { return };
    if let Some(entries) = map.get_mut(&**key) {
        remove_entry(entries, id);
        if entries.is_empty() {
            map.remove(&**key);
        }
    }
}

fn remove_entry(entries: &mut Vec<Entry>, id: u32) {
    if let Some(position) = entries.iter().position(|e| e.id == id) {
        entries.swap_remove(position);
    }
}

impl PatternGroup {
    /// The slot of a pattern, adding it (and marking its chunk for rebuilding) if new.
    fn acquire(&mut self, pattern: &Pattern) -> u32 {
        if let Some(&slot) = self.by_source.get(&**pattern.source()) {
            return slot;
        }
        let chunk = match self.chunks.iter().position(|c| c.slots.len() < CHUNK) {
            Some(chunk) => chunk,
            None => {
                self.chunks.push(Chunk::default());
                self.chunks.len() - 1
            }
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let target = &mut self.chunks[chunk];
        self.slots[slot as usize] =
            Some(Slot { pattern: pattern.clone(), anchored: Vec::new(), chunk, position: target.slots.len() });
        target.slots.push(slot);
        target.dirty = true;
        self.by_source.insert(Arc::clone(pattern.source()), slot);
        slot
    }

    fn anchor(&mut self, slot: u32, entry: Entry) {
        if let Some(Some(slot)) = self.slots.get_mut(slot as usize) {
            slot.anchored.push(entry);
        }
    }

    /// Takes a definition off a pattern, dropping the pattern when nothing uses it.
    fn release(&mut self, slot_id: u32, id: u32) {
        let Some(Some(slot)) = self.slots.get_mut(slot_id as usize) else {
            return;
        };
        remove_entry(&mut slot.anchored, id);
        if !slot.anchored.is_empty() {
            return;
        }
        let (chunk, position) = (slot.chunk, slot.position);
        self.by_source.remove(&**slot.pattern.source());
        self.slots[slot_id as usize] = None;
        self.free.push(slot_id);
        let target = &mut self.chunks[chunk];
        target.slots.swap_remove(position);
        target.dirty = true;
        if let Some(&moved) = target.slots.get(position)
            && let Some(Some(moved)) = self.slots.get_mut(moved as usize)
        {
            moved.position = position;
        }
    }

    /// Recompiles the chunks whose patterns changed.
    fn rebuild(&mut self) {
        for chunk in self.chunks.iter_mut().filter(|c| c.dirty) {
            chunk.dirty = false;
            let sources = chunk
                .slots
                .iter()
                .filter_map(|&s| self.slots.get(s as usize)?.as_ref())
                .map(|slot| slot.pattern.as_str());
            chunk.matcher = if chunk.slots.is_empty() {
                ChunkMatcher::Empty
            } else {
                match RegexSetBuilder::new(sources).size_limit(CHUNK * PATTERN_SIZE_LIMIT).build() {
                    Ok(set) => ChunkMatcher::Set(set),
                    Err(_) => ChunkMatcher::OneByOne,
                }
            };
        }
    }

    /// Calls `found` for every pattern that matches `text`.
    fn for_each_match(&self, text: &str, mut found: impl FnMut(&Slot)) {
        for chunk in &self.chunks {
            let slot = |position: usize| {
                let id = *chunk.slots.get(position)?;
                self.slots.get(id as usize)?.as_ref()
            };
            match &chunk.matcher {
                ChunkMatcher::Empty => {}
                // Most changes match no pattern: the cheap yes/no pass spares building the
                // list of matching patterns for them.
                ChunkMatcher::Set(set) => {
                    if set.is_match(text) {
                        set.matches(text).iter().filter_map(slot).for_each(&mut found);
                    }
                }
                ChunkMatcher::OneByOne => {
                    (0..chunk.slots.len()).filter_map(slot).filter(|s| s.pattern.is_match(text)).for_each(&mut found)
                }
            }
        }
    }
}
