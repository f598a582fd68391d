//! Two pieces of bookkeeping the index uses several times: a slab (values under dense
//! `u32` ids that stay put while other values come and go) and chunks (ids grouped into
//! bounded runs, each compiled into one matcher and recompiled only when its members
//! change, either at once or later, off the index's lock: see [`Chunks::defer`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Values under dense ids; removed ids are reused.
#[derive(Debug)]
pub(super) struct Slab<T> {
    values: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Slab<T> {
        Slab { values: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    pub(super) fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.values[id as usize] = Some(value);
                id
            }
            None => {
                self.values.push(Some(value));
                // More than 4 billion live values would not fit in memory first.
                u32::try_from(self.values.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    pub(super) fn remove(&mut self, id: u32) -> Option<T> {
        let value = self.values.get_mut(id as usize)?.take()?;
        self.free.push(id);
        Some(value)
    }

    pub(super) fn get(&self, id: u32) -> Option<&T> {
        self.values.get(id as usize)?.as_ref()
    }

    /// Asks the CPU to start loading value `id`.
    pub(super) fn prefetch(&self, id: u32) {
        if let Some(value) = self.values.get(id as usize) {
            super::prefetch(value);
        }
    }

    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.values.get_mut(id as usize)?.as_mut()
    }

    pub(super) fn len(&self) -> usize {
        self.values.len() - self.free.len()
    }
}

/// Ids grouped into chunks of at most `capacity`, each with a compiled matcher `M`.
#[derive(Debug)]
pub(super) struct Chunks<M> {
    capacity: usize,
    chunks: Vec<Chunk<M>>,
}

#[derive(Debug)]
pub(super) struct Chunk<M> {
    /// Member ids, in the order the matcher was compiled from.
    pub(super) members: Vec<u32>,
    pub(super) matcher: M,
    dirty: bool,
    /// Which deferred compilation the chunk waits for ([`Chunks::defer`]).
    generation: u64,
}

/// Deferred compilations, numbered across the process so that a result never lands
/// in a chunk it was not made for, even one that reuses the place of a dropped one.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// What a deferred chunk needs compiled: its members, in order, for [`Chunks::install`].
#[derive(Debug)]
pub(super) struct Deferred {
    pub(super) chunk: usize,
    pub(super) generation: u64,
    pub(super) members: Vec<u32>,
}

/// Where a member sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Place {
    pub(super) chunk: usize,
    pub(super) position: usize,
}

impl<M: Default> Chunks<M> {
    pub(super) fn new(capacity: usize) -> Chunks<M> {
        Chunks { capacity, chunks: Vec::new() }
    }

    /// Adds a member to the first chunk with room and marks that chunk for recompiling.
    pub(super) fn add(&mut self, member: u32) -> Place {
        let chunk = match self.chunks.iter().position(|c| c.members.len() < self.capacity) {
            Some(chunk) => chunk,
            None => {
                self.chunks.push(Chunk { members: Vec::new(), matcher: M::default(), dirty: false, generation: 0 });
                self.chunks.len() - 1
            }
        };
        let target = &mut self.chunks[chunk];
        target.members.push(member);
        target.dirty = true;
        Place { chunk, position: target.members.len() - 1 }
    }

    /// Removes the member at `place`, marking its chunk for recompiling. Returns the
    /// member that moved into `place` to fill the gap, whose place the caller updates.
    pub(super) fn remove(&mut self, place: Place) -> Option<u32> {
        let target = self.chunks.get_mut(place.chunk)?;
        if place.position >= target.members.len() {
            return None;
        }
        target.members.swap_remove(place.position);
        target.dirty = true;
        target.members.get(place.position).copied()
    }

    /// Recompiles every chunk whose members changed, with `compile(members)`.
    pub(super) fn recompile(&mut self, mut compile: impl FnMut(&[u32]) -> M) {
        for chunk in self.chunks.iter_mut().filter(|c| c.dirty) {
            chunk.dirty = false;
            chunk.generation = 0;
            chunk.matcher = compile(&chunk.members);
        }
    }

    /// Every chunk whose members changed gets `interim(members)` now, a matcher that
    /// answers correctly without compiling anything (each member on its own), and is
    /// returned to be compiled elsewhere; [`Chunks::install`] puts the result in.
    pub(super) fn defer(&mut self, mut interim: impl FnMut(&[u32]) -> M) -> Vec<Deferred> {
        let mut deferred = Vec::new();
        for (index, chunk) in self.chunks.iter_mut().enumerate().filter(|(_, c)| c.dirty) {
            chunk.dirty = false;
            chunk.generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
            chunk.matcher = interim(&chunk.members);
            deferred.push(Deferred { chunk: index, generation: chunk.generation, members: chunk.members.clone() });
        }
        deferred
    }

    /// Puts in a matcher compiled for [`Chunks::defer`]'s `generation` of `chunk`, unless
    /// the chunk changed since (a later compilation is then on its way).
    pub(super) fn install(&mut self, chunk: usize, generation: u64, matcher: M) {
        if let Some(target) = self.chunks.get_mut(chunk)
            && target.generation == generation
            && !target.dirty
        {
            target.generation = 0;
            target.matcher = matcher;
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Chunk<M>> {
        self.chunks.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_ids() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.insert("c"), a);
        assert_eq!((slab.get(a), slab.get(b), slab.len()), (Some(&"c"), Some(&"b"), 2));
    }

    #[test]
    fn chunks_fill_move_and_recompile() {
        let mut chunks: Chunks<Vec<u32>> = Chunks::new(2);
        let places: Vec<Place> = (10..15).map(|m| chunks.add(m)).collect();
        assert_eq!(places[4], Place { chunk: 2, position: 0 });
        chunks.recompile(<[u32]>::to_vec);
        let compiled: Vec<Vec<u32>> = chunks.iter().map(|c| c.matcher.clone()).collect();
        assert_eq!(compiled, [vec![10, 11], vec![12, 13], vec![14]]);
        // Removing 12 moves 13 into its place; only that chunk recompiles.
        assert_eq!(chunks.remove(places[2]), Some(13));
        assert_eq!(chunks.remove(Place { chunk: 2, position: 0 }), None);
        let mut recompiled = Vec::new();
        chunks.recompile(|members| {
            recompiled.push(members.to_vec());
            members.to_vec()
        });
        assert_eq!(recompiled, [vec![13], vec![]]);
        assert_eq!(chunks.add(15), Place { chunk: 1, position: 1 });
    }
}
